//! Fleet start-up, registration, faults settable at runtime, clean shutdown.
#![allow(clippy::unwrap_used)]

mod fleet_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use exch_directory::{Directory, InMemoryDirectory};
use exch_lab::fleet::{Faults, Fleet, ServerSpec};
use fleet_support::{basic, run_powershell, Seen};

const USER: &str = "dave@lab.example.test";
const PW: &str = "Dave-Passw0rd!";

async fn fleet(dir: &InMemoryDirectory, extra: ServerSpec) -> Fleet {
    Fleet::builder()
        .winrm_basic_over_http()
        .directory(Arc::new(dir.clone()))
        .registrar(dir.clone())
        .servers(2, ServerSpec::exchange_2019("EX"))
        .server(extra)
        .build()
        .await
        .unwrap()
}

fn directory() -> InMemoryDirectory {
    let dir = InMemoryDirectory::new();
    dir.add_user("dave", USER, PW);
    dir
}

#[tokio::test]
async fn servers_are_registered_and_listed() {
    let dir = directory();
    let fleet = fleet(&dir, ServerSpec::exchange_2010("LEGACY01").site("Branch")).await;
    let names: Vec<_> = fleet
        .servers()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    assert_eq!(names, ["EX01", "EX02", "LEGACY01"]);
    let endpoints = fleet.endpoints();
    assert_eq!(endpoints.len(), 3);
    assert_eq!(
        endpoints["EX02"],
        format!("http://127.0.0.1:{}/wsman", fleet.servers()[1].port())
    );
    let mut discovered = dir.exchange_servers().await.unwrap();
    discovered.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(discovered.len(), 3);
    assert_eq!(discovered[0].fqdn, "ex01.lab.example.test");
    assert_eq!(discovered[2].site.as_deref(), Some("Branch"));
    assert_eq!(
        discovered[2].version.map(|v| v.major),
        Some(14),
        "{discovered:?}"
    );
    for s in fleet.servers() {
        assert!(matches!(
            basic(s, "/Microsoft-Server-ActiveSync", USER, PW).await,
            Seen::Ok { .. }
        ));
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn duplicate_names_and_missing_directory_are_refused() {
    let err = Fleet::builder()
        .winrm_basic_over_http()
        .server(ServerSpec::exchange_2019("EX01"))
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no directory"), "{err}");
    let err = Fleet::builder()
        .winrm_basic_over_http()
        .directory(Arc::new(directory()))
        .server(ServerSpec::exchange_2019("EX01"))
        .server(ServerSpec::exchange_2019("ex01"))
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("used twice"), "{err}");
}

#[tokio::test]
async fn unreachable_refuses_connections_until_cleared() {
    let dir = directory();
    let fleet = fleet(
        &dir,
        ServerSpec::exchange_2019("DOWN01").faults(Faults::unreachable()),
    )
    .await;
    let down = fleet.server("down01").unwrap().clone();
    let err = fleet_support::client()
        .get(format!("{}/owa/", down.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(down.faults().await.unreachable);

    down.set_unreachable(false).await.unwrap();
    assert!(matches!(
        basic(&down, "/Microsoft-Server-ActiveSync", USER, PW).await,
        Seen::Ok { .. }
    ));
    down.set_unreachable(true).await.unwrap();
    let err = fleet_support::client()
        .get(format!("{}/owa/", down.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn slow_winrm_runs_past_the_client_timeout() {
    let dir = directory();
    let fleet = fleet(
        &dir,
        ServerSpec::exchange_2019("SLOW01").faults(Faults::slow(Duration::from_secs(3))),
    )
    .await;
    let slow = fleet.server("SLOW01").unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .post(slow.winrm_url())
        .basic_auth(fleet.winrm_user(), Some("Lab-WinRM-1"))
        .body("<x/>")
        .send()
        .await
        .unwrap_err();
    // The client gave up (a timeout, not an answer): the server holds WinRM for 3 s.
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "loose ceiling");
    // Logons are not slowed down, only WinRM.
    assert!(matches!(
        basic(slow, "/Microsoft-Server-ActiveSync", USER, PW).await,
        Seen::Ok { .. }
    ));
    slow.set_winrm_delay(None);
    let out = run_powershell(&fleet, slow, "iisreset /status")
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("W3SVC"));
    fleet.shutdown_within(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn wrong_credentials_and_soap_fault_are_settable_at_runtime() {
    let dir = directory();
    let fleet = fleet(
        &dir,
        ServerSpec::exchange_2019("BAD01").faults(Faults::wrong_credentials()),
    )
    .await;
    let bad = fleet.server("BAD01").unwrap();
    let response = fleet_support::client()
        .post(bad.winrm_url())
        .basic_auth(fleet.winrm_user(), Some("Lab-WinRM-1"))
        .body("<x/>")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let err = run_powershell(&fleet, bad, "iisreset /status")
        .await
        .unwrap_err();
    assert!(
        matches!(err, winrm_rs::WinrmError::AuthFailed(_)),
        "{err:?}"
    );

    bad.set_wrong_credentials(false);
    bad.set_soap_fault(true);
    let err = run_powershell(&fleet, bad, "iisreset /status")
        .await
        .unwrap_err();
    assert!(matches!(err, winrm_rs::WinrmError::Soap(_)), "{err:?}");
    assert!(bad.counters().winrm_faults >= 1);
    assert!(bad.counters().winrm_unauthorized >= 2);

    let mut faults = bad.faults().await;
    assert!(faults.soap_fault && !faults.wrong_credentials);
    faults.soap_fault = false;
    faults.failing_pools = vec!["MSExchangeOWAAppPool".into()];
    bad.set_faults(&faults).await.unwrap();
    assert_eq!(bad.faults().await.failing_pools, ["msexchangeowaapppool"]);
    let out = run_powershell(&fleet, bad, "iisreset /status")
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    fleet.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_connection_and_port() {
    let dir = directory();
    let fleet = fleet(&dir, ServerSpec::exchange_2016("EX16")).await;
    // A keep-alive client leaves idle connections open.
    let client = fleet_support::client();
    for s in fleet.servers() {
        let r = client
            .get(format!("{}/owa/auth/logon.aspx", s.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(fleet
        .servers()
        .iter()
        .all(|s| s.counters().open_connections == 1));
    fleet.shutdown().await;
    for s in fleet.servers() {
        assert_eq!(s.counters().open_connections, 0, "{}", s.name());
        let err = fleet_support::client()
            .get(format!("{}/owa/", s.base_url()))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect());
    }
}

/// A winrm-rs client for `server` (Basic auth), for the shell's lower-level calls.
fn winrm_client(fleet: &Fleet, server: &exch_lab::fleet::LabServer) -> winrm_rs::WinrmClient {
    use secrecy::ExposeSecret;
    let config = winrm_rs::WinrmConfig {
        port: server.port(),
        auth_method: winrm_rs::AuthMethod::Basic,
        connect_timeout_secs: 5,
        operation_timeout_secs: 20,
        ..Default::default()
    };
    let credentials = winrm_rs::WinrmCredentials::new(
        fleet.winrm_user(),
        fleet.winrm_password().expose_secret(),
        "",
    );
    winrm_rs::WinrmClient::new(config, credentials).unwrap()
}

#[tokio::test]
async fn hang_holds_requests_until_cleared() {
    let dir = directory();
    let fleet = fleet(
        &dir,
        ServerSpec::exchange_2019("HANG01").faults(Faults::hang()),
    )
    .await;
    let hang = fleet.server("HANG01").unwrap().clone();
    assert!(hang.faults().await.hang);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = impatient
        .post(hang.winrm_url())
        .basic_auth(fleet.winrm_user(), Some("Lab-WinRM-1"))
        .body("<x/>")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // A patient client is held, with the connection open, until the fault is cleared.
    let before = hang.counters().winrm_requests;
    let (url, user) = (hang.winrm_url(), fleet.winrm_user().to_owned());
    let held = tokio::spawn(async move {
        fleet_support::client()
            .post(url)
            .basic_auth(user, Some("Lab-WinRM-1"))
            .body("<x/>")
            .send()
            .await
            .map(|r| r.status())
    });
    while hang.counters().winrm_requests == before {
        tokio::task::yield_now().await;
    }
    assert!(!held.is_finished());
    assert!(hang.counters().open_connections >= 1);
    hang.set_hang(false);
    // Answered as soon as the fault is cleared: a SOAP fault for the `<x/>` body.
    assert_eq!(held.await.unwrap().unwrap(), 500);
    assert!(!hang.faults().await.hang);
    let out = run_powershell(&fleet, &hang, "iisreset /status")
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    fleet.shutdown_within(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn timed_out_receives_come_before_the_output() {
    let dir = directory();
    let fleet = fleet(
        &dir,
        ServerSpec::exchange_2019("TO01").faults(Faults::timed_out_receives(2)),
    )
    .await;
    let server = fleet.server("TO01").unwrap();
    assert_eq!(server.faults().await.timed_out_receives, 2);
    let client = winrm_client(&fleet, server);
    let shell = client.create_shell("127.0.0.1").await.unwrap();
    let cmd = client
        .execute_command("127.0.0.1", &shell, "iisreset", &["/status"])
        .await
        .unwrap();
    for _ in 0..2 {
        let Err(err) = client.receive_output("127.0.0.1", &shell, &cmd).await else {
            panic!("output before the injected TimedOut faults");
        };
        assert!(err.to_string().contains("TimedOut"), "{err}");
    }
    let mut out = client
        .receive_output("127.0.0.1", &shell, &cmd)
        .await
        .unwrap();
    while !out.done {
        out = client
            .receive_output("127.0.0.1", &shell, &cmd)
            .await
            .unwrap();
    }
    assert_eq!(out.exit_code, Some(0));
    client.delete_shell("127.0.0.1", &shell).await.unwrap();
    assert_eq!(server.counters().winrm_faults, 2);
    server.set_timed_out_receives(0);
    assert_eq!(server.faults().await, Faults::none());
    fleet.shutdown().await;
}

#[tokio::test]
async fn non_zero_exit_fails_like_powershell_without_running() {
    let dir = directory();
    let fleet = fleet(&dir, ServerSpec::exchange_2019("EXIT01")).await;
    let server = fleet.server("EXIT01").unwrap();
    server.set_exit_code(Some(1));
    assert_eq!(server.faults().await.exit_code, Some(1));
    let script = fleet_support::recycle_script(&["MSExchangeOWAAppPool"]);
    let out = run_powershell(&fleet, server, &script).await.unwrap();
    assert_eq!(out.exit_code, 1);
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WebAdministration") && stderr.contains("FullyQualifiedErrorId"),
        "{stderr}"
    );
    assert_eq!(server.counters().iis.recycles, 0, "the script did not run");
    server.set_exit_code(None);
    let out = run_powershell(&fleet, server, &script).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(server.counters().iis.recycles, 1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn malformed_json_runs_the_script_but_prints_half() {
    let dir = directory();
    let fleet = fleet(
        &dir,
        ServerSpec::exchange_2019("JSON01").faults(Faults::malformed_json()),
    )
    .await;
    let server = fleet.server("JSON01").unwrap();
    let script = fleet_support::recycle_script(&["MSExchangeOWAAppPool"]);
    let out = run_powershell(&fleet, server, &script).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(!out.stdout.is_empty());
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_err());
    assert_eq!(server.counters().iis.recycles, 1, "the script ran");
    server.set_malformed_json(false);
    let out = run_powershell(&fleet, server, &script).await.unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["pools"][0]["name"], "MSExchangeOWAAppPool");
    fleet.shutdown().await;
}
