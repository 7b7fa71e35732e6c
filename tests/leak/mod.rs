//! Shared by `tests/secrets.rs` and the command-line tool's `crates/exch-revoke-cli/tests/secrets.rs`:
//! every form in which a password could leak, and the search for them in outputs.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// The forms searched for each password (names as in RELIABILITY.md); every one is
/// searched, and [`assert_no_leak`] counts the searches.
pub const FORMS: [&str; 16] = [
    "plain",
    "base64 (offset 0 mod 3)",
    "base64 (offset 1 mod 3)",
    "base64 (offset 2 mod 3)",
    "UTF-16LE base64 (offset 0 mod 3)",
    "UTF-16LE base64 (offset 1 mod 3)",
    "UTF-16LE base64 (offset 2 mod 3)",
    "unicodePwd base64",
    "percent-encoded, upper-case hex",
    "percent-encoded, lower-case hex",
    "hex, lower case",
    "hex, upper case",
    "UTF-16LE hex, lower case",
    "UTF-16LE hex, upper case",
    "XML-escaped",
    "JSON-escaped",
];

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// The base64 characters that `bytes` produce wherever they sit in a larger blob that starts
/// `offset` bytes earlier (mod 3): the characters of the groups made of `bytes` alone. A
/// password inside an `-EncodedCommand` body or a Basic header is found at any alignment.
fn base64_inside(bytes: &[u8], offset: usize) -> String {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(bytes);
    let enc = B64.encode(&padded);
    let first = offset.div_ceil(3) * 4;
    let last = (padded.len() / 3) * 4;
    enc[first..last].to_owned()
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Every form of `pw` that could plausibly leak (see [`FORMS`]); `users` are the names it is
/// used with (for `user:pw` in Basic headers, on top of the base64 alignments).
pub fn forms(pw: &str, users: &[&str]) -> Vec<(String, String)> {
    let mut f = vec![("plain".to_owned(), pw.to_owned())];
    for k in 0..3 {
        f.push((
            format!("base64 (offset {k} mod 3)"),
            base64_inside(pw.as_bytes(), k),
        ));
    }
    for k in 0..3 {
        f.push((
            format!("UTF-16LE base64 (offset {k} mod 3)"),
            base64_inside(&utf16(pw), k),
        ));
    }
    f.extend([
        (
            "unicodePwd base64".to_owned(),
            B64.encode(utf16(&format!("\"{pw}\""))),
        ),
        (
            "percent-encoded, upper-case hex".to_owned(),
            url_encode(pw, true),
        ),
        (
            "percent-encoded, lower-case hex".to_owned(),
            url_encode(pw, false),
        ),
        ("hex, lower case".to_owned(), hex(pw.as_bytes(), false)),
        ("hex, upper case".to_owned(), hex(pw.as_bytes(), true)),
        (
            "UTF-16LE hex, lower case".to_owned(),
            hex(&utf16(pw), false),
        ),
        ("UTF-16LE hex, upper case".to_owned(), hex(&utf16(pw), true)),
        ("XML-escaped".to_owned(), xml_escape(pw)),
        (
            "JSON-escaped".to_owned(),
            serde_json::to_string(pw).unwrap(),
        ),
    ]);
    assert_eq!(
        f.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        FORMS,
        "the forms searched are the forms listed"
    );
    for u in users {
        f.push((format!("Basic {u}:pw"), B64.encode(format!("{u}:{pw}"))));
    }
    f
}

fn url_encode(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ if upper => format!("%{b:02X}"),
            _ => format!("%{b:02x}"),
        })
        .collect()
}

/// Panics naming the first leak of any password in any text; returns the number of
/// (password, form, output) searches made.
pub fn assert_no_leak(texts: &[(&str, &str)], passwords: &[(&str, &str)], users: &[&str]) -> usize {
    let mut checked = 0;
    for (pw_name, pw) in passwords {
        assert!(pw.len() >= 12, "{pw_name}: too short to search for");
        for (form, needle) in forms(pw, users) {
            assert!(needle.len() >= 8, "{pw_name}: {form} needle too short");
            for (what, text) in texts {
                checked += 1;
                assert!(
                    !text.contains(&needle),
                    "{pw_name} leaked ({form}) in {what}:\n{}",
                    excerpt(text, &needle)
                );
            }
        }
    }
    assert_eq!(
        checked,
        passwords.len() * (FORMS.len() + users.len()) * texts.len()
    );
    checked
}

fn excerpt(text: &str, needle: &str) -> String {
    let i = text.find(needle).unwrap_or(0);
    let start = text[..i]
        .char_indices()
        .rev()
        .nth(300)
        .map_or(0, |(j, _)| j);
    text[start..(i + needle.len() + 100).min(text.len())].to_owned()
}
