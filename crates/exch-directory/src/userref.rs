//! `UserRef::parse`.
//!
//! Policy for hostile or surprising identifiers (see RELIABILITY.md, "Hostile input"):
//! - nothing is normalised: no trimming, no Unicode normalisation, no width or look-alike
//!   folding. The identifier names exactly one spelling; the backends then keep only the
//!   entries whose name equals it (ignoring case), whatever looser comparison the server uses.
//! - refused with an error naming the input: empty, longer than 1024 bytes, control
//!   characters (NUL, newline, …), leading or trailing whitespace, more than one `@`, a
//!   `DOMAIN\user` with extra backslashes, a DN that does not parse, sAMAccountName rules.
//! - identifiers that mix Latin, Greek and Cyrillic letters or use fullwidth or letter-like
//!   symbols are accepted (they can only match an account spelled the same way) but logged
//!   as a warning: they are a classic way to make a target look like someone else.

use super::{Dn, UserRef};
use crate::escape::parse_dn;
use crate::DirectoryError;

const MAX_LEN: usize = 1024;

pub(super) fn parse(input: &str) -> Result<UserRef, DirectoryError> {
    let bad = |reason: &str| DirectoryError::InvalidInput {
        what: format!("user {:?}", truncate(input)),
        reason: reason.to_owned(),
    };
    let s = input;
    if s.trim().is_empty() {
        return Err(bad(
            "empty; give a UPN (bob@corp.example), DOMAIN\\user, a sAMAccountName or a DN",
        ));
    }
    if s.len() > MAX_LEN {
        return Err(bad(&format!("longer than {MAX_LEN} bytes ({})", s.len())));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(bad("contains control characters (NUL, newline, …)"));
    }
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        // Directories ignore leading and trailing spaces when they compare names, so
        // " bob" and "bob " would be the same search; refuse instead of guessing.
        return Err(bad(
            "starts or ends with whitespace; remove it (an account whose name really \
             starts or ends with a space can be named by its DN, with the space escaped)",
        ));
    }
    if let Some(reason) = look_alike(s) {
        tracing::warn!(user = %s, "user identifier {reason}; only an account spelled exactly so will match");
    }
    if looks_like_dn(s) {
        parse_dn(s)?;
        return Ok(UserRef::Dn(Dn(s.to_owned())));
    }
    if let Some((domain, sam)) = s.split_once('\\') {
        if domain.is_empty() || sam.is_empty() || sam.contains('\\') {
            return Err(bad("expected DOMAIN\\user (exactly one backslash)"));
        }
        check_sam(sam).map_err(bad)?;
        return Ok(UserRef::DownLevel {
            domain: domain.to_owned(),
            sam: sam.to_owned(),
        });
    }
    if let Some((local, suffix)) = s.rsplit_once('@') {
        if local.is_empty() || suffix.is_empty() {
            return Err(bad("expected user@upn.suffix"));
        }
        if local.contains('@') {
            return Err(bad(
                "contains more than one '@'; a UPN is user@upn.suffix (use the DN for an \
                 account whose UPN really has two)",
            ));
        }
        return Ok(UserRef::Upn(s.to_owned()));
    }
    check_sam(s).map_err(bad)?;
    Ok(UserRef::Sam(s.to_owned()))
}

/// sAMAccountName rules: at most 20 characters, none of `" / \ [ ] : ; | = , + * ? < >`.
fn check_sam(s: &str) -> Result<(), &'static str> {
    if s.chars().count() > 20 {
        return Err("sAMAccountName is longer than 20 characters; use the UPN or the DN");
    }
    if s.contains([
        '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>',
    ]) {
        return Err("sAMAccountName contains one of \" / \\ [ ] : ; | = , + * ? < >");
    }
    Ok(())
}

fn looks_like_dn(s: &str) -> bool {
    let Some((attr, _)) = s.split_once('=') else {
        return false;
    };
    let attr = attr.trim();
    !attr.is_empty()
        && attr.len() <= 32
        && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && s.contains(',')
}

fn truncate(s: &str) -> String {
    let t: String = s.chars().take(80).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// Why `s` may be a look-alike of another name, if it may: letters from more than one of
/// Latin, Greek and Cyrillic, or fullwidth / letter-like compatibility characters (`ｂｏｂ`,
/// the Kelvin sign `K`).
pub(crate) fn look_alike(s: &str) -> Option<&'static str> {
    let (mut latin, mut greek, mut cyrillic) = (false, false, false);
    for c in s.chars() {
        match c as u32 {
            0xFF00..=0xFFEF => return Some("contains fullwidth or halfwidth forms"),
            0x2100..=0x214F => return Some("contains letter-like symbols (e.g. the Kelvin sign)"),
            0x1D400..=0x1D7FF => return Some("contains mathematical alphanumeric symbols"),
            0x0041..=0x005A | 0x0061..=0x007A | 0x00C0..=0x024F | 0x1E00..=0x1EFF => latin = true,
            0x0370..=0x03FF | 0x1F00..=0x1FFF => greek = true,
            0x0400..=0x052F => cyrillic = true,
            _ => {}
        }
    }
    (u8::from(latin) + u8::from(greek) + u8::from(cyrillic) > 1)
        .then_some("mixes Latin, Greek or Cyrillic letters")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        match parse(s) {
            Ok(u) => panic!("{s:?} parsed as {u:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn hostile_forms_are_refused_naming_the_input() {
        for (input, needle) in [
            ("", "empty"),
            ("   ", "empty"),
            (" bob", "whitespace"),
            ("bob ", "whitespace"),
            ("bob\u{a0}", "whitespace"),
            ("bo\0b", "control"),
            ("bob\n", "control"),
            ("a@b@corp.example", "more than one '@'"),
            ("CORP\\\\bob", "exactly one backslash"),
            ("\\bob", "exactly one backslash"),
            ("CORP\\bob\\", "exactly one backslash"),
            ("CORP\\b*b", "sAMAccountName contains"),
            ("b*b", "sAMAccountName contains"),
            ("*", "sAMAccountName contains"),
            ("bob)(cn=*", "sAMAccountName contains"),
            ("CN=a\"b,DC=x", "invalid DN"),
            ("CN=a,DC=x\\", "invalid DN"),
        ] {
            let e = err(input);
            assert!(e.contains(needle), "{input:?}: {e}");
            let shown = format!("{:?}", input.chars().take(20).collect::<String>());
            let shown = shown.trim_end_matches('"');
            assert!(
                e.contains(shown),
                "{input:?}: error does not name the input: {e}"
            );
        }
        let long = "a".repeat(64 * 1024);
        let e = err(&format!("{long}@corp.example"));
        assert!(
            e.contains("longer than 1024 bytes") && e.contains("aaaa"),
            "{e}"
        );
        assert!(
            e.len() < 400,
            "error echoes the whole input: {} bytes",
            e.len()
        );
    }

    #[test]
    fn exact_forms_are_kept_verbatim() {
        assert_eq!(
            parse("o'brien@corp.example").unwrap(),
            UserRef::Upn("o'brien@corp.example".into())
        );
        assert_eq!(parse("#bob").unwrap(), UserRef::Sam("#bob".into()));
        assert_eq!(
            parse("b*b@corp.example").unwrap(),
            UserRef::Upn("b*b@corp.example".into())
        );
        assert_eq!(parse("bоb").unwrap(), UserRef::Sam("bоb".into()));
        assert_eq!(
            parse(r"CN=\ bob,CN=Users,DC=x").unwrap(),
            UserRef::Dn(Dn(r"CN=\ bob,CN=Users,DC=x".into()))
        );
    }

    #[test]
    fn look_alikes_are_flagged() {
        assert_eq!(look_alike("bob"), None);
        assert_eq!(look_alike("jörg.müller"), None);
        assert_eq!(look_alike("иван"), None);
        assert!(look_alike("bоb").is_some(), "Cyrillic о in a Latin name");
        assert!(look_alike("ｂｏｂ").is_some());
        assert!(look_alike("\u{212a}im").is_some());
        assert!(look_alike("αlice").is_some());
    }
}
