//! The conformance suite against `RecordingFlusher`, and the fake's own behaviour.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

mod sources;
use sources::documented_default;

use std::sync::Arc;
use std::time::Duration;

use exch_core::{AppPool, ExchangeServer, ExchangeVersion, ServerRoles};
use exch_iis::conformance::{self, Fixture};
use exch_iis::{catalog, CacheFlusher, FlushMethod, FlushOperation, IisError, RecordingFlusher};

fn server(name: &str, major: u8, minor: u8) -> ExchangeServer {
    let roles = if major >= 15 {
        ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS
    } else {
        ServerRoles::CLIENT_ACCESS | ServerRoles::HUB_TRANSPORT
    };
    ExchangeServer::new(name, format!("{}.corp.example", name.to_lowercase()))
        .with_version(ExchangeVersion::new(major, minor, 1000))
        .with_roles(roles)
}

#[tokio::test]
async fn conformance_on_every_version() {
    let flusher = RecordingFlusher::new();
    for (s, major) in [
        (server("EX2007", 8, 3), 8),
        (server("EX2010", 14, 3), 14),
        (server("EX2016", 15, 1), 15),
        (server("EX2019", 15, 2), 15),
    ] {
        let documented = documented_default(major);
        let mut from_catalog: Vec<String> = catalog::default_pools(&s)
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        from_catalog.sort_unstable();
        assert_eq!(from_catalog, documented, "{}: catalog vs sources", s.name);
        let pools = documented
            .iter()
            .map(|p| AppPool::new(*p).unwrap())
            .collect();
        let fx = Fixture::new(s.clone(), pools);
        conformance::run_all(&flusher, &fx).await;
    }
    assert!(flusher.calls().len() > 20);
}

#[tokio::test]
async fn missing_catalog_pools_are_reported() {
    let s = server("EX1", 15, 2);
    let flusher = RecordingFlusher::new().with_pools(
        "EX1",
        [
            AppPool::from_static("MSExchangeOWAAppPool"),
            AppPool::from_static("DefaultAppPool"),
        ],
    );
    let r = flusher.flush(&s, &FlushMethod::default()).await.unwrap();
    assert_eq!(r.pools.len(), 1);
    // The 2013+ default flush is 7 pools (ECP and Autodiscover included, issue 15): 6 missing.
    assert_eq!(r.missing_pools.len(), 6, "{r:?}");
    assert!(r.is_proven());
}

#[tokio::test]
async fn configured_errors_and_failing_pools() {
    let s = server("EX1", 15, 1);
    let owa = AppPool::from_static("MSExchangeOWAAppPool");
    let flusher = RecordingFlusher::new()
        .with_failing_pool(
            "EX1",
            owa.clone(),
            "The object identifier does not represent a valid object.",
        )
        .with_error(
            "EX2",
            IisError::Unauthenticated {
                server: "EX2".into(),
                user: "LAB\\winrm".into(),
                reason: "wrong user or password".into(),
            },
        );
    let r = flusher.flush(&s, &FlushMethod::default()).await.unwrap();
    let p = r.pools.iter().find(|p| p.pool == owa).unwrap();
    assert!(!p.proven && p.error.is_some());
    assert!(!r.is_proven());

    let e = flusher.app_pools(&server("EX2", 15, 1)).await.unwrap_err();
    assert!(matches!(e, IisError::Unauthenticated { .. }));
    assert_eq!(e.server(), Some("EX2"));
    flusher.set_error("EX2", None);
    assert!(flusher.app_pools(&server("EX2", 15, 1)).await.is_ok());
}

#[tokio::test]
async fn edge_is_not_flushed() {
    let edge = ExchangeServer::new("EDGE1", "edge1.dmz.example")
        .with_version(ExchangeVersion::new(15, 2, 1258))
        .with_roles(ServerRoles::EDGE);
    let r = RecordingFlusher::new()
        .flush(&edge, &FlushMethod::default())
        .await
        .unwrap();
    assert!(r.pools.is_empty() && r.missing_pools.is_empty() && !r.is_proven());
}

#[tokio::test(start_paused = true)]
async fn latency_uses_tokio_time() {
    let s = server("EX1", 15, 2);
    let flusher = RecordingFlusher::new().with_latency("EX1", Duration::from_secs(30));
    let t = tokio::time::Instant::now();
    flusher.token_cache(&s).await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(30));
}

#[tokio::test]
async fn gate_proves_a_concurrency_limit_without_sleeping() {
    let (flusher, gate) = RecordingFlusher::gated();
    let flusher: Arc<dyn CacheFlusher> = Arc::new(flusher);
    let limit = Arc::new(tokio::sync::Semaphore::new(2));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let f = Arc::clone(&flusher);
        let limit = Arc::clone(&limit);
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            f.flush(&server(&format!("EX{i}"), 15, 2), &FlushMethod::default())
                .await
        }));
    }
    gate.wait_for_waiting(2).await;
    assert_eq!(gate.in_flight(), 2);
    for _ in 0..3 {
        gate.release(1);
        gate.wait_for_waiting(2).await;
    }
    gate.release(2);
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_proven());
    }
    gate.wait_for_idle().await;
    assert_eq!(gate.max_in_flight(), 2);
}

#[tokio::test]
async fn calls_are_recorded_in_order() {
    let (flusher, gate) = RecordingFlusher::gated();
    gate.open();
    let s = server("EX1", 14, 3);
    flusher.app_pools(&s).await.unwrap();
    flusher
        .flush(&s, &FlushMethod::IisReset { force: false })
        .await
        .unwrap();
    flusher
        .set_token_ttl(&s, Duration::from_secs(60))
        .await
        .unwrap();
    let ops: Vec<_> = flusher.calls().into_iter().map(|c| c.operation).collect();
    assert_eq!(
        ops,
        [
            FlushOperation::AppPools,
            FlushOperation::Flush(FlushMethod::IisReset { force: false }),
            FlushOperation::SetTokenTtl(Duration::from_secs(60)),
        ]
    );
}
