#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod builder;
mod deadline;
mod error;
mod events;
mod many;
mod options;
mod plan;
mod probe;
mod report;
mod run;
mod servers;
mod writes;

pub use builder::RemediationBuilder;
pub use error::RemediationError;
pub use events::Event;
pub use many::{
    ManyPlan, ManyReport, PlannedUser, RevokeMany, ServerProbes, UserProblem, UserRecord,
    DEFAULT_MAX_IN_FLIGHT,
};
pub use options::{Action, NewPassword, RetryPolicy, Step, Strategy, Timeouts};
pub use plan::{Plan, PlannedAccount, PlannedAction, PlannedPool, PlannedServer};
pub use probe::{HttpProber, ProbeResult, Prober};
pub use report::{
    ActionRecord, DcRecord, Outcome, ProbeRecord, Report, ServerOutcome, ServerRecord, StepRecord,
};

use exch_core::Protocol;
use exch_directory::{Directory, UserRef};
use exch_iis::{CacheFlusher, FlushMethod};
use secrecy::SecretString;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// One remediation of one user: build, [`plan`](Remediation::plan), [`execute`](Remediation::execute).
pub struct Remediation {
    directory: Arc<dyn Directory>,
    flusher: Arc<dyn CacheFlusher>,
    user_text: String,
    user: UserRef,
    actions: Vec<Action>,
    new_password: Option<SecretString>,
    force_reset: bool,
    selection: builder::ServerSelection,
    protocols: Option<Vec<Protocol>>,
    method: FlushMethod,
    strategy: Strategy,
    timeouts: Timeouts,
    deadline: Option<std::time::Duration>,
    retry: RetryPolicy,
    cancel: CancellationToken,
    events: Option<UnboundedSender<Event>>,
    probe: Option<(Arc<dyn Prober>, SecretString)>,
    resume: Option<Report>,
}

impl std::fmt::Debug for Remediation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remediation")
            .field("user", &self.user_text)
            .field("actions", &self.actions)
            .field("method", &self.method)
            .field("strategy", &self.strategy)
            .field(
                "new_password",
                &self.new_password.as_ref().map(|_| "[REDACTED]"),
            )
            .field(
                "probe",
                &self.probe.as_ref().map(|_| "[old password REDACTED]"),
            )
            .finish_non_exhaustive()
    }
}

impl Remediation {
    /// Starts a builder.
    pub fn builder() -> RemediationBuilder {
        RemediationBuilder::default()
    }

    /// The password that [`NewPassword::Generate`] produced. Store it (password vault, sealed
    /// envelope) **before** calling [`execute`](Self::execute): the report never contains it.
    pub fn generated_password(&self) -> Option<&SecretString> {
        self.new_password.as_ref()
    }

    /// The cancellation token (cancel it from another task to stop starting new servers).
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The security opt-outs of the directory, the flusher and `prober` (the report's
    /// `security`).
    pub(crate) fn security_notes(&self, prober: Option<&dyn Prober>) -> Vec<String> {
        let mut notes = self.directory.security_notes();
        notes.extend(self.flusher.security_notes());
        notes.extend(prober.map(Prober::security_notes).unwrap_or_default());
        notes
    }

    fn emit(&self, event: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }
}
