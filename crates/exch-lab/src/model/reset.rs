//! `iisreset`: stop every pool, wait, start IIS again (pools get workers on demand).
//!
//! `iisreset /noforce` that times out does not put IIS back: it asked the Service Control
//! Manager to stop W3SVC/WAS, and a service stop cannot be cancelled — Windows is left with
//! IIS stopping, then stopped (requests get 503), until someone runs `iisreset /start`. After a
//! start, Exchange's pools (`startMode` OnDemand, the IIS default) have no worker until their
//! first request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::worker::Worker;
use super::IisServer;
use crate::clock::lock;
use crate::host::{IisResetMode, NativeOutput};

const STOP: &str = "Attempting stop...\r\n";
const STOPPED: &str = "Internet services successfully stopped\r\n";
const START: &str = "Attempting start...\r\n";
const STOP_FAILED_NOFORCE: &str = "Restart attempt failed.\r\n\
The IIS Admin Service or the World Wide Web Publishing Service, or a service dependent on them failed to stop.  \
/noforce was specified, so the services were not forcefully terminated.\r\n";

/// Requests still running when a `/noforce` stop timed out.
struct StillBusy;

impl IisServer {
    /// Runs `iisreset` in `mode`, with IIS's console text and exit code.
    ///
    /// A restart stops W3SVC (every request meanwhile gets 503), waits for requests in flight
    /// up to [`super::IisTiming::stop_timeout`] — then kills the workers, or with `/noforce`
    /// gives up (exit code 1) and leaves IIS stopped, the old workers finishing what they
    /// run — keeps IIS down for [`super::IisTiming::reset_window`], and starts every pool
    /// without a worker (each starts one on its first request).
    pub async fn iisreset(&self, mode: IisResetMode) -> NativeOutput {
        if mode == IisResetMode::Status {
            return self.status();
        }
        let _serial = self.inner.reset_lock.lock().await;
        let mut out = String::from("\r\n");
        let ok = |stdout| NativeOutput {
            exit_code: 0,
            stdout,
        };
        match mode {
            IisResetMode::Start => {
                self.start_services();
                out.push_str(START);
                out.push_str("Internet services successfully started\r\n");
                ok(out)
            }
            IisResetMode::Stop => {
                out.push_str(STOP);
                // `/stop` without `/noforce` always ends with IIS stopped.
                let _ = self.stop_services(true).await;
                self.inner.counters.iisresets.inc();
                out.push_str(STOPPED);
                ok(out)
            }
            IisResetMode::Restart | IisResetMode::RestartNoForce => {
                let force = mode == IisResetMode::Restart;
                out.push_str(STOP);
                if self.stop_services(force).await.is_err() {
                    out.push_str(STOP_FAILED_NOFORCE);
                    return NativeOutput {
                        exit_code: 1,
                        stdout: out,
                    };
                }
                self.inner.counters.iisresets.inc();
                out.push_str(STOPPED);
                let window = lock(&self.inner.timing).reset_window;
                tokio::time::sleep(window).await;
                self.start_services();
                out.push_str(START);
                out.push_str("Internet services successfully restarted\r\n");
                ok(out)
            }
            IisResetMode::Status => self.status(),
        }
    }

    fn status(&self) -> NativeOutput {
        let state = {
            let mut st = lock(&self.inner.state);
            if st.running {
                "Running"
            } else if st.pools.iter_mut().any(|p| {
                p.prune();
                !p.draining.is_empty()
            }) {
                "Stop Pending"
            } else {
                "Stopped"
            }
        };
        let mut stdout = String::new();
        for (display, short, always) in [
            ("IIS Admin Service", "IISADMIN", true),
            ("Windows Process Activation Service", "WAS", false),
            ("Net.Tcp Listener Adapter", "NetTcpActivator", true),
            ("Net.Tcp Port Sharing Service", "NetTcpPortSharing", true),
            ("World Wide Web Publishing Service", "W3SVC", false),
        ] {
            let s = if always { "Running" } else { state };
            stdout.push_str(&format!("Status for {display} ( {short} ) : {s}\r\n"));
        }
        NativeOutput {
            exit_code: 0,
            stdout,
        }
    }

    /// Stops W3SVC: new requests get 503 at once; requests in flight may finish within the
    /// stop timeout. On timeout, `force` kills their workers; otherwise the stop is left
    /// pending as Windows leaves it: IIS stays stopped, the old workers finish their requests.
    async fn stop_services(&self, force: bool) -> Result<(), StillBusy> {
        let (saved, stop_timeout) = {
            let mut state = lock(&self.inner.state);
            state.running = false;
            let saved: Vec<Option<Arc<Worker>>> = state
                .pools
                .iter_mut()
                .map(|p| {
                    p.prune();
                    let current = p.current.clone();
                    let _ = p.retire_current();
                    current
                })
                .collect();
            (saved, lock(&self.inner.timing).stop_timeout)
        };
        let deadline = Instant::now() + stop_timeout;
        while saved.iter().flatten().any(|w| w.in_flight() > 0) {
            if Instant::now() >= deadline {
                if force {
                    saved.iter().flatten().for_each(|w| w.terminate());
                    return Ok(());
                }
                return Err(StillBusy);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Starts W3SVC: every pool is started, without a worker (on-demand start).
    fn start_services(&self) {
        let mut state = lock(&self.inner.state);
        if state.running {
            return;
        }
        for pool in &mut state.pools {
            pool.prune();
            pool.started = true;
            pool.recycling = false;
            pool.current = None;
        }
        state.running = true;
        drop(state);
        self.inner.changed.notify_waiters();
    }
}
