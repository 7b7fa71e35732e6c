//! [`CliError`]: what went wrong, on which input (flag, file and line), and what to do.

use std::fmt;
use std::path::Path;

use crate::exit::Exit;

/// What kind of failure a [`CliError`] is; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Flags, profile, users file, journal or report: refused before anything was contacted.
    BadInput,
    /// A connection or an operation failed (DC, WinRM, a file the tool writes).
    Failed,
    /// Interrupted by a signal.
    Interrupted,
}

/// An error for the admin: `error: INPUT: PROBLEM` and, on the next line, `fix: WHAT TO DO`.
///
/// Never holds a secret: messages are built from names, paths and library errors, which
/// themselves never carry passwords.
#[derive(Debug, Clone)]
pub struct CliError {
    kind: ErrorKind,
    input: Option<String>,
    problem: String,
    fix: Option<String>,
}

impl CliError {
    /// Bad input named by `input` (a flag such as `--users-file`, or `FILE:LINE`).
    pub fn bad_input(
        input: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> CliError {
        CliError {
            kind: ErrorKind::BadInput,
            input: Some(input.into()),
            problem: problem.into(),
            fix: Some(fix.into()),
        }
    }

    /// Bad input at `file`:`line` (1-based).
    pub fn at_line(
        file: &Path,
        line: usize,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> CliError {
        CliError::bad_input(format!("{}:{line}", file.display()), problem, fix)
    }

    /// The job could not be done: `input` names what failed (a host, a file), when known.
    pub fn failed(
        input: Option<String>,
        problem: impl Into<String>,
        fix: Option<String>,
    ) -> CliError {
        CliError {
            kind: ErrorKind::Failed,
            input,
            problem: problem.into(),
            fix,
        }
    }

    /// Interrupted by a signal.
    pub fn interrupted(problem: impl Into<String>, fix: impl Into<String>) -> CliError {
        CliError {
            kind: ErrorKind::Interrupted,
            input: None,
            problem: problem.into(),
            fix: Some(fix.into()),
        }
    }

    /// A file the tool could not read or write.
    pub fn io(path: &Path, doing: &str, err: &std::io::Error) -> CliError {
        CliError::failed(
            Some(path.display().to_string()),
            format!("cannot {doing}: {err}"),
            None,
        )
    }

    /// Replaces (or adds) the advice.
    pub fn with_fix(mut self, fix: impl Into<String>) -> CliError {
        self.fix = Some(fix.into());
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The input it is about (flag, `FILE:LINE`, host), if any.
    pub fn input(&self) -> Option<&str> {
        self.input.as_deref()
    }

    /// What is wrong.
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// What to do, if the tool knows.
    pub fn fix(&self) -> Option<&str> {
        self.fix.as_deref()
    }

    /// The exit code this error ends the run with.
    pub fn exit(&self) -> Exit {
        match self.kind {
            ErrorKind::BadInput => Exit::BadInput,
            ErrorKind::Failed => Exit::Failed,
            ErrorKind::Interrupted => Exit::Interrupted,
        }
    }

    /// As JSON, for `--json` consumers.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.problem,
            "input": self.input,
            "fix": self.fix,
            "exit_code": self.exit().code(),
        })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.input {
            Some(input) => write!(f, "{input}: {}", self.problem)?,
            None => f.write_str(&self.problem)?,
        }
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

impl From<exch_directory::DirectoryError> for CliError {
    fn from(e: exch_directory::DirectoryError) -> CliError {
        CliError::failed(None, e.to_string(), None)
    }
}

impl From<exch_iis::IisError> for CliError {
    fn from(e: exch_iis::IisError) -> CliError {
        CliError::failed(None, e.to_string(), None)
    }
}

impl From<exch_remediate::RemediationError> for CliError {
    fn from(e: exch_remediate::RemediationError) -> CliError {
        CliError::failed(None, e.to_string(), None)
    }
}
