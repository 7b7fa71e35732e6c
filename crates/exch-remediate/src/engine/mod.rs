//! The one engine behind [`crate::Remediation`] (a batch of one) and [`crate::RevokeMany`]
//! (a batch of many): plan, find, change, converge, flush (once per server for the batch),
//! verify and report are each written once, here and in [`crate::servers`].

mod change;
mod converge;
mod mailbox;
mod plan;
mod run;

pub(crate) use run::{BatchRun, PlannedTarget};

use exch_core::Protocol;
use exch_directory::{Directory, UserRef};
use exch_iis::{CacheFlusher, FlushMethod};
use secrecy::SecretString;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::builder::ServerSelection;
use crate::reasons::StepError;
use crate::{
    Action, Event, ManyReport, PlannedAction, Prober, Report, RetryPolicy, Strategy, Timeouts,
};

/// Everything a run shares across its users: backends, actions, selection and limits.
pub(crate) struct Engine {
    pub(crate) directory: Arc<dyn Directory>,
    pub(crate) flusher: Arc<dyn CacheFlusher>,
    pub(crate) actions: Vec<Action>,
    pub(crate) force_reset: bool,
    pub(crate) selection: ServerSelection,
    pub(crate) protocols: Option<Vec<Protocol>>,
    pub(crate) method: FlushMethod,
    pub(crate) strategy: Strategy,
    pub(crate) timeouts: Timeouts,
    pub(crate) deadline: Option<Duration>,
    pub(crate) retry: RetryPolicy,
    pub(crate) cancel: CancellationToken,
    pub(crate) events: Option<UnboundedSender<Event>>,
    pub(crate) prober: Option<Arc<dyn Prober>>,
    /// Accounts in directory work at once.
    pub(crate) accounts_in_flight: usize,
    pub(crate) contain_first: bool,
    pub(crate) skip_unresolved: bool,
    pub(crate) earlier: Option<Earlier>,
    pub(crate) mailbox: Option<Arc<dyn exch_mailbox::MailboxAdmin>>,
    pub(crate) mailbox_actions: crate::MailboxActions,
}

/// One user of a run.
pub(crate) struct Target {
    pub(crate) text: String,
    pub(crate) parsed: Result<UserRef, String>,
    pub(crate) new_password: Option<SecretString>,
    pub(crate) old_password: Option<SecretString>,
}

/// The report of an earlier run, given to `resume`.
#[derive(Debug)]
pub(crate) enum Earlier {
    One(Box<Report>),
    Many(Box<ManyReport>),
}

impl Earlier {
    /// Whether the earlier run applied `action` to `user` (or an even earlier one did).
    pub(crate) fn did(&self, user: &str, action: Action) -> bool {
        let actions = match self {
            Earlier::One(r) if r.user == user => &r.actions,
            Earlier::Many(m) => match m.user(user) {
                Some(u) => &u.actions,
                None => return false,
            },
            Earlier::One(_) => return false,
        };
        actions
            .iter()
            .any(|a| a.action == action && (a.outcome.is_some() || a.done_earlier))
    }

    /// The mailbox record the earlier run kept for `user`.
    pub(crate) fn mailbox(&self, user: &str) -> Option<&crate::MailboxRecord> {
        match self {
            Earlier::One(r) if r.user == user => r.mailbox.as_ref(),
            Earlier::Many(m) => m.user(user).and_then(|u| u.mailbox.as_ref()),
            Earlier::One(_) => None,
        }
    }

    /// Whether the earlier run proved `server` flushed (itself or from a run before it), and
    /// did not leave it to retry.
    fn proved(&self, server: &str) -> bool {
        let (servers, retry) = match self {
            Earlier::One(r) => (&r.servers, &r.servers_to_retry),
            Earlier::Many(m) => (&m.servers, &m.servers_to_retry),
        };
        !retry.iter().any(|s| s.eq_ignore_ascii_case(server))
            && servers.iter().any(|s| {
                s.server.eq_ignore_ascii_case(server)
                    && (s.outcome.is_proven()
                        || matches!(
                            &s.outcome,
                            crate::ServerOutcome::Skipped {
                                reason: crate::SkipReason::ProvenEarlier
                            }
                        ))
            })
    }
}

impl Engine {
    pub(crate) fn emit(&self, event: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// The security opt-outs of the directory, the flusher and the prober (the report's
    /// `security`).
    pub(crate) fn security_notes(&self) -> Vec<String> {
        let mut notes = self.directory.security_notes();
        notes.extend(self.flusher.security_notes());
        notes.extend(
            self.prober
                .as_deref()
                .map(Prober::security_notes)
                .unwrap_or_default(),
        );
        notes
    }

    /// Whether this run will not reset `user`'s password because an earlier run did (and
    /// [`crate::RemediationBuilder::force_reset`] was not asked): then no password is
    /// generated for it, so that nobody stores a password the account does not have.
    pub(crate) fn reset_done_earlier(&self, user: &str) -> bool {
        !self.force_reset
            && self
                .earlier
                .as_ref()
                .is_some_and(|e| e.did(user, Action::ResetPassword))
    }

    /// The actions of `user` as planned: done by an earlier run, already so.
    pub(crate) fn planned_actions(&self, user: &str, disabled_now: bool) -> Vec<PlannedAction> {
        self.actions
            .iter()
            .map(|&action| PlannedAction {
                action,
                done_earlier: self.earlier.as_ref().is_some_and(|e| {
                    !(action == Action::ResetPassword && self.force_reset) && e.did(user, action)
                }),
                already_so: action == Action::Disable && disabled_now,
            })
            .collect()
    }

    /// One directory operation, limited to `timeouts.directory`.
    pub(crate) async fn dir<T>(
        &self,
        operation: &str,
        fut: impl Future<Output = Result<T, exch_directory::DirectoryError>>,
    ) -> Result<T, StepError> {
        match tokio::time::timeout(self.timeouts.directory, fut).await {
            Ok(r) => r.map_err(StepError::from),
            Err(_) => Err(StepError::TimedOut {
                operation: operation.to_owned(),
                after: self.timeouts.directory,
                by_deadline: false,
            }),
        }
    }

    /// One directory operation, limited to `timeouts.directory` and to what is left of the
    /// run's deadline `dl`.
    pub(crate) async fn dir_within<T>(
        &self,
        dl: crate::deadline::Deadline,
        operation: &str,
        fut: impl Future<Output = Result<T, exch_directory::DirectoryError>>,
    ) -> Result<T, StepError> {
        let limit = dl.cap(self.timeouts.directory);
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(StepError::from),
            Err(_) => Err(StepError::TimedOut {
                operation: operation.to_owned(),
                after: limit,
                by_deadline: limit < self.timeouts.directory,
            }),
        }
    }

    /// A directory operation with retries of transient errors.
    pub(crate) async fn dir_retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, exch_directory::DirectoryError>>,
    {
        match self.dir(what, op()).await {
            Err(first) => self.retry_after(what, first, op).await,
            ok => ok,
        }
    }

    /// The retries of an operation whose first attempt failed with `first` (the first
    /// attempt counts against [`RetryPolicy::attempts`]).
    pub(crate) async fn retry_after<T, F, Fut>(
        &self,
        what: &str,
        first: StepError,
        mut op: F,
    ) -> Result<T, StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, exch_directory::DirectoryError>>,
    {
        let mut attempt = 1;
        let mut error = first;
        while error.is_transient() && attempt < self.retry.attempts {
            let delay = self.retry.delay(attempt);
            self.emit(Event::Retry {
                target: what.to_owned(),
                attempt,
                delay,
                error: error.to_string(),
            });
            tokio::time::sleep(delay).await;
            attempt += 1;
            match self.dir(what, op()).await {
                Ok(v) => return Ok(v),
                Err(e) => error = e,
            }
        }
        Err(error)
    }
}
