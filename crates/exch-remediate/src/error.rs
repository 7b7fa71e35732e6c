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
    /// The directory could not answer a read needed for the plan.
    #[error("planning failed: {0}")]
    Directory(#[from] DirectoryError),
}

impl RemediationError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        RemediationError::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
