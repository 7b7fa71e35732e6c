#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod catalog;
mod clixml;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod error;
pub mod layers;
pub mod parse;
mod recording;
pub mod script;
mod types;
mod winrm;

pub use error::IisError;
pub use recording::{FlushCall, FlushOperation, Gate, RecordingFlusher};
pub use types::{
    AppPoolState, FlushMethod, FlushReport, PoolFlush, PoolRunState, TokenCacheSettings,
    WorkerProcess,
};
pub use winrm::{PowerShellOutput, WinRmAuth, WinRmFlusher, WinRmFlusherBuilder};

use async_trait::async_trait;
use exch_core::ExchangeServer;
use std::fmt::Debug;
use std::time::Duration;

/// Flushes the IIS logon-token caches of Exchange servers.
///
/// Backends are held as `Arc<dyn CacheFlusher>`. Every error names the server.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CacheFlusher: Debug + Send + Sync + 'static {
    /// Application pools on `server` with their state and serving worker processes.
    async fn app_pools(&self, server: &ExchangeServer) -> Result<Vec<AppPoolState>, IisError>;

    /// Flushes the caches with `method` and reports, per pool, the workers before and after.
    ///
    /// [`FlushMethod::RecycleCatalogPools`] recycles the [catalog](crate::catalog)'s default
    /// pools for the server's version and roles that exist there; the others are listed in
    /// [`FlushReport::missing_pools`]. Named pools ([`FlushMethod::RecycleAppPools`]) that do
    /// not exist are listed there too, unless **none** of the named pools exists: then
    /// [`IisError::PoolNotFound`]; an empty list is [`IisError::InvalidInput`] before anything
    /// is sent ([`FlushMethod::validate`]). A server without token caches (Edge Transport)
    /// yields an empty report for the catalog's pools without being contacted.
    async fn flush(
        &self,
        server: &ExchangeServer,
        method: &FlushMethod,
    ) -> Result<FlushReport, IisError>;

    /// Reads `UserTokenTTL`.
    async fn token_cache(&self, server: &ExchangeServer) -> Result<TokenCacheSettings, IisError>;

    /// Writes `UserTokenTTL` (hardening, opt-in; whole seconds, at most
    /// [`script::MAX_TOKEN_TTL_SECS`]; `Duration::ZERO` means tokens **never** expire, which
    /// is the opposite of hardening). Takes effect for workers started afterwards.
    async fn set_token_ttl(
        &self,
        server: &ExchangeServer,
        ttl: Duration,
    ) -> Result<TokenCacheSettings, IisError>;

    /// The security checks this backend was told to skip, one sentence each naming the
    /// opt-out (e.g. certificate verification turned off). Empty by default; the orchestrator
    /// copies them into its report so that nobody mistakes a lab set-up for a secure one.
    fn security_notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Validates a `UserTokenTTL` value: whole seconds that fit a positive `DWORD`.
pub(crate) fn ttl_secs(ttl: Duration) -> Result<u32, IisError> {
    let invalid = |reason: String| IisError::InvalidInput {
        what: "UserTokenTTL".into(),
        reason,
    };
    if ttl.subsec_nanos() != 0 {
        return Err(invalid(format!("{ttl:?} is not a whole number of seconds")));
    }
    u32::try_from(ttl.as_secs())
        .ok()
        .filter(|s| *s <= script::MAX_TOKEN_TTL_SECS)
        .ok_or_else(|| {
            invalid(format!(
                "{} s is more than the largest DWORD PowerShell writes ({})",
                ttl.as_secs(),
                script::MAX_TOKEN_TTL_SECS
            ))
        })
}
