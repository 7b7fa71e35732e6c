//! The generated scripts run in the lab's PowerShell-subset interpreter (`exch_lab::ps`), and
//! their output parses into proven reports. This checks the script ↔ subset contract without
//! WinRM in between.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use std::sync::Arc;

use exch_core::{AppPool, ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::InMemoryDirectory;
use exch_iis::{catalog, parse, script, FlushMethod, IisError};
use exch_lab::clock::LabClock;
use exch_lab::model::{IisServer, IisTiming};
use exch_lab::ps::run_script;

fn lab(version: ExchangeVersion) -> IisServer {
    IisServer::new(
        "EX1",
        version,
        Arc::new(InMemoryDirectory::new()),
        LabClock::real(),
        None,
        IisTiming::default(),
    )
}

fn exchange(version: ExchangeVersion) -> ExchangeServer {
    let roles = if version.major >= 15 {
        ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS
    } else {
        ServerRoles::CLIENT_ACCESS
    };
    ExchangeServer::new("EX1", "ex1.lab.example.test")
        .with_version(version)
        .with_roles(roles)
}

async fn run_ok(host: &IisServer, src: &str) -> String {
    let out = run_script(host, src).await;
    assert_eq!(out.exit_code, 0, "stderr: {}\n---\n{src}", out.stderr);
    out.stdout
}

#[tokio::test]
async fn recycle_catalog_pools_on_every_version() {
    for v in [
        ExchangeVersion::new(14, 3, 123),
        ExchangeVersion::new(15, 1, 2507),
        ExchangeVersion::new(15, 2, 1258),
    ] {
        let host = lab(v);
        let server = exchange(v);
        let listed = parse::pool_list("EX1", &run_ok(&host, &script::list_pools()).await).unwrap();
        let wanted = catalog::default_pools(&server);
        for w in &wanted {
            assert!(
                listed
                    .iter()
                    .any(|p| p.name.as_str().eq_ignore_ascii_case(w.as_str())),
                "{v}: {w} not listed"
            );
        }
        let mut pools = wanted.clone();
        pools.push(AppPool::from_static("NoSuchPool"));
        let stdout = run_ok(&host, &script::recycle_pools(&pools)).await;
        let report = parse::recycle_report("EX1", &FlushMethod::default(), &stdout).unwrap();
        assert_eq!(report.pools.len(), wanted.len(), "{v}: {report:?}");
        assert!(report.is_proven(), "{v}: {report:?}");
        assert_eq!(report.missing_pools, [AppPool::from_static("NoSuchPool")]);
        for p in &report.pools {
            assert_eq!(p.before.len(), 1, "{v}: {p:?}");
            assert_eq!(p.after.len(), 1, "{v}: {p:?}");
            assert_ne!(p.before[0].pid, p.after[0].pid);
        }
    }
}

#[tokio::test]
async fn failing_pool_carries_its_error() {
    let host = lab(ExchangeVersion::new(15, 2, 1258));
    host.fail_recycle("MSExchangeOWAAppPool", None);
    let pools = [
        AppPool::from_static("MSExchangeOWAAppPool"),
        AppPool::from_static("MSExchangeSyncAppPool"),
    ];
    let stdout = run_ok(&host, &script::recycle_pools(&pools)).await;
    let report = parse::recycle_report("EX1", &FlushMethod::default(), &stdout).unwrap();
    let owa = &report.pools[0];
    assert!(
        !owa.proven && owa.error.as_deref().unwrap_or("").contains("being used"),
        "{owa:?}"
    );
    assert!(report.pools[1].proven);
}

#[tokio::test]
async fn iisreset_noforce_reports_new_workers() {
    let host = lab(ExchangeVersion::new(15, 1, 2507));
    let method = FlushMethod::IisReset { force: false };
    let stdout = run_ok(&host, &script::iis_reset(false)).await;
    let report = parse::reset_report("EX1", &method, &stdout).unwrap();
    assert!(report.pools.len() >= 5, "{report:?}");
    assert!(report.is_proven(), "{report:?}");
}

#[tokio::test]
async fn token_ttl_read_and_write() {
    let host = lab(ExchangeVersion::new(15, 2, 1258));
    let t = parse::token_ttl("EX1", &run_ok(&host, &script::read_token_ttl()).await).unwrap();
    assert_eq!(t.configured, None);
    let t = parse::token_ttl("EX1", &run_ok(&host, &script::set_token_ttl(60)).await).unwrap();
    assert_eq!(t.configured, Some(std::time::Duration::from_secs(60)));
    let t = parse::token_ttl("EX1", &run_ok(&host, &script::set_token_ttl(0)).await).unwrap();
    assert!(t.never_expires());
}

#[tokio::test]
async fn garbage_output_is_a_protocol_error() {
    let e = parse::pool_list("EX1", "not json").unwrap_err();
    assert!(matches!(e, IisError::Protocol { .. }) && e.to_string().contains("EX1"));
}
