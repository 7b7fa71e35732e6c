//! Exchange servers as discovered in the configuration partition.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ExchangeVersion, ServerRoles};

/// One Exchange server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExchangeServer {
    /// NetBIOS-style server name (`cn`), e.g. `EX01`.
    pub name: String,
    /// Fully qualified DNS name used to reach it, e.g. `ex01.corp.example`.
    pub fqdn: String,
    /// Its build, if the directory says.
    pub version: Option<ExchangeVersion>,
    /// `msExchCurrentServerRoles`.
    pub roles: ServerRoles,
    /// AD site name, if known.
    pub site: Option<String>,
    /// Distinguished name of its `msExchExchangeServer` object, if it came from the directory.
    pub dn: Option<String>,
}

impl ExchangeServer {
    /// A server with just a name and FQDN (no version, no roles).
    pub fn new(name: impl Into<String>, fqdn: impl Into<String>) -> Self {
        ExchangeServer {
            name: name.into(),
            fqdn: fqdn.into(),
            version: None,
            roles: ServerRoles::empty(),
            site: None,
            dn: None,
        }
    }

    /// Sets the version.
    pub fn with_version(mut self, version: ExchangeVersion) -> Self {
        self.version = Some(version);
        self
    }

    /// Sets the roles.
    pub fn with_roles(mut self, roles: ServerRoles) -> Self {
        self.roles = roles;
        self
    }

    /// Sets the site.
    pub fn with_site(mut self, site: impl Into<String>) -> Self {
        self.site = Some(site.into());
        self
    }

    /// The FQDN, checked with [`check_host_name`] so that it can be put into a URL
    /// (`http://{fqdn}:5985/wsman`, `https://{fqdn}/owa`) as the host and nothing else.
    /// The FQDN usually comes from the directory (`networkAddress`, `dNSHostName`), which
    /// whoever administers Exchange objects can write: `evil.example/x?` or `a@b` must not
    /// redirect a request, and the credentials that go with it, elsewhere.
    ///
    /// ```
    /// use exch_core::ExchangeServer;
    /// assert_eq!(ExchangeServer::new("EX01", "ex01.corp.example").url_host().unwrap(), "ex01.corp.example");
    /// let e = ExchangeServer::new("EX02", "evil.example/x?").url_host().unwrap_err();
    /// assert!(e.to_string().contains("EX02"));
    /// ```
    pub fn url_host(&self) -> Result<&str, InvalidHostName> {
        check_host_name(&self.fqdn).map_err(|reason| InvalidHostName {
            server: self.name.chars().take(80).collect(),
            host: self.fqdn.chars().take(120).collect(),
            reason,
        })?;
        Ok(&self.fqdn)
    }

    /// Edge Transport: not domain-joined, no IIS token caches; remediation skips it.
    pub fn is_edge(&self) -> bool {
        self.roles.is_edge()
    }
}

impl fmt::Display for ExchangeServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.fqdn)
    }
}

/// A server whose FQDN cannot be used as the host of a URL (see
/// [`ExchangeServer::url_host`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server {server}: {host:?} is not a valid host name ({reason}); correct its DNS name in the directory or give the server an explicit endpoint")]
pub struct InvalidHostName {
    /// The server's name (truncated to 80 characters).
    pub server: String,
    /// The refused host (truncated to 120 characters).
    pub host: String,
    /// Why.
    pub reason: &'static str,
}

/// Checks that `host` is usable as the host part of an `http(s)://` URL and nothing more:
/// a DNS name (labels of letters, digits, `-` and `_`, 1–63 bytes each, not starting or
/// ending with `-`, at most 253 bytes, an optional final dot), an IPv4 address, or an IPv6
/// address in brackets. No user info (`@`), port, path, query, fragment, percent-escape,
/// space or non-ASCII character (use the IDNA `xn--` form) gets through.
///
/// ```
/// use exch_core::check_host_name;
/// assert!(check_host_name("ex01.corp.example").is_ok());
/// assert!(check_host_name("[::1]").is_ok());
/// for bad in ["", "a@b", "evil.example/x?", "h:80", "a b", "-x.example", "ex%2e01", "ëx"] {
///     assert!(check_host_name(bad).is_err(), "{bad}");
/// }
/// ```
pub fn check_host_name(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("empty");
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("unclosed [")?;
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| "not an IPv6 address inside [ ]");
    }
    if host.len() > 253 {
        return Err("longer than 253 bytes");
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row)");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, '-', '_' and '.' are allowed (no '@', '/', ':', '?', '#', '%', spaces or non-ASCII)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn host_names() {
        for ok in [
            "ex01",
            "EX01.corp.example.",
            "10.0.0.5",
            "my_host.lab",
            "[fe80::1]",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(check_host_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "evil.com/x?",
            "a@b",
            "h:5985",
            "a b",
            "a\tb",
            "a\0b",
            "a#b",
            "a?b",
            "a%20b",
            "-a",
            "a-",
            "[::1",
            "[zz]",
            "::1",
            "ëx.example",
            "a\u{ff0e}b",
        ] {
            assert!(check_host_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_host_name(&"a".repeat(64)).is_err());
        assert!(check_host_name(&["a"; 130].join(".")).is_err());
    }

    proptest! {
        /// Whatever passes, an `http://{host}:5985/wsman` URL built from it has exactly that
        /// host: no character of it can end the authority.
        #[test]
        fn accepted_hosts_cannot_leave_the_authority(host in "\\PC{0,40}|[a-z0-9.@:/?#%\\[\\] -]{0,20}") {
            if check_host_name(&host).is_ok() {
                prop_assert!(!host.contains(['@', '/', '?', '#', '%', ' ', '\\']), "{host:?}");
                prop_assert!(host.is_ascii());
                if !host.starts_with('[') {
                    prop_assert!(!host.contains(':'), "{host:?}");
                }
            }
        }
    }
}
