//! Which application pools hold Basic / forms-based logon token caches, per Exchange version and
//! role, which client protocols each of them serves, and how each recycles.
//!
//! IIS caches the Windows token of every Basic or FBA logon per worker process
//! (`UserTokenTTL`); recycling a pool starts a new worker with an empty cache. The catalog lists
//! the pools that authenticate users with a password:
//!
//! | set | default pools | optional pools |
//! |---|---|---|
//! | Exchange 2007 (Client Access) | `MSExchangeSyncAppPool` (EAS), `MSExchangeServicesAppPool` (EWS), `MSExchangeOWAAppPool` (OWA), `DefaultAppPool` (RPC/HTTP, OAB), `MSExchangeAutodiscoverAppPool` | — |
//! | Exchange 2010 (Client Access) | as 2007, and `MSExchangeECPAppPool` (ECP) | — |
//! | Exchange 2013 / 2016 / 2019 / SE (Cafe, Client Access, or 2016+ Mailbox) | `MSExchangeSyncAppPool`, `MSExchangeServicesAppPool`, `MSExchangeOWAAppPool`, `MSExchangeRpcProxyFrontEndAppPool` (RPC/HTTP), `MSExchangeMapiFrontEndAppPool` (MAPI/HTTP), `MSExchangeECPAppPool` (ECP), `MSExchangeAutodiscoverAppPool` | `MSExchangeOABAppPool`, `MSExchangePowerShellFrontEndAppPool` |
//!
//! **ECP is in the default flush** (2010 and later): in Microsoft's default configuration the
//! `ecp` virtual directory has Basic enabled and shares OWA's forms logon, so its pool caches
//! the same tokens as OWA's — and the Exchange admin center is where a compromised user (or
//! administrator) sets forwarding. **Autodiscover is in the default flush too**: Basic is
//! enabled on it by default, so an old password keeps answering `200` from its cache (an
//! attacker learns the password still "works", and a probe of it cannot tell a flushed server
//! from an unflushed one); its requests are short and stateless, so recycling it costs clients
//! nothing but one slower answer. OAB and remote PowerShell stay opt-in: OAB downloads are
//! anonymous-or-Windows in the default configuration, and the PowerShell front end uses
//! Kerberos. Source for all of it: the `applicationHost.config` of a fresh install that
//! microsoft/CSS-Exchange keeps as test data (`Shared/Tests/Data/E19_applicationHost_Default.config`,
//! `E16_applicationHost_Default.config`).
//!
//! Names are spelled as that configuration spells them (`MSExchangeMapiFrontEndAppPool`,
//! `MSExchangeRpcProxyFrontEndAppPool`; Microsoft's KB articles write `MAPI`/`RPCProxy`). IIS
//! compares pool names case-insensitively, and so does this crate when it intersects the catalog
//! with the pools present on a server (reports use the server's spelling).
//!
//! [`recycle_profile`] says how a pool recycles in that configuration: overlapped with a
//! 90-second shutdown limit (IIS's defaults), except the MAPI and RPC pools, which are
//! stop-then-start (`disallowOverlappingRotation="true"`) with `shutdownTimeLimit="00:00:05"`.
//!
//! Edge Transport servers get nothing (no domain logons, no IIS). A server whose version is
//! unknown gets the 2013+ set, and [`Selection::assumption`] says so.
//!
//! ```
//! use exch_core::{ExchangeServer, ExchangeVersion, Protocol, ServerRoles};
//! use exch_iis::catalog;
//!
//! let ex = ExchangeServer::new("EX01", "ex01.corp.example")
//!     .with_version(ExchangeVersion::new(15, 2, 1258))
//!     .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS);
//! let default: Vec<_> = catalog::default_pools(&ex).iter().map(|p| p.to_string()).collect();
//! assert!(default.contains(&"MSExchangeMapiFrontEndAppPool".to_string()));
//! assert!(default.contains(&"MSExchangeECPAppPool".to_string()));
//!
//! let eas_only = catalog::pools_for(&ex, Some(&[Protocol::Eas]));
//! assert_eq!(eas_only.len(), 1);
//! assert_eq!(eas_only[0].pool.as_str(), "MSExchangeSyncAppPool");
//!
//! let mapi = catalog::recycle_profile(&default[4].parse().unwrap());
//! assert!(!mapi.overlapping);
//! assert_eq!(mapi.shutdown_time_limit.as_secs(), 5);
//! ```

use exch_core::{AppPool, ExchangeServer, Product, Protocol, ServerRoles};
use serde::{Deserialize, Serialize};

/// A family of Exchange builds that share one pool layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PoolSet {
    /// Exchange 2007 (8.x).
    Exchange2007,
    /// Exchange 2010 (14.x).
    Exchange2010,
    /// Exchange 2013, 2016, 2019 and Subscription Edition (15.x) front end.
    Exchange2013Plus,
}

/// One catalog pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CatalogEntry {
    /// The pool.
    pub pool: AppPool,
    /// Every protocol the pool serves: recycling it briefly affects all of them.
    pub protocols: Vec<Protocol>,
    /// Whether the default flush recycles it (the others are opt-in, by protocol or by name).
    pub default: bool,
}

/// The catalog's answer for one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Selection {
    /// The layout used, `None` when the server has no token caches to flush (Edge Transport,
    /// or a role without client access).
    pub set: Option<PoolSet>,
    /// Set when the layout was assumed rather than known (unknown version or roles): why.
    pub assumption: Option<String>,
    /// The pools, in catalog order.
    pub entries: Vec<CatalogEntry>,
}

struct Row {
    pool: &'static str,
    protocols: &'static [Protocol],
    default: bool,
}

const fn row(pool: &'static str, protocols: &'static [Protocol], default: bool) -> Row {
    Row {
        pool,
        protocols,
        default,
    }
}

use Protocol::{Autodiscover, Eas, Ecp, Ews, Mapi, Oab, Owa, PowerShell, RpcHttp};

const EXCHANGE_2007: &[Row] = &[
    row("MSExchangeSyncAppPool", &[Eas], true),
    row("MSExchangeServicesAppPool", &[Ews], true),
    row("MSExchangeOWAAppPool", &[Owa], true),
    row("DefaultAppPool", &[RpcHttp, Oab], true),
    row("MSExchangeAutodiscoverAppPool", &[Autodiscover], true),
];

const EXCHANGE_2010: &[Row] = &[
    row("MSExchangeSyncAppPool", &[Eas], true),
    row("MSExchangeServicesAppPool", &[Ews], true),
    row("MSExchangeOWAAppPool", &[Owa], true),
    row("DefaultAppPool", &[RpcHttp, Oab], true),
    row("MSExchangeAutodiscoverAppPool", &[Autodiscover], true),
    row("MSExchangeECPAppPool", &[Ecp], true),
];

const EXCHANGE_2013_PLUS: &[Row] = &[
    row("MSExchangeSyncAppPool", &[Eas], true),
    row("MSExchangeServicesAppPool", &[Ews], true),
    row("MSExchangeOWAAppPool", &[Owa], true),
    row("MSExchangeRpcProxyFrontEndAppPool", &[RpcHttp], true),
    row("MSExchangeMapiFrontEndAppPool", &[Mapi], true),
    row("MSExchangeECPAppPool", &[Ecp], true),
    row("MSExchangeAutodiscoverAppPool", &[Autodiscover], true),
    row("MSExchangeOABAppPool", &[Oab], false),
    row("MSExchangePowerShellFrontEndAppPool", &[PowerShell], false),
];

fn rows(set: PoolSet) -> &'static [Row] {
    match set {
        PoolSet::Exchange2007 => EXCHANGE_2007,
        PoolSet::Exchange2010 => EXCHANGE_2010,
        PoolSet::Exchange2013Plus => EXCHANGE_2013_PLUS,
    }
}

fn entry(r: &Row) -> CatalogEntry {
    CatalogEntry {
        pool: AppPool::from_static(r.pool),
        protocols: r.protocols.to_vec(),
        default: r.default,
    }
}

/// Every pool of a layout (default and optional).
pub fn entries(set: PoolSet) -> Vec<CatalogEntry> {
    rows(set).iter().map(entry).collect()
}

/// The pools of a layout that serve `protocol` (empty when the version has no such protocol,
/// e.g. MAPI/HTTP before 2013).
pub fn pools_serving(set: PoolSet, protocol: Protocol) -> Vec<AppPool> {
    rows(set)
        .iter()
        .filter(|r| r.protocols.contains(&protocol))
        .map(|r| AppPool::from_static(r.pool))
        .collect()
}

/// The protocols a pool serves in a layout (compared case-insensitively); empty when the
/// catalog does not know the pool.
pub fn protocols_served(set: PoolSet, pool: &AppPool) -> Vec<Protocol> {
    rows(set)
        .iter()
        .find(|r| r.pool.eq_ignore_ascii_case(pool.as_str()))
        .map(|r| r.protocols.to_vec())
        .unwrap_or_default()
}

/// The layout for a server, with the reason when it had to be assumed.
pub fn pool_set(server: &ExchangeServer) -> (Option<PoolSet>, Option<String>) {
    let roles = server.roles;
    if roles.is_edge() {
        return (None, None);
    }
    let roles_known = roles != ServerRoles::empty();
    let Some(version) = server.version else {
        let why = format!(
            "{}: version unknown; assumed the Exchange 2013+ front-end pools",
            server.name
        );
        return (Some(PoolSet::Exchange2013Plus), Some(why));
    };
    let product = version.product();
    let set = match product {
        Product::Exchange2007 => PoolSet::Exchange2007,
        Product::Exchange2010 => PoolSet::Exchange2010,
        Product::Exchange2013
        | Product::Exchange2016
        | Product::Exchange2019
        | Product::ExchangeSe => PoolSet::Exchange2013Plus,
        _ => {
            let why = format!(
                "{}: unknown Exchange version {version}; assumed the Exchange 2013+ front-end pools",
                server.name
            );
            return (Some(PoolSet::Exchange2013Plus), Some(why));
        }
    };
    if !roles_known {
        let why = format!(
            "{}: roles unknown; assumed it serves clients ({product})",
            server.name
        );
        return (Some(set), Some(why));
    }
    let serves = match set {
        PoolSet::Exchange2007 | PoolSet::Exchange2010 => roles.contains(ServerRoles::CLIENT_ACCESS),
        PoolSet::Exchange2013Plus => {
            roles.intersects(ServerRoles::CAFE | ServerRoles::CLIENT_ACCESS)
                || (product != Product::Exchange2013 && roles.contains(ServerRoles::MAILBOX))
        }
    };
    if serves {
        (Some(set), None)
    } else {
        (None, None)
    }
}

/// The catalog for `server`, narrowed to pools serving any of `protocols` when given.
pub fn select(server: &ExchangeServer, protocols: Option<&[Protocol]>) -> Selection {
    let (set, assumption) = pool_set(server);
    let entries = match set {
        None => Vec::new(),
        Some(set) => rows(set)
            .iter()
            .filter(|r| match protocols {
                None => true,
                Some(ps) => r.protocols.iter().any(|p| ps.contains(p)),
            })
            .map(entry)
            .collect(),
    };
    Selection {
        set,
        assumption,
        entries,
    }
}

/// The catalog pools for `server`: all of them (default and optional, see
/// [`CatalogEntry::default`]) when `protocols` is `None`, else those serving any of `protocols`.
pub fn pools_for(server: &ExchangeServer, protocols: Option<&[Protocol]>) -> Vec<CatalogEntry> {
    select(server, protocols).entries
}

/// The pools the default flush recycles on `server` (before intersecting with the pools that
/// are present there).
pub fn default_pools(server: &ExchangeServer) -> Vec<AppPool> {
    select(server, None)
        .entries
        .into_iter()
        .filter(|e| e.default)
        .map(|e| e.pool)
        .collect()
}

/// How a pool recycles in Microsoft's default Exchange configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecycleProfile {
    /// Overlapped (`true`): the old worker serves until the new one is ready, then finishes
    /// its requests. Stop-then-start (`false`, `disallowOverlappingRotation="true"`): the old
    /// worker stops taking requests at once and the new one starts after it has gone.
    pub overlapping: bool,
    /// `processModel.shutdownTimeLimit`: requests still running on the old worker after this
    /// are cut (the worker is killed).
    #[serde(with = "crate::types::duration_secs")]
    pub shutdown_time_limit: std::time::Duration,
}

impl RecycleProfile {
    /// IIS's defaults: overlapped, 90 seconds.
    pub const IIS_DEFAULT: RecycleProfile = RecycleProfile {
        overlapping: true,
        shutdown_time_limit: std::time::Duration::from_secs(90),
    };
}

/// Pools that the default configuration recycles stop-then-start with a 5-second limit.
const NOT_OVERLAPPED: [&str; 3] = [
    "MSExchangeMapiFrontEndAppPool",
    "MSExchangeRpcProxyFrontEndAppPool",
    "MSExchangeRpcProxyAppPool",
];

/// How `pool` recycles in the default configuration (compared case-insensitively); pools the
/// configuration does not change keep [`RecycleProfile::IIS_DEFAULT`].
pub fn recycle_profile(pool: &AppPool) -> RecycleProfile {
    if NOT_OVERLAPPED
        .iter()
        .any(|p| p.eq_ignore_ascii_case(pool.as_str()))
    {
        RecycleProfile {
            overlapping: false,
            shutdown_time_limit: std::time::Duration::from_secs(5),
        }
    } else {
        RecycleProfile::IIS_DEFAULT
    }
}

/// Splits `wanted` into the pools present in `present` (spelled as the server spells them) and
/// the missing ones; names compare case-insensitively, like IIS.
pub fn intersect(wanted: &[AppPool], present: &[AppPool]) -> (Vec<AppPool>, Vec<AppPool>) {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for w in wanted {
        match present
            .iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(w.as_str()))
        {
            Some(p) if !found.contains(p) => found.push(p.clone()),
            Some(_) => {}
            None => missing.push(w.clone()),
        }
    }
    (found, missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exch_core::ExchangeVersion;

    fn server(major: u8, minor: u8, build: u16, roles: ServerRoles) -> ExchangeServer {
        ExchangeServer::new("EX", "ex.corp.example")
            .with_version(ExchangeVersion::new(major, minor, build))
            .with_roles(roles)
    }

    fn names(pools: &[AppPool]) -> Vec<&str> {
        pools.iter().map(|p| p.as_str()).collect()
    }

    #[test]
    fn exchange_2010_cas_includes_default_app_pool() {
        let s = server(
            14,
            3,
            123,
            ServerRoles::CLIENT_ACCESS | ServerRoles::HUB_TRANSPORT,
        );
        let d = default_pools(&s);
        assert_eq!(
            names(&d),
            [
                "MSExchangeSyncAppPool",
                "MSExchangeServicesAppPool",
                "MSExchangeOWAAppPool",
                "DefaultAppPool",
                "MSExchangeAutodiscoverAppPool",
                "MSExchangeECPAppPool"
            ]
        );
        assert_eq!(
            names(&pools_serving(PoolSet::Exchange2010, Protocol::RpcHttp)),
            ["DefaultAppPool"]
        );
        assert!(pools_serving(PoolSet::Exchange2010, Protocol::Mapi).is_empty());
        assert!(select(&s, None).assumption.is_none());
    }

    #[test]
    fn exchange_2007_has_no_ecp() {
        let s = server(8, 3, 83, ServerRoles::CLIENT_ACCESS);
        assert!(pools_for(&s, Some(&[Protocol::Ecp])).is_empty());
        assert_eq!(pools_for(&s, None).len(), 5);
    }

    #[test]
    fn exchange_2019_mailbox_serves_front_end() {
        let s = server(15, 2, 1258, ServerRoles::from_bits(2 | 4 | 16 | 32 | 16384));
        let all = pools_for(&s, None);
        assert_eq!(all.len(), 9);
        assert_eq!(all.iter().filter(|e| e.default).count(), 7);
        let ecp = pools_for(&s, Some(&[Protocol::Ecp]));
        assert!(ecp.len() == 1 && ecp[0].default, "{ecp:?}");
        let mapi = pools_for(&s, Some(&[Protocol::Mapi, Protocol::Oab]));
        assert_eq!(
            mapi.iter().map(|e| e.pool.as_str()).collect::<Vec<_>>(),
            ["MSExchangeMapiFrontEndAppPool", "MSExchangeOABAppPool"]
        );
        let profile = |p| recycle_profile(&AppPool::from_static(p));
        assert!(!profile("MSExchangeMAPIFrontEndAppPool").overlapping);
        assert!(!profile("msexchangerpcproxyfrontendapppool").overlapping);
        assert_eq!(
            profile("MSExchangeRpcProxyFrontEndAppPool").shutdown_time_limit,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(
            profile("MSExchangeSyncAppPool"),
            RecycleProfile::IIS_DEFAULT
        );
        assert_eq!(
            protocols_served(
                PoolSet::Exchange2013Plus,
                &AppPool::from_static("msexchangesyncapppool")
            ),
            [Protocol::Eas]
        );
    }

    #[test]
    fn exchange_2013_mailbox_only_has_nothing_but_2016_mailbox_has() {
        assert!(pools_for(&server(15, 0, 1497, ServerRoles::MAILBOX), None).is_empty());
        assert!(!pools_for(&server(15, 1, 2507, ServerRoles::MAILBOX), None).is_empty());
        assert!(!pools_for(&server(15, 0, 1497, ServerRoles::CAFE), None).is_empty());
    }

    #[test]
    fn edge_gets_nothing_and_unknown_is_flagged() {
        let edge = server(15, 2, 1258, ServerRoles::EDGE);
        let sel = select(&edge, None);
        assert!(sel.set.is_none() && sel.entries.is_empty());

        let unknown = ExchangeServer::new("EX9", "ex9.corp.example");
        let sel = select(&unknown, None);
        assert_eq!(sel.set, Some(PoolSet::Exchange2013Plus));
        assert!(sel.assumption.as_deref().unwrap_or("").contains("EX9"));

        let future = server(16, 0, 1, ServerRoles::MAILBOX);
        let sel = select(&future, None);
        assert_eq!(sel.set, Some(PoolSet::Exchange2013Plus));
        assert!(sel.assumption.is_some());
    }

    #[test]
    fn intersect_is_case_insensitive_and_keeps_server_spelling() {
        let wanted = [
            AppPool::from_static("MSExchangeMAPIFrontEndAppPool"),
            AppPool::from_static("MSExchangeOABAppPool"),
        ];
        let present = [AppPool::from_static("MSExchangeMapiFrontEndAppPool")];
        let (found, missing) = intersect(&wanted, &present);
        assert_eq!(names(&found), ["MSExchangeMapiFrontEndAppPool"]);
        assert_eq!(names(&missing), ["MSExchangeOABAppPool"]);
    }
}
