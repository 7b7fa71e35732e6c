//! `docs/powershell-subset.md` shows the exact scripts `exch_iis::script` generates; this test
//! fails when they drift. `EXCH_REVOKE_UPDATE_DOCS=1 cargo test -p exch-iis --test docs_in_sync`
//! rewrites the blocks.
#![allow(clippy::unwrap_used)]

use exch_core::AppPool;
use exch_iis::script;
use std::path::PathBuf;

fn generated(name: &str) -> String {
    match name {
        "list_pools" => script::list_pools(),
        "recycle_pools" => script::recycle_pools(&[
            AppPool::new("MSExchangeOWAAppPool").unwrap(),
            AppPool::new("MSExchangeSyncAppPool").unwrap(),
        ]),
        "iis_reset" => script::iis_reset(false),
        "read_token_ttl" => script::read_token_ttl(),
        "set_token_ttl" => script::set_token_ttl(60),
        other => panic!("docs/powershell-subset.md names an unknown script `{other}`"),
    }
}

/// Replaces the body of every ```powershell block that follows a `<!-- script: NAME -->` marker
/// with the generated script; returns the new text and the names seen.
fn render(doc: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(doc.len());
    let mut names = Vec::new();
    let mut lines = doc.split_inclusive('\n');
    while let Some(line) = lines.next() {
        out.push_str(line);
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- script: ")
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
            "list_pools",
            "recycle_pools",
            "iis_reset",
            "read_token_ttl",
            "set_token_ttl"
        ],
        "every generated script is documented once"
    );
    if std::env::var_os("EXCH_REVOKE_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    assert!(
        rendered == doc,
        "docs/powershell-subset.md is out of date with exch_iis::script; run \
         EXCH_REVOKE_UPDATE_DOCS=1 cargo test -p exch-iis --test docs_in_sync"
    );
}
