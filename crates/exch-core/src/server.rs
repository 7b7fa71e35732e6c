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
