//! Issue 8, crash safety: the `revoke` CLI killed (SIGKILL) at each step boundary — after the
//! new password is stored but before the reset is sent, right after the directory change, and
//! mid-flush — and run again with the same command line: the job completes (`Revoked`), the
//! password in `--password-out` is the account's real password (checked with an LDAP bind),
//! it is never replaced, and what was done is not done again.
//!
//! Also `--resume REPORT` of a `Partial` run that applied the reset: the password file is
//! kept byte for byte, the reset is not sent again, only the failed server is flushed.
//!
//! Boundaries are found from the CLI's `--progress json` lines (written after the journal),
//! flushes are kept in flight by a long lab recycle latency, and the three stops around the
//! reset use the CLI's `EXCH_REVOKE_TEST_PAUSE_AT` hook: `journal-written` (journal written,
//! password file not yet), `password-written` (before the reset is sent) and `reset-sent` (the
//! reset answered, the journal not yet updated) — every state is a real SIGKILL. What the DC holds
//! (`pwdLastSet`, `uSNChanged`, `userAccountControl`, binds) is read with the harness's own
//! LDAP connection, never through the library under test. Needs Samba
//! (`EXCH_REVOKE_AD_ENV`; skipped with a `SKIPPED:` line otherwise, failed when
//! `EXCH_REVOKE_REQUIRE_SAMBA=1`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{secret, SambaFleet};
use exch_lab::fleet::LabServer;
use exch_samba::{AdUser, SambaAd};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WINRM_PW: &str = "Crash-WinRM-Pw!r3";
const OLD_PW: &str = "Crash-Old-Pass!t9";
const SLOW: Duration = Duration::from_secs(60);
const FAST: Duration = Duration::from_millis(10);

/// The shared DC, a lab fleet of `servers` servers on it (recycle latency `recycle`) and a
/// fresh user `<tag>…` with [`OLD_PW`]; `None` when the suite is skipped.
async fn lab_and_user(
    servers: usize,
    recycle: Duration,
    tag: &str,
) -> Option<(&'static SambaAd, SambaFleet, AdUser)> {
    let ad = SambaAd::require("crash safety (Samba AD + lab fleet + revoke CLI)")?;
    let lab = SambaFleet::start(ad, &SambaAd::unique_name("K"), servers, recycle, WINRM_PW).await;
    let user = ad
        .create_user(&SambaAd::unique_name(tag), &secret(OLD_PW))
        .await
        .unwrap();
    Some((ad, lab, user))
}

/// Removes what a test left: the lab's servers, the user and the job's files.
async fn clean_up(lab: SambaFleet, user: &AdUser, files: &Path) {
    lab.cleanup().await;
    let _ = lab.ad.delete(&user.dn).await;
    let _ = std::fs::remove_dir_all(files);
}

fn set_recycle(s: &LabServer, latency: Duration) {
    let mut t = s.iis().timing();
    t.recycle_latency = latency;
    s.iis().set_timing(t);
}

/// One job's files and command line.
struct Job {
    dir: PathBuf,
    args: Vec<String>,
}

impl Job {
    /// With `--password-out new.pw --journal journal.json --json report.json`.
    fn new(lab: &SambaFleet, name: &str, user: &str, actions: &[&str]) -> Job {
        Job::with_files(lab, name, user, actions, true)
    }

    /// `--password-out new.pw --json report.json`, and `--journal journal.json` if `journal`.
    fn with_files(
        lab: &SambaFleet,
        name: &str,
        user: &str,
        actions: &[&str],
        journal: bool,
    ) -> Job {
        let dir = common::scratch(name);
        let mut args = lab.cli_args();
        args.extend(["--user".to_owned(), user.to_owned()]);
        args.extend(actions.iter().map(|s| s.to_string()));
        let files = [
            ("--password-out", "new.pw"),
            ("--journal", "journal.json"),
            ("--json", "report.json"),
        ];
        for (flag, file) in files
            .into_iter()
            .filter(|(f, _)| journal || *f != "--journal")
        {
            args.push(flag.to_owned());
            args.push(dir.join(file).display().to_string());
        }
        args.extend(["--progress".to_owned(), "json".to_owned()]);
        Job { dir, args }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn command(&self, lab: &SambaFleet, run: usize) -> Command {
        let mut cmd = Command::new(common::revoke_bin());
        lab.cli_env(&mut cmd);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.file(&format!("stdout.{run}"))).unwrap());
        cmd
    }

    /// Starts the CLI and SIGKILLs it as soon as a stderr line satisfies `at`; returns the
    /// lines read.
    fn run_and_kill(
        &self,
        lab: &SambaFleet,
        pause_at: Option<&str>,
        at: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut cmd = self.command(lab, 1);
        if let Some(p) = pause_at {
            cmd.env("EXCH_REVOKE_TEST_PAUSE_AT", p);
        }
        let mut child: Child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let hit = at(&line);
            lines.push(line);
            if hit {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "the CLI ended on its own ({status}) before the kill point:\n{}\n{}",
            lines.join("\n"),
            std::fs::read_to_string(self.file("stdout.1")).unwrap_or_default()
        );
        lines
    }

    /// Runs the CLI to the end; returns (exit code, stdout, stderr).
    fn run_to_end(&self, lab: &SambaFleet, run: usize) -> (Option<i32>, String, String) {
        let out = self
            .command(lab, run)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stdout = std::fs::read_to_string(self.file(&format!("stdout.{run}"))).unwrap();
        (
            out.status.code(),
            stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn password(&self) -> String {
        std::fs::read_to_string(self.file("new.pw")).unwrap()
    }

    fn json(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.file(name)).unwrap()).unwrap()
    }
}

fn is_event(line: &str, event: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["event"] == event)
}

#[cfg(unix)]
fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
}

#[cfg(not(unix))]
fn assert_private(_: &Path) {}

async fn bind_rc(ad: &SambaAd, upn: &str, pw: &str) -> u32 {
    ad.try_bind(upn, &secret(pw)).await.unwrap().rc
}

/// `(pwdLastSet, uSNChanged, userAccountControl)` of `dn`, read from Samba with the harness's
/// own LDAP connection (not through the library under test). Any write to the account moves
/// `uSNChanged`; a write of a value the account already has is a no-op for AD and leaves no
/// trace (checked by hand: Samba keeps `uSNChanged` on such a modify).
async fn account_state(ad: &SambaAd, dn: &str) -> (String, String, String) {
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

/// (1) Killed after the password is stored, before the reset is sent: the file holds a
/// password the account does not have. The rerun sets THAT password (never a new one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_reset_the_rerun_sets_the_stored_password() {
    let Some((ad, lab, user)) = lab_and_user(2, FAST, "kw").await else {
        return;
    };
    let job = Job::new(&lab, "crash-written", &user.upn, &["--reset-password"]);
    let lines = tokio::task::block_in_place(|| {
        job.run_and_kill(&lab, Some("password-written"), |l| is_event(l, "paused"))
    });
    assert!(
        lines.iter().any(|l| is_event(l, "password_written")),
        "{lines:?}"
    );
    let stored = job.password();
    assert_private(&job.file("new.pw"));
    let journal = job.json("journal.json");
    assert_eq!(journal["finished"], false);
    assert!(journal["password_file"]
        .as_str()
        .unwrap()
        .ends_with("new.pw"));
    // The reset was not sent: the old password still works, the stored one does not.
    assert_eq!(bind_rc(ad, &user.upn, OLD_PW).await, 0);
    assert_eq!(bind_rc(ad, &user.upn, &stored).await, 49);

    let (code, stdout, stderr) = tokio::task::block_in_place(|| job.run_to_end(&lab, 2));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("continuing an interrupted job"), "{stdout}");
    assert_eq!(
        job.password(),
        stored,
        "the rerun replaced the stored password"
    );
    assert_eq!(bind_rc(ad, &user.upn, &stored).await, 0);
    assert_eq!(bind_rc(ad, &user.upn, OLD_PW).await, 49);
    assert_eq!(job.json("report.json")["outcome"], "Revoked");
    assert_eq!(job.json("journal.json")["finished"], true);

    clean_up(lab, &user, &job.dir).await;
}

/// (1c) The reset was sent, the journal never recorded it: the CLI is killed for real at
/// `reset-sent`, after the directory answered the reset and before the journal's update. The
/// rerun sends the same password again (an administrative reset to the current password is
/// accepted), never a new one, and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_landed_but_not_journaled_the_rerun_sends_the_same_password() {
    let Some((ad, lab, user)) = lab_and_user(1, FAST, "kj").await else {
        return;
    };
    let job = Job::new(&lab, "crash-unjournaled", &user.upn, &["--reset-password"]);
    let pristine = account_state(ad, &user.dn).await;
    tokio::task::block_in_place(|| {
        job.run_and_kill(&lab, Some("reset-sent"), |l| is_event(l, "paused"))
    });
    let stored = job.password();
    // The reset landed (read by the harness's own connection), the journal does not know.
    assert_ne!(
        account_state(ad, &user.dn).await.0,
        pristine.0,
        "pwdLastSet did not move: the reset was not sent before the kill"
    );
    assert_eq!(bind_rc(ad, &user.upn, &stored).await, 0);
    let journal = job.json("journal.json");
    assert_eq!(journal["finished"], false);
    assert!(
        journal["report"]["actions"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "the journal recorded the reset: {journal}"
    );
    let before = account_state(ad, &user.dn).await;

    let (code, stdout, stderr) = tokio::task::block_in_place(|| job.run_to_end(&lab, 2));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        job.password(),
        stored,
        "the rerun replaced the stored password"
    );
    assert_eq!(bind_rc(ad, &user.upn, &stored).await, 0);
    assert_eq!(bind_rc(ad, &user.upn, OLD_PW).await, 49);
    let after = account_state(ad, &user.dn).await;
    assert_ne!(after.0, before.0, "the rerun did not send the reset again");
    let report = job.json("report.json");
    assert_eq!(report["outcome"], "Revoked", "{stdout}");
    assert_eq!(
        report["actions"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["actions"][0]["done_earlier"], false, "{report}");

    clean_up(lab, &user, &job.dir).await;
}

/// (1b) The journal names a password file that does not exist, no reset sent: a real kill at
/// `journal-written`, after the journal and before the file. The rerun generates a new
/// password, stores it first, and sets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_names_a_missing_password_file_the_rerun_stores_a_new_one_first() {
    let Some((ad, lab, user)) = lab_and_user(1, FAST, "km").await else {
        return;
    };
    let job = Job::new(&lab, "crash-missing", &user.upn, &["--reset-password"]);
    let pristine = account_state(ad, &user.dn).await;
    tokio::task::block_in_place(|| {
        job.run_and_kill(&lab, Some("journal-written"), |l| is_event(l, "paused"))
    });
    assert!(
        !job.file("new.pw").exists(),
        "the password file was written before the kill"
    );
    let journal = job.json("journal.json");
    assert!(
        journal.to_string().contains("new.pw"),
        "the journal does not name the password file: {journal}"
    );
    assert_eq!(
        account_state(ad, &user.dn).await,
        pristine,
        "nothing was sent"
    );
    assert_eq!(bind_rc(ad, &user.upn, OLD_PW).await, 0);

    let (code, stdout, stderr) = tokio::task::block_in_place(|| job.run_to_end(&lab, 2));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("missing or empty"), "{stdout}");
    let stored = job.password();
    assert_private(&job.file("new.pw"));
    assert_eq!(bind_rc(ad, &user.upn, &stored).await, 0);
    assert_eq!(bind_rc(ad, &user.upn, OLD_PW).await, 49);

    clean_up(lab, &user, &job.dir).await;
}

/// (2) Killed right after the directory change (disable + reset), every flush in flight: the
/// rerun neither disables nor resets again, keeps the password file, flushes every server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_directory_change_the_rerun_finishes() {
    let Some((ad, lab, user)) = lab_and_user(2, SLOW, "kd").await else {
        return;
    };
    let job = Job::new(
        &lab,
        "crash-dir",
        &user.upn,
        &["--disable", "--reset-password"],
    );
    let lines = tokio::task::block_in_place(|| {
        job.run_and_kill(&lab, None, |l| {
            is_event(l, "step_finished") && l.contains("change_directory")
        })
    });
    let stored = job.password();
    let journal = job.json("journal.json");
    let actions = journal["report"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{journal}");
    assert!(
        actions.iter().all(|a| a["outcome"] == "Applied"),
        "{journal}"
    );
    assert!(
        journal["report"]["servers"].as_array().unwrap().is_empty(),
        "a server finished before the kill: {lines:?}"
    );
    let first = account_state(ad, &user.dn).await;
    assert_eq!(
        first.2.parse::<u32>().unwrap() & 2,
        2,
        "not disabled on the DC: {first:?}"
    );
    let bind = ad.try_bind(&user.upn, &secret(&stored)).await.unwrap();
    assert!(
        bind.rc == 49 && bind.text.contains("data 533"),
        "the stored password is the account's (AD says 533 only for the right password): {bind:?}"
    );

    for s in lab.fleet.servers() {
        set_recycle(s, FAST);
    }
    let (code, stdout, stderr) = tokio::task::block_in_place(|| job.run_to_end(&lab, 2));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(job.password(), stored);
    let report = job.json("report.json");
    assert_eq!(report["outcome"], "Revoked", "{stdout}");
    // Both actions are in the report, each taken from the journal, none sent again.
    let mut kinds: Vec<String> = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["done_earlier"], true, "{a}");
            a["action"].to_string()
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["\"Disable\"", "\"ResetPassword\""], "{report}");
    // Samba's own record: no write to the account (no reset: pwdLastSet; nothing else:
    // uSNChanged).
    let after = account_state(ad, &user.dn).await;
    assert_eq!(after.0, first.0, "the rerun reset again");
    assert_eq!(after.1, first.1, "the rerun wrote to the account again");
    for s in lab.fleet.servers() {
        assert!(s.counters().iis.recycles > 0, "{} not flushed", s.name());
    }
    let bind = ad.try_bind(&user.upn, &secret(OLD_PW)).await.unwrap();
    assert!(
        bind.rc == 49 && bind.text.contains("data 52e"),
        "the old password still works: {bind:?}"
    );

    clean_up(lab, &user, &job.dir).await;
}

/// (3) Killed mid-flush (two servers proven, one recycling): the rerun flushes only the third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_flush_the_rerun_flushes_only_the_rest() {
    let Some((ad, lab, user)) = lab_and_user(3, FAST, "kf").await else {
        return;
    };
    let servers = lab.fleet.servers();
    set_recycle(&servers[2], SLOW);
    let job = Job::new(&lab, "crash-flush", &user.upn, &["--reset-password"]);
    let proven = std::sync::Mutex::new(0);
    tokio::task::block_in_place(|| {
        job.run_and_kill(&lab, None, |l| {
            if is_event(l, "server_recorded") && l.contains("\"flushed\"") {
                *proven.lock().unwrap() += 1;
            }
            *proven.lock().unwrap() == 2
        })
    });
    let stored = job.password();
    let journal = job.json("journal.json");
    let mut recorded: Vec<&str> = journal["report"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["server"].as_str().unwrap())
        .collect();
    recorded.sort_unstable(); // in the order they finished
    assert_eq!(
        recorded,
        [servers[0].name(), servers[1].name()],
        "{journal}"
    );
    assert_eq!(bind_rc(ad, &user.upn, &stored).await, 0);
    let recycles = |s: &LabServer| s.counters().iis.recycles;
    let before: Vec<u64> = servers.iter().map(recycles).collect();
    let state = account_state(ad, &user.dn).await;

    set_recycle(&servers[2], FAST);
    let (code, stdout, stderr) = tokio::task::block_in_place(|| job.run_to_end(&lab, 2));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(job.password(), stored);
    assert_eq!(bind_rc(ad, &user.upn, &stored).await, 0);
    let after: Vec<u64> = servers.iter().map(recycles).collect();
    assert_eq!(after[..2], before[..2], "proven servers were flushed again");
    assert!(
        after[2] > before[2],
        "the interrupted server was not flushed"
    );
    let report = job.json("report.json");
    assert_eq!(report["outcome"], "Revoked", "{stdout}");
    let actions = report["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{report}");
    assert_eq!(actions[0]["done_earlier"], true, "{report}");
    assert_eq!(
        account_state(ad, &user.dn).await,
        state,
        "the rerun wrote to the account again"
    );

    clean_up(lab, &user, &job.dir).await;
}

/// Without a journal an existing password file is never overwritten (nor reused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_journal_an_existing_password_file_is_refused() {
    let Some((ad, lab, user)) = lab_and_user(1, FAST, "kn").await else {
        return;
    };
    let dir = common::scratch("crash-nojournal");
    let pw = dir.join("new.pw");
    std::fs::write(&pw, "Left-Over-Pw!123").unwrap();
    let out = tokio::task::block_in_place(|| {
        let mut cmd = Command::new(common::revoke_bin());
        lab.cli_env(&mut cmd);
        cmd.args(lab.cli_args())
            .args(["--user", &user.upn, "--reset-password", "--password-out"])
            .arg(&pw)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot create"));
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "Left-Over-Pw!123");
    assert_eq!(
        bind_rc(ad, &user.upn, OLD_PW).await,
        0,
        "the reset was sent"
    );
    clean_up(lab, &user, &dir).await;
}

/// `--resume REPORT` of a `Partial` run (one server refused the WinRM credentials) that applied
/// the reset: the rerun with the same `--password-out` neither resets again nor touches the
/// file, and flushes only the server that failed. Before that, a rerun whose `--password-out`
/// names another, missing file says so and creates nothing (and resets nothing either); and
/// resuming the finished job needs no `--password-out` at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_of_a_partial_run_keeps_the_applied_password() {
    let Some((ad, lab, user)) = lab_and_user(2, FAST, "kr").await else {
        return;
    };
    let servers = lab.fleet.servers();
    servers[1].set_wrong_credentials(true);
    let mut job = Job::with_files(
        &lab,
        "resume-partial",
        &user.upn,
        &["--reset-password"],
        false,
    );
    let pwd_last_set = || async { ad.read_attribute(&user.dn, "pwdLastSet").await.unwrap() };
    let recycles = |s: &LabServer| s.counters().iis.recycles;

    // Run 1: the reset is applied, the second server refuses the credentials → Partial.
    let (code, stdout, stderr) = tokio::task::block_in_place(|| job.run_to_end(&lab, 1));
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    let report = job.json("report.json");
    assert_eq!(report["outcome"], "Partial", "{stdout}");
    assert_eq!(report["actions"][0]["outcome"], "Applied", "{report}");
    let stored = std::fs::read(job.file("new.pw")).unwrap();
    let stored_text = String::from_utf8(stored.clone()).unwrap();
    assert_eq!(bind_rc(ad, &user.upn, &stored_text).await, 0);
    assert_eq!(bind_rc(ad, &user.upn, OLD_PW).await, 49);
    let set_by_run_1 = pwd_last_set().await;
    assert!(set_by_run_1.is_some());
    let after_run_1: Vec<u64> = servers.iter().map(recycles).collect();
    assert!(after_run_1[0] > 0, "the healthy server was not flushed");
    assert_eq!(after_run_1[1], 0, "the server with the fault was flushed");
    job.args.extend([
        "--resume".to_owned(),
        job.file("report.json").display().to_string(),
    ]);

    // Run 2, fault still in force, `--password-out` naming a missing file: no reset, no file,
    // a message that says why; still Partial.
    let mut other = job.args.clone();
    let at = other.iter().position(|a| a == "--password-out").unwrap();
    other[at + 1] = job.file("other.pw").display().to_string();
    let elsewhere = Job {
        dir: job.dir.clone(),
        args: other,
    };
    let (code, stdout, stderr) = tokio::task::block_in_place(|| elsewhere.run_to_end(&lab, 2));
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("reset was applied by the earlier run")
            && stdout.contains("other.pw does not exist and is NOT created"),
        "{stdout}"
    );
    assert!(
        !job.file("other.pw").exists(),
        "a new password file was written"
    );
    assert_eq!(pwd_last_set().await, set_by_run_1, "run 2 reset again");
    assert_eq!(bind_rc(ad, &user.upn, &stored_text).await, 0);
    let after_run_2: Vec<u64> = servers.iter().map(recycles).collect();
    assert_eq!(after_run_2, after_run_1, "run 2 flushed something");

    // Run 3, fault cleared, same `--password-out`: only the failed server is flushed.
    servers[1].set_wrong_credentials(false);
    let (code, stdout, stderr) = tokio::task::block_in_place(|| job.run_to_end(&lab, 3));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("new.pw is left as it is"), "{stdout}");
    assert_eq!(
        std::fs::read(job.file("new.pw")).unwrap(),
        stored,
        "the password file changed"
    );
    assert_private(&job.file("new.pw"));
    assert_eq!(pwd_last_set().await, set_by_run_1, "run 3 reset again");
    assert_eq!(bind_rc(ad, &user.upn, &stored_text).await, 0);
    assert_eq!(bind_rc(ad, &user.upn, OLD_PW).await, 49);
    let after_run_3: Vec<u64> = servers.iter().map(recycles).collect();
    assert_eq!(
        after_run_3[0], after_run_1[0],
        "the proven server was flushed again"
    );
    assert!(after_run_3[1] > 0, "the failed server was not flushed");
    let report = job.json("report.json");
    assert_eq!(report["outcome"], "Revoked", "{stdout}");
    assert_eq!(report["actions"][0]["done_earlier"], true, "{report}");

    // Run 4: resuming the finished job needs no `--password-out` and does nothing.
    let at = job.args.iter().position(|a| a == "--password-out").unwrap();
    job.args.drain(at..at + 2);
    let (code, stdout, stderr) = tokio::task::block_in_place(|| job.run_to_end(&lab, 4));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(job.json("report.json")["outcome"], "Revoked", "{stdout}");
    assert_eq!(pwd_last_set().await, set_by_run_1, "run 4 reset again");
    assert_eq!(
        servers.iter().map(recycles).collect::<Vec<_>>(),
        after_run_3
    );

    clean_up(lab, &user, &job.dir).await;
}
