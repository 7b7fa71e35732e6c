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

    /// Recycling `pool` fails.
    pub fn failing_pool(pool: impl Into<String>) -> Self {
        Faults {
            failing_pools: vec![pool.into()],
            ..Faults::default()
        }
    }
}
