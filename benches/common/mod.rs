//! What the benches share: the mode (full under `cargo bench`, smoke under `cargo test`), the
//! lab fleet and its wiring, one remediation run, lab counters, and plain-text tables.
//!
//! Every bench binary includes this module with `mod common;` and uses a different part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use exch_core::{ExchangeServer, ExchangeVersion, Protocol};
use exch_directory::{Directory, InMemoryDirectory};
use exch_iis::{WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Fleet, LabServer, ServerSpec};
use exch_lab::winrm::WinRmStats;
use exch_remediate::{
    HttpProber, Outcome, ProbeResult, Prober, Remediation, Report, RetryPolicy, ServerOutcome,
    Step, Strategy, Timeouts,
};
use exch_samba::SambaAd;
use futures::StreamExt;
use secrecy::SecretString;

/// The time the recycle requests of one server's whole default pool set take (issue 7's L,
/// spread over the pools as the lab's per-pool `recycle_latency`).
pub(crate) const SERVER_RECYCLE: Duration = Duration::from_millis(200);

/// One server's own flush time, the L of the ideal `ceil(N/k) · L`: the recycle requests plus
/// the new worker's start-up after the last of them (the lab's default `worker_startup`, 50 ms),
/// which the proof waits for since recycles became asynchronous (issue 15).
pub(crate) fn server_time() -> Duration {
    SERVER_RECYCLE + exch_lab::model::IisTiming::default().worker_startup
}

/// The WinRM account of the lab fleets (lab-only credentials, never printed).
pub(crate) const WINRM_USER: &str = "LAB\\svc-bench";

/// Environment variable that hands the lab WinRM password to a child lab process.
pub(crate) const WINRM_PASSWORD_VAR: &str = "EXCH_REVOKE_BENCH_WINRM_PASSWORD";

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs the binary without it.
pub(crate) fn full_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Logs to stderr when `RUST_LOG` is set (e.g. `RUST_LOG=exch_iis=debug` for a timeline).
pub(crate) fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_ansi(false)
            .init();
    }
}

/// The value after `flag` on the command line (`cargo bench --bench X -- --flag value`).
pub(crate) fn arg_value(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).cloned()
}

/// The lab WinRM password of this process: from [`WINRM_PASSWORD_VAR`] (a child lab), else
/// one made up from the process id and the clock (lab-only).
pub(crate) fn winrm_password() -> SecretString {
    if let Ok(p) = std::env::var(WINRM_PASSWORD_VAR) {
        return SecretString::from(p);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    SecretString::from(format!("Lab-Bench-{}-{nanos:x}", std::process::id()))
}

/// Exchange 2019: the version every bench fleet runs.
pub(crate) fn exchange_2019() -> ExchangeVersion {
    ExchangeVersion::new(15, 2, 1258)
}

/// Pools the default flush recycles on an Exchange 2019 server (5).
pub(crate) fn default_pools_2019() -> usize {
    exch_iis::catalog::default_pools(
        &ExchangeServer::new("X", "x.lab.example.test").with_version(exchange_2019()),
    )
    .len()
}

/// The lab's `recycle_latency` is per pool and the script recycles the pools one after
/// another, so a server recycles in `k × latency`: L / k per pool makes the server's time L.
pub(crate) fn per_pool_latency(server_recycle: Duration) -> Duration {
    let k = u32::try_from(default_pools_2019().max(1)).unwrap_or(1);
    server_recycle / k
}

/// `n` Exchange 2019 servers named `<prefix>01…` whose default flush takes `server_recycle`.
pub(crate) fn server_template(prefix: &str, server_recycle: Duration) -> ServerSpec {
    ServerSpec::exchange_2019(prefix).recycle_latency(per_pool_latency(server_recycle))
}

/// A fleet of `n` servers (`server_template(prefix, SERVER_RECYCLE)`) whose IIS authenticates
/// against `directory`, each registered in Samba by `ad` as an Exchange server object.
pub(crate) async fn samba_fleet(
    directory: Arc<dyn Directory>,
    ad: &'static SambaAd,
    n: usize,
    prefix: &str,
    password: &SecretString,
) -> Fleet {
    Fleet::builder()
        .directory(directory)
        .dns_domain(ad.env().dns_domain())
        .servers(n, server_template(prefix, SERVER_RECYCLE))
        .winrm_credentials(WINRM_USER, password.clone())
        .registrar(ad.registrar())
        .build()
        .await
        .expect("lab fleet registered in Samba")
}

/// Shuts a [`samba_fleet`] down and deletes its server objects from Samba.
pub(crate) async fn remove_samba_fleet(fleet: &Fleet, ad: &SambaAd) {
    fleet.shutdown().await;
    let names = fleet.servers().iter().map(|s| s.name());
    let _ = ad.remove_exchange_servers(names).await;
}

/// An HTTP prober of every server of `fleet`.
pub(crate) fn prober(fleet: &Fleet) -> HttpProber {
    let mut prober = HttpProber::new().expect("HTTP prober");
    for s in fleet.servers() {
        prober = prober.base_url(s.name(), s.base_url());
    }
    prober
}

/// Logs `user` on with `password` to each of `protocols` of every server; returns how many
/// were let in.
pub(crate) async fn logons(
    prober: &HttpProber,
    servers: &[ExchangeServer],
    protocols: &[Protocol],
    user: &str,
    password: &SecretString,
) -> usize {
    let tries = servers
        .iter()
        .flat_map(|s| protocols.iter().map(move |p| (s, *p)));
    futures::stream::iter(tries)
        .map(|(s, p)| async move { prober.probe(s, p, user, password).await })
        // Every logon that misses a cache is an LDAPS bind; Samba listens with a backlog of 10.
        .buffer_unordered(8)
        .filter(|r| std::future::ready(matches!(r, ProbeResult::Accepted(_))))
        .count()
        .await
}

/// An in-memory directory (one DC, no lag) and a fleet of `n` servers registered in it.
pub(crate) async fn in_memory_fleet(
    n: usize,
    prefix: &str,
    server_recycle: Duration,
    password: &SecretString,
) -> (Fleet, InMemoryDirectory) {
    in_memory_fleet_with(Auth::Ntlm, n, prefix, server_recycle, password).await
}

/// How the lab's WinRM endpoints and the client authenticate in a bench run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Windows' defaults: NTLM, every body sealed (the lab's default mode).
    Ntlm,
    /// The lab's Basic-over-HTTP opt-in (the insecure baseline, for comparison only).
    Basic,
}

impl Auth {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Auth::Ntlm => "NTLM sealed",
            Auth::Basic => "Basic (opt-in)",
        }
    }
}

/// [`in_memory_fleet`] with the lab in the given authentication mode.
pub(crate) async fn in_memory_fleet_with(
    auth: Auth,
    n: usize,
    prefix: &str,
    server_recycle: Duration,
    password: &SecretString,
) -> (Fleet, InMemoryDirectory) {
    let dir = InMemoryDirectory::new();
    dir.add_domain_controller("DC1", Duration::ZERO);
    let mut b = Fleet::builder()
        .directory(Arc::new(dir.clone()))
        .registrar(dir.clone())
        .servers(n, server_template(prefix, server_recycle))
        .winrm_credentials(WINRM_USER, password.clone());
    if auth == Auth::Basic {
        b = b.winrm_basic_over_http();
    }
    let fleet = b.build().await.expect("lab fleet");
    (fleet, dir)
}

/// A `WinRmFlusher` (NTLM with message encryption over loopback HTTP, as Windows' defaults
/// require) for `endpoints` (server name, WinRM URL).
pub(crate) fn flusher(
    endpoints: impl IntoIterator<Item = (String, String)>,
    password: &SecretString,
) -> Arc<WinRmFlusher> {
    flusher_with(Auth::Ntlm, endpoints, password)
}

/// [`flusher`] with the given authentication.
pub(crate) fn flusher_with(
    auth: Auth,
    endpoints: impl IntoIterator<Item = (String, String)>,
    password: &SecretString,
) -> Arc<WinRmFlusher> {
    let mut b = WinRmFlusher::builder()
        .auth(match auth {
            Auth::Ntlm => WinRmAuth::Ntlm,
            Auth::Basic => WinRmAuth::Basic,
        })
        .allow_unencrypted_basic(auth == Auth::Basic)
        .timeout(Duration::from_secs(60))
        .credentials(WINRM_USER, password.clone());
    for (name, url) in endpoints {
        b = b.endpoint(name, url);
    }
    Arc::new(b.build().expect("flusher"))
}

/// Limits for the benches: generous, and a fast convergence poll.
pub(crate) fn timeouts() -> Timeouts {
    Timeouts::default()
        .with_converge(Duration::from_secs(30))
        .with_converge_poll(Duration::from_millis(20))
        .with_per_server(Duration::from_secs(60))
        .with_directory(Duration::from_secs(30))
}

/// Adds a fresh user to `dir` and returns its UPN.
pub(crate) fn fresh_user(dir: &InMemoryDirectory, tag: &str) -> String {
    let sam = format!("bench-{tag}");
    let upn = format!("{sam}@lab.example.test");
    dir.add_user(&sam, &upn, "Old-Bench-Passw0rd!");
    upn
}

/// What one run needs besides the strategy.
pub(crate) struct RunSpec<'a> {
    /// The directory the account lives in.
    pub(crate) directory: Arc<dyn Directory>,
    /// The flusher.
    pub(crate) flusher: Arc<WinRmFlusher>,
    /// The account to disable.
    pub(crate) user: &'a str,
    /// `Some`: flush exactly these servers (no discovery); `None`: discover.
    pub(crate) servers: Option<Vec<ExchangeServer>>,
    /// `include_server` names (narrow discovery on a shared DC).
    pub(crate) include: Vec<String>,
    /// Probe the old password afterwards.
    pub(crate) probe: Option<(Arc<dyn Prober>, SecretString)>,
}

/// Plans and executes "disable `user`" with `strategy`; returns the plan's time and the report.
pub(crate) async fn remediate(spec: RunSpec<'_>, strategy: Strategy) -> (Duration, Report) {
    let mut b = Remediation::builder()
        .directory(spec.directory)
        .flusher(spec.flusher)
        .user(spec.user)
        .disable()
        .strategy(strategy)
        .timeouts(timeouts())
        .retry(RetryPolicy::none());
    if let Some(servers) = spec.servers {
        b = b.servers(servers);
    }
    for name in spec.include {
        b = b.include_server(name);
    }
    if let Some((prober, old)) = spec.probe {
        b = b.probe_old_password(prober, old);
    }
    let r = b.build().expect("remediation");
    let t = Instant::now();
    let plan = r.plan().await.expect("plan");
    let planned = t.elapsed();
    let report = r.execute(&plan).await;
    (planned, report)
}

/// The time of `step` in `report` (zero when it did not run).
pub(crate) fn step_time(report: &Report, step: Step) -> Duration {
    report
        .steps
        .iter()
        .find(|s| s.step == step)
        .map(|s| s.elapsed)
        .unwrap_or_default()
}

/// Panics unless the run ended `Revoked` with `servers` servers flushed (the others skipped:
/// servers of other suites on a shared DC), each in at most 5 round trips. Returns the largest
/// round-trip count a server reported.
pub(crate) fn assert_revoked(report: &Report, servers: usize) -> u32 {
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    let flushed: Vec<_> = report
        .servers
        .iter()
        .filter(|s| !matches!(s.outcome, ServerOutcome::Skipped { .. }))
        .collect();
    assert_eq!(flushed.len(), servers, "{}", report.summary());
    let mut most = 0;
    for s in flushed {
        let ServerOutcome::Flushed { flush, .. } = &s.outcome else {
            panic!("{}: {:?}", s.server, s.outcome)
        };
        assert!(
            flush.round_trips <= 5,
            "{}: {} round trips",
            s.server,
            flush.round_trips
        );
        most = most.max(flush.round_trips);
    }
    most
}

/// WinRM counters summed over servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WinRmTotals {
    /// HTTP requests to `/wsman`.
    pub(crate) requests: u64,
    /// Create.
    pub(crate) create: u64,
    /// Command.
    pub(crate) command: u64,
    /// Receive.
    pub(crate) receive: u64,
    /// Signal.
    pub(crate) signal: u64,
    /// Delete.
    pub(crate) delete: u64,
    /// Shells open now.
    pub(crate) open_shells: u64,
    /// Commands open now.
    pub(crate) open_commands: u64,
    /// TCP connections open now.
    pub(crate) open_connections: u64,
}

impl WinRmTotals {
    /// Sums the counters of `servers`.
    pub(crate) fn of(servers: &[LabServer]) -> Self {
        let mut t = WinRmTotals::default();
        for s in servers {
            let w: WinRmStats = s.winrm_stats();
            t.requests += w.requests;
            t.create += w.create;
            t.command += w.command;
            t.receive += w.receive;
            t.signal += w.signal;
            t.delete += w.delete;
            t.open_shells += w.open_shells;
            t.open_commands += w.open_commands;
            t.open_connections += s.counters().open_connections as u64;
        }
        t
    }

    /// The monotonic counters of `self` minus those of `before`; the gauges of `self`.
    pub(crate) fn since(&self, before: &WinRmTotals) -> Self {
        WinRmTotals {
            requests: self.requests - before.requests,
            create: self.create - before.create,
            command: self.command - before.command,
            receive: self.receive - before.receive,
            signal: self.signal - before.signal,
            delete: self.delete - before.delete,
            ..*self
        }
    }

    /// Whether no shell, command or connection is open.
    pub(crate) fn all_closed(&self) -> bool {
        self.open_shells == 0 && self.open_commands == 0 && self.open_connections == 0
    }
}

/// Waits up to `limit` until `check` holds (connections close asynchronously once the client
/// is dropped); returns whether it did.
pub(crate) async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Milliseconds with one decimal.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The median of `samples` (sorted in place; the upper one of an even count).
pub(crate) fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// A plain-text table printed as Markdown, so it can be pasted into BENCHMARKS.md.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds one row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints the table to stdout.
    #[allow(clippy::print_stdout)]
    pub(crate) fn print(&self) {
        let line = |cells: &[String]| format!("| {} |", cells.join(" | "));
        println!("{}", line(&self.header));
        println!(
            "|{}|",
            self.header
                .iter()
                .map(|_| "---")
                .collect::<Vec<_>>()
                .join("|")
        );
        for r in &self.rows {
            println!("{}", line(r));
        }
        println!();
    }
}

/// This process's peak resident set (`VmHWM`) and current one (`VmRSS`), in KiB.
pub(crate) fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`.
pub(crate) fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of proc(5), indexes 11 and 12 after the ')';
    // in clock ticks, 100 per second on Linux.
    let total = ticks(11) + ticks(12);
    Duration::from_millis(total * 10)
}

/// File descriptors this process has open now.
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The machine's load and core count, printed with every table (the runs are noisy).
pub(crate) fn machine_note() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "machine: {cores} cores, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}
