//! [`Directory::disable_and_reset`].

use secrecy::{ExposeSecret, SecretString};

use super::{auth, find, FixtureUser};
use crate::{
    generate_password, Account, AccountChanges, AuthResult, ChangeOutcome, Directory,
    DirectoryError, UserAccountControl, UserRef,
};

/// Too short for any domain policy, and distinctive enough to look for in error texts.
const WEAK: &str = "Zq4!x";

/// Reads `user` afresh.
async fn current(dir: &dyn Directory, user: &FixtureUser) -> Account {
    find(dir, &UserRef::parse(&user.dn).unwrap())
        .await
        .unwrap_or_else(|e| panic!("read {}: {e}", user.dn))
}

/// `disable_and_reset` with a check of which actions were reported.
async fn changes(
    dir: &dyn Directory,
    account: &Account,
    disable: bool,
    new: Option<&SecretString>,
) -> AccountChanges {
    let c = dir.disable_and_reset(account, disable, new).await;
    assert_eq!(
        c.disable.is_some(),
        disable,
        "disable reported iff asked: {c:?}"
    );
    assert_eq!(
        c.reset_password.is_some(),
        new.is_some(),
        "reset reported iff asked: {c:?}"
    );
    c
}

fn outcome(what: &str, r: Option<Result<ChangeOutcome, DirectoryError>>) -> ChangeOutcome {
    match r {
        Some(Ok(o)) => o,
        other => panic!("{what}: expected Ok, got {other:?}"),
    }
}

/// Asserts the logons with `right` and `wrong` passwords of `user` give `right_gives` and
/// BadCredentials.
async fn logons(
    dir: &dyn Directory,
    user: &FixtureUser,
    right: &SecretString,
    right_gives: AuthResult,
    wrong: &SecretString,
    step: &str,
) {
    assert_eq!(auth(dir, &user.upn, right).await, right_gives, "{step}");
    assert_eq!(
        auth(dir, &user.upn, wrong).await,
        AuthResult::BadCredentials,
        "{step}: the old password must be refused"
    );
}

/// A policy refusal of the reset: a [`DirectoryError::PolicyViolation`] with the server's
/// reason, not echoing the password.
fn policy_refusal(r: Option<Result<ChangeOutcome, DirectoryError>>) {
    match r {
        Some(Err(e @ DirectoryError::PolicyViolation { .. })) => {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(WEAK), "error echoes the password: {text}");
        }
        other => panic!("weak password: expected PolicyViolation, got {other:?}"),
    }
}

/// [`Directory::disable_and_reset`] of `user` (enabled, with its fixture password), action by
/// action; each result is reported on its own (`None` exactly for the action not asked for):
///
/// * reset only: Applied; the new password logs on (Success), the old one does not;
///   `userAccountControl` unchanged. An empty password is [`DirectoryError::InvalidInput`],
///   `WEAK` (5 characters) a [`DirectoryError::PolicyViolation`]; both change nothing.
/// * disable only: Applied; the password logs on as AccountDisabled; again, from the
///   account as read *before* the disable (a stale read): AlreadySo.
/// * both on a disabled account: disable AlreadySo, reset Applied (AccountDisabled with the
///   new password, the old one refused).
/// * both on an enabled account, from a stale read whose `userAccountControl` still has
///   `DONT_EXPIRE_PASSWORD` (another admin cleared it since): Applied twice, and the result
///   is the current value plus `ACCOUNTDISABLE` — the stale value is not written back.
/// * both with a weak password: the disable is done (as `disable_account` then
///   `reset_password` would), the reset refused with a PolicyViolation that does not echo
///   the password; the previous password still holds.
///
/// Leaves the user enabled, with `userAccountControl` as it was and password `new`.
pub async fn disable_and_reset_flow(dir: &dyn Directory, user: &FixtureUser, new: &SecretString) {
    let fresh = current(dir, user).await;
    let uac = fresh.user_account_control;
    assert!(!uac.is_disabled(), "fixture user should be enabled");
    let p1 = generate_password();
    let reset_only = changes(dir, &fresh, false, Some(&p1)).await;
    assert_eq!(
        outcome("reset only", reset_only.reset_password),
        ChangeOutcome::Applied
    );
    logons(
        dir,
        user,
        &p1,
        AuthResult::Success,
        &user.password,
        "reset only",
    )
    .await;
    assert_eq!(current(dir, user).await.user_account_control, uac);

    for (bad, why) in [("", "empty"), (WEAK, "weak")] {
        let c = changes(
            dir,
            &fresh,
            false,
            Some(&SecretString::from(bad.to_owned())),
        )
        .await;
        match why {
            "empty" => assert!(
                matches!(
                    c.reset_password,
                    Some(Err(DirectoryError::InvalidInput { .. }))
                ),
                "empty password: {c:?}"
            ),
            _ => policy_refusal(c.reset_password),
        }
        let weak = SecretString::from(WEAK.to_owned());
        logons(dir, user, &p1, AuthResult::Success, &weak, why).await;
        assert_eq!(current(dir, user).await.user_account_control, uac);
    }

    let disable_only = changes(dir, &fresh, true, None).await;
    assert_eq!(
        outcome("disable only", disable_only.disable),
        ChangeOutcome::Applied
    );
    let disabled = current(dir, user).await;
    assert_eq!(
        disabled.user_account_control,
        uac.disabled(),
        "only 0x2 set"
    );
    logons(
        dir,
        user,
        &p1,
        AuthResult::AccountDisabled,
        &user.password,
        "disabled",
    )
    .await;
    let again = changes(dir, &fresh, true, None).await;
    assert_eq!(
        outcome("disable again, from a stale read", again.disable),
        ChangeOutcome::AlreadySo
    );

    let p2 = generate_password();
    let both = changes(dir, &disabled, true, Some(&p2)).await;
    assert_eq!(
        outcome("both, already disabled: disable", both.disable),
        ChangeOutcome::AlreadySo
    );
    assert_eq!(
        outcome("both, already disabled: reset", both.reset_password),
        ChangeOutcome::Applied
    );
    logons(
        dir,
        user,
        &p2,
        AuthResult::AccountDisabled,
        &p1,
        "both on disabled",
    )
    .await;

    dir.enable_account(&disabled).await.unwrap();
    let stale = Account {
        user_account_control: UserAccountControl(uac.0 | UserAccountControl::DONT_EXPIRE_PASSWORD),
        ..current(dir, user).await
    };
    let both = changes(dir, &stale, true, Some(new)).await;
    assert_eq!(
        outcome("both, stale read: disable", both.disable),
        ChangeOutcome::Applied
    );
    assert_eq!(
        outcome("both, stale read: reset", both.reset_password),
        ChangeOutcome::Applied
    );
    assert_eq!(
        current(dir, user).await.user_account_control,
        uac.disabled(),
        "the stale userAccountControl must not be written back"
    );
    logons(
        dir,
        user,
        new,
        AuthResult::AccountDisabled,
        &p2,
        "both on enabled",
    )
    .await;

    dir.enable_account(&disabled).await.unwrap();
    let weak = SecretString::from(WEAK.to_owned());
    let both = changes(dir, &current(dir, user).await, true, Some(&weak)).await;
    assert_eq!(
        outcome("both, weak password: disable", both.disable),
        ChangeOutcome::Applied
    );
    policy_refusal(both.reset_password);
    logons(dir, user, new, AuthResult::AccountDisabled, &weak, "weak").await;
    dir.enable_account(&disabled).await.unwrap();
    assert_eq!(current(dir, user).await.user_account_control, uac);
    assert_eq!(auth(dir, &user.upn, new).await, AuthResult::Success);
    assert_ne!(new.expose_secret(), user.password.expose_secret());
}

/// [`Directory::disable_and_reset`] from `stale`, `user`'s account as read before another
/// writer changed its `userAccountControl` (e.g. set `DONT_EXPIRE_PASSWORD`; the account must
/// still be enabled): the other writer's change is kept — the result is the current value plus
/// `ACCOUNTDISABLE`, both actions Applied — and the password is `new` (AccountDisabled).
/// Leaves the user enabled with the other writer's `userAccountControl` and password `new`.
pub async fn disable_and_reset_keeps_concurrent_change(
    dir: &dyn Directory,
    user: &FixtureUser,
    stale: &Account,
    new: &SecretString,
) {
    let now = current(dir, user).await;
    assert_ne!(
        now.user_account_control, stale.user_account_control,
        "change userAccountControl after reading `stale`"
    );
    assert!(!now.is_disabled(), "the account must still be enabled");
    let c = changes(dir, stale, true, Some(new)).await;
    assert_eq!(outcome("disable", c.disable), ChangeOutcome::Applied);
    assert_eq!(outcome("reset", c.reset_password), ChangeOutcome::Applied);
    let after = current(dir, user).await;
    assert_eq!(
        after.user_account_control,
        now.user_account_control.disabled(),
        "the other writer's change must be kept"
    );
    logons(
        dir,
        user,
        new,
        AuthResult::AccountDisabled,
        &user.password,
        "concurrent",
    )
    .await;
    dir.enable_account(&after).await.unwrap();
    assert_eq!(
        current(dir, user).await.user_account_control,
        now.user_account_control
    );
}
