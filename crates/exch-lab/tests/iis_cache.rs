//! The token cache over real HTTP: UserTokenTTL expiry and sliding renewal, TTL 0, overlapped
//! recycle, OWA sessions, version-dependent pools.
#![allow(clippy::unwrap_used)]

mod fleet_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use exch_directory::{Directory, InMemoryDirectory, UserRef};
use exch_lab::clock::LabClock;
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_lab::host::IisHost;
use fleet_support::{basic, owa_logon, owa_mailbox, Seen};

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
    assert_eq!(token(&basic(ex, EWS, user, PW).await), "directory");
    assert_eq!(token(&basic(ex, EWS, user, PW).await), "cache");
    disable(&dir, user).await;

    // Each use within 900 s slides the expiry: 3 × 899 s later the token still works.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(899));
        assert_eq!(token(&basic(ex, EWS, user, PW).await), "cache");
    }
    // 900 s without use: the entry expires, the directory refuses the disabled account.
    clock.advance(Duration::from_secs(900));
    assert_eq!(basic(ex, EWS, user, PW).await, Seen::Refused);
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
    assert_eq!(token(&basic(ex, EWS, "LAB\\alice", PW).await), "directory");
    disable(&dir, "LAB\\alice").await;
    assert_eq!(token(&basic(ex, EWS, "LAB\\alice", PW).await), "cache");
    let lab_start = clock.now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!((clock.now() - lab_start).num_seconds() >= 900);
    assert_eq!(basic(ex, EWS, "LAB\\alice", PW).await, Seen::Refused);
    let real = started.elapsed();
    assert!(real < Duration::from_secs(2), "{real:?} (typically ~0.3 s)");
    fleet.shutdown().await;
}

#[tokio::test]
async fn ttl_zero_never_expires() {
    let clock = LabClock::frozen();
    let spec = ServerSpec::exchange_2019("EX01").user_token_ttl(0);
    let (dir, fleet) = lab(spec, clock.clone()).await;
    let ex = &fleet.servers()[0];
    let user = "alice@lab.example.test";
    assert_eq!(token(&basic(ex, EWS, user, PW).await), "directory");
    disable(&dir, user).await;
    clock.advance(Duration::from_secs(365 * 24 * 3600));
    assert_eq!(token(&basic(ex, EWS, user, PW).await), "cache");
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
    assert_eq!(token(&basic(ex, EWS, user, PW).await), "directory");
    disable(&dir, user).await;
    clock.advance(Duration::from_secs(120));
    // The running worker read 900 s at start-up.
    assert_eq!(token(&basic(ex, EWS, user, PW).await), "cache");
    fleet.shutdown().await;
}

#[tokio::test]
async fn overlapped_recycle_loses_no_request_in_flight() {
    let (dir, fleet) = lab(ServerSpec::exchange_2019("EX01"), LabClock::real()).await;
    let ex = fleet.servers()[0].clone();
    let pool = "MSExchangeServicesAppPool";
    let user = "alice@lab.example.test";
    assert_eq!(token(&basic(&ex, EWS, user, PW).await), "directory");
    let old_pid = ex.iis().current_pid(pool).unwrap();

    // A request authenticates on the old worker and is kept in flight.
    let hold = ex.iis().hold_requests();
    let in_flight = tokio::spawn({
        let ex = ex.clone();
        async move { basic(&ex, EWS, user, PW).await }
    });
    while ex.iis().in_flight(pool) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    disable(&dir, user).await;
    ex.iis().recycle(pool).await.unwrap();

    // The new worker takes new requests at once; the old one drains.
    let new_pid = ex.iis().current_pid(pool).unwrap();
    assert_ne!(new_pid, old_pid);
    assert_eq!(ex.iis().draining_pids(pool), vec![old_pid]);
    let listed = ex.iis().pools();
    let listed = listed.iter().find(|p| p.name == pool).unwrap();
    assert_eq!(listed.workers.len(), 1, "draining workers are not listed");
    assert_eq!(listed.workers[0].pid, new_pid);
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
    assert_eq!(basic(&ex, EWS, user, PW).await, Seen::Refused);
    fleet.shutdown().await;
}

#[tokio::test]
async fn owa_session_survives_until_the_pool_recycles() {
    let (_dir, fleet) = lab(ServerSpec::exchange_2019("EX01"), LabClock::real()).await;
    let ex = &fleet.servers()[0];
    let (seen, session) = owa_logon(ex, "alice@lab.example.test", PW).await;
    assert!(matches!(seen, Seen::Ok { .. }), "{seen:?}");
    let session = session.unwrap();
    assert_eq!(token(&owa_mailbox(ex, &session).await), "cache");
    let (wrong, none) = owa_logon(ex, "alice@lab.example.test", "nope").await;
    assert_eq!((wrong, none), (Seen::Refused, None));
    assert_eq!(owa_mailbox(ex, "forged").await, Seen::Refused);

    ex.iis().recycle("MSExchangeOWAAppPool").await.unwrap();
    assert_eq!(owa_mailbox(ex, &session).await, Seen::Refused);
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
        basic(ex, "/ews/exchange.asmx", user, PW).await,
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
