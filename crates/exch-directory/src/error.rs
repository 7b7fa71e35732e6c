//! The one error type of this crate.

use std::error::Error as StdError;

/// Boxed backend error kept only as a `source`.
type Source = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong with a directory operation. Messages name the object or host and say what
/// to do; they never contain a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// No account matches.
    #[error("no account matches {what}; check the spelling, or use the UPN or the DN")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// More than one account matches.
    #[error("{what} matches {count} accounts ({examples}); use the UPN or the DN to pick one")]
    Ambiguous {
        /// What was looked for.
        what: String,
        /// How many matched.
        count: usize,
        /// Up to three of the matching DNs.
        examples: String,
    },
    /// The bind account may not do this.
    #[error("permission denied: {operation}: {detail}")]
    PermissionDenied {
        /// The operation.
        operation: String,
        /// The server's reason.
        detail: String,
    },
    /// The service account's own bind failed.
    #[error("cannot bind to {url} as {bind}: {detail}")]
    BindFailed {
        /// Server URL.
        url: String,
        /// Bind name.
        bind: String,
        /// Decoded reason (e.g. "bad credentials (data 52e)").
        detail: String,
    },
    /// Refused because the connection is not encrypted.
    #[error(
        "{operation} refused: the connection to {url} is not encrypted; use ldaps:// or StartTLS"
    )]
    InsecureTransport {
        /// The operation.
        operation: String,
        /// Server URL.
        url: String,
    },
    /// The directory's policy refused the change (e.g. password complexity, `0000052D`).
    #[error("{operation} refused by directory policy: {reason}")]
    PolicyViolation {
        /// The operation.
        operation: String,
        /// The server's reason.
        reason: String,
    },
    /// The object changed between our read and our write.
    #[error("{dn} was changed by someone else during {operation}; read it again and retry")]
    ConcurrentModification {
        /// The object.
        dn: String,
        /// The operation.
        operation: String,
    },
    /// The server cannot be reached.
    #[error("cannot reach {url}: {detail}")]
    Unreachable {
        /// Server URL.
        url: String,
        /// Why.
        detail: String,
        /// Underlying error.
        #[source]
        source: Option<Source>,
    },
    /// TLS set-up failed (certificate not trusted, bad CA file, name mismatch).
    #[error("TLS with {url} failed: {detail}")]
    Tls {
        /// Server URL.
        url: String,
        /// Why, and what to do.
        detail: String,
        /// Underlying error.
        #[source]
        source: Option<Source>,
    },
    /// The operation did not finish in time.
    #[error("{operation} on {url} timed out after {after:?}")]
    Timeout {
        /// The operation.
        operation: String,
        /// Server URL.
        url: String,
        /// The limit.
        after: std::time::Duration,
    },
    /// Bad input from the caller; nothing was changed.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The server answered something this crate cannot interpret.
    #[error("unexpected answer from {url} during {operation}: {detail}")]
    Protocol {
        /// Server URL.
        url: String,
        /// The operation.
        operation: String,
        /// What was unexpected.
        detail: String,
        /// Underlying error.
        #[source]
        source: Option<Source>,
    },
}

/// The one match for `user` among `found`, else `NotFound` or `Ambiguous` (naming up to three
/// of the matches' DNs): the rule every backend applies to a search.
pub(crate) fn exactly_one<'a, T>(
    user: &crate::UserRef,
    found: &'a [T],
    dn: impl Fn(&T) -> String,
) -> Result<&'a T, DirectoryError> {
    match found {
        [] => Err(DirectoryError::NotFound {
            what: user.to_string(),
        }),
        [one] => Ok(one),
        many => Err(DirectoryError::Ambiguous {
            what: user.to_string(),
            count: many.len(),
            examples: many.iter().take(3).map(dn).collect::<Vec<_>>().join("; "),
        }),
    }
}

impl DirectoryError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DirectoryError::Unreachable { .. }
                | DirectoryError::Timeout { .. }
                | DirectoryError::ConcurrentModification { .. }
        )
    }
}
