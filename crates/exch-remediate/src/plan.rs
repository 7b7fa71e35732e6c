//! The dry run: what `execute` will do, computed without changing anything.

use exch_core::{AppPool, ExchangeServer, Protocol};
use exch_iis::FlushMethod;
use serde::{Deserialize, Serialize};

use crate::reasons::SkipReason;
use crate::{Action, Step, Strategy};

/// One pool the plan will recycle on a server, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPool {
    /// The pool.
    pub pool: AppPool,
    /// The protocols whose logon tokens it caches (their users reconnect once).
    pub protocols: Vec<Protocol>,
}

/// One server in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedServer {
    /// The server.
    pub server: ExchangeServer,
    /// Pools to recycle (empty for `iisreset` or when skipped).
    pub pools: Vec<PlannedPool>,
    /// Why this server is in the plan or why it is skipped.
    pub why: String,
    /// `Some(reason)` when the server will not be flushed (Edge, excluded, done in an earlier run).
    pub skip: Option<SkipReason>,
}

impl PlannedServer {
    /// Whether the server will be flushed.
    pub fn is_flushed(&self) -> bool {
        self.skip.is_none()
    }

    /// The expected impact of flushing this server with `method`, in one line: for each pool,
    /// how it recycles in Exchange's default configuration and which connections are cut after
    /// how long ([`exch_iis::catalog::recycle_profile`]).
    pub fn impact(&self, method: &FlushMethod) -> String {
        let name = &self.server.name;
        if let FlushMethod::IisReset { .. } = method {
            return format!(
                "{name}: every user of every protocol is disconnected while IIS restarts; pools start a worker on their first request"
            );
        }
        if self.pools.is_empty() {
            return format!("{name}: no pool is recycled");
        }
        let parts: Vec<String> = self.pools.iter().map(pool_impact).collect();
        format!("{name}: {}", parts.join("; "))
    }
}

/// One pool's impact, e.g. `MSExchangeMapiFrontEndAppPool (mapi): stop-then-start — …` (no
/// `;` inside: pools are joined with `; `).
fn pool_impact(p: &PlannedPool) -> String {
    let profile = exch_iis::catalog::recycle_profile(&p.pool);
    let protocols: Vec<&str> = p.protocols.iter().map(|x| x.as_str()).collect();
    let limit = profile.shutdown_time_limit.as_secs();
    let long = long_requests(&p.protocols);
    let cut = if long.is_empty() {
        format!("requests still running after {limit} s are cut")
    } else {
        format!(
            "requests still running after {limit} s are cut ({}) and those clients reconnect",
            long.join(", ")
        )
    };
    let how = if profile.overlapping {
        "overlapped recycle — the old worker serves until the new one has started, then finishes requests in flight"
    } else {
        "stop-then-start (disallowOverlappingRotation) — new requests wait until the new worker has started"
    };
    format!("{} ({}): {how}, {cut}", p.pool, protocols.join(", "))
}

/// The long-lived requests of these protocols, which a recycle cuts at the shutdown limit.
fn long_requests(protocols: &[Protocol]) -> Vec<&'static str> {
    protocols
        .iter()
        .filter_map(|p| match p {
            Protocol::Eas => Some("ActiveSync Ping / Direct Push"),
            Protocol::Mapi => Some("MAPI NotificationWait"),
            Protocol::RpcHttp => Some("RPC over HTTP channels"),
            Protocol::Ews => Some("EWS streaming notifications"),
            _ => None,
        })
        .collect()
}

/// The account as the plan found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAccount {
    /// Distinguished name.
    pub dn: String,
    /// `sAMAccountName`.
    pub sam_account_name: String,
    /// `userPrincipalName`.
    pub user_principal_name: Option<String>,
    /// Whether it is disabled now.
    pub disabled_now: bool,
}

/// What [`crate::Remediation::execute`] will do: the one-user view of the engine's
/// [`crate::ManyPlan`]. Serializable; contains no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Plan {
    /// The user as given.
    pub user: String,
    /// The account found.
    pub account: PlannedAccount,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Directory actions in order, with whether an earlier run already did them.
    pub actions: Vec<PlannedAction>,
    /// Domain controllers whose convergence will be awaited.
    pub domain_controllers: Vec<String>,
    /// Servers, flushed or skipped.
    pub servers: Vec<PlannedServer>,
    /// How caches are flushed.
    pub method: FlushMethod,
    /// Strategy.
    pub strategy: Strategy,
    /// Whether the old credentials will be probed after the flush.
    pub probe_old_credentials: bool,
    /// The mailbox step, when a mailbox backend is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<crate::PlannedMailbox>,
    /// The expected impact, one line per server: per pool, how it recycles and which
    /// connections are cut after how long ([`PlannedServer::impact`]).
    pub impact: Vec<String>,
}

/// A directory action in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// The action.
    pub action: Action,
    /// Skipped because an earlier run (given to `resume`) already applied it.
    pub done_earlier: bool,
    /// Nothing to do: it is already so (e.g. already disabled).
    pub already_so: bool,
}

impl Plan {
    /// Servers that will be flushed.
    pub fn flushed_servers(&self) -> impl Iterator<Item = &PlannedServer> {
        self.servers.iter().filter(|s| s.is_flushed())
    }

    /// A human summary.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "Plan for {} ({})", self.user, self.account.dn);
        for a in &self.actions {
            let note = if a.done_earlier {
                " (done in an earlier run: skipped)"
            } else if a.already_so {
                " (already so)"
            } else {
                ""
            };
            let _ = writeln!(s, "  {:?}{note}", a.action);
        }
        let _ = writeln!(
            s,
            "  wait for {} domain controller(s): {}",
            self.domain_controllers.len(),
            self.domain_controllers.join(", ")
        );
        let strategy = match self.strategy {
            Strategy::Parallel { max_in_flight } => {
                format!("parallel, at most {max_in_flight} servers at once")
            }
            Strategy::Rolling { batch, pause } => {
                format!("rolling, {batch} server(s) per batch, {pause:?} between batches")
            }
        };
        let _ = writeln!(s, "  flush: {}; {strategy}", self.method);
        for srv in &self.servers {
            match &srv.skip {
                Some(r) => {
                    let _ = writeln!(s, "  {}: skip ({r})", srv.server.name);
                }
                None => {
                    let pools: Vec<&str> = srv.pools.iter().map(|p| p.pool.as_str()).collect();
                    let _ = writeln!(
                        s,
                        "  {}: {} [{}]",
                        srv.server.name,
                        srv.why,
                        pools.join(", ")
                    );
                }
            }
        }
        for line in &self.impact {
            let _ = writeln!(s, "  impact: {line}");
        }
        s
    }
}
