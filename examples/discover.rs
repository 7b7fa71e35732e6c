//! `discover`: what exch-revoke would act on — Exchange servers (version, roles, site), domain
//! controllers, and each server's `UserTokenTTL` and application pools.
//!
//! ```text
//! EXCH_REVOKE_BIND_PASSWORD=… EXCH_REVOKE_WINRM_PASSWORD=… cargo run --example discover -- \
//!     --ldap-url ldaps://dc1.corp.example:636 --ca-file corp-ca.pem \
//!     --bind-user svc-revoke@corp.example --winrm-user 'CORP\svc-revoke'
//! ```
//! Without `--winrm-user`, only the directory is read.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::{Parser, ValueEnum};
use exch_directory::{Directory, LdapDirectory};
use exch_iis::{CacheFlusher, WinRmAuth, WinRmFlusher};
use secrecy::SecretString;
use std::path::PathBuf;
use std::process::ExitCode;

/// List Exchange servers, domain controllers, token-cache settings and pools.
#[derive(Debug, Parser)]
struct Args {
    /// LDAP URL (ldaps://dc:636).
    #[arg(long)]
    ldap_url: String,
    /// CA certificate (PEM) of the DC.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Upgrade ldap:// with StartTLS.
    #[arg(long)]
    starttls: bool,
    /// Bind user; password from EXCH_REVOKE_BIND_PASSWORD or a prompt.
    #[arg(long)]
    bind_user: String,
    /// WinRM user (password from EXCH_REVOKE_WINRM_PASSWORD or a prompt); omit to skip WinRM.
    #[arg(long)]
    winrm_user: Option<String>,
    /// WinRM authentication: ntlm (default; sealed over HTTP), kerberos (needs --winrm-kdc and
    /// the user as user@REALM), basic (HTTPS only unless --allow-unencrypted-basic).
    #[arg(long, value_enum, default_value = "ntlm")]
    winrm_auth: AuthArg,
    /// The KDC (a domain controller, host[:port]) for --winrm-auth kerberos.
    #[arg(long, value_name = "HOST")]
    winrm_kdc: Option<String>,
    /// WinRM over HTTPS (5986).
    #[arg(long)]
    winrm_https: bool,
    /// CA certificate (PEM) that issued the WinRM HTTPS certificates; only it is trusted.
    #[arg(long, value_name = "PEM")]
    winrm_ca_file: Option<PathBuf>,
    /// Allow Basic over plain HTTP (the lab in its Basic opt-in mode only).
    #[arg(long)]
    allow_unencrypted_basic: bool,
    /// Per-server WinRM URL, NAME=URL (repeatable; the lab's ports).
    #[arg(long, value_name = "NAME=URL")]
    winrm_endpoint: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AuthArg {
    Ntlm,
    Kerberos,
    Basic,
}

fn secret(var: &str, prompt: &str) -> Result<SecretString, String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
        _ => rpassword::prompt_password(prompt)
            .map(SecretString::from)
            .map_err(|e| format!("set {var} (no terminal to prompt on: {e})")),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut b = LdapDirectory::builder()
        .url(&args.ldap_url)
        .bind(
            &args.bind_user,
            secret("EXCH_REVOKE_BIND_PASSWORD", "LDAP password: ")?,
        )
        .starttls(args.starttls);
    if let Some(ca) = &args.ca_file {
        b = b.ca_file(ca);
    }
    let dir = b.build().await.map_err(|e| e.to_string())?;
    println!("Domain controllers:");
    for dc in dir.domain_controllers().await.map_err(|e| e.to_string())? {
        println!(
            "  {:<16} {:<40} site {}",
            dc.name,
            dc.dns_host_name,
            dc.site.as_deref().unwrap_or("?")
        );
    }
    let servers = dir.exchange_servers().await.map_err(|e| e.to_string())?;
    println!("Exchange servers:");
    for s in &servers {
        let v = s
            .version
            .map(|v| format!("{} {v}", v.product()))
            .unwrap_or_else(|| "version ?".into());
        println!(
            "  {:<16} {:<36} {:<26} {:<28} site {}",
            s.name,
            s.fqdn,
            v,
            s.roles.to_string(),
            s.site.as_deref().unwrap_or("?")
        );
    }
    let Some(user) = args.winrm_user else {
        return Ok(());
    };
    let mut w = WinRmFlusher::builder()
        .auth(match args.winrm_auth {
            AuthArg::Ntlm => WinRmAuth::Ntlm,
            AuthArg::Kerberos => WinRmAuth::Kerberos,
            AuthArg::Basic => WinRmAuth::Basic,
        })
        .https(args.winrm_https)
        .allow_unencrypted_basic(args.allow_unencrypted_basic)
        .credentials(
            user,
            secret("EXCH_REVOKE_WINRM_PASSWORD", "WinRM password: ")?,
        );
    for p in &args.winrm_endpoint {
        let (n, u) = p
            .split_once('=')
            .ok_or_else(|| format!("--winrm-endpoint {p:?}: expected NAME=URL"))?;
        w = w.endpoint(n, u);
    }
    if let Some(kdc) = &args.winrm_kdc {
        w = w.kdc(kdc);
    }
    if let Some(ca) = &args.winrm_ca_file {
        w = w.ca_file(ca);
    }
    let flusher = w.build().map_err(|e| e.to_string())?;
    for s in servers.iter().filter(|s| !s.is_edge()) {
        println!("{}: WinRM {}", s.name, flusher.method_for(s));
        match flusher.token_cache(s).await {
            Ok(t) => println!(
                "{}: UserTokenTTL {}",
                s.name,
                match t.configured {
                    None => format!("not set (IIS default {} s)", t.effective_ttl().as_secs()),
                    Some(d) if d.is_zero() => "0 (cached tokens NEVER expire)".into(),
                    Some(d) => format!("{} s", d.as_secs()),
                }
            ),
            Err(e) => println!("{}: {e}", s.name),
        }
        match flusher.app_pools(s).await {
            Ok(pools) => {
                for p in pools {
                    let pids: Vec<String> = p
                        .workers
                        .iter()
                        .map(|w| format!("pid {} since {}", w.pid, w.started))
                        .collect();
                    println!(
                        "    {:<40} {:?} {}",
                        p.name.as_str(),
                        p.state,
                        pids.join(", ")
                    );
                }
            }
            Err(e) => println!("    pools: {e}"),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
