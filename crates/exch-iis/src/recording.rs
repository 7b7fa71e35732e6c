//! [`RecordingFlusher`]: a public fake [`CacheFlusher`] for tests, in the spirit of lettre's
//! `StubTransport` and tower-test's mock.
//!
//! Every server it is asked about gets the catalog's pools for its version and roles (or the
//! pools you configure), each with one worker. A recycle replaces the worker with a new one
//! started after the request, so reports are proven; configure errors, failing pools, latency,
//! and a [`Gate`] that parks every call until the test releases it, to prove concurrency limits
//! without sleeping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use exch_core::{AppPool, ExchangeServer};
use tokio::sync::{Notify, Semaphore};

use crate::{
    catalog, AppPoolState, CacheFlusher, FlushMethod, FlushReport, IisError, PoolFlush,
    PoolRunState, TokenCacheSettings, WorkerProcess,
};

/// What was asked of a [`RecordingFlusher`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushOperation {
    /// [`CacheFlusher::app_pools`].
    AppPools,
    /// [`CacheFlusher::flush`] with this method.
    Flush(FlushMethod),
    /// [`CacheFlusher::token_cache`].
    TokenCache,
    /// [`CacheFlusher::set_token_ttl`] with this TTL.
    SetTokenTtl(Duration),
}

/// One recorded call, in the order calls arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushCall {
    /// The server's name.
    pub server: String,
    /// What was asked.
    pub operation: FlushOperation,
}

#[derive(Default)]
struct ServerConfig {
    error: Option<IisError>,
    latency: Option<Duration>,
    pools: Option<Vec<AppPool>>,
    failing: Vec<(AppPool, String)>,
    ttl: Option<Option<Duration>>,
}

struct SimPool {
    name: AppPool,
    state: PoolRunState,
    workers: Vec<WorkerProcess>,
}

struct SimServer {
    pools: Vec<SimPool>,
    ttl: Option<Duration>,
}

#[derive(Default)]
struct State {
    configs: HashMap<String, ServerConfig>,
    servers: HashMap<String, SimServer>,
    latency: Duration,
    calls: Vec<FlushCall>,
    next_pid: u32,
}

#[derive(Default)]
struct Counters {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    waiting: AtomicUsize,
    changed: Notify,
}

struct Shared {
    state: Mutex<State>,
    counters: Arc<Counters>,
    gate: Option<Arc<Semaphore>>,
}

/// A fake [`CacheFlusher`] that simulates servers and records every call.
///
/// Cheap to clone; clones share state.
#[derive(Clone)]
pub struct RecordingFlusher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RecordingFlusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingFlusher")
            .field("calls", &self.lock().calls.len())
            .field("gated", &self.shared.gate.is_some())
            .finish()
    }
}

/// Releases the calls parked by a gated [`RecordingFlusher`], and reports how many are parked
/// and in flight.
#[derive(Clone)]
pub struct Gate {
    semaphore: Arc<Semaphore>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("waiting", &self.waiting())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Gate {
    /// Calls parked at the gate right now.
    pub fn waiting(&self) -> usize {
        self.counters.waiting.load(Ordering::SeqCst)
    }

    /// Calls that started and have not returned (parked or running).
    pub fn in_flight(&self) -> usize {
        self.counters.in_flight.load(Ordering::SeqCst)
    }

    /// The most calls ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.counters.max_in_flight.load(Ordering::SeqCst)
    }

    /// Lets `n` parked (or future) calls through.
    pub fn release(&self, n: usize) {
        self.semaphore.add_permits(n);
    }

    /// Opens the gate for good: every parked and future call passes.
    pub fn open(&self) {
        self.semaphore.close();
    }

    /// Waits until at least `n` calls are parked at the gate.
    pub async fn wait_for_waiting(&self, n: usize) {
        self.wait_until(|| self.waiting() >= n).await;
    }

    /// Waits until no call is in flight.
    pub async fn wait_for_idle(&self) {
        self.wait_until(|| self.in_flight() == 0).await;
    }

    async fn wait_until(&self, cond: impl Fn() -> bool) {
        loop {
            let notified = self.counters.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond() {
                return;
            }
            notified.await;
        }
    }
}

struct InFlight(Arc<Counters>);

impl InFlight {
    fn enter(c: &Arc<Counters>) -> Self {
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        c.changed.notify_waiters();
        InFlight(Arc::clone(c))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

struct Waiting(Arc<Counters>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

fn key(server: &str) -> String {
    server.to_ascii_lowercase()
}

impl Default for RecordingFlusher {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingFlusher {
    fn with_gate(gate: Option<Arc<Semaphore>>) -> Self {
        RecordingFlusher {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    next_pid: 4000,
                    ..State::default()
                }),
                counters: Arc::new(Counters::default()),
                gate,
            }),
        }
    }

    /// Every call succeeds at once.
    pub fn new() -> Self {
        Self::with_gate(None)
    }

    /// Every call parks at a [`Gate`] until the test releases it.
    pub fn gated() -> (Self, Gate) {
        let semaphore = Arc::new(Semaphore::new(0));
        let me = Self::with_gate(Some(Arc::clone(&semaphore)));
        let gate = Gate {
            semaphore,
            counters: Arc::clone(&me.shared.counters),
        };
        (me, gate)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock only happens in a failing test; keep going.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn config(&self, server: &str, f: impl FnOnce(&mut ServerConfig)) {
        let mut st = self.lock();
        f(st.configs.entry(key(server)).or_default());
        st.servers.remove(&key(server));
    }

    /// Every call about `server` (its name) fails with (a copy of) `error`.
    pub fn with_error(self, server: &str, error: IisError) -> Self {
        self.set_error(server, Some(error));
        self
    }

    /// Changes, or with `None` clears, the error of `server` while a test runs.
    pub fn set_error(&self, server: &str, error: Option<IisError>) {
        let mut st = self.lock();
        st.configs.entry(key(server)).or_default().error = error;
    }

    /// Every call about `server` takes `latency` (tokio time: works with paused clocks).
    pub fn with_latency(self, server: &str, latency: Duration) -> Self {
        self.config(server, |c| c.latency = Some(latency));
        self
    }

    /// Every call about any server without its own latency takes `latency`.
    pub fn with_default_latency(self, latency: Duration) -> Self {
        self.lock().latency = latency;
        self
    }

    /// `server` has exactly these pools (instead of its catalog pools).
    pub fn with_pools(self, server: &str, pools: impl IntoIterator<Item = AppPool>) -> Self {
        let pools = pools.into_iter().collect();
        self.config(server, |c| c.pools = Some(pools));
        self
    }

    /// Recycling `pool` on `server` fails with `message`; its worker stays (not proven).
    pub fn with_failing_pool(self, server: &str, pool: AppPool, message: &str) -> Self {
        let message = message.to_string();
        self.config(server, |c| c.failing.push((pool, message)));
        self
    }

    /// `UserTokenTTL` of `server` (`None` = absent, the default).
    pub fn with_token_ttl(self, server: &str, ttl: Option<Duration>) -> Self {
        self.config(server, |c| c.ttl = Some(ttl));
        self
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<FlushCall> {
        self.lock().calls.clone()
    }

    /// The most calls ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.counters.max_in_flight.load(Ordering::SeqCst)
    }

    /// Records the call, waits at the gate and for the latency; returns the configured error.
    async fn enter(
        &self,
        server: &ExchangeServer,
        operation: FlushOperation,
    ) -> Result<InFlight, IisError> {
        let counters = &self.shared.counters;
        let in_flight = InFlight::enter(counters);
        let latency = {
            let mut st = self.lock();
            st.calls.push(FlushCall {
                server: server.name.clone(),
                operation,
            });
            let cfg = st.configs.get(&key(&server.name));
            cfg.and_then(|c| c.latency).unwrap_or(st.latency)
        };
        if let Some(gate) = &self.shared.gate {
            counters.waiting.fetch_add(1, Ordering::SeqCst);
            let waiting = Waiting(Arc::clone(counters));
            counters.changed.notify_waiters();
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            drop(waiting);
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let st = self.lock();
        match st
            .configs
            .get(&key(&server.name))
            .and_then(|c| c.error.as_ref())
        {
            Some(e) => Err(e.duplicate()),
            None => Ok(in_flight),
        }
    }

    fn with_server<T>(
        &self,
        server: &ExchangeServer,
        f: impl FnOnce(&mut SimServer, &mut u32, &ServerConfig) -> T,
    ) -> T {
        let mut guard = self.lock();
        let st = &mut *guard;
        let k = key(&server.name);
        let cfg = st.configs.entry(k.clone()).or_default();
        let next_pid = &mut st.next_pid;
        let sim = st.servers.entry(k).or_insert_with(|| {
            let names = cfg.pools.clone().unwrap_or_else(|| {
                catalog::pools_for(server, None)
                    .into_iter()
                    .map(|e| e.pool)
                    .collect()
            });
            let started = Utc::now() - chrono::Duration::hours(1);
            let pools = names
                .into_iter()
                .map(|name| {
                    *next_pid += 4;
                    SimPool {
                        name,
                        state: PoolRunState::Started,
                        workers: vec![WorkerProcess::new(*next_pid, started)],
                    }
                })
                .collect();
            SimServer {
                pools,
                ttl: cfg.ttl.flatten(),
            }
        });
        f(sim, next_pid, cfg)
    }
}

fn recycle_one(
    pool: &mut SimPool,
    next_pid: &mut u32,
    requested: DateTime<Utc>,
    failure: Option<&str>,
) -> PoolFlush {
    let before = pool.workers.clone();
    if failure.is_none() {
        *next_pid += 4;
        pool.workers = vec![WorkerProcess::new(*next_pid, Utc::now().max(requested))];
    }
    PoolFlush::new(
        pool.name.clone(),
        before,
        pool.workers.clone(),
        pool.state,
        failure.map(str::to_string),
        requested,
    )
}

#[async_trait]
impl CacheFlusher for RecordingFlusher {
    async fn app_pools(&self, server: &ExchangeServer) -> Result<Vec<AppPoolState>, IisError> {
        let _in = self.enter(server, FlushOperation::AppPools).await?;
        Ok(self.with_server(server, |sim, _, _| {
            sim.pools
                .iter()
                .map(|p| AppPoolState::new(p.name.clone(), p.state, p.workers.clone()))
                .collect()
        }))
    }

    async fn flush(
        &self,
        server: &ExchangeServer,
        method: &FlushMethod,
    ) -> Result<FlushReport, IisError> {
        let started = std::time::Instant::now();
        method.validate()?;
        let _in = self
            .enter(server, FlushOperation::Flush(method.clone()))
            .await?;
        let requested = Utc::now();
        // The pools to recycle; `None`: all of them (iisreset).
        let wanted = match method {
            FlushMethod::RecycleCatalogPools => Some(catalog::default_pools(server)),
            FlushMethod::RecycleAppPools(named) => Some(named.clone()),
            FlushMethod::IisReset { .. } => None,
        };
        let (pools, missing): (Vec<PoolFlush>, Vec<AppPool>) =
            self.with_server(server, |sim, next_pid, cfg| {
                let failure = |name: &AppPool| {
                    cfg.failing
                        .iter()
                        .find(|(p, _)| p.as_str().eq_ignore_ascii_case(name.as_str()))
                        .map(|(_, m)| m.as_str())
                };
                match &wanted {
                    None => {
                        let done = sim
                            .pools
                            .iter_mut()
                            .map(|p| recycle_one(p, next_pid, requested, None))
                            .collect();
                        (done, Vec::new())
                    }
                    Some(wanted) => {
                        let present: Vec<AppPool> =
                            sim.pools.iter().map(|p| p.name.clone()).collect();
                        let (found, missing) = catalog::intersect(wanted, &present);
                        let done = found
                            .iter()
                            .filter_map(|name| {
                                let f = failure(name);
                                sim.pools
                                    .iter_mut()
                                    .find(|p| &p.name == name)
                                    .map(|p| recycle_one(p, next_pid, requested, f))
                            })
                            .collect();
                        (done, missing)
                    }
                }
            });
        if let FlushMethod::RecycleAppPools(_) = method {
            if pools.is_empty() && !missing.is_empty() {
                let names: Vec<&str> = missing.iter().map(AppPool::as_str).collect();
                return Err(IisError::PoolNotFound {
                    server: server.name.clone(),
                    pool: names.join(", "),
                });
            }
        }
        Ok(FlushReport::new(&server.name, method.clone(), requested)
            .with_pools(pools)
            .with_missing_pools(missing)
            .with_elapsed(started.elapsed()))
    }

    async fn token_cache(&self, server: &ExchangeServer) -> Result<TokenCacheSettings, IisError> {
        let _in = self.enter(server, FlushOperation::TokenCache).await?;
        Ok(self.with_server(server, |sim, _, _| TokenCacheSettings {
            configured: sim.ttl,
        }))
    }

    async fn set_token_ttl(
        &self,
        server: &ExchangeServer,
        ttl: Duration,
    ) -> Result<TokenCacheSettings, IisError> {
        crate::ttl_secs(ttl)?;
        let _in = self.enter(server, FlushOperation::SetTokenTtl(ttl)).await?;
        Ok(self.with_server(server, |sim, _, _| {
            sim.ttl = Some(ttl);
            TokenCacheSettings {
                configured: sim.ttl,
            }
        }))
    }
}
