//! `WinRmFlusher` against the lab's simulated Exchange servers (`exch_lab::fleet`), over real
//! HTTP on loopback: recycle, iisreset, UserTokenTTL, TimedOut re-polls, and every failure kind.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

mod sources;

use std::sync::Arc;
use std::time::{Duration, Instant};

use exch_core::AppPool;
use exch_directory::{Directory, InMemoryDirectory};
use exch_iis::conformance::{self, Fixture};
use exch_iis::{catalog, CacheFlusher, FlushMethod, IisError, WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Faults, Fleet, ServerSpec};
use secrecy::SecretString;

async fn fleet(specs: Vec<ServerSpec>) -> Fleet {
    let directory: Arc<dyn Directory> = Arc::new(InMemoryDirectory::new());
    let mut b = Fleet::builder().directory(directory);
    for s in specs {
        b = b.server(s);
    }
    b.build().await.expect("start the lab fleet")
}

fn flusher_with(fleet: &Fleet, password: SecretString, timeout: Duration) -> WinRmFlusher {
    let mut b = WinRmFlusher::builder()
        .auth(WinRmAuth::Ntlm)
        .credentials(fleet.winrm_user(), password)
        .timeout(timeout)
        .receive_timeout(Duration::from_secs(1));
    for (name, url) in fleet.endpoints() {
        b = b.endpoint(name, url);
    }
    b.build().expect("a valid flusher")
}

fn flusher(fleet: &Fleet) -> WinRmFlusher {
    flusher_with(
        fleet,
        fleet.winrm_password().clone(),
        Duration::from_secs(20),
    )
}

#[tokio::test]
async fn recycle_catalog_pools_on_2010_2016_2019() {
    let fleet = fleet(vec![
        ServerSpec::exchange_2010("EX2010"),
        ServerSpec::exchange_2016("EX2016"),
        ServerSpec::exchange_2019("EX2019"),
    ])
    .await;
    let f = flusher(&fleet);
    for server in fleet.exchange_servers() {
        let before = fleet
            .server(&server.name)
            .map(|s| s.counters().winrm_requests)
            .unwrap_or(0);
        let client_before = f.http_requests_total();
        let report = f.flush(&server, &FlushMethod::default()).await.unwrap();
        let after = fleet
            .server(&server.name)
            .map(|s| s.counters().winrm_requests)
            .unwrap_or(0);
        // A new NTLM session: two empty-bodied handshake legs, then the 4 sealed round trips.
        assert_eq!(
            f.http_requests_total() - client_before,
            after - before,
            "client and server disagree on HTTP requests"
        );
        assert_eq!(after - before, u64::from(report.round_trips) + 2);
        let want = catalog::default_pools(&server);
        assert_eq!(
            report.pools.len(),
            want.len(),
            "{}: {report:?}",
            server.name
        );
        assert!(report.is_proven(), "{}: {report:?}", server.name);
        assert!(report.missing_pools.is_empty(), "{report:?}");
        for p in &report.pools {
            assert!(
                !p.after.is_empty(),
                "{}: {} has no new worker",
                server.name,
                p.pool
            );
        }
        assert!(
            report.round_trips <= 5,
            "{} round trips",
            report.round_trips
        );
        let lab = fleet.server(&server.name).unwrap();
        assert_eq!(lab.winrm_stats().open_shells, 0, "shell left open");
        // The same server again: the authenticated session is reused, no handshake.
        let again = f.flush(&server, &FlushMethod::default()).await.unwrap();
        let after_again = lab.counters().winrm_requests;
        assert_eq!(after_again - after, u64::from(again.round_trips));
        assert_eq!(again.round_trips, 4);
        eprintln!(
            "{}: {} pools in {:?}, {} WinRM round trips",
            server.name,
            report.pools.len(),
            report.elapsed,
            report.round_trips
        );
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn iisreset_noforce_and_token_ttl() {
    let fleet = fleet(vec![ServerSpec::exchange_2019("EX01")]).await;
    let f = flusher(&fleet);
    let server = &fleet.exchange_servers()[0];
    let report = f
        .flush(server, &FlushMethod::IisReset { force: false })
        .await
        .unwrap();
    assert!(report.is_proven(), "{report:?}");
    assert!(report.pools.len() >= 5);

    let t = f.token_cache(server).await.unwrap();
    assert_eq!(t.configured, None);
    let t = f
        .set_token_ttl(server, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(t.configured, Some(Duration::from_secs(120)));
    assert_eq!(
        f.token_cache(server).await.unwrap().configured,
        Some(Duration::from_secs(120))
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn timed_out_receives_are_polled_again() {
    // A recycle that takes longer than the WS-Man OperationTimeout (1 s): the server answers
    // Receive with w:TimedOut until the script finishes.
    let fleet = fleet(vec![
        ServerSpec::exchange_2019("SLOW").recycle_latency(Duration::from_millis(1500))
    ])
    .await;
    let f = flusher(&fleet);
    let server = &fleet.exchange_servers()[0];
    let pools = vec![AppPool::from_static("MSExchangeOWAAppPool")];
    let report = f
        .flush(server, &FlushMethod::RecycleAppPools(pools))
        .await
        .unwrap();
    assert!(report.is_proven(), "{report:?}");
    assert!(report.round_trips > 4, "expected re-polls: {report:?}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn injected_timed_out_faults_still_complete() {
    let fleet = fleet(vec![ServerSpec::exchange_2016("EX01")]).await;
    let lab = &fleet.servers()[0];
    lab.winrm().faults().update(|f| f.timed_out_receives = 3);
    let f = flusher(&fleet);
    let server = &fleet.exchange_servers()[0];
    let report = f.flush(server, &FlushMethod::default()).await.unwrap();
    assert!(report.is_proven(), "{report:?}");
    assert_eq!(report.round_trips, 7, "3 TimedOut polls + 4");
    assert_eq!(lab.winrm_stats().open_shells, 0);
    fleet.shutdown().await;
}

async fn expect_error(
    spec: ServerSpec,
    method: FlushMethod,
    password: Option<&str>,
    check: impl Fn(&IisError) -> bool,
) {
    let fleet = fleet(vec![spec]).await;
    let password = password
        .map(|p| SecretString::from(p.to_string()))
        .unwrap_or_else(|| fleet.winrm_password().clone());
    let f = flusher_with(&fleet, password, Duration::from_secs(3));
    let server = &fleet.exchange_servers()[0];
    let t = Instant::now();
    let e = f.flush(server, &method).await.unwrap_err();
    // A loose ceiling (the flusher's timeout is 3 s; a loaded machine adds seconds, never
    // a hang's forever).
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    assert!(check(&e), "unexpected error kind: {e:?}");
    assert_eq!(e.server(), Some(server.name.as_str()), "{e}");
    assert!(e.to_string().contains(&server.name), "{e}");
    assert!(
        !e.to_string().contains("Lab-WinRM-1"),
        "password leaked: {e}"
    );
    if !matches!(e, IisError::Timeout { .. } | IisError::Unreachable { .. }) {
        let open = fleet.servers()[0].winrm_stats().open_shells;
        assert_eq!(open, 0, "{}: shell left open after {e}", server.name);
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn failures_map_to_kinds_naming_the_server() {
    let d = FlushMethod::default();
    expect_error(
        ServerSpec::exchange_2019("DOWN").faults(Faults::unreachable()),
        d.clone(),
        None,
        |e| matches!(e, IisError::Unreachable { .. }) && e.is_transient(),
    )
    .await;
    expect_error(
        ServerSpec::exchange_2019("AUTH"),
        d.clone(),
        Some("wrong"),
        |e| matches!(e, IisError::Unauthenticated { .. }),
    )
    .await;
    expect_error(
        ServerSpec::exchange_2019("FAULT").faults(Faults::soap_fault()),
        d.clone(),
        None,
        |e| matches!(e, IisError::Fault { code, .. } if code.starts_with("w:")),
    )
    .await;
    expect_error(
        ServerSpec::exchange_2019("SLOW").faults(Faults::slow(Duration::from_secs(10))),
        d.clone(),
        None,
        |e| matches!(e, IisError::Timeout { .. }),
    )
    .await;
    expect_error(
        ServerSpec::exchange_2019("NOPOOL"),
        FlushMethod::RecycleAppPools(vec![AppPool::from_static("NoSuchPool")]),
        None,
        |e| matches!(e, IisError::PoolNotFound { pool, .. } if pool == "NoSuchPool"),
    )
    .await;
}

#[tokio::test]
async fn a_pool_that_fails_is_reported_not_proven() {
    let fleet = fleet(vec![
        ServerSpec::exchange_2016("EX01").faults(Faults::failing_pool("MSExchangeOWAAppPool"))
    ])
    .await;
    let f = flusher(&fleet);
    let server = &fleet.exchange_servers()[0];
    let report = f.flush(server, &FlushMethod::default()).await.unwrap();
    let owa = report
        .pools
        .iter()
        .find(|p| p.pool.as_str() == "MSExchangeOWAAppPool")
        .expect("OWA in the report");
    assert!(!owa.proven && owa.error.is_some(), "{owa:?}");
    assert!(!report.is_proven());
    // Every other default pool is proven (7 default pools on 2016 since issue 15).
    assert_eq!(report.pools.len(), 7);
    assert_eq!(report.pools.iter().filter(|p| p.proven).count(), 6);
    fleet.shutdown().await;
}

#[tokio::test]
async fn conformance_against_the_lab() {
    let fleet = fleet(vec![
        ServerSpec::exchange_2010("EX2010"),
        ServerSpec::exchange_2019("EX2019"),
    ])
    .await;
    let f = flusher(&fleet);
    for server in fleet.exchange_servers() {
        // The expected pools come from the sources, not from the catalog under test.
        let major = server.version.map(|v| v.major).unwrap_or(15);
        let pools = sources::documented_default(major)
            .into_iter()
            .map(|p| exch_core::AppPool::new(p).unwrap())
            .collect();
        conformance::run_all(&f, &Fixture::new(server.clone(), pools)).await;
    }
    fleet.shutdown().await;
}
