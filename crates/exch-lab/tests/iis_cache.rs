//! The token cache over real HTTP: UserTokenTTL expiry and sliding renewal, TTL 0, overlapped
//! recycle (asynchronous: the old worker serves until the new one has started), OWA / ECP
//! `cadata` sessions that survive recycles, per-vdir authentication, version-dependent pools.
#![allow(clippy::unwrap_used)]

mod fleet_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use exch_directory::{Directory, InMemoryDirectory, UserRef};
use exch_lab::clock::LabClock;
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_lab::host::IisHost;
use fleet_support::{basic, forms_page, owa_logon, owa_mailbox, Seen};

const EAS: &str = "/Microsoft-Server-ActiveSync";
const EWS: &str = "/EWS/Exchange.asmx";
const PW: &str = "Old-Passw0rd!";

async fn lab(spec: ServerSpec, clock: LabClock) -> (InMemoryDirectory, Fleet) {
    let dir = InMemoryDirectory::new();
    dir.add_user("alice", "alice@lab.example.test", PW);
    let fleet = Fleet::builder()
        .winrm_basic_over_http()
        .directory(Arc::new(dir.clone()))
        .server(spec)
        .clock(clock)
        .build()
        .await
        .unwrap();
    (dir, fleet)
}

async fn disable(dir: &InMemoryDirectory, user: &str) {
    let account = dir
        .find_account(&UserRef::parse(user).unwrap())
        .await
        .unwrap();
    dir.disable_account(&account).await.unwrap();
}

fn token(seen: &Seen) -> &str {
    match seen {
        Seen::Ok { token, .. } => token,
        other => panic!("expected 200, got {other:?}"),
    }
}

#[tokio::test]
async fn user_token_ttl_expires_and_slides() {
    let clock = LabClock::frozen();
    let (dir, fleet) = lab(ServerSpec::exchange_2019("EX01"), clock.clone()).await;
    let ex = &fleet.servers()[0];
    let user = "alice@lab.example.test";
    assert_eq!(token(&basic(ex, EAS, user, PW).await), "directory");
    assert_eq!(token(&basic(ex, EAS, user, PW).await), "cache");
    disable(&dir, user).await;

    // Each use within 900 s slides the expiry: 3 × 899 s later the token still works.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(899));
        assert_eq!(token(&basic(ex, EAS, user, PW).await), "cache");
    }
    // 900 s without use: the entry expires, the directory refuses the disabled account.
    clock.advance(Duration::from_secs(900));
    assert_eq!(basic(ex, EAS, user, PW).await, Seen::Refused);
    let c = ex.counters().iis;
    assert_eq!((c.logons_from_directory, c.logons_from_cache), (1, 4));
    assert_eq!(c.logons_refused, 1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn scaled_time_expires_a_900_s_token_in_well_under_a_second() {
    // 1 real ms = 5 lab s: 900 lab s pass in 180 real ms.
    let clock = LabClock::scaled(5_000.0);
    let (dir, fleet) = lab(ServerSpec::exchange_2016("EX01"), clock.clone()).await;
    let ex = &fleet.servers()[0];
    let started = Instant::now();
    assert_eq!(token(&basic(ex, EAS, "LAB\\alice", PW).await), "directory");
    disable(&dir, "LAB\\alice").await;
    assert_eq!(token(&basic(ex, EAS, "LAB\\alice", PW).await), "cache");
    let lab_start = clock.now();
    // Wait on the lab clock itself (not a fixed sleep): 900 lab seconds, a loose real ceiling.
    while (clock.now() - lab_start).num_seconds() < 900 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the scaled clock stalled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(basic(ex, EAS, "LAB\\alice", PW).await, Seen::Refused);
    let real = started.elapsed();
    assert!(
        real < Duration::from_secs(30),
        "{real:?} (typically ~0.2 s)"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn ttl_zero_never_expires() {
    let clock = LabClock::frozen();
    let spec = ServerSpec::exchange_2019("EX01").user_token_ttl(0);
    let (dir, fleet) = lab(spec, clock.clone()).await;
    let ex = &fleet.servers()[0];
    let user = "alice@lab.example.test";
    assert_eq!(token(&basic(ex, EAS, user, PW).await), "directory");
    disable(&dir, user).await;
    clock.advance(Duration::from_secs(365 * 24 * 3600));
    assert_eq!(token(&basic(ex, EAS, user, PW).await), "cache");
    assert_eq!(ex.iis().token_ttl(), Some(0));
    fleet.shutdown().await;
}

#[tokio::test]
async fn set_token_ttl_applies_to_workers_started_afterwards() {
    let clock = LabClock::frozen();
    let (dir, fleet) = lab(ServerSpec::exchange_2019("EX01"), clock.clone()).await;
    let ex = &fleet.servers()[0];
    let user = "alice@lab.example.test";
    ex.iis().set_token_ttl(60);
    assert_eq!(token(&basic(ex, EAS, user, PW).await), "directory");
    disable(&dir, user).await;
    clock.advance(Duration::from_secs(120));
    // The running worker read 900 s at start-up.
    assert_eq!(token(&basic(ex, EAS, user, PW).await), "cache");
    fleet.shutdown().await;
}

#[tokio::test]
async fn overlapped_recycle_loses_no_request_in_flight() {
    let (dir, fleet) = lab(ServerSpec::exchange_2019("EX01"), LabClock::real()).await;
    let ex = fleet.servers()[0].clone();
    // The new worker takes 300 ms to start; Restart-WebAppPool returns after 20 ms.
    let mut timing = ex.iis().timing();
    timing.worker_startup = Duration::from_millis(300);
    ex.iis().set_timing(timing);
    let pool = "MSExchangeSyncAppPool";
    let user = "alice@lab.example.test";
    assert_eq!(token(&basic(&ex, EAS, user, PW).await), "directory");
    let old_pid = ex.iis().current_pid(pool).unwrap();

    // A request authenticates on the old worker and is kept in flight.
    let hold = ex.iis().hold_requests();
    let in_flight = tokio::spawn({
        let ex = ex.clone();
        async move { basic(&ex, EAS, user, PW).await }
    });
    while ex.iis().in_flight(pool) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    disable(&dir, user).await;
    ex.iis().recycle(pool).await.unwrap();

    // The cmdlet has returned, the recycle has not finished: the old worker still takes new
    // requests (from its cache), and it is the only one listed.
    assert_eq!(ex.iis().current_pid(pool), Some(old_pid));
    let listed = ex.iis().pools();
    let listed = listed.iter().find(|p| p.name == pool).unwrap();
    assert_eq!(listed.workers.len(), 1);
    assert_eq!(listed.workers[0].pid, old_pid);
    assert_eq!(ex.counters().iis.recycles_completed, 0);

    // Once the new worker has started it takes every new request; the old one drains.
    assert!(ex.iis().recycled(pool, Duration::from_secs(5)).await);
    assert_eq!(ex.counters().iis.recycles_completed, 1);
    let new_pid = ex.iis().current_pid(pool).unwrap();
    assert_ne!(new_pid, old_pid);
    assert_eq!(ex.iis().draining_pids(pool), vec![old_pid]);
    let listed = ex.iis().pools();
    let listed = listed.iter().find(|p| p.name == pool).unwrap();
    assert_eq!(listed.workers.len(), 1, "stopping workers are not serving");
    assert_eq!(listed.workers[0].pid, new_pid);
    let stopping: Vec<u32> = ex
        .iis()
        .stopping_workers(pool)
        .iter()
        .map(|w| w.pid)
        .collect();
    assert_eq!(stopping, vec![old_pid], "listed as Stopping");
    assert!(ex.iis().process_start_time(old_pid).is_some());

    hold.release();
    assert_eq!(
        in_flight.await.unwrap(),
        Seen::Ok {
            token: "cache".into(),
            pid: old_pid
        },
        "the request that started before the recycle completes on the old worker"
    );
    assert!(ex.iis().draining_pids(pool).is_empty());
    assert!(ex.iis().process_start_time(old_pid).is_none());
    assert_eq!(basic(&ex, EAS, user, PW).await, Seen::Refused);
    fleet.shutdown().await;
}

#[tokio::test]
async fn owa_and_ecp_sessions_survive_recycles_and_end_when_the_directory_refuses() {
    let dir = InMemoryDirectory::new();
    dir.add_user("alice", "alice@lab.example.test", PW);
    let fleet = Fleet::builder()
        .winrm_basic_over_http()
        .directory(Arc::new(dir.clone()))
        .server(ServerSpec::exchange_2019("EX01"))
        .server(ServerSpec::exchange_2016("EX02"))
        .build()
        .await
        .unwrap();
    let ex = &fleet.servers()[0];
    let other = &fleet.servers()[1];
    let (seen, session) = owa_logon(ex, "alice@lab.example.test", PW).await;
    assert!(matches!(seen, Seen::Ok { .. }), "{seen:?}");
    let session = session.unwrap();
    assert!(!session.contains("alice"), "the cookie is encrypted");
    assert_eq!(token(&owa_mailbox(ex, &session).await), "cache");
    assert_eq!(token(&forms_page(ex, "/ecp/", &session).await), "directory");
    let (wrong, none) = owa_logon(ex, "alice@lab.example.test", "nope").await;
    assert_eq!((wrong, none), (Seen::Refused, None));
    // A cookie that does not open is sent to the logon page (reason=0): not a refusal.
    assert_eq!(
        owa_mailbox(ex, "forged").await,
        Seen::Status(reqwest::StatusCode::FOUND)
    );

    // A recycle does not end the session: the cookie logs on again on the new worker.
    let owa_pid = ex.iis().current_pid("MSExchangeOWAAppPool").unwrap();
    ex.iis().recycle("MSExchangeOWAAppPool").await.unwrap();
    ex.iis().recycle("MSExchangeECPAppPool").await.unwrap();
    assert!(
        ex.iis()
            .recycled("MSExchangeOWAAppPool", Duration::from_secs(5))
            .await
    );
    assert!(
        ex.iis()
            .recycled("MSExchangeECPAppPool", Duration::from_secs(5))
            .await
    );
    match owa_mailbox(ex, &session).await {
        Seen::Ok { token, pid } => {
            assert_eq!(token, "directory");
            assert_ne!(pid, owa_pid);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(token(&forms_page(ex, "/ecp/", &session).await), "directory");
    // Neither does an iisreset, and the cookie opens on another front end (same certificate)…
    let out = ex
        .iis()
        .iisreset(exch_lab::host::IisResetMode::Restart)
        .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(token(&owa_mailbox(ex, &session).await), "directory");
    assert_eq!(token(&forms_page(ex, "/ecp/", &session).await), "directory");
    assert_eq!(token(&owa_mailbox(other, &session).await), "directory");
    // …but not on a server with another certificate.
    other
        .iis()
        .set_session_key(exch_lab::model::SessionKey::random());
    assert_eq!(
        owa_mailbox(other, &session).await,
        Seen::Status(reqwest::StatusCode::FOUND)
    );

    // Disabled, the cached token still lets the session in; after a recycle the re-logon is
    // refused by the directory (an explicit refusal: reason=2), on OWA and ECP.
    disable(&dir, "alice@lab.example.test").await;
    assert_eq!(token(&owa_mailbox(ex, &session).await), "cache");
    assert_eq!(token(&forms_page(ex, "/ecp/", &session).await), "cache");
    let refused_before = ex.counters().iis.logons_refused;
    for pool in ["MSExchangeOWAAppPool", "MSExchangeECPAppPool"] {
        ex.iis().recycle(pool).await.unwrap();
        assert!(ex.iis().recycled(pool, Duration::from_secs(5)).await);
    }
    assert_eq!(forms_page(ex, "/ecp/", &session).await, Seen::Refused);
    let response = fleet_support::client()
        .get(format!("{}/owa/", ex.base_url()))
        .header("cookie", format!("cadata={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some(exch_lab::iis::LOGON_REFUSED)
    );
    assert_eq!(ex.counters().iis.logons_refused, refused_before + 2);
    fleet.shutdown().await;
}

#[tokio::test]
async fn ews_with_microsofts_default_authentication_refuses_basic_without_a_logon() {
    let (_dir, fleet) = lab(ServerSpec::exchange_2019("EX01"), LabClock::real()).await;
    let ex = &fleet.servers()[0];
    let user = "alice@lab.example.test";
    // Opting in to Basic (as deployments that still allow it on EWS have it) gives a logon.
    ex.iis()
        .set_vdir_auth(
            exch_core::Protocol::Ews,
            exch_lab::catalog::VdirAuth::BasicAndWindows,
        )
        .unwrap();
    assert!(matches!(basic(ex, EWS, user, PW).await, Seen::Ok { .. }));
    ex.iis()
        .set_vdir_auth(
            exch_core::Protocol::Ews,
            exch_lab::catalog::default_auth(exch_core::Protocol::Ews),
        )
        .unwrap();
    assert_eq!(basic(ex, EWS, user, PW).await, Seen::NoPasswordLogon);
    let before = ex.counters().iis;
    let response = fleet_support::client()
        .get(format!("{}{EWS}", ex.base_url()))
        .basic_auth(user, Some(PW))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    let offered: Vec<&str> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(offered, ["Negotiate", "NTLM"]);
    let after = ex.counters().iis;
    assert_eq!(
        (
            after.logons_from_cache,
            after.logons_from_directory,
            after.logons_refused
        ),
        (
            before.logons_from_cache,
            before.logons_from_directory,
            before.logons_refused
        ),
        "no logon happened: a 401 here says nothing about the account"
    );
    assert!(ex
        .iis()
        .set_vdir_auth(exch_core::Protocol::Ews, exch_lab::catalog::VdirAuth::Forms)
        .is_err());
    fleet.shutdown().await;
}

#[tokio::test]
async fn pools_depend_on_the_version() {
    let (_dir, fleet) = lab(ServerSpec::exchange_2010("EX14"), LabClock::real()).await;
    let ex = &fleet.servers()[0];
    let user = "LAB\\alice";
    match basic(ex, "/rpc/rpcproxy.dll", user, PW).await {
        Seen::Ok { pid, .. } => assert_eq!(Some(pid), ex.iis().current_pid("DefaultAppPool")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        basic(ex, "/mapi/emsmdb", user, PW).await,
        Seen::Status(reqwest::StatusCode::NOT_FOUND)
    );
    // Paths are case-insensitive, like IIS.
    assert!(matches!(
        basic(ex, "/microsoft-server-activesync", user, PW).await,
        Seen::Ok { .. }
    ));
    let names: Vec<String> = ex.iis().pools().into_iter().map(|p| p.name).collect();
    assert!(names.contains(&"DefaultAppPool".to_owned()));
    assert!(!names.iter().any(|n| n.contains("FrontEnd")));
    fleet.shutdown().await;
}

#[tokio::test]
async fn missing_credentials_get_a_basic_challenge() {
    let (_dir, fleet) = lab(ServerSpec::exchange_2019("EX01"), LabClock::real()).await;
    let ex = &fleet.servers()[0];
    let response = fleet_support::client()
        .get(format!("{}/Microsoft-Server-ActiveSync", ex.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"ex01.lab.example.test\""
    );
    fleet.shutdown().await;
}
