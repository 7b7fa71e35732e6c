//! Endpoints that take no password logon (EWS and MAPI at Exchange's defaults, Windows
//! authentication only) are recorded as not applicable: neither refused nor accepted, and not
//! counted against `Revoked`.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use exch_core::{ExchangeServer, ExchangeVersion, Protocol, ServerRoles};
use exch_directory::InMemoryDirectory;
use exch_iis::RecordingFlusher;
use exch_remediate::{Outcome, ProbeRecord, ProbeResult, Prober, Remediation, RetryPolicy};
use secrecy::SecretString;
use std::sync::Arc;

const USER: &str = "bob@lab.example.test";

/// Answers like Exchange at its defaults: EWS and MAPI offer no Basic; the rest refuses, or
/// accepts on `leaky`.
#[derive(Debug)]
struct DefaultsProber {
    leaky: Option<Protocol>,
}

#[async_trait]
impl Prober for DefaultsProber {
    async fn probe(
        &self,
        _: &ExchangeServer,
        p: Protocol,
        _: &str,
        _: &SecretString,
    ) -> ProbeResult {
        match p {
            Protocol::Ews | Protocol::Mapi => {
                ProbeResult::NotApplicable("HTTP 401 without a Basic challenge".into())
            }
            p if Some(p) == self.leaky => ProbeResult::Accepted("HTTP 200".into()),
            _ => ProbeResult::Refused("HTTP 401".into()),
        }
    }
}

async fn run(leaky: Option<Protocol>) -> exch_remediate::Report {
    let dir = InMemoryDirectory::new();
    dir.add_user("bob", USER, "Old-Passw0rd!");
    dir.add_domain_controller("DC1", std::time::Duration::ZERO);
    dir.add_exchange_server(
        ExchangeServer::new("EX01", "ex01.lab.example.test")
            .with_version(ExchangeVersion::new(15, 2, 1258))
            .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS),
    );
    let r = Remediation::builder()
        .directory(Arc::new(dir))
        .flusher(Arc::new(RecordingFlusher::new()))
        .user(USER)
        .disable()
        .retry(RetryPolicy::none())
        .probe_old_password(
            Arc::new(DefaultsProber { leaky }),
            SecretString::from("Old-Passw0rd!".to_owned()),
        )
        .build()
        .unwrap();
    r.execute(&r.plan().await.unwrap()).await
}

#[tokio::test]
async fn not_applicable_endpoints_do_not_count_against_revoked() {
    let report = run(None).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    let probes = &report.servers[0].probes;
    let not_applicable: Vec<Protocol> = probes
        .iter()
        .filter(|p| !p.applicable)
        .map(|p| p.protocol)
        .collect();
    assert!(!not_applicable.is_empty(), "{probes:?}");
    assert!(not_applicable
        .iter()
        .all(|p| matches!(p, Protocol::Ews | Protocol::Mapi)));
    assert!(probes
        .iter()
        .all(|p| p.applicable != p.detail.starts_with("not applicable")));
    assert!(probes.iter().filter(|p| !p.applicable).all(|p| !p.refused));
    assert!(
        report.summary().contains("not applicable"),
        "{}",
        report.summary()
    );
}

#[tokio::test]
async fn an_accepted_applicable_endpoint_still_keeps_the_run_partial() {
    let report = run(Some(Protocol::Eas)).await;
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    assert_eq!(report.servers_to_retry, ["EX01"]);
    let open: Vec<Protocol> = report.servers[0]
        .probes
        .iter()
        .filter(|p| p.is_open())
        .map(|p| p.protocol)
        .collect();
    assert_eq!(open, [Protocol::Eas]);
}

#[test]
fn a_probe_record_written_before_applicable_existed_reads_as_applicable() {
    let old: ProbeRecord = serde_json::from_value(serde_json::json!({
        "protocol": Protocol::Ews, "refused": true, "detail": "HTTP 401"
    }))
    .unwrap();
    assert!(old.applicable && old.refused && !old.is_open());
}

/// Answers "not applicable" everywhere, as a deployment whose every probed endpoint takes
/// Windows authentication only.
#[derive(Debug)]
struct WindowsOnlyProber;

#[async_trait]
impl Prober for WindowsOnlyProber {
    async fn probe(
        &self,
        _: &ExchangeServer,
        _: Protocol,
        _: &str,
        _: &SecretString,
    ) -> ProbeResult {
        ProbeResult::NotApplicable("HTTP 401 without a Basic challenge".into())
    }
}

#[tokio::test]
async fn when_no_probed_endpoint_takes_a_password_the_refusal_is_not_called_proven() {
    let dir = InMemoryDirectory::new();
    dir.add_user("bob", USER, "Old-Passw0rd!");
    dir.add_exchange_server(
        ExchangeServer::new("EX01", "ex01.lab.example.test")
            .with_version(ExchangeVersion::new(15, 2, 1258))
            .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS),
    );
    let r = Remediation::builder()
        .directory(Arc::new(dir))
        .flusher(Arc::new(RecordingFlusher::new()))
        .user(USER)
        .disable()
        .probe_old_password(
            Arc::new(WindowsOnlyProber),
            SecretString::from("Old-Passw0rd!".to_owned()),
        )
        .build()
        .unwrap();
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    assert!(report
        .causes
        .contains(&exch_remediate::Cause::NothingProbed));
}
