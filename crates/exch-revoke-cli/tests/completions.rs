//! `exch-revoke completions SHELL`, the real binary: the bash script is accepted by `bash -n`
//! (and completes the subcommands when sourced), zsh, fish and PowerShell get a non-empty
//! script naming the binary (checked with `zsh -n` / `fish -n` when those shells are
//! installed), and an unknown shell is bad input (exit 2) naming the choices.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn exch_revoke(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exch-revoke"))
        .args(args)
        .env_remove("EXCH_REVOKE_PROFILE")
        .env_remove("EXCH_REVOKE_CONFIG")
        .output()
        .unwrap()
}

fn script(shell: &str) -> String {
    let out = exch_revoke(&["completions", shell]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("exch-revoke"), "{shell}: {text}");
    for sub in ["audit", "completions", "profile"] {
        assert!(text.contains(sub), "{shell} script lacks {sub}: {text}");
    }
    text
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("completions-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `shell -n FILE` when `shell` is installed; `None` when it is not.
fn syntax_check(shell: &str, file: &Path) -> Option<Output> {
    match Command::new(shell).arg("-n").arg(file).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run {shell}: {e}"),
    }
}

#[test]
fn bash_accepts_the_bash_script_and_it_completes_the_subcommands() {
    let text = script("bash");
    let dir = scratch("bash");
    let file = dir.join("exch-revoke.bash");
    std::fs::write(&file, &text).unwrap();
    let out = syntax_check("bash", &file).expect("bash is needed for this test");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sourced, the completion function registered for exch-revoke offers the subcommands for `exch-revoke a<TAB>`.
    let probe = format!(
        "source {}\nf=$(complete -p exch-revoke | sed 's/.*-F \\([^ ]*\\).*/\\1/')\nCOMP_WORDS=(exch-revoke a)\nCOMP_CWORD=1\nCOMP_LINE='exch-revoke a'\nCOMP_POINT=${{#COMP_LINE}}\n\"$f\" exch-revoke a exch-revoke\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        file.display()
    );
    let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
    let offered = String::from_utf8_lossy(&out.stdout);
    assert!(
        offered.lines().any(|l| l == "audit"),
        "offered: {offered:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn zsh_fish_and_powershell_get_a_script() {
    let dir = scratch("others");
    for (shell, checker, file) in [
        ("zsh", Some("zsh"), "_exch-revoke"),
        ("fish", Some("fish"), "exch-revoke.fish"),
        ("powershell", None, "exch-revoke.ps1"),
    ] {
        let text = script(shell);
        let path = dir.join(file);
        std::fs::write(&path, &text).unwrap();
        if let Some(out) = checker.and_then(|c| syntax_check(c, &path)) {
            assert!(
                out.status.success(),
                "{shell} -n: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(script("powershell").contains("Register-ArgumentCompleter"));
    assert!(script("zsh").starts_with("#compdef exch-revoke"));
    assert!(script("fish").contains("complete -c exch-revoke"));
    // The shell name is case-insensitive, as people type it.
    assert_eq!(script("PowerShell"), script("powershell"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unknown_shell_is_bad_input_naming_the_choices() {
    let out = exch_revoke(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh"), "{err}");
    for shell in ["bash", "zsh", "fish", "powershell"] {
        assert!(err.contains(shell), "{err}");
    }
    assert!(out.stdout.is_empty());
}
