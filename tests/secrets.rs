//! Issue 8, secrets: no password used anywhere in a run — AD bind, WinRM, the user's old one,
//! a given new one, a generated one, and the wrong ones of the failing paths — appears in any
//! output: TRACE logs of every crate (ldap3, reqwest, hyper, rustls, sspi included),
//! `Debug` and `Display` of builders, directories, flushers, plans, reports and errors, the
//! report JSON. (The command-line tool's stdout/stderr, JSON report and journal are checked by
//! `crates/exch-revoke-cli/tests/secrets.rs` with the same forms, from `tests/leak/`.) Forms checked ([`FORMS`], 16, plus base64 of `user:pw` for every user in
//! play): plain; base64 of the UTF-8 and of the UTF-16LE bytes at all three alignments (a
//! password inside a larger blob such as an `-EncodedCommand` body or a Basic header); base64
//! of UTF-16LE `"pw"` (the `unicodePwd` wire form); percent-encoded with upper- and lower-case
//! hex; hex of the UTF-8 and UTF-16LE bytes in both cases; XML- and JSON-escaped. The test
//! passwords contain `& < > ' "` so that the escaped forms differ from the plain one.
//!
//! Also: the report names the security opt-outs. The library-level checks of plain LDAP
//! and of an untrusted CA live in `crates/exch-directory/tests/ldap_samba.rs`
//! (`reset_over_plain_ldap_is_refused_by_the_library`, `bad_service_credentials_and_untrusted_ca`).
//!
//! Samba-backed tests need `EXCH_REVOKE_AD_ENV` (skipped with a `SKIPPED:` line otherwise,
//! failed when `EXCH_REVOKE_REQUIRE_SAMBA=1`).
#![allow(clippy::unwrap_used)]

mod common;
mod leak;

use common::{secret, SambaFleet, WINRM_USER};
use exch_directory::{Directory, InMemoryDirectory, LdapDirectory, UserRef};
use exch_iis::{CacheFlusher, FlushMethod, WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_remediate::{HttpProber, NewPassword, Outcome, Remediation, Timeouts};
use exch_samba::SambaAd;
use leak::{assert_no_leak, FORMS};
use secrecy::{ExposeSecret, SecretString};
use std::io::Write;
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
