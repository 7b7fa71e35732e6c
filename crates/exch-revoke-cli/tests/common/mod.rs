//! Shared by the command-line tool's tests: the binary, a lab fleet on the Samba AD DC and a
//! profile that reaches both.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use exch_directory::Directory;
use exch_lab::fleet::{Fleet, LabServer, ServerSpec};
use exch_samba::SambaAd;
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

pub const WINRM_USER: &str = "LAB\\svc-revoke";

pub fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// The binary under test (built by cargo for this package's tests).
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_exch-revoke"))
}

/// The binary with a clean environment: no profile, no logs, no test hook, no colour
/// preference, no passwords.
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    for var in [
        "RUST_LOG",
        "EXCH_REVOKE_TEST_PAUSE_AT",
        "EXCH_REVOKE_CONFIG",
        "EXCH_REVOKE_PROFILE",
        "EXCH_REVOKE_BIND_PASSWORD",
        "EXCH_REVOKE_WINRM_PASSWORD",
        "EXCH_REVOKE_OLD_PASSWORD",
        "NO_COLOR",
    ] {
        cmd.env_remove(var);
    }
    // No platform config directory of the machine's user: an empty home.
    cmd.env("HOME", scratch_root().join("home"))
        .env("XDG_CONFIG_HOME", scratch_root().join("home/.config"));
    cmd
}

fn scratch_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("exch-revoke-cli")
}

/// A fresh directory under the target dir for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    let dir = scratch_root().join(format!(
        "{name}-{}-{}",
        std::process::id(),
        SambaAd::unique_name("t")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fleet of `n` Exchange 2019 servers registered in the Samba DC.
pub struct Lab {
    pub ad: &'static SambaAd,
    pub dir: Arc<dyn Directory>,
    pub fleet: Fleet,
    pub winrm_password: SecretString,
}

impl Lab {
    pub async fn start(
        ad: &'static SambaAd,
        prefix: &str,
        n: usize,
        recycle: Duration,
        winrm_password: &str,
    ) -> Lab {
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
        Lab {
            ad,
            dir,
            fleet,
            winrm_password: secret(winrm_password),
        }
    }

    /// The servers.
    pub fn servers(&self) -> &[LabServer] {
        self.fleet.servers()
    }

    /// A configuration file with one profile, `lab`, that reaches this fleet and the DC
    /// (the default profile of the file).
    pub fn profile_text(&self) -> String {
        let env = self.ad.env();
        let names: Vec<String> = self
            .servers()
            .iter()
            .map(|s| format!("{:?}", s.name()))
            .collect();
        let mut t = format!(
            "default_profile = \"lab\"\n\n[profile.lab]\nldap_url = {:?}\nca_file = {:?}\nbind_user = {:?}\nwinrm_user = '{WINRM_USER}'\nconverge_timeout_secs = 20\ninclude = [{}]\n",
            env.url_ldaps,
            env.ca_file.display().to_string(),
            env.admin_bind,
            names.join(", ")
        );
        t.push_str("\n[profile.lab.winrm_endpoints]\n");
        for s in self.servers() {
            t.push_str(&format!("{:?} = {:?}\n", s.name(), s.winrm_url()));
        }
        t.push_str("\n[profile.lab.http_base]\n");
        for s in self.servers() {
            t.push_str(&format!("{:?} = {:?}\n", s.name(), s.base_url()));
        }
        t
    }

    /// Writes [`Lab::profile_text`] to `dir/config.toml`.
    pub fn write_profile(&self, dir: &Path) -> PathBuf {
        let file = dir.join("config.toml");
        std::fs::write(&file, self.profile_text()).unwrap();
        file
    }

    /// The binary, with this lab's profile file and the service passwords in the environment.
    pub fn command(&self, config: &Path) -> Command {
        let mut cmd = command();
        cmd.arg("--config")
            .arg(config)
            .env(
                "EXCH_REVOKE_BIND_PASSWORD",
                self.ad.env().admin_password.expose_secret(),
            )
            .env(
                "EXCH_REVOKE_WINRM_PASSWORD",
                self.winrm_password.expose_secret(),
            );
        cmd
    }

    /// Stops the fleet and removes its server objects from the shared DC.
    pub async fn cleanup(&self) {
        self.fleet.shutdown().await;
        let names = self.fleet.servers().iter().map(|s| s.name());
        let _ = self.ad.remove_exchange_servers(names).await;
    }
}

/// Sets a server's recycle latency.
pub fn set_recycle(s: &LabServer, latency: Duration) {
    let mut t = s.iis().timing();
    t.recycle_latency = latency;
    s.iis().set_timing(t);
}

/// Whether a `--progress json` line is the event `event`.
pub fn is_event(line: &str, event: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["event"] == event)
}

/// `(pwdLastSet, uSNChanged, userAccountControl)` of `dn`, read from Samba with the harness's
/// own LDAP connection (not through the code under test).
pub async fn account_state(ad: &SambaAd, dn: &str) -> (String, String, String) {
    let read = |attr: &'static str| async move {
        ad.read_attribute(dn, attr)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{dn} has no {attr}"))
    };
    (
        read("pwdLastSet").await,
        read("uSNChanged").await,
        read("userAccountControl").await,
    )
}

/// The LDAP bind result code of `upn` with `pw` (0 ok, 49 refused).
pub async fn bind_rc(ad: &SambaAd, upn: &str, pw: &str) -> u32 {
    ad.try_bind(upn, &secret(pw)).await.unwrap().rc
}

/// Flushes (recycles) each server saw, from the lab's own counters.
pub fn recycles(lab: &Lab) -> Vec<u64> {
    lab.servers()
        .iter()
        .map(|s| s.counters().iis.recycles)
        .collect()
}
