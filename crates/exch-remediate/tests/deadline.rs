//! The run deadline ([`RemediationBuilder::deadline`]) and resume after a failed probe, against
//! the in-memory fakes: a gated flusher that never answers stands in for hung servers.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use exch_core::{ExchangeServer, ExchangeVersion, Protocol, ServerRoles};
use exch_directory::InMemoryDirectory;
use exch_iis::{FlushOperation, RecordingFlusher};
use exch_remediate::{
    FailureKind, Outcome, ProbeResult, Prober, Remediation, RemediationBuilder, RetryPolicy,
    ServerOutcome, SkipReason, Strategy, Timeouts,
};
use secrecy::SecretString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USER: &str = "bob@lab.example.test";
/// What a run may take past its deadline on a loaded machine: a loose ceiling, far below
/// the per-server (30 s) and convergence (60 s) limits that would end the run without it.
/// (`the_deadline_holds_to_the_millisecond_on_a_paused_clock` checks it exactly.)
const CEILING_SLACK: Duration = Duration::from_secs(10);

fn directory(servers: usize) -> InMemoryDirectory {
    let dir = InMemoryDirectory::new();
    dir.add_user("bob", USER, "Old-Passw0rd!");
    dir.add_domain_controller("DC1", Duration::ZERO);
    for i in 1..=servers {
        let name = format!("EX{i:02}");
        dir.add_exchange_server(
            ExchangeServer::new(&name, format!("{}.lab.example.test", name.to_lowercase()))
                .with_version(ExchangeVersion::new(15, 2, 1258))
                .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS),
        );
    }
    dir
}

fn builder(dir: &InMemoryDirectory, flusher: RecordingFlusher) -> RemediationBuilder {
    Remediation::builder()
        .directory(Arc::new(dir.clone()))
        .flusher(Arc::new(flusher))
        .user(USER)
        .disable()
        .timeouts(
            Timeouts::default()
                .with_converge(Duration::from_secs(5))
                .with_converge_poll(Duration::from_millis(5))
                .with_per_server(Duration::from_secs(30))
                .with_directory(Duration::from_secs(5)),
        )
        .retry(RetryPolicy::none())
}

fn flushes(f: &RecordingFlusher) -> Vec<String> {
    f.calls()
        .into_iter()
        .filter(|c| matches!(c.operation, FlushOperation::Flush(_)))
        .map(|c| c.server)
        .collect()
}

/// The run deadline is kept on tokio's clock: paused, the run ends exactly at the deadline
/// of a run that would otherwise wait 3 × 30 s.
#[tokio::test(start_paused = true)]
async fn the_deadline_holds_to_the_millisecond_on_a_paused_clock() {
    let dir = directory(3);
    let (hung, _gate) = RecordingFlusher::gated();
    let limit = Duration::from_secs(20);
    let r = builder(&dir, hung)
        .strategy(Strategy::Rolling {
            batch: 1,
            pause: Duration::ZERO,
        })
        .deadline(limit)
        .build()
        .unwrap();
    let plan = r.plan().await.unwrap();
    let t = tokio::time::Instant::now();
    let report = r.execute(&plan).await;
    assert_eq!(t.elapsed(), limit, "{}", report.summary());
    assert!(matches!(
        report.servers[0].outcome,
        ServerOutcome::Failed {
            kind: FailureKind::Timeout,
            ..
        }
    ));
    assert_eq!(report.servers_to_retry.len(), 3);
}

#[tokio::test]
async fn the_deadline_ends_a_rolling_run_that_hangs_on_every_server() {
    let dir = directory(3);
    // Every flush parks at the gate, never released: three hung servers.
    let (hung, _gate) = RecordingFlusher::gated();
    let limit = Duration::from_millis(400);
    let r = builder(&dir, hung.clone())
        .strategy(Strategy::Rolling {
            batch: 1,
            pause: Duration::ZERO,
        })
        .deadline(limit)
        .build()
        .unwrap();
    let plan = r.plan().await.unwrap();
    let t = Instant::now();
    let report = r.execute(&plan).await;
    let took = t.elapsed();
    // Without the deadline: 3 × per_server = 90 s. A loose ceiling (a loaded machine may add
    // seconds, never the 30 s of one more per-server timeout); what ended the run is in the
    // report below (cut by the deadline, the others skipped for it).
    assert!(took >= limit && took < limit + CEILING_SLACK, "{took:?}");
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    let ex01 = &report.servers[0].outcome;
    assert!(
        matches!(ex01, ServerOutcome::Failed { kind, error, .. } if *kind == FailureKind::Timeout && error.contains("deadline")),
        "{ex01:?}"
    );
    for s in &report.servers[1..] {
        assert!(
            matches!(
                &s.outcome,
                ServerOutcome::Skipped {
                    reason: SkipReason::Deadline { .. }
                }
            ),
            "{s:?}"
        );
    }
    assert_eq!(report.servers_to_retry, ["EX01", "EX02", "EX03"]);
    assert_eq!(flushes(&hung), ["EX01"]);

    // Resumed with servers that answer: everything left is flushed.
    let ok = RecordingFlusher::new();
    let r2 = builder(&dir, ok.clone()).resume(report).build().unwrap();
    let report2 = r2.execute(&r2.plan().await.unwrap()).await;
    assert_eq!(report2.outcome, Outcome::Revoked, "{}", report2.summary());
    assert_eq!(flushes(&ok), ["EX01", "EX02", "EX03"]);
}

#[tokio::test]
async fn the_deadline_stops_waiting_for_convergence() {
    let dir = directory(1);
    dir.add_domain_controller("DC2", Duration::from_secs(3600));
    let r = builder(&dir, RecordingFlusher::new())
        // Convergence alone would wait 60 s: only the deadline can end it within the ceiling.
        .timeouts(
            Timeouts::default()
                .with_converge(Duration::from_secs(60))
                .with_converge_poll(Duration::from_millis(5))
                .with_per_server(Duration::from_secs(30))
                .with_directory(Duration::from_secs(5)),
        )
        .deadline(Duration::from_millis(300))
        .build()
        .unwrap();
    let t = Instant::now();
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert!(
        t.elapsed() >= Duration::from_millis(300)
            && t.elapsed() < Duration::from_millis(300) + CEILING_SLACK,
        "{:?}",
        t.elapsed()
    );
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    let dc2 = report
        .domain_controllers
        .iter()
        .find(|d| d.dc == "DC2")
        .unwrap();
    assert!(!dc2.converged);
    assert!(
        dc2.error.as_deref().unwrap().contains("deadline"),
        "{dc2:?}"
    );
    // Nothing was left for the flush: the server is skipped and left to retry.
    assert_eq!(report.servers_to_retry, ["EX01"]);
}

/// Accepts the old password on `EX02` while `leaky` is set.
#[derive(Debug)]
struct LeakyProber {
    leaky: AtomicBool,
}

#[async_trait]
impl Prober for LeakyProber {
    async fn probe(
        &self,
        server: &ExchangeServer,
        _: Protocol,
        _: &str,
        _: &SecretString,
    ) -> ProbeResult {
        if server.name == "EX02" && self.leaky.load(Ordering::SeqCst) {
            ProbeResult::Accepted("HTTP 200".into())
        } else {
            ProbeResult::Refused("HTTP 401".into())
        }
    }
}

#[tokio::test]
async fn resume_flushes_again_a_server_that_still_accepted_the_old_password() {
    let dir = directory(3);
    let prober = Arc::new(LeakyProber {
        leaky: AtomicBool::new(true),
    });
    let old = SecretString::from("Old-Passw0rd!".to_owned());
    let first = RecordingFlusher::new();
    let r = builder(&dir, first)
        .probe_old_password(prober.clone(), old.clone())
        .build()
        .unwrap();
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    assert_eq!(report.servers_to_retry, ["EX02"]);
    assert!(report.servers[1].outcome.is_proven(), "flushed, yet leaky");

    prober.leaky.store(false, Ordering::SeqCst);
    let again = RecordingFlusher::new();
    let r2 = builder(&dir, again.clone())
        .probe_old_password(prober, old)
        .resume(report)
        .build()
        .unwrap();
    let report2 = r2.execute(&r2.plan().await.unwrap()).await;
    assert_eq!(report2.outcome, Outcome::Revoked, "{}", report2.summary());
    // EX02 is flushed and probed again, not skipped as "proven in an earlier run".
    assert_eq!(flushes(&again), ["EX02"]);
    assert!(report2.servers[1].probes.iter().all(|p| p.refused));
    assert!(!report2.servers[1].probes.is_empty());
}
