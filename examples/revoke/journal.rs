//! `--journal FILE`: what a run has done so far, rewritten atomically after every step that
//! changes something, so that a killed run can be finished by running the same command again.
//!
//! The journal holds no secret: the user, the password file's path (not its content), and the
//! progress as a [`Report`] that `RemediationBuilder::resume` understands (outcome `Partial`
//! with the reason "interrupted" until the run ends).

use exch_remediate::{Action, Event, Outcome, Plan, Report};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The journal file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Journal {
    /// Format version (1).
    pub(crate) version: u32,
    /// The user as given on the command line.
    pub(crate) user: String,
    /// Where this job's new password was written (and fsynced) **before** any reset was sent.
    /// `None`: no password was written (no reset, or `--new-password-env`).
    pub(crate) password_file: Option<PathBuf>,
    /// Progress: the report so far (the final report once `finished`).
    pub(crate) report: Report,
    /// Whether the run ended (whatever its outcome).
    pub(crate) finished: bool,
}

/// Why a journal's report is not final.
pub(crate) const INTERRUPTED: &str =
    "interrupted: the run did not finish; run the same command again (same --journal) to finish it";

impl Journal {
    /// A journal for a run of `plan`, continuing `earlier` (the previous journal's report or a
    /// `--resume` report) when given, so that what earlier runs did stays recorded.
    pub(crate) fn start(
        user: &str,
        plan: &Plan,
        earlier: Option<&Report>,
        password_file: Option<PathBuf>,
        security: Vec<String>,
    ) -> Journal {
        let mut report = match earlier {
            Some(r) => r.clone(),
            None => Report::begin(user, Some(plan.account.dn.clone()), Outcome::Partial),
        };
        report.outcome = Outcome::Partial;
        report.reasons = vec![INTERRUPTED.to_owned()];
        report.security = security;
        Journal {
            version: 1,
            user: user.to_owned(),
            password_file,
            report,
            finished: false,
        }
    }

    /// Reads a journal; `Ok(None)` when the file does not exist.
    pub(crate) fn load(path: &Path) -> Result<Option<Journal>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("--journal {}: {e}", path.display())),
        };
        let j: Journal = serde_json::from_str(&text).map_err(|e| {
            format!(
                "--journal {}: not a journal of this tool: {e}",
                path.display()
            )
        })?;
        if j.version != 1 {
            return Err(format!(
                "--journal {}: version {} is not supported",
                path.display(),
                j.version
            ));
        }
        Ok(Some(j))
    }

    /// Whether the directory accepted the password reset (in this job, any run).
    pub(crate) fn reset_applied(&self) -> bool {
        reset_applied(&self.report)
    }

    /// Folds a progress event in; `true` when the journal changed and must be written.
    pub(crate) fn apply(&mut self, event: &Event) -> bool {
        self.report.record(event)
    }

    /// The run ended: the journal holds its report.
    pub(crate) fn finish(&mut self, report: &Report) {
        self.report = report.clone();
        self.finished = true;
    }

    /// Writes the journal atomically: a temporary file next to it, fsync, rename, fsync of the
    /// directory. A reader (or a rerun after a kill) sees the old or the new journal, whole.
    pub(crate) fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        write_atomically(path, text.as_bytes())
            .map_err(|e| format!("--journal {}: cannot write it: {e}", path.display()))
    }
}

/// Whether `report` says the password reset is done (applied in it or in an earlier run).
pub(crate) fn reset_applied(report: &Report) -> bool {
    report
        .actions
        .iter()
        .any(|a| a.action == Action::ResetPassword && (a.outcome.is_some() || a.done_earlier))
}

/// tmp + fsync + rename + fsync(dir).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "journal".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(&dir)
}

/// fsync of a directory, so that a file created or renamed in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
