//! The Exchange cmdlets of the lab's PowerShell subset, run through the interpreter against a
//! seeded mailbox store: what each returns (as PS 5.1's `ConvertTo-Json` renders it), what
//! each changes, and what the store and the counters say afterwards.
#![allow(clippy::unwrap_used)]

mod exchange_support;

use exch_lab::mailbox::DeviceAccessState;
use exchange_support::{json, lab, q, run, seed, EX2016, EX2019, SNAPIN};
use serde_json::json as j;

#[tokio::test]
async fn get_cas_mailbox_renders_the_protocol_settings() {
    let host = lab(EX2019);
    seed(&host.mailboxes());
    let v = json(
        &host,
        &format!(
            "{SNAPIN}$c = Get-CASMailbox -Identity 'BOB@lab.example.TEST' -ErrorAction Stop\n\
             ConvertTo-Json -InputObject $c -Compress"
        ),
    )
    .await;
    assert_eq!(v["Name"], "bob");
    assert_eq!(v["OWAEnabled"], true);
    assert_eq!(v["EwsEnabled"], j!(null), "unset on a new mailbox");
    assert_eq!(v["ActiveSyncEnabled"], true);
    assert_eq!(v["MAPIEnabled"], true);
    assert_eq!(v["MAPIBlockOutlookRpcHttp"], false);
    assert_eq!(v["PopEnabled"], true);
    assert_eq!(v["ImapEnabled"], true);
    assert_eq!(v["ECPEnabled"], true);
    assert_eq!(v["ActiveSyncBlockedDeviceIDs"], j!([]));
    assert_eq!(v["ActiveSyncAllowedDeviceIDs"], j!([]));
    assert_eq!(v["HasActiveSyncDevicePartnership"], true);
    // Exchange's typed values are objects; `[string]` gives Exchange's text.
    assert_eq!(v["Identity"]["Name"], "bob");
    assert_eq!(
        v["Identity"]["DistinguishedName"],
        "CN=bob,CN=Users,DC=lab,DC=example,DC=test"
    );
    assert_eq!(v["PrimarySmtpAddress"]["Address"], "bob@lab.example.test");

    // Case-insensitive member access and Exchange's string forms.
    let v = json(
        &host,
        &format!(
            "{SNAPIN}$c = Get-CASMailbox 'bob'\n\
             ConvertTo-Json -InputObject ([pscustomobject]@{{ owa = $c.owaenabled; ews = $c.EWSENABLED; id = [string]$c.Identity; smtp = [string]$c.PrimarySmtpAddress; self = $c.ToString() }}) -Compress"
        ),
    )
    .await;
    assert_eq!(
        v,
        j!({"owa": true, "ews": null, "id": "lab.example.test/Users/bob",
            "smtp": "bob@lab.example.test", "self": "lab.example.test/Users/bob"})
    );
}

#[tokio::test]
async fn set_cas_mailbox_locks_and_restores_each_protocol() {
    let host = lab(EX2019);
    let store = host.mailboxes();
    seed(&store);
    let lock = format!(
        "{SNAPIN}$ErrorActionPreference = 'Stop'\n\
         Set-CASMailbox -Identity 'bob' -OWAEnabled $false -EwsEnabled $false -ActiveSyncEnabled $false -MAPIEnabled $false -MAPIBlockOutlookRpcHttp $true -PopEnabled $false -ImapEnabled $false -ECPEnabled $false -ActiveSyncBlockedDeviceIDs 'ApplF17XQ1', 'SEC1A2B3C'\n\
         ConvertTo-Json -InputObject ([pscustomobject]@{{ done = $true }}) -Compress"
    );
    assert_eq!(json(&host, &lock).await, j!({"done": true}));
    let cas = store.mailbox("bob").unwrap().cas;
    assert!(!cas.owa_enabled && !cas.active_sync_enabled && !cas.mapi_enabled);
    assert!(!cas.pop_enabled && !cas.imap_enabled && !cas.ecp_enabled);
    assert!(cas.mapi_block_outlook_rpc_http);
    assert_eq!(cas.ews_enabled, Some(false));
    assert_eq!(
        cas.active_sync_blocked_device_ids,
        ["ApplF17XQ1", "SEC1A2B3C"]
    );
    // alice is untouched.
    assert_eq!(
        store.mailbox("alice").unwrap().cas,
        exch_lab::mailbox::CasSettings::default()
    );

    // Restore: booleans back, EwsEnabled back to $null, the list emptied with @().
    let restore = format!(
        "{SNAPIN}Set-CASMailbox -Identity 'bob' -OWAEnabled $true -EwsEnabled $null -ActiveSyncEnabled 1 -MAPIEnabled $true -MAPIBlockOutlookRpcHttp $false -PopEnabled $true -ImapEnabled $true -ECPEnabled $true -ActiveSyncBlockedDeviceIDs @()\n"
    );
    let out = run(&host, &restore).await;
    assert_eq!((out.exit_code, out.stderr.as_str()), (0, ""));
    assert_eq!(
        store.mailbox("bob").unwrap().cas,
        exch_lab::mailbox::CasSettings::default()
    );

    // Add / Remove hashtables change a list in place, without duplicates.
    let edit = format!(
        "{SNAPIN}Set-CASMailbox 'bob' -ActiveSyncBlockedDeviceIDs @{{ Add = 'A1', 'B2' }}\n\
         Set-CASMailbox 'bob' -ActiveSyncBlockedDeviceIDs @{{ Add = 'a1', 'C3'; Remove = 'B2' }}\n\
         Set-CASMailbox 'bob' -ActiveSyncAllowedDeviceIDs 'Z9'\n"
    );
    assert_eq!(run(&host, &edit).await.exit_code, 0);
    let cas = store.mailbox("bob").unwrap().cas;
    assert_eq!(cas.active_sync_blocked_device_ids, ["A1", "C3"]);
    assert_eq!(cas.active_sync_allowed_device_ids, ["Z9"]);
}

#[tokio::test]
async fn a_set_that_changes_nothing_warns_on_stdout_as_exchange_does() {
    let host = lab(EX2019);
    seed(&host.mailboxes());
    let script = format!(
        "{SNAPIN}Set-CASMailbox -Identity 'bob' -OWAEnabled $true\n\
         ConvertTo-Json -InputObject 1 -Compress"
    );
    let out = run(&host, &script).await;
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "WARNING: The command completed successfully but no settings of 'lab.example.test/Users/bob' have been modified.\r\n1\r\n"
    );
    // -WarningAction SilentlyContinue (or $WarningPreference) keeps stdout to the JSON.
    for quiet in [
        "Set-CASMailbox -Identity 'bob' -OWAEnabled $true -WarningAction SilentlyContinue",
        "$WarningPreference = 'SilentlyContinue'\nSet-Mailbox -Identity 'alice' -ForwardingSmtpAddress $null",
    ] {
        let out = run(&host, &format!("{SNAPIN}{quiet}\n'{{}}'")).await;
        assert_eq!((out.exit_code, out.stdout.as_str()), (0, "{}\r\n"), "{quiet}");
    }
    assert_eq!(host.exchange_counters().changes, 0);
}

#[tokio::test]
async fn boolean_parameters_take_only_booleans_and_numbers() {
    let host = lab(EX2019);
    seed(&host.mailboxes());
    // A binding error is terminating: -ErrorAction SilentlyContinue does not hide it, and
    // the statement ends before anything changes.
    let out = run(
        &host,
        &format!("{SNAPIN}Set-CASMailbox -Identity 'bob' -OWAEnabled 'no' -ErrorAction SilentlyContinue\n'after'"),
    )
    .await;
    assert!(
        out.stderr.starts_with("Set-CASMailbox : Cannot process argument transformation on parameter 'OWAEnabled'. Cannot convert value \"no\" to type \"System.Boolean\". Boolean parameters accept only Boolean values and numbers, such as $True, $False, 1 or 0."),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "after\r\n", "the script goes on");
    assert!(host.mailboxes().mailbox("bob").unwrap().cas.owa_enabled);
}

#[tokio::test]
async fn mobile_devices_are_listed_and_wiped_before_they_are_blocked() {
    let host = lab(EX2019);
    let store = host.mailboxes();
    seed(&store);
    let v = json(
        &host,
        &format!(
            "{SNAPIN}$d = @(Get-MobileDevice -Mailbox 'bob@lab.example.test')\n\
             ConvertTo-Json -InputObject ([pscustomobject]@{{ devices = $d; first = [string]$d[0].Identity; state = [string]$d[0].DeviceAccessState; allowed = ($d[0].DeviceAccessState -eq 'Allowed') }}) -Depth 3 -Compress"
        ),
    )
    .await;
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0]["DeviceId"], "ApplF17XQ1");
    assert_eq!(devices[0]["DeviceType"], "iPhone");
    assert_eq!(devices[0]["DeviceModel"], "iPhone 15");
    assert_eq!(devices[0]["FriendlyName"], "Bob's phone");
    assert_eq!(devices[1]["FriendlyName"], j!(null));
    // PS 5.1 writes an enum as its number; [string] gives its name.
    assert_eq!(devices[0]["DeviceAccessState"], 1);
    assert_eq!(v["state"], "Allowed");
    assert_eq!(v["allowed"], true);
    assert_eq!(
        v["first"],
        "lab.example.test/Users/bob/ExchangeActiveSyncDevices/iPhone§ApplF17XQ1"
    );

    // Wipe the first (account only) while it can connect, by the identity Get-MobileDevice
    // printed; block both; wipe the second by the documented `<mailbox>\…` form: too late.
    let script = format!(
        "{SNAPIN}$ErrorActionPreference = 'Stop'\n\
         Clear-MobileDevice -Identity {} -AccountOnly -Confirm:$false\n\
         Set-CASMailbox -Identity 'bob' -ActiveSyncBlockedDeviceIDs 'ApplF17XQ1', 'SEC1A2B3C'\n\
         Clear-MobileDevice -Identity 'bob\\ExchangeActiveSyncDevices\\SAMSUNGSMG991B§SEC1A2B3C' -Confirm:$false\n",
        q(v["first"].as_str().unwrap())
    );
    let out = run(&host, &script).await;
    assert_eq!((out.exit_code, out.stderr.as_str()), (0, ""));
    let bob = store.mailbox("bob").unwrap();
    let now = host.clock().now();
    let first = &bob.devices[0].wipes;
    assert_eq!(first.len(), 1);
    assert!(first[0].account_only && first[0].device_could_connect);
    assert_eq!(
        (first[0].requested_at, first[0].server.as_str()),
        (now, "EX1")
    );
    let second = &bob.devices[1].wipes;
    assert_eq!(second.len(), 1);
    assert!(!second[0].account_only && !second[0].device_could_connect);
    let c = host.exchange_counters();
    assert_eq!((c.get_mobile_device, c.clear_mobile_device), (1, 2));
    assert_eq!((c.set_cas_mailbox, c.changes), (1, 3));
}

#[tokio::test]
async fn a_device_blocked_by_its_access_state_cannot_receive_a_wipe() {
    let host = lab(EX2019);
    let store = host.mailboxes();
    seed(&store);
    let id = store
        .add_device(
            "alice",
            exch_lab::mailbox::MobileDevice::new("Q1", "Android")
                .access_state(DeviceAccessState::Quarantined),
        )
        .unwrap();
    let script = format!("{SNAPIN}Clear-MobileDevice {} -Confirm:$false\n", q(&id));
    assert_eq!(run(&host, &script).await.exit_code, 0);
    let wipes = &store.mailbox("alice").unwrap().devices[0].wipes;
    assert!(!wipes[0].device_could_connect);
    // Get-MobileDevice -Identity takes the same forms.
    let v = json(
        &host,
        &format!(
            "{SNAPIN}Get-MobileDevice -Identity {} | ConvertTo-Json -Compress",
            q(&id)
        ),
    )
    .await;
    assert_eq!(v["DeviceAccessState"], 3);
}

#[tokio::test]
async fn account_only_wipes_need_exchange_2016() {
    let host = lab(exchange_support::EX2013);
    seed(&host.mailboxes());
    let out = run(
        &host,
        &format!("{SNAPIN}Clear-MobileDevice -Identity 'bob\\ExchangeActiveSyncDevices\\iPhone§ApplF17XQ1' -AccountOnly -Confirm:$false\n"),
    )
    .await;
    assert_eq!(out.exit_code, 1);
    assert!(
        out.stderr.starts_with("Clear-MobileDevice : A parameter cannot be found that matches parameter name 'AccountOnly'."),
        "{}",
        out.stderr
    );
    assert!(host.mailboxes().mailbox("bob").unwrap().devices[0]
        .wipes
        .is_empty());
    // 2016 has it.
    let host = lab(EX2016);
    seed(&host.mailboxes());
    let out = run(
        &host,
        &format!("{SNAPIN}Clear-MobileDevice -Identity 'bob\\ExchangeActiveSyncDevices\\iPhone§ApplF17XQ1' -AccountOnly -Confirm:$false\n"),
    )
    .await;
    assert_eq!((out.exit_code, out.stderr.as_str()), (0, ""));
}

#[tokio::test]
async fn forwarding_is_read_and_removed_with_set_mailbox() {
    let host = lab(EX2019);
    let store = host.mailboxes();
    seed(&store);
    store
        .set_forwarding(
            "alice",
            exch_lab::mailbox::Forwarding::to_recipient("bob", false),
        )
        .unwrap();
    let v = json(
        &host,
        &format!(
            "{SNAPIN}$b = Get-Mailbox -Identity 'bob'\n$a = Get-Mailbox -Identity 'alice'\n\
             ConvertTo-Json -InputObject ([pscustomobject]@{{ bob = $b; smtp = [string]$b.ForwardingSmtpAddress; keep = $b.DeliverToMailboxAndForward; to = [string]$a.ForwardingAddress; none = ($null -eq $a.ForwardingSmtpAddress) }}) -Depth 3 -Compress"
        ),
    )
    .await;
    assert_eq!(v["smtp"], "smtp:drop@evil.example");
    assert_eq!(v["keep"], true);
    assert_eq!(v["to"], "lab.example.test/Users/bob");
    assert_eq!(v["none"], true);
    assert_eq!(
        v["bob"]["ForwardingSmtpAddress"]["AddressString"],
        "drop@evil.example"
    );
    assert_eq!(v["bob"]["ForwardingAddress"], j!(null));
    assert_eq!(v["bob"]["Alias"], "bob");
    assert_eq!(v["bob"]["DisplayName"], "Bob Smith");

    let remove = format!(
        "{SNAPIN}$ErrorActionPreference = 'Stop'\n\
         Set-Mailbox -Identity 'bob' -ForwardingSmtpAddress $null -ForwardingAddress $null -DeliverToMailboxAndForward $false\n\
         Set-Mailbox -Identity 'alice' -ForwardingAddress $null\n"
    );
    let out = run(&host, &remove).await;
    assert_eq!((out.exit_code, out.stderr.as_str()), (0, ""));
    for who in ["bob", "alice"] {
        assert_eq!(
            store.mailbox(who).unwrap().forwarding,
            exch_lab::mailbox::Forwarding::default(),
            "{who}"
        );
    }

    // Setting it again (each parameter on its own): an `smtp:` prefix is optional, a
    // recipient must exist.
    let set = format!(
        "{SNAPIN}Set-Mailbox 'bob' -ForwardingSmtpAddress 'SMTP:x@y.example'\nSet-Mailbox 'alice' -ForwardingAddress 'bob@lab.example.test'\nSet-Mailbox 'alice' -ForwardingAddress 'nobody'\n"
    );
    let out = run(&host, &set).await;
    assert_eq!(out.exit_code, 1);
    assert!(
        out.stderr.starts_with("Set-Mailbox : Couldn't find object \"nobody\". Please make sure that it was spelled correctly or specify a different object."),
        "{}",
        out.stderr
    );
    assert_eq!(
        store
            .mailbox("bob")
            .unwrap()
            .forwarding
            .smtp_address
            .as_deref(),
        Some("x@y.example")
    );
    assert_eq!(
        store
            .mailbox("alice")
            .unwrap()
            .forwarding
            .address
            .as_deref(),
        Some("bob")
    );
}

#[tokio::test]
async fn inbox_rules_are_listed_disabled_and_removed_and_nothing_else_is_touched() {
    let host = lab(EX2019);
    let store = host.mailboxes();
    seed(&store);
    let out = run(
        &host,
        &format!(
            "{SNAPIN}$r = @(Get-InboxRule -Mailbox 'bob')\n\
             ConvertTo-Json -InputObject ([pscustomobject]@{{ rules = $r; id = [string]$r[0].Identity; to = [string]$r[0].ForwardTo; n = [string]$r[0].RuleIdentity }}) -Depth 4 -Compress"
        ),
    )
    .await;
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    // RuleIdentity is a UInt64 above i64::MAX; JSON carries it as a number, exactly.
    assert!(
        out.stdout.contains("\"RuleIdentity\":17293822569102704641"),
        "{}",
        out.stdout
    );
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim_end()).unwrap();
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0]["Name"], "Forward everything");
    assert_eq!(rules[0]["Enabled"], true);
    assert_eq!(rules[0]["Priority"], 1);
    assert_eq!(
        rules[0]["RuleIdentity"].as_u64(),
        Some(17_293_822_569_102_704_641)
    );
    assert_eq!(rules[0]["ForwardTo"][0]["Address"], "drop@evil.example");
    assert_eq!(rules[0]["RedirectTo"], j!(null));
    assert_eq!(rules[0]["DeleteMessage"], false);
    assert_eq!(rules[1]["MoveToFolder"], "News");
    assert_eq!(v["id"], "bob\\17293822569102704641");
    assert_eq!(v["to"], "\"drop@evil.example\" [SMTP:drop@evil.example]");
    assert_eq!(v["n"], "17293822569102704641");

    // Disable by `<mailbox>\<RuleIdentity>`, then remove by name with -Mailbox.
    let script = format!(
        "{SNAPIN}$ErrorActionPreference = 'Stop'\n\
         Disable-InboxRule -Identity 'bob\\17293822569102704641' -Confirm:$false\n\
         $r = Get-InboxRule -Identity 'Forward everything' -Mailbox 'bob'\n\
         ConvertTo-Json -InputObject ([pscustomobject]@{{ enabled = $r.Enabled }}) -Compress\n\
         Remove-InboxRule -Identity 'Forward everything' -Mailbox 'bob@lab.example.test' -Confirm:$false\n"
    );
    let out = run(&host, &script).await;
    assert_eq!((out.exit_code, out.stderr.as_str()), (0, ""));
    assert_eq!(out.stdout, "{\"enabled\":false}\r\n");
    let bob = store.mailbox("bob").unwrap();
    assert_eq!(bob.inbox_rules.len(), 1);
    assert_eq!(bob.inbox_rules[0].name, "Newsletters");
    assert!(bob.inbox_rules[0].enabled);
    assert_eq!(
        bob.devices.len(),
        2,
        "nothing else in the mailbox is touched"
    );
    assert!(bob.forwarding.smtp_address.is_some());
    let c = host.exchange_counters();
    assert_eq!(
        (
            c.get_inbox_rule,
            c.disable_inbox_rule,
            c.remove_inbox_rule,
            c.changes
        ),
        (2, 1, 1, 2)
    );
}

#[tokio::test]
async fn outlook_client_rules_make_exchange_ask_unless_forced() {
    let host = lab(EX2019);
    let store = host.mailboxes();
    store
        .add_mailbox(
            exch_lab::mailbox::Mailbox::new("carol", "carol@lab.example.test")
                .outlook_rules_blob(true),
        )
        .unwrap();
    store
        .add_inbox_rule(
            "carol",
            exch_lab::mailbox::InboxRule::new("r").redirect_to(["x@evil.example"]),
        )
        .unwrap();
    let plain =
        format!("{SNAPIN}Remove-InboxRule -Identity 'r' -Mailbox 'carol' -Confirm:$false\n");
    let err = exchange_support::fails(&host, &plain).await;
    assert!(
        err.starts_with("Remove-InboxRule : Windows PowerShell is in NonInteractive mode. Read and Prompt functionality is not available."),
        "{err}"
    );
    assert_eq!(store.mailbox("carol").unwrap().inbox_rules.len(), 1);
    let forced =
        format!("{SNAPIN}Remove-InboxRule -Identity 'r' -Mailbox 'carol' -Force -Confirm:$false\n");
    assert_eq!(run(&host, &forced).await.exit_code, 0);
    let carol = store.mailbox("carol").unwrap();
    assert!(carol.inbox_rules.is_empty() && !carol.outlook_rules_blob);
}

#[tokio::test]
async fn get_mailbox_lists_and_takes_wildcards() {
    let host = lab(EX2019);
    seed(&host.mailboxes());
    let v = json(
        &host,
        &format!("{SNAPIN}ConvertTo-Json -InputObject @(Get-Mailbox) -Compress"),
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let v = json(
        &host,
        &format!("{SNAPIN}$m = @(Get-Mailbox -Identity 'a*')\nConvertTo-Json -InputObject ([pscustomobject]@{{ n = $m.Count; name = $m[0].Name }}) -Compress"),
    )
    .await;
    assert_eq!(v, j!({"n": 1, "name": "alice"}));
}

#[tokio::test]
async fn piped_objects_bind_to_identity() {
    let host = lab(EX2019);
    let store = host.mailboxes();
    seed(&store);
    let script = format!(
        "{SNAPIN}$ErrorActionPreference = 'Stop'\n\
         Get-MobileDevice -Mailbox 'bob' | Clear-MobileDevice -Confirm:$false\n\
         Get-CASMailbox -Identity 'bob' | Set-CASMailbox -ActiveSyncEnabled $false\n\
         Get-InboxRule -Mailbox 'bob' | Disable-InboxRule -Confirm:$false\n"
    );
    let out = run(&host, &script).await;
    assert_eq!((out.exit_code, out.stderr.as_str()), (0, ""));
    let bob = store.mailbox("bob").unwrap();
    assert!(bob.devices.iter().all(|d| d.wipes.len() == 1));
    assert!(!bob.cas.active_sync_enabled);
    assert!(bob.inbox_rules.iter().all(|r| !r.enabled));
    let c = host.exchange_counters();
    assert_eq!((c.clear_mobile_device, c.disable_inbox_rule), (2, 2));
}

#[tokio::test]
async fn read_cmdlets_have_no_whatif_or_confirm() {
    let host = lab(EX2019);
    seed(&host.mailboxes());
    for cmd in [
        "Get-InboxRule -Mailbox 'bob' -Confirm:$false",
        "Get-Mailbox -Identity 'bob' -WhatIf",
    ] {
        let err = exchange_support::fails(&host, &format!("{SNAPIN}{cmd}")).await;
        assert!(
            err.contains(": A parameter cannot be found that matches parameter name '"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn rule_identities_and_enums_compare_as_powershell_compares_them() {
    let host = lab(EX2019);
    seed(&host.mailboxes());
    let v = json(
        &host,
        &format!(
            "{SNAPIN}$r = Get-InboxRule -Identity 'Forward everything' -Mailbox 'bob'\n\
             $d = @(Get-MobileDevice -Mailbox 'bob')[0]\n\
             ConvertTo-Json -InputObject ([pscustomobject]@{{ same = ($r.RuleIdentity -eq [ulong]'17293822569102704641'); bigger = ($r.RuleIdentity -gt 1); state = ($d.DeviceAccessState -eq 1); blocked = ($d.DeviceAccessState -eq 'Blocked') }}) -Compress"
        ),
    )
    .await;
    assert_eq!(
        v,
        j!({"same": true, "bigger": true, "state": true, "blocked": false})
    );
    // PS 5.1's ConvertTo-Json has no -EnumsAsStrings.
    let err = exchange_support::fails(&host, "ConvertTo-Json -InputObject 1 -EnumsAsStrings").await;
    assert!(
        err.contains("A parameter cannot be found that matches parameter name 'EnumsAsStrings'."),
        "{err}"
    );
}
