//! Progress events, for progress bars and logs.

use serde::Serialize;
use std::time::Duration;

use crate::{ActionRecord, ServerRecord, Step};

/// One progress event. Sent on the channel given to
/// [`crate::RemediationBuilder::events`]; a slow or dropped receiver never blocks the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step started.
    StepStarted {
        /// The step.
        step: Step,
    },
    /// A step finished.
    StepFinished {
        /// The step.
        step: Step,
        /// Whether it fully succeeded.
        ok: bool,
    },
    /// A domain controller shows the change of one user's account.
    DcConverged {
        /// The user (as given).
        user: String,
        /// DC name.
        dc: String,
        /// Time since the convergence step started.
        #[serde(with = "exch_core::serde_ms::duration")]
        after: Duration,
    },
    /// A server's flush started.
    ServerStarted {
        /// Server name.
        server: String,
    },
    /// A server's flush finished.
    ServerFinished {
        /// Server name.
        server: String,
        /// Whether the flush was proven.
        proven: bool,
    },
    /// An operation is retried after a transient error.
    Retry {
        /// What is retried (server or DC name).
        target: String,
        /// Attempt number that failed (1-based).
        attempt: u32,
        /// Delay before the next attempt.
        #[serde(with = "exch_core::serde_ms::duration")]
        delay: Duration,
        /// The error.
        error: String,
    },
    /// A directory action was tried: the record the report will hold. For journals that let
    /// a killed run be resumed (see [`crate::RemediationBuilder::resume`]).
    ActionRecorded {
        /// The user (as given).
        user: String,
        /// The record.
        record: ActionRecord,
    },
    /// The mailbox step of one user ended: the record the report will hold. For journals,
    /// like [`Event::ActionRecorded`].
    MailboxRecorded {
        /// The user (as given).
        user: String,
        /// The record.
        record: Box<crate::MailboxRecord>,
    },
    /// A user's outcome is known (at the end of the run, one per user).
    UserFinished {
        /// The user (as given).
        user: String,
        /// The user's outcome.
        outcome: crate::Outcome,
    },
    /// A server's flush ended (after retries): the record the report will hold (without the
    /// probes, which come later). For journals, like [`Event::ActionRecorded`].
    ServerRecorded {
        /// The record.
        record: Box<ServerRecord>,
    },
    /// Something the operator should know: a security opt-out of a backend (at the start),
    /// an account that changed since the plan.
    Warning {
        /// The message.
        message: String,
    },
}
