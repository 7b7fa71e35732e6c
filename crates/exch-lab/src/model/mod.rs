//! The IIS model of one simulated Exchange server: application pools, worker processes with
//! logon-token caches and mailbox-settings caches, overlapped recycling, `iisreset`, and the
//! faults a test can inject.
//!
//! [`IisServer`] is what the HTTP endpoints ([`crate::iis`]) authenticate through and what the
//! PowerShell interpreter drives through [`crate::host::IisHost`].

mod cas;
mod counters;
mod host_impl;
mod recycle;
mod reset;
mod session;
mod worker;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exch_core::{ExchangeVersion, Protocol};
use exch_directory::{AuthResult, Directory};
use secrecy::SecretString;
use tokio::sync::watch;

pub use cas::{cas_block, CasBlock, DEFAULT_MAILBOX_SETTINGS_LIFETIME};
use counters::Counters;
pub use counters::{CasRefusals, IisCounters};
pub use worker::DEFAULT_TOKEN_TTL_SECS;
use worker::{CacheKey, InFlight, Worker};

use crate::catalog::{self, RecycleConfig, VdirAuth};
use crate::clock::{lock, LabClock};
use crate::mailbox::{ExchangeCounters, ExchangeShell, MailboxStore};
pub use session::SessionKey;

/// Message of a pool whose recycle is made to fail with [`IisServer::fail_recycle`] and no
/// message of its own (a real one: a worker that cannot be replaced because a file is locked).
pub const DEFAULT_RECYCLE_FAULT: &str = "The process cannot access the file because it is being used by another process. (Exception from HRESULT: 0x80070020)";

/// IIS's answer when a stopped pool (or a stopped IIS) is asked to recycle or stop.
pub(crate) const INVALID_OBJECT: &str =
    "The object identifier does not represent a valid object. (Exception from HRESULT: 0x800710D8)";

/// Timing of one simulated server. All values are real time (not scaled by the lab clock),
/// except `mailbox_settings_lifetime`, which is lab time like the token cache's TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IisTiming {
    /// How long `Restart-WebAppPool` / `appcmd recycle` takes to return (WAS accepted the
    /// request). The recycle itself goes on after it returns (see `worker_startup`).
    pub recycle_latency: Duration,
    /// How long a new worker takes to start, from the recycle request (overlapped pools) or
    /// from the old worker's exit (stop-then-start pools). Until then an overlapped pool's old
    /// worker keeps taking new requests — from its token cache.
    pub worker_startup: Duration,
    /// How long `iisreset` keeps every pool stopped (requests get 503 meanwhile).
    pub reset_window: Duration,
    /// How long stopping IIS waits for requests in flight (`iisreset /timeout`): then a
    /// plain `iisreset` kills the workers (their requests fail) and `/noforce` gives up.
    pub stop_timeout: Duration,
    /// How long a worker keeps what it read of a logon user's mailbox (CAS settings and
    /// devices) before it reads the store again — **lab time**, from the read, not renewed by
    /// use; `Duration::ZERO` reads the store on every request. Default
    /// [`DEFAULT_MAILBOX_SETTINGS_LIFETIME`] (15 min: Exchange's process-wide AD caches,
    /// see [`CasBlock`]'s module). Read on every request, so a change applies at once.
    pub mailbox_settings_lifetime: Duration,
}

impl Default for IisTiming {
    fn default() -> Self {
        IisTiming {
            recycle_latency: Duration::from_millis(20),
            worker_startup: Duration::from_millis(50),
            reset_window: Duration::from_millis(200),
            stop_timeout: Duration::from_secs(5),
            mailbox_settings_lifetime: DEFAULT_MAILBOX_SETTINGS_LIFETIME,
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
    /// A Kerberos service ticket (`Authorization: Negotiate <AP-REQ>`), opened with the
    /// server's service key: neither the cache nor the directory (nor the KDC) was asked.
    Ticket,
    /// A TCP connection that authenticated earlier with Windows authentication (HTTP.sys
    /// keeps that identity per connection): nothing was checked but the CAS settings.
    Connection,
}

impl TokenSource {
    /// `cache`, `directory`, `ticket` or `connection` (the `X-Lab-Token` header).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Cache => "cache",
            TokenSource::Directory => "directory",
            TokenSource::Ticket => "ticket",
            TokenSource::Connection => "connection",
        }
    }
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
    /// Authenticated, then refused by the mailbox's CAS settings as the serving worker knows
    /// them (HTTP 403; see [`crate::iis`]).
    ProtocolDisabled {
        /// The pool that served it.
        pool: &'static str,
        /// The worker that served it.
        pid: u32,
        /// Which setting refused it.
        reason: CasBlock,
    },
    /// IIS or the pool is stopped (HTTP 503).
    Unavailable,
    /// This Exchange version does not serve the protocol (HTTP 404).
    NotServed,
    /// OWA / ECP: the session cookie cannot be read (another certificate, tampered, or not a
    /// session) — redirect to the logon page.
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

/// An OWA forms logon: the outcome, and the `cadata` cookie value on success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwaLogon {
    /// The outcome.
    pub logon: Logon,
    /// The `cadata` cookie value: the credentials, encrypted with the server certificate's
    /// key ([`SessionKey`]); only when accepted.
    pub session: Option<String>,
}

struct Pool {
    name: &'static str,
    config: RecycleConfig,
    started: bool,
    /// The worker taking new requests; `None` until the first request (on-demand start).
    current: Option<Arc<Worker>>,
    /// Stopping workers (replaced or stopped) that still finish requests in flight, until
    /// the pool's shutdown time limit; then they are killed.
    draining: Vec<Arc<Worker>>,
    /// A recycle was requested and its new worker is not ready yet.
    recycling: bool,
}

impl Pool {
    fn prune(&mut self) {
        self.draining
            .retain(|w| w.in_flight() > 0 && !w.is_terminated());
    }

    /// Moves the current worker to the stopping ones; returns it when it still has requests
    /// (the caller arms its shutdown time limit).
    fn retire_current(&mut self) -> Option<Arc<Worker>> {
        let old = self.current.take()?;
        if old.in_flight() > 0 {
            self.draining.push(Arc::clone(&old));
            Some(old)
        } else {
            None
        }
    }
}

struct State {
    pools: Vec<Pool>,
    /// W3SVC / WAS running (false during an `iisreset` window or after `/stop`).
    running: bool,
    /// `HKLM\…\InetInfo\Parameters\UserTokenTTL`, `None` when absent.
    token_ttl: Option<u32>,
    /// Virtual directories whose authentication differs from the lab's default.
    vdir_auth: BTreeMap<&'static str, VdirAuth>,
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
    /// Woken on every worker change (queued requests, recycle waiters).
    changed: tokio::sync::Notify,
    /// The key of the server certificate that protects `cadata` cookies.
    session_key: Mutex<SessionKey>,
    /// Its Exchange Management Shell (the fleet's mailbox store, its own counters).
    exchange: Mutex<ExchangeShell>,
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
    /// A running server of `version` with every pool of that version started and serving (a
    /// server that has been in use: every pool has a worker). `token_ttl` is the initial
    /// `UserTokenTTL` registry value (`None` = absent, IIS then uses 900 s). Pools recycle as
    /// the default configuration says ([`catalog::recycle_config`]); `cadata` cookies are
    /// protected by a key of its own until [`IisServer::set_session_key`] gives it the
    /// certificate it shares with other servers.
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
                config: catalog::recycle_config(name),
                started: true,
                current: Some(Worker::start(now, token_ttl)),
                draining: Vec::new(),
                recycling: false,
            })
            .collect();
        let name = name.into();
        let exchange =
            ExchangeShell::new(MailboxStore::new(), name.clone(), version, clock.clone());
        IisServer {
            inner: Arc::new(Inner {
                name,
                version,
                directory,
                clock,
                state: Mutex::new(State {
                    pools,
                    running: true,
                    token_ttl,
                    vdir_auth: BTreeMap::new(),
                }),
                timing: Mutex::new(timing),
                recycle_faults: Mutex::new(BTreeMap::new()),
                counters: Counters::default(),
                hold: watch::Sender::new(false),
                reset_lock: tokio::sync::Mutex::new(()),
                changed: tokio::sync::Notify::new(),
                session_key: Mutex::new(SessionKey::random()),
                exchange: Mutex::new(exchange),
            }),
        }
    }

    /// The mailbox store its Exchange cmdlets work on (a store of its own until
    /// [`IisServer::set_mailbox_store`]; a fleet gives all its servers one).
    pub fn mailboxes(&self) -> MailboxStore {
        lock(&self.inner.exchange).store().clone()
    }

    /// Makes its Exchange cmdlets work on `store` (its counters go on).
    pub fn set_mailbox_store(&self, store: MailboxStore) {
        let mut shell = lock(&self.inner.exchange);
        *shell = shell.with_store(store);
    }

    /// Its Exchange Management Shell.
    pub fn exchange_shell(&self) -> ExchangeShell {
        lock(&self.inner.exchange).clone()
    }

    /// What its Exchange cmdlets counted.
    pub fn exchange_counters(&self) -> ExchangeCounters {
        lock(&self.inner.exchange).counters()
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
    /// worker (started on demand, or awaited while a stop-then-start recycle runs) looks up its
    /// token cache, and on a miss asks the directory. An authenticated user who has a mailbox
    /// is then checked against its CAS settings as that worker has them cached
    /// ([`Logon::ProtocolDisabled`]).
    pub async fn authenticate(
        &self,
        protocol: Protocol,
        user: &str,
        password: &SecretString,
    ) -> Logon {
        self.authenticate_device(protocol, user, password, None)
            .await
    }

    /// [`IisServer::authenticate`] for a request that names its ActiveSync device (the
    /// `DeviceId` query parameter): the device rules of the mailbox apply too.
    pub async fn authenticate_device(
        &self,
        protocol: Protocol,
        user: &str,
        password: &SecretString,
        device_id: Option<&str>,
    ) -> Logon {
        let Some(pool) = self.pool_for(protocol) else {
            return Logon::NotServed;
        };
        let ticket = match self.enter(pool).await {
            Ok(t) => t,
            Err(l) => return l,
        };
        let logon = self.logon_on(&ticket, pool, user, password).await;
        let logon = self.admit(&ticket, protocol, user, device_id, logon);
        self.finish(&ticket, logon).await
    }

    /// A request for `protocol` by `user`, already authenticated with Windows authentication
    /// (`source`: a Kerberos ticket just accepted with the service key, or the TCP
    /// connection's earlier logon, [`TokenSource::Ticket`] / [`TokenSource::Connection`]):
    /// HTTP.sys authenticated it, so the worker neither looks at its token cache nor asks the
    /// directory. It still runs in the pool's current worker (started on demand, 503 while
    /// stopped) and is checked against the user's mailbox as that worker has it cached — the
    /// only thing a recycle changes for it.
    pub async fn windows_request(
        &self,
        protocol: Protocol,
        user: &str,
        device_id: Option<&str>,
        source: TokenSource,
    ) -> Logon {
        let Some(pool) = self.pool_for(protocol) else {
            return Logon::NotServed;
        };
        let ticket = match self.enter(pool).await {
            Ok(t) => t,
            Err(l) => return l,
        };
        match source {
            TokenSource::Ticket => self.inner.counters.logons_by_ticket.inc(),
            TokenSource::Connection => self
                .inner
                .counters
                .requests_on_authenticated_connections
                .inc(),
            TokenSource::Cache | TokenSource::Directory => {}
        }
        let logon = Logon::Accepted {
            pool,
            pid: ticket.worker.pid,
            source,
        };
        let logon = self.admit(&ticket, protocol, user, device_id, logon);
        self.finish(&ticket, logon).await
    }

    /// Counts an `Authorization: Negotiate` token the endpoint refused.
    pub(crate) fn ticket_refused(&self) {
        self.inner.counters.tickets_refused.inc();
    }

    /// OWA forms logon (`POST /owa/auth.owa`): the credentials are checked like a Basic logon
    /// on the OWA pool and, on success, returned encrypted as the `cadata` cookie value.
    /// Nothing is kept in the worker: Exchange's forms module re-authenticates every request
    /// from the cookie. The forms module checks credentials only: `OWAEnabled` is checked
    /// when the cookie is used ([`IisServer::cookie_request`]).
    pub async fn owa_logon(&self, user: &str, password: &SecretString) -> OwaLogon {
        let pool = catalog::pool_for(self.inner.version, Protocol::Owa).unwrap_or("");
        let ticket = match self.enter(pool).await {
            Ok(t) => t,
            Err(logon) => {
                return OwaLogon {
                    logon,
                    session: None,
                }
            }
        };
        let logon = self.logon_on(&ticket, pool, user, password).await;
        let session = logon
            .is_accepted()
            .then(|| lock(&self.inner.session_key).seal(user, password));
        let logon = self.finish(&ticket, logon).await;
        OwaLogon { logon, session }
    }

    /// An OWA request with a `cadata` cookie: decrypted with the server certificate's key (any
    /// server sharing the certificate can), then its credentials log on like a Basic request
    /// on the OWA pool (from the token cache, or the directory on a miss).
    pub async fn owa_request(&self, session: &str) -> Logon {
        self.cookie_request(Protocol::Owa, session).await
    }

    /// A forms request to `protocol`'s virtual directory (`Owa` or `Ecp`, which shares OWA's
    /// forms logon) with a `cadata` cookie, authenticated by that protocol's pool, then
    /// checked against `OWAEnabled` / `ECPEnabled` as that pool's worker has them cached.
    pub async fn cookie_request(&self, protocol: Protocol, session: &str) -> Logon {
        let Some(pool) = catalog::pool_for(self.inner.version, protocol)
            .filter(|_| matches!(protocol, Protocol::Owa | Protocol::Ecp))
        else {
            return Logon::NotServed;
        };
        let Some((user, password)) = lock(&self.inner.session_key).open(session) else {
            return Logon::SessionUnknown;
        };
        let ticket = match self.enter(pool).await {
            Ok(t) => t,
            Err(l) => return l,
        };
        let logon = self.logon_on(&ticket, pool, &user, &password).await;
        let logon = self.admit(&ticket, protocol, &user, None, logon);
        self.finish(&ticket, logon).await
    }

    /// How `protocol`'s virtual directory authenticates: Microsoft's default
    /// ([`catalog::default_auth`]: EWS, MAPI and OAB Windows only) unless changed with
    /// [`IisServer::set_vdir_auth`].
    pub fn vdir_auth(&self, protocol: Protocol) -> VdirAuth {
        let state = lock(&self.inner.state);
        state
            .vdir_auth
            .get(protocol.as_str())
            .copied()
            .unwrap_or_else(|| catalog::default_auth(protocol))
    }

    /// Sets how `protocol`'s virtual directory authenticates, e.g.
    /// [`VdirAuth::BasicAndWindows`] on EWS or MAPI as deployments that still allow Basic
    /// there have it (Microsoft's default is Windows only, [`catalog::default_auth`]). Forms
    /// applies to OWA and ECP only.
    pub fn set_vdir_auth(&self, protocol: Protocol, auth: VdirAuth) -> Result<(), String> {
        let forms_page = matches!(protocol, Protocol::Owa | Protocol::Ecp);
        if (auth == VdirAuth::Forms) != forms_page {
            return Err(format!(
                "the lab serves {protocol} with {} only",
                if forms_page {
                    "forms"
                } else {
                    "Basic or Windows authentication"
                }
            ));
        }
        lock(&self.inner.state)
            .vdir_auth
            .insert(protocol.as_str(), auth);
        Ok(())
    }

    /// The key that protects this server's `cadata` cookies.
    pub fn session_key(&self) -> SessionKey {
        lock(&self.inner.session_key).clone()
    }

    /// Gives the server the certificate key it shares with other servers (a fleet's front
    /// ends share one certificate, so a cookie from one works on all of them).
    pub fn set_session_key(&self, key: SessionKey) {
        *lock(&self.inner.session_key) = key;
    }

    /// Binds a request to the current worker of `pool`: starts one on demand when the pool has
    /// none, waits (like a request queued in HTTP.sys) while a stop-then-start recycle has no
    /// worker yet, and refuses it (503) when IIS or the pool is stopped, or after 30 s queued.
    async fn enter(&self, pool: &str) -> Result<InFlight, Logon> {
        let queued_until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let now = self.inner.clock.now();
                let mut state = lock(&self.inner.state);
                let running = state.running;
                let ttl = state.token_ttl;
                let Some(p) = state.pool_mut(pool).filter(|p| running && p.started) else {
                    drop(state);
                    let refused = if running {
                        &self.inner.counters.refused_pool_stopped
                    } else {
                        &self.inner.counters.refused_during_reset
                    };
                    refused.inc();
                    return Err(Logon::Unavailable);
                };
                if let Some(worker) = &p.current {
                    return Ok(InFlight::enter(worker));
                }
                if !p.recycling {
                    let worker = Worker::start(now, ttl);
                    let ticket = InFlight::enter(&worker);
                    p.current = Some(worker);
                    drop(state);
                    self.inner.counters.workers_started_on_demand.inc();
                    return Ok(ticket);
                }
            }
            if tokio::time::timeout_at(queued_until, changed)
                .await
                .is_err()
            {
                self.inner.counters.refused_pool_stopped.inc();
                return Err(Logon::Unavailable);
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

    /// The CAS check after an accepted logon: the worker's cached copy of the user's mailbox
    /// (read from the fleet's store on a miss) decides; a user without a mailbox, a protocol
    /// without a setting, and every other outcome pass unchanged.
    fn admit(
        &self,
        ticket: &InFlight,
        protocol: Protocol,
        user: &str,
        device_id: Option<&str>,
        logon: Logon,
    ) -> Logon {
        let Logon::Accepted { pool, pid, .. } = logon else {
            return logon;
        };
        if !cas::is_checked(protocol) {
            return logon;
        }
        let lifetime = lock(&self.inner.timing).mailbox_settings_lifetime;
        let lifetime = chrono::TimeDelta::from_std(lifetime).unwrap_or(chrono::TimeDelta::MAX);
        let store = self.mailboxes();
        let (mailbox, cached) =
            ticket
                .worker
                .mailbox_settings(user, self.inner.clock.now(), lifetime, || {
                    store.mailbox(user)
                });
        let counters = &self.inner.counters;
        if cached {
            counters.mailbox_settings_from_cache.inc();
        } else {
            counters.mailbox_settings_read.inc();
        }
        match mailbox.and_then(|m| cas_block(&m, protocol, device_id)) {
            None => logon,
            Some(reason) => {
                counters.refused_by_cas(reason);
                tracing::debug!(server = %self.inner.name, pool, %reason, cached, "refused by CAS settings");
                Logon::ProtocolDisabled { pool, pid, reason }
            }
        }
    }

    /// The rest of the request: waits while requests are held, and fails it if its worker
    /// is killed meanwhile (forced `iisreset`, or a stopping worker past its pool's shutdown
    /// time limit) — at the moment of the kill, not when the hold is released.
    async fn finish(&self, ticket: &InFlight, logon: Logon) -> Logon {
        let mut hold = self.inner.hold.subscribe();
        let mut killed = ticket.worker.killed();
        tokio::select! {
            // The sender lives in `self`, so this cannot fail while we run.
            _ = hold.wait_for(|held| !*held) => {}
            _ = killed.wait_for(|k| *k) => {}
        }
        if ticket.worker.is_terminated() {
            self.inner.counters.killed_in_flight.inc();
            return Logon::Unavailable;
        }
        logon
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
