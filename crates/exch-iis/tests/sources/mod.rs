//! Expectations written from Microsoft's documentation, not from the code under test.

/// The default flush per version, written from the sources and not from the catalog under
/// test: the pools that authenticate users per KB 3035228 / KB 2612821 (EAS, EWS, OWA, and
/// RPC/HTTP — `DefaultAppPool` before 2013), spelled as Exchange's default
/// `applicationHost.config` spells them (CSS-Exchange `E16_`/`E19_applicationHost_Default.config`),
/// MAPI/HTTP from 2013, ECP from 2010 and Autodiscover (Basic on by default, issue 15).
pub(crate) fn documented_default(major: u8) -> Vec<&'static str> {
    let mut pools = vec![
        "MSExchangeSyncAppPool",
        "MSExchangeServicesAppPool",
        "MSExchangeOWAAppPool",
        "MSExchangeAutodiscoverAppPool",
    ];
    match major {
        8 => pools.push("DefaultAppPool"),
        14 => pools.extend(["DefaultAppPool", "MSExchangeECPAppPool"]),
        _ => pools.extend([
            "MSExchangeRpcProxyFrontEndAppPool",
            "MSExchangeMapiFrontEndAppPool",
            "MSExchangeECPAppPool",
        ]),
    }
    pools.sort_unstable();
    pools
}
