//! The layers of `exch_directory::layers` around `InMemoryDirectory`: each passes the
//! conformance suite through itself (so it forwards every method faithfully), and each does
//! what it says — faults per operation and per bulk item, latency, a call log without
//! passwords.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use exch_directory::conformance::{self, FixtureUser};
use exch_directory::layers::{CallLog, Faults, Latency, Layered};
use exch_directory::{Directory, DirectoryError, Dn, Fault, InMemoryDirectory, Operation, UserRef};
use secrecy::SecretString;

/// A directory with `bob`, 119 bulk users and two users sharing a mail.
fn fixture() -> (InMemoryDirectory, Vec<FixtureUser>) {
    let dir = InMemoryDirectory::new();
    dir.add_domain_controller("DC2", Duration::ZERO);
    let mut users = vec![FixtureUser::create_in_memory(&dir, "bob", "Old-Passw0rd!")];
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

/// The suite's functions that work on any directory with these users.
async fn suite(dir: &dyn Directory, inner: &InMemoryDirectory, users: &[FixtureUser]) {
    let bob = &users[0];
    conformance::find_by_every_form(dir, bob).await;
    conformance::injection_finds_nothing(dir, bob, &inner.base_dn()).await;
    conformance::disable_enable_idempotent(dir, bob).await;
    conformance::logon_name_forms(dir, bob).await;
    conformance::domain_controllers_agree(dir, bob).await;
    conformance::find_accounts_in_order(dir, users, "team@lab.example.test").await;
    let dcs = dir.domain_controllers().await.unwrap();
    let not_a_user = Dn(format!("CN=Users,{}", inner.base_dn()));
    conformance::accounts_on_in_order(dir, &dcs[0], users, &not_a_user).await;
    conformance::disable_and_reset_flow(dir, &users[1], &exch_directory::generate_password()).await;
    conformance::reset_password_flow(dir, &users[2], &exch_directory::generate_password()).await;
}

#[tokio::test]
async fn every_layer_passes_the_conformance_suite() {
    let (dir, users) = fixture();
    suite(
        &Layered::new(dir.clone(), Latency(Duration::ZERO)),
        &dir,
        &users,
    )
    .await;
    let (dir, users) = fixture();
    suite(&Layered::new(dir.clone(), Faults::default()), &dir, &users).await;
    let (dir, users) = fixture();
    let logged = Layered::new(dir.clone(), CallLog::default());
    suite(&logged, &dir, &users).await;
    assert!(
        logged.hook().count(Operation::AccountOn) > 120,
        "bulk items logged"
    );
    // Nested, around a shared handle, and boxed.
    let (dir, users) = fixture();
    let shared: Arc<dyn Directory> = Arc::new(dir.clone());
    let nested = Layered::new(Layered::new(shared, Faults::default()), CallLog::default());
    suite(&nested, &dir, &users).await;
    let (dir, users) = fixture();
    let boxed: Box<dyn Directory> = Box::new(dir.clone());
    suite(&Layered::new(boxed, Latency(Duration::ZERO)), &dir, &users).await;
}

#[tokio::test]
async fn faults_fail_the_named_operation_then_let_it_through() {
    let (dir, users) = fixture();
    let d = Layered::new(dir.clone(), Faults::default());
    d.hook()
        .fail_next(Operation::DisableAccount, Fault::Timeout, 2)
        .fail_always(Operation::ExchangeServers, Fault::PermissionDenied);
    let bob = d
        .find_account(&UserRef::parse("bob").unwrap())
        .await
        .unwrap();
    for _ in 0..2 {
        let e = d.disable_account(&bob).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains(&bob.dn.0), "names the account: {e}");
    }
    assert!(
        !dir.account(&bob.dn).unwrap().is_disabled(),
        "nothing changed"
    );
    d.disable_account(&bob).await.unwrap();
    assert!(dir.account(&bob.dn).unwrap().is_disabled());
    for _ in 0..3 {
        assert!(matches!(
            d.exchange_servers().await,
            Err(DirectoryError::PermissionDenied { .. })
        ));
    }
    d.hook().clear();
    d.exchange_servers().await.unwrap();
    // A bulk call: the refused items fail at their own position, the others are answered.
    d.hook()
        .fail_next(Operation::FindAccount, Fault::Unreachable, 1);
    let refs: Vec<UserRef> = users[..3]
        .iter()
        .map(|u| UserRef::parse(&u.upn).unwrap())
        .collect();
    let found = d.find_accounts(&refs).await;
    assert!(matches!(found[0], Err(DirectoryError::Unreachable { .. })));
    assert_eq!(found[1].as_ref().unwrap().sam_account_name, users[1].sam);
    assert_eq!(found[2].as_ref().unwrap().sam_account_name, users[2].sam);
    // disable_and_reset: a refused reset does not stop the disable.
    let one = dir.account(&Dn(users[3].dn.clone())).unwrap();
    d.hook()
        .fail_next(Operation::ResetPassword, Fault::PolicyViolation, 1);
    let new = SecretString::from("N3w-Passw0rd!x".to_owned());
    let c = d.disable_and_reset(&one, true, Some(&new)).await;
    assert!(c.disable.unwrap().is_ok());
    assert!(matches!(
        c.reset_password,
        Some(Err(DirectoryError::PolicyViolation { .. }))
    ));
    assert!(dir.account(&one.dn).unwrap().is_disabled());
}

#[tokio::test]
async fn latency_is_paid_per_operation() {
    let (dir, _) = fixture();
    let d = Layered::new(dir, Latency(Duration::from_millis(40)));
    let t = Instant::now();
    d.domain_controllers().await.unwrap();
    d.exchange_servers().await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(80),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn the_call_log_never_holds_a_password() {
    let (dir, users) = fixture();
    let d = Layered::new(dir.clone(), CallLog::default());
    let secret = "Sup3r-Secret-Pw!";
    let bob = d
        .find_account(&UserRef::parse("bob").unwrap())
        .await
        .unwrap();
    d.reset_password(&bob, &SecretString::from(secret.to_owned()))
        .await
        .unwrap();
    d.authenticate(&users[0].upn, &SecretString::from(secret.to_owned()))
        .await
        .unwrap();
    let calls = d.hook().calls();
    let ops: Vec<Operation> = calls.iter().map(|c| c.operation).collect();
    assert_eq!(
        ops,
        [
            Operation::FindAccount,
            Operation::ResetPassword,
            Operation::Authenticate
        ]
    );
    assert_eq!(calls[1].object, bob.dn.0);
    let text = format!("{calls:?} {d:?}");
    assert!(!text.contains(secret), "{text}");
}
