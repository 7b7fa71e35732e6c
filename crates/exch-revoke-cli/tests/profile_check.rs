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

mod common;

use common::SerialLab as Lab;
use exch_samba::SambaAd;
use secrecy::ExposeSecret;

const WINRM_USER: &str = "LAB\\svc-check";
const WINRM_PW: &str = "Check-WinRM-Pw!m7";
const BIND_VAR: &str = "PROFILE_CHECK_TEST_BIND_PW";
const WINRM_VAR: &str = "PROFILE_CHECK_TEST_WINRM_PW";

impl Lab {
    /// `n` servers registered in the DC, and a profile `lab` for them in `config.toml`;
    /// `None` when the suite is skipped.
    async fn start_with_profile(n: usize) -> Option<Lab> {
        let lab = Lab::start(
            "exch-revoke profile check (Samba AD + lab fleet + the binary)",
            "profile-check",
            common::exchange_2019s(&SambaAd::unique_name("pc"), n),
            WINRM_USER,
            WINRM_PW,
        )
        .await?;
        let mut toml = lab.profile_text_with(
            "other",
            &format!("bind_password_env = \"{BIND_VAR}\"\nwinrm_password_env = \"{WINRM_VAR}\"\nwinrm_auth = \"ntlm\"\n"),
        );
        toml.push_str("\n[profile.other]\n");
        std::fs::write(lab.dir.join("config.toml"), toml).unwrap();
        Some(lab)
    }

    /// `exch-revoke --config FILE --profile lab profile check`, passwords from the variables
    /// the profile names; asserts the exit code `code` and returns (stdout, stderr).
    async fn check(&self, bind_password: &str, code: i32) -> (String, String) {
        let out = tokio::process::Command::from(common::command())
            .args(["--config"])
            .arg(self.dir.join("config.toml"))
            .args(["--profile", "lab", "profile", "check"])
            .env(BIND_VAR, bind_password)
            .env(WINRM_VAR, WINRM_PW)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        (stdout, stderr)
    }

    fn bind_password(&self) -> String {
        self.ad.env().admin_password.expose_secret().to_owned()
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
    let Some(lab) = Lab::start_with_profile(2).await else {
        return;
    };
    let (stdout, _) = lab.check(&lab.bind_password(), 0).await;
    eprintln!("{stdout}");
    assert!(stdout.starts_with("profile lab ("), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "{stdout}");
    assert_eq!(rows(&stdout, "ok", "LDAP").len(), 1, "{stdout}");
    assert!(rows(&stdout, "ok", "LDAP")[0].contains(&lab.ad.env().url_ldaps));
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
    let Some(lab) = Lab::start_with_profile(2).await else {
        return;
    };
    let down = &lab.fleet.servers()[1];
    let up = &lab.fleet.servers()[0];
    down.set_unreachable(true).await.unwrap();
    let (stdout, _) = lab.check(&lab.bind_password(), 3).await;
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
    let Some(lab) = Lab::start_with_profile(1).await else {
        return;
    };
    let wrong = "Not-The-Bind-Password!1";
    let (stdout, stderr) = lab.check(wrong, 3).await;
    eprintln!("{stdout}{stderr}");
    let ldap = rows(&stdout, "FAIL", "LDAP");
    assert_eq!(ldap.len(), 1, "{stdout}");
    assert!(ldap[0].contains(&lab.ad.env().url_ldaps), "{stdout}");
    // The WinRM endpoint named in the profile is tried all the same.
    assert_eq!(rows(&stdout, "ok", "WinRM").len(), 1, "{stdout}");
    // No password is ever printed.
    for text in [&stdout, &stderr] {
        assert!(!text.contains(wrong), "{text}");
        assert!(!text.contains(WINRM_PW), "{text}");
    }
    lab.cleanup().await;
}
