//! Strings that come from the caller or the server, through the decoders of this crate:
//! AD bind diagnostics (`… data 52e …`), DNs (`parse_dn`, `same_dn`), user references. No
//! panic, bounded time on 1 MiB inputs, and a refused logon is never decoded as a success.
//! PROPTEST_CASES raises the case count (default 512).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use exch_directory::escape::{dn_canonical, parse_dn, same_dn, same_name};
use exch_directory::{decode_bind_failure, UserRef};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn decode_all(s: &str) -> Duration {
    let t = Instant::now();
    assert!(
        !decode_bind_failure(s).is_success(),
        "{s:?} decoded as a success"
    );
    // What the DN helpers compute is checked, not discarded: a DN is the same as itself
    // exactly when it parses; an unparsable one canonicalises to its lower case; a parsed one
    // to a form that parses again, names the same entry and is a fixed point.
    let parsed = parse_dn(s);
    assert_eq!(same_dn(s, s), parsed.is_ok(), "same_dn({s:?}, itself)");
    let canonical = dn_canonical(s);
    match &parsed {
        Err(e) => {
            assert_eq!(canonical, s.to_lowercase(), "{s:?}");
            assert!(
                e.to_string().len() < 1024,
                "unbounded DN error for {} bytes",
                s.len()
            );
        }
        Ok(_) => {
            assert!(
                parse_dn(&canonical).is_ok(),
                "{s:?} → {canonical:?} does not parse"
            );
            assert!(
                same_dn(s, &canonical),
                "{s:?} vs its canonical {canonical:?}"
            );
            assert_eq!(dn_canonical(&canonical), canonical, "{s:?}");
        }
    }
    if let Err(e) = UserRef::parse(s) {
        assert!(
            e.to_string().len() < 1024,
            "unbounded error for {} bytes",
            s.len()
        );
    }
    t.elapsed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn decoders_never_panic(s in prop_oneof![
        any::<String>(),
        "([0-9a-f]{8}: LdapErr: DSID-[0-9A-F]{8}, comment: [a-zA-Z ]{0,20}, data [0-9a-fA-F\\\\]{0,5}, v[0-9a-f]{0,4}){1,3}",
        "([A-Za-z]{1,3}=[^,+;]{0,6}[,+;]?){0,8}",
    ]) {
        // A loose per-case ceiling (debug build, loaded machine); super-linear blowups are
        // what `large_inputs` bounds.
        prop_assert!(decode_all(&s) < Duration::from_secs(10));
    }

    #[test]
    fn same_name_is_reflexive_and_case_blind(s in any::<String>()) {
        prop_assert!(same_name(&s, &s));
        prop_assert!(same_name(&s, &s.to_ascii_uppercase()));
        let spaced = format!("{s} ");
        prop_assert!(!same_name(&s, &spaced));
    }
}

#[test]
fn large_inputs() {
    for (what, s) in [
        ("1 MiB of 'data '", "data ".repeat(200_000)),
        ("1 MiB DN", format!("CN={},DC=x", "a".repeat(1 << 20))),
        ("100k RDNs", "CN=a,".repeat(100_000) + "DC=x"),
        ("100k escapes", "CN=".to_owned() + &"\\2c".repeat(100_000)),
        ("1 MiB of backslashes", "\\".repeat(1 << 20)),
    ] {
        // Linear work on 1 MiB takes well under a second; a quadratic one, hours.
        let took = decode_all(&s);
        assert!(took < Duration::from_secs(30), "{what}: {took:?}");
    }
}
