//! Cross-check with an independent client: pywinrm (Python) runs commands against the endpoint.
//! Skipped (with a message) when pywinrm is not installed, unless `EXCH_REVOKE_REQUIRE_PYWINRM=1`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod winrm_support;

use std::path::PathBuf;
use std::sync::Arc;

use exch_lab::winrm::{WinRmConfig, WinRmService};
use winrm_support::FakeHost;

fn pywinrm_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import winrm"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn pywinrm_runs_powershell_and_cmd() {
    if !pywinrm_available() {
        if std::env::var("EXCH_REVOKE_REQUIRE_PYWINRM").as_deref() == Ok("1") {
            panic!("pywinrm is required (EXCH_REVOKE_REQUIRE_PYWINRM=1) but `python3 -c 'import winrm'` fails");
        }
        println!("SKIPPED: pywinrm not installed; run scripts/test.sh");
        return;
    }
    let service = WinRmService::new(
        Arc::new(FakeHost::exchange()),
        WinRmConfig::new("lab\\admin", "Py-pass'1".to_string().into()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = service.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pywinrm-check.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{addr}/wsman"))
        .arg("lab\\admin")
        .arg("Py-pass'1")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pywinrm failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["ps"]["status_code"], 0, "{json}");
    let pools: serde_json::Value =
        serde_json::from_str(json["ps"]["std_out"].as_str().unwrap().trim()).unwrap();
    assert_eq!(pools["pools"][1], "MSExchangeOWAAppPool");
    assert_eq!(json["cmd"]["status_code"], 0, "{json}");
    assert!(json["cmd"]["std_out"].as_str().unwrap().contains("W3SVC"));
    let stats = service.counters().snapshot();
    assert_eq!((stats.create, stats.delete, stats.open_shells), (2, 2, 0));
}
