//! Discovery of Exchange servers and domain controllers in the configuration partition.

use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use ldap3::{Scope, SearchEntry};

use super::conn::{attr, attrs, map_error, search};
use super::{same_dn, LdapDirectory};
use crate::escape::{dn_canonical, parse_dn};
use crate::{DirectoryError, DomainController};

/// Exchange servers: `msExchExchangeServer` objects anywhere under
/// `CN=Microsoft Exchange,CN=Services,<configuration NC>`.
///
/// * version: `serialNumber` (`Version 15.2 (Build 31258.12)`, keeps the revision), else
///   `versionNumber`;
/// * FQDN: `networkAddress` `ncacn_ip_tcp:<fqdn>`, else `dNSHostName`, else the name;
/// * site: the first RDN of the DN in `msExchServerSite` (Exchange writes the site object's
///   DN there), else none;
/// * roles: `msExchCurrentServerRoles` (Edge servers keep the Edge bit; callers skip them).
///
/// No `CN=Microsoft Exchange` container (no Exchange in the forest) gives an empty list.
pub(super) async fn exchange_servers(
    dir: &LdapDirectory,
) -> Result<Vec<ExchangeServer>, DirectoryError> {
    let url = dir.inner.url.as_str();
    let base = format!("CN=Microsoft Exchange,CN=Services,{}", dir.inner.config_dn);
    let timeout = dir.timeout();
    // objectCategory is what Exchange's own tools use (indexed); objectClass catches
    // directories whose schema has no defaultObjectCategory for the class.
    let filter = "(|(objectCategory=msExchExchangeServer)(objectClass=msExchExchangeServer))";
    let attrs_wanted = [
        "cn",
        "versionNumber",
        "serialNumber",
        "msExchCurrentServerRoles",
        "networkAddress",
        "dNSHostName",
        "msExchServerSite",
    ];
    let base_ref = base.as_str();
    let found = dir
        .run(
            url,
            "Exchange server discovery",
            true,
            |mut ldap| async move {
                search(
                    &mut ldap,
                    timeout,
                    base_ref,
                    Scope::Subtree,
                    filter,
                    &attrs_wanted,
                )
                .await
                .map_err(|e| map_error("Exchange server discovery", url, base_ref, e))
            },
        )
        .await?;
    let Some(entries) = found else {
        tracing::warn!(%base, "no Microsoft Exchange container: no Exchange servers in this forest");
        return Ok(Vec::new());
    };
    let mut servers: Vec<ExchangeServer> = entries.iter().map(server_from).collect();
    servers.sort_by_key(|a| a.name.to_lowercase());
    Ok(servers)
}

fn server_from(e: &SearchEntry) -> ExchangeServer {
    let name = attr(e, "cn")
        .map(str::to_owned)
        .or_else(|| {
            parse_dn(&e.dn).ok().and_then(|d| {
                d.rdns()
                    .first()
                    .and_then(|r| r.first())
                    .map(|(_, v)| v.clone())
            })
        })
        .unwrap_or_else(|| e.dn.clone());
    let version = attr(e, "serialNumber")
        .and_then(|s| ExchangeVersion::from_serial_number(s).ok())
        .or_else(|| {
            attr(e, "versionNumber")
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(|v| ExchangeVersion::from_version_number(v as u32).ok())
        });
    if version.is_none() {
        tracing::warn!(server = %name, "no readable serialNumber / versionNumber");
    }
    let fqdn = attrs(e, "networkAddress")
        .iter()
        .find_map(|a| {
            let (proto, host) = a.split_once(':')?;
            (proto.eq_ignore_ascii_case("ncacn_ip_tcp") && !host.is_empty()).then(|| host.to_owned())
        })
        .or_else(|| attr(e, "dNSHostName").map(str::to_owned))
        .unwrap_or_else(|| {
            tracing::warn!(server = %name, "no ncacn_ip_tcp networkAddress or dNSHostName; using the name");
            name.clone()
        });
    let roles = attr(e, "msExchCurrentServerRoles")
        .and_then(|v| v.parse::<i64>().ok())
        .map(|v| ServerRoles::from_bits(v as u32))
        .unwrap_or_else(ServerRoles::empty);
    let site = attr(e, "msExchServerSite").and_then(|dn| {
        parse_dn(dn).ok().and_then(|d| {
            d.rdns()
                .first()
                .and_then(|r| r.first())
                .map(|(_, v)| v.clone())
        })
    });
    ExchangeServer {
        name,
        fqdn,
        version,
        roles,
        site,
        dn: Some(e.dn.clone()),
    }
}

/// Domain controllers of the directory's domain: `nTDSDSA` objects under `CN=Sites` whose
/// `hasMasterNCs` / `msDS-hasMasterNCs` include the base DN (when the attribute is readable),
/// each with its parent server object's `cn` and `dNSHostName`; the site is the RDN below
/// `CN=Sites`. The DC this directory is connected to gets the directory's own URL.
pub(super) async fn domain_controllers(
    dir: &LdapDirectory,
) -> Result<Vec<DomainController>, DirectoryError> {
    let url = dir.inner.url.as_str();
    let base = format!("CN=Sites,{}", dir.inner.config_dn);
    let base_ref = base.as_str();
    let timeout = dir.timeout();
    let found = dir
        .run(
            url,
            "domain controller discovery",
            true,
            |mut ldap| async move {
                search(
                    &mut ldap,
                    timeout,
                    base_ref,
                    Scope::Subtree,
                    "(|(objectClass=nTDSDSA)(objectClass=server))",
                    &[
                        "objectClass",
                        "cn",
                        "dNSHostName",
                        "hasMasterNCs",
                        "msDS-hasMasterNCs",
                    ],
                )
                .await
                .map_err(|e| map_error("domain controller discovery", url, base_ref, e))
            },
        )
        .await?
        .unwrap_or_default();
    let is_class = |e: &SearchEntry, c: &str| {
        attrs(e, "objectClass")
            .iter()
            .any(|x| x.eq_ignore_ascii_case(c))
    };
    let domain = dn_canonical(&dir.inner.base_dn);
    let mut dcs = Vec::new();
    for dsa in found.iter().filter(|e| is_class(e, "nTDSDSA")) {
        let ncs: Vec<&String> = attrs(dsa, "msDS-hasMasterNCs")
            .iter()
            .chain(attrs(dsa, "hasMasterNCs"))
            .collect();
        if !ncs.is_empty() && !ncs.iter().any(|nc| dn_canonical(nc) == domain) {
            continue; // a DC of another domain of the forest
        }
        let Ok(parsed) = parse_dn(&dsa.dn) else {
            continue;
        };
        let parent: Vec<String> = parsed
            .rdns()
            .iter()
            .skip(1)
            .map(|rdn| {
                rdn.iter()
                    .map(|(a, v)| format!("{a}={}", crate::escape::dn_value(v)))
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect();
        let parent = parent.join(",");
        let server = found
            .iter()
            .find(|e| is_class(e, "server") && dn_canonical(&e.dn) == dn_canonical(&parent));
        let name = server
            .and_then(|s| attr(s, "cn"))
            .map(str::to_owned)
            .or_else(|| parsed.child_of("CN", "Servers").map(str::to_owned))
            .unwrap_or_else(|| parent.clone());
        let dns_host_name = server
            .and_then(|s| attr(s, "dNSHostName"))
            .map(str::to_owned)
            .unwrap_or_default();
        let site = parsed.child_of("CN", "Sites").map(str::to_owned);
        let url = if same_dn(&dir.inner.ds_service_name, &dsa.dn) {
            Some(dir.inner.url.clone())
        } else {
            None
        };
        dcs.push(DomainController {
            name,
            dns_host_name,
            site,
            url,
        });
    }
    dcs.sort_by_key(|a| a.name.to_lowercase());
    Ok(dcs)
}
