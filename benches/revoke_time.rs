//! Issue 7, benchmark 3: time to revoke — Samba AD + a 50-server lab (L = 200 ms per server),
//! from `execute` to `Revoked`, with the proof (every old-password logon refused over real
//! HTTP), broken down per step from `Report.steps`.
//!
//! ```text
//! export EXCH_REVOKE_AD_ENV=target/samba-ad-dev/ad.env   # or let exch-samba start one
//! cargo bench --bench revoke_time      # 50 servers, 3 runs
//! ```
//!
//! Without `--bench` (`cargo test --all-targets`) it runs once on 2 servers and asserts only
//! the outcome. Without Samba it prints `SKIPPED: …` and passes, unless
//! `EXCH_REVOKE_REQUIRE_SAMBA=1`.
//!
//! Set-up (not timed): a fresh user, the fleet registered as `msExchExchangeServer` objects,
//! and the user logged on to every protocol of every server so that every token cache holds
//! the old password. The timed run is the library's: find the account, disable it over LDAPS,
//! converge on every DC, flush every server over WinRM (`Parallel { max_in_flight: 64 }`), and
//! probe the old password on every server and protocol (each refusal is an LDAP bind against
//! Samba made by the lab's IIS on a cache miss).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Table, SERVER_RECYCLE};
use exch_core::Protocol;
use exch_directory::Directory;
use exch_lab::fleet::Fleet;
use exch_remediate::{HttpProber, Outcome, Step, Strategy};
use exch_samba::SambaAd;
use futures::StreamExt;
use secrecy::SecretString;

const OLD: &str = "Old-Bench-Passw0rd!7";
/// The protocols that take a password logon at Microsoft's defaults (EWS and MAPI take
/// Windows authentication only).
const PROTOCOLS: [Protocol; 3] = [Protocol::Owa, Protocol::Eas, Protocol::RpcHttp];

async fn ldap(ad: &SambaAd) -> Arc<dyn Directory> {
    let env = ad.env();
    let dir = env.directory().base_dn(env.base_dn.clone()).build().await;
    Arc::new(dir.expect("LDAPS to Samba"))
}

/// The lab's verdict on a logon with `password` on every server × protocol, except the
/// explicit refusals by the directory.
async fn not_refused_by_the_lab(fleet: &Fleet, user: &str, password: &str) -> Vec<String> {
    let password = SecretString::from(password.to_owned());
    let tries = fleet
        .servers()
        .iter()
        .flat_map(|s| PROTOCOLS.iter().map(move |p| (s, *p)));
    futures::stream::iter(tries)
        .map(|(s, p)| {
            let password = password.clone();
            async move {
                let logon = s.iis().authenticate(p, user, &password).await;
                (!matches!(logon, exch_lab::model::Logon::Refused(_)))
                    .then(|| format!("{}/{p}: {logon:?}", s.name()))
            }
        })
        // A cache miss is an LDAPS bind; Samba listens with a backlog of 10.
        .buffer_unordered(8)
        .filter_map(std::future::ready)
        .collect()
        .await
}

struct Measured {
    plan: Duration,
    total: Duration,
    steps: Vec<(Step, Duration)>,
}

/// One timed run with a fresh user; the user is deleted whatever happens. `Err` says what
/// went wrong (the caller cleans up the fleet before failing).
async fn run_once(
    ad: &'static SambaAd,
    fleet: &Fleet,
    tool_dir: &Arc<dyn Directory>,
    prober: &HttpProber,
    password: &SecretString,
) -> Result<Measured, String> {
    let sam = SambaAd::unique_name("rt");
    let user = ad
        .create_user(&sam, &SecretString::from(OLD.to_owned()))
        .await
        .map_err(|e| format!("create user: {e}"))?;
    let result = revoke_user(fleet, tool_dir, prober, password, &user.upn).await;
    let _ = ad.delete(&user.dn).await;
    result
}

async fn revoke_user(
    fleet: &Fleet,
    tool_dir: &Arc<dyn Directory>,
    prober: &HttpProber,
    password: &SecretString,
    upn: &str,
) -> Result<Measured, String> {
    let servers = fleet.exchange_servers();
    let served = servers.len() * PROTOCOLS.len();
    let warm = common::logons(prober, &servers, &PROTOCOLS, upn, &SecretString::from(OLD)).await;
    if warm != served {
        return Err(format!("only {warm}/{served} logons before the run"));
    }
    let (plan, report) = common::remediate(
        common::RunSpec {
            directory: Arc::clone(tool_dir),
            flusher: common::flusher(fleet.endpoints(), password),
            user: upn,
            servers: None,
            include: fleet
                .servers()
                .iter()
                .map(|s| s.name().to_owned())
                .collect(),
            probe: Some((Arc::new(prober.clone()), SecretString::from(OLD.to_owned()))),
        },
        Strategy::Parallel { max_in_flight: 64 },
    )
    .await;
    let failed: Vec<String> = report
        .servers
        .iter()
        .flat_map(|s| {
            s.probes
                .iter()
                .filter(|p| p.is_open())
                .map(move |p| format!("{}: {}", s.server, p.detail))
        })
        .collect();
    if report.outcome != Outcome::Revoked || !failed.is_empty() {
        return Err(format!(
            "{:?}; {} probes not refused, e.g. {:?}",
            report.outcome,
            failed.len(),
            &failed[..failed.len().min(3)]
        ));
    }
    common::assert_revoked(&report, servers.len());
    // EWS and MAPI take no password logon at Exchange's defaults: their probes are "not
    // applicable" and are not counted.
    let probed: usize = report
        .servers
        .iter()
        .map(|s| s.probes.iter().filter(|p| p.applicable).count())
        .sum();
    if probed != served {
        return Err(format!("{probed}/{served} endpoints probed"));
    }
    // Apart from the report and the library's prober: the lab's own IIS model decides a logon
    // with the old password on every server × protocol, and only an explicit refusal by the
    // directory counts (an error, a 503 or a timeout is not a refusal).
    let not_refused = not_refused_by_the_lab(fleet, upn, OLD).await;
    if !not_refused.is_empty() {
        return Err(format!(
            "{} logons with the old password not refused by the lab, e.g. {:?}",
            not_refused.len(),
            &not_refused[..not_refused.len().min(3)]
        ));
    }
    Ok(Measured {
        plan,
        total: report.elapsed,
        steps: report.steps.iter().map(|s| (s.step, s.elapsed)).collect(),
    })
}

#[tokio::main]
async fn main() {
    common::init_tracing();
    let full = common::full_mode();
    let Some(ad) = SambaAd::require("revoke_time bench (Samba AD + lab fleet)") else {
        return;
    };
    let (n, repeats) = if full { (50, 3) } else { (2, 1) };
    let password = common::winrm_password();
    let prefix = SambaAd::unique_name("R");
    let lab_dir = ldap(ad).await;
    let fleet = common::samba_fleet(lab_dir, ad, n, &prefix, &password).await;
    let prober = common::prober(&fleet);
    let tool_dir = ldap(ad).await;
    println!(
        "revoke_time ({} mode): Samba AD {} + {n} lab servers, L = {} ms per server; {}",
        if full { "full" } else { "smoke" },
        ad.env().url_ldaps,
        SERVER_RECYCLE.as_millis(),
        common::machine_note()
    );
    let mut runs = Vec::new();
    let mut failure = None;
    for _ in 0..repeats {
        match run_once(ad, &fleet, &tool_dir, &prober, &password).await {
            Ok(m) => runs.push(m),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    common::remove_samba_fleet(&fleet, ad).await;
    if let Some(e) = failure {
        panic!("revoke_time: {e}");
    }

    let mut header = vec!["run", "plan (ms)"];
    let steps = [
        (Step::FindAccount, "find account"),
        (Step::ChangeDirectory, "change directory"),
        (Step::Converge, "converge"),
        (Step::Flush, "flush"),
        (Step::Probe, "probe"),
    ];
    header.extend(steps.iter().map(|(_, name)| *name));
    header.push("execute -> Revoked (ms)");
    let mut table = Table::new(&header);
    for (i, m) in runs.iter().enumerate() {
        let mut row = vec![(i + 1).to_string(), common::ms(m.plan)];
        for (step, _) in &steps {
            let t = m
                .steps
                .iter()
                .find(|(s, _)| s == step)
                .map(|(_, d)| *d)
                .unwrap_or_default();
            row.push(common::ms(t));
        }
        row.push(common::ms(m.total));
        table.row(row);
    }
    println!(
        "\n## 3. Time to revoke ({n} servers, {} probes per run)\n",
        n * PROTOCOLS.len()
    );
    table.print();
    let mut totals: Vec<Duration> = runs.iter().map(|m| m.total).collect();
    let med = common::median(&mut totals);
    if full {
        println!(
            "median execute -> Revoked: {} ms; target <= 1500 ms: {} (ratio {:.2})",
            common::ms(med),
            if med <= Duration::from_millis(1500) {
                "met"
            } else {
                "MISSED"
            },
            med.as_secs_f64() / 1.5
        );
    }
}
