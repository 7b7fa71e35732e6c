//! Faults a test can inject into one server.

use std::time::Duration;

/// Faults of one simulated server. All can be changed at runtime through
/// [`crate::fleet::LabServer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Faults {
    /// Nobody listens on the server's port: connections are refused.
    pub unreachable: bool,
    /// Every authenticated WinRM request waits this long (real time) before it is answered: set
    /// it past the client's timeout to make the server "slow".
    pub winrm_delay: Option<Duration>,
    /// The server does not accept the fleet's WinRM credentials (HTTP 401).
    pub wrong_credentials: bool,
    /// Every WinRM Command gets a SOAP fault (HTTP 500, `w:InternalError`).
    pub soap_fault: bool,
    /// Pools whose recycle fails with a PowerShell-style error.
    pub failing_pools: Vec<String>,
    /// WinRM accepts the connection and the request and never answers, until cleared
    /// ("connect then hang"; unlike [`winrm_delay`](Self::winrm_delay), no answer ever comes).
    pub hang: bool,
    /// The first N Receives of every command are answered with the `w:TimedOut` fault
    /// (2150858793) before the real output: a conforming client polls again and succeeds.
    pub timed_out_receives: u32,
    /// Every command exits with this code and a PowerShell error on stderr without running,
    /// as a failed `powershell.exe` does (meant to be non-zero).
    pub exit_code: Option<i32>,
    /// Every command runs, but its stdout is cut in half: not the JSON document expected.
    pub malformed_json: bool,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Faults::default()
    }

    /// The port refuses connections.
    pub fn unreachable() -> Self {
        Faults {
            unreachable: true,
            ..Faults::default()
        }
    }

    /// WinRM answers only after `delay`.
    pub fn slow(delay: Duration) -> Self {
        Faults {
            winrm_delay: Some(delay),
            ..Faults::default()
        }
    }

    /// WinRM refuses the fleet's credentials.
    pub fn wrong_credentials() -> Self {
        Faults {
            wrong_credentials: true,
            ..Faults::default()
        }
    }

    /// WinRM answers every Command with a SOAP fault.
    pub fn soap_fault() -> Self {
        Faults {
            soap_fault: true,
            ..Faults::default()
        }
    }

    /// WinRM accepts connections and requests and never answers, until cleared.
    pub fn hang() -> Self {
        Faults {
            hang: true,
            ..Faults::default()
        }
    }

    /// The first `n` Receives of every command answer `w:TimedOut`.
    pub fn timed_out_receives(n: u32) -> Self {
        Faults {
            timed_out_receives: n,
            ..Faults::default()
        }
    }

    /// Every command exits with `code` and a PowerShell error on stderr.
    pub fn exit_code(code: i32) -> Self {
        Faults {
            exit_code: Some(code),
            ..Faults::default()
        }
    }

    /// Every command prints half of its JSON document.
    pub fn malformed_json() -> Self {
        Faults {
            malformed_json: true,
            ..Faults::default()
        }
    }

    /// Recycling `pool` fails.
    pub fn failing_pool(pool: impl Into<String>) -> Self {
        Faults {
            failing_pools: vec![pool.into()],
            ..Faults::default()
        }
    }
}
