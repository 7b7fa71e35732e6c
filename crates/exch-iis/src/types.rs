//! Flush methods and reports.

use chrono::{DateTime, Utc};
use exch_core::AppPool;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How to flush the token caches of one server.
///
/// Serialized with serde's default enum form: `"RecycleCatalogPools"`,
/// `{"RecycleAppPools":["MSExchangeOWAAppPool"]}`, `{"IisReset":{"force":false}}`. The form
/// written before `RecycleCatalogPools` existed, `{"RecycleAppPools":[]}`, still reads as
/// [`FlushMethod::RecycleCatalogPools`] (what it meant then).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "FlushMethodForm")]
#[non_exhaustive]
pub enum FlushMethod {
    /// Overlapped recycle (least disruption) of the [catalog](crate::catalog)'s default pools
    /// for the server's version and roles that exist on the server; the others are listed in
    /// [`FlushReport::missing_pools`]. The default.
    #[default]
    RecycleCatalogPools,
    /// Overlapped recycle of exactly these pools. At least one: flushers refuse an empty list
    /// with [`IisError::InvalidInput`](crate::IisError::InvalidInput) (see
    /// [`FlushMethod::validate`]); use [`FlushMethod::RecycleCatalogPools`] for the catalog's.
    RecycleAppPools(Vec<AppPool>),
    /// `iisreset /noforce` (or `iisreset` when `force`): every pool stops; all users reconnect.
    IisReset {
        /// Without `/noforce`.
        force: bool,
    },
}

impl FlushMethod {
    /// Checks the method before anything is sent: [`IisError::InvalidInput`] for
    /// `RecycleAppPools` with no pool. Every flusher of this crate calls it first.
    ///
    /// ```
    /// use exch_iis::{FlushMethod, IisError};
    ///
    /// assert!(FlushMethod::RecycleCatalogPools.validate().is_ok());
    /// let err = FlushMethod::RecycleAppPools(Vec::new()).validate().unwrap_err();
    /// assert!(matches!(err, IisError::InvalidInput { .. }));
    /// assert!(err.to_string().contains("RecycleCatalogPools"), "{err}");
    /// ```
    ///
    /// [`IisError::InvalidInput`]: crate::IisError::InvalidInput
    pub fn validate(&self) -> Result<(), crate::IisError> {
        match self {
            FlushMethod::RecycleAppPools(pools) if pools.is_empty() => {
                Err(crate::IisError::InvalidInput {
                    what: "flush method RecycleAppPools".into(),
                    reason: "the list of pools is empty; name at least one pool, or use \
                             FlushMethod::RecycleCatalogPools to recycle the catalog's pools \
                             of each server"
                        .into(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// What serde reads: today's variants, with an empty `RecycleAppPools` (how earlier versions
/// wrote the catalog's pools) read as [`FlushMethod::RecycleCatalogPools`].
#[derive(Deserialize)]
enum FlushMethodForm {
    RecycleCatalogPools,
    RecycleAppPools(Vec<AppPool>),
    IisReset { force: bool },
}

impl From<FlushMethodForm> for FlushMethod {
    fn from(form: FlushMethodForm) -> Self {
        match form {
            FlushMethodForm::RecycleCatalogPools => FlushMethod::RecycleCatalogPools,
            FlushMethodForm::RecycleAppPools(pools) if pools.is_empty() => {
                FlushMethod::RecycleCatalogPools
            }
            FlushMethodForm::RecycleAppPools(pools) => FlushMethod::RecycleAppPools(pools),
            FlushMethodForm::IisReset { force } => FlushMethod::IisReset { force },
        }
    }
}

/// `recycle the catalog's pools`, `recycle A, B`, `iisreset /noforce` or `iisreset`
/// (`recycle no pool` for the empty list that flushers refuse).
impl std::fmt::Display for FlushMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushMethod::RecycleCatalogPools => f.write_str("recycle the catalog's pools"),
            FlushMethod::RecycleAppPools(pools) if pools.is_empty() => {
                f.write_str("recycle no pool")
            }
            FlushMethod::RecycleAppPools(pools) => {
                let names: Vec<&str> = pools.iter().map(|p| p.as_str()).collect();
                write!(f, "recycle {}", names.join(", "))
            }
            FlushMethod::IisReset { force: false } => f.write_str("iisreset /noforce"),
            FlushMethod::IisReset { force: true } => f.write_str("iisreset"),
        }
    }
}

/// Running state of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PoolRunState {
    /// Started.
    Started,
    /// Starting.
    Starting,
    /// Stopped.
    Stopped,
    /// Stopping.
    Stopping,
    /// Unknown.
    Unknown,
}

impl PoolRunState {
    /// Parses the state as IIS prints it (`Started`, `Stopped`, …; case-insensitive).
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "started" | "1" => PoolRunState::Started,
            "starting" | "0" => PoolRunState::Starting,
            "stopped" | "3" => PoolRunState::Stopped,
            "stopping" | "2" => PoolRunState::Stopping,
            _ => PoolRunState::Unknown,
        }
    }
}

/// One IIS worker process (w3wp.exe). Built with [`WorkerProcess::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerProcess {
    /// Process id.
    pub pid: u32,
    /// When it started (server clock, UTC).
    pub started: DateTime<Utc>,
}

impl WorkerProcess {
    /// The worker `pid`, started at `started` (server clock).
    pub fn new(pid: u32, started: DateTime<Utc>) -> Self {
        WorkerProcess { pid, started }
    }
}

/// A pool and its workers. Built with [`AppPoolState::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppPoolState {
    /// The pool.
    pub name: AppPool,
    /// Its state.
    pub state: PoolRunState,
    /// Its worker processes (none until the first request, on real IIS).
    pub workers: Vec<WorkerProcess>,
}

impl AppPoolState {
    /// The pool `name` in `state`, served by `workers`.
    pub fn new(name: AppPool, state: PoolRunState, workers: Vec<WorkerProcess>) -> Self {
        AppPoolState {
            name,
            state,
            workers,
        }
    }
}

/// What happened to one pool during a flush. Built with [`PoolFlush::new`], which computes
/// [`PoolFlush::proven`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PoolFlush {
    /// The pool.
    pub pool: AppPool,
    /// Workers before the flush.
    pub before: Vec<WorkerProcess>,
    /// Workers after the flush.
    pub after: Vec<WorkerProcess>,
    /// State after the flush.
    pub state: PoolRunState,
    /// The error the server reported for this pool, if any.
    pub error: Option<String>,
    /// Whether the flush is proven: no error, and no worker that existed before the request
    /// still serves (every worker after it started at or after `requested_at`).
    pub proven: bool,
}

impl PoolFlush {
    /// A pool's result, with [`PoolFlush::proven`] computed by [`PoolFlush::is_flush_proven`].
    pub fn new(
        pool: AppPool,
        before: Vec<WorkerProcess>,
        after: Vec<WorkerProcess>,
        state: PoolRunState,
        error: Option<String>,
        requested_at: DateTime<Utc>,
    ) -> Self {
        let proven = Self::is_flush_proven(&before, &after, error.as_deref(), requested_at);
        PoolFlush {
            pool,
            before,
            after,
            state,
            error,
            proven,
        }
    }

    /// The proof rule: no error, no worker that served before the request still serves, and
    /// every serving worker started at or after `requested_at` (server clock).
    ///
    /// A pool with no worker after the flush is proven too: real IIS starts workers on demand,
    /// so an idle pool after a recycle or `iisreset` has no worker — and no cached token. Only
    /// serving workers count; the draining worker of an overlapped recycle takes no new logons
    /// and is not listed.
    pub fn is_flush_proven(
        before: &[WorkerProcess],
        after: &[WorkerProcess],
        error: Option<&str>,
        requested_at: DateTime<Utc>,
    ) -> bool {
        error.is_none()
            && after
                .iter()
                .all(|w| w.started >= requested_at && !before.iter().any(|b| b.pid == w.pid))
    }
}

/// What one flush did on one server. Built with [`FlushReport::new`] and the `with_…` methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FlushReport {
    /// Server name.
    pub server: String,
    /// The method used.
    pub method: FlushMethod,
    /// Server clock when the flush was requested.
    pub requested_at: DateTime<Utc>,
    /// Per pool.
    pub pools: Vec<PoolFlush>,
    /// Pools that were asked for but do not exist on the server (reported, not skipped silently).
    pub missing_pools: Vec<AppPool>,
    /// Wall time of the whole operation as the client saw it.
    #[serde(with = "exch_core::serde_ms::duration")]
    pub elapsed: Duration,
    /// WinRM HTTP round trips used (0 for fakes).
    pub round_trips: u32,
}

impl FlushReport {
    /// A report of `method` on `server`, requested at `requested_at` (server clock): no pool,
    /// no missing pool, no time, no round trip until set with the `with_…` methods.
    ///
    /// ```
    /// use exch_core::AppPool;
    /// use exch_iis::{FlushMethod, FlushReport, PoolFlush, PoolRunState, WorkerProcess};
    ///
    /// let at = chrono::Utc::now();
    /// let owa = AppPool::from_static("MSExchangeOWAAppPool");
    /// let old = WorkerProcess::new(4, at - chrono::Duration::hours(1));
    /// let new = WorkerProcess::new(8, at);
    /// let pool = PoolFlush::new(owa, vec![old], vec![new], PoolRunState::Started, None, at);
    /// let report = FlushReport::new("EX01", FlushMethod::RecycleCatalogPools, at)
    ///     .with_pools(vec![pool])
    ///     .with_elapsed(std::time::Duration::from_millis(250));
    /// assert!(report.is_proven());
    /// ```
    pub fn new(
        server: impl Into<String>,
        method: FlushMethod,
        requested_at: DateTime<Utc>,
    ) -> Self {
        FlushReport {
            server: server.into(),
            method,
            requested_at,
            pools: Vec::new(),
            missing_pools: Vec::new(),
            elapsed: Duration::ZERO,
            round_trips: 0,
        }
    }

    /// With these per-pool results.
    pub fn with_pools(mut self, pools: Vec<PoolFlush>) -> Self {
        self.pools = pools;
        self
    }

    /// With these pools asked for but absent from the server.
    pub fn with_missing_pools(mut self, missing_pools: Vec<AppPool>) -> Self {
        self.missing_pools = missing_pools;
        self
    }

    /// With this wall time of the whole operation.
    pub fn with_elapsed(mut self, elapsed: Duration) -> Self {
        self.elapsed = elapsed;
        self
    }

    /// With this many WinRM HTTP round trips.
    pub fn with_round_trips(mut self, round_trips: u32) -> Self {
        self.round_trips = round_trips;
        self
    }

    /// Whether at least one pool was flushed and every flushed pool is proven. Pools in
    /// [`FlushReport::missing_pools`] do not exist on the server, hold no cache, and do not
    /// count; inspect them separately.
    pub fn is_proven(&self) -> bool {
        !self.pools.is_empty() && self.pools.iter().all(|p| p.proven)
    }
}

/// IIS token cache settings of a server. Built with [`TokenCacheSettings::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenCacheSettings {
    /// `UserTokenTTL` as configured; `None` when the value is absent (IIS default: 900 s).
    #[serde(with = "opt_duration_secs")]
    pub configured: Option<Duration>,
}

impl TokenCacheSettings {
    /// Settings with `UserTokenTTL` = `configured` (`None`: absent).
    pub fn new(configured: Option<Duration>) -> Self {
        TokenCacheSettings { configured }
    }

    /// IIS's default when `UserTokenTTL` is absent: 15 minutes.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(900);

    /// The TTL in effect. `Duration::ZERO` means tokens are **never** evicted by time (IIS
    /// treats 0 as "no expiry"): only a recycle or `iisreset` flushes them.
    pub fn effective_ttl(&self) -> Duration {
        self.configured.unwrap_or(Self::DEFAULT_TTL)
    }

    /// Whether cached tokens never expire (`UserTokenTTL` = 0).
    pub fn never_expires(&self) -> bool {
        self.effective_ttl().is_zero()
    }
}

/// Serde for a [`std::time::Duration`] as whole seconds (`#[serde(with = "…")]`).
pub(crate) mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

mod opt_duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::FlushMethod;
    use exch_core::AppPool;

    #[test]
    fn flush_method_reads_as_words() {
        assert_eq!(
            FlushMethod::default().to_string(),
            "recycle the catalog's pools"
        );
        let pools = ["MSExchangeOWAAppPool", "MSExchangeSyncAppPool"]
            .map(|p| AppPool::new(p).expect("valid pool"));
        assert_eq!(
            FlushMethod::RecycleAppPools(pools.to_vec()).to_string(),
            "recycle MSExchangeOWAAppPool, MSExchangeSyncAppPool"
        );
        assert_eq!(
            FlushMethod::IisReset { force: false }.to_string(),
            "iisreset /noforce"
        );
        assert_eq!(
            FlushMethod::IisReset { force: true }.to_string(),
            "iisreset"
        );
        assert_eq!(
            FlushMethod::RecycleAppPools(Vec::new()).to_string(),
            "recycle no pool"
        );
    }

    #[test]
    fn the_catalogs_pools_are_the_default() {
        assert_eq!(FlushMethod::default(), FlushMethod::RecycleCatalogPools);
    }

    /// Reports and journals written before `RecycleCatalogPools` existed said
    /// `{"RecycleAppPools":[]}` for the catalog's pools; they still read, as that.
    #[test]
    fn an_empty_pool_list_written_by_earlier_versions_reads_as_the_catalogs_pools() {
        let old: FlushMethod =
            serde_json::from_str(r#"{"RecycleAppPools":[]}"#).expect("earlier form");
        assert_eq!(old, FlushMethod::RecycleCatalogPools);

        let owa = AppPool::new("MSExchangeOWAAppPool").expect("valid pool");
        for (method, json) in [
            (FlushMethod::RecycleCatalogPools, r#""RecycleCatalogPools""#),
            (
                FlushMethod::RecycleAppPools(vec![owa]),
                r#"{"RecycleAppPools":["MSExchangeOWAAppPool"]}"#,
            ),
            (
                FlushMethod::IisReset { force: false },
                r#"{"IisReset":{"force":false}}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&method).expect("serialize"), json);
            let back: FlushMethod = serde_json::from_str(json).expect("deserialize");
            assert_eq!(back, method, "{json}");
        }
        assert!(serde_json::from_str::<FlushMethod>(r#""RecycleEverything""#).is_err());
    }

    #[test]
    fn an_empty_pool_list_is_invalid_input_naming_the_remedy() {
        assert!(FlushMethod::RecycleCatalogPools.validate().is_ok());
        assert!(FlushMethod::IisReset { force: true }.validate().is_ok());
        let err = FlushMethod::RecycleAppPools(Vec::new())
            .validate()
            .expect_err("an empty list is refused");
        assert!(
            matches!(&err, crate::IisError::InvalidInput { what, .. } if what.contains("RecycleAppPools")),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("empty") && text.contains("FlushMethod::RecycleCatalogPools"),
            "{text}"
        );
    }
}
