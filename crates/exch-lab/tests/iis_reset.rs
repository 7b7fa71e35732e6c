//! `iisreset` through the IIS model, observed over real HTTP.
#![allow(clippy::unwrap_used)]

mod fleet_support;

use std::sync::Arc;
use std::time::Duration;

use exch_directory::InMemoryDirectory;
use exch_lab::fleet::{Fleet, LabServer, ServerSpec};
use exch_lab::host::{IisHost, IisResetMode};
use exch_lab::model::IisTiming;
use fleet_support::{basic, Seen};
use reqwest::StatusCode;

const EAS: &str = "/Microsoft-Server-ActiveSync";
const USER: &str = "carol@lab.example.test";
const PW: &str = "Carol-Passw0rd!";

async fn lab(timing: IisTiming) -> Fleet {
    let dir = InMemoryDirectory::new();
    dir.add_user("carol", USER, PW);
    Fleet::builder()
        .winrm_basic_over_http()
        .directory(Arc::new(dir))
        .server(ServerSpec::exchange_2019("EX01").timing(timing))
        .build()
        .await
        .unwrap()
}

fn pids(ex: &LabServer) -> Vec<u32> {
    ex.iis()
        .pools()
        .iter()
        .flat_map(|p| p.workers.iter().map(|w| w.pid))
        .collect()
}

#[tokio::test]
async fn iisreset_refuses_requests_during_its_window() {
    let fleet = lab(IisTiming {
        reset_window: Duration::from_millis(300),
        ..IisTiming::default()
    })
    .await;
    let ex = fleet.servers()[0].clone();
    assert!(matches!(basic(&ex, EAS, USER, PW).await, Seen::Ok { .. }));
    let before = pids(&ex);

    let reset = tokio::spawn({
        let ex = ex.clone();
        async move { ex.iis().iisreset(IisResetMode::Restart).await }
    });
    while ex.iis().pools().iter().any(|p| p.started) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        basic(&ex, EAS, USER, PW).await,
        Seen::Status(StatusCode::SERVICE_UNAVAILABLE)
    );
    let status = ex.iis().iisreset(IisResetMode::Status).await;
    assert!(status
        .stdout
        .contains("World Wide Web Publishing Service ( W3SVC ) : Stopped"));

    let out = reset.await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        out.stdout,
        "\r\nAttempting stop...\r\nInternet services successfully stopped\r\n\
         Attempting start...\r\nInternet services successfully restarted\r\n"
    );
    // Pools start on demand: no worker until the first request.
    assert!(!before.is_empty());
    assert!(pids(&ex).is_empty(), "no worker before the first request");
    assert!(ex.iis().pools().iter().all(|p| p.started));
    match basic(&ex, EAS, USER, PW).await {
        Seen::Ok { token, pid } => {
            assert_eq!(token, "directory", "caches are empty");
            assert!(!before.contains(&pid), "the worker is new");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        pids(&ex).len(),
        1,
        "only the pool that was asked started a worker"
    );
    let c = ex.counters().iis;
    assert_eq!((c.refused_during_reset, c.iisresets), (1, 1));
    assert_eq!(c.workers_started_on_demand, 1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn noforce_gives_up_when_requests_do_not_finish() {
    let fleet = lab(IisTiming {
        stop_timeout: Duration::from_millis(100),
        ..IisTiming::default()
    })
    .await;
    let ex = fleet.servers()[0].clone();
    assert!(matches!(basic(&ex, EAS, USER, PW).await, Seen::Ok { .. }));
    let before = pids(&ex);
    let hold = ex.iis().hold_requests();
    let in_flight = tokio::spawn({
        let ex = ex.clone();
        async move { basic(&ex, EAS, USER, PW).await }
    });
    while ex.iis().in_flight("MSExchangeSyncAppPool") == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let out = ex.iis().iisreset(IisResetMode::RestartNoForce).await;
    assert_eq!(out.exit_code, 1);
    assert!(
        out.stdout.contains("Restart attempt failed."),
        "{}",
        out.stdout
    );
    // The stop cannot be cancelled: IIS is left stopping (the busy worker finishes its
    // request), then stopped — not put back as it was.
    assert!(!before.is_empty());
    assert!(pids(&ex).is_empty(), "no pool serves");
    assert!(ex.iis().pools().iter().all(|p| !p.started));
    let status = ex.iis().iisreset(IisResetMode::Status).await;
    assert!(
        status
            .stdout
            .contains("World Wide Web Publishing Service ( W3SVC ) : Stop Pending"),
        "{}",
        status.stdout
    );
    assert_eq!(
        basic(&ex, EAS, USER, PW).await,
        Seen::Status(StatusCode::SERVICE_UNAVAILABLE)
    );
    hold.release();
    assert!(matches!(in_flight.await.unwrap(), Seen::Ok { .. }));
    let status = ex.iis().iisreset(IisResetMode::Status).await;
    assert!(status
        .stdout
        .contains("World Wide Web Publishing Service ( W3SVC ) : Stopped"));
    // Until someone starts it; the caches are gone with the old workers.
    assert_eq!(ex.iis().iisreset(IisResetMode::Start).await.exit_code, 0);
    match basic(&ex, EAS, USER, PW).await {
        Seen::Ok { token, pid } => {
            assert_eq!(token, "directory", "the old worker and its cache are gone");
            assert!(!before.contains(&pid));
        }
        other => panic!("{other:?}"),
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn forced_reset_kills_requests_that_do_not_finish() {
    let fleet = lab(IisTiming {
        stop_timeout: Duration::from_millis(50),
        reset_window: Duration::from_millis(50),
        ..IisTiming::default()
    })
    .await;
    let ex = fleet.servers()[0].clone();
    let hold = ex.iis().hold_requests();
    let in_flight = tokio::spawn({
        let ex = ex.clone();
        async move { basic(&ex, EAS, USER, PW).await }
    });
    while ex.iis().in_flight("MSExchangeSyncAppPool") == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let out = ex.iis().iisreset(IisResetMode::Restart).await;
    assert_eq!(out.exit_code, 0);
    hold.release();
    assert_eq!(
        in_flight.await.unwrap(),
        Seen::Status(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(ex.counters().iis.killed_in_flight, 1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn noforce_waits_for_requests_in_flight_then_restarts() {
    let fleet = lab(IisTiming::default()).await;
    let ex = fleet.servers()[0].clone();
    let hold = ex.iis().hold_requests();
    let in_flight = tokio::spawn({
        let ex = ex.clone();
        async move { basic(&ex, EAS, USER, PW).await }
    });
    while ex.iis().in_flight("MSExchangeSyncAppPool") == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let reset = tokio::spawn({
        let ex = ex.clone();
        async move { ex.iis().iisreset(IisResetMode::RestartNoForce).await }
    });
    // Visible state, not a sleep: IIS says "Stop Pending" while it waits for the held request,
    // and the reset has not returned.
    let t = std::time::Instant::now();
    while !ex
        .iis()
        .iisreset(IisResetMode::Status)
        .await
        .stdout
        .contains("Stop Pending")
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "IIS never began to stop"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!reset.is_finished(), "iisreset /noforce did not wait");
    hold.release();
    assert!(matches!(in_flight.await.unwrap(), Seen::Ok { .. }));
    assert_eq!(reset.await.unwrap().exit_code, 0);
    fleet.shutdown().await;
}

#[tokio::test]
async fn stop_and_start() {
    let fleet = lab(IisTiming::default()).await;
    let ex = &fleet.servers()[0];
    let out = ex.iis().iisreset(IisResetMode::Stop).await;
    assert_eq!(
        out.stdout,
        "\r\nAttempting stop...\r\nInternet services successfully stopped\r\n"
    );
    assert_eq!(
        basic(ex, EAS, USER, PW).await,
        Seen::Status(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert!(ex
        .iis()
        .pools()
        .iter()
        .all(|p| !p.started && p.workers.is_empty()));
    assert!(ex.iis().recycle("MSExchangeOWAAppPool").await.is_err());
    let out = ex.iis().iisreset(IisResetMode::Start).await;
    assert!(out
        .stdout
        .contains("Internet services successfully started"));
    assert!(matches!(basic(ex, EAS, USER, PW).await, Seen::Ok { .. }));
    fleet.shutdown().await;
}

#[tokio::test]
async fn pool_stop_start_and_recycle_errors_read_like_powershell() {
    let fleet = lab(IisTiming::default()).await;
    let ex = &fleet.servers()[0];
    let iis = ex.iis();
    assert_eq!(
        iis.recycle("NoSuchPool").await.unwrap_err(),
        "Cannot find path 'IIS:\\AppPools\\NoSuchPool' because it does not exist."
    );
    IisHost::stop_pool(iis, "MSExchangeSyncAppPool")
        .await
        .unwrap();
    assert_eq!(
        basic(ex, EAS, USER, PW).await,
        Seen::Status(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert!(iis
        .recycle("msexchangesyncapppool")
        .await
        .unwrap_err()
        .contains("0x800710D8"));
    IisHost::start_pool(iis, "MSExchangeSyncAppPool")
        .await
        .unwrap();
    assert!(matches!(basic(ex, EAS, USER, PW).await, Seen::Ok { .. }));

    ex.fail_recycle("MSExchangeOWAAppPool");
    let err = iis.recycle("MSExchangeOWAAppPool").await.unwrap_err();
    assert!(err.contains("0x80070020"), "{err}");
    ex.clear_recycle_fault("MSExchangeOWAAppPool");
    iis.recycle("MSExchangeOWAAppPool").await.unwrap();
    let c = ex.counters().iis;
    assert_eq!(
        (c.recycles, c.recycle_failures, c.refused_pool_stopped),
        (1, 1, 1)
    );
    fleet.shutdown().await;
}
