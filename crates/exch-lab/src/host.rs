//! The boundary between the lab's PowerShell interpreter ([`crate::ps`]) and its IIS model.
//!
//! The interpreter only ever talks to a server through [`IisHost`]; the IIS model implements it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A worker process (w3wp) as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostWorker {
    /// Process id.
    pub pid: u32,
    /// Start time (the server's clock).
    pub started: DateTime<Utc>,
}

/// An application pool as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPool {
    /// Pool name.
    pub name: String,
    /// `true` = Started, `false` = Stopped.
    pub started: bool,
    /// Worker processes taking new requests (stopping workers are listed by
    /// [`IisHost::stopping_workers`]).
    pub workers: Vec<HostWorker>,
}

/// `iisreset` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IisResetMode {
    /// `iisreset` (stop + start, forced).
    Restart,
    /// `iisreset /noforce`.
    RestartNoForce,
    /// `iisreset /stop`.
    Stop,
    /// `iisreset /start`.
    Start,
    /// `iisreset /status`.
    Status,
}

/// Result of a native command: exit code, stdout text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeOutput {
    /// Exit code (`$LASTEXITCODE`).
    pub exit_code: i32,
    /// Text printed on stdout.
    pub stdout: String,
}

/// What a simulated server exposes to the PowerShell interpreter. Errors are PowerShell-style
/// messages (e.g. `Cannot find path 'IIS:\AppPools\X' because it does not exist.`).
#[async_trait]
pub trait IisHost: Send + Sync + 'static {
    /// Every pool, in IIS order.
    fn pools(&self) -> Vec<HostPool>;
    /// Start time of a process, if it exists.
    fn process_start_time(&self, pid: u32) -> Option<DateTime<Utc>>;
    /// The server's clock (UTC).
    fn now(&self) -> DateTime<Utc>;
    /// Requests a recycle of one pool; returns when IIS has accepted it, which may be before
    /// the new worker serves (as `Restart-WebAppPool` does).
    async fn recycle_pool(&self, name: &str) -> Result<(), String>;
    /// Workers of `pool` that are stopping (a recycle's old worker finishing requests in
    /// flight): listed with state `Stopping`. None by default.
    fn stopping_workers(&self, pool: &str) -> Vec<HostWorker> {
        let _ = pool;
        Vec::new()
    }
    /// Starts a pool.
    async fn start_pool(&self, name: &str) -> Result<(), String>;
    /// Stops a pool.
    async fn stop_pool(&self, name: &str) -> Result<(), String>;
    /// Runs `iisreset` in the given mode.
    async fn iisreset(&self, mode: IisResetMode) -> NativeOutput;
    /// `UserTokenTTL` in seconds, `None` when absent.
    fn token_ttl(&self) -> Option<u32>;
    /// Writes `UserTokenTTL` in seconds.
    fn set_token_ttl(&self, secs: u32);
    /// The server's Exchange Management Shell: the snap-ins it registers and the mailbox
    /// store its Exchange cmdlets work on. `None` (the default) for a host without Exchange,
    /// where `Add-PSSnapin` of an Exchange snap-in fails as on a plain Windows server.
    fn exchange(&self) -> Option<crate::mailbox::ExchangeShell> {
        None
    }
}
