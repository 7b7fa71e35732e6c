//! Shared by `tests/secrets.rs`, `tests/crash_safety.rs` and `tests/hostile_remediation.rs`:
//! an LDAPS directory and a lab fleet whose servers authenticate against the Samba AD DC, and
//! the `revoke` example as a child process.
#![allow(dead_code, unreachable_pub)]

use exch_directory::Directory;
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_samba::SambaAd;
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const WINRM_USER: &str = "LAB\\svc-revoke";

pub fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// The `revoke` example binary, built by cargo once per test process before first use: cargo
/// decides what is stale (the example's own files, every library crate it links, features),
/// so a binary older than any of its sources is never tested.
pub fn revoke_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            // target/debug/deps/<test>-<hash> → target/debug/examples/revoke
            let dir = exe.parent().unwrap().parent().unwrap();
            let bin = dir.join("examples").join("revoke");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--example", "revoke"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap();
            assert!(status.success(), "cargo build --example revoke failed");
            assert!(bin.exists(), "{} missing after the build", bin.display());
            bin
        })
        .clone()
}

/// A fleet of `n` Exchange 2019 servers registered in the Samba DC, plus an LDAPS directory.
pub struct SambaFleet {
    pub ad: &'static SambaAd,
    pub dir: Arc<dyn Directory>,
    pub fleet: Fleet,
    pub winrm_password: SecretString,
}

impl SambaFleet {
    pub async fn start(
        ad: &'static SambaAd,
        prefix: &str,
        n: usize,
        recycle: Duration,
        winrm_password: &str,
    ) -> SambaFleet {
        let env = ad.env();
        let dir: Arc<dyn Directory> = Arc::new(env.directory().build().await.unwrap());
        let fleet = Fleet::builder()
            .directory(dir.clone())
            .dns_domain(env.dns_domain())
            .servers(
                n,
                ServerSpec::exchange_2019(format!("{prefix}-")).recycle_latency(recycle),
            )
            .winrm_credentials(WINRM_USER, secret(winrm_password))
            .registrar(ad.registrar())
            .build()
            .await
            .unwrap();
        SambaFleet {
            ad,
            dir,
            fleet,
            winrm_password: secret(winrm_password),
        }
    }

    /// The CLI arguments that reach this fleet and DC (no action, no user).
    pub fn cli_args(&self) -> Vec<String> {
        let env = self.ad.env();
        let mut a: Vec<String> = [
            "--ldap-url",
            &env.url_ldaps,
            "--ca-file",
            &env.ca_file.display().to_string(),
            "--bind-user",
            &env.admin_bind,
            "--winrm-user",
            WINRM_USER,
            "--winrm-auth",
            "ntlm",
            "--converge-timeout",
            "20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for s in self.fleet.servers() {
            a.push("--winrm-endpoint".into());
            a.push(format!("{}={}", s.name(), s.winrm_url()));
            a.push("--http-base".into());
            a.push(format!("{}={}", s.name(), s.base_url()));
            a.push("--include".into());
            a.push(s.name().to_owned());
        }
        a
    }

    /// The environment the CLI reads its passwords from.
    pub fn cli_env(&self, cmd: &mut Command) {
        cmd.env(
            "EXCH_REVOKE_BIND_PASSWORD",
            self.ad.env().admin_password.expose_secret(),
        )
        .env(
            "EXCH_REVOKE_WINRM_PASSWORD",
            self.winrm_password.expose_secret(),
        )
        .env_remove("RUST_LOG")
        .env_remove("EXCH_REVOKE_TEST_PAUSE_AT");
    }

    /// Stops the fleet and removes its server objects from the shared DC.
    pub async fn cleanup(&self) {
        self.fleet.shutdown().await;
        let names = self.fleet.servers().iter().map(|s| s.name());
        let _ = self.ad.remove_exchange_servers(names).await;
    }
}

/// A fresh directory under the target dir for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        SambaAd::unique_name("t")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
