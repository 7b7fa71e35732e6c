//! `revoke`: the command-line tool for real Active Directory + Exchange (and the lab).
//!
//! ```text
//! export EXCH_REVOKE_BIND_PASSWORD=…  EXCH_REVOKE_WINRM_PASSWORD=…   # or be prompted
//! cargo run --example revoke -- \
//!     --ldap-url ldaps://dc1.corp.example:636 --ca-file corp-ca.pem \
//!     --bind-user svc-revoke@corp.example --winrm-user 'CORP\svc-revoke' \
//!     --user bob@corp.example --disable --reset-password --password-out bob.pw \
//!     --journal bob.journal --json report.json
//! ```
//!
//! Passwords never come from argv: environment variables or a prompt. Exit code 0 only when
//! the report says `Revoked` (or, with `--dry-run`, when the plan could be made).
//!
//! **Crash safety.** A generated password is written to `--password-out` (mode 0600, file and
//! directory fsynced) before the reset is sent. With `--journal FILE` the tool also records,
//! atomically, that file's path and every directory action and server it finishes; killed at
//! any point, the same command run again continues the job: the stored password is reused
//! (sent again if the reset was not confirmed; never replaced by a new one), applied actions
//! are not repeated, proven servers are skipped. Without a journal, an existing password file
//! is refused. `--resume REPORT` of a run that applied the reset neither resets again nor
//! writes `--password-out` (then optional): the account keeps the password that run stored.
//!
//! **Logs.** `RUST_LOG` (e.g. `RUST_LOG=debug`) logs to stderr; nothing is logged by default.
//! No password appears in the logs at any level, dependencies' TRACE included (tested by
//! `tests/secrets.rs`).
//!
//! Test hook: `EXCH_REVOKE_TEST_PAUSE_AT=POINT` makes the tool stop (forever) at POINT, so that
//! a test can kill it exactly there: `journal-written` (the journal names the password file,
//! which is not written yet), `password-written` (journal and password file written, the reset
//! not sent), `reset-sent` (the reset was sent and answered, the journal does not know yet).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod journal;
mod secrets;

use clap::{Parser, ValueEnum};
use exch_directory::{Directory, LdapDirectory};
use exch_iis::{CacheFlusher, FlushMethod, WinRmAuth, WinRmFlusher};
use exch_remediate::{
    Action, Event, HttpProber, NewPassword, Outcome, Remediation, Report, Strategy, Timeouts,
};
use indicatif::{ProgressBar, ProgressStyle};
use journal::Journal;
use secrecy::SecretString;
use secrets::NewPasswordPlan;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AuthArg {
    Basic,
    Ntlm,
    Kerberos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressArg {
    Bar,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StrategyArg {
    Parallel,
    Rolling,
}

/// Revoke a user's access to Exchange for real: change AD, wait for the DCs, flush every
/// server's IIS token caches, verify, report.
#[derive(Debug, Parser)]
#[command(name = "revoke", version)]
struct Args {
    /// The user: bob@corp.example, CORP\bob, bob or a DN.
    #[arg(long)]
    user: String,
    /// Disable the account.
    #[arg(long)]
    disable: bool,
    /// Reset the password (generated unless --new-password-env names a variable holding one).
    #[arg(long)]
    reset_password: bool,
    /// Environment variable that holds the new password.
    #[arg(long, value_name = "VAR")]
    new_password_env: Option<String>,
    /// Where to write a generated password (mode 0600) BEFORE the reset is sent.
    #[arg(long, value_name = "FILE")]
    password_out: Option<PathBuf>,

    /// LDAP URL: ldaps://dc:636, or ldap://dc:389 with --starttls.
    #[arg(long)]
    ldap_url: String,
    /// CA certificate (PEM) that signed the DC's certificate.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Upgrade ldap:// with StartTLS.
    #[arg(long)]
    starttls: bool,
    /// Bind user (UPN or DN); password from EXCH_REVOKE_BIND_PASSWORD or a prompt.
    #[arg(long)]
    bind_user: String,

    /// WinRM user; password from EXCH_REVOKE_WINRM_PASSWORD or a prompt.
    #[arg(long)]
    winrm_user: String,
    /// WinRM authentication: ntlm (default; every body sealed over HTTP, as Windows' defaults
    /// require), kerberos (needs --winrm-kdc and --winrm-user as user@REALM; sealed over HTTP),
    /// basic (HTTPS only unless --allow-unencrypted-basic).
    #[arg(long, value_enum, default_value = "ntlm")]
    winrm_auth: AuthArg,
    /// The KDC (a domain controller, host[:port], default port 88) for --winrm-auth kerberos.
    #[arg(long, value_name = "HOST")]
    winrm_kdc: Option<String>,
    /// WinRM over HTTPS (5986).
    #[arg(long)]
    winrm_https: bool,
    /// WinRM port (default 5985, or 5986 with --winrm-https).
    #[arg(long)]
    winrm_port: Option<u16>,
    /// CA certificate (PEM) that issued the WinRM HTTPS certificates (your enterprise CA);
    /// when given, only it is trusted.
    #[arg(long, value_name = "PEM")]
    winrm_ca_file: Option<PathBuf>,
    /// Accept any WinRM certificate (named in the output; do not use in production).
    #[arg(long)]
    winrm_insecure: bool,
    /// Allow Basic auth over plain HTTP (the lab; never on a real network).
    #[arg(long)]
    allow_unencrypted_basic: bool,
    /// Per-server WinRM URL override, NAME=URL (repeatable; the lab's ports).
    #[arg(long, value_name = "NAME=URL")]
    winrm_endpoint: Vec<String>,

    /// Probe every flushed server with the OLD password (from EXCH_REVOKE_OLD_PASSWORD or a prompt).
    #[arg(long)]
    probe: bool,
    /// Per-server HTTP base URL for probes, NAME=URL (repeatable; the lab's ports).
    #[arg(long, value_name = "NAME=URL")]
    http_base: Vec<String>,

    /// Only these servers (repeatable).
    #[arg(long)]
    include: Vec<String>,
    /// Never these servers (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
    /// Only servers in these AD sites (repeatable).
    #[arg(long)]
    site: Vec<String>,
    /// `iisreset /noforce` instead of recycling the caching pools (disconnects everyone).
    #[arg(long)]
    iisreset: bool,
    /// Strategy.
    #[arg(long, value_enum, default_value = "parallel")]
    strategy: StrategyArg,
    /// Servers in flight at once (parallel).
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Servers per batch (rolling).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Pause between batches in ms (rolling).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Seconds to wait for every DC to show the change.
    #[arg(long, default_value_t = 120)]
    converge_timeout: u64,

    /// Show the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the report (or the plan, with --dry-run) as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Continue from an earlier report: applied actions are not repeated, proven servers skipped.
    #[arg(long, value_name = "FILE")]
    resume: Option<PathBuf>,
    /// Crash safety: record progress here (atomically, after every directory action and
    /// server); if the file exists, continue the job it records. Run the same command again
    /// after a kill: the job completes and the stored password is reused, never replaced.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Progress display: a bar, or one JSON event per line on stderr (for scripts).
    #[arg(long, value_enum, default_value = "bar")]
    progress: ProgressArg,
}

fn pairs(list: &[String], flag: &str) -> Result<Vec<(String, String)>, String> {
    list.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| format!("{flag} {p:?}: expected NAME=URL"))
        })
        .collect()
}

/// One progress line on stderr (`--progress json`).
fn progress_line(value: &impl serde::Serialize) {
    if let Ok(line) = serde_json::to_string(value) {
        eprintln!("{line}");
    }
}

/// Test hook (see the module docs): stop forever at `point` when asked to.
async fn pause_if_asked(point: &str) {
    if std::env::var("EXCH_REVOKE_TEST_PAUSE_AT").as_deref() == Ok(point) {
        progress_line(&serde_json::json!({ "event": "paused", "at": point }));
        std::future::pending::<()>().await;
    }
}

async fn run(args: Args) -> Result<Outcome, String> {
    if !args.disable && !args.reset_password {
        return Err("nothing to do: pass --disable and/or --reset-password".into());
    }
    if args.reset_password
        && args.ldap_url.to_ascii_lowercase().starts_with("ldap://")
        && !args.starttls
    {
        return Err(format!(
            "password reset refused before connecting: {} is not encrypted; use ldaps:// or --starttls",
            args.ldap_url
        ));
    }
    if args.journal.is_some() && args.resume.is_some() {
        return Err("--journal continues the job it records; --resume is for a report of another run: pass one of them".into());
    }
    let earlier_journal = match &args.journal {
        Some(path) => Journal::load(path)?,
        None => None,
    };
    if let Some(j) = &earlier_journal {
        if j.user != args.user {
            return Err(format!(
                "the journal is for {:?}, not {:?}: use another --journal file for another job",
                j.user, args.user
            ));
        }
    }
    let earlier_report: Option<Report> = match (&earlier_journal, &args.resume) {
        (Some(j), _) => Some(j.report.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--resume {}: {e}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| format!("--resume {}: not a report: {e}", path.display()))?,
            )
        }
        (None, None) => None,
    };
    // `--resume` of a report in which the reset was applied: the account has the password that
    // run set (and stored); nothing is generated, written or sent.
    let reset_done_in_resumed_report = args
        .resume
        .as_deref()
        .filter(|_| earlier_report.as_ref().is_some_and(journal::reset_applied));
    if args.reset_password
        && args.new_password_env.is_none()
        && args.password_out.is_none()
        && !args.dry_run
        && reset_done_in_resumed_report.is_none()
    {
        return Err("--reset-password generates a password: pass --password-out FILE so it is stored before the reset (or --new-password-env VAR)".into());
    }

    let bind_pw = secrets::from_env_or_prompt(
        "EXCH_REVOKE_BIND_PASSWORD",
        &format!("LDAP password for {}: ", args.bind_user),
    )?;
    let winrm_pw = secrets::from_env_or_prompt(
        "EXCH_REVOKE_WINRM_PASSWORD",
        &format!("WinRM password for {}: ", args.winrm_user),
    )?;
    let old_pw = if args.probe {
        Some(secrets::from_env_or_prompt(
            "EXCH_REVOKE_OLD_PASSWORD",
            &format!("OLD password of {} (for the probe): ", args.user),
        )?)
    } else {
        None
    };

    let mut ldap = LdapDirectory::builder()
        .url(&args.ldap_url)
        .bind(&args.bind_user, bind_pw)
        .starttls(args.starttls);
    if let Some(ca) = &args.ca_file {
        ldap = ldap.ca_file(ca);
    }
    let directory = Arc::new(ldap.build().await.map_err(|e| e.to_string())?);

    let mut winrm = WinRmFlusher::builder()
        .auth(match args.winrm_auth {
            AuthArg::Basic => WinRmAuth::Basic,
            AuthArg::Ntlm => WinRmAuth::Ntlm,
            AuthArg::Kerberos => WinRmAuth::Kerberos,
        })
        .https(args.winrm_https)
        .danger_accept_invalid_certs(args.winrm_insecure)
        .allow_unencrypted_basic(args.allow_unencrypted_basic)
        .credentials(&args.winrm_user, winrm_pw);
    if let Some(p) = args.winrm_port {
        winrm = winrm.port(p);
    }
    if let Some(ca) = &args.winrm_ca_file {
        winrm = winrm.ca_file(ca);
    }
    if let Some(kdc) = &args.winrm_kdc {
        winrm = winrm.kdc(kdc);
    }
    for (name, url) in pairs(&args.winrm_endpoint, "--winrm-endpoint")? {
        winrm = winrm.endpoint(name, url);
    }
    let flusher = Arc::new(winrm.build().map_err(|e| e.to_string())?);
    let mut security = [directory.security_notes(), flusher.security_notes()].concat();
    for note in &security {
        eprintln!("SECURITY: {note}");
    }

    // The new password: generated and stored before the reset, or the one an interrupted run
    // of this job stored (never replaced).
    let mut store_in: Option<PathBuf> = None;
    let mut force_reset = false;
    let mut password_file = earlier_journal
        .as_ref()
        .and_then(|j| j.password_file.clone());
    let new_password = match (
        args.reset_password,
        &args.new_password_env,
        &args.password_out,
    ) {
        (false, _, _) => None,
        (true, _, _) if let Some(report) = reset_done_in_resumed_report => {
            println!(
                "{}",
                secrets::reset_done_earlier_note(
                    report,
                    args.password_out.as_deref(),
                    args.new_password_env.as_deref(),
                )
            );
            Some(NewPassword::Generate) // planned as done earlier: never sent, never written
        }
        (true, Some(var), _) => Some(NewPassword::Given(
            std::env::var(var)
                .map(SecretString::from)
                .map_err(|_| format!("--new-password-env: {var} is not set"))?,
        )),
        (true, None, None) => Some(NewPassword::Generate), // --dry-run only
        (true, None, Some(out)) => match secrets::plan_new_password(earlier_journal.as_ref(), out)?
        {
            NewPasswordPlan::Stored(pw) => {
                println!(
                    "continuing an interrupted job: the new password is the one stored in {} (kept, not replaced)",
                    out.display()
                );
                Some(NewPassword::Given(pw))
            }
            NewPasswordPlan::Done => Some(NewPassword::Generate), // never sent: done earlier
            NewPasswordPlan::GenerateAndStore { force } => {
                if force {
                    println!(
                        "the journal names {} as this job's password file but it is missing or empty: a new password is generated, stored there first, then set",
                        out.display()
                    );
                }
                store_in = Some(out.clone());
                password_file = Some(out.clone());
                force_reset = force;
                Some(NewPassword::Generate)
            }
        },
    };

    let strategy = match args.strategy {
        StrategyArg::Parallel => Strategy::Parallel {
            max_in_flight: args.max_in_flight,
        },
        StrategyArg::Rolling => Strategy::Rolling {
            batch: args.batch,
            pause: Duration::from_millis(args.pause_ms),
        },
    };
    let timeouts = Timeouts::default().with_converge(Duration::from_secs(args.converge_timeout));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut b = Remediation::builder()
        .directory(directory)
        .flusher(flusher.clone())
        .user(&args.user)
        .strategy(strategy)
        .timeouts(timeouts)
        .events(tx);
    if args.disable {
        b = b.disable();
    }
    if let Some(new) = new_password {
        b = b.reset_password(new);
    }
    if force_reset {
        b = b.force_reset();
    }
    if args.iisreset {
        b = b.method(FlushMethod::IisReset { force: false });
    }
    for s in &args.include {
        b = b.include_server(s);
    }
    for s in &args.exclude {
        b = b.exclude_server(s);
    }
    for s in &args.site {
        b = b.site(s);
    }
    if let Some(old) = old_pw {
        let mut prober = HttpProber::new().map_err(|e| e.to_string())?;
        for (name, url) in pairs(&args.http_base, "--http-base")? {
            prober = prober.base_url(name, url);
        }
        for note in exch_remediate::Prober::security_notes(&prober) {
            eprintln!("SECURITY: {note}");
            security.push(note);
        }
        b = b.probe_old_password(Arc::new(prober), old);
    }
    if let Some(earlier) = earlier_report.clone() {
        b = b.resume(earlier);
    }
    let remediation = b.build().map_err(|e| e.to_string())?;
    let plan = remediation.plan().await.map_err(|e| e.to_string())?;
    println!("{}", plan.summary());
    for planned in plan.flushed_servers() {
        println!(
            "  WinRM {}: {}",
            planned.server.name,
            flusher.method_for(&planned.server)
        );
    }
    if args.dry_run {
        if let Some(path) = &args.json {
            std::fs::write(
                path,
                serde_json::to_string_pretty(&plan).map_err(|e| e.to_string())?,
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        return Ok(Outcome::Revoked);
    }

    // Order: journal (names the password file) → password file (fsynced) → reset. A kill
    // between the first two leaves a journal naming a missing file: the rerun generates anew.
    let mut journal = args.journal.as_ref().map(|path| {
        (
            path.clone(),
            Journal::start(
                &args.user,
                &plan,
                earlier_report.as_ref(),
                password_file.clone(),
                security.clone(),
            ),
        )
    });
    if let Some((path, j)) = &journal {
        j.save(path)?;
    }
    pause_if_asked("journal-written").await;
    if let (Some(path), Some(pw)) = (&store_in, remediation.generated_password()) {
        secrets::write_private(path, pw)?;
        println!(
            "new password written to {} (mode 0600) before the reset",
            path.display()
        );
        if args.progress == ProgressArg::Json {
            progress_line(&serde_json::json!({ "event": "password_written", "file": path }));
        }
    }
    pause_if_asked("password-written").await;

    let bar = if args.progress == ProgressArg::Bar {
        let bar = ProgressBar::new(plan.flushed_servers().count() as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg:<40} [{bar:30}] {pos}/{len} servers")
                .map_err(|e| e.to_string())?
                .progress_chars("=> "),
        );
        Some(bar)
    } else {
        None
    };
    let progress = {
        let bar = bar.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if let Event::ActionRecorded { record, .. } = &e {
                    if record.action == Action::ResetPassword && record.outcome.is_some() {
                        pause_if_asked("reset-sent").await;
                    }
                }
                // Journal first: once a line says a step is done, the journal knows it.
                if let Some((path, j)) = &mut journal {
                    if j.apply(&e) {
                        if let Err(err) = j.save(path) {
                            eprintln!("warning: {err}");
                        }
                    }
                }
                let Some(bar) = &bar else {
                    progress_line(&e);
                    continue;
                };
                match e {
                    Event::StepStarted { step } => bar.set_message(format!("{step:?}")),
                    Event::ServerFinished { server, proven } => {
                        bar.inc(1);
                        if !proven {
                            bar.println(format!("  {server}: not proven"));
                        }
                    }
                    Event::Retry { target, error, .. } => {
                        bar.println(format!("  retry {target}: {error}"))
                    }
                    Event::Warning { message } => bar.println(format!("  warning: {message}")),
                    _ => {}
                }
            }
            journal
        })
    };
    let report = remediation.execute(&plan).await;
    drop(remediation);
    let journal = progress.await.ok().flatten();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some((path, mut j)) = journal {
        j.finish(&report);
        j.save(&path)?;
    }
    println!("{}", report.summary());
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(report.outcome)
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Ok(mut filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        // sspi's own TRACE spans print Kerberos authenticators (session sub-keys) with their
        // return values: keep them out unless RUST_LOG names sspi explicitly.
        if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("sspi")) {
            if let Ok(d) = "sspi=debug".parse() {
                filter = filter.add_directive(d);
            }
        }
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    }
    match run(Args::parse()).await {
        Ok(Outcome::Revoked) => ExitCode::SUCCESS,
        Ok(other) => {
            eprintln!("outcome: {other:?} (not revoked)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
