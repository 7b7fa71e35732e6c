//! Bad input is refused before anything is contacted or changed, and every error names the
//! input (flag, or file and line), what is wrong and what to do: users (`bob)(|(cn=*`, a NUL
//! byte, duplicates), profiles (an unknown key, a missing section, a wrong CA file, a secret
//! in the file), missing actions or password destinations. A listener stands in for the DC
//! and every WinRM endpoint: it must see no connection. No Samba needed.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A listener on 127.0.0.1 that must never be connected to.
struct Tripwire(TcpListener);

impl Tripwire {
    fn new() -> Tripwire {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Tripwire(l)
    }
    fn addr(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }
    fn assert_untouched(&self, what: &str) {
        assert!(
            matches!(self.0.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{what}: the tool connected"
        );
    }
}

/// A configuration file whose profile `corp` points the DC and a server at `wire`, with
/// `extra` appended to the section.
fn config(dir: &Path, wire: &Tripwire, ca: &Path, extra: &str) -> PathBuf {
    let file = dir.join("config.toml");
    let text = format!(
        "# exch-revoke profiles\ndefault_profile = \"corp\"\n\n[profile.corp]\nldap_url = \"ldaps://{a}\"\nca_file = {ca:?}\nbind_user = \"svc@corp.example\"\nwinrm_user = 'CORP\\svc'\n{extra}\n[profile.corp.winrm_endpoints]\nEX1 = \"http://{a}/wsman\"\n",
        a = wire.addr(),
        ca = ca.display().to_string()
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// A PEM file with a (self-signed, throwaway) certificate.
fn ca_file(dir: &Path) -> PathBuf {
    let file = dir.join("ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
    std::fs::write(&file, cert.cert.pem()).unwrap();
    file
}

fn run(config: &Path, args: &[&str]) -> Output {
    common::command()
        .arg("--config")
        .arg(config)
        .args(args)
        .env("EXCH_REVOKE_BIND_PASSWORD", "Bind-Pw-123456")
        .env("EXCH_REVOKE_WINRM_PASSWORD", "WinRM-Pw-123456")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Runs the binary like [`run`] and asserts it refused the input (exit code 2); returns its
/// stderr.
fn refused(config: &Path, args: &[&str]) -> String {
    let o = run(config, args);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    e
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_users_are_refused_before_any_connection() {
    let dir = common::scratch("bad-users");
    let wire = Tripwire::new();
    let cfg = config(&dir, &wire, &ca_file(&dir), "");
    let pw = dir.join("pw");
    let pw = pw.to_str().unwrap();

    // An LDAP filter injection on the command line.
    let e = refused(&cfg, &["revoke", "--user", "bob)(|(cn=*", "--disable"]);
    assert!(
        e.contains("--user (#1)") && e.contains("bob)(|(cn=*") && e.contains("fix:"),
        "{e}"
    );
    wire.assert_untouched("--user 'bob)(|(cn=*'");

    // A NUL byte, an injection and a duplicate in a users file: all three named by line.
    let users = dir.join("users.txt");
    std::fs::write(
        &users,
        "# list\nalice@corp.example\nbob\0x@corp.example\n\ncarol)(cn=*\nAlice@corp.example\n",
    )
    .unwrap();
    for cmd in ["plan", "revoke"] {
        let mut args = vec![
            cmd,
            "--users-file",
            users.to_str().unwrap(),
            "--disable",
            "--reset-password",
        ];
        if cmd == "revoke" {
            args.extend(["--passwords-dir", pw]);
        }
        let o = run(&cfg, &args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {e}");
        assert!(e.contains("3 users are not valid"), "{e}");
        assert!(
            e.contains("users.txt:3: \"bob\\0x@corp.example\": contains control characters"),
            "{e}"
        );
        assert!(e.contains("users.txt:5: \"carol)(cn=*\""), "{e}");
        assert!(
            e.contains("users.txt:6: \"Alice@corp.example\" is listed twice (first at"),
            "{e}"
        );
        assert!(e.contains("nothing was contacted or changed"), "{e}");
        wire.assert_untouched(cmd);
    }
    assert!(
        !Path::new(pw).exists(),
        "the passwords directory was created for a refused job"
    );

    // An empty list, a missing file.
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "# nobody\n\n").unwrap();
    let o = run(
        &cfg,
        &[
            "revoke",
            "--users-file",
            empty.to_str().unwrap(),
            "--disable",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("holds no user"), "{}", stderr(&o));
    let o = run(
        &cfg,
        &[
            "revoke",
            "--users-file",
            dir.join("missing.txt").to_str().unwrap(),
            "--disable",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("missing.txt") && stderr(&o).contains("cannot read it"),
        "{}",
        stderr(&o)
    );
    wire.assert_untouched("users files");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn incomplete_jobs_are_refused_before_any_connection() {
    let dir = common::scratch("bad-job");
    let wire = Tripwire::new();
    let cfg = config(&dir, &wire, &ca_file(&dir), "");
    let cases: [(&[&str], &str); 5] = [
        (
            &["revoke", "--user", "bob"],
            "pass --disable and/or --reset-password",
        ),
        (
            &["revoke", "--user", "bob", "--reset-password"],
            "--passwords-dir DIR",
        ),
        (
            &["revoke", "--user", "bob", "--disable", "--contain-first"],
            "needs both --disable and --reset-password",
        ),
        (
            &[
                "revoke",
                "--user",
                "a",
                "--user",
                "b",
                "--disable",
                "--probe",
            ],
            "--old-password-command",
        ),
        (
            &[
                "revoke",
                "--user",
                "bob",
                "--disable",
                "--journal",
                "/nonexistent-dir/j.json",
            ],
            "does not exist",
        ),
    ];
    for (args, fix) in cases {
        let o = run(&cfg, args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(fix), "{args:?}: {e}");
        wire.assert_untouched(&format!("{args:?}"));
    }
    // A reset over plain ldap:// without StartTLS.
    let plain = dir.join("plain.toml");
    std::fs::write(
        &plain,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("ldaps://", "ldap://"),
    )
    .unwrap();
    let e = refused(&plain, &["revoke", "--user", "bob", "--disable"]);
    assert!(
        e.contains("plain.toml:5") && e.contains("not encrypted") && e.contains("ldaps://"),
        "{e}"
    );
    wire.assert_untouched("ldap://");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn profile_errors_name_the_file_the_line_and_the_fix() {
    let dir = common::scratch("bad-profile");
    let wire = Tripwire::new();
    let ca = ca_file(&dir);
    let revoke = ["revoke", "--user", "bob@corp.example", "--disable"];

    // An unknown key (a typo), on line 9 of the file.
    let cfg = config(&dir, &wire, &ca, "winrm_htps = true\n");
    let e = refused(&cfg, &revoke);
    assert!(
        e.contains("config.toml:9") && e.contains("unknown field `winrm_htps`"),
        "{e}"
    );
    assert!(
        e.contains("fix: remove the key or correct its spelling"),
        "{e}"
    );

    // A secret in the file: refused, named by line, and not repeated.
    let cfg = config(&dir, &wire, &ca, "bind_password = \"Hunter2-Hunter2!\"\n");
    let e = refused(&cfg, &revoke);
    assert!(
        e.contains("config.toml:9") && e.contains("secrets never go in the file"),
        "{e}"
    );
    assert!(!e.contains("Hunter2"), "{e}");

    // A missing section.
    let cfg = config(&dir, &wire, &ca, "");
    let e = refused(
        &cfg,
        &["--profile", "prod", "revoke", "--user", "bob", "--disable"],
    );
    assert!(
        e.contains("config.toml:") && e.contains("no [profile.prod] section"),
        "{e}"
    );
    assert!(e.contains("fix: use one of: corp (line 4)"), "{e}");

    // A missing required key: the section's header line.
    std::fs::write(&cfg, "[profile.corp]\nldap_url = \"ldaps://dc1\"\n").unwrap();
    let e = refused(
        &cfg,
        &["--profile", "corp", "revoke", "--user", "bob", "--disable"],
    );
    assert!(
        e.contains("config.toml:1")
            && e.contains("has no bind_user")
            && e.contains("fix: add `bind_user = …`"),
        "{e}"
    );

    // A wrong CA file: missing, then not a certificate; the line of `ca_file`.
    let cfg = config(&dir, &wire, &dir.join("no-such-ca.pem"), "");
    let e = refused(&cfg, &revoke);
    assert!(
        e.contains("config.toml:6")
            && e.contains("ca_file: cannot read")
            && e.contains("no-such-ca.pem"),
        "{e}"
    );
    assert!(e.contains("fix: point it at the PEM file of the CA"), "{e}");
    let not_pem = dir.join("notes.txt");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let cfg = config(&dir, &wire, &not_pem, "winrm_ca_file = \"notes.txt\"\n");
    let e = refused(&cfg, &revoke);
    assert!(
        e.contains("config.toml:6") && e.contains("holds no PEM certificate"),
        "{e}"
    );
    // The flag overrides the profile's CA file, and is checked the same way.
    let o = run(
        &cfg,
        &[
            "--ca-file",
            not_pem.to_str().unwrap(),
            "revoke",
            "--user",
            "bob",
            "--disable",
        ],
    );
    assert!(stderr(&o).contains("--ca-file"), "{}", stderr(&o));

    // A bad value: its line.
    let cfg = config(&dir, &wire, &ca, "strategy = \"sideways\"\n");
    let e = refused(&cfg, &revoke);
    assert!(e.contains("config.toml:9") && e.contains("sideways"), "{e}");

    // --config naming a file that does not exist.
    let e = refused(&dir.join("nope.toml"), &revoke);
    assert!(e.contains("nope.toml") && e.contains("--config"), "{e}");
    wire.assert_untouched("profiles");
    let _ = std::fs::remove_dir_all(&dir);
}

/// No argument takes a password: `--help` names none, and guesses are rejected by clap.
#[test]
fn no_password_in_argv() {
    let help = common::command()
        .args(["revoke", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for line in help.lines() {
        let opt = line.trim_start();
        if opt.starts_with("--") && opt.to_ascii_lowercase().contains("password") {
            let head = opt.split("  ").next().unwrap().trim();
            assert!(
                head == "--reset-password"
                    || head.ends_with("<VAR>")
                    || head.ends_with("<CMD>")
                    || head.ends_with("<DIR>"),
                "option takes a password? {head:?}"
            );
        }
    }
    for flag in [
        "--password",
        "--bind-password",
        "--winrm-password",
        "--old-password",
        "--new-password",
    ] {
        let out = common::command()
            .args(["revoke", flag, "Hunter2-Hunter2!", "--user", "bob"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unexpected argument"), "{flag}: {err}");
    }
}

/// `--help` documents the exit codes (the README documents the same table).
#[test]
fn help_documents_the_exit_codes() {
    for args in [
        &["--help"][..],
        &["revoke", "--help"],
        &["resume", "--help"],
    ] {
        let out = common::command().args(args).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        for line in [
            "0    revoked and proven",
            "1    failed",
            "2    bad input",
            "3    partial",
            "130  interrupted",
        ] {
            assert!(help.contains(line), "{args:?}: no {line:?} in\n{help}");
        }
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(exch_revoke_cli::exit::EXIT_CODES_HELP),
        "README's exit codes differ from --help"
    );
}
