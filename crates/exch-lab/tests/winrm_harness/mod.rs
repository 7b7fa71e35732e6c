//! Set-up shared by the `winrm_*` tests: a WinRM endpoint on a loopback port, and the
//! Python client scripts under `scripts/` run against it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use exch_lab::host::IisHost;
use exch_lab::winrm::{WinRmConfig, WinRmConnection, WinRmService};

/// Serves a [`WinRmService`] over `host` on `127.0.0.1`, on a port of its own.
pub async fn serve_with(
    host: impl IisHost + 'static,
    config: WinRmConfig,
) -> (SocketAddr, WinRmService) {
    let service = WinRmService::new(Arc::new(host), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = service
        .router()
        .into_make_service_with_connect_info::<WinRmConnection>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, service)
}

/// Whether `python3 -c 'import <module>'` succeeds.
pub fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Where a Kerberos client finds its configuration and its ticket cache.
pub struct Krb5Env<'a> {
    /// `KRB5_CONFIG`.
    pub krb5_conf: &'a Path,
    /// The `FILE:` ticket cache (`KRB5CCNAME`).
    pub ccache: &'a Path,
}

/// Runs `script` (under scripts/) with `args`, in `krb5` if given: (exit code, the JSON it
/// printed).
pub async fn run_script(
    script: &str,
    args: &[&str],
    krb5: Option<Krb5Env<'_>>,
) -> (i32, serde_json::Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(script);
    let mut command = tokio::process::Command::new("python3");
    command.arg(path).args(args);
    if let Some(krb5) = krb5 {
        command
            .env("KRB5_CONFIG", krb5.krb5_conf)
            .env("KRB5CCNAME", format!("FILE:{}", krb5.ccache.display()));
    }
    let out = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}
