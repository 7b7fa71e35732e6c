//! Containment beyond the token cache: the mailbox step's options and records, and the
//! residual-risk section — what a run closed, and what could still stand and until when.

use chrono::{DateTime, Utc};
use exch_mailbox::{
    CasUpdate, DeviceBlock, ForwardingChange, ForwardingReport, MobileDevices, RuleAction,
    RuleChange, WipeMode, WipeReport,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What the mailbox step does ([`crate::RemediationBuilder::mailbox`]); reading devices and
/// forwarding is always done, changes only when asked. Built with the `with_…` methods from
/// [`MailboxActions::default`] (nothing changed), or set one by one on the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MailboxActions {
    /// Send a remote wipe to every device, **before** the block (a blocked device can no
    /// longer receive it).
    pub wipe: Option<WipeMode>,
    /// Refuse every protocol (`Set-CASMailbox`) and block every device.
    pub lockdown: bool,
    /// Remove the mailbox's forwarding, and disable or remove the inbox rules that forward,
    /// redirect or delete.
    pub forwarding: Option<RuleAction>,
}

impl MailboxActions {
    /// With a remote wipe of every device, before the block.
    pub fn with_wipe(mut self, mode: WipeMode) -> Self {
        self.wipe = Some(mode);
        self
    }

    /// With the lockdown: every protocol refused, every device blocked.
    pub fn with_lockdown(mut self) -> Self {
        self.lockdown = true;
        self
    }

    /// With the forwarding removed and the inbox rules of concern disabled or removed.
    pub fn with_forwarding_removed(mut self, rules: RuleAction) -> Self {
        self.forwarding = Some(rules);
        self
    }

    /// Whether any change is asked for.
    pub fn changes_anything(&self) -> bool {
        self.wipe.is_some() || self.lockdown || self.forwarding.is_some()
    }
}

/// What the mailbox step did for one user.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MailboxRecord {
    /// The Exchange server the step ran through.
    pub server: String,
    /// The devices found before any change.
    pub devices: Option<MobileDevices>,
    /// The wipes sent (before the block).
    pub wipe: Option<WipeReport>,
    /// Protocol access before and after the lockdown.
    pub lockdown: Option<CasUpdate>,
    /// The block list before and after.
    pub blocked: Option<DeviceBlock>,
    /// Forwarding and the inbox rules of concern, as found.
    pub forwarding: Option<ForwardingReport>,
    /// Forwarding removed.
    pub forwarding_removed: Option<ForwardingChange>,
    /// Inbox rules disabled or removed.
    pub rules_changed: Option<RuleChange>,
    /// Errors, one per operation that failed (server and mailbox named, no secret).
    pub errors: Vec<String>,
}

impl MailboxRecord {
    /// Whether the protocols are locked and every device is blocked.
    pub fn locked(&self) -> bool {
        let devices_blocked = match (&self.devices, &self.blocked) {
            (Some(d), Some(b)) => d.devices.iter().all(|x| {
                b.after
                    .iter()
                    .any(|id| id.eq_ignore_ascii_case(&x.device_id))
            }),
            (Some(d), None) => d.devices.is_empty(),
            (None, _) => false,
        };
        self.lockdown
            .as_ref()
            .is_some_and(|l| l.after.open_protocols().is_empty())
            && devices_blocked
    }

    /// Whether every device found was sent a wipe that Exchange accepted.
    pub fn wiped(&self) -> bool {
        match (&self.devices, &self.wipe) {
            (Some(d), _) if d.devices.is_empty() => true,
            (Some(_), Some(w)) => w.all_done(),
            _ => false,
        }
    }
}

/// One channel through which the user could still get in, or mail could still leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Residual {
    /// Kerberos service tickets issued before the change stay valid until they expire (the
    /// KDC re-checks the account only when a TGT older than 20 minutes asks for a new
    /// ticket, MS-KILE 3.3.5.7.1); closed for every locked protocol.
    KerberosTickets {
        /// Closed by this run (every protocol locked).
        closed: bool,
        /// Until when a ticket could still be used: the change + 600 minutes (the default
        /// maximum service-ticket lifetime) unless the domain's policy says otherwise.
        until: Option<DateTime<Utc>>,
    },
    /// Windows-authenticated (Negotiate) connections stay authenticated for their life and
    /// can outlive a recycle (HTTP.sys holds them with kernel-mode authentication); closed by
    /// the lockdown.
    WindowsConnections {
        /// Closed by this run.
        closed: bool,
    },
    /// OAuth access tokens under Hybrid Modern Authentication (60–90 minutes, not revocable
    /// on-premises); the run cannot see whether HMA is in use.
    OAuth {
        /// Until when a token issued just before the change could be used (change + 90
        /// minutes), when HMA is in use.
        until: Option<DateTime<Utc>>,
    },
    /// A mobile device.
    Device {
        /// `DeviceId`.
        device_id: String,
        /// `wiped`, `blocked`, `wiped and blocked`, or `pending` (neither).
        state: String,
    },
    /// The mailbox's forwarding.
    Forwarding {
        /// Where mail goes.
        to: String,
        /// `removed` or `left in place`.
        state: String,
    },
    /// An inbox rule that forwards, redirects or deletes.
    Rule {
        /// The rule's name.
        name: String,
        /// `disabled`, `removed` or `left in place`.
        state: String,
    },
    /// Nothing is known about the mailbox side: no mailbox backend was given.
    MailboxNotChecked,
}

impl fmt::Display for Residual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let until = |t: &Option<DateTime<Utc>>| {
            t.map(|t| format!(" until {}", t.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default()
        };
        match self {
            Residual::KerberosTickets { closed: true, .. } => {
                f.write_str("Kerberos tickets: closed (every protocol locked)")
            }
            Residual::KerberosTickets { closed: false, until: u } => write!(
                f,
                "Kerberos tickets issued before the change: may still be used{} (lock the mailbox's protocols to close)",
                until(u)
            ),
            Residual::WindowsConnections { closed: true } => {
                f.write_str("Windows-authenticated connections: closed (every protocol locked)")
            }
            Residual::WindowsConnections { closed: false } => f.write_str(
                "Windows-authenticated connections opened before the change: may outlive the recycle (lock the mailbox's protocols to close)",
            ),
            Residual::OAuth { until: u } => write!(
                f,
                "OAuth tokens (Hybrid Modern Authentication, if used): may still be used{}; not revocable on-premises",
                until(u)
            ),
            Residual::Device { device_id, state } => write!(f, "device {device_id}: {state}"),
            Residual::Forwarding { to, state } => write!(f, "forwarding to {to}: {state}"),
            Residual::Rule { name, state } => write!(f, "inbox rule {name:?}: {state}"),
            Residual::MailboxNotChecked => f.write_str(
                "mailbox not checked (no mailbox backend): devices, forwarding and inbox rules unknown",
            ),
        }
    }
}

/// The residual section of one user: `changed_at` is when the directory change was applied.
pub(crate) fn residual(
    record: Option<&MailboxRecord>,
    changed_at: Option<DateTime<Utc>>,
) -> Vec<Residual> {
    let locked = record.is_some_and(MailboxRecord::locked);
    let mut out = vec![
        Residual::KerberosTickets {
            closed: locked,
            until: (!locked)
                .then(|| changed_at.map(|t| t + chrono::Duration::minutes(600)))
                .flatten(),
        },
        Residual::WindowsConnections { closed: locked },
        Residual::OAuth {
            until: (!locked)
                .then(|| changed_at.map(|t| t + chrono::Duration::minutes(90)))
                .flatten(),
        },
    ];
    let Some(r) = record else {
        out.push(Residual::MailboxNotChecked);
        return out;
    };
    for d in r.devices.iter().flat_map(|d| &d.devices) {
        let wiped = r
            .wipe
            .iter()
            .flat_map(|w| &w.devices)
            .any(|x| x.id == d.identity && x.is_done());
        let blocked = r
            .blocked
            .iter()
            .flat_map(|b| &b.after)
            .any(|id| id.eq_ignore_ascii_case(&d.device_id));
        let state = match (wiped, blocked) {
            (true, true) => "wiped and blocked",
            (true, false) => "wiped",
            (false, true) => "blocked",
            (false, false) => "pending: neither wiped nor blocked",
        };
        out.push(Residual::Device {
            device_id: d.device_id.clone(),
            state: state.into(),
        });
    }
    if let Some(f) = &r.forwarding {
        let removed = r
            .forwarding_removed
            .as_ref()
            .is_some_and(|c| !c.after.is_set());
        let fw = &f.forwarding;
        for to in fw.smtp_address.iter().chain(fw.address.iter()) {
            out.push(Residual::Forwarding {
                to: to.clone(),
                state: if removed { "removed" } else { "left in place" }.into(),
            });
        }
        for rule in &f.rules {
            let done = r.rules_changed.as_ref().and_then(|c| {
                c.rules
                    .iter()
                    .find(|x| x.id == rule.identity && x.is_done())
                    .map(|_| c.action)
            });
            let state = match done {
                Some(RuleAction::Disable) => "disabled",
                Some(RuleAction::Remove) => "removed",
                None => "left in place",
            };
            out.push(Residual::Rule {
                name: rule.name.clone(),
                state: state.into(),
            });
        }
    }
    out
}

/// The mailbox step in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PlannedMailbox {
    /// The Exchange server whose Exchange Management Shell runs the step.
    pub server: String,
    /// What it does beyond reading.
    pub actions: MailboxActions,
}

impl PlannedMailbox {
    /// What the step does, in one line (for the plan's impact list).
    pub fn impact(&self) -> String {
        let a = &self.actions;
        let mut parts =
            vec!["read each user's mobile devices, forwarding and inbox rules".to_owned()];
        if let Some(mode) = a.wipe {
            parts.push(format!(
                "send a remote wipe ({}) to every device, before the block",
                match mode {
                    WipeMode::Full => "full device",
                    _ => "account only",
                }
            ));
        }
        if a.lockdown {
            parts.push(
                "refuse OWA, EWS, ActiveSync, MAPI, Outlook Anywhere, POP, IMAP and ECP and block every device: the user's sessions of every kind are refused"
                    .to_owned(),
            );
        }
        if let Some(action) = a.forwarding {
            parts.push(format!(
                "remove forwarding and {action} the inbox rules that forward, redirect or delete"
            ));
        }
        format!("mailbox (through {}): {}", self.server, parts.join("; "))
    }
}
