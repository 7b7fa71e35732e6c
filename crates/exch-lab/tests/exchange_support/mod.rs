//! Shared by the `exchange_*` tests: a lab server with a seeded mailbox store, scripts run
//! through the interpreter after tree-sitter-powershell has parsed them, quoting.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;

use exch_core::ExchangeVersion;
use exch_directory::InMemoryDirectory;
use exch_lab::clock::LabClock;
use exch_lab::mailbox::{Forwarding, InboxRule, Mailbox, MailboxStore, MobileDevice};
use exch_lab::model::{IisServer, IisTiming};
use exch_lab::ps::{run_script, ScriptOutput};
use tree_sitter::{Node, Parser};

/// Loads the Exchange snap-in (2013 and later).
pub const SNAPIN: &str = "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn\n";

/// The domain controller the store names in its errors.
pub const DC: &str = "dc01.lab.example.test";

pub const EX2019: ExchangeVersion = ExchangeVersion::new(15, 2, 1258);
pub const EX2016: ExchangeVersion = ExchangeVersion::new(15, 1, 2507);
pub const EX2013: ExchangeVersion = ExchangeVersion::new(15, 0, 1497);
pub const EX2010: ExchangeVersion = ExchangeVersion::new(14, 3, 123);

/// A server `EX1` of `version` on a frozen clock, with a store of its own.
pub fn lab(version: ExchangeVersion) -> IisServer {
    IisServer::new(
        "EX1",
        version,
        Arc::new(InMemoryDirectory::new()),
        LabClock::frozen(),
        None,
        IisTiming::default(),
    )
}

/// `bob` (two devices, outside forwarding, a forwarding rule and a harmless one) and
/// `alice` (nothing).
pub fn seed(store: &MailboxStore) {
    store
        .add_mailbox(Mailbox::new("bob", "bob@lab.example.test").display_name("Bob Smith"))
        .unwrap();
    store
        .add_mailbox(Mailbox::new("alice", "alice@lab.example.test"))
        .unwrap();
    store
        .add_device(
            "bob",
            MobileDevice::new("ApplF17XQ1", "iPhone")
                .model("iPhone 15")
                .friendly_name("Bob's phone"),
        )
        .unwrap();
    store
        .add_device("bob", MobileDevice::new("SEC1A2B3C", "SAMSUNGSMG991B"))
        .unwrap();
    store
        .set_forwarding("bob", Forwarding::to_smtp("drop@evil.example", true))
        .unwrap();
    store
        .add_inbox_rule(
            "bob",
            InboxRule::new("Forward everything")
                .forward_to(["drop@evil.example"])
                .rule_identity(17_293_822_569_102_704_641),
        )
        .unwrap();
    store
        .add_inbox_rule("bob", InboxRule::new("Newsletters").move_to_folder("News"))
        .unwrap();
}

/// A single-quoted PowerShell literal: every single-quote character (`'` and U+2018–U+201B)
/// doubled.
pub fn q(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn problems(node: Node<'_>, src: &str, out: &mut Vec<String>) {
    if node.is_error() || node.is_missing() {
        out.push(format!(
            "{} at {:?}: {:?}",
            node.kind(),
            node.start_position(),
            src[node.byte_range()].chars().take(80).collect::<String>()
        ));
    }
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        problems(child, src, out);
    }
}

/// Panics unless tree-sitter-powershell parses `src` without ERROR / MISSING nodes.
pub fn assert_parses(src: &str) {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .unwrap();
    let tree = parser.parse(src, None).unwrap();
    let mut found = Vec::new();
    problems(tree.root_node(), src, &mut found);
    assert!(
        found.is_empty() && !tree.root_node().has_error(),
        "not valid PowerShell: {found:#?}\n---\n{src}"
    );
}

/// Runs `script` (which must parse as real PowerShell) on `host`.
pub async fn run(host: &IisServer, script: &str) -> ScriptOutput {
    assert_parses(script);
    run_script(host, script).await
}

/// Runs `script`, which must succeed quietly and print one JSON document.
pub async fn json(host: &IisServer, script: &str) -> serde_json::Value {
    let out = run(host, script).await;
    assert_eq!(out.exit_code, 0, "stderr: {}\n---\n{script}", out.stderr);
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    serde_json::from_str(out.stdout.trim_end()).unwrap()
}

/// Runs `script`, which must fail; returns its stderr.
pub async fn fails(host: &IisServer, script: &str) -> String {
    let out = run(host, script).await;
    assert_eq!(out.exit_code, 1, "stdout: {}\n---\n{script}", out.stdout);
    out.stderr
}
