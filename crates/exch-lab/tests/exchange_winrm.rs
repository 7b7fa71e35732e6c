//! The Exchange cmdlets over the fleet's WinRM endpoints (winrm-rs, `powershell
//! -EncodedCommand`): one mailbox store behind every server, counters per server, a read-only
//! run that leaves the store's snapshot equal, hostile names intact through the whole chain.
#![allow(clippy::unwrap_used)]

mod exchange_support;
mod fleet_support;

use std::sync::Arc;

use exch_directory::InMemoryDirectory;
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_lab::mailbox::{Forwarding, InboxRule, Mailbox, MobileDevice};
use exchange_support::{assert_parses, q, SNAPIN};
use fleet_support::run_powershell;

async fn fleet() -> Fleet {
    let dir = InMemoryDirectory::new();
    let fleet = Fleet::builder()
        .winrm_basic_over_http()
        .directory(Arc::new(dir))
        .servers(2, ServerSpec::exchange_2019("EX"))
        .mailbox(Mailbox::new("bob", "bob@lab.example.test"))
        .build()
        .await
        .unwrap();
    let store = fleet.mailboxes();
    store
        .add_device("bob", MobileDevice::new("ApplF17XQ1", "iPhone"))
        .unwrap();
    store
        .set_forwarding("bob", Forwarding::to_smtp("drop@evil.example", false))
        .unwrap();
    store
        .add_inbox_rule(
            "bob",
            InboxRule::new("fwd").forward_to(["drop@evil.example"]),
        )
        .unwrap();
    fleet
}

async fn run_ok(fleet: &Fleet, server: &str, script: &str) -> String {
    assert_parses(script);
    let server = fleet.server(server).unwrap();
    let out = run_powershell(fleet, server, script).await.unwrap();
    assert_eq!(
        out.exit_code,
        0,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What a dry run reads: every setting, device, forwarding and rule of one mailbox.
fn read_all(id: &str) -> String {
    let id = q(id);
    format!(
        "{SNAPIN}$ErrorActionPreference = 'Stop'\n\
         $c = Get-CASMailbox -Identity {id}\n\
         $m = Get-Mailbox -Identity {id}\n\
         $d = @(Get-MobileDevice -Mailbox {id})\n\
         $r = @(Get-InboxRule -Mailbox {id})\n\
         ConvertTo-Json -InputObject ([pscustomobject]@{{ owa = $c.OWAEnabled; eas = $c.ActiveSyncEnabled; fwd = [string]$m.ForwardingSmtpAddress; devices = $d.Count; rules = $r.Count; name = $m.Name }}) -Compress"
    )
}

#[tokio::test]
async fn a_read_only_run_changes_nothing_and_is_counted_where_it_ran() {
    let fleet = fleet().await;
    let before = fleet.mailboxes().snapshot();
    let stdout = run_ok(&fleet, "EX01", &read_all("bob")).await;
    let v: serde_json::Value = serde_json::from_str(stdout.trim_end()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"owa": true, "eas": true, "fwd": "smtp:drop@evil.example",
            "devices": 1, "rules": 1, "name": "bob"})
    );
    assert_eq!(
        fleet.mailboxes().snapshot(),
        before,
        "a dry run changes nothing"
    );
    let ex01 = fleet.server("EX01").unwrap().counters().exchange;
    assert_eq!(
        (
            ex01.add_pssnapin,
            ex01.get_cas_mailbox,
            ex01.get_mailbox,
            ex01.get_mobile_device,
            ex01.get_inbox_rule
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!((ex01.changes, ex01.set_cas_mailbox), (0, 0));
    assert_eq!(
        fleet.server("EX02").unwrap().counters().exchange,
        Default::default()
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn every_server_works_on_the_one_organization_store() {
    let fleet = fleet().await;
    let lockdown = format!(
        "{SNAPIN}$ErrorActionPreference = 'Stop'\n\
         Clear-MobileDevice -Identity 'bob\\ExchangeActiveSyncDevices\\iPhone§ApplF17XQ1' -AccountOnly -Confirm:$false\n\
         Set-CASMailbox -Identity 'bob' -OWAEnabled $false -EwsEnabled $false -ActiveSyncEnabled $false -MAPIEnabled $false -MAPIBlockOutlookRpcHttp $true -ECPEnabled $false -PopEnabled $false -ImapEnabled $false\n\
         Set-Mailbox -Identity 'bob' -ForwardingSmtpAddress $null -ForwardingAddress $null -DeliverToMailboxAndForward $false\n\
         Remove-InboxRule -Identity 'fwd' -Mailbox 'bob' -Confirm:$false\n\
         ConvertTo-Json -InputObject ([pscustomobject]@{{ ok = $true }}) -Compress"
    );
    assert_eq!(run_ok(&fleet, "EX02", &lockdown).await, "{\"ok\":true}\r\n");
    // EX01 sees what EX02 did.
    let stdout = run_ok(&fleet, "EX01", &read_all("bob")).await;
    let v: serde_json::Value = serde_json::from_str(stdout.trim_end()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"owa": false, "eas": false, "fwd": "", "devices": 1, "rules": 0,
            "name": "bob"})
    );
    let bob = fleet.mailboxes().mailbox("bob").unwrap();
    let wipe = &bob.devices[0].wipes[0];
    assert!(wipe.device_could_connect && wipe.account_only);
    assert_eq!(wipe.server, "EX02");
    let ex02 = fleet.server("EX02").unwrap().counters().exchange;
    assert_eq!(
        (
            ex02.clear_mobile_device,
            ex02.set_cas_mailbox,
            ex02.set_mailbox,
            ex02.remove_inbox_rule,
            ex02.changes
        ),
        (1, 1, 1, 1, 4)
    );
    let ex01 = fleet.server("EX01").unwrap().counters().exchange;
    assert_eq!((ex01.changes, ex01.get_cas_mailbox), (0, 1));
    fleet.shutdown().await;
}

#[tokio::test]
async fn hostile_names_survive_the_whole_chain() {
    let fleet = fleet().await;
    let hostile = "o'bri\u{2019}en \"$(iisreset /stop)\"; `n | Out-Null # <x>&\\";
    fleet
        .mailboxes()
        .add_mailbox(Mailbox::new(hostile, "h@lab.example.test"))
        .unwrap();
    fleet
        .mailboxes()
        .add_device(hostile, MobileDevice::new(hostile, "iPhone"))
        .unwrap();
    let stdout = run_ok(&fleet, "EX01", &read_all(hostile)).await;
    let v: serde_json::Value = serde_json::from_str(stdout.trim_end()).unwrap();
    assert_eq!(v["name"].as_str().unwrap(), hostile);
    assert_eq!(v["devices"], 1);
    // Nothing ran: IIS is up on every server.
    for s in fleet.servers() {
        assert_eq!(s.counters().iis.iisresets, 0);
    }
    fleet.shutdown().await;
}
