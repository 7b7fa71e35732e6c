//! The dry run of a batch: resolve every user, list the DCs, choose the servers.

use exch_core::ExchangeServer;
use exch_directory::{Account, DirectoryError, UserRef};
use futures::StreamExt;
use std::collections::HashMap;

use super::{Engine, Target};
use crate::plan::{PlannedPool, PlannedServer};
use crate::reasons::{SkipReason, StepError};
use crate::{ManyPlan, PlannedUser, RemediationError, Step, UserProblem};
use exch_iis::FlushMethod;

/// Users per [`exch_directory::Directory::find_accounts`] call.
pub(crate) const FIND_CHUNK: usize = 100;

/// A user the directory could not resolve: why, and the directory's own error when there is
/// one (a one-user plan returns it as it is).
pub(crate) type Unresolved = (UserProblem, Option<DirectoryError>);

impl Engine {
    /// Finds the accounts of `users` in chunks (one search per chunk where the backend can),
    /// `accounts_in_flight` chunks at a time; transient failures are retried one user at a
    /// time. One result per user, in order.
    pub(crate) async fn find_all(&self, users: &[&UserRef]) -> Vec<Result<Account, StepError>> {
        // Futures are created up front (lazily polled): keeps `plan` and `execute` Send.
        let chunks: Vec<_> = users
            .chunks(FIND_CHUNK)
            .map(|chunk| async move {
                let refs: Vec<UserRef> = chunk.iter().map(|u| (*u).clone()).collect();
                let limit = self.timeouts.directory.saturating_mul(4);
                let results =
                    match tokio::time::timeout(limit, self.directory.find_accounts(&refs)).await {
                        Ok(v) if v.len() == refs.len() => {
                            v.into_iter().map(|r| r.map_err(StepError::from)).collect()
                        }
                        _ => refs
                            .iter()
                            .map(|_| {
                                Err(StepError::TimedOut {
                                    operation: format!("find {} accounts", refs.len()),
                                    after: limit,
                                    by_deadline: false,
                                })
                            })
                            .collect::<Vec<_>>(),
                    };
                let mut out = Vec::with_capacity(chunk.len());
                for (user, result) in chunk.iter().zip(results) {
                    out.push(match result {
                        Err(e) if e.is_transient() => {
                            self.dir_retry("find account", || self.directory.find_account(user))
                                .await
                        }
                        other => other,
                    });
                }
                out
            })
            .collect();
        futures::stream::iter(chunks)
            .buffered(self.accounts_in_flight)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Resolves every target: its account, or why not (invalid, not found, ambiguous, the
    /// same account as an earlier target). A directory that cannot answer is an error.
    pub(crate) async fn resolve(
        &self,
        targets: &[Target],
    ) -> Result<Vec<Result<Account, Unresolved>>, RemediationError> {
        let valid: Vec<&UserRef> = targets
            .iter()
            .filter_map(|t| t.parsed.as_ref().ok())
            .collect();
        let mut found = self.find_all(&valid).await.into_iter();
        let mut first_of: HashMap<String, &str> = HashMap::new();
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            let result = match &t.parsed {
                Err(reason) => Err((
                    UserProblem::Invalid {
                        reason: reason.clone(),
                    },
                    None,
                )),
                Ok(_) => match found.next() {
                    None => Err((
                        UserProblem::Invalid {
                            reason: "not looked up".into(),
                        },
                        None,
                    )),
                    Some(Ok(a)) => Ok(a),
                    Some(Err(StepError::Directory(e))) => Err(match e {
                        DirectoryError::NotFound { ref what } => (
                            UserProblem::NotFound {
                                detail: what.clone(),
                            },
                            Some(e),
                        ),
                        DirectoryError::Ambiguous { .. } => (
                            UserProblem::Ambiguous {
                                detail: e.to_string(),
                            },
                            Some(e),
                        ),
                        DirectoryError::InvalidInput { .. } => (
                            UserProblem::Invalid {
                                reason: e.to_string(),
                            },
                            Some(e),
                        ),
                        other => return Err(RemediationError::Directory(other)),
                    }),
                    Some(Err(e @ StepError::TimedOut { .. })) => return Err(e.into()),
                },
            };
            let result = match result {
                Ok(a) => {
                    let key = a.dn.as_str().to_ascii_lowercase();
                    match first_of.get(&key) {
                        Some(first) => Err((
                            UserProblem::Duplicate {
                                of: (*first).to_owned(),
                                dn: a.dn.to_string(),
                            },
                            None,
                        )),
                        None => {
                            first_of.insert(key, &t.text);
                            Ok(a)
                        }
                    }
                }
                Err(p) => Err(p),
            };
            out.push(result);
        }
        Ok(out)
    }

    /// The plan of a batch whose users are resolved: DCs and servers.
    pub(crate) async fn plan_batch(
        &self,
        targets: &[Target],
        resolved: Vec<Result<Account, Unresolved>>,
    ) -> Result<ManyPlan, RemediationError> {
        let users: Vec<PlannedUser> = targets
            .iter()
            .zip(resolved)
            .map(|(t, r)| match r {
                Ok(a) => PlannedUser {
                    user: t.text.clone(),
                    actions: self.planned_actions(&t.text, a.is_disabled()),
                    account: Some(a),
                    problem: None,
                },
                Err((problem, _)) => PlannedUser {
                    user: t.text.clone(),
                    account: None,
                    actions: Vec::new(),
                    problem: Some(problem),
                },
            })
            .collect();
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
        let dcs = self
            .dir(
                "list domain controllers",
                self.directory.domain_controllers(),
            )
            .await?;
        let found = match &self.selection.given {
            Some(given) => given.clone(),
            None => {
                self.dir("list Exchange servers", self.directory.exchange_servers())
                    .await?
            }
        };
        // A server proven flushed by an earlier run is skipped only when this run changes
        // nothing: a change made now must be followed by a flush everywhere.
        let changes_now = users
            .iter()
            .any(|u| u.actions.iter().any(|a| !a.done_earlier && !a.already_so));
        let mut servers: Vec<PlannedServer> = found
            .into_iter()
            .map(|s| self.plan_server(s, changes_now))
            .collect();
        servers.sort_by(|a, b| a.server.name.cmp(&b.server.name));
        if let Some(missing) = self.selection.include.iter().find(|name| {
            !servers
                .iter()
                .any(|p| p.server.name.eq_ignore_ascii_case(name))
        }) {
            return Err(RemediationError::invalid(
                format!("server {missing:?}"),
                "asked for with include_server, but the directory has no such Exchange server",
            ));
        }
        let mailbox = match self.mailbox {
            None => None,
            Some(_) => Some(crate::PlannedMailbox {
                server: mailbox_server(&servers).ok_or_else(|| {
                    RemediationError::invalid(
                        "mailbox",
                        "no Exchange 2013 or later server (not Edge) to run the Exchange Management Shell on: check the server selection",
                    )
                })?,
                actions: self.mailbox_actions,
            }),
        };
        let mut impact: Vec<String> = mailbox.iter().map(crate::PlannedMailbox::impact).collect();
        impact.extend(
            servers
                .iter()
                .filter(|p| p.is_flushed())
                .map(|p| p.impact(&self.method)),
        );
        let probed_users = match self.prober {
            Some(_) => users
                .iter()
                .zip(targets)
                .filter(|(p, t)| p.problem.is_none() && t.old_password.is_some())
                .count(),
            None => 0,
        };
        let mut steps = vec![Step::FindAccount];
        if mailbox.is_some() {
            steps.push(Step::Mailbox);
        }
        steps.extend([Step::ChangeDirectory, Step::Converge, Step::Flush]);
        if probed_users > 0 {
            steps.push(Step::Probe);
        }
        Ok(ManyPlan {
            users,
            actions: self.actions.clone(),
            steps,
            domain_controllers: dcs.iter().map(|d| d.name.clone()).collect(),
            servers,
            method: self.method.clone(),
            strategy: self.strategy,
            accounts_in_flight: self.accounts_in_flight,
            contain_first: self.contain_first,
            probed_users,
            mailbox,
            impact,
        })
    }

    fn plan_server(&self, server: ExchangeServer, changes_now: bool) -> PlannedServer {
        let sel = &self.selection;
        let name = server.name.clone();
        let skip = if server.is_edge() {
            Some(SkipReason::EdgeServer)
        } else if sel.exclude.iter().any(|e| e.eq_ignore_ascii_case(&name)) {
            Some(SkipReason::Excluded)
        } else if !sel.include.is_empty()
            && !sel.include.iter().any(|i| i.eq_ignore_ascii_case(&name))
        {
            Some(SkipReason::NotIncluded)
        } else if !sel.sites.is_empty()
            && !server
                .site
                .as_ref()
                .is_some_and(|s| sel.sites.iter().any(|x| x.eq_ignore_ascii_case(s)))
        {
            Some(SkipReason::SiteNotSelected {
                site: server.site.clone(),
            })
        } else if sel.roles.is_some_and(|r| !server.roles.intersects(r)) {
            Some(SkipReason::RolesNotSelected {
                roles: server.roles.to_string(),
            })
        } else if !changes_now && self.earlier.as_ref().is_some_and(|e| e.proved(&name)) {
            Some(SkipReason::ProvenEarlier)
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

    fn pools_for(&self, server: &ExchangeServer) -> Vec<PlannedPool> {
        let catalog = exch_iis::catalog::pools_for(server, self.protocols.as_deref());
        match &self.method {
            FlushMethod::IisReset { .. } => Vec::new(),
            FlushMethod::RecycleAppPools(pools) => pools
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
            FlushMethod::RecycleCatalogPools => catalog
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
}

/// The server whose Exchange Management Shell runs the mailbox step: the first (by name) of
/// the discovered servers that is not Edge and runs Exchange 2013 or later (the cmdlets the
/// step uses), whether or not it is flushed.
fn mailbox_server(servers: &[PlannedServer]) -> Option<String> {
    servers
        .iter()
        .map(|p| &p.server)
        .find(|s| !s.is_edge() && s.version.is_some_and(|v| v.major >= 15))
        .map(|s| s.name.clone())
}
