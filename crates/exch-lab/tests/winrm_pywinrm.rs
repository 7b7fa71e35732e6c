//! Cross-check with independent clients: pywinrm and pypsrp (Python, NTLM and MS-WSMV
//! encryption from pyspnego) against the endpoint in its default, Windows-like mode; Basic
//! and unencrypted bodies are refused; HTTPS with the lab CA works.
//! Skipped (with a message) when the packages are not installed, unless
//! `EXCH_REVOKE_REQUIRE_PYWINRM=1`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod winrm_harness;
mod winrm_support;

use std::sync::Arc;

use exch_lab::fleet::{Fleet, ServerSpec};
use exch_lab::winrm::tls::CertSignature;
use exch_lab::winrm::{WinRmConfig, WinRmService};
use winrm_harness::{python_has, run_script, serve_with};
use winrm_support::FakeHost;

const USER: &str = "lab\\admin";
const PASSWORD: &str = "Py-pass'1";

fn available(module: &str) -> bool {
    let ok = python_has(module);
    if !ok {
        if std::env::var("EXCH_REVOKE_REQUIRE_PYWINRM").as_deref() == Ok("1") {
            panic!("{module} is required (EXCH_REVOKE_REQUIRE_PYWINRM=1) but `python3 -c 'import {module}'` fails; python3 -m pip install pywinrm pypsrp pyspnego");
        }
        exch_lab::samba::record_skip(&format!(
            "winrm_pywinrm: python module {module} not installed; run scripts/test.sh"
        ));
    }
    ok
}

/// The endpoint at its defaults, accepting `USER`/`PASSWORD`: (its `/wsman` URL, the service).
async fn serve() -> (String, WinRmService) {
    let (addr, service) = serve_with(
        FakeHost::exchange(),
        WinRmConfig::new(USER, PASSWORD.to_string().into()),
    )
    .await;
    (format!("http://{addr}/wsman"), service)
}

/// Runs `script` (under scripts/) with `args`: (exit code, JSON printed).
async fn run(script: &str, args: &[&str]) -> (i32, serde_json::Value) {
    run_script(script, args, None).await
}

fn assert_ran(json: &serde_json::Value) {
    assert_eq!(json["ps"]["status_code"], 0, "{json}");
    let pools: serde_json::Value =
        serde_json::from_str(json["ps"]["std_out"].as_str().unwrap().trim()).unwrap();
    assert_eq!(pools["pools"][1], "MSExchangeOWAAppPool");
    assert_eq!(json["cmd"]["status_code"], 0, "{json}");
    assert!(json["cmd"]["std_out"].as_str().unwrap().contains("W3SVC"));
    // pywinrm decodes the CLIXML stderr (progress record dropped, error text kept).
    assert_ne!(json["ps_error"]["status_code"], 0, "{json}");
    let err = json["ps_error"]["std_err"].as_str().unwrap();
    assert!(!err.contains("CLIXML") && !err.contains("<Objs"), "{err}");
    assert!(err.contains("Get-Item"), "{err}");
}

#[tokio::test]
async fn pywinrm_ntlm_with_encryption_runs_powershell_and_cmd() {
    if !available("winrm") {
        return;
    }
    let (url, service) = serve().await;
    let (code, json) = run("pywinrm-check.py", &[&url, USER, PASSWORD]).await;
    assert_eq!(code, 0, "{json}");
    assert_ran(&json);
    let stats = service.counters().snapshot();
    assert_eq!((stats.create, stats.delete, stats.open_shells), (3, 3, 0));
    assert!(stats.auth_challenges >= 1, "{stats:?}");
    assert_eq!(stats.plaintext_refused, 0, "{stats:?}");
    // Plain HTTP: no TLS channel to bind to.
    assert_eq!(stats.channel_bound, 0, "{stats:?}");
}

#[tokio::test]
async fn pywinrm_basic_is_refused_by_default() {
    if !available("winrm") {
        return;
    }
    let (url, service) = serve().await;
    let (code, json) = run(
        "pywinrm-check.py",
        &[
            &url,
            USER,
            PASSWORD,
            "--transport",
            "basic",
            "--encryption",
            "never",
        ],
    )
    .await;
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["kind"], "unauthorized", "{json}");
    let stats = service.counters().snapshot();
    assert_eq!((stats.create, stats.command), (0, 0), "{stats:?}");
    assert!(stats.unauthorized >= 1, "{stats:?}");
}

#[tokio::test]
async fn pywinrm_ntlm_without_encryption_is_refused() {
    if !available("winrm") {
        return;
    }
    let (url, service) = serve().await;
    let (code, json) = run(
        "pywinrm-check.py",
        &[&url, USER, PASSWORD, "--encryption", "never"],
    )
    .await;
    assert_eq!(code, 2, "{json}");
    let stats = service.counters().snapshot();
    assert_eq!((stats.create, stats.command), (0, 0), "{stats:?}");
    assert!(stats.plaintext_refused >= 1, "{stats:?}");
}

#[tokio::test]
async fn pywinrm_ntlm_with_a_wrong_password_is_refused() {
    if !available("winrm") {
        return;
    }
    let (url, service) = serve().await;
    let (code, json) = run("pywinrm-check.py", &[&url, USER, "wrong-password"]).await;
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["kind"], "unauthorized", "{json}");
    let stats = service.counters().snapshot();
    assert_eq!(stats.create, 0, "{stats:?}");
}

#[tokio::test]
async fn pypsrp_winrs_with_ntlm_and_encryption_runs_cmd_and_powershell() {
    if !available("pypsrp") {
        return;
    }
    let (url, service) = serve().await;
    let (code, json) = run("pypsrp-check.py", &[&url, USER, PASSWORD]).await;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["cmd"]["status_code"], 0, "{json}");
    assert!(json["cmd"]["std_out"].as_str().unwrap().contains("W3SVC"));
    assert_eq!(json["ps"]["status_code"], 0, "{json}");
    assert!(
        json["ps"]["std_out"].as_str().unwrap().contains("Started"),
        "{json}"
    );
    let stats = service.counters().snapshot();
    assert!(stats.create >= 2 && stats.open_shells == 0, "{stats:?}");
    assert!(stats.auth_challenges >= 1, "{stats:?}");
}

async fn pywinrm_over_https(signature: CertSignature) {
    let directory = exch_directory::InMemoryDirectory::new();
    let fleet = Fleet::builder()
        .directory(Arc::new(directory))
        .server(ServerSpec::exchange_2019("EX01"))
        .winrm_credentials(USER, PASSWORD.to_string().into())
        .winrm_https_signature(signature)
        .build()
        .await
        .unwrap();
    let server = &fleet.servers()[0];
    let ca = std::env::temp_dir().join(format!("exch-lab-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, fleet.winrm_ca_pem().unwrap()).unwrap();
    let url = server.winrm_https_url().unwrap();
    let ca = ca.to_str().unwrap();
    // `auto`: plain SOAP inside TLS (what pywinrm does over https); `always`: encrypted
    // anyway, which Windows accepts too.
    for encryption in ["auto", "always"] {
        let (code, json) = run(
            "pywinrm-check.py",
            &[&url, USER, PASSWORD, "--ca", ca, "--encryption", encryption],
        )
        .await;
        assert_eq!(code, 0, "{signature:?} {encryption}: {json}");
        assert_eq!(json["cmd"]["status_code"], 0, "{json}");
        assert!(json["cmd"]["std_out"].as_str().unwrap().contains("W3SVC"));
    }
    let stats = server.winrm_stats();
    assert!(stats.create >= 6 && stats.auth_challenges >= 2, "{stats:?}");
    assert_eq!(stats.plaintext_refused, 0, "{stats:?}");
    // requests-ntlm binds its logon to the TLS channel, with this certificate's hash.
    assert!(stats.channel_bound >= 2, "{signature:?}: {stats:?}");
    assert_eq!(stats.kerberos_logons, 0, "{stats:?}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn pywinrm_over_https_trusting_the_lab_ca() {
    if !available("winrm") {
        return;
    }
    pywinrm_over_https(CertSignature::EcdsaP256Sha256).await;
    pywinrm_over_https(CertSignature::EcdsaP384Sha384).await;
}
