//! `RevokeMany`: many users, bounded directory concurrency, one flush per server, one report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::{
    Account, AuthResult, ChangeOutcome, Directory, Fault, InMemoryDirectory, NewUser, Operation,
};
use exch_iis::{FlushOperation, IisError, RecordingFlusher};
use exch_remediate::{
    Action, NewPassword, Outcome, Remediation, RemediationError, RevokeMany, ServerOutcome,
    UserProblem,
};
use secrecy::{ExposeSecret, SecretString};

mod gated;
mod samba;

fn server(name: &str) -> ExchangeServer {
    ExchangeServer::new(name, format!("{}.lab.example.test", name.to_lowercase()))
        .with_version(ExchangeVersion::new(15, 2, 1258))
        .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS)
}

/// A directory with `n` users `u0..` and two Exchange servers plus an Edge server.
fn lab(n: usize) -> (Arc<InMemoryDirectory>, Vec<String>) {
    let dir = InMemoryDirectory::new();
    let users = (0..n)
        .map(|i| {
            let upn = format!("u{i}@lab.example.test");
            dir.add_user(&format!("u{i}"), &upn, "Old-Passw0rd!");
            upn
        })
        .collect();
    dir.add_exchange_server(server("EX01"));
    dir.add_exchange_server(server("EX02"));
    dir.add_exchange_server(
        ExchangeServer::new("EDGE1", "edge1.dmz.example.test")
            .with_version(ExchangeVersion::new(15, 2, 1258))
            .with_roles(ServerRoles::EDGE),
    );
    (Arc::new(dir), users)
}

fn flushes(f: &RecordingFlusher) -> Vec<String> {
    f.calls()
        .into_iter()
        .filter(|c| matches!(c.operation, FlushOperation::Flush(_)))
        .map(|c| c.server)
        .collect()
}

fn account(dir: &InMemoryDirectory, upn: &str) -> Account {
    dir.accounts()
        .into_iter()
        .find(|a| a.user_principal_name.as_deref() == Some(upn))
        .unwrap()
}

#[tokio::test]
async fn every_user_revoked_with_one_flush_per_server() {
    let (dir, users) = lab(25);
    let flusher = Arc::new(RecordingFlusher::new());
    let run = Remediation::builder()
        .directory(dir.clone())
        .flusher(flusher.clone())
        .users(users.clone())
        .disable()
        .reset_password(NewPassword::Generate)
        .accounts_in_flight(4)
        .build_many()
        .unwrap();
    // Generated per user, retrievable before execute, all different.
    let passwords: Vec<(String, String)> = run
        .new_passwords()
        .map(|(u, p)| (u.to_owned(), p.expose_secret().to_owned()))
        .collect();
    assert_eq!(passwords.len(), 25);
    let mut distinct: Vec<&str> = passwords.iter().map(|(_, p)| p.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 25);

    let plan = run.plan().await.unwrap();
    assert_eq!(plan.resolved().count(), 25);
    assert_eq!(plan.actions, vec![Action::Disable, Action::ResetPassword]);
    let report = run.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert!(report.users.iter().all(|u| u.outcome == Outcome::Revoked));
    assert!(report.users_failed.is_empty() && report.reasons.is_empty());
    // Containment time in the default (combined) mode too: when the last modify returned.
    let contained = report.contained_after.unwrap();
    assert!(contained <= report.elapsed);
    assert!(report
        .summary()
        .contains("contained: every account disabled after"));

    // One flush per (non-Edge) server for the whole batch.
    let mut flushed = flushes(&flusher);
    flushed.sort();
    assert_eq!(flushed, vec!["EX01", "EX02"]);
    assert_eq!(report.servers.len(), 3);
    assert!(matches!(
        report
            .servers
            .iter()
            .find(|s| s.server == "EDGE1")
            .unwrap()
            .outcome,
        ServerOutcome::Skipped { .. }
    ));

    // Every account disabled, with its own new password; no secret in report, Debug or plan.
    let json = serde_json::to_string(&report).unwrap()
        + &serde_json::to_string(&plan).unwrap()
        + &format!("{run:?}{report:?}");
    for (user, password) in &passwords {
        assert!(account(&dir, user).is_disabled());
        let auth = dir
            .authenticate(user, &SecretString::from(password.clone()))
            .await
            .unwrap();
        assert_eq!(auth, AuthResult::AccountDisabled, "{user}");
        assert!(!json.contains(password.as_str()));
    }
    assert!(!json.contains("Old-Passw0rd!"));
    // The in-memory backend has no combined modify: the default runs the two actions.
    assert_eq!(dir.calls(Operation::DisableAccount), 25);
    assert_eq!(dir.calls(Operation::ResetPassword), 25);
}

#[tokio::test]
async fn bad_users_are_all_named_and_nothing_changes() {
    let (dir, users) = lab(3);
    dir.add(NewUser::new("twin1", "Old-Passw0rd!").mail("twin@lab.example.test"));
    dir.add(NewUser::new("twin2", "Old-Passw0rd!").mail("twin@lab.example.test"));
    let flusher = Arc::new(RecordingFlusher::new());
    let list = vec![
        users[0].clone(),
        "nobody@lab.example.test".to_owned(),
        "u0".to_owned(), // the same account as users[0]
        "twin@lab.example.test".to_owned(),
        "".to_owned(),
        users[1].clone(),
    ];
    let build = || {
        Remediation::builder()
            .directory(dir.clone())
            .flusher(flusher.clone())
            .users(list.clone())
            .disable()
    };
    let err = build().build_many().unwrap().plan().await.unwrap_err();
    let RemediationError::UnresolvedUsers { total, problems } = &err else {
        panic!("{err}");
    };
    assert_eq!(*total, 6);
    let kinds: Vec<(&str, &UserProblem)> = problems.iter().map(|(u, p)| (u.as_str(), p)).collect();
    assert_eq!(kinds.len(), 4, "{err}");
    assert!(matches!(
        kinds[0],
        ("nobody@lab.example.test", UserProblem::NotFound { .. })
    ));
    assert!(matches!(kinds[1], ("u0", UserProblem::Duplicate { of, .. }) if of == &users[0]));
    assert!(matches!(
        kinds[2],
        ("twin@lab.example.test", UserProblem::Ambiguous { .. })
    ));
    assert!(matches!(kinds[3], ("", UserProblem::Invalid { .. })));
    let text = err.to_string();
    for needle in [
        "nobody@lab.example.test",
        "\"u0\"",
        "ambiguous",
        "skip_unresolved",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    assert_eq!(dir.calls(Operation::DisableAccount), 0);
    assert!(flushes(&flusher).is_empty());

    // With skip_unresolved: the good users are revoked, the bad ones reported, Partial.
    let run = build().skip_unresolved().build_many().unwrap();
    let plan = run.plan().await.unwrap();
    assert_eq!(plan.resolved().count(), 2);
    assert!(plan.summary().contains("skip nobody@lab.example.test"));
    let report = run.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    assert_eq!(
        report.users_failed,
        vec!["nobody@lab.example.test", "u0", "twin@lab.example.test", ""]
    );
    assert_eq!(report.user(&users[0]).unwrap().outcome, Outcome::Revoked);
    assert_eq!(report.user(&users[1]).unwrap().outcome, Outcome::Revoked);
    assert!(report.user("u0").unwrap().reasons[0].contains("skipped: the same account"));
    assert_eq!(dir.calls(Operation::DisableAccount), 2);
    assert_eq!(flushes(&flusher).len(), 2);
}

#[tokio::test]
async fn builder_refuses_contradictions() {
    let (dir, users) = lab(2);
    let base = || {
        Remediation::builder()
            .directory(dir.clone())
            .flusher(Arc::new(RecordingFlusher::new()))
            .disable()
    };
    let e = base().users(users.clone()).build().unwrap_err();
    assert!(e.to_string().contains("build_many"), "{e}");
    let e = base()
        .user("u0")
        .users(users.clone())
        .build_many()
        .unwrap_err();
    assert!(e.to_string().contains(".users("), "{e}");
    let e = base().build_many().unwrap_err();
    assert!(e.to_string().contains("no user"), "{e}");
    let e = base()
        .users(users.clone())
        .accounts_in_flight(0)
        .build_many()
        .unwrap_err();
    assert!(e.to_string().contains("accounts_in_flight"), "{e}");
    let e = base()
        .users(users.clone())
        .user_password(
            "u9@lab.example.test",
            SecretString::from("Given-Passw0rd!1"),
        )
        .build_many()
        .unwrap_err();
    assert!(e.to_string().contains("reset_password"), "{e}");
    assert!(!format!("{e:?}").contains("Given-Passw0rd!1"));
    // contain_first: both actions, many users.
    let e = base()
        .users(users.clone())
        .contain_first()
        .build_many()
        .unwrap_err();
    assert!(e.to_string().contains("contain_first"), "{e}");
    let e = Remediation::builder()
        .directory(dir.clone())
        .flusher(Arc::new(RecordingFlusher::new()))
        .users(users.clone())
        .reset_password(NewPassword::Generate)
        .contain_first()
        .build_many()
        .unwrap_err();
    assert!(e.to_string().contains(".disable()"), "{e}");
    let e = base()
        .user("u0")
        .reset_password(NewPassword::Generate)
        .contain_first()
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("build_many"), "{e}");
}

#[tokio::test]
async fn given_passwords_per_user_and_shared() {
    let (dir, users) = lab(3);
    let run = RevokeMany::builder()
        .directory(dir.clone())
        .flusher(Arc::new(RecordingFlusher::new()))
        .users(users.clone())
        .reset_password(NewPassword::Given(SecretString::from("Shared-Passw0rd!1")))
        .user_password(users[2].clone(), SecretString::from("Own-Passw0rd!22"))
        .build_many()
        .unwrap();
    assert_eq!(
        run.new_password(&users[0]).unwrap().expose_secret(),
        "Shared-Passw0rd!1"
    );
    assert_eq!(
        run.new_password(&users[2]).unwrap().expose_secret(),
        "Own-Passw0rd!22"
    );
    let report = run.execute(&run.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    let ok = dir
        .authenticate(&users[2], &SecretString::from("Own-Passw0rd!22"))
        .await
        .unwrap();
    assert_eq!(ok, AuthResult::Success);
}

#[tokio::test]
async fn one_failed_server_makes_every_user_partial() {
    let (dir, users) = lab(4);
    let flusher = Arc::new(RecordingFlusher::new().with_error(
        "EX02",
        IisError::Unreachable {
            server: "EX02".into(),
            endpoint: "https://ex02.lab.example.test:5986/wsman".into(),
            detail: "connection refused".into(),
            source: None,
        },
    ));
    let run = Remediation::builder()
        .directory(dir.clone())
        .flusher(flusher.clone())
        .users(users.clone())
        .disable()
        .retry(exch_remediate::RetryPolicy::none())
        .build_many()
        .unwrap();
    let report = run.execute(&run.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Partial);
    assert_eq!(report.servers_to_retry, vec!["EX02"]);
    assert!(report.users.iter().all(|u| u.outcome == Outcome::Partial));
    assert!(
        report.reasons.iter().any(|r| r.contains("EX02")),
        "{:?}",
        report.reasons
    );
}

#[tokio::test]
async fn one_failed_reset_is_that_users_problem_only() {
    let (dir, users) = lab(3);
    dir.fail_next(Operation::ResetPassword, 1, Fault::PermissionDenied);
    let run = Remediation::builder()
        .directory(dir.clone())
        .flusher(Arc::new(RecordingFlusher::new()))
        .users(users.clone())
        .disable()
        .reset_password(NewPassword::Generate)
        .accounts_in_flight(1)
        .build_many()
        .unwrap();
    let report = run.execute(&run.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    let partial: Vec<_> = report
        .users
        .iter()
        .filter(|u| u.outcome == Outcome::Partial)
        .collect();
    assert_eq!(partial.len(), 1);
    let rec = partial[0];
    assert_eq!(rec.actions[0].outcome, Some(ChangeOutcome::Applied));
    assert!(rec.actions[1]
        .error
        .as_deref()
        .unwrap()
        .contains("password reset"));
    assert_eq!(report.users_failed, vec![rec.user.clone()]);
    // The batch was still flushed once per server.
    assert!(report.servers_to_retry.is_empty());
}

#[tokio::test]
async fn nothing_applied_is_failed_and_nothing_flushed() {
    let (dir, users) = lab(2);
    dir.fail_next(Operation::DisableAccount, 10, Fault::PermissionDenied);
    let flusher = Arc::new(RecordingFlusher::new());
    let run = Remediation::builder()
        .directory(dir.clone())
        .flusher(flusher.clone())
        .users(users)
        .disable()
        .build_many()
        .unwrap();
    let report = run.execute(&run.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(flushes(&flusher).is_empty());
    assert!(report.users.iter().all(|u| u.outcome == Outcome::Failed));
}

#[tokio::test]
async fn contain_first_resets_even_where_the_disable_failed() {
    let (dir, users) = lab(3);
    dir.fail_next(Operation::DisableAccount, 1, Fault::PermissionDenied);
    let run = Remediation::builder()
        .directory(dir.clone())
        .flusher(Arc::new(RecordingFlusher::new()))
        .users(users.clone())
        .disable()
        .reset_password(NewPassword::Generate)
        .accounts_in_flight(1)
        .contain_first()
        .build_many()
        .unwrap();
    let report = run.execute(&run.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    // The first account's disable was refused: not contained, but its password was reset.
    assert_eq!(report.contained_after, None);
    assert!(
        report.summary().contains("NOT contained"),
        "{}",
        report.summary()
    );
    let failed = report.user(&users[0]).unwrap();
    assert_eq!(failed.outcome, Outcome::Partial);
    assert_eq!(failed.actions[0].action, Action::Disable);
    assert_eq!(failed.actions[0].outcome, None);
    assert_eq!(failed.actions[1].action, Action::ResetPassword);
    assert_eq!(failed.actions[1].outcome, Some(ChangeOutcome::Applied));
    assert!(
        failed.reasons.iter().any(|r| r.contains("Disable failed")),
        "{:?}",
        failed.reasons
    );
    let new = run.new_password(&users[0]).unwrap();
    let auth = dir.authenticate(&users[0], new).await.unwrap();
    assert_eq!(auth, AuthResult::Success); // enabled, with the new password
    for u in &users[1..] {
        assert_eq!(report.user(u).unwrap().outcome, Outcome::Revoked);
    }
    assert_eq!(report.users_failed, vec![users[0].clone()]);
}

#[tokio::test]
async fn cancelled_before_start_changes_nothing() {
    let (dir, users) = lab(3);
    let run = Remediation::builder()
        .directory(dir.clone())
        .flusher(Arc::new(RecordingFlusher::new()))
        .users(users)
        .disable()
        .build_many()
        .unwrap();
    let plan = run.plan().await.unwrap();
    run.cancellation().cancel();
    let report = run.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(report.cancelled);
    assert_eq!(dir.calls(Operation::DisableAccount), 0);
}

#[tokio::test]
async fn convergence_waits_for_lagging_dcs_and_names_unreachable_ones() {
    let (dir, users) = lab(3);
    dir.add_domain_controller("DC1", Duration::ZERO);
    dir.add_domain_controller("DC2", Duration::from_millis(300));
    dir.add_domain_controller("DC3", Duration::ZERO);
    dir.set_dc_reachable("DC3", false);
    let run = Remediation::builder()
        .directory(dir.clone())
        .flusher(Arc::new(RecordingFlusher::new()))
        .users(users.clone())
        .disable()
        .timeouts(
            exch_remediate::Timeouts::default()
                .with_converge(Duration::from_secs(2))
                .with_converge_poll(Duration::from_millis(50)),
        )
        .build_many()
        .unwrap();
    let plan = run.plan().await.unwrap();
    assert_eq!(plan.domain_controllers, vec!["DC1", "DC2", "DC3"]);
    let report = run.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    for u in &report.users {
        let dc = |name: &str| u.domain_controllers.iter().find(|d| d.dc == name).unwrap();
        assert!(dc("DC1").converged);
        assert!(
            dc("DC2").converged && dc("DC2").reads > 1,
            "{:?}",
            dc("DC2")
        );
        assert!(!dc("DC3").converged);
        assert!(
            u.reasons.iter().any(|r| r.contains("DC3")),
            "{:?}",
            u.reasons
        );
    }
    // The flush still ran once per server (caches flushed anyway, rerun after replication).
    assert!(report.servers_to_retry.is_empty());
}
