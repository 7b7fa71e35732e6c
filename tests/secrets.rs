//! Issue 8, secrets: no password used anywhere in a run — AD bind, WinRM, the user's old one,
//! a given new one, a generated one, and the wrong ones of the failing paths — appears in any
//! output: TRACE logs of every crate (ldap3, reqwest, hyper, rustls, sspi included),
//! `Debug` and `Display` of builders, directories, flushers, plans, reports and errors, the
//! report JSON, and the `revoke` CLI's stdout/stderr (at `RUST_LOG=trace`), its JSON report
//! and its journal. Forms checked ([`FORMS`], 16, plus base64 of `user:pw` for every user in
//! play): plain; base64 of the UTF-8 and of the UTF-16LE bytes at all three alignments (a
//! password inside a larger blob such as an `-EncodedCommand` body or a Basic header); base64
//! of UTF-16LE `"pw"` (the `unicodePwd` wire form); percent-encoded with upper- and lower-case
//! hex; hex of the UTF-8 and UTF-16LE bytes in both cases; XML- and JSON-escaped. The test
//! passwords contain `& < > ' "` so that the escaped forms differ from the plain one.
//!
//! Also: the CLI takes no password in argv; it refuses a reset over `ldap://` before
//! connecting; the report names the security opt-outs. The library-level checks of plain LDAP
//! and of an untrusted CA live in `crates/exch-directory/tests/ldap_samba.rs`
//! (`reset_over_plain_ldap_is_refused_by_the_library`, `bad_service_credentials_and_untrusted_ca`).
//!
//! Samba-backed tests need `EXCH_REVOKE_AD_ENV` (skipped with a `SKIPPED:` line otherwise,
//! failed when `EXCH_REVOKE_REQUIRE_SAMBA=1`).
#![allow(clippy::unwrap_used)]

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::{secret, SambaFleet, WINRM_USER};
use exch_directory::{Directory, InMemoryDirectory, LdapDirectory, UserRef};
use exch_iis::{CacheFlusher, FlushMethod, WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_remediate::{HttpProber, NewPassword, Outcome, Remediation, Timeouts};
use exch_samba::SambaAd;
use secrecy::{ExposeSecret, SecretString};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const WINRM_PW: &str = "WinRM<Lab>S3cret&q7";
const OLD_PW: &str = "Old'Us3r&Pass<w8";
const GIVEN_PW: &str = "Given\"N3w&Pass>k2";
const WRONG_WINRM_PW: &str = "Wr0ng&WinRM<Pw!z5";
const WRONG_BIND_PW: &str = "Wr0ng'B1nd&Pw!x4";
const PLAIN_RESET_PW: &str = "Pla1n<Reset&Pw!j6";

/// Named outputs of `no_password_in_logs_debug_errors_or_reports` (events and logs apart).
const OUTPUTS_NAMED: usize = 30;
/// Events of its two successful runs, at least (plan, steps, actions, servers, probes, …).
const EVENTS_AT_LEAST: usize = 20;

/// Everything the global TRACE subscriber wrote.
fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        // `try_init` also routes the `log` crate (ldap3, rustls, reqwest) into tracing.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

/// The forms searched for each password (names as in RELIABILITY.md); every one is
/// searched, and [`assert_no_leak`] counts the searches.
const FORMS: [&str; 16] = [
    "plain",
    "base64 (offset 0 mod 3)",
    "base64 (offset 1 mod 3)",
    "base64 (offset 2 mod 3)",
    "UTF-16LE base64 (offset 0 mod 3)",
    "UTF-16LE base64 (offset 1 mod 3)",
    "UTF-16LE base64 (offset 2 mod 3)",
    "unicodePwd base64",
    "percent-encoded, upper-case hex",
    "percent-encoded, lower-case hex",
    "hex, lower case",
    "hex, upper case",
    "UTF-16LE hex, lower case",
    "UTF-16LE hex, upper case",
    "XML-escaped",
    "JSON-escaped",
];

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// The base64 characters that `bytes` produce wherever they sit in a larger blob that starts
/// `offset` bytes earlier (mod 3): the characters of the groups made of `bytes` alone. A
/// password inside an `-EncodedCommand` body or a Basic header is found at any alignment.
fn base64_inside(bytes: &[u8], offset: usize) -> String {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(bytes);
    let enc = B64.encode(&padded);
    let first = offset.div_ceil(3) * 4;
    let last = (padded.len() / 3) * 4;
    enc[first..last].to_owned()
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Every form of `pw` that could plausibly leak (see [`FORMS`]); `users` are the names it is
/// used with (for `user:pw` in Basic headers, on top of the base64 alignments).
fn forms(pw: &str, users: &[&str]) -> Vec<(String, String)> {
    let mut f = vec![("plain".to_owned(), pw.to_owned())];
    for k in 0..3 {
        f.push((
            format!("base64 (offset {k} mod 3)"),
            base64_inside(pw.as_bytes(), k),
        ));
    }
    for k in 0..3 {
        f.push((
            format!("UTF-16LE base64 (offset {k} mod 3)"),
            base64_inside(&utf16(pw), k),
        ));
    }
    f.extend([
        (
            "unicodePwd base64".to_owned(),
            B64.encode(utf16(&format!("\"{pw}\""))),
        ),
        (
            "percent-encoded, upper-case hex".to_owned(),
            url_encode(pw, true),
        ),
        (
            "percent-encoded, lower-case hex".to_owned(),
            url_encode(pw, false),
        ),
        ("hex, lower case".to_owned(), hex(pw.as_bytes(), false)),
        ("hex, upper case".to_owned(), hex(pw.as_bytes(), true)),
        (
            "UTF-16LE hex, lower case".to_owned(),
            hex(&utf16(pw), false),
        ),
        ("UTF-16LE hex, upper case".to_owned(), hex(&utf16(pw), true)),
        ("XML-escaped".to_owned(), xml_escape(pw)),
        (
            "JSON-escaped".to_owned(),
            serde_json::to_string(pw).unwrap(),
        ),
    ]);
    assert_eq!(
        f.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        FORMS,
        "the forms searched are the forms listed"
    );
    for u in users {
        f.push((format!("Basic {u}:pw"), B64.encode(format!("{u}:{pw}"))));
    }
    f
}

fn url_encode(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ if upper => format!("%{b:02X}"),
            _ => format!("%{b:02x}"),
        })
        .collect()
}

/// Panics naming the first leak of any password in any text; returns the number of
/// (password, form, output) searches made.
fn assert_no_leak(texts: &[(&str, &str)], passwords: &[(&str, &str)], users: &[&str]) -> usize {
    let mut checked = 0;
    for (pw_name, pw) in passwords {
        assert!(pw.len() >= 12, "{pw_name}: too short to search for");
        for (form, needle) in forms(pw, users) {
            assert!(needle.len() >= 8, "{pw_name}: {form} needle too short");
            for (what, text) in texts {
                checked += 1;
                assert!(
                    !text.contains(&needle),
                    "{pw_name} leaked ({form}) in {what}:\n{}",
                    excerpt(text, &needle)
                );
            }
        }
    }
    assert_eq!(
        checked,
        passwords.len() * (FORMS.len() + users.len()) * texts.len()
    );
    checked
}

fn excerpt(text: &str, needle: &str) -> String {
    let i = text.find(needle).unwrap_or(0);
    let start = text[..i]
        .char_indices()
        .rev()
        .nth(300)
        .map_or(0, |(j, _)| j);
    text[start..(i + needle.len() + 100).min(text.len())].to_owned()
}

fn timeouts() -> Timeouts {
    Timeouts::default()
        .with_converge(Duration::from_secs(20))
        .with_converge_poll(Duration::from_millis(50))
        .with_per_server(Duration::from_secs(20))
        .with_directory(Duration::from_secs(15))
}

/// The library flow at TRACE against Samba, successes and failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_logs_debug_errors_or_reports() {
    log_buffer();
    let Some(ad) = SambaAd::require("secrets (Samba AD + lab fleet)") else {
        return;
    };
    let env = ad.env();
    let prefix = SambaAd::unique_name("S");
    let lab = SambaFleet::start(ad, &prefix, 2, Duration::from_millis(10), WINRM_PW).await;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |what: &str, text: String| out.push((what.to_owned(), text));

    let build_flusher = |pw: &str| {
        let mut f = WinRmFlusher::builder()
            .auth(WinRmAuth::Ntlm)
            .timeout(Duration::from_secs(20))
            .credentials(WINRM_USER, secret(pw));
        for s in lab.fleet.servers() {
            f = f.endpoint(s.name(), s.winrm_url());
        }
        f
    };
    let mut prober = HttpProber::new().unwrap();
    for s in lab.fleet.servers() {
        prober = prober.base_url(s.name(), s.base_url());
    }
    let flusher = Arc::new(build_flusher(WINRM_PW).build().unwrap());
    push("WinRmFlusher Debug", format!("{flusher:?}"));
    push("LdapDirectory Debug", format!("{:?}", lab.dir));

    // Two users: a given new password (disable + reset) and a generated one (reset only).
    let alice = ad
        .create_user(&SambaAd::unique_name("sa"), &secret(OLD_PW))
        .await
        .unwrap();
    let bob = ad
        .create_user(&SambaAd::unique_name("sb"), &secret(OLD_PW))
        .await
        .unwrap();
    let mut generated: Option<SecretString> = None;
    for (user, new) in [
        (&alice.upn, NewPassword::Given(secret(GIVEN_PW))),
        (&bob.upn, NewPassword::Generate),
    ] {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut b = Remediation::builder()
            .directory(lab.dir.clone())
            .flusher(flusher.clone())
            .user(user.clone())
            .reset_password(new)
            .timeouts(timeouts())
            .events(tx)
            .probe_old_password(Arc::new(prober.clone()), secret(OLD_PW));
        if user == &alice.upn {
            b = b.disable();
        }
        for s in lab.fleet.servers() {
            b = b.include_server(s.name());
        }
        push("RemediationBuilder Debug", format!("{b:?}"));
        let r = b.build().unwrap();
        if user == &bob.upn {
            generated = r.generated_password().cloned();
        }
        push("Remediation Debug", format!("{r:?}"));
        let plan = r.plan().await.unwrap();
        push("plan Debug", format!("{plan:?}"));
        push("plan JSON", serde_json::to_string(&plan).unwrap());
        push("plan summary", plan.summary());
        let report = r.execute(&plan).await;
        assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
        push("report Debug", format!("{report:?}"));
        push(
            "report JSON",
            serde_json::to_string_pretty(&report).unwrap(),
        );
        push("report summary", report.summary());
        drop(r);
        while let Some(e) = rx.recv().await {
            push(
                "event",
                format!("{e:?} {}", serde_json::to_string(&e).unwrap()),
            );
        }
    }
    let generated = generated.unwrap();
    // The new passwords are real (so the searches below look for the right strings).
    assert_eq!(ad.try_bind(&bob.upn, &generated).await.unwrap().rc, 0);

    // Failing paths: WinRM 401 (wrong password), a remediation whose flushes all fail,
    // a bad LDAP bind, a reset over plain ldap://, a logon with a wrong password.
    let wrong = Arc::new(build_flusher(WRONG_WINRM_PW).build().unwrap());
    let server = lab.fleet.exchange_servers().remove(0);
    let e = wrong
        .flush(&server, &FlushMethod::default())
        .await
        .unwrap_err();
    push("WinRM 401 Display", e.to_string());
    push("WinRM 401 Debug", format!("{e:?}"));
    let carol = ad
        .create_user(&SambaAd::unique_name("sc"), &secret(OLD_PW))
        .await
        .unwrap();
    let mut b = Remediation::builder()
        .directory(lab.dir.clone())
        .flusher(wrong.clone())
        .user(carol.upn.clone())
        .reset_password(NewPassword::Given(secret(GIVEN_PW)))
        .timeouts(timeouts())
        .retry(exch_remediate::RetryPolicy::none());
    for s in lab.fleet.servers() {
        b = b.include_server(s.name());
    }
    let r = b.build().unwrap();
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    assert!(
        report.summary().contains("Unauthenticated"),
        "{}",
        report.summary()
    );
    push(
        "failed report JSON",
        serde_json::to_string(&report).unwrap(),
    );
    push("failed report summary", report.summary());

    let e = env
        .directory()
        .bind(env.admin_bind.clone(), secret(WRONG_BIND_PW))
        .build()
        .await
        .unwrap_err();
    push("bad bind Display", e.to_string());
    push("bad bind Debug", format!("{e:?}"));
    let refused = LdapDirectory::builder()
        .url(env.url_ldap.clone())
        .bind(env.admin_bind.clone(), env.admin_password.clone())
        .build()
        .await
        .unwrap_err();
    push("plaintext bind refused Display", refused.to_string());
    push("plaintext bind refused Debug", format!("{refused:?}"));
    match LdapDirectory::builder()
        .url(env.url_ldap.clone())
        .bind(env.admin_bind.clone(), env.admin_password.clone())
        .allow_plaintext_bind(true)
        .build()
        .await
    {
        Ok(plain) => {
            let a = plain
                .find_account(&UserRef::parse(&carol.upn).unwrap())
                .await
                .unwrap();
            let e = plain
                .reset_password(&a, &secret(PLAIN_RESET_PW))
                .await
                .unwrap_err();
            assert!(
                matches!(e, exch_directory::DirectoryError::InsecureTransport { .. }),
                "{e}"
            );
            push("plain reset Display", e.to_string());
            push("plain reset Debug", format!("{e:?}"));
            let notes = plain.security_notes();
            assert!(
                notes.iter().any(|n| n.contains("not encrypted")),
                "{notes:?}"
            );
        }
        // A DC started with AD_ALLOW_PLAIN_BIND=0 refuses the service bind itself.
        Err(e) => {
            assert!(
                matches!(e, exch_directory::DirectoryError::InsecureTransport { .. }),
                "{e}"
            );
            push("plain bind refused Display", e.to_string());
            push("plain bind refused Debug", format!("{e:?}"));
        }
    }
    let res = lab
        .dir
        .authenticate(&carol.upn, &secret(WRONG_BIND_PW))
        .await;
    push("wrong logon", format!("{res:?}"));
    push("fleet Debug", format!("{:?}", lab.fleet.servers()));

    lab.cleanup().await;
    for u in [&alice, &bob, &carol] {
        let _ = ad.delete(&u.dn).await;
    }

    let logs = captured_logs();
    // The capture works: dependencies' TRACE/DEBUG lines are in it.
    for target in ["sspi", "exch_iis", "exch_remediate", "hyper_util", "rustls"] {
        assert!(
            logs.contains(target),
            "no {target} lines in the TRACE capture"
        );
    }
    assert!(logs.contains("TRACE"), "no TRACE lines captured");
    let mut texts: Vec<(&str, &str)> = out.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    texts.push(("TRACE logs", &logs));
    let bind = env.admin_password.expose_secret().to_owned();
    let gen = generated.expose_secret().to_owned();
    let passwords = [
        ("AD bind password", bind.as_str()),
        ("WinRM password", WINRM_PW),
        ("old user password", OLD_PW),
        ("given new password", GIVEN_PW),
        ("generated password", gen.as_str()),
        ("wrong WinRM password", WRONG_WINRM_PW),
        ("wrong bind password", WRONG_BIND_PW),
        ("plain-ldap reset password", PLAIN_RESET_PW),
    ];
    let users = [
        WINRM_USER,
        "svc-revoke",
        env.admin_bind.as_str(),
        alice.upn.as_str(),
        bob.upn.as_str(),
        carol.upn.as_str(),
    ];
    // Every output is searched: 30 named ones (Debug / Display / JSON / summaries of every
    // object above, successes and failures), one per event of the two runs, and the logs.
    let events = texts.iter().filter(|(w, _)| *w == "event").count();
    assert_eq!(
        texts.len() - events - 1,
        OUTPUTS_NAMED,
        "outputs: {:?}",
        texts.iter().map(|(w, _)| *w).collect::<Vec<_>>()
    );
    assert!(events >= EVENTS_AT_LEAST, "only {events} events captured");
    let searches = assert_no_leak(&texts, &passwords, &users);
    eprintln!(
        "checked {} outputs ({OUTPUTS_NAMED} named, {events} events, the logs) and {} KiB of \
         TRACE logs for {} passwords in {} forms: {searches} searches",
        texts.len(),
        logs.len() / 1024,
        passwords.len(),
        FORMS.len() + users.len()
    );
}

/// The CLI at `RUST_LOG=trace`: a successful run with a generated password (stdout, stderr,
/// report JSON, journal, JSON progress) and a failing one (wrong WinRM password).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_cli_output() {
    let Some(ad) = SambaAd::require("secrets CLI (Samba AD + lab fleet)") else {
        return;
    };
    let bin = common::revoke_bin();
    let prefix = SambaAd::unique_name("C");
    let lab = SambaFleet::start(ad, &prefix, 2, Duration::from_millis(10), WINRM_PW).await;
    let user = ad
        .create_user(&SambaAd::unique_name("cl"), &secret(OLD_PW))
        .await
        .unwrap();
    let dir = common::scratch("secrets-cli");
    let pw_file = dir.join("new.pw");
    let report_file = dir.join("report.json");
    let journal_file = dir.join("journal.json");

    let run = |extra: &[&str], winrm_pw: &str| {
        let mut cmd = Command::new(&bin);
        lab.cli_env(&mut cmd);
        cmd.env("EXCH_REVOKE_WINRM_PASSWORD", winrm_pw)
            .env("EXCH_REVOKE_OLD_PASSWORD", OLD_PW)
            .env("RUST_LOG", "trace")
            .args(lab.cli_args())
            .args(["--user", &user.upn, "--probe"])
            .args(extra)
            .stdin(Stdio::null());
        cmd
    };
    let ok = tokio::task::spawn_blocking({
        let mut cmd = run(
            &[
                "--reset-password",
                "--password-out",
                pw_file.to_str().unwrap(),
                "--json",
                report_file.to_str().unwrap(),
                "--journal",
                journal_file.to_str().unwrap(),
                "--progress",
                "json",
            ],
            WINRM_PW,
        );
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&ok.stderr).into_owned();
    assert!(ok.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("TRACE"), "RUST_LOG=trace had no effect");
    assert!(
        stdout.contains("SECURITY") && stderr.contains("SECURITY"),
        "{stdout}"
    );
    // The probes go to the lab's http:// URLs: named before the run starts and in the report.
    assert!(
        stderr.contains("SECURITY: probe:") && stdout.contains("SECURITY: probe:"),
        "{stderr}"
    );
    let generated = std::fs::read_to_string(&pw_file).unwrap();
    assert_eq!(
        ad.try_bind(&user.upn, &secret(&generated))
            .await
            .unwrap()
            .rc,
        0
    );
    let report = std::fs::read_to_string(&report_file).unwrap();
    // WinRM ran as Windows' defaults require (NTLM, sealed): no WinRM opt-out to name.
    assert!(
        !report.contains("allow_unencrypted_basic") && report.contains("probe:"),
        "{report}"
    );
    let journal = std::fs::read_to_string(&journal_file).unwrap();

    // Failing: WinRM refuses the password (401 on every server).
    let bad = tokio::task::spawn_blocking({
        let mut cmd = run(&["--disable"], WRONG_WINRM_PW);
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    let bad_out = String::from_utf8_lossy(&bad.stdout).into_owned();
    let bad_err = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert_eq!(bad.status.code(), Some(2), "{bad_out}\n{bad_err}");
    assert!(bad_out.contains("Unauthenticated"), "{bad_out}");

    lab.cleanup().await;
    let _ = ad.delete(&user.dn).await;
    let bind = ad.env().admin_password.expose_secret().to_owned();
    let texts = [
        ("stdout", stdout.as_str()),
        ("stderr (TRACE logs, JSON progress)", stderr.as_str()),
        ("report JSON", report.as_str()),
        ("journal", journal.as_str()),
        ("failing run stdout", bad_out.as_str()),
        ("failing run stderr", bad_err.as_str()),
    ];
    let passwords = [
        ("AD bind password", bind.as_str()),
        ("WinRM password", WINRM_PW),
        ("old user password", OLD_PW),
        ("generated password", generated.as_str()),
        ("wrong WinRM password", WRONG_WINRM_PW),
    ];
    let users = [WINRM_USER, ad.env().admin_bind.as_str(), user.upn.as_str()];
    let searches = assert_no_leak(&texts, &passwords, &users);
    assert_eq!(searches, 5 * (FORMS.len() + 3) * 6);
    let _ = std::fs::remove_dir_all(&dir);
}

/// No argument takes a password: `--help` names none, and guesses are rejected by clap.
#[test]
fn cli_takes_no_password_in_argv() {
    let bin = common::revoke_bin();
    let help = Command::new(&bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let allowed = [
        "--reset-password",         // a switch
        "--new-password-env <VAR>", // the NAME of a variable
        "--password-out <FILE>",    // where to write the generated one
    ];
    let mut seen = Vec::new();
    for line in help.lines() {
        let opt = line.trim_start();
        if opt.starts_with("--") && opt.to_ascii_lowercase().contains("password") {
            let head = opt.split("  ").next().unwrap().trim();
            assert!(allowed.contains(&head), "option takes a password? {head:?}");
            seen.push(head.to_owned());
        }
    }
    assert_eq!(seen.len(), allowed.len(), "{help}");
    for flag in [
        "--password",
        "--bind-password",
        "--winrm-password",
        "--old-password",
        "--new-password",
    ] {
        let out = Command::new(&bin)
            .args([flag, "Hunter2-Hunter2!", "--user", "bob"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unexpected argument"), "{flag}: {err}");
    }
}

/// `--reset-password` with `ldap://` and no StartTLS: refused before any connection is made.
#[test]
fn cli_refuses_a_reset_over_plain_ldap_before_connecting() {
    let bin = common::revoke_bin();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    let out = Command::new(&bin)
        .args([
            "--ldap-url",
            &url,
            "--bind-user",
            "admin",
            "--winrm-user",
            "w",
        ])
        .args([
            "--user",
            "bob",
            "--reset-password",
            "--password-out",
            "/nonexistent/x",
        ])
        .env("EXCH_REVOKE_BIND_PASSWORD", "Bind-Pw-123456")
        .env("EXCH_REVOKE_WINRM_PASSWORD", "WinRM-Pw-123456")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not encrypted") && err.contains(&url), "{err}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the CLI connected to the directory"
    );
}

/// The report names the opt-outs (and only when used); no Samba needed.
#[tokio::test]
async fn report_names_the_security_opt_outs() {
    let dir = InMemoryDirectory::new();
    dir.add_user("dora", "dora@lab.example.test", OLD_PW);
    let fleet = Fleet::builder()
        .directory(Arc::new(dir.clone()))
        .registrar(dir.clone())
        .server(ServerSpec::exchange_2019("SN19"))
        .winrm_credentials(WINRM_USER, secret(WINRM_PW))
        // The opt-out under test needs a server that accepts it.
        .winrm_basic_over_http()
        .build()
        .await
        .unwrap();
    let s = &fleet.servers()[0];
    let flusher = WinRmFlusher::builder()
        .auth(WinRmAuth::Basic)
        .allow_unencrypted_basic(true)
        .credentials(WINRM_USER, secret(WINRM_PW))
        .endpoint(s.name(), s.winrm_url())
        .build()
        .unwrap();
    let r = Remediation::builder()
        .directory(Arc::new(dir.clone()))
        .flusher(Arc::new(flusher))
        .user("dora@lab.example.test")
        .disable()
        .timeouts(timeouts())
        .build()
        .unwrap();
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    assert_eq!(report.security.len(), 1, "{:?}", report.security);
    assert!(report.security[0].contains("allow_unencrypted_basic"));
    assert!(
        report.summary().contains("SECURITY: WinRM: Basic"),
        "{}",
        report.summary()
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["security"].as_array().unwrap().len(), 1);
    // An older report without the field still loads (resume).
    let mut old = json.clone();
    old.as_object_mut().unwrap().remove("security");
    let back: exch_remediate::Report = serde_json::from_value(old).unwrap();
    assert!(back.security.is_empty());
    fleet.shutdown().await;
}
