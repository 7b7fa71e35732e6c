//! Issue 7, benchmarks 1 and 2 (and issue 12's): flushing a lab fleet one server at a time
//! (what the `foreach iisreset` script does) against `Strategy::Parallel { max_in_flight: 64 }`
//! and the ideal `ceil(N/64) · L`, and the WinRM requests per server, read from the lab's
//! counters — with NTLM and message encryption (Windows' defaults, the lab's default mode) and,
//! in the same run, with the insecure Basic-over-HTTP opt-in as the baseline.
//!
//! ```text
//! cargo bench --bench fleet_flush      # N = 1, 10, 50, 200; L = 200 ms; ~1 min
//! cargo bench --bench fleet_flush -- --sizes 200 --no-sequential   # e.g. under a profiler
//! ```
//!
//! Without `--bench` (that is `cargo test --all-targets`) it runs a smoke check on 1 and 3
//! servers: outcome, round trips ≤ 5 and nothing left open, no timing targets.
//!
//! Both strategies go through the same library path (`Remediation::execute`, disable an
//! in-memory account, flush over real WinRM/HTTP to the lab); the time is the report's `Flush`
//! step. Each run builds a fresh `WinRmFlusher`, as a new revocation would: connection set-up
//! is inside the measurement. The sequential baseline is `Parallel { max_in_flight: 1 }`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Auth, Table, WinRmTotals, SERVER_RECYCLE};
use exch_remediate::{Step, Strategy};

/// What one run measured.
struct Sample {
    flush: Duration,
    /// CPU time of the process (client and in-process lab) during the run.
    cpu: Duration,
    /// Mean and largest time of one server's flush, as the orchestrator saw it.
    per_server: (Duration, Duration),
    counters: WinRmTotals,
    most_round_trips: u32,
}

/// One remediation over the whole fleet with a fresh flusher; checks that it ended Revoked,
/// then that the lab has no shell, command or connection open once the flusher is gone.
async fn run_once(
    fleet: &exch_lab::fleet::Fleet,
    dir: &exch_directory::InMemoryDirectory,
    flusher: Arc<exch_iis::WinRmFlusher>,
    strategy: Strategy,
    tag: &str,
) -> Sample {
    let user = common::fresh_user(dir, tag);
    let keep = Arc::clone(&flusher);
    let before = WinRmTotals::of(fleet.servers());
    let cpu = common::cpu_time();
    let (_, report) = common::remediate(
        common::RunSpec {
            directory: Arc::new(dir.clone()),
            flusher,
            user: &user,
            servers: Some(fleet.exchange_servers()),
            include: Vec::new(),
            probe: None,
        },
        strategy,
    )
    .await;
    let cpu = common::cpu_time().saturating_sub(cpu);
    let most_round_trips = common::assert_revoked(&report, fleet.servers().len());
    let counters = WinRmTotals::of(fleet.servers()).since(&before);
    // The flusher (and its HTTP connections) went with the remediation — unless the caller
    // keeps it for another run (its idle authenticated sessions stay open then).
    if Arc::strong_count(&keep) > 1 {
        return Sample {
            flush: common::step_time(&report, Step::Flush),
            cpu,
            per_server: per_server(&report),
            counters,
            most_round_trips,
        };
    }
    drop(keep);
    let closed = common::eventually(Duration::from_secs(10), || {
        WinRmTotals::of(fleet.servers()).all_closed()
    })
    .await;
    assert!(
        closed,
        "left open after the run: {:?}",
        WinRmTotals::of(fleet.servers())
    );
    Sample {
        flush: common::step_time(&report, Step::Flush),
        cpu,
        per_server: per_server(&report),
        counters,
        most_round_trips,
    }
}

fn per_server(report: &exch_remediate::Report) -> (Duration, Duration) {
    let times: Vec<Duration> = report.servers.iter().map(|s| s.elapsed).collect();
    let n = u32::try_from(times.len().max(1)).unwrap_or(u32::MAX);
    let mean = times.iter().sum::<Duration>() / n;
    (mean, times.iter().max().copied().unwrap_or_default())
}

fn ideal(n: usize, in_flight: usize, l: Duration) -> Duration {
    l * u32::try_from(n.div_ceil(in_flight)).unwrap_or(u32::MAX)
}

#[tokio::main]
async fn main() {
    common::init_tracing();
    let full = common::full_mode();
    let (mut sizes, repeats) = if full {
        (vec![1, 10, 50, 200], 3)
    } else {
        (vec![1, 3], 1)
    };
    if let Some(list) = common::arg_value("--sizes") {
        sizes = list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect();
    }
    let sequential = !std::env::args().any(|a| a == "--no-sequential");
    let password = common::winrm_password();
    let l = common::server_time();
    let in_flight = 64;
    println!(
        "fleet_flush ({} mode): L = {} ms per server = {} default pools x {} ms of recycle requests (lab recycle_latency is per pool, requested one after another) + {} ms for the last new worker to start; {}",
        if full { "full" } else { "smoke" },
        l.as_millis(),
        common::default_pools_2019(),
        common::per_pool_latency(SERVER_RECYCLE).as_millis(),
        (l - SERVER_RECYCLE).as_millis(),
        common::machine_note()
    );
    let modes: Vec<Auth> = match common::arg_value("--auth").as_deref() {
        Some("ntlm") => vec![Auth::Ntlm],
        Some("basic") => vec![Auth::Basic],
        _ => vec![Auth::Ntlm, Auth::Basic],
    };
    let mut flush_table = Table::new(&[
        "auth",
        "N",
        "sequential (ms)",
        "Parallel{64} median (ms)",
        "Parallel{64} min..max",
        "ideal ceil(N/64)*L (ms)",
        "efficiency ideal/actual",
        "speed-up seq/par",
        "CPU per Parallel{64} run (ms, client + lab)",
        "one server's flush: mean / max (ms)",
    ]);
    let mut trips_table = Table::new(&[
        "auth",
        "N",
        "HTTP requests/server (new client)",
        "same flusher again (reused sessions)",
        "Create",
        "Command",
        "Receive",
        "Signal",
        "Delete",
        "max FlushReport.round_trips",
        "open shells/commands/conns after",
    ]);
    let mut at_200: Vec<(Auth, f64, f64, Duration)> = Vec::new();
    for &n in &sizes {
        for &auth in &modes {
            let (fleet, dir) =
                common::in_memory_fleet_with(auth, n, &format!("F{n}X"), SERVER_RECYCLE, &password)
                    .await;
            let fresh = || common::flusher_with(auth, fleet.endpoints(), &password);
            let seq = if sequential {
                Some(
                    run_once(
                        &fleet,
                        &dir,
                        fresh(),
                        Strategy::Parallel { max_in_flight: 1 },
                        &format!("seq{n}"),
                    )
                    .await,
                )
            } else {
                None
            };
            let mut par = Vec::new();
            for i in 0..repeats {
                par.push(
                    run_once(
                        &fleet,
                        &dir,
                        fresh(),
                        Strategy::Parallel {
                            max_in_flight: in_flight,
                        },
                        &format!("par{n}x{i}"),
                    )
                    .await,
                );
            }
            // The same flusher twice: the second run reuses the authenticated sessions it kept
            // (at most 64 idle, all servers), so up to 64 servers need no handshake.
            let kept = fresh();
            let _ = run_once(
                &fleet,
                &dir,
                kept.clone(),
                Strategy::Parallel {
                    max_in_flight: in_flight,
                },
                &format!("warm{n}"),
            )
            .await;
            let reused = run_once(
                &fleet,
                &dir,
                kept,
                Strategy::Parallel {
                    max_in_flight: in_flight,
                },
                &format!("reuse{n}"),
            )
            .await;
            let mut times: Vec<Duration> = par.iter().map(|s| s.flush).collect();
            let med = common::median(&mut times);
            let ideal = ideal(n, in_flight, l);
            let efficiency = ideal.as_secs_f64() / med.as_secs_f64();
            let speedup = seq
                .as_ref()
                .map_or(f64::NAN, |s| s.flush.as_secs_f64() / med.as_secs_f64());
            flush_table.row(vec![
                auth.name().to_owned(),
                n.to_string(),
                seq.as_ref().map_or("-".into(), |s| common::ms(s.flush)),
                common::ms(med),
                format!(
                    "{}..{}",
                    common::ms(times[0]),
                    common::ms(times[times.len() - 1])
                ),
                common::ms(ideal),
                format!("{efficiency:.2}"),
                if speedup.is_nan() {
                    "-".to_owned()
                } else {
                    format!("{speedup:.1}x")
                },
                common::ms(common::median(
                    &mut par.iter().map(|s| s.cpu).collect::<Vec<_>>(),
                )),
                format!(
                    "{} / {}",
                    common::ms(par[0].per_server.0),
                    common::ms(par[0].per_server.1)
                ),
            ]);
            // Round trips of one parallel run (every run counts the same).
            let c = par[0].counters;
            let per = |x: u64| format!("{:.2}", x as f64 / n as f64);
            let after = WinRmTotals::of(fleet.servers());
            trips_table.row(vec![
                auth.name().to_owned(),
                n.to_string(),
                per(c.requests),
                per(reused.counters.requests),
                per(c.create),
                per(c.command),
                per(c.receive),
                per(c.signal),
                per(c.delete),
                par.iter()
                    .chain(seq.as_ref())
                    .map(|s| s.most_round_trips)
                    .max()
                    .unwrap_or(0)
                    .to_string(),
                format!(
                    "{}/{}/{}",
                    after.open_shells, after.open_commands, after.open_connections
                ),
            ]);
            let budget = match auth {
                Auth::Ntlm => 6,
                Auth::Basic => 5,
            };
            assert!(
                c.requests <= budget * n as u64,
                "{} WinRM requests for {n} servers",
                c.requests
            );
            if n == *sizes.last().unwrap_or(&0) {
                let cpu = common::median(&mut par.iter().map(|s| s.cpu).collect::<Vec<_>>());
                at_200.push((
                    auth,
                    efficiency,
                    speedup,
                    cpu / u32::try_from(n).unwrap_or(1),
                ));
            }
            fleet.shutdown().await;
        }
    }
    println!("\n## 1. Fleet flush (Flush step of Remediation::execute)\n");
    flush_table.print();
    println!("## 2. WinRM round trips per server (lab counters, one Parallel{{64}} run)\n");
    trips_table.print();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let n = sizes.last().copied().unwrap_or(0);
    for (auth, efficiency, speedup, cpu) in &at_200 {
        println!(
            "{} at N = {n}: efficiency {efficiency:.2} (>= 0.8: {}), speed-up {speedup:.1}x (>= 40x: {}), CPU per server {:.2} ms (client + lab)",
            auth.name(),
            verdict(*efficiency >= 0.8),
            if speedup.is_nan() {
                "not measured".to_owned()
            } else {
                verdict(*speedup >= 40.0).to_owned()
            },
            cpu.as_secs_f64() * 1000.0
        );
    }
    if let (Some(ntlm), Some(basic)) = (
        at_200.iter().find(|r| r.0 == Auth::Ntlm),
        at_200.iter().find(|r| r.0 == Auth::Basic),
    ) {
        let ratio = ntlm.1 / basic.1;
        println!(
            "NTLM/Basic efficiency at N = {n}: {ratio:.2} (>= 0.9: {}); NTLM costs {:.2} ms more CPU per server (handshake + sealing, client and lab together)",
            verdict(ratio >= 0.9),
            (ntlm.3.as_secs_f64() - basic.3.as_secs_f64()) * 1000.0
        );
    }
}
