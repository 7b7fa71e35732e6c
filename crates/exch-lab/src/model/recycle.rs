//! Application pool recycles as IIS runs them with Exchange's default configuration.
//!
//! - `Restart-WebAppPool` returns once WAS has accepted the request
//!   ([`super::IisTiming::recycle_latency`]); the recycle goes on after that.
//! - **Overlapped** pools (IIS's default, `disallowOverlappingRotation="false"`): the old worker
//!   keeps taking new requests — from its token cache — until the new one has started
//!   ([`super::IisTiming::worker_startup`]); then it stops taking requests and finishes those in
//!   flight until the pool's `shutdownTimeLimit` (90 s by default), when it is killed.
//! - **Stop-then-start** pools (`MSExchangeMapiFrontEndAppPool`,
//!   `MSExchangeRpcProxyFrontEndAppPool`, `MSExchangeRpcProxyAppPool`: `disallowOverlappingRotation="true"`,
//!   `shutdownTimeLimit="00:00:05"`): the old worker stops taking requests at once, has 5 s
//!   to finish the ones in flight (long MAPI / RPC requests are cut), and the new worker starts
//!   after it has gone; requests that arrive meanwhile wait in the queue.
//! - A pool without a worker (idle, or after `iisreset`) starts one on its first request.
//!
//! Sources: `recycling/@disallowOverlappingRotation` and `processModel/@shutdownTimeLimit` in the
//! IIS configuration reference (<https://learn.microsoft.com/iis/configuration/system.applicationhost/applicationpools/add/recycling/>,
//! `…/add/processmodel`), and the default Exchange configuration in
//! microsoft/CSS-Exchange `Shared/Tests/Data/E19_applicationHost_Default.config`.

use std::sync::Arc;
use std::time::Duration;

use super::worker::Worker;
use super::{missing_pool, IisServer, Pool, INVALID_OBJECT};
use crate::catalog::RecycleConfig;
use crate::clock::lock;

impl IisServer {
    /// Requests a recycle of `pool` and returns when IIS has accepted it (after the server's
    /// recycle latency), **not** when the new worker serves: see [`IisServer::recycled`].
    /// A pool without a worker has nothing to recycle (its next request starts one).
    pub async fn recycle(&self, pool: &str) -> Result<(), String> {
        let fault = lock(&self.inner.recycle_faults)
            .get(&pool.to_ascii_lowercase())
            .cloned();
        self.check_pool(pool)?;
        if let Some(message) = fault {
            self.inner.counters.recycle_failures.inc();
            return Err(message);
        }
        let (latency, startup) = {
            let t = lock(&self.inner.timing);
            (t.recycle_latency, t.worker_startup)
        };
        let overlapping = {
            let mut state = lock(&self.inner.state);
            let running = state.running;
            let p = state.pool_mut(pool).ok_or_else(|| missing_pool(pool))?;
            if !running || !p.started {
                return Err(INVALID_OBJECT.to_owned());
            }
            if p.recycling || p.current.is_none() {
                // One recycle at a time (IIS coalesces them); an idle pool has no worker.
                None
            } else {
                p.recycling = true;
                let overlapping = p.config.overlapping;
                if !overlapping {
                    // Stop-then-start: the old worker takes no new request from now on.
                    self.retire(p);
                }
                Some(overlapping)
            }
        };
        self.inner.counters.recycles.inc();
        if let Some(overlapping) = overlapping {
            let me = self.clone();
            let name = pool.to_owned();
            tokio::spawn(async move { me.complete_recycle(&name, overlapping, startup).await });
        }
        tokio::time::sleep(latency).await;
        Ok(())
    }

    async fn complete_recycle(&self, pool: &str, overlapping: bool, startup: Duration) {
        if !overlapping {
            // The new worker starts once the old one has gone (drained or killed).
            loop {
                let changed = self.inner.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let busy = {
                    let mut state = lock(&self.inner.state);
                    state.pool_mut(pool).is_some_and(|p| {
                        p.prune();
                        !p.draining.is_empty()
                    })
                };
                if !busy {
                    break;
                }
                // Workers finish requests without notifying: look again now and then.
                let _ = tokio::time::timeout(Duration::from_millis(5), changed).await;
            }
        }
        tokio::time::sleep(startup).await;
        let now = self.inner.clock.now();
        let mut state = lock(&self.inner.state);
        let ttl = state.token_ttl;
        let running = state.running;
        let Some(p) = state.pool_mut(pool) else {
            return;
        };
        p.recycling = false;
        if running && p.started {
            self.retire(p);
            p.prune();
            p.current = Some(Worker::start(now, ttl));
            self.inner.counters.recycles_completed.inc();
            tracing::debug!(server = %self.inner.name, pool, "recycled");
        }
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// Moves `p`'s current worker to the stopping ones and, if it still has requests, kills it
    /// at the pool's shutdown time limit.
    fn retire(&self, p: &mut Pool) {
        if let Some(old) = p.retire_current() {
            self.arm_shutdown_limit(old, p.config.shutdown_time_limit);
        }
    }

    /// Kills `worker` (its requests in flight fail) if it is still busy after `limit`.
    fn arm_shutdown_limit(&self, worker: Arc<Worker>, limit: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            if worker.in_flight() > 0 && !worker.is_terminated() {
                worker.terminate();
                me.inner.counters.workers_killed_at_shutdown_limit.inc();
            }
            me.inner.changed.notify_waiters();
        });
    }

    /// Waits until no recycle of `pool` is pending (its new worker serves), at most `limit`;
    /// `false` on timeout.
    pub async fn recycled(&self, pool: &str, limit: Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let pending = lock(&self.inner.state)
                .pool_mut(pool)
                .is_some_and(|p| p.recycling);
            if !pending {
                return true;
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return false;
            }
        }
    }

    /// How `pool` recycles (`None` when the server has no such pool).
    pub fn recycle_config(&self, pool: &str) -> Option<RecycleConfig> {
        lock(&self.inner.state).pool_mut(pool).map(|p| p.config)
    }

    /// Changes how `pool` recycles (as an administrator can in `applicationHost.config`).
    pub fn set_recycle_config(&self, pool: &str, config: RecycleConfig) -> Result<(), String> {
        let mut state = lock(&self.inner.state);
        let p = state.pool_mut(pool).ok_or_else(|| missing_pool(pool))?;
        p.config = config;
        Ok(())
    }

    /// `Start-WebAppPool`: a started pool stays as it is; a stopped one starts without a
    /// worker (its first request starts one).
    pub fn start_pool(&self, pool: &str) -> Result<(), String> {
        let mut state = lock(&self.inner.state);
        let p = state.pool_mut(pool).ok_or_else(|| missing_pool(pool))?;
        p.started = true;
        drop(state);
        self.inner.changed.notify_waiters();
        Ok(())
    }

    /// `Stop-WebAppPool`: new requests get 503; requests in flight may finish within the
    /// pool's shutdown time limit.
    pub fn stop_pool(&self, pool: &str) -> Result<(), String> {
        let mut state = lock(&self.inner.state);
        let p = state.pool_mut(pool).ok_or_else(|| missing_pool(pool))?;
        if !p.started {
            return Err(INVALID_OBJECT.to_owned());
        }
        p.started = false;
        p.prune();
        self.retire(p);
        drop(state);
        self.inner.changed.notify_waiters();
        Ok(())
    }

    pub(super) fn check_pool(&self, pool: &str) -> Result<(), String> {
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
