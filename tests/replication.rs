//! Issue 16: convergence on real replication. Two Samba AD DCs of one domain with DRS
//! replication (`exch_samba::SambaPair`, started on demand: `scripts/samba-ad-pair.sh`), a lab
//! fleet over real WinRM (NTLM, sealed, as strict as Windows' defaults) and HTTP, the library's
//! `LdapDirectory` discovering both DCs from their `nTDSDSA` objects.
//!
//! What is judged apart from the report: each DC's own answer to a plain LDAP read or bind
//! (watchers poll both DCs during the run and record the last read that still showed the old
//! state and the first that showed the new), and the lab's own view (the worker pid of every
//! probed pool, polled during the run: when the flush really happened; the lab's IIS model
//! deciding a logon with the old password).
//!
//! Rows: disable, reset and both converge on real replication with the report's per-DC
//! timings matching the watchers'; DC2 stopped → the run names DC2 and does not flush before
//! the converge limit; DC2 started late → convergence completes; DC2's inbound replication
//! paused → the "never converges" row of the fault matrix on real DCs (and a resumed rerun
//! reaches `Revoked`); a password reset is refused on DC2 only once DC2 shows it.
//!
//! Skipped with a `SKIPPED:` line when no pair can be had, failed under
//! EXCH_REVOKE_REQUIRE_SAMBA=1. Tests of this binary take the pair one at a time.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exch_core::Protocol;
use exch_directory::{AuthResult, Directory, LdapDirectory};
use exch_iis::{WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_lab::model::Logon;
use exch_remediate::{
    DcRecord, Event, HttpProber, NewPassword, Outcome, ProbeResult, Prober, Remediation, Report,
    RetryPolicy, Step, Strategy, Timeouts,
};
use exch_samba::{AdUser, DcId, SambaAd, SambaPair};
use secrecy::SecretString;
use tokio::sync::mpsc::UnboundedReceiver;

const SUITE: &str = "replication (two Samba AD DCs + lab fleet)";
const OLD: &str = "Old-Passw0rd!2026";
const NEW: &str = "N3w-Secret!x-2026";
const WINRM_USER: &str = "EXP\\svc-revoke";
const WINRM_PASSWORD: &str = "Lab-WinRM-Pass-16";
/// Probed and flushed protocols (every cache miss is an LDAPS bind to DC1).
const PROBED: [Protocol; 3] = [Protocol::Owa, Protocol::Eas, Protocol::RpcHttp];
/// How often the watchers read each DC (a bind costs the DC ~5 ms of CPU).
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// How often the engine reads each DC.
const CONVERGE_POLL: Duration = Duration::from_millis(100);

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

async fn ldap(pair: &SambaPair, url: &str) -> LdapDirectory {
    pair.env()
        .directory_at(url)
        .timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap_or_else(|e| panic!("LDAPS to {url}: {e}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Disable,
    Reset,
    Both,
}

/// A user, a two-server fleet registered in the pair's directory, both known to DC2, and the
/// user's tokens cached on every probed pool.
struct Bed {
    pair: &'static SambaPair,
    fleet: Fleet,
    names: Vec<String>,
    prober: HttpProber,
    flusher: Arc<WinRmFlusher>,
    tool: Arc<dyn Directory>,
    user: AdUser,
}

async fn bed(pair: &'static SambaPair) -> Bed {
    let dc1 = &pair.dc(DcId::Dc1).ad;
    let user = dc1
        .create_user(&SambaAd::unique_name("rep"), &secret(OLD))
        .await
        .expect("create user");
    let prefix = SambaAd::unique_name("R");
    let names: Vec<String> = (1..=2).map(|i| format!("{prefix}{i:02}")).collect();
    let auth: Arc<dyn Directory> = Arc::new(ldap(pair, &pair.dc(DcId::Dc1).url).await);
    let fleet = Fleet::builder()
        .directory(auth)
        .dns_domain(pair.env().dns_domain())
        .registrar(dc1.registrar())
        .server(ServerSpec::exchange_2019(&names[0]).recycle_latency(Duration::from_millis(20)))
        .server(ServerSpec::exchange_2016(&names[1]).recycle_latency(Duration::from_millis(20)))
        .winrm_credentials(WINRM_USER, secret(WINRM_PASSWORD))
        .build()
        .await
        .expect("fleet");
    let mut prober = HttpProber::new().unwrap();
    let mut flusher = WinRmFlusher::builder()
        .auth(WinRmAuth::Ntlm)
        .timeout(Duration::from_secs(20))
        .credentials(WINRM_USER, secret(WINRM_PASSWORD));
    for s in fleet.servers() {
        prober = prober.base_url(s.name(), s.base_url());
        flusher = flusher.endpoint(s.name(), s.winrm_url());
    }
    // DC2 has the user (and the server objects) before anything is measured.
    pair.blocking(|p| p.replicate_now()).await;
    let bed = Bed {
        pair,
        tool: Arc::new(ldap(pair, &pair.dc(DcId::Dc1).url).await),
        fleet,
        names,
        prober,
        flusher: Arc::new(flusher.build().unwrap()),
        user,
    };
    for s in bed.fleet.exchange_servers() {
        for p in PROBED {
            let r = bed.prober.probe(&s, p, &bed.user.upn, &secret(OLD)).await;
            assert!(
                matches!(r, ProbeResult::Accepted(_)),
                "{}/{p} before: {r:?}",
                s.name
            );
        }
    }
    bed
}

impl Bed {
    fn remediation(
        &self,
        act: Act,
        converge: Duration,
        events: tokio::sync::mpsc::UnboundedSender<Event>,
        resume: Option<Report>,
    ) -> Remediation {
        let mut b = Remediation::builder()
            .directory(self.tool.clone())
            .flusher(self.flusher.clone())
            .user(&self.user.upn)
            .protocols(&PROBED)
            .strategy(Strategy::Parallel { max_in_flight: 4 })
            .timeouts(
                Timeouts::default()
                    .with_converge(converge)
                    .with_converge_poll(CONVERGE_POLL)
                    .with_per_server(Duration::from_secs(20))
                    .with_directory(Duration::from_secs(10)),
            )
            .retry(RetryPolicy {
                attempts: 2,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(100),
            })
            .events(events)
            .probe_old_password(Arc::new(self.prober.clone()), secret(OLD));
        b = match act {
            Act::Disable => b.disable(),
            Act::Reset => b.reset_password(NewPassword::Given(secret(NEW))),
            Act::Both => b.disable().reset_password(NewPassword::Given(secret(NEW))),
        };
        for n in &self.names {
            b = b.include_server(n);
        }
        if let Some(r) = resume {
            b = b.resume(r);
        }
        b.build().unwrap()
    }

    /// The lab's own verdict on a logon with the old password, except explicit refusals by
    /// the directory for `why`.
    async fn not_refused(&self, why: &[AuthResult]) -> Vec<String> {
        let mut out = Vec::new();
        for s in self.fleet.servers() {
            for p in PROBED {
                let l = s.iis().authenticate(p, &self.user.upn, &secret(OLD)).await;
                if !why.iter().any(|w| l == Logon::Refused(*w)) {
                    out.push(format!("{}/{p}: {l:?}", s.name()));
                }
            }
        }
        out
    }

    /// Worker pid of every probed pool, by the lab.
    fn pids(&self) -> Vec<Option<u32>> {
        self.fleet
            .servers()
            .iter()
            .flat_map(|s| {
                PROBED
                    .iter()
                    .map(move |p| s.iis().current_pid(s.iis().pool_for(*p).unwrap_or("?")))
            })
            .collect()
    }

    async fn teardown(self) {
        self.fleet.shutdown_within(Duration::from_millis(500)).await;
        let ad = &self.pair.dc(DcId::Dc1).ad;
        let _ = ad.remove_exchange_servers(&self.names).await;
        let _ = ad.delete(&self.user.dn).await;
    }
}

/// What a watcher saw of one DC during a run.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// Start of the last read that still showed the old state.
    last_stale: Option<Instant>,
    /// End of the first read that showed the new state.
    first_new: Option<Instant>,
    /// Reads where the old password was refused although the DC did not show the reset yet.
    refused_before_shown: u32,
    /// Reads where the old password still bound.
    old_accepted: u32,
}

/// The state of the account on one DC, by a plain read as the administrator on that DC.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DcState {
    uac: Option<u32>,
    pwd_last_set: Option<String>,
}

async fn dc_state(ad: &SambaAd, dn: &str) -> Option<DcState> {
    let uac = ad.read_attribute(dn, "userAccountControl").await.ok()?;
    let pwd = ad.read_attribute(dn, "pwdLastSet").await.ok()?;
    Some(DcState {
        uac: uac.and_then(|v| v.parse().ok()),
        pwd_last_set: pwd,
    })
}

/// Whether `now` shows the change of `act` compared with `before`.
fn shows(act: Act, before: &DcState, now: &DcState) -> bool {
    let disabled = now.uac.is_some_and(|u| u & 2 == 2);
    let reset = now.pwd_last_set != before.pwd_last_set;
    match act {
        Act::Disable => disabled,
        Act::Reset => reset,
        Act::Both => disabled && reset,
    }
}

/// Polls `dc` until `done`; with a reset also binds with the old password on that DC first.
async fn watch(
    pair: &SambaPair,
    dc: DcId,
    bed: &Bed,
    act: Act,
    before: &DcState,
    done: &AtomicBool,
    ready: &AtomicUsize,
) -> Seen {
    let ad = &pair.dc(dc).ad;
    let mut seen = Seen::default();
    let mut first = true;
    while !done.load(Ordering::SeqCst) {
        let start = Instant::now();
        // The bind first: when the read after it still shows the old password, a refusal of
        // the old password happened before the DC showed the reset.
        let old_refused = if act == Act::Disable {
            None
        } else {
            ad.try_bind(&bed.user.upn, &secret(OLD))
                .await
                .ok()
                .map(|b| b.rc == 49)
        };
        if let Some(state) = dc_state(ad, &bed.user.dn).await {
            let new = shows(act, before, &state);
            if new {
                seen.first_new.get_or_insert_with(Instant::now);
            } else {
                seen.last_stale = Some(start);
            }
            let reset_shown = state.pwd_last_set != before.pwd_last_set;
            match old_refused {
                Some(true) if !reset_shown => seen.refused_before_shown += 1,
                Some(false) => seen.old_accepted += 1,
                _ => {}
            }
        }
        if std::mem::take(&mut first) {
            ready.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
    seen
}

/// When the lab first shows a new worker on any probed pool (polled every 10 ms until `done`).
async fn watch_flush(bed: &Bed, done: &AtomicBool) -> Option<Instant> {
    let before = bed.pids();
    while !done.load(Ordering::SeqCst) {
        if bed.pids() != before {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (bed.pids() != before).then(Instant::now)
}

/// Every event with the instant it arrived, until `done`; `on_dc1` runs once DC1 converged.
async fn observe(
    mut rx: UnboundedReceiver<Event>,
    done: &AtomicBool,
    mut on_dc1: Option<Box<dyn FnOnce() + Send>>,
) -> Vec<(Instant, Event)> {
    let mut out = Vec::new();
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                if matches!(&ev, Event::DcConverged { dc, .. } if dc == "DC1") {
                    if let Some(f) = on_dc1.take() {
                        f();
                    }
                }
                out.push((Instant::now(), ev));
            }
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                if done.load(Ordering::SeqCst) {
                    while let Ok(ev) = rx.try_recv() {
                        out.push((Instant::now(), ev));
                    }
                    break;
                }
            }
        }
    }
    out
}

/// One run with the watchers.
struct Observed {
    report: Report,
    dc1: Seen,
    dc2: Seen,
    flushed_at: Option<Instant>,
    events: Vec<(Instant, Event)>,
}

impl Observed {
    fn converge_started(&self) -> Instant {
        self.events
            .iter()
            .find(|(_, e)| {
                matches!(
                    e,
                    Event::StepStarted {
                        step: Step::Converge
                    }
                )
            })
            .map(|(t, _)| *t)
            .expect("no converge step")
    }

    fn dc(&self, name: &str) -> &DcRecord {
        self.report
            .domain_controllers
            .iter()
            .find(|d| d.dc == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.report.domain_controllers))
    }

    /// The report's time for `name` is what the watcher of that DC measured: the engine saw
    /// the change after that DC's last stale read and no later than shortly after the
    /// watcher's first new read.
    fn timing_matches(&self, name: &str, seen: &Seen) {
        let rec = self.dc(name);
        let after = rec.after.unwrap_or_else(|| panic!("{rec:?}"));
        let engine_saw = self.converge_started() + after;
        // The event is recorded when the observer task receives it: a little late.
        let slack = Duration::from_millis(300);
        if let Some(stale) = seen.last_stale {
            assert!(
                engine_saw + slack >= stale,
                "{name}: the report says {after:?}, but the DC was still stale {:?} later",
                stale - engine_saw
            );
        }
        let first = seen.first_new.expect("the watcher never saw the change");
        assert!(
            engine_saw <= first + CONVERGE_POLL + Duration::from_millis(700),
            "{name}: the report says {after:?}, {:?} after the watcher saw it",
            engine_saw - first
        );
    }
}

async fn run(
    bed: &Bed,
    act: Act,
    converge: Duration,
    resume: Option<Report>,
    on_dc1: Option<Box<dyn FnOnce() + Send>>,
) -> Observed {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let r = bed.remediation(act, converge, tx, resume);
    let plan = r.plan().await.expect("plan");
    let before = dc_state(&bed.pair.dc(DcId::Dc1).ad, &bed.user.dn)
        .await
        .expect("DC1 state");
    let done = AtomicBool::new(false);
    let ready = AtomicUsize::new(0);
    let (report, dc1, dc2, flushed_at, events) = tokio::join!(
        async {
            // Both watchers have read (or tried to read) their DC once: the first stale read
            // is before the change.
            while ready.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let report = r.execute(&plan).await;
            done.store(true, Ordering::SeqCst);
            drop(r);
            report
        },
        watch(bed.pair, DcId::Dc1, bed, act, &before, &done, &ready),
        watch(bed.pair, DcId::Dc2, bed, act, &before, &done, &ready),
        watch_flush(bed, &done),
        observe(rx, &done, on_dc1),
    );
    Observed {
        report,
        dc1,
        dc2,
        flushed_at,
        events,
    }
}

async fn converges(act: Act) {
    let Some(pair) = SambaPair::require(SUITE) else {
        return;
    };
    let _g = pair.exclusive().await;
    let bed = bed(pair).await;
    let o = run(&bed, act, Duration::from_secs(60), None, None).await;
    let s = o.report.summary();
    assert_eq!(o.report.outcome, Outcome::Revoked, "{act:?}\n{s}");
    assert_eq!(o.report.domain_controllers.len(), 2, "{s}");
    assert!(
        o.report.domain_controllers.iter().all(|d| d.converged),
        "{s}"
    );
    o.timing_matches("DC1", &o.dc1);
    o.timing_matches("DC2", &o.dc2);
    // By the lab: no worker changed before DC2's last stale read (the flush waited for it).
    let flushed = o.flushed_at.expect("the lab saw no flush");
    if let Some(stale) = o.dc2.last_stale {
        assert!(flushed > stale, "{act:?}: flushed while DC2 was stale\n{s}");
    }
    // A disabled account whose password was also reset: Samba answers the old password with
    // `data 52e` (bad credentials) before it looks at the disable bit.
    let why: &[AuthResult] = match act {
        Act::Disable => &[AuthResult::AccountDisabled],
        Act::Reset => &[AuthResult::BadCredentials],
        Act::Both => &[AuthResult::BadCredentials, AuthResult::AccountDisabled],
    };
    assert_eq!(bed.not_refused(why).await, Vec::<String>::new(), "{s}");
    if act != Act::Disable {
        // On DC2 the old password was never refused before DC2 showed the reset.
        assert_eq!(o.dc2.refused_before_shown, 0, "{:?}", o.dc2);
        let b = pair
            .dc(DcId::Dc2)
            .ad
            .try_bind(&bed.user.upn, &secret(OLD))
            .await
            .unwrap();
        assert_eq!(b.rc, 49, "old password on DC2 after the run: {b:?}");
    }
    eprintln!(
        "{act:?}: DC1 {:?}, DC2 {:?} (report); total {:?}",
        o.dc("DC1").after,
        o.dc("DC2").after,
        o.report.elapsed
    );
    bed.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_converges_on_real_replication() {
    converges(Act::Disable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_converges_on_real_replication() {
    converges(Act::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_and_reset_converge_on_real_replication() {
    converges(Act::Both).await;
}

/// DC2 stopped before the run: the report names DC2 (its URL, the connection refused), DC1
/// converged, the outcome is `Partial`, and by the lab no worker changed before the converge
/// limit had passed since DC1 showed the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dc2_stopped_is_named_and_the_flush_waits_for_the_converge_limit() {
    let Some(pair) = SambaPair::require(SUITE) else {
        return;
    };
    let _g = pair.exclusive().await;
    let bed = bed(pair).await;
    pair.blocking(|p| p.stop_dc(DcId::Dc2)).await;
    let limit = Duration::from_secs(3);
    let o = run(&bed, Act::Disable, limit, None, None).await;
    pair.blocking(|p| p.start_dc(DcId::Dc2)).await;
    let s = o.report.summary();
    assert_eq!(o.report.outcome, Outcome::Partial, "{s}");
    assert!(o.dc("DC1").converged, "{s}");
    let dc2 = o.dc("DC2");
    let url = &pair.dc(DcId::Dc2).url;
    assert!(
        !dc2.converged
            && dc2
                .error
                .as_deref()
                .is_some_and(|e| e.contains(url.as_str())),
        "DC2 record must name {url}: {dc2:?}"
    );
    assert!(
        o.report.reasons.iter().any(|r| r.contains("1/2")),
        "{:?}",
        o.report.reasons
    );
    // The watcher of DC2 never got an answer; DC1's last stale read bounds when the change
    // was made: no flush before that + the converge limit.
    assert!(o.dc2.first_new.is_none() && o.dc2.last_stale.is_none());
    let changed = o.dc1.last_stale.expect("DC1 was read before the change");
    let flushed = o.flushed_at.expect("the lab saw no flush");
    assert!(
        flushed >= changed + limit,
        "flushed {:?} after the change, before the converge limit {limit:?}\n{s}",
        flushed - changed
    );
    assert_eq!(
        bed.not_refused(&[AuthResult::AccountDisabled]).await,
        Vec::<String>::new()
    );
    bed.teardown().await;
}

/// DC2 down when the run starts, started once DC1 shows the change: convergence completes
/// (the report's DC2 time is after DC2 came back and matches DC2's watcher) and the run is
/// `Revoked`; no worker changed before DC2 showed the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dc2_started_late_convergence_completes() {
    let Some(pair) = SambaPair::require(SUITE) else {
        return;
    };
    let _g = pair.exclusive().await;
    let bed = bed(pair).await;
    pair.blocking(|p| p.stop_dc(DcId::Dc2)).await;
    let started = Arc::new(std::sync::Mutex::new(
        None::<std::thread::JoinHandle<Instant>>,
    ));
    let slot = started.clone();
    let o = run(
        &bed,
        Act::Disable,
        Duration::from_secs(60),
        None,
        Some(Box::new(move || {
            *slot.lock().unwrap() = Some(std::thread::spawn(move || {
                pair.start_dc(DcId::Dc2).expect("start DC2");
                Instant::now()
            }));
        })),
    )
    .await;
    let handle = started
        .lock()
        .unwrap()
        .take()
        .expect("DC2 was never started");
    let dc2_up = handle.join().expect("start DC2");
    let s = o.report.summary();
    assert_eq!(o.report.outcome, Outcome::Revoked, "{s}");
    let dc2 = o.dc("DC2");
    assert!(dc2.converged && dc2.reads > 1, "{dc2:?}");
    // DC2 answered only after it was started: the report's time is after that.
    let engine_saw = o.converge_started() + dc2.after.unwrap();
    assert!(engine_saw + Duration::from_millis(300) >= dc2_up, "{s}");
    o.timing_matches("DC2", &o.dc2);
    let flushed = o.flushed_at.expect("the lab saw no flush");
    assert!(
        flushed > o.dc2.last_stale.unwrap_or(dc2_up - Duration::from_secs(1)),
        "{s}"
    );
    assert!(flushed >= dc2_up, "flushed before DC2 was even up\n{s}");
    eprintln!(
        "DC2 started late: converged {:?} after the change, {} reads",
        dc2.after, dc2.reads
    );
    bed.teardown().await;
}

/// DC2's inbound replication paused (`DISABLE_INBOUND_REPL`): DC2 answers, but never shows the
/// change — the "never converges" row of the fault matrix on real DCs. The run is `Partial`,
/// names DC2 as not showing the change, flushes after the converge limit; DC2 itself still
/// says enabled after the run. Replication resumed: a rerun with `.resume(report)` converges
/// on both and reaches `Revoked`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_paused_never_converges_then_resumed_rerun_is_revoked() {
    let Some(pair) = SambaPair::require(SUITE) else {
        return;
    };
    let _g = pair.exclusive().await;
    let bed = bed(pair).await;
    pair.blocking(|p| p.set_inbound_replication(DcId::Dc2, false))
        .await;
    let limit = Duration::from_secs(3);
    let o = run(&bed, Act::Disable, limit, None, None).await;
    let still = dc_state(&pair.dc(DcId::Dc2).ad, &bed.user.dn)
        .await
        .expect("DC2 answers");
    pair.blocking(|p| p.set_inbound_replication(DcId::Dc2, true))
        .await;
    let s = o.report.summary();
    assert_eq!(o.report.outcome, Outcome::Partial, "{s}");
    let dc2 = o.dc("DC2");
    assert!(
        !dc2.converged
            && dc2.reads > 2
            && dc2
                .error
                .as_deref()
                .is_some_and(|e| e.contains("does not show the change")),
        "{dc2:?}"
    );
    assert_eq!(
        still.uac.map(|u| u & 2),
        Some(0),
        "DC2 by itself: {still:?}"
    );
    assert!(o.dc2.first_new.is_none(), "{:?}", o.dc2);
    let changed = o.dc1.last_stale.expect("DC1 read before the change");
    let flushed = o.flushed_at.expect("the lab saw no flush");
    assert!(flushed >= changed + limit, "{s}");
    assert_eq!(
        bed.not_refused(&[AuthResult::AccountDisabled]).await,
        Vec::<String>::new()
    );

    // Resumed: DC2 catches up (forced, so the test does not wait for the next periodic pull).
    pair.blocking(|p| p.replicate_now()).await;
    let o2 = run(
        &bed,
        Act::Disable,
        Duration::from_secs(30),
        Some(o.report),
        None,
    )
    .await;
    let s2 = o2.report.summary();
    assert_eq!(o2.report.outcome, Outcome::Revoked, "{s2}");
    assert!(
        o2.report.domain_controllers.iter().all(|d| d.converged),
        "{s2}"
    );
    assert_eq!(
        dc_state(&pair.dc(DcId::Dc2).ad, &bed.user.dn)
            .await
            .unwrap()
            .uac
            .map(|u| u & 2),
        Some(2)
    );
    bed.teardown().await;
}

/// A password reset with DC2's inbound replication paused: while DC2 does not show it, the
/// old password still binds on DC2 and the new one does not, and the run has not flushed; once
/// replication resumes DC2 refuses the old password (`data 52e`), accepts the new one, and the
/// run converges on it and flushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_is_refused_on_dc2_only_once_dc2_shows_it() {
    let Some(pair) = SambaPair::require(SUITE) else {
        return;
    };
    let _g = pair.exclusive().await;
    let bed = bed(pair).await;
    let dc2 = &pair.dc(DcId::Dc2).ad;
    let before = dc_state(dc2, &bed.user.dn).await.unwrap();
    pair.blocking(|p| p.set_inbound_replication(DcId::Dc2, false))
        .await;
    let resumed = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let (checked, at) = (Arc::new(AtomicBool::new(false)), resumed.clone());
    let flag = checked.clone();
    let pids_before = bed.pids();
    let bed_ref = &bed;
    let upn = bed.user.upn.clone();
    let dn = bed.user.dn.clone();
    // While the run waits for DC2: check DC2 by itself, then resume replication.
    let meanwhile = async move {
        // The reset is on DC1 (visible state), then DC2 is checked while it is paused.
        let t = Instant::now();
        loop {
            let s = dc_state(&pair.dc(DcId::Dc1).ad, &dn).await.unwrap();
            if s.pwd_last_set != before.pwd_last_set {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "no reset on DC1");
            tokio::time::sleep(WATCH_EVERY).await;
        }
        let old = dc2.try_bind(&upn, &secret(OLD)).await.unwrap();
        let new = dc2.try_bind(&upn, &secret(NEW)).await.unwrap();
        let state = dc_state(dc2, &dn).await.unwrap();
        assert_eq!(
            old.rc, 0,
            "old password on DC2 before it shows the reset: {old:?}"
        );
        assert!(new.rc == 49 && new.text.contains("52e"), "{new:?}");
        assert_eq!(state.pwd_last_set, before.pwd_last_set);
        assert_eq!(
            bed_ref.pids(),
            pids_before,
            "flushed before DC2 showed the reset"
        );
        flag.store(true, Ordering::SeqCst);
        *at.lock().unwrap() = Some(Instant::now());
        pair.blocking(|p| {
            p.set_inbound_replication(DcId::Dc2, true)?;
            p.replicate_now()
        })
        .await;
    };
    let (o, ()) = tokio::join!(
        run(&bed, Act::Reset, Duration::from_secs(60), None, None),
        meanwhile
    );
    let s = o.report.summary();
    assert!(checked.load(Ordering::SeqCst));
    assert_eq!(o.report.outcome, Outcome::Revoked, "{s}");
    assert_eq!(o.dc2.refused_before_shown, 0, "{:?}", o.dc2);
    assert!(o.dc2.old_accepted > 0, "{:?}", o.dc2);
    let up = resumed.lock().unwrap().expect("resumed");
    let engine_saw = o.converge_started() + o.dc("DC2").after.unwrap();
    // DC2 could show it only once replication was resumed.
    assert!(engine_saw + Duration::from_millis(300) >= up, "{s}");
    assert!(
        o.flushed_at.expect("flush") > o.dc2.last_stale.unwrap(),
        "{s}"
    );
    let old = dc2.try_bind(&bed.user.upn, &secret(OLD)).await.unwrap();
    let new = dc2.try_bind(&bed.user.upn, &secret(NEW)).await.unwrap();
    assert!(old.rc == 49 && old.text.contains("52e"), "{old:?}");
    assert_eq!(new.rc, 0, "{new:?}");
    bed.teardown().await;
}
