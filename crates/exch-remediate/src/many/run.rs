//! `RevokeMany::execute`: change, converge, flush once, probe, report.

use chrono::Utc;
use exch_directory::{Account, Dn, DomainController, UserRef};
use futures::StreamExt;
use std::time::{Duration, Instant};

use super::change::{change_all, Expected};
use super::report::{ManyReport, ServerProbes, UserRecord};
use super::{ManyPlan, ManyUser, RevokeMany};
use crate::deadline::{Deadline, DEADLINE_SKIP};
use crate::report::{DcRecord, ServerRecord, StepRecord};
use crate::servers::{flush_servers, probe_server};
use crate::{Action, Event, Outcome, ServerOutcome, Step};

/// Accounts per [`exch_directory::Directory::accounts_on`] call.
const READ_CHUNK: usize = 100;

/// State of one `RevokeMany::execute`.
pub(super) struct ManyRun<'a> {
    m: &'a RevokeMany,
    plan: &'a ManyPlan,
    started: Instant,
    dl: Deadline,
    report: ManyReport,
    /// Per user (index as in the plan): what convergence must see, when something was applied.
    expected: Vec<Option<Expected>>,
}

impl<'a> ManyRun<'a> {
    pub(super) fn new(m: &'a RevokeMany, plan: &'a ManyPlan) -> Self {
        let r = &m.template;
        let users = plan
            .users
            .iter()
            .map(|u| UserRecord {
                user: u.user.clone(),
                account: u.account.as_ref().map(|a| a.dn.to_string()),
                outcome: Outcome::Failed,
                actions: Vec::new(),
                domain_controllers: Vec::new(),
                probes: Vec::new(),
                reasons: u.problem.iter().map(|p| format!("skipped: {p}")).collect(),
            })
            .collect();
        ManyRun {
            m,
            plan,
            started: Instant::now(),
            dl: Deadline::new(r.deadline),
            expected: vec![None; plan.users.len()],
            report: ManyReport {
                outcome: Outcome::Failed,
                started: Utc::now(),
                elapsed: Duration::ZERO,
                steps: Vec::new(),
                users,
                servers: Vec::new(),
                users_failed: Vec::new(),
                servers_to_retry: Vec::new(),
                reasons: Vec::new(),
                cancelled: false,
                contained_after: None,
                security: r.security_notes(m.prober.as_deref()),
            },
        }
    }

    /// The users the plan resolved, with the builder's data for each.
    fn work(&self) -> Vec<(usize, &'a ManyUser, &'a Account)> {
        let m = self.m;
        self.plan
            .users
            .iter()
            .enumerate()
            .filter(|(_, p)| p.problem.is_none())
            .filter_map(|(i, p)| {
                let user = m.users.get(i).filter(|u| u.text == p.user)?;
                Some((i, user, p.account.as_ref()?))
            })
            .collect()
    }

    fn step(
        &mut self,
        step: Step,
        begun: (chrono::DateTime<Utc>, Instant),
        ok: bool,
        detail: String,
    ) {
        let r = &self.m.template;
        r.emit(Event::StepFinished { step, ok });
        tracing::info!(?step, ok, %detail, "step finished");
        self.report.steps.push(StepRecord {
            step,
            started: begun.0,
            elapsed: begun.1.elapsed(),
            ok,
            detail,
        });
    }

    fn begin(&self, step: Step) -> (chrono::DateTime<Utc>, Instant) {
        self.m.template.emit(Event::StepStarted { step });
        (Utc::now(), Instant::now())
    }

    pub(super) async fn go(mut self) -> ManyReport {
        let work = self.work();
        let mismatched = self
            .plan
            .users
            .iter()
            .filter(|u| u.problem.is_none())
            .count()
            - work.len();
        if mismatched > 0 {
            self.report.reasons.push(format!(
                "{mismatched} user(s) of the plan are not users of this run (a plan of another run?); plan again"
            ));
        }

        // 1. Change the directory, `max_in_flight` accounts at a time (with contain_first:
        // every disable, then every reset).
        let s = self.begin(Step::ChangeDirectory);
        let results = change_all(self.m, self.dl, &work).await;
        let mut fully = 0;
        let mut last_disabled = Some(self.started);
        for c in results {
            if c.actions.iter().all(|a| a.outcome.is_some()) {
                fully += 1;
            }
            last_disabled = last_disabled.zip(c.disabled_at).map(|(a, b)| a.max(b));
            self.report.users[c.i].actions = c.actions;
            self.expected[c.i] = c.expected;
        }
        // Contained: every resolved account of the plan is disabled (none when one is not, or
        // when the run does not disable).
        let disables = self.m.template.actions.contains(&Action::Disable);
        if disables && mismatched == 0 && !work.is_empty() {
            self.report.contained_after = last_disabled.map(|t| t - self.started);
        }
        let changed = self.expected.iter().filter(|e| e.is_some()).count();
        let contained = match (disables, self.report.contained_after) {
            (false, _) => String::new(),
            (true, Some(d)) => format!("; every account disabled after {:.2}s", d.as_secs_f64()),
            (true, None) => "; NOT every account disabled".to_owned(),
        };
        self.step(
            Step::ChangeDirectory,
            s,
            fully == work.len() && mismatched == 0,
            format!(
                "{fully}/{} accounts fully changed ({changed} with at least one change{}){contained}",
                self.plan.users.len(),
                if self.m.contain_first {
                    "; contain first: every disable, then every reset"
                } else {
                    ""
                }
            ),
        );

        // 2. Converge: every changed account on every DC.
        let s = self.begin(Step::Converge);
        let converged = self.converge_all().await;
        self.step(
            Step::Converge,
            s,
            converged == changed,
            format!("{converged}/{changed} changed accounts show the change on every DC"),
        );

        // 3. One flush per server for the whole batch.
        let s = self.begin(Step::Flush);
        let r = &self.m.template;
        if changed == 0 {
            self.report.servers = self
                .plan
                .servers
                .iter()
                .map(|p| {
                    skipped(
                        p,
                        p.skip
                            .as_deref()
                            .unwrap_or("no directory change was applied"),
                    )
                })
                .collect();
        } else {
            self.report.servers = flush_servers(r, &self.plan.servers, self.dl).await;
        }
        let attempted: Vec<&ServerRecord> = self
            .report
            .servers
            .iter()
            .filter(|x| !matches!(x.outcome, ServerOutcome::Skipped { .. }))
            .collect();
        let proven = attempted.iter().filter(|x| x.outcome.is_proven()).count();
        let detail = format!(
            "{proven}/{} servers proven flushed (one flush each for all users)",
            attempted.len()
        );
        self.step(
            Step::Flush,
            s,
            changed > 0 && proven == attempted.len(),
            detail,
        );

        // 4. Probes per user.
        if self.m.prober.is_some() && self.plan.probed_users > 0 {
            let s = self.begin(Step::Probe);
            let (refused, total) = self.probe_all().await;
            self.step(
                Step::Probe,
                s,
                refused == total,
                format!("old credentials refused on {refused}/{total} endpoints"),
            );
        }
        self.finish()
    }

    /// Reads every changed account on every DC until it shows the change (or the convergence
    /// timeout): per DC, the accounts not yet converged are read in chunks
    /// ([`exch_directory::Directory::accounts_on`]), `max_in_flight` chunks at a time, every
    /// `converge_poll`. Returns how many accounts converged on every DC.
    async fn converge_all(&mut self) -> usize {
        let r = &self.m.template;
        let targets: Vec<(usize, Dn, Expected)> = self
            .expected
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let dn = self.plan.users[i].account.as_ref()?.dn.clone();
                e.map(|e| (i, dn, e))
            })
            .collect();
        if targets.is_empty() {
            return 0;
        }
        let dcs: Vec<Option<DomainController>> =
            match self.dl.dir(r.dir(r.directory.domain_controllers())).await {
                Ok(d) if d.is_empty() => vec![None],
                Ok(d) => d.into_iter().map(Some).collect(),
                Err(e) => {
                    for (i, _, _) in &targets {
                        self.report.users[*i].domain_controllers.push(DcRecord {
                            dc: "(discovery)".into(),
                            converged: false,
                            after: None,
                            reads: 0,
                            error: Some(format!("cannot list domain controllers: {e}")),
                        });
                    }
                    return 0;
                }
            };
        let t0 = Instant::now();
        let deadline = self.dl.cap_instant(t0 + r.timeouts.converge);
        let m = self.m;
        let per_dc = futures::future::join_all(
            dcs.iter()
                .map(|dc| converge_on(m, dc.as_ref(), &targets, t0, deadline)),
        )
        .await;
        for records in per_dc {
            for (k, rec) in records.into_iter().enumerate() {
                self.report.users[targets[k].0].domain_controllers.push(rec);
            }
        }
        targets
            .iter()
            .filter(|(i, _, _)| {
                self.report.users[*i]
                    .domain_controllers
                    .iter()
                    .all(|d| d.converged)
            })
            .count()
    }

    /// Probes every proven server with each listed user's old password.
    async fn probe_all(&mut self) -> (usize, usize) {
        let Some(prober) = self.m.prober.as_deref() else {
            return (0, 0);
        };
        let r = &self.m.template;
        let dl = self.dl;
        let proven: Vec<&crate::plan::PlannedServer> = self
            .plan
            .servers
            .iter()
            .filter(|p| {
                self.report
                    .servers
                    .iter()
                    .any(|s| s.server == p.server.name && s.outcome.is_proven())
            })
            .collect();
        let jobs: Vec<_> = self
            .work()
            .into_iter()
            .filter(|(i, _, _)| self.expected[*i].is_some())
            .filter_map(|(i, user, account)| {
                let old = user.old_password.as_ref()?;
                let login = account
                    .user_principal_name
                    .clone()
                    .unwrap_or_else(|| account.sam_account_name.clone());
                let proven = &proven;
                Some(async move {
                    let mut out = Vec::new();
                    for p in proven {
                        let probes = probe_server(r, prober, p, &login, old, dl).await;
                        out.push(ServerProbes {
                            server: p.server.name.clone(),
                            probes,
                        });
                    }
                    (i, out)
                })
            })
            .collect();
        let done: Vec<(usize, Vec<ServerProbes>)> = futures::stream::iter(jobs)
            .buffer_unordered(self.m.max_in_flight)
            .collect()
            .await;
        let (mut refused, mut total) = (0, 0);
        for (i, probes) in done {
            for sp in &probes {
                total += sp.probes.len();
                refused += sp.probes.iter().filter(|x| x.refused).count();
            }
            self.report.users[i].probes = probes;
        }
        (refused, total)
    }

    /// Per-user and overall outcomes.
    fn finish(mut self) -> ManyReport {
        let r = &self.m.template;
        for srv in &self.report.servers {
            let retry = match &srv.outcome {
                ServerOutcome::Flushed { .. } => false,
                ServerOutcome::Skipped { reason } => {
                    reason == "cancelled" || reason.starts_with(DEADLINE_SKIP)
                }
                _ => true,
            };
            if retry {
                self.report.servers_to_retry.push(srv.server.clone());
            }
        }
        let flushed_any = self.report.servers.iter().any(|s| s.outcome.is_proven());
        let servers_ok = self.report.servers_to_retry.is_empty() && flushed_any;
        for (i, u) in self.report.users.iter_mut().enumerate() {
            if self.expected[i].is_none() {
                if u.reasons.is_empty() {
                    u.reasons.push("no directory change was applied".into());
                }
                for a in u.actions.iter().filter(|a| a.error.is_some()) {
                    u.reasons.push(format!(
                        "{:?}: {}",
                        a.action,
                        a.error.as_deref().unwrap_or_default()
                    ));
                }
                u.outcome = Outcome::Failed;
                continue;
            }
            for a in u.actions.iter().filter(|a| a.outcome.is_none()) {
                u.reasons.push(format!(
                    "{:?} failed: {}",
                    a.action,
                    a.error.as_deref().unwrap_or("not applied")
                ));
            }
            let waiting: Vec<&str> = u
                .domain_controllers
                .iter()
                .filter(|d| !d.converged)
                .map(|d| d.dc.as_str())
                .collect();
            if !waiting.is_empty() {
                u.reasons
                    .push(format!("not converged on {}", waiting.join(", ")));
            }
            if !servers_ok {
                u.reasons.push("not every server is proven flushed".into());
            }
            let accepted: Vec<String> = u
                .probes
                .iter()
                .flat_map(|sp| {
                    sp.probes
                        .iter()
                        .filter(|p| !p.refused)
                        .map(move |p| format!("{} {:?}", sp.server, p.protocol))
                })
                .collect();
            if !accepted.is_empty() {
                u.reasons.push(format!(
                    "old credentials not refused on {}",
                    accepted.join(", ")
                ));
            }
            u.outcome = if u.reasons.is_empty() {
                Outcome::Revoked
            } else {
                Outcome::Partial
            };
        }
        self.report.users_failed = self
            .report
            .users
            .iter()
            .filter(|u| u.outcome != Outcome::Revoked)
            .map(|u| u.user.clone())
            .collect();
        let changed = self.expected.iter().any(Option::is_some);
        if !changed {
            self.report
                .reasons
                .push("no directory change was applied for any user".into());
        }
        if !self.report.users_failed.is_empty() {
            let n = self.report.users_failed.len();
            let mut names: Vec<&str> = self
                .report
                .users_failed
                .iter()
                .take(20)
                .map(String::as_str)
                .collect();
            let more = n.saturating_sub(names.len());
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            names.sort_unstable();
            self.report.reasons.push(format!(
                "{n}/{} users not revoked: {}{tail}",
                self.report.users.len(),
                names.join(", ")
            ));
        }
        if !self.report.servers_to_retry.is_empty() {
            self.report.reasons.push(format!(
                "servers not proven flushed: {}",
                self.report.servers_to_retry.join(", ")
            ));
        } else if !flushed_any && changed {
            self.report
                .reasons
                .push("no Exchange server was flushed".into());
        }
        self.report.cancelled = r.cancel.is_cancelled();
        if self.report.cancelled {
            self.report.reasons.push("cancelled".into());
        }
        self.report.outcome = if !changed {
            Outcome::Failed
        } else if self.report.reasons.is_empty() {
            Outcome::Revoked
        } else {
            Outcome::Partial
        };
        self.report.elapsed = self.started.elapsed();
        self.report
    }
}

/// A server record for a server that is not flushed.
fn skipped(p: &crate::plan::PlannedServer, reason: &str) -> ServerRecord {
    ServerRecord {
        server: p.server.name.clone(),
        fqdn: p.server.fqdn.clone(),
        outcome: ServerOutcome::Skipped {
            reason: reason.to_owned(),
        },
        probes: Vec::new(),
        elapsed: Duration::ZERO,
    }
}

/// Reads every target account on `dc` (or, without DC objects, on the bind server) until it
/// shows its change or the deadline; one record per target, in order.
async fn converge_on(
    m: &RevokeMany,
    dc: Option<&DomainController>,
    targets: &[(usize, Dn, Expected)],
    t0: Instant,
    deadline: Instant,
) -> Vec<DcRecord> {
    let r = &m.template;
    let name = dc.map_or_else(|| "(bind server)".to_owned(), |d| d.name.clone());
    let mut records: Vec<DcRecord> = targets
        .iter()
        .map(|_| DcRecord {
            dc: name.clone(),
            converged: false,
            after: None,
            reads: 0,
            error: None,
        })
        .collect();
    loop {
        let pending: Vec<usize> = (0..targets.len())
            .filter(|&k| !records[k].converged)
            .collect();
        // Futures are created up front (lazily polled): keeps `execute` Send.
        let reads: Vec<_> = pending
            .chunks(READ_CHUNK)
            .map(|chunk| async move {
                let dns: Vec<Dn> = chunk.iter().map(|&k| targets[k].1.clone()).collect();
                let limit = r.timeouts.directory.saturating_mul(4);
                let results = match dc {
                    Some(dc) => {
                        tokio::time::timeout(limit, r.directory.accounts_on(dc, &dns)).await
                    }
                    None => {
                        let refs: Vec<UserRef> = dns.into_iter().map(UserRef::Dn).collect();
                        tokio::time::timeout(limit, r.directory.find_accounts(&refs)).await
                    }
                };
                (chunk, results)
            })
            .collect();
        let done: Vec<_> = futures::stream::iter(reads)
            .buffer_unordered(m.max_in_flight)
            .collect()
            .await;
        for (chunk, results) in done {
            for (n, &k) in chunk.iter().enumerate() {
                let rec = &mut records[k];
                rec.reads += 1;
                let read = match &results {
                    Ok(v) => v.get(n),
                    Err(_) => None,
                };
                match read {
                    Some(Ok(a)) if targets[k].2.shown_by(a) => {
                        rec.converged = true;
                        rec.after = Some(t0.elapsed());
                        rec.error = None;
                    }
                    Some(Ok(_)) => rec.error = Some("does not show the change yet".into()),
                    Some(Err(e)) => rec.error = Some(e.to_string()),
                    None => rec.error = Some("the read timed out".into()),
                }
            }
        }
        let now = Instant::now();
        if records.iter().all(|x| x.converged) {
            return records;
        }
        if now >= deadline || r.cancel.is_cancelled() {
            for rec in records.iter_mut().filter(|x| !x.converged) {
                let why = rec.error.take().unwrap_or_default();
                rec.error = Some(format!("not converged after {:?}: {why}", t0.elapsed()));
            }
            return records;
        }
        tokio::select! {
            _ = tokio::time::sleep(r.timeouts.converge_poll.min(deadline - now)) => {}
            _ = r.cancel.cancelled() => {}
        }
    }
}
