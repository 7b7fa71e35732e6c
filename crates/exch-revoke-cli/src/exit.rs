//! The exit codes of `exch-revoke`, one per outcome a script can act on.
//!
//! | code | [`Exit`] | meaning |
//! |---:|---|---|
//! | 0 | [`Exit::Revoked`] | done: every user revoked and proven (`revoke`, `resume`); the plan was made (`plan`); nothing found (`audit`, `profile check`) |
//! | 1 | [`Exit::Failed`] | nothing was revoked, or the tool could not do its job (a DC or every server unreachable, refused credentials) |
//! | 2 | [`Exit::BadInput`] | bad input (flags, profile, users file, journal): refused before anything was contacted or changed |
//! | 3 | [`Exit::Partial`] | some of it was done: some users or servers not revoked or not proven (see the report; `resume` finishes it); `audit` / `profile check` found something that would make a revoke fail or be slow |
//! | 130 | [`Exit::Interrupted`] | interrupted (Ctrl-C / SIGINT / SIGTERM): the journal says how far it got; `resume` finishes it |

use std::process::ExitCode;

/// The documented exit codes (see the module docs, `--help` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// 0: revoked and proven (or: the plan was made, the audit or the profile check is clean).
    Revoked,
    /// 1: nothing was revoked, or the job could not be done.
    Failed,
    /// 2: bad input, refused before anything was contacted or changed (clap uses 2 as well).
    BadInput,
    /// 3: part of it was done (or the audit / profile check found a problem).
    Partial,
    /// 130: interrupted by a signal; `resume` finishes the job.
    Interrupted,
}

/// The exit-code table as printed at the end of `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    revoked and proven (plan made; audit / profile check clean)
  1    failed: nothing revoked, or the job could not be done
  2    bad input (flags, profile, users file, journal): nothing contacted or changed
  3    partial: some users or servers not revoked or not proven (resume finishes it);
       audit / profile check found a problem
  130  interrupted: the journal records how far it got; resume finishes it";

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Revoked => 0,
            Exit::Failed => 1,
            Exit::BadInput => 2,
            Exit::Partial => 3,
            Exit::Interrupted => 130,
        }
    }

    /// The worse of two exits (for a command that combines several results).
    pub fn worst(self, other: Exit) -> Exit {
        fn rank(e: Exit) -> u8 {
            match e {
                Exit::Revoked => 0,
                Exit::Partial => 1,
                Exit::Failed => 2,
                Exit::Interrupted => 3,
                Exit::BadInput => 4,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

impl From<exch_remediate::Outcome> for Exit {
    fn from(o: exch_remediate::Outcome) -> Exit {
        match o {
            exch_remediate::Outcome::Revoked => Exit::Revoked,
            exch_remediate::Outcome::Partial => Exit::Partial,
            _ => Exit::Failed,
        }
    }
}
