//! [`Settings`]: every connection setting, resolved from the profile, the flags (which win)
//! and the secret sources, and validated before anything is contacted.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use exch_directory::LdapDirectory;
use exch_iis::{FlushMethod, WinRmAuth, WinRmFlusher};
use exch_remediate::{HttpProber, Strategy, Timeouts};
use secrecy::SecretString;

use crate::error::CliError;
use crate::profile::{self, LoadedProfile, MethodArg, StrategyArg, WinRmAuthArg};

/// Default environment variable of the LDAP bind password.
pub const BIND_PASSWORD_ENV: &str = "EXCH_REVOKE_BIND_PASSWORD";
/// Default environment variable of the WinRM password.
pub const WINRM_PASSWORD_ENV: &str = "EXCH_REVOKE_WINRM_PASSWORD";

/// Connection flags, shared by every subcommand that connects; each overrides the profile.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Connection (override the profile)")]
pub struct ConnectionArgs {
    /// The profile: a [profile.NAME] section of the configuration file.
    #[arg(long, global = true, value_name = "NAME", env = "EXCH_REVOKE_PROFILE")]
    pub profile: Option<String>,
    /// The configuration file (default: the platform's config directory, e.g.
    /// ~/.config/exch-revoke/config.toml; or $EXCH_REVOKE_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// LDAP URL of a domain controller: ldaps://dc1.corp.example:636 (or ldap://… with
    /// --starttls).
    #[arg(long, global = true, value_name = "URL")]
    pub ldap_url: Option<String>,
    /// CA certificate (PEM) that signed the DC's certificate (default: the system's roots).
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Upgrade ldap:// with StartTLS.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub starttls: Option<bool>,
    /// INSECURE, labs only: bind over plain ldap:// (printed as a SECURITY line).
    #[arg(long, global = true)]
    pub allow_plaintext_bind: bool,
    /// Service account for LDAP (UPN, DOMAIN\user or DN).
    #[arg(long, global = true, value_name = "USER")]
    pub bind_user: Option<String>,
    /// Environment variable holding the bind password (default EXCH_REVOKE_BIND_PASSWORD).
    #[arg(long, global = true, value_name = "VAR")]
    pub bind_password_env: Option<String>,
    /// Command whose standard output is the bind password (e.g. a vault CLI).
    #[arg(long, global = true, value_name = "CMD")]
    pub bind_password_command: Option<String>,
    /// How to reach domain controller NAME for the convergence reads, NAME=URL (repeatable).
    #[arg(long = "dc-url", global = true, value_name = "NAME=URL")]
    pub dc_urls: Vec<String>,

    /// WinRM account (DOMAIN\user, or user@REALM for Kerberos).
    #[arg(long, global = true, value_name = "USER")]
    pub winrm_user: Option<String>,
    /// Environment variable holding the WinRM password (default EXCH_REVOKE_WINRM_PASSWORD).
    #[arg(long, global = true, value_name = "VAR")]
    pub winrm_password_env: Option<String>,
    /// Command whose standard output is the WinRM password.
    #[arg(long, global = true, value_name = "CMD")]
    pub winrm_password_command: Option<String>,
    /// WinRM authentication: ntlm (default; bodies sealed over HTTP), kerberos (needs
    /// --winrm-kdc), basic (HTTPS only unless --allow-unencrypted-basic).
    #[arg(long, global = true, value_enum)]
    pub winrm_auth: Option<WinRmAuthArg>,
    /// The KDC (a DC, host or host:port) for --winrm-auth kerberos.
    #[arg(long, global = true, value_name = "HOST")]
    pub winrm_kdc: Option<String>,
    /// WinRM over HTTPS (port 5986).
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub winrm_https: Option<bool>,
    /// WinRM port (default 5985, or 5986 with HTTPS).
    #[arg(long, global = true, value_name = "PORT")]
    pub winrm_port: Option<u16>,
    /// CA certificate (PEM) of the WinRM HTTPS certificates; when given, only it is trusted.
    #[arg(long, global = true, value_name = "PEM")]
    pub winrm_ca_file: Option<PathBuf>,
    /// INSECURE: accept any WinRM certificate (printed as a SECURITY line).
    #[arg(long, global = true)]
    pub winrm_insecure: bool,
    /// INSECURE, labs only: Basic over plain HTTP (printed as a SECURITY line).
    #[arg(long, global = true)]
    pub allow_unencrypted_basic: bool,
    /// WinRM URL of server NAME, NAME=URL (repeatable; e.g. the lab's ports).
    #[arg(long = "winrm-endpoint", global = true, value_name = "NAME=URL")]
    pub winrm_endpoints: Vec<String>,

    /// HTTP base URL of server NAME for the probes, NAME=URL (repeatable).
    #[arg(long = "http-base", global = true, value_name = "NAME=URL")]
    pub http_base: Vec<String>,
    /// CA certificate (PEM) for the probes' HTTPS (default: the system's roots).
    #[arg(long, global = true, value_name = "PEM")]
    pub probe_ca_file: Option<PathBuf>,

    /// Strategy: parallel (default) or rolling.
    #[arg(long, global = true, value_enum)]
    pub strategy: Option<StrategyArg>,
    /// Servers in flight at once (parallel; default 64).
    #[arg(long, global = true, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Servers per batch (rolling; default 1).
    #[arg(long, global = true, value_name = "N")]
    pub batch: Option<usize>,
    /// Pause between batches in milliseconds (rolling; default 0).
    #[arg(long, global = true, value_name = "MS")]
    pub pause_ms: Option<u64>,
    /// Seconds to wait for every DC to show the change (default 120).
    #[arg(long, global = true, value_name = "SECS")]
    pub converge_timeout: Option<u64>,
    /// Limit for the whole run in seconds; unfinished work is reported, not abandoned silently.
    #[arg(long, global = true, value_name = "SECS")]
    pub deadline: Option<u64>,
    /// Accounts changed at once in a batch (default: the library's).
    #[arg(long, global = true, value_name = "N")]
    pub accounts_in_flight: Option<usize>,
    /// How caches are flushed: recycle the token-caching pools (default) or iisreset /noforce.
    #[arg(long, global = true, value_enum)]
    pub method: Option<MethodArg>,
    /// Only these servers (repeatable; replaces the profile's list).
    #[arg(long, global = true, value_name = "SERVER")]
    pub include: Vec<String>,
    /// Never these servers (repeatable; replaces the profile's list).
    #[arg(long, global = true, value_name = "SERVER")]
    pub exclude: Vec<String>,
    /// Only servers in these AD sites (repeatable; replaces the profile's list).
    #[arg(long, global = true, value_name = "SITE")]
    pub site: Vec<String>,
}

/// Where a password comes from. Never the password itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable (else a prompt on a terminal).
    Env(String),
    /// A command whose standard output is the secret.
    Command(String),
}

/// A password, fetched once from its [`SecretSource`] when first needed.
pub struct Secret {
    what: String,
    source: SecretSource,
    value: OnceLock<SecretString>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("what", &self.what)
            .field("source", &self.source)
            .field("fetched", &self.value.get().is_some())
            .finish()
    }
}

impl Secret {
    /// `what` (e.g. "LDAP password for svc@corp") from `source`.
    pub fn new(what: impl Into<String>, source: SecretSource) -> Secret {
        Secret {
            what: what.into(),
            source,
            value: OnceLock::new(),
        }
    }

    /// Where it comes from.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// The secret: from the command, else the environment variable, else a prompt when
    /// stdin and stderr are a terminal.
    pub fn get(&self) -> Result<SecretString, CliError> {
        if let Some(v) = self.value.get() {
            return Ok(v.clone());
        }
        let v = match &self.source {
            SecretSource::Command(cmd) => run_secret_command(cmd, &self.what, &[])?,
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => SecretString::from(v),
                _ => prompt(&self.what, var)?,
            },
        };
        let _ = self.value.set(v.clone());
        Ok(v)
    }
}

/// Prompts for a secret on the terminal; refused when stdin or stderr is not one.
pub fn prompt(what: &str, var: &str) -> Result<SecretString, CliError> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(CliError::bad_input(
            what.to_owned(),
            format!("{var} is not set and there is no terminal to prompt on"),
            format!("set {var}, or name a command that prints it (…_password_command in the profile or --…-password-command)"),
        ));
    }
    rpassword::prompt_password(format!("{what}: "))
        .map(SecretString::from)
        .map_err(|e| {
            CliError::failed(
                Some(what.to_owned()),
                format!("cannot read it from the terminal: {e}"),
                None,
            )
        })
}

/// The platform's shell running `cmd` (`sh -c` / `cmd /C`).
pub fn shell_command(cmd: &str) -> std::process::Command {
    #[cfg(windows)]
    {
        let mut c = std::process::Command::new("cmd");
        c.arg("/C").arg(cmd);
        c
    }
    #[cfg(not(windows))]
    {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(cmd);
        c
    }
}

/// Runs `cmd` and takes its standard output (one trailing newline removed) as a secret.
pub fn run_secret_command(
    cmd: &str,
    what: &str,
    env: &[(&str, &str)],
) -> Result<SecretString, CliError> {
    let mut c = shell_command(cmd);
    c.stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().map_err(|e| {
        CliError::failed(
            Some(what.to_owned()),
            format!("cannot run the password command `{cmd}`: {e}"),
            None,
        )
    })?;
    if !out.status.success() {
        return Err(CliError::failed(
            Some(what.to_owned()),
            format!("the password command `{cmd}` failed ({})", out.status),
            Some("run it by hand to see why".into()),
        ));
    }
    let mut text = String::from_utf8(out.stdout).map_err(|_| {
        CliError::failed(
            Some(what.to_owned()),
            format!("the password command `{cmd}` printed something that is not UTF-8"),
            None,
        )
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(CliError::failed(
            Some(what.to_owned()),
            format!("the password command `{cmd}` printed nothing"),
            None,
        ));
    }
    Ok(SecretString::from(text))
}

/// LDAP settings.
#[derive(Debug)]
pub struct LdapSettings {
    /// ldaps:// or ldap:// URL.
    pub url: String,
    /// CA file (checked to hold a PEM certificate).
    pub ca_file: Option<PathBuf>,
    /// StartTLS on ldap://.
    pub starttls: bool,
    /// Insecure opt-out: simple bind over plain ldap://.
    pub allow_plaintext_bind: bool,
    /// Bind account.
    pub bind_user: String,
    /// Bind password.
    pub bind_password: Secret,
    /// Per-operation limit.
    pub timeout: Option<Duration>,
    /// Convergence-read URL per DC name.
    pub dc_urls: Vec<(String, String)>,
}

/// WinRM settings.
#[derive(Debug)]
pub struct WinRmSettings {
    /// Account.
    pub user: String,
    /// Password.
    pub password: Secret,
    /// Authentication.
    pub auth: WinRmAuthArg,
    /// KDC for Kerberos.
    pub kdc: Option<String>,
    /// HTTPS.
    pub https: bool,
    /// Port.
    pub port: Option<u16>,
    /// CA file for HTTPS.
    pub ca_file: Option<PathBuf>,
    /// Insecure opt-out: accept any certificate.
    pub insecure: bool,
    /// Insecure opt-out: Basic over HTTP.
    pub allow_unencrypted_basic: bool,
    /// Per-server URL overrides.
    pub endpoints: Vec<(String, String)>,
}

/// Probe settings.
#[derive(Debug, Default)]
pub struct ProbeSettings {
    /// Per-server base URL overrides.
    pub http_base: Vec<(String, String)>,
    /// CA file for the probes' HTTPS.
    pub ca_file: Option<PathBuf>,
}

/// How the job runs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Strategy.
    pub strategy: Strategy,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Whole-run limit.
    pub deadline: Option<Duration>,
    /// Accounts at once.
    pub accounts_in_flight: Option<usize>,
    /// Flush method (`None`: the library's default, recycling the catalog pools).
    pub method: Option<FlushMethod>,
    /// Only these servers.
    pub include: Vec<String>,
    /// Never these servers.
    pub exclude: Vec<String>,
    /// Only these sites.
    pub sites: Vec<String>,
}

/// Every connection setting, resolved and validated (nothing contacted yet).
#[derive(Debug)]
pub struct Settings {
    /// The profile used, if any: (name, file).
    pub profile: Option<(String, PathBuf)>,
    /// LDAP.
    pub ldap: LdapSettings,
    /// WinRM.
    pub winrm: WinRmSettings,
    /// Probes.
    pub probe: ProbeSettings,
    /// The job.
    pub run: RunSettings,
}

/// Where a setting came from, for error messages.
enum Origin<'a> {
    Flag(&'static str),
    Profile(&'a LoadedProfile, std::ops::Range<usize>, &'static str),
}

impl Origin<'_> {
    fn error(&self, problem: String, fix: String) -> CliError {
        match self {
            Origin::Flag(flag) => CliError::bad_input(*flag, problem, fix),
            Origin::Profile(p, span, key) => {
                p.error_at(span.clone(), format!("{key}: {problem}"), fix)
            }
        }
    }
}

fn pairs(list: &[String], flag: &'static str) -> Result<Vec<(String, String)>, CliError> {
    list.iter()
        .map(|p| {
            p.split_once('=')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| {
                    CliError::bad_input(
                        flag,
                        format!("{p:?} is not NAME=URL"),
                        format!("write it as {flag} EX1=https://ex1.corp.example:5986/wsman"),
                    )
                })
        })
        .collect()
}

fn map_pairs(m: &Option<BTreeMap<String, String>>) -> Vec<(String, String)> {
    m.iter()
        .flatten()
        .map(|(a, b)| (a.clone(), b.clone()))
        .collect()
}

/// Checks that `path` is a readable PEM file holding at least one certificate.
pub fn check_ca_file(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut reader = std::io::BufReader::new(bytes.as_slice());
    let mut n = 0;
    for item in rustls_pemfile::certs(&mut reader) {
        item.map_err(|e| format!("{} is not a PEM file: {e}", path.display()))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(())
}

fn ca_setting(
    flag: &Option<PathBuf>,
    flag_name: &'static str,
    from_profile: Option<&toml::Spanned<PathBuf>>,
    key: &'static str,
    profile: Option<&LoadedProfile>,
) -> Result<Option<PathBuf>, CliError> {
    let (path, origin) = match (flag, from_profile, profile) {
        (Some(p), _, _) => (p.clone(), Origin::Flag(flag_name)),
        (None, Some(s), Some(lp)) => (lp.path(s.get_ref()), Origin::Profile(lp, s.span(), key)),
        _ => return Ok(None),
    };
    check_ca_file(&path).map_err(|problem| {
        origin.error(
            problem,
            "point it at the PEM file of the CA that issued the server certificates (export it from your enterprise CA as Base-64 X.509)".into(),
        )
    })?;
    Ok(Some(path))
}

fn check_url(
    url: &str,
    origin: &Origin<'_>,
    schemes: &[&str],
    example: &str,
) -> Result<(), CliError> {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = schemes.iter().find_map(|s| lower.strip_prefix(s)) else {
        return Err(origin.error(
            format!("{url:?} must start with {}", schemes.join(" or ")),
            format!("write it as {example}"),
        ));
    };
    if rest.is_empty()
        || rest.starts_with('/')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(origin.error(
            format!("{url:?} has no host"),
            format!("write it as {example}"),
        ));
    }
    Ok(())
}

impl Settings {
    /// Reads the profile (if any) and merges the flags over it; checks every value (URLs,
    /// CA files, combinations) without contacting anything. Passwords are fetched later,
    /// when first needed ([`Settings::fetch_secrets`]).
    pub fn resolve(args: &ConnectionArgs) -> Result<Settings, CliError> {
        let loaded = profile::load(args.config.as_deref(), args.profile.as_deref())?;
        let lp = loaded.as_ref();
        let p = lp.map(|l| l.profile.clone()).unwrap_or_default();
        let missing = |what: &str, flag: &str, key: &str| -> CliError {
            match lp {
                Some(l) => CliError::at_line(
                    &l.file,
                    l.header_line(),
                    format!("[profile.{}] has no {key} and {flag} is not given", l.name),
                    format!("add `{key} = …` to the section, or pass {flag}"),
                ),
                None => CliError::bad_input(
                    flag.to_owned(),
                    format!("{what} is needed and no profile gives it"),
                    format!("pass {flag}, or use --profile NAME (see the README's \"For admins\")"),
                ),
            }
        };

        // LDAP
        let (url, origin) = match (&args.ldap_url, &p.ldap_url, lp) {
            (Some(u), _, _) => (u.clone(), Origin::Flag("--ldap-url")),
            (None, Some(u), Some(l)) => (
                u.get_ref().clone(),
                Origin::Profile(l, u.span(), "ldap_url"),
            ),
            _ => return Err(missing("the DC's LDAP URL", "--ldap-url", "ldap_url")),
        };
        check_url(
            &url,
            &origin,
            &["ldaps://", "ldap://"],
            "ldaps://dc1.corp.example:636",
        )?;
        let starttls = args.starttls.or(p.starttls).unwrap_or(false);
        let allow_plaintext_bind =
            args.allow_plaintext_bind || p.allow_plaintext_bind.unwrap_or(false);
        if url.to_ascii_lowercase().starts_with("ldap://") && !starttls && !allow_plaintext_bind {
            return Err(origin.error(
                format!("{url} is not encrypted: the bind password and password resets would cross the network in clear text"),
                "use ldaps://DC:636, or ldap:// with --starttls (starttls = true)".into(),
            ));
        }
        let ca_file = ca_setting(
            &args.ca_file,
            "--ca-file",
            p.ca_file.as_ref(),
            "ca_file",
            lp,
        )?;
        let bind_user = args
            .bind_user
            .clone()
            .or(p.bind_user.clone())
            .ok_or_else(|| missing("the LDAP service account", "--bind-user", "bind_user"))?;
        let bind_source = match (
            &args.bind_password_command,
            &args.bind_password_env,
            &p.bind_password_command,
            &p.bind_password_env,
        ) {
            (Some(c), _, _, _) => SecretSource::Command(c.clone()),
            (None, Some(v), _, _) => SecretSource::Env(v.clone()),
            (None, None, Some(c), _) => SecretSource::Command(c.clone()),
            (None, None, None, Some(v)) => SecretSource::Env(v.clone()),
            _ => SecretSource::Env(BIND_PASSWORD_ENV.into()),
        };
        let mut dc_urls = map_pairs(&p.domain_controllers);
        let dc_flags = pairs(&args.dc_urls, "--dc-url")?;
        if !dc_flags.is_empty() {
            dc_urls = dc_flags;
        }
        let ldap = LdapSettings {
            bind_password: Secret::new(format!("LDAP password for {bind_user}"), bind_source),
            url,
            ca_file,
            starttls,
            allow_plaintext_bind,
            bind_user,
            timeout: p.ldap_timeout_secs.map(Duration::from_secs),
            dc_urls,
        };

        // WinRM
        let winrm_user = args
            .winrm_user
            .clone()
            .or(p.winrm_user.clone())
            .ok_or_else(|| missing("the WinRM account", "--winrm-user", "winrm_user"))?;
        let winrm_source = match (
            &args.winrm_password_command,
            &args.winrm_password_env,
            &p.winrm_password_command,
            &p.winrm_password_env,
        ) {
            (Some(c), _, _, _) => SecretSource::Command(c.clone()),
            (None, Some(v), _, _) => SecretSource::Env(v.clone()),
            (None, None, Some(c), _) => SecretSource::Command(c.clone()),
            (None, None, None, Some(v)) => SecretSource::Env(v.clone()),
            _ => SecretSource::Env(WINRM_PASSWORD_ENV.into()),
        };
        let auth = args
            .winrm_auth
            .or(p.winrm_auth)
            .unwrap_or(WinRmAuthArg::Ntlm);
        let kdc = args.winrm_kdc.clone().or(p.winrm_kdc.clone());
        if auth == WinRmAuthArg::Kerberos && kdc.is_none() {
            return Err(missing(
                "the KDC for WinRM Kerberos",
                "--winrm-kdc",
                "winrm_kdc",
            ));
        }
        let https = args.winrm_https.or(p.winrm_https).unwrap_or(false);
        let winrm_ca = ca_setting(
            &args.winrm_ca_file,
            "--winrm-ca-file",
            p.winrm_ca_file.as_ref(),
            "winrm_ca_file",
            lp,
        )?;
        let insecure = args.winrm_insecure || p.winrm_insecure.unwrap_or(false);
        if insecure && winrm_ca.is_some() {
            return Err(CliError::bad_input(
                "--winrm-insecure",
                "both a WinRM CA file and --winrm-insecure are given",
                "drop --winrm-insecure (winrm_insecure): the CA file is what makes HTTPS safe",
            ));
        }
        let allow_unencrypted_basic =
            args.allow_unencrypted_basic || p.allow_unencrypted_basic.unwrap_or(false);
        let mut endpoints = map_pairs(&p.winrm_endpoints);
        let flag_endpoints = pairs(&args.winrm_endpoints, "--winrm-endpoint")?;
        if !flag_endpoints.is_empty() {
            endpoints = flag_endpoints;
        }
        for (_, u) in &endpoints {
            check_url(
                u,
                &Origin::Flag("--winrm-endpoint"),
                &["https://", "http://"],
                "EX1=https://ex1.corp.example:5986/wsman",
            )?;
        }
        let winrm = WinRmSettings {
            password: Secret::new(format!("WinRM password for {winrm_user}"), winrm_source),
            user: winrm_user,
            auth,
            kdc,
            https,
            port: args.winrm_port.or(p.winrm_port),
            ca_file: winrm_ca,
            insecure,
            allow_unencrypted_basic,
            endpoints,
        };

        // Probes
        let mut http_base = map_pairs(&p.http_base);
        let flag_bases = pairs(&args.http_base, "--http-base")?;
        if !flag_bases.is_empty() {
            http_base = flag_bases;
        }
        for (_, u) in &http_base {
            check_url(
                u,
                &Origin::Flag("--http-base"),
                &["https://", "http://"],
                "EX1=https://ex1.corp.example",
            )?;
        }
        let probe = ProbeSettings {
            http_base,
            ca_file: ca_setting(
                &args.probe_ca_file,
                "--probe-ca-file",
                p.probe_ca_file.as_ref(),
                "probe_ca_file",
                lp,
            )?,
        };

        // The job
        let positive = |v: Option<usize>, flag: &'static str| -> Result<Option<usize>, CliError> {
            match v {
                Some(0) => Err(CliError::bad_input(
                    flag,
                    "must be at least 1",
                    format!("pass {flag} 1 or more"),
                )),
                other => Ok(other),
            }
        };
        let max_in_flight =
            positive(args.max_in_flight.or(p.max_in_flight), "--max-in-flight")?.unwrap_or(64);
        let batch = positive(args.batch.or(p.batch), "--batch")?.unwrap_or(1);
        let strategy = match args
            .strategy
            .or(p.strategy)
            .unwrap_or(StrategyArg::Parallel)
        {
            StrategyArg::Parallel => Strategy::Parallel { max_in_flight },
            StrategyArg::Rolling => Strategy::Rolling {
                batch,
                pause: Duration::from_millis(args.pause_ms.or(p.pause_ms).unwrap_or(0)),
            },
        };
        let mut timeouts = Timeouts::default();
        if let Some(s) = args.converge_timeout.or(p.converge_timeout_secs) {
            timeouts = timeouts.with_converge(Duration::from_secs(s));
        }
        let deadline = match args.deadline.or(p.deadline_secs) {
            Some(0) => {
                return Err(CliError::bad_input(
                    "--deadline",
                    "must be at least 1 second",
                    "pass --deadline SECS (e.g. 900)",
                ))
            }
            d => d.map(Duration::from_secs),
        };
        let method = match args.method.or(p.method) {
            Some(MethodArg::Iisreset) => Some(FlushMethod::IisReset { force: false }),
            _ => None,
        };
        let or_profile = |flag: &Vec<String>, prof: &Option<Vec<String>>| -> Vec<String> {
            if flag.is_empty() {
                prof.clone().unwrap_or_default()
            } else {
                flag.clone()
            }
        };
        let run = RunSettings {
            strategy,
            timeouts,
            deadline,
            accounts_in_flight: positive(
                args.accounts_in_flight.or(p.accounts_in_flight),
                "--accounts-in-flight",
            )?,
            method,
            include: or_profile(&args.include, &p.include),
            exclude: or_profile(&args.exclude, &p.exclude),
            sites: or_profile(&args.site, &p.sites),
        };

        Ok(Settings {
            profile: loaded.map(|l| (l.name, l.file)),
            ldap,
            winrm,
            probe,
            run,
        })
    }

    /// Fetches both service passwords now (environment, command or prompt), so that a missing
    /// one is reported before anything is contacted.
    pub fn fetch_secrets(&self) -> Result<(), CliError> {
        self.ldap.bind_password.get()?;
        self.winrm.password.get()?;
        Ok(())
    }

    /// The security opt-outs in these settings, known before connecting (the backends add
    /// their own notes once built; see [`Settings::security_notes`]).
    pub fn security_notes(
        &self,
        flusher: Option<&WinRmFlusher>,
        directory: Option<&LdapDirectory>,
    ) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(d) = directory {
            notes.extend(exch_directory::Directory::security_notes(d));
        } else if self.ldap.allow_plaintext_bind
            && !self.ldap.starttls
            && self.ldap.url.to_ascii_lowercase().starts_with("ldap://")
        {
            notes.push(format!("LDAP: {} is not encrypted (--allow-plaintext-bind): the service account's bind password crosses the network in clear text", self.ldap.url));
        }
        if let Some(f) = flusher {
            notes.extend(exch_iis::CacheFlusher::security_notes(f));
        }
        notes
    }

    /// Connects to the DC (LDAPS, or StartTLS), binds and reads the RootDSE.
    pub async fn directory(&self) -> Result<Arc<LdapDirectory>, CliError> {
        let l = &self.ldap;
        let mut b = LdapDirectory::builder()
            .url(&l.url)
            .bind(&l.bind_user, l.bind_password.get()?)
            .starttls(l.starttls)
            .allow_plaintext_bind(l.allow_plaintext_bind);
        if let Some(ca) = &l.ca_file {
            b = b.ca_file(ca);
        }
        if let Some(t) = l.timeout {
            b = b.timeout(t);
        }
        for (name, url) in &l.dc_urls {
            b = b.domain_controller_url(name, url);
        }
        b.build().await.map(Arc::new).map_err(|e| {
            CliError::failed(
                Some(l.url.clone()),
                e.to_string(),
                Some(format!(
                    "check ldap_url, ca_file and bind_user{}, or run `exch-revoke profile check`",
                    self.profile_hint()
                )),
            )
        })
    }

    /// The WinRM flusher (validates its settings; connects on first use).
    pub fn flusher(&self) -> Result<Arc<WinRmFlusher>, CliError> {
        let w = &self.winrm;
        let mut b = WinRmFlusher::builder()
            .auth(match w.auth {
                WinRmAuthArg::Ntlm => WinRmAuth::Ntlm,
                WinRmAuthArg::Kerberos => WinRmAuth::Kerberos,
                WinRmAuthArg::Basic => WinRmAuth::Basic,
            })
            .https(w.https)
            .danger_accept_invalid_certs(w.insecure)
            .allow_unencrypted_basic(w.allow_unencrypted_basic)
            .credentials(&w.user, w.password.get()?);
        if let Some(p) = w.port {
            b = b.port(p);
        }
        if let Some(ca) = &w.ca_file {
            b = b.ca_file(ca);
        }
        if let Some(kdc) = &w.kdc {
            b = b.kdc(kdc);
        }
        for (name, url) in &w.endpoints {
            b = b.endpoint(name, url);
        }
        b.build().map(Arc::new).map_err(|e| {
            CliError::bad_input(
                format!("WinRM settings{}", self.profile_hint()),
                e.to_string(),
                "correct the winrm_* settings or flags",
            )
        })
    }

    /// The HTTP prober for the old-password probes.
    pub fn prober(&self) -> Result<Arc<HttpProber>, CliError> {
        let client = self.probe_http_client()?;
        let mut prober = HttpProber::with_client(client)
            .map_err(|e| CliError::failed(None, e.to_string(), None))?;
        for (name, url) in &self.probe.http_base {
            prober = prober.base_url(name, url);
        }
        Ok(Arc::new(prober))
    }

    /// The HTTP client of the probes (and of `profile check`'s HTTPS checks): the probes' CA
    /// file when given (then only it is trusted), 10 s per request, no redirects.
    pub fn probe_http_client(&self) -> Result<reqwest::Client, CliError> {
        let mut client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &self.probe.ca_file {
            let pem = std::fs::read(ca).map_err(|e| CliError::io(ca, "read it", &e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                CliError::bad_input(
                    ca.display().to_string(),
                    format!("not a PEM certificate bundle: {e}"),
                    "point --probe-ca-file at a PEM file",
                )
            })?;
            client = client.tls_built_in_root_certs(false);
            for c in certs {
                client = client.add_root_certificate(c);
            }
        }
        client.build().map_err(|e| {
            CliError::failed(
                None,
                format!("cannot build the HTTP client for the probes: {e}"),
                None,
            )
        })
    }

    fn profile_hint(&self) -> String {
        match &self.profile {
            Some((name, file)) => format!(" (profile {name} in {})", file.display()),
            None => String::new(),
        }
    }
}
