//! `execute` of a batch (one user or many): find, change, converge, flush once per server,
//! probe, report.

use chrono::Utc;
use exch_directory::{Account, Dn};
use futures::StreamExt;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

use super::change::Changed;
use super::converge::Awaited;
use super::{Engine, Target};
use crate::deadline::Deadline;
use crate::plan::PlannedServer;
use crate::reasons::{Cause, SkipReason};
use crate::report::ProbeRecord;
use crate::report::{ServerRecord, StepRecord};
use crate::servers::PROBE_SERVERS_IN_FLIGHT;
use crate::{
    Action, Event, ManyReport, Outcome, PlannedAction, ServerOutcome, ServerProbes, Step,
    UserProblem, UserRecord,
};

/// One user of the plan, as the engine gets it.
pub(crate) struct PlannedTarget<'a> {
    /// The user as given.
    pub(crate) user: &'a str,
    /// The run's data for this user; `None` when the plan names a user the run does not have.
    pub(crate) target: Option<&'a Target>,
    /// The account the plan found.
    pub(crate) dn: Option<&'a str>,
    /// Why the plan skips this user.
    pub(crate) problem: Option<&'a UserProblem>,
    /// The actions, with what an earlier run did.
    pub(crate) actions: Vec<PlannedAction>,
}

/// A user whose account was found again, to be changed.
pub(crate) struct Work<'a> {
    /// Index in the plan (and the report).
    pub(crate) i: usize,
    pub(crate) target: &'a Target,
    /// The account as read just before the change.
    pub(crate) account: Account,
    pub(crate) actions: Vec<PlannedAction>,
    /// When `execute` started.
    pub(crate) started: Instant,
}

/// State of one `execute`.
pub(crate) struct BatchRun<'a> {
    e: &'a Engine,
    users: Vec<PlannedTarget<'a>>,
    servers: &'a [PlannedServer],
    mailbox: Option<&'a crate::PlannedMailbox>,
    started: Instant,
    dl: Deadline,
    report: ManyReport,
    /// Per user: what the change step did (`None`: not reached).
    changed: Vec<Option<Changed>>,
    /// Per user: the name to log on with (UPN, else sAMAccountName), once found again.
    logins: Vec<Option<String>>,
    /// Per user: when this run's directory change was applied.
    changed_at: Vec<Option<chrono::DateTime<Utc>>>,
}

impl<'a> BatchRun<'a> {
    pub(crate) fn new(
        e: &'a Engine,
        users: Vec<PlannedTarget<'a>>,
        servers: &'a [PlannedServer],
        mailbox: Option<&'a crate::PlannedMailbox>,
    ) -> Self {
        let records = users
            .iter()
            .map(|u| {
                let mut rec =
                    UserRecord::new(u.user.to_owned(), u.dn.map(str::to_owned), Outcome::Failed);
                match (u.problem, u.target) {
                    (Some(p), _) => rec.add(Cause::Unresolved { problem: p.clone() }),
                    (None, None) => rec.add(Cause::NotInRun),
                    _ => {}
                }
                rec
            })
            .collect();
        let security = e.security_notes();
        for note in &security {
            e.emit(Event::Warning {
                message: format!("SECURITY: {note}"),
            });
        }
        BatchRun {
            e,
            changed: users.iter().map(|_| None).collect(),
            logins: users.iter().map(|_| None).collect(),
            changed_at: users.iter().map(|_| None).collect(),
            users,
            servers,
            mailbox,
            started: Instant::now(),
            dl: Deadline::new(e.deadline),
            report: ManyReport::begin(Outcome::Failed, records, security),
        }
    }

    fn begin(&self, step: Step) -> (chrono::DateTime<Utc>, Instant) {
        self.e.emit(Event::StepStarted { step });
        tracing::info!(?step, "step started");
        (Utc::now(), Instant::now())
    }

    fn end(
        &mut self,
        step: Step,
        begun: (chrono::DateTime<Utc>, Instant),
        ok: bool,
        detail: String,
    ) {
        self.e.emit(Event::StepFinished { step, ok });
        tracing::info!(?step, ok, %detail, "step finished");
        self.report.steps.push(StepRecord {
            step,
            started: begun.0,
            elapsed: begun.1.elapsed(),
            ok,
            detail,
        });
    }

    pub(crate) async fn go(mut self) -> ManyReport {
        let span = tracing::info_span!("execute", users = self.users.len());
        async move {
            let work = self.find_again().await;
            let work = if self.e.cancel.is_cancelled() {
                for w in &work {
                    self.report.users[w.i].add(Cause::CancelledBeforeChange);
                }
                Vec::new()
            } else {
                work
            };
            self.mailbox_step(&work).await;
            self.change(&work).await;
            self.converge().await;
            self.flush().await;
            self.probe().await;
            self.finish()
        }
        .instrument(span)
        .await
    }

    /// Step 1: every planned account read again (the plan may be old): it must be the same
    /// account, and its `pwdLastSet` now is what the convergence rule compares with.
    async fn find_again(&mut self) -> Vec<Work<'a>> {
        let s = self.begin(Step::FindAccount);
        let e = self.e;
        let asked: Vec<(usize, &'a Target, &'a str, &'a exch_directory::UserRef)> = self
            .users
            .iter()
            .enumerate()
            .filter(|(_, u)| u.problem.is_none())
            .filter_map(|(i, u)| {
                let t = u.target?;
                Some((i, t, u.dn?, t.parsed.as_ref().ok()?))
            })
            .collect();
        let refs: Vec<&exch_directory::UserRef> = asked.iter().map(|a| a.3).collect();
        let found = match self.dl.bound(e.find_all(&refs)).await {
            Some(found) => found,
            None => refs
                .iter()
                .map(|_| {
                    Err(crate::reasons::StepError::TimedOut {
                        operation: "find account".into(),
                        after: self.dl.limit,
                        by_deadline: true,
                    })
                })
                .collect(),
        };
        let mut work = Vec::with_capacity(asked.len());
        let mut last = String::new();
        for ((i, target, dn, _), result) in asked.into_iter().zip(found) {
            match result {
                Ok(a) if a.dn.as_str().eq_ignore_ascii_case(dn) => {
                    last = a.dn.to_string();
                    self.report.users[i].account = Some(a.dn.to_string());
                    self.logins[i] = Some(
                        a.user_principal_name
                            .clone()
                            .unwrap_or_else(|| a.sam_account_name.clone()),
                    );
                    work.push(Work {
                        i,
                        target,
                        account: a,
                        actions: self.users[i].actions.clone(),
                        started: self.started,
                    });
                }
                Ok(a) => {
                    let cause = Cause::AccountChanged {
                        planned: dn.to_owned(),
                        now: a.dn.to_string(),
                    };
                    e.emit(Event::Warning {
                        message: format!("{}: {cause}", crate::error::user_line(&target.text)),
                    });
                    last = cause.to_string();
                    self.report.users[i].add(cause);
                }
                Err(err) => {
                    last = err.to_string();
                    self.report.users[i].add(Cause::AccountNotFound {
                        error: err.to_string(),
                    });
                }
            }
        }
        let resolved = self.users.iter().filter(|u| u.problem.is_none()).count();
        let detail = if resolved == 1 {
            last
        } else {
            format!("{}/{resolved} accounts found again as planned", work.len())
        };
        self.end(Step::FindAccount, s, work.len() == resolved, detail);
        work
    }

    /// The mailbox step (when planned): before the directory change, so that a wipe reaches
    /// devices while they can still connect.
    async fn mailbox_step(&mut self, work: &[Work<'a>]) {
        let (Some(admin), Some(planned)) = (self.e.mailbox.as_ref(), self.mailbox) else {
            return;
        };
        let s = self.begin(Step::Mailbox);
        let Some(server) = self
            .servers
            .iter()
            .map(|p| &p.server)
            .find(|x| x.name == planned.server)
        else {
            let why = format!("{} is not a server of the plan", planned.server);
            for w in work {
                self.report.users[w.i].mailbox = Some(crate::MailboxRecord {
                    server: planned.server.clone(),
                    errors: vec![why.clone()],
                    ..Default::default()
                });
            }
            self.end(Step::Mailbox, s, false, why);
            return;
        };
        let records = self.e.mailbox_all(self.dl, admin, server, work).await;
        let mut complete = 0;
        let (mut wiped, mut locked, mut rules) = (0, 0, 0);
        for (w, r) in work.iter().zip(records) {
            if super::mailbox::incomplete(planned.actions, &r).is_empty() {
                complete += 1;
            }
            wiped += r
                .wipe
                .iter()
                .flat_map(|x| &x.devices)
                .filter(|x| x.is_done())
                .count();
            locked += usize::from(r.locked());
            rules += r.forwarding.as_ref().map_or(0, |f| f.rules.len());
            self.report.users[w.i].mailbox = Some(r);
        }
        let detail = format!(
            "{complete}/{} mailboxes as asked through {}: {locked} locked down, {wiped} device wipe(s) sent, {rules} inbox rule(s) of concern found",
            work.len(),
            server.name
        );
        self.end(Step::Mailbox, s, complete == work.len(), detail);
    }

    /// Step 2: the directory changes.
    async fn change(&mut self, work: &[Work<'a>]) {
        let s = self.begin(Step::ChangeDirectory);
        let e = self.e;
        let results = e.change_all(self.dl, work).await;
        let mut fully = 0;
        let mut last_disabled = Some(self.started);
        for (w, c) in work.iter().zip(results) {
            if c.actions
                .iter()
                .all(|a| a.outcome.is_some() || a.done_earlier)
            {
                fully += 1;
            }
            last_disabled = last_disabled.zip(c.disabled_at).map(|(a, b)| a.max(b));
            self.report.users[w.i].actions = c.actions.clone();
            if c.actions.iter().any(|a| a.outcome.is_some()) {
                self.changed_at[w.i] = Some(Utc::now());
            }
            self.changed[w.i] = Some(c);
        }
        let resolved = self.users.iter().filter(|u| u.problem.is_none()).count();
        let disables = e.actions.contains(&Action::Disable);
        if disables && work.len() == resolved && !work.is_empty() {
            self.report.contained_after = last_disabled.map(|t| t - self.started);
        }
        let changed = self.changed_count();
        let contained = match (disables, self.report.contained_after) {
            (false, _) => String::new(),
            (true, Some(d)) => format!("; every account disabled after {:.2}s", d.as_secs_f64()),
            (true, None) => "; NOT every account disabled".to_owned(),
        };
        let detail = format!(
            "{fully}/{resolved} accounts fully changed ({changed} with at least one change{}){contained}",
            if e.contain_first {
                "; contain first: every disable, then every reset"
            } else {
                ""
            }
        );
        self.end(
            Step::ChangeDirectory,
            s,
            fully == resolved && resolved > 0,
            detail,
        );
    }

    fn changed_count(&self) -> usize {
        self.changed
            .iter()
            .filter(|c| c.as_ref().is_some_and(|c| c.expected.is_some()))
            .count()
    }

    /// Step 3: every changed account on every DC.
    async fn converge(&mut self) {
        let s = self.begin(Step::Converge);
        let awaited: Vec<(usize, Awaited<'_>)> = self
            .changed
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let expected = c.as_ref()?.expected?;
                let dn = Dn(self.report.users[i].account.clone()?);
                Some((
                    i,
                    Awaited {
                        user: self.users[i].user,
                        dn,
                        expected,
                    },
                ))
            })
            .collect();
        let (index, targets): (Vec<usize>, Vec<Awaited<'_>>) = awaited.into_iter().unzip();
        let records = self.e.converge_all(self.dl, &targets).await;
        drop(targets);
        let mut converged = 0;
        let mut dcs = 0;
        for (i, recs) in index.iter().zip(records) {
            dcs = dcs.max(recs.len());
            if recs.iter().all(|d| d.converged) {
                converged += 1;
            }
            self.report.users[*i].domain_controllers = recs;
        }
        let changed = index.len();
        self.end(
            Step::Converge,
            s,
            converged == changed && changed > 0,
            format!(
                "{converged}/{changed} changed accounts show the change on every DC ({dcs} DCs)"
            ),
        );
    }

    /// Step 4: one flush per server for the whole batch.
    async fn flush(&mut self) {
        let s = self.begin(Step::Flush);
        if self.changed_count() == 0 {
            self.report.servers = self
                .servers
                .iter()
                .map(|p| ServerRecord {
                    server: p.server.name.clone(),
                    fqdn: p.server.fqdn.clone(),
                    outcome: ServerOutcome::Skipped {
                        reason: p.skip.clone().unwrap_or(SkipReason::NoDirectoryChange),
                    },
                    probes: Vec::new(),
                    elapsed: Duration::ZERO,
                })
                .collect();
        } else {
            self.report.servers =
                crate::servers::flush_servers(self.e, self.servers, self.dl).await;
        }
        let attempted: Vec<&ServerRecord> = self
            .report
            .servers
            .iter()
            .filter(|x| !matches!(x.outcome, ServerOutcome::Skipped { .. }))
            .collect();
        let proven = attempted.iter().filter(|x| x.outcome.is_proven()).count();
        let detail = format!(
            "{proven}/{} servers proven flushed (one flush each for every user)",
            attempted.len()
        );
        let ok = self.changed_count() > 0 && proven == attempted.len();
        self.end(Step::Flush, s, ok, detail);
    }

    /// Step 5: each changed user's old password on every proven server; at most
    /// [`PROBE_SERVERS_IN_FLIGHT`] (user, server) pairs at once (each probes its protocols
    /// together), never more than the strategy flushes at once.
    async fn probe(&mut self) {
        let Some(prober) = self.e.prober.as_deref() else {
            return;
        };
        let e = self.e;
        let dl = self.dl;
        let proven: Vec<&PlannedServer> = self
            .servers
            .iter()
            .filter(|p| {
                self.report
                    .servers
                    .iter()
                    .any(|s| s.server == p.server.name && s.outcome.is_proven())
            })
            .collect();
        if !self
            .users
            .iter()
            .any(|u| u.target.is_some_and(|t| t.old_password.is_some()))
        {
            return;
        }
        let s = self.begin(Step::Probe);
        let mut jobs = Vec::new();
        for (i, c) in self.changed.iter().enumerate() {
            if c.as_ref().and_then(|c| c.expected).is_none() {
                continue;
            }
            let old = self.users[i].target.and_then(|t| t.old_password.as_ref());
            let (Some(old), Some(login)) = (old, self.logins[i].as_deref()) else {
                continue;
            };
            for p in &proven {
                jobs.push((i, *p, login, old));
            }
        }
        // Futures are created up front (lazily polled): keeps `execute` Send.
        let futs: Vec<_> = jobs
            .into_iter()
            .map(|(i, p, login, old)| async move {
                let probes = crate::servers::probe_server(e, prober, p, login, old, dl).await;
                (
                    i,
                    ServerProbes {
                        server: p.server.name.clone(),
                        probes,
                    },
                )
            })
            .collect();
        let done: Vec<(usize, ServerProbes)> = futures::stream::iter(futs)
            .buffer_unordered(e.strategy.concurrency().clamp(1, PROBE_SERVERS_IN_FLIGHT))
            .collect()
            .await;
        let mut all = Vec::new();
        let mut proven = true;
        for (i, sp) in done {
            proven &= !sp.probes.iter().any(ProbeRecord::is_open);
            all.extend(sp.probes.iter().cloned());
            self.report.users[i].probes.push(sp);
        }
        for u in &mut self.report.users {
            u.probes
                .sort_by_key(|sp| self.servers.iter().position(|p| p.server.name == sp.server));
        }
        self.end(Step::Probe, s, proven, crate::report::probe_tally(&all));
    }

    /// Per-user and overall outcomes.
    fn finish(mut self) -> ManyReport {
        let e = self.e;
        let accepted_on = |server: &str, users: &[UserRecord]| {
            users.iter().any(|u| {
                u.probes
                    .iter()
                    .any(|sp| sp.server == server && sp.probes.iter().any(ProbeRecord::is_open))
            })
        };
        let retry: Vec<String> = self
            .report
            .servers
            .iter()
            .filter(|srv| match &srv.outcome {
                ServerOutcome::Flushed { .. } => accepted_on(&srv.server, &self.report.users),
                ServerOutcome::Skipped { reason } => reason.is_retried(),
                _ => true,
            })
            .map(|srv| srv.server.clone())
            .collect();
        self.report.servers_to_retry = retry;
        let flushed_any = self.report.servers.iter().any(|s| {
            s.outcome.is_proven()
                || matches!(
                    &s.outcome,
                    ServerOutcome::Skipped {
                        reason: SkipReason::ProvenEarlier
                    }
                )
        });
        let not_proven =
            (!self.report.servers_to_retry.is_empty()).then(|| Cause::ServersNotProven {
                servers: self.report.servers_to_retry.clone(),
            });
        let judge = UserJudge {
            not_proven: not_proven.clone(),
            flushed_any,
            cancelled: e.cancel.is_cancelled(),
            mailbox: self.mailbox.map(|m| m.actions),
        };
        for ((u, changed), at) in self
            .report
            .users
            .iter_mut()
            .zip(&self.changed)
            .zip(&self.changed_at)
        {
            judge.judge(u, changed.as_ref().map(|c| c.expected));
            if changed.as_ref().is_some_and(|c| c.expected.is_some()) {
                u.residual = crate::containment::residual(u.mailbox.as_ref(), *at);
            }
        }
        for u in &self.report.users {
            e.emit(Event::UserFinished {
                user: u.user.clone(),
                outcome: u.outcome,
            });
        }
        self.report.users_failed = self
            .report
            .users
            .iter()
            .filter(|u| u.outcome != Outcome::Revoked)
            .map(|u| u.user.clone())
            .collect();
        let changed = self.changed_count() > 0;
        if !changed {
            self.report.add(Cause::NoChange);
        }
        if !self.report.users_failed.is_empty() {
            let mut first: Vec<String> = self
                .report
                .users_failed
                .iter()
                .take(20)
                .map(|u| crate::error::user_line(u))
                .collect();
            first.sort_unstable();
            self.report.add(Cause::UsersNotRevoked {
                count: self.report.users_failed.len(),
                total: self.report.users.len(),
                first,
            });
        }
        if let Some(c) = not_proven {
            self.report.add(c);
        } else if !flushed_any && changed {
            self.report.add(Cause::NothingFlushed);
        }
        self.report.cancelled = e.cancel.is_cancelled();
        if self.report.cancelled {
            self.report.add(Cause::Cancelled);
        }
        self.report.outcome = if !changed {
            Outcome::Failed
        } else if self.report.causes.is_empty() {
            Outcome::Revoked
        } else {
            Outcome::Partial
        };
        self.report.elapsed = self.started.elapsed();
        self.report
    }
}

/// Judges each user's outcome from its own records and what the whole run found (servers
/// not proven, nothing flushed, cancellation, the mailbox step asked for).
struct UserJudge {
    /// Servers not proven flushed, when there are any.
    not_proven: Option<Cause>,
    /// Whether any server is proven flushed (now or by an earlier run).
    flushed_any: bool,
    cancelled: bool,
    /// The mailbox step's actions, when it was planned.
    mailbox: Option<crate::MailboxActions>,
}

impl UserJudge {
    /// One user's causes and outcome: `Failed` when nothing was applied (`changed` is
    /// `None` when the change step was not reached, `Some(None)` when every action failed),
    /// `Revoked` when nothing stands in the way, `Partial` otherwise.
    fn judge(&self, u: &mut UserRecord, changed: Option<Option<super::change::Expected>>) {
        let Some(expected) = changed else {
            if u.causes.is_empty() {
                u.add(Cause::NoChange);
            }
            u.outcome = Outcome::Failed;
            return;
        };
        let failed: Vec<Cause> = u
            .actions
            .iter()
            .filter(|a| a.outcome.is_none() && !a.done_earlier)
            .map(|a| Cause::ActionFailed {
                action: a.action,
                error: a.error.clone().unwrap_or_else(|| "not applied".into()),
            })
            .collect();
        for c in failed {
            u.add(c);
        }
        if expected.is_none() {
            u.add(Cause::NoChange);
            u.outcome = Outcome::Failed;
            return;
        }
        let waiting: Vec<String> = u
            .domain_controllers
            .iter()
            .filter(|d| !d.converged)
            .map(|d| d.dc.clone())
            .collect();
        if !waiting.is_empty() {
            u.add(Cause::NotConverged {
                shown: u.domain_controllers.len() - waiting.len(),
                total: u.domain_controllers.len(),
                waiting,
            });
        }
        if let Some(c) = &self.not_proven {
            u.add(c.clone());
        } else if !self.flushed_any {
            u.add(Cause::NothingFlushed);
        }
        let endpoints: Vec<String> = u
            .probes
            .iter()
            .flat_map(|sp| {
                sp.probes
                    .iter()
                    .filter(|p| p.is_open())
                    .map(move |p| format!("{} {:?}", sp.server, p.protocol))
            })
            .collect();
        if !endpoints.is_empty() {
            u.add(Cause::NotRefused { endpoints });
        }
        let probed = u.probes.iter().flat_map(|sp| &sp.probes);
        if probed.clone().next().is_some() && !probed.clone().any(|p| p.applicable) {
            u.add(Cause::NothingProbed);
        }
        if let Some(actions) = self.mailbox {
            let what = match &u.mailbox {
                Some(r) => super::mailbox::incomplete(actions, r),
                None => vec!["the mailbox step did not run".into()],
            };
            if !what.is_empty() {
                u.add(Cause::MailboxIncomplete { what });
            }
        }
        if self.cancelled {
            u.add(Cause::Cancelled);
        }
        u.outcome = if u.causes.is_empty() {
            Outcome::Revoked
        } else {
            Outcome::Partial
        };
    }
}
