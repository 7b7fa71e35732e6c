//! What the store keeps per mailbox: CAS settings, mobile devices, forwarding, inbox rules.
//! These are also the snapshot a test compares ([`super::MailboxStoreSnapshot`]) and the
//! seeds it adds ([`super::MailboxStore::add_mailbox`] and friends).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One mailbox (a mailbox-enabled user): its identities and everything the Exchange
/// cmdlets of the lab read or change.
///
/// Build one with [`Mailbox::new`] and the builder methods; the store fills in nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mailbox {
    /// `Guid` (also `ExchangeGuid` in the lab): accepted as an identity.
    pub guid: Uuid,
    /// `Name` (the user's `cn`): part of its `Identity`, `DistinguishedName` and of the
    /// identities of its devices and rules.
    pub name: String,
    /// `Alias` (`mailNickname`).
    pub alias: String,
    /// `DisplayName`.
    pub display_name: String,
    /// `UserPrincipalName`.
    pub user_principal_name: String,
    /// `PrimarySmtpAddress`.
    pub primary_smtp_address: String,
    /// `SamAccountName` (`<NetBIOS domain>\<sam>` is accepted as an identity).
    pub sam_account_name: String,
    /// The `Get-CASMailbox` / `Set-CASMailbox` settings.
    pub cas: CasSettings,
    /// ActiveSync partnerships (`Get-MobileDevice -Mailbox`).
    pub devices: Vec<MobileDevice>,
    /// `ForwardingSmtpAddress`, `ForwardingAddress`, `DeliverToMailboxAndForward`.
    pub forwarding: Forwarding,
    /// Inbox rules in priority order (`Get-InboxRule -Mailbox`).
    pub inbox_rules: Vec<InboxRule>,
    /// The mailbox holds rules made by Outlook (the client-side rules blob): changing or
    /// removing a rule from the shell then asks to delete them, which a non-interactive host
    /// cannot answer unless `-Force` is given. `Disable-InboxRule -Force` /
    /// `Remove-InboxRule -Force` delete the blob (this turns `false`).
    pub outlook_rules_blob: bool,
}

impl Mailbox {
    /// A mailbox with alias `alias` and primary address `primary_smtp_address`: `Name`,
    /// `DisplayName` and `SamAccountName` are the alias, `UserPrincipalName` is the primary
    /// address, a random `Guid`, Exchange's default CAS settings, nothing else.
    pub fn new(alias: impl Into<String>, primary_smtp_address: impl Into<String>) -> Self {
        let alias = alias.into();
        let primary_smtp_address = primary_smtp_address.into();
        Mailbox {
            guid: Uuid::new_v4(),
            name: alias.clone(),
            display_name: alias.clone(),
            sam_account_name: alias.clone(),
            user_principal_name: primary_smtp_address.clone(),
            alias,
            primary_smtp_address,
            cas: CasSettings::default(),
            devices: Vec::new(),
            forwarding: Forwarding::default(),
            inbox_rules: Vec::new(),
            outlook_rules_blob: false,
        }
    }

    /// Sets `Name`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets `DisplayName`.
    pub fn display_name(mut self, display_name: impl Into<String>) -> Self {
        self.display_name = display_name.into();
        self
    }

    /// Sets `UserPrincipalName`.
    pub fn user_principal_name(mut self, upn: impl Into<String>) -> Self {
        self.user_principal_name = upn.into();
        self
    }

    /// Sets `SamAccountName`.
    pub fn sam_account_name(mut self, sam: impl Into<String>) -> Self {
        self.sam_account_name = sam.into();
        self
    }

    /// Sets `Guid`.
    pub fn guid(mut self, guid: Uuid) -> Self {
        self.guid = guid;
        self
    }

    /// Sets the CAS settings.
    pub fn cas(mut self, cas: CasSettings) -> Self {
        self.cas = cas;
        self
    }

    /// Sets the forwarding.
    pub fn forwarding(mut self, forwarding: Forwarding) -> Self {
        self.forwarding = forwarding;
        self
    }

    /// Marks the mailbox as holding rules made by Outlook (the field of the same name).
    pub fn outlook_rules_blob(mut self, present: bool) -> Self {
        self.outlook_rules_blob = present;
        self
    }
}

/// The protocol settings of `Get-CASMailbox` / `Set-CASMailbox`, with Exchange's defaults
/// for a new mailbox ([`Default`]): every protocol enabled, `MAPIBlockOutlookRpcHttp` off,
/// `EwsEnabled` unset (`$null`: the organization's setting applies), no device lists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CasSettings {
    /// `OWAEnabled`.
    pub owa_enabled: bool,
    /// `EwsEnabled` (`None` = `$null`, as on a new mailbox).
    pub ews_enabled: Option<bool>,
    /// `ActiveSyncEnabled`.
    pub active_sync_enabled: bool,
    /// `MAPIEnabled`.
    pub mapi_enabled: bool,
    /// `MAPIBlockOutlookRpcHttp` (Outlook Anywhere).
    pub mapi_block_outlook_rpc_http: bool,
    /// `PopEnabled`.
    pub pop_enabled: bool,
    /// `ImapEnabled`.
    pub imap_enabled: bool,
    /// `ECPEnabled`.
    pub ecp_enabled: bool,
    /// `ActiveSyncBlockedDeviceIDs`.
    pub active_sync_blocked_device_ids: Vec<String>,
    /// `ActiveSyncAllowedDeviceIDs`.
    pub active_sync_allowed_device_ids: Vec<String>,
}

impl Default for CasSettings {
    fn default() -> Self {
        CasSettings {
            owa_enabled: true,
            ews_enabled: None,
            active_sync_enabled: true,
            mapi_enabled: true,
            mapi_block_outlook_rpc_http: false,
            pop_enabled: true,
            imap_enabled: true,
            ecp_enabled: true,
            active_sync_blocked_device_ids: Vec::new(),
            active_sync_allowed_device_ids: Vec::new(),
        }
    }
}

/// `DeviceAccessState` of a mobile device (Exchange's enum; PS 5.1's `ConvertTo-Json`
/// writes the number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeviceAccessState {
    /// `Unknown` (0).
    Unknown,
    /// `Allowed` (1).
    #[default]
    Allowed,
    /// `Blocked` (2).
    Blocked,
    /// `Quarantined` (3).
    Quarantined,
    /// `DeviceDiscovery` (4).
    DeviceDiscovery,
}

impl DeviceAccessState {
    /// The enum member's name.
    pub fn name(self) -> &'static str {
        match self {
            DeviceAccessState::Unknown => "Unknown",
            DeviceAccessState::Allowed => "Allowed",
            DeviceAccessState::Blocked => "Blocked",
            DeviceAccessState::Quarantined => "Quarantined",
            DeviceAccessState::DeviceDiscovery => "DeviceDiscovery",
        }
    }

    /// The enum member's number.
    pub fn value(self) -> i64 {
        match self {
            DeviceAccessState::Unknown => 0,
            DeviceAccessState::Allowed => 1,
            DeviceAccessState::Blocked => 2,
            DeviceAccessState::Quarantined => 3,
            DeviceAccessState::DeviceDiscovery => 4,
        }
    }
}

/// An ActiveSync partnership of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MobileDevice {
    /// `Guid`: accepted as the device's identity.
    pub guid: Uuid,
    /// `Identity` as `Get-MobileDevice` prints it and `Clear-MobileDevice -Identity` takes
    /// it: `<mailbox Name>\ExchangeActiveSyncDevices\<DeviceType>§<DeviceId>`. Filled in by
    /// the store when empty.
    pub identity: String,
    /// `DeviceId`.
    pub device_id: String,
    /// `DeviceType`.
    pub device_type: String,
    /// `DeviceModel`.
    pub device_model: String,
    /// `FriendlyName`.
    pub friendly_name: String,
    /// `DeviceAccessState`.
    pub access_state: DeviceAccessState,
    /// Every remote wipe sent to it (`Clear-MobileDevice`), oldest first.
    pub wipes: Vec<WipeRecord>,
}

impl MobileDevice {
    /// A device `device_id` of type `device_type` (e.g. `iPhone`), model = type, no friendly
    /// name, `Allowed`, never wiped; its identity is made when it is added to a mailbox.
    pub fn new(device_id: impl Into<String>, device_type: impl Into<String>) -> Self {
        let device_type = device_type.into();
        MobileDevice {
            guid: Uuid::new_v4(),
            identity: String::new(),
            device_id: device_id.into(),
            device_model: device_type.clone(),
            device_type,
            friendly_name: String::new(),
            access_state: DeviceAccessState::Allowed,
            wipes: Vec::new(),
        }
    }

    /// Sets `DeviceModel`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.device_model = model.into();
        self
    }

    /// Sets `FriendlyName`.
    pub fn friendly_name(mut self, name: impl Into<String>) -> Self {
        self.friendly_name = name.into();
        self
    }

    /// Sets `DeviceAccessState`.
    pub fn access_state(mut self, state: DeviceAccessState) -> Self {
        self.access_state = state;
        self
    }

    /// Sets `Identity` (instead of the one the store makes).
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = identity.into();
        self
    }
}

/// One remote wipe (`Clear-MobileDevice`) as the lab recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WipeRecord {
    /// When it was requested (lab clock).
    pub requested_at: DateTime<Utc>,
    /// `-AccountOnly`: only the mailbox's data is removed from the device.
    pub account_only: bool,
    /// Whether the device could still connect when the wipe was sent — the mailbox's
    /// `ActiveSyncEnabled` was on, the device was not in `ActiveSyncBlockedDeviceIDs` and its
    /// `DeviceAccessState` was `Allowed`. A wipe sent to a device that cannot connect never
    /// reaches it (KB 2612821: wipe first, block after).
    pub device_could_connect: bool,
    /// The server whose shell sent it.
    pub server: String,
}

/// Mailbox forwarding (`Get-Mailbox` / `Set-Mailbox`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Forwarding {
    /// `ForwardingSmtpAddress`, without its `smtp:` prefix.
    pub smtp_address: Option<String>,
    /// `ForwardingAddress`: the `Name` of the recipient (a contact or another mailbox).
    pub address: Option<String>,
    /// `DeliverToMailboxAndForward`.
    pub deliver_to_mailbox_and_forward: bool,
}

impl Forwarding {
    /// Forwarding to an outside address (`ForwardingSmtpAddress`).
    pub fn to_smtp(address: impl Into<String>, keep_a_copy: bool) -> Self {
        Forwarding {
            smtp_address: Some(address.into()),
            address: None,
            deliver_to_mailbox_and_forward: keep_a_copy,
        }
    }

    /// Forwarding to a recipient of the organization (`ForwardingAddress`), by its `Name`.
    pub fn to_recipient(name: impl Into<String>, keep_a_copy: bool) -> Self {
        Forwarding {
            smtp_address: None,
            address: Some(name.into()),
            deliver_to_mailbox_and_forward: keep_a_copy,
        }
    }
}

/// An inbox rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboxRule {
    /// `Name`.
    pub name: String,
    /// `RuleIdentity` (Exchange draws it from the whole `UInt64` range; the store makes one
    /// when it is 0).
    pub rule_identity: u64,
    /// `Identity`: `<mailbox Name>\<RuleIdentity>` (made by the store).
    pub identity: String,
    /// `Enabled`.
    pub enabled: bool,
    /// `ForwardTo` (SMTP addresses).
    pub forward_to: Vec<String>,
    /// `ForwardAsAttachmentTo`.
    pub forward_as_attachment_to: Vec<String>,
    /// `RedirectTo`.
    pub redirect_to: Vec<String>,
    /// `DeleteMessage`.
    pub delete_message: bool,
    /// `MoveToFolder` (a folder name; harmless rules).
    pub move_to_folder: Option<String>,
}

impl InboxRule {
    /// An enabled rule named `name` with no action.
    pub fn new(name: impl Into<String>) -> Self {
        InboxRule {
            name: name.into(),
            rule_identity: 0,
            identity: String::new(),
            enabled: true,
            forward_to: Vec::new(),
            forward_as_attachment_to: Vec::new(),
            redirect_to: Vec::new(),
            delete_message: false,
            move_to_folder: None,
        }
    }

    /// Sets `ForwardTo`.
    pub fn forward_to<I: IntoIterator<Item = S>, S: Into<String>>(mut self, to: I) -> Self {
        self.forward_to = to.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `ForwardAsAttachmentTo`.
    pub fn forward_as_attachment_to<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        to: I,
    ) -> Self {
        self.forward_as_attachment_to = to.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `RedirectTo`.
    pub fn redirect_to<I: IntoIterator<Item = S>, S: Into<String>>(mut self, to: I) -> Self {
        self.redirect_to = to.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `DeleteMessage`.
    pub fn delete_message(mut self, delete: bool) -> Self {
        self.delete_message = delete;
        self
    }

    /// Sets `MoveToFolder`.
    pub fn move_to_folder(mut self, folder: impl Into<String>) -> Self {
        self.move_to_folder = Some(folder.into());
        self
    }

    /// Sets `Enabled`.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets `RuleIdentity` (instead of one the store makes).
    pub fn rule_identity(mut self, id: u64) -> Self {
        self.rule_identity = id;
        self
    }

    /// Whether the rule sends mail out of the mailbox or destroys it: forwards, redirects or
    /// deletes.
    pub fn is_hostile(&self) -> bool {
        !self.forward_to.is_empty()
            || !self.forward_as_attachment_to.is_empty()
            || !self.redirect_to.is_empty()
            || self.delete_message
    }
}
