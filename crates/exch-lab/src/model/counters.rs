//! What a server counts, for tests and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) logons_from_cache: Counter,
    pub(crate) logons_from_directory: Counter,
    pub(crate) logons_refused: Counter,
    pub(crate) directory_errors: Counter,
    pub(crate) refused_during_reset: Counter,
    pub(crate) refused_pool_stopped: Counter,
    pub(crate) killed_in_flight: Counter,
    pub(crate) recycles: Counter,
    pub(crate) recycles_completed: Counter,
    pub(crate) workers_started_on_demand: Counter,
    pub(crate) workers_killed_at_shutdown_limit: Counter,
    pub(crate) recycle_failures: Counter,
    pub(crate) iisresets: Counter,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> IisCounters {
        IisCounters {
            logons_from_cache: self.logons_from_cache.get(),
            logons_from_directory: self.logons_from_directory.get(),
            logons_refused: self.logons_refused.get(),
            directory_errors: self.directory_errors.get(),
            refused_during_reset: self.refused_during_reset.get(),
            refused_pool_stopped: self.refused_pool_stopped.get(),
            killed_in_flight: self.killed_in_flight.get(),
            recycles: self.recycles.get(),
            recycles_completed: self.recycles_completed.get(),
            workers_started_on_demand: self.workers_started_on_demand.get(),
            workers_killed_at_shutdown_limit: self.workers_killed_at_shutdown_limit.get(),
            recycle_failures: self.recycle_failures.get(),
            iisresets: self.iisresets.get(),
        }
    }
}

/// A snapshot of one server's IIS counters (monotonic since the server started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IisCounters {
    /// Logons answered from a worker's token cache (the directory was not asked).
    pub logons_from_cache: u64,
    /// Logons that missed the cache and succeeded against the directory.
    pub logons_from_directory: u64,
    /// Logons the directory refused (bad password, disabled, …).
    pub logons_refused: u64,
    /// Cache misses where the directory could not be asked.
    pub directory_errors: u64,
    /// Requests refused (503) because IIS was stopped (`iisreset` window, `/stop`).
    pub refused_during_reset: u64,
    /// Requests refused (503) because their pool was stopped.
    pub refused_pool_stopped: u64,
    /// Requests in flight that failed because a forced `iisreset` killed their worker.
    pub killed_in_flight: u64,
    /// Recycles accepted (`Restart-WebAppPool` / `appcmd recycle` succeeded). The recycle may
    /// still be running: see `recycles_completed`.
    pub recycles: u64,
    /// Recycles whose new worker serves (the old one no longer takes new requests). A recycle
    /// of a pool without a worker has nothing to complete and is not counted here.
    pub recycles_completed: u64,
    /// Workers started by a request to a pool that had none (on-demand start).
    pub workers_started_on_demand: u64,
    /// Stopping workers killed with requests still in flight at their pool's shutdown limit.
    pub workers_killed_at_shutdown_limit: u64,
    /// Recycles that failed (injected fault).
    pub recycle_failures: u64,
    /// `iisreset` runs that restarted or stopped IIS.
    pub iisresets: u64,
}
