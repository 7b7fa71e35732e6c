//! Actions, steps, strategies, timeouts and retries.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A change made to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Action {
    /// Set ACCOUNTDISABLE.
    Disable,
    /// Administrative password reset.
    ResetPassword,
}

/// The new password for [`Action::ResetPassword`].
#[derive(Clone)]
pub enum NewPassword {
    /// Generate a strong random one (available from
    /// [`crate::Remediation::generated_password`] before `execute`, so it can be stored first).
    Generate,
    /// Use this one.
    Given(SecretString),
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NewPassword::Generate => f.write_str("Generate"),
            NewPassword::Given(_) => f.write_str("Given([REDACTED])"),
        }
    }
}

/// The steps of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Step {
    /// Find exactly one account.
    FindAccount,
    /// The mailbox: devices wiped (when asked) then blocked and protocols refused (lockdown),
    /// forwarding and inbox rules found (and removed when asked) — before the directory
    /// change.
    Mailbox,
    /// Apply the directory actions.
    ChangeDirectory,
    /// Wait until every domain controller shows the change.
    Converge,
    /// Flush the token caches on every server.
    Flush,
    /// Probe the endpoints with the old credentials.
    Probe,
}

/// How servers are flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Strategy {
    /// All servers at once, at most `max_in_flight` at a time (default 64).
    Parallel {
        /// Concurrency limit (≥ 1).
        max_in_flight: usize,
    },
    /// `batch` servers at a time, pausing between batches: the least disruption.
    Rolling {
        /// Servers per batch (≥ 1).
        batch: usize,
        /// Pause between batches.
        #[serde(with = "exch_core::serde_ms::duration")]
        pause: Duration,
    },
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::Parallel { max_in_flight: 64 }
    }
}

impl Strategy {
    /// How many servers may be in flight at once.
    pub fn concurrency(&self) -> usize {
        match *self {
            Strategy::Parallel { max_in_flight } => max_in_flight,
            Strategy::Rolling { batch, .. } => batch,
        }
    }
}

/// Time limits: [`Timeouts::default`], changed with the `with_…` methods.
///
/// ```
/// # use std::time::Duration;
/// let t = exch_remediate::Timeouts::default()
///     .with_converge(Duration::from_secs(30))
///     .with_per_server(Duration::from_secs(60));
/// assert_eq!(t.converge, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Timeouts {
    /// How long to wait for every DC to show the change.
    #[serde(with = "exch_core::serde_ms::duration")]
    pub converge: Duration,
    /// Interval between convergence reads of one DC.
    #[serde(with = "exch_core::serde_ms::duration")]
    pub converge_poll: Duration,
    /// Limit for one flush attempt on one server.
    #[serde(with = "exch_core::serde_ms::duration")]
    pub per_server: Duration,
    /// Limit for one directory operation (on top of the backend's own).
    #[serde(with = "exch_core::serde_ms::duration")]
    pub directory: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            converge: Duration::from_secs(120),
            converge_poll: Duration::from_millis(250),
            per_server: Duration::from_secs(120),
            directory: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// How long to wait for every DC to show the change.
    pub fn with_converge(mut self, d: Duration) -> Self {
        self.converge = d;
        self
    }

    /// Interval between convergence reads of one DC.
    pub fn with_converge_poll(mut self, d: Duration) -> Self {
        self.converge_poll = d;
        self
    }

    /// Limit for one flush attempt on one server.
    pub fn with_per_server(mut self, d: Duration) -> Self {
        self.per_server = d;
        self
    }

    /// Limit for one directory operation (on top of the backend's own).
    pub fn with_directory(mut self, d: Duration) -> Self {
        self.directory = d;
        self
    }
}

/// Retries of transient errors (`is_transient()`), with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub attempts: u32,
    /// Delay before the second attempt; doubled each time.
    #[serde(with = "exch_core::serde_ms::duration")]
    pub initial_backoff: Duration,
    /// Upper bound of the delay.
    #[serde(with = "exch_core::serde_ms::duration")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        RetryPolicy {
            attempts: 1,
            ..Self::default()
        }
    }

    pub(crate) fn delay(&self, failed_attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failed_attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}
