//! A conformance suite for [`CacheFlusher`] backends: plain async functions that panic with a
//! message naming the server when a backend misbehaves (like object_store's `integration`).
//!
//! Run them against your own backend, against [`RecordingFlusher`](crate::RecordingFlusher),
//! or against [`WinRmFlusher`](crate::WinRmFlusher) and a real or simulated server.
//!
//! **Unstable: may change in any release; for backend authors' tests.** Compiled only with the
//! `conformance` feature, which you enable in your `[dev-dependencies]`:
//! `exch-iis = { version = "…", features = ["conformance"] }`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
//! use exch_iis::{catalog, conformance, RecordingFlusher};
//!
//! let server = ExchangeServer::new("EX01", "ex01.corp.example")
//!     .with_version(ExchangeVersion::new(15, 1, 2507))
//!     .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS);
//! let fixture = conformance::Fixture::new(server.clone(), catalog::default_pools(&server));
//! conformance::run_all(&RecordingFlusher::new(), &fixture).await;
//! # }
//! ```

use std::time::Duration;

use exch_core::{AppPool, ExchangeServer};

use crate::{CacheFlusher, FlushMethod, FlushReport, IisError};

/// The server under test and what the suite may expect of it.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The server.
    pub server: ExchangeServer,
    /// Pools that exist on the server and that the default flush must recycle.
    pub expected_pools: Vec<AppPool>,
    /// A pool name that does not exist on the server.
    pub absent_pool: AppPool,
    /// Whether the suite may run `iisreset /noforce` (it interrupts every user).
    pub allow_iisreset: bool,
    /// Whether the suite may write `UserTokenTTL` (it restores it afterwards; an absent value
    /// is restored as 900, IIS's default).
    pub allow_token_ttl_write: bool,
}

impl Fixture {
    /// A fixture that allows everything, with `ExchRevokeNoSuchPool` as the absent pool.
    pub fn new(server: ExchangeServer, expected_pools: Vec<AppPool>) -> Self {
        Fixture {
            server,
            expected_pools,
            absent_pool: AppPool::from_static("ExchRevokeNoSuchPool"),
            allow_iisreset: true,
            allow_token_ttl_write: true,
        }
    }

    fn name(&self) -> &str {
        &self.server.name
    }
}

fn same(a: &AppPool, b: &AppPool) -> bool {
    a.as_str().eq_ignore_ascii_case(b.as_str())
}

fn ok<T>(fx: &Fixture, what: &str, r: Result<T, IisError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{}: {what} failed: {e}", fx.name()),
    }
}

fn assert_report_basics(fx: &Fixture, what: &str, report: &FlushReport) {
    assert_eq!(
        report.server,
        fx.server.name,
        "{}: {what}: report names another server",
        fx.name()
    );
    for p in &report.pools {
        if p.proven {
            for w in &p.after {
                assert!(
                    !p.before.iter().any(|b| b.pid == w.pid),
                    "{}: {what}: pool {} is proven but worker {} served before",
                    fx.name(),
                    p.pool,
                    w.pid
                );
                assert!(
                    w.started >= report.requested_at,
                    "{}: {what}: pool {} is proven but worker {} started before the request",
                    fx.name(),
                    p.pool,
                    w.pid
                );
            }
            assert!(
                p.error.is_none(),
                "{}: {what}: proven with an error",
                fx.name()
            );
        }
    }
}

/// `app_pools` lists every expected pool, once, with its workers.
pub async fn app_pools_list_expected(flusher: &dyn CacheFlusher, fx: &Fixture) {
    let pools = ok(fx, "app_pools", flusher.app_pools(&fx.server).await);
    for want in &fx.expected_pools {
        let n = pools.iter().filter(|p| same(&p.name, want)).count();
        assert_eq!(n, 1, "{}: app_pools lists {want} {n} times", fx.name());
    }
    assert!(
        !pools.iter().any(|p| same(&p.name, &fx.absent_pool)),
        "{}: app_pools lists the absent pool {}",
        fx.name(),
        fx.absent_pool
    );
}

/// The default flush recycles every expected pool and proves it.
pub async fn default_flush_is_proven(flusher: &dyn CacheFlusher, fx: &Fixture) {
    let report = ok(
        fx,
        "default flush",
        flusher.flush(&fx.server, &FlushMethod::default()).await,
    );
    assert_report_basics(fx, "default flush", &report);
    assert_eq!(
        report.method,
        FlushMethod::RecycleCatalogPools,
        "{}: default flush: the report names another method",
        fx.name()
    );
    for want in &fx.expected_pools {
        let p = report.pools.iter().find(|p| same(&p.pool, want));
        let Some(p) = p else {
            panic!(
                "{}: default flush did not recycle {want}: {report:?}",
                fx.name()
            );
        };
        assert!(
            p.proven,
            "{}: default flush of {want} is not proven: {p:?}",
            fx.name()
        );
    }
    assert!(
        report.is_proven(),
        "{}: default flush not proven: {report:?}",
        fx.name()
    );
}

/// Named pools: the absent one is reported in `missing_pools`, the present one recycled.
pub async fn named_flush_reports_missing(flusher: &dyn CacheFlusher, fx: &Fixture) {
    let Some(first) = fx.expected_pools.first() else {
        return;
    };
    let method = FlushMethod::RecycleAppPools(vec![first.clone(), fx.absent_pool.clone()]);
    let report = ok(fx, "named flush", flusher.flush(&fx.server, &method).await);
    assert_report_basics(fx, "named flush", &report);
    assert_eq!(
        report.pools.len(),
        1,
        "{}: named flush: {report:?}",
        fx.name()
    );
    assert!(same(&report.pools[0].pool, first) && report.pools[0].proven);
    assert!(
        report
            .missing_pools
            .iter()
            .any(|m| same(m, &fx.absent_pool)),
        "{}: named flush did not report {} as missing: {report:?}",
        fx.name(),
        fx.absent_pool
    );
}

/// Naming only pools that do not exist is [`IisError::PoolNotFound`] naming the server.
pub async fn only_missing_pools_is_pool_not_found(flusher: &dyn CacheFlusher, fx: &Fixture) {
    let method = FlushMethod::RecycleAppPools(vec![fx.absent_pool.clone()]);
    match flusher.flush(&fx.server, &method).await {
        Err(e @ IisError::PoolNotFound { .. }) => {
            assert_eq!(e.server(), Some(fx.name()), "{e}");
            assert!(e.to_string().contains(fx.absent_pool.as_str()), "{e}");
        }
        other => panic!("{}: expected PoolNotFound, got {other:?}", fx.name()),
    }
}

/// `RecycleAppPools` with no pool is [`IisError::InvalidInput`], not the catalog's pools and
/// not an empty success ([`FlushMethod::RecycleCatalogPools`] is the catalog's pools).
pub async fn empty_pool_list_is_invalid_input(flusher: &dyn CacheFlusher, fx: &Fixture) {
    let method = FlushMethod::RecycleAppPools(Vec::new());
    match flusher.flush(&fx.server, &method).await {
        Err(IisError::InvalidInput { .. }) => {}
        other => panic!(
            "{}: an empty pool list must be refused as InvalidInput, got {other:?}",
            fx.name()
        ),
    }
}

/// `iisreset /noforce` reports every expected pool with new (or no) workers.
pub async fn iisreset_noforce_is_proven(flusher: &dyn CacheFlusher, fx: &Fixture) {
    if !fx.allow_iisreset {
        return;
    }
    let method = FlushMethod::IisReset { force: false };
    let report = ok(
        fx,
        "iisreset /noforce",
        flusher.flush(&fx.server, &method).await,
    );
    assert_report_basics(fx, "iisreset", &report);
    assert_eq!(report.method, method);
    for want in &fx.expected_pools {
        let p = report.pools.iter().find(|p| same(&p.pool, want));
        assert!(
            p.is_some_and(|p| p.proven),
            "{}: iisreset did not prove {want}: {report:?}",
            fx.name()
        );
    }
}

/// `UserTokenTTL` reads, writes, reads back, and is restored.
pub async fn token_ttl_round_trips(flusher: &dyn CacheFlusher, fx: &Fixture) {
    let before = ok(fx, "token_cache", flusher.token_cache(&fx.server).await);
    if !fx.allow_token_ttl_write {
        return;
    }
    let want = if before.configured == Some(Duration::from_secs(600)) {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(600)
    };
    let set = ok(
        fx,
        "set_token_ttl",
        flusher.set_token_ttl(&fx.server, want).await,
    );
    assert_eq!(set.configured, Some(want), "{}: set_token_ttl", fx.name());
    let read = ok(fx, "token_cache", flusher.token_cache(&fx.server).await);
    assert_eq!(read.configured, Some(want), "{}: read back", fx.name());
    assert!(!read.never_expires());
    let restore = before
        .configured
        .unwrap_or(crate::TokenCacheSettings::DEFAULT_TTL);
    ok(
        fx,
        "restore UserTokenTTL",
        flusher.set_token_ttl(&fx.server, restore).await,
    );
    let bad = flusher
        .set_token_ttl(&fx.server, Duration::from_millis(1500))
        .await;
    assert!(
        matches!(bad, Err(IisError::InvalidInput { .. })),
        "{}: a fractional TTL must be refused before anything is sent: {bad:?}",
        fx.name()
    );
}

/// Every check above, in order.
pub async fn run_all(flusher: &dyn CacheFlusher, fx: &Fixture) {
    app_pools_list_expected(flusher, fx).await;
    default_flush_is_proven(flusher, fx).await;
    named_flush_reports_missing(flusher, fx).await;
    only_missing_pools_is_pool_not_found(flusher, fx).await;
    empty_pool_list_is_invalid_input(flusher, fx).await;
    iisreset_noforce_is_proven(flusher, fx).await;
    token_ttl_round_trips(flusher, fx).await;
}
