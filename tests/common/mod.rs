//! Shared by `tests/secrets.rs`, `tests/hostile_remediation.rs` and `tests/containment.rs`: an
//! LDAPS directory and a lab fleet whose servers authenticate against the Samba AD DC. The command-line tool's tests
//! (`crates/exch-revoke-cli/tests/`, on its own binary) reach this module through `#[path]` and
//! add what they need to run the binary against the fleet.
#![allow(dead_code, unreachable_pub)]

use exch_directory::Directory;
use exch_lab::fleet::{Fleet, FleetBuilder, ServerSpec};
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
    pub winrm_user: String,
    pub winrm_password: SecretString,
}

impl SambaFleet {
    /// `n` servers named `<prefix>-01`, `<prefix>-02`, … with recycle latency `recycle`; the
    /// WinRM endpoints accept [`WINRM_USER`] with `winrm_password`.
    pub async fn start(
        ad: &'static SambaAd,
        prefix: &str,
        n: usize,
        recycle: Duration,
        winrm_password: &str,
    ) -> SambaFleet {
        let specs = exchange_2019s(&format!("{prefix}-"), n)
            .into_iter()
            .map(|spec| spec.recycle_latency(recycle))
            .collect();
        SambaFleet::start_servers(ad, specs, WINRM_USER, winrm_password).await
    }

    /// The servers `specs`; the WinRM endpoints accept `winrm_user` with `winrm_password`.
    pub async fn start_servers(
        ad: &'static SambaAd,
        specs: Vec<ServerSpec>,
        winrm_user: &str,
        winrm_password: &str,
    ) -> SambaFleet {
        SambaFleet::start_configured(ad, specs, winrm_user, winrm_password, |b| b).await
    }

    /// As [`SambaFleet::start_servers`], with `configure` adding to the fleet's builder
    /// (mailboxes, a Kerberos keytab, …) before it is built.
    pub async fn start_configured(
        ad: &'static SambaAd,
        specs: Vec<ServerSpec>,
        winrm_user: &str,
        winrm_password: &str,
        configure: impl FnOnce(FleetBuilder) -> FleetBuilder,
    ) -> SambaFleet {
        let env = ad.env();
        let dir: Arc<dyn Directory> = Arc::new(env.directory().build().await.unwrap());
        let mut builder = Fleet::builder()
            .directory(dir.clone())
            .dns_domain(env.dns_domain())
            .winrm_credentials(winrm_user, secret(winrm_password))
            .registrar(ad.registrar());
        for spec in specs {
            builder = builder.server(spec);
        }
        SambaFleet {
            ad,
            dir,
            fleet: configure(builder).build().await.unwrap(),
            winrm_user: winrm_user.to_owned(),
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

/// `n` Exchange 2019 servers named `<prefix>01`, `<prefix>02`, … (as
/// `FleetBuilder::servers` names them).
pub fn exchange_2019s(prefix: &str, n: usize) -> Vec<ServerSpec> {
    (1..=n)
        .map(|i| ServerSpec::exchange_2019(format!("{prefix}{i:02}")))
        .collect()
}

/// A fresh directory under the target dir for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    scratch_in(Path::new(env!("CARGO_TARGET_TMPDIR")), name)
}

/// A fresh directory under `parent` for one test's files.
pub fn scratch_in(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(format!(
        "{name}-{}-{}",
        std::process::id(),
        SambaAd::unique_name("t")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
