//! Typed reasons: why a server was skipped or failed, why a user is not revoked, and the
//! errors of directory work that the engine itself cuts short. Each has a `Display` for people;
//! the engine's control flow looks only at the variants, never at the text.

use exch_directory::DirectoryError;
use exch_iis::IisError;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::time::Duration;

use crate::{Action, UserProblem};

/// Why a server is not flushed ([`crate::ServerOutcome::Skipped`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// An Edge Transport server: not domain-joined, no IIS logon caches.
    EdgeServer,
    /// Excluded by the caller ([`crate::RemediationBuilder::exclude_server`]).
    Excluded,
    /// Not in the caller's include list ([`crate::RemediationBuilder::include_server`]).
    NotIncluded,
    /// In a site the caller did not select.
    SiteNotSelected {
        /// The server's site, when known.
        site: Option<String>,
    },
    /// Has none of the roles the caller selected.
    RolesNotSelected {
        /// The server's roles.
        roles: String,
    },
    /// An earlier run (given to `resume`) proved this server flushed, and this run changes
    /// nothing in the directory.
    ProvenEarlier,
    /// No directory change was applied, so there is nothing to flush for.
    NoDirectoryChange,
    /// The run was cancelled before this server was started (to be retried).
    Cancelled,
    /// The run's deadline was reached before this server was started (to be retried).
    Deadline {
        /// The run's deadline.
        #[serde(with = "exch_core::serde_ms::duration")]
        limit: Duration,
    },
    /// A reason written by an older version, kept as it was written.
    Legacy {
        /// The text.
        text: String,
    },
}

impl SkipReason {
    /// Whether a later run must still flush this server (cancelled or cut by the deadline).
    pub fn is_retried(&self) -> bool {
        matches!(self, SkipReason::Cancelled | SkipReason::Deadline { .. })
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::EdgeServer => {
                f.write_str("Edge Transport server: not domain-joined, no IIS logon caches")
            }
            SkipReason::Excluded => f.write_str("excluded by the caller"),
            SkipReason::NotIncluded => f.write_str("not in the caller's include list"),
            SkipReason::SiteNotSelected { site } => write!(
                f,
                "site {} not selected",
                site.as_deref().unwrap_or("(unknown)")
            ),
            SkipReason::RolesNotSelected { roles } => write!(f, "roles {roles} not selected"),
            SkipReason::ProvenEarlier => f.write_str("flush proven in an earlier run"),
            SkipReason::NoDirectoryChange => f.write_str("no directory change was applied"),
            SkipReason::Cancelled => f.write_str("cancelled"),
            SkipReason::Deadline { limit } => {
                write!(f, "not started: the run deadline ({limit:?}) was reached")
            }
            SkipReason::Legacy { text } => f.write_str(text),
        }
    }
}

impl Serialize for SkipReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SkipReason::serialize(self, s)
    }
}

/// Reads the tagged form, and the plain sentence that versions before 0.3 wrote (a tested
/// migration: the sentences that carried meaning map to their variants, others are kept as
/// [`SkipReason::Legacy`]).
impl<'de> Deserialize<'de> for SkipReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            Tagged(#[serde(deserialize_with = "SkipReason::deserialize")] SkipReason),
        }
        Ok(match Wire::deserialize(d)? {
            Wire::Tagged(r) => r,
            Wire::Text(text) => SkipReason::from_legacy(text),
        })
    }
}

impl SkipReason {
    /// The variant of a sentence written by versions before 0.3.
    fn from_legacy(text: String) -> SkipReason {
        match text.as_str() {
            "flush proven in an earlier run" => SkipReason::ProvenEarlier,
            "cancelled" => SkipReason::Cancelled,
            "excluded by the caller" => SkipReason::Excluded,
            "not in the caller's include list" => SkipReason::NotIncluded,
            t if t.starts_with("Edge Transport server") => SkipReason::EdgeServer,
            t if t.starts_with("not started: the run deadline") => SkipReason::Deadline {
                limit: Duration::ZERO,
            },
            "no directory change was applied"
            | "the directory change failed"
            | "account not found"
            | "account changed since the plan" => SkipReason::NoDirectoryChange,
            _ => SkipReason::Legacy { text },
        }
    }
}

/// What kind of error ended a server's flush ([`crate::ServerOutcome::Failed`]); serialized as
/// the name (`"Timeout"`), as versions before 0.3 wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FailureKind {
    /// The server could not be reached.
    Unreachable,
    /// The server refused our credentials.
    Unauthenticated,
    /// The server offers none of the authentication methods allowed.
    AuthMethodUnavailable,
    /// The server's certificate is not trusted (pass its CA file).
    Tls,
    /// No answer in time (the per-server limit or the run's deadline).
    Timeout,
    /// A planned pool does not exist on the server.
    PoolNotFound,
    /// The command on the server failed.
    CommandFailed,
    /// A WS-Management fault.
    Fault,
    /// A reply that breaks the protocol.
    Protocol,
    /// Input refused before anything was sent.
    InvalidInput,
    /// Any other error.
    Other,
}

impl FailureKind {
    /// The kind of a flusher's error.
    pub fn of(e: &IisError) -> FailureKind {
        match e {
            IisError::Unreachable { .. } => FailureKind::Unreachable,
            IisError::Unauthenticated { .. } => FailureKind::Unauthenticated,
            IisError::AuthMethodUnavailable { .. } => FailureKind::AuthMethodUnavailable,
            IisError::Tls { .. } => FailureKind::Tls,
            IisError::Timeout { .. } => FailureKind::Timeout,
            IisError::PoolNotFound { .. } => FailureKind::PoolNotFound,
            IisError::CommandFailed { .. } => FailureKind::CommandFailed,
            IisError::Fault { .. } => FailureKind::Fault,
            IisError::Protocol { .. } => FailureKind::Protocol,
            IisError::InvalidInput { .. } => FailureKind::InvalidInput,
            _ => FailureKind::Other,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a user (or, in [`crate::ManyReport::causes`], the whole run) is not `Revoked`. The
/// reports' `reasons` are these, written for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cause {
    /// The user was not acted on: the plan could not resolve it.
    Unresolved {
        /// Why.
        problem: UserProblem,
    },
    /// The user is not a user of this run (a plan of another run was given).
    NotInRun,
    /// The account could not be read again before the change.
    AccountNotFound {
        /// The error.
        error: String,
    },
    /// The user now resolves to another account than the plan's.
    AccountChanged {
        /// The account of the plan.
        planned: String,
        /// The account now.
        now: String,
    },
    /// Cancelled before the account was changed.
    CancelledBeforeChange,
    /// A directory action failed or was not attempted.
    ActionFailed {
        /// The action.
        action: Action,
        /// Why.
        error: String,
    },
    /// No directory change was applied.
    NoChange,
    /// Not every domain controller shows the change.
    NotConverged {
        /// DCs that show it.
        shown: usize,
        /// DCs asked.
        total: usize,
        /// The DCs that do not show it.
        waiting: Vec<String>,
    },
    /// Not every server is proven flushed.
    ServersNotProven {
        /// The servers to flush again.
        servers: Vec<String>,
    },
    /// No Exchange server was flushed.
    NothingFlushed,
    /// The old credentials were not refused (or the probe failed) on these endpoints.
    NotRefused {
        /// `SERVER Protocol`, one per endpoint.
        endpoints: Vec<String>,
    },
    /// Users of the batch that are not `Revoked` (only in [`crate::ManyReport::causes`]).
    UsersNotRevoked {
        /// How many users are not.
        count: usize,
        /// Users in the run.
        total: usize,
        /// The first 20 of them.
        first: Vec<String>,
    },
    /// The run was cancelled.
    Cancelled,
    /// The run did not finish (a journal: see [`crate::ManyReport::journal`]).
    Interrupted,
    /// Probes were asked for, but no probed endpoint takes a password logon, so nothing
    /// proves the old password refused.
    NothingProbed,
    /// The mailbox step did not do everything asked (see the user's `mailbox` record).
    MailboxIncomplete {
        /// What is missing, and the errors.
        what: Vec<String>,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Unresolved { problem } => write!(f, "skipped: {problem}"),
            Cause::NotInRun => f.write_str(
                "not a user of this run (a plan of another run?); plan again",
            ),
            Cause::AccountNotFound { error } => write!(f, "cannot find the account: {error}"),
            Cause::AccountChanged { planned, now } => {
                write!(f, "now resolves to {now}, not {planned} as planned; plan again")
            }
            Cause::CancelledBeforeChange => {
                f.write_str("cancelled before the directory was changed")
            }
            Cause::ActionFailed { action, error } => write!(f, "{action:?} failed: {error}"),
            Cause::NoChange => f.write_str("no directory change was applied"),
            Cause::NotConverged {
                shown,
                total,
                waiting,
            } => write!(
                f,
                "only {shown}/{total} domain controllers show the change (not converged on {}); caches were flushed anyway, run again after replication",
                waiting.join(", ")
            ),
            Cause::ServersNotProven { servers } => {
                write!(f, "servers not proven flushed: {}", servers.join(", "))
            }
            Cause::NothingFlushed => f.write_str("no Exchange server was flushed"),
            Cause::NotRefused { endpoints } => write!(
                f,
                "old credentials were not refused on {} endpoint(s): {}",
                endpoints.len(),
                endpoints.join(", ")
            ),
            Cause::UsersNotRevoked {
                count,
                total,
                first,
            } => {
                let more = count.saturating_sub(first.len());
                write!(f, "{count}/{total} users not revoked: {}", first.join(", "))?;
                if more > 0 {
                    write!(f, " and {more} more")?;
                }
                Ok(())
            }
            Cause::Cancelled => f.write_str("cancelled"),
            Cause::MailboxIncomplete { what } => {
                write!(f, "mailbox step incomplete: {}", what.join("; "))
            }
            Cause::NothingProbed => f.write_str(
                "no probed endpoint takes a password logon: the old password's refusal is not proven (probe OWA, ActiveSync or Outlook Anywhere)",
            ),
            Cause::Interrupted => {
                f.write_str("interrupted: this is the journal of a run that did not finish")
            }
        }
    }
}

/// An error of directory work during a run: the backend's, or the engine's own limit.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    /// The backend's error.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The engine stopped waiting.
    #[error("{operation}: no answer after {after:?}{}", if *.by_deadline { " (cut by the run deadline)" } else { "" })]
    TimedOut {
        /// What was waited for.
        operation: String,
        /// How long.
        after: Duration,
        /// Whether the run's deadline cut the wait.
        by_deadline: bool,
    },
}

impl StepError {
    /// Whether a retry may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            StepError::Directory(e) => e.is_transient(),
            StepError::TimedOut { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_round_trip_and_old_sentences_migrate() {
        for r in [
            SkipReason::ProvenEarlier,
            SkipReason::Deadline {
                limit: Duration::from_millis(1500),
            },
            SkipReason::SiteNotSelected {
                site: Some("Paris".into()),
            },
        ] {
            let json = serde_json::to_string(&r).unwrap_or_default();
            assert!(json.contains("\"kind\""), "{json}");
            let back: SkipReason = serde_json::from_str(&json).unwrap_or(SkipReason::Cancelled);
            assert_eq!(back, r);
        }
        let old = |s: &str| -> SkipReason {
            serde_json::from_value(serde_json::Value::String(s.into()))
                .unwrap_or(SkipReason::Cancelled)
        };
        assert_eq!(
            old("flush proven in an earlier run"),
            SkipReason::ProvenEarlier
        );
        assert_eq!(
            old("not started: the run deadline (1s) was reached"),
            SkipReason::Deadline {
                limit: Duration::ZERO
            }
        );
        assert_eq!(
            old("site X not selected"),
            SkipReason::Legacy {
                text: "site X not selected".into()
            }
        );
        assert!(old("cancelled").is_retried());
    }

    #[test]
    fn failure_kinds_keep_the_names_older_reports_hold() {
        let k: FailureKind = serde_json::from_str("\"Unreachable\"").unwrap_or(FailureKind::Other);
        assert_eq!(k, FailureKind::Unreachable);
        assert_eq!(
            serde_json::to_string(&FailureKind::Timeout).unwrap_or_default(),
            "\"Timeout\""
        );
    }
}
