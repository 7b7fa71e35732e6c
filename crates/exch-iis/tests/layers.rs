//! The layers of `exch_iis::layers`: each passes the conformance suite through itself around
//! the public fake and around `WinRmFlusher` against the lab, and does what it says.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::{Directory, InMemoryDirectory};
use exch_iis::conformance::{self, Fixture};
use exch_iis::layers::{CallLog, Faults, Latency, Layered};
use exch_iis::{
    catalog, CacheFlusher, FlushMethod, FlushOperation, IisError, RecordingFlusher, WinRmFlusher,
};
use exch_lab::fleet::{Fleet, ServerSpec};

fn server(name: &str) -> ExchangeServer {
    ExchangeServer::new(name, format!("{}.corp.example", name.to_lowercase()))
        .with_version(ExchangeVersion::new(15, 2, 1258))
        .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS)
}

fn fixture(s: &ExchangeServer) -> Fixture {
    Fixture::new(s.clone(), catalog::default_pools(s))
}

#[tokio::test]
async fn every_layer_passes_the_conformance_suite_around_the_fake() {
    let s = server("EX01");
    let fx = fixture(&s);
    conformance::run_all(
        &Layered::new(RecordingFlusher::new(), Latency(Duration::ZERO)),
        &fx,
    )
    .await;
    conformance::run_all(
        &Layered::new(RecordingFlusher::new(), Faults::default()),
        &fx,
    )
    .await;
    let logged = Layered::new(RecordingFlusher::new(), CallLog::default());
    conformance::run_all(&logged, &fx).await;
    // The log saw every call, in order; the fake records only the calls it accepted (the
    // suite's empty pool list and TTL of 1.5 s are refused as invalid input before they are
    // recorded).
    let refused = [
        FlushOperation::Flush(FlushMethod::RecycleAppPools(Vec::new())),
        FlushOperation::SetTokenTtl(Duration::from_millis(1500)),
    ];
    let seen = logged.hook().calls();
    let reached = logged.inner().calls();
    let accepted: Vec<_> = seen
        .iter()
        .filter(|c| !refused.contains(&c.operation))
        .cloned()
        .collect();
    assert_eq!(accepted, reached);
    assert_eq!(seen.len(), reached.len() + refused.len());
    let shared: Arc<dyn CacheFlusher> = Arc::new(RecordingFlusher::new());
    conformance::run_all(
        &Layered::new(Layered::new(shared, Faults::default()), CallLog::default()),
        &fx,
    )
    .await;
    let boxed: Box<dyn CacheFlusher> = Box::new(RecordingFlusher::new());
    conformance::run_all(&Layered::new(boxed, Latency(Duration::ZERO)), &fx).await;
}

#[tokio::test]
async fn layers_around_winrm_against_the_lab() {
    let directory: Arc<dyn Directory> = Arc::new(InMemoryDirectory::new());
    let fleet = Fleet::builder()
        .directory(directory)
        .server(ServerSpec::exchange_2019("EX01"))
        .build()
        .await
        .unwrap();
    let lab = &fleet.servers()[0];
    let winrm = WinRmFlusher::builder()
        .credentials(fleet.winrm_user(), fleet.winrm_password().clone())
        .endpoint(lab.name(), lab.winrm_url())
        .receive_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let layered = Layered::new(Layered::new(winrm, Faults::default()), CallLog::default());
    let ex = lab.exchange_server().clone();
    conformance::run_all(&layered, &fixture(&ex)).await;
    assert!(layered.hook().count_for("EX01") >= 6);
    // An injected fault never reaches the server.
    let before = lab.winrm_stats().requests;
    layered.inner().hook().fail_next(
        "ex01",
        IisError::Unreachable {
            server: "EX01".into(),
            endpoint: lab.winrm_url(),
            detail: "injected".into(),
            source: None,
        },
        1,
    );
    let e = layered
        .flush(&ex, &FlushMethod::default())
        .await
        .unwrap_err();
    assert!(e.is_transient() && e.server() == Some("EX01"), "{e}");
    assert_eq!(lab.winrm_stats().requests, before);
    assert!(layered
        .flush(&ex, &FlushMethod::default())
        .await
        .unwrap()
        .is_proven());
    assert!(layered.security_notes().is_empty());
    fleet.shutdown().await;
}

#[tokio::test]
async fn faults_are_per_server_and_latency_per_call() {
    let (a, b) = (server("EXA"), server("EXB"));
    let f = Layered::new(
        Layered::new(RecordingFlusher::new(), Faults::default()),
        Latency(Duration::from_millis(30)),
    );
    f.inner().hook().fail_always(
        "EXA",
        IisError::Unauthenticated {
            server: "EXA".into(),
            user: "LAB\\svc".into(),
            reason: "injected".into(),
        },
    );
    let t = Instant::now();
    for _ in 0..2 {
        assert!(matches!(
            f.token_cache(&a).await,
            Err(IisError::Unauthenticated { .. })
        ));
    }
    f.token_cache(&b).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t.elapsed()
    );
    // Only EXB reached the fake.
    let calls = f.inner().inner().calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].server, "EXB");
    assert_eq!(calls[0].operation, FlushOperation::TokenCache);
    f.inner().hook().clear();
    f.token_cache(&a).await.unwrap();
}
