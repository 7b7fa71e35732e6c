//! [`WinRmFlusher`]: the [`CacheFlusher`] that talks to real servers over WinRM (winrm-rs).
//!
//! Every operation is one PowerShell script (see [`crate::script`]) run in one `cmd` shell:
//! Create, Command, Receive until `CommandState/Done` (a `w:TimedOut` fault — code 2150858793 —
//! means "nothing yet" and is polled again, as MS-WSMV requires), Delete. That is **4 WS-Man
//! round trips** per operation when the script finishes within one Receive; each extra
//! `TimedOut` poll adds one. Signal is only sent to abort a runaway command (deleting the shell
//! ends a finished one). A new NTLM session costs two more HTTP requests (the empty-bodied
//! handshake legs); they are not counted in [`FlushReport::round_trips`] but in
//! [`WinRmFlusher::http_requests_total`]. Authenticated sessions are reused across operations.
//!
//! The shell is always deleted: inline after success or error, in the background when the
//! deadline expired or the caller dropped the future.

mod driver;
mod envelope;
mod reply;
pub(crate) mod transport;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use exch_core::{AppPool, ExchangeServer};
use secrecy::SecretString;
use tracing::Instrument;

use crate::{
    catalog, parse, script, AppPoolState, CacheFlusher, FlushMethod, FlushReport, IisError,
    TokenCacheSettings,
};
use driver::{run_script, Target};

/// How [`WinRmFlusher`] authenticates to WinRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WinRmAuth {
    /// HTTP Basic: the password travels on every request; only over HTTPS unless
    /// [`WinRmFlusherBuilder::allow_unencrypted_basic`] says otherwise. Off on Windows
    /// servers at their defaults.
    Basic,
    /// NTLMv2 under `Negotiate` (the default, on at Windows' defaults). Over HTTP every SOAP
    /// body is sealed (MS-WSMV message encryption); over HTTPS the handshake carries the
    /// channel binding of the server's certificate.
    #[default]
    Ntlm,
    /// Kerberos (on at Windows' defaults), under the `Kerberos` HTTP scheme, for the service
    /// principal `HTTP/<server FQDN from the directory>`. The ticket is obtained from the KDC
    /// set with [`WinRmFlusherBuilder::kdc`] using the password of
    /// [`credentials`](WinRmFlusherBuilder::credentials) (the user as `user@REALM`); a `kinit`
    /// credential cache is not used. Over HTTP every SOAP body is sealed with the Kerberos
    /// session key (MS-WSMV message encryption); mutual authentication is required. Never
    /// falls back to NTLM.
    Kerberos,
}

impl fmt::Display for WinRmAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WinRmAuth::Basic => "Basic",
            WinRmAuth::Ntlm => "NTLM",
            WinRmAuth::Kerberos => "Kerberos",
        })
    }
}

/// What a script run by [`WinRmFlusher::run_powershell`] printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PowerShellOutput {
    /// Standard output (UTF-8; the shell runs with code page 65001).
    pub stdout: String,
    /// Standard error, CLIXML error records decoded to their text.
    pub stderr: String,
    /// The process exit code; `None` when the server reported the command done without one.
    pub exit_code: Option<i32>,
    /// WS-Man round trips this run took (Create, Command, Receive…, Delete).
    pub round_trips: u32,
}

impl PowerShellOutput {
    /// Whether the script exited with 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Builds a [`WinRmFlusher`].
pub struct WinRmFlusherBuilder {
    auth: WinRmAuth,
    https: bool,
    port: Option<u16>,
    ca_file: Option<PathBuf>,
    accept_invalid_certs: bool,
    allow_unencrypted_basic: bool,
    timeout: Duration,
    receive_timeout: Duration,
    connect_timeout: Duration,
    cleanup_timeout: Duration,
    user: Option<String>,
    password: Option<SecretString>,
    endpoints: Vec<(String, String)>,
    kdc: Option<String>,
}

impl fmt::Debug for WinRmFlusherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WinRmFlusherBuilder")
            .field("auth", &self.auth)
            .field("https", &self.https)
            .field("port", &self.port)
            .field("ca_file", &self.ca_file)
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .field("timeout", &self.timeout)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("endpoints", &self.endpoints)
            .field("kdc", &self.kdc)
            .finish()
    }
}

impl Default for WinRmFlusherBuilder {
    fn default() -> Self {
        WinRmFlusherBuilder {
            auth: WinRmAuth::default(),
            https: false,
            port: None,
            ca_file: None,
            accept_invalid_certs: false,
            allow_unencrypted_basic: false,
            timeout: Duration::from_secs(120),
            receive_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            cleanup_timeout: Duration::from_secs(10),
            user: None,
            password: None,
            endpoints: Vec::new(),
            kdc: None,
        }
    }
}

impl WinRmFlusherBuilder {
    /// The authentication method (default NTLM).
    pub fn auth(mut self, auth: WinRmAuth) -> Self {
        self.auth = auth;
        self
    }

    /// HTTPS (default port 5986) instead of HTTP (5985).
    pub fn https(mut self, https: bool) -> Self {
        self.https = https;
        self
    }

    /// The WinRM port for servers without an [`endpoint`](Self::endpoint) override.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// A PEM file with the CA that issued the WinRM certificates (an enterprise CA, as
    /// usual in a domain). When given, HTTPS trusts **only** the certificates in this file;
    /// without it, the system trust store. Read by [`build`](Self::build): a missing or
    /// unreadable file is an [`IisError::InvalidInput`] there.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Accepts any server certificate. Anyone on the path can then read the credentials.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.accept_invalid_certs = accept;
        self
    }

    /// Allows Basic authentication over plain HTTP (the password crosses the network in the
    /// clear). Off by default; the lab needs it.
    pub fn allow_unencrypted_basic(mut self, allow: bool) -> Self {
        self.allow_unencrypted_basic = allow;
        self
    }

    /// The limit for one whole operation on one server, all round trips included
    /// (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The WS-Management `OperationTimeout` of each request, i.e. how long the server may hold
    /// a Receive before answering `w:TimedOut` (default 20 s, whole seconds, at least 1).
    pub fn receive_timeout(mut self, timeout: Duration) -> Self {
        self.receive_timeout = timeout;
        self
    }

    /// The TCP connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The account (`user`, `DOMAIN\user` or `user@domain`) and its password.
    pub fn credentials(mut self, user: impl Into<String>, password: SecretString) -> Self {
        self.user = Some(user.into());
        self.password = Some(password);
        self
    }

    /// The Kerberos KDC (a domain controller), `host` or `host:port` (default port 88), used
    /// with [`WinRmAuth::Kerberos`].
    pub fn kdc(mut self, kdc: impl Into<String>) -> Self {
        self.kdc = Some(kdc.into());
        self
    }

    /// Reaches `server` (its name or FQDN, case-insensitive) at `url`, e.g.
    /// `http://127.0.0.1:49152/wsman`, instead of `http(s)://<fqdn>:<port>/wsman`.
    pub fn endpoint(mut self, server: impl Into<String>, url: impl Into<String>) -> Self {
        self.endpoints.push((server.into(), url.into()));
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<WinRmFlusher, IisError> {
        let invalid = |what: &str, reason: String| IisError::InvalidInput {
            what: what.to_string(),
            reason,
        };
        if self.ca_file.is_some() && self.accept_invalid_certs {
            return Err(invalid(
                "ca_file",
                "both ca_file and danger_accept_invalid_certs are set; drop danger_accept_invalid_certs (the CA file is what makes HTTPS safe)".into(),
            ));
        }
        let trust = match &self.ca_file {
            Some(path) => transport::Trust::CaPem(
                transport::read_ca_pem(path).map_err(|reason| invalid("ca_file", reason))?,
            ),
            None if self.accept_invalid_certs => transport::Trust::AcceptAny,
            None => transport::Trust::System,
        };
        // Every method authenticates with a user and a password (Kerberos gets its ticket
        // with them: a credential cache cannot be used).
        let (user, password) = match (self.user, self.password) {
            (Some(u), Some(p)) if !u.trim().is_empty() => (u, p),
            _ => {
                return Err(invalid(
                    "credentials",
                    "missing user or password; call credentials(user, password)".into(),
                ))
            }
        };
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be greater than zero".into()));
        }
        let default_port = self.port.unwrap_or(if self.https { 5986 } else { 5985 });
        let mut endpoints = HashMap::new();
        for (server, url) in self.endpoints {
            let ep = Endpoint::parse(&url)
                .map_err(|reason| invalid("endpoint", format!("{url:?} for {server}: {reason}")))?;
            endpoints.insert(server.to_ascii_lowercase(), ep);
        }
        let basic = self.auth == WinRmAuth::Basic;
        let insecure_basic = basic
            && (!self.https || endpoints.values().any(|e| !e.https))
            && !self.allow_unencrypted_basic;
        if insecure_basic {
            return Err(invalid(
                "auth",
                "Basic authentication over http:// sends the password in the clear; use https(true), NTLM, or allow_unencrypted_basic(true) for a lab".into(),
            ));
        }
        let any_https = self.https || endpoints.values().any(|e| e.https);
        let tls = if any_https {
            Some(transport::tls_config(&trust).map_err(|reason| invalid("ca_file", reason))?)
        } else {
            None
        };
        match self.auth {
            WinRmAuth::Ntlm => {
                transport::auth::ntlm_username(&user)
                    .map_err(|e| invalid("credentials", e.detail))?;
            }
            WinRmAuth::Kerberos => {
                transport::auth::kerberos_username(&user)
                    .map_err(|e| invalid("credentials", e.detail))?;
            }
            WinRmAuth::Basic => {}
        }
        let kdc = match (self.auth, &self.kdc) {
            (WinRmAuth::Kerberos, None) => {
                return Err(invalid(
                    "kdc",
                    "Kerberos needs the KDC: kdc(\"dc1.corp.example\") (a domain controller of the user's realm)".into(),
                ))
            }
            (_, Some(k)) => Some(parse_kdc(k).map_err(|reason| invalid("kdc", reason))?),
            (_, None) => None,
        };
        let secs = |d: Duration| d.as_secs().max(1);
        let transport = transport::Transport::new(transport::Settings {
            auth: self.auth,
            user: user.clone(),
            password,
            connect_timeout: self.connect_timeout,
            tls,
            kdc,
        });
        Ok(WinRmFlusher {
            inner: Arc::new(Inner {
                auth: self.auth,
                https: self.https,
                port: default_port,
                accept_invalid_certs: self.accept_invalid_certs,
                ca_file: self.ca_file,
                timeout: self.timeout,
                receive_timeout_secs: secs(self.receive_timeout.min(self.timeout)),
                cleanup_timeout: self.cleanup_timeout,
                user,
                endpoints,
                transport: Arc::new(transport),
                round_trips_total: AtomicU64::new(0),
            }),
        })
    }
}

/// Where a server's WinRM is reached, and the host name its service principal names.
/// `host` or `host:port` of a KDC → `host:port`.
fn parse_kdc(kdc: &str) -> Result<String, String> {
    let kdc = kdc.trim();
    let kdc = kdc
        .strip_prefix("tcp://")
        .unwrap_or(kdc)
        .trim_end_matches('/');
    let (host, port) = match kdc.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("bad port in {kdc:?}"))?,
        ),
        _ => (kdc, 88),
    };
    exch_core::check_host_name(host).map_err(|r| format!("bad KDC host {host:?}: {r}"))?;
    Ok(format!("{host}:{port}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `HTTP/<spn_host>` is the service principal: the server's FQDN from the directory, also
    /// when [`WinRmFlusherBuilder::endpoint`] maps the server to another address.
    pub(crate) spn_host: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("must start with http:// or https://".into());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !(path.is_empty() || path == "/wsman" || path == "/wsman/") {
            return Err("the WinRM path is /wsman; other paths are not supported".into());
        }
        if authority.contains('@') {
            return Err("credentials do not belong in the URL".into());
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or("unclosed [")?;
            (format!("[{h}]"), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        exch_core::check_host_name(&host).map_err(|r| format!("bad host {host:?}: {r}"))?;
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
            None if https => 5986,
            None => 5985,
        };
        let spn_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Endpoint {
            https,
            host,
            port,
            spn_host,
        })
    }

    pub(crate) fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}:{}/wsman", self.host, self.port)
    }
}

struct Inner {
    auth: WinRmAuth,
    https: bool,
    port: u16,
    accept_invalid_certs: bool,
    ca_file: Option<PathBuf>,
    timeout: Duration,
    receive_timeout_secs: u64,
    cleanup_timeout: Duration,
    user: String,
    endpoints: HashMap<String, Endpoint>,
    /// Connections, authentication and sealing; keeps idle authenticated sessions.
    transport: Arc<transport::Transport>,
    round_trips_total: AtomicU64,
}

/// Flushes IIS token caches over WinRM with one PowerShell invocation per operation.
///
/// ```no_run
/// # async fn demo() -> Result<(), exch_iis::IisError> {
/// use exch_iis::{CacheFlusher, FlushMethod, WinRmAuth, WinRmFlusher};
/// use exch_core::ExchangeServer;
/// use secrecy::SecretString;
///
/// let flusher = WinRmFlusher::builder()
///     .auth(WinRmAuth::Ntlm)
///     .https(true)
///     .credentials(r"CORP\exadmin", SecretString::from("…".to_string()))
///     .build()?;
/// let ex01 = ExchangeServer::new("EX01", "ex01.corp.example");
/// let report = flusher.flush(&ex01, &FlushMethod::default()).await?;
/// assert!(report.is_proven());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WinRmFlusher {
    inner: Arc<Inner>,
}

impl fmt::Debug for WinRmFlusher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("WinRmFlusher")
            .field("auth", &i.auth)
            .field("https", &i.https)
            .field("port", &i.port)
            .field("accept_invalid_certs", &i.accept_invalid_certs)
            .field("ca_file", &i.ca_file)
            .field("timeout", &i.timeout)
            .field("user", &i.user)
            .field("password", &"[REDACTED]")
            .field("endpoints", &i.endpoints.len())
            .finish()
    }
}

impl WinRmFlusher {
    /// A builder with the defaults: NTLM over HTTP on port 5985, 120 s per operation.
    pub fn builder() -> WinRmFlusherBuilder {
        WinRmFlusherBuilder::default()
    }

    /// WS-Man round trips sent by this flusher (and its clones) so far, all operations.
    pub fn round_trips_total(&self) -> u64 {
        self.inner.round_trips_total.load(Ordering::Relaxed)
    }

    /// HTTP requests sent so far: the WS-Man round trips plus the authentication handshake
    /// legs (two per new NTLM connection).
    pub fn http_requests_total(&self) -> u64 {
        self.inner
            .transport
            .counters
            .http_requests
            .load(Ordering::Relaxed)
    }

    /// TCP connections opened so far (one per authenticated session).
    pub fn connections_total(&self) -> u64 {
        self.inner
            .transport
            .counters
            .connections
            .load(Ordering::Relaxed)
    }

    /// Authenticated connections kept idle for reuse now (at most 64, all servers).
    pub fn idle_connections(&self) -> usize {
        self.inner.transport.idle_sessions()
    }

    /// How this flusher authenticates to `server` and protects the traffic, in words (for
    /// reports: "NTLM over HTTP, message encryption", "NTLM over HTTPS, channel binding", …).
    pub fn method_for(&self, server: &ExchangeServer) -> String {
        let https = self
            .endpoint_for(server)
            .map(|e| e.https)
            .unwrap_or(self.inner.https);
        match (self.inner.auth, https) {
            (WinRmAuth::Ntlm, false) => "NTLM over HTTP, message encryption".into(),
            (WinRmAuth::Ntlm, true) => "NTLM over HTTPS, channel binding".into(),
            (WinRmAuth::Basic, true) => "Basic over HTTPS".into(),
            (WinRmAuth::Basic, false) => "Basic over plain HTTP (insecure)".into(),
            (WinRmAuth::Kerberos, false) => "Kerberos over HTTP, message encryption".into(),
            (WinRmAuth::Kerberos, true) => "Kerberos over HTTPS".into(),
        }
    }

    /// The explicit endpoint of `server`, else `http(s)://{fqdn}:{port}/wsman` once the FQDN
    /// (from the directory, so untrusted) has been checked to be a plain host name.
    fn endpoint_for(&self, server: &ExchangeServer) -> Result<Endpoint, IisError> {
        let i = &self.inner;
        let explicit = i
            .endpoints
            .get(&server.name.to_ascii_lowercase())
            .or_else(|| i.endpoints.get(&server.fqdn.to_ascii_lowercase()));
        if let Some(ep) = explicit {
            let mut ep = ep.clone();
            if server.url_host().is_ok() {
                ep.spn_host = server.fqdn.clone();
            }
            return Ok(ep);
        }
        let host = server.url_host().map_err(|e| IisError::InvalidInput {
            what: format!("server {}", e.server),
            reason: e.to_string(),
        })?;
        Ok(Endpoint {
            https: i.https,
            host: host.to_owned(),
            port: i.port,
            spn_host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        })
    }

    /// Runs `script_text` on `server` and returns the run whatever its exit code.
    async fn run_raw(
        &self,
        server: &ExchangeServer,
        operation: &'static str,
        script_text: &str,
    ) -> Result<driver::ScriptRun, IisError> {
        let ep = self.endpoint_for(server)?;
        let envelopes = Arc::new(envelope::Envelopes {
            to: ep.url(),
            timeout_secs: self.inner.receive_timeout_secs,
        });
        let target = Target {
            server: server.name.clone(),
            endpoint: ep,
            user: self.inner.user.clone(),
        };
        let span = tracing::info_span!("winrm", server = %server.name, operation, endpoint = %envelopes.to);
        let command = script::command_line(script_text);
        let result = run_script(
            Arc::clone(&self.inner.transport),
            &target,
            envelopes,
            operation,
            &command,
            self.inner.timeout,
            self.inner.cleanup_timeout,
        )
        .instrument(span)
        .await;
        match &result {
            Ok(r) => {
                self.inner
                    .round_trips_total
                    .fetch_add(u64::from(r.round_trips), Ordering::Relaxed);
                tracing::debug!(server = %server.name, operation, round_trips = r.round_trips, exit_code = ?r.exit_code, "done");
            }
            Err(e) => tracing::warn!(server = %server.name, operation, error = %e, "failed"),
        }
        result
    }

    /// Runs one of this crate's scripts: a non-zero exit is [`IisError::CommandFailed`].
    async fn run(
        &self,
        server: &ExchangeServer,
        operation: &'static str,
        script_text: &str,
    ) -> Result<driver::ScriptRun, IisError> {
        let run = self.run_raw(server, operation, script_text).await?;
        run.succeeded(&server.name).inspect_err(|e| {
            tracing::warn!(server = %server.name, operation, error = %e, "script failed");
        })
    }

    /// Runs a PowerShell script of the caller's on `server`, over the same transport, with the
    /// same settings and security properties as the flushes (NTLM or Kerberos with message
    /// encryption, or HTTPS; sessions shared with this flusher and its clones): one `cmd`
    /// shell, `powershell.exe -NoProfile -NonInteractive -EncodedCommand <UTF-16LE base64>`
    /// ([`script::command_line`]), output read until the command is done, the shell deleted.
    /// The shell asks for code page 65001, so stdout is UTF-8 on Windows too.
    ///
    /// Returns what the script printed and its exit code: a non-zero exit is **not** an error
    /// here ([`PowerShellOutput::succeeded`] says whether it was 0). Errors are the transport's
    /// ([`IisError::Unreachable`], [`IisError::Unauthenticated`], [`IisError::Timeout`], …),
    /// each naming the server, and [`IisError::InvalidInput`] **before anything is sent** for a
    /// script that no Windows command line can carry: one with a NUL character, or one whose
    /// command line would exceed [`script::MAX_COMMAND_LINE`] characters (cmd.exe's and WinRS's
    /// limit, see [`script::command_line_len`]).
    ///
    /// The script is the caller's responsibility: put every value into it as a single-quoted
    /// literal ([`script::try_ps_quote`]), never by string interpolation.
    ///
    /// ```no_run
    /// # async fn demo(winrm: &exch_iis::WinRmFlusher, ex01: &exch_core::ExchangeServer) -> Result<(), exch_iis::IisError> {
    /// let out = winrm
    ///     .run_powershell(ex01, "ConvertTo-Json -InputObject @{ ok = $true } -Compress")
    ///     .await?;
    /// assert!(out.succeeded());
    /// assert_eq!(out.stdout.trim(), r#"{"ok":true}"#);
    /// # Ok(()) }
    /// ```
    pub async fn run_powershell(
        &self,
        server: &ExchangeServer,
        script_text: &str,
    ) -> Result<PowerShellOutput, IisError> {
        let invalid = |reason: String| IisError::InvalidInput {
            what: format!("PowerShell script for {}", server.name),
            reason,
        };
        if script_text.contains('\0') {
            return Err(invalid(
                "it contains a NUL character, which no command line can carry; nothing was sent"
                    .into(),
            ));
        }
        let len = script::command_line_len(script_text);
        if len > script::MAX_COMMAND_LINE {
            return Err(invalid(format!(
                "its command line would be {len} characters; cmd.exe and WinRS accept at most {}; nothing was sent (shorten the script or split the work)",
                script::MAX_COMMAND_LINE
            )));
        }
        let run = self
            .run_raw(server, "PowerShell script", script_text)
            .await?;
        Ok(PowerShellOutput {
            stdout: run.stdout,
            stderr: run.stderr,
            exit_code: run.exit_code,
            round_trips: run.round_trips,
        })
    }

    /// Recycles the `named` pools, or the catalog's when `None`.
    async fn recycle(
        &self,
        server: &ExchangeServer,
        method: &FlushMethod,
        named: Option<&[AppPool]>,
    ) -> Result<FlushReport, IisError> {
        let started = Instant::now();
        let explicit = named.is_some();
        let mut pools: Vec<AppPool> = Vec::new();
        let wanted = if let Some(named) = named {
            named.to_vec()
        } else {
            let selection = catalog::select(server, None);
            if let Some(why) = &selection.assumption {
                tracing::warn!(server = %server.name, "{why}");
            }
            selection
                .entries
                .into_iter()
                .filter(|e| e.default)
                .map(|e| e.pool)
                .collect()
        };
        for p in wanted {
            if !pools
                .iter()
                .any(|q| q.as_str().eq_ignore_ascii_case(p.as_str()))
            {
                pools.push(p);
            }
        }
        if pools.is_empty() {
            // Edge Transport, or a role without client access: nothing holds a logon cache.
            return Ok(
                FlushReport::new(&server.name, method.clone(), chrono::Utc::now())
                    .with_elapsed(started.elapsed()),
            );
        }
        let run = self
            .run(server, "recycle", &script::recycle_pools(&pools))
            .await?;
        let mut report = parse::recycle_report(&server.name, method, &run.stdout)?;
        report.elapsed = started.elapsed();
        report.round_trips = run.round_trips;
        if explicit && report.pools.is_empty() && !report.missing_pools.is_empty() {
            let names: Vec<&str> = report.missing_pools.iter().map(AppPool::as_str).collect();
            return Err(IisError::PoolNotFound {
                server: server.name.clone(),
                pool: names.join(", "),
            });
        }
        Ok(report)
    }
}

#[async_trait]
impl CacheFlusher for WinRmFlusher {
    async fn app_pools(&self, server: &ExchangeServer) -> Result<Vec<AppPoolState>, IisError> {
        let run = self
            .run(server, "list pools", &script::list_pools())
            .await?;
        parse::pool_list(&server.name, &run.stdout)
    }

    /// `RecycleCatalogPools`: the catalog's default pools for the server, intersected with the
    /// pools present (the rest lands in `missing_pools`). `RecycleAppPools(pools)`: when
    /// **none** of the named pools exists, the result is [`IisError::PoolNotFound`]; when some
    /// exist, the others are reported in `missing_pools`; an empty list is
    /// [`IisError::InvalidInput`] before anything is sent ([`FlushMethod::validate`]).
    async fn flush(
        &self,
        server: &ExchangeServer,
        method: &FlushMethod,
    ) -> Result<FlushReport, IisError> {
        method.validate()?;
        match method {
            FlushMethod::RecycleCatalogPools => self.recycle(server, method, None).await,
            FlushMethod::RecycleAppPools(named) => self.recycle(server, method, Some(named)).await,
            FlushMethod::IisReset { force } => {
                let started = Instant::now();
                let run = self
                    .run(server, "iisreset", &script::iis_reset(*force))
                    .await?;
                let mut report = parse::reset_report(&server.name, method, &run.stdout)?;
                report.elapsed = started.elapsed();
                report.round_trips = run.round_trips;
                Ok(report)
            }
        }
    }

    async fn token_cache(&self, server: &ExchangeServer) -> Result<TokenCacheSettings, IisError> {
        let run = self
            .run(server, "read UserTokenTTL", &script::read_token_ttl())
            .await?;
        parse::token_ttl(&server.name, &run.stdout)
    }

    async fn set_token_ttl(
        &self,
        server: &ExchangeServer,
        ttl: Duration,
    ) -> Result<TokenCacheSettings, IisError> {
        let secs = crate::ttl_secs(ttl)?;
        let run = self
            .run(server, "set UserTokenTTL", &script::set_token_ttl(secs))
            .await?;
        parse::token_ttl(&server.name, &run.stdout)
    }

    fn security_notes(&self) -> Vec<String> {
        let i = &self.inner;
        let mut notes = Vec::new();
        let any_https = i.https || i.endpoints.values().any(|e| e.https);
        if i.accept_invalid_certs && any_https {
            notes.push("WinRM: server certificates are NOT verified (danger_accept_invalid_certs / --winrm-insecure): anyone on the path can impersonate a server and read the WinRM credentials".to_owned());
        }
        let any_http = !i.https || i.endpoints.values().any(|e| !e.https);
        if i.auth == WinRmAuth::Basic && any_http {
            notes.push("WinRM: Basic authentication over plain HTTP (allow_unencrypted_basic / --allow-unencrypted-basic): the WinRM password crosses the network in clear text on every request".to_owned());
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("http://127.0.0.1:49152/wsman").unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port),
            (false, "127.0.0.1", 49152)
        );
        let e = Endpoint::parse("https://[::1]/wsman").unwrap();
        assert_eq!((e.https, e.host.as_str(), e.port), (true, "[::1]", 5986));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://x:1/other").is_err());
        assert!(Endpoint::parse("http://u:p@x/wsman").is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let b =
            WinRmFlusher::builder().credentials("admin", SecretString::from("hunter2".to_string()));
        assert!(!format!("{b:?}").contains("hunter2"));
        let f = b.build().unwrap();
        let d = format!("{f:?}");
        assert!(!d.contains("hunter2") && d.contains("REDACTED"), "{d}");
    }

    #[test]
    fn security_opt_outs_are_named() {
        let pw = || SecretString::from("pw".to_string());
        let ntlm_https = WinRmFlusher::builder()
            .https(true)
            .credentials("a", pw())
            .build()
            .unwrap();
        assert!(ntlm_https.security_notes().is_empty());
        let lab = WinRmFlusher::builder()
            .auth(WinRmAuth::Basic)
            .allow_unencrypted_basic(true)
            .credentials("a", pw())
            .build()
            .unwrap();
        let notes = lab.security_notes();
        assert!(
            notes.len() == 1 && notes[0].contains("allow_unencrypted_basic"),
            "{notes:?}"
        );
        let insecure = WinRmFlusher::builder()
            .https(true)
            .danger_accept_invalid_certs(true)
            .credentials("a", pw())
            .build()
            .unwrap();
        let notes = insecure.security_notes();
        assert!(
            notes.len() == 1 && notes[0].contains("danger_accept_invalid_certs"),
            "{notes:?}"
        );
    }

    #[test]
    fn builder_refuses_what_it_cannot_honour() {
        let pw = || SecretString::from("pw".to_string());
        let e = WinRmFlusher::builder()
            .credentials("a", pw())
            .ca_file("/ca.pem")
            .build()
            .unwrap_err();
        assert!(matches!(e, IisError::InvalidInput { .. }));
        let e = WinRmFlusher::builder()
            .auth(WinRmAuth::Basic)
            .credentials("a", pw())
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("clear"), "{e}");
        assert!(WinRmFlusher::builder().build().is_err());
        assert!(WinRmFlusher::builder()
            .auth(WinRmAuth::Basic)
            .allow_unencrypted_basic(true)
            .credentials("a", pw())
            .endpoint("EX1", "http://127.0.0.1:5/wsman")
            .build()
            .is_ok());
    }

    #[tokio::test]
    async fn scripts_no_command_line_can_carry_are_refused_before_anything_is_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let winrm = WinRmFlusher::builder()
            .credentials("a", SecretString::from("pw".to_string()))
            .endpoint("EX1", format!("http://127.0.0.1:{port}/wsman"))
            .build()
            .unwrap();
        let server = ExchangeServer::new("EX1", "ex1.corp.example");
        // The longest script that fits, and one character more.
        let fits = (0..4000)
            .map(|n| "x".repeat(n))
            .take_while(|s| script::command_line_len(s) <= script::MAX_COMMAND_LINE)
            .last()
            .unwrap();
        assert!(fits.len() > 3000, "{}", fits.len());
        let too_long = format!("{fits}xxx");
        for bad in [too_long.as_str(), "Write-Output 'a\0b'"] {
            let e = winrm.run_powershell(&server, bad).await.unwrap_err();
            assert!(
                matches!(&e, IisError::InvalidInput { what, .. } if what.contains("EX1")),
                "{e:?}"
            );
            assert!(e.to_string().contains("nothing was sent"), "{e}");
        }
        assert_eq!(winrm.round_trips_total(), 0);
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the runner connected: {accepted:?}"
        );
    }

    #[tokio::test]
    async fn an_empty_pool_list_is_refused_before_anything_is_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let flusher = WinRmFlusher::builder()
            .credentials("a", SecretString::from("pw".to_string()))
            .endpoint("EX1", format!("http://127.0.0.1:{port}/wsman"))
            .build()
            .unwrap();
        let server = ExchangeServer::new("EX1", "ex1.corp.example");
        let e = flusher
            .flush(&server, &FlushMethod::RecycleAppPools(Vec::new()))
            .await
            .unwrap_err();
        assert!(matches!(e, IisError::InvalidInput { .. }), "{e:?}");
        assert_eq!(flusher.round_trips_total(), 0);
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the flusher connected: {accepted:?}"
        );
    }
}
