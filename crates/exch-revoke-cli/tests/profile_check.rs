//! `exch-revoke profile check`, the real binary against Samba AD and a lab fleet registered in
//! it, with the settings in a profile file: every endpoint answers → one `ok` line each and exit
//! 0; a server down → a `FAIL` line naming the server and its address, exit 3; a wrong bind
//! password → a `FAIL` line naming the LDAP URL. The lab's own counters prove that every
//! server was contacted, that nothing was changed (no recycle, no iisreset) and that no logon
//! reached IIS (the HTTPS check sends no credentials).
//!
//! Needs Samba (`EXCH_REVOKE_AD_ENV`; skipped with a `SKIPPED:` line otherwise, failed when
//! `EXCH_REVOKE_REQUIRE_SAMBA=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use exch_directory::Directory;
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_samba::SambaAd;
use secrecy::{ExposeSecret, SecretString};

const WINRM_USER: &str = "LAB\\svc-check";
const WINRM_PW: &str = "Check-WinRM-Pw!m7";
const BIND_VAR: &str = "PROFILE_CHECK_TEST_BIND_PW";
const WINRM_VAR: &str = "PROFILE_CHECK_TEST_WINRM_PW";

/// One test of this file at a time: a server made unreachable keeps its port number, and a
/// fleet started meanwhile by another test could be given that port.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Lab {
    ad: &'static SambaAd,
    fleet: Fleet,
    dir: PathBuf,
    config: PathBuf,
}

impl Lab {
    /// `n` servers registered in the DC, and a profile `lab` for them in `config.toml`.
    async fn start(ad: &'static SambaAd, n: usize) -> Lab {
        let env = ad.env();
        let directory: Arc<dyn Directory> = Arc::new(env.directory().build().await.unwrap());
        let fleet = Fleet::builder()
            .directory(directory)
            .dns_domain(env.dns_domain())
            .servers(n, ServerSpec::exchange_2019(SambaAd::unique_name("pc")))
            .winrm_credentials(WINRM_USER, SecretString::from(WINRM_PW.to_owned()))
            .registrar(ad.registrar())
            .build()
            .await
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("profile-check-{}", SambaAd::unique_name("t")));
        std::fs::create_dir_all(&dir).unwrap();
        let names: Vec<String> = fleet
            .servers()
            .iter()
            .map(|s| format!("{:?}", s.name()))
            .collect();
        let mut toml = format!(
            "default_profile = \"other\"\n\n[profile.lab]\nldap_url = {:?}\nca_file = {:?}\nbind_user = {:?}\nbind_password_env = \"{BIND_VAR}\"\nwinrm_user = '{WINRM_USER}'\nwinrm_password_env = \"{WINRM_VAR}\"\nwinrm_auth = \"ntlm\"\ninclude = [{}]\n",
            env.url_ldaps,
            env.ca_file.display().to_string(),
            env.admin_bind,
            names.join(", "),
        );
        toml.push_str("\n[profile.lab.winrm_endpoints]\n");
        for s in fleet.servers() {
            toml.push_str(&format!("{:?} = {:?}\n", s.name(), s.winrm_url()));
        }
        toml.push_str("\n[profile.lab.http_base]\n");
        for s in fleet.servers() {
            toml.push_str(&format!("{:?} = {:?}\n", s.name(), s.base_url()));
        }
        toml.push_str("\n[profile.other]\n");
        let config = dir.join("config.toml");
        std::fs::write(&config, toml).unwrap();
        Lab {
            ad,
            fleet,
            dir,
            config,
        }
    }

    /// `exch-revoke --config FILE --profile lab profile check`, passwords from the variables
    /// the profile names.
    async fn check(&self, bind_password: &str) -> (Option<i32>, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_exch-revoke"))
            .args(["--config"])
            .arg(&self.config)
            .args(["--profile", "lab", "profile", "check"])
            .env(BIND_VAR, bind_password)
            .env(WINRM_VAR, WINRM_PW)
            .env_remove("EXCH_REVOKE_PROFILE")
            .env_remove("EXCH_REVOKE_CONFIG")
            .env_remove("EXCH_REVOKE_BIND_PASSWORD")
            .env_remove("EXCH_REVOKE_WINRM_PASSWORD")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn bind_password(&self) -> String {
        self.ad.env().admin_password.expose_secret().to_owned()
    }

    async fn cleanup(self) {
        self.fleet.shutdown().await;
        let names = self.fleet.servers().iter().map(|s| s.name().to_owned());
        let _ = self.ad.remove_exchange_servers(names).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The lines of the table whose first two columns are `result` and `endpoint`.
fn rows<'a>(stdout: &'a str, result: &str, endpoint: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter(|l| {
            let mut cols = l.split_whitespace();
            cols.next() == Some(result) && cols.next() == Some(endpoint)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_check_passes_against_the_lab_and_changes_nothing() {
    let Some(ad) =
        SambaAd::require("exch-revoke profile check (Samba AD + lab fleet + the binary)")
    else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let lab = Lab::start(ad, 2).await;
    let (code, stdout, stderr) = lab.check(&lab.bind_password()).await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    eprintln!("{stdout}");
    assert!(stdout.starts_with("profile lab ("), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "{stdout}");
    assert_eq!(rows(&stdout, "ok", "LDAP").len(), 1, "{stdout}");
    assert!(rows(&stdout, "ok", "LDAP")[0].contains(&ad.env().url_ldaps));
    assert!(!rows(&stdout, "ok", "DC").is_empty(), "{stdout}");
    for s in lab.fleet.servers() {
        let winrm: Vec<&str> = rows(&stdout, "ok", "WinRM")
            .into_iter()
            .filter(|l| l.contains(s.name()))
            .collect();
        assert_eq!(winrm.len(), 1, "{stdout}");
        assert!(winrm[0].contains(&s.winrm_url()), "{stdout}");
        assert!(winrm[0].contains("NTLM over HTTP"), "{stdout}");
        let https: Vec<&str> = rows(&stdout, "ok", "HTTPS")
            .into_iter()
            .filter(|l| l.contains(s.name()))
            .collect();
        assert_eq!(https.len(), 1, "{stdout}");
        // What the lab saw: the server was asked over WinRM, and nothing changed or logged on.
        let c = s.counters();
        assert!(c.winrm_requests > 0, "{} was not contacted", s.name());
        assert_eq!(c.iis.recycles + c.iis.iisresets, 0, "{}: {c:?}", s.name());
        assert_eq!(
            c.iis.logons_from_cache + c.iis.logons_from_directory + c.iis.logons_refused,
            0,
            "{}: a logon reached IIS: {c:?}",
            s.name()
        );
    }
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    lab.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_check_fails_naming_the_endpoint_when_a_server_is_down() {
    let Some(ad) =
        SambaAd::require("exch-revoke profile check (Samba AD + lab fleet + the binary)")
    else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let lab = Lab::start(ad, 2).await;
    let down = &lab.fleet.servers()[1];
    let up = &lab.fleet.servers()[0];
    down.set_unreachable(true).await.unwrap();
    let (code, stdout, stderr) = lab.check(&lab.bind_password()).await;
    assert_eq!(code, Some(3), "stdout:\n{stdout}\nstderr:\n{stderr}");
    eprintln!("{stdout}");
    let failed = rows(&stdout, "FAIL", "WinRM");
    assert_eq!(failed.len(), 1, "{stdout}");
    assert!(failed[0].contains(down.name()), "{stdout}");
    assert!(failed[0].contains(&down.winrm_url()), "{stdout}");
    assert!(failed[0].contains("cannot reach"), "{stdout}");
    assert!(
        rows(&stdout, "ok", "WinRM")
            .iter()
            .any(|l| l.contains(up.name())),
        "{stdout}"
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains("failed") && summary.contains(&format!("WinRM {}", down.name())),
        "{summary}"
    );
    lab.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bind_is_a_failed_ldap_line_and_the_servers_are_still_tried() {
    let Some(ad) =
        SambaAd::require("exch-revoke profile check (Samba AD + lab fleet + the binary)")
    else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let lab = Lab::start(ad, 1).await;
    let wrong = "Not-The-Bind-Password!1";
    let (code, stdout, stderr) = lab.check(wrong).await;
    assert_eq!(code, Some(3), "stdout:\n{stdout}\nstderr:\n{stderr}");
    eprintln!("{stdout}{stderr}");
    let ldap = rows(&stdout, "FAIL", "LDAP");
    assert_eq!(ldap.len(), 1, "{stdout}");
    assert!(ldap[0].contains(&ad.env().url_ldaps), "{stdout}");
    // The WinRM endpoint named in the profile is tried all the same.
    assert_eq!(rows(&stdout, "ok", "WinRM").len(), 1, "{stdout}");
    // No password is ever printed.
    for text in [&stdout, &stderr] {
        assert!(!text.contains(wrong), "{text}");
        assert!(!text.contains(WINRM_PW), "{text}");
    }
    lab.cleanup().await;
}
