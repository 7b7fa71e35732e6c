//! What the HTTP endpoints check of the logon user's mailbox after IIS has authenticated the
//! request: its CAS protocol settings (`Set-CASMailbox`) and, for ActiveSync, the device
//! rules — read through the worker's settings cache ([`super::worker`]).
//!
//! Exchange's protocol code in each worker reads the mailbox's settings from Active Directory
//! and keeps them in a process-wide cache; an entry is read again only after it expires
//! (minutes, up to 15 for a busy one) or when the process is replaced: "If you cannot wait for
//! the 15 minutes to pass, you will need to cycle the process" (David Sterling, Microsoft
//! Exchange Dev blog, "Throttling Policies and Caches", 2010-03-15; the same cache framework
//! holds the CAS settings). Microsoft's cmdlet documentation says the same of OWA mailbox
//! policies: changes "may take up to 60 minutes to take effect … you can force an update by
//! running the command IISRESET /noforce" (`Remove-OwaMailboxPolicy`, Exchange 2013). The lab
//! keeps each entry for [`super::IisTiming::mailbox_settings_lifetime`] from its read (15 min
//! of lab time by default, not renewed by use), and a new worker starts with an empty cache.

use std::fmt;
use std::time::Duration;

use exch_core::Protocol;
use exch_directory::escape::same_name;
use serde::Serialize;

use crate::mailbox::{Mailbox, MobileDevice};

/// How long a worker keeps what it read of a mailbox's settings when
/// [`super::IisTiming::mailbox_settings_lifetime`] is not changed: 15 minutes (lab time).
pub const DEFAULT_MAILBOX_SETTINGS_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Why a request that IIS authenticated is refused by the mailbox's CAS settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CasBlock {
    /// OWA with `OWAEnabled` = `$false`.
    OwaDisabled,
    /// ECP with `ECPEnabled` = `$false`.
    EcpDisabled,
    /// EWS with `EwsEnabled` = `$false` (`$null` is enabled).
    EwsDisabled,
    /// ActiveSync with `ActiveSyncEnabled` = `$false`.
    ActiveSyncDisabled,
    /// ActiveSync from a `DeviceId` that may not connect: in `ActiveSyncBlockedDeviceIDs`, or
    /// a partnership that is not `Allowed` and not in `ActiveSyncAllowedDeviceIDs`
    /// ([`Mailbox::device_can_connect`]).
    DeviceBlocked,
    /// MAPI over HTTP with `MAPIEnabled` = `$false`.
    MapiDisabled,
    /// Outlook Anywhere (RPC over HTTP) with `MAPIBlockOutlookRpcHttp` = `$true`.
    RpcHttpBlocked,
}

impl CasBlock {
    /// The protocol it refuses.
    pub fn protocol(self) -> Protocol {
        match self {
            CasBlock::OwaDisabled => Protocol::Owa,
            CasBlock::EcpDisabled => Protocol::Ecp,
            CasBlock::EwsDisabled => Protocol::Ews,
            CasBlock::ActiveSyncDisabled | CasBlock::DeviceBlocked => Protocol::Eas,
            CasBlock::MapiDisabled => Protocol::Mapi,
            CasBlock::RpcHttpBlocked => Protocol::RpcHttp,
        }
    }

    /// The `Get-CASMailbox` property that refuses it.
    pub fn setting(self) -> &'static str {
        match self {
            CasBlock::OwaDisabled => "OWAEnabled",
            CasBlock::EcpDisabled => "ECPEnabled",
            CasBlock::EwsDisabled => "EwsEnabled",
            CasBlock::ActiveSyncDisabled => "ActiveSyncEnabled",
            CasBlock::DeviceBlocked => "ActiveSyncBlockedDeviceIDs",
            CasBlock::MapiDisabled => "MAPIEnabled",
            CasBlock::RpcHttpBlocked => "MAPIBlockOutlookRpcHttp",
        }
    }
}

impl fmt::Display for CasBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            CasBlock::OwaDisabled => "Outlook on the web is disabled",
            CasBlock::EcpDisabled => "the Exchange admin center is disabled",
            CasBlock::EwsDisabled => "Exchange Web Services are disabled",
            CasBlock::ActiveSyncDisabled => "ActiveSync is disabled",
            CasBlock::DeviceBlocked => "this device is blocked",
            CasBlock::MapiDisabled => "MAPI is disabled",
            CasBlock::RpcHttpBlocked => "Outlook Anywhere is blocked",
        };
        write!(f, "{what} for this mailbox ({})", self.setting())
    }
}

/// Whether `protocol` has a mailbox setting the lab checks (Autodiscover, OAB and remote
/// PowerShell have none here).
pub(crate) fn is_checked(protocol: Protocol) -> bool {
    matches!(
        protocol,
        Protocol::Owa
            | Protocol::Ecp
            | Protocol::Ews
            | Protocol::Eas
            | Protocol::Mapi
            | Protocol::RpcHttp
    )
}

/// The CAS check of one request: `None` admits it. `device_id` is ActiveSync's `DeviceId`
/// query parameter, when the request has one; a device without a partnership yet is
/// `Allowed` (the organization's default access level).
pub fn cas_block(
    mailbox: &Mailbox,
    protocol: Protocol,
    device_id: Option<&str>,
) -> Option<CasBlock> {
    let cas = &mailbox.cas;
    match protocol {
        Protocol::Owa => (!cas.owa_enabled).then_some(CasBlock::OwaDisabled),
        Protocol::Ecp => (!cas.ecp_enabled).then_some(CasBlock::EcpDisabled),
        Protocol::Ews => (cas.ews_enabled == Some(false)).then_some(CasBlock::EwsDisabled),
        Protocol::Eas if !cas.active_sync_enabled => Some(CasBlock::ActiveSyncDisabled),
        Protocol::Eas => device_id.and_then(|id| {
            let known = mailbox.devices.iter().find(|d| same_name(&d.device_id, id));
            let can = match known {
                Some(d) => mailbox.device_can_connect(d),
                None => mailbox.device_can_connect(&MobileDevice::new(id, "")),
            };
            (!can).then_some(CasBlock::DeviceBlocked)
        }),
        Protocol::Mapi => (!cas.mapi_enabled).then_some(CasBlock::MapiDisabled),
        Protocol::RpcHttp => cas
            .mapi_block_outlook_rpc_http
            .then_some(CasBlock::RpcHttpBlocked),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::{CasSettings, DeviceAccessState};

    #[test]
    fn each_protocol_reads_its_own_setting() {
        let mut m = Mailbox::new("bob", "bob@lab.example.test");
        for p in Protocol::ALL {
            assert_eq!(cas_block(&m, p, Some("ANY")), None, "{p}: defaults admit");
        }
        m = m.cas(CasSettings {
            owa_enabled: false,
            ecp_enabled: false,
            ews_enabled: Some(false),
            mapi_enabled: false,
            mapi_block_outlook_rpc_http: true,
            ..CasSettings::default()
        });
        let blocks: Vec<_> = [
            Protocol::Owa,
            Protocol::Ecp,
            Protocol::Ews,
            Protocol::Mapi,
            Protocol::RpcHttp,
        ]
        .into_iter()
        .map(|p| cas_block(&m, p, None).map(CasBlock::protocol))
        .collect();
        assert_eq!(
            blocks,
            [
                Some(Protocol::Owa),
                Some(Protocol::Ecp),
                Some(Protocol::Ews),
                Some(Protocol::Mapi),
                Some(Protocol::RpcHttp)
            ]
        );
        assert_eq!(cas_block(&m, Protocol::Eas, None), None);
        assert_eq!(cas_block(&m, Protocol::Autodiscover, None), None);
        m.cas.ews_enabled = Some(true);
        assert_eq!(cas_block(&m, Protocol::Ews, None), None);
    }

    #[test]
    fn activesync_checks_the_device_rules() {
        let mut m = Mailbox::new("bob", "bob@lab.example.test");
        m.devices.push(
            MobileDevice::new("Quar1", "Android").access_state(DeviceAccessState::Quarantined),
        );
        m.cas.active_sync_blocked_device_ids = vec!["ApplF17X".to_owned()];
        let eas = |m: &Mailbox, id| cas_block(m, Protocol::Eas, id);
        assert_eq!(eas(&m, Some("applf17x")), Some(CasBlock::DeviceBlocked));
        assert_eq!(eas(&m, Some("Quar1")), Some(CasBlock::DeviceBlocked));
        assert_eq!(eas(&m, Some("NewOne")), None);
        assert_eq!(eas(&m, None), None);
        m.cas.active_sync_allowed_device_ids = vec!["Quar1".to_owned()];
        assert_eq!(eas(&m, Some("Quar1")), None);
        m.cas.active_sync_enabled = false;
        assert_eq!(eas(&m, None), Some(CasBlock::ActiveSyncDisabled));
        assert_eq!(
            CasBlock::ActiveSyncDisabled.to_string(),
            "ActiveSync is disabled for this mailbox (ActiveSyncEnabled)"
        );
    }
}
