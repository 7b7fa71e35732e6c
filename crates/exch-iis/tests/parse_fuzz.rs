//! The JSON that the scripts print comes back from the server: untrusted. `parse::*` under
//! arbitrary strings, JSON-ish soup, 100 000-deep nesting and 1 MiB inputs: an error or a
//! value, never a panic, and quickly. PROPTEST_CASES raises the case count (default 512).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use exch_iis::{parse, FlushMethod};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

/// Every parser on `stdout`; how long they took together. Errors carry at most a bounded
/// excerpt of the input.
fn parse_all(stdout: &str) -> Duration {
    let t = Instant::now();
    let recycle = FlushMethod::RecycleCatalogPools;
    let reset = FlushMethod::IisReset { force: false };
    let errors = [
        parse::pool_list("EX01", stdout).err(),
        parse::recycle_report("EX01", &recycle, stdout).err(),
        parse::reset_report("EX01", &reset, stdout).err(),
        parse::token_ttl("EX01", stdout).err(),
    ];
    for e in errors.into_iter().flatten() {
        let msg = e.to_string();
        assert!(
            msg.len() < 4096,
            "error of {} bytes: {}",
            msg.len(),
            msg.chars().take(300).collect::<String>()
        );
        assert!(msg.contains("EX01"), "{msg}");
    }
    t.elapsed()
}

fn jsonish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\"pools\"".to_owned()),
        Just("\"name\"".to_owned()),
        Just("\"MSExchangeOWAAppPool\"".to_owned()),
        Just("\"state\"".to_owned()),
        Just("\"Started\"".to_owned()),
        Just("\"workers\"".to_owned()),
        Just("\"pid\"".to_owned()),
        Just("\"started\"".to_owned()),
        Just("\"2026-01-01T00:00:00Z\"".to_owned()),
        Just("\"UserTokenTTL\"".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1e999".to_owned()),
        Just("null".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn parsers_never_panic(stdout in prop_oneof![any::<String>(), jsonish()]) {
        // A loose per-case ceiling (debug build, loaded machine); super-linear blowups are
        // what `deep_and_large_json` bounds.
        prop_assert!(parse_all(&stdout) < Duration::from_secs(10));
    }
}

#[test]
fn deep_and_large_json() {
    let n = 100_000;
    let pools = |inner: &str| format!("{{\"pools\":[{inner}]}}");
    for (what, s) in [
        ("100k [", "[".repeat(n)),
        ("100k [ ]", format!("{}{}", "[".repeat(n), "]".repeat(n))),
        ("100k {\"a\":", "{\"a\":".repeat(n)),
        ("deep inside pools", pools(&"[".repeat(n))),
        ("1 MiB string", format!("\"{}\"", "a".repeat(1 << 20))),
        (
            "1 MiB pool name",
            pools(&format!(
                "{{\"name\":\"{}\",\"state\":\"Started\",\"workers\":[]}}",
                "a".repeat(1 << 20)
            )),
        ),
        (
            "50k pools",
            pools(&vec!["{\"name\":\"P\",\"state\":\"Started\",\"workers\":[]}"; 50_000].join(",")),
        ),
        ("1 MiB of digits", "9".repeat(1 << 20)),
    ] {
        // Linear work on 1 MiB takes well under a second; a quadratic one, hours.
        let took = parse_all(&s);
        assert!(took < Duration::from_secs(30), "{what}: {took:?}");
    }
}
