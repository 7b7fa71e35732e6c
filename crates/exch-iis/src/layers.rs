//! Layers around any [`CacheFlusher`] — [`WinRmFlusher`](crate::WinRmFlusher),
//! [`RecordingFlusher`](crate::RecordingFlusher) or your own — in the style of
//! `object_store`'s `LimitStore<T>`: a [`Layered`] flusher forwards **every** method of the
//! trait ([`CacheFlusher::security_notes`] included) and calls its [`Hook`] before each call:
//!
//! - [`Latency`]: a fixed delay before every call;
//! - [`Faults`]: injected errors for a server, for its next N calls or always;
//! - [`CallLog`]: records every call as a [`FlushCall`] (server and operation).
//!
//! Layers nest, and `Arc<F>` / `Box<F>` are flushers too. Each layer passes the
//! `conformance` suite through itself (`tests/layers.rs`).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use exch_core::ExchangeServer;
//! use exch_iis::layers::{CallLog, Faults, Layered};
//! use exch_iis::{CacheFlusher, FlushMethod, IisError, RecordingFlusher};
//!
//! let ex01 = ExchangeServer::new("EX01", "ex01.corp.example");
//! let faults = Layered::new(RecordingFlusher::new(), Faults::default());
//! faults.hook().fail_next(
//!     "EX01",
//!     IisError::Timeout { server: "EX01".into(), operation: "flush".into(), after: Default::default() },
//!     1,
//! );
//! let logged = Layered::new(faults, CallLog::default());
//! assert!(logged.flush(&ex01, &FlushMethod::default()).await.is_err());
//! assert!(logged.flush(&ex01, &FlushMethod::default()).await.is_ok());
//! assert_eq!(logged.hook().calls().len(), 2);
//! # });
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use exch_core::ExchangeServer;

use crate::{
    AppPoolState, CacheFlusher, FlushCall, FlushMethod, FlushOperation, FlushReport, IisError,
    TokenCacheSettings,
};

/// What a [`Layered`] flusher calls before each call.
#[async_trait]
pub trait Hook: Debug + Send + Sync + 'static {
    /// Runs before `operation` on `server`; an error is returned to the caller instead of
    /// calling the inner flusher.
    async fn before(
        &self,
        server: &ExchangeServer,
        operation: &FlushOperation,
    ) -> Result<(), IisError>;
}

/// A flusher with a [`Hook`] in front of every call.
#[derive(Debug)]
pub struct Layered<F, H> {
    inner: F,
    hook: H,
}

impl<F: CacheFlusher, H: Hook> Layered<F, H> {
    /// Wraps `inner`.
    pub fn new(inner: F, hook: H) -> Self {
        Layered { inner, hook }
    }

    /// The wrapped flusher.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The hook (to change faults, read the call log).
    pub fn hook(&self) -> &H {
        &self.hook
    }
}

#[async_trait]
impl<F: CacheFlusher, H: Hook> CacheFlusher for Layered<F, H> {
    async fn app_pools(&self, server: &ExchangeServer) -> Result<Vec<AppPoolState>, IisError> {
        self.hook.before(server, &FlushOperation::AppPools).await?;
        self.inner.app_pools(server).await
    }

    async fn flush(
        &self,
        server: &ExchangeServer,
        method: &FlushMethod,
    ) -> Result<FlushReport, IisError> {
        self.hook
            .before(server, &FlushOperation::Flush(method.clone()))
            .await?;
        self.inner.flush(server, method).await
    }

    async fn token_cache(&self, server: &ExchangeServer) -> Result<TokenCacheSettings, IisError> {
        self.hook
            .before(server, &FlushOperation::TokenCache)
            .await?;
        self.inner.token_cache(server).await
    }

    async fn set_token_ttl(
        &self,
        server: &ExchangeServer,
        ttl: Duration,
    ) -> Result<TokenCacheSettings, IisError> {
        self.hook
            .before(server, &FlushOperation::SetTokenTtl(ttl))
            .await?;
        self.inner.set_token_ttl(server, ttl).await
    }

    fn security_notes(&self) -> Vec<String> {
        self.inner.security_notes()
    }
}

/// `Arc<F>` and `Box<F>` forward every method to `F`.
macro_rules! forward_flusher {
    ($ptr:ident) => {
        #[async_trait]
        impl<F: CacheFlusher + ?Sized> CacheFlusher for $ptr<F> {
            async fn app_pools(
                &self,
                server: &ExchangeServer,
            ) -> Result<Vec<AppPoolState>, IisError> {
                (**self).app_pools(server).await
            }
            async fn flush(
                &self,
                server: &ExchangeServer,
                method: &FlushMethod,
            ) -> Result<FlushReport, IisError> {
                (**self).flush(server, method).await
            }
            async fn token_cache(
                &self,
                server: &ExchangeServer,
            ) -> Result<TokenCacheSettings, IisError> {
                (**self).token_cache(server).await
            }
            async fn set_token_ttl(
                &self,
                server: &ExchangeServer,
                ttl: Duration,
            ) -> Result<TokenCacheSettings, IisError> {
                (**self).set_token_ttl(server, ttl).await
            }
            fn security_notes(&self) -> Vec<String> {
                (**self).security_notes()
            }
        }
    };
}

forward_flusher!(Arc);
forward_flusher!(Box);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fixed delay before every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency(pub Duration);

#[async_trait]
impl Hook for Latency {
    async fn before(&self, _: &ExchangeServer, _: &FlushOperation) -> Result<(), IisError> {
        if !self.0.is_zero() {
            tokio::time::sleep(self.0).await;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct FaultState {
    next: HashMap<String, VecDeque<IisError>>,
    always: HashMap<String, IisError>,
}

/// Injected errors per server (by name, case-insensitive): its next N calls, or every call
/// until cleared.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<FaultState>,
}

impl Faults {
    /// The next `times` calls for `server` fail with `error` (after any queued before).
    pub fn fail_next(&self, server: &str, error: IisError, times: usize) -> &Self {
        let mut state = lock(&self.state);
        let queue = state.next.entry(server.to_ascii_lowercase()).or_default();
        for _ in 0..times {
            queue.push_back(error.duplicate());
        }
        self
    }

    /// Every call for `server` fails with `error` until [`clear`](Self::clear).
    pub fn fail_always(&self, server: &str, error: IisError) -> &Self {
        lock(&self.state)
            .always
            .insert(server.to_ascii_lowercase(), error);
        self
    }

    /// No more injected errors.
    pub fn clear(&self) {
        *lock(&self.state) = FaultState::default();
    }
}

#[async_trait]
impl Hook for Faults {
    async fn before(&self, server: &ExchangeServer, _: &FlushOperation) -> Result<(), IisError> {
        let key = server.name.to_ascii_lowercase();
        let mut state = lock(&self.state);
        let queued = state.next.get_mut(&key).and_then(VecDeque::pop_front);
        match queued.or_else(|| state.always.get(&key).map(IisError::duplicate)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Records every call, in the order they arrived.
#[derive(Debug, Default)]
pub struct CallLog {
    calls: Mutex<Vec<FlushCall>>,
}

impl CallLog {
    /// Everything recorded so far.
    pub fn calls(&self) -> Vec<FlushCall> {
        lock(&self.calls).clone()
    }

    /// How many calls were made for `server` (by name, case-insensitive).
    pub fn count_for(&self, server: &str) -> usize {
        lock(&self.calls)
            .iter()
            .filter(|c| c.server.eq_ignore_ascii_case(server))
            .count()
    }
}

#[async_trait]
impl Hook for CallLog {
    async fn before(
        &self,
        server: &ExchangeServer,
        operation: &FlushOperation,
    ) -> Result<(), IisError> {
        lock(&self.calls).push(FlushCall {
            server: server.name.clone(),
            operation: operation.clone(),
        });
        Ok(())
    }
}
