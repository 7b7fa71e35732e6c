//! Every generated script parses under tree-sitter-powershell without ERROR / MISSING nodes,
//! and pool names either are refused by `AppPool::new` or come back out of the script unchanged.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use exch_core::AppPool;
use exch_iis::{catalog, script};
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
        let text = &src[node.byte_range()];
        out.push(format!(
            "{} at {:?}: {:?}",
            node.kind(),
            node.start_position(),
            text.chars().take(80).collect::<String>()
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

fn verbatim_literals(node: Node<'_>, src: &str, out: &mut Vec<String>) {
    if node.kind() == "verbatim_string_characters" {
        out.push(src[node.byte_range()].to_string());
    }
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        verbatim_literals(child, src, out);
    }
}

/// The pool literals of a recycle script: the string literals inside the `foreach ($want in
/// @(...))` array, unquoted the way PowerShell reads them.
fn pool_literals(src: &str) -> Vec<String> {
    let line = src
        .lines()
        .find(|l| l.starts_with("foreach ($want in @("))
        .expect("the pool list line");
    let tree = parse(line);
    let mut lits = Vec::new();
    verbatim_literals(tree.root_node(), line, &mut lits);
    lits.iter()
        .map(|l| script::ps_unquote(l).expect("a well-formed literal"))
        .collect()
}

fn all_pools() -> Vec<AppPool> {
    [
        catalog::PoolSet::Exchange2007,
        catalog::PoolSet::Exchange2010,
        catalog::PoolSet::Exchange2013Plus,
    ]
    .into_iter()
    .flat_map(catalog::entries)
    .map(|e| e.pool)
    .collect()
}

#[test]
fn every_script_parses() {
    let pools = all_pools();
    let scripts = [
        script::list_pools(),
        script::recycle_pools(&pools),
        script::recycle_pools(&pools[..1]),
        script::iis_reset(false),
        script::iis_reset(true),
        script::read_token_ttl(),
        script::set_token_ttl(0),
        script::set_token_ttl(600),
        script::set_token_ttl(u32::MAX),
    ];
    for s in &scripts {
        assert_parses(s);
    }
}

#[test]
fn the_checker_sees_syntax_errors() {
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
fn catalog_names_round_trip() {
    let pools = all_pools();
    let got = pool_literals(&script::recycle_pools(&pools));
    let want: Vec<String> = pools.iter().map(|p| p.to_string()).collect();
    assert_eq!(got, want);
}

#[test]
fn quoted_strings_parse_and_round_trip() {
    for s in [
        "",
        "a'b",
        "''",
        "x\u{2019}y",
        "\u{2018}",
        "$env:x `n",
        "a\"b",
    ] {
        let src = format!("$x = {}\n", script::ps_quote(s));
        assert_parses(&src);
        let tree = parse(&src);
        let mut lits = Vec::new();
        verbatim_literals(tree.root_node(), &src, &mut lits);
        assert_eq!(lits.len(), 1, "{src}");
        assert_eq!(script::ps_unquote(&lits[0]).as_deref(), Some(s));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pool_names_are_refused_or_round_trip(name in prop_oneof![
        "\\PC{0,70}",
        "[A-Za-z0-9 ._()'$`;|&\u{2018}\u{2019}\u{201A}\u{201B}\"-]{1,70}",
    ]) {
        if let Ok(pool) = AppPool::new(name.clone()) {
            let src = script::recycle_pools(std::slice::from_ref(&pool));
            assert_parses(&src);
            prop_assert_eq!(pool_literals(&src), vec![name]);
        }
    }

    #[test]
    fn any_string_quotes_into_one_literal(s in "\\PC{0,40}") {
        let src = format!("$x = {}\n", script::ps_quote(&s));
        let tree = parse(&src);
        let mut lits = Vec::new();
        verbatim_literals(tree.root_node(), &src, &mut lits);
        prop_assert_eq!(lits.len(), 1);
        prop_assert_eq!(script::ps_unquote(&lits[0]), Some(s));
    }
}
