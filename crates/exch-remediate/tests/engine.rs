//! The one engine, through both of its doors: per-user events in a batch, the convergence rule
//! of a reset-only run, a batch killed mid-flush and finished by `resume_many` (in memory and on
//! Samba AD), and reports written before the engine was merged still read and resume.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::layers::{CallLog, Layered};
use exch_directory::{Directory, InMemoryDirectory, Operation, UserRef};
use exch_iis::{FlushOperation, RecordingFlusher};
use exch_remediate::{
    Action, Cause, Event, FailureKind, ManyReport, NewPassword, Outcome, Remediation, Report,
    RevokeMany, ServerOutcome, SkipReason, Timeouts,
};
use exch_samba::SambaAd;
use secrecy::SecretString;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

fn server(name: &str) -> ExchangeServer {
    ExchangeServer::new(name, format!("{}.lab.example.test", name.to_lowercase()))
        .with_version(ExchangeVersion::new(15, 2, 1258))
        .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS)
}

fn servers() -> Vec<ExchangeServer> {
    ["EX01", "EX02", "EX03"].into_iter().map(server).collect()
}

fn timeouts() -> Timeouts {
    Timeouts::default()
        .with_converge(Duration::from_secs(5))
        .with_converge_poll(Duration::from_millis(5))
        .with_per_server(Duration::from_secs(10))
        .with_directory(Duration::from_secs(10))
}

/// `n` users `u0..` (their UPNs) in a fresh in-memory directory.
fn users(dir: &InMemoryDirectory, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let upn = format!("u{i}@lab.example.test");
            dir.add_user(&format!("u{i}"), &upn, "Old-Passw0rd!");
            upn
        })
        .collect()
}

fn flushed(f: &RecordingFlusher) -> Vec<String> {
    let mut names: Vec<String> = f
        .calls()
        .into_iter()
        .filter(|c| matches!(c.operation, FlushOperation::Flush(_)))
        .map(|c| c.server)
        .collect();
    names.sort();
    names
}

fn drain(rx: &mut UnboundedReceiver<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

#[tokio::test]
async fn a_batch_tells_per_user_what_happened() {
    let dir = InMemoryDirectory::new();
    dir.add_domain_controller("DC1", Duration::ZERO);
    dir.add_domain_controller("DC2", Duration::from_millis(20));
    let names = users(&dir, 3);
    let (tx, mut rx) = unbounded_channel();
    let run = Remediation::builder()
        .directory(Arc::new(dir))
        .flusher(Arc::new(RecordingFlusher::new()))
        .users(names.clone())
        .disable()
        .reset_password(NewPassword::Generate)
        .servers(servers())
        .timeouts(timeouts())
        .events(tx)
        .build_many()
        .unwrap();
    let report = run.execute(&run.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    let events = drain(&mut rx);
    for user in &names {
        let actions: Vec<Action> = events
            .iter()
            .filter_map(|e| match e {
                Event::ActionRecorded { user: u, record } if u == user => Some(record.action),
                _ => None,
            })
            .collect();
        assert_eq!(actions, [Action::Disable, Action::ResetPassword], "{user}");
        let mut dcs: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::DcConverged { user: u, dc, .. } if u == user => Some(dc.as_str()),
                _ => None,
            })
            .collect();
        dcs.sort_unstable();
        assert_eq!(dcs, ["DC1", "DC2"], "{user}");
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::UserFinished { user: u, outcome: Outcome::Revoked } if u == user
            )),
            "{user}"
        );
    }
    // The convergence event of a user comes after that user's changes, and every one before
    // the first flush starts.
    let first_flush = events
        .iter()
        .position(|e| matches!(e, Event::ServerStarted { .. }))
        .unwrap();
    let last_dc = events
        .iter()
        .rposition(|e| matches!(e, Event::DcConverged { .. }))
        .unwrap();
    assert!(last_dc < first_flush);
}

#[tokio::test]
async fn a_reset_only_run_waits_for_a_newer_pwd_last_set_on_every_dc() {
    let dir = InMemoryDirectory::new();
    dir.add_domain_controller("DC1", Duration::ZERO);
    dir.add_domain_controller("DC2", Duration::from_millis(60));
    dir.add_domain_controller("DC9", Duration::from_secs(3600));
    users(&dir, 1);
    let mut t = timeouts();
    t.converge = Duration::from_millis(400);
    let r = Remediation::builder()
        .directory(Arc::new(dir.clone()))
        .flusher(Arc::new(RecordingFlusher::new()))
        .user("u0@lab.example.test")
        .reset_password(NewPassword::Generate)
        .servers(servers())
        .timeouts(t)
        .build()
        .unwrap();
    let report = r.execute(&r.plan().await.unwrap()).await;
    // No disable: only pwdLastSet tells whether a DC has the change. DC2 shows it after its
    // lag (it was read before that and did not count), DC9 never does.
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    let dc = |name: &str| {
        report
            .domain_controllers
            .iter()
            .find(|d| d.dc == name)
            .unwrap()
            .clone()
    };
    assert!(dc("DC1").converged);
    assert!(
        dc("DC2").converged && dc("DC2").reads > 1,
        "{:?}",
        dc("DC2")
    );
    assert!(!dc("DC9").converged);
    assert!(
        report.causes.iter().any(|c| matches!(
            c,
            Cause::NotConverged { shown: 2, total: 3, waiting } if waiting == &["DC9"]
        )),
        "{:?}",
        report.causes
    );
}

/// Plans and runs `run` in a task, folds its events into a journal until `proven` servers are
/// recorded as flushed, then kills the task (the flushes still parked at the gate are
/// dropped) and opens the gate. Returns the journal.
async fn kill_after_flushes(
    run: Arc<RevokeMany>,
    mut rx: UnboundedReceiver<Event>,
    gate: &exch_iis::Gate,
    proven: usize,
) -> ManyReport {
    let plan = run.plan().await.unwrap();
    let mut journal = ManyReport::journal(&plan);
    let task = tokio::spawn({
        let run = Arc::clone(&run);
        async move { run.execute(&plan).await }
    });
    gate.release(proven);
    let mut recorded = 0;
    while recorded < proven {
        let e = rx.recv().await.unwrap();
        journal.record(&e);
        if let Event::ServerRecorded { record } = &e {
            assert!(record.outcome.is_proven(), "{record:?}");
            recorded += 1;
        }
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    while let Ok(e) = rx.try_recv() {
        journal.record(&e);
    }
    gate.open();
    journal
}

#[tokio::test]
async fn a_batch_killed_mid_flush_is_finished_by_resume_and_nothing_is_repeated() {
    let dir = InMemoryDirectory::new();
    dir.add_domain_controller("DC1", Duration::ZERO);
    let names = users(&dir, 4);
    let logged = Arc::new(Layered::new(dir.clone(), CallLog::default()));
    let (flusher, gate) = RecordingFlusher::gated();
    let (tx, rx) = unbounded_channel();
    let run = Arc::new(
        Remediation::builder()
            .directory(logged.clone())
            .flusher(Arc::new(flusher.clone()))
            .users(names.clone())
            .disable()
            .reset_password(NewPassword::Generate)
            .servers(servers())
            .timeouts(timeouts())
            .events(tx)
            .build_many()
            .unwrap(),
    );
    let journal = kill_after_flushes(Arc::clone(&run), rx, &gate, 2).await;
    assert_eq!(journal.servers.len(), 2, "{journal:?}");
    let before: Vec<_> = dir.accounts();
    assert!(before.iter().all(|a| a.is_disabled()));
    let changes = logged.hook().count(Operation::DisableAccount)
        + logged.hook().count(Operation::ResetPassword);
    assert_eq!(changes, 8, "4 users x 2 actions");
    let killed_flushes = flushed(&flusher);

    // Resume from the journal: no change is sent again, only the third server is flushed.
    let healthy = RecordingFlusher::new();
    let (tx, mut rx) = unbounded_channel();
    let again = Remediation::builder()
        .directory(logged.clone())
        .flusher(Arc::new(healthy.clone()))
        .users(names.clone())
        .disable()
        .reset_password(NewPassword::Generate)
        .servers(servers())
        .timeouts(timeouts())
        .events(tx)
        .resume_many(journal)
        .build_many()
        .unwrap();
    // No new password is made for a user whose reset was applied: nobody stores a password
    // the account does not have.
    assert_eq!(again.new_passwords().count(), 0);
    let plan = again.plan().await.unwrap();
    assert!(plan
        .users
        .iter()
        .all(|u| u.actions.iter().all(|a| a.done_earlier)));
    let skipped: Vec<&str> = plan
        .servers
        .iter()
        .filter(|p| p.skip == Some(SkipReason::ProvenEarlier))
        .map(|p| p.server.name.as_str())
        .collect();
    assert_eq!(skipped.len(), 2, "{}", plan.summary());
    let report = again.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert!(report.users.iter().all(|u| u.outcome == Outcome::Revoked));
    assert_eq!(
        logged.hook().count(Operation::DisableAccount)
            + logged.hook().count(Operation::ResetPassword),
        changes,
        "a change was sent again"
    );
    assert_eq!(dir.accounts(), before, "an account changed again");
    let third: Vec<String> = servers()
        .into_iter()
        .map(|s| s.name)
        .filter(|n| !skipped.contains(&n.as_str()))
        .collect();
    assert_eq!(flushed(&healthy), third);
    assert_eq!(
        killed_flushes.len(),
        3,
        "all three were started before the kill"
    );
    assert!(drain(&mut rx)
        .iter()
        .all(|e| !matches!(e, Event::ActionRecorded { record, .. } if !record.done_earlier)));
}

#[tokio::test]
async fn a_batch_killed_mid_flush_on_samba_is_finished_by_resume() {
    let Some(ad) = SambaAd::require("exch-remediate engine resume (Samba)") else {
        return;
    };
    let old = SecretString::from("Old-Passw0rd!e5");
    let mut created = Vec::new();
    for _ in 0..3 {
        let sam = SambaAd::unique_name("resume");
        created.push(ad.create_user(&sam, &old).await.unwrap());
    }
    let names: Vec<String> = created.iter().map(|u| u.upn.clone()).collect();
    let ldap = ad.env().directory().connections(2).build().await.unwrap();
    let logged = Arc::new(Layered::new(ldap, CallLog::default()));
    let (flusher, gate) = RecordingFlusher::gated();
    let (tx, rx) = unbounded_channel();
    let builder = || {
        Remediation::builder()
            .directory(logged.clone())
            .users(names.clone())
            .disable()
            .reset_password(NewPassword::Generate)
            .servers(servers())
            .timeouts(timeouts())
    };
    let run = Arc::new(
        builder()
            .flusher(Arc::new(flusher))
            .events(tx)
            .build_many()
            .unwrap(),
    );
    let journal = kill_after_flushes(Arc::clone(&run), rx, &gate, 1).await;
    let read = |upn: String| {
        let logged = logged.clone();
        async move {
            logged
                .inner()
                .find_account(&UserRef::parse(&upn).unwrap())
                .await
                .unwrap()
        }
    };
    let mut before = Vec::new();
    for n in &names {
        let a = read(n.clone()).await;
        assert!(a.is_disabled(), "{n}");
        before.push((a.pwd_last_set, a.dn.clone()));
    }
    // The bulk path ran against Samba: one combined modify per account.
    let bulk = logged
        .hook()
        .methods()
        .iter()
        .filter(|m| **m == exch_directory::layers::Method::DisableAndReset)
        .count();
    assert_eq!(bulk, 3);

    let healthy = RecordingFlusher::new();
    let again = builder()
        .flusher(Arc::new(healthy.clone()))
        .resume_many(journal)
        .build_many()
        .unwrap();
    let report = again.execute(&again.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(flushed(&healthy).len(), 2, "only the servers not recorded");
    let methods = logged.hook().methods();
    assert_eq!(
        methods
            .iter()
            .filter(|m| **m == exch_directory::layers::Method::DisableAndReset)
            .count(),
        3,
        "no second change"
    );
    for (n, (pwd, dn)) in names.iter().zip(before) {
        let a = read(n.clone()).await;
        assert_eq!((a.pwd_last_set, a.dn), (pwd, dn), "{n} changed again");
    }
    for u in &created {
        ad.delete(&u.dn).await.unwrap();
    }
}

/// A report as versions before the merge wrote it: skip reasons and failure kinds as text,
/// no `causes`.
const OLD_REPORT: &str = r#"{
  "outcome": "Partial", "account": "CN=u0,CN=Users,DC=lab,DC=example,DC=test",
  "user": "u0@lab.example.test", "started": "2026-11-29T10:00:00Z", "elapsed": 1200,
  "steps": [],
  "actions": [{"action": "Disable", "outcome": "Applied", "error": null, "done_earlier": false}],
  "domain_controllers": [],
  "servers": [
    {"server": "EX01", "fqdn": "ex01.lab.example.test", "outcome": {"status": "skipped",
     "reason": "flush proven in an earlier run"}, "probes": [], "elapsed": 0},
    {"server": "EX02", "fqdn": "ex02.lab.example.test", "outcome": {"status": "failed",
     "kind": "Unreachable", "error": "connection refused", "attempts": 3}, "probes": [],
     "elapsed": 5},
    {"server": "EX03", "fqdn": "ex03.lab.example.test", "outcome": {"status": "skipped",
     "reason": "not started: the run deadline (2s) was reached"}, "probes": [], "elapsed": 0}
  ],
  "reasons": ["servers not proven flushed: EX02, EX03"],
  "servers_to_retry": ["EX02", "EX03"], "cancelled": false, "security": []
}"#;

#[tokio::test]
async fn a_report_written_before_the_merge_reads_and_resumes() {
    let old: Report = serde_json::from_str(OLD_REPORT).unwrap();
    let outcome = |i: usize| old.servers[i].outcome.clone();
    assert_eq!(
        outcome(0),
        ServerOutcome::Skipped {
            reason: SkipReason::ProvenEarlier
        }
    );
    assert!(matches!(
        outcome(1),
        ServerOutcome::Failed {
            kind: FailureKind::Unreachable,
            ..
        }
    ));
    assert!(matches!(
        outcome(2),
        ServerOutcome::Skipped { reason } if reason.is_retried()
    ));
    let dir = InMemoryDirectory::new();
    users(&dir, 1);
    // What the earlier run did.
    let u0 = dir
        .find_account(&UserRef::parse("u0@lab.example.test").unwrap())
        .await
        .unwrap();
    dir.disable_account(&u0).await.unwrap();
    let flusher = RecordingFlusher::new();
    let r = Remediation::builder()
        .directory(Arc::new(dir.clone()))
        .flusher(Arc::new(flusher.clone()))
        .user("u0@lab.example.test")
        .disable()
        .servers(servers())
        .timeouts(timeouts())
        .resume(old)
        .build()
        .unwrap();
    let plan = r.plan().await.unwrap();
    assert!(plan.actions[0].done_earlier);
    // The disable was done earlier; this run changes nothing, so EX01 stays proven.
    let report = r.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(flushed(&flusher), ["EX02", "EX03"]);
    // And the new form reads back as written (durations are kept in milliseconds).
    let json = serde_json::to_string(&report).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
}
