//! Shared by the command-line tool's tests: the binary, a lab fleet on the Samba AD DC and a
//! profile that reaches both.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use exch_lab::fleet::{LabServer, ServerSpec};
use exch_samba::{AdUser, SambaAd};
use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "../../../../tests/common/mod.rs"]
mod samba_fleet;

/// The root package's fleet on the Samba DC; below, what the tool's tests add to it.
pub use samba_fleet::SambaFleet as Lab;
#[allow(unused_imports)] // each test file uses some of them
pub use samba_fleet::{exchange_2019s, secret, WINRM_USER};

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
    samba_fleet::scratch_in(&scratch_root(), name)
}

impl Lab {
    /// [`Lab::start`] with `servers` servers named `<tag>…-01`, … on the shared DC; `None`
    /// when `suite` is skipped (see `SambaAd::require`).
    pub async fn require(
        suite: &str,
        tag: &str,
        servers: usize,
        recycle: Duration,
        winrm_password: &str,
    ) -> Option<Lab> {
        let ad = SambaAd::require(suite)?;
        let prefix = SambaAd::unique_name(tag);
        Some(Lab::start(ad, &prefix, servers, recycle, winrm_password).await)
    }

    /// The servers.
    pub fn servers(&self) -> &[LabServer] {
        self.fleet.servers()
    }

    /// A configuration file with one profile, `lab`, that reaches this fleet and the DC
    /// (the default profile of the file).
    pub fn profile_text(&self) -> String {
        self.profile_text_with("lab", "converge_timeout_secs = 20\n")
    }

    /// A configuration file whose profile `lab` reaches this fleet and the DC, with the TOML
    /// lines `settings` added to it; `default_profile` names the file's default profile.
    pub fn profile_text_with(&self, default_profile: &str, settings: &str) -> String {
        let env = self.ad.env();
        let names: Vec<String> = self
            .servers()
            .iter()
            .map(|s| format!("{:?}", s.name()))
            .collect();
        let mut t = format!(
            "default_profile = {default_profile:?}\n\n[profile.lab]\nldap_url = {:?}\nca_file = {:?}\nbind_user = {:?}\nwinrm_user = '{}'\n{settings}include = [{}]\n",
            env.url_ldaps,
            env.ca_file.display().to_string(),
            env.admin_bind,
            self.winrm_user,
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
}

/// One [`SerialLab`] of a test file at a time: a server made unreachable keeps its port
/// number, and a fleet started meanwhile by another test could be given that port.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A [`Lab`] with a scratch directory, for tests that make servers unreachable: it holds
/// [`SERIAL`] until it is dropped.
pub struct SerialLab {
    pub samba: Lab,
    pub dir: PathBuf,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for SerialLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.samba
    }
}

impl SerialLab {
    /// The servers `specs` registered in the DC, their WinRM accepting `winrm_user` with
    /// `winrm_password`, and a scratch directory `name-…`; `None` when `suite` is skipped
    /// (see `SambaAd::require`).
    pub async fn start(
        suite: &str,
        name: &str,
        specs: Vec<ServerSpec>,
        winrm_user: &str,
        winrm_password: &str,
    ) -> Option<SerialLab> {
        let ad = SambaAd::require(suite)?;
        let serial = SERIAL.lock().await;
        Some(SerialLab {
            samba: Lab::start_servers(ad, specs, winrm_user, winrm_password).await,
            dir: scratch(name),
            _serial: serial,
        })
    }

    /// Stops the fleet, removes its server objects from the DC and the scratch directory.
    pub async fn cleanup(self) {
        self.samba.cleanup().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` fresh users `<tag>…` in the DC with the password `password`.
pub async fn create_users(ad: &SambaAd, tag: &str, n: usize, password: &str) -> Vec<AdUser> {
    let mut users = Vec::new();
    for _ in 0..n {
        users.push(
            ad.create_user(&SambaAd::unique_name(tag), &secret(password))
                .await
                .unwrap(),
        );
    }
    users
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
