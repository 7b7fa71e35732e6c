//! One running simulated server: its IIS model, its listener, its faults.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use serde::Serialize;
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;

use super::faults::Faults;
use super::listener::{bind, Serving, TlsSettings};
use super::FleetError;
use crate::mailbox::ExchangeCounters;
use crate::model::{IisCounters, IisServer, IisTiming};
use crate::winrm::{WinRmService, WinRmStats};

/// What one simulated server is: name, version, roles, site, timing, initial faults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerSpec {
    /// Server name (`cn`), e.g. `EX01`; with [`super::FleetBuilder::servers`], a prefix.
    pub name: String,
    /// Exchange build.
    pub version: ExchangeVersion,
    /// `msExchCurrentServerRoles`.
    pub roles: ServerRoles,
    /// AD site.
    pub site: Option<String>,
    /// Recycle latency, `iisreset` window, stop timeout (real time).
    pub timing: IisTiming,
    /// Initial `UserTokenTTL` registry value (`None` = absent: 900 s).
    pub user_token_ttl: Option<u32>,
    /// Faults from the start.
    pub faults: Faults,
}

impl ServerSpec {
    /// A Client Access server of `version` in `Default-First-Site-Name` with the roles that
    /// version installs by default, default timing, no faults.
    pub fn new(name: impl Into<String>, version: ExchangeVersion) -> Self {
        let roles = if version.major >= 15 {
            ServerRoles::MAILBOX
                | ServerRoles::CLIENT_ACCESS
                | ServerRoles::HUB_TRANSPORT
                | ServerRoles::FRONTEND_TRANSPORT
        } else {
            ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS | ServerRoles::HUB_TRANSPORT
        };
        ServerSpec {
            name: name.into(),
            version,
            roles,
            site: Some("Default-First-Site-Name".to_owned()),
            timing: IisTiming::default(),
            user_token_ttl: None,
            faults: Faults::default(),
        }
    }

    /// Exchange 2019 CU13 (15.2.1258).
    pub fn exchange_2019(name: impl Into<String>) -> Self {
        ServerSpec::new(name, ExchangeVersion::new(15, 2, 1258))
    }

    /// Exchange 2016 CU23 (15.1.2507).
    pub fn exchange_2016(name: impl Into<String>) -> Self {
        ServerSpec::new(name, ExchangeVersion::new(15, 1, 2507))
    }

    /// Exchange 2010 SP3 (14.3.123).
    pub fn exchange_2010(name: impl Into<String>) -> Self {
        ServerSpec::new(name, ExchangeVersion::new(14, 3, 123))
    }

    /// Sets the roles.
    pub fn roles(mut self, roles: ServerRoles) -> Self {
        self.roles = roles;
        self
    }

    /// Sets the site.
    pub fn site(mut self, site: impl Into<String>) -> Self {
        self.site = Some(site.into());
        self
    }

    /// Sets how long a recycle takes.
    pub fn recycle_latency(mut self, latency: Duration) -> Self {
        self.timing.recycle_latency = latency;
        self
    }

    /// Sets how long `iisreset` keeps IIS down.
    pub fn reset_window(mut self, window: Duration) -> Self {
        self.timing.reset_window = window;
        self
    }

    /// Sets the whole timing.
    pub fn timing(mut self, timing: IisTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Sets the initial `UserTokenTTL` (seconds; 0 = never expires).
    pub fn user_token_ttl(mut self, secs: u32) -> Self {
        self.user_token_ttl = Some(secs);
        self
    }

    /// Sets the initial faults.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
}

/// Counters of one server (monotonic, except `open_connections`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServerCounters {
    /// IIS: logons from cache / directory, refusals, requests refused during a reset, ….
    pub iis: IisCounters,
    /// Exchange cmdlets run on this server (per cmdlet), changes made, prompts refused.
    pub exchange: ExchangeCounters,
    /// HTTP requests that reached `/wsman` (including refused and faulted ones).
    pub winrm_requests: u64,
    /// WinRM requests answered 401 (every one, handshake legs included).
    pub winrm_unauthorized: u64,
    /// WinRM 401s that carried an NTLM CHALLENGE (one per authenticated connection).
    pub winrm_auth_challenges: u64,
    /// WinRM requests refused because their SOAP body was not encrypted.
    pub winrm_plaintext_refused: u64,
    /// SOAP faults the WinRM endpoint sent (injected or not).
    pub winrm_faults: u64,
    /// WinRM shells open right now.
    pub open_shells: u64,
    /// TCP connections open right now.
    pub open_connections: usize,
}

pub(crate) struct ServerShared {
    pub(crate) exchange: ExchangeServer,
    pub(crate) port: u16,
    pub(crate) iis: IisServer,
    pub(crate) winrm: WinRmService,
    pub(crate) open: Arc<AtomicUsize>,
    pub(crate) router: axum::Router,
    /// `None` while unreachable.
    pub(crate) serving: AsyncMutex<Option<Serving>>,
    /// The HTTPS listener (WinRM's 5986), if the fleet has one.
    pub(crate) https: Option<HttpsListener>,
    /// Serve tasks that were closed and may still finish open connections.
    pub(crate) closing: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// A server's HTTPS listener: its port, TLS settings, and serve task (`None` while
/// unreachable).
pub(crate) struct HttpsListener {
    pub(crate) port: u16,
    pub(crate) tls: TlsSettings,
    pub(crate) serving: AsyncMutex<Option<Serving>>,
}

/// A handle on one running simulated server. Cheap to clone.
#[derive(Clone)]
pub struct LabServer {
    pub(crate) shared: Arc<ServerShared>,
}

impl std::fmt::Debug for LabServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabServer")
            .field("name", &self.shared.exchange.name)
            .field("port", &self.shared.port)
            .finish_non_exhaustive()
    }
}

impl LabServer {
    /// Server name, e.g. `EX01`.
    pub fn name(&self) -> &str {
        &self.shared.exchange.name
    }

    /// The server as discovery describes it (name, FQDN, version, roles, site).
    pub fn exchange_server(&self) -> &ExchangeServer {
        &self.shared.exchange
    }

    /// The loopback port it listens on (also while unreachable: nobody listens then).
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `http://127.0.0.1:PORT/wsman`.
    pub fn winrm_url(&self) -> String {
        format!("http://127.0.0.1:{}/wsman", self.shared.port)
    }

    /// `https://127.0.0.1:PORT/wsman` of its HTTPS listener (certificate from the fleet's lab
    /// CA, see [`super::Fleet::winrm_ca_pem`]), if the fleet was built with
    /// [`super::FleetBuilder::winrm_https`].
    pub fn winrm_https_url(&self) -> Option<String> {
        self.https_port()
            .map(|port| format!("https://127.0.0.1:{port}/wsman"))
    }

    /// The port of its HTTPS listener, if any.
    pub fn https_port(&self) -> Option<u16> {
        self.shared.https.as_ref().map(|h| h.port)
    }

    /// `http://127.0.0.1:PORT` — prefix of `/owa`, `/EWS/Exchange.asmx`, ….
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    /// The IIS model (pools, workers, recycle faults, request holds).
    pub fn iis(&self) -> &IisServer {
        &self.shared.iis
    }

    /// A snapshot of its counters.
    pub fn counters(&self) -> ServerCounters {
        let winrm = self.winrm_stats();
        ServerCounters {
            iis: self.shared.iis.counters(),
            exchange: self.shared.iis.exchange_counters(),
            winrm_requests: winrm.requests,
            winrm_unauthorized: winrm.unauthorized,
            winrm_auth_challenges: winrm.auth_challenges,
            winrm_plaintext_refused: winrm.plaintext_refused,
            winrm_faults: winrm.faults,
            open_shells: winrm.open_shells,
            open_connections: self.shared.open.load(Ordering::SeqCst),
        }
    }

    /// Every counter of its WinRM endpoint (requests per action, open shells and commands, …).
    pub fn winrm_stats(&self) -> WinRmStats {
        self.shared.winrm.counters().snapshot()
    }

    /// Its WinRM endpoint (for its full fault switches: timed-out Receives, hanging, …).
    pub fn winrm(&self) -> &WinRmService {
        &self.shared.winrm
    }

    /// The faults in force now.
    pub async fn faults(&self) -> Faults {
        let winrm = self.shared.winrm.faults().get();
        Faults {
            unreachable: self.shared.serving.lock().await.is_none(),
            winrm_delay: winrm.response_delay,
            wrong_credentials: winrm.wrong_credentials,
            soap_fault: winrm.command_fault,
            failing_pools: self.shared.iis.recycle_faults(),
            hang: winrm.hang_after_accept,
            timed_out_receives: winrm.timed_out_receives,
            exit_code: winrm.command_exit,
            malformed_json: winrm.malformed_output,
        }
    }

    /// Replaces every fault at once.
    pub async fn set_faults(&self, faults: &Faults) -> Result<(), FleetError> {
        super::winrm_glue::apply(&self.shared.winrm, faults);
        for pool in self.shared.iis.recycle_faults() {
            self.shared.iis.clear_recycle_fault(&pool);
        }
        for pool in &faults.failing_pools {
            self.shared.iis.fail_recycle(pool, None);
        }
        self.set_unreachable(faults.unreachable).await
    }

    /// Closes the ports (connections are refused when this returns) or listens again on
    /// them (HTTP and, if any, HTTPS).
    pub async fn set_unreachable(&self, unreachable: bool) -> Result<(), FleetError> {
        self.toggle(&self.shared.serving, self.shared.port, None, unreachable)
            .await?;
        if let Some(https) = &self.shared.https {
            self.toggle(&https.serving, https.port, Some(&https.tls), unreachable)
                .await?;
        }
        Ok(())
    }

    async fn toggle(
        &self,
        slot: &AsyncMutex<Option<Serving>>,
        port: u16,
        tls: Option<&TlsSettings>,
        unreachable: bool,
    ) -> Result<(), FleetError> {
        let mut serving = slot.lock().await;
        match (unreachable, serving.is_some()) {
            (true, true) => {
                if let Some(s) = serving.take() {
                    let task = s.close().await;
                    crate::clock::lock(&self.shared.closing).push(task);
                }
            }
            (false, false) => {
                let bind_error = |source| FleetError::Bind {
                    server: self.name().to_owned(),
                    port,
                    source,
                };
                let listener = bind(port).await.map_err(bind_error)?;
                *serving = Some(
                    Serving::start(
                        listener,
                        self.shared.router.clone(),
                        Arc::clone(&self.shared.open),
                        tls,
                    )
                    .map_err(bind_error)?,
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// Every authenticated WinRM request waits `delay` before it is answered (`None`: no delay).
    pub fn set_winrm_delay(&self, delay: Option<Duration>) {
        self.shared
            .winrm
            .faults()
            .update(|w| w.response_delay = delay);
    }

    /// WinRM refuses (401) or accepts the fleet's credentials again.
    pub fn set_wrong_credentials(&self, wrong: bool) {
        self.shared
            .winrm
            .faults()
            .update(|w| w.wrong_credentials = wrong);
    }

    /// WinRM answers every Command with a SOAP fault, or not.
    pub fn set_soap_fault(&self, fault: bool) {
        self.shared
            .winrm
            .faults()
            .update(|w| w.command_fault = fault);
    }

    /// WinRM accepts connections and requests and never answers them (`true`), or answers
    /// again (`false`: requests held meanwhile are answered too, if their client still waits).
    pub fn set_hang(&self, hang: bool) {
        self.shared
            .winrm
            .faults()
            .update(|w| w.hang_after_accept = hang);
    }

    /// The first `n` Receives of every new command answer `w:TimedOut` (0: none).
    pub fn set_timed_out_receives(&self, n: u32) {
        self.shared
            .winrm
            .faults()
            .update(|w| w.timed_out_receives = n);
    }

    /// Every command exits with `code` and a PowerShell error without running (`None`: they
    /// run again).
    pub fn set_exit_code(&self, code: Option<i32>) {
        self.shared.winrm.faults().update(|w| w.command_exit = code);
    }

    /// Every command prints half of its stdout (not valid JSON), or all of it again.
    pub fn set_malformed_json(&self, malformed: bool) {
        self.shared
            .winrm
            .faults()
            .update(|w| w.malformed_output = malformed);
    }

    /// Recycling `pool` fails from now on (PowerShell-style error).
    pub fn fail_recycle(&self, pool: &str) {
        self.shared.iis.fail_recycle(pool, None);
    }

    /// Recycling `pool` works again.
    pub fn clear_recycle_fault(&self, pool: &str) {
        self.shared.iis.clear_recycle_fault(pool);
    }

    /// Stops listening and waits (up to `grace`) for open connections to finish.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        if let Some(s) = self.shared.serving.lock().await.take() {
            let task = s.close().await;
            crate::clock::lock(&self.shared.closing).push(task);
        }
        if let Some(https) = &self.shared.https {
            if let Some(s) = https.serving.lock().await.take() {
                let task = s.close().await;
                crate::clock::lock(&self.shared.closing).push(task);
            }
        }
        let tasks: Vec<_> = crate::clock::lock(&self.shared.closing).drain(..).collect();
        for mut task in tasks {
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
    }
}
