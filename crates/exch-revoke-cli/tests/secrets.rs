//! No password used in a run of `exch-revoke` — AD bind, WinRM, the user's old one, the
//! generated new ones (to a file and to a `--password-command`), and a wrong WinRM password —
//! appears in its stdout, its stderr at `RUST_LOG=trace` (JSON progress included), its JSON
//! report or its journal, in any of the forms of `tests/leak/` of the root package (plain,
//! base64 at every alignment, UTF-16LE, percent-encoded, hex, XML- and JSON-escaped). Moved
//! here from the root package's `tests/secrets.rs` with the tool. Needs Samba
//! (`EXCH_REVOKE_AD_ENV`; skipped with a `SKIPPED:` line otherwise, failed when
//! `EXCH_REVOKE_REQUIRE_SAMBA=1`).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../../tests/leak/mod.rs"]
mod leak;

use common::{secret, Lab, WINRM_USER};
use exch_samba::SambaAd;
use leak::{assert_no_leak, FORMS};
use secrecy::ExposeSecret;
use std::process::Stdio;
use std::time::Duration;

const WINRM_PW: &str = "WinRM<Lab>S3cret&q7";
const OLD_PW: &str = "Old'Us3r&Pass<w8";
const WRONG_WINRM_PW: &str = "Wr0ng&WinRM<Pw!z5";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_cli_output() {
    let suite = "secrets of exch-revoke (Samba AD + lab fleet)";
    let Some(lab) = Lab::require(suite, "C", 2, Duration::from_millis(10), WINRM_PW).await else {
        return;
    };
    let ad = lab.ad;
    let user = ad
        .create_user(&SambaAd::unique_name("cl"), &secret(OLD_PW))
        .await
        .unwrap();
    let other = ad
        .create_user(&SambaAd::unique_name("cm"), &secret(OLD_PW))
        .await
        .unwrap();
    let dir = common::scratch("secrets-cli");
    let config = lab.write_profile(&dir);
    let pw_dir = dir.join("pw");
    let report_file = dir.join("report.json");
    let journal_file = dir.join("journal.json");
    let vault = dir.join("vault");

    let run = |args: &[&str], winrm_pw: &str| {
        let mut cmd = lab.command(&config);
        cmd.env("EXCH_REVOKE_WINRM_PASSWORD", winrm_pw)
            .env("EXCH_REVOKE_OLD_PASSWORD", OLD_PW)
            .env("RUST_LOG", "trace")
            .args(args)
            .stdin(Stdio::null());
        tokio::task::block_in_place(move || cmd.output().unwrap())
    };
    // Success: reset (generated, to a 0600 file) + probe with the old password.
    let ok = run(
        &[
            "revoke",
            "--user",
            &user.upn,
            "--reset-password",
            "--probe",
            "--passwords-dir",
            pw_dir.to_str().unwrap(),
            "--json",
            report_file.to_str().unwrap(),
            "--journal",
            journal_file.to_str().unwrap(),
            "--progress",
            "json",
        ],
        WINRM_PW,
    );
    let stdout = String::from_utf8_lossy(&ok.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&ok.stderr).into_owned();
    assert!(ok.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("TRACE"), "RUST_LOG=trace had no effect");
    // The probes go to the lab's http:// URLs: named before the run and in the result.
    assert!(
        stderr.contains("SECURITY: probe:") && stdout.contains("SECURITY: probe:"),
        "{stderr}\n{stdout}"
    );
    assert!(stdout.contains("refused"), "{stdout}");
    let generated = std::fs::read_to_string(pw_dir.join(format!("{}.password", user.upn))).unwrap();
    assert_eq!(
        ad.try_bind(&user.upn, &secret(&generated))
            .await
            .unwrap()
            .rc,
        0
    );
    let report = std::fs::read_to_string(&report_file).unwrap();
    assert!(
        !report.contains("allow_unencrypted_basic") && report.contains("probe:"),
        "{report}"
    );
    let journal = std::fs::read_to_string(&journal_file).unwrap();

    // A password command (a stand-in vault): the password on its stdin, the user in the env.
    let cmd = format!("cat > {}", vault.display());
    let handed = run(
        &[
            "revoke",
            "--user",
            &other.upn,
            "--reset-password",
            "--password-command",
            &cmd,
        ],
        WINRM_PW,
    );
    let handed_out = String::from_utf8_lossy(&handed.stdout).into_owned();
    let handed_err = String::from_utf8_lossy(&handed.stderr).into_owned();
    assert!(handed.status.success(), "{handed_out}\n{handed_err}");
    let vaulted = std::fs::read_to_string(&vault)
        .unwrap()
        .trim_end()
        .to_owned();
    assert_eq!(
        ad.try_bind(&other.upn, &secret(&vaulted)).await.unwrap().rc,
        0
    );

    // Failing: WinRM refuses the password (401 on every server): Partial (3).
    let bad = run(
        &["revoke", "--user", &user.upn, "--disable"],
        WRONG_WINRM_PW,
    );
    let bad_out = String::from_utf8_lossy(&bad.stdout).into_owned();
    let bad_err = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert_eq!(bad.status.code(), Some(3), "{bad_out}\n{bad_err}");
    assert!(bad_out.contains("Unauthenticated"), "{bad_out}");

    lab.cleanup().await;
    let _ = ad.delete(&user.dn).await;
    let _ = ad.delete(&other.dn).await;
    let bind = ad.env().admin_password.expose_secret().to_owned();
    let texts = [
        ("stdout", stdout.as_str()),
        ("stderr (TRACE logs, JSON progress)", stderr.as_str()),
        ("report JSON", report.as_str()),
        ("journal", journal.as_str()),
        ("password-command run stdout", handed_out.as_str()),
        ("password-command run stderr", handed_err.as_str()),
        ("failing run stdout", bad_out.as_str()),
        ("failing run stderr", bad_err.as_str()),
    ];
    let passwords = [
        ("AD bind password", bind.as_str()),
        ("WinRM password", WINRM_PW),
        ("old user password", OLD_PW),
        ("generated password (file)", generated.as_str()),
        ("generated password (command)", vaulted.as_str()),
        ("wrong WinRM password", WRONG_WINRM_PW),
    ];
    let users = [
        WINRM_USER,
        ad.env().admin_bind.as_str(),
        user.upn.as_str(),
        other.upn.as_str(),
    ];
    let searches = assert_no_leak(&texts, &passwords, &users);
    assert_eq!(
        searches,
        passwords.len() * (FORMS.len() + users.len()) * texts.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
