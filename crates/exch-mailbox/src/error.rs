//! The one error type of this crate.

use std::error::Error as StdError;
use std::time::Duration;

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong. Every variant that involves a server names it, and the mailbox when there
/// is one; none contains a credential. Identities are shown quoted (`{:?}`), so that a hostile
/// name with newlines or quotes is visible as what it is; the fields hold them byte for byte.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// Bad input from the caller; nothing was sent.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The server cannot do this (version, role); nothing was sent.
    #[error("{server}: {what} is not possible there: {reason}")]
    Unsupported {
        /// Server name.
        server: String,
        /// What was asked.
        what: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// No mailbox has this identity.
    #[error("{server}: mailbox {mailbox:?} not found; check the identity (UPN, SMTP address, alias, DN or GUID) and that it has a mailbox on premises")]
    NotFound {
        /// Server name.
        server: String,
        /// The identity as given.
        mailbox: String,
    },
    /// The identity matches several mailboxes; nothing was changed.
    #[error("{server}: {mailbox:?} matches {matches} mailboxes; nothing was changed; use a unique identity (UPN or GUID)")]
    Ambiguous {
        /// Server name.
        server: String,
        /// The identity as given.
        mailbox: String,
        /// How many matched (at least 2; 0 when Exchange did not say).
        matches: usize,
    },
    /// The Exchange Management Shell snap-in could not be loaded on the server.
    #[error("{server}: the Exchange Management Shell snap-in (Microsoft.Exchange.Management.PowerShell.SnapIn) could not be loaded ({reason}: {message}); run against an Exchange 2013 or later server with the management tools installed, as an account that may load it")]
    ShellUnavailable {
        /// Server name.
        server: String,
        /// The .NET exception type (`CategoryInfo.Reason`), if any.
        reason: String,
        /// PowerShell's message.
        message: String,
    },
    /// An Exchange cmdlet failed.
    #[error("{server}: {step} failed for mailbox {mailbox:?} ({reason}): {message}; if access was denied, the account needs the Recipient Management or Organization Management role group (the local snap-in bypasses RBAC: the rights must be the account's own)")]
    CmdletFailed {
        /// Server name.
        server: String,
        /// The identity as given.
        mailbox: String,
        /// The cmdlet that failed (`Get-CASMailbox`, `Set-Mailbox`, …).
        step: String,
        /// The .NET exception type Exchange raised (`CategoryInfo.Reason`), if any.
        reason: String,
        /// Exchange's message.
        message: String,
    },
    /// The script for this request would not fit on a Windows command line; nothing was sent.
    #[error("{server}: the script to {operation} for mailbox {mailbox:?} would make a command line of {length} characters, more than the {limit} cmd.exe and WinRS accept; nothing was sent; pass fewer items per call")]
    ScriptTooLong {
        /// Server name.
        server: String,
        /// The identity as given.
        mailbox: String,
        /// The operation.
        operation: String,
        /// The command line's length.
        length: usize,
        /// The limit (8191).
        limit: usize,
    },
    /// The server cannot be reached (connection refused, DNS, reset).
    #[error("{server}: cannot reach WinRM to {operation}: {detail}")]
    Unreachable {
        /// Server name.
        server: String,
        /// The operation.
        operation: String,
        /// Why.
        detail: String,
        /// Underlying error.
        #[source]
        source: Option<Source>,
    },
    /// The operation did not finish in time (the change may or may not have been made: read
    /// the state again before retrying).
    #[error("{server}: {operation} timed out after {after:?}; read the mailbox's state again before retrying")]
    Timeout {
        /// Server name.
        server: String,
        /// The operation.
        operation: String,
        /// The limit.
        after: Duration,
    },
    /// WinRM refused or failed (credentials, TLS, a SOAP fault, an unexpected answer).
    #[error("{server}: WinRM failed to {operation}: {detail}")]
    Transport {
        /// Server name.
        server: String,
        /// The operation.
        operation: String,
        /// What the transport said (it names the fix: credentials, CA file, auth method).
        detail: String,
        /// Whether retrying later may succeed.
        transient: bool,
        /// Underlying error.
        #[source]
        source: Option<Source>,
    },
    /// The script itself failed outside its own error handling (non-zero exit code).
    #[error("{server}: the script to {operation} failed with exit code {exit_code}: {stderr}")]
    CommandFailed {
        /// Server name.
        server: String,
        /// The operation.
        operation: String,
        /// Exit code (-1: none reported).
        exit_code: i32,
        /// What it printed on stderr (trimmed, at most 2 KiB).
        stderr: String,
    },
    /// The server answered something this crate cannot interpret.
    #[error("{server}: unexpected answer to {operation}: {detail}")]
    Protocol {
        /// Server name.
        server: String,
        /// The operation.
        operation: String,
        /// What was unexpected.
        detail: String,
    },
}

impl MailboxError {
    /// Whether retrying later may succeed: unreachable and timed-out servers, and transport
    /// failures that mean "busy".
    pub fn is_transient(&self) -> bool {
        match self {
            MailboxError::Unreachable { .. } | MailboxError::Timeout { .. } => true,
            MailboxError::Transport { transient, .. } => *transient,
            _ => false,
        }
    }

    /// The server the error is about (`None` for [`MailboxError::InvalidInput`]).
    pub fn server(&self) -> Option<&str> {
        match self {
            MailboxError::InvalidInput { .. } => None,
            MailboxError::Unsupported { server, .. }
            | MailboxError::NotFound { server, .. }
            | MailboxError::Ambiguous { server, .. }
            | MailboxError::ShellUnavailable { server, .. }
            | MailboxError::CmdletFailed { server, .. }
            | MailboxError::ScriptTooLong { server, .. }
            | MailboxError::Unreachable { server, .. }
            | MailboxError::Timeout { server, .. }
            | MailboxError::Transport { server, .. }
            | MailboxError::CommandFailed { server, .. }
            | MailboxError::Protocol { server, .. } => Some(server),
        }
    }

    /// The mailbox the error is about, when it is about one.
    pub fn mailbox(&self) -> Option<&str> {
        match self {
            MailboxError::NotFound { mailbox, .. }
            | MailboxError::Ambiguous { mailbox, .. }
            | MailboxError::CmdletFailed { mailbox, .. }
            | MailboxError::ScriptTooLong { mailbox, .. } => Some(mailbox),
            _ => None,
        }
    }

    /// A copy without the `source` (which is not `Clone`); used by fakes that return the same
    /// configured error on every call.
    pub fn duplicate(&self) -> MailboxError {
        use MailboxError as E;
        match self {
            E::InvalidInput { what, reason } => E::InvalidInput {
                what: what.clone(),
                reason: reason.clone(),
            },
            E::Unsupported {
                server,
                what,
                reason,
            } => E::Unsupported {
                server: server.clone(),
                what: what.clone(),
                reason: reason.clone(),
            },
            E::NotFound { server, mailbox } => E::NotFound {
                server: server.clone(),
                mailbox: mailbox.clone(),
            },
            E::Ambiguous {
                server,
                mailbox,
                matches,
            } => E::Ambiguous {
                server: server.clone(),
                mailbox: mailbox.clone(),
                matches: *matches,
            },
            E::ShellUnavailable {
                server,
                reason,
                message,
            } => E::ShellUnavailable {
                server: server.clone(),
                reason: reason.clone(),
                message: message.clone(),
            },
            E::CmdletFailed {
                server,
                mailbox,
                step,
                reason,
                message,
            } => E::CmdletFailed {
                server: server.clone(),
                mailbox: mailbox.clone(),
                step: step.clone(),
                reason: reason.clone(),
                message: message.clone(),
            },
            E::ScriptTooLong {
                server,
                mailbox,
                operation,
                length,
                limit,
            } => E::ScriptTooLong {
                server: server.clone(),
                mailbox: mailbox.clone(),
                operation: operation.clone(),
                length: *length,
                limit: *limit,
            },
            E::Unreachable {
                server,
                operation,
                detail,
                ..
            } => E::Unreachable {
                server: server.clone(),
                operation: operation.clone(),
                detail: detail.clone(),
                source: None,
            },
            E::Timeout {
                server,
                operation,
                after,
            } => E::Timeout {
                server: server.clone(),
                operation: operation.clone(),
                after: *after,
            },
            E::Transport {
                server,
                operation,
                detail,
                transient,
                ..
            } => E::Transport {
                server: server.clone(),
                operation: operation.clone(),
                detail: detail.clone(),
                transient: *transient,
                source: None,
            },
            E::CommandFailed {
                server,
                operation,
                exit_code,
                stderr,
            } => E::CommandFailed {
                server: server.clone(),
                operation: operation.clone(),
                exit_code: *exit_code,
                stderr: stderr.clone(),
            },
            E::Protocol {
                server,
                operation,
                detail,
            } => E::Protocol {
                server: server.clone(),
                operation: operation.clone(),
                detail: detail.clone(),
            },
        }
    }
}

pub(crate) use exch_core::text::clip;
