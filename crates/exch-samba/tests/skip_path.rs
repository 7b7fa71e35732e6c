//! The skip path, run for real: in a child process with no `EXCH_REVOKE_AD_ENV` and starting a
//! DC forbidden (`EXCH_REVOKE_NO_SAMBA_START=1`), `SambaAd::require` prints one `SKIPPED:` line
//! that names the suite and the reason, and the suite passes; with
//! `EXCH_REVOKE_REQUIRE_SAMBA=1` the same suite fails, saying why.
#![allow(clippy::unwrap_used)]

use exch_samba::{SambaAd, AD_ENV_VAR, NO_START_VAR, REQUIRE_VAR, SKIP_FILE_VAR};
use std::process::{Command, Output};

const CHILD_VAR: &str = "EXCH_SAMBA_SKIP_PATH_CHILD";
const SUITE: &str = "skip-path probe";

/// Only does something in the child processes the other test starts.
#[test]
fn child_probe() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let ad = SambaAd::require(SUITE);
    assert!(ad.is_none(), "no DC may be found in the child");
}

/// The child's skip file (never the run's own: this skip is on purpose).
fn child_skip_file(require: bool) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("skip-path-{}-{require}.txt", std::process::id()))
}

fn run_child(require: bool) -> Output {
    let skips = child_skip_file(require);
    let _ = std::fs::remove_file(&skips);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_probe", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, "1")
        .env(SKIP_FILE_VAR, &skips)
        .env(NO_START_VAR, "1")
        .env_remove(AD_ENV_VAR)
        .env_remove(REQUIRE_VAR);
    if require {
        cmd.env(REQUIRE_VAR, "1");
    }
    cmd.output().unwrap()
}

#[test]
fn without_a_dc_the_suite_says_skipped_and_why_or_fails_when_required() {
    let skipped = run_child(false);
    let err = String::from_utf8_lossy(&skipped.stderr);
    assert!(skipped.status.success(), "the skip passes: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("SKIPPED: "))
        .unwrap_or_else(|| panic!("one SKIPPED line on stderr: {err}"));
    assert!(
        line.contains(SUITE)
            && line.contains(NO_START_VAR)
            && line.contains(AD_ENV_VAR)
            && line.contains("scripts/test.sh"),
        "names the suite, the reason and what to run: {line}"
    );
    assert_eq!(err.matches("SKIPPED: ").count(), 1, "{err}");
    // … and recorded in the skip file, which outlives the captured output.
    let recorded = std::fs::read_to_string(child_skip_file(false)).unwrap_or_default();
    assert_eq!(recorded.lines().count(), 1, "{recorded:?}");
    assert!(recorded.starts_with(line), "{recorded:?} vs {line:?}");

    let required = run_child(true);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&required.stdout),
        String::from_utf8_lossy(&required.stderr)
    );
    assert!(
        !required.status.success(),
        "required but missing fails: {out}"
    );
    assert!(
        out.contains(&format!("Samba AD is required ({REQUIRE_VAR}=1)"))
            && out.contains(NO_START_VAR),
        "{out}"
    );
    assert!(!out.contains("SKIPPED: "), "{out}");
    assert!(!child_skip_file(true).exists(), "a failure is not a skip");
}
