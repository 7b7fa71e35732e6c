//! The layers of `exch_directory::layers` around `InMemoryDirectory`: each passes the
//! conformance suite through itself (so it forwards every method faithfully), and each does
//! what it says — faults per operation and per bulk item, latency, a call log without
//! passwords.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use exch_directory::conformance::{self, FixtureUser};
use exch_directory::layers::{CallLog, Faults, Latency, Layered, Limit, Method};
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
    suite(&Layered::new(dir.clone(), Limit::new(1)), &dir, &users).await;
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

#[tokio::test]
async fn the_call_log_names_each_method_once_per_call() {
    let (dir, users) = fixture();
    let d = Layered::new(dir.clone(), CallLog::default());
    let refs: Vec<UserRef> = users[..3]
        .iter()
        .map(|u| UserRef::parse(&u.upn).unwrap())
        .collect();
    let found = d.find_accounts(&refs).await;
    let dcs = d.domain_controllers().await.unwrap();
    let dns: Vec<Dn> = found
        .iter()
        .map(|a| a.as_ref().unwrap().dn.clone())
        .collect();
    d.accounts_on(&dcs[0], &dns).await;
    let one = found[0].as_ref().unwrap();
    let _ = d.disable_and_reset(one, true, None).await;
    d.account_on(&dcs[0], &one.dn).await.unwrap();
    assert_eq!(
        d.hook().methods(),
        [
            Method::FindAccounts,
            Method::One(Operation::DomainControllers),
            Method::AccountsOn,
            Method::DisableAndReset,
            Method::One(Operation::AccountOn)
        ]
    );
    assert_eq!(
        d.hook().count(Operation::FindAccount),
        3,
        "items still logged"
    );
    assert!(Method::AccountsOn.is_bulk() && !Method::One(Operation::AccountOn).is_bulk());
}

/// Two permits, three logons of 100 ms each (tokio's paused clock): the third starts when one
/// of the first two ends; other methods are not held; a call given up by its caller frees
/// its permit.
#[tokio::test(start_paused = true)]
async fn limit_holds_calls_beyond_n_until_one_ends() {
    let (dir, users) = fixture();
    dir.set_latency(Operation::Authenticate, Duration::from_millis(100));
    dir.set_latency(Operation::DomainControllers, Duration::from_millis(100));
    let d = Arc::new(Layered::new(
        dir.clone(),
        Limit::new(2).only(Method::One(Operation::Authenticate)),
    ));
    let pw = SecretString::from("Old-Passw0rd!".to_owned());
    let logon = |d: Arc<Layered<InMemoryDirectory, Limit>>| {
        let (upn, pw) = (users[0].upn.clone(), pw.clone());
        async move { d.authenticate(&upn, &pw).await.unwrap() }
    };
    let t = tokio::time::Instant::now();
    let three = futures::future::join3(logon(d.clone()), logon(d.clone()), logon(d.clone()));
    let discovery = async {
        d.domain_controllers().await.unwrap();
        t.elapsed()
    };
    let (_, discovered_after) = tokio::join!(three, discovery);
    assert_eq!(t.elapsed(), Duration::from_millis(200), "2 + 1 logons");
    assert_eq!(
        discovered_after,
        Duration::from_millis(100),
        "discovery is not limited"
    );
    // A logon given up after 10 ms (its permit goes back), then two at once again.
    let given_up = tokio::time::timeout(Duration::from_millis(10), logon(d.clone())).await;
    assert!(given_up.is_err());
    let t = tokio::time::Instant::now();
    futures::future::join(logon(d.clone()), logon(d.clone())).await;
    assert_eq!(t.elapsed(), Duration::from_millis(100));
}
