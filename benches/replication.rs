//! Issue 16: convergence on real replication — two Samba AD DCs of one domain with DRS
//! replication (`exch_samba::SambaPair`, started on demand by `scripts/samba-ad-pair.sh`).
//!
//! ```text
//! cargo bench --bench replication      # notify 1 s and Samba's default (5 s), 10 changes
//!                                      # each; then 3 revocations with 50 lab servers
//! ```
//!
//! 1. Time to converge: a change made through `LdapDirectory` on DC1 (disable, then a password
//!    reset on a fresh user), then `account_on(DC2)` every 20 ms until DC2 shows it —
//!    `dreplsrv:notify_interval = 1` and Samba's default (both DCs restarted in between; the
//!    first change after the restart is reported on its own, it waits for DC2's startup pull).
//! 2. Time to revoke: two-DC Samba + 50 lab servers (L = 200 ms per server, NTLM sealed
//!    WinRM), disable → converge on both DCs → flush → probe, broken down per step from
//!    `Report.steps`, with DC2's convergence time from the report.
//!
//! Without `--bench` (`cargo test --all-targets`) it runs once per part on 2 servers with
//! notify 1 s only and asserts the outcomes. Without two DCs it prints `SKIPPED: …` and
//! passes, unless `EXCH_REVOKE_REQUIRE_SAMBA=1`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Table;
use exch_core::Protocol;
use exch_directory::{Directory, Dn, DomainController, LdapDirectory, UserRef};
use exch_remediate::{Step, Strategy};
use exch_samba::{DcId, SambaAd, SambaPair, SHARED_NOTIFY_INTERVAL};
use secrecy::SecretString;

const OLD: &str = "Old-Bench-Passw0rd!16";
const NEW: &str = "N3w-Bench-Passw0rd!16";
const PROTOCOLS: [Protocol; 3] = [Protocol::Owa, Protocol::Eas, Protocol::RpcHttp];
const POLL: Duration = Duration::from_millis(20);

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

async fn ldap(pair: &SambaPair) -> LdapDirectory {
    pair.env()
        .directory_at(pair.dc(DcId::Dc1).url.clone())
        .timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("LDAPS to DC1")
}

/// Polls DC2 through the library until `done` holds for the account; the time since `t0`.
async fn until_dc2(
    dir: &LdapDirectory,
    dc2: &DomainController,
    dn: &Dn,
    t0: Instant,
    done: impl Fn(&exch_directory::Account) -> bool,
) -> Duration {
    loop {
        if let Ok(a) = dir.account_on(dc2, dn).await {
            if done(&a) {
                return t0.elapsed();
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "DC2 did not show the change within 60 s"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// One fresh user: (disable → DC2 shows it, reset → DC2 shows it).
async fn converge_once(
    pair: &'static SambaPair,
    dir: &LdapDirectory,
    dc2: &DomainController,
) -> [Duration; 2] {
    let ad = &pair.dc(DcId::Dc1).ad;
    let user = ad
        .create_user(&SambaAd::unique_name("cv"), &secret(OLD))
        .await
        .expect("create user");
    let dn = Dn(user.dn.clone());
    // DC2 has the user first (forced pull), so only the change is timed.
    pair.blocking(|p| p.replicate_now()).await;
    until_dc2(dir, dc2, &dn, Instant::now(), |_| true).await;
    let account = dir.find_account(&UserRef::Dn(dn.clone())).await.unwrap();
    let before = account.pwd_last_set;
    let t0 = Instant::now();
    dir.reset_password(&account, &secret(NEW))
        .await
        .expect("reset");
    let reset = until_dc2(dir, dc2, &dn, t0, |a| a.pwd_last_set != before).await;
    let t0 = Instant::now();
    dir.disable_account(&account).await.expect("disable");
    let disable = until_dc2(dir, dc2, &dn, t0, |a| a.is_disabled()).await;
    let _ = ad.delete(&user.dn).await;
    [disable, reset]
}

struct ConvergeRow {
    notify: String,
    first_after_restart: Option<Duration>,
    disable: Vec<Duration>,
    reset: Vec<Duration>,
}

fn stats(v: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = v.to_vec();
    s.sort();
    let med = common::median(&mut s.clone());
    (s[0], med, s[s.len() - 1])
}

struct Revoked {
    total: Duration,
    steps: Vec<(Step, Duration)>,
    dc2_after: Duration,
}

#[tokio::main]
async fn main() {
    common::init_tracing();
    let full = common::full_mode();
    let Some(pair) = SambaPair::require("replication bench (two Samba AD DCs + lab fleet)") else {
        return;
    };
    let dir = ldap(pair).await;
    let dcs = dir.domain_controllers().await.expect("DC discovery");
    assert_eq!(dcs.len(), 2, "{dcs:?}");
    let dc2 = dcs.iter().find(|d| d.name == "DC2").expect("DC2").clone();
    println!(
        "replication ({} mode): {} and {} ({}); {}",
        if full { "full" } else { "smoke" },
        pair.dc(DcId::Dc1).url,
        pair.dc(DcId::Dc2).url,
        pair.origin(),
        common::machine_note()
    );

    // 1. Time to converge.
    let settings: Vec<Option<u32>> = if full {
        vec![Some(SHARED_NOTIFY_INTERVAL), None]
    } else {
        vec![Some(SHARED_NOTIFY_INTERVAL)]
    };
    let per_setting = if full { 10 } else { 1 };
    let mut rows = Vec::new();
    for notify in settings {
        let mut first_after_restart = None;
        let (dir, dc2) = if full {
            // Restart both with this setting; the first change then waits for DC2's startup
            // pull: measured on its own.
            pair.blocking(move |p| p.set_notify_interval(notify)).await;
            let dir = ldap(pair).await;
            let [d, _] = converge_once(pair, &dir, &dc2).await;
            first_after_restart = Some(d);
            (dir, dc2.clone())
        } else {
            (ldap(pair).await, dc2.clone())
        };
        let mut row = ConvergeRow {
            notify: notify.map_or_else(|| "default (5 s)".to_owned(), |s| format!("{s} s")),
            first_after_restart,
            disable: Vec::new(),
            reset: Vec::new(),
        };
        for _ in 0..per_setting {
            let [d, r] = converge_once(pair, &dir, &dc2).await;
            row.disable.push(d);
            row.reset.push(r);
        }
        rows.push(row);
    }
    if full {
        pair.blocking(|p| p.set_notify_interval(Some(SHARED_NOTIFY_INTERVAL)))
            .await;
    }

    // 2. Time to revoke: two DCs + n lab servers.
    let (n, repeats) = if full { (50, 3) } else { (2, 1) };
    let dir = ldap(pair).await;
    let password = common::winrm_password();
    let prefix = SambaAd::unique_name("Q");
    let ad = &pair.dc(DcId::Dc1).ad;
    let fleet = common::samba_fleet(Arc::new(ldap(pair).await), ad, n, &prefix, &password).await;
    let prober = common::prober(&fleet);
    let servers = fleet.exchange_servers();
    let tool: Arc<dyn Directory> = Arc::new(dir);
    let mut runs = Vec::new();
    for _ in 0..repeats {
        let user = ad
            .create_user(&SambaAd::unique_name("rv"), &secret(OLD))
            .await
            .expect("create user");
        pair.blocking(|p| p.replicate_now()).await;
        let warm = common::logons(&prober, &servers, &PROTOCOLS, &user.upn, &secret(OLD)).await;
        assert_eq!(warm, n * PROTOCOLS.len(), "logons before the run");
        let (_, report) = common::remediate(
            common::RunSpec {
                directory: Arc::clone(&tool),
                flusher: common::flusher(fleet.endpoints(), &password),
                user: &user.upn,
                servers: None,
                include: fleet
                    .servers()
                    .iter()
                    .map(|s| s.name().to_owned())
                    .collect(),
                probe: Some((Arc::new(prober.clone()), secret(OLD))),
            },
            Strategy::Parallel { max_in_flight: 64 },
        )
        .await;
        common::assert_revoked(&report, n);
        assert_eq!(report.domain_controllers.len(), 2, "{}", report.summary());
        let dc2_after = report
            .domain_controllers
            .iter()
            .find(|d| d.dc == "DC2")
            .and_then(|d| d.after)
            .expect("DC2 converged");
        runs.push(Revoked {
            total: report.elapsed,
            steps: report.steps.iter().map(|s| (s.step, s.elapsed)).collect(),
            dc2_after,
        });
        let _ = ad.delete(&user.dn).await;
    }
    common::remove_samba_fleet(&fleet, ad).await;

    println!("\n## 7a. Time to converge on real replication (change on DC1 → DC2 shows it)\n");
    let mut t = Table::new(&[
        "notify interval",
        "changes",
        "disable min / median / max (ms)",
        "reset min / median / max (ms)",
        "first change after restart (ms)",
    ]);
    for r in &rows {
        let (a, b, c) = stats(&r.disable);
        let (d, e, f) = stats(&r.reset);
        t.row(vec![
            r.notify.clone(),
            r.disable.len().to_string(),
            format!("{} / {} / {}", common::ms(a), common::ms(b), common::ms(c)),
            format!("{} / {} / {}", common::ms(d), common::ms(e), common::ms(f)),
            r.first_after_restart.map_or_else(|| "-".into(), common::ms),
        ]);
    }
    t.print();
    if rows.len() == 2 {
        let m1 = stats(&rows[0].disable).1.as_secs_f64();
        let m5 = stats(&rows[1].disable).1.as_secs_f64();
        println!(
            "median disable, default / notify 1 s: {:.1}×",
            m5 / m1.max(1e-6)
        );
    }

    println!(
        "\n## 7b. Time to revoke: two DCs + {n} lab servers ({} probes per run)\n",
        n * PROTOCOLS.len()
    );
    let steps = [
        (Step::FindAccount, "find account"),
        (Step::ChangeDirectory, "change directory"),
        (Step::Converge, "converge (2 DCs)"),
        (Step::Flush, "flush"),
        (Step::Probe, "probe"),
    ];
    let mut header = vec!["run"];
    header.extend(steps.iter().map(|(_, s)| *s));
    header.extend([
        "DC2 shows it (ms)",
        "execute → Revoked (ms)",
        "converge / total",
    ]);
    let mut t = Table::new(&header);
    for (i, r) in runs.iter().enumerate() {
        let step = |s: Step| {
            r.steps
                .iter()
                .find(|(x, _)| *x == s)
                .map(|(_, d)| *d)
                .unwrap_or_default()
        };
        let mut row = vec![(i + 1).to_string()];
        row.extend(steps.iter().map(|(s, _)| common::ms(step(*s))));
        row.push(common::ms(r.dc2_after));
        row.push(common::ms(r.total));
        row.push(format!(
            "{:.2}",
            step(Step::Converge).as_secs_f64() / r.total.as_secs_f64().max(1e-6)
        ));
        t.row(row);
    }
    t.print();
}
