//! The orchestrator against the in-memory fakes: step order, bounded concurrency (proved with a
//! gate the test releases, no sleeps), cancellation, partial failure and resume, secrets.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use chrono::Utc;
use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::{
    Account, AuthResult, ChangeOutcome, Directory, DirectoryError, Dn, DomainController,
    InMemoryDirectory, UserRef,
};
use exch_iis::{
    AppPoolState, CacheFlusher, FlushMethod, FlushReport, IisError, PoolFlush, PoolRunState,
    TokenCacheSettings, WorkerProcess,
};
use exch_remediate::{
    Event, FailureKind, NewPassword, Outcome, Remediation, RetryPolicy, ServerOutcome, SkipReason,
    Strategy, Timeouts,
};
use secrecy::SecretString;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Shared call log: directory and flusher calls in the order they happened.
type Log = Arc<Mutex<Vec<String>>>;

/// Delegates to an InMemoryDirectory and logs every call.
#[derive(Debug, Clone)]
struct LoggingDirectory {
    inner: InMemoryDirectory,
    log: Log,
}

impl LoggingDirectory {
    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

#[async_trait]
impl Directory for LoggingDirectory {
    async fn find_account(&self, user: &UserRef) -> Result<Account, DirectoryError> {
        self.note("find".into());
        self.inner.find_account(user).await
    }
    async fn disable_account(&self, a: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.note("disable".into());
        self.inner.disable_account(a).await
    }
    async fn enable_account(&self, a: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.inner.enable_account(a).await
    }
    async fn reset_password(
        &self,
        a: &Account,
        p: &SecretString,
    ) -> Result<ChangeOutcome, DirectoryError> {
        self.note("reset".into());
        self.inner.reset_password(a, p).await
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
        let a = self.inner.account_on(dc, dn).await;
        let shows = a.as_ref().map(|a| a.is_disabled()).unwrap_or(false);
        self.note(format!(
            "read:{}:{}",
            dc.name,
            if shows { "disabled" } else { "stale" }
        ));
        a
    }
}

/// A flusher whose flushes wait for permits the test releases; it tracks how many are in
/// flight (exactly, no sleeps) and can fail chosen servers.
#[derive(Debug)]
struct GateFlusher {
    gate: Arc<Semaphore>,
    in_flight: watch::Sender<usize>,
    max_seen: Mutex<usize>,
    failing: Mutex<HashSet<String>>,
    log: Log,
}

impl GateFlusher {
    fn new(log: Log, open: bool) -> Arc<Self> {
        let permits = if open { Semaphore::MAX_PERMITS } else { 0 };
        Arc::new(GateFlusher {
            gate: Arc::new(Semaphore::new(permits)),
            in_flight: watch::channel(0).0,
            max_seen: Mutex::new(0),
            failing: Mutex::new(HashSet::new()),
            log,
        })
    }

    async fn wait_in_flight(&self, n: usize) {
        let mut rx = self.in_flight.subscribe();
        rx.wait_for(|v| *v == n).await.unwrap();
    }
}

fn proven_report(server: &str, method: &FlushMethod) -> FlushReport {
    let now = Utc::now();
    let pools = match method {
        FlushMethod::RecycleAppPools(p) => p.clone(),
        _ => vec![exch_core::AppPool::from_static("DefaultAppPool")],
    };
    FlushReport::new(server, method.clone(), now)
        .with_pools(
            pools
                .into_iter()
                .map(|pool| {
                    PoolFlush::new(
                        pool,
                        vec![WorkerProcess::new(1, now - chrono::Duration::hours(1))],
                        vec![WorkerProcess::new(2, now)],
                        PoolRunState::Started,
                        None,
                        now,
                    )
                })
                .collect(),
        )
        .with_elapsed(Duration::from_millis(1))
}

#[async_trait]
impl CacheFlusher for GateFlusher {
    async fn app_pools(&self, _: &ExchangeServer) -> Result<Vec<AppPoolState>, IisError> {
        Ok(Vec::new())
    }
    async fn flush(
        &self,
        server: &ExchangeServer,
        method: &FlushMethod,
    ) -> Result<FlushReport, IisError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("flush:{}", server.name));
        self.in_flight.send_modify(|v| *v += 1);
        {
            let now = *self.in_flight.borrow();
            let mut m = self.max_seen.lock().unwrap();
            *m = (*m).max(now);
        }
        let permit = self.gate.acquire().await.unwrap();
        permit.forget();
        self.in_flight.send_modify(|v| *v -= 1);
        if self.failing.lock().unwrap().contains(&server.name) {
            return Err(IisError::Unreachable {
                server: server.name.clone(),
                endpoint: format!("http://{}:5985/wsman", server.fqdn),
                detail: "connection refused".into(),
                source: None,
            });
        }
        Ok(proven_report(&server.name, method))
    }
    async fn token_cache(&self, _: &ExchangeServer) -> Result<TokenCacheSettings, IisError> {
        Ok(TokenCacheSettings::new(None))
    }
    async fn set_token_ttl(
        &self,
        _: &ExchangeServer,
        ttl: Duration,
    ) -> Result<TokenCacheSettings, IisError> {
        Ok(TokenCacheSettings::new(Some(ttl)))
    }
}

struct Lab {
    dir: InMemoryDirectory,
    log: Log,
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
    Lab {
        dir,
        log: Arc::new(Mutex::new(Vec::new())),
    }
}

fn fast_timeouts() -> Timeouts {
    Timeouts {
        converge: Duration::from_secs(5),
        converge_poll: Duration::from_millis(5),
        per_server: Duration::from_secs(5),
        directory: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn no_flush_before_every_dc_shows_the_change() {
    let l = lab(3);
    l.dir.add_domain_controller("DC1", Duration::ZERO);
    l.dir
        .add_domain_controller("DC2", Duration::from_millis(80));
    let dir = Arc::new(LoggingDirectory {
        inner: l.dir.clone(),
        log: l.log.clone(),
    });
    let flusher = GateFlusher::new(l.log.clone(), true);
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
    let log = l.log.lock().unwrap().clone();
    let first_flush = log.iter().position(|e| e.starts_with("flush:")).unwrap();
    let disable = log.iter().position(|e| e == "disable").unwrap();
    assert!(
        log.iter().any(|e| e == "read:DC2:stale"),
        "DC2 lag was not observed: {log:?}"
    );
    let last_dc2 = log.iter().rposition(|e| e.starts_with("read:DC2")).unwrap();
    assert_eq!(log[last_dc2], "read:DC2:disabled");
    assert!(
        disable < last_dc2 && last_dc2 < first_flush,
        "order violated: {log:?}"
    );
    assert!(report.domain_controllers.iter().all(|d| d.converged));
}

#[tokio::test]
async fn parallel_never_exceeds_max_in_flight() {
    let l = lab(10);
    let flusher = GateFlusher::new(l.log.clone(), false);
    let r = Arc::new(
        Remediation::builder()
            .directory(Arc::new(l.dir.clone()))
            .flusher(flusher.clone())
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
    for _ in 0..7 {
        flusher.wait_in_flight(3).await;
        flusher.gate.add_permits(1);
    }
    flusher.gate.add_permits(3);
    let report = run.await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(*flusher.max_seen.lock().unwrap(), 3);
}

#[tokio::test]
async fn rolling_flushes_one_batch_at_a_time() {
    let l = lab(5);
    let flusher = GateFlusher::new(l.log.clone(), false);
    let r = Arc::new(
        Remediation::builder()
            .directory(Arc::new(l.dir.clone()))
            .flusher(flusher.clone())
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
    flusher.wait_in_flight(2).await;
    flusher.gate.add_permits(1);
    // The batch is not done: nothing new starts while one of its servers is still in flight.
    flusher.wait_in_flight(1).await;
    assert_eq!(
        l.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("flush:"))
            .count(),
        2
    );
    flusher.gate.add_permits(1);
    flusher.wait_in_flight(2).await;
    flusher.gate.add_permits(2);
    flusher.wait_in_flight(1).await;
    flusher.gate.add_permits(1);
    let report = run.await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(*flusher.max_seen.lock().unwrap(), 2);
    let names: Vec<&str> = report.servers.iter().map(|s| s.server.as_str()).collect();
    assert_eq!(names, ["EDGE1", "EX00", "EX01", "EX02", "EX03", "EX04"]);
}

#[tokio::test]
async fn cancellation_leaves_a_report_of_what_was_done() {
    let l = lab(6);
    let flusher = GateFlusher::new(l.log.clone(), false);
    let r = Arc::new(
        Remediation::builder()
            .directory(Arc::new(l.dir.clone()))
            .flusher(flusher.clone())
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
    flusher.wait_in_flight(2).await;
    cancel.cancel();
    flusher.gate.add_permits(2);
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
    let flusher = GateFlusher::new(l.log.clone(), true);
    flusher.failing.lock().unwrap().insert("EX02".into());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let build = |resume: Option<exch_remediate::Report>, tx| {
        let mut b = Remediation::builder()
            .directory(Arc::new(l.dir.clone()))
            .flusher(flusher.clone())
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
    flusher.failing.lock().unwrap().clear();
    l.log.lock().unwrap().clear();
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
    let flushed: Vec<String> = l
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.starts_with("flush:"))
        .cloned()
        .collect();
    assert_eq!(flushed, ["flush:EX02"]);
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
        .flusher(GateFlusher::new(l.log.clone(), true))
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
    let flusher = GateFlusher::new(l.log.clone(), true);
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
        .flusher(GateFlusher::new(l.log.clone(), true))
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
