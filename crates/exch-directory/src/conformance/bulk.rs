//! The bulk reads: [`Directory::find_accounts`] and [`Directory::accounts_on`].

use std::mem::discriminant;

use super::{find, FixtureUser};
use crate::escape::dn_eq;
use crate::{Account, Directory, DirectoryError, Dn, DomainController, UserRef};

/// What one position of a bulk answer must be.
#[derive(Debug, Clone)]
enum Want {
    /// This account (by DN), enabled or not as `disabled` says.
    Account { dn: String, disabled: bool },
    /// [`DirectoryError::NotFound`] naming the input.
    NotFound,
    /// [`DirectoryError::Ambiguous`] with two matches.
    Ambiguous,
    /// [`DirectoryError::InvalidInput`].
    Invalid,
    /// Hostile input: [`DirectoryError::NotFound`] or [`DirectoryError::InvalidInput`].
    Refused,
}

fn want(user: &FixtureUser, disabled: bool) -> Want {
    Want::Account {
        dn: user.dn.clone(),
        disabled,
    }
}

/// Checks one position of a bulk answer (`call` names the call and the input in messages).
fn check(call: &str, input: &str, got: &Result<Account, DirectoryError>, want: &Want) {
    match (want, got) {
        (Want::Account { dn, disabled }, Ok(a)) => {
            assert!(
                dn_eq(a.dn.as_str(), dn),
                "{call}: {input} gave {} instead of {dn}",
                a.dn
            );
            assert_eq!(a.is_disabled(), *disabled, "{call}: {input}: {a:?}");
        }
        (Want::NotFound, Err(e @ DirectoryError::NotFound { .. })) => {
            assert!(
                e.to_string().contains(input),
                "{call}: error names {input}: {e}"
            );
        }
        (Want::Ambiguous, Err(e @ DirectoryError::Ambiguous { count, .. })) => {
            assert_eq!(*count, 2, "{call}: {input}: {e}");
        }
        (Want::Invalid, Err(DirectoryError::InvalidInput { .. }))
        | (
            Want::Refused,
            Err(DirectoryError::NotFound { .. } | DirectoryError::InvalidInput { .. }),
        ) => {}
        (want, got) => panic!("{call}: {input}: expected {want:?}, got {got:?}"),
    }
}

/// Whether a bulk answer is what the one-at-a-time method said: the same account (DN,
/// `sAMAccountName`, `userAccountControl`) or the same kind of error.
fn same_answer(bulk: &Result<Account, DirectoryError>, single: &Result<Account, DirectoryError>) {
    match (bulk, single) {
        (Ok(b), Ok(s)) => assert!(
            b.dn == s.dn
                && b.sam_account_name == s.sam_account_name
                && b.user_account_control == s.user_account_control,
            "bulk read {b:?}, single read {s:?}"
        ),
        (Err(b), Err(s)) => assert_eq!(
            discriminant(b),
            discriminant(s),
            "bulk error {b}, single error {s}"
        ),
        (b, s) => panic!("bulk answer {b:?}, single answer {s:?}"),
    }
}

/// The DN `CN=<name>,<parent of user's DN>` (fixture DNs have a plain first RDN).
fn sibling_dn(user: &FixtureUser, name: &str) -> String {
    let parent = user.dn.split_once(',').map(|(_, p)| p).unwrap_or_default();
    format!("CN={name},{parent}")
}

/// [`Directory::find_accounts`]: one result per user, in input order, each what
/// [`Directory::find_account`] says for it, across chunk boundaries (the input is more than
/// twice `users.len()` long; give more than 100 users to cross the LDAP backend's chunks
/// with distinct users).
///
/// The input names every user (by UPN, `DOMAIN\sam`, bare `sam`, DN and upper-cased UPN),
/// twice, in different orders and forms, and mixes in at two places: duplicates,
/// `shared_mail` (the `mail` of exactly two accounts, nobody's UPN:
/// [`DirectoryError::Ambiguous`]), unknown names and DNs and another NetBIOS domain
/// ([`DirectoryError::NotFound`] naming the input), a malformed DN
/// ([`DirectoryError::InvalidInput`]) and names that a directory's loose comparison or a
/// naive filter would widen (trailing space, `*`, NUL: never an account). Every position is
/// checked on its own: never another user's account, never shifted. An empty input gives an
/// empty answer. Changes nothing.
pub async fn find_accounts_in_order(dir: &dyn Directory, users: &[FixtureUser], shared_mail: &str) {
    assert!(users.len() >= 2, "find_accounts_in_order needs two users");
    assert!(dir.find_accounts(&[]).await.is_empty(), "empty input");
    let (first, last) = (&users[0], &users[users.len() - 1]);
    let forms = |u: &FixtureUser, form: usize| match form % 5 {
        0 => UserRef::Upn(u.upn.clone()),
        1 => UserRef::DownLevel {
            domain: u.domain.clone(),
            sam: u.sam.clone(),
        },
        2 => UserRef::Sam(u.sam.clone()),
        3 => UserRef::Dn(Dn(u.dn.clone())),
        _ => UserRef::Upn(u.upn.to_uppercase()),
    };
    let specials = vec![
        (UserRef::Upn(first.upn.clone()), want(first, false)),
        (UserRef::Upn(shared_mail.to_owned()), Want::Ambiguous),
        (
            UserRef::Upn(format!("nobody-{}", first.upn)),
            Want::NotFound,
        ),
        (
            UserRef::DownLevel {
                domain: "NOTTHIS".into(),
                sam: last.sam.clone(),
            },
            Want::NotFound,
        ),
        (
            UserRef::Dn(Dn(sibling_dn(first, &format!("{}-gone", first.sam)))),
            Want::NotFound,
        ),
        (UserRef::Dn(Dn("not a DN".into())), Want::Invalid),
        (UserRef::Sam(format!("{} ", first.sam)), Want::Refused),
        (
            UserRef::Sam(format!("{}*", last.sam.chars().take(2).collect::<String>())),
            Want::Refused,
        ),
        (UserRef::Upn(format!("{}\0", last.upn)), Want::Refused),
        (UserRef::Dn(Dn(last.dn.to_lowercase())), want(last, false)),
    ];
    let mut cases: Vec<(UserRef, Want)> = Vec::new();
    for (i, u) in users.iter().enumerate() {
        cases.push((forms(u, i), want(u, false)));
        if i == 0 {
            cases.extend(specials.iter().cloned());
        }
    }
    for (i, u) in users.iter().enumerate().rev() {
        if i == users.len() / 2 {
            cases.extend(specials.iter().cloned());
        }
        cases.push((forms(u, i + 2), want(u, false)));
    }
    let refs: Vec<UserRef> = cases.iter().map(|(r, _)| r.clone()).collect();
    let found = dir.find_accounts(&refs).await;
    assert_eq!(found.len(), refs.len(), "one result per user");
    for ((user, want), got) in cases.iter().zip(&found) {
        let input = user.to_string();
        check("find_accounts", &input, got, want);
        same_answer(got, &find(dir, user).await);
    }
}

/// [`Directory::accounts_on`] on `dc` (a domain controller that sees the directory's writes
/// at once): one result per DN, in input order, each what [`Directory::account_on`] says for
/// it; a DN that does not exist ([`DirectoryError::NotFound`] naming it), a malformed one
/// ([`DirectoryError::InvalidInput`]) and `not_a_user` (an object that exists but is not a
/// user account: a container, a computer; [`DirectoryError::NotFound`]) fail at their own
/// position only. After [`Directory::disable_account`] of the first and the last user, the
/// values read show it for those two (wherever they appear) and for nobody else. Leaves the
/// users enabled. Give more than 100 users to cross the LDAP backend's chunks.
pub async fn accounts_on_in_order(
    dir: &dyn Directory,
    dc: &DomainController,
    users: &[FixtureUser],
    not_a_user: &Dn,
) {
    assert!(users.len() >= 2, "accounts_on_in_order needs two users");
    assert!(dir.accounts_on(dc, &[]).await.is_empty(), "empty input");
    let (first, last) = (&users[0], &users[users.len() - 1]);
    let gone = sibling_dn(first, &format!("{}-gone", first.sam));
    let cases = |disabled: bool| {
        let changed = |u: &FixtureUser| disabled && (u.dn == first.dn || u.dn == last.dn);
        let mut cases: Vec<(Dn, Want)> = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let dn = match i % 3 {
                2 => u.dn.to_lowercase(),
                _ => u.dn.clone(),
            };
            cases.push((Dn(dn), want(u, changed(u))));
            if i == users.len() / 2 {
                cases.extend([
                    (Dn(gone.clone()), Want::NotFound),
                    (Dn(first.dn.clone()), want(first, changed(first))),
                    (Dn("not a DN".into()), Want::Invalid),
                    (not_a_user.clone(), Want::NotFound),
                    (Dn(format!("{})(objectClass=*", last.dn)), Want::Refused),
                ]);
            }
        }
        cases.push((Dn(first.dn.clone()), want(first, changed(first))));
        cases
    };
    let read_all = |disabled: bool| async move {
        let cases = cases(disabled);
        let dns: Vec<Dn> = cases.iter().map(|(dn, _)| dn.clone()).collect();
        let read = dir.accounts_on(dc, &dns).await;
        assert_eq!(read.len(), dns.len(), "one result per DN");
        for ((dn, want), got) in cases.iter().zip(&read) {
            check("accounts_on", dn.as_str(), got, want);
            same_answer(got, &dir.account_on(dc, dn).await);
        }
    };
    read_all(false).await;
    let mut disabled = Vec::new();
    for u in [first, last] {
        let a = find(dir, &UserRef::Dn(Dn(u.dn.clone()))).await.unwrap();
        dir.disable_account(&a).await.unwrap();
        disabled.push(a);
    }
    read_all(true).await;
    for a in &disabled {
        dir.enable_account(a).await.unwrap();
    }
}
