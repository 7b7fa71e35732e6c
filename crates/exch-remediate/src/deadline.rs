//! The overall deadline of one run ([`crate::RemediationBuilder::deadline`]): every wait and
//! operation of `execute` is cut to what is left. Kept on tokio's clock, so that tests can run
//! a deadline on a paused clock.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

use crate::reasons::StepError;

/// The overall deadline of one `execute` ([`crate::RemediationBuilder::deadline`]).
#[derive(Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) at: Option<Instant>,
    pub(crate) limit: Duration,
}

impl Deadline {
    pub(crate) fn new(limit: Option<Duration>) -> Self {
        Deadline {
            at: limit.map(|l| Instant::now() + l),
            limit: limit.unwrap_or_default(),
        }
    }

    pub(crate) fn expired(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    /// `d`, cut to what is left before the deadline.
    pub(crate) fn cap(&self, d: Duration) -> Duration {
        match self.at {
            Some(at) => d.min(at.saturating_duration_since(Instant::now())),
            None => d,
        }
    }

    /// `t` or the deadline, whichever comes first.
    pub(crate) fn cap_instant(&self, t: Instant) -> Instant {
        self.at.map_or(t, |at| t.min(at))
    }

    /// Runs `fut` until the deadline at most.
    pub(crate) async fn bound<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        match self.at {
            None => Some(fut.await),
            Some(at) => tokio::time::timeout_at(at, fut).await.ok(),
        }
    }

    /// A directory operation that must end by the deadline.
    pub(crate) async fn dir<T>(
        &self,
        operation: &str,
        fut: impl Future<Output = Result<T, StepError>>,
    ) -> Result<T, StepError> {
        self.bound(fut).await.unwrap_or_else(|| {
            Err(StepError::TimedOut {
                operation: operation.to_owned(),
                after: self.limit,
                by_deadline: true,
            })
        })
    }
}
