//! Many users at once (bulk incident response): `Remediation::builder().users(..)` →
//! [`RemediationBuilder::build_many`] → [`RevokeMany`] → [`plan`](RevokeMany::plan) →
//! [`execute`](RevokeMany::execute) → one [`ManyReport`].
//!
//! The directory work runs with bounded concurrency ([`RemediationBuilder::max_in_flight`]);
//! then convergence is awaited for every account, then **one** flush per server clears the
//! cached logons of every user of the batch at once, then the optional probes run per user.
//! With [`RemediationBuilder::contain_first`] the directory work runs in two phases (every
//! account disabled, then every password reset) so that the incident is contained sooner.

mod change;
mod report;
mod run;

pub use report::{ManyReport, ServerProbes, UserProblem, UserRecord};

use exch_directory::{Account, DirectoryError, UserRef};
use futures::StreamExt;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::plan::PlannedServer;
use crate::{
    Action, NewPassword, Prober, Remediation, RemediationBuilder, RemediationError, Strategy,
};

/// Users per [`exch_directory::Directory::find_accounts`] call in `plan`.
const FIND_CHUNK: usize = 100;

/// Default of [`RemediationBuilder::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;

/// The many-user part of a [`RemediationBuilder`].
#[derive(Default)]
pub(crate) struct ManyInput {
    pub(crate) users: Vec<String>,
    passwords: Vec<(String, SecretString)>,
    old_passwords: Vec<(String, SecretString)>,
    prober: Option<Arc<dyn Prober>>,
    max_in_flight: Option<usize>,
    skip_unresolved: bool,
    pub(crate) contain_first: bool,
}

impl fmt::Debug for ManyInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManyInput")
            .field("users", &self.users.len())
            .field("given_passwords", &self.passwords.len())
            .field("old_passwords", &self.old_passwords.len())
            .field("max_in_flight", &self.max_in_flight)
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

    /// With [`users`](Self::users): at most this many accounts in directory work at once
    /// (lookups, changes, convergence reads; default [`DEFAULT_MAX_IN_FLIGHT`]). Servers
    /// follow [`strategy`](Self::strategy) as usual.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.many.max_in_flight = Some(n);
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
    /// (disable-only modifies, [`max_in_flight`](Self::max_in_flight) at a time), **phase 2**
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
    /// [`resume`](Self::resume), [`probe_old_password`](Self::probe_old_password) (use
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
        let max_in_flight = many.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        if max_in_flight == 0 {
            return Err(RemediationError::invalid(
                "max_in_flight",
                "must be at least 1",
            ));
        }
        // Everything shared with a one-user run is validated by `build` on a stand-in user.
        self.user = Some("revoke-many".to_owned());
        let template = self.build()?;
        if template.resume.is_some() {
            return Err(RemediationError::invalid(
                "resume",
                "not supported with .users(..): run again with the users left (see ManyReport::users_failed)",
            ));
        }
        if template.probe.is_some() {
            return Err(RemediationError::invalid(
                "probe_old_password",
                "one old password for many users: use .probe_old_passwords(prober, [(user, old), ..])",
            ));
        }
        let reset = template.actions.contains(&Action::ResetPassword);
        if many.contain_first && !(reset && template.actions.contains(&Action::Disable)) {
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
        let users = many
            .users
            .into_iter()
            .map(|text| {
                let new_password = match given.get(&text) {
                    Some(p) => Some(p.clone()),
                    None if generate => Some(exch_directory::generate_password()),
                    None if reset => template.new_password.clone(),
                    None => None,
                };
                ManyUser {
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
            template,
            users,
            max_in_flight,
            skip_unresolved: many.skip_unresolved,
            contain_first: many.contain_first,
            prober: many.prober,
        })
    }
}

/// One user of a [`RevokeMany`].
struct ManyUser {
    text: String,
    parsed: Result<UserRef, String>,
    new_password: Option<SecretString>,
    old_password: Option<SecretString>,
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
///     .max_in_flight(16)
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
    template: Remediation,
    users: Vec<ManyUser>,
    max_in_flight: usize,
    skip_unresolved: bool,
    contain_first: bool,
    prober: Option<Arc<dyn Prober>>,
}

impl fmt::Debug for RevokeMany {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokeMany")
            .field("users", &self.users.len())
            .field("actions", &self.template.actions)
            .field("max_in_flight", &self.max_in_flight)
            .field("contain_first", &self.contain_first)
            .field("method", &self.template.method)
            .field("strategy", &self.template.strategy)
            .field("new_passwords", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// One user in a [`ManyPlan`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedUser {
    /// The user as given.
    pub user: String,
    /// The account found (as read at plan time: `execute` guards its `userAccountControl`
    /// change with this value and falls back to a fresh read when it changed).
    pub account: Option<Account>,
    /// Why this user is skipped (only with [`RemediationBuilder::skip_unresolved`]).
    pub problem: Option<UserProblem>,
}

/// What [`RevokeMany::execute`] will do. Serializable; contains no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManyPlan {
    /// Every user, in the order given.
    pub users: Vec<PlannedUser>,
    /// The actions applied to every account.
    pub actions: Vec<Action>,
    /// Domain controllers whose convergence will be awaited.
    pub domain_controllers: Vec<String>,
    /// Servers, flushed (once for the whole batch) or skipped.
    pub servers: Vec<PlannedServer>,
    /// How caches are flushed.
    pub method: exch_iis::FlushMethod,
    /// Strategy for the servers.
    pub strategy: Strategy,
    /// Accounts in directory work at once.
    pub max_in_flight: usize,
    /// Every account disabled before any password is reset
    /// ([`RemediationBuilder::contain_first`]).
    #[serde(default)]
    pub contain_first: bool,
    /// Users whose old password will be probed after the flush.
    pub probed_users: usize,
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
            self.max_in_flight,
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
        self.users.iter().map(|u| u.text.as_str())
    }

    /// The password `user` will get (generated per user with [`NewPassword::Generate`], or
    /// given). Store it **before** [`execute`](Self::execute): the report never contains it.
    pub fn new_password(&self, user: &str) -> Option<&SecretString> {
        self.users
            .iter()
            .find(|u| u.text == user)
            .and_then(|u| u.new_password.as_ref())
    }

    /// Every user with the password they will get, in the order given.
    pub fn new_passwords(&self) -> impl Iterator<Item = (&str, &SecretString)> {
        self.users
            .iter()
            .filter_map(|u| u.new_password.as_ref().map(|p| (u.text.as_str(), p)))
    }

    /// The cancellation token: accounts and servers not yet started are skipped.
    pub fn cancellation(&self) -> CancellationToken {
        self.template.cancel.clone()
    }

    /// The dry run: resolves every user (at most `max_in_flight` lookups at a time), the
    /// domain controllers and the servers. Reads only.
    ///
    /// # Errors
    /// [`RemediationError::UnresolvedUsers`] naming **every** user that is invalid, not found,
    /// ambiguous or the same account as an earlier one (unless
    /// [`RemediationBuilder::skip_unresolved`]); [`RemediationError::Directory`] when the
    /// directory cannot answer. Nothing is changed either way.
    pub async fn plan(&self) -> Result<ManyPlan, RemediationError> {
        let span = tracing::info_span!("plan_many", users = self.users.len());
        async {
            let r = &self.template;
            // Lookups in chunks (one search per chunk where the backend can), chunks
            // `max_in_flight` at a time; transient failures are retried one user at a time.
            let valid: Vec<(usize, &UserRef)> = self
                .users
                .iter()
                .enumerate()
                .filter_map(|(i, u)| u.parsed.as_ref().ok().map(|p| (i, p)))
                .collect();
            // Futures are created up front (lazily polled): keeps `plan` Send.
            let chunks: Vec<_> = valid
                .chunks(FIND_CHUNK)
                .map(|chunk| async move {
                    let refs: Vec<UserRef> = chunk.iter().map(|(_, u)| (*u).clone()).collect();
                    let limit = r.timeouts.directory.saturating_mul(4);
                    let results =
                        match tokio::time::timeout(limit, r.directory.find_accounts(&refs)).await {
                            Ok(v) if v.len() == refs.len() => v,
                            _ => refs
                                .iter()
                                .map(|_| {
                                    Err(DirectoryError::Timeout {
                                        operation: format!("find {} accounts", refs.len()),
                                        url: "(directory)".into(),
                                        after: limit,
                                    })
                                })
                                .collect(),
                        };
                    let mut out = Vec::with_capacity(chunk.len());
                    for (&(i, user), result) in chunk.iter().zip(results) {
                        let result = match result {
                            Err(e) if e.is_transient() => {
                                r.dir_retry("find account", || r.directory.find_account(user))
                                    .await
                            }
                            other => other,
                        };
                        out.push((i, result));
                    }
                    out
                })
                .collect();
            let mut found: Vec<Option<Result<Account, DirectoryError>>> =
                self.users.iter().map(|_| None).collect();
            let done: Vec<Vec<(usize, Result<Account, DirectoryError>)>> =
                futures::stream::iter(chunks)
                    .buffered(self.max_in_flight)
                    .collect()
                    .await;
            for (i, result) in done.into_iter().flatten() {
                found[i] = Some(result);
            }
            let found: Vec<Result<Result<Account, UserProblem>, DirectoryError>> = self
                .users
                .iter()
                .zip(found)
                .map(|(u, result)| match (&u.parsed, result) {
                    (Err(e), _) => Ok(Err(UserProblem::Invalid { reason: e.clone() })),
                    (Ok(_), None) => Ok(Err(UserProblem::Invalid {
                        reason: "not looked up".into(),
                    })),
                    (Ok(_), Some(Ok(a))) => Ok(Ok(a)),
                    (Ok(_), Some(Err(DirectoryError::NotFound { what }))) => {
                        Ok(Err(UserProblem::NotFound { detail: what }))
                    }
                    (Ok(_), Some(Err(e @ DirectoryError::Ambiguous { .. }))) => {
                        Ok(Err(UserProblem::Ambiguous {
                            detail: e.to_string(),
                        }))
                    }
                    (Ok(_), Some(Err(e @ DirectoryError::InvalidInput { .. }))) => {
                        Ok(Err(UserProblem::Invalid {
                            reason: e.to_string(),
                        }))
                    }
                    (Ok(_), Some(Err(e))) => Err(e),
                })
                .collect();
            let mut first_of: HashMap<String, &str> = HashMap::new();
            let mut users = Vec::with_capacity(found.len());
            for (u, result) in self.users.iter().zip(found) {
                let (account, problem) = match result? {
                    Ok(a) => match first_of.get(&a.dn.as_str().to_ascii_lowercase()) {
                        Some(first) => (
                            None,
                            Some(UserProblem::Duplicate {
                                of: (*first).to_owned(),
                                dn: a.dn.to_string(),
                            }),
                        ),
                        None => {
                            first_of.insert(a.dn.as_str().to_ascii_lowercase(), &u.text);
                            (Some(a), None)
                        }
                    },
                    Err(p) => (None, Some(p)),
                };
                users.push(PlannedUser {
                    user: u.text.clone(),
                    account,
                    problem,
                });
            }
            let problems: Vec<(String, UserProblem)> = users
                .iter()
                .filter_map(|u| u.problem.clone().map(|p| (u.user.clone(), p)))
                .collect();
            if !problems.is_empty() && !self.skip_unresolved {
                return Err(RemediationError::UnresolvedUsers {
                    total: users.len(),
                    problems,
                });
            }
            self.plan_rest(users).await
        }
        .instrument(span)
        .await
    }

    /// The DCs and servers of the plan (as for one user).
    async fn plan_rest(&self, users: Vec<PlannedUser>) -> Result<ManyPlan, RemediationError> {
        let r = &self.template;
        let dcs = r.dir(r.directory.domain_controllers()).await?;
        let found = match &r.selection.given {
            Some(given) => given.clone(),
            None => r.dir(r.directory.exchange_servers()).await?,
        };
        let mut servers: Vec<PlannedServer> = found.into_iter().map(|s| r.plan_server(s)).collect();
        servers.sort_by(|a, b| a.server.name.cmp(&b.server.name));
        if let Some(missing) = r.selection.include.iter().find(|name| {
            !servers
                .iter()
                .any(|p| p.server.name.eq_ignore_ascii_case(name))
        }) {
            return Err(RemediationError::invalid(
                format!("server {missing:?}"),
                "asked for with include_server, but the directory has no such Exchange server",
            ));
        }
        let impact = servers
            .iter()
            .filter(|p| p.is_flushed())
            .map(|p| r.impact_line(p))
            .collect();
        let probed_users = users
            .iter()
            .zip(&self.users)
            .filter(|(p, u)| p.problem.is_none() && u.old_password.is_some())
            .count();
        Ok(ManyPlan {
            users,
            actions: r.actions.clone(),
            domain_controllers: dcs.iter().map(|d| d.name.clone()).collect(),
            servers,
            method: r.method.clone(),
            strategy: r.strategy,
            max_in_flight: self.max_in_flight,
            contain_first: self.contain_first,
            probed_users: if self.prober.is_some() {
                probed_users
            } else {
                0
            },
            impact,
        })
    }

    /// Runs the plan: directory changes (at most `max_in_flight` accounts at a time, one
    /// modify per account where the backend can, or with
    /// [`RemediationBuilder::contain_first`] every disable, then every reset), convergence of every changed account, one
    /// flush per server, the probes. Never returns early: every failure is in the report, per
    /// user and per server. `Revoked` only when every user is.
    pub async fn execute(&self, plan: &ManyPlan) -> ManyReport {
        let span = tracing::info_span!("execute_many", users = plan.users.len());
        run::ManyRun::new(self, plan).go().instrument(span).await
    }
}
