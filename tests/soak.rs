//! Issue 8, soak: 200 consecutive remediations against a lab fleet (3 servers, real WinRM and
//! HTTP over loopback; in-memory directory for speed), each with a random fault on a random
//! server (seeded: `SOAK_SEED=<n>` replays a run; the seed is printed), cleared after the run.
//! Afterwards: no WinRM shell, command or connection left open on any lab server, the
//! process's open file descriptors and tokio's alive tasks back to their baseline, and RSS
//! flat (printed at 0, 50, 100, 150, 200 runs; growth bounded below).
//!
//! Every run is checked for what it must be, not only "not Failed": without a fault (or with
//! `TimedOut` receives) `Revoked`; with a fault `Partial`, with exactly the faulted server to
//! retry, in the failure kind of its fault, every other server proven, and the lab's own
//! counters showing that the fault happened (see [`check_run`]).
//!
//! `SOAK_RUNS=<n>` changes the number of runs (default 200, at least 100: the RSS check
//! compares the checkpoint at the middle with the last).
#![allow(clippy::unwrap_used)]

use exch_directory::InMemoryDirectory;
use exch_iis::{WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Faults, Fleet, ServerCounters, ServerSpec};
use exch_remediate::{
    HttpProber, NewPassword, Outcome, Remediation, Report, RetryPolicy, ServerOutcome, Strategy,
    Timeouts,
};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USER: &str = "soak@lab.example.test";
/// Loose enough that a healthy server always makes it on a loaded 2-core machine (a healthy
/// flush takes ~40 ms in a debug build), so that only the faulted server times out.
const PER_SERVER: Duration = Duration::from_millis(750);

/// Bounds asserted after the loop (and stated in RELIABILITY.md). While the clients live,
/// their idle keep-alive connections (up to 5 per server: the probes run concurrently) are
/// one fd and one task on each side: that much may come and go between checkpoints.
const POOL_TOLERANCE: usize = 10;
const RSS_GROWTH_LIMIT_KIB: u64 = 16 * 1024;
const RSS_SECOND_HALF_LIMIT_KIB: u64 = 4 * 1024;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn password(i: usize) -> String {
    format!("Rotating-Passw0rd!{i:04}")
}

/// xorshift64*: enough randomness to pick faults, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

fn fault(kind: usize) -> (&'static str, Faults) {
    match kind {
        0 => ("unreachable", Faults::unreachable()),
        1 => (
            "slow past the per-server timeout",
            Faults::slow(PER_SERVER * 2),
        ),
        2 => ("wrong credentials", Faults::wrong_credentials()),
        3 => ("SOAP fault", Faults::soap_fault()),
        4 => ("failing pool", Faults::failing_pool("MSExchangeOWAAppPool")),
        5 => ("TimedOut receives", Faults::timed_out_receives(2)),
        6 => ("hang", Faults::hang()),
        7 => ("non-zero exit", Faults::exit_code(1)),
        8 => ("malformed JSON", Faults::malformed_json()),
        _ => ("none", Faults::none()),
    }
}
const FAULT_KINDS: usize = 11; // 9 faults + "none" twice as likely

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd must be readable: the fd checks depend on it")
        .count()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .expect("VmRSS must be readable in /proc/self/status: the RSS checks depend on it")
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn kind(o: &ServerOutcome) -> String {
    match o {
        ServerOutcome::Flushed { .. } => "Flushed".into(),
        ServerOutcome::Unproven { .. } => "Unproven".into(),
        ServerOutcome::Failed { kind, .. } => kind.to_string(),
        ServerOutcome::Skipped { .. } => "Skipped".into(),
        _ => "?".into(),
    }
}

/// What one run must be, given its fault (`name` as in [`fault`]) on `victim`, judged by the
/// report and by the victim's own lab counters (`before` / `after` the run, WinRM Receives).
fn check_run(
    name: &str,
    report: &Report,
    victim: &str,
    before: &ServerCounters,
    after: &ServerCounters,
    receives: u64,
) -> Result<(), String> {
    // The failure kind the victim must show, and whether its command ran (lab: recycles).
    let (want, ran): (&str, Option<bool>) = match name {
        "none" => ("Flushed", Some(true)),
        "TimedOut receives" => {
            if receives < 3 {
                return Err(format!(
                    "{receives} Receives by the lab: no TimedOut re-poll"
                ));
            }
            ("Flushed", Some(true))
        }
        "unreachable" => ("Unreachable", Some(false)),
        "slow past the per-server timeout" => ("Timeout", None),
        "hang" => ("Timeout", Some(false)),
        "wrong credentials" => ("Unauthenticated", Some(false)),
        "SOAP fault" => ("Fault", Some(false)),
        "non-zero exit" => ("CommandFailed", Some(false)),
        "failing pool" => {
            if after.iis.recycle_failures <= before.iis.recycle_failures {
                return Err("no failed recycle counted by the lab".into());
            }
            ("Unproven", None)
        }
        "malformed JSON" => ("Protocol", Some(true)),
        other => return Err(format!("unknown fault {other}")),
    };
    if let Some(ran) = ran {
        let recycled = after.iis.recycles > before.iis.recycles;
        if recycled != ran {
            return Err(format!(
                "the lab saw recycles {} → {} on the victim (command ran: want {ran})",
                before.iis.recycles, after.iis.recycles
            ));
        }
    }
    let outcome = |n: &str| report.servers.iter().find(|s| s.server == n);
    let got = outcome(victim).map(|s| kind(&s.outcome));
    if got.as_deref() != Some(want) {
        return Err(format!("victim outcome {got:?}, want {want}"));
    }
    for s in &report.servers {
        if s.server != victim && !s.outcome.is_proven() {
            return Err(format!("healthy {} not proven", s.server));
        }
    }
    if report.servers.len() != 3 {
        return Err(format!("{} servers in the report", report.servers.len()));
    }
    let (outcome, retry): (Outcome, Vec<String>) = if want == "Flushed" {
        (Outcome::Revoked, Vec::new())
    } else {
        (Outcome::Partial, vec![victim.to_owned()])
    };
    if report.outcome != outcome || report.servers_to_retry != retry {
        return Err(format!(
            "{:?} retrying {:?}, want {outcome:?} retrying {retry:?}",
            report.outcome, report.servers_to_retry
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_200_remediations_with_random_faults() {
    if !cfg!(target_os = "linux") {
        exch_samba::record_skip("soak reads /proc/self (Linux only)");
        return;
    }
    let runs: usize = std::env::var("SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    assert!(
        runs >= 100,
        "SOAK_RUNS={runs}: at least 100 (the RSS check compares run 50 or later with the last)"
    );
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("soak: {runs} runs, SOAK_SEED={seed}");
    let mut rng = Rng(seed);

    let dir = InMemoryDirectory::new();
    dir.add_user("soak", USER, &password(0));
    let fleet = Fleet::builder()
        .directory(Arc::new(dir.clone()))
        .registrar(dir.clone())
        .server(ServerSpec::exchange_2019("SK19").recycle_latency(Duration::from_millis(1)))
        .server(ServerSpec::exchange_2016("SK16").recycle_latency(Duration::from_millis(1)))
        .server(ServerSpec::exchange_2010("SK10").recycle_latency(Duration::from_millis(1)))
        .winrm_credentials("LAB\\soak", secret("Soak-WinRM-Pw!1"))
        .build()
        .await
        .unwrap();
    let servers = fleet.servers();

    // Clients for the whole soak, as a long-running embedder holds them.
    let wire = || {
        let mut flusher = WinRmFlusher::builder()
            .auth(WinRmAuth::Ntlm)
            .timeout(PER_SERVER)
            .receive_timeout(Duration::from_secs(1))
            .connect_timeout(Duration::from_secs(1))
            .credentials("LAB\\soak", secret("Soak-WinRM-Pw!1"));
        let mut prober = HttpProber::new().unwrap();
        for s in servers {
            flusher = flusher.endpoint(s.name(), s.winrm_url());
            prober = prober.base_url(s.name(), s.base_url());
        }
        (Arc::new(flusher.build().unwrap()), Arc::new(prober))
    };
    let timeouts = Timeouts::default()
        .with_converge(Duration::from_secs(2))
        .with_converge_poll(Duration::from_millis(5))
        .with_per_server(PER_SERVER)
        .with_directory(Duration::from_secs(2));
    let remediate = |flusher: Arc<WinRmFlusher>, prober: Arc<HttpProber>, i: usize| {
        let dir = dir.clone();
        async move {
            let r = Remediation::builder()
                .directory(Arc::new(dir))
                .flusher(flusher)
                .user(USER)
                .reset_password(NewPassword::Given(secret(&password(i + 1))))
                .strategy(Strategy::Parallel { max_in_flight: 3 })
                .timeouts(timeouts)
                .retry(RetryPolicy {
                    attempts: 2,
                    initial_backoff: Duration::from_millis(5),
                    max_backoff: Duration::from_millis(5),
                })
                .probe_old_password(prober, secret(&password(i)))
                .build()
                .unwrap();
            let plan = r.plan().await.unwrap();
            r.execute(&plan).await
        }
    };

    // Baseline after one warm-up run (connection pools, lazily started runtime workers).
    let (flusher, prober) = wire();
    let warm = remediate(flusher.clone(), prober.clone(), 0).await;
    assert_eq!(warm.outcome, Outcome::Revoked, "{}", warm.summary());
    let fd0 = open_fds();
    let tasks0 = alive_tasks();
    let rss0 = rss_kib();
    let t0 = Instant::now();
    // (runs, RSS KiB, fds, alive tasks)
    let mut at = vec![(0usize, rss0, fd0, tasks0)];
    let mut outcomes: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();

    for i in 1..=runs {
        let victim = &servers[rng.below(servers.len())];
        let (name, faults) = fault(rng.below(FAULT_KINDS).min(9));
        let before = victim.counters();
        let receives = victim.winrm_stats().receive;
        victim.set_faults(&faults).await.unwrap();
        let report = remediate(flusher.clone(), prober.clone(), i).await;
        let after = victim.counters();
        let receives = victim.winrm_stats().receive - receives;
        victim.set_faults(&Faults::none()).await.unwrap();
        if let Err(e) = check_run(name, &report, victim.name(), &before, &after, receives) {
            panic!(
                "run {i} ({name} on {}): {e}\n{}",
                victim.name(),
                report.summary()
            );
        }
        let e = outcomes.entry(name).or_default();
        e.0 += 1;
        if report.outcome == Outcome::Revoked {
            e.1 += 1;
        }
        // The directory change always lands; only a flush or probe may fail.
        assert_ne!(
            report.outcome,
            Outcome::Failed,
            "run {i} ({name}): {}",
            report.summary()
        );
        if name == "none" || name == "TimedOut receives" {
            assert_eq!(
                report.outcome,
                Outcome::Revoked,
                "run {i} ({name}): {}",
                report.summary()
            );
        }
        if i % 50 == 0 {
            at.push((i, rss_kib(), open_fds(), alive_tasks()));
        }
    }
    let elapsed = t0.elapsed();

    // Settle: background shell deletions of timed-out flushes finish once faults are cleared.
    let settle = Instant::now();
    let lab_open = || {
        servers
            .iter()
            .map(|s| {
                let w = s.winrm_stats();
                (w.open_shells, w.open_commands)
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    while lab_open() != (0, 0) && settle.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (shells, commands) = lab_open();
    let fd_loaded = open_fds();
    let tasks_loaded = alive_tasks();

    // Dropping the clients closes their pooled connections: the lab then has none open.
    drop((flusher, prober));
    let settle = Instant::now();
    let conns = || {
        servers
            .iter()
            .map(|s| s.counters().open_connections)
            .sum::<usize>()
    };
    while conns() != 0 && settle.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fd_end = open_fds();
    let tasks_end = alive_tasks();

    eprintln!(
        "soak: {runs} runs in {elapsed:.1?} ({:.0?} per run)",
        elapsed / runs as u32
    );
    eprintln!("faults (runs, of which Revoked): {outcomes:?}");
    eprintln!("| runs | RSS KiB | open fds | alive tokio tasks |");
    for (i, rss, fds, tasks) in &at {
        eprintln!("| {i} | {rss} | {fds} | {tasks} |");
    }
    eprintln!(
        "settled: fds {fd_loaded}, tasks {tasks_loaded}; clients dropped: fds {fd_end}, tasks {tasks_end}; \
         lab: {shells} shells, {commands} commands, {} connections open",
        conns()
    );
    assert_eq!(
        (shells, commands),
        (0, 0),
        "WinRM shells/commands leaked on the lab"
    );
    assert_eq!(
        conns(),
        0,
        "connections still open on the lab after the clients were dropped"
    );
    // Nothing accumulates: every checkpoint within the pool's range of the baseline …
    for (i, _, fds, tasks) in &at {
        assert!(
            *fds <= fd0 + POOL_TOLERANCE,
            "fds at run {i}: {fd0} → {fds}: {at:?}"
        );
        assert!(
            *tasks <= tasks0 + POOL_TOLERANCE,
            "tasks at run {i}: {tasks0} → {tasks}: {at:?}"
        );
    }
    assert!(fd_loaded <= fd0 + POOL_TOLERANCE && tasks_loaded <= tasks0 + POOL_TOLERANCE);
    // … and without the clients, below the baseline (which included their pools).
    assert!(
        fd_end <= fd0,
        "fds after dropping the clients: {fd0} → {fd_end}"
    );
    assert!(
        tasks_end <= tasks0,
        "tasks after dropping the clients: {tasks0} → {tasks_end}"
    );
    // RSS flat: the second half of the soak adds (almost) nothing over the first.
    let half = at[at.len() / 2].1;
    let last = at.last().unwrap().1;
    assert!(
        last.saturating_sub(half) < RSS_SECOND_HALF_LIMIT_KIB,
        "RSS grows through the soak: {at:?}"
    );
    assert!(
        last.saturating_sub(rss0) < RSS_GROWTH_LIMIT_KIB,
        "RSS grew by more than {RSS_GROWTH_LIMIT_KIB} KiB: {at:?}"
    );
    fleet.shutdown().await;
}
