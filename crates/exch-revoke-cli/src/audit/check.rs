//! The audit's checks, written against the library traits ([`Directory`], [`CacheFlusher`]) so
//! that they run against any backend: the real ones from the settings, or the in-memory fakes
//! in the unit tests. Nothing here changes anything: every call is a read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use exch_core::{AppPool, ExchangeServer};
use exch_directory::{Directory, DomainController, UserRef};
use exch_iis::{catalog, AppPoolState, CacheFlusher, FlushMethod, IisError, PoolRunState};
use exch_remediate::{PlannedPool, PlannedServer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::report::{
    AuditReport, DcAudit, DomainAudit, Finding, PoolAudit, Rated, ServerAudit, TokenTtlAudit,
    WinRmAudit,
};

/// Describes, per server, how the flusher authenticates and protects the traffic
/// (`WinRmFlusher::method_for`; fakes say what they are).
pub type MethodDescriber = Arc<dyn Fn(&ExchangeServer) -> String + Send + Sync>;

/// What to audit and how.
#[derive(Clone)]
pub struct AuditPlan {
    /// The flush a revoke would do (the settings' method).
    pub method: FlushMethod,
    /// Servers checked at once (at least 1).
    pub concurrency: usize,
    /// The limit for one server's (or one DC's) checks.
    pub per_target_timeout: Duration,
    /// Objects to read on every DC, tried in order until one is found on the connected DC
    /// (the bind account, then `krbtgt`, which every domain has).
    pub known_objects: Vec<UserRef>,
    /// The domain's naming context, for the report.
    pub domain_name: Option<String>,
}

impl std::fmt::Debug for AuditPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditPlan")
            .field("method", &self.method)
            .field("concurrency", &self.concurrency)
            .field("per_target_timeout", &self.per_target_timeout)
            .field("known_objects", &self.known_objects)
            .finish_non_exhaustive()
    }
}

/// Audits the domain (its DCs) and `servers`, servers `plan.concurrency` at a time.
pub async fn audit(
    directory: Arc<dyn Directory>,
    flusher: Arc<dyn CacheFlusher>,
    describe: MethodDescriber,
    servers: Vec<ExchangeServer>,
    plan: &AuditPlan,
) -> AuditReport {
    let domain = audit_domain(directory, plan);
    let fleet = audit_servers(flusher, describe, servers.clone(), plan);
    let (domain, audited) = tokio::join!(domain, fleet);
    let mut findings = Vec::new();
    if servers.is_empty() {
        findings.push(Rated::from(Finding::NoServers));
    }
    AuditReport::new(vec![domain], audited, findings)
}

/// Every server, at most `plan.concurrency` at once; results in the order of `servers`.
pub async fn audit_servers(
    flusher: Arc<dyn CacheFlusher>,
    describe: MethodDescriber,
    servers: Vec<ExchangeServer>,
    plan: &AuditPlan,
) -> Vec<ServerAudit> {
    let permits = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (i, server) in servers.iter().cloned().enumerate() {
        let flusher = Arc::clone(&flusher);
        let describe = Arc::clone(&describe);
        let permits = Arc::clone(&permits);
        let method = plan.method.clone();
        let limit = plan.per_target_timeout;
        tasks.spawn(async move {
            // The semaphore is never closed: a failed acquire cannot happen, and would only
            // lift the bound for this one server.
            let _permit = permits.acquire_owned().await.ok();
            let audited = audit_server(flusher.as_ref(), &describe, server, &method, limit).await;
            (i, audited)
        });
    }
    let mut done: Vec<Option<ServerAudit>> = vec![None; servers.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, audited)) = joined {
            done[i] = Some(audited);
        }
    }
    // A task that panicked still gets a line: the server was not audited.
    done.into_iter()
        .zip(servers)
        .map(|(audited, server)| {
            audited.unwrap_or_else(|| {
                let mut a = skeleton(&server, "not audited".into(), &plan.method);
                a.findings.push(Rated::from(Finding::CommandFailed {
                    detail: "the audit of this server stopped unexpectedly".into(),
                }));
                a
            })
        })
        .collect()
}

/// A server's line before anything is read.
fn skeleton(server: &ExchangeServer, method_desc: String, method: &FlushMethod) -> ServerAudit {
    ServerAudit {
        name: server.name.clone(),
        fqdn: server.fqdn.clone(),
        product: server.version.map(|v| v.product().to_string()),
        version: server.version.map(|v| v.to_string()),
        roles: server.roles.names().iter().map(|r| r.to_string()).collect(),
        site: server.site.clone(),
        winrm: WinRmAudit {
            method: method_desc,
            reachable: None,
            authenticated: None,
        },
        token_ttl: None,
        pools: None,
        flush_method: method.to_string(),
        would_recycle: Vec::new(),
        impact: String::new(),
        findings: Vec::new(),
        elapsed_ms: 0,
    }
}

/// What an error of a read says about WinRM: reached? authenticated? and the finding.
fn classify(e: &IisError, limit: Duration) -> (Option<bool>, Option<bool>, Finding) {
    match e {
        IisError::Unreachable { .. } | IisError::Tls { .. } => (
            Some(false),
            None,
            Finding::WinRmUnreachable {
                detail: e.to_string(),
            },
        ),
        IisError::Timeout { .. } => (
            None,
            None,
            Finding::TimedOut {
                after_secs: limit.as_secs().max(1),
            },
        ),
        IisError::Unauthenticated { .. } | IisError::AuthMethodUnavailable { .. } => (
            Some(true),
            Some(false),
            Finding::WinRmAuthFailed {
                detail: e.to_string(),
            },
        ),
        _ => (
            Some(true),
            Some(true),
            Finding::CommandFailed {
                detail: e.to_string(),
            },
        ),
    }
}

/// Whether the error means WinRM itself could not be used (no point in a second read).
fn winrm_unusable(e: &IisError) -> bool {
    matches!(
        e,
        IisError::Unreachable { .. }
            | IisError::Tls { .. }
            | IisError::Timeout { .. }
            | IisError::Unauthenticated { .. }
            | IisError::AuthMethodUnavailable { .. }
    )
}

/// One read of `server` (`fut`, within `limit`) and what it says about WinRM: an answer means
/// reached and authenticated; an error is classified ([`classify`]), its finding added once,
/// and what an earlier read found stands.
async fn read<T>(
    a: &mut ServerAudit,
    limit: Duration,
    server: &str,
    operation: &str,
    fut: impl std::future::Future<Output = Result<T, IisError>>,
) -> Result<T, IisError> {
    let result = within(limit, server, operation, fut).await;
    match &result {
        Ok(_) => {
            a.winrm.reachable = Some(true);
            a.winrm.authenticated = Some(true);
        }
        Err(e) => {
            let (reachable, authenticated, finding) = classify(e, limit);
            a.winrm.reachable = a.winrm.reachable.or(reachable);
            a.winrm.authenticated = a.winrm.authenticated.or(authenticated);
            if !a.findings.iter().any(|f| f.finding == finding) {
                a.findings.push(Rated::from(finding));
            }
        }
    }
    result
}

/// Runs `fut` within `limit`; a time-out is an [`IisError::Timeout`] naming the server.
async fn within<T>(
    limit: Duration,
    server: &str,
    operation: &str,
    fut: impl std::future::Future<Output = Result<T, IisError>>,
) -> Result<T, IisError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(IisError::Timeout {
            server: server.to_owned(),
            operation: operation.to_owned(),
            after: limit,
        }),
    }
}

/// One server: `UserTokenTTL`, then the pools (both reads), then what a revoke would do.
pub async fn audit_server(
    flusher: &dyn CacheFlusher,
    describe: &MethodDescriber,
    server: ExchangeServer,
    method: &FlushMethod,
    limit: Duration,
) -> ServerAudit {
    let started = Instant::now();
    let mut a = skeleton(&server, describe(&server), method);
    let selection = catalog::select(&server, None);
    if server.is_edge() {
        a.findings.push(Rated::from(Finding::EdgeNotFlushed));
        a.impact = format!("{}: not flushed (Edge Transport)", server.name);
        return a;
    }
    if selection.set.is_none() {
        a.findings.push(Rated::from(Finding::NothingToFlush));
        a.impact = format!("{}: no pool is recycled", server.name);
        return a;
    }
    if let Some(why) = &selection.assumption {
        a.findings
            .push(Rated::from(Finding::AssumedLayout { why: why.clone() }));
    }

    let mut usable = true;
    let ttl = flusher.token_cache(&server);
    match read(&mut a, limit, &server.name, "read UserTokenTTL", ttl).await {
        Ok(settings) => {
            let effective = settings.effective_ttl().as_secs();
            a.token_ttl = Some(TokenTtlAudit {
                configured_secs: settings.configured.map(|d| d.as_secs()),
                effective_secs: effective,
                never_expires: settings.never_expires(),
            });
            if settings.never_expires() {
                a.findings.push(Rated::from(Finding::TokensNeverExpire));
            } else if effective > exch_iis::TokenCacheSettings::DEFAULT_TTL.as_secs() {
                a.findings
                    .push(Rated::from(Finding::LongTokenTtl { secs: effective }));
            }
        }
        Err(e) => usable = !winrm_unusable(&e),
    }

    let present = if usable {
        let pools = flusher.app_pools(&server);
        read(&mut a, limit, &server.name, "list application pools", pools)
            .await
            .ok()
    } else {
        None
    };

    let recycled = planned_pools(&server, method, present.as_deref());
    if let Some(present) = &present {
        let (pools, findings) = compare_pools(&server, method, present, &recycled);
        a.pools = Some(pools);
        a.findings.extend(findings.into_iter().map(Rated::from));
    }
    a.would_recycle = recycled.iter().map(|p| p.pool.to_string()).collect();
    let planned = PlannedServer {
        server: server.clone(),
        pools: recycled,
        why: String::new(),
        skip: None,
    };
    a.impact = planned.impact(method);
    a.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    a
}

/// The pools a revoke with `method` recycles on `server`: the catalog's default pools (or the
/// named ones) that the server has, when its pools are known; all of them otherwise.
fn planned_pools(
    server: &ExchangeServer,
    method: &FlushMethod,
    present: Option<&[AppPoolState]>,
) -> Vec<PlannedPool> {
    let entries = catalog::pools_for(server, None);
    let wanted: Vec<AppPool> = match method {
        FlushMethod::IisReset { .. } => return Vec::new(),
        FlushMethod::RecycleAppPools(pools) => pools.clone(),
        _ => catalog::default_pools(server),
    };
    let wanted = match present {
        Some(present) => {
            let names: Vec<AppPool> = present.iter().map(|p| p.name.clone()).collect();
            catalog::intersect(&wanted, &names).0
        }
        None => wanted,
    };
    wanted
        .into_iter()
        .map(|pool| PlannedPool {
            protocols: entries
                .iter()
                .find(|e| e.pool.as_str().eq_ignore_ascii_case(pool.as_str()))
                .map(|e| e.protocols.clone())
                .unwrap_or_default(),
            pool,
        })
        .collect()
}

/// The catalog's pools against the server's, and what is wrong: default pools missing,
/// default pools not started.
fn compare_pools(
    server: &ExchangeServer,
    method: &FlushMethod,
    present: &[AppPoolState],
    recycled: &[PlannedPool],
) -> (Vec<PoolAudit>, Vec<Finding>) {
    let entries = catalog::pools_for(server, None);
    let find = |name: &str| {
        present
            .iter()
            .find(|p| p.name.as_str().eq_ignore_ascii_case(name))
    };
    let mut pools = Vec::new();
    let mut missing = Vec::new();
    let mut findings = Vec::new();
    for entry in &entries {
        let on_server = find(entry.pool.as_str());
        let is_recycled = recycled
            .iter()
            .any(|r| r.pool.as_str().eq_ignore_ascii_case(entry.pool.as_str()));
        if on_server.is_none() && entry.default {
            missing.push(entry.pool.to_string());
        }
        if let Some(p) = on_server {
            if entry.default && p.state != PoolRunState::Started {
                findings.push(Finding::PoolNotStarted {
                    pool: p.name.to_string(),
                    state: p.state,
                });
            }
        }
        pools.push(PoolAudit {
            in_catalog: true,
            default_flush: entry.default,
            recycled: is_recycled,
            protocols: entry
                .protocols
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            ..pool_line(&entry.pool, on_server)
        });
    }
    // Pools named by the settings that the catalog does not list.
    if let FlushMethod::RecycleAppPools(named) = method {
        for pool in named {
            if entries
                .iter()
                .any(|e| e.pool.as_str().eq_ignore_ascii_case(pool.as_str()))
            {
                continue;
            }
            let on_server = find(pool.as_str());
            if on_server.is_none() {
                missing.push(pool.to_string());
            }
            pools.push(PoolAudit {
                recycled: on_server.is_some(),
                ..pool_line(pool, on_server)
            });
        }
    }
    if !missing.is_empty() && !matches!(method, FlushMethod::IisReset { .. }) {
        findings.insert(0, Finding::MissingPools { pools: missing });
    }
    (pools, findings)
}

/// A pool's line from what the server says of it (`on_server`, `None` when it has no such
/// pool) and its recycle profile; not in the catalog, not recycled, until the caller says so.
fn pool_line(pool: &AppPool, on_server: Option<&AppPoolState>) -> PoolAudit {
    let profile = catalog::recycle_profile(pool);
    PoolAudit {
        name: on_server.map_or_else(|| pool.to_string(), |p| p.name.to_string()),
        present: on_server.is_some(),
        state: on_server.map(|p| p.state),
        workers: on_server.map_or(0, |p| p.workers.len()),
        in_catalog: false,
        default_flush: false,
        recycled: false,
        protocols: Vec::new(),
        overlapping: profile.overlapping,
        shutdown_time_limit_secs: profile.shutdown_time_limit.as_secs(),
    }
}

/// `fut` within `limit`; an error, or no answer in time, as the detail a finding shows.
async fn answer_within<T, E: std::fmt::Display>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    }
}

/// The domain: its DCs, and whether each answers a read of a known object.
pub async fn audit_domain(directory: Arc<dyn Directory>, plan: &AuditPlan) -> DomainAudit {
    let limit = plan.per_target_timeout;
    let mut domain = DomainAudit {
        name: plan.domain_name.clone(),
        known_object: None,
        domain_controllers: Vec::new(),
        findings: Vec::new(),
    };
    let dcs = match answer_within(limit, directory.domain_controllers()).await {
        Ok(dcs) => dcs,
        Err(detail) => {
            domain
                .findings
                .push(Rated::from(Finding::DcDiscoveryFailed { detail }));
            return domain;
        }
    };
    if dcs.is_empty() {
        domain
            .findings
            .push(Rated::from(Finding::NoDomainControllers));
        return domain;
    }
    let known = match known_object(directory.as_ref(), &plan.known_objects, limit).await {
        Ok(dn) => dn,
        Err(detail) => {
            domain
                .findings
                .push(Rated::from(Finding::NoKnownObject { detail }));
            domain.domain_controllers = dcs.iter().map(|dc| dc_line(dc, None)).collect();
            return domain;
        }
    };
    domain.known_object = Some(known.to_string());
    let mut tasks = JoinSet::new();
    for (i, dc) in dcs.iter().cloned().enumerate() {
        let directory = Arc::clone(&directory);
        let known = known.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let result = answer_within(limit, directory.account_on(&dc, &known))
                .await
                .map(|_| ());
            (i, result, started.elapsed())
        });
    }
    let mut lines: Vec<DcAudit> = dcs.iter().map(|dc| dc_line(dc, None)).collect();
    while let Some(joined) = tasks.join_next().await {
        let Ok((i, result, elapsed)) = joined else {
            continue;
        };
        let line = &mut lines[i];
        line.elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(()) => line.answers = Some(true),
            Err(detail) => {
                line.answers = Some(false);
                line.findings
                    .push(Rated::from(Finding::DcNotAnswering { detail }));
            }
        }
    }
    for line in &mut lines {
        if line.answers.is_none() {
            line.answers = Some(false);
            line.findings.push(Rated::from(Finding::DcNotAnswering {
                detail: "the check stopped unexpectedly".into(),
            }));
        }
    }
    domain.domain_controllers = lines;
    domain
}

fn dc_line(dc: &DomainController, answers: Option<bool>) -> DcAudit {
    DcAudit {
        name: dc.name.clone(),
        dns_host_name: dc.dns_host_name.clone(),
        site: dc.site.clone(),
        answers,
        elapsed_ms: 0,
        findings: Vec::new(),
    }
}

/// The DN of the first of `candidates` the directory finds.
async fn known_object(
    directory: &dyn Directory,
    candidates: &[UserRef],
    limit: Duration,
) -> Result<exch_directory::Dn, String> {
    let mut last = String::from("no object to read was given");
    for user in candidates {
        match answer_within(limit, directory.find_account(user)).await {
            Ok(account) => return Ok(account.dn),
            Err(detail) => last = format!("{user}: {detail}"),
        }
    }
    Err(last)
}

/// The objects read on every DC: the bind account (when it names a user), then `krbtgt`.
pub fn known_objects(bind_user: Option<&str>) -> Vec<UserRef> {
    let mut v = Vec::new();
    if let Some(user) = bind_user.and_then(|b| UserRef::parse(b).ok()) {
        v.push(user);
    }
    v.push(UserRef::Sam("krbtgt".into()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use exch_core::{ExchangeVersion, ServerRoles};
    use exch_directory::InMemoryDirectory;
    use exch_iis::RecordingFlusher;

    fn ex(name: &str) -> ExchangeServer {
        ExchangeServer::new(name, format!("{}.corp.example", name.to_lowercase()))
            .with_version(ExchangeVersion::new(15, 2, 1258))
            .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS)
            .with_site("HQ")
    }

    fn plan() -> AuditPlan {
        AuditPlan {
            method: FlushMethod::RecycleCatalogPools,
            concurrency: 2,
            per_target_timeout: Duration::from_secs(5),
            known_objects: known_objects(Some("svc@corp.example")),
            domain_name: Some("DC=corp,DC=example".into()),
        }
    }

    fn describe() -> MethodDescriber {
        Arc::new(|_: &ExchangeServer| "recording".to_owned())
    }

    /// [`audit_server`] of `server` with the catalog's pools and a 5 s limit.
    async fn audit_one(flusher: &RecordingFlusher, server: ExchangeServer) -> ServerAudit {
        audit_server(
            flusher,
            &describe(),
            server,
            &FlushMethod::RecycleCatalogPools,
            Duration::from_secs(5),
        )
        .await
    }

    fn kinds(a: &ServerAudit) -> Vec<&Finding> {
        a.findings.iter().map(|f| &f.finding).collect()
    }

    #[tokio::test]
    async fn a_healthy_server_has_no_problem_and_lists_what_a_revoke_recycles() {
        let flusher = RecordingFlusher::new();
        let a = audit_one(&flusher, ex("EX01")).await;
        assert!(!a.has_problem(), "{:?}", a.findings);
        assert_eq!(a.winrm.reachable, Some(true));
        assert_eq!(a.winrm.authenticated, Some(true));
        assert_eq!(a.would_recycle.len(), 7, "{:?}", a.would_recycle);
        assert!(
            a.impact.contains("MSExchangeMapiFrontEndAppPool"),
            "{}",
            a.impact
        );
        assert!(a.impact.contains("stop-then-start"), "{}", a.impact);
        // Only reads: nothing was flushed or written.
        assert!(
            flusher
                .calls()
                .iter()
                .all(|c| !matches!(c.operation, exch_iis::FlushOperation::Flush(_))),
            "{:?}",
            flusher.calls()
        );
    }

    #[tokio::test]
    async fn ttl_zero_and_missing_pools_are_problems() {
        let owa = AppPool::from_static("MSExchangeOWAAppPool");
        let flusher = RecordingFlusher::new()
            .with_token_ttl("EX01", Some(Duration::ZERO))
            .with_pools("EX01", [owa]);
        let a = audit_one(&flusher, ex("EX01")).await;
        let k = kinds(&a);
        assert!(k.contains(&&Finding::TokensNeverExpire), "{k:?}");
        let missing = k.iter().find_map(|f| match f {
            Finding::MissingPools { pools } => Some(pools.clone()),
            _ => None,
        });
        let missing = missing.expect("missing pools reported");
        assert_eq!(missing.len(), 6, "{missing:?}");
        assert_eq!(a.would_recycle, ["MSExchangeOWAAppPool"]);
        assert!(a.token_ttl.is_some_and(|t| t.never_expires));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_one_problem_and_not_asked_twice() {
        let flusher = RecordingFlusher::new().with_error(
            "EX02",
            IisError::Unreachable {
                server: "EX02".into(),
                endpoint: "http://ex02:5985/wsman".into(),
                detail: "connection refused".into(),
                source: None,
            },
        );
        let a = audit_one(&flusher, ex("EX02")).await;
        assert_eq!(a.winrm.reachable, Some(false));
        assert_eq!(a.findings.len(), 1, "{:?}", a.findings);
        assert!(matches!(
            a.findings[0].finding,
            Finding::WinRmUnreachable { .. }
        ));
        assert!(a.has_problem());
        assert_eq!(flusher.calls().len(), 1, "{:?}", flusher.calls());
        // Still says what a revoke would try to recycle there.
        assert_eq!(a.would_recycle.len(), 7);
    }

    #[tokio::test]
    async fn edge_servers_are_not_contacted() {
        let flusher = RecordingFlusher::new();
        let edge = ex("EDGE1").with_roles(ServerRoles::EDGE);
        let a = audit_one(&flusher, edge).await;
        assert!(!a.has_problem());
        assert!(flusher.calls().is_empty());
        assert_eq!(a.winrm.reachable, None);
    }

    #[tokio::test]
    async fn servers_are_audited_with_a_bound_and_reported_in_order() {
        let (flusher, gate) = RecordingFlusher::gated();
        let flusher = Arc::new(flusher);
        let servers: Vec<ExchangeServer> = (1..=5).map(|i| ex(&format!("EX{i:02}"))).collect();
        let p = plan();
        let run = tokio::spawn({
            let flusher: Arc<dyn CacheFlusher> = flusher.clone();
            let p = p.clone();
            let servers = servers.clone();
            async move { audit_servers(flusher, describe(), servers, &p).await }
        });
        gate.wait_for_waiting(2).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(gate.waiting(), 2, "the bound is {}", p.concurrency);
        gate.open();
        let audited = run.await.expect("audit task");
        assert!(gate.max_in_flight() <= 2, "{}", gate.max_in_flight());
        let names: Vec<&str> = audited.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["EX01", "EX02", "EX03", "EX04", "EX05"]);
    }

    #[tokio::test]
    async fn a_dc_that_does_not_answer_is_a_problem() {
        let dir = InMemoryDirectory::new();
        dir.add_user("svc", "svc@corp.example", "Svc-Pass-1!");
        dir.add_domain_controller("DC2", Duration::ZERO);
        dir.set_dc_reachable("DC2", false);
        let dir: Arc<dyn Directory> = Arc::new(dir);
        let domain = audit_domain(dir, &plan()).await;
        assert!(domain.known_object.is_some(), "{domain:?}");
        let dc2 = domain
            .domain_controllers
            .iter()
            .find(|d| d.name == "DC2")
            .expect("DC2 listed");
        assert_eq!(dc2.answers, Some(false));
        assert!(domain.has_problem());
        assert!(domain
            .domain_controllers
            .iter()
            .filter(|d| d.name != "DC2")
            .all(|d| d.answers == Some(true)));
    }
}
