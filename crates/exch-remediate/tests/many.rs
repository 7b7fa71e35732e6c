//! `RevokeMany`: many users, bounded directory concurrency, one flush per server, one report.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::{
    Account, AccountChanges, AuthResult, ChangeOutcome, Directory, DirectoryError, Dn,
    DomainController, Fault, InMemoryDirectory, NewUser, Operation, UserRef,
};
use exch_iis::{FlushOperation, IisError, RecordingFlusher};
use exch_remediate::{
    Action, NewPassword, Outcome, Remediation, RemediationError, RevokeMany, ServerOutcome,
    UserProblem,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

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
        .max_in_flight(4)
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
        .max_in_flight(0)
        .build_many()
        .unwrap_err();
    assert!(e.to_string().contains("max_in_flight"), "{e}");
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
        .max_in_flight(1)
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

/// Directory whose `disable_and_reset` waits for the test to release it.
#[derive(Debug)]
struct Gated {
    inner: InMemoryDirectory,
    gate: Semaphore,
    in_flight: AtomicUsize,
    max: AtomicUsize,
    waiting: AtomicUsize,
}

#[async_trait]
impl Directory for Gated {
    async fn find_account(&self, user: &UserRef) -> Result<Account, DirectoryError> {
        self.inner.find_account(user).await
    }
    async fn disable_account(&self, a: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.inner.disable_account(a).await
    }
    async fn enable_account(&self, a: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.inner.enable_account(a).await
    }
    async fn reset_password(
        &self,
        a: &Account,
        new: &SecretString,
    ) -> Result<ChangeOutcome, DirectoryError> {
        self.inner.reset_password(a, new).await
    }
    async fn authenticate(&self, u: &str, p: &SecretString) -> Result<AuthResult, DirectoryError> {
        self.inner.authenticate(u, p).await
    }
    async fn exchange_servers(&self) -> Result<Vec<ExchangeServer>, DirectoryError> {
        self.inner.exchange_servers().await
    }
    async fn domain_controllers(&self) -> Result<Vec<DomainController>, DirectoryError> {
        self.inner.domain_controllers().await
    }
    async fn account_on(&self, dc: &DomainController, dn: &Dn) -> Result<Account, DirectoryError> {
        self.inner.account_on(dc, dn).await
    }
    async fn disable_and_reset(
        &self,
        a: &Account,
        disable: bool,
        new: Option<&SecretString>,
    ) -> AccountChanges {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let out = self.inner.disable_and_reset(a, disable, new).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

#[tokio::test]
async fn directory_work_is_bounded_by_max_in_flight() {
    let (dir, users) = lab(10);
    let inner = Arc::try_unwrap(dir).unwrap();
    let gated = Arc::new(Gated {
        inner,
        gate: Semaphore::new(0),
        in_flight: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
        waiting: AtomicUsize::new(0),
    });
    let run = Arc::new(
        Remediation::builder()
            .directory(gated.clone())
            .flusher(Arc::new(RecordingFlusher::new()))
            .users(users)
            .disable()
            .reset_password(NewPassword::Generate)
            .max_in_flight(3)
            .timeouts(exch_remediate::Timeouts {
                directory: Duration::from_secs(3600),
                ..Default::default()
            })
            .build_many()
            .unwrap(),
    );
    // `plan` and `execute` are Send: both can run on a spawned task.
    let plan = {
        let run = run.clone();
        tokio::spawn(async move { run.plan().await })
            .await
            .unwrap()
            .unwrap()
    };
    let task = {
        let run = run.clone();
        tokio::spawn(async move { run.execute(&plan).await })
    };
    // Release one account at a time; each time, exactly 3 must be waiting (10 = 3 + 7 more).
    for released in 0..10 {
        while gated.waiting.load(Ordering::SeqCst) < 3.min(10 - released) {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gated.waiting.load(Ordering::SeqCst), 3.min(10 - released));
        gated.gate.add_permits(1);
    }
    let report = task.await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(gated.max.load(Ordering::SeqCst), 3);
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

mod samba {
    use super::*;
    use exch_directory::LdapDirectory;
    use exch_samba::SambaAd;

    #[tokio::test]
    async fn revoke_many_against_samba() {
        let Some(ad) = SambaAd::require("exch-remediate many (Samba)") else {
            return;
        };
        let env = ad.env();
        let old = SecretString::from("Old-Passw0rd!x7");
        let mut created = Vec::new();
        for _ in 0..4 {
            let sam = SambaAd::unique_name("many");
            created.push(ad.create_user(&sam, &old).await.unwrap());
        }
        let dir = Arc::new(
            LdapDirectory::builder()
                .url(&env.url_ldaps)
                .ca_file(&env.ca_file)
                .bind(&env.admin_bind, env.admin_password.clone())
                .connections(2)
                .build()
                .await
                .unwrap(),
        );
        let flusher = Arc::new(RecordingFlusher::new());
        let mut names: Vec<String> = created.iter().map(|u| u.upn.clone()).collect();
        names[1] = created[1].sam.clone(); // a bare sAMAccountName works too
                                           // One account changed behind our back after the plan (DONT_EXPIRE_PASSWORD set): the
                                           // guarded swap refuses the stale value, the fallback re-reads, no update is lost.
        let run = Remediation::builder()
            .directory(dir.clone())
            .flusher(flusher.clone())
            .servers(vec![server("EX01")])
            .users(names.clone())
            .disable()
            .reset_password(NewPassword::Generate)
            .max_in_flight(4)
            .build_many()
            .unwrap();
        let plan = run.plan().await.unwrap();
        ad.replace_attribute(&created[3].dn, "userAccountControl", "66048")
            .await
            .unwrap();
        let report = run.execute(&plan).await;
        let mut uac = Vec::new();
        for u in &created {
            uac.push(
                ad.read_attribute(&u.dn, "userAccountControl")
                    .await
                    .unwrap(),
            );
            let _ = ad.delete(&u.dn).await;
        }
        assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
        assert_eq!(flushes(&flusher), vec!["EX01"]);
        let uac: Vec<&str> = uac.iter().map(|v| v.as_deref().unwrap()).collect();
        assert_eq!(uac, ["514", "514", "514", "66050"]);
        assert!(report
            .users
            .iter()
            .all(|u| u.actions[0].outcome == Some(ChangeOutcome::Applied)));
        assert!(!serde_json::to_string(&report)
            .unwrap()
            .contains(run.new_password(&names[0]).unwrap().expose_secret()));
    }

    #[tokio::test]
    async fn batched_lookups_name_bad_users_on_samba() {
        let Some(ad) = SambaAd::require("exch-remediate many (Samba)") else {
            return;
        };
        let env = ad.env();
        let u = ad
            .create_user(
                &SambaAd::unique_name("many"),
                &SecretString::from("Old-Passw0rd!x7"),
            )
            .await
            .unwrap();
        let dir = Arc::new(
            LdapDirectory::builder()
                .url(&env.url_ldaps)
                .ca_file(&env.ca_file)
                .bind(&env.admin_bind, env.admin_password.clone())
                .build()
                .await
                .unwrap(),
        );
        let missing = format!("{}-nosuch@{}", u.sam, env.dns_domain());
        let upper = u.upn.to_uppercase();
        let result = Remediation::builder()
            .directory(dir)
            .flusher(Arc::new(RecordingFlusher::new()))
            .servers(vec![server("EX01")])
            .users([
                u.upn.clone(),
                missing.clone(),
                upper.clone(),
                "Administrator".into(),
            ])
            .disable()
            .build_many()
            .unwrap()
            .plan()
            .await;
        let uac = ad
            .read_attribute(&u.dn, "userAccountControl")
            .await
            .unwrap();
        let _ = ad.delete(&u.dn).await;
        let Err(RemediationError::UnresolvedUsers { problems, .. }) = result else {
            panic!("expected UnresolvedUsers, got {result:?}");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].0, missing);
        assert!(matches!(problems[0].1, UserProblem::NotFound { .. }));
        assert_eq!(problems[1].0, upper);
        assert!(matches!(&problems[1].1, UserProblem::Duplicate { of, .. } if of == &u.upn));
        assert_eq!(uac.as_deref(), Some("512"));
    }

    #[tokio::test]
    async fn new_password_is_set_and_account_disabled_on_samba() {
        let Some(ad) = SambaAd::require("exch-remediate many (Samba)") else {
            return;
        };
        let env = ad.env();
        let old = SecretString::from("Old-Passw0rd!x7");
        let u = ad
            .create_user(&SambaAd::unique_name("many"), &old)
            .await
            .unwrap();
        let dir = Arc::new(
            LdapDirectory::builder()
                .url(&env.url_ldaps)
                .ca_file(&env.ca_file)
                .bind(&env.admin_bind, env.admin_password.clone())
                .build()
                .await
                .unwrap(),
        );
        let run = Remediation::builder()
            .directory(dir)
            .flusher(Arc::new(RecordingFlusher::new()))
            .servers(vec![server("EX01")])
            .users([u.upn.clone()])
            .disable()
            .reset_password(NewPassword::Generate)
            .build_many()
            .unwrap();
        let report = run.execute(&run.plan().await.unwrap()).await;
        let uac = ad
            .read_attribute(&u.dn, "userAccountControl")
            .await
            .unwrap();
        let old_bind = ad.try_bind(&u.upn, &old).await.unwrap();
        let new_bind = ad
            .try_bind(&u.upn, run.new_password(&u.upn).unwrap())
            .await
            .unwrap();
        let _ = ad.delete(&u.dn).await;
        assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
        assert_eq!(uac.as_deref(), Some("514"));
        assert_eq!(old_bind.rc, 49);
        assert!(old_bind.text.contains("52e"), "{}", old_bind.text);
        // The new password is right (only the disable refuses it): data 533.
        assert_eq!(new_bind.rc, 49);
        assert!(new_bind.text.contains("533"), "{}", new_bind.text);
    }
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
        .timeouts(exch_remediate::Timeouts {
            converge: Duration::from_secs(2),
            converge_poll: Duration::from_millis(50),
            ..Default::default()
        })
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
