//! `--journal FILE`: what a run has done so far, rewritten atomically after every event that
//! changes it, so that `exch-revoke resume FILE` finishes a run that was killed.
//!
//! The journal holds no secret: the job (users, actions, where passwords go), the password
//! files' paths (named **before** they are written), and the progress as a
//! [`ManyReport`] journal that [`exch_remediate::RemediationBuilder::resume_many`]
//! understands (outcome `Partial`, cause `Interrupted`, until the run ends).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use exch_remediate::{Action, Event, ManyReport};
use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::fsutil;
use crate::passwords::{OldPasswords, PasswordSink};

/// The journal format this version writes.
pub const VERSION: u32 = 2;
/// The `kind` of a journal file (to tell it from a report).
pub const KIND: &str = "exch-revoke journal";

/// What a job does: enough to run it again from its journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The users, as given, in order.
    pub users: Vec<String>,
    /// Disable the accounts.
    pub disable: bool,
    /// Reset the passwords (generated).
    pub reset_password: bool,
    /// Disable every account before resetting any password.
    pub contain_first: bool,
    /// Act on the users that resolve; report the others.
    pub skip_unresolved: bool,
    /// Where generated passwords go.
    pub passwords: Option<PasswordSink>,
    /// Probe with the old passwords, from here.
    pub probe: Option<OldPasswords>,
    /// Mailbox containment (`--lockdown`, `--wipe-devices`, `--remove-forwarding`).
    #[serde(default)]
    pub mailbox: exch_remediate::MailboxActions,
}

impl Job {
    /// The actions, in order.
    pub fn actions(&self) -> Vec<Action> {
        let mut a = Vec::new();
        if self.disable {
            a.push(Action::Disable);
        }
        if self.reset_password {
            a.push(Action::ResetPassword);
        }
        a
    }
}

/// The journal file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// [`KIND`].
    pub kind: String,
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The job.
    pub job: Job,
    /// Per user: the file that holds (or will hold) the new password; named here before the
    /// file is written, so a rerun knows which password may have been sent.
    #[serde(default)]
    pub password_files: BTreeMap<String, PathBuf>,
    /// Users whose new password was handed to `--password-command` (in this job).
    #[serde(default)]
    pub passwords_handed: Vec<String>,
    /// Progress: the report so far (the final report once `finished`).
    pub report: ManyReport,
    /// Whether the run ended (whatever its outcome).
    pub finished: bool,
}

/// The earlier progress a resumed run starts from.
#[derive(Debug, Clone)]
pub enum Earlier {
    /// A journal (`exch-revoke resume JOURNAL`): the job is in it.
    Journal(Box<Journal>),
    /// A report of many users (`--json` of `revoke`), or a journal's report.
    Many(Box<ManyReport>),
    /// A one-user report (of the library's `Remediation`, or of the old `revoke` example).
    One(Box<exch_remediate::Report>),
}

impl Journal {
    /// A new journal of `job`, with `report` as its progress.
    pub fn new(job: Job, report: ManyReport) -> Journal {
        Journal {
            kind: KIND.to_owned(),
            version: VERSION,
            job,
            password_files: BTreeMap::new(),
            passwords_handed: Vec::new(),
            report,
            finished: false,
        }
    }

    /// Folds a progress event in; `true` when the journal changed and must be written.
    pub fn record(&mut self, event: &Event) -> bool {
        self.report.record(event)
    }

    /// Writes the journal atomically (temporary file, fsync, rename, fsync of the directory).
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| CliError::failed(None, format!("cannot encode the journal: {e}"), None))?;
        fsutil::write_atomically(path, text.as_bytes())
            .map_err(|e| CliError::io(path, "write the journal", &e))
    }
}

/// Whether `user`'s password reset is recorded as applied (in this run or an earlier one).
pub fn reset_applied(report: &ManyReport, user: &str) -> bool {
    report.user(user).is_some_and(|u| {
        u.actions
            .iter()
            .any(|a| a.action == Action::ResetPassword && (a.outcome.is_some() || a.done_earlier))
    })
}

/// Reads what `resume FILE` continues: a journal, a many-user report or a one-user report.
pub fn load(path: &Path) -> Result<Earlier, CliError> {
    let input = || path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::bad_input(
            input(),
            format!("cannot read it: {e}"),
            "give the --journal or --json file of the run to resume",
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        CliError::at_line(
            path,
            e.line(),
            format!("not JSON: {e}"),
            "give the --journal or --json file of the run to resume",
        )
    })?;
    if value.get("kind").and_then(|k| k.as_str()) == Some(KIND) {
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version != u64::from(VERSION) {
            return Err(CliError::bad_input(
                input(),
                format!("journal version {version} is not supported by this exch-revoke (it reads version {VERSION})"),
                "resume it with the exch-revoke version that wrote it",
            ));
        }
        let j: Journal = serde_json::from_value(value).map_err(|e| {
            CliError::bad_input(
                input(),
                format!("a damaged journal: {e}"),
                "resume from the run's --json report instead, if it has one",
            )
        })?;
        return Ok(Earlier::Journal(Box::new(j)));
    }
    if value.get("users").is_some_and(|u| u.is_array()) {
        let r: ManyReport = serde_json::from_value(value).map_err(|e| {
            CliError::bad_input(
                input(),
                format!("not a report of exch-revoke: {e}"),
                "give the --journal or --json file of the run to resume",
            )
        })?;
        return Ok(Earlier::Many(Box::new(r)));
    }
    if value.get("user").is_some_and(|u| u.is_string()) {
        if value.get("version").and_then(|v| v.as_u64()) == Some(1) && value.get("report").is_some()
        {
            // A journal of the old `revoke` example: its report is what can be resumed.
            let r: exch_remediate::Report = serde_json::from_value(value["report"].clone())
                .map_err(|e| {
                    CliError::bad_input(
                        input(),
                        format!("a damaged journal: {e}"),
                        "resume from the run's --json report instead",
                    )
                })?;
            return Ok(Earlier::One(Box::new(r)));
        }
        let r: exch_remediate::Report = serde_json::from_value(value).map_err(|e| {
            CliError::bad_input(
                input(),
                format!("not a report of exch-revoke: {e}"),
                "give the --journal or --json file of the run to resume",
            )
        })?;
        return Ok(Earlier::One(Box::new(r)));
    }
    Err(CliError::bad_input(
        input(),
        "neither a journal nor a report of exch-revoke",
        "give the --journal or --json file of the run to resume",
    ))
}
