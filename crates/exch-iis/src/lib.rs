#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod error;
mod types;

pub use error::IisError;
pub use types::{
    AppPoolState, FlushMethod, FlushReport, PoolFlush, PoolRunState, TokenCacheSettings,
    WorkerProcess,
};

use async_trait::async_trait;
use exch_core::ExchangeServer;
use std::fmt::Debug;

/// Flushes the IIS logon-token caches of Exchange servers.
///
/// Backends are held as `Arc<dyn CacheFlusher>`.
#[async_trait]
pub trait CacheFlusher: Debug + Send + Sync + 'static {
    /// Application pools on `server` with their state and worker processes.
    async fn app_pools(&self, server: &ExchangeServer) -> Result<Vec<AppPoolState>, IisError>;

    /// Flushes the caches with `method` and reports, per pool, the workers before and after.
    async fn flush(
        &self,
        server: &ExchangeServer,
        method: &FlushMethod,
    ) -> Result<FlushReport, IisError>;

    /// Reads `UserTokenTTL`.
    async fn token_cache(&self, server: &ExchangeServer) -> Result<TokenCacheSettings, IisError>;

    /// Writes `UserTokenTTL` (hardening, opt-in). Takes effect for workers started afterwards.
    async fn set_token_ttl(
        &self,
        server: &ExchangeServer,
        ttl: std::time::Duration,
    ) -> Result<TokenCacheSettings, IisError>;
}
