//! `UserRef::parse`.

use super::{Dn, UserRef};
use crate::DirectoryError;

const MAX_LEN: usize = 1024;

pub(super) fn parse(input: &str) -> Result<UserRef, DirectoryError> {
    let bad = |reason: &str| DirectoryError::InvalidInput {
        what: format!("user {:?}", truncate(input)),
        reason: reason.to_owned(),
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(bad(
            "empty; give a UPN (bob@corp.example), DOMAIN\\user, a sAMAccountName or a DN",
        ));
    }
    if s.len() > MAX_LEN {
        return Err(bad("longer than 1024 bytes"));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(bad("contains control characters (NUL, newline, …)"));
    }
    if looks_like_dn(s) {
        return Ok(UserRef::Dn(Dn(s.to_owned())));
    }
    if let Some((domain, sam)) = s.split_once('\\') {
        if domain.is_empty() || sam.is_empty() || sam.contains('\\') {
            return Err(bad("expected DOMAIN\\user"));
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
    s.chars().take(80).collect()
}
