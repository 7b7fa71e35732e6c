//! Which application pools a simulated server has, which pool serves which protocol, and how
//! each pool recycles — as Microsoft's default Exchange IIS configuration sets them.
//!
//! This is the lab's *model* of Exchange's IIS layout (what a server runs), not the list
//! `exch-iis` decides to recycle. Source: the `applicationHost.config` of a fresh Exchange
//! install that microsoft/CSS-Exchange keeps as test data
//! (`Shared/Tests/Data/E19_applicationHost_Default.config` and `E16_applicationHost_Default.config`,
//! <https://github.com/microsoft/CSS-Exchange/tree/main/Shared/Tests/Data>): pool names are
//! spelled as there (`MSExchangeMapiFrontEndAppPool`, `MSExchangeRpcProxyFrontEndAppPool`), and
//! the three RPC/MAPI pools carry `disallowOverlappingRotation="true"` and
//! `shutdownTimeLimit="00:00:05"`; every other pool keeps IIS's defaults (overlapped,
//! 90 seconds). IIS compares pool names case-insensitively, and so does the lab.

use std::time::Duration;

use exch_core::{ExchangeVersion, Protocol};

/// Exchange 2007 / 2010: one web site, `DefaultAppPool` serves RPC over HTTP (and OAB).
const POOLS_2010: &[&str] = &[
    "DefaultAppPool",
    "MSExchangeAutodiscoverAppPool",
    "MSExchangeECPAppPool",
    "MSExchangeOWAAppPool",
    "MSExchangeOWACalendarAppPool",
    "MSExchangePowerShellAppPool",
    "MSExchangeServicesAppPool",
    "MSExchangeSyncAppPool",
];

/// Exchange 2013 and later, in the order of the default `applicationHost.config` (front-end
/// pools of the Default Web Site and back-end pools of Exchange Back End share one list).
const POOLS_2013: &[&str] = &[
    "DefaultAppPool",
    "MSExchangePowerShellAppPool",
    "MSExchangeMapiMailboxAppPool",
    "MSExchangeMapiAddressBookAppPool",
    "MSExchangeRestAppPool",
    "MSExchangeOWAAppPool",
    "MSExchangeOWACalendarAppPool",
    "MSExchangeOABAppPool",
    "MSExchangeECPAppPool",
    "MSExchangeAutodiscoverAppPool",
    "MSExchangeSyncAppPool",
    "MSExchangeServicesAppPool",
    "MSExchangeRpcProxyAppPool",
    "MSExchangeRestFrontEndAppPool",
    "MSExchangePowerShellFrontEndAppPool",
    "MSExchangeMapiFrontEndAppPool",
    "MSExchangeRpcProxyFrontEndAppPool",
    "MSExchangePushNotificationsAppPool",
];

/// Pools that the default configuration recycles stop-then-start, with a 5-second shutdown
/// limit (`disallowOverlappingRotation="true"`, `shutdownTimeLimit="00:00:05"`).
const NOT_OVERLAPPED: &[&str] = &[
    "MSExchangeRpcProxyAppPool",
    "MSExchangeMapiFrontEndAppPool",
    "MSExchangeRpcProxyFrontEndAppPool",
];

/// IIS's `processModel.shutdownTimeLimit` default.
pub const DEFAULT_SHUTDOWN_TIME_LIMIT: Duration = Duration::from_secs(90);

/// How a pool recycles (`recycling.disallowOverlappingRotation`, `processModel.shutdownTimeLimit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecycleConfig {
    /// `true` = overlapped: the old worker serves until the new one is ready, then drains.
    /// `false` = stop-then-start: the old worker stops taking requests at once, drains, and the
    /// new one starts after it has gone (requests wait in the queue meanwhile).
    pub overlapping: bool,
    /// How long a stopping worker may finish requests in flight before it is killed.
    pub shutdown_time_limit: Duration,
}

impl Default for RecycleConfig {
    fn default() -> Self {
        RecycleConfig {
            overlapping: true,
            shutdown_time_limit: DEFAULT_SHUTDOWN_TIME_LIMIT,
        }
    }
}

/// The recycle settings of `pool` in the default configuration.
pub fn recycle_config(pool: &str) -> RecycleConfig {
    if NOT_OVERLAPPED.iter().any(|p| p.eq_ignore_ascii_case(pool)) {
        RecycleConfig {
            overlapping: false,
            shutdown_time_limit: Duration::from_secs(5),
        }
    } else {
        RecycleConfig::default()
    }
}

/// Whether `version` uses the 2013+ layout (front end / back end, MAPI over HTTP).
fn is_2013_or_later(version: ExchangeVersion) -> bool {
    version.major >= 15
}

/// The application pools of a server of `version`, in the order IIS lists them.
pub fn pools(version: ExchangeVersion) -> &'static [&'static str] {
    if is_2013_or_later(version) {
        POOLS_2013
    } else {
        POOLS_2010
    }
}

/// The pool that authenticates `protocol` on a server of `version` (the front-end pool on
/// 2013+), or `None` when that version does not serve it (MAPI over HTTP before 2013).
pub fn pool_for(version: ExchangeVersion, protocol: Protocol) -> Option<&'static str> {
    let modern = is_2013_or_later(version);
    Some(match protocol {
        Protocol::Owa => "MSExchangeOWAAppPool",
        Protocol::Ews => "MSExchangeServicesAppPool",
        Protocol::Eas => "MSExchangeSyncAppPool",
        Protocol::Ecp => "MSExchangeECPAppPool",
        Protocol::Autodiscover => "MSExchangeAutodiscoverAppPool",
        Protocol::Mapi if modern => "MSExchangeMapiFrontEndAppPool",
        Protocol::Mapi => return None,
        Protocol::RpcHttp if modern => "MSExchangeRpcProxyFrontEndAppPool",
        Protocol::RpcHttp => "DefaultAppPool",
        Protocol::Oab if modern => "MSExchangeOABAppPool",
        Protocol::Oab => "DefaultAppPool",
        Protocol::PowerShell if modern => "MSExchangePowerShellFrontEndAppPool",
        Protocol::PowerShell => "MSExchangePowerShellAppPool",
        _ => return None,
    })
}

/// How IIS authenticates a virtual directory of the front-end site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VdirAuth {
    /// Exchange's forms logon (`/owa/auth.owa` → `cadata` cookies); the forms module turns the
    /// cookie back into a Basic logon on every request (`basicAuthentication enabled="true"`).
    Forms,
    /// Basic only (`Microsoft-Server-ActiveSync`).
    Basic,
    /// Basic and Windows authentication (Negotiate) side by side (`Rpc`, `Autodiscover`).
    BasicAndWindows,
    /// Windows authentication (Negotiate / NTLM) only: no Basic, so no Basic token cache
    /// (`EWS`, `mapi`, `OAB`).
    WindowsOnly,
}

impl VdirAuth {
    /// Whether a Basic `Authorization` header is looked at.
    pub fn accepts_basic(self) -> bool {
        matches!(self, VdirAuth::Basic | VdirAuth::BasicAndWindows)
    }

    /// Whether Windows authentication (Negotiate) is enabled.
    pub fn accepts_windows(self) -> bool {
        matches!(self, VdirAuth::BasicAndWindows | VdirAuth::WindowsOnly)
    }
}

/// The authentication of `protocol`'s virtual directory in the default configuration of the
/// front-end site (`<location path="Default Web Site/…">`): `owa` and `ecp` forms,
/// `Microsoft-Server-ActiveSync` Basic, `Rpc` and `Autodiscover` Basic and Windows, `EWS`,
/// `mapi` and `OAB` Windows only.
pub fn default_auth(protocol: Protocol) -> VdirAuth {
    match protocol {
        Protocol::Owa | Protocol::Ecp => VdirAuth::Forms,
        Protocol::Ews | Protocol::Mapi | Protocol::Oab => VdirAuth::WindowsOnly,
        Protocol::RpcHttp | Protocol::Autodiscover => VdirAuth::BasicAndWindows,
        _ => VdirAuth::Basic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_pool_exists() {
        for version in [
            ExchangeVersion::new(8, 3, 83),
            ExchangeVersion::new(14, 3, 123),
            ExchangeVersion::new(15, 0, 1497),
            ExchangeVersion::new(15, 2, 1258),
        ] {
            for p in Protocol::ALL {
                if let Some(pool) = pool_for(version, p) {
                    assert!(pools(version).contains(&pool), "{version} {p} {pool}");
                }
            }
        }
        let v2010 = ExchangeVersion::new(14, 3, 123);
        assert_eq!(pool_for(v2010, Protocol::RpcHttp), Some("DefaultAppPool"));
        assert_eq!(pool_for(v2010, Protocol::Mapi), None);
    }

    #[test]
    fn rpc_and_mapi_pools_are_not_overlapped() {
        let mapi = recycle_config("msexchangemapifrontendapppool");
        assert!(!mapi.overlapping);
        assert_eq!(mapi.shutdown_time_limit, Duration::from_secs(5));
        assert!(!recycle_config("MSExchangeRpcProxyFrontEndAppPool").overlapping);
        let owa = recycle_config("MSExchangeOWAAppPool");
        assert!(owa.overlapping);
        assert_eq!(owa.shutdown_time_limit, Duration::from_secs(90));
        for pool in [
            "MSExchangeRestFrontEndAppPool",
            "MSExchangePushNotificationsAppPool",
        ] {
            assert!(POOLS_2013.contains(&pool));
        }
        assert_eq!(default_auth(Protocol::Ews), VdirAuth::WindowsOnly);
        assert_eq!(default_auth(Protocol::Ecp), VdirAuth::Forms);
        assert_eq!(default_auth(Protocol::Oab), VdirAuth::WindowsOnly);
        assert_eq!(default_auth(Protocol::RpcHttp), VdirAuth::BasicAndWindows);
        assert_eq!(default_auth(Protocol::Eas), VdirAuth::Basic);
        assert!(VdirAuth::BasicAndWindows.accepts_basic());
        assert!(!VdirAuth::WindowsOnly.accepts_basic());
        assert!(!VdirAuth::Basic.accepts_windows());
    }
}
