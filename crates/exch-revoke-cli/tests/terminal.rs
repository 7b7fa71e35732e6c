//! Output on a terminal and piped, against Samba AD + the lab: on a pseudo-terminal (util-linux
//! `script`) the progress bars are drawn and the result table is coloured; with `NO_COLOR` the
//! table has no colour; piped, the output has no escape code at all. Needs Samba
//! (`EXCH_REVOKE_AD_ENV`; skipped with a `SKIPPED:` line otherwise, failed when
//! `EXCH_REVOKE_REQUIRE_SAMBA=1`).
#![allow(clippy::unwrap_used)]

mod common;

use common::Lab;
use std::process::{Command, Stdio};
use std::time::Duration;

const WINRM_PW: &str = "Tty-WinRM-Pw!r3";

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `args` on a pseudo-terminal and asserts it succeeded; returns everything written to it.
fn on_pty(lab: &Lab, config: &std::path::Path, args: &[&str], no_color: bool) -> String {
    let mut line = vec![
        quote(common::bin().to_str().unwrap()),
        "--config".into(),
        quote(config.to_str().unwrap()),
    ];
    line.extend(args.iter().map(|a| quote(a)));
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line.join(" "), "/dev/null"]);
    let template = lab.command(config);
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env("TERM", "xterm-256color").env("COLUMNS", "120");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = tokio::task::block_in_place(|| cmd.stdin(Stdio::null()).output()).expect(
        "util-linux `script` runs the tool on a pseudo-terminal: install bsdutils / util-linux",
    );
    let tty = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{tty}");
    tty
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_and_colour_on_a_terminal_nothing_of_it_when_piped() {
    // Slow recycles: the bars are on screen for more than a second.
    let suite = "exch-revoke terminal output (Samba AD + lab fleet)";
    let Some(lab) = Lab::require(suite, "T", 2, Duration::from_millis(300), WINRM_PW).await else {
        return;
    };
    let ad = lab.ad;
    let dir = common::scratch("terminal");
    let config = lab.write_profile(&dir);
    let users = common::create_users(ad, "tt", 3, "Tty-Old-Pass!t9").await;

    let tty = on_pty(
        &lab,
        &config,
        &["revoke", "--user", &users[0].upn, "--disable"],
        false,
    );
    assert!(
        tty.contains("flushing…") && tty.contains("servers"),
        "no progress bar drawn:\n{tty:?}"
    );
    assert!(
        tty.contains("\x1b[2K") || tty.contains("\x1b[1A"),
        "the bars were not redrawn in place:\n{tty:?}"
    );
    assert!(
        tty.contains("\x1b[32mRevoked\x1b[0m"),
        "no colour on a terminal:\n{tty:?}"
    );

    let tty = on_pty(
        &lab,
        &config,
        &["revoke", "--user", &users[1].upn, "--disable"],
        true,
    );
    assert!(
        tty.contains("flushing…"),
        "NO_COLOR must not hide the bars:\n{tty:?}"
    );
    for colour in ["\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[1m"] {
        assert!(!tty.contains(colour), "colour with NO_COLOR:\n{tty:?}");
    }

    let out = tokio::task::block_in_place(|| {
        lab.command(&config)
            .args(["revoke", "--user", &users[2].upn, "--disable"])
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Revoked: 1/1 users revoked"), "{stdout}");
    assert!(
        stderr.contains("flush servers: done"),
        "no plain progress lines when piped:\n{stderr}"
    );
    assert!(
        !stdout.contains('\x1b') && !stderr.contains('\x1b'),
        "escape codes in piped output:\n{stdout:?}\n{stderr:?}"
    );

    lab.cleanup().await;
    for u in &users {
        let _ = ad.delete(&u.dn).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
