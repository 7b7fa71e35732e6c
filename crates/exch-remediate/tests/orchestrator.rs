//! The orchestrator against the in-memory fakes: step order, bounded concurrency (proved with a
//! gate the test releases, no sleeps), cancellation, partial failure and resume, secrets.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::layers::{Hook as DirHook, Layered as DirLayered};
use exch_directory::{AuthResult, Directory, DirectoryError, Dn, InMemoryDirectory, Operation};
use exch_iis::layers::{Hook as FlushHook, Layered as FlushLayered};
use exch_iis::{FlushOperation, Gate, IisError, RecordingFlusher};
use exch_remediate::{
    Event, FailureKind, NewPassword, Outcome, Remediation, RetryPolicy, ServerOutcome, SkipReason,
    Strategy, Timeouts,
};
use secrecy::SecretString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shared call log: directory and flusher calls in the order they happened.
type Log = Arc<Mutex<Vec<String>>>;

/// A hook of both layers ([`exch_directory::layers`], [`exch_iis::layers`]) that writes one
/// log: directory changes and DC reads, and flushes, in the order they happened.
#[derive(Debug, Clone, Default)]
struct Order(Log);

impl Order {
    fn note(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
}

#[async_trait]
impl DirHook for Order {
    async fn before(&self, op: Operation, object: &str) -> Result<(), DirectoryError> {
        match op {
            Operation::DisableAccount => self.note("disable".into()),
            Operation::ResetPassword => self.note("reset".into()),
            // `DN on DC`: the DC is what matters here.
            Operation::AccountOn => {
                let dc = object.rsplit(" on ").next().unwrap_or(object);
                self.note(format!("read:{dc}"));
            }
            _ => {}
        }
        Ok(())
    }
}

#[async_trait]
impl FlushHook for Order {
    async fn before(&self, server: &ExchangeServer, op: &FlushOperation) -> Result<(), IisError> {
        if matches!(op, FlushOperation::Flush(_)) {
            self.note(format!("flush:{}", server.name));
        }
        Ok(())
    }
}

/// Waits (yielding: the test runtime is single-threaded) until `done` holds, for at most
/// 10 s.
async fn until(what: &str, done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still waiting for {what}"));
}

/// How many flushes `f` was asked for.
fn flush_calls(f: &RecordingFlusher) -> usize {
    f.calls()
        .iter()
        .filter(|c| matches!(c.operation, FlushOperation::Flush(_)))
        .count()
}

/// `n` flushes parked at the gate and `started` asked for in all.
async fn parked(f: &RecordingFlusher, gate: &Gate, n: usize, started: usize) {
    until(&format!("{n} parked of {started}"), || {
        gate.waiting() == n && flush_calls(f) == started
    })
    .await;
}

struct Lab {
    dir: InMemoryDirectory,
}

fn lab(servers: usize) -> Lab {
    let dir = InMemoryDirectory::new();
    dir.add_user("bob", "bob@lab.example.test", "Old-Passw0rd!");
    for i in 0..servers {
        dir.add_exchange_server(
            ExchangeServer::new(format!("EX{i:02}"), format!("ex{i:02}.lab.example.test"))
                .with_version(ExchangeVersion::new(15, 2, 1258))
                .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS)
                .with_site("Default-First-Site-Name"),
        );
    }
    dir.add_exchange_server(
        ExchangeServer::new("EDGE1", "edge1.dmz.example.test")
            .with_version(ExchangeVersion::new(15, 2, 1258))
            .with_roles(ServerRoles::EDGE),
    );
    Lab { dir }
}

fn fast_timeouts() -> Timeouts {
    Timeouts::default()
        .with_converge(Duration::from_secs(5))
        .with_converge_poll(Duration::from_millis(5))
        .with_per_server(Duration::from_secs(5))
        .with_directory(Duration::from_secs(5))
}

#[tokio::test]
async fn no_flush_before_every_dc_shows_the_change() {
    let l = lab(3);
    l.dir.add_domain_controller("DC1", Duration::ZERO);
    l.dir
        .add_domain_controller("DC2", Duration::from_millis(80));
    let order = Order::default();
    let dir = Arc::new(DirLayered::new(l.dir.clone(), order.clone()));
    let flusher = Arc::new(FlushLayered::new(RecordingFlusher::new(), order.clone()));
    let r = Remediation::builder()
        .directory(dir)
        .flusher(flusher)
        .user("bob@lab.example.test")
        .disable()
        .timeouts(fast_timeouts())
        .build()
        .unwrap();
    let plan = r.plan().await.unwrap();
    assert_eq!(
        plan.flushed_servers().count(),
        3,
        "Edge is skipped: {}",
        plan.summary()
    );
    assert!(
        plan.summary()
            .contains("flush: recycle the catalog's pools; parallel, at most 64 servers at once"),
        "the summary speaks plainly: {}",
        plan.summary()
    );
    let report = r.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    let log = order.0.lock().unwrap().clone();
    let first_flush = log.iter().position(|e| e.starts_with("flush:")).unwrap();
    let disable = log.iter().position(|e| e == "disable").unwrap();
    let dc2 = report
        .domain_controllers
        .iter()
        .find(|d| d.dc == "DC2")
        .unwrap();
    assert!(dc2.reads > 1, "DC2 lag was not observed: {dc2:?}");
    let last_dc2 = log.iter().rposition(|e| e == "read:DC2").unwrap();
    assert!(
        disable < last_dc2 && last_dc2 < first_flush,
        "order violated: {log:?}"
    );
    assert!(report.domain_controllers.iter().all(|d| d.converged));
}

#[tokio::test]
async fn parallel_never_exceeds_max_in_flight() {
    let l = lab(10);
    let (flusher, gate) = RecordingFlusher::gated();
    let r = Arc::new(
        Remediation::builder()
            .directory(Arc::new(l.dir.clone()))
            .flusher(Arc::new(flusher.clone()))
            .user("LAB\\bob")
            .disable()
            .strategy(Strategy::Parallel { max_in_flight: 3 })
            .timeouts(fast_timeouts())
            .build()
            .unwrap(),
    );
    let plan = r.plan().await.unwrap();
    let run = tokio::spawn({
        let r = r.clone();
        async move { r.execute(&plan).await }
    });
    // Fill the limit, then release one at a time: each release lets exactly one more start.
    for i in 0..7 {
        parked(&flusher, &gate, 3, 3 + i).await;
        gate.release(1);
    }
    gate.release(3);
    let report = run.await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(gate.max_in_flight(), 3);
}

#[tokio::test]
async fn rolling_flushes_one_batch_at_a_time() {
    let l = lab(5);
    let (flusher, gate) = RecordingFlusher::gated();
    let r = Arc::new(
        Remediation::builder()
            .directory(Arc::new(l.dir.clone()))
            .flusher(Arc::new(flusher.clone()))
            .user("bob")
            .disable()
            .strategy(Strategy::Rolling {
                batch: 2,
                pause: Duration::ZERO,
            })
            .timeouts(fast_timeouts())
            .build()
            .unwrap(),
    );
    let plan = r.plan().await.unwrap();
    let run = tokio::spawn({
        let r = r.clone();
        async move { r.execute(&plan).await }
    });
    parked(&flusher, &gate, 2, 2).await;
    gate.release(1);
    // The batch is not done: nothing new starts while one of its servers is still in flight.
    until("one of the batch done", || gate.in_flight() == 1).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(flush_calls(&flusher), 2);
    gate.release(1);
    parked(&flusher, &gate, 2, 4).await;
    gate.release(2);
    parked(&flusher, &gate, 1, 5).await;
    gate.release(1);
    let report = run.await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(gate.max_in_flight(), 2);
    let names: Vec<&str> = report.servers.iter().map(|s| s.server.as_str()).collect();
    assert_eq!(names, ["EDGE1", "EX00", "EX01", "EX02", "EX03", "EX04"]);
}

#[tokio::test]
async fn cancellation_leaves_a_report_of_what_was_done() {
    let l = lab(6);
    let (flusher, gate) = RecordingFlusher::gated();
    let r = Arc::new(
        Remediation::builder()
            .directory(Arc::new(l.dir.clone()))
            .flusher(Arc::new(flusher.clone()))
            .user("bob@lab.example.test")
            .disable()
            .strategy(Strategy::Parallel { max_in_flight: 2 })
            .timeouts(fast_timeouts())
            .build()
            .unwrap(),
    );
    let plan = r.plan().await.unwrap();
    let cancel = r.cancellation();
    let run = tokio::spawn({
        let r = r.clone();
        async move { r.execute(&plan).await }
    });
    parked(&flusher, &gate, 2, 2).await;
    cancel.cancel();
    gate.release(2);
    let report = run.await.unwrap();
    assert!(report.cancelled);
    assert_eq!(report.outcome, Outcome::Partial);
    let flushed = report
        .servers
        .iter()
        .filter(|s| s.outcome.is_proven())
        .count();
    let cancelled = report
        .servers
        .iter()
        .filter(
            |s| matches!(&s.outcome, ServerOutcome::Skipped { reason } if *reason == SkipReason::Cancelled),
        )
        .count();
    assert_eq!((flushed, cancelled), (2, 4), "{}", report.summary());
    assert_eq!(report.servers_to_retry.len(), 4);
    assert!(l
        .dir
        .account(&Dn(report.account.clone().unwrap()))
        .unwrap()
        .is_disabled());
}

#[tokio::test]
async fn a_failing_server_gives_partial_and_a_rerun_finishes_the_job() {
    let l = lab(4);
    let flusher = RecordingFlusher::new().with_error(
        "EX02",
        IisError::Unreachable {
            server: "EX02".into(),
            endpoint: "http://ex02.lab.example.test:5985/wsman".into(),
            detail: "connection refused".into(),
            source: None,
        },
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let build = |resume: Option<exch_remediate::Report>, tx| {
        let mut b = Remediation::builder()
            .directory(Arc::new(l.dir.clone()))
            .flusher(Arc::new(flusher.clone()))
            .user("bob@lab.example.test")
            .disable()
            .reset_password(NewPassword::Given(SecretString::from("N3w-Secret!x-2026")))
            .retry(RetryPolicy {
                attempts: 2,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(1),
            })
            .timeouts(fast_timeouts())
            .events(tx);
        if let Some(r) = resume {
            b = b.resume(r);
        }
        b.build().unwrap()
    };
    let r = build(None, tx.clone());
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Partial);
    assert_eq!(report.servers_to_retry, ["EX02"]);
    let ex02 = report.servers.iter().find(|s| s.server == "EX02").unwrap();
    assert!(
        matches!(&ex02.outcome, ServerOutcome::Failed { kind, attempts: 2, .. } if *kind == FailureKind::Unreachable),
        "{ex02:?}"
    );
    let mut retries = 0;
    while let Ok(e) = rx.try_recv() {
        if matches!(e, Event::Retry { .. }) {
            retries += 1;
        }
    }
    assert_eq!(retries, 1);

    // The fault is cleared; the rerun resumes: no second reset, only EX02 is flushed.
    flusher.set_error("EX02", None);
    let before = flusher.calls().len();
    let dn = Dn(report.account.clone().unwrap());
    let pwd_before = l.dir.account(&dn).unwrap().pwd_last_set;
    let r2 = build(Some(report), tx);
    let plan2 = r2.plan().await.unwrap();
    assert!(
        plan2.actions.iter().all(|a| a.done_earlier),
        "{}",
        plan2.summary()
    );
    let report2 = r2.execute(&plan2).await;
    assert_eq!(report2.outcome, Outcome::Revoked, "{}", report2.summary());
    let flushed: Vec<String> = flusher.calls()[before..]
        .iter()
        .filter(|c| matches!(c.operation, FlushOperation::Flush(_)))
        .map(|c| c.server.clone())
        .collect();
    assert_eq!(flushed, ["EX02"]);
    assert_eq!(
        l.dir.account(&dn).unwrap().pwd_last_set,
        pwd_before,
        "password was reset twice"
    );
}

#[tokio::test]
async fn a_dc_that_never_converges_is_named_and_blocks_revoked() {
    let l = lab(2);
    l.dir.add_domain_controller("DC1", Duration::ZERO);
    l.dir
        .add_domain_controller("DC9", Duration::from_secs(3600));
    let mut t = fast_timeouts();
    t.converge = Duration::from_millis(150);
    let r = Remediation::builder()
        .directory(Arc::new(l.dir.clone()))
        .flusher(Arc::new(RecordingFlusher::new()))
        .user("bob")
        .disable()
        .timeouts(t)
        .build()
        .unwrap();
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Partial);
    let dc9 = report
        .domain_controllers
        .iter()
        .find(|d| d.dc == "DC9")
        .unwrap();
    assert!(!dc9.converged && dc9.reads > 1);
    assert!(
        report
            .reasons
            .iter()
            .any(|r| r.contains("1/2 domain controllers")),
        "{:?}",
        report.reasons
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_changes() {
    let l = lab(1);
    let flusher = Arc::new(RecordingFlusher::new());
    let base = || {
        Remediation::builder()
            .directory(Arc::new(l.dir.clone()))
            .flusher(flusher.clone())
    };
    let e = base().user("bob").build().unwrap_err();
    assert!(e.to_string().contains("nothing to do"), "{e}");
    let e = base().user("bo*b)(uid=*").disable().build().unwrap_err();
    assert!(e.to_string().contains("sAMAccountName"), "{e}");
    let e = base()
        .user("bob")
        .disable()
        .strategy(Strategy::Parallel { max_in_flight: 0 })
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let e = base()
        .user("bob")
        .disable()
        .include_server("EX99")
        .build()
        .unwrap()
        .plan()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("EX99"), "{e}");
    let nobody = base()
        .user("nobody@lab.example.test")
        .disable()
        .build()
        .unwrap()
        .plan()
        .await
        .unwrap_err();
    assert!(
        nobody.to_string().contains("nobody@lab.example.test"),
        "{nobody}"
    );
    assert!(l.dir.accounts().iter().all(|a| !a.is_disabled()));
}

#[tokio::test]
async fn secrets_never_reach_debug_plans_or_reports() {
    let l = lab(2);
    let secret = "Sup3r-Secret-NEW-pw!";
    let old = "Old-Passw0rd!";
    let r = Remediation::builder()
        .directory(Arc::new(l.dir.clone()))
        .flusher(Arc::new(RecordingFlusher::new()))
        .user("bob@lab.example.test")
        .reset_password(NewPassword::Given(SecretString::from(secret)))
        .timeouts(fast_timeouts())
        .build()
        .unwrap();
    let plan = r.plan().await.unwrap();
    let report = r.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    let texts = [
        format!("{r:?}"),
        format!("{plan:?}"),
        serde_json::to_string(&plan).unwrap(),
        format!("{report:?}"),
        serde_json::to_string(&report).unwrap(),
        report.summary(),
    ];
    for t in texts {
        assert!(
            !t.contains(secret) && !t.contains(old),
            "secret leaked: {t}"
        );
    }
    assert_eq!(
        l.dir
            .authenticate("bob@lab.example.test", &SecretString::from(secret))
            .await
            .unwrap(),
        AuthResult::Success
    );
}
