//! Many users at once (bulk incident response): `Remediation::builder().users(..)` →
//! [`RemediationBuilder::build_many`] → [`RevokeMany`] → [`plan`](RevokeMany::plan) →
//! [`execute`](RevokeMany::execute) → one [`ManyReport`].
//!
//! The directory work runs with bounded concurrency ([`RemediationBuilder::accounts_in_flight`]);
//! then convergence is awaited for every account, then **one** flush per server clears the
//! cached logons of every user of the batch at once, then the optional probes run per user.
//! With [`RemediationBuilder::contain_first`] the directory work runs in two phases (every
//! account disabled, then every password reset) so that the incident is contained sooner.
//! The engine is the one [`Remediation`] runs for a batch of one (`engine/`).

use exch_directory::{Account, UserRef};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::engine::{BatchRun, Earlier, Engine, PlannedTarget, Target};
use crate::plan::{PlannedAction, PlannedServer};
use crate::{
    Action, ManyReport, NewPassword, Prober, Remediation, RemediationBuilder, RemediationError,
    Step, Strategy, UserProblem,
};

/// Default of [`RemediationBuilder::accounts_in_flight`].
pub const DEFAULT_ACCOUNTS_IN_FLIGHT: usize = 8;

/// The many-user part of a [`RemediationBuilder`].
#[derive(Default)]
pub(crate) struct ManyInput {
    pub(crate) users: Vec<String>,
    passwords: Vec<(String, SecretString)>,
    old_passwords: Vec<(String, SecretString)>,
    prober: Option<Arc<dyn Prober>>,
    pub(crate) accounts_in_flight: Option<usize>,
    pub(crate) skip_unresolved: bool,
    pub(crate) contain_first: bool,
}

impl fmt::Debug for ManyInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManyInput")
            .field("users", &self.users.len())
            .field("given_passwords", &self.passwords.len())
            .field("old_passwords", &self.old_passwords.len())
            .field("accounts_in_flight", &self.accounts_in_flight)
            .field("skip_unresolved", &self.skip_unresolved)
            .field("contain_first", &self.contain_first)
            .finish_non_exhaustive()
    }
}

impl RemediationBuilder {
    /// Many users (repeatable; instead of [`user`](Self::user)), each as `bob@corp.example`,
    /// `CORP\bob`, `bob` or a DN. Finish with [`build_many`](Self::build_many).
    pub fn users<I, S>(mut self, users: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.many.users.extend(users.into_iter().map(Into::into));
        self
    }

    /// With [`users`](Self::users) and [`reset_password`](Self::reset_password): the new
    /// password of this one user (it must be in the list), instead of the builder's
    /// [`NewPassword`].
    pub fn user_password(mut self, user: impl Into<String>, password: SecretString) -> Self {
        self.many.passwords.push((user.into(), password));
        self
    }

    /// At most this many accounts in directory work at once (lookups, changes, convergence
    /// reads; default [`DEFAULT_ACCOUNTS_IN_FLIGHT`]). Not to be confused with the servers in
    /// flight of [`Strategy::Parallel`].
    pub fn accounts_in_flight(mut self, n: usize) -> Self {
        self.many.accounts_in_flight = Some(n);
        self
    }

    /// With [`users`](Self::users): users that cannot be resolved (invalid, not found,
    /// ambiguous, the same account twice) are reported and skipped instead of failing
    /// [`RevokeMany::plan`]. The outcome is then at best `Partial`.
    pub fn skip_unresolved(mut self) -> Self {
        self.many.skip_unresolved = true;
        self
    }

    /// With [`users`](Self::users), [`disable`](Self::disable) and
    /// [`reset_password`](Self::reset_password): contain first. The directory work runs in two
    /// phases instead of one combined modify per account: **phase 1** disables every account
    /// (disable-only modifies, [`accounts_in_flight`](Self::accounts_in_flight) at a time), **phase 2**
    /// then resets every password — also for accounts whose disable failed. A disable costs
    /// the DC a fraction of a reset (Samba: ~2 ms vs ~26 ms, the new password is hashed), so
    /// the last account is disabled after about a tenth of the time; the whole run takes a
    /// little longer (two modifies per account instead of one). [`ManyReport::contained_after`]
    /// says when every account was disabled; convergence, flush, probes and outcomes are as
    /// without it.
    ///
    /// Refused by [`build_many`](Self::build_many) without both actions (with one action
    /// there is nothing to put first) and by [`build`](Self::build) (a one-user run already
    /// disables the account before it resets the password).
    pub fn contain_first(mut self) -> Self {
        self.many.contain_first = true;
        self
    }

    /// With [`users`](Self::users): after the flush, log on as each listed user with their
    /// **old** password on every flushed server and require refusal. Users not listed are not
    /// probed.
    pub fn probe_old_passwords<I, S>(mut self, prober: Arc<dyn Prober>, old_passwords: I) -> Self
    where
        I: IntoIterator<Item = (S, SecretString)>,
        S: Into<String>,
    {
        self.many.prober = Some(prober);
        self.many
            .old_passwords
            .extend(old_passwords.into_iter().map(|(u, p)| (u.into(), p)));
        self
    }

    /// Validates the input of a many-user run. Nothing is contacted; user identifiers are
    /// checked by [`RevokeMany::plan`] (so that every bad one is named at once). Refused:
    /// [`user`](Self::user) together with [`users`](Self::users),
    /// [`probe_old_password`](Self::probe_old_password) (use
    /// [`probe_old_passwords`](Self::probe_old_passwords)) and
    /// [`contain_first`](Self::contain_first) without both [`disable`](Self::disable) and
    /// [`reset_password`](Self::reset_password).
    pub fn build_many(mut self) -> Result<RevokeMany, RemediationError> {
        let many = std::mem::take(&mut self.many);
        let generate = matches!(self.reset, Some(NewPassword::Generate));
        if self.user.is_some() {
            return Err(RemediationError::invalid(
                "builder",
                "both .user(..) and .users(..) given: put every user in .users(..)",
            ));
        }
        if many.users.is_empty() {
            return Err(RemediationError::invalid(
                "users",
                "no user: call .users([\"alice@corp.example\", ..])",
            ));
        }
        if self.probe.is_some() {
            return Err(RemediationError::invalid(
                "probe_old_password",
                "one old password for many users: use .probe_old_passwords(prober, [(user, old), ..])",
            ));
        }
        if let Some(Earlier::One(r)) = &self.resume {
            if !many.users.contains(&r.user) {
                return Err(RemediationError::invalid(
                    "resume",
                    format!("the earlier report is for {:?}, who is not in .users(..); pass the report of this batch", r.user),
                ));
            }
        }
        if let Some(Earlier::Many(r)) = &self.resume {
            if !r.users.iter().any(|u| many.users.contains(&u.user)) {
                return Err(RemediationError::invalid(
                    "resume",
                    "the earlier report has none of the users of .users(..); pass the report of this batch",
                ));
            }
        }
        self.many.accounts_in_flight = many.accounts_in_flight;
        self.many.contain_first = many.contain_first;
        self.many.skip_unresolved = many.skip_unresolved;
        let (engine, template_password) = self.engine()?;
        let reset = engine.actions.contains(&Action::ResetPassword);
        if many.contain_first && !(reset && engine.actions.contains(&Action::Disable)) {
            return Err(RemediationError::invalid(
                "contain_first",
                "needs both .disable() and .reset_password(..): it disables every account before resetting any password",
            ));
        }
        let mut given: HashMap<String, SecretString> = HashMap::new();
        for (user, password) in many.passwords {
            if !reset {
                return Err(RemediationError::invalid(
                    format!("password of {user:?}"),
                    "given with .user_password(..) but no .reset_password(..)",
                ));
            }
            if !many.users.contains(&user) {
                return Err(RemediationError::invalid(
                    format!("password of {user:?}"),
                    "given with .user_password(..) for a user not in .users(..)",
                ));
            }
            given.insert(user, password);
        }
        let mut old: HashMap<String, SecretString> = many.old_passwords.into_iter().collect();
        let targets = many
            .users
            .into_iter()
            .map(|text| {
                let new_password = match given.get(&text) {
                    Some(p) => Some(p.clone()),
                    None if generate && engine.reset_done_earlier(&text) => None,
                    None if generate => Some(exch_directory::generate_password()),
                    None if reset => template_password.clone(),
                    None => None,
                };
                Target {
                    parsed: UserRef::parse(&text).map_err(|e| e.to_string()),
                    old_password: old.remove(&text),
                    new_password,
                    text,
                }
            })
            .collect();
        if let Some(user) = old.keys().next() {
            return Err(RemediationError::invalid(
                format!("old password of {user:?}"),
                "given with .probe_old_passwords(..) for a user not in .users(..)",
            ));
        }
        Ok(RevokeMany {
            engine: Engine {
                prober: many.prober,
                ..engine
            },
            targets,
        })
    }
}

/// The remediation of many users in one run: the same actions for every user, the directory
/// work with bounded concurrency, **one** flush per server for the whole batch, one report.
///
/// ```
/// # use std::sync::Arc;
/// # use exch_directory::InMemoryDirectory;
/// # use exch_iis::RecordingFlusher;
/// # use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
/// use exch_remediate::{NewPassword, Outcome, Remediation};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = InMemoryDirectory::new();
/// # dir.add_user("alice", "alice@corp.example", "Old-Pass-1!");
/// # dir.add_user("bob", "bob@corp.example", "Old-Pass-2!");
/// # dir.add_exchange_server(
/// #     ExchangeServer::new("EX1", "ex1.corp.example")
/// #         .with_version(ExchangeVersion::new(15, 2, 1258))
/// #         .with_roles(ServerRoles::MAILBOX),
/// # );
/// let run = Remediation::builder()
///     .directory(Arc::new(dir))
///     .flusher(Arc::new(RecordingFlusher::new()))
///     .users(["alice@corp.example", "bob@corp.example"])
///     .disable()
///     .reset_password(NewPassword::Generate)
///     .accounts_in_flight(16)
///     .build_many()?;
/// // Store the new passwords first: the report never contains them.
/// for (user, password) in run.new_passwords() {
///     # let _ = (user, password);
///     // vault.store(user, password)?;
/// }
/// let plan = run.plan().await?; // every bad user named at once; nothing changed then
/// let report = run.execute(&plan).await;
/// assert_eq!(report.outcome, Outcome::Revoked);
/// assert_eq!(report.servers.len(), 1); // one flush for both users
/// # Ok(()) }
/// ```
pub struct RevokeMany {
    engine: Engine,
    targets: Vec<Target>,
}

impl fmt::Debug for RevokeMany {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokeMany")
            .field("users", &self.targets.len())
            .field("actions", &self.engine.actions)
            .field("accounts_in_flight", &self.engine.accounts_in_flight)
            .field("contain_first", &self.engine.contain_first)
            .field("method", &self.engine.method)
            .field("strategy", &self.engine.strategy)
            .field("new_passwords", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// One user in a [`ManyPlan`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedUser {
    /// The user as given.
    pub user: String,
    /// The account found at plan time (`execute` reads it again and requires the same DN).
    pub account: Option<Account>,
    /// Why this user is skipped (only with [`RemediationBuilder::skip_unresolved`]).
    pub problem: Option<UserProblem>,
    /// The actions for this user, with what an earlier run did (see
    /// [`RemediationBuilder::resume_many`]); empty in plans of versions before 0.3 (then
    /// every action of [`ManyPlan::actions`] is done).
    #[serde(default)]
    pub actions: Vec<PlannedAction>,
}

/// What [`RevokeMany::execute`] will do. Serializable; contains no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ManyPlan {
    /// Every user, in the order given.
    pub users: Vec<PlannedUser>,
    /// The actions applied to every account.
    pub actions: Vec<Action>,
    /// Steps in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Domain controllers whose convergence will be awaited.
    pub domain_controllers: Vec<String>,
    /// Servers, flushed (once for the whole batch) or skipped.
    pub servers: Vec<PlannedServer>,
    /// How caches are flushed.
    pub method: exch_iis::FlushMethod,
    /// Strategy for the servers.
    pub strategy: Strategy,
    /// Accounts in directory work at once ([`RemediationBuilder::accounts_in_flight`]).
    #[serde(alias = "max_in_flight")]
    pub accounts_in_flight: usize,
    /// Every account disabled before any password is reset
    /// ([`RemediationBuilder::contain_first`]).
    #[serde(default)]
    pub contain_first: bool,
    /// Users whose old password will be probed after the flush.
    pub probed_users: usize,
    /// The mailbox step, when a mailbox backend is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<crate::PlannedMailbox>,
    /// The expected impact, one line per flushed server.
    pub impact: Vec<String>,
}

impl ManyPlan {
    /// Users that will be acted on.
    pub fn resolved(&self) -> impl Iterator<Item = &PlannedUser> {
        self.users.iter().filter(|u| u.problem.is_none())
    }

    /// A human summary (one line per skipped user, not per user).
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let n = self.resolved().count();
        let _ = writeln!(
            s,
            "Plan for {n} of {} users: {:?}, {} in flight{}",
            self.users.len(),
            self.actions,
            self.accounts_in_flight,
            if self.contain_first {
                " (contain first: every account disabled, then every password reset)"
            } else {
                ""
            }
        );
        for u in self.users.iter().filter(|u| u.problem.is_some()) {
            if let Some(p) = &u.problem {
                let _ = writeln!(s, "  skip {}: {p}", crate::error::user_line(&u.user));
            }
        }
        let _ = writeln!(
            s,
            "  wait for {} domain controller(s); flush {} server(s) once for all users",
            self.domain_controllers.len(),
            self.servers.iter().filter(|p| p.is_flushed()).count()
        );
        for line in &self.impact {
            let _ = writeln!(s, "  impact: {line}");
        }
        s
    }
}

impl RevokeMany {
    /// Starts a builder (the same as [`Remediation::builder`]; add users with
    /// [`RemediationBuilder::users`] and finish with [`RemediationBuilder::build_many`]).
    pub fn builder() -> RemediationBuilder {
        Remediation::builder()
    }

    /// The users, in the order given.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|u| u.text.as_str())
    }

    /// The password `user` will get (generated per user with [`NewPassword::Generate`], or
    /// given). Store it **before** [`execute`](Self::execute): the report never contains it.
    /// `None` for a user whose reset an earlier run applied (see
    /// [`RemediationBuilder::resume_many`]).
    pub fn new_password(&self, user: &str) -> Option<&SecretString> {
        self.targets
            .iter()
            .find(|u| u.text == user)
            .and_then(|u| u.new_password.as_ref())
    }

    /// Every user with the password they will get, in the order given.
    pub fn new_passwords(&self) -> impl Iterator<Item = (&str, &SecretString)> {
        self.targets
            .iter()
            .filter_map(|u| u.new_password.as_ref().map(|p| (u.text.as_str(), p)))
    }

    /// The cancellation token: accounts and servers not yet started are skipped.
    pub fn cancellation(&self) -> CancellationToken {
        self.engine.cancel.clone()
    }

    /// The dry run: resolves every user (`accounts_in_flight` lookups at a time), the domain
    /// controllers and the servers. Reads only.
    ///
    /// # Errors
    /// [`RemediationError::UnresolvedUsers`] naming **every** user that is invalid, not found,
    /// ambiguous or the same account as an earlier one (unless
    /// [`RemediationBuilder::skip_unresolved`]); [`RemediationError::Directory`] when the
    /// directory cannot answer. Nothing is changed either way.
    pub async fn plan(&self) -> Result<ManyPlan, RemediationError> {
        let resolved = self.engine.resolve(&self.targets).await?;
        self.engine.plan_batch(&self.targets, resolved).await
    }

    /// Runs the plan: every account found again, the directory changes (`accounts_in_flight`
    /// accounts at a time, one modify per account where the backend can, or with
    /// [`RemediationBuilder::contain_first`] every disable, then every reset), convergence of
    /// every changed account, one flush per server, the probes. Never returns early: every
    /// failure is in the report, per user and per server. `Revoked` only when every user is.
    pub async fn execute(&self, plan: &ManyPlan) -> ManyReport {
        let users = plan
            .users
            .iter()
            .enumerate()
            .map(|(i, p)| PlannedTarget {
                user: &p.user,
                target: self.targets.get(i).filter(|t| t.text == p.user),
                dn: p.account.as_ref().map(|a| a.dn.as_str()),
                problem: p.problem.as_ref(),
                actions: if p.actions.is_empty() {
                    plan.actions
                        .iter()
                        .map(|&action| PlannedAction {
                            action,
                            done_earlier: false,
                            already_so: false,
                        })
                        .collect()
                } else {
                    p.actions.clone()
                },
            })
            .collect();
        BatchRun::new(&self.engine, users, &plan.servers, plan.mailbox.as_ref())
            .go()
            .await
    }
}
