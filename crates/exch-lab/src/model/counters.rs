//! What a server counts, for tests and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::CasBlock;

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
    pub(crate) mailbox_settings_read: Counter,
    pub(crate) mailbox_settings_from_cache: Counter,
    pub(crate) logons_by_ticket: Counter,
    pub(crate) tickets_refused: Counter,
    pub(crate) requests_on_authenticated_connections: Counter,
    cas_owa: Counter,
    cas_ecp: Counter,
    cas_ews: Counter,
    cas_active_sync: Counter,
    cas_device: Counter,
    cas_mapi: Counter,
    cas_rpc_http: Counter,
}

impl Counters {
    pub(crate) fn refused_by_cas(&self, reason: CasBlock) {
        match reason {
            CasBlock::OwaDisabled => &self.cas_owa,
            CasBlock::EcpDisabled => &self.cas_ecp,
            CasBlock::EwsDisabled => &self.cas_ews,
            CasBlock::ActiveSyncDisabled => &self.cas_active_sync,
            CasBlock::DeviceBlocked => &self.cas_device,
            CasBlock::MapiDisabled => &self.cas_mapi,
            CasBlock::RpcHttpBlocked => &self.cas_rpc_http,
        }
        .inc();
    }

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
            mailbox_settings_read: self.mailbox_settings_read.get(),
            mailbox_settings_from_cache: self.mailbox_settings_from_cache.get(),
            logons_by_ticket: self.logons_by_ticket.get(),
            tickets_refused: self.tickets_refused.get(),
            requests_on_authenticated_connections: self.requests_on_authenticated_connections.get(),
            refused_by_cas: CasRefusals {
                owa: self.cas_owa.get(),
                ecp: self.cas_ecp.get(),
                ews: self.cas_ews.get(),
                active_sync: self.cas_active_sync.get(),
                active_sync_device: self.cas_device.get(),
                mapi: self.cas_mapi.get(),
                rpc_http: self.cas_rpc_http.get(),
            },
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
    /// Authenticated requests whose worker read the user's mailbox from the store (its
    /// settings cache had no live entry).
    pub mailbox_settings_read: u64,
    /// Authenticated requests checked against a worker's cached copy of the mailbox.
    pub mailbox_settings_from_cache: u64,
    /// Kerberos logons (`Authorization: Negotiate <AP-REQ>`) on a virtual directory with
    /// Windows authentication: the ticket opened with the service key, the directory not
    /// asked.
    pub logons_by_ticket: u64,
    /// `Authorization: Negotiate` tokens refused (not Kerberos, another SPN, a key that does
    /// not open the ticket, clock skew, or a server without a service key).
    pub tickets_refused: u64,
    /// Requests without credentials taken as the user their TCP connection authenticated
    /// earlier with Windows authentication (no logon, no ticket).
    pub requests_on_authenticated_connections: u64,
    /// Authenticated requests refused by the mailbox's CAS settings, per protocol.
    pub refused_by_cas: CasRefusals,
}

/// Requests refused by the mailbox's CAS settings ([`CasBlock`]), per protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CasRefusals {
    /// OWA (`OWAEnabled`).
    pub owa: u64,
    /// ECP (`ECPEnabled`).
    pub ecp: u64,
    /// EWS (`EwsEnabled`).
    pub ews: u64,
    /// ActiveSync (`ActiveSyncEnabled`).
    pub active_sync: u64,
    /// ActiveSync from a device that may not connect (device rules).
    pub active_sync_device: u64,
    /// MAPI over HTTP (`MAPIEnabled`).
    pub mapi: u64,
    /// Outlook Anywhere (`MAPIBlockOutlookRpcHttp`).
    pub rpc_http: u64,
}

impl CasRefusals {
    /// Every refusal, all protocols together.
    pub fn total(&self) -> u64 {
        self.owa
            + self.ecp
            + self.ews
            + self.active_sync
            + self.active_sync_device
            + self.mapi
            + self.rpc_http
    }
}
