//! Escaping of user-supplied values for LDAP filters (RFC 4515) and DNs (RFC 4514), and a
//! small RFC 4514 DN parser.
//!
//! Every value that reaches an LDAP filter or a DN in this crate goes through
//! [`filter_value`] or [`dn_value`]. The property tests in this module prove that no input can
//! add a filter component or change the structure of a DN.
//!
//! ```
//! use exch_directory::escape::{filter_value, dn_value, parse_dn};
//!
//! assert_eq!(filter_value("*)(uid=*"), r"\2a\29\28uid=\2a");
//! let dn = format!("CN={},CN=Users,DC=corp,DC=example", dn_value("Smith, John"));
//! assert_eq!(dn, r"CN=Smith\, John,CN=Users,DC=corp,DC=example");
//! assert_eq!(parse_dn(&dn).unwrap().rdns()[0][0].1, "Smith, John");
//! ```

use std::fmt::Write as _;

use crate::DirectoryError;

/// Escapes `value` for use as an assertion value inside an LDAP filter (RFC 4515 §3):
/// `*`, `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`. Other control
/// characters are hex-escaped too, so logs show them. Everything else (including non-ASCII
/// UTF-8) is kept.
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => push_hex(&mut out, c),
            c if c.is_ascii_control() => push_hex(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `value` for use as an attribute value in a DN (RFC 4514 §2.4): `" + , ; < > \ =`
/// get a backslash, a leading `#` or space and a trailing space are escaped, control
/// characters (including NUL) become `\hh`.
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let n = value.chars().count();
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i + 1 == n => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn push_hex(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        let _ = write!(out, "\\{b:02x}");
    }
}

/// Refuses values with control characters (NUL, newline, …) before they reach a server:
/// some directories (Samba) compare strings only up to a NUL, so `bob@corp\0x` would match
/// `bob@corp` even though the filter escaped it correctly.
pub(crate) fn reject_controls(what: &str, value: &str) -> Result<(), DirectoryError> {
    if value.chars().any(char::is_control) {
        return Err(DirectoryError::InvalidInput {
            what: format!("{what} {:?}", value.chars().take(80).collect::<String>()),
            reason: "contains control characters (NUL, newline, …); remove them".into(),
        });
    }
    Ok(())
}

/// [`reject_controls`] for every part of a user reference.
pub(crate) fn check_user_ref(user: &crate::UserRef) -> Result<(), DirectoryError> {
    match user {
        crate::UserRef::Upn(v) | crate::UserRef::Sam(v) => reject_controls("user", v),
        crate::UserRef::DownLevel { domain, sam } => {
            reject_controls("domain", domain)?;
            reject_controls("user", sam)
        }
        crate::UserRef::Dn(dn) => reject_controls("DN", dn.as_str()),
    }
}

/// Whether `found`, a name the directory returned, is the very name the caller gave
/// (`wanted`): equal up to case, and nothing looser.
///
/// Directories compare names more loosely than that: Samba ignores leading, trailing and
/// repeated spaces and stops at a NUL; Active Directory also ignores character width
/// (`ｂｏｂ` = `bob`). A search can therefore return an account that the caller did not
/// name, and the backends keep only the entries for which this returns true. ASCII letters
/// compare case-insensitively with ASCII letters, other letters with other letters by their
/// Unicode lower case; a non-ASCII character never equals an ASCII one (the Kelvin sign `K`
/// is not `k`).
///
/// ```
/// use exch_directory::escape::same_name;
/// assert!(same_name("Bob", "bob"));
/// assert!(same_name("JÖRG", "jörg"));
/// assert!(!same_name("bob", "bob "));
/// assert!(!same_name("b  ob", "b ob"));
/// assert!(!same_name("bоb", "bob")); // Cyrillic о
/// assert!(!same_name("\u{212a}im", "kim"));
/// ```
pub fn same_name(wanted: &str, found: &str) -> bool {
    let (mut a, mut b) = (wanted.chars(), found.chars());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) if x.is_ascii() && y.is_ascii() => {
                if !x.eq_ignore_ascii_case(&y) {
                    return false;
                }
            }
            (Some(x), Some(y)) if !x.is_ascii() && !y.is_ascii() => {
                if !x.to_lowercase().eq(y.to_lowercase()) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Whether `found`, a DN the directory returned, names the same object as `wanted` by
/// [`same_name`] on every attribute value (attribute types ignore ASCII case, escaping and
/// optional spaces around separators are ignored). Unparsable DNs never match.
///
/// ```
/// use exch_directory::escape::same_dn;
/// assert!(same_dn("cn=Bob, cn=Users,DC=x", r"CN=bob,CN=Users,DC=x"));
/// assert!(!same_dn("CN=bob,CN=Users,DC=x", r"CN=bob\ ,CN=Users,DC=x"));
/// ```
pub fn same_dn(wanted: &str, found: &str) -> bool {
    let (Ok(a), Ok(b)) = (parse_dn(wanted), parse_dn(found)) else {
        return false;
    };
    a.rdns.len() == b.rdns.len()
        && a.rdns.iter().zip(&b.rdns).all(|(x, y)| {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ta, va), (tb, vb))| ta.eq_ignore_ascii_case(tb) && same_name(va, vb))
        })
}

/// Keeps the search results that name `user` exactly ([`same_name`] on the attribute the
/// reference is about; for a UPN, `userPrincipalName` first and `mail` only when no UPN
/// matches). `get(entry, attribute)` reads an attribute of an entry. When the server
/// returned entries but none matches exactly, the answer is [`DirectoryError::NotFound`]
/// saying so: the server's looser comparison (spaces, NUL, width) must never pick the
/// account.
pub(crate) fn exact_matches<'a, T>(
    user: &crate::UserRef,
    entries: &'a [T],
    get: impl Fn(&'a T, &str) -> Option<&'a str>,
) -> Result<Vec<&'a T>, DirectoryError> {
    use crate::UserRef;
    let by = |attr: &str, wanted: &str| -> Vec<&'a T> {
        entries
            .iter()
            .filter(|e| get(*e, attr).is_some_and(|v| same_name(wanted, v)))
            .collect()
    };
    let (kept, looked_at) = match user {
        UserRef::Upn(upn) => {
            let by_upn = by("userPrincipalName", upn);
            if by_upn.is_empty() {
                (by("mail", upn), "userPrincipalName or mail")
            } else {
                (by_upn, "userPrincipalName")
            }
        }
        UserRef::DownLevel { sam, .. } | UserRef::Sam(sam) => {
            (by("sAMAccountName", sam), "sAMAccountName")
        }
        _ => (entries.iter().collect(), ""),
    };
    if kept.is_empty() && !entries.is_empty() {
        let attr = looked_at.split(' ').next().unwrap_or_default();
        let near: Vec<String> = entries
            .iter()
            .take(3)
            .map(|e| format!("{:?}", get(e, attr).unwrap_or_default()))
            .collect();
        return Err(DirectoryError::NotFound {
            what: format!(
                "{user} (the directory's looser comparison also matched {looked_at} {}, which is \
                 not the same name; only an exact, case-insensitive match is acted on)",
                near.join(", ")
            ),
        });
    }
    Ok(kept)
}

/// `account` if its DN is [`same_dn`] as `wanted`, else [`DirectoryError::NotFound`]: a
/// directory resolves `CN=bob,…` to `CN=bob\ ,…` (Samba ignores the trailing space).
pub(crate) fn exact_dn(
    wanted: &str,
    account: crate::Account,
) -> Result<crate::Account, DirectoryError> {
    if same_dn(wanted, account.dn.as_str()) {
        Ok(account)
    } else {
        Err(DirectoryError::NotFound {
            what: format!(
                "{wanted} (the directory resolved it to {}, which is not the same name; only an \
                 exact, case-insensitive match is acted on)",
                account.dn
            ),
        })
    }
}

/// A parsed distinguished name: RDNs from the leaf to the root, each a list of
/// `(attribute type, unescaped value)` pairs (more than one for multi-valued RDNs like
/// `CN=a+UID=b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDn {
    rdns: Vec<Vec<(String, String)>>,
}

impl ParsedDn {
    /// The RDNs, leaf first.
    pub fn rdns(&self) -> &[Vec<(String, String)>] {
        &self.rdns
    }

    /// A canonical form for comparisons: attribute types upper-cased, values lower-cased and
    /// re-escaped, no optional spaces. Two DNs that AD treats as the same object (ignoring
    /// case) have the same canonical form.
    pub fn canonical(&self) -> String {
        self.rdns
            .iter()
            .map(|rdn| {
                rdn.iter()
                    .map(|(a, v)| {
                        format!("{}={}", a.to_ascii_uppercase(), dn_value(&v.to_lowercase()))
                    })
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Returns the value of the RDN immediately before (leafward of) the first RDN equal to
    /// `attr=value` (case-insensitive): the site of
    /// `CN=DC1,CN=Servers,CN=Site-A,CN=Sites,…` is `child_of("CN", "Sites")` = `Site-A`.
    pub fn child_of(&self, attr: &str, value: &str) -> Option<&str> {
        let pos = self.rdns.iter().position(|rdn| {
            rdn.len() == 1
                && rdn[0].0.eq_ignore_ascii_case(attr)
                && rdn[0].1.eq_ignore_ascii_case(value)
        })?;
        let child = self.rdns.get(pos.checked_sub(1)?)?;
        child.first().map(|(_, v)| v.as_str())
    }
}

/// Parses a DN per RFC 4514 (string representation). Values may contain `\`-escaped
/// specials and `\hh` hex pairs; `#hex` (BER) values are kept as their text.
pub fn parse_dn(dn: &str) -> Result<ParsedDn, DirectoryError> {
    let bad = |reason: &str| DirectoryError::InvalidInput {
        what: format!("DN {:?}", dn.chars().take(120).collect::<String>()),
        reason: format!("{reason}; expected e.g. CN=Bob,CN=Users,DC=corp,DC=example"),
    };
    let bytes = dn.as_bytes();
    let mut i = 0;
    let mut rdns = Vec::new();
    if dn.trim().is_empty() {
        return Ok(ParsedDn { rdns });
    }
    loop {
        let mut rdn = Vec::new();
        loop {
            // attribute type
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-' || bytes[i] == b'.')
            {
                i += 1;
            }
            let attr = &dn[start..i];
            if attr.is_empty() {
                return Err(bad("missing attribute type"));
            }
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] != b'=' {
                return Err(bad(&format!("missing '=' after {attr:?}")));
            }
            i += 1;
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            // attribute value
            let mut value: Vec<u8> = Vec::new();
            // trailing unescaped spaces are not part of the value
            let mut significant_len = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b',' | b'+' | b';' => break,
                    b'\\' => {
                        let next = *bytes
                            .get(i + 1)
                            .ok_or_else(|| bad("ends with a lone backslash"))?;
                        if next.is_ascii_hexdigit() {
                            let hi = next;
                            let lo = *bytes
                                .get(i + 2)
                                .ok_or_else(|| bad("incomplete \\hh escape"))?;
                            if !lo.is_ascii_hexdigit() {
                                return Err(bad("invalid \\hh escape"));
                            }
                            value.push(hex(hi) << 4 | hex(lo));
                            i += 3;
                        } else if b"\"+,;<>\\=# ".contains(&next) {
                            value.push(next);
                            i += 2;
                        } else {
                            return Err(bad("backslash before a character that needs no escaping"));
                        }
                        significant_len = value.len();
                    }
                    b'"' | b'<' | b'>' | 0 => {
                        return Err(bad("unescaped special character in a value"));
                    }
                    b => {
                        value.push(b);
                        i += 1;
                        if b != b' ' {
                            significant_len = value.len();
                        }
                    }
                }
            }
            value.truncate(significant_len);
            let value = String::from_utf8(value).map_err(|_| bad("a value is not valid UTF-8"))?;
            rdn.push((attr.to_owned(), value));
            if i < bytes.len() && bytes[i] == b'+' {
                i += 1;
                continue;
            }
            break;
        }
        rdns.push(rdn);
        if i >= bytes.len() {
            break;
        }
        // ',' or ';'
        i += 1;
        if i >= bytes.len() {
            return Err(bad("ends with a separator"));
        }
    }
    Ok(ParsedDn { rdns })
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Whether two DNs name the same object (case-insensitive, escaping and optional spaces
/// ignored). Unparsable DNs are compared as text, case-insensitively.
pub fn dn_eq(a: &str, b: &str) -> bool {
    match (parse_dn(a), parse_dn(b)) {
        (Ok(a), Ok(b)) => a.canonical() == b.canonical(),
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// The canonical form of `dn` (see [`ParsedDn::canonical`]), or the lower-cased text when it
/// does not parse.
pub fn dn_canonical(dn: &str) -> String {
    parse_dn(dn)
        .map(|p| p.canonical())
        .unwrap_or_else(|_| dn.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::Tag;
    use proptest::prelude::*;

    fn unescape_filter(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' {
                out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn known_filter_escapes() {
        assert_eq!(filter_value("a*b"), r"a\2ab");
        assert_eq!(filter_value("(x)"), r"\28x\29");
        assert_eq!(filter_value(r"a\b"), r"a\5cb");
        assert_eq!(filter_value("a\0b"), r"a\00b");
        assert_eq!(filter_value("jöhn"), "jöhn");
    }

    #[test]
    fn known_dn_escapes() {
        assert_eq!(dn_value("Smith, John"), r"Smith\, John");
        assert_eq!(dn_value(" lead"), r"\ lead");
        assert_eq!(dn_value("trail "), r"trail\ ");
        assert_eq!(dn_value("#hash"), r"\#hash");
        assert_eq!(dn_value("a+b=c"), r"a\+b\=c");
        assert_eq!(dn_value("x\ny"), r"x\0ay");
    }

    #[test]
    fn parses_real_dns() {
        let d = parse_dn("CN=NTDS Settings,CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=lab,DC=example,DC=test").unwrap();
        assert_eq!(d.rdns().len(), 9);
        assert_eq!(d.child_of("CN", "Sites"), Some("Default-First-Site-Name"));
        assert_eq!(d.child_of("CN", "Servers"), Some("DC1"));
        let d = parse_dn(r"CN=Smith\2C John + UID=7 , OU=x").unwrap();
        assert_eq!(
            d.rdns()[0],
            vec![
                ("CN".into(), "Smith, John".into()),
                ("UID".into(), "7".into())
            ]
        );
        assert!(dn_eq("cn=Bob,cn=Users,dc=LAB", "CN=bob, CN=users,DC=lab"));
        assert!(!dn_eq("CN=Bob,CN=Users", "CN=Bob,CN=Users,DC=x"));
        for bad in ["CN", "=x", "CN=a,", r"CN=a\", r"CN=a\zz", "CN=a\"b"] {
            let e = parse_dn(bad).unwrap_err().to_string();
            assert!(e.contains("invalid DN"), "{bad}: {e}");
        }
    }

    proptest! {
        #[test]
        fn filter_value_cannot_widen_a_filter(s in any::<String>()) {
            let esc = filter_value(&s);
            prop_assert!(!esc.contains(['*', '(', ')', '\0']), "{esc:?}");
            // every backslash starts a \hh pair
            let b = esc.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'\\' {
                    prop_assert!(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit));
                    prop_assert!(b.get(i + 2).is_some_and(u8::is_ascii_hexdigit));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            prop_assert_eq!(unescape_filter(&esc), s.as_bytes());
        }

        #[test]
        fn escaped_filter_parses_to_one_equality(s in any::<String>()) {
            // ldap3's own filter parser sees exactly (&(objectClass=user)(sAMAccountName=s)):
            // an AND of two equality matches, the second one's value being the raw input.
            let f = format!("(&(objectClass=user)(sAMAccountName={}))", filter_value(&s));
            let tag = ldap3::parse_filter(&f);
            prop_assert!(tag.is_ok(), "{f}");
            let Ok(Tag::Sequence(and)) = tag else { panic!("not a sequence: {f}") };
            prop_assert_eq!(and.id, 0);
            prop_assert_eq!(and.inner.len(), 2);
            let Tag::Sequence(eq) = &and.inner[1] else { panic!("not an item: {f}") };
            prop_assert_eq!(eq.id, 3, "not an equality match: {}", f);
            let [Tag::OctetString(attr), Tag::OctetString(value)] = eq.inner.as_slice() else {
                panic!("bad equality item: {f}")
            };
            prop_assert_eq!(attr.inner.as_slice(), b"sAMAccountName");
            prop_assert_eq!(value.inner.as_slice(), s.as_bytes());
        }

        #[test]
        fn dn_value_round_trips_as_one_rdn(s in any::<String>()) {
            let dn = format!("CN={},CN=Users,DC=corp,DC=example", dn_value(&s));
            let parsed = parse_dn(&dn);
            prop_assert!(parsed.is_ok(), "{dn}");
            let parsed = parsed.unwrap();
            prop_assert_eq!(parsed.rdns().len(), 4);
            prop_assert_eq!(parsed.rdns()[0].len(), 1);
            prop_assert_eq!(&parsed.rdns()[0][0].1, &s);
            prop_assert_eq!(&parsed.rdns()[1][0].1, "Users");
        }

        #[test]
        fn dn_value_round_trips_with_specials(s in r#"[ #,+;<>\\="a-z\x00\n]{0,12}"#) {
            let dn = format!("CN={},DC=x", dn_value(&s));
            let parsed = parse_dn(&dn).unwrap();
            prop_assert_eq!(parsed.rdns().len(), 2);
            prop_assert_eq!(&parsed.rdns()[0][0].1, &s);
        }

        #[test]
        fn parse_dn_never_panics(s in any::<String>()) {
            let _ = parse_dn(&s);
            let _ = dn_canonical(&s);
        }
    }
}
