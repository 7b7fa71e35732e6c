//! `exch-revoke --lockdown --wipe-devices --remove-forwarding` against Samba AD + a lab fleet
//! whose mailbox store holds the user's mailbox, a device, forwarding and a forwarding inbox
//! rule: `plan` names the mailbox step and changes nothing (the store's snapshot is equal);
//! `revoke` wipes the device while it can still connect, then refuses every protocol and
//! blocks it, removes the forwarding and disables the rule — all through the lab's Exchange
//! Management Shell over WinRM — and the report's residual section says so. Needs Samba
//! (`EXCH_REVOKE_AD_ENV`; skipped with a `SKIPPED:` line otherwise, failed when
//! `EXCH_REVOKE_REQUIRE_SAMBA=1`).
#![allow(clippy::unwrap_used)]

mod common;

use common::Lab;
use exch_lab::mailbox::{Forwarding, InboxRule, Mailbox, MobileDevice};
use std::process::Stdio;
use std::time::Duration;

const OLD_PW: &str = "Mailbox-Old-Pass!m4";
const WINRM_PW: &str = "Mailbox-WinRM-Pw!m5";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockdown_wipe_and_forwarding_removal_through_the_lab_shell() {
    let suite = "exch-revoke mailbox containment (Samba AD + lab fleet)";
    let Some(lab) = Lab::require(suite, "M", 2, Duration::from_millis(10), WINRM_PW).await else {
        return;
    };
    let user = common::create_users(lab.ad, "mb", 1, OLD_PW)
        .await
        .remove(0);
    let store = lab.fleet.mailboxes();
    store
        .add_mailbox(Mailbox::new(user.sam.clone(), user.upn.clone()))
        .unwrap();
    store
        .add_device(&user.upn, MobileDevice::new("ApplDEV1", "iPhone"))
        .unwrap();
    store
        .set_forwarding(&user.upn, Forwarding::to_smtp("exfil@evil.example", false))
        .unwrap();
    store
        .add_inbox_rule(
            &user.upn,
            InboxRule::new("keep a copy").forward_to(["exfil@evil.example"]),
        )
        .unwrap();
    let before = store.snapshot();

    let dir = common::scratch("mailbox");
    let config = lab.write_profile(&dir);
    let run = |args: &[&str]| {
        let mut cmd = lab.command(&config);
        cmd.args(args)
            .args(["--user", &user.upn])
            .args(["--lockdown", "--wipe-devices", "--remove-forwarding"])
            .stdin(Stdio::null());
        tokio::task::block_in_place(move || cmd.output().unwrap())
    };

    // The dry run: the step, its server and what it does; the store is untouched.
    let out = run(&["plan", "--disable", "--reset-password"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("mailbox (through") && stdout.contains("before the block"),
        "{stdout}"
    );
    assert_eq!(
        store.snapshot(),
        before,
        "the plan changed the mailbox store"
    );

    let report_file = dir.join("report.json");
    let pw_dir = dir.join("passwords");
    let out = run(&[
        "revoke",
        "--disable",
        "--reset-password",
        "--passwords-dir",
        pw_dir.to_str().unwrap(),
        "--json",
        report_file.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");

    // The lab's own store: the wipe reached the device before it was blocked, every protocol
    // is refused, the forwarding is gone and the rule disabled.
    let m = store.mailbox(&user.upn).unwrap();
    let device = &m.devices[0];
    assert_eq!(device.wipes.len(), 1, "{device:?}");
    assert!(
        device.wipes[0].device_could_connect,
        "wiped after the block"
    );
    assert!(device.wipes[0].account_only);
    assert!(m
        .cas
        .active_sync_blocked_device_ids
        .iter()
        .any(|id| id.eq_ignore_ascii_case("ApplDEV1")));
    let cas = &m.cas;
    assert!(
        !cas.owa_enabled
            && cas.ews_enabled == Some(false)
            && !cas.active_sync_enabled
            && !cas.mapi_enabled
            && cas.mapi_block_outlook_rpc_http
            && !cas.pop_enabled
            && !cas.imap_enabled
            && !cas.ecp_enabled,
        "{cas:?}"
    );
    assert_eq!(m.forwarding.smtp_address, None);
    assert!(!m.inbox_rules[0].enabled);

    // The report says what was closed.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    let u = &report["users"][0];
    assert_eq!(u["outcome"], "Revoked", "{report}");
    let residual = u["residual"].as_array().unwrap();
    assert!(
        residual
            .iter()
            .any(|r| r["channel"] == "kerberos_tickets" && r["closed"] == true),
        "{report}"
    );
    assert!(residual
        .iter()
        .any(|r| r["channel"] == "device" && r["state"] == "wiped and blocked"));
    assert!(residual
        .iter()
        .any(|r| r["channel"] == "rule" && r["state"] == "disabled"));
    assert!(
        stdout.contains("RESIDUAL:") && stdout.contains("Kerberos tickets: closed"),
        "{stdout}"
    );
}
