//! The whole flow end to end: orchestrator + WinRmFlusher over real WinRM/HTTP + the lab fleet,
//! with the in-memory directory (always) and with Samba AD (`scripts/test.sh`; skipped with a
//! `SKIPPED:` line otherwise, unless EXCH_REVOKE_REQUIRE_SAMBA=1). Every run probes the old
//! credentials over real HTTP logons and requires refusal on every server and protocol.
//!
//! The truth is checked independently of the product: a plain reqwest client (not
//! `HttpProber`) logs on and requires an **explicit** refusal — 401 with a Basic challenge, or
//! OWA's logon page with `reason=2` — on every server × protocol (anything else, a 503 or a
//! redirect for an unreadable cookie, is not a refusal); the user's OWA/ECP `cadata` session and
//! Basic ActiveSync logon survive a recycle while the account is enabled and are refused after
//! the remediation; new workers are read from the lab's own recycle counters and worker pids.
#![allow(clippy::unwrap_used)]

use exch_core::{AppPool, ExchangeServer, Protocol};
use exch_directory::{AuthResult, Directory, InMemoryDirectory};
use exch_iis::{
    AppPoolState, CacheFlusher, FlushMethod, FlushReport, IisError, PoolFlush, PoolRunState,
    TokenCacheSettings, WinRmAuth, WinRmFlusher, WorkerProcess,
};
use exch_lab::fleet::{Fleet, FleetBuilder, LabServer, ServerSpec};
use exch_lab::host::IisHost;
use exch_remediate::{
    HttpProber, NewPassword, Outcome, ProbeResult, Prober, Remediation, RetryPolicy, ServerOutcome,
    Strategy, Timeouts,
};
use exch_samba::SambaAd;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

const OLD: &str = "Old-Passw0rd!2026";
const NEW: &str = "N3w-Secret!x-2026";

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn specs(b: FleetBuilder, prefix: &str) -> FleetBuilder {
    b.server(
        ServerSpec::exchange_2019(format!("{prefix}19")).recycle_latency(Duration::from_millis(20)),
    )
    .server(
        ServerSpec::exchange_2016(format!("{prefix}16")).recycle_latency(Duration::from_millis(20)),
    )
    .server(
        ServerSpec::exchange_2010(format!("{prefix}10")).recycle_latency(Duration::from_millis(20)),
    )
    .winrm_credentials("LAB\\svc-revoke", secret("Lab-WinRM-Pass-1"))
}

struct Wiring {
    flusher: Arc<WinRmFlusher>,
    prober: HttpProber,
}

fn wire(fleet: &Fleet) -> Wiring {
    let mut prober = HttpProber::new().unwrap();
    let mut flusher = WinRmFlusher::builder()
        .auth(WinRmAuth::Ntlm)
        .timeout(Duration::from_secs(20))
        .credentials("LAB\\svc-revoke", secret("Lab-WinRM-Pass-1"));
    for s in fleet.servers() {
        prober = prober.base_url(s.name(), s.base_url());
        flusher = flusher.endpoint(s.name(), s.winrm_url());
    }
    Wiring {
        flusher: Arc::new(flusher.build().unwrap()),
        prober,
    }
}

/// Protocols that take a password logon at Microsoft's defaults (the lab's too): EWS and MAPI
/// take Windows authentication only, so a Basic probe there proves nothing either way
/// ([`ProbeResult::NotApplicable`]).
const PASSWORD_PROTOCOLS: [Protocol; 3] = [Protocol::Owa, Protocol::Eas, Protocol::RpcHttp];

/// Every server/protocol pair of [`PASSWORD_PROTOCOLS`] the lab serves: 3 servers × 3.
const SERVED: usize = 9;

/// Logs `user` on to every protocol of every server with `password`; returns the accepted ones.
async fn accepted(
    prober: &HttpProber,
    servers: &[ExchangeServer],
    user: &str,
    password: &str,
) -> Vec<String> {
    let mut ok = Vec::new();
    for s in servers {
        for p in PASSWORD_PROTOCOLS {
            if let ProbeResult::Accepted(_) = prober.probe(s, p, user, &secret(password)).await {
                ok.push(format!("{}/{p}", s.name));
            }
        }
    }
    ok
}

/// What an independent client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Saw {
    /// 200 (or OWA's redirect into the mailbox with a cookie).
    Accepted,
    /// An explicit refusal: 401 with a Basic challenge, or OWA's logon page with `reason=2`.
    Refused,
    /// Anything else (503, 404, a redirect for a missing cookie, …): not a refusal.
    Other(String),
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Basic logon to `path` with a plain client.
async fn basic_saw(server: &LabServer, path: &str, user: &str, password: &str) -> Saw {
    let r = plain_client()
        .post(format!("{}{path}", server.base_url()))
        .basic_auth(user, Some(password))
        .body("")
        .send()
        .await
        .unwrap();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    match r.status() {
        reqwest::StatusCode::OK => Saw::Accepted,
        reqwest::StatusCode::UNAUTHORIZED if challenge.starts_with("Basic realm=") => Saw::Refused,
        other => Saw::Other(format!("{other} {challenge}")),
    }
}

/// OWA forms logon with a plain client: the `cadata` cookie when accepted.
async fn forms_logon(server: &LabServer, user: &str, password: &str) -> (Saw, Option<String>) {
    let r = plain_client()
        .post(format!("{}/owa/auth.owa", server.base_url()))
        .form(&[
            ("destination", "/owa/"),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("cadata="))
        .map(|c| c.split(';').next().unwrap_or("").to_owned());
    let to = location(&r);
    match (r.status(), cookie) {
        (reqwest::StatusCode::FOUND, Some(c)) if to == "/owa/" => (Saw::Accepted, Some(c)),
        (reqwest::StatusCode::FOUND, None) if to == exch_lab::iis::LOGON_REFUSED => {
            (Saw::Refused, None)
        }
        (other, _) => (Saw::Other(format!("{other} → {to}")), None),
    }
}

/// A forms page (`/owa/`, `/ecp/`) with a `cadata` session cookie.
async fn session_saw(server: &LabServer, page: &str, session: &str) -> Saw {
    let r = plain_client()
        .get(format!("{}{page}", server.base_url()))
        .header("cookie", format!("cadata={session}"))
        .send()
        .await
        .unwrap();
    let to = location(&r);
    match r.status() {
        reqwest::StatusCode::OK => Saw::Accepted,
        reqwest::StatusCode::FOUND if to == exch_lab::iis::LOGON_REFUSED => Saw::Refused,
        other => Saw::Other(format!("{other} → {to}")),
    }
}

/// The Basic endpoints of the lab at Microsoft's defaults (EWS and MAPI take Windows
/// authentication only, see exch_lab::iis).
const BASIC_PATHS: [(Protocol, &str); 3] = [
    (Protocol::Eas, "/Microsoft-Server-ActiveSync"),
    (Protocol::RpcHttp, "/rpc/rpcproxy.dll"),
    (Protocol::Autodiscover, "/Autodiscover/Autodiscover.xml"),
];

/// Every server × protocol with a plain client: a fresh forms logon, the given sessions on
/// `/owa/` and `/ecp/`, and every Basic endpoint the server's version serves.
async fn independent(
    fleet: &Fleet,
    user: &str,
    password: &str,
    sessions: &[String],
) -> Vec<(String, Saw)> {
    let mut out = Vec::new();
    for (i, s) in fleet.servers().iter().enumerate() {
        out.push((
            format!("{}/owa-logon", s.name()),
            forms_logon(s, user, password).await.0,
        ));
        if let Some(session) = sessions.get(i) {
            for page in ["/owa/", "/ecp/"] {
                out.push((
                    format!("{}{page} session", s.name()),
                    session_saw(s, page, session).await,
                ));
            }
        }
        for (protocol, path) in BASIC_PATHS {
            if s.iis().pool_for(protocol).is_some() {
                out.push((
                    format!("{}/{protocol}", s.name()),
                    basic_saw(s, path, user, password).await,
                ));
            }
        }
    }
    out
}

/// One `cadata` session per server.
async fn sessions_everywhere(fleet: &Fleet, user: &str, password: &str) -> Vec<String> {
    let mut sessions = Vec::new();
    for s in fleet.servers() {
        let (saw, cookie) = forms_logon(s, user, password).await;
        assert_eq!(saw, Saw::Accepted, "{}", s.name());
        sessions.push(cookie.unwrap());
    }
    sessions
}

fn not(want: &Saw, seen: &[(String, Saw)]) -> Vec<String> {
    seen.iter()
        .filter(|(_, s)| s != want)
        .map(|(k, s)| format!("{k}: {s:?}"))
        .collect()
}

/// Recycles the OWA, ECP and ActiveSync pools of every server through the lab and waits for the
/// recycles to finish (the lab's own view).
async fn recycle_session_pools(fleet: &Fleet) {
    for s in fleet.servers() {
        for pool in [
            "MSExchangeOWAAppPool",
            "MSExchangeECPAppPool",
            "MSExchangeSyncAppPool",
        ] {
            s.iis().recycle(pool).await.unwrap();
            assert!(s.iis().recycled(pool, Duration::from_secs(10)).await);
        }
    }
}

/// The lab's own view of one server: each pool's current worker pid, and completed recycles.
type LabView = (Vec<(String, Option<u32>)>, u64);

#[derive(Clone, Copy, Debug)]
enum Act {
    Disable,
    Reset,
    Both,
}

fn timeouts() -> Timeouts {
    Timeouts::default()
        .with_converge(Duration::from_secs(10))
        .with_converge_poll(Duration::from_millis(20))
        .with_per_server(Duration::from_secs(20))
        .with_directory(Duration::from_secs(10))
}

async fn run_case(act: Act, strategy: Strategy) {
    let dir = InMemoryDirectory::new();
    dir.add_user("bob", "bob@lab.example.test", OLD);
    dir.add_domain_controller("DC1", Duration::ZERO);
    dir.add_domain_controller("DC2", Duration::from_millis(50));
    let fleet = specs(
        Fleet::builder()
            .directory(Arc::new(dir.clone()))
            .registrar(dir.clone()),
        "EX",
    )
    .build()
    .await
    .unwrap();
    let w = wire(&fleet);
    let servers = fleet.exchange_servers();
    let user = "bob@lab.example.test";
    // Logged on everywhere: the tokens are cached.
    assert_eq!(
        accepted(&w.prober, &servers, user, OLD).await.len(),
        SERVED,
        "{:?}",
        accepted(&w.prober, &servers, user, OLD).await
    );
    // The user's OWA/ECP cookie sessions and Basic ActiveSync survive a recycle while the
    // account is enabled (the cookie logs on again on the new workers).
    let sessions = sessions_everywhere(&fleet, user, OLD).await;
    recycle_session_pools(&fleet).await;
    let before = independent(&fleet, user, OLD, &sessions).await;
    assert!(
        not(&Saw::Accepted, &before).is_empty(),
        "{:?}",
        not(&Saw::Accepted, &before)
    );
    // The lab's own view before the remediation: worker pids and completed recycles.
    let lab_before: Vec<LabView> = fleet
        .servers()
        .iter()
        .map(|s| {
            let pids = s
                .iis()
                .pools()
                .iter()
                .map(|p| (p.name.clone(), s.iis().current_pid(&p.name)))
                .collect();
            (pids, s.counters().iis.recycles_completed)
        })
        .collect();

    let mut b = Remediation::builder()
        .directory(Arc::new(dir.clone()))
        .flusher(w.flusher.clone())
        .user(user)
        .strategy(strategy)
        .timeouts(timeouts())
        .probe_old_password(Arc::new(w.prober.clone()), secret(OLD));
    b = match act {
        Act::Disable => b.disable(),
        Act::Reset => b.reset_password(NewPassword::Given(secret(NEW))),
        Act::Both => b.disable().reset_password(NewPassword::Given(secret(NEW))),
    };
    let r = b.build().unwrap();
    let plan = r.plan().await.unwrap();
    let report = r.execute(&plan).await;
    assert_eq!(
        report.outcome,
        Outcome::Revoked,
        "{act:?} {strategy:?}\n{}",
        report.summary()
    );
    // WinRM runs as Windows' defaults require (NTLM, sealed): no opt-out to name. The only
    // note left is the prober's: probes over http:// (the lab's IIS endpoints are plain HTTP).
    assert!(
        !report.security.iter().any(|n| n.starts_with("WinRM"))
            && report.security.iter().any(|n| n.starts_with("probe:")),
        "{:?}",
        report.security
    );
    for s in &report.servers {
        let ServerOutcome::Flushed { flush, .. } = &s.outcome else {
            panic!("{s:?}")
        };
        assert!(
            flush.round_trips <= 5,
            "{}: {} round trips",
            s.server,
            flush.round_trips
        );
        for p in &flush.pools {
            let old: Vec<u32> = p.before.iter().map(|w| w.pid).collect();
            assert!(
                p.after.iter().all(|w| !old.contains(&w.pid)),
                "{}: old worker still serving",
                p.pool
            );
        }
        // Refused on every endpoint that takes a password logon; EWS and MAPI (Windows
        // authentication only) are recorded as not applicable, never as refused.
        assert!(
            s.probes.iter().any(|p| p.refused)
                && s.probes.iter().all(|p| p.refused || !p.applicable),
            "{s:?}"
        );
        assert!(
            s.probes
                .iter()
                .filter(|p| !p.applicable)
                .all(|p| !p.refused && matches!(p.protocol, Protocol::Ews | Protocol::Mapi)),
            "{s:?}"
        );
    }
    // Independently of the report: the old credentials are refused on every server and protocol.
    assert_eq!(
        accepted(&w.prober, &servers, user, OLD).await,
        Vec::<String>::new()
    );
    // … explicitly (401 / the logon page with reason=2, not a 503 or a lost cookie), by a
    // plain client, and the cookie sessions are refused by the directory, not forgotten.
    let after = independent(&fleet, user, OLD, &sessions).await;
    assert!(
        not(&Saw::Refused, &after).is_empty(),
        "{:?}",
        not(&Saw::Refused, &after)
    );
    // The lab's own counters and pids: every flushed pool has a worker it did not have before,
    // or none at all (on demand), and each server completed at least that many recycles.
    for (s, (pids, completed)) in fleet.servers().iter().zip(&lab_before) {
        let record = report
            .servers
            .iter()
            .find(|r| r.server == s.name())
            .unwrap();
        let ServerOutcome::Flushed { flush, .. } = &record.outcome else {
            panic!("{record:?}")
        };
        for p in &flush.pools {
            let old = pids
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(p.pool.as_str()))
                .and_then(|(_, pid)| *pid);
            let now = s.iis().current_pid(p.pool.as_str());
            assert!(
                old.is_some() && now != old,
                "{}: {} still runs worker {old:?}",
                s.name(),
                p.pool
            );
        }
        assert!(
            s.counters().iis.recycles_completed >= completed + flush.pools.len() as u64,
            "{}: the lab completed {} recycles",
            s.name(),
            s.counters().iis.recycles_completed - completed
        );
    }
    if matches!(act, Act::Reset) {
        // Not disabled: the new password works.
        assert_eq!(accepted(&w.prober, &servers, user, NEW).await.len(), SERVED);
        let fresh = independent(&fleet, user, NEW, &[]).await;
        assert!(
            not(&Saw::Accepted, &fresh).is_empty(),
            "{:?}",
            not(&Saw::Accepted, &fresh)
        );
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn disable_parallel() {
    run_case(Act::Disable, Strategy::Parallel { max_in_flight: 64 }).await;
}

#[tokio::test]
async fn reset_parallel() {
    run_case(Act::Reset, Strategy::Parallel { max_in_flight: 2 }).await;
}

#[tokio::test]
async fn both_rolling() {
    run_case(
        Act::Both,
        Strategy::Rolling {
            batch: 1,
            pause: Duration::from_millis(10),
        },
    )
    .await;
}

#[tokio::test]
async fn disable_rolling() {
    run_case(
        Act::Disable,
        Strategy::Rolling {
            batch: 2,
            pause: Duration::ZERO,
        },
    )
    .await;
}

#[tokio::test]
async fn a_failing_server_gives_partial_naming_it_and_a_rerun_finishes() {
    let dir = InMemoryDirectory::new();
    dir.add_user("carol", "carol@lab.example.test", OLD);
    let fleet = specs(
        Fleet::builder()
            .directory(Arc::new(dir.clone()))
            .registrar(dir.clone()),
        "PF",
    )
    .build()
    .await
    .unwrap();
    let w = wire(&fleet);
    let user = "carol@lab.example.test";
    assert_eq!(
        accepted(&w.prober, &fleet.exchange_servers(), user, OLD)
            .await
            .len(),
        SERVED
    );
    let bad = fleet.server("PF16").unwrap();
    bad.fail_recycle("MSExchangeSyncAppPool");
    let build = |resume| {
        let mut b = Remediation::builder()
            .directory(Arc::new(dir.clone()))
            .flusher(w.flusher.clone())
            .user(user)
            .disable()
            .reset_password(NewPassword::Given(secret(NEW)))
            .retry(RetryPolicy::none())
            .timeouts(timeouts())
            .probe_old_password(Arc::new(w.prober.clone()), secret(OLD));
        if let Some(r) = resume {
            b = b.resume(r);
        }
        b.build().unwrap()
    };
    let r = build(None);
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    assert_eq!(report.servers_to_retry, ["PF16"]);
    let pf16 = report.servers.iter().find(|s| s.server == "PF16").unwrap();
    assert!(
        matches!(&pf16.outcome, ServerOutcome::Unproven { reason, .. } if reason.contains("MSExchangeSyncAppPool")),
        "{pf16:?}"
    );
    // ActiveSync on PF16 still serves the old password from its cache: exactly what the
    // report says.
    let still = accepted(&w.prober, &fleet.exchange_servers(), user, OLD).await;
    assert_eq!(still, ["PF16/eas"]);
    let seen = independent(&fleet, user, OLD, &[]).await;
    assert_eq!(not(&Saw::Refused, &seen), ["PF16/eas: Accepted"]);

    bad.clear_recycle_fault("MSExchangeSyncAppPool");
    let dn = exch_directory::Dn(report.account.clone().unwrap());
    let pwd = dir.account(&dn).unwrap().pwd_last_set;
    let r2 = build(Some(report));
    let report2 = r2.execute(&r2.plan().await.unwrap()).await;
    assert_eq!(report2.outcome, Outcome::Revoked, "{}", report2.summary());
    let flushed: Vec<&str> = report2
        .servers
        .iter()
        .filter(|s| s.outcome.is_proven())
        .map(|s| s.server.as_str())
        .collect();
    assert_eq!(flushed, ["PF16"]);
    assert_eq!(
        dir.account(&dn).unwrap().pwd_last_set,
        pwd,
        "the rerun reset the password again"
    );
    assert!(accepted(&w.prober, &fleet.exchange_servers(), user, OLD)
        .await
        .is_empty());
    let seen = independent(&fleet, user, OLD, &[]).await;
    assert!(
        not(&Saw::Refused, &seen).is_empty(),
        "{:?}",
        not(&Saw::Refused, &seen)
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_flush_before_the_dcs_agree_leaves_the_cookie_session_in() {
    // The order a product bug would produce: flush first, change the directory afterwards
    // (what a flush that does not wait for convergence does on a slow DC). The OWA/ECP
    // sessions survive the flush, log on again with the still-valid account, and the cached
    // tokens keep the user in after the disable: the independent check catches it.
    let dir = InMemoryDirectory::new();
    dir.add_user("dave", "dave@lab.example.test", OLD);
    let fleet = specs(
        Fleet::builder()
            .directory(Arc::new(dir.clone()))
            .registrar(dir.clone()),
        "EA",
    )
    .build()
    .await
    .unwrap();
    let w = wire(&fleet);
    let user = "dave@lab.example.test";
    let sessions = sessions_everywhere(&fleet, user, OLD).await;
    for s in &fleet.exchange_servers() {
        let flush = w.flusher.flush(s, &FlushMethod::default()).await.unwrap();
        assert!(flush.is_proven(), "{flush:?}");
    }
    let seen = independent(&fleet, user, OLD, &sessions).await;
    assert!(
        not(&Saw::Accepted, &seen).is_empty(),
        "{:?}",
        not(&Saw::Accepted, &seen)
    );
    let account = dir
        .find_account(&exch_directory::UserRef::parse(user).unwrap())
        .await
        .unwrap();
    dir.disable_account(&account).await.unwrap();
    for (s, session) in fleet.servers().iter().zip(&sessions) {
        for page in ["/owa/", "/ecp/"] {
            assert_eq!(
                session_saw(s, page, session).await,
                Saw::Accepted,
                "{}{page}: the flush ran too early, the session must still work",
                s.name()
            );
        }
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_slow_new_worker_is_proven_after_polling_and_the_plan_names_the_cut_offs() {
    // New workers take 1.5 s to start; Restart-WebAppPool returns after 20 ms, while the old
    // worker still serves. The flush looks again until it has gone: Revoked, not Unproven.
    let dir = InMemoryDirectory::new();
    dir.add_user("erin", "erin@lab.example.test", OLD);
    let slow = |name: &str| {
        ServerSpec::exchange_2019(name).timing(exch_lab::model::IisTiming {
            worker_startup: Duration::from_millis(1500),
            ..Default::default()
        })
    };
    let fleet = Fleet::builder()
        .directory(Arc::new(dir.clone()))
        .registrar(dir.clone())
        .server(slow("SL19"))
        .winrm_credentials("LAB\\svc-revoke", secret("Lab-WinRM-Pass-1"))
        .build()
        .await
        .unwrap();
    let w = wire(&fleet);
    let user = "erin@lab.example.test";
    let sessions = sessions_everywhere(&fleet, user, OLD).await;
    let r = Remediation::builder()
        .directory(Arc::new(dir.clone()))
        .flusher(w.flusher.clone())
        .user(user)
        .disable()
        .timeouts(timeouts())
        .build()
        .unwrap();
    let plan = r.plan().await.unwrap();
    let impact = plan.impact.join("\n");
    for pool in [
        "MSExchangeMapiFrontEndAppPool",
        "MSExchangeRpcProxyFrontEndAppPool",
    ] {
        let line = impact
            .split("; ")
            .find(|p| p.contains(pool))
            .unwrap_or_else(|| panic!("{pool} not in the impact: {impact}"));
        assert!(
            line.contains("stop-then-start") && line.contains("after 5 s are cut"),
            "{line}"
        );
    }
    assert!(
        impact.contains("MSExchangeSyncAppPool (eas): overlapped"),
        "{impact}"
    );
    assert!(
        impact.contains("after 90 s are cut (ActiveSync Ping"),
        "{impact}"
    );
    assert!(impact.contains("MSExchangeECPAppPool"), "{impact}");

    let started = std::time::Instant::now();
    let report = r.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let ServerOutcome::Flushed { flush, attempts } = &report.servers[0].outcome else {
        panic!("{:?}", report.servers[0])
    };
    assert_eq!(*attempts, 1, "proven by looking again, not by a retry");
    let ex = &fleet.servers()[0];
    for p in &flush.pools {
        let now = ex.iis().current_pid(p.pool.as_str());
        assert!(p.proven && p.error.is_none(), "{p:?}");
        assert!(
            p.after.iter().all(|a| Some(a.pid) == now),
            "{}: the report lists the worker the lab runs: {p:?} vs {now:?}",
            p.pool
        );
    }
    let seen = independent(&fleet, user, OLD, &sessions).await;
    assert!(
        not(&Saw::Refused, &seen).is_empty(),
        "{:?}",
        not(&Saw::Refused, &seen)
    );
    fleet.shutdown().await;
}

/// A backend whose listing keeps showing the MAPI pool's old worker (a recycle that never
/// completes) and that does not wait itself (no error in its report).
#[derive(Debug)]
struct NeverCompletes;

fn old_worker() -> Vec<WorkerProcess> {
    vec![WorkerProcess::new(
        4,
        chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    )]
}

#[async_trait::async_trait]
impl CacheFlusher for NeverCompletes {
    async fn app_pools(&self, _: &ExchangeServer) -> Result<Vec<AppPoolState>, IisError> {
        Ok(vec![AppPoolState::new(
            AppPool::from_static("MSExchangeMapiFrontEndAppPool"),
            PoolRunState::Started,
            old_worker(),
        )])
    }

    async fn flush(
        &self,
        server: &ExchangeServer,
        method: &FlushMethod,
    ) -> Result<FlushReport, IisError> {
        let requested_at = chrono::Utc::now();
        Ok(
            FlushReport::new(&server.name, method.clone(), requested_at).with_pools(vec![
                PoolFlush::new(
                    AppPool::from_static("MSExchangeMapiFrontEndAppPool"),
                    old_worker(),
                    old_worker(),
                    PoolRunState::Started,
                    None,
                    requested_at,
                ),
            ]),
        )
    }

    async fn token_cache(&self, _: &ExchangeServer) -> Result<TokenCacheSettings, IisError> {
        Ok(TokenCacheSettings::new(None))
    }

    async fn set_token_ttl(
        &self,
        _: &ExchangeServer,
        ttl: Duration,
    ) -> Result<TokenCacheSettings, IisError> {
        Ok(TokenCacheSettings::new(Some(ttl)))
    }
}

#[tokio::test]
async fn a_recycle_that_never_completes_names_the_pool_and_the_time_waited() {
    let dir = InMemoryDirectory::new();
    dir.add_user("fred", "fred@lab.example.test", OLD);
    dir.add_exchange_server(
        ExchangeServer::new("NC19", "nc19.lab.example.test")
            .with_version(exch_core::ExchangeVersion::new(15, 2, 1258))
            .with_roles(exch_core::ServerRoles::MAILBOX | exch_core::ServerRoles::CLIENT_ACCESS),
    );
    let r = Remediation::builder()
        .directory(Arc::new(dir.clone()))
        .flusher(Arc::new(NeverCompletes))
        .user("fred@lab.example.test")
        .disable()
        .retry(RetryPolicy::none())
        .timeouts(timeouts())
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let report = r.execute(&r.plan().await.unwrap()).await;
    let waited = started.elapsed();
    assert_ne!(report.outcome, Outcome::Revoked, "{}", report.summary());
    let ServerOutcome::Unproven { reason, .. } = &report.servers[0].outcome else {
        panic!("{:?}", report.servers[0])
    };
    assert!(
        reason.contains("MSExchangeMapiFrontEndAppPool") && reason.contains("waiting 5.0 s"),
        "{reason}"
    );
    // It looked again for the pool's 5-second shutdown limit, not more, not less.
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}

#[tokio::test]
async fn samba_ad_disable_and_reset_end_to_end() {
    let Some(ad) = SambaAd::require("exch-revoke end to end (Samba AD + lab fleet)") else {
        return;
    };
    let env = ad.env();
    let dir: Arc<dyn Directory> = Arc::new(env.directory().build().await.unwrap());
    let sam = SambaAd::unique_name("e2e");
    let user = ad.create_user(&sam, &secret(OLD)).await.unwrap();
    let prefix = SambaAd::unique_name("E");
    let fleet = specs(
        Fleet::builder()
            .directory(dir.clone())
            .dns_domain(env.dns_domain())
            .registrar(ad.registrar()),
        &prefix,
    )
    .build()
    .await
    .unwrap();
    let w = wire(&fleet);
    let servers = fleet.exchange_servers();
    assert_eq!(
        accepted(&w.prober, &servers, &user.upn, OLD).await.len(),
        SERVED
    );
    // Cookie sessions and Basic logons survive a recycle while the account is enabled (each
    // re-logon is a real LDAP bind against Samba).
    let sessions = sessions_everywhere(&fleet, &user.upn, OLD).await;
    recycle_session_pools(&fleet).await;
    let before = independent(&fleet, &user.upn, OLD, &sessions).await;
    assert!(
        not(&Saw::Accepted, &before).is_empty(),
        "{:?}",
        not(&Saw::Accepted, &before)
    );

    // Discovery through LDAP finds the fleet; other tests' servers share the DC, so narrow to ours.
    let mut b = Remediation::builder()
        .directory(dir.clone())
        .flusher(w.flusher.clone())
        .user(user.upn.clone())
        .disable()
        .reset_password(NewPassword::Given(secret(NEW)))
        .timeouts(timeouts())
        .probe_old_password(Arc::new(w.prober.clone()), secret(OLD));
    for s in fleet.servers() {
        b = b.include_server(s.name());
    }
    let r = b.build().unwrap();
    let plan = r.plan().await.unwrap();
    assert_eq!(plan.flushed_servers().count(), 3, "{}", plan.summary());
    let report = r.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert!(report.domain_controllers.iter().all(|d| d.converged));
    assert!(accepted(&w.prober, &servers, &user.upn, OLD)
        .await
        .is_empty());
    // Explicit refusals by a plain client, the sessions refused by Samba's answer.
    let after = independent(&fleet, &user.upn, OLD, &sessions).await;
    assert!(
        not(&Saw::Refused, &after).is_empty(),
        "{:?}",
        not(&Saw::Refused, &after)
    );
    // The directory agrees: old password refused, new one disabled (AD says 533 only for the right password).
    assert_eq!(
        dir.authenticate(&user.upn, &secret(OLD)).await.unwrap(),
        AuthResult::BadCredentials
    );
    assert_eq!(
        dir.authenticate(&user.upn, &secret(NEW)).await.unwrap(),
        AuthResult::AccountDisabled
    );

    fleet.shutdown().await;
    let names = fleet.servers().iter().map(|s| s.name());
    let _ = ad.remove_exchange_servers(names).await;
    let _ = ad.delete(&user.dn).await;
}
