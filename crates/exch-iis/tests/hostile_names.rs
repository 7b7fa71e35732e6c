//! Hostile names on their way into PowerShell scripts and URLs: pool names and arbitrary
//! strings (PowerShell metacharacters, curly quotes, newlines, NUL) are refused or end up
//! inside one verbatim literal that PowerShell reads back unchanged (checked with
//! tree-sitter-powershell); server FQDNs (from the directory, so untrusted) with URL
//! metacharacters are refused, naming the server, before any connection is made.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use exch_core::{check_host_name, AppPool, ExchangeServer};
use exch_iis::{script, CacheFlusher, IisError, WinRmFlusher};
use proptest::prelude::*;
use secrecy::SecretString;
use tree_sitter::{Node, Parser, Tree};

fn parse(src: &str) -> Tree {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .unwrap();
    parser.parse(src, None).unwrap()
}

/// Every node kind of the tree, with the text of verbatim literals.
fn walk(node: Node<'_>, src: &str, kinds: &mut Vec<String>, lits: &mut Vec<String>) {
    kinds.push(node.kind().to_owned());
    if node.is_error() || node.is_missing() {
        kinds.push("PROBLEM".into());
    }
    if node.kind() == "verbatim_string_characters" {
        lits.push(src[node.byte_range()].to_owned());
    }
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        walk(child, src, kinds, lits);
    }
}

/// `$x = <ps_quote(s)>` parses to the very tree of `$x = 'a'` (one assignment of one
/// verbatim literal: no sub-expression, command, pipeline or syntax error), and the literal
/// reads back as `s`.
fn assert_one_literal(s: &str) -> Result<(), TestCaseError> {
    let src = format!("$x = {}\n", script::ps_quote(s));
    let tree = parse(&src);
    let (mut kinds, mut lits) = (Vec::new(), Vec::new());
    walk(tree.root_node(), &src, &mut kinds, &mut lits);
    prop_assert!(!tree.root_node().has_error(), "{src:?}");
    // The same tree, node for node, as `$x = 'a'`.
    let (mut want, mut _l) = (Vec::new(), Vec::new());
    walk(
        parse("$x = 'a'\n").root_node(),
        "$x = 'a'\n",
        &mut want,
        &mut _l,
    );
    prop_assert_eq!(&kinds, &want, "{:?}", src);
    prop_assert_eq!(lits.len(), 1, "{:?}", src);
    let back = script::ps_unquote(&lits[0]);
    prop_assert_eq!(back.as_deref(), Some(s));
    Ok(())
}

/// PowerShell and URL metacharacters, curly quotes, controls.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z$();&|`\"' \u{2018}\u{2019}\u{201A}\u{201B}\u{201C}\u{201D}\u{201E}\n\r\t\0#<>@{}/?:%\\[\\]-]{0,24}",
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn any_string_is_one_verbatim_literal(s in hostile().prop_filter("NUL", |s| !s.contains('\0'))) {
        assert_one_literal(&s)?;
    }

    #[test]
    fn pool_names_are_refused_or_quoted(name in hostile()) {
        if let Ok(pool) = AppPool::new(name.clone()) {
            let src = script::recycle_pools(std::slice::from_ref(&pool));
            prop_assert!(!parse(&src).root_node().has_error(), "{src}");
            prop_assert!(src.contains(&script::ps_quote(&name)));
            assert_one_literal(&name)?;
        }
    }

    /// A host that passes the check cannot change what a URL built from it points to:
    /// the authority of `http://{host}:5985/wsman` is exactly `{host}:5985`.
    #[test]
    fn accepted_hosts_stay_the_host(host in hostile()) {
        if check_host_name(&host).is_ok() {
            let url = format!("http://{host}:5985/wsman");
            let rest = &url["http://".len()..];
            let end = rest.find(['/', '?', '#']).unwrap();
            prop_assert_eq!(&rest[..end], format!("{host}:5985"));
            prop_assert!(!rest[..end].contains('@'));
            prop_assert!(host.is_ascii() && !host.contains(['%', ' ', '\\']));
        }
    }
}

/// NUL cannot be carried by a script (see `ps_quote`); names that reach scripts are
/// `AppPool`s, which refuse it and every other control character.
#[test]
fn pool_names_with_controls_are_refused() {
    for c in ['\0', '\n', '\r', '\t', '\u{1b}', '\u{85}', '\u{7f}'] {
        let e = AppPool::new(format!("MSExchange{c}Pool")).unwrap_err();
        assert!(e.to_string().contains("MSExchange"), "{c:?}: {e}");
    }
}

fn flusher() -> WinRmFlusher {
    WinRmFlusher::builder()
        .credentials("LAB\\svc", SecretString::from("pw".to_owned()))
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

const BAD_FQDNS: &[&str] = &[
    "evil.example/x?",
    "a@b",
    "svc:pw@evil.example",
    "ex01:80",
    "ex01 .corp",
    "ex01\n.corp",
    "ex01\0.corp",
    "ex%2f01",
    "ex01#frag",
    "ex01?q=1",
    "[::1]@evil",
    "ex01.corp/wsman",
    "ex\u{ff0e}01",
    "",
];

#[tokio::test]
async fn hostile_fqdns_are_refused_before_connecting() {
    // A listener that any of the hostile names below would reach if it became a URL's host:
    // that nothing connected is observed here, not inferred from a short wall-clock time.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let here = listener.local_addr().unwrap();
    let aimed: Vec<String> = [
        format!("{here}"),
        format!("{here}/x?"),
        format!("svc:pw@{here}"),
        format!("{here}#"),
        format!("{here}?q=1"),
        format!("evil@{here}"),
    ]
    .into();
    let f = flusher();
    let fqdns = BAD_FQDNS
        .iter()
        .map(|s| s.to_string())
        .chain(aimed.iter().cloned());
    for fqdn in fqdns {
        let server = ExchangeServer::new("EXHOSTILE", fqdn.clone());
        let e = f.app_pools(&server).await.unwrap_err();
        assert!(
            matches!(e, IisError::InvalidInput { .. }),
            "{fqdn:?}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("EXHOSTILE"), "{fqdn:?}: {msg}");
        assert!(msg.contains("not a valid host name"), "{fqdn:?}: {msg}");
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a hostile name reached the listener at {here}"
    );
}

#[test]
fn explicit_endpoints_with_hostile_hosts_are_refused() {
    for url in [
        "http://a?b:5985/wsman",
        "http://a#b:5985/wsman",
        "http://a b:5985/wsman",
        "http://a%2fb:5985/wsman",
        "http://:5985/wsman",
    ] {
        let e = WinRmFlusher::builder()
            .credentials("LAB\\svc", SecretString::from("pw".to_owned()))
            .endpoint("EX01", url)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("EX01"), "{url}: {e}");
    }
    for url in [
        "http://127.0.0.1:5985/wsman",
        "https://[::1]:5986/wsman",
        "http://ex01.corp:1/wsman",
    ] {
        WinRmFlusher::builder()
            .credentials("LAB\\svc", SecretString::from("pw".to_owned()))
            .endpoint("EX01", url)
            .build()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}
