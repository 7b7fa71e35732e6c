//! Tests about calls and their order, with the `mock` feature's `MockDirectory` and
//! `MockCacheFlusher` (mockall): one flush per server for a batch, convergence on every DC
//! before any flush, no second password reset when a run is resumed. The mocks' answers come
//! from the public fakes (`InMemoryDirectory`, `RecordingFlusher`), so what is asserted here
//! is only the calls: their number (`times`) and order (`Sequence`, and a check inside the
//! flush expectation).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::{Directory, InMemoryDirectory, MockDirectory};
use exch_iis::{CacheFlusher, MockCacheFlusher, RecordingFlusher};
use exch_remediate::{NewPassword, Outcome, Remediation, Strategy, Timeouts};
use futures::executor::block_on;
use mockall::Sequence;

fn servers() -> Vec<ExchangeServer> {
    ["EX1", "EX2", "EX3"]
        .iter()
        .map(|n| {
            ExchangeServer::new(*n, format!("{}.lab.example.test", n.to_lowercase()))
                .with_version(ExchangeVersion::new(15, 2, 1258))
                .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS)
        })
        .collect()
}

fn timeouts() -> Timeouts {
    Timeouts::default()
        .with_converge(Duration::from_secs(5))
        .with_converge_poll(Duration::from_millis(5))
}

/// A mock whose every answer is the in-memory directory's (no latency: `block_on` is fine).
/// Tests add their own expectations for the calls they are about, before these catch-alls.
fn answering(dir: &InMemoryDirectory, m: &mut MockDirectory) {
    let d = dir.clone();
    m.expect_find_account()
        .returning(move |u| block_on(d.find_account(u)));
    let d = dir.clone();
    m.expect_find_accounts()
        .returning(move |u| block_on(d.find_accounts(u)));
    let d = dir.clone();
    m.expect_domain_controllers()
        .returning(move || block_on(d.domain_controllers()));
    let d = dir.clone();
    m.expect_exchange_servers()
        .returning(move || block_on(d.exchange_servers()));
    let d = dir.clone();
    m.expect_account_on()
        .returning(move |dc, dn| block_on(d.account_on(dc, dn)));
    let d = dir.clone();
    m.expect_accounts_on()
        .returning(move |dc, dns| block_on(d.accounts_on(dc, dns)));
    let d = dir.clone();
    m.expect_authenticate()
        .returning(move |u, p| block_on(d.authenticate(u, p)));
    m.expect_security_notes().returning(Vec::new);
}

fn flusher_answering(fake: &RecordingFlusher, m: &mut MockCacheFlusher) {
    let f = fake.clone();
    m.expect_app_pools()
        .returning(move |s| block_on(f.app_pools(s)));
    m.expect_security_notes().returning(Vec::new);
}

#[tokio::test]
async fn convergence_on_every_dc_before_any_flush_and_one_flush_per_server() {
    let dir = InMemoryDirectory::new();
    dir.add_user("bob", "bob@lab.example.test", "Old-Passw0rd!");
    dir.add_domain_controller("DC2", Duration::from_millis(30));
    let mut m = MockDirectory::new();
    let mut seq = Sequence::new();
    // Plan, then execute: find, find again, disable exactly once — in this order (the
    // engine's bulk calls, one user in each).
    let d = dir.clone();
    m.expect_find_accounts()
        .times(2)
        .in_sequence(&mut seq)
        .returning(move |u| block_on(d.find_accounts(u)));
    let d = dir.clone();
    m.expect_disable_and_reset()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |a, disable, pw| block_on(d.disable_and_reset(a, disable, pw)));
    // Every DC read that shows the account disabled is counted.
    let shown = Arc::new(AtomicUsize::new(0));
    let d = dir.clone();
    let s = Arc::clone(&shown);
    m.expect_accounts_on().returning(move |dc, dns| {
        let read = block_on(d.accounts_on(dc, dns));
        let disabled = read
            .iter()
            .filter(|a| a.as_ref().is_ok_and(|a| a.is_disabled()))
            .count();
        s.fetch_add(disabled, Ordering::SeqCst);
        read
    });
    answering(&dir, &mut m);

    let fake = RecordingFlusher::new();
    let mut f = MockCacheFlusher::new();
    let dcs = block_on(dir.domain_controllers()).unwrap().len();
    for name in ["EX1", "EX2", "EX3"] {
        let fk = fake.clone();
        let s = Arc::clone(&shown);
        f.expect_flush()
            .withf(move |srv, _| srv.name == name)
            .times(1)
            .returning(move |srv, method| {
                assert!(
                    s.load(Ordering::SeqCst) >= dcs,
                    "{} flushed before every DC showed the change",
                    srv.name
                );
                block_on(fk.flush(srv, method))
            });
    }
    flusher_answering(&fake, &mut f);

    let r = Remediation::builder()
        .directory(Arc::new(m))
        .flusher(Arc::new(f))
        .user("bob@lab.example.test")
        .disable()
        .servers(servers())
        .strategy(Strategy::Parallel { max_in_flight: 8 })
        .timeouts(timeouts())
        .build()
        .unwrap();
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    // The mocks check their `times` when dropped with the remediation.
}

#[tokio::test]
async fn a_batch_flushes_each_server_exactly_once() {
    let dir = InMemoryDirectory::new();
    for u in ["ann", "ben", "cal"] {
        dir.add_user(u, &format!("{u}@lab.example.test"), "Old-Passw0rd!");
    }
    let mut m = MockDirectory::new();
    let d = dir.clone();
    m.expect_disable_and_reset()
        .times(3)
        .returning(move |a, disable, pw| block_on(d.disable_and_reset(a, disable, pw)));
    let d = dir.clone();
    m.expect_disable_account()
        .times(0..=3)
        .returning(move |a| block_on(d.disable_account(a)));
    answering(&dir, &mut m);
    let fake = RecordingFlusher::new();
    let mut f = MockCacheFlusher::new();
    for name in ["EX1", "EX2", "EX3"] {
        let fk = fake.clone();
        f.expect_flush()
            .withf(move |srv, _| srv.name == name)
            .times(1)
            .returning(move |srv, method| block_on(fk.flush(srv, method)));
    }
    flusher_answering(&fake, &mut f);
    let run = Remediation::builder()
        .directory(Arc::new(m))
        .flusher(Arc::new(f))
        .users([
            "ann@lab.example.test",
            "ben@lab.example.test",
            "cal@lab.example.test",
        ])
        .disable()
        .servers(servers())
        .timeouts(timeouts())
        .build_many()
        .unwrap();
    let report = run.execute(&run.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
}

#[tokio::test]
async fn a_resumed_run_never_resets_the_password_again() {
    let dir = InMemoryDirectory::new();
    dir.add_user("dan", "dan@lab.example.test", "Old-Passw0rd!");
    // First run: the reset is applied, EX2 fails → Partial.
    let mut m = MockDirectory::new();
    let d = dir.clone();
    m.expect_disable_and_reset()
        .times(1)
        .returning(move |a, disable, pw| block_on(d.disable_and_reset(a, disable, pw)));
    m.expect_reset_password().times(0);
    answering(&dir, &mut m);
    let fake = RecordingFlusher::new().with_error(
        "EX2",
        exch_iis::IisError::Unreachable {
            server: "EX2".into(),
            endpoint: "http://ex2:5985/wsman".into(),
            detail: "connection refused".into(),
            source: None,
        },
    );
    let mut f = MockCacheFlusher::new();
    let fk = fake.clone();
    f.expect_flush()
        .returning(move |srv, method| block_on(fk.flush(srv, method)));
    flusher_answering(&fake, &mut f);
    let first = Remediation::builder()
        .directory(Arc::new(m))
        .flusher(Arc::new(f))
        .user("dan@lab.example.test")
        .reset_password(NewPassword::Generate)
        .servers(servers())
        .timeouts(timeouts())
        .retry(exch_remediate::RetryPolicy::none())
        .build()
        .unwrap();
    let report = first.execute(&first.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());

    // The rerun: no reset at all, and only EX2 is flushed (the others were proven).
    let mut m = MockDirectory::new();
    m.expect_reset_password().times(0);
    m.expect_disable_and_reset().times(0);
    answering(&dir, &mut m);
    let healthy = RecordingFlusher::new();
    let mut f = MockCacheFlusher::new();
    let fk = healthy.clone();
    f.expect_flush()
        .withf(|srv, _| srv.name == "EX2")
        .times(1)
        .returning(move |srv, method| block_on(fk.flush(srv, method)));
    f.expect_flush().withf(|srv, _| srv.name != "EX2").times(0);
    flusher_answering(&healthy, &mut f);
    let rerun = Remediation::builder()
        .directory(Arc::new(m))
        .flusher(Arc::new(f))
        .user("dan@lab.example.test")
        .reset_password(NewPassword::Generate)
        .servers(servers())
        .timeouts(timeouts())
        .resume(report)
        .build()
        .unwrap();
    let again = rerun.execute(&rerun.plan().await.unwrap()).await;
    assert_eq!(again.outcome, Outcome::Revoked, "{}", again.summary());
}
