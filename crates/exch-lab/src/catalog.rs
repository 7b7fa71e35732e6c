//! Which application pools a simulated server has, and which pool serves which protocol.
//!
//! This is the lab's *model* of Exchange's IIS layout (what a server runs), not the list
//! `exch-iis` decides to recycle. Names follow Exchange's own spelling; IIS compares pool names
//! case-insensitively, and so does the lab.

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

/// Exchange 2013 and later: front-end pools (Default Web Site) first, then back-end pools.
const POOLS_2013: &[&str] = &[
    "DefaultAppPool",
    "MSExchangeAutodiscoverAppPool",
    "MSExchangeECPAppPool",
    "MSExchangeMapiAddressBookAppPool",
    "MSExchangeMAPIFrontEndAppPool",
    "MSExchangeMapiMailboxAppPool",
    "MSExchangeOABAppPool",
    "MSExchangeOWAAppPool",
    "MSExchangeOWACalendarAppPool",
    "MSExchangePowerShellAppPool",
    "MSExchangePowerShellFrontEndAppPool",
    "MSExchangeRpcProxyAppPool",
    "MSExchangeRPCProxyFrontEndAppPool",
    "MSExchangeServicesAppPool",
    "MSExchangeSyncAppPool",
];

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

/// The pool that authenticates `protocol` on a server of `version`, or `None` when that
/// version does not serve it (MAPI over HTTP before Exchange 2013).
pub fn pool_for(version: ExchangeVersion, protocol: Protocol) -> Option<&'static str> {
    let modern = is_2013_or_later(version);
    Some(match protocol {
        Protocol::Owa => "MSExchangeOWAAppPool",
        Protocol::Ews => "MSExchangeServicesAppPool",
        Protocol::Eas => "MSExchangeSyncAppPool",
        Protocol::Ecp => "MSExchangeECPAppPool",
        Protocol::Autodiscover => "MSExchangeAutodiscoverAppPool",
        Protocol::Mapi if modern => "MSExchangeMAPIFrontEndAppPool",
        Protocol::Mapi => return None,
        Protocol::RpcHttp if modern => "MSExchangeRPCProxyFrontEndAppPool",
        Protocol::RpcHttp => "DefaultAppPool",
        Protocol::Oab if modern => "MSExchangeOABAppPool",
        Protocol::Oab => "DefaultAppPool",
        Protocol::PowerShell if modern => "MSExchangePowerShellFrontEndAppPool",
        Protocol::PowerShell => "MSExchangePowerShellAppPool",
        _ => return None,
    })
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
}
