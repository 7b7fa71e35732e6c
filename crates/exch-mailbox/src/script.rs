//! The PowerShell scripts [`WinRmMailbox`](crate::WinRmMailbox) sends, one per operation (see
//! the section "Mailbox scripts (exch-mailbox)" of `docs/powershell-subset.md`).
//!
//! Every script:
//! - loads the Exchange Management Shell snap-in first (`Add-PSSnapin
//!   Microsoft.Exchange.Management.PowerShell.SnapIn`), in a fresh `powershell.exe`;
//! - stays inside the PowerShell subset the lab interprets (no `$` expansion in double quotes,
//!   no `continue`/`break`, no `throw`), and is valid Windows PowerShell 5.1;
//! - puts every caller value (mailbox identity, device and rule identities, device IDs) into
//!   the script **only** as a single-quoted literal written by
//!   [`exch_iis::script::ps_quote`] (every `'` and U+2018–U+201B doubled) — the mailbox's once,
//!   into `$id`; values read from Exchange are passed on as the objects Exchange returned,
//!   never re-parsed as code;
//! - looks the mailbox up first, with `@(Get-… -Identity '…')`, and acts only when exactly one
//!   matched (an identity with a wildcard, or one matching several mailboxes, changes nothing);
//! - acts on a device or a rule only when it belongs to that mailbox (matched by identity
//!   among `Get-MobileDevice -Mailbox` / `Get-InboxRule -Mailbox`);
//! - catches every error and prints **one** JSON document (`ConvertTo-Json -Compress -Depth
//!   4`): `{"matches":N, …}` or `{"failed":{"step","reason","errorId","message"}}`, where
//!   `step` names the cmdlet that failed and `reason` is `$_.CategoryInfo.Reason` (the .NET
//!   exception type, e.g. `ManagementObjectNotFoundException`);
//! - sets `$WarningPreference = 'SilentlyContinue'`: Exchange's warnings ("no settings have
//!   been modified") would otherwise reach stdout in front of the JSON.
//!
//! The generators take values that were already checked (no NUL: see
//! [`exch_iis::script::try_ps_quote`]); [`WinRmMailbox`](crate::WinRmMailbox) checks them, and
//! refuses a script whose command line would exceed
//! [`exch_iis::script::MAX_COMMAND_LINE`] before sending anything.
//!
//! ```
//! use exch_mailbox::{script, CasChange, MailboxId};
//!
//! let bob = MailboxId::new("o'brien@corp.example").unwrap();
//! let s = script::write_cas(&bob, &CasChange::lockdown().values());
//! assert!(s.contains("$id = 'o''brien@corp.example'\n"));
//! assert!(s.contains("Set-CASMailbox -Identity $id -OWAEnabled $false"));
//! assert!(s.contains("-MAPIBlockOutlookRpcHttp $true"));
//! assert!(exch_iis::script::command_line_len(&s) <= exch_iis::script::MAX_COMMAND_LINE);
//! ```

use exch_iis::script::ps_quote;

use crate::{CasProtocol, MailboxId, RuleAction, WipeMode};

/// The snap-in every script loads.
pub const SNAPIN: &str = "Microsoft.Exchange.Management.PowerShell.SnapIn";

/// Opens the script: stop on errors, no warnings on stdout, the mailbox's identity in `$id`,
/// the snap-in loaded inside `try`.
fn open(mailbox: &MailboxId) -> String {
    format!(
        "$ErrorActionPreference = 'Stop'\n\
         $WarningPreference = 'SilentlyContinue'\n\
         $id = {}\n\
         $step = 'Add-PSSnapin'\n\
         try {{\n  Add-PSSnapin {SNAPIN}\n",
        ps_quote(mailbox.as_str())
    )
}

/// Closes the script: any error becomes `{"failed":…}`; one JSON document out.
fn close(s: &mut String) {
    s.push_str(
        "} catch {\n  $out = [pscustomobject]@{ failed = [pscustomobject]@{ step = $step; reason = [string]$_.CategoryInfo.Reason; errorId = [string]$_.FullyQualifiedErrorId; message = [string]$_.Exception.Message } }\n}\n\
         ConvertTo-Json -InputObject $out -Depth 4 -Compress\n",
    );
}

/// `$found = @(<cmdlet> -Identity $id)`, `{"matches":N}`, and opens the block that runs when
/// exactly one matched (closed by [`end_lookup`]).
fn lookup(s: &mut String, cmdlet: &str) {
    s.push_str(&format!(
        "  $step = '{cmdlet}'\n  $found = @({cmdlet} -Identity $id)\n\
         \x20 $out = [pscustomobject]@{{ matches = $found.Count }}\n\
         \x20 if ($found.Count -eq 1) {{\n"
    ));
}

fn end_lookup(s: &mut String) {
    s.push_str("  }\n");
}

/// A whole script: [`open`], [`lookup`] of the mailbox with `cmdlet`, `body` (run when exactly
/// one matched), [`close`].
fn script(mailbox: &MailboxId, cmdlet: &str, body: impl FnOnce(&mut String)) -> String {
    let mut s = open(mailbox);
    lookup(&mut s, cmdlet);
    body(&mut s);
    end_lookup(&mut s);
    close(&mut s);
    s
}

/// `@('a', 'b')` (or `@()`), every item a verbatim literal.
fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| ps_quote(i)).collect();
    format!("@({})", quoted.join(", "))
}

/// The CAS object of `$var` (raw properties; the parser turns `MAPIBlockOutlookRpcHttp` into
/// "Outlook Anywhere enabled").
fn cas_object(var: &str) -> String {
    let fields: Vec<String> = CasProtocol::ALL
        .iter()
        .map(|p| format!("{0} = ${var}.{0}", p.parameter()))
        .collect();
    format!("[pscustomobject]@{{ {} }}", fields.join("; "))
}

/// The strings of the multi-valued `$expr` into `$var` (nulls dropped).
fn strings_into(var: &str, expr: &str, indent: &str) -> String {
    format!(
        "{indent}${var} = @()\n\
         {indent}foreach ($v in @({expr})) {{ if ($null -ne $v) {{ ${var} += [string]$v }} }}\n"
    )
}

/// `$rules`: every inbox rule of the mailbox, each property as text.
fn rules_into(s: &mut String) {
    let i = "      ";
    s.push_str("    $step = 'Get-InboxRule'\n    $rules = @()\n");
    s.push_str(&String::from(
        "    foreach ($r in @(Get-InboxRule -Mailbox $id)) {\n",
    ));
    s.push_str(&strings_into("to", "$r.ForwardTo", i));
    s.push_str(&strings_into("att", "$r.ForwardAsAttachmentTo", i));
    s.push_str(&strings_into("redir", "$r.RedirectTo", i));
    s.push_str(&format!(
        "{i}$rules += [pscustomobject]@{{ Name = [string]$r.Name; Identity = [string]$r.Identity; RuleIdentity = [string]$r.RuleIdentity; Enabled = [bool]$r.Enabled; ForwardTo = @($to); ForwardAsAttachmentTo = @($att); RedirectTo = @($redir); DeleteMessage = [bool]$r.DeleteMessage }}\n"
    ));
    s.push_str("    }\n");
}

/// The forwarding object of `$var`.
fn forwarding_object(var: &str) -> String {
    format!(
        "[pscustomobject]@{{ ForwardingSmtpAddress = [string]${var}.ForwardingSmtpAddress; ForwardingAddress = [string]${var}.ForwardingAddress; DeliverToMailboxAndForward = [bool]${var}.DeliverToMailboxAndForward }}"
    )
}

/// Lists the mailbox's items into `$present` (`<list> -Mailbox $id`); for each of `wanted`:
/// find the item of `$present` whose `Identity` equals it (`-eq`: ignoring case) and run
/// `action` on it (`$item` is the object Exchange returned); collect
/// `{"id","status","reason","message"}` into `$results`.
fn act_on_each(s: &mut String, list_cmdlet: &str, wanted: &[String], cmdlet: &str, action: &str) {
    s.push_str(&format!(
        "    $step = '{list_cmdlet}'\n    $present = @({list_cmdlet} -Mailbox $id)\n"
    ));
    s.push_str("    $results = @()\n");
    s.push_str(&format!("    foreach ($want in {}) {{\n", list(wanted)));
    s.push_str("      $status = 'notFound'\n      $reason = ''\n      $message = ''\n");
    s.push_str("      foreach ($item in $present) {\n");
    s.push_str("        if ([string]$item.Identity -eq $want) {\n");
    s.push_str(&format!("          $step = '{cmdlet}'\n"));
    s.push_str(&format!(
        "          try {{ {action}; $status = 'done' }} catch {{ $status = 'failed'; $reason = [string]$_.CategoryInfo.Reason; $message = [string]$_.Exception.Message }}\n"
    ));
    s.push_str("        }\n      }\n");
    s.push_str(
        "      $results += [pscustomobject]@{ id = $want; status = $status; reason = $reason; message = $message }\n",
    );
    s.push_str("    }\n");
}

/// Reads the protocol settings. Prints `{"matches":1,"cas":{"OWAEnabled":…,…}}`.
pub fn read_cas(mailbox: &MailboxId) -> String {
    script(mailbox, "Get-CASMailbox", |s| {
        s.push_str(&format!(
            "    $c = $found[0]\n    $out = [pscustomobject]@{{ matches = 1; cas = {} }}\n",
            cas_object("c")
        ));
    })
}

fn ps_value(protocol: CasProtocol, enabled: Option<bool>) -> &'static str {
    match enabled.map(|e| e != protocol.is_inverted()) {
        Some(true) => "$true",
        Some(false) => "$false",
        None => "$null",
    }
}

/// Writes protocol settings (`values`, each "enabled"; `None` = `$null`: see
/// [`CasChange::values`](crate::CasChange::values) and
/// [`CasSettings::restore_values`](crate::CasSettings::restore_values)) with one
/// `Set-CASMailbox`, reading them before and after. Prints
/// `{"matches":1,"before":{…},"after":{…}}`.
pub fn write_cas(mailbox: &MailboxId, values: &[(CasProtocol, Option<bool>)]) -> String {
    let params: Vec<String> = values
        .iter()
        .map(|(p, v)| format!("-{} {}", p.parameter(), ps_value(*p, *v)))
        .collect();
    script(mailbox, "Get-CASMailbox", |s| {
        s.push_str(&format!(
            "    $c = $found[0]\n    $before = {}\n",
            cas_object("c")
        ));
        s.push_str("    $step = 'Set-CASMailbox'\n");
        s.push_str(&format!(
            "    Set-CASMailbox -Identity $id {}\n",
            params.join(" ")
        ));
        s.push_str("    $step = 'Get-CASMailbox'\n");
        s.push_str("    $c = Get-CASMailbox -Identity $id\n");
        s.push_str(&format!(
            "    $out = [pscustomobject]@{{ matches = 1; before = $before; after = {} }}\n",
            cas_object("c")
        ));
    })
}

/// Lists the mobile devices and the blocked device IDs. Prints
/// `{"matches":1,"devices":[{"Identity","DeviceId","DeviceType","DeviceModel","FriendlyName",
/// "DeviceAccessState"}],"blocked":[…]}`.
pub fn list_devices(mailbox: &MailboxId) -> String {
    script(mailbox, "Get-CASMailbox", |s| {
        s.push_str(&blocked_ids_into("blocked"));
        s.push_str("    $step = 'Get-MobileDevice'\n    $devices = @()\n");
        s.push_str(&String::from(
            "    foreach ($d in @(Get-MobileDevice -Mailbox $id)) {\n",
        ));
        s.push_str("      $devices += [pscustomobject]@{ Identity = [string]$d.Identity; DeviceId = [string]$d.DeviceId; DeviceType = [string]$d.DeviceType; DeviceModel = [string]$d.DeviceModel; FriendlyName = [string]$d.FriendlyName; DeviceAccessState = [string]$d.DeviceAccessState }\n");
        s.push_str("    }\n");
        s.push_str(
            "    $out = [pscustomobject]@{ matches = 1; devices = @($devices); blocked = @($blocked) }\n",
        );
    })
}

/// Sends a remote wipe to each of the mailbox's devices whose `Identity` is in `identities`
/// (`Clear-MobileDevice -Identity … [-AccountOnly] -Confirm:$false`, `-AccountOnly` for
/// [`WipeMode::AccountOnly`]); an identity the mailbox has no device for is `notFound`, one
/// whose wipe fails is `failed` and the others are still sent. Prints
/// `{"matches":1,"results":[{"id","status","reason","message"}]}`.
pub fn wipe_devices(mailbox: &MailboxId, identities: &[String], mode: WipeMode) -> String {
    let switch = match mode {
        WipeMode::AccountOnly => " -AccountOnly",
        WipeMode::Full => "",
    };
    script(mailbox, "Get-CASMailbox", |s| {
        act_on_each(
            s,
            "Get-MobileDevice",
            identities,
            "Clear-MobileDevice",
            &format!("Clear-MobileDevice -Identity $item.Identity{switch} -Confirm:$false"),
        );
        s.push_str("    $out = [pscustomobject]@{ matches = 1; results = @($results) }\n");
    })
}

/// Adds `device_ids` to `ActiveSyncBlockedDeviceIDs` (those already there, compared with `-eq`,
/// are not added twice) and writes the full list back with one `Set-CASMailbox`. Prints
/// `{"matches":1,"before":[…],"after":[…]}`.
pub fn block_devices(mailbox: &MailboxId, device_ids: &[String]) -> String {
    script(mailbox, "Get-CASMailbox", |s| {
        s.push_str(&blocked_ids_into("before"));
        s.push_str("    $blocked = @($before)\n");
        s.push_str(&format!("    foreach ($want in {}) {{\n", list(device_ids)));
        s.push_str("      $have = $false\n");
        s.push_str("      foreach ($b in $blocked) { if ($b -eq $want) { $have = $true } }\n");
        s.push_str("      if (-not $have) { $blocked += $want }\n    }\n");
        s.push_str("    $step = 'Set-CASMailbox'\n");
        s.push_str("    Set-CASMailbox -Identity $id -ActiveSyncBlockedDeviceIDs $blocked\n");
        after_blocked(s);
    })
}

/// Writes `ActiveSyncBlockedDeviceIDs` as exactly `device_ids` (`@()` for none): puts a list
/// read before [`block_devices`] back. Prints `{"matches":1,"before":[…],"after":[…]}`.
pub fn set_blocked_devices(mailbox: &MailboxId, device_ids: &[String]) -> String {
    script(mailbox, "Get-CASMailbox", |s| {
        s.push_str(&blocked_ids_into("before"));
        s.push_str("    $step = 'Set-CASMailbox'\n");
        s.push_str(&format!(
            "    Set-CASMailbox -Identity $id -ActiveSyncBlockedDeviceIDs {}\n",
            list(device_ids)
        ));
        after_blocked(s);
    })
}

/// The mailbox's `ActiveSyncBlockedDeviceIDs`, as found, into `$var`.
fn blocked_ids_into(var: &str) -> String {
    strings_into(var, "$found[0].ActiveSyncBlockedDeviceIDs", "    ")
}

fn after_blocked(s: &mut String) {
    s.push_str("    $step = 'Get-CASMailbox'\n");
    s.push_str("    $c = Get-CASMailbox -Identity $id\n");
    s.push_str(&strings_into(
        "after",
        "$c.ActiveSyncBlockedDeviceIDs",
        "    ",
    ));
    s.push_str(
        "    $out = [pscustomobject]@{ matches = 1; before = @($before); after = @($after) }\n",
    );
}

/// Reads the forwarding settings and every inbox rule. Prints `{"matches":1,"forwarding":
/// {"ForwardingSmtpAddress","ForwardingAddress","DeliverToMailboxAndForward"},"rules":[{"Name",
/// "Identity","RuleIdentity","Enabled","ForwardTo","ForwardAsAttachmentTo","RedirectTo",
/// "DeleteMessage"}]}` (empty strings for unset addresses; the parser keeps only the rules
/// that forward, redirect or delete).
pub fn read_forwarding(mailbox: &MailboxId) -> String {
    script(mailbox, "Get-Mailbox", |s| {
        rules_into(s);
        s.push_str(&format!(
            "    $out = [pscustomobject]@{{ matches = 1; forwarding = {}; rules = @($rules) }}\n",
            forwarding_object("found[0]")
        ));
    })
}

/// Clears the mailbox's forwarding (`Set-Mailbox -ForwardingSmtpAddress $null
/// -ForwardingAddress $null -DeliverToMailboxAndForward $false`) and reads it before and after.
/// Prints `{"matches":1,"before":{…},"after":{…}}`.
pub fn remove_forwarding(mailbox: &MailboxId) -> String {
    script(mailbox, "Get-Mailbox", |s| {
        s.push_str(&format!(
            "    $before = {}\n",
            forwarding_object("found[0]")
        ));
        s.push_str("    $step = 'Set-Mailbox'\n");
        s.push_str("    Set-Mailbox -Identity $id -ForwardingSmtpAddress $null -ForwardingAddress $null -DeliverToMailboxAndForward $false\n");
        s.push_str("    $step = 'Get-Mailbox'\n");
        s.push_str("    $m = Get-Mailbox -Identity $id\n");
        s.push_str(&format!(
            "    $out = [pscustomobject]@{{ matches = 1; before = $before; after = {} }}\n",
            forwarding_object("m")
        ));
    })
}

/// Disables or removes each of the mailbox's inbox rules whose `Identity` is in `identities`
/// (`Disable-InboxRule` / `Remove-InboxRule -Identity … -Force -Confirm:$false`), then reads
/// every rule again. `-Force` answers the confirmation Exchange asks (ShouldContinue) when the
/// mailbox holds client-side Outlook rules, which changing any rule from the shell deletes: a
/// non-interactive shell cannot answer it, and the rule would stay. Prints `{"matches":1,"results":[{"id","status","reason","message"}],
/// "rules":[…]}` (rules as in [`read_forwarding`]).
pub fn change_inbox_rules(
    mailbox: &MailboxId,
    identities: &[String],
    action: RuleAction,
) -> String {
    let cmdlet = action.cmdlet();
    script(mailbox, "Get-Mailbox", |s| {
        act_on_each(
            s,
            "Get-InboxRule",
            identities,
            cmdlet,
            &format!("{cmdlet} -Identity $item.Identity -Force -Confirm:$false"),
        );
        rules_into(s);
        s.push_str(
            "    $out = [pscustomobject]@{ matches = 1; results = @($results); rules = @($rules) }\n",
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CasChange, CasSettings};
    use exch_iis::script::{command_line_len, MAX_COMMAND_LINE};

    fn all(mailbox: &MailboxId) -> Vec<(&'static str, String)> {
        let ids = vec![
            "a\\ExchangeActiveSyncDevices\\REST§Outlook§5eec4e941e0748a264512fd83770d5ac"
                .to_owned(),
        ];
        vec![
            ("read_cas", read_cas(mailbox)),
            (
                "write_cas",
                write_cas(mailbox, &CasChange::lockdown().values()),
            ),
            (
                "restore",
                write_cas(mailbox, &CasSettings::all(true).restore_values()),
            ),
            ("list_devices", list_devices(mailbox)),
            (
                "wipe_devices",
                wipe_devices(mailbox, &ids, WipeMode::AccountOnly),
            ),
            ("block_devices", block_devices(mailbox, &ids)),
            ("set_blocked_devices", set_blocked_devices(mailbox, &[])),
            ("read_forwarding", read_forwarding(mailbox)),
            ("remove_forwarding", remove_forwarding(mailbox)),
            (
                "change_inbox_rules",
                change_inbox_rules(mailbox, &ids, RuleAction::Remove),
            ),
        ]
    }

    #[test]
    fn every_script_leaves_room_for_values() {
        let bob = MailboxId::new("bob@corp.example").unwrap();
        for (name, s) in all(&bob) {
            let len = command_line_len(&s);
            eprintln!(
                "{name}: {} characters of script, command line {len}",
                s.len()
            );
            assert!(
                len + 2000 < MAX_COMMAND_LINE,
                "{name}: {len} characters leave too little room"
            );
            assert!(s.starts_with("$ErrorActionPreference = 'Stop'\n"), "{name}");
            assert!(s.contains(&format!("Add-PSSnapin {SNAPIN}\n")), "{name}");
            assert_eq!(s.matches("ConvertTo-Json").count(), 1, "{name}");
        }
    }

    #[test]
    fn outlook_anywhere_is_written_inverted() {
        let bob = MailboxId::new("bob").unwrap();
        let on = write_cas(&bob, &[(CasProtocol::OutlookAnywhere, Some(true))]);
        assert!(on.contains("-MAPIBlockOutlookRpcHttp $false\n"), "{on}");
        let ews = write_cas(&bob, &CasSettings::default().restore_values());
        assert!(
            ews.contains("Set-CASMailbox -Identity $id -EwsEnabled $null\n"),
            "{ews}"
        );
    }
}
