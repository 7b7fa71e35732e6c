//! `revoke`: the command-line tool for real Active Directory + Exchange (and the lab).
//!
//! ```text
//! export EXCH_REVOKE_BIND_PASSWORD=…  EXCH_REVOKE_WINRM_PASSWORD=…   # or be prompted
//! cargo run --example revoke -- \
//!     --ldap-url ldaps://dc1.corp.example:636 --ca-file corp-ca.pem \
//!     --bind-user svc-revoke@corp.example --winrm-user 'CORP\svc-revoke' \
//!     --user bob@corp.example --disable --reset-password --password-out bob.pw \
//!     --json report.json
//! ```
//!
//! Passwords never come from argv: environment variables or a prompt. Exit code 0 only when
//! the report says `Revoked` (or, with `--dry-run`, when the plan could be made).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::{Parser, ValueEnum};
use exch_directory::LdapDirectory;
use exch_iis::{FlushMethod, WinRmAuth, WinRmFlusher};
use exch_remediate::{
    Event, HttpProber, NewPassword, Outcome, Remediation, Report, Strategy, Timeouts,
};
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AuthArg {
    Basic,
    Ntlm,
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
    /// WinRM authentication.
    #[arg(long, value_enum, default_value = "ntlm")]
    winrm_auth: AuthArg,
    /// WinRM over HTTPS (5986).
    #[arg(long)]
    winrm_https: bool,
    /// WinRM port (default 5985, or 5986 with --winrm-https).
    #[arg(long)]
    winrm_port: Option<u16>,
    /// CA certificate for WinRM over HTTPS.
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
}

fn secret_from(var: &str, prompt: &str) -> Result<SecretString, String> {
    if let Ok(v) = std::env::var(var) {
        if !v.is_empty() {
            return Ok(SecretString::from(v));
        }
    }
    rpassword::prompt_password(prompt)
        .map(SecretString::from)
        .map_err(|e| {
            format!("no {var} in the environment and no terminal to prompt on ({e}); set {var}")
        })
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

fn write_private(path: &PathBuf, content: &str) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {} ({e}); choose a new file", path.display()))?;
    f.write_all(content.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn run(args: Args) -> Result<Outcome, String> {
    if !args.disable && !args.reset_password {
        return Err("nothing to do: pass --disable and/or --reset-password".into());
    }
    if args.reset_password
        && args.new_password_env.is_none()
        && args.password_out.is_none()
        && !args.dry_run
    {
        return Err("--reset-password generates a password: pass --password-out FILE so it is stored before the reset (or --new-password-env VAR)".into());
    }
    let bind_pw = secret_from(
        "EXCH_REVOKE_BIND_PASSWORD",
        &format!("LDAP password for {}: ", args.bind_user),
    )?;
    let winrm_pw = secret_from(
        "EXCH_REVOKE_WINRM_PASSWORD",
        &format!("WinRM password for {}: ", args.winrm_user),
    )?;
    let old_pw = if args.probe {
        Some(secret_from(
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
    for (name, url) in pairs(&args.winrm_endpoint, "--winrm-endpoint")? {
        winrm = winrm.endpoint(name, url);
    }
    let flusher = Arc::new(winrm.build().map_err(|e| e.to_string())?);
    if args.winrm_insecure {
        eprintln!("WARNING: WinRM certificates are NOT verified (--winrm-insecure)");
    }

    let strategy = match args.strategy {
        StrategyArg::Parallel => Strategy::Parallel {
            max_in_flight: args.max_in_flight,
        },
        StrategyArg::Rolling => Strategy::Rolling {
            batch: args.batch,
            pause: Duration::from_millis(args.pause_ms),
        },
    };
    let timeouts = Timeouts {
        converge: Duration::from_secs(args.converge_timeout),
        ..Timeouts::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut b = Remediation::builder()
        .directory(directory)
        .flusher(flusher)
        .user(&args.user)
        .strategy(strategy)
        .timeouts(timeouts)
        .events(tx);
    if args.disable {
        b = b.disable();
    }
    if args.reset_password {
        b = b.reset_password(match &args.new_password_env {
            Some(var) => NewPassword::Given(
                std::env::var(var)
                    .map(SecretString::from)
                    .map_err(|_| format!("--new-password-env: {var} is not set"))?,
            ),
            None => NewPassword::Generate,
        });
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
        let mut prober = HttpProber::new()?;
        for (name, url) in pairs(&args.http_base, "--http-base")? {
            prober = prober.base_url(name, url);
        }
        b = b.probe_old_password(Arc::new(prober), old);
    }
    if let Some(path) = &args.resume {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--resume {}: {e}", path.display()))?;
        let earlier: Report = serde_json::from_str(&text)
            .map_err(|e| format!("--resume {}: not a report: {e}", path.display()))?;
        b = b.resume(earlier);
    }
    let remediation = b.build().map_err(|e| e.to_string())?;
    let plan = remediation.plan().await.map_err(|e| e.to_string())?;
    println!("{}", plan.summary());
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
    if let (Some(pw), Some(path)) = (remediation.generated_password(), &args.password_out) {
        if args.new_password_env.is_none() {
            write_private(path, pw.expose_secret())?;
            println!(
                "new password written to {} (mode 0600) before the reset",
                path.display()
            );
        }
    }

    let bar = ProgressBar::new(plan.flushed_servers().count() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:<40} [{bar:30}] {pos}/{len} servers")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let progress = {
        let bar = bar.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
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
        })
    };
    let report = remediation.execute(&plan).await;
    drop(remediation);
    let _ = progress.await;
    bar.finish_and_clear();
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
