//! `msExchCurrentServerRoles`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The roles of an Exchange server, as the `msExchCurrentServerRoles` bit mask.
///
/// Unknown bits are kept, so a value read from AD and written back is unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServerRoles(u32);

impl ServerRoles {
    /// Client Access front end ("Cafe", Exchange 2013+).
    pub const CAFE: ServerRoles = ServerRoles(1);
    /// Mailbox.
    pub const MAILBOX: ServerRoles = ServerRoles(2);
    /// Client Access (2007/2010; also set on 2016+ Mailbox servers).
    pub const CLIENT_ACCESS: ServerRoles = ServerRoles(4);
    /// Unified Messaging.
    pub const UNIFIED_MESSAGING: ServerRoles = ServerRoles(16);
    /// Hub Transport.
    pub const HUB_TRANSPORT: ServerRoles = ServerRoles(32);
    /// Edge Transport (perimeter, not domain-joined: no IIS token caches to flush).
    pub const EDGE: ServerRoles = ServerRoles(64);
    /// Front End Transport (2013+).
    pub const FRONTEND_TRANSPORT: ServerRoles = ServerRoles(16384);

    const NAMES: [(ServerRoles, &'static str); 7] = [
        (Self::CAFE, "Cafe"),
        (Self::MAILBOX, "Mailbox"),
        (Self::CLIENT_ACCESS, "ClientAccess"),
        (Self::UNIFIED_MESSAGING, "UnifiedMessaging"),
        (Self::HUB_TRANSPORT, "HubTransport"),
        (Self::EDGE, "Edge"),
        (Self::FRONTEND_TRANSPORT, "FrontendTransport"),
    ];

    /// From the raw attribute value (all bits kept).
    pub const fn from_bits(bits: u32) -> Self {
        ServerRoles(bits)
    }

    /// The raw attribute value.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// No roles.
    pub const fn empty() -> Self {
        ServerRoles(0)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: ServerRoles) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: ServerRoles) -> bool {
        self.0 & other.0 != 0
    }

    /// Edge Transport servers are skipped by remediation: no domain logons, no IIS caches.
    pub const fn is_edge(self) -> bool {
        self.contains(Self::EDGE)
    }

    /// Whether the server answers client HTTP logons (Cafe or Client Access).
    pub const fn serves_clients(self) -> bool {
        self.intersects(ServerRoles(
            Self::CAFE.0 | Self::CLIENT_ACCESS.0 | Self::MAILBOX.0,
        )) && !self.is_edge()
    }

    /// Names of the set roles (known ones only), e.g. `["Mailbox", "ClientAccess"]`.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(r, _)| self.contains(*r))
            .map(|(_, n)| *n)
            .collect()
    }

    /// Parses a role name as [`Self::names`] prints it (case-insensitive).
    pub fn from_name(name: &str) -> Option<ServerRoles> {
        Self::NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(r, _)| *r)
    }
}

impl std::ops::BitOr for ServerRoles {
    type Output = ServerRoles;
    fn bitor(self, rhs: ServerRoles) -> ServerRoles {
        ServerRoles(self.0 | rhs.0)
    }
}

impl fmt::Debug for ServerRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerRoles({:#x}: {})", self.0, self.names().join("|"))
    }
}

impl fmt::Display for ServerRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exchange_2019_mailbox() {
        // A 2016/2019 Mailbox server: Mailbox | ClientAccess | UM | Hub | FrontendTransport.
        let r = ServerRoles::from_bits(2 | 4 | 16 | 32 | 16384);
        assert_eq!(
            r.names(),
            [
                "Mailbox",
                "ClientAccess",
                "UnifiedMessaging",
                "HubTransport",
                "FrontendTransport"
            ]
        );
        assert!(r.serves_clients());
        assert!(!ServerRoles::EDGE.serves_clients());
    }

    proptest! {
        #[test]
        fn bits_round_trip_and_names_parse(bits in any::<u32>()) {
            let r = ServerRoles::from_bits(bits);
            prop_assert_eq!(r.bits(), bits);
            for n in r.names() {
                let role = ServerRoles::from_name(n).unwrap();
                prop_assert!(r.contains(role));
            }
        }
    }
}
