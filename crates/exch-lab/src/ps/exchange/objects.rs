//! The objects the Exchange cmdlets return, as PowerShell sees them: properties by
//! Exchange's names (a documented subset), Exchange's typed values (`ADObjectId`,
//! `SmtpAddress`, `ProxyAddress`, `ADRecipientOrAddress`, `InboxRuleId`) as objects whose
//! string form is Exchange's, enums as enums (PS 5.1's `ConvertTo-Json` writes their
//! numbers).

use super::super::value::{EnumValue, Obj, Value};
use crate::mailbox::ident::{self, Domain};
use crate::mailbox::{InboxRule, Mailbox, MobileDevice};

fn s(v: &str) -> Value {
    Value::Str(v.to_owned())
}

fn opt(v: Option<&str>) -> Value {
    v.filter(|v| !v.is_empty()).map_or(Value::Null, s)
}

/// An `ADObjectId`: prints its canonical name.
fn ad_object_id(name: &str, dn: &str, canonical: &str, guid: Option<&uuid::Uuid>) -> Value {
    Value::Object(
        Obj::new("Microsoft.Exchange.Data.Directory.ADObjectId")
            .with("Name", s(name))
            .with("DistinguishedName", s(dn))
            .with(
                "ObjectGuid",
                s(&guid.map(ToString::to_string).unwrap_or_default()),
            )
            .with_text(canonical),
    )
}

fn mailbox_id(domain: &Domain, m: &Mailbox) -> Value {
    ad_object_id(
        &m.name,
        &domain.mailbox_dn(m),
        &domain.mailbox_canonical(&m.name),
        Some(&m.guid),
    )
}

/// A recipient known only by name (`ForwardingAddress`): an `ADObjectId` in `Users`.
fn recipient_id(domain: &Domain, name: &str) -> Value {
    ad_object_id(
        name,
        &domain.user_dn(name),
        &domain.mailbox_canonical(name),
        None,
    )
}

/// An `SmtpAddress`: prints the address.
fn smtp_address(address: &str) -> Value {
    let (local, dom) = address.rsplit_once('@').unwrap_or((address, ""));
    Value::Object(
        Obj::new("Microsoft.Exchange.Data.SmtpAddress")
            .with("Local", s(local))
            .with("Domain", s(dom))
            .with("Address", s(address))
            .with(
                "IsValidAddress",
                Value::Bool(!local.is_empty() && !dom.is_empty()),
            )
            .with_text(address),
    )
}

/// An `SmtpProxyAddress` (`ForwardingSmtpAddress`): prints `smtp:<address>`.
fn proxy_address(address: &str) -> Value {
    let text = format!("smtp:{address}");
    Value::Object(
        Obj::new("Microsoft.Exchange.Data.SmtpProxyAddress")
            .with("SmtpAddress", s(address))
            .with("AddressString", s(address))
            .with("ProxyAddressString", s(&text))
            .with("Prefix", s("SMTP"))
            .with("IsPrimaryAddress", Value::Bool(false))
            .with("PrefixString", s("smtp"))
            .with_text(text),
    )
}

/// `ADRecipientOrAddress[]` (a rule's `ForwardTo`, …): `$null` when empty; each prints
/// `"<display name>" [SMTP:<address>]`.
fn recipients(addresses: &[String]) -> Value {
    if addresses.is_empty() {
        return Value::Null;
    }
    Value::Array(
        addresses
            .iter()
            .map(|a| {
                Value::Object(
                    Obj::new("Microsoft.Exchange.Data.Storage.Management.ADRecipientOrAddress")
                        .with("DisplayName", s(a))
                        .with("Address", s(a))
                        .with("RoutingType", s("SMTP"))
                        .with_text(format!("\"{a}\" [SMTP:{a}]")),
                )
            })
            .collect(),
    )
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|v| s(v)).collect())
}

/// A `Get-Mailbox` object.
pub(super) fn mailbox(domain: &Domain, m: &Mailbox) -> Value {
    let f = &m.forwarding;
    Value::Object(
        Obj::new("Microsoft.Exchange.Data.Directory.Management.Mailbox")
            .with("Name", s(&m.name))
            .with("Alias", s(&m.alias))
            .with("DisplayName", s(&m.display_name))
            .with("UserPrincipalName", s(&m.user_principal_name))
            .with("SamAccountName", s(&m.sam_account_name))
            .with("PrimarySmtpAddress", smtp_address(&m.primary_smtp_address))
            .with(
                "DeliverToMailboxAndForward",
                Value::Bool(f.deliver_to_mailbox_and_forward),
            )
            .with(
                "ForwardingAddress",
                f.address
                    .as_deref()
                    .map_or(Value::Null, |a| recipient_id(domain, a)),
            )
            .with(
                "ForwardingSmtpAddress",
                f.smtp_address.as_deref().map_or(Value::Null, proxy_address),
            )
            .with("DistinguishedName", s(&domain.mailbox_dn(m)))
            .with("Identity", mailbox_id(domain, m))
            .with("Guid", s(&m.guid.to_string()))
            .with("ExchangeGuid", s(&m.guid.to_string()))
            .with_text(domain.mailbox_canonical(&m.name)),
    )
}

/// A `Get-CASMailbox` object.
pub(super) fn cas_mailbox(domain: &Domain, m: &Mailbox) -> Value {
    let c = &m.cas;
    Value::Object(
        Obj::new("Microsoft.Exchange.Data.Directory.Management.CASMailbox")
            .with("Name", s(&m.name))
            .with("DisplayName", s(&m.display_name))
            .with("PrimarySmtpAddress", smtp_address(&m.primary_smtp_address))
            .with("SamAccountName", s(&m.sam_account_name))
            .with(
                "ActiveSyncAllowedDeviceIDs",
                strings(&c.active_sync_allowed_device_ids),
            )
            .with(
                "ActiveSyncBlockedDeviceIDs",
                strings(&c.active_sync_blocked_device_ids),
            )
            .with("ActiveSyncEnabled", Value::Bool(c.active_sync_enabled))
            .with(
                "HasActiveSyncDevicePartnership",
                Value::Bool(!m.devices.is_empty()),
            )
            .with("OWAEnabled", Value::Bool(c.owa_enabled))
            .with("ECPEnabled", Value::Bool(c.ecp_enabled))
            .with("PopEnabled", Value::Bool(c.pop_enabled))
            .with("ImapEnabled", Value::Bool(c.imap_enabled))
            .with("MAPIEnabled", Value::Bool(c.mapi_enabled))
            .with(
                "MAPIBlockOutlookRpcHttp",
                Value::Bool(c.mapi_block_outlook_rpc_http),
            )
            .with("EwsEnabled", c.ews_enabled.map_or(Value::Null, Value::Bool))
            .with("DistinguishedName", s(&domain.mailbox_dn(m)))
            .with("Identity", mailbox_id(domain, m))
            .with("Guid", s(&m.guid.to_string()))
            .with_text(domain.mailbox_canonical(&m.name)),
    )
}

/// A `Get-MobileDevice` object.
pub(super) fn mobile_device(domain: &Domain, m: &Mailbox, d: &MobileDevice) -> Value {
    let canonical = domain.device_canonical(m, d);
    let dn = domain.device_dn(m, d);
    Value::Object(
        Obj::new("Microsoft.Exchange.Data.Directory.SystemConfiguration.MobileDevice")
            .with("FriendlyName", opt(Some(&d.friendly_name)))
            .with("DeviceId", s(&d.device_id))
            .with("DeviceType", s(&d.device_type))
            .with("DeviceModel", s(&d.device_model))
            .with(
                "DeviceAccessState",
                Value::Enum(EnumValue {
                    type_name:
                        "Microsoft.Exchange.Data.Directory.SystemConfiguration.DeviceAccessState",
                    name: d.access_state.name().to_owned(),
                    value: d.access_state.value(),
                }),
            )
            .with("UserDisplayName", s(&domain.mailbox_canonical(&m.name)))
            .with("Name", s(&ident::device_object_name(d)))
            .with("DistinguishedName", s(&dn))
            .with(
                "Identity",
                ad_object_id(
                    &ident::device_object_name(d),
                    &dn,
                    &canonical,
                    Some(&d.guid),
                ),
            )
            .with("Guid", s(&d.guid.to_string()))
            .with_text(canonical),
    )
}

/// A `Get-InboxRule` object (`priority` counts from 1).
pub(super) fn inbox_rule(domain: &Domain, m: &Mailbox, r: &InboxRule, priority: usize) -> Value {
    let rule_id = Value::Object(
        Obj::new("Microsoft.Exchange.Data.Storage.Management.InboxRuleId")
            .with("MailboxOwnerId", mailbox_id(domain, m))
            .with("RuleId", Value::UInt(r.rule_identity))
            .with_text(r.identity.clone()),
    );
    Value::Object(
        Obj::new("Microsoft.Exchange.Data.Storage.Management.InboxRule")
            .with("Name", s(&r.name))
            .with("Enabled", Value::Bool(r.enabled))
            .with(
                "Priority",
                Value::Int(i64::try_from(priority).unwrap_or(i64::MAX)),
            )
            .with("RuleIdentity", Value::UInt(r.rule_identity))
            .with("ForwardTo", recipients(&r.forward_to))
            .with(
                "ForwardAsAttachmentTo",
                recipients(&r.forward_as_attachment_to),
            )
            .with("RedirectTo", recipients(&r.redirect_to))
            .with("DeleteMessage", Value::Bool(r.delete_message))
            .with("MoveToFolder", opt(r.move_to_folder.as_deref()))
            .with("MailboxOwnerId", mailbox_id(domain, m))
            .with("Identity", rule_id)
            .with_text(r.identity.clone()),
    )
}
