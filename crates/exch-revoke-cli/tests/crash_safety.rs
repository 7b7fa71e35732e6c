//! Crash safety of `exch-revoke` (moved here from the root package's `tests/crash_safety.rs`
//! with the tool): killed (SIGKILL) at each step boundary — after the journal names the
//! password file, after the new password is stored but before the reset is sent, right after
//! the reset was answered, after the directory change, mid-flush — and finished with
//! `exch-revoke resume JOURNAL`: the job completes (`Revoked`), the stored password is the
//! account's real password (checked with an LDAP bind), it is never replaced, and what was
//! done is not done again (Samba's `pwdLastSet` / `uSNChanged`, the lab's recycle counters).
//! Also `resume REPORT` of a `Partial` run that applied the reset, and a batch of users killed
//! mid-flush.
//!
//! Boundaries are found from the tool's `--progress json` lines (written after the journal),
//! flushes are kept in flight by a long lab recycle latency, and the stops around the reset
//! use the tool's `EXCH_REVOKE_TEST_PAUSE_AT` hook. What the DC holds is read with the
//! harness's own LDAP connection, never through the code under test. Needs Samba
//! (`EXCH_REVOKE_AD_ENV`; skipped with a `SKIPPED:` line otherwise, failed when
//! `EXCH_REVOKE_REQUIRE_SAMBA=1`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{account_state, bind_rc, is_event, recycles, secret, set_recycle, Lab};
use exch_samba::{AdUser, SambaAd};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WINRM_PW: &str = "Crash-WinRM-Pw!r3";
const OLD_PW: &str = "Crash-Old-Pass!t9";
const SLOW: Duration = Duration::from_secs(60);
const FAST: Duration = Duration::from_millis(10);

/// The shared DC, a lab fleet of `servers` servers on it (recycle latency `recycle`) and
/// `n` fresh users `<tag>…` with [`OLD_PW`]; `None` when the suite is skipped.
async fn lab_and_users(
    servers: usize,
    recycle: Duration,
    tag: &str,
    n: usize,
) -> Option<(&'static SambaAd, Lab, Vec<AdUser>)> {
    let suite = "crash safety (Samba AD + lab fleet + exch-revoke)";
    let lab = Lab::require(suite, "K", servers, recycle, WINRM_PW).await?;
    let users = common::create_users(lab.ad, tag, n, OLD_PW).await;
    Some((lab.ad, lab, users))
}

async fn lab_and_user(
    servers: usize,
    recycle: Duration,
    tag: &str,
) -> Option<(&'static SambaAd, Lab, AdUser)> {
    let (ad, lab, mut users) = lab_and_users(servers, recycle, tag, 1).await?;
    Some((ad, lab, users.remove(0)))
}

/// [`lab_and_user`] and a [`Job`] `name` for that user (see [`Job::new`]).
async fn lab_user_and_job(
    servers: usize,
    recycle: Duration,
    tag: &str,
    name: &str,
    actions: &[&str],
    journal: bool,
) -> Option<(&'static SambaAd, Lab, AdUser, Job)> {
    let (ad, lab, user) = lab_and_user(servers, recycle, tag).await?;
    let job = Job::new(&lab, name, &[&user], actions, journal);
    Some((ad, lab, user, job))
}

/// The account's password is `pw` (an LDAP bind with it succeeds) and no longer [`OLD_PW`].
async fn assert_password_is(ad: &SambaAd, user: &AdUser, pw: &str) {
    assert_eq!(bind_rc(ad, &user.upn, pw).await, 0);
    assert_eq!(bind_rc(ad, &user.upn, OLD_PW).await, 49);
}

/// Removes what a test left: the lab's servers, the users and the job's files.
async fn clean_up(lab: Lab, users: &[AdUser], files: &Path) {
    lab.cleanup().await;
    for u in users {
        let _ = lab.ad.delete(&u.dn).await;
    }
    let _ = std::fs::remove_dir_all(files);
}

/// One job's files and command lines.
struct Job {
    dir: PathBuf,
    config: PathBuf,
    revoke: Vec<String>,
}

impl Job {
    /// `revoke --user … ACTIONS --passwords-dir pw --json report.json --progress json`, and
    /// `--journal journal.json` if `journal`.
    fn new(lab: &Lab, name: &str, users: &[&AdUser], actions: &[&str], journal: bool) -> Job {
        let dir = common::scratch(name);
        let config = lab.write_profile(&dir);
        let mut revoke = vec!["revoke".to_owned()];
        for u in users {
            revoke.extend(["--user".to_owned(), u.upn.clone()]);
        }
        revoke.extend(actions.iter().map(|s| s.to_string()));
        revoke.extend([
            "--passwords-dir".to_owned(),
            dir.join("pw").display().to_string(),
            "--json".to_owned(),
            dir.join("report.json").display().to_string(),
            "--progress".to_owned(),
            "json".to_owned(),
        ]);
        if journal {
            revoke.extend([
                "--journal".to_owned(),
                dir.join("journal.json").display().to_string(),
            ]);
        }
        Job {
            dir,
            config,
            revoke,
        }
    }

    /// `resume FILE --json report.json --progress json`.
    fn resume(&self, from: &str) -> Vec<String> {
        vec![
            "resume".to_owned(),
            self.file(from).display().to_string(),
            "--json".to_owned(),
            self.file("report.json").display().to_string(),
            "--progress".to_owned(),
            "json".to_owned(),
        ]
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn password_file(&self, user: &AdUser) -> PathBuf {
        self.dir.join("pw").join(format!("{}.password", user.upn))
    }

    fn password(&self, user: &AdUser) -> String {
        std::fs::read_to_string(self.password_file(user)).unwrap()
    }

    fn command(&self, lab: &Lab, args: &[String], run: usize) -> Command {
        let mut cmd = lab.command(&self.config);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.file(&format!("stdout.{run}"))).unwrap());
        cmd
    }

    /// Starts `revoke` and SIGKILLs it as soon as it pauses at the test hook `pause_at`;
    /// returns the lines read.
    fn kill_when_paused_at(&self, lab: &Lab, pause_at: &str) -> Vec<String> {
        self.run_and_kill(lab, Some(pause_at), |l| is_event(l, "paused"))
    }

    /// Starts `revoke` and SIGKILLs it as soon as a stderr line satisfies `at`; returns the
    /// lines read.
    fn run_and_kill(
        &self,
        lab: &Lab,
        pause_at: Option<&str>,
        at: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        tokio::task::block_in_place(|| {
            let mut cmd = self.command(lab, &self.revoke, 1);
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
                "the tool ended on its own ({status}) before the kill point:\n{}\n{}",
                lines.join("\n"),
                std::fs::read_to_string(self.file("stdout.1")).unwrap_or_default()
            );
            lines
        })
    }

    /// Runs the tool with `args` to the end; asserts the exit code `code` and returns
    /// (stdout, stderr).
    fn run_to_end(&self, lab: &Lab, args: &[String], run: usize, code: i32) -> (String, String) {
        let out = tokio::task::block_in_place(|| {
            self.command(lab, args, run)
                .stderr(Stdio::piped())
                .output()
                .unwrap()
        });
        let stdout = std::fs::read_to_string(self.file(&format!("stdout.{run}"))).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{stdout}\n{stderr}");
        (stdout, stderr)
    }

    fn json(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.file(name)).unwrap()).unwrap()
    }
}

#[cfg(unix)]
fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    let dir = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir, 0o700, "{}", path.parent().unwrap().display());
}

#[cfg(not(unix))]
fn assert_private(_: &Path) {}

/// The actions a report holds for `user`, as (action, done_earlier).
fn actions(report: &serde_json::Value, upn: &str) -> Vec<(String, bool)> {
    let users = report["users"].as_array().unwrap();
    let u = users.iter().find(|u| u["user"] == upn).unwrap();
    let mut a: Vec<(String, bool)> = u["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_owned(),
                a["done_earlier"] == true,
            )
        })
        .collect();
    a.sort();
    a
}

/// (1) Killed after the password is stored, before the reset is sent: the file holds a
/// password the account does not have. `resume` sets THAT password (never a new one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_reset_resume_sets_the_stored_password() {
    let Some((ad, lab, user, job)) =
        lab_user_and_job(2, FAST, "kw", "crash-written", &["--reset-password"], true).await
    else {
        return;
    };
    let lines = job.kill_when_paused_at(&lab, "password-written");
    assert!(
        lines.iter().any(|l| is_event(l, "password_written")),
        "{lines:?}"
    );
    let stored = job.password(&user);
    assert_private(&job.password_file(&user));
    let journal = job.json("journal.json");
    assert_eq!(journal["finished"], false);
    assert!(journal["password_files"][&user.upn]
        .as_str()
        .unwrap()
        .ends_with(".password"));
    // The reset was not sent: the old password still works, the stored one does not.
    assert_eq!(bind_rc(ad, &user.upn, OLD_PW).await, 0);
    assert_eq!(bind_rc(ad, &user.upn, &stored).await, 49);

    let (_, stderr) = job.run_to_end(&lab, &job.resume("journal.json"), 2, 0);
    assert!(stderr.contains("continuing an interrupted job"), "{stderr}");
    assert_eq!(
        job.password(&user),
        stored,
        "resume replaced the stored password"
    );
    assert_password_is(ad, &user, &stored).await;
    assert_eq!(job.json("report.json")["outcome"], "Revoked");
    assert_eq!(job.json("journal.json")["finished"], true);

    clean_up(lab, &[user], &job.dir).await;
}

/// (1c) The reset was sent, the journal never recorded it: killed for real at `reset-sent`,
/// after the directory answered the reset and before the journal's update. `resume` sends the
/// same password again (an administrative reset to the current password is accepted), never
/// a new one, and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_landed_but_not_journaled_resume_sends_the_same_password() {
    let Some((ad, lab, user, job)) = lab_user_and_job(
        1,
        FAST,
        "kj",
        "crash-unjournaled",
        &["--reset-password"],
        true,
    )
    .await
    else {
        return;
    };
    let pristine = account_state(ad, &user.dn).await;
    job.kill_when_paused_at(&lab, "reset-sent");
    let stored = job.password(&user);
    assert_ne!(
        account_state(ad, &user.dn).await.0,
        pristine.0,
        "pwdLastSet did not move: the reset was not sent before the kill"
    );
    assert_eq!(bind_rc(ad, &user.upn, &stored).await, 0);
    let journal = job.json("journal.json");
    assert_eq!(journal["finished"], false);
    assert!(
        journal["report"]["users"][0]["actions"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "the journal recorded the reset: {journal}"
    );
    let before = account_state(ad, &user.dn).await;

    let (stdout, _) = job.run_to_end(&lab, &job.resume("journal.json"), 2, 0);
    assert_eq!(
        job.password(&user),
        stored,
        "resume replaced the stored password"
    );
    assert_password_is(ad, &user, &stored).await;
    let after = account_state(ad, &user.dn).await;
    assert_ne!(after.0, before.0, "resume did not send the reset again");
    let report = job.json("report.json");
    assert_eq!(report["outcome"], "Revoked", "{stdout}");
    assert_eq!(
        actions(&report, &user.upn),
        [("ResetPassword".to_owned(), false)],
        "{report}"
    );

    clean_up(lab, &[user], &job.dir).await;
}

/// (1b) The journal names a password file that does not exist, no reset sent: a real kill at
/// `journal-written`. `resume` generates a new password, stores it first, and sets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_names_a_missing_password_file_resume_stores_a_new_one_first() {
    let Some((ad, lab, user, job)) =
        lab_user_and_job(1, FAST, "km", "crash-missing", &["--reset-password"], true).await
    else {
        return;
    };
    let pristine = account_state(ad, &user.dn).await;
    job.kill_when_paused_at(&lab, "journal-written");
    assert!(
        !job.password_file(&user).exists(),
        "the password file was written before the kill"
    );
    let journal = job.json("journal.json");
    assert!(
        journal["password_files"][&user.upn].is_string(),
        "the journal does not name the password file: {journal}"
    );
    assert_eq!(
        account_state(ad, &user.dn).await,
        pristine,
        "nothing was sent"
    );
    assert_eq!(bind_rc(ad, &user.upn, OLD_PW).await, 0);

    let (_, stderr) = job.run_to_end(&lab, &job.resume("journal.json"), 2, 0);
    assert!(stderr.contains("missing or empty"), "{stderr}");
    let stored = job.password(&user);
    assert_private(&job.password_file(&user));
    assert_password_is(ad, &user, &stored).await;

    clean_up(lab, &[user], &job.dir).await;
}

/// (2) Killed right after the directory change (disable + reset), every flush in flight:
/// `resume` neither disables nor resets again, keeps the password file, flushes every server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_directory_change_resume_finishes() {
    let Some((ad, lab, user, job)) = lab_user_and_job(
        2,
        SLOW,
        "kd",
        "crash-dir",
        &["--disable", "--reset-password"],
        true,
    )
    .await
    else {
        return;
    };
    let lines = job.run_and_kill(&lab, None, |l| {
        is_event(l, "step_finished") && l.contains("change_directory")
    });
    let stored = job.password(&user);
    let journal = job.json("journal.json");
    let recorded = journal["report"]["users"][0]["actions"].as_array().unwrap();
    assert_eq!(recorded.len(), 2, "{journal}");
    assert!(
        recorded.iter().all(|a| a["outcome"] == "Applied"),
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

    for s in lab.servers() {
        set_recycle(s, FAST);
    }
    let (stdout, _) = job.run_to_end(&lab, &job.resume("journal.json"), 2, 0);
    assert_eq!(job.password(&user), stored);
    let report = job.json("report.json");
    assert_eq!(report["outcome"], "Revoked", "{stdout}");
    // Both actions are in the report, each taken from the journal, none sent again.
    assert_eq!(
        actions(&report, &user.upn),
        [
            ("Disable".to_owned(), true),
            ("ResetPassword".to_owned(), true)
        ],
        "{report}"
    );
    let after = account_state(ad, &user.dn).await;
    assert_eq!(after.0, first.0, "resume reset again");
    assert_eq!(after.1, first.1, "resume wrote to the account again");
    for s in lab.servers() {
        assert!(s.counters().iis.recycles > 0, "{} not flushed", s.name());
    }
    let bind = ad.try_bind(&user.upn, &secret(OLD_PW)).await.unwrap();
    assert!(
        bind.rc == 49 && bind.text.contains("data 52e"),
        "the old password still works: {bind:?}"
    );

    clean_up(lab, &[user], &job.dir).await;
}

/// (3) A batch of three users killed mid-flush (two servers proven, one recycling): `resume`
/// flushes only the third, changes no account again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_killed_mid_flush_resume_flushes_only_the_rest() {
    let Some((ad, lab, users)) = lab_and_users(3, FAST, "kf", 3).await else {
        return;
    };
    let servers = lab.servers();
    set_recycle(&servers[2], SLOW);
    let refs: Vec<&AdUser> = users.iter().collect();
    let job = Job::new(
        &lab,
        "crash-flush",
        &refs,
        &["--disable", "--reset-password", "--contain-first"],
        true,
    );
    let proven = std::sync::Mutex::new(0);
    job.run_and_kill(&lab, None, |l| {
        if is_event(l, "server_recorded") && l.contains("\"flushed\"") {
            *proven.lock().unwrap() += 1;
        }
        *proven.lock().unwrap() == 2
    });
    let journal = job.json("journal.json");
    let mut recorded: Vec<&str> = journal["report"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["server"].as_str().unwrap())
        .collect();
    recorded.sort_unstable();
    assert_eq!(
        recorded,
        [servers[0].name(), servers[1].name()],
        "{journal}"
    );
    let stored: Vec<String> = users.iter().map(|u| job.password(u)).collect();
    let mut states = Vec::new();
    for (u, pw) in users.iter().zip(&stored) {
        assert_eq!(bind_rc(ad, &u.upn, pw).await, 49, "{} not disabled", u.upn);
        states.push(account_state(ad, &u.dn).await);
    }
    let before = recycles(&lab);

    set_recycle(&servers[2], FAST);
    let (stdout, _) = job.run_to_end(&lab, &job.resume("journal.json"), 2, 0);
    let after = recycles(&lab);
    assert_eq!(after[..2], before[..2], "proven servers were flushed again");
    assert!(
        after[2] > before[2],
        "the interrupted server was not flushed"
    );
    let report = job.json("report.json");
    assert_eq!(report["outcome"], "Revoked", "{stdout}");
    for ((u, pw), state) in users.iter().zip(&stored).zip(&states) {
        assert_eq!(job.password(u), *pw);
        assert_eq!(
            actions(&report, &u.upn),
            [
                ("Disable".to_owned(), true),
                ("ResetPassword".to_owned(), true)
            ],
            "{report}"
        );
        assert_eq!(
            &account_state(ad, &u.dn).await,
            state,
            "resume wrote to {} again",
            u.upn
        );
    }

    clean_up(lab, &users, &job.dir).await;
}

/// A password file left in the directory is never overwritten (nor reused): the run stops
/// before any reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_password_file_is_refused() {
    let Some((ad, lab, user, job)) = lab_user_and_job(
        1,
        FAST,
        "kn",
        "crash-left-over",
        &["--reset-password"],
        false,
    )
    .await
    else {
        return;
    };
    let pw = job.password_file(&user);
    std::fs::create_dir_all(pw.parent().unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pw.parent().unwrap(), std::fs::Permissions::from_mode(0o700))
            .unwrap();
    }
    std::fs::write(&pw, "Left-Over-Pw!123").unwrap();
    let (_, stderr) = job.run_to_end(&lab, &job.revoke, 1, 1);
    assert!(
        stderr.contains("cannot create the password file"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "Left-Over-Pw!123");
    assert_eq!(
        bind_rc(ad, &user.upn, OLD_PW).await,
        0,
        "the reset was sent"
    );
    clean_up(lab, &[user], &job.dir).await;
}

/// `resume REPORT` of a `Partial` run (one server refused the WinRM credentials) that applied
/// the reset: no reset again, the password file untouched, only the failed server flushed;
/// resuming the finished job does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_of_a_partial_report_keeps_the_applied_password() {
    let Some((ad, lab, user, job)) = lab_user_and_job(
        2,
        FAST,
        "kr",
        "resume-partial",
        &["--reset-password"],
        false,
    )
    .await
    else {
        return;
    };
    let servers = lab.servers();
    servers[1].set_wrong_credentials(true);
    let pwd_last_set = || async { ad.read_attribute(&user.dn, "pwdLastSet").await.unwrap() };

    // Run 1: the reset is applied, the second server refuses the credentials → Partial (3).
    let (stdout, _) = job.run_to_end(&lab, &job.revoke, 1, 3);
    assert!(stdout.contains("to finish: exch-revoke resume"), "{stdout}");
    let report = job.json("report.json");
    assert_eq!(report["outcome"], "Partial", "{stdout}");
    let stored = std::fs::read(job.password_file(&user)).unwrap();
    let stored_text = String::from_utf8(stored.clone()).unwrap();
    assert_password_is(ad, &user, &stored_text).await;
    let set_by_run_1 = pwd_last_set().await;
    let after_run_1 = recycles(&lab);
    assert!(after_run_1[0] > 0, "the healthy server was not flushed");
    assert_eq!(after_run_1[1], 0, "the server with the fault was flushed");
    let resume = job.resume("report.json");

    // Run 2, fault still in force: no reset, nothing flushed; still Partial.
    job.run_to_end(&lab, &resume, 2, 3);
    assert_eq!(pwd_last_set().await, set_by_run_1, "run 2 reset again");
    assert_eq!(recycles(&lab), after_run_1, "run 2 flushed something");

    // Run 3, fault cleared: only the failed server is flushed.
    servers[1].set_wrong_credentials(false);
    let (stdout, _) = job.run_to_end(&lab, &resume, 3, 0);
    assert_eq!(
        std::fs::read(job.password_file(&user)).unwrap(),
        stored,
        "the password file changed"
    );
    assert_private(&job.password_file(&user));
    assert_eq!(pwd_last_set().await, set_by_run_1, "run 3 reset again");
    assert_eq!(bind_rc(ad, &user.upn, &stored_text).await, 0);
    let after_run_3 = recycles(&lab);
    assert_eq!(
        after_run_3[0], after_run_1[0],
        "the proven server was flushed again"
    );
    assert!(after_run_3[1] > 0, "the failed server was not flushed");
    let report = job.json("report.json");
    assert_eq!(report["outcome"], "Revoked", "{stdout}");
    assert_eq!(
        actions(&report, &user.upn),
        [("ResetPassword".to_owned(), true)],
        "{report}"
    );

    // Run 4: resuming the finished job does nothing.
    job.run_to_end(&lab, &resume, 4, 0);
    assert_eq!(pwd_last_set().await, set_by_run_1, "run 4 reset again");
    assert_eq!(recycles(&lab), after_run_3);

    clean_up(lab, &[user], &job.dir).await;
}
