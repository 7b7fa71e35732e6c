//! What a many-user run did: per user, per server, overall.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

use crate::reasons::Cause;
use crate::report::{ActionRecord, DcRecord, ProbeRecord, ServerRecord, StepRecord};
use crate::Outcome;

/// Why a user of a many-user run cannot be revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum UserProblem {
    /// Not a valid user identifier.
    Invalid {
        /// Why.
        reason: String,
    },
    /// No account matches.
    NotFound {
        /// What was looked for.
        detail: String,
    },
    /// More than one account matches.
    Ambiguous {
        /// The matches.
        detail: String,
    },
    /// The same account as an earlier user of the list.
    Duplicate {
        /// The earlier user (as given).
        of: String,
        /// The account.
        dn: String,
    },
}

impl fmt::Display for UserProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserProblem::Invalid { reason } => write!(f, "invalid: {reason}"),
            UserProblem::NotFound { detail } => write!(f, "not found ({detail})"),
            UserProblem::Ambiguous { detail } => write!(f, "ambiguous: {detail}"),
            UserProblem::Duplicate { of, dn } => {
                write!(f, "the same account as {of:?} ({dn}): listed twice")
            }
        }
    }
}

/// Probes of one server with one user's old password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerProbes {
    /// Server name.
    pub server: String,
    /// One record per protocol.
    pub probes: Vec<ProbeRecord>,
}

/// One user's record in a [`ManyReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserRecord {
    /// The user as given.
    pub user: String,
    /// The account (DN) acted on, if resolved.
    pub account: Option<String>,
    /// This user's outcome: `Revoked` when every action is applied, every DC shows it, every
    /// server is proven flushed and every probe was refused; `Failed` when nothing was applied.
    pub outcome: Outcome,
    /// Directory actions.
    pub actions: Vec<ActionRecord>,
    /// Convergence of this account per DC.
    pub domain_controllers: Vec<DcRecord>,
    /// Probes with the old password, per server (when asked).
    pub probes: Vec<ServerProbes>,
    /// Why the outcome is not `Revoked` (empty when it is), for people: `causes`, written out.
    pub reasons: Vec<String>,
    /// Why the outcome is not `Revoked`, typed (empty in reports of versions before 0.3).
    #[serde(default)]
    pub causes: Vec<Cause>,
    /// The mailbox step ([`crate::RemediationBuilder::mailbox`]), when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<crate::MailboxRecord>,
    /// What this run closed and what could still stand, per channel.
    #[serde(default)]
    pub residual: Vec<crate::Residual>,
}

impl UserRecord {
    /// The record of `user` (account `account`) before anything is done.
    pub(crate) fn new(user: String, account: Option<String>, outcome: Outcome) -> UserRecord {
        UserRecord {
            user,
            account,
            outcome,
            actions: Vec::new(),
            domain_controllers: Vec::new(),
            probes: Vec::new(),
            reasons: Vec::new(),
            causes: Vec::new(),
            mailbox: None,
            residual: Vec::new(),
        }
    }

    /// Records a cause (and its sentence in `reasons`).
    pub(crate) fn add(&mut self, cause: Cause) {
        self.reasons.push(cause.to_string());
        self.causes.push(cause);
    }
}

/// The report of one [`crate::RevokeMany::execute`] (and, seen through
/// [`crate::Report`], of a one-user run). Serializes to JSON; contains no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ManyReport {
    /// `Revoked` only when every user is; `Failed` when no directory change was applied for
    /// any user; `Partial` otherwise (see `users_failed`, `servers_to_retry`, `reasons`).
    pub outcome: Outcome,
    /// When the run started.
    pub started: DateTime<Utc>,
    /// Total wall time.
    #[serde(with = "exch_core::serde_ms::duration")]
    pub elapsed: Duration,
    /// Steps in order (for the whole batch).
    pub steps: Vec<StepRecord>,
    /// Per user, in the order given.
    pub users: Vec<UserRecord>,
    /// Per server: one flush for the whole batch (its `probes` stay empty; see
    /// [`UserRecord::probes`]).
    pub servers: Vec<ServerRecord>,
    /// Users that are not `Revoked`, in the order given: rerun for them.
    pub users_failed: Vec<String>,
    /// Servers whose flush must be rerun.
    pub servers_to_retry: Vec<String>,
    /// Why the outcome is not `Revoked` (empty when it is), for people: `causes`, written out.
    pub reasons: Vec<String>,
    /// Why the outcome is not `Revoked`, typed (empty in reports of versions before 0.3).
    #[serde(default)]
    pub causes: Vec<Cause>,
    /// Whether the run was cancelled.
    pub cancelled: bool,
    /// Containment time: from the start of `execute` until the disable of every resolved
    /// account was applied (or found already so) — when the last disable-only modify returned
    /// with [`crate::RemediationBuilder::contain_first`], when the last combined modify
    /// returned without it. `None` when some account's disable failed or was not attempted
    /// (or the run does not disable).
    #[serde(default, with = "exch_core::serde_ms::opt_duration")]
    pub contained_after: Option<Duration>,
    /// Security checks the backends were told to skip (see [`crate::Report::security`]).
    #[serde(default)]
    pub security: Vec<String>,
}

impl ManyReport {
    /// Records a cause (and its sentence in `reasons`).
    pub(crate) fn add(&mut self, cause: Cause) {
        self.reasons.push(cause.to_string());
        self.causes.push(cause);
    }

    /// The journal of a batch about to run `plan`: every user, nothing done yet, outcome
    /// `Partial` with the reason that the run was interrupted — until the run's
    /// [`ManyReport`] replaces it. Fold the run's events into it with
    /// [`record`](Self::record); after a crash, give it to
    /// [`crate::RemediationBuilder::resume_many`].
    pub fn journal(plan: &crate::ManyPlan) -> ManyReport {
        let users = plan
            .users
            .iter()
            .map(|u| {
                let account = u.account.as_ref().map(|a| a.dn.to_string());
                UserRecord::new(u.user.clone(), account, Outcome::Partial)
            })
            .collect();
        let mut journal = ManyReport::begin(Outcome::Partial, users, Vec::new());
        journal.add(Cause::Interrupted);
        journal
    }

    /// A report with `users` and nothing done yet, started now.
    pub(crate) fn begin(
        outcome: Outcome,
        users: Vec<UserRecord>,
        security: Vec<String>,
    ) -> ManyReport {
        ManyReport {
            outcome,
            started: chrono::Utc::now(),
            elapsed: Duration::ZERO,
            steps: Vec::new(),
            users,
            servers: Vec::new(),
            users_failed: Vec::new(),
            servers_to_retry: Vec::new(),
            reasons: Vec::new(),
            causes: Vec::new(),
            cancelled: false,
            contained_after: None,
            security,
        }
    }

    /// Folds a progress event into this report (see [`journal`](Self::journal)):
    /// [`crate::Event::ActionRecorded`] replaces the record of its user's action,
    /// [`crate::Event::ServerRecorded`] the record of its server. Returns whether the report
    /// changed (and should be written again).
    pub fn record(&mut self, event: &crate::Event) -> bool {
        match event {
            crate::Event::ActionRecorded { user, record } => {
                let Some(u) = self.users.iter_mut().find(|u| &u.user == user) else {
                    return false;
                };
                u.actions.retain(|a| a.action != record.action);
                u.actions.push(record.clone());
                true
            }
            crate::Event::ServerRecorded { record } => {
                self.servers.retain(|s| s.server != record.server);
                self.servers.push((**record).clone());
                true
            }
            crate::Event::MailboxRecorded { user, record } => {
                let Some(u) = self.users.iter_mut().find(|u| &u.user == user) else {
                    return false;
                };
                u.mailbox = Some((**record).clone());
                true
            }
            _ => false,
        }
    }

    /// The record of `user` (as given).
    pub fn user(&self, user: &str) -> Option<&UserRecord> {
        self.users.iter().find(|u| u.user == user)
    }

    /// A short human summary: counts, then one line per user that is not revoked and per
    /// server.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let revoked = self
            .users
            .iter()
            .filter(|u| u.outcome == Outcome::Revoked)
            .count();
        let _ = writeln!(
            s,
            "{:?}: {revoked}/{} users revoked in {:.2}s, {} servers",
            self.outcome,
            self.users.len(),
            self.elapsed.as_secs_f64(),
            self.servers.len()
        );
        if let Some(d) = self.contained_after {
            let _ = writeln!(
                s,
                "  contained: every account disabled after {:.2}s",
                d.as_secs_f64()
            );
        } else if self
            .users
            .iter()
            .any(|u| u.actions.iter().any(|a| a.action == crate::Action::Disable))
        {
            let _ = writeln!(s, "  NOT contained: not every account is disabled");
        }
        for note in &self.security {
            let _ = writeln!(s, "  SECURITY: {note}");
        }
        for u in self.users.iter().filter(|u| u.outcome != Outcome::Revoked) {
            let _ = writeln!(
                s,
                "  user {}: {:?}: {}",
                crate::error::user_line(&u.user),
                u.outcome,
                u.reasons.join("; ")
            );
        }
        for srv in &self.servers {
            let _ = writeln!(s, "  server {}: {}", srv.server, srv.outcome);
        }
        for r in &self.reasons {
            let _ = writeln!(s, "  reason: {r}");
        }
        s
    }
}
