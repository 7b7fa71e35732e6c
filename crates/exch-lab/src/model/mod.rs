//! The IIS model of one simulated Exchange server: application pools, worker processes with
//! logon-token caches, overlapped recycling, `iisreset`, and the faults a test can inject.
//!
//! [`IisServer`] is what the HTTP endpoints ([`crate::iis`]) authenticate through and what the
//! PowerShell interpreter drives through [`crate::host::IisHost`].

mod counters;
mod host_impl;
mod reset;
mod worker;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exch_core::{ExchangeVersion, Protocol};
use exch_directory::{AuthResult, Directory};
use secrecy::SecretString;
use tokio::sync::watch;

use counters::Counters;
pub use counters::IisCounters;
pub use worker::DEFAULT_TOKEN_TTL_SECS;
use worker::{CacheKey, InFlight, OwaSession, Worker};

use crate::catalog;
use crate::clock::{lock, LabClock};

/// Message of a pool whose recycle is made to fail with [`IisServer::fail_recycle`] and no
/// message of its own (a real one: a worker that cannot be replaced because a file is locked).
pub const DEFAULT_RECYCLE_FAULT: &str = "The process cannot access the file because it is being used by another process. (Exception from HRESULT: 0x80070020)";

/// IIS's answer when a stopped pool (or a stopped IIS) is asked to recycle or stop.
pub(crate) const INVALID_OBJECT: &str =
    "The object identifier does not represent a valid object. (Exception from HRESULT: 0x800710D8)";

/// Timing of one simulated server. All values are real time (not scaled by the lab clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IisTiming {
    /// How long `Restart-WebAppPool` / `appcmd recycle` takes before the new worker serves.
    pub recycle_latency: Duration,
    /// How long `iisreset` keeps every pool stopped (requests get 503 meanwhile).
    pub reset_window: Duration,
    /// How long stopping IIS waits for requests in flight (`iisreset /timeout`): then a
    /// plain `iisreset` kills the workers (their requests fail) and `/noforce` gives up.
    pub stop_timeout: Duration,
}

impl Default for IisTiming {
    fn default() -> Self {
        IisTiming {
            recycle_latency: Duration::from_millis(20),
            reset_window: Duration::from_millis(200),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// Where a logon's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenSource {
    /// The worker's token cache (the directory was not asked).
    Cache,
    /// A logon against the directory (cache miss).
    Directory,
}

/// The outcome of one request as IIS decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Logon {
    /// Authenticated (HTTP 200).
    Accepted {
        /// The pool that served it.
        pool: &'static str,
        /// The worker that served it.
        pid: u32,
        /// Cache hit or directory logon.
        source: TokenSource,
    },
    /// Refused by the directory (HTTP 401, or the OWA logon page).
    Refused(AuthResult),
    /// IIS or the pool is stopped (HTTP 503).
    Unavailable,
    /// This Exchange version does not serve the protocol (HTTP 404).
    NotServed,
    /// OWA: the session cookie is unknown to the serving worker (redirect to the logon page).
    SessionUnknown,
    /// The directory could not be asked (HTTP 500).
    DirectoryFailed(String),
}

impl Logon {
    /// Whether the request was authenticated.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Logon::Accepted { .. })
    }
}

/// An OWA forms logon: the outcome, and the session id for the `cadata` cookie on success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwaLogon {
    /// The outcome.
    pub logon: Logon,
    /// Session id (only when accepted).
    pub session: Option<String>,
}

struct Pool {
    name: &'static str,
    started: bool,
    current: Option<Arc<Worker>>,
    /// Workers replaced by an overlapped recycle that still finish requests in flight.
    draining: Vec<Arc<Worker>>,
}

impl Pool {
    fn prune(&mut self) {
        self.draining.retain(|w| w.in_flight() > 0);
    }

    fn retire_current(&mut self) {
        if let Some(old) = self.current.take() {
            if old.in_flight() > 0 {
                self.draining.push(old);
            }
        }
    }
}

struct State {
    pools: Vec<Pool>,
    /// W3SVC / WAS running (false during an `iisreset` window or after `/stop`).
    running: bool,
    /// `HKLM\…\InetInfo\Parameters\UserTokenTTL`, `None` when absent.
    token_ttl: Option<u32>,
}

impl State {
    fn pool_mut(&mut self, name: &str) -> Option<&mut Pool> {
        self.pools
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

pub(crate) struct Inner {
    name: String,
    version: ExchangeVersion,
    directory: Arc<dyn Directory>,
    clock: LabClock,
    state: Mutex<State>,
    timing: Mutex<IisTiming>,
    /// Lower-cased pool name → error message of its failing recycle.
    recycle_faults: Mutex<BTreeMap<String, String>>,
    counters: Counters,
    hold: watch::Sender<bool>,
    /// Serializes `iisreset` runs.
    reset_lock: tokio::sync::Mutex<()>,
}

/// The IIS model of one simulated Exchange server. Cheap to clone (shared state).
#[derive(Clone)]
pub struct IisServer {
    inner: Arc<Inner>,
}

impl fmt::Debug for IisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IisServer")
            .field("name", &self.inner.name)
            .field("version", &self.inner.version.to_string())
            .finish_non_exhaustive()
    }
}

impl IisServer {
    /// A running server of `version` with every pool of that version started. `token_ttl` is
    /// the initial `UserTokenTTL` registry value (`None` = absent, IIS then uses 900 s).
    pub fn new(
        name: impl Into<String>,
        version: ExchangeVersion,
        directory: Arc<dyn Directory>,
        clock: LabClock,
        token_ttl: Option<u32>,
        timing: IisTiming,
    ) -> Self {
        let now = clock.now();
        let pools = catalog::pools(version)
            .iter()
            .map(|name| Pool {
                name,
                started: true,
                current: Some(Worker::start(now, token_ttl)),
                draining: Vec::new(),
            })
            .collect();
        IisServer {
            inner: Arc::new(Inner {
                name: name.into(),
                version,
                directory,
                clock,
                state: Mutex::new(State {
                    pools,
                    running: true,
                    token_ttl,
                }),
                timing: Mutex::new(timing),
                recycle_faults: Mutex::new(BTreeMap::new()),
                counters: Counters::default(),
                hold: watch::Sender::new(false),
                reset_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Server name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Exchange version.
    pub fn version(&self) -> ExchangeVersion {
        self.inner.version
    }

    /// The lab clock this server runs on.
    pub fn clock(&self) -> &LabClock {
        &self.inner.clock
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> IisCounters {
        self.inner.counters.snapshot()
    }

    /// Current timing.
    pub fn timing(&self) -> IisTiming {
        lock(&self.inner.timing).clone()
    }

    /// Replaces the timing (takes effect for the next recycle / reset).
    pub fn set_timing(&self, timing: IisTiming) {
        *lock(&self.inner.timing) = timing;
    }

    /// Makes every recycle of `pool` fail with `message` (default [`DEFAULT_RECYCLE_FAULT`]),
    /// leaving its worker and cache in place, until [`IisServer::clear_recycle_fault`].
    pub fn fail_recycle(&self, pool: &str, message: Option<&str>) {
        lock(&self.inner.recycle_faults).insert(
            pool.to_ascii_lowercase(),
            message.unwrap_or(DEFAULT_RECYCLE_FAULT).to_owned(),
        );
    }

    /// Lets `pool` recycle again.
    pub fn clear_recycle_fault(&self, pool: &str) {
        lock(&self.inner.recycle_faults).remove(&pool.to_ascii_lowercase());
    }

    /// Pools whose recycle currently fails.
    pub fn recycle_faults(&self) -> Vec<String> {
        lock(&self.inner.recycle_faults).keys().cloned().collect()
    }

    /// The pool that serves `protocol` on this server.
    pub fn pool_for(&self, protocol: Protocol) -> Option<&'static str> {
        catalog::pool_for(self.inner.version, protocol)
    }

    /// Pid of the worker serving new requests in `pool`, if it runs.
    pub fn current_pid(&self, pool: &str) -> Option<u32> {
        let mut state = lock(&self.inner.state);
        if !state.running {
            return None;
        }
        state
            .pool_mut(pool)
            .and_then(|p| p.current.as_ref().map(|w| w.pid))
    }

    /// Requests running in `pool` right now (draining workers included).
    pub fn in_flight(&self, pool: &str) -> usize {
        let mut state = lock(&self.inner.state);
        state.pool_mut(pool).map_or(0, |p| {
            p.current
                .iter()
                .chain(&p.draining)
                .map(|w| w.in_flight())
                .sum()
        })
    }

    /// Workers of `pool` that were replaced and still finish requests in flight.
    pub fn draining_pids(&self, pool: &str) -> Vec<u32> {
        let mut state = lock(&self.inner.state);
        state.pool_mut(pool).map_or_else(Vec::new, |p| {
            p.prune();
            p.draining.iter().map(|w| w.pid).collect()
        })
    }

    /// Tokens cached by the current worker of `pool`.
    pub fn cached_tokens(&self, pool: &str) -> usize {
        let mut state = lock(&self.inner.state);
        state
            .pool_mut(pool)
            .and_then(|p| p.current.as_ref().map(|w| w.cached_tokens()))
            .unwrap_or(0)
    }

    /// Holds every request after it has authenticated, until the returned guard is released
    /// or dropped (lets a test keep a request in flight across a recycle, without sleeps).
    pub fn hold_requests(&self) -> RequestHold {
        self.inner.hold.send_replace(true);
        RequestHold {
            hold: self.inner.hold.clone(),
        }
    }

    /// Authenticates a Basic-auth request for `protocol` the way IIS does: the pool's current
    /// worker looks up its token cache, and on a miss asks the directory.
    pub async fn authenticate(
        &self,
        protocol: Protocol,
        user: &str,
        password: &SecretString,
    ) -> Logon {
        let Some(pool) = self.pool_for(protocol) else {
            return Logon::NotServed;
        };
        let ticket = match self.enter(pool) {
            Ok(t) => t,
            Err(l) => return l,
        };
        let logon = self.logon_on(&ticket, pool, user, password).await;
        self.finish(&ticket, logon).await
    }

    /// OWA forms logon (`POST /owa/auth.owa`): on success the serving worker opens a session.
    pub async fn owa_logon(&self, user: &str, password: &SecretString) -> OwaLogon {
        let pool = catalog::pool_for(self.inner.version, Protocol::Owa).unwrap_or("");
        let ticket = match self.enter(pool) {
            Ok(t) => t,
            Err(logon) => {
                return OwaLogon {
                    logon,
                    session: None,
                }
            }
        };
        let logon = self.logon_on(&ticket, pool, user, password).await;
        let session = logon.is_accepted().then(|| {
            ticket.worker.open_session(OwaSession {
                user: user.to_owned(),
                password: password.clone(),
            })
        });
        let logon = self.finish(&ticket, logon).await;
        OwaLogon { logon, session }
    }

    /// An OWA request with a session cookie: the worker must know the session, and its
    /// credentials must still log on (from the cache, or the directory after expiry).
    pub async fn owa_request(&self, session: &str) -> Logon {
        let pool = catalog::pool_for(self.inner.version, Protocol::Owa).unwrap_or("");
        let ticket = match self.enter(pool) {
            Ok(t) => t,
            Err(l) => return l,
        };
        let Some((user, password)) = ticket.worker.session(session) else {
            return Logon::SessionUnknown;
        };
        let logon = self.logon_on(&ticket, pool, &user, &password).await;
        if matches!(logon, Logon::Refused(_)) {
            ticket.worker.close_session(session);
        }
        self.finish(&ticket, logon).await
    }

    /// Binds a request to the current worker of `pool`, or refuses it when IIS or the pool
    /// is stopped.
    fn enter(&self, pool: &str) -> Result<InFlight, Logon> {
        let mut state = lock(&self.inner.state);
        if !state.running {
            drop(state);
            self.inner.counters.refused_during_reset.inc();
            return Err(Logon::Unavailable);
        }
        match state.pool_mut(pool).and_then(|p| p.current.as_ref()) {
            Some(worker) => Ok(InFlight::enter(worker)),
            None => {
                drop(state);
                self.inner.counters.refused_pool_stopped.inc();
                Err(Logon::Unavailable)
            }
        }
    }

    async fn logon_on(
        &self,
        ticket: &InFlight,
        pool: &'static str,
        user: &str,
        password: &SecretString,
    ) -> Logon {
        let key = CacheKey::new(user, password);
        let worker = &ticket.worker;
        if worker.cache_hit(&key, self.inner.clock.now()) {
            self.inner.counters.logons_from_cache.inc();
            return Logon::Accepted {
                pool,
                pid: worker.pid,
                source: TokenSource::Cache,
            };
        }
        match self.inner.directory.authenticate(user, password).await {
            Ok(AuthResult::Success) => {
                worker.cache_insert(key, self.inner.clock.now());
                self.inner.counters.logons_from_directory.inc();
                Logon::Accepted {
                    pool,
                    pid: worker.pid,
                    source: TokenSource::Directory,
                }
            }
            Ok(refused) => {
                self.inner.counters.logons_refused.inc();
                tracing::debug!(server = %self.inner.name, pool, ?refused, "logon refused");
                Logon::Refused(refused)
            }
            Err(e) => {
                self.inner.counters.directory_errors.inc();
                Logon::DirectoryFailed(e.to_string())
            }
        }
    }

    /// The rest of the request: waits while requests are held, and fails it if its worker
    /// was killed by a forced `iisreset` meanwhile.
    async fn finish(&self, ticket: &InFlight, logon: Logon) -> Logon {
        let mut hold = self.inner.hold.subscribe();
        // The sender lives in `self`, so this cannot fail while we run.
        let _ = hold.wait_for(|held| !*held).await;
        if ticket.worker.is_terminated() {
            self.inner.counters.killed_in_flight.inc();
            return Logon::Unavailable;
        }
        logon
    }

    /// Overlapped recycle: after the server's recycle latency a new worker with an empty
    /// cache takes every new request; the old one finishes what it is running, then exits.
    pub async fn recycle(&self, pool: &str) -> Result<(), String> {
        let fault = lock(&self.inner.recycle_faults)
            .get(&pool.to_ascii_lowercase())
            .cloned();
        self.check_pool(pool)?;
        if let Some(message) = fault {
            self.inner.counters.recycle_failures.inc();
            return Err(message);
        }
        let latency = lock(&self.inner.timing).recycle_latency;
        tokio::time::sleep(latency).await;
        let now = self.inner.clock.now();
        let mut state = lock(&self.inner.state);
        let ttl = state.token_ttl;
        let running = state.running;
        let p = state.pool_mut(pool).ok_or_else(|| missing_pool(pool))?;
        if !running || !p.started {
            return Err(INVALID_OBJECT.to_owned());
        }
        p.prune();
        p.retire_current();
        p.current = Some(Worker::start(now, ttl));
        drop(state);
        self.inner.counters.recycles.inc();
        tracing::debug!(server = %self.inner.name, pool, "recycled");
        Ok(())
    }

    /// `Start-WebAppPool`: a started pool stays as it is.
    pub fn start_pool(&self, pool: &str) -> Result<(), String> {
        let now = self.inner.clock.now();
        let mut state = lock(&self.inner.state);
        let ttl = state.token_ttl;
        let p = state.pool_mut(pool).ok_or_else(|| missing_pool(pool))?;
        if !p.started {
            p.started = true;
            p.current = Some(Worker::start(now, ttl));
        }
        Ok(())
    }

    /// `Stop-WebAppPool`: requests in flight finish, new ones get 503.
    pub fn stop_pool(&self, pool: &str) -> Result<(), String> {
        let mut state = lock(&self.inner.state);
        let p = state.pool_mut(pool).ok_or_else(|| missing_pool(pool))?;
        if !p.started {
            return Err(INVALID_OBJECT.to_owned());
        }
        p.started = false;
        p.prune();
        p.retire_current();
        Ok(())
    }

    fn check_pool(&self, pool: &str) -> Result<(), String> {
        let mut state = lock(&self.inner.state);
        let running = state.running;
        let p = state.pool_mut(pool).ok_or_else(|| missing_pool(pool))?;
        if running && p.started {
            Ok(())
        } else {
            Err(INVALID_OBJECT.to_owned())
        }
    }
}

fn missing_pool(pool: &str) -> String {
    format!("Cannot find path 'IIS:\\AppPools\\{pool}' because it does not exist.")
}

/// Keeps requests held (see [`IisServer::hold_requests`]); releases them when dropped.
#[derive(Debug)]
#[must_use = "requests are released when the hold is dropped"]
pub struct RequestHold {
    hold: watch::Sender<bool>,
}

impl RequestHold {
    /// Lets held requests finish.
    pub fn release(self) {}
}

impl Drop for RequestHold {
    fn drop(&mut self) {
        self.hold.send_replace(false);
    }
}
