//! The problem and the fix, on an embedded lab, in a few seconds. No setup.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! An in-memory directory and three simulated Exchange servers (2019, 2016, 2010) on loopback,
//! speaking real WinRM and real HTTP logons: bob logs on to ActiveSync → the admin disables bob in the
//! directory → bob still gets in (IIS's token cache) → exch-revoke disables, waits for the
//! DCs, recycles the caching pools over WinRM and probes with bob's password → refused everywhere.
//! Beyond the token cache, the same run contains bob's mailbox through the lab's Exchange
//! Management Shell: his phone wiped (account only) before it is blocked, every protocol
//! refused, the attacker's forwarding inbox rule disabled — and the lab's own store shows it.
#![allow(clippy::print_stdout)]

use exch_core::Protocol;
use exch_directory::{Directory, InMemoryDirectory, UserRef};
use exch_iis::{WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_lab::mailbox::{InboxRule, Mailbox, MobileDevice};
use exch_mailbox::{ItemResult, RuleAction, WinRmMailbox, WipeMode};
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
        .mailbox(Mailbox::new("bob", user))
        .build()
        .await?;
    // What the attacker holds beyond the token cache: a phone partnership and an inbox rule.
    let phone = fleet.mailboxes().add_device(
        user,
        MobileDevice::new("APPLF17XQ2K8", "iPhone").friendly_name("Bob's iPhone"),
    )?;
    let rule = InboxRule::new("Invoice sync").forward_to(["loot@attacker.example"]);
    let rule_id = fleet.mailboxes().add_inbox_rule(user, rule)?;
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
    let flusher = flusher.build()?;
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
                let r = prober.probe(s, Protocol::Eas, user, &password).await;
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

    logon("1. bob logs on to ActiveSync:").await;
    let account = dir.find_account(&UserRef::parse(user)?).await?;
    dir.disable_account(&account).await?;
    logon("2. admin disables bob; bob logs on again:").await;
    println!("   ^ the problem: IIS serves bob from its token cache (15 min, sliding);");
    println!("     his phone still syncs, the attacker's inbox rule still forwards his mail\n");

    println!("3. exch-revoke: contain the mailbox, disable, converge, flush, verify");
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
                Event::MailboxRecorded { record, .. } => {
                    let done = |items: &[ItemResult]| items.iter().filter(|i| i.is_done()).count();
                    let wiped = record.wipe.as_ref().map_or(0, |w| done(&w.devices));
                    let blocked = record.blocked.as_ref().map_or(0, |b| b.added().len());
                    let refused = record.lockdown.as_ref().map_or(0, |l| {
                        l.before.open_protocols().len() - l.after.open_protocols().len()
                    });
                    let rules = record.rules_changed.as_ref().map_or(0, |c| done(&c.rules));
                    println!(
                        "       {}: {wiped} device(s) wiped, then {blocked} blocked; \
                         {refused} protocols refused; {rules} inbox rule(s) disabled",
                        record.server
                    );
                    for e in &record.errors {
                        println!("       mailbox error: {e}");
                    }
                }
                Event::Retry { target, error, .. } => println!("       retry {target}: {error}"),
                _ => {}
            }
        }
    });
    let remediation = Remediation::builder()
        .directory(Arc::new(dir.clone()))
        .flusher(Arc::new(flusher.clone()))
        // The mailbox step runs over the same WinRM transport and sessions as the flush.
        .mailbox(Arc::new(WinRmMailbox::new(flusher.clone())))
        .wipe_devices(WipeMode::AccountOnly)
        .lockdown()
        .remove_forwarding(RuleAction::Disable)
        .user(user)
        .disable()
        .strategy(Strategy::Parallel { max_in_flight: 64 })
        .probe_old_password(Arc::new(prober.clone()), password.clone())
        .events(tx)
        .build()?;
    let plan = remediation.plan().await?;
    if let Some(mailbox) = &plan.mailbox {
        // One line in the plan; here one clause per line.
        println!(
            "   plan: {}",
            mailbox.impact().replace("; ", ";\n         ")
        );
    }
    let report = remediation.execute(&plan).await;
    drop(remediation);
    let _ = progress.await;
    println!();
    logon("4. bob logs on again:").await;

    // The independent truth: what the lab's own mailbox store recorded. (The report's
    // residual section, in the summary below, says the same in its own words.)
    println!("\n5. beyond the token cache, as the lab's own mailbox store saw it:");
    let bob = fleet
        .mailboxes()
        .mailbox(user)
        .ok_or("bob's mailbox is gone")?;
    let device = bob.devices.iter().find(|d| d.identity == phone);
    let wiped_first = device
        .and_then(|d| d.wipes.first())
        .is_some_and(|w| w.account_only && w.device_could_connect);
    let blocked_ids = &bob.cas.active_sync_blocked_device_ids;
    let blocked = device.is_some_and(|d| blocked_ids.contains(&d.device_id));
    if let Some(d) = device {
        println!(
            "   {} ({}): {}, then {}",
            d.friendly_name,
            d.device_id,
            if wiped_first {
                "account-only wipe sent while it could still connect"
            } else {
                "NO wipe while it could connect"
            },
            if blocked { "blocked" } else { "NOT blocked" }
        );
    }
    let rule = bob.inbox_rules.iter().find(|r| r.rule_identity == rule_id);
    let rule_off = rule.is_some_and(|r| !r.enabled);
    if let Some(r) = rule {
        println!(
            "   inbox rule {:?} (forward to {}): {}",
            r.name,
            r.forward_to.join(", "),
            if r.enabled {
                "STILL ENABLED"
            } else {
                "disabled"
            }
        );
    }
    println!("\n{}", report.summary());
    println!("done in {:.1} s", t0.elapsed().as_secs_f64());
    fleet.shutdown().await;
    if report.outcome != Outcome::Revoked {
        return Err(format!("expected Revoked, got {:?}", report.outcome).into());
    }
    if !(wiped_first && blocked && rule_off) {
        return Err("the mailbox was not contained (see the lab store lines above)".into());
    }
    Ok(())
}
