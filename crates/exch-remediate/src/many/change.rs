//! `RevokeMany::execute`, step 1: the directory changes, `max_in_flight` accounts at a time —
//! one combined modify per account (default), or with
//! [`crate::RemediationBuilder::contain_first`] every disable, then every reset.

use exch_directory::{Account, DirectoryError};
use futures::StreamExt;
use std::time::Instant;

use super::{ManyUser, RevokeMany};
use crate::deadline::Deadline;
use crate::report::ActionRecord;
use crate::Action;

/// What every DC must show for one account.
#[derive(Clone, Copy)]
pub(super) struct Expected {
    pub(super) disabled: bool,
    /// `pwdLastSet` must be greater than this (the value read at plan time).
    pub(super) pwd_last_set_above: Option<i64>,
}

impl Expected {
    pub(super) fn shown_by(&self, a: &Account) -> bool {
        (!self.disabled || a.is_disabled())
            && self
                .pwd_last_set_above
                .is_none_or(|before| a.pwd_last_set.is_some_and(|v| v > before))
    }

    /// The expectations of two phases on the same account (`None`: nothing applied).
    fn merge(disabled: Option<Expected>, reset: Option<Expected>) -> Option<Expected> {
        if disabled.is_none() && reset.is_none() {
            return None;
        }
        Some(Expected {
            disabled: disabled.is_some_and(|e| e.disabled),
            pwd_last_set_above: reset.and_then(|e| e.pwd_last_set_above),
        })
    }
}

/// What the changes did to one account.
pub(super) struct Changed {
    /// The user's index in the plan.
    pub(super) i: usize,
    /// One record per action, in the order of [`Action`] (disable, then reset).
    pub(super) actions: Vec<ActionRecord>,
    /// What convergence must see, when something was applied.
    pub(super) expected: Option<Expected>,
    /// When the disable was known applied or already so.
    pub(super) disabled_at: Option<Instant>,
}

/// Changes every account of `work` (plan index, user, account as planned; in plan order);
/// one [`Changed`] per account, in the order of `work`.
pub(super) async fn change_all(
    m: &RevokeMany,
    dl: Deadline,
    work: &[(usize, &ManyUser, &Account)],
) -> Vec<Changed> {
    let r = &m.template;
    let disable = r.actions.contains(&Action::Disable);
    let reset = r.actions.contains(&Action::ResetPassword);
    if !(m.contain_first && disable && reset) {
        return phase(m, dl, work, disable, reset).await;
    }
    // Phase 1 ends before phase 2 starts: every disable is applied before any reset is sent.
    let disabled = phase(m, dl, work, true, false).await;
    tracing::info!(
        accounts = work.len(),
        disabled = disabled.iter().filter(|c| c.disabled_at.is_some()).count(),
        "contain first: phase 1 (disable) done, phase 2 (password reset) starts"
    );
    let reset = phase(m, dl, work, false, true).await;
    disabled
        .into_iter()
        .zip(reset)
        .map(|(d, p)| Changed {
            i: d.i,
            expected: Expected::merge(d.expected, p.expected),
            disabled_at: d.disabled_at,
            actions: d.actions.into_iter().chain(p.actions).collect(),
        })
        .collect()
}

/// One pass over `work` with the given actions, `max_in_flight` accounts at a time.
async fn phase(
    m: &RevokeMany,
    dl: Deadline,
    work: &[(usize, &ManyUser, &Account)],
    disable: bool,
    reset: bool,
) -> Vec<Changed> {
    // Futures are created up front (lazily polled): keeps `execute` Send.
    let changes: Vec<_> = work
        .iter()
        .map(|&(i, user, account)| change_one(m, dl, i, user, account, disable, reset))
        .collect();
    let mut done: Vec<Changed> = futures::stream::iter(changes)
        .buffer_unordered(m.max_in_flight)
        .collect()
        .await;
    done.sort_by_key(|c| c.i);
    done
}

/// Applies `disable` and/or the reset to one account (one combined modify where the backend
/// can), retrying transient failures one action at a time.
async fn change_one(
    m: &RevokeMany,
    dl: Deadline,
    i: usize,
    user: &ManyUser,
    account: &Account,
    disable: bool,
    reset: bool,
) -> Changed {
    let r = &m.template;
    let password = user.new_password.as_ref().filter(|_| reset);
    let asked = [(Action::Disable, disable), (Action::ResetPassword, reset)];
    let not_attempted = |why: &str| Changed {
        i,
        actions: asked
            .iter()
            .filter(|(_, on)| *on)
            .map(|&(action, _)| ActionRecord {
                action,
                outcome: None,
                error: Some(why.to_owned()),
                done_earlier: false,
            })
            .collect(),
        expected: None,
        disabled_at: None,
    };
    if r.cancel.is_cancelled() {
        return not_attempted("not attempted: cancelled");
    }
    if dl.expired() {
        return not_attempted("not attempted: the run deadline was reached");
    }
    let limit = dl.cap(r.timeouts.directory);
    let changes = tokio::time::timeout(
        limit,
        r.directory.disable_and_reset(account, disable, password),
    )
    .await;
    let (mut d, mut p) = match changes {
        Ok(c) => (c.disable, c.reset_password),
        Err(_) => {
            let operation = match (disable, password.is_some()) {
                (true, true) => "disable and password reset",
                (true, false) => "disable",
                _ => "password reset",
            };
            let timeout = || {
                Err(DirectoryError::Timeout {
                    operation: format!("{operation} of {}", account.dn),
                    url: "(directory)".into(),
                    after: limit,
                })
            };
            (disable.then(timeout), password.map(|_| timeout()))
        }
    };
    if matches!(&d, Some(Err(e)) if e.is_transient()) {
        d = Some(
            dl.dir(r.dir_retry("disable", || r.directory.disable_account(account)))
                .await,
        );
    }
    let disabled_at = matches!(d, Some(Ok(_))).then(Instant::now);
    if let (Some(Err(e)), Some(pw)) = (&p, password) {
        if e.is_transient() {
            p = Some(
                dl.dir(r.dir_retry("reset password", || r.directory.reset_password(account, pw)))
                    .await,
            );
        }
    }
    let mut expected = Expected {
        disabled: false,
        pwd_last_set_above: None,
    };
    let mut records = Vec::new();
    let mut applied = false;
    for (action, result) in [(Action::Disable, d), (Action::ResetPassword, p)] {
        let result = match (result, action) {
            (Some(res), _) => res,
            (None, Action::ResetPassword) if reset => Err(DirectoryError::InvalidInput {
                what: "new password".into(),
                reason: "none given".into(),
            }),
            (None, _) => continue,
        };
        let result = match result {
            Ok(outcome) => Ok(outcome),
            Err(e) => crate::writes::after_failed_write(r, dl, account, action, e).await,
        };
        match result {
            Ok(outcome) => {
                applied = true;
                match action {
                    Action::Disable => expected.disabled = true,
                    _ => expected.pwd_last_set_above = Some(account.pwd_last_set.unwrap_or(0)),
                }
                records.push(ActionRecord {
                    action,
                    outcome: Some(outcome),
                    error: None,
                    done_earlier: false,
                });
            }
            Err(e) => {
                tracing::warn!(user = %user.text, ?action, error = %e, "directory action failed");
                records.push(ActionRecord {
                    action,
                    outcome: None,
                    error: Some(e),
                    done_earlier: false,
                });
            }
        }
    }
    Changed {
        i,
        actions: records,
        expected: applied.then_some(expected),
        disabled_at,
    }
}
