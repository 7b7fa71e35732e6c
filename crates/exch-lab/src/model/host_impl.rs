//! [`IisHost`] for [`IisServer`]: what the PowerShell interpreter sees.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::IisServer;
use crate::clock::lock;
use crate::host::{HostPool, HostWorker, IisHost, IisResetMode, NativeOutput};
use crate::mailbox::ExchangeShell;

#[async_trait]
impl IisHost for IisServer {
    fn pools(&self) -> Vec<HostPool> {
        let mut state = lock(&self.inner.state);
        let running = state.running;
        state
            .pools
            .iter_mut()
            .map(|p| {
                p.prune();
                let serving = running && p.started;
                HostPool {
                    name: p.name.to_owned(),
                    started: serving,
                    workers: p
                        .current
                        .iter()
                        .filter(|_| serving)
                        .map(|w| HostWorker {
                            pid: w.pid,
                            started: w.started,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn stopping_workers(&self, pool: &str) -> Vec<HostWorker> {
        let mut state = lock(&self.inner.state);
        state.pool_mut(pool).map_or_else(Vec::new, |p| {
            p.prune();
            p.draining
                .iter()
                .map(|w| HostWorker {
                    pid: w.pid,
                    started: w.started,
                })
                .collect()
        })
    }

    fn process_start_time(&self, pid: u32) -> Option<DateTime<Utc>> {
        let mut state = lock(&self.inner.state);
        let running = state.running;
        state.pools.iter_mut().find_map(|p| {
            p.prune();
            let current = p.current.iter().filter(|_| running);
            current
                .chain(&p.draining)
                .find(|w| w.pid == pid && !w.is_terminated())
                .map(|w| w.started)
        })
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    async fn recycle_pool(&self, name: &str) -> Result<(), String> {
        self.recycle(name).await
    }

    async fn start_pool(&self, name: &str) -> Result<(), String> {
        IisServer::start_pool(self, name)
    }

    async fn stop_pool(&self, name: &str) -> Result<(), String> {
        IisServer::stop_pool(self, name)
    }

    async fn iisreset(&self, mode: IisResetMode) -> NativeOutput {
        IisServer::iisreset(self, mode).await
    }

    fn token_ttl(&self) -> Option<u32> {
        lock(&self.inner.state).token_ttl
    }

    fn set_token_ttl(&self, secs: u32) {
        lock(&self.inner.state).token_ttl = Some(secs);
    }

    fn exchange(&self) -> Option<ExchangeShell> {
        Some(self.exchange_shell())
    }
}
