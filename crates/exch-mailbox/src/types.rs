//! What the mailbox operations read and change.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::MailboxError;

/// A mailbox, as Exchange's `-Identity` and `-Mailbox` parameters take it: a user principal
/// name, primary SMTP address, alias, `DOMAIN\user`, distinguished name or GUID. Prefer a
/// unique form (UPN, GUID): a name that matches several mailboxes is refused
/// ([`MailboxError::Ambiguous`]), never applied to all of them.
///
/// Any text is accepted except an empty one and one with a NUL character (which no
/// PowerShell script can carry); quotes of every kind, `$`, backticks, `;` and newlines reach
/// Exchange only inside a single-quoted literal and are kept byte for byte.
///
/// ```
/// use exch_mailbox::MailboxId;
/// let id = MailboxId::new("bob@corp.example").unwrap();
/// assert_eq!(id.as_str(), "bob@corp.example");
/// assert!(MailboxId::new("  ").is_err());
/// assert!(MailboxId::new("a\0b").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MailboxId(String);

impl MailboxId {
    /// Checks `id`: not empty or blank, no NUL.
    pub fn new(id: impl Into<String>) -> Result<MailboxId, MailboxError> {
        let id = id.into();
        if id.trim().is_empty() {
            return Err(MailboxError::InvalidInput {
                what: "mailbox identity".into(),
                reason: format!("{id:?} is empty; give a UPN, SMTP address, alias, DN or GUID"),
            });
        }
        crate::support::no_nul("mailbox identity", &id)?;
        Ok(MailboxId(id))
    }

    /// The identity as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for MailboxId {
    type Error = MailboxError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        MailboxId::new(s)
    }
}

impl From<MailboxId> for String {
    fn from(id: MailboxId) -> String {
        id.0
    }
}

/// A client protocol a mailbox can be allowed or refused with `Set-CASMailbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum CasProtocol {
    /// Outlook on the web (`OWAEnabled`).
    Owa,
    /// Exchange Web Services (`EwsEnabled`).
    Ews,
    /// Exchange ActiveSync (`ActiveSyncEnabled`).
    ActiveSync,
    /// MAPI over HTTP and MAPI/RPC (`MAPIEnabled`).
    Mapi,
    /// Outlook Anywhere, RPC over HTTP (`MAPIBlockOutlookRpcHttp`, inverted).
    OutlookAnywhere,
    /// POP3 (`PopEnabled`).
    Pop,
    /// IMAP4 (`ImapEnabled`).
    Imap,
    /// Exchange control panel / admin center (`ECPEnabled`).
    Ecp,
}

impl CasProtocol {
    /// Every protocol, in the order the scripts write them.
    pub const ALL: [CasProtocol; 8] = [
        CasProtocol::Owa,
        CasProtocol::Ews,
        CasProtocol::ActiveSync,
        CasProtocol::Mapi,
        CasProtocol::OutlookAnywhere,
        CasProtocol::Pop,
        CasProtocol::Imap,
        CasProtocol::Ecp,
    ];

    /// The `Get-CASMailbox` property and `Set-CASMailbox` parameter.
    pub const fn parameter(self) -> &'static str {
        match self {
            CasProtocol::Owa => "OWAEnabled",
            CasProtocol::Ews => "EwsEnabled",
            CasProtocol::ActiveSync => "ActiveSyncEnabled",
            CasProtocol::Mapi => "MAPIEnabled",
            CasProtocol::OutlookAnywhere => "MAPIBlockOutlookRpcHttp",
            CasProtocol::Pop => "PopEnabled",
            CasProtocol::Imap => "ImapEnabled",
            CasProtocol::Ecp => "ECPEnabled",
        }
    }

    /// Whether the parameter says "blocked" rather than "enabled" (`MAPIBlockOutlookRpcHttp`).
    pub const fn is_inverted(self) -> bool {
        matches!(self, CasProtocol::OutlookAnywhere)
    }

    /// Whether Exchange keeps "not set" for it (`EwsEnabled` is `$null` until set: the
    /// organization's setting applies, EWS is on by default).
    pub const fn is_nullable(self) -> bool {
        matches!(self, CasProtocol::Ews)
    }

    /// The IIS-side protocol of `exch_core` it corresponds to, if any (POP and IMAP are not
    /// served by IIS).
    pub const fn protocol(self) -> Option<exch_core::Protocol> {
        match self {
            CasProtocol::Owa => Some(exch_core::Protocol::Owa),
            CasProtocol::Ews => Some(exch_core::Protocol::Ews),
            CasProtocol::ActiveSync => Some(exch_core::Protocol::Eas),
            CasProtocol::Mapi => Some(exch_core::Protocol::Mapi),
            CasProtocol::OutlookAnywhere => Some(exch_core::Protocol::RpcHttp),
            CasProtocol::Ecp => Some(exch_core::Protocol::Ecp),
            CasProtocol::Pop | CasProtocol::Imap => None,
        }
    }
}

impl fmt::Display for CasProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CasProtocol::Owa => "OWA",
            CasProtocol::Ews => "EWS",
            CasProtocol::ActiveSync => "ActiveSync",
            CasProtocol::Mapi => "MAPI",
            CasProtocol::OutlookAnywhere => "Outlook Anywhere",
            CasProtocol::Pop => "POP",
            CasProtocol::Imap => "IMAP",
            CasProtocol::Ecp => "ECP",
        })
    }
}

/// A mailbox's protocol access: per protocol `Some(true)` (allowed), `Some(false)` (refused) or
/// `None` (not set on the mailbox: the organization's setting applies; only `EwsEnabled` is
/// ever unset). Every field means "enabled", Outlook Anywhere included (Exchange stores it
/// inverted, as `MAPIBlockOutlookRpcHttp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CasSettings {
    /// Outlook on the web.
    pub owa: Option<bool>,
    /// Exchange Web Services.
    pub ews: Option<bool>,
    /// Exchange ActiveSync.
    pub active_sync: Option<bool>,
    /// MAPI.
    pub mapi: Option<bool>,
    /// Outlook Anywhere (RPC over HTTP).
    pub outlook_anywhere: Option<bool>,
    /// POP3.
    pub pop: Option<bool>,
    /// IMAP4.
    pub imap: Option<bool>,
    /// Exchange control panel.
    pub ecp: Option<bool>,
}

impl CasSettings {
    /// Every protocol set to `enabled`.
    pub fn all(enabled: bool) -> CasSettings {
        let mut s = CasSettings::default();
        for p in CasProtocol::ALL {
            s.set(p, Some(enabled));
        }
        s
    }

    /// The setting of `protocol`.
    pub fn get(&self, protocol: CasProtocol) -> Option<bool> {
        match protocol {
            CasProtocol::Owa => self.owa,
            CasProtocol::Ews => self.ews,
            CasProtocol::ActiveSync => self.active_sync,
            CasProtocol::Mapi => self.mapi,
            CasProtocol::OutlookAnywhere => self.outlook_anywhere,
            CasProtocol::Pop => self.pop,
            CasProtocol::Imap => self.imap,
            CasProtocol::Ecp => self.ecp,
        }
    }

    /// Sets `protocol`.
    pub fn set(&mut self, protocol: CasProtocol, value: Option<bool>) {
        let slot = match protocol {
            CasProtocol::Owa => &mut self.owa,
            CasProtocol::Ews => &mut self.ews,
            CasProtocol::ActiveSync => &mut self.active_sync,
            CasProtocol::Mapi => &mut self.mapi,
            CasProtocol::OutlookAnywhere => &mut self.outlook_anywhere,
            CasProtocol::Pop => &mut self.pop,
            CasProtocol::Imap => &mut self.imap,
            CasProtocol::Ecp => &mut self.ecp,
        };
        *slot = value;
    }

    /// `self` with `protocol` set.
    pub fn with(mut self, protocol: CasProtocol, value: Option<bool>) -> CasSettings {
        self.set(protocol, value);
        self
    }

    /// The protocols that may still let the user in: allowed, or unset (the organization's
    /// default, which allows).
    pub fn open_protocols(&self) -> Vec<CasProtocol> {
        CasProtocol::ALL
            .into_iter()
            .filter(|p| self.get(*p) != Some(false))
            .collect()
    }

    /// The values that put these settings back with one `Set-CASMailbox`: every protocol with
    /// a value, and "unset" (`$null`) for a protocol Exchange keeps unset (`EwsEnabled`); an
    /// unset value of any other protocol (Exchange never reports one) is left alone.
    pub fn restore_values(&self) -> Vec<(CasProtocol, Option<bool>)> {
        CasProtocol::ALL
            .into_iter()
            .filter_map(|p| match self.get(p) {
                Some(v) => Some((p, Some(v))),
                None if p.is_nullable() => Some((p, None)),
                None => None,
            })
            .collect()
    }

    /// What these settings become when `values` are written (see [`Self::restore_values`]).
    pub fn write(&self, values: &[(CasProtocol, Option<bool>)]) -> CasSettings {
        let mut out = *self;
        for (p, v) in values {
            out.set(*p, *v);
        }
        out
    }

    /// What these settings become after `change`.
    pub fn apply(&self, change: &CasChange) -> CasSettings {
        let mut out = *self;
        for (p, enabled) in change.iter() {
            out.set(p, Some(enabled));
        }
        out
    }
}

/// A change of protocol access: the protocols to allow or refuse; the others are left as they
/// are. [`CasChange::lockdown`] refuses all eight.
///
/// ```
/// use exch_mailbox::{CasChange, CasProtocol, CasSettings};
/// let change = CasChange::new().disable(CasProtocol::Owa).disable(CasProtocol::OutlookAnywhere);
/// let after = CasSettings::all(true).apply(&change);
/// assert_eq!(after.open_protocols().len(), 6);
/// assert_eq!(CasSettings::all(true).apply(&CasChange::lockdown()), CasSettings::all(false));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CasChange {
    settings: BTreeMap<CasProtocol, bool>,
}

impl CasChange {
    /// No change yet.
    pub fn new() -> CasChange {
        CasChange::default()
    }

    /// Every protocol refused: OWA, EWS, ActiveSync, MAPI, Outlook Anywhere, POP, IMAP, ECP.
    pub fn lockdown() -> CasChange {
        CasProtocol::ALL
            .into_iter()
            .fold(CasChange::new(), CasChange::disable)
    }

    /// Refuses `protocol`.
    pub fn disable(mut self, protocol: CasProtocol) -> CasChange {
        self.settings.insert(protocol, false);
        self
    }

    /// Allows `protocol`.
    pub fn enable(mut self, protocol: CasProtocol) -> CasChange {
        self.settings.insert(protocol, true);
        self
    }

    /// Whether the change names no protocol (refused by the backends: nothing to do).
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
    }

    /// The values to write, each "enabled" (the form `Set-CASMailbox` scripts take).
    pub fn values(&self) -> Vec<(CasProtocol, Option<bool>)> {
        self.iter().map(|(p, e)| (p, Some(e))).collect()
    }

    /// The protocols named, each with "enabled".
    pub fn iter(&self) -> impl Iterator<Item = (CasProtocol, bool)> + '_ {
        self.settings.iter().map(|(p, e)| (*p, *e))
    }
}

/// Protocol access before and after a change (read back from Exchange after the write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasUpdate {
    /// Before: give it to [`MailboxAdmin::restore_cas`](crate::MailboxAdmin::restore_cas) to
    /// undo the change.
    pub before: CasSettings,
    /// As read back after the write.
    pub after: CasSettings,
}

/// Whether a device may synchronize (`DeviceAccessState`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum DeviceAccessState {
    /// Allowed.
    Allowed,
    /// Blocked.
    Blocked,
    /// Quarantined.
    Quarantined,
    /// Not yet decided (the device is being discovered).
    DeviceDiscovery,
    /// Another value, as Exchange wrote it.
    Other(String),
}

impl DeviceAccessState {
    /// The value as Exchange writes it.
    pub fn as_str(&self) -> &str {
        match self {
            DeviceAccessState::Allowed => "Allowed",
            DeviceAccessState::Blocked => "Blocked",
            DeviceAccessState::Quarantined => "Quarantined",
            DeviceAccessState::DeviceDiscovery => "DeviceDiscovery",
            DeviceAccessState::Other(s) => s,
        }
    }
}

impl From<String> for DeviceAccessState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Allowed" => DeviceAccessState::Allowed,
            "Blocked" => DeviceAccessState::Blocked,
            "Quarantined" => DeviceAccessState::Quarantined,
            "DeviceDiscovery" => DeviceAccessState::DeviceDiscovery,
            _ => DeviceAccessState::Other(s),
        }
    }
}

impl From<DeviceAccessState> for String {
    fn from(s: DeviceAccessState) -> String {
        s.as_str().to_owned()
    }
}

impl fmt::Display for DeviceAccessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One mobile-device partnership of a mailbox (`Get-MobileDevice -Mailbox`). Every string is
/// as Exchange reported it, byte for byte (device IDs and names are chosen by the device, so
/// by whoever holds it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MobileDevice {
    /// `Identity`: what [`MailboxAdmin::wipe_devices`](crate::MailboxAdmin::wipe_devices)
    /// takes (`<mailbox>\ExchangeActiveSyncDevices\<type>§<id>` on Exchange).
    pub identity: String,
    /// `DeviceId`: what [`MailboxAdmin::block_devices`](crate::MailboxAdmin::block_devices)
    /// takes (`ActiveSyncBlockedDeviceIDs`).
    pub device_id: String,
    /// `DeviceType`.
    pub device_type: String,
    /// `DeviceModel`.
    pub device_model: String,
    /// `FriendlyName`.
    pub friendly_name: String,
    /// `DeviceAccessState`.
    pub access_state: DeviceAccessState,
}

/// A mailbox's devices and its `ActiveSyncBlockedDeviceIDs`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MobileDevices {
    /// The partnerships.
    pub devices: Vec<MobileDevice>,
    /// The device IDs blocked on the mailbox, partnered or not.
    pub blocked_device_ids: Vec<String>,
}

impl MobileDevices {
    /// Whether `device_id` is in the block list (compared like PowerShell's `-eq`: ignoring
    /// case).
    pub fn is_blocked(&self, device_id: &str) -> bool {
        contains_ci(&self.blocked_device_ids, device_id)
    }
}

/// What kind of remote wipe to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WipeMode {
    /// `-AccountOnly`: only the Exchange account's data leaves the device (EAS 16.1 clients;
    /// Outlook for iOS/Android always wipes only its own data). Exchange 2016 and later: the
    /// parameter does not exist on Exchange 2013, where this mode is refused
    /// ([`MailboxError::Unsupported`]) rather than turned into a full wipe.
    #[default]
    AccountOnly,
    /// A full device wipe (factory reset of a phone that uses its native mail app). Only when
    /// asked for explicitly.
    Full,
}

impl fmt::Display for WipeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WipeMode::AccountOnly => "account-only wipe",
            WipeMode::Full => "full device wipe",
        })
    }
}

/// What happened to one item (device, rule) an operation was asked to act on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemResult {
    /// The identity as the caller gave it.
    pub id: String,
    /// The outcome.
    #[serde(flatten)]
    pub status: ItemStatus,
}

/// The outcome for one item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
#[non_exhaustive]
pub enum ItemStatus {
    /// Exchange accepted the command (a wipe is then pending until the device connects).
    Done,
    /// The mailbox has no such item; nothing was done.
    NotFound,
    /// The cmdlet failed for this item; the others were still attempted.
    Failed {
        /// The .NET exception type Exchange raised (`CategoryInfo.Reason`), if any.
        reason: String,
        /// Exchange's message.
        message: String,
    },
}

impl ItemResult {
    /// Whether the command was accepted for this item.
    pub fn is_done(&self) -> bool {
        self.status == ItemStatus::Done
    }
}

/// The result of [`MailboxAdmin::wipe_devices`](crate::MailboxAdmin::wipe_devices): one entry
/// per requested device identity, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WipeReport {
    /// The kind of wipe sent.
    pub mode: WipeMode,
    /// Per device identity.
    pub devices: Vec<ItemResult>,
}

impl WipeReport {
    /// Whether every requested wipe was accepted.
    pub fn all_done(&self) -> bool {
        self.devices.iter().all(ItemResult::is_done)
    }
}

/// `ActiveSyncBlockedDeviceIDs` before and after a change (read back after the write).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceBlock {
    /// Before: give it to
    /// [`MailboxAdmin::restore_blocked_devices`](crate::MailboxAdmin::restore_blocked_devices)
    /// to undo.
    pub before: Vec<String>,
    /// As read back.
    pub after: Vec<String>,
}

impl DeviceBlock {
    /// The IDs in `after` that were not in `before`.
    pub fn added(&self) -> Vec<&str> {
        self.after
            .iter()
            .filter(|id| !contains_ci(&self.before, id))
            .map(String::as_str)
            .collect()
    }
}

/// A mailbox's own forwarding (`Get-Mailbox`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Forwarding {
    /// `ForwardingSmtpAddress` (e.g. `smtp:someone@elsewhere.example`), set by the user in OWA
    /// or by an administrator.
    pub smtp_address: Option<String>,
    /// `ForwardingAddress`: a recipient of the organization.
    pub address: Option<String>,
    /// `DeliverToMailboxAndForward`: also keep a copy.
    pub deliver_to_mailbox_and_forward: bool,
}

impl Forwarding {
    /// Whether mail is forwarded anywhere.
    pub fn is_set(&self) -> bool {
        self.smtp_address.is_some() || self.address.is_some()
    }
}

/// Why an inbox rule is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum RuleConcern {
    /// `ForwardTo`.
    Forwards,
    /// `ForwardAsAttachmentTo`.
    ForwardsAsAttachment,
    /// `RedirectTo`.
    Redirects,
    /// `DeleteMessage`.
    Deletes,
}

impl fmt::Display for RuleConcern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleConcern::Forwards => "forwards",
            RuleConcern::ForwardsAsAttachment => "forwards as attachment",
            RuleConcern::Redirects => "redirects",
            RuleConcern::Deletes => "deletes",
        })
    }
}

/// An inbox rule (`Get-InboxRule -Mailbox`). Names are the user's (or the attacker's) and are
/// kept byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxRule {
    /// `Name`.
    pub name: String,
    /// `Identity` (`<mailbox>\<RuleIdentity>`): what
    /// [`MailboxAdmin::change_inbox_rules`](crate::MailboxAdmin::change_inbox_rules) takes.
    pub identity: String,
    /// `RuleIdentity` (a 64-bit number, kept as text).
    pub rule_identity: String,
    /// `Enabled`.
    pub enabled: bool,
    /// `ForwardTo`, each recipient as Exchange writes it.
    pub forward_to: Vec<String>,
    /// `ForwardAsAttachmentTo`.
    pub forward_as_attachment_to: Vec<String>,
    /// `RedirectTo`.
    pub redirect_to: Vec<String>,
    /// `DeleteMessage`.
    pub delete_message: bool,
}

impl InboxRule {
    /// What the rule does that keeps mail leaving, or hides it: forward, forward as
    /// attachment, redirect, delete.
    pub fn concerns(&self) -> Vec<RuleConcern> {
        let mut out = Vec::new();
        if !self.forward_to.is_empty() {
            out.push(RuleConcern::Forwards);
        }
        if !self.forward_as_attachment_to.is_empty() {
            out.push(RuleConcern::ForwardsAsAttachment);
        }
        if !self.redirect_to.is_empty() {
            out.push(RuleConcern::Redirects);
        }
        if self.delete_message {
            out.push(RuleConcern::Deletes);
        }
        out
    }

    /// Whether the rule forwards, redirects or deletes (what the operations report).
    pub fn is_of_concern(&self) -> bool {
        !self.concerns().is_empty()
    }
}

/// What [`MailboxAdmin::forwarding`](crate::MailboxAdmin::forwarding) finds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardingReport {
    /// The mailbox's forwarding.
    pub forwarding: Forwarding,
    /// The inbox rules that forward, redirect or delete, enabled or not, in Exchange's order.
    pub rules: Vec<InboxRule>,
    /// How many other rules the mailbox has (not reported, never touched).
    pub other_rules: usize,
}

impl ForwardingReport {
    /// Splits `all` rules into those of concern and the count of the others.
    pub(crate) fn new(forwarding: Forwarding, all: Vec<InboxRule>) -> ForwardingReport {
        let (rules, others): (Vec<_>, Vec<_>) = all.into_iter().partition(InboxRule::is_of_concern);
        ForwardingReport {
            forwarding,
            rules,
            other_rules: others.len(),
        }
    }
}

/// Forwarding before and after [`MailboxAdmin::remove_forwarding`](crate::MailboxAdmin::remove_forwarding).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ForwardingChange {
    /// Before.
    pub before: Forwarding,
    /// As read back after the write.
    pub after: Forwarding,
}

/// What to do with inbox rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RuleAction {
    /// `Disable-InboxRule`: the rule stays, for evidence, and does nothing.
    Disable,
    /// `Remove-InboxRule`.
    Remove,
}

impl RuleAction {
    /// The cmdlet.
    pub const fn cmdlet(self) -> &'static str {
        match self {
            RuleAction::Disable => "Disable-InboxRule",
            RuleAction::Remove => "Remove-InboxRule",
        }
    }
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleAction::Disable => "disable",
            RuleAction::Remove => "remove",
        })
    }
}

/// The result of [`MailboxAdmin::change_inbox_rules`](crate::MailboxAdmin::change_inbox_rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleChange {
    /// What was done.
    pub action: RuleAction,
    /// Per requested rule identity, in the order given.
    pub rules: Vec<ItemResult>,
    /// The rules of concern as read back afterwards.
    pub after: Vec<InboxRule>,
    /// How many other rules the mailbox has afterwards.
    pub other_rules: usize,
}

impl RuleChange {
    /// The result of `action`: `rules` per requested identity, and every rule the mailbox has
    /// afterwards (`all_after`) split into those of concern and the count of the others.
    pub(crate) fn new(
        action: RuleAction,
        rules: Vec<ItemResult>,
        all_after: Vec<InboxRule>,
    ) -> RuleChange {
        let after = ForwardingReport::new(Forwarding::default(), all_after);
        RuleChange {
            action,
            rules,
            after: after.rules,
            other_rules: after.other_rules,
        }
    }
}

/// Whether `list` holds `item`, ignoring case (PowerShell's `-eq`).
pub(crate) fn contains_ci(list: &[String], item: &str) -> bool {
    list.iter().any(|x| eq_ci(x, item))
}

/// PowerShell's `-eq` on strings: equal ignoring case.
pub(crate) fn eq_ci(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}
