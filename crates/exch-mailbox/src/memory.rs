//! [`InMemoryMailboxes`]: a public fake of [`MailboxAdmin`] for tests, yours included.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use exch_core::ExchangeServer;
use serde::{Deserialize, Serialize};

use crate::types::{contains_ci, eq_ci};
use crate::{
    support, CasChange, CasProtocol, CasSettings, CasUpdate, DeviceBlock, Forwarding,
    ForwardingChange, ForwardingReport, InboxRule, ItemResult, ItemStatus, MailboxAdmin,
    MailboxError, MailboxId, MobileDevice, MobileDevices, RuleAction, RuleChange, WipeMode,
    WipeReport,
};

/// One mailbox as the fake keeps it, and as a test seeds it (the conformance suite's seed uses
/// it too). Compare two snapshots to prove that something changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailboxState {
    /// The identity the mailbox answers to (compared ignoring case, like Exchange).
    pub identity: String,
    /// Protocol access.
    pub cas: CasSettings,
    /// `ActiveSyncBlockedDeviceIDs`.
    pub blocked_device_ids: Vec<String>,
    /// Mobile-device partnerships.
    pub devices: Vec<MobileDevice>,
    /// Forwarding.
    pub forwarding: Forwarding,
    /// Every inbox rule, of concern or not.
    pub rules: Vec<InboxRule>,
    /// The wipes sent, in order.
    pub wipes: Vec<WipeRequest>,
}

impl MailboxState {
    /// A mailbox with every protocol allowed and nothing else.
    pub fn new(identity: impl Into<String>) -> MailboxState {
        MailboxState {
            identity: identity.into(),
            cas: CasSettings::all(true),
            ..MailboxState::default()
        }
    }

    /// With protocol access `cas`.
    pub fn with_cas(mut self, cas: CasSettings) -> MailboxState {
        self.cas = cas;
        self
    }

    /// With a device.
    pub fn with_device(mut self, device: MobileDevice) -> MailboxState {
        self.devices.push(device);
        self
    }

    /// With `ActiveSyncBlockedDeviceIDs`.
    pub fn with_blocked(mut self, device_ids: Vec<String>) -> MailboxState {
        self.blocked_device_ids = device_ids;
        self
    }

    /// With forwarding.
    pub fn with_forwarding(mut self, forwarding: Forwarding) -> MailboxState {
        self.forwarding = forwarding;
        self
    }

    /// With an inbox rule.
    pub fn with_rule(mut self, rule: InboxRule) -> MailboxState {
        self.rules.push(rule);
        self
    }
}

/// A wipe the fake received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WipeRequest {
    /// The device's identity.
    pub identity: String,
    /// The kind of wipe.
    pub mode: WipeMode,
}

/// One call the fake received (after its input was accepted), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxCall {
    /// The server named.
    pub server: String,
    /// The mailbox identity as given.
    pub mailbox: String,
    /// What was asked.
    pub operation: MailboxOperation,
}

/// What a [`MailboxCall`] asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MailboxOperation {
    /// [`MailboxAdmin::cas_settings`].
    CasSettings,
    /// [`MailboxAdmin::set_cas`].
    SetCas(CasChange),
    /// [`MailboxAdmin::restore_cas`].
    RestoreCas(CasSettings),
    /// [`MailboxAdmin::mobile_devices`].
    MobileDevices,
    /// [`MailboxAdmin::wipe_devices`] (identities after de-duplication).
    WipeDevices(Vec<String>, WipeMode),
    /// [`MailboxAdmin::block_devices`].
    BlockDevices(Vec<String>),
    /// [`MailboxAdmin::restore_blocked_devices`].
    RestoreBlockedDevices(Vec<String>),
    /// [`MailboxAdmin::forwarding`].
    Forwarding,
    /// [`MailboxAdmin::remove_forwarding`].
    RemoveForwarding,
    /// [`MailboxAdmin::change_inbox_rules`].
    ChangeInboxRules(Vec<String>, RuleAction),
}

#[derive(Debug, Default)]
struct Inner {
    mailboxes: Vec<MailboxState>,
    calls: Vec<MailboxCall>,
    errors: HashMap<String, MailboxError>,
}

/// An in-memory [`MailboxAdmin`]: mailboxes you seed, every call recorded, errors injected per
/// server. It refuses exactly the input and servers [`WinRmMailbox`](crate::WinRmMailbox)
/// refuses ([`support`]), and behaves as the scripts do: an identity is compared ignoring case;
/// devices and rules are matched by identity among the mailbox's own.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use exch_core::{ExchangeServer, ExchangeVersion};
/// use exch_mailbox::{CasChange, InMemoryMailboxes, MailboxAdmin, MailboxId, MailboxState};
///
/// let fake = InMemoryMailboxes::new().with_mailbox(MailboxState::new("bob@corp.example"));
/// let ex01 = ExchangeServer::new("EX01", "ex01.corp.example").with_version(ExchangeVersion::new(15, 2, 1258));
/// let bob = MailboxId::new("BOB@corp.example").unwrap();
/// let update = fake.set_cas(&ex01, &bob, &CasChange::lockdown()).await.unwrap();
/// assert!(update.before.open_protocols().len() == 8 && update.after.open_protocols().is_empty());
/// assert_eq!(fake.calls().len(), 1);
/// # }
/// ```
#[derive(Debug, Default)]
pub struct InMemoryMailboxes {
    inner: Mutex<Inner>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl InMemoryMailboxes {
    /// No mailbox.
    pub fn new() -> InMemoryMailboxes {
        InMemoryMailboxes::default()
    }

    /// With `mailbox` added.
    pub fn with_mailbox(self, mailbox: MailboxState) -> InMemoryMailboxes {
        self.insert(mailbox);
        self
    }

    /// Every call for `server` (by name, ignoring case) fails with `error` (after the input
    /// checks), until [`clear_error`](Self::clear_error).
    pub fn with_error(self, server: &str, error: MailboxError) -> InMemoryMailboxes {
        lock(&self.inner)
            .errors
            .insert(server.to_ascii_lowercase(), error);
        self
    }

    /// Stops failing calls for `server`.
    pub fn clear_error(&self, server: &str) {
        lock(&self.inner)
            .errors
            .remove(&server.to_ascii_lowercase());
    }

    /// Adds `mailbox`, or replaces the one with the same identity.
    pub fn insert(&self, mailbox: MailboxState) {
        let mut inner = lock(&self.inner);
        inner
            .mailboxes
            .retain(|m| !eq_ci(&m.identity, &mailbox.identity));
        inner.mailboxes.push(mailbox);
    }

    /// A snapshot of the mailbox with this identity.
    pub fn mailbox(&self, identity: &str) -> Option<MailboxState> {
        lock(&self.inner)
            .mailboxes
            .iter()
            .find(|m| eq_ci(&m.identity, identity))
            .cloned()
    }

    /// A snapshot of every mailbox, in the order added.
    pub fn mailboxes(&self) -> Vec<MailboxState> {
        lock(&self.inner).mailboxes.clone()
    }

    /// The calls received so far, in order.
    pub fn calls(&self) -> Vec<MailboxCall> {
        lock(&self.inner).calls.clone()
    }

    /// Records the call, applies an injected error, finds the one mailbox with this identity
    /// and runs `f` on it.
    fn with<T>(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        operation: MailboxOperation,
        f: impl FnOnce(&mut MailboxState) -> T,
    ) -> Result<T, MailboxError> {
        support::check_server(server)?;
        let mut inner = lock(&self.inner);
        inner.calls.push(MailboxCall {
            server: server.name.clone(),
            mailbox: mailbox.as_str().to_owned(),
            operation,
        });
        if let Some(e) = inner.errors.get(&server.name.to_ascii_lowercase()) {
            return Err(e.duplicate());
        }
        let mut matching = inner
            .mailboxes
            .iter_mut()
            .filter(|m| eq_ci(&m.identity, mailbox.as_str()))
            .collect::<Vec<_>>();
        match matching.len() {
            0 => Err(MailboxError::NotFound {
                server: server.name.clone(),
                mailbox: mailbox.as_str().to_owned(),
            }),
            1 => Ok(f(&mut *matching[0])),
            n => Err(MailboxError::Ambiguous {
                server: server.name.clone(),
                mailbox: mailbox.as_str().to_owned(),
                matches: n,
            }),
        }
    }
}

/// Runs `act` on each wanted identity found among `present` (by `identity_of`, ignoring case).
fn act_on_each<T>(
    wanted: &[String],
    present: &[T],
    identity_of: impl Fn(&T) -> &str,
    mut act: impl FnMut(&T),
) -> Vec<ItemResult> {
    wanted
        .iter()
        .map(|want| {
            let mut status = ItemStatus::NotFound;
            for item in present.iter().filter(|i| eq_ci(identity_of(i), want)) {
                act(item);
                status = ItemStatus::Done;
            }
            ItemResult {
                id: want.clone(),
                status,
            }
        })
        .collect()
}

/// Writes protocol `values` (see [`CasSettings::write`]) and reports before and after.
fn write_cas(m: &mut MailboxState, values: &[(CasProtocol, Option<bool>)]) -> CasUpdate {
    let before = m.cas;
    m.cas = before.write(values);
    CasUpdate {
        before,
        after: m.cas,
    }
}

#[async_trait]
impl MailboxAdmin for InMemoryMailboxes {
    async fn cas_settings(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<CasSettings, MailboxError> {
        self.with(server, mailbox, MailboxOperation::CasSettings, |m| m.cas)
    }

    async fn set_cas(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        change: &CasChange,
    ) -> Result<CasUpdate, MailboxError> {
        support::cas_change(change)?;
        let op = MailboxOperation::SetCas(change.clone());
        self.with(server, mailbox, op, |m| write_cas(m, &change.values()))
    }

    async fn restore_cas(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        before: &CasSettings,
    ) -> Result<CasUpdate, MailboxError> {
        let op = MailboxOperation::RestoreCas(*before);
        self.with(server, mailbox, op, |m| {
            write_cas(m, &before.restore_values())
        })
    }

    async fn mobile_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<MobileDevices, MailboxError> {
        self.with(server, mailbox, MailboxOperation::MobileDevices, |m| {
            MobileDevices {
                devices: m.devices.clone(),
                blocked_device_ids: m.blocked_device_ids.clone(),
            }
        })
    }

    async fn wipe_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        identities: &[String],
        mode: WipeMode,
    ) -> Result<WipeReport, MailboxError> {
        let ids = support::items("device identities", identities)?;
        support::check_wipe(server, mode)?;
        let op = MailboxOperation::WipeDevices(ids.clone(), mode);
        self.with(server, mailbox, op, |m| {
            let mut sent = Vec::new();
            let devices = act_on_each(
                &ids,
                &m.devices,
                |d| &d.identity,
                |d| {
                    sent.push(WipeRequest {
                        identity: d.identity.clone(),
                        mode,
                    })
                },
            );
            m.wipes.extend(sent);
            WipeReport { mode, devices }
        })
    }

    async fn block_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        device_ids: &[String],
    ) -> Result<DeviceBlock, MailboxError> {
        let ids = support::items("device IDs", device_ids)?;
        let op = MailboxOperation::BlockDevices(ids.clone());
        self.with(server, mailbox, op, |m| {
            let before = m.blocked_device_ids.clone();
            for id in ids {
                if !contains_ci(&m.blocked_device_ids, &id) {
                    m.blocked_device_ids.push(id);
                }
            }
            DeviceBlock {
                before,
                after: m.blocked_device_ids.clone(),
            }
        })
    }

    async fn restore_blocked_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        device_ids: &[String],
    ) -> Result<DeviceBlock, MailboxError> {
        let ids = support::block_list(device_ids)?;
        let op = MailboxOperation::RestoreBlockedDevices(ids.clone());
        self.with(server, mailbox, op, |m| {
            let before = std::mem::replace(&mut m.blocked_device_ids, ids);
            DeviceBlock {
                before,
                after: m.blocked_device_ids.clone(),
            }
        })
    }

    async fn forwarding(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<ForwardingReport, MailboxError> {
        self.with(server, mailbox, MailboxOperation::Forwarding, |m| {
            ForwardingReport::new(m.forwarding.clone(), m.rules.clone())
        })
    }

    async fn remove_forwarding(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<ForwardingChange, MailboxError> {
        self.with(server, mailbox, MailboxOperation::RemoveForwarding, |m| {
            let before = std::mem::take(&mut m.forwarding);
            ForwardingChange {
                before,
                after: m.forwarding.clone(),
            }
        })
    }

    async fn change_inbox_rules(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        identities: &[String],
        action: RuleAction,
    ) -> Result<RuleChange, MailboxError> {
        let ids = support::items("inbox rule identities", identities)?;
        let op = MailboxOperation::ChangeInboxRules(ids.clone(), action);
        self.with(server, mailbox, op, |m| {
            let mut hit: Vec<String> = Vec::new();
            let rules = act_on_each(
                &ids,
                &m.rules,
                |r| &r.identity,
                |r| hit.push(r.identity.clone()),
            );
            match action {
                RuleAction::Disable => m
                    .rules
                    .iter_mut()
                    .filter(|r| contains_ci(&hit, &r.identity))
                    .for_each(|r| r.enabled = false),
                RuleAction::Remove => m.rules.retain(|r| !contains_ci(&hit, &r.identity)),
            }
            RuleChange::new(action, rules, m.rules.clone())
        })
    }
}
