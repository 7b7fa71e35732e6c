//! Flush methods and reports.

use chrono::{DateTime, Utc};
use exch_core::AppPool;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How to flush the token caches of one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FlushMethod {
    /// Overlapped recycle of these pools (least disruption). Empty = the catalog's pools for the
    /// server's version and roles, intersected with the pools present.
    RecycleAppPools(Vec<AppPool>),
    /// `iisreset /noforce` (or `iisreset` when `force`): every pool stops; all users reconnect.
    IisReset {
        /// Without `/noforce`.
        force: bool,
    },
}

impl Default for FlushMethod {
    fn default() -> Self {
        FlushMethod::RecycleAppPools(Vec::new())
    }
}

/// `recycle the catalog's pools`, `recycle A, B`, `iisreset /noforce` or `iisreset`.
impl std::fmt::Display for FlushMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushMethod::RecycleAppPools(pools) if pools.is_empty() => {
                f.write_str("recycle the catalog's pools")
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

/// One IIS worker process (w3wp.exe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerProcess {
    /// Process id.
    pub pid: u32,
    /// When it started (server clock, UTC).
    pub started: DateTime<Utc>,
}

/// A pool and its workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPoolState {
    /// The pool.
    pub name: AppPool,
    /// Its state.
    pub state: PoolRunState,
    /// Its worker processes (none until the first request, on real IIS).
    pub workers: Vec<WorkerProcess>,
}

/// What happened to one pool during a flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// What one flush did on one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Whether at least one pool was flushed and every flushed pool is proven. Pools in
    /// [`FlushReport::missing_pools`] do not exist on the server, hold no cache, and do not
    /// count; inspect them separately.
    pub fn is_proven(&self) -> bool {
        !self.pools.is_empty() && self.pools.iter().all(|p| p.proven)
    }
}

/// IIS token cache settings of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCacheSettings {
    /// `UserTokenTTL` as configured; `None` when the value is absent (IIS default: 900 s).
    #[serde(with = "opt_duration_secs")]
    pub configured: Option<Duration>,
}

impl TokenCacheSettings {
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
    }
}
