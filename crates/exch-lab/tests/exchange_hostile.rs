//! Hostile mailbox names, device IDs, rule names and addresses: quotes of every kind, `$`,
//! backticks, `;`, pipes, newlines, backslashes, markup, non-ASCII. Passed to the cmdlets
//! only as single-quoted literals, they come back out of `ConvertTo-Json` byte for byte, the
//! cmdlets act on exactly the object they name, and nothing in them runs.
#![allow(clippy::unwrap_used)]

mod exchange_support;

use exch_lab::mailbox::{Forwarding, InboxRule, Mailbox, MobileDevice};
use exchange_support::{json, lab, q, run, EX2019, SNAPIN};

/// No `*`: Exchange reads it as a wildcard in an identity (see `wildcards_are_not_literal`).
const HOSTILE: [&str; 14] = [
    "o'brien",
    "say \"hi\"",
    "\u{2018}smart\u{2019} \u{201A}quotes\u{201B}",
    "$(Remove-InboxRule -Identity x -Confirm:$false)",
    "$env:COMPUTERNAME",
    "back`tick`n",
    "semi; Set-CASMailbox -Identity bob -OWAEnabled $false",
    "pipe | Out-Null",
    "new\nline\r\nand cr",
    "back\\slash\\ExchangeActiveSyncDevices\\x",
    "<b>&amp;</b> # not a comment",
    "slash/in/name",
    "\u{e9}l\u{e8}ve \u{540d}\u{524d} \u{1F600}",
    "tab\there @{a=1} @(1) [int]",
];

fn mailbox(i: usize, h: &str) -> Mailbox {
    Mailbox::new(h, format!("h{i}@lab.example.test")).display_name(format!("{h} (display)"))
}

#[tokio::test]
async fn hostile_names_round_trip_byte_for_byte_and_never_run() {
    let host = lab(EX2019);
    let store = host.mailboxes();
    store
        .add_mailbox(Mailbox::new("bob", "bob@lab.example.test"))
        .unwrap();
    for (i, h) in HOSTILE.iter().enumerate() {
        store.add_mailbox(mailbox(i, h)).unwrap();
        store
            .add_device(
                h,
                MobileDevice::new(*h, "iPhone").friendly_name(*h).model(*h),
            )
            .unwrap();
        store
            .set_forwarding(h, Forwarding::to_smtp(format!("{h}@evil.example"), false))
            .unwrap();
        store
            .add_inbox_rule(
                h,
                InboxRule::new(*h).forward_to([format!("{h}@evil.example")]),
            )
            .unwrap();
    }
    let untouched = store.mailbox("bob").unwrap();

    for (i, h) in HOSTILE.iter().enumerate() {
        let id = q(h);
        let script = format!(
            "{SNAPIN}$ErrorActionPreference = 'Stop'\n\
             $m = Get-Mailbox -Identity {id}\n\
             $c = Get-CASMailbox -Identity {id}\n\
             $d = @(Get-MobileDevice -Mailbox {id})\n\
             $r = @(Get-InboxRule -Mailbox {id})\n\
             ConvertTo-Json -InputObject ([pscustomobject]@{{ name = $m.Name; alias = $m.Alias; display = $m.DisplayName; sam = $c.SamAccountName; fwd = [string]$m.ForwardingSmtpAddress; dev = $d[0].DeviceId; friendly = $d[0].FriendlyName; model = $d[0].DeviceModel; devid = [string]$d[0].Identity; rule = $r[0].Name; ruleid = [string]$r[0].Identity; to = $r[0].ForwardTo[0].Address }}) -Compress"
        );
        let v = json(&host, &script).await;
        let field = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("{k}: {v}"))
                .to_owned()
        };
        assert_eq!(field("name"), *h);
        assert_eq!(field("alias"), *h);
        assert_eq!(field("display"), format!("{h} (display)"));
        assert_eq!(field("sam"), *h);
        assert_eq!(field("fwd"), format!("smtp:{h}@evil.example"));
        assert_eq!(field("dev"), *h);
        assert_eq!(field("friendly"), *h);
        assert_eq!(field("model"), *h);
        assert_eq!(field("rule"), *h);
        assert_eq!(field("to"), format!("{h}@evil.example"));
        let m = store.mailbox(&format!("h{i}@lab.example.test")).unwrap();
        assert_eq!(field("ruleid"), m.inbox_rules[0].identity);

        // Act on them by the identities the shell printed, and by name.
        let devid = field("devid");
        let act = format!(
            "{SNAPIN}$ErrorActionPreference = 'Stop'\n\
             Clear-MobileDevice -Identity {} -Confirm:$false\n\
             Set-CASMailbox -Identity {id} -ActiveSyncBlockedDeviceIDs {id}\n\
             Disable-InboxRule -Identity {} -Confirm:$false\n\
             Remove-InboxRule -Identity {id} -Mailbox {id} -Confirm:$false\n\
             Set-Mailbox -Identity {id} -ForwardingSmtpAddress $null\n",
            q(&devid),
            q(&m.inbox_rules[0].identity),
        );
        let out = run(&host, &act).await;
        assert_eq!((out.exit_code, out.stderr.as_str()), (0, ""), "{h:?}");
        let m = store.mailbox(&format!("h{i}@lab.example.test")).unwrap();
        assert_eq!(m.devices[0].wipes.len(), 1, "{h:?}");
        assert!(m.devices[0].wipes[0].device_could_connect);
        assert_eq!(m.cas.active_sync_blocked_device_ids, [*h]);
        assert!(!m.device_can_connect(&m.devices[0]));
        assert!(m.inbox_rules.is_empty(), "{h:?}");
        assert_eq!(m.forwarding.smtp_address, None);
    }
    // Nothing in the names ran: bob, whom they name, is as he was.
    assert_eq!(store.mailbox("bob").unwrap(), untouched);
    let c = host.exchange_counters();
    assert_eq!(c.clear_mobile_device, HOSTILE.len() as u64);
    assert_eq!(c.remove_inbox_rule, HOSTILE.len() as u64);
}

#[tokio::test]
async fn hostile_text_in_errors_is_quoted_back_verbatim() {
    let host = lab(EX2019);
    for h in HOSTILE {
        let v = json(
            &host,
            &format!(
                "{SNAPIN}try {{ Get-Mailbox -Identity {} -ErrorAction Stop }} catch {{ $m = $_.Exception.Message }}\nConvertTo-Json -InputObject $m",
                q(h)
            ),
        )
        .await;
        assert_eq!(
            v.as_str().unwrap(),
            format!("The operation couldn't be performed because object '{h}' couldn't be found on 'dc01.lab.example.test'.")
        );
    }
}

#[tokio::test]
async fn wildcards_are_not_literal() {
    // A `*` in an identity is Exchange's wildcard: a name holding one cannot be named
    // safely by it (use the GUID), and a Set through it that matches two mailboxes fails.
    let host = lab(EX2019);
    let store = host.mailboxes();
    store
        .add_mailbox(Mailbox::new("star*", "s1@lab.example.test"))
        .unwrap();
    store
        .add_mailbox(Mailbox::new("starling", "s2@lab.example.test"))
        .unwrap();
    let v = json(
        &host,
        &format!("{SNAPIN}ConvertTo-Json -InputObject @(Get-Mailbox -Identity 'star*').Count"),
    )
    .await;
    assert_eq!(v, 2);
    let guid = store.mailbox("s1@lab.example.test").unwrap().guid;
    let out = run(
        &host,
        &format!(
            "{SNAPIN}Set-CASMailbox -Identity 'star*' -OWAEnabled $false -ErrorAction SilentlyContinue\nSet-CASMailbox -Identity {} -OWAEnabled $false",
            q(&guid.to_string())
        ),
    )
    .await;
    assert_eq!((out.exit_code, out.stderr.as_str()), (0, ""));
    assert!(
        !store
            .mailbox("s1@lab.example.test")
            .unwrap()
            .cas
            .owa_enabled
    );
    assert!(
        store
            .mailbox("s2@lab.example.test")
            .unwrap()
            .cas
            .owa_enabled
    );
}
