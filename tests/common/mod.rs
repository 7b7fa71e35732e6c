//! Shared by `tests/secrets.rs` and `tests/hostile_remediation.rs`: an LDAPS directory and a
//! lab fleet whose servers authenticate against the Samba AD DC. (The command-line tool's tests
//! are in `crates/exch-revoke-cli/tests/`, on its own binary.)
#![allow(dead_code, unreachable_pub)]

use exch_directory::Directory;
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_samba::SambaAd;
use secrecy::SecretString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const WINRM_USER: &str = "LAB\\svc-revoke";

pub fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
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
