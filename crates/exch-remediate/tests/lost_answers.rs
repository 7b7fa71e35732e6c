//! A directory write whose answer is lost (time-out, connection dropped) may or may not have
//! been applied. The report must say which, from a re-read of the account: a disable that
//! shows is confirmed; a reset is never called applied without proof, nor "not applied" when
//! the account's `pwdLastSet` moved; a rerun with the same password finishes the job. The
//! in-memory directory applies the write, then loses the answer
//! (`InMemoryDirectory::lose_answer_next`), or fails it before applying (`fail_next`).
#![allow(clippy::unwrap_used)]

use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::{
    AuthResult, ChangeOutcome, Directory, Fault, InMemoryDirectory, Operation, UserRef,
};
use exch_iis::RecordingFlusher;
use exch_remediate::{
    Action, NewPassword, Outcome, Remediation, RemediationBuilder, Report, RetryPolicy, Timeouts,
};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

const USER: &str = "bob@lab.example.test";
const NEW: &str = "New-Passw0rd!lost";

fn directory() -> InMemoryDirectory {
    let dir = InMemoryDirectory::new();
    dir.add_user("bob", USER, "Old-Passw0rd!");
    dir.add_domain_controller("DC1", Duration::ZERO);
    dir.add_exchange_server(
        ExchangeServer::new("EX01", "ex01.lab.example.test")
            .with_version(ExchangeVersion::new(15, 2, 1258))
            .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS),
    );
    dir
}

/// No retries: the first lost answer is what the report has to explain.
fn builder(dir: &InMemoryDirectory) -> RemediationBuilder {
    Remediation::builder()
        .directory(Arc::new(dir.clone()))
        .flusher(Arc::new(RecordingFlusher::new()))
        .user(USER)
        .timeouts(
            Timeouts::default()
                .with_converge(Duration::from_secs(2))
                .with_converge_poll(Duration::from_millis(5))
                .with_per_server(Duration::from_secs(5))
                .with_directory(Duration::from_secs(2)),
        )
        .retry(RetryPolicy::none())
}

async fn run(b: RemediationBuilder) -> Report {
    let r = b.build().unwrap();
    let plan = r.plan().await.unwrap();
    r.execute(&plan).await
}

fn record(report: &Report, action: Action) -> &exch_remediate::ActionRecord {
    report.actions.iter().find(|a| a.action == action).unwrap()
}

async fn is_disabled(dir: &InMemoryDirectory) -> bool {
    dir.find_account(&UserRef::parse(USER).unwrap())
        .await
        .unwrap()
        .is_disabled()
}

#[tokio::test]
async fn a_disable_whose_answer_was_lost_is_confirmed_by_a_re_read() {
    let dir = directory();
    dir.lose_answer_next(Operation::DisableAccount, 1);
    let report = run(builder(&dir).disable()).await;
    let rec = record(&report, Action::Disable);
    assert_eq!(rec.outcome, Some(ChangeOutcome::Applied), "{rec:?}");
    assert!(rec.error.is_none(), "{rec:?}");
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert!(is_disabled(&dir).await);
}

#[tokio::test]
async fn a_disable_that_failed_before_applying_says_not_applied() {
    let dir = directory();
    dir.fail_next(Operation::DisableAccount, 1, Fault::Timeout);
    let report = run(builder(&dir).disable()).await;
    let rec = record(&report, Action::Disable);
    assert_eq!(rec.outcome, None);
    let e = rec.error.as_deref().unwrap();
    assert!(e.contains("still enabled: not applied"), "{e}");
    assert_ne!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert!(!is_disabled(&dir).await);
}

#[tokio::test]
async fn a_reset_whose_answer_was_lost_is_not_called_applied_and_a_rerun_finishes() {
    let dir = directory();
    dir.lose_answer_next(Operation::ResetPassword, 1);
    let new = || NewPassword::Given(SecretString::from(NEW.to_owned()));
    let report = run(builder(&dir).reset_password(new())).await;
    let rec = record(&report, Action::ResetPassword);
    assert_eq!(
        rec.outcome, None,
        "never called applied without proof: {rec:?}"
    );
    let e = rec.error.as_deref().unwrap();
    assert!(
        e.contains("pwdLastSet changed") && e.contains("send the same password again"),
        "{e}"
    );
    assert_ne!(report.outcome, Outcome::Revoked, "{}", report.summary());
    // It was in fact applied (the fake lost only the answer) ...
    assert_eq!(
        dir.authenticate(USER, &SecretString::from(NEW.to_owned()))
            .await
            .unwrap(),
        AuthResult::Success
    );
    // ... and resuming with the same password finishes the job: the reset is sent again.
    let rerun = run(builder(&dir).reset_password(new()).resume(report)).await;
    assert_eq!(rerun.outcome, Outcome::Revoked, "{}", rerun.summary());
    let again = record(&rerun, Action::ResetPassword);
    assert_eq!(again.outcome, Some(ChangeOutcome::Applied), "{again:?}");
    assert_eq!(dir.calls(Operation::ResetPassword), 2);
}

#[tokio::test]
async fn a_reset_that_failed_before_applying_says_not_applied() {
    let dir = directory();
    dir.fail_next(Operation::ResetPassword, 1, Fault::Timeout);
    let report = run(builder(&dir).reset_password(NewPassword::Generate)).await;
    let e = record(&report, Action::ResetPassword)
        .error
        .as_deref()
        .unwrap()
        .to_owned();
    assert!(
        e.contains("pwdLastSet unchanged: the reset was not applied"),
        "{e}"
    );
    assert_eq!(
        dir.authenticate(USER, &SecretString::from("Old-Passw0rd!".to_owned()))
            .await
            .unwrap(),
        AuthResult::Success,
        "the old password still works"
    );
}

#[tokio::test]
async fn refusals_are_reported_as_they_are_without_a_re_read() {
    let dir = directory();
    dir.fail_next(Operation::DisableAccount, 1, Fault::PermissionDenied);
    let report = run(builder(&dir).disable()).await;
    let e = record(&report, Action::Disable).error.as_deref().unwrap();
    assert!(!e.contains("re-read"), "{e}");
    // plan() read the account once; execute found it once more; no third read for a refusal.
    assert_eq!(dir.calls(Operation::FindAccount), 2);
}
