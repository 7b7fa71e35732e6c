//! `plan()` and `execute()`.

use chrono::Utc;
use exch_core::ExchangeServer;
use exch_directory::{Account, DirectoryError, DomainController};
use exch_iis::FlushMethod;
use futures::StreamExt;
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::Instrument;

use crate::deadline::{Deadline, DEADLINE_SKIP};
use crate::plan::{PlannedAccount, PlannedAction, PlannedPool, PlannedServer};
use crate::report::{ActionRecord, DcRecord, ProbeRecord, ServerRecord, StepRecord};
use crate::servers::{flush_servers, probe_server, PROBE_SERVERS_IN_FLIGHT};
use crate::{
    Action, Event, Outcome, Plan, Remediation, RemediationError, Report, ServerOutcome, Step,
};

impl Remediation {
    /// The dry run: finds the account, the domain controllers and the servers, and says what
    /// [`execute`](Self::execute) will do. Reads only; needs no write permission.
    pub async fn plan(&self) -> Result<Plan, RemediationError> {
        let span = tracing::info_span!("plan", user = %self.user_text);
        async {
            let account = self.dir(self.directory.find_account(&self.user)).await?;
            let dcs = self.dir(self.directory.domain_controllers()).await?;
            let servers = match &self.selection.given {
                Some(given) => given.clone(),
                None => self.dir(self.directory.exchange_servers()).await?,
            };
            let mut planned: Vec<PlannedServer> =
                servers.into_iter().map(|s| self.plan_server(s)).collect();
            planned.sort_by(|a, b| a.server.name.cmp(&b.server.name));
            for name in self.selection.include.iter() {
                if !planned.iter().any(|p| p.server.name.eq_ignore_ascii_case(name)) {
                    return Err(RemediationError::invalid(
                        format!("server {name:?}"),
                        "asked for with include_server, but the directory has no such Exchange server",
                    ));
                }
            }
            let actions = self
                .actions
                .iter()
                .map(|&action| PlannedAction {
                    action,
                    done_earlier: self.done_earlier(action),
                    already_so: action == Action::Disable && account.is_disabled(),
                })
                .collect();
            let impact = planned
                .iter()
                .filter(|p| p.is_flushed())
                .map(|p| self.impact_line(p))
                .collect();
            let mut steps = vec![Step::FindAccount, Step::ChangeDirectory, Step::Converge, Step::Flush];
            if self.probe.is_some() {
                steps.push(Step::Probe);
            }
            Ok(Plan {
                user: self.user_text.clone(),
                account: PlannedAccount {
                    dn: account.dn.to_string(),
                    sam_account_name: account.sam_account_name.clone(),
                    user_principal_name: account.user_principal_name.clone(),
                    disabled_now: account.is_disabled(),
                },
                steps,
                actions,
                domain_controllers: dcs.iter().map(|d| d.name.clone()).collect(),
                servers: planned,
                method: self.method.clone(),
                strategy: self.strategy,
                probe_old_credentials: self.probe.is_some(),
                impact,
            })
        }
        .instrument(span)
        .await
    }

    fn done_earlier(&self, action: Action) -> bool {
        let Some(earlier) = &self.resume else {
            return false;
        };
        if action == Action::ResetPassword && self.force_reset {
            return false;
        }
        earlier
            .actions
            .iter()
            .any(|a| a.action == action && (a.outcome.is_some() || a.done_earlier))
    }

    pub(crate) fn plan_server(&self, server: ExchangeServer) -> PlannedServer {
        let sel = &self.selection;
        let name = server.name.clone();
        let skip = if server.is_edge() {
            Some("Edge Transport server: not domain-joined, no IIS logon caches".to_owned())
        } else if sel.exclude.iter().any(|e| e.eq_ignore_ascii_case(&name)) {
            Some("excluded by the caller".to_owned())
        } else if !sel.include.is_empty()
            && !sel.include.iter().any(|i| i.eq_ignore_ascii_case(&name))
        {
            Some("not in the caller's include list".to_owned())
        } else if !sel.sites.is_empty()
            && !server
                .site
                .as_ref()
                .is_some_and(|s| sel.sites.iter().any(|x| x.eq_ignore_ascii_case(s)))
        {
            Some(format!(
                "site {} not selected",
                server.site.as_deref().unwrap_or("(unknown)")
            ))
        } else if sel.roles.is_some_and(|r| !server.roles.intersects(r)) {
            Some(format!("roles {} not selected", server.roles))
        } else if self.proven_earlier(&name) {
            Some("flush proven in an earlier run".to_owned())
        } else {
            None
        };
        let pools = if skip.is_some() {
            Vec::new()
        } else {
            self.pools_for(&server)
        };
        let why = match (&self.method, server.version) {
            (FlushMethod::IisReset { force }, _) => format!(
                "iisreset{} (every pool restarts)",
                if *force { "" } else { " /noforce" }
            ),
            (_, Some(v)) => format!("{} {}: recycle the pools that cache logons", v.product(), v),
            (_, None) => "version unknown: recycle the Exchange 2013+ pool set".to_owned(),
        };
        PlannedServer {
            server,
            pools,
            why,
            skip,
        }
    }

    fn proven_earlier(&self, server: &str) -> bool {
        self.resume.as_ref().is_some_and(|r| {
            // Flushed but left to retry (the old password was still accepted there): not done.
            !r.servers_to_retry
                .iter()
                .any(|s| s.eq_ignore_ascii_case(server))
                && r.servers.iter().any(|s| {
                s.server.eq_ignore_ascii_case(server)
                    && (s.outcome.is_proven()
                        || matches!(&s.outcome, ServerOutcome::Skipped { reason } if reason.contains("earlier run")))
            })
        })
    }

    fn pools_for(&self, server: &ExchangeServer) -> Vec<PlannedPool> {
        let catalog = exch_iis::catalog::pools_for(server, self.protocols.as_deref());
        match &self.method {
            FlushMethod::IisReset { .. } => Vec::new(),
            FlushMethod::RecycleAppPools(pools) if !pools.is_empty() => pools
                .iter()
                .map(|p| PlannedPool {
                    pool: p.clone(),
                    protocols: catalog
                        .iter()
                        .find(|e| &e.pool == p)
                        .map(|e| e.protocols.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            FlushMethod::RecycleAppPools(_) => catalog
                .into_iter()
                .filter(|e| e.default || self.protocols.is_some())
                .map(|e| PlannedPool {
                    pool: e.pool,
                    protocols: e.protocols,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn impact_line(&self, p: &PlannedServer) -> String {
        p.impact(&self.method)
    }

    /// Runs the plan and reports. Never returns early with an error: every failure is in the
    /// report, per step and per server. `Revoked` only when every step was verified.
    pub async fn execute(&self, plan: &Plan) -> Report {
        let span = tracing::info_span!("execute", user = %self.user_text);
        Run::new(self, plan).go().instrument(span).await
    }

    pub(crate) async fn dir<T>(
        &self,
        fut: impl Future<Output = Result<T, DirectoryError>>,
    ) -> Result<T, DirectoryError> {
        match tokio::time::timeout(self.timeouts.directory, fut).await {
            Ok(r) => r,
            Err(_) => Err(DirectoryError::Timeout {
                operation: "directory operation".into(),
                url: "(directory)".into(),
                after: self.timeouts.directory,
            }),
        }
    }

    /// A directory operation with retries of transient errors.
    pub(crate) async fn dir_retry<T, F, Fut>(
        &self,
        what: &str,
        mut op: F,
    ) -> Result<T, DirectoryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DirectoryError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.dir(op()).await {
                Err(e) if e.is_transient() && attempt < self.retry.attempts => {
                    let delay = self.retry.delay(attempt);
                    self.emit(Event::Retry {
                        target: what.to_owned(),
                        attempt,
                        delay,
                        error: e.to_string(),
                    });
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }
}

/// State of one `execute`.
struct Run<'a> {
    r: &'a Remediation,
    plan: &'a Plan,
    started: Instant,
    deadline: Deadline,
    report: Report,
}

impl<'a> Run<'a> {
    fn new(r: &'a Remediation, plan: &'a Plan) -> Self {
        Run {
            r,
            plan,
            started: Instant::now(),
            deadline: Deadline::new(r.deadline),
            report: Report {
                security: r.security_notes(r.probe.as_ref().map(|(p, _)| p.as_ref())),
                ..Report::begin(r.user_text.clone(), None, Outcome::Failed)
            },
        }
    }

    fn step_begin(&self, step: Step) -> (Step, chrono::DateTime<Utc>, Instant) {
        self.r.emit(Event::StepStarted { step });
        tracing::info!(?step, "step started");
        (step, Utc::now(), Instant::now())
    }

    fn step_end(
        &mut self,
        begun: (Step, chrono::DateTime<Utc>, Instant),
        ok: bool,
        detail: String,
    ) {
        let (step, started, t) = begun;
        self.r.emit(Event::StepFinished { step, ok });
        tracing::info!(?step, ok, %detail, "step finished");
        self.report.steps.push(StepRecord {
            step,
            started,
            elapsed: t.elapsed(),
            ok,
            detail,
        });
    }

    fn finish(mut self, outcome: Outcome) -> Report {
        self.report.outcome = outcome;
        self.report.elapsed = self.started.elapsed();
        self.report.cancelled = self.r.cancel.is_cancelled();
        self.report
    }

    async fn go(mut self) -> Report {
        // 1. Find the account again: the plan may be old.
        let s = self.step_begin(Step::FindAccount);
        let dl = self.deadline;
        let account = match dl
            .dir(self.r.dir_retry("find account", || {
                self.r.directory.find_account(&self.r.user)
            }))
            .await
        {
            Ok(a) if a.dn.as_str() == self.plan.account.dn => a,
            Ok(a) => {
                let msg = format!(
                    "{} now resolves to {}, not {} as planned; plan again",
                    self.r.user_text, a.dn, self.plan.account.dn
                );
                self.step_end(s, false, msg.clone());
                self.report.reasons.push(msg);
                return self
                    .skip_all_servers("account changed since the plan")
                    .finish(Outcome::Failed);
            }
            Err(e) => {
                self.step_end(s, false, e.to_string());
                self.report
                    .reasons
                    .push(format!("cannot find the account: {e}"));
                return self
                    .skip_all_servers("account not found")
                    .finish(Outcome::Failed);
            }
        };
        self.report.account = Some(account.dn.to_string());
        self.step_end(s, true, account.dn.to_string());

        if self.r.cancel.is_cancelled() {
            self.report
                .reasons
                .push("cancelled before the directory was changed".into());
            return self.skip_all_servers("cancelled").finish(Outcome::Failed);
        }

        // 2. Change the directory.
        let s = self.step_begin(Step::ChangeDirectory);
        let changed = self.change_directory(&account).await;
        let applied = self
            .report
            .actions
            .iter()
            .filter(|a| a.outcome.is_some() || a.done_earlier)
            .count();
        let all_ok = applied == self.report.actions.len();
        let detail = self
            .report
            .actions
            .iter()
            .map(|a| match (&a.outcome, &a.error) {
                _ if a.done_earlier => format!("{:?}: done earlier", a.action),
                (Some(o), _) => format!("{:?}: {o:?}", a.action),
                (None, Some(e)) => format!("{:?}: {e}", a.action),
                (None, None) => format!("{:?}: not attempted", a.action),
            })
            .collect::<Vec<_>>()
            .join("; ");
        self.step_end(s, all_ok, detail);
        if applied == 0 {
            self.report
                .reasons
                .push("no directory change was applied".into());
            return self
                .skip_all_servers("the directory change failed")
                .finish(Outcome::Failed);
        }
        if !all_ok {
            self.report
                .reasons
                .push("not every directory action was applied".into());
        }

        // 3. Converge.
        let s = self.step_begin(Step::Converge);
        let converged = self.converge(&changed).await;
        let n_ok = self
            .report
            .domain_controllers
            .iter()
            .filter(|d| d.converged)
            .count();
        let n = self.report.domain_controllers.len();
        self.step_end(
            s,
            converged,
            format!("{n_ok}/{n} domain controllers show the change"),
        );
        if !converged {
            self.report.reasons.push(format!(
                "only {n_ok}/{n} domain controllers show the change; caches were flushed anyway, run again after replication"
            ));
        }

        // 4. Flush.
        let s = self.step_begin(Step::Flush);
        self.flush_all().await;
        let flushed: Vec<&ServerRecord> = self
            .report
            .servers
            .iter()
            .filter(|s| !matches!(s.outcome, ServerOutcome::Skipped { .. }))
            .collect();
        let proven = flushed.iter().filter(|s| s.outcome.is_proven()).count();
        let flush_ok = proven == flushed.len();
        let detail = format!("{proven}/{} servers proven flushed", flushed.len());
        self.step_end(s, flush_ok, detail);

        // 5. Probe.
        if self.r.probe.is_some() {
            let s = self.step_begin(Step::Probe);
            let (refused, total) = self.probe_all(&account).await;
            self.step_end(
                s,
                refused == total,
                format!("old credentials refused on {refused}/{total} endpoints"),
            );
            if refused != total {
                self.report.reasons.push(format!(
                    "old credentials were not refused on {} endpoint(s)",
                    total - refused
                ));
            }
        }

        for srv in &self.report.servers {
            let retry = match &srv.outcome {
                ServerOutcome::Flushed { .. } => srv.probes.iter().any(|p| !p.refused),
                ServerOutcome::Skipped { reason } => {
                    reason == "cancelled" || reason.starts_with(DEADLINE_SKIP)
                }
                _ => true,
            };
            if retry {
                self.report.servers_to_retry.push(srv.server.clone());
            }
        }
        if !self.report.servers_to_retry.is_empty() {
            self.report.reasons.push(format!(
                "servers not proven flushed: {}",
                self.report.servers_to_retry.join(", ")
            ));
        }
        let flushed_any = self.report.servers.iter().any(|s| s.outcome.is_proven())
            || self
                .plan
                .servers
                .iter()
                .any(|p| p.skip.as_deref() == Some("flush proven in an earlier run"));
        if !flushed_any {
            self.report
                .reasons
                .push("no Exchange server was flushed".into());
        }
        if self.r.cancel.is_cancelled() {
            self.report.reasons.push("cancelled".into());
        }
        let outcome = if self.report.reasons.is_empty() {
            Outcome::Revoked
        } else {
            Outcome::Partial
        };
        self.finish(outcome)
    }

    /// Records a directory action in the report and tells the event listener.
    fn push_action(&mut self, record: ActionRecord) {
        self.r.emit(Event::ActionRecorded {
            record: record.clone(),
        });
        self.report.actions.push(record);
    }

    fn skip_all_servers(mut self, reason: &str) -> Self {
        for p in &self.plan.servers {
            self.report.servers.push(ServerRecord {
                server: p.server.name.clone(),
                fqdn: p.server.fqdn.clone(),
                outcome: ServerOutcome::Skipped {
                    reason: p.skip.clone().unwrap_or_else(|| reason.to_owned()),
                },
                probes: Vec::new(),
                elapsed: Duration::ZERO,
            });
        }
        self
    }
}

/// What convergence must see on every DC.
struct Expected {
    disabled: bool,
    pwd_last_set_at_least: Option<i64>,
}

impl Run<'_> {
    async fn change_directory(&mut self, account: &Account) -> Expected {
        let mut expected = Expected {
            disabled: false,
            pwd_last_set_at_least: None,
        };
        for planned in &self.plan.actions {
            let action = planned.action;
            if action == Action::Disable {
                expected.disabled = true;
            }
            if planned.done_earlier {
                self.push_action(ActionRecord {
                    action,
                    outcome: None,
                    error: None,
                    done_earlier: true,
                });
                continue;
            }
            let dl = self.deadline;
            let result = match action {
                Action::Disable => {
                    dl.dir(
                        self.r
                            .dir_retry("disable", || self.r.directory.disable_account(account)),
                    )
                    .await
                }
                Action::ResetPassword => match &self.r.new_password {
                    Some(p) => {
                        dl.dir(self.r.dir_retry("reset password", || {
                            self.r.directory.reset_password(account, p)
                        }))
                        .await
                    }
                    None => Err(DirectoryError::InvalidInput {
                        what: "new password".into(),
                        reason: "none given".into(),
                    }),
                },
            };
            let result = match result {
                Ok(outcome) => Ok(outcome),
                Err(e) => crate::writes::after_failed_write(self.r, dl, account, action, e).await,
            };
            match result {
                Ok(outcome) => {
                    tracing::info!(?action, ?outcome, "directory action done");
                    if action == Action::ResetPassword {
                        // What the DCs must show: the pwdLastSet the writing DC now has.
                        if let Ok(after) = dl
                            .dir(self.r.dir(self.r.directory.find_account(&self.r.user)))
                            .await
                        {
                            expected.pwd_last_set_at_least = after.pwd_last_set;
                        }
                    }
                    self.push_action(ActionRecord {
                        action,
                        outcome: Some(outcome),
                        error: None,
                        done_earlier: false,
                    });
                }
                Err(e) => {
                    tracing::warn!(?action, error = %e, "directory action failed");
                    if action == Action::Disable {
                        expected.disabled = false;
                    }
                    self.push_action(ActionRecord {
                        action,
                        outcome: None,
                        error: Some(e),
                        done_earlier: false,
                    });
                }
            }
        }
        expected
    }

    async fn converge(&mut self, expected: &Expected) -> bool {
        let dn = exch_directory::Dn(self.plan.account.dn.clone());
        let dl = self.deadline;
        let dcs = match dl
            .dir(self.r.dir(self.r.directory.domain_controllers()))
            .await
        {
            Ok(d) => d,
            Err(e) => {
                self.report.domain_controllers.push(DcRecord {
                    dc: "(discovery)".into(),
                    converged: false,
                    after: None,
                    reads: 0,
                    error: Some(format!("cannot list domain controllers: {e}")),
                });
                return false;
            }
        };
        if dcs.is_empty() {
            // No DC objects: confirm on the connection that made the change.
            let t = Instant::now();
            let ok = match dl
                .dir(self.r.dir(self.r.directory.find_account(&self.r.user)))
                .await
            {
                Ok(a) => shows(&a, expected),
                Err(_) => false,
            };
            self.report.domain_controllers.push(DcRecord {
                dc: "(bind server)".into(),
                converged: ok,
                after: ok.then(|| t.elapsed()),
                reads: 1,
                error: (!ok).then(|| "the bind server does not show the change".to_owned()),
            });
            return ok;
        }
        let deadline = dl.cap_instant(Instant::now() + self.r.timeouts.converge);
        let t0 = Instant::now();
        let records = futures::future::join_all(
            dcs.iter()
                .map(|dc| self.converge_one(dc, &dn, expected, t0, deadline)),
        )
        .await;
        let all = records.iter().all(|r| r.converged);
        self.report.domain_controllers = records;
        all
    }

    async fn converge_one(
        &self,
        dc: &DomainController,
        dn: &exch_directory::Dn,
        expected: &Expected,
        t0: Instant,
        deadline: Instant,
    ) -> DcRecord {
        let mut reads = 0;
        let mut last_error: Option<String>;
        loop {
            reads += 1;
            match self
                .deadline
                .dir(self.r.dir(self.r.directory.account_on(dc, dn)))
                .await
            {
                Ok(a) if shows(&a, expected) => {
                    let after = t0.elapsed();
                    self.r.emit(Event::DcConverged {
                        dc: dc.name.clone(),
                        after,
                    });
                    return DcRecord {
                        dc: dc.name.clone(),
                        converged: true,
                        after: Some(after),
                        reads,
                        error: None,
                    };
                }
                Ok(_) => last_error = Some("does not show the change yet".to_owned()),
                Err(e) => last_error = Some(e.to_string()),
            }
            let now = Instant::now();
            if now >= deadline || self.r.cancel.is_cancelled() {
                return DcRecord {
                    dc: dc.name.clone(),
                    converged: false,
                    after: None,
                    reads,
                    error: Some(format!(
                        "not converged after {}: {}",
                        if self.deadline.expired() {
                            format!("{:?} (the run deadline was reached)", t0.elapsed())
                        } else {
                            format!("{:?}", self.r.timeouts.converge)
                        },
                        last_error.unwrap_or_default()
                    )),
                };
            }
            let pause = self.r.timeouts.converge_poll.min(deadline - now);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.r.cancel.cancelled() => {}
            }
        }
    }

    async fn flush_all(&mut self) {
        self.report.servers = flush_servers(self.r, &self.plan.servers, self.deadline).await;
    }

    async fn probe_all(&mut self, account: &Account) -> (usize, usize) {
        let Some((prober, old)) = &self.r.probe else {
            return (0, 0);
        };
        let user = account
            .user_principal_name
            .clone()
            .unwrap_or_else(|| account.sam_account_name.clone());
        let (r, plan, deadline) = (self.r, self.plan, self.deadline);
        let mut probes = Vec::new();
        for p in &plan.servers {
            let Some(idx) = self
                .report
                .servers
                .iter()
                .position(|s| s.server == p.server.name)
            else {
                continue;
            };
            if self.report.servers[idx].outcome.is_proven() {
                probes.push((idx, p));
            }
        }
        // A few servers at a time (see PROBE_SERVERS_IN_FLIGHT), not one after another.
        // Futures are created up front (lazily polled): keeps `execute` Send.
        let user = user.as_str();
        let futs: Vec<_> = probes
            .into_iter()
            .map(|(idx, p)| async move {
                let records = probe_server(r, prober.as_ref(), p, user, old, deadline).await;
                (idx, records)
            })
            .collect();
        let done: Vec<(usize, Vec<ProbeRecord>)> = futures::stream::iter(futs)
            .buffer_unordered(r.strategy.concurrency().clamp(1, PROBE_SERVERS_IN_FLIGHT))
            .collect()
            .await;
        let mut refused = 0;
        let mut total = 0;
        for (idx, records) in done {
            total += records.len();
            refused += records.iter().filter(|x| x.refused).count();
            if let Some(rec) = self.report.servers.get_mut(idx) {
                rec.probes = records;
            }
        }
        (refused, total)
    }
}

fn shows(a: &Account, expected: &Expected) -> bool {
    (!expected.disabled || a.is_disabled())
        && match expected.pwd_last_set_at_least {
            Some(min) => a.pwd_last_set.is_some_and(|v| v >= min),
            None => true,
        }
}
