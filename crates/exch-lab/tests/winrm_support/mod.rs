//! A tiny in-test fake [`IisHost`] shared by the `winrm_*` tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use exch_lab::host::{HostPool, HostWorker, IisHost, IisResetMode, NativeOutput};

/// Pools with one worker each; recycle assigns a new pid and start time.
pub struct FakeHost {
    state: Mutex<State>,
    /// How long a recycle takes.
    pub recycle_delay: Duration,
}

struct State {
    pools: Vec<HostPool>,
    next_pid: u32,
    now: DateTime<Utc>,
    ttl: Option<u32>,
    failing: Vec<String>,
    resets: Vec<IisResetMode>,
}

impl FakeHost {
    /// Pools named `names`, all started, one worker each.
    pub fn new(names: &[&str]) -> Self {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let pools = names
            .iter()
            .enumerate()
            .map(|(i, n)| HostPool {
                name: (*n).to_string(),
                started: true,
                workers: vec![HostWorker {
                    pid: 1000 + i as u32,
                    started: now - chrono::Duration::hours(1),
                }],
            })
            .collect();
        FakeHost {
            state: Mutex::new(State {
                pools,
                next_pid: 5000,
                now,
                ttl: None,
                failing: Vec::new(),
                resets: Vec::new(),
            }),
            recycle_delay: Duration::ZERO,
        }
    }

    /// The Exchange 2016 front-end pools.
    pub fn exchange() -> Self {
        Self::new(&[
            "DefaultAppPool",
            "MSExchangeOWAAppPool",
            "MSExchangeSyncAppPool",
            "MSExchangeServicesAppPool",
        ])
    }

    /// Makes recycling `pool` fail.
    pub fn fail_recycle(&self, pool: &str) {
        self.state.lock().unwrap().failing.push(pool.to_string());
    }

    /// Sets `UserTokenTTL`.
    pub fn with_ttl(self, ttl: u32) -> Self {
        self.state.lock().unwrap().ttl = Some(ttl);
        self
    }

    /// Current pid of the first worker of `pool`.
    pub fn pid(&self, pool: &str) -> Option<u32> {
        let s = self.state.lock().unwrap();
        s.pools
            .iter()
            .find(|p| p.name == pool)
            .and_then(|p| p.workers.first().map(|w| w.pid))
    }

    /// iisreset calls seen.
    pub fn resets(&self) -> Vec<IisResetMode> {
        self.state.lock().unwrap().resets.clone()
    }
}

#[async_trait]
impl IisHost for FakeHost {
    fn pools(&self) -> Vec<HostPool> {
        self.state.lock().unwrap().pools.clone()
    }

    fn process_start_time(&self, pid: u32) -> Option<DateTime<Utc>> {
        let s = self.state.lock().unwrap();
        s.pools
            .iter()
            .flat_map(|p| p.workers.iter())
            .find(|w| w.pid == pid)
            .map(|w| w.started)
    }

    fn now(&self) -> DateTime<Utc> {
        self.state.lock().unwrap().now
    }

    async fn recycle_pool(&self, name: &str) -> Result<(), String> {
        if !self.recycle_delay.is_zero() {
            tokio::time::sleep(self.recycle_delay).await;
        }
        let mut s = self.state.lock().unwrap();
        if s.failing.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "The worker process for application pool '{name}' failed to start."
            ));
        }
        s.now += chrono::Duration::seconds(1);
        let pid = s.next_pid;
        s.next_pid += 1;
        let now = s.now;
        let pool = s
            .pools
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!("Cannot find path 'IIS:\\AppPools\\{name}' because it does not exist.")
            })?;
        pool.workers = vec![HostWorker { pid, started: now }];
        Ok(())
    }

    async fn start_pool(&self, name: &str) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        let p = s
            .pools
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .ok_or("missing")?;
        p.started = true;
        Ok(())
    }

    async fn stop_pool(&self, name: &str) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        let p = s
            .pools
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .ok_or("missing")?;
        p.started = false;
        p.workers.clear();
        Ok(())
    }

    async fn iisreset(&self, mode: IisResetMode) -> NativeOutput {
        let mut s = self.state.lock().unwrap();
        s.resets.push(mode);
        if matches!(mode, IisResetMode::Status) {
            return NativeOutput {
                exit_code: 0,
                stdout: "Status for World Wide Web Publishing Service ( W3SVC ) : Running\r\n"
                    .into(),
            };
        }
        s.now += chrono::Duration::seconds(1);
        let now = s.now;
        let mut pid = s.next_pid;
        for p in &mut s.pools {
            p.workers = vec![HostWorker { pid, started: now }];
            pid += 1;
        }
        s.next_pid = pid;
        NativeOutput {
            exit_code: 0,
            stdout: "Attempting stop...\r\nInternet services successfully stopped\r\nAttempting start...\r\nInternet services successfully restarted\r\n".into(),
        }
    }

    fn token_ttl(&self) -> Option<u32> {
        self.state.lock().unwrap().ttl
    }

    fn set_token_ttl(&self, secs: u32) {
        self.state.lock().unwrap().ttl = Some(secs);
    }
}
