//! `exch-revoke` on a list: a users file of 20 — 18 real users, one unknown, one ambiguous (two
//! accounts share its address) — against Samba AD + a lab fleet. `plan` lists both bad users
//! (with their file and line) and changes nothing; `revoke` refuses the batch without
//! `--skip-unresolved` and changes nothing; with it, the other 18 are revoked with ONE flush
//! per server (the lab's own recycle counters), each new password stored in its own 0600 file
//! and set on the account (checked with an LDAP bind). Needs Samba (`EXCH_REVOKE_AD_ENV`;
//! skipped with a `SKIPPED:` line otherwise, failed when `EXCH_REVOKE_REQUIRE_SAMBA=1`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{account_state, recycles, secret, Lab};
use exch_samba::SambaAd;
use std::process::Stdio;
use std::time::Duration;

const OLD_PW: &str = "Batch-Old-Pass!t9";
const WINRM_PW: &str = "Batch-WinRM-Pw!r3";
/// Pools the catalog recycles on an Exchange 2019 Mailbox server.
const POOLS: u64 = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_20_with_an_unknown_and_an_ambiguous_user() {
    let suite = "exch-revoke batch (Samba AD + lab fleet)";
    let Some(lab) = Lab::require(suite, "B", 3, Duration::from_millis(10), WINRM_PW).await else {
        return;
    };
    let ad = lab.ad;
    let users = common::create_users(ad, "bu", 18, OLD_PW).await;
    // Two accounts with the same mail address: that address is ambiguous.
    let shared = format!(
        "{}@{}",
        SambaAd::unique_name("shared"),
        ad.env().dns_domain()
    );
    let mut twins = Vec::new();
    for _ in 0..2 {
        twins.push(
            ad.create_user_with(
                &SambaAd::unique_name("tw"),
                &secret(OLD_PW),
                Some(&shared),
                None,
            )
            .await
            .unwrap(),
        );
    }
    let unknown = format!(
        "{}@{}",
        SambaAd::unique_name("nobody"),
        ad.env().dns_domain()
    );
    let dir = common::scratch("batch");
    let config = lab.write_profile(&dir);
    let mut text = String::from("# incident 2026-042: accounts from the phishing campaign\n\n");
    for (i, u) in users.iter().enumerate() {
        text.push_str(&u.upn);
        text.push('\n');
        if i == 4 {
            text.push_str(&format!("{unknown}\n"));
        }
        if i == 11 {
            text.push_str("\n# the shared mailbox address\n");
            text.push_str(&format!("{shared}\n"));
        }
    }
    let users_file = dir.join("users.txt");
    std::fs::write(&users_file, &text).unwrap();
    let line_of = |needle: &str| text.lines().position(|l| l == needle).unwrap() + 1;
    let (unknown_at, shared_at) = (
        format!("users.txt:{}", line_of(&unknown)),
        format!("users.txt:{}", line_of(&shared)),
    );
    let mut before = Vec::new();
    for u in users.iter().chain(&twins) {
        before.push(account_state(ad, &u.dn).await);
    }
    let unchanged = || async {
        let mut now = Vec::new();
        for u in users.iter().chain(&twins) {
            now.push(account_state(ad, &u.dn).await);
        }
        now
    };
    let run = |args: &[&str]| {
        let mut cmd = lab.command(&config);
        cmd.args(args)
            .arg("--users-file")
            .arg(&users_file)
            .stdin(Stdio::null());
        tokio::task::block_in_place(move || cmd.output().unwrap())
    };

    // plan: both bad users listed (table, with file:line in the error), exit 2, nothing changed.
    let out = run(&["plan", "--disable", "--reset-password"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("NOT RESOLVED").count(), 2, "{stdout}");
    assert!(
        stdout.contains(&unknown) && stdout.contains(&shared),
        "{stdout}"
    );
    assert!(
        stdout.contains("NOT RESOLVED: not found") && stdout.contains("NOT RESOLVED: ambiguous"),
        "{stdout}"
    );
    assert!(
        stdout.contains("18 of 20 users (2 NOT resolved)"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&unknown_at) && stderr.contains(&shared_at),
        "{stderr}"
    );
    assert!(stderr.contains("--skip-unresolved"), "{stderr}");
    // The JSON plan, for scripts: every user, the two with their problem.
    let out = run(&[
        "plan",
        "--disable",
        "--reset-password",
        "--skip-unresolved",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems: Vec<&str> = plan["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["problem"]["kind"].as_str())
        .collect();
    assert_eq!(problems, ["not_found", "ambiguous"], "{plan}");
    assert_eq!(plan["users"].as_array().unwrap().len(), 20);

    // revoke without --skip-unresolved: refused after the plan, nothing changed.
    let pw_dir = dir.join("passwords");
    let revoke = |extra: &[&str]| {
        let mut args = vec![
            "revoke",
            "--disable",
            "--reset-password",
            "--contain-first",
            "--passwords-dir",
            pw_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let out = revoke(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("2 of 20 users cannot be resolved") && stderr.contains(&shared_at),
        "{stderr}"
    );
    assert_eq!(
        unchanged().await,
        before,
        "plan or a refused revoke changed an account"
    );
    assert_eq!(
        recycles(&lab),
        [0, 0, 0],
        "plan or a refused revoke flushed a server"
    );
    assert!(
        std::fs::read_dir(&pw_dir).map(|d| d.count()).unwrap_or(0) == 0,
        "a password was written"
    );

    // --skip-unresolved: the 18 are revoked with one flush per server; Partial (exit 3)
    // because two users are not.
    let report_file = dir.join("report.json");
    let out = revoke(&["--skip-unresolved", "--json", report_file.to_str().unwrap()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&unknown_at) && stderr.contains("NOT revoked"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(report["outcome"], "Partial");
    let revoked = report["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["outcome"] == "Revoked")
        .count();
    assert_eq!(revoked, 18, "{report}");
    assert_eq!(
        report["users_failed"].as_array().unwrap().len(),
        2,
        "{report}"
    );
    assert_eq!(
        recycles(&lab),
        [POOLS, POOLS, POOLS],
        "not one flush per server for the batch (the lab's recycle counters)"
    );
    assert!(
        stdout.contains("18/20 users revoked, 3/3 servers proven flushed"),
        "{stdout}"
    );
    for u in &users {
        let file = pw_dir.join(format!("{}.password", u.upn));
        let pw = std::fs::read_to_string(&file).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let bind = ad.try_bind(&u.upn, &secret(&pw)).await.unwrap();
        assert!(
            bind.rc == 49 && bind.text.contains("data 533"),
            "{}: not disabled with the stored password: {bind:?}",
            u.upn
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&pw_dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    assert_eq!(
        std::fs::read_dir(&pw_dir).unwrap().count(),
        18,
        "a password file for a user not revoked"
    );
    for (t, b) in twins.iter().zip(&before[18..]) {
        assert_eq!(
            &account_state(ad, &t.dn).await,
            b,
            "an account behind the ambiguous address changed"
        );
    }

    lab.cleanup().await;
    for u in users.iter().chain(&twins) {
        let _ = ad.delete(&u.dn).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
