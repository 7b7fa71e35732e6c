//! A conformance suite for [`Directory`] backends: plain async functions that panic with a
//! message on the first deviation, run against [`InMemoryDirectory`]
//! and against [`LdapDirectory`](crate::LdapDirectory) on a real Samba AD DC.
//!
//! Each function takes the directory and the pre-created objects it works on; every function
//! leaves its user as it found it (enabled, except that the password may have changed — see
//! [`reset_password_flow`]). Use a fresh user per function when tests run in parallel.
//!
//! **Unstable: may change in any release; for backend authors' tests.** Compiled only with the
//! `conformance` feature, which you enable in your `[dev-dependencies]`:
//! `exch-directory = { version = "…", features = ["conformance"] }`.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use exch_directory::{conformance, InMemoryDirectory};
//!
//! let dir = InMemoryDirectory::new();
//! let user = conformance::FixtureUser::create_in_memory(&dir, "bob", "Old-Passw0rd!");
//! conformance::disable_enable_idempotent(&dir, &user).await;
//! # });
//! ```

// A test suite: a failing step panics with the error, like a test would.
#![allow(clippy::unwrap_used)]

mod bulk;
mod combined;

pub use bulk::{accounts_on_in_order, find_accounts_in_order};
pub use combined::{disable_and_reset_flow, disable_and_reset_keeps_concurrent_change};

use exch_core::ExchangeServer;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    Account, AuthResult, ChangeOutcome, Directory, DirectoryError, Dn, InMemoryDirectory, UserRef,
};

/// A user that exists in the directory under test, enabled, with a known password.
#[derive(Debug, Clone)]
pub struct FixtureUser {
    /// `sAMAccountName`.
    pub sam: String,
    /// `userPrincipalName`.
    pub upn: String,
    /// Distinguished name.
    pub dn: String,
    /// NetBIOS domain (`LAB`).
    pub domain: String,
    /// Its current password.
    pub password: SecretString,
}

impl FixtureUser {
    /// Adds `sam` (UPN `sam@lab.example.test`-style) to an [`InMemoryDirectory`].
    pub fn create_in_memory(dir: &InMemoryDirectory, sam: &str, password: &str) -> FixtureUser {
        let base = dir.base_dn();
        let dns: Vec<&str> = base
            .split(',')
            .filter_map(|p| p.strip_prefix("DC="))
            .collect();
        let upn = format!("{sam}@{}", dns.join("."));
        let account = dir.add_user(sam, &upn, password);
        FixtureUser {
            sam: sam.to_owned(),
            upn,
            dn: account.dn.0,
            domain: dir.netbios_domain(),
            password: SecretString::from(password.to_owned()),
        }
    }
}

async fn auth(dir: &dyn Directory, name: &str, password: &SecretString) -> AuthResult {
    match dir.authenticate(name, password).await {
        Ok(r) => r,
        Err(e) => panic!("authenticate({name}) failed: {e}"),
    }
}

async fn find(dir: &dyn Directory, user: &UserRef) -> Result<Account, DirectoryError> {
    dir.find_account(user).await
}

/// Finding by UPN, `DOMAIN\sam`, bare `sam` and DN gives the same account; another NetBIOS
/// domain and an unknown name give [`DirectoryError::NotFound`].
pub async fn find_by_every_form(dir: &dyn Directory, user: &FixtureUser) {
    let forms = [
        user.upn.clone(),
        format!("{}\\{}", user.domain, user.sam),
        user.sam.clone(),
        user.dn.clone(),
        user.upn.to_uppercase(),
        user.dn.to_lowercase(),
    ];
    for form in &forms {
        let r = UserRef::parse(form).unwrap_or_else(|e| panic!("parse {form}: {e}"));
        let a = find(dir, &r)
            .await
            .unwrap_or_else(|e| panic!("find {form}: {e}"));
        assert!(
            crate::escape::dn_eq(a.dn.as_str(), &user.dn),
            "find {form} gave {} instead of {}",
            a.dn,
            user.dn
        );
        assert!(a.sam_account_name.eq_ignore_ascii_case(&user.sam));
        assert!(!a.is_disabled(), "{form}: fixture user should be enabled");
    }
    let other_domain = UserRef::DownLevel {
        domain: "NOTTHIS".into(),
        sam: user.sam.clone(),
    };
    let e = find(dir, &other_domain).await.unwrap_err();
    assert!(matches!(e, DirectoryError::NotFound { .. }), "{e}");
    for missing in [
        format!("{}-nobody", &user.sam[..user.sam.len().min(12)]),
        format!("nobody-{}@example.invalid", user.sam),
    ] {
        let e = find(dir, &UserRef::parse(&missing).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(e, DirectoryError::NotFound { .. }),
            "{missing}: {e}"
        );
        assert!(
            e.to_string().contains(&missing),
            "error names the input: {e}"
        );
    }
}

/// Two accounts with the same `mail` (`shared_mail`, which is nobody's UPN): looking it up is
/// [`DirectoryError::Ambiguous`] naming both — never "the first match".
pub async fn ambiguous_is_an_error(dir: &dyn Directory, shared_mail: &str, dns: [&str; 2]) {
    let e = find(dir, &UserRef::parse(shared_mail).unwrap())
        .await
        .unwrap_err();
    match &e {
        DirectoryError::Ambiguous {
            count, examples, ..
        } => {
            assert_eq!(*count, 2, "{e}");
            for dn in dns {
                assert!(
                    examples.to_lowercase().contains(&dn.to_lowercase()),
                    "{e} should name {dn}"
                );
            }
        }
        other => panic!("expected Ambiguous for {shared_mail}, got {other}"),
    }
}

/// Filter and DN injection attempts built from a real user's names find nothing (or are
/// refused as invalid): escaping keeps them literal.
pub async fn injection_finds_nothing(dir: &dyn Directory, user: &FixtureUser, base_dn: &str) {
    let prefix: String = user.sam.chars().take(3).collect();
    let attempts = vec![
        UserRef::Sam("*".into()),
        UserRef::Sam(format!("{prefix}*")),
        UserRef::Sam(format!("{})(sAMAccountName=*", user.sam)),
        UserRef::Upn("*".into()),
        UserRef::Upn(format!("{prefix}*@*")),
        UserRef::Upn(format!("{})(|(objectClass=*", user.upn)),
        UserRef::Upn(format!("*)(sAMAccountName={}", user.sam)),
        UserRef::Upn(format!("{}\0", user.upn)),
        UserRef::DownLevel {
            domain: user.domain.clone(),
            sam: format!("{prefix}*"),
        },
        UserRef::Dn(Dn(format!("CN=Users,{base_dn}"))),
        UserRef::Dn(Dn(format!("CN={}\\,CN=Users,{base_dn}", user.sam))),
        UserRef::Dn(Dn(format!(
            "CN={}+sAMAccountName=*,CN=Users,{base_dn}",
            user.sam
        ))),
        UserRef::Dn(Dn(format!("{})(objectClass=*", user.dn))),
        UserRef::Dn(Dn(format!("CN=*,CN=Users,{base_dn}"))),
    ];
    for attempt in attempts {
        match find(dir, &attempt).await {
            Err(DirectoryError::NotFound { .. }) | Err(DirectoryError::InvalidInput { .. }) => {}
            Ok(a) => panic!("injection {attempt:?} found {}", a.dn),
            Err(e) => panic!("injection {attempt:?}: unexpected error {e}"),
        }
    }
}

/// Disable and enable: [`ChangeOutcome::Applied`] then [`ChangeOutcome::AlreadySo`], other
/// `userAccountControl` bits kept, logons: AccountDisabled with the right password,
/// BadCredentials with a wrong one (as AD: 533 only for the right password).
pub async fn disable_enable_idempotent(dir: &dyn Directory, user: &FixtureUser) {
    let a = find(dir, &UserRef::parse(&user.upn).unwrap())
        .await
        .unwrap();
    assert_eq!(
        auth(dir, &user.upn, &user.password).await,
        AuthResult::Success
    );
    assert_eq!(
        dir.disable_account(&a).await.unwrap(),
        ChangeOutcome::Applied
    );
    assert_eq!(
        dir.disable_account(&a).await.unwrap(),
        ChangeOutcome::AlreadySo
    );
    let d = find(dir, &UserRef::parse(&user.dn).unwrap()).await.unwrap();
    assert!(d.is_disabled());
    assert_eq!(
        d.user_account_control.0,
        a.user_account_control.0 | 0x2,
        "only ACCOUNTDISABLE changed"
    );
    assert_eq!(
        auth(dir, &user.upn, &user.password).await,
        AuthResult::AccountDisabled
    );
    let wrong = SecretString::from(format!("{}-wrong", user.password.expose_secret()));
    assert_eq!(
        auth(dir, &user.upn, &wrong).await,
        AuthResult::BadCredentials
    );
    assert_eq!(
        dir.enable_account(&d).await.unwrap(),
        ChangeOutcome::Applied
    );
    assert_eq!(
        dir.enable_account(&d).await.unwrap(),
        ChangeOutcome::AlreadySo
    );
    let e = find(dir, &UserRef::parse(&user.dn).unwrap()).await.unwrap();
    assert_eq!(e.user_account_control, a.user_account_control);
    assert_eq!(
        auth(dir, &user.upn, &user.password).await,
        AuthResult::Success
    );
}

/// Logon name forms as AD simple binds accept them: UPN, `DOMAIN\sam`, DN succeed; a bare
/// `sam` is not a logon name; empty and wrong passwords and unknown users are BadCredentials.
pub async fn logon_name_forms(dir: &dyn Directory, user: &FixtureUser) {
    for name in [
        user.upn.clone(),
        format!("{}\\{}", user.domain, user.sam),
        format!(
            "{}\\{}",
            user.domain.to_lowercase(),
            user.sam.to_uppercase()
        ),
        user.dn.clone(),
    ] {
        assert_eq!(
            auth(dir, &name, &user.password).await,
            AuthResult::Success,
            "{name}"
        );
    }
    assert_eq!(
        auth(dir, &user.sam, &user.password).await,
        AuthResult::BadCredentials
    );
    assert_eq!(
        auth(dir, &user.upn, &SecretString::from(String::new())).await,
        AuthResult::BadCredentials,
        "an empty password must never log on (it would be an anonymous bind)"
    );
    assert_eq!(
        auth(dir, &format!("nobody-{}", user.upn), &user.password).await,
        AuthResult::BadCredentials
    );
    assert_eq!(
        auth(dir, &format!("{}\0junk", user.upn), &user.password).await,
        AuthResult::BadCredentials,
        "a NUL must not cut the logon name short"
    );
}

/// The compromised-user flow: disable, reset (old password refused at once, the new one
/// gets AccountDisabled until re-enable, then Success), a weak password is a
/// [`DirectoryError::PolicyViolation`] that changes nothing. Leaves the user enabled with
/// password `new`.
pub async fn reset_password_flow(dir: &dyn Directory, user: &FixtureUser, new: &SecretString) {
    let a = find(dir, &UserRef::parse(&user.upn).unwrap())
        .await
        .unwrap();
    assert_eq!(
        dir.disable_account(&a).await.unwrap(),
        ChangeOutcome::Applied
    );
    assert_eq!(
        auth(dir, &user.upn, &user.password).await,
        AuthResult::AccountDisabled
    );
    assert_eq!(
        dir.reset_password(&a, new).await.unwrap(),
        ChangeOutcome::Applied
    );
    assert_eq!(
        auth(dir, &user.upn, &user.password).await,
        AuthResult::BadCredentials,
        "old password must be refused right after the reset"
    );
    assert_eq!(auth(dir, &user.upn, new).await, AuthResult::AccountDisabled);
    let weak = SecretString::from("abc".to_owned());
    match dir.reset_password(&a, &weak).await {
        Err(DirectoryError::PolicyViolation { reason, .. }) => {
            assert!(
                !reason.is_empty(),
                "policy violation carries the server's reason"
            );
            assert!(
                !reason.contains("abc"),
                "reason must not echo the password: {reason}"
            );
        }
        other => panic!("weak password: expected PolicyViolation, got {other:?}"),
    }
    assert_eq!(
        auth(dir, &user.upn, new).await,
        AuthResult::AccountDisabled,
        "failed reset changed nothing"
    );
    assert_eq!(
        dir.enable_account(&a).await.unwrap(),
        ChangeOutcome::Applied
    );
    assert_eq!(auth(dir, &user.upn, new).await, AuthResult::Success);
    assert_eq!(
        auth(dir, &user.upn, &user.password).await,
        AuthResult::BadCredentials
    );
}

/// Every server of `expected` is discovered with the same FQDN, version, roles and site
/// (matched by name; other servers may exist).
pub async fn exchange_servers_listed(dir: &dyn Directory, expected: &[ExchangeServer]) {
    let found = dir.exchange_servers().await.unwrap();
    for want in expected {
        let got = found
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&want.name))
            .unwrap_or_else(|| panic!("{} not discovered among {found:?}", want.name));
        assert_eq!(got.fqdn, want.fqdn, "{}", want.name);
        assert_eq!(got.version, want.version, "{}", want.name);
        assert_eq!(got.roles, want.roles, "{}", want.name);
        assert_eq!(got.site, want.site, "{}", want.name);
        assert_eq!(got.is_edge(), want.is_edge(), "{}", want.name);
        assert!(
            got.dn.is_some(),
            "{}: discovered servers carry their DN",
            want.name
        );
    }
}

/// At least one DC is listed, each with a name, DNS host name and site, and the account
/// `user` reads the same on every DC that can be reached (after a change, given time).
pub async fn domain_controllers_agree(dir: &dyn Directory, user: &FixtureUser) {
    let dcs = dir.domain_controllers().await.unwrap();
    assert!(!dcs.is_empty(), "a domain has at least one DC");
    let dn = Dn(user.dn.clone());
    let reference = find(dir, &UserRef::Dn(dn.clone())).await.unwrap();
    for dc in &dcs {
        assert!(
            !dc.name.is_empty() && !dc.dns_host_name.is_empty(),
            "{dc:?}"
        );
        assert!(dc.site.is_some(), "{dc:?} has a site");
        let a = dir
            .account_on(dc, &dn)
            .await
            .unwrap_or_else(|e| panic!("account_on({}): {e}", dc.name));
        assert_eq!(
            a.user_account_control, reference.user_account_control,
            "{}",
            dc.name
        );
        assert!(crate::escape::dn_eq(a.dn.as_str(), &user.dn));
    }
}
