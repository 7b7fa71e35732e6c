//! The one error type of this crate.

use std::error::Error as StdError;
use std::time::Duration;

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong on one server. Every variant names the server; none contains a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IisError {
    /// The server cannot be reached (connection refused, DNS, reset).
    #[error("{server}: cannot reach WinRM at {endpoint}: {detail}")]
    Unreachable {
        /// Server name.
        server: String,
        /// Endpoint URL.
        endpoint: String,
        /// Why.
        detail: String,
        /// Underlying error.
        #[source]
        source: Option<Source>,
    },
    /// WinRM refused the credentials (HTTP 401).
    #[error("{server}: WinRM refused the credentials of {user} ({reason}); check the user, the password and the auth method (NTLM/Kerberos/Basic)")]
    Unauthenticated {
        /// Server name.
        server: String,
        /// The user name (never the password).
        user: String,
        /// What the server or the security package said, e.g. "wrong user or password".
        reason: String,
    },
    /// The server offers none of the authentication methods the client is set to use.
    /// exch-iis never falls back to a weaker method on its own.
    #[error("{server}: WinRM offers {} but not {wanted}; choose a method the server accepts (WinRmAuth / --winrm-auth) or enable {wanted} on the server", if offered.is_empty() { "no authentication method".to_owned() } else { offered.join(", ") })]
    AuthMethodUnavailable {
        /// Server name.
        server: String,
        /// The schemes the server's `WWW-Authenticate` headers named.
        offered: Vec<String>,
        /// The method the client was set to use.
        wanted: String,
    },
    /// The TLS connection failed, most often because the server's certificate is not trusted.
    #[error("{server}: TLS with {endpoint} failed: {detail}; if the certificate comes from your enterprise CA, pass that CA with ca_file (--winrm-ca-file)")]
    Tls {
        /// Server name.
        server: String,
        /// Endpoint URL.
        endpoint: String,
        /// What rustls said.
        detail: String,
    },
    /// The operation did not finish in time.
    #[error("{server}: {operation} timed out after {after:?}")]
    Timeout {
        /// Server name.
        server: String,
        /// The operation.
        operation: String,
        /// The limit.
        after: Duration,
    },
    /// A named pool does not exist on the server.
    #[error("{server}: application pool {pool:?} does not exist; list pools with app_pools() or let the catalog choose")]
    PoolNotFound {
        /// Server name.
        server: String,
        /// The pool.
        pool: String,
    },
    /// The remote command ran and failed.
    #[error("{server}: remote command failed with exit code {exit_code}: {stderr}")]
    CommandFailed {
        /// Server name.
        server: String,
        /// Exit code.
        exit_code: i32,
        /// What it printed on stderr (trimmed, at most 2 KiB).
        stderr: String,
    },
    /// The WinRM service answered with a SOAP fault.
    #[error("{server}: WinRM fault {code}: {message}")]
    Fault {
        /// Server name.
        server: String,
        /// WSManFault code or SOAP subcode.
        code: String,
        /// Fault text.
        message: String,
    },
    /// The server answered something this crate cannot interpret.
    #[error("{server}: unexpected answer: {detail}")]
    Protocol {
        /// Server name.
        server: String,
        /// What was unexpected.
        detail: String,
        /// Underlying error.
        #[source]
        source: Option<Source>,
    },
    /// Bad input from the caller; nothing was sent.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: String,
        /// Why, and what to do.
        reason: String,
    },
}

impl IisError {
    /// Whether retrying later may succeed: unreachable and timed-out servers, and the WinRM
    /// faults that mean "busy" (quota exceeded, shell limit, timed out).
    pub fn is_transient(&self) -> bool {
        match self {
            IisError::Unreachable { .. } | IisError::Timeout { .. } => true,
            IisError::Fault { code, .. } => ["QuotaLimit", "TimedOut", "Concurrency"]
                .iter()
                .any(|c| code.contains(c)),
            _ => false,
        }
    }

    /// The server the error is about (`None` for [`IisError::InvalidInput`]).
    pub fn server(&self) -> Option<&str> {
        match self {
            IisError::Unreachable { server, .. }
            | IisError::Unauthenticated { server, .. }
            | IisError::AuthMethodUnavailable { server, .. }
            | IisError::Tls { server, .. }
            | IisError::Timeout { server, .. }
            | IisError::PoolNotFound { server, .. }
            | IisError::CommandFailed { server, .. }
            | IisError::Fault { server, .. }
            | IisError::Protocol { server, .. } => Some(server),
            IisError::InvalidInput { .. } => None,
        }
    }

    /// A copy of the error without its `source` (which is not `Clone`); used by fakes that
    /// return the same configured error on every call.
    pub fn duplicate(&self) -> IisError {
        match self {
            IisError::Unreachable {
                server,
                endpoint,
                detail,
                ..
            } => IisError::Unreachable {
                server: server.clone(),
                endpoint: endpoint.clone(),
                detail: detail.clone(),
                source: None,
            },
            IisError::Unauthenticated {
                server,
                user,
                reason,
            } => IisError::Unauthenticated {
                server: server.clone(),
                user: user.clone(),
                reason: reason.clone(),
            },
            IisError::AuthMethodUnavailable {
                server,
                offered,
                wanted,
            } => IisError::AuthMethodUnavailable {
                server: server.clone(),
                offered: offered.clone(),
                wanted: wanted.clone(),
            },
            IisError::Tls {
                server,
                endpoint,
                detail,
            } => IisError::Tls {
                server: server.clone(),
                endpoint: endpoint.clone(),
                detail: detail.clone(),
            },
            IisError::Timeout {
                server,
                operation,
                after,
            } => IisError::Timeout {
                server: server.clone(),
                operation: operation.clone(),
                after: *after,
            },
            IisError::PoolNotFound { server, pool } => IisError::PoolNotFound {
                server: server.clone(),
                pool: pool.clone(),
            },
            IisError::CommandFailed {
                server,
                exit_code,
                stderr,
            } => IisError::CommandFailed {
                server: server.clone(),
                exit_code: *exit_code,
                stderr: stderr.clone(),
            },
            IisError::Fault {
                server,
                code,
                message,
            } => IisError::Fault {
                server: server.clone(),
                code: code.clone(),
                message: message.clone(),
            },
            IisError::Protocol { server, detail, .. } => IisError::Protocol {
                server: server.clone(),
                detail: detail.clone(),
                source: None,
            },
            IisError::InvalidInput { what, reason } => IisError::InvalidInput {
                what: what.clone(),
                reason: reason.clone(),
            },
        }
    }
}

pub(crate) use exch_core::text::clip;
