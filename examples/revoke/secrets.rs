//! Passwords: from the environment or a prompt (never argv), and the new password's file.

use secrecy::{ExposeSecret, SecretString};
use std::io::Write;
use std::path::Path;

use crate::journal::{self, Journal};

/// A password from the environment variable `var`, else from a prompt on the terminal.
pub(crate) fn from_env_or_prompt(var: &str, prompt: &str) -> Result<SecretString, String> {
    if let Ok(v) = std::env::var(var) {
        if !v.is_empty() {
            return Ok(SecretString::from(v));
        }
    }
    rpassword::prompt_password(prompt)
        .map(SecretString::from)
        .map_err(|e| {
            format!("no {var} in the environment and no terminal to prompt on ({e}); set {var}")
        })
}

/// Creates `path` (it must not exist) with mode 0600, writes `content`, and makes file and
/// directory entry durable (fsync both) before returning.
pub(crate) fn write_private(path: &Path, content: &SecretString) -> Result<(), String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| {
        format!(
            "cannot create {} ({e}); choose a new file (a password file left by a run that was killed before its journal recorded it was never sent to the directory: delete it)",
            path.display()
        )
    })?;
    f.write_all(content.expose_secret().as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    journal::sync_dir(dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

/// What to do about the new password in this run.
pub(crate) enum NewPasswordPlan {
    /// Generate one, write it to the file, then reset. `force`: reset even if an earlier run
    /// of the job did (its password file is gone: a password nobody holds must be replaced).
    GenerateAndStore {
        /// Reset again although the journal says an earlier run did.
        force: bool,
    },
    /// Use the password an interrupted run of this job already stored in the file: the file is
    /// never rewritten, and if the reset was not confirmed it is sent (again) with THAT password.
    Stored(SecretString),
    /// The reset is done (an earlier run applied it); nothing to write.
    Done,
}

/// Decides, from the journal of an interrupted run (if any), how the new password is handled:
/// a rerun never generates a second password while the first one is stored for the job.
pub(crate) fn plan_new_password(
    earlier: Option<&Journal>,
    password_out: &Path,
) -> Result<NewPasswordPlan, String> {
    let fresh = NewPasswordPlan::GenerateAndStore { force: false };
    let Some(j) = earlier else {
        return Ok(fresh);
    };
    let Some(stored) = &j.password_file else {
        return Ok(if j.reset_applied() {
            NewPasswordPlan::Done
        } else {
            fresh
        });
    };
    if stored != password_out {
        return Err(format!(
            "the journal says this job's new password is in {}, not {}: pass --password-out {}",
            stored.display(),
            password_out.display(),
            stored.display()
        ));
    }
    match std::fs::read_to_string(stored) {
        Ok(pw) if !pw.is_empty() => Ok(NewPasswordPlan::Stored(SecretString::from(pw))),
        // Killed before the password was written (or it was deleted since): the reset is only
        // ever sent after the file is complete, so a new password, stored first, is safe.
        Ok(_) => {
            std::fs::remove_file(stored)
                .map_err(|e| format!("cannot remove the empty {}: {e}", stored.display()))?;
            Ok(NewPasswordPlan::GenerateAndStore { force: true })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(NewPasswordPlan::GenerateAndStore { force: true })
        }
        Err(e) => Err(format!(
            "the journal says this job's new password is in {} but it cannot be read: {e}",
            stored.display()
        )),
    }
}

/// What `--resume REPORT` does about the password when REPORT says the reset was applied: the
/// account keeps the password that run set; `--password-out` is neither written nor required,
/// `--new-password-env` is not used.
pub(crate) fn reset_done_earlier_note(
    report: &Path,
    password_out: Option<&Path>,
    new_password_env: Option<&str>,
) -> String {
    let mut note = format!(
        "--resume {}: the password reset was applied by the earlier run; it is not sent again and no new password is made: the account keeps the password that run set",
        report.display()
    );
    match password_out {
        Some(f) if f.exists() => note.push_str(&format!("; {} is left as it is", f.display())),
        Some(f) => note.push_str(&format!(
            "; {} does not exist and is NOT created (the password is in the file the earlier run wrote; to set a new one, run without --resume)",
            f.display()
        )),
        None => {}
    }
    if let Some(var) = new_password_env {
        note.push_str(&format!("; {var} is not used"));
    }
    note
}
