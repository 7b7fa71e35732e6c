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
    /// The directory did not answer a read needed for the plan in time.
    #[error("planning failed: {operation}: no answer after {after:?}")]
    TimedOut {
        /// What was waited for.
        operation: String,
        /// How long.
        after: std::time::Duration,
    },
}

impl From<crate::reasons::StepError> for RemediationError {
    fn from(e: crate::reasons::StepError) -> Self {
        match e {
            crate::reasons::StepError::Directory(e) => RemediationError::Directory(e),
            crate::reasons::StepError::TimedOut {
                operation, after, ..
            } => RemediationError::TimedOut { operation, after },
        }
    }
}

/// The first problems, then how many more (the full list is in the error's fields).
fn list_problems(problems: &[(String, crate::UserProblem)]) -> String {
    const SHOWN: usize = 20;
    let mut s: Vec<String> = problems
        .iter()
        .take(SHOWN)
        .map(|(user, p)| format!("{:?}: {p}", user_excerpt(user)))
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

/// At most 80 characters of a user identifier as given (then `…`): messages name a 64 KiB
/// identifier without repeating it.
pub(crate) fn user_excerpt(user: &str) -> String {
    const SHOWN: usize = 80;
    match user.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &user[..cut]),
        None => user.to_owned(),
    }
}

/// [`user_excerpt`] with control characters escaped (`\0`, `\n`): for one-line summaries, so
/// that an identifier cannot add lines of its own.
pub(crate) fn user_line(user: &str) -> String {
    let mut line = String::new();
    for c in user_excerpt(user).chars() {
        if c.is_control() {
            line.extend(c.escape_debug());
        } else {
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_control_identifiers_are_shown_short_and_on_one_line() {
        let long = "é".repeat(100);
        assert_eq!(user_excerpt(&long), format!("{}…", "é".repeat(80)));
        assert_eq!(user_excerpt("bob"), "bob");
        assert_eq!(user_line("a\nb\0c\\d"), "a\\nb\\0c\\d");
    }
}
