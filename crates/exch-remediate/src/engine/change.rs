//! Step 2, the directory changes: `accounts_in_flight` accounts at a time, one combined modify
//! per account where the backend can — or, with [`crate::RemediationBuilder::contain_first`],
//! every disable, then every reset. Actions an earlier run applied are not repeated.

use exch_directory::Account;
use futures::StreamExt;
use tokio::time::Instant;

use super::run::Work;
use super::Engine;
use crate::deadline::Deadline;
use crate::reasons::StepError;
use crate::report::ActionRecord;
use crate::{Action, Event};

/// What every DC must show for one account: the convergence rule.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expected {
    pub(crate) disabled: bool,
    pub(crate) pwd_last_set: Option<PwdRule>,
}

/// What `pwdLastSet` must be on every DC.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PwdRule {
    /// Strictly newer than the value read before this run's reset.
    NewerThan(i64),
    /// At least the value read before this run (the reset was applied by an earlier run).
    AtLeast(i64),
}

impl Expected {
    pub(crate) fn shown_by(&self, a: &Account) -> bool {
        (!self.disabled || a.is_disabled())
            && match self.pwd_last_set {
                None => true,
                Some(PwdRule::NewerThan(before)) => a.pwd_last_set.is_some_and(|v| v > before),
                Some(PwdRule::AtLeast(min)) => a.pwd_last_set.is_some_and(|v| v >= min),
            }
    }
}

/// One action tried on one account: its result, and when a disable was known applied.
type Tried = (
    Action,
    Result<exch_directory::ChangeOutcome, String>,
    Option<Instant>,
);

/// What the changes did to one account.
pub(crate) struct Changed {
    /// One record per action of the plan, in its order.
    pub(crate) actions: Vec<ActionRecord>,
    /// What convergence must see; `None` when nothing was applied (now or earlier).
    pub(crate) expected: Option<Expected>,
    /// When the disable was known applied or already so (or done earlier: the start).
    pub(crate) disabled_at: Option<Instant>,
}

impl Engine {
    /// Changes every account of `work`; one [`Changed`] per item, in order.
    pub(crate) async fn change_all(&self, dl: Deadline, work: &[Work<'_>]) -> Vec<Changed> {
        let phases: &[(bool, bool)] = if self.contain_first {
            &[(true, false), (false, true)]
        } else {
            &[(true, true)]
        };
        let mut results: Vec<Vec<Tried>> = work.iter().map(|_| Vec::new()).collect();
        for (n, &(disable, reset)) in phases.iter().enumerate() {
            if n > 0 {
                tracing::info!(
                    accounts = work.len(),
                    "contain first: phase 1 (disable) done, phase 2 (password reset) starts"
                );
            }
            // Futures are created up front (lazily polled): keeps `execute` Send.
            let changes: Vec<_> = work
                .iter()
                .enumerate()
                .map(|(k, w)| async move { (k, self.change_one(dl, w, disable, reset).await) })
                .collect();
            let done: Vec<_> = futures::stream::iter(changes)
                .buffer_unordered(self.accounts_in_flight)
                .collect()
                .await;
            for (k, r) in done {
                results[k].extend(r);
            }
        }
        work.iter()
            .zip(results)
            .map(|(w, results)| self.record(w, results))
            .collect()
    }

    /// The records of one account, in the plan's order, and what convergence must see.
    fn record(&self, w: &Work<'_>, mut results: Vec<Tried>) -> Changed {
        let mut expected = Expected::default();
        let mut applied = false;
        let mut disabled_at = None;
        let mut actions = Vec::new();
        for planned in &w.actions {
            let action = planned.action;
            let record = if planned.done_earlier {
                applied = true;
                match action {
                    Action::Disable => {
                        expected.disabled = true;
                        disabled_at = Some(w.started);
                    }
                    Action::ResetPassword => {
                        expected.pwd_last_set = w.account.pwd_last_set.map(PwdRule::AtLeast);
                    }
                }
                ActionRecord {
                    action,
                    outcome: None,
                    error: None,
                    done_earlier: true,
                }
            } else {
                let pos = results.iter().position(|(a, _, _)| *a == action);
                let result = match pos {
                    Some(p) => results.remove(p),
                    None => (action, Err("not attempted".to_owned()), None),
                };
                match result.1 {
                    Ok(outcome) => {
                        applied = true;
                        match action {
                            Action::Disable => {
                                expected.disabled = true;
                                disabled_at = result.2;
                            }
                            Action::ResetPassword => {
                                expected.pwd_last_set =
                                    Some(PwdRule::NewerThan(w.account.pwd_last_set.unwrap_or(0)));
                            }
                        }
                        ActionRecord {
                            action,
                            outcome: Some(outcome),
                            error: None,
                            done_earlier: false,
                        }
                    }
                    Err(error) => {
                        tracing::warn!(user = %w.target.text, ?action, %error, "directory action failed");
                        ActionRecord {
                            action,
                            outcome: None,
                            error: Some(error),
                            done_earlier: false,
                        }
                    }
                }
            };
            self.emit(Event::ActionRecorded {
                user: w.target.text.clone(),
                record: record.clone(),
            });
            actions.push(record);
        }
        Changed {
            actions,
            expected: applied.then_some(expected),
            disabled_at,
        }
    }

    /// Applies the disable and/or the reset (those of this phase that the plan leaves to do)
    /// to one account, one combined modify where the backend can, retrying transient failures
    /// one action at a time.
    async fn change_one(
        &self,
        dl: Deadline,
        w: &Work<'_>,
        disable: bool,
        reset: bool,
    ) -> Vec<Tried> {
        let to_do = |action: Action| {
            w.actions
                .iter()
                .any(|p| p.action == action && !p.done_earlier)
        };
        let disable = disable && to_do(Action::Disable);
        let reset = reset && to_do(Action::ResetPassword);
        let password = w.target.new_password.as_ref().filter(|_| reset);
        let asked: Vec<Action> = [(Action::Disable, disable), (Action::ResetPassword, reset)]
            .into_iter()
            .filter_map(|(a, on)| on.then_some(a))
            .collect();
        let not_attempted = |why: &str| {
            asked
                .iter()
                .map(|&a| (a, Err(format!("not attempted: {why}")), None))
                .collect()
        };
        if asked.is_empty() {
            return Vec::new();
        }
        if self.cancel.is_cancelled() {
            return not_attempted("cancelled");
        }
        if dl.expired() {
            return not_attempted("the run deadline was reached");
        }
        let account = &w.account;
        let limit = dl.cap(self.timeouts.directory);
        let changes = tokio::time::timeout(
            limit,
            self.directory.disable_and_reset(account, disable, password),
        )
        .await;
        let (mut d, mut p): (Option<Result<_, StepError>>, Option<Result<_, StepError>>) =
            match changes {
                Ok(c) => (
                    c.disable.map(|r| r.map_err(StepError::from)),
                    c.reset_password.map(|r| r.map_err(StepError::from)),
                ),
                Err(_) => {
                    let timeout = |operation: &str| {
                        Err(StepError::TimedOut {
                            operation: format!("{operation} of {}", account.dn),
                            after: limit,
                            by_deadline: limit < self.timeouts.directory,
                        })
                    };
                    (
                        disable.then(|| timeout("disable")),
                        password.map(|_| timeout("password reset")),
                    )
                }
            };
        if let Some(Err(first)) = d.take_if(|r| r.as_ref().is_err_and(StepError::is_transient)) {
            d = Some(
                dl.dir(
                    "disable",
                    self.retry_after("disable", first, || self.directory.disable_account(account)),
                )
                .await,
            );
        }
        let disabled_at = matches!(d, Some(Ok(_))).then(Instant::now);
        if let Some(pw) = password {
            if let Some(Err(first)) = p.take_if(|r| r.as_ref().is_err_and(StepError::is_transient))
            {
                p = Some(
                    dl.dir(
                        "reset password",
                        self.retry_after("reset password", first, || {
                            self.directory.reset_password(account, pw)
                        }),
                    )
                    .await,
                );
            }
        }
        let mut out = Vec::new();
        for (action, result) in [(Action::Disable, d), (Action::ResetPassword, p)] {
            let result = match result {
                Some(res) => res,
                None if action == Action::ResetPassword && reset => {
                    out.push((action, Err("no new password given".to_owned()), None));
                    continue;
                }
                None => continue,
            };
            let result = match result {
                Ok(outcome) => Ok(outcome),
                Err(e) => crate::writes::after_failed_write(self, dl, account, action, e).await,
            };
            // A disable confirmed only by a re-read counts from now.
            let at = (action == Action::Disable && result.is_ok())
                .then(|| disabled_at.unwrap_or_else(Instant::now));
            out.push((action, result, at));
        }
        out
    }
}
