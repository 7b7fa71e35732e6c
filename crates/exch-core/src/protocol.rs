//! Client protocols that authenticate through IIS.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A client protocol served by Exchange's IIS virtual directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Protocol {
    /// Outlook on the web (forms-based authentication), `/owa`.
    Owa,
    /// Exchange Web Services, `/EWS/Exchange.asmx`.
    Ews,
    /// Exchange ActiveSync, `/Microsoft-Server-ActiveSync`.
    Eas,
    /// MAPI over HTTP, `/mapi`.
    Mapi,
    /// Outlook Anywhere (RPC over HTTP), `/rpc/rpcproxy.dll`.
    RpcHttp,
    /// Exchange admin center / control panel, `/ecp`.
    Ecp,
    /// Autodiscover, `/Autodiscover`.
    Autodiscover,
    /// Offline address book, `/OAB`.
    Oab,
    /// Remote PowerShell, `/PowerShell`.
    PowerShell,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 9] = [
        Protocol::Owa,
        Protocol::Ews,
        Protocol::Eas,
        Protocol::Mapi,
        Protocol::RpcHttp,
        Protocol::Ecp,
        Protocol::Autodiscover,
        Protocol::Oab,
        Protocol::PowerShell,
    ];

    /// Short name (`owa`, `ews`, `eas`, `mapi`, `rpchttp`, `ecp`, `autodiscover`, `oab`, `powershell`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Owa => "owa",
            Protocol::Ews => "ews",
            Protocol::Eas => "eas",
            Protocol::Mapi => "mapi",
            Protocol::RpcHttp => "rpchttp",
            Protocol::Ecp => "ecp",
            Protocol::Autodiscover => "autodiscover",
            Protocol::Oab => "oab",
            Protocol::PowerShell => "powershell",
        }
    }

    /// The IIS virtual directory path that serves it.
    pub const fn path(self) -> &'static str {
        match self {
            Protocol::Owa => "/owa",
            Protocol::Ews => "/EWS/Exchange.asmx",
            Protocol::Eas => "/Microsoft-Server-ActiveSync",
            Protocol::Mapi => "/mapi",
            Protocol::RpcHttp => "/rpc/rpcproxy.dll",
            Protocol::Ecp => "/ecp",
            Protocol::Autodiscover => "/Autodiscover",
            Protocol::Oab => "/OAB",
            Protocol::PowerShell => "/PowerShell",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown protocol name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}; expected one of owa, ews, eas, mapi, rpchttp, ecp, autodiscover, oab, powershell")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "activesync" => "eas",
            "outlookanywhere" | "rpc" => "rpchttp",
            "mapihttp" => "mapi",
            other => other,
        };
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == alias)
            .ok_or_else(|| UnknownProtocol(s.chars().take(40).collect()))
    }
}
