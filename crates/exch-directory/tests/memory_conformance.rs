//! The conformance suite against `InMemoryDirectory`.

use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::conformance::{self, FixtureUser};
use exch_directory::{Directory, InMemoryDirectory};
use secrecy::SecretString;

fn dir_with(sam: &str) -> (InMemoryDirectory, FixtureUser) {
    let dir = InMemoryDirectory::new();
    let user = FixtureUser::create_in_memory(&dir, sam, "Old-Passw0rd!");
    // Neighbours that must never be found instead.
    dir.add_user(
        &format!("{sam}2"),
        &format!("{sam}2@lab.example.test"),
        "Other-Passw0rd!",
    );
    dir.add_user("x", "x@lab.example.test", "Other-Passw0rd!");
    (dir, user)
}

#[tokio::test]
async fn find_by_every_form() {
    let (dir, user) = dir_with("bob");
    conformance::find_by_every_form(&dir, &user).await;
}

#[tokio::test]
async fn ambiguous_mail() {
    let dir = InMemoryDirectory::new();
    let a = dir.add_user_with_mail(
        "ann",
        "ann@lab.example.test",
        "Old-Passw0rd!",
        "Ann A",
        "team@lab.example.test",
    );
    let b = dir.add_user_with_mail(
        "anna",
        "anna@lab.example.test",
        "Old-Passw0rd!",
        "Anna B",
        "team@lab.example.test",
    );
    conformance::ambiguous_is_an_error(
        &dir,
        "team@lab.example.test",
        [a.dn.as_str(), b.dn.as_str()],
    )
    .await;
}

#[tokio::test]
async fn injection_finds_nothing() {
    let (dir, user) = dir_with("bob");
    conformance::injection_finds_nothing(&dir, &user, &dir.base_dn()).await;
}

#[tokio::test]
async fn disable_enable_idempotent() {
    let (dir, user) = dir_with("bob");
    conformance::disable_enable_idempotent(&dir, &user).await;
}

#[tokio::test]
async fn logon_name_forms() {
    let (dir, user) = dir_with("bob");
    conformance::logon_name_forms(&dir, &user).await;
}

#[tokio::test]
async fn reset_password_flow() {
    let (dir, user) = dir_with("bob");
    conformance::reset_password_flow(&dir, &user, &exch_directory::generate_password()).await;
    // And held behind Arc<dyn Directory>, the test's handle sees the same state.
    let shared: std::sync::Arc<dyn Directory> = std::sync::Arc::new(dir.clone());
    let a = dir.account(&exch_directory::Dn(user.dn.clone())).unwrap();
    shared.disable_account(&a).await.unwrap();
    assert!(dir.account(&a.dn).unwrap().is_disabled());
}

#[tokio::test]
async fn insecure_transport_refuses_reset() {
    let (dir, user) = dir_with("bob");
    dir.set_insecure_transport(true);
    let a = dir.account(&exch_directory::Dn(user.dn.clone())).unwrap();
    let e = dir
        .reset_password(&a, &SecretString::from("N3w-Secret!x".to_owned()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, exch_directory::DirectoryError::InsecureTransport { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("ldaps://"), "{e}");
    assert_eq!(
        dir.authenticate(&user.upn, &user.password).await.unwrap(),
        exch_directory::AuthResult::Success,
        "password unchanged"
    );
}

#[tokio::test]
async fn exchange_servers_listed() {
    let dir = InMemoryDirectory::new();
    let servers = vec![
        ExchangeServer::new("EX01", "ex01.lab.example.test")
            .with_version(
                ExchangeVersion::from_serial_number("Version 15.2 (Build 31258.12)").unwrap(),
            )
            .with_roles(ServerRoles::from_bits(2 | 4 | 16 | 32 | 16384))
            .with_site("Site-A"),
        ExchangeServer::new("EDGE01", "edge01.lab.example.test")
            .with_version(ExchangeVersion::new(15, 1, 2507))
            .with_roles(ServerRoles::EDGE),
    ];
    for s in &servers {
        dir.add_exchange_server(s.clone());
    }
    conformance::exchange_servers_listed(&dir, &servers).await;
}

#[tokio::test]
async fn domain_controllers_agree() {
    let (dir, user) = dir_with("bob");
    dir.add_domain_controller("DC2", std::time::Duration::ZERO);
    conformance::domain_controllers_agree(&dir, &user).await;
}

/// 120 users (more than one chunk of the LDAP backend), two more sharing a `mail`.
fn dir_with_many() -> (InMemoryDirectory, Vec<FixtureUser>) {
    let (dir, first) = dir_with("bulk");
    let mut users = vec![first];
    users.extend(
        (1..120)
            .map(|i| FixtureUser::create_in_memory(&dir, &format!("bulk{i:03}"), "Old-Passw0rd!")),
    );
    for sam in ["team1", "team2"] {
        dir.add_user_with_mail(
            sam,
            &format!("{sam}@lab.example.test"),
            "Old-Passw0rd!",
            sam,
            "team@lab.example.test",
        );
    }
    (dir, users)
}

#[tokio::test]
async fn find_accounts_in_order() {
    let (dir, users) = dir_with_many();
    conformance::find_accounts_in_order(&dir, &users, "team@lab.example.test").await;
}

#[tokio::test]
async fn accounts_on_in_order() {
    let (dir, users) = dir_with_many();
    let dcs = dir.domain_controllers().await.unwrap();
    let not_a_user = exch_directory::Dn(format!("CN=Users,{}", dir.base_dn()));
    conformance::accounts_on_in_order(&dir, &dcs[0], &users, &not_a_user).await;
}

#[tokio::test]
async fn disable_and_reset_flow() {
    let (dir, user) = dir_with("bob");
    conformance::disable_and_reset_flow(&dir, &user, &exch_directory::generate_password()).await;
}

#[tokio::test]
async fn disable_and_reset_keeps_concurrent_change() {
    let (dir, user) = dir_with("bob");
    let dn = exch_directory::Dn(user.dn.clone());
    let stale = dir.account(&dn).unwrap();
    // Another admin sets DONT_EXPIRE_PASSWORD after we read.
    dir.set_user_account_control(&dn, exch_directory::UserAccountControl(0x1_0200));
    let new = exch_directory::generate_password();
    conformance::disable_and_reset_keeps_concurrent_change(&dir, &user, &stale, &new).await;
}
