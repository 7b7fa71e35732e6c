//! The lab's mailbox store: what the Exchange cmdlets of the PowerShell subset read and
//! change — per mailbox its CAS protocol settings, ActiveSync devices (with the remote wipes
//! sent to them), forwarding and inbox rules.
//!
//! Mailboxes are organization-wide in Exchange, so one [`MailboxStore`] is shared by every
//! server of a fleet ([`crate::fleet::Fleet::mailboxes`]); each server's shell
//! ([`ExchangeShell`]) counts the cmdlets run on it. A test seeds the store, runs scripts
//! over WinRM, and compares [`MailboxStore::snapshot`]s (a dry run changes nothing) and the
//! counters.
//!
//! ```
//! use exch_lab::mailbox::{InboxRule, Mailbox, MailboxStore, MobileDevice, Forwarding};
//!
//! let store = MailboxStore::new();
//! store.add_mailbox(Mailbox::new("bob", "bob@lab.example.test"))?;
//! let device = store.add_device("bob", MobileDevice::new("ApplF17X", "iPhone"))?;
//! assert_eq!(device, "bob\\ExchangeActiveSyncDevices\\iPhone§ApplF17X");
//! store.set_forwarding("BOB@lab.example.test", Forwarding::to_smtp("drop@evil.example", false))?;
//! let rule = store.add_inbox_rule("bob", InboxRule::new("x").forward_to(["drop@evil.example"]))?;
//! let before = store.snapshot();
//! assert_eq!(before.mailbox("bob").map(|m| m.inbox_rules[0].rule_identity), Some(rule));
//! assert_eq!(before, store.snapshot());
//! # Ok::<(), exch_lab::mailbox::SeedError>(())
//! ```

pub(crate) mod ident;
mod shell;
mod types;

use std::sync::{Arc, Mutex};

pub(crate) use shell::{CasChange, Cmdlet, ForwardingChange, ListChange, ShellError};
pub use shell::{ExchangeCounters, ExchangeShell};
pub use types::{
    CasSettings, DeviceAccessState, Forwarding, InboxRule, Mailbox, MobileDevice, WipeRecord,
};

use crate::clock::lock;
use crate::fleet::DEFAULT_DNS_DOMAIN;
use ident::Domain;

/// Why seeding the store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SeedError {
    /// No mailbox has that identity.
    #[error("no mailbox in the lab's store has the identity {0:?}")]
    NoMailbox(String),
    /// More than one mailbox has that identity.
    #[error("{0:?} names more than one mailbox of the lab's store; use its GUID or address")]
    Ambiguous(String),
    /// A value that must be unique is taken.
    #[error("{field} {value:?} is already used by mailbox {existing:?}")]
    Duplicate {
        /// Which property (`Name`, `PrimarySmtpAddress`, …).
        field: &'static str,
        /// The value.
        value: String,
        /// The `Name` of the mailbox that has it.
        existing: String,
    },
}

/// The whole store at one moment: compare two to prove that nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MailboxStoreSnapshot {
    /// The DNS domain of the mailboxes.
    pub dns_domain: String,
    /// The domain controller the shells name in their errors.
    pub domain_controller: String,
    /// Every mailbox, in the order they were added.
    pub mailboxes: Vec<Mailbox>,
}

impl MailboxStoreSnapshot {
    /// The mailbox whose `Name`, alias, address, UPN, `SamAccountName` or GUID is `id` (the
    /// first one, case-insensitively; no wildcards).
    pub fn mailbox(&self, id: &str) -> Option<&Mailbox> {
        let domain = Domain::new(&self.dns_domain);
        self.mailboxes
            .iter()
            .find(|m| !id.contains('*') && ident::mailbox_matches(&domain, m, id))
    }
}

/// Where a lookup by identity ended.
pub(crate) enum Lookup {
    /// Nothing has that identity.
    None,
    /// More than one thing has it.
    Many,
}

/// The state behind a [`MailboxStore`].
pub(crate) struct StoreState {
    pub(crate) domain: Domain,
    pub(crate) domain_controller: String,
    pub(crate) mailboxes: Vec<Mailbox>,
    /// Counter behind the `RuleIdentity` values the store makes.
    next_rule: u64,
}

impl StoreState {
    /// Every mailbox `id` names (wildcards allowed).
    pub(crate) fn find_all(&self, id: &str) -> Vec<usize> {
        (0..self.mailboxes.len())
            .filter(|i| ident::mailbox_matches(&self.domain, &self.mailboxes[*i], id))
            .collect()
    }

    /// The one mailbox `id` names.
    pub(crate) fn find_one(&self, id: &str) -> Result<usize, Lookup> {
        match self.find_all(id).as_slice() {
            [] => Err(Lookup::None),
            [one] => Ok(*one),
            _ => Err(Lookup::Many),
        }
    }

    /// A `RuleIdentity` that no rule has: splitmix64 of a counter, so values spread over the
    /// whole `UInt64` range like Exchange's (half of them above `i64::MAX`).
    fn make_rule_identity(&mut self) -> u64 {
        loop {
            self.next_rule = self.next_rule.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.next_rule;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let taken = self
                .mailboxes
                .iter()
                .flat_map(|m| &m.inbox_rules)
                .any(|r| r.rule_identity == z);
            if z != 0 && !taken {
                return z;
            }
        }
    }

    fn seed_target(&self, id: &str) -> Result<usize, SeedError> {
        self.find_one(id).map_err(|e| match e {
            Lookup::None => SeedError::NoMailbox(id.to_owned()),
            Lookup::Many => SeedError::Ambiguous(id.to_owned()),
        })
    }
}

/// The organization's mailboxes, shared by every server of a fleet. Cheap to clone (a clone
/// shares the state). Seeding methods take any identity of the mailbox (alias, address, UPN,
/// name, `SamAccountName`, GUID), matched case-insensitively.
#[derive(Clone)]
pub struct MailboxStore {
    inner: Arc<Mutex<StoreState>>,
}

impl std::fmt::Debug for MailboxStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.inner);
        f.debug_struct("MailboxStore")
            .field("domain", &state.domain.dns)
            .field("mailboxes", &state.mailboxes.len())
            .finish_non_exhaustive()
    }
}

impl Default for MailboxStore {
    fn default() -> Self {
        MailboxStore::new()
    }
}

impl MailboxStore {
    /// An empty store in the fleet's default domain ([`DEFAULT_DNS_DOMAIN`]), whose domain
    /// controller is `dc01.<domain>`.
    pub fn new() -> Self {
        MailboxStore::for_domain(DEFAULT_DNS_DOMAIN)
    }

    /// An empty store in domain `dns_domain` (NetBIOS name: its first label in upper case),
    /// whose domain controller is `dc01.<dns_domain>`.
    pub fn for_domain(dns_domain: &str) -> Self {
        MailboxStore {
            inner: Arc::new(Mutex::new(StoreState {
                domain: Domain::new(dns_domain),
                domain_controller: format!("dc01.{dns_domain}"),
                mailboxes: Vec::new(),
                next_rule: 0x5EED,
            })),
        }
    }

    /// Sets the FQDN of the domain controller the cmdlets name in their errors (`… couldn't
    /// be found on '<fqdn>'.`).
    pub fn set_domain_controller(&self, fqdn: impl Into<String>) {
        lock(&self.inner).domain_controller = fqdn.into();
    }

    /// The domain controller the cmdlets name in their errors.
    pub fn domain_controller(&self) -> String {
        lock(&self.inner).domain_controller.clone()
    }

    /// Adds a mailbox. Its `Name`, `SamAccountName`, `UserPrincipalName`,
    /// `PrimarySmtpAddress` and GUID must be unique (case-insensitively); the identities of
    /// its devices and rules are made as for [`MailboxStore::add_device`] and
    /// [`MailboxStore::add_inbox_rule`].
    pub fn add_mailbox(&self, mailbox: Mailbox) -> Result<(), SeedError> {
        let mut state = lock(&self.inner);
        for existing in &state.mailboxes {
            let clash = [
                ("Name", &mailbox.name, &existing.name),
                (
                    "SamAccountName",
                    &mailbox.sam_account_name,
                    &existing.sam_account_name,
                ),
                (
                    "UserPrincipalName",
                    &mailbox.user_principal_name,
                    &existing.user_principal_name,
                ),
                (
                    "PrimarySmtpAddress",
                    &mailbox.primary_smtp_address,
                    &existing.primary_smtp_address,
                ),
            ]
            .into_iter()
            .find(|(_, a, b)| exch_directory::escape::same_name(a, b));
            if let Some((field, value, _)) = clash {
                return Err(SeedError::Duplicate {
                    field,
                    value: value.clone(),
                    existing: existing.name.clone(),
                });
            }
            if existing.guid == mailbox.guid {
                return Err(SeedError::Duplicate {
                    field: "Guid",
                    value: mailbox.guid.to_string(),
                    existing: existing.name.clone(),
                });
            }
        }
        let mut mailbox = mailbox;
        let devices = std::mem::take(&mut mailbox.devices);
        let rules = std::mem::take(&mut mailbox.inbox_rules);
        state.mailboxes.push(mailbox);
        let at = state.mailboxes.len() - 1;
        for d in devices {
            add_device_at(&mut state, at, d);
        }
        for r in rules {
            add_rule_at(&mut state, at, r);
        }
        Ok(())
    }

    /// Adds an ActiveSync partnership to mailbox `mailbox`; returns the device's `Identity`
    /// (`<mailbox Name>\ExchangeActiveSyncDevices\<DeviceType>§<DeviceId>` unless the device
    /// came with one).
    pub fn add_device(&self, mailbox: &str, device: MobileDevice) -> Result<String, SeedError> {
        let mut state = lock(&self.inner);
        let at = state.seed_target(mailbox)?;
        Ok(add_device_at(&mut state, at, device))
    }

    /// Sets the forwarding of mailbox `mailbox`.
    pub fn set_forwarding(&self, mailbox: &str, forwarding: Forwarding) -> Result<(), SeedError> {
        let mut state = lock(&self.inner);
        let at = state.seed_target(mailbox)?;
        state.mailboxes[at].forwarding = forwarding;
        Ok(())
    }

    /// Sets the CAS settings of mailbox `mailbox`.
    pub fn set_cas(&self, mailbox: &str, cas: CasSettings) -> Result<(), SeedError> {
        let mut state = lock(&self.inner);
        let at = state.seed_target(mailbox)?;
        state.mailboxes[at].cas = cas;
        Ok(())
    }

    /// Adds an inbox rule (last in priority) to mailbox `mailbox`; returns its
    /// `RuleIdentity` (made by the store unless the rule came with one).
    pub fn add_inbox_rule(&self, mailbox: &str, rule: InboxRule) -> Result<u64, SeedError> {
        let mut state = lock(&self.inner);
        let at = state.seed_target(mailbox)?;
        Ok(add_rule_at(&mut state, at, rule))
    }

    /// The mailbox `id` names (any identity, no wildcards), as it is now.
    pub fn mailbox(&self, id: &str) -> Option<Mailbox> {
        let state = lock(&self.inner);
        if id.contains('*') {
            return None;
        }
        state.find_one(id).ok().map(|i| state.mailboxes[i].clone())
    }

    /// The whole store as it is now.
    pub fn snapshot(&self) -> MailboxStoreSnapshot {
        let state = lock(&self.inner);
        MailboxStoreSnapshot {
            dns_domain: state.domain.dns.clone(),
            domain_controller: state.domain_controller.clone(),
            mailboxes: state.mailboxes.clone(),
        }
    }

    /// Runs `f` on the state (the store's lock is held meanwhile).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut StoreState) -> T) -> T {
        f(&mut lock(&self.inner))
    }
}

fn add_device_at(state: &mut StoreState, at: usize, mut device: MobileDevice) -> String {
    let m = &mut state.mailboxes[at];
    if device.identity.is_empty() {
        device.identity = ident::device_identity(m, &device);
    }
    let identity = device.identity.clone();
    m.devices.push(device);
    identity
}

fn add_rule_at(state: &mut StoreState, at: usize, mut rule: InboxRule) -> u64 {
    if rule.rule_identity == 0 {
        rule.rule_identity = state.make_rule_identity();
    }
    let m = &mut state.mailboxes[at];
    rule.identity = ident::rule_identity(m, &rule);
    let id = rule.rule_identity;
    m.inbox_rules.push(rule);
    id
}
