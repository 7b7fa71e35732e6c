//! Active Directory's LDAP diagnostic codes (`… data 52e, v1db1`).

use crate::AuthResult;

/// Decodes the `data XXX` sub-code of an AD `invalidCredentials` (49) bind answer.
///
/// | code | meaning | result |
/// |---|---|---|
/// | `52e` | unknown user or wrong password | [`AuthResult::BadCredentials`] |
/// | `525` | user not found | [`AuthResult::BadCredentials`] |
/// | `530` / `531` | logon time / workstation restriction | [`AuthResult::LogonRestricted`] |
/// | `532` | password expired | [`AuthResult::PasswordExpired`] |
/// | `533` | account disabled | [`AuthResult::AccountDisabled`] |
/// | `701` | account expired | [`AuthResult::AccountExpired`] |
/// | `773` | password must be changed | [`AuthResult::MustChangePassword`] |
/// | `775` | account locked out | [`AuthResult::AccountLocked`] |
///
/// Anything else (or no code at all, as from a non-AD server) is
/// [`AuthResult::BadCredentials`]: a refused logon is never reported as a success.
///
/// ```
/// use exch_directory::{decode_bind_failure, AuthResult};
/// let text = "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 533, v1db1";
/// assert_eq!(decode_bind_failure(text), AuthResult::AccountDisabled);
/// ```
pub fn decode_bind_failure(diagnostic: &str) -> AuthResult {
    match data_code(diagnostic).as_deref() {
        Some("52e") | Some("525") => AuthResult::BadCredentials,
        Some("530") | Some("531") => AuthResult::LogonRestricted,
        Some("532") => AuthResult::PasswordExpired,
        Some("533") => AuthResult::AccountDisabled,
        Some("701") => AuthResult::AccountExpired,
        Some("773") => AuthResult::MustChangePassword,
        Some("775") => AuthResult::AccountLocked,
        _ => AuthResult::BadCredentials,
    }
}

/// The lower-cased hex code after `data ` in an AD diagnostic message, if any.
pub(crate) fn data_code(diagnostic: &str) -> Option<String> {
    let lower = diagnostic.to_ascii_lowercase();
    let at = lower.find("data ")?;
    let code: String = lower[at + 5..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    (!code.is_empty()).then_some(code)
}

/// A short human description of a bind result, for error messages.
pub(crate) fn describe(result: AuthResult, diagnostic: &str) -> String {
    let what = match result {
        AuthResult::Success => "accepted",
        AuthResult::BadCredentials => "bad credentials",
        AuthResult::AccountDisabled => "account disabled",
        AuthResult::AccountExpired => "account expired",
        AuthResult::PasswordExpired => "password expired",
        AuthResult::MustChangePassword => "password must be changed",
        AuthResult::AccountLocked => "account locked out",
        AuthResult::LogonRestricted => "logon restricted",
    };
    match data_code(diagnostic) {
        Some(code) => format!("{what} (data {code})"),
        None if diagnostic.is_empty() => what.to_owned(),
        None => format!("{what} ({})", diagnostic.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn samba_and_ad_texts() {
        for (code, want) in [
            ("52e", AuthResult::BadCredentials),
            ("525", AuthResult::BadCredentials),
            ("530", AuthResult::LogonRestricted),
            ("531", AuthResult::LogonRestricted),
            ("532", AuthResult::PasswordExpired),
            ("533", AuthResult::AccountDisabled),
            ("701", AuthResult::AccountExpired),
            ("773", AuthResult::MustChangePassword),
            ("775", AuthResult::AccountLocked),
        ] {
            let t = format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {code}, v1db1");
            assert_eq!(decode_bind_failure(&t), want, "{t}");
            assert!(describe(want, &t).contains(code));
        }
        assert_eq!(decode_bind_failure(""), AuthResult::BadCredentials);
        assert_eq!(
            decode_bind_failure("data 999, v1"),
            AuthResult::BadCredentials
        );
    }

    proptest! {
        #[test]
        fn never_success_never_panics(s in any::<String>()) {
            prop_assert_ne!(decode_bind_failure(&s), AuthResult::Success);
            let _ = describe(AuthResult::BadCredentials, &s);
        }
    }
}
