//! Errors that stop a remediation before it changes anything.

use exch_directory::DirectoryError;

/// Why a remediation could not be built or planned. Nothing has been changed when one of these
/// is returned; failures during `execute` are reported in the [`crate::Report`] instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemediationError {
    /// Bad input from the caller.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: String,
        /// Why, and what to do.
        reason: String,
    },
    /// Users of a many-user run that cannot be revoked (invalid, not found, ambiguous, the
    /// same account twice), every one of them; see
    /// [`crate::RemediationBuilder::skip_unresolved`].
    #[error("{} of {total} users cannot be revoked, nothing was changed: {}; fix the list or call .skip_unresolved()", problems.len(), list_problems(problems))]
    UnresolvedUsers {
        /// Users in the run.
        total: usize,
        /// Each bad user (as given) and why.
        problems: Vec<(String, crate::UserProblem)>,
    },
    /// The directory could not answer a read needed for the plan.
    #[error("planning failed: {0}")]
    Directory(#[from] DirectoryError),
}

/// The first problems, then how many more (the full list is in the error's fields).
fn list_problems(problems: &[(String, crate::UserProblem)]) -> String {
    const SHOWN: usize = 20;
    let mut s: Vec<String> = problems
        .iter()
        .take(SHOWN)
        .map(|(user, p)| format!("{user:?}: {p}"))
        .collect();
    if problems.len() > SHOWN {
        s.push(format!("and {} more", problems.len() - SHOWN));
    }
    s.join("; ")
}

impl RemediationError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        RemediationError::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
