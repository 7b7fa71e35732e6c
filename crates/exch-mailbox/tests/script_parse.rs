//! Every generated script parses under tree-sitter-powershell without ERROR / MISSING nodes;
//! its syntax tree does not depend on the values put into it (a hostile value cannot add a
//! statement, a command or an expansion: it stays one verbatim string literal); and every value
//! comes back out of its literal byte for byte.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use exch_iis::script::{command_line_len, ps_unquote, MAX_COMMAND_LINE};
use exch_mailbox::conformance::hostile_names;
use exch_mailbox::{script, CasChange, CasProtocol, CasSettings, MailboxId, RuleAction, WipeMode};
use proptest::prelude::*;
use tree_sitter::{Node, Parser, Tree};

fn parse(src: &str) -> Tree {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .expect("load the PowerShell grammar");
    parser.parse(src, None).expect("parse")
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

fn assert_parses(src: &str) {
    let tree = parse(src);
    let mut found = Vec::new();
    problems(tree.root_node(), src, &mut found);
    assert!(
        found.is_empty() && !tree.root_node().has_error(),
        "{found:#?}\n---\n{src}"
    );
}

/// The tree's node kinds in pre-order: its shape, without any text.
fn shape(node: Node<'_>, out: &mut Vec<&'static str>) {
    out.push(node.kind());
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        shape(child, out);
    }
}

fn shape_of(src: &str) -> Vec<&'static str> {
    let tree = parse(src);
    let mut out = Vec::new();
    shape(tree.root_node(), &mut out);
    out
}

/// Every single-quoted literal of the script, as PowerShell reads it.
fn literals(src: &str) -> Vec<String> {
    fn walk(node: Node<'_>, src: &str, out: &mut Vec<String>) {
        if node.kind() == "verbatim_string_characters" {
            out.push(ps_unquote(&src[node.byte_range()]).expect("a well-formed literal"));
        }
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            walk(child, src, out);
        }
    }
    let tree = parse(src);
    let mut out = Vec::new();
    walk(tree.root_node(), src, &mut out);
    out
}

/// Every generator with mailbox `mb` and item list `items` (one or more).
fn scripts(mb: &str, items: &[String]) -> Vec<(&'static str, String)> {
    let mb = MailboxId::new(mb).unwrap();
    vec![
        ("read_cas", script::read_cas(&mb)),
        (
            "write_cas lockdown",
            script::write_cas(&mb, &CasChange::lockdown().values()),
        ),
        (
            "write_cas restore",
            script::write_cas(
                &mb,
                &CasSettings::all(true)
                    .with(CasProtocol::Ews, None)
                    .restore_values(),
            ),
        ),
        ("list_devices", script::list_devices(&mb)),
        (
            "wipe account-only",
            script::wipe_devices(&mb, items, WipeMode::AccountOnly),
        ),
        (
            "wipe full",
            script::wipe_devices(&mb, items, WipeMode::Full),
        ),
        ("block_devices", script::block_devices(&mb, items)),
        (
            "set_blocked_devices",
            script::set_blocked_devices(&mb, items),
        ),
        (
            "set_blocked_devices none",
            script::set_blocked_devices(&mb, &[]),
        ),
        ("read_forwarding", script::read_forwarding(&mb)),
        ("remove_forwarding", script::remove_forwarding(&mb)),
        (
            "disable rules",
            script::change_inbox_rules(&mb, items, RuleAction::Disable),
        ),
        (
            "remove rules",
            script::change_inbox_rules(&mb, items, RuleAction::Remove),
        ),
    ]
}

fn assert_values_are_data(mb: &str, items: &[String]) {
    let benign: Vec<String> = items.iter().map(|_| "x".to_owned()).collect();
    for ((name, hostile), (_, plain)) in scripts(mb, items).into_iter().zip(scripts("bob", &benign))
    {
        assert_parses(&hostile);
        assert_eq!(
            shape_of(&hostile),
            shape_of(&plain),
            "{name}: the values changed the syntax tree\n{hostile}"
        );
        let lits = literals(&hostile);
        if !name.starts_with("set_blocked_devices none") {
            assert!(lits.iter().any(|l| l == mb), "{name}: the mailbox literal");
        }
        for item in items {
            if name.contains("cas")
                || name.contains("list")
                || name.contains("forwarding")
                || name.ends_with("none")
            {
                continue;
            }
            assert!(
                lits.contains(item),
                "{name}: {item:?} is not one literal of {lits:?}"
            );
        }
    }
}

#[test]
fn every_script_parses_with_plain_values() {
    for (_, s) in scripts("bob@corp.example", &["a".to_owned(), "b".to_owned()]) {
        assert_parses(&s);
    }
}

#[test]
fn hostile_values_stay_data() {
    let names = hostile_names();
    for mb in &names {
        assert_values_are_data(mb, &names);
        assert_values_are_data(mb, &names[..1]);
    }
}

#[test]
fn the_checker_sees_injection() {
    // What the shape comparison catches: a value pasted in without quoting.
    let plain = "Get-CASMailbox -Identity 'x'\n";
    let pasted =
        "Get-CASMailbox -Identity 'x'; Set-CASMailbox -Identity canary -OWAEnabled $false\n";
    assert_ne!(shape_of(plain), shape_of(pasted));
    for bad in [
        "foreach ($x in @(1) {",
        "$x = 'unterminated",
        "if ($a -eq) { }",
    ] {
        let tree = parse(bad);
        let mut found = Vec::new();
        problems(tree.root_node(), bad, &mut found);
        assert!(!found.is_empty() || tree.root_node().has_error(), "{bad}");
    }
}

#[test]
fn typical_requests_fit_the_command_line() {
    // Ten devices and ten rules, with identities as Exchange writes them.
    let mb = MailboxId::new("bob.smith@corp.example").unwrap();
    let devices: Vec<String> = (0..10)
        .map(|i| format!("corp.example/Users/Bob Smith/ExchangeActiveSyncDevices/REST\u{a7}Outlook\u{a7}5eec4e941e0748a264512fd83770d5a{i}"))
        .collect();
    let rules: Vec<String> = (0..10)
        .map(|i| format!("corp.example/Users/Bob Smith\\1675286947966641766{i}"))
        .collect();
    let ids: Vec<String> = (0..10)
        .map(|i| format!("5EEC4E941E0748A264512FD83770D5A{i}"))
        .collect();
    for (name, s) in [
        (
            "wipe",
            script::wipe_devices(&mb, &devices, WipeMode::AccountOnly),
        ),
        ("block", script::block_devices(&mb, &ids)),
        ("restore block", script::set_blocked_devices(&mb, &ids)),
        (
            "rules",
            script::change_inbox_rules(&mb, &rules, RuleAction::Remove),
        ),
    ] {
        let len = command_line_len(&s);
        eprintln!("{name}: {len}");
        assert!(len <= MAX_COMMAND_LINE, "{name}: {len}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_value_stays_data(
        mb in "[^\u{0}]{1,30}".prop_filter("not blank", |s| !s.trim().is_empty()),
        items in proptest::collection::vec("[^\u{0}]{1,30}", 1..4),
    ) {
        assert_values_are_data(&mb, &items);
    }
}
