//! The section "Mailbox scripts (exch-mailbox)" of `docs/powershell-subset.md` shows the exact
//! scripts `exch_mailbox::script` generates; this test fails when they drift.
//! `EXCH_REVOKE_UPDATE_DOCS=1 cargo test -p exch-mailbox --test docs_in_sync` rewrites the
//! blocks that follow `<!-- mailbox-script: NAME -->` markers (and nothing else).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use exch_mailbox::{script, CasChange, CasProtocol, CasSettings, MailboxId, RuleAction, WipeMode};

fn generated(name: &str) -> String {
    let bob = MailboxId::new("bob@corp.example").unwrap();
    let device =
        "corp.example/Users/bob/ExchangeActiveSyncDevices/iPhone\u{a7}ApplF17XQ1".to_owned();
    let ids = ["ApplF17XQ1".to_owned(), "SEC1A2B3C".to_owned()];
    match name {
        "read_cas" => script::read_cas(&MailboxId::new("o'brien@corp.example").unwrap()),
        "write_cas" => script::write_cas(&bob, &CasChange::lockdown().values()),
        "restore_cas" => script::write_cas(
            &bob,
            &CasSettings::all(true)
                .with(CasProtocol::Ews, None)
                .restore_values(),
        ),
        "list_devices" => script::list_devices(&bob),
        "wipe_devices" => script::wipe_devices(&bob, &[device], WipeMode::AccountOnly),
        "block_devices" => script::block_devices(&bob, &ids),
        "set_blocked_devices" => script::set_blocked_devices(&bob, &ids[..1]),
        "read_forwarding" => script::read_forwarding(&bob),
        "remove_forwarding" => script::remove_forwarding(&bob),
        "change_inbox_rules" => script::change_inbox_rules(
            &bob,
            &["corp.example/Users/bob\\17293822569102704641".to_owned()],
            RuleAction::Disable,
        ),
        other => panic!("docs/powershell-subset.md names an unknown mailbox script `{other}`"),
    }
}

/// Replaces the body of every ```powershell block that follows a `<!-- mailbox-script: NAME -->`
/// marker with the generated script; returns the new text and the names seen.
fn render(doc: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(doc.len());
    let mut names = Vec::new();
    let mut lines = doc.split_inclusive('\n');
    while let Some(line) = lines.next() {
        out.push_str(line);
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- mailbox-script: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap();
        assert_eq!(
            fence.trim(),
            "```powershell",
            "a fence follows the {name} marker"
        );
        out.push_str(fence);
        for body in lines.by_ref() {
            if body.trim() == "```" {
                out.push_str(&generated(name));
                out.push_str(body);
                break;
            }
        }
        names.push(name.to_owned());
    }
    (out, names)
}

#[test]
fn documented_scripts_match_the_generated_ones() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/powershell-subset.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (rendered, names) = render(&doc);
    assert_eq!(
        names,
        [
            "read_cas",
            "write_cas",
            "restore_cas",
            "list_devices",
            "wipe_devices",
            "block_devices",
            "set_blocked_devices",
            "read_forwarding",
            "remove_forwarding",
            "change_inbox_rules",
        ],
        "every generated script is documented once"
    );
    if std::env::var_os("EXCH_REVOKE_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    assert!(
        rendered == doc,
        "docs/powershell-subset.md is out of date with exch_mailbox::script; run \
         EXCH_REVOKE_UPDATE_DOCS=1 cargo test -p exch-mailbox --test docs_in_sync"
    );
}
