//! What a remediation did, step by step and server by server.

use chrono::{DateTime, Utc};
use exch_directory::ChangeOutcome;
use exch_iis::FlushReport;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::reasons::{Cause, FailureKind, SkipReason};
use crate::{Action, Step};

/// Overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Outcome {
    /// Every step verified: the change is on every reachable DC, every server's flush is proven
    /// (and, when asked, every probe with the old credentials was refused).
    Revoked,
    /// The directory change is applied but something was not verified; see `reasons` and
    /// `servers_to_retry`. Run again (with [`crate::RemediationBuilder::resume`]) to finish.
    Partial,
    /// The directory change itself failed or was not attempted.
    Failed,
}

/// Result of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step.
    pub step: Step,
    /// When it started.
    pub started: DateTime<Utc>,
    /// How long it took.
    #[serde(with = "exch_core::serde_ms::duration")]
    pub elapsed: Duration,
    /// Whether it fully succeeded.
    pub ok: bool,
    /// One line on what happened.
    pub detail: String,
}

/// What happened to one directory action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// The action.
    pub action: Action,
    /// Applied, already so, or `None` when it failed / was skipped.
    pub outcome: Option<ChangeOutcome>,
    /// Error text, when it failed.
    pub error: Option<String>,
    /// Skipped because a previous run already did it (see `resume`).
    pub done_earlier: bool,
}

/// Convergence on one domain controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DcRecord {
    /// DC name.
    pub dc: String,
    /// Whether it shows the change.
    pub converged: bool,
    /// Time from the start of the convergence step until it showed it.
    #[serde(with = "exch_core::serde_ms::opt_duration")]
    pub after: Option<Duration>,
    /// Reads made.
    pub reads: u32,
    /// Last error or why not converged.
    pub error: Option<String>,
}

/// Per-server outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerOutcome {
    /// Flushed and proven (new workers on every pool).
    Flushed {
        /// The flush report.
        flush: FlushReport,
        /// Attempts used.
        attempts: u32,
    },
    /// Flushed, but not every pool is proven.
    Unproven {
        /// The flush report.
        flush: FlushReport,
        /// Attempts used.
        attempts: u32,
        /// Which pools are not proven and why.
        reason: String,
    },
    /// The flush failed.
    Failed {
        /// Error kind (`Unreachable`, `Timeout`, `Unauthenticated`, …).
        kind: FailureKind,
        /// Error text (names the server, never a credential).
        error: String,
        /// Attempts used.
        attempts: u32,
    },
    /// Not attempted.
    Skipped {
        /// Why (cancelled, Edge server, no directory change, …).
        reason: SkipReason,
    },
}

/// One line for people: `flushed 7 pools, proven (4 round trips, 1 attempt(s))`,
/// `NOT PROVEN: …`, `FAILED (Timeout): …`, `skipped: …`.
impl std::fmt::Display for ServerOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerOutcome::Flushed { flush, attempts } => write!(
                f,
                "flushed {} pools, proven ({} round trips, {} attempt(s))",
                flush.pools.len(),
                flush.round_trips,
                attempts
            ),
            ServerOutcome::Unproven { reason, .. } => write!(f, "NOT PROVEN: {reason}"),
            ServerOutcome::Failed { kind, error, .. } => write!(f, "FAILED ({kind}): {error}"),
            ServerOutcome::Skipped { reason } => write!(f, "skipped: {reason}"),
        }
    }
}

impl ServerOutcome {
    /// Whether the server's caches are proven flushed.
    pub fn is_proven(&self) -> bool {
        matches!(self, ServerOutcome::Flushed { .. })
    }
}

/// Result of probing one endpoint with the old credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// Protocol probed.
    pub protocol: exch_core::Protocol,
    /// Whether the old credentials were refused (what we want).
    pub refused: bool,
    /// Whether the endpoint takes password logons at all, so that its answer proves something
    /// ([`ProbeResult::NotApplicable`](crate::ProbeResult::NotApplicable) when not: e.g. EWS
    /// and MAPI at Exchange's defaults take Windows authentication only). A probe that is not
    /// applicable is neither refused nor accepted and does not count against
    /// [`Outcome::Revoked`]. Reports written before this field existed read as `true`.
    #[serde(default = "applicable_by_default")]
    pub applicable: bool,
    /// Detail (HTTP status, error).
    pub detail: String,
}

/// Reports written before [`ProbeRecord::applicable`] existed probed only endpoints whose
/// answer counted.
fn applicable_by_default() -> bool {
    true
}

impl ProbeRecord {
    /// Whether this probe keeps the user from [`Outcome::Revoked`]: an applicable endpoint
    /// where the old credentials were not refused (accepted, or the probe failed).
    pub fn is_open(&self) -> bool {
        self.applicable && !self.refused
    }
}

/// How many of `probes` were refused, how many were applicable, and how many were not, as
/// one phrase for reports and step details: "old credentials refused on 3/3 endpoints (2 not
/// applicable: no password logon)".
pub(crate) fn probe_tally<'a>(probes: impl IntoIterator<Item = &'a ProbeRecord>) -> String {
    let (mut refused, mut applicable, mut not_applicable) = (0, 0, 0);
    for p in probes {
        if p.applicable {
            applicable += 1;
            refused += usize::from(p.refused);
        } else {
            not_applicable += 1;
        }
    }
    let mut s = format!("old credentials refused on {refused}/{applicable} endpoints");
    if not_applicable > 0 {
        s.push_str(&format!(
            " ({not_applicable} not applicable: no password logon)"
        ));
    }
    s
}

/// One server's record in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// Server name.
    pub server: String,
    /// Its FQDN.
    pub fqdn: String,
    /// The outcome.
    pub outcome: ServerOutcome,
    /// Probes with the old credentials, when asked.
    pub probes: Vec<ProbeRecord>,
    /// Wall time spent on this server.
    #[serde(with = "exch_core::serde_ms::duration")]
    pub elapsed: Duration,
}

/// The report of one [`crate::Remediation::execute`]: the one-user view of the engine's
/// [`crate::ManyReport`]. Serializes to JSON; contains no secret. Reports written by earlier
/// versions still read (see [`SkipReason`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// Overall outcome.
    pub outcome: Outcome,
    /// The account (DN) acted on, if found.
    pub account: Option<String>,
    /// The user as given.
    pub user: String,
    /// When the run started.
    pub started: DateTime<Utc>,
    /// Total wall time.
    #[serde(with = "exch_core::serde_ms::duration")]
    pub elapsed: Duration,
    /// Steps in order.
    pub steps: Vec<StepRecord>,
    /// Directory actions.
    pub actions: Vec<ActionRecord>,
    /// Convergence per DC.
    pub domain_controllers: Vec<DcRecord>,
    /// Per server.
    pub servers: Vec<ServerRecord>,
    /// Why the outcome is not `Revoked` (empty when it is), for people: `causes`, written out.
    pub reasons: Vec<String>,
    /// Why the outcome is not `Revoked`, typed (empty in reports of versions before 0.3).
    #[serde(default)]
    pub causes: Vec<Cause>,
    /// Servers whose flush must be rerun.
    pub servers_to_retry: Vec<String>,
    /// Whether the run was cancelled.
    pub cancelled: bool,
    /// The mailbox step ([`crate::RemediationBuilder::mailbox`]), when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<crate::MailboxRecord>,
    /// What this run closed and what could still stand, per channel.
    #[serde(default)]
    pub residual: Vec<crate::Residual>,
    /// Security checks the backends were told to skip (certificate verification off, Basic
    /// over plain HTTP, an unencrypted LDAP connection), one sentence each naming the opt-out;
    /// empty when every connection was encrypted and verified. See
    /// `CacheFlusher::security_notes` and `Directory::security_notes`.
    #[serde(default)]
    pub security: Vec<String>,
}

impl Report {
    /// An empty report for `user`, started now, with `outcome` until steps are recorded: what
    /// a run starts from, and what a journal of an interrupted run (see the `revoke` example)
    /// starts from.
    pub fn begin(user: impl Into<String>, account: Option<String>, outcome: Outcome) -> Report {
        Report {
            outcome,
            account,
            user: user.into(),
            started: chrono::Utc::now(),
            elapsed: std::time::Duration::ZERO,
            steps: Vec::new(),
            actions: Vec::new(),
            domain_controllers: Vec::new(),
            servers: Vec::new(),
            reasons: Vec::new(),
            causes: Vec::new(),
            servers_to_retry: Vec::new(),
            cancelled: false,
            mailbox: None,
            residual: Vec::new(),
            security: Vec::new(),
        }
    }

    /// Folds a progress event into this report, for a journal that lets a killed run be
    /// resumed ([`crate::RemediationBuilder::resume`]): [`crate::Event::ActionRecorded`] and
    /// [`crate::Event::ServerRecorded`] replace the record of their action or server. Returns
    /// whether the report changed (and should be written again).
    pub fn record(&mut self, event: &crate::Event) -> bool {
        match event {
            crate::Event::ActionRecorded { record, .. } => {
                self.actions.retain(|a| a.action != record.action);
                self.actions.push(record.clone());
                true
            }
            crate::Event::ServerRecorded { record } => {
                self.servers.retain(|s| s.server != record.server);
                self.servers.push((**record).clone());
                true
            }
            crate::Event::MailboxRecorded { record, .. } => {
                self.mailbox = Some((**record).clone());
                true
            }
            _ => false,
        }
    }

    /// A short human summary (one line per server plus the outcome).
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:?}: {} in {:.2}s ({} servers, {} DCs)",
            self.outcome,
            self.account.as_deref().unwrap_or(&self.user),
            self.elapsed.as_secs_f64(),
            self.servers.len(),
            self.domain_controllers.len()
        );
        for note in &self.security {
            let _ = writeln!(s, "  SECURITY: {note}");
        }
        for a in &self.actions {
            let what = match (&a.outcome, &a.error, a.done_earlier) {
                (_, _, true) => "done in an earlier run".to_owned(),
                (Some(o), _, _) => format!("{o:?}"),
                (None, Some(e), _) => format!("FAILED: {e}"),
                (None, None, _) => "not attempted".to_owned(),
            };
            let _ = writeln!(s, "  {:?}: {what}", a.action);
        }
        for dc in &self.domain_controllers {
            let _ = writeln!(
                s,
                "  DC {}: {}",
                dc.dc,
                if dc.converged {
                    format!(
                        "converged after {:?} ({} reads)",
                        dc.after.unwrap_or_default(),
                        dc.reads
                    )
                } else {
                    format!(
                        "NOT converged: {}",
                        dc.error.as_deref().unwrap_or("timeout")
                    )
                }
            );
        }
        for srv in &self.servers {
            let line = &srv.outcome;
            let probes = if srv.probes.is_empty() {
                String::new()
            } else {
                format!("; {}", probe_tally(&srv.probes))
            };
            let _ = writeln!(
                s,
                "  {}: {line}{probes} [{:.0} ms]",
                srv.server,
                srv.elapsed.as_secs_f64() * 1e3
            );
        }
        for r in &self.residual {
            let _ = writeln!(s, "  residual: {r}");
        }
        for r in &self.reasons {
            let _ = writeln!(s, "  reason: {r}");
        }
        s
    }
}
