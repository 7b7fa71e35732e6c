//! How Exchange names and finds mailboxes, devices and rules: distinguished and canonical
//! names, and the identity parameters (`MailboxIdParameter`, `MobileDeviceIdParameter`,
//! `InboxRuleIdParameter`) matched case-insensitively as Active Directory compares names.

use exch_directory::escape::{dn_value, same_dn, same_name};

use super::types::{InboxRule, Mailbox, MobileDevice};

/// The container of a mobile device's partnership object under its user.
pub(crate) const DEVICES_CONTAINER: &str = "ExchangeActiveSyncDevices";

/// The AD domain the mailboxes live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Domain {
    /// DNS name (`lab.example.test`).
    pub(crate) dns: String,
    /// NetBIOS name (`LAB`): `LAB\sam` is an identity.
    pub(crate) netbios: String,
}

impl Domain {
    /// The domain of DNS name `dns`; its NetBIOS name is the first label in upper case (as
    /// Samba's provisioning makes it by default).
    pub(crate) fn new(dns: &str) -> Self {
        Domain {
            dns: dns.to_owned(),
            netbios: dns.split('.').next().unwrap_or(dns).to_uppercase(),
        }
    }

    fn dn_suffix(&self) -> String {
        self.dns
            .split('.')
            .map(|l| format!("DC={}", dn_value(l)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `CN=<name>,CN=Users,DC=…`.
    pub(crate) fn user_dn(&self, name: &str) -> String {
        format!("CN={},CN=Users,{}", dn_value(name), self.dn_suffix())
    }

    /// The DN of mailbox `m`'s user.
    pub(crate) fn mailbox_dn(&self, m: &Mailbox) -> String {
        self.user_dn(&m.name)
    }

    /// `<dns>/Users/<name>`: what an `ADObjectId` prints (`/` in a name is written `\/`).
    pub(crate) fn mailbox_canonical(&self, name: &str) -> String {
        format!("{}/Users/{}", self.dns, canonical_part(name))
    }

    /// The DN of a device's partnership object.
    pub(crate) fn device_dn(&self, m: &Mailbox, d: &MobileDevice) -> String {
        format!(
            "CN={},CN={DEVICES_CONTAINER},{}",
            dn_value(&device_object_name(d)),
            self.mailbox_dn(m)
        )
    }

    /// The canonical name of a device's partnership object.
    pub(crate) fn device_canonical(&self, m: &Mailbox, d: &MobileDevice) -> String {
        format!(
            "{}/{DEVICES_CONTAINER}/{}",
            self.mailbox_canonical(&m.name),
            canonical_part(&device_object_name(d))
        )
    }
}

fn canonical_part(name: &str) -> String {
    name.replace('/', "\\/")
}

/// `<DeviceType>§<DeviceId>`: the name of a device's partnership object.
pub(crate) fn device_object_name(d: &MobileDevice) -> String {
    format!("{}§{}", d.device_type, d.device_id)
}

/// The `Identity` the store gives a device of mailbox `m`.
pub(crate) fn device_identity(m: &Mailbox, d: &MobileDevice) -> String {
    format!("{}\\{DEVICES_CONTAINER}\\{}", m.name, device_object_name(d))
}

/// The `Identity` the store gives rule `r` of mailbox `m`.
pub(crate) fn rule_identity(m: &Mailbox, r: &InboxRule) -> String {
    format!("{}\\{}", m.name, r.rule_identity)
}

/// Exchange's identity wildcard: `*` matches any run of characters (case-insensitively).
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<String> = pattern.split('*').map(str::to_lowercase).collect();
    let t = text.to_lowercase();
    let mut rest = t.as_str();
    for (i, part) in p.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part.as_str()) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i + 1 == p.len() {
            return part.is_empty() || rest.ends_with(part.as_str());
        } else {
            match rest.find(part.as_str()) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

/// Whether `id` names mailbox `m` (a `MailboxIdParameter`): its name, alias, primary
/// address (with or without `smtp:`), UPN, `SamAccountName`, `DOMAIN\sam`, DN, canonical
/// name or GUID; `*` is a wildcard over name, alias, display name, address, UPN and
/// `SamAccountName`.
pub(crate) fn mailbox_matches(domain: &Domain, m: &Mailbox, id: &str) -> bool {
    if id.contains('*') {
        return [
            &m.name,
            &m.alias,
            &m.display_name,
            &m.primary_smtp_address,
            &m.user_principal_name,
            &m.sam_account_name,
        ]
        .iter()
        .any(|v| wildcard(id, v));
    }
    let address = id
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("smtp:"))
        .map_or(id, |_| &id[5..]);
    let sam = id.split_once('\\').and_then(|(d, s)| {
        same_name(d, &domain.netbios)
            .then_some(s)
            .or_else(|| same_name(d, &domain.dns).then_some(s))
    });
    same_name(id, &m.name)
        || same_name(id, &m.alias)
        || same_name(address, &m.primary_smtp_address)
        || same_name(id, &m.user_principal_name)
        || same_name(id, &m.sam_account_name)
        || sam.is_some_and(|s| same_name(s, &m.sam_account_name))
        || same_name(id, &domain.mailbox_canonical(&m.name))
        || (id.contains('=') && same_dn(id, &domain.mailbox_dn(m)))
        || uuid::Uuid::parse_str(id.trim()).is_ok_and(|g| g == m.guid)
}

/// Whether `id` names device `d` of mailbox `m` (a `MobileDeviceIdParameter`): its
/// identity (`<mailbox>\ExchangeActiveSyncDevices\<type>§<id>`, where `<mailbox>` may be
/// any identity of the mailbox), canonical name, DN or GUID.
pub(crate) fn device_matches(domain: &Domain, m: &Mailbox, d: &MobileDevice, id: &str) -> bool {
    if same_name(id, &d.identity)
        || same_name(id, &domain.device_canonical(m, d))
        || (id.contains('=') && same_dn(id, &domain.device_dn(m, d)))
        || uuid::Uuid::parse_str(id.trim()).is_ok_and(|g| g == d.guid)
    {
        return true;
    }
    let marker = format!("\\{DEVICES_CONTAINER}\\").to_lowercase();
    let lower = id.to_lowercase();
    // The mailbox part is matched by the mailbox's own rules; the device part by name.
    // (Lower-casing may change byte offsets, so split on the original text.)
    lower.find(&marker).is_some_and(|_| {
        id.char_indices().any(|(at, _)| {
            id[at..]
                .get(..marker.len())
                .is_some_and(|s| s.to_lowercase() == marker)
                && !id[..at].contains('*')
                && mailbox_matches(domain, m, &id[..at])
                && same_name(&id[at + marker.len()..], &device_object_name(d))
        })
    })
}

/// Whether `rule` (the part after the mailbox, or the whole `-Identity` when `-Mailbox` is
/// given) names rule `r`: its `RuleIdentity` or its name.
pub(crate) fn rule_matches(r: &InboxRule, rule: &str) -> bool {
    rule.trim()
        .parse::<u64>()
        .is_ok_and(|n| n == r.rule_identity)
        || same_name(rule, &r.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("b*", "Bob"));
        assert!(wildcard("*b", "Bob"));
        assert!(wildcard("*", ""));
        assert!(wildcard("b*b", "bob"));
        assert!(!wildcard("b*x", "bob"));
        assert!(wildcard("a*b*c", "aXbYc"));
        assert!(!wildcard("a*b*c", "aXcYb"));
    }

    #[test]
    fn mailbox_identities() {
        let d = Domain::new("lab.example.test");
        let m = Mailbox::new("bob", "bob@lab.example.test").name("Bob Smith");
        for id in [
            "bob",
            "BOB",
            "Bob Smith",
            "bob@LAB.example.test",
            "SMTP:bob@lab.example.test",
            "LAB\\bob",
            "lab.example.test/Users/Bob Smith",
            "CN=bob smith,CN=Users,DC=lab,DC=example,DC=test",
            &m.guid.to_string(),
            "b*",
        ] {
            assert!(mailbox_matches(&d, &m, id), "{id}");
        }
        for id in ["bo", "OTHER\\bob", "x*", "bob "] {
            assert!(!mailbox_matches(&d, &m, id), "{id}");
        }
    }

    #[test]
    fn device_identities() {
        let d = Domain::new("lab.example.test");
        let m = Mailbox::new("bob", "bob@lab.example.test");
        let mut dev = MobileDevice::new("ApplF17", "iPhone");
        dev.identity = device_identity(&m, &dev);
        assert_eq!(
            dev.identity,
            "bob\\ExchangeActiveSyncDevices\\iPhone§ApplF17"
        );
        for id in [
            "bob\\ExchangeActiveSyncDevices\\iPhone§ApplF17",
            "bob@lab.example.test\\exchangeactivesyncdevices\\IPHONE§applf17",
            "lab.example.test/Users/bob/ExchangeActiveSyncDevices/iPhone§ApplF17",
            &dev.guid.to_string(),
        ] {
            assert!(device_matches(&d, &m, &dev, id), "{id}");
        }
        assert!(!device_matches(
            &d,
            &m,
            &dev,
            "bob\\ExchangeActiveSyncDevices\\iPhone§X"
        ));
        assert!(!device_matches(
            &d,
            &m,
            &dev,
            "b*\\ExchangeActiveSyncDevices\\iPhone§ApplF17"
        ));
    }
}
