//! The problem and the fix, on an embedded lab, in a few seconds. No setup.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! An in-memory directory and three simulated Exchange servers (2019, 2016, 2010) on loopback,
//! speaking real WinRM and real HTTP logons: bob logs on to EWS → the admin disables bob in the
//! directory → bob still gets in (IIS's token cache) → exch-revoke disables, waits for the
//! DCs, recycles the caching pools over WinRM and probes with bob's password → refused everywhere.
#![allow(clippy::print_stdout)]

use exch_core::Protocol;
use exch_directory::{Directory, InMemoryDirectory, UserRef};
use exch_iis::{WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_remediate::{Event, HttpProber, Outcome, ProbeResult, Prober, Remediation, Strategy};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let user = "bob@lab.example.test";
    let password = SecretString::from("Old-Passw0rd!".to_owned());

    let dir = InMemoryDirectory::new();
    dir.add_user("bob", user, "Old-Passw0rd!");
    dir.add_domain_controller("DC1", Duration::ZERO);
    dir.add_domain_controller("DC2", Duration::from_millis(300)); // replication lag
    let winrm_password = SecretString::from("Lab-WinRM-Pass-1".to_owned());
    let fleet = Fleet::builder()
        .directory(Arc::new(dir.clone()))
        .registrar(dir.clone())
        .server(ServerSpec::exchange_2019("EX2019").recycle_latency(Duration::from_millis(150)))
        .server(ServerSpec::exchange_2016("EX2016").recycle_latency(Duration::from_millis(150)))
        .server(ServerSpec::exchange_2010("EX2010").recycle_latency(Duration::from_millis(150)))
        .winrm_credentials("LAB\\svc-revoke", winrm_password.clone())
        // Each server also gets an HTTPS listener with a certificate from the lab's own CA:
        // the logon probes go there, as they would to a real Exchange front end.
        .winrm_https(true)
        .build()
        .await?;
    println!(
        "lab: {} simulated Exchange servers, 2 domain controllers",
        fleet.servers().len()
    );

    // Probes trust only the lab's CA (as you would pass your enterprise CA).
    let lab_ca =
        reqwest::Certificate::from_pem(fleet.winrm_ca_pem().unwrap_or_default().as_bytes())?;
    let mut prober = HttpProber::with_client(
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(lab_ca)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?,
    )?;
    // WinRM as on a Windows server at its defaults: NTLM on http://…:5985, every body sealed.
    let mut flusher = WinRmFlusher::builder()
        .auth(WinRmAuth::Ntlm)
        .credentials("LAB\\svc-revoke", winrm_password);
    for s in fleet.servers() {
        let https = s
            .https_port()
            .ok_or("the lab server has no HTTPS listener")?;
        prober = prober.base_url(s.name(), format!("https://127.0.0.1:{https}"));
        flusher = flusher.endpoint(s.name(), s.winrm_url());
    }
    let flusher = Arc::new(flusher.build()?);
    let servers = fleet.exchange_servers();
    println!(
        "WinRM: {} (as a Windows server at its defaults requires)",
        flusher.method_for(&servers[0])
    );

    let logon = |label: &'static str| {
        let (prober, servers, password) = (prober.clone(), servers.clone(), password.clone());
        async move {
            let mut line = format!("{label:<44}");
            for s in &servers {
                let r = prober.probe(s, Protocol::Ews, user, &password).await;
                let verdict = match r {
                    ProbeResult::Accepted(_) => "IN",
                    ProbeResult::Refused(_) => "refused",
                    _ => "error",
                };
                line.push_str(&format!(" {}={verdict:<8}", s.name));
            }
            println!("{line}");
        }
    };

    logon("1. bob logs on to EWS:").await;
    let account = dir.find_account(&UserRef::parse(user)?).await?;
    dir.disable_account(&account).await?;
    logon("2. admin disables bob; bob logs on again:").await;
    println!("   ^ the problem: IIS serves bob from its token cache (15 min, sliding)\n");

    println!("3. exch-revoke: disable, converge, flush, verify");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let progress = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            match e {
                Event::StepStarted { step } => println!("   - {step:?}"),
                Event::DcConverged { user, dc, after } => println!(
                    "       {dc} shows the change of {user} after {} ms",
                    after.as_millis()
                ),
                Event::ServerFinished { server, proven } => {
                    println!(
                        "       {server}: {}",
                        if proven {
                            "pools recycled, new workers proven"
                        } else {
                            "NOT proven"
                        }
                    )
                }
                Event::Retry { target, error, .. } => println!("       retry {target}: {error}"),
                _ => {}
            }
        }
    });
    let remediation = Remediation::builder()
        .directory(Arc::new(dir.clone()))
        .flusher(flusher)
        .user(user)
        .disable()
        .strategy(Strategy::Parallel { max_in_flight: 64 })
        .probe_old_password(Arc::new(prober.clone()), password.clone())
        .events(tx)
        .build()?;
    let plan = remediation.plan().await?;
    let report = remediation.execute(&plan).await;
    drop(remediation);
    let _ = progress.await;
    println!();
    logon("4. bob logs on again:").await;
    println!("\n{}", report.summary());
    println!("done in {:.1} s", t0.elapsed().as_secs_f64());
    fleet.shutdown().await;
    if report.outcome != Outcome::Revoked {
        return Err(format!("expected Revoked, got {:?}", report.outcome).into());
    }
    Ok(())
}
