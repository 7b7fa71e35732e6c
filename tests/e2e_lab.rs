//! The whole flow end to end: orchestrator + WinRmFlusher over real WinRM/HTTP + the lab fleet,
//! with the in-memory directory (always) and with Samba AD (`scripts/test.sh`; skipped with a
//! `SKIPPED:` line otherwise, unless EXCH_REVOKE_REQUIRE_SAMBA=1). Every run probes the old
//! credentials over real HTTP logons and requires refusal on every server and protocol.
#![allow(clippy::unwrap_used)]

use exch_core::{ExchangeServer, Protocol};
use exch_directory::{AuthResult, Directory, InMemoryDirectory, LdapDirectory};
use exch_iis::{WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Fleet, FleetBuilder, ServerSpec};
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

/// Every server/protocol pair the lab serves: Exchange 2010 has no MAPI/HTTP.
const SERVED: usize = 14;

/// Logs `user` on to every protocol of every server with `password`; returns the accepted ones.
async fn accepted(
    prober: &HttpProber,
    servers: &[ExchangeServer],
    user: &str,
    password: &str,
) -> Vec<String> {
    let mut ok = Vec::new();
    for s in servers {
        for p in [
            Protocol::Owa,
            Protocol::Ews,
            Protocol::Eas,
            Protocol::Mapi,
            Protocol::RpcHttp,
        ] {
            if let ProbeResult::Accepted(_) = prober.probe(s, p, user, &secret(password)).await {
                ok.push(format!("{}/{p}", s.name));
            }
        }
    }
    ok
}

#[derive(Clone, Copy, Debug)]
enum Act {
    Disable,
    Reset,
    Both,
}

fn timeouts() -> Timeouts {
    Timeouts {
        converge: Duration::from_secs(10),
        converge_poll: Duration::from_millis(20),
        per_server: Duration::from_secs(20),
        directory: Duration::from_secs(10),
    }
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
        assert!(
            !s.probes.is_empty() && s.probes.iter().all(|p| p.refused),
            "{s:?}"
        );
    }
    // Independently of the report: the old credentials are refused on every server and protocol.
    assert_eq!(
        accepted(&w.prober, &servers, user, OLD).await,
        Vec::<String>::new()
    );
    if matches!(act, Act::Reset) {
        // Not disabled: the new password works.
        assert_eq!(accepted(&w.prober, &servers, user, NEW).await.len(), SERVED);
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
    bad.fail_recycle("MSExchangeServicesAppPool");
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
        matches!(&pf16.outcome, ServerOutcome::Unproven { reason, .. } if reason.contains("MSExchangeServicesAppPool")),
        "{pf16:?}"
    );
    // EWS on PF16 still serves the old password from its cache: exactly what the report says.
    let still = accepted(&w.prober, &fleet.exchange_servers(), user, OLD).await;
    assert_eq!(still, ["PF16/ews"]);

    bad.clear_recycle_fault("MSExchangeServicesAppPool");
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
    fleet.shutdown().await;
}

#[tokio::test]
async fn samba_ad_disable_and_reset_end_to_end() {
    let Some(ad) = SambaAd::require("exch-revoke end to end (Samba AD + lab fleet)") else {
        return;
    };
    let env = ad.env();
    let dir: Arc<dyn Directory> = Arc::new(
        LdapDirectory::builder()
            .url(env.url_ldaps.clone())
            .ca_file(env.ca_file.clone())
            .bind(env.admin_bind.clone(), env.admin_password.clone())
            .build()
            .await
            .unwrap(),
    );
    let sam = SambaAd::unique_name("e2e");
    let user = ad.create_user(&sam, &secret(OLD)).await.unwrap();
    let prefix = SambaAd::unique_name("E");
    let fleet = specs(
        Fleet::builder()
            .directory(dir.clone())
            .dns_domain(env.dns_domain())
            .registrar(move |s: ExchangeServer| async move {
                let v = s.version.ok_or("no version")?;
                ad.add_exchange_server(&s.name, &s.fqdn, v, s.roles, s.site.as_deref())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
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
    for s in fleet.servers() {
        let _ = ad
            .delete(&format!(
                "CN={},{}",
                s.name(),
                ad.exchange_servers_container()
            ))
            .await;
    }
    let _ = ad.delete(&user.dn).await;
}
