//! Starts a lab fleet of simulated Exchange servers and serves until Ctrl-C.
//!
//! ```text
//! cargo run --example lab                          # in-memory directory, demo user
//! EXCH_REVOKE_AD_ENV=target/samba-ad/ad.env \
//!   cargo run --example lab -- --servers 3 --legacy 1
//! ```
//!
//! With `EXCH_REVOKE_AD_ENV` (an `ad.env` written by `scripts/samba-ad.sh`) the servers
//! authenticate against that Samba AD DC (every cache miss is a real LDAP bind), are registered
//! as `msExchExchangeServer` objects, and a demo user is created there; otherwise an in-memory
//! directory is used. Prints ONE JSON document on stdout — the WinRM endpoints and credentials,
//! the logon URLs, the demo user — and logs to stderr (`RUST_LOG=debug` for more).

use std::error::Error;
use std::io::Write as _;
use std::sync::Arc;

use clap::Parser;
use exch_directory::{Directory, InMemoryDirectory};
use exch_lab::fleet::{Fleet, FleetBuilder, ServerSpec};
use exch_samba::SambaAd;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

/// Start a fleet of simulated Exchange servers on 127.0.0.1.
#[derive(Debug, Parser)]
struct Args {
    /// Exchange 2019 servers (EX01, EX02, …).
    #[arg(long, default_value_t = 2)]
    servers: usize,
    /// Exchange 2010 servers (EX14-01, …).
    #[arg(long, default_value_t = 0)]
    legacy: usize,
    /// Lab seconds per real second (token lifetimes run this much faster).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Password of the demo user.
    #[arg(long, default_value = "Demo-Passw0rd!")]
    user_password: String,
}

/// The directory side: what the fleet authenticates against, and the demo user.
struct Lab {
    kind: String,
    directory: Arc<dyn Directory>,
    user_upn: String,
    user_sam: String,
    /// Samba only: the DC, and the demo user's DN to delete on exit.
    samba: Option<(&'static SambaAd, String)>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if args.servers + args.legacy == 0 {
        return Err("nothing to start: --servers and --legacy are both 0".into());
    }
    let password = SecretString::from(args.user_password.clone());
    let mut builder = Fleet::builder()
        .servers(args.servers, ServerSpec::exchange_2019("EX"))
        .servers(args.legacy, ServerSpec::exchange_2010("EX14-"))
        .time_scale(args.time_scale);
    let lab = match std::env::var_os(exch_samba::AD_ENV_VAR) {
        Some(path) => {
            let ad: &'static SambaAd = Box::leak(Box::new(SambaAd::from_env_file(
                std::path::Path::new(&path),
            )?));
            let (lab, b) = samba(ad, builder, &password).await?;
            builder = b;
            lab
        }
        None => {
            let dir = InMemoryDirectory::new();
            let sam = "demo";
            let upn = "demo@lab.example.test";
            dir.add_user(sam, upn, password.expose_secret());
            builder = builder.registrar(dir.clone());
            Lab {
                kind: "in-memory".into(),
                directory: Arc::new(dir),
                user_upn: upn.into(),
                user_sam: format!("LAB\\{sam}"),
                samba: None,
            }
        }
    };
    // Every server: WinRM as Windows at its defaults on http:// (NTLM, sealed), plus an HTTPS
    // listener with a certificate from the lab's own CA (written next to the JSON's path).
    let fleet = builder
        .directory(Arc::clone(&lab.directory))
        .winrm_https(true)
        .build()
        .await?;
    let ca_path = std::env::temp_dir().join(format!("exch-lab-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_path, fleet.winrm_ca_pem().unwrap_or_default())?;

    let servers: Vec<_> = fleet
        .servers()
        .iter()
        .map(|s| {
            let ex = s.exchange_server();
            let base = s.base_url();
            json!({
                "name": ex.name,
                "fqdn": ex.fqdn,
                "version": ex.version.map(|v| v.to_string()),
                "roles": ex.roles.names(),
                "site": ex.site,
                "winrm_url": s.winrm_url(),
                "winrm_https_url": s.winrm_https_url(),
                "base_url": base,
                "logon": {
                    "owa_form": format!("{base}/owa/auth.owa"),
                    "ews": format!("{base}/EWS/Exchange.asmx"),
                    "eas": format!("{base}/Microsoft-Server-ActiveSync"),
                    "mapi": s.iis().pool_for(exch_core::Protocol::Mapi).map(|_| format!("{base}/mapi/emsmdb")),
                    "rpchttp": format!("{base}/rpc/rpcproxy.dll"),
                },
            })
        })
        .collect();
    let doc = json!({
        "directory": lab.kind,
        "time_scale": args.time_scale,
        "winrm": {
            "auth": "NTLM (Negotiate), message encryption required, as Windows at its defaults; Basic refused",
            "https_ca_file": ca_path.display().to_string(),
            "user": fleet.winrm_user(),
            "password": fleet.winrm_password().expose_secret(),
        },
        "endpoints": fleet.endpoints(),
        "user": {
            "upn": lab.user_upn,
            "down_level": lab.user_sam,
            "password": password.expose_secret(),
        },
        "servers": servers,
    });
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &doc)?;
    writeln!(stdout)?;
    stdout.flush()?;
    drop(stdout);

    tracing::info!("serving {} servers; Ctrl-C to stop", fleet.servers().len());
    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping");
    fleet.shutdown().await;
    let _ = std::fs::remove_file(&ca_path);
    if let Some((ad, user_dn)) = lab.samba {
        // Leave the shared DC as we found it: other suites discover its Exchange servers.
        ad.remove_exchange_servers(fleet.servers().iter().map(|s| s.name()))
            .await?;
        ad.delete(&user_dn).await?;
        tracing::info!("removed the demo user and the server objects from the directory");
    }
    Ok(())
}

async fn samba(
    ad: &'static SambaAd,
    builder: FleetBuilder,
    password: &SecretString,
) -> Result<(Lab, FleetBuilder), Box<dyn Error>> {
    let env = ad.env();
    let directory = env.directory().base_dn(env.base_dn.clone()).build().await?;
    let sam = SambaAd::unique_name("demo");
    let user = ad.create_user(&sam, password).await?;
    // The registrar replaces an object a previous run left behind.
    let builder = builder
        .dns_domain(env.dns_domain())
        .registrar(ad.registrar());
    let lab = Lab {
        kind: format!("samba ({})", env.url_ldaps),
        directory: Arc::new(directory),
        user_upn: user.upn,
        user_sam: format!("{}\\{}", env.domain, user.sam),
        samba: Some((ad, user.dn)),
    };
    Ok((lab, builder))
}
