#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod builder;
mod containment;
mod deadline;
mod engine;
mod error;
mod events;
mod many;
mod many_report;
mod options;
mod plan;
mod probe;
mod reasons;
mod report;
mod servers;
mod writes;

pub use builder::RemediationBuilder;
pub use containment::{MailboxActions, MailboxRecord, PlannedMailbox, Residual};
pub use error::RemediationError;
pub use events::Event;
pub use many::{ManyPlan, PlannedUser, RevokeMany, DEFAULT_ACCOUNTS_IN_FLIGHT};
pub use many_report::{ManyReport, ServerProbes, UserProblem, UserRecord};
pub use options::{Action, NewPassword, RetryPolicy, Step, Strategy, Timeouts};
pub use plan::{Plan, PlannedAccount, PlannedAction, PlannedPool, PlannedServer};
#[cfg(feature = "mock")]
pub use probe::MockProber;
pub use probe::{challenge_schemes, HttpProber, ProbeResult, ProbeSetupError, Prober};
pub use reasons::{Cause, FailureKind, SkipReason};
pub use report::{
    ActionRecord, DcRecord, Outcome, ProbeRecord, Report, ServerOutcome, ServerRecord, StepRecord,
};

use engine::{Engine, PlannedTarget, Target};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// One remediation of one user: build, [`plan`](Remediation::plan), [`execute`](Remediation::execute).
/// A batch of one for the engine that also runs [`RevokeMany`].
pub struct Remediation {
    engine: Engine,
    target: Target,
}

impl std::fmt::Debug for Remediation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remediation")
            .field("user", &self.target.text)
            .field("actions", &self.engine.actions)
            .field("method", &self.engine.method)
            .field("strategy", &self.engine.strategy)
            .field(
                "new_password",
                &self.target.new_password.as_ref().map(|_| "[REDACTED]"),
            )
            .field(
                "probe",
                &self
                    .target
                    .old_password
                    .as_ref()
                    .map(|_| "[old password REDACTED]"),
            )
            .finish_non_exhaustive()
    }
}

impl Remediation {
    /// Starts a builder.
    pub fn builder() -> RemediationBuilder {
        RemediationBuilder::default()
    }

    /// The password that [`NewPassword::Generate`] produced. Store it (password vault, sealed
    /// envelope) **before** calling [`execute`](Self::execute): the report never contains it.
    /// `None` when the run resumes one that already reset the password (and
    /// [`RemediationBuilder::force_reset`] was not asked): the account keeps that password.
    pub fn generated_password(&self) -> Option<&SecretString> {
        self.target.new_password.as_ref()
    }

    /// The cancellation token (cancel it from another task to stop starting new servers).
    pub fn cancellation(&self) -> CancellationToken {
        self.engine.cancel.clone()
    }

    /// The dry run: finds the account, the domain controllers and the servers, and says what
    /// [`execute`](Self::execute) will do. Reads only; needs no write permission.
    ///
    /// # Errors
    /// [`RemediationError::Directory`] with the directory's own error when the user is not
    /// found, is ambiguous, or the directory cannot answer; nothing is changed.
    pub async fn plan(&self) -> Result<Plan, RemediationError> {
        let one = std::slice::from_ref(&self.target);
        let mut resolved = self.engine.resolve(one).await?;
        if let Some(Err(_)) = resolved.first() {
            if let Some(Err((problem, error))) = resolved.pop() {
                return Err(match error {
                    Some(e) => RemediationError::Directory(e),
                    None => RemediationError::invalid("user", problem.to_string()),
                });
            }
        }
        let many = self.engine.plan_batch(one, resolved).await?;
        let Some(user) = many.users.into_iter().next() else {
            return Err(RemediationError::invalid("user", "no user in the plan"));
        };
        let Some(account) = user.account else {
            return Err(RemediationError::invalid("user", "not resolved"));
        };
        Ok(Plan {
            user: user.user,
            account: PlannedAccount {
                dn: account.dn.to_string(),
                sam_account_name: account.sam_account_name.clone(),
                user_principal_name: account.user_principal_name.clone(),
                disabled_now: account.is_disabled(),
            },
            steps: many.steps,
            actions: user.actions,
            domain_controllers: many.domain_controllers,
            servers: many.servers,
            method: many.method,
            strategy: many.strategy,
            probe_old_credentials: many.probed_users > 0,
            mailbox: many.mailbox,
            impact: many.impact,
        })
    }

    /// Runs the plan and reports. Never returns early with an error: every failure is in the
    /// report, per step and per server. `Revoked` only when every step was verified.
    pub async fn execute(&self, plan: &Plan) -> Report {
        let users = vec![PlannedTarget {
            user: &plan.user,
            target: (plan.user == self.target.text).then_some(&self.target),
            dn: Some(&plan.account.dn),
            problem: None,
            actions: plan.actions.clone(),
        }];
        let batch =
            engine::BatchRun::new(&self.engine, users, &plan.servers, plan.mailbox.as_ref())
                .go()
                .await;
        Report::of_one(batch)
    }
}

impl Report {
    /// The one-user view of a batch of one.
    fn of_one(m: ManyReport) -> Report {
        let mut report = Report::begin(String::new(), None, m.outcome);
        let mut servers = m.servers;
        if let Some(u) = m.users.into_iter().next() {
            for sp in u.probes {
                if let Some(rec) = servers.iter_mut().find(|s| s.server == sp.server) {
                    rec.probes = sp.probes;
                }
            }
            report.user = u.user;
            report.account = u.account;
            report.actions = u.actions;
            report.domain_controllers = u.domain_controllers;
            report.causes = u.causes;
            report.mailbox = u.mailbox;
            report.residual = u.residual;
        }
        for c in m.causes {
            if !matches!(c, Cause::UsersNotRevoked { .. }) && !report.causes.contains(&c) {
                report.causes.push(c);
            }
        }
        report.reasons = report.causes.iter().map(ToString::to_string).collect();
        report.started = m.started;
        report.elapsed = m.elapsed;
        report.steps = m.steps;
        report.servers = servers;
        report.servers_to_retry = m.servers_to_retry;
        report.cancelled = m.cancelled;
        report.security = m.security;
        report
    }
}
