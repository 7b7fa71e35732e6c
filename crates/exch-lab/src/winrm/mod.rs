//! The lab's WinRM endpoint: `POST /wsman`, serving the
//! `http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd` resource per MS-WSMV.
//!
//! - Authentication ([`LabAuth`]), by default as Windows Server at its defaults: a 401 offers
//!   `WWW-Authenticate: Negotiate` and `Kerberos` (no Basic); NTLM tokens are accepted under
//!   `Negotiate` or `NTLM`; the NTLM context belongs to the TCP connection (the CHALLENGE and
//!   the AUTHENTICATE must come on one connection; a new connection starts unauthenticated).
//!   On plain HTTP every SOAP body must be MS-WSMV-encrypted (`multipart/encrypted`, see
//!   `encryption.rs`) and every reply and fault is encrypted; a plain-text body is refused with
//!   401 (what Windows does with `AllowUnencrypted = false` on an NTLM connection: the client
//!   sees its credentials "rejected"; counted in [`WinRmStats::plaintext_refused`]). An
//!   empty-bodied POST with the handshake header is answered 401 + CHALLENGE, then 200 with
//!   an empty body. Over TLS ([`tls`], [`WinRmConnection::tls`]) plain SOAP is accepted and the
//!   NTLM channel binding is checked (`Relaxed`). [`LabAuth::BasicOverHttp`] is the explicit,
//!   insecure opt-in of Basic with plain bodies. The connection context comes from serving the
//!   router with `into_make_service_with_connect_info::<WinRmConnection>()`.
//! - Kerberos ([`WinRmConfig::kerberos`], [`KerberosAcceptorConfig`]): with a service key the
//!   endpoint also accepts a krb5 AP-REQ under `Kerberos` or `Negotiate` (raw, or in SPNEGO),
//!   answers with the mutual-authentication token on the reply that completes the handshake,
//!   binds the context to the connection and seals with it (`HTTP-Kerberos-session-encrypted`
//!   or `HTTP-SPNEGO-session-encrypted`, replies in the request's protocol); counted in
//!   [`WinRmStats::kerberos_logons`].
//! - Create / Command / Receive / Signal (`terminate`, `ctrl_c`) / Delete (and Send, accepted
//!   and ignored). Requests are parsed by namespace (any prefixes, with or without `<?xml?>`,
//!   `OptionSet` anywhere, one `Arguments` element or several).
//! - Every reply carries `a:RelatesTo` (the request's `MessageID`) and a fresh `MessageID`. The
//!   Create reply carries the ShellId as `rsp:ShellId` and as the `ShellId` selector of
//!   `x:ResourceCreated`. Receive returns base64 `rsp:Stream` elements (`End="true"` on the final
//!   ones) and one `rsp:CommandState` (`Running`, or `Done` with `rsp:ExitCode`).
//! - Faults are HTTP 500 SOAP 1.2 faults with `s:Subcode` and `f:WSManFault Code`: unknown shell
//!   → `w:InvalidSelectors` 2150858843; a command still running when the Receive wait
//!   (`w:OperationTimeout`, capped by [`WinRmConfig::operation_timeout`]) expires → `w:TimedOut`
//!   2150858793, as Windows does (the client polls again); malformed XML →
//!   `w:SchemaValidationError` 2150858817; unknown action → `a:ActionNotSupported` 2150858771;
//!   a body larger than [`WinRmConfig::max_envelope_size`] → `w:EncodingLimit` 2150858790,
//!   refused before parsing.
//! - Commands: `powershell[.exe] [-NoProfile] [-NonInteractive] [-ExecutionPolicy X]
//!   -EncodedCommand <base64 UTF-16LE>` (also `-enc`, `-e`, `-ec`, `-Command …`), `iisreset …`,
//!   `appcmd …` and `cmd /c …` around them. They run asynchronously ([`crate::ps`]); bad base64
//!   or an unknown program fails on stderr with exit code 1 (not a fault); so does a command
//!   line longer than cmd.exe's 8191 characters ("The command line is too long."). PowerShell's
//!   stderr is CLIXML (`#< CLIXML`, a progress record on every run, one `<S S="Error">` per
//!   error line), as `powershell.exe` writes it under WinRM; native programs write plain text.
//! - Faults can be injected at run time through [`WinRmFaultsHandle`] (401, SOAP fault on
//!   Command, `w:TimedOut` Receives, delay, hang until cleared, non-zero exit, malformed
//!   stdout); [`WinRmCounters`] counts requests, actions, open shells and commands, and
//!   faults.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use exch_lab::winrm::{WinRmConfig, WinRmService};
//! # async fn demo(host: Arc<dyn exch_lab::host::IisHost>) -> std::io::Result<()> {
//! use exch_lab::winrm::WinRmConnection;
//! let service = WinRmService::new(host, WinRmConfig::new("lab\\admin", "Passw0rd!".into()));
//! let counters = service.counters();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let app = service
//!     .router()
//!     .into_make_service_with_connect_info::<WinRmConnection>();
//! tokio::spawn(async move { axum::serve(listener, app).await });
//! # let _ = counters; Ok(()) }
//! ```

mod auth;
mod clixml;
mod cmdline;
mod conn;
mod encryption;
pub(crate) mod kerberos;
mod keytab;
mod ntlm;
mod shell;
mod soap;
pub mod tls;

pub use auth::{LabAuth, Mechanism};
pub use conn::WinRmConnection;
pub use kerberos::{KerberosAcceptorConfig, KerberosSetupError};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use secrecy::SecretString;

use crate::host::IisHost;
use crate::ps::{self, Limits, ScriptOutput};
use auth::{Acceptor, AuthRefusal, Credentials, Step};
use cmdline::Plan;
use conn::ContextState;
use shell::{lock, CommandEntry, Received, Shells};
use soap::{Body, Fault, Request};

/// Faults a test can inject (all off by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WinRmFaults {
    /// Refuse every request with 401, as if the server expected another password.
    pub wrong_credentials: bool,
    /// Answer every Command with a SOAP fault (`w:InternalError`).
    pub command_fault: bool,
    /// Answer the first N Receives of each new command with `w:TimedOut` before real output.
    pub timed_out_receives: u32,
    /// Delay every response by this long (slow past the client's timeout).
    pub response_delay: Option<Duration>,
    /// Accept the connection and the request, and never answer — until this is cleared: then
    /// requests held meanwhile are served (if their client still waits).
    pub hang_after_accept: bool,
    /// Every command fails without running, as a `powershell.exe` that stops with a
    /// terminating error does: this exit code (meant to be non-zero) and a PowerShell-style
    /// error on stderr, nothing on stdout.
    pub command_exit: Option<i32>,
    /// Every command runs (its side effects happen), but its stdout is cut in half, so it is
    /// not the JSON document the script printed.
    pub malformed_output: bool,
}

#[derive(Debug, Default)]
struct FaultsCell {
    faults: Mutex<WinRmFaults>,
    changed: tokio::sync::Notify,
}

/// A shared, run-time settable handle to an endpoint's [`WinRmFaults`].
#[derive(Debug, Clone, Default)]
pub struct WinRmFaultsHandle(Arc<FaultsCell>);

impl WinRmFaultsHandle {
    /// A handle holding `faults`.
    pub fn new(faults: WinRmFaults) -> Self {
        WinRmFaultsHandle(Arc::new(FaultsCell {
            faults: Mutex::new(faults),
            changed: tokio::sync::Notify::new(),
        }))
    }

    /// The current faults.
    pub fn get(&self) -> WinRmFaults {
        lock(&self.0.faults).clone()
    }

    /// Replaces the faults.
    pub fn set(&self, faults: WinRmFaults) {
        *lock(&self.0.faults) = faults;
        self.0.changed.notify_waiters();
    }

    /// Changes the faults in place.
    pub fn update(&self, f: impl FnOnce(&mut WinRmFaults)) {
        f(&mut lock(&self.0.faults));
        self.0.changed.notify_waiters();
    }

    /// Returns once [`WinRmFaults::hang_after_accept`] is off (at once if it is).
    async fn hang_while_set(&self) {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            // Registered before the check: a clear between the check and the await is not lost.
            changed.as_mut().enable();
            if !self.get().hang_after_accept {
                return;
            }
            changed.await;
        }
    }

    /// Turns every fault off.
    pub fn clear(&self) {
        self.set(WinRmFaults::default());
    }
}

/// Configuration of one endpoint.
#[derive(Debug, Clone)]
pub struct WinRmConfig {
    /// The accepted user name (compared case-insensitively, like Windows): `DOMAIN\\user`
    /// (NTLM: that domain only), `user` or `user@dns.domain` (NTLM: any domain).
    pub user: String,
    /// The accepted password.
    pub password: SecretString,
    /// Initial faults (change them later through [`WinRmService::faults`]).
    pub faults: WinRmFaults,
    /// Largest request body accepted, in bytes (default 153600, WinRM's `MaxEnvelopeSizekb` 150).
    pub max_envelope_size: usize,
    /// Longest a Receive waits for output (the request's `OperationTimeout` is capped by it;
    /// default 60 s).
    pub operation_timeout: Duration,
    /// Machine name reported in `WSManFault`.
    pub machine: String,
    /// Most shells open at once (default 64); more → `w:QuotaLimit`.
    pub max_shells: usize,
    /// Most commands kept per shell (default 16); more → `w:QuotaLimit`.
    pub max_commands_per_shell: usize,
    /// Guards of the PowerShell interpreter.
    pub script_limits: Limits,
    /// How clients authenticate (default [`LabAuth::Negotiate`], as Windows).
    pub auth: LabAuth,
    /// The service key for Kerberos (default `None`: Kerberos is offered in the 401, as
    /// Windows does, but every Kerberos token is refused — a server without a keytab).
    /// With a key, [`LabAuth::Negotiate`] also accepts Kerberos under `Kerberos` and
    /// `Negotiate` (raw krb5 or SPNEGO-wrapped), for the client principal that is
    /// [`WinRmConfig::user`]: `LAB\\name` accepts `name@<realm>` whose first label is
    /// `LAB`, `name@dns.domain` that principal, `name` any realm (case-insensitive). The
    /// password is not used for Kerberos (the KDC checked it).
    pub kerberos: Option<KerberosAcceptorConfig>,
}

impl WinRmConfig {
    /// Defaults with the given credentials.
    pub fn new(user: impl Into<String>, password: SecretString) -> Self {
        WinRmConfig {
            user: user.into(),
            password,
            faults: WinRmFaults::default(),
            max_envelope_size: 153_600,
            operation_timeout: Duration::from_secs(60),
            machine: "localhost".into(),
            max_shells: 64,
            max_commands_per_shell: 16,
            script_limits: Limits::default(),
            auth: LabAuth::default(),
            kerberos: None,
        }
    }

    /// Accepts Kerberos with this service key (see [`WinRmConfig::kerberos`]).
    pub fn with_kerberos(mut self, kerberos: KerberosAcceptorConfig) -> Self {
        self.kerberos = Some(kerberos);
        self
    }

    /// Sets how clients authenticate ([`LabAuth::BasicOverHttp`] is the insecure opt-in).
    pub fn with_auth(mut self, auth: LabAuth) -> Self {
        self.auth = auth;
        self
    }
}

/// Live counters of one endpoint.
#[derive(Debug, Default)]
pub struct WinRmCounters {
    requests: AtomicU64,
    unauthorized: AtomicU64,
    auth_challenges: AtomicU64,
    plaintext_refused: AtomicU64,
    kerberos_logons: AtomicU64,
    channel_bound: AtomicU64,
    create: AtomicU64,
    command: AtomicU64,
    receive: AtomicU64,
    signal: AtomicU64,
    delete: AtomicU64,
    other: AtomicU64,
    open_shells: AtomicU64,
    open_commands: AtomicU64,
    faults: AtomicU64,
}

/// A copy of [`WinRmCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WinRmStats {
    /// HTTP requests received (authenticated or not).
    pub requests: u64,
    /// Requests answered 401, every one: no or bad credentials, the first leg of a handshake
    /// (also in `auth_challenges`), plain text refused (also in `plaintext_refused`).
    pub unauthorized: u64,
    /// 401s that carried a handshake token (NTLM CHALLENGE): one per connection that
    /// authenticates, the cost of a handshake in "requests per flush".
    pub auth_challenges: u64,
    /// Requests whose SOAP body came in plain text where encryption is required (plain HTTP,
    /// [`LabAuth::Negotiate`]): refused with 401, nothing ran.
    pub plaintext_refused: u64,
    /// Connections authenticated with Kerberos (raw or SPNEGO-wrapped): one per accepted
    /// AP-REQ whose client is the configured user.
    pub kerberos_logons: u64,
    /// NTLM logons over TLS whose AUTHENTICATE carried an `MsvAvChannelBindings` that matched
    /// the TLS channel (absent or all-zero bindings are accepted too, as Windows' `Relaxed`
    /// hardening does, but not counted here): proof that the client bound its logon.
    pub channel_bound: u64,
    /// Create requests.
    pub create: u64,
    /// Command requests.
    pub command: u64,
    /// Receive requests.
    pub receive: u64,
    /// Signal requests.
    pub signal: u64,
    /// Delete requests.
    pub delete: u64,
    /// Other actions (Send, unknown).
    pub other: u64,
    /// Shells open now.
    pub open_shells: u64,
    /// Commands open now (not yet terminated or deleted with their shell).
    pub open_commands: u64,
    /// SOAP faults sent.
    pub faults: u64,
}

impl WinRmCounters {
    /// Reads every counter.
    pub fn snapshot(&self) -> WinRmStats {
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        WinRmStats {
            requests: g(&self.requests),
            unauthorized: g(&self.unauthorized),
            auth_challenges: g(&self.auth_challenges),
            plaintext_refused: g(&self.plaintext_refused),
            kerberos_logons: g(&self.kerberos_logons),
            channel_bound: g(&self.channel_bound),
            create: g(&self.create),
            command: g(&self.command),
            receive: g(&self.receive),
            signal: g(&self.signal),
            delete: g(&self.delete),
            other: g(&self.other),
            open_shells: g(&self.open_shells),
            open_commands: g(&self.open_commands),
            faults: g(&self.faults),
        }
    }
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::SeqCst);
}

fn dec(a: &AtomicU64, n: u64) {
    let _ = a.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        Some(v.saturating_sub(n))
    });
}

struct Inner {
    host: Arc<dyn IisHost>,
    config: WinRmConfig,
    faults: WinRmFaultsHandle,
    counters: Arc<WinRmCounters>,
    shells: Shells,
}

/// A WinRM endpoint in front of one simulated server.
#[derive(Clone)]
pub struct WinRmService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WinRmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinRmService")
            .field("user", &self.inner.config.user)
            .field("auth", &self.inner.config.auth)
            .field("counters", &self.inner.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl WinRmService {
    /// An endpoint that runs commands against `host`.
    pub fn new(host: Arc<dyn IisHost>, config: WinRmConfig) -> Self {
        let faults = WinRmFaultsHandle::new(config.faults.clone());
        WinRmService {
            inner: Arc::new(Inner {
                host,
                config,
                faults,
                counters: Arc::default(),
                shells: Shells::default(),
            }),
        }
    }

    /// The axum router serving `POST /wsman`. With [`LabAuth::Negotiate`] serve it with
    /// `.into_make_service_with_connect_info::<WinRmConnection>()` (or under the fleet), so
    /// that the security context is bound to the TCP connection; without that every
    /// request is answered 500, saying so.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/wsman", post(handle))
            .with_state(self.inner.clone())
    }

    /// The run-time fault switches.
    pub fn faults(&self) -> WinRmFaultsHandle {
        self.inner.faults.clone()
    }

    /// The live counters.
    pub fn counters(&self) -> Arc<WinRmCounters> {
        self.inner.counters.clone()
    }
}

const SOAP_CONTENT_TYPE: &str = "application/soap+xml;charset=UTF-8";

/// Room for the MIME framing and the signature around an encrypted envelope.
const ENCRYPTION_OVERHEAD: usize = 4096;

/// How the reply to an authenticated request is sent.
enum Channel {
    /// Plain SOAP (Basic opt-in, or TLS).
    Plain,
    /// MS-WSMV encrypted with the connection's context, framed as `protocol`.
    Sealed(WinRmConnection, &'static str),
}

fn basic_challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"WSMAN\"")],
        "",
    )
        .into_response()
}

/// A 401 offering what Windows offers at its defaults.
fn negotiate_challenge(inner: &Inner) -> Response {
    inc(&inner.counters.unauthorized);
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    let h = response.headers_mut();
    h.append(
        header::WWW_AUTHENTICATE,
        "Negotiate".parse().expect("static"),
    );
    h.append(
        header::WWW_AUTHENTICATE,
        "Kerberos".parse().expect("static"),
    );
    response
}

fn basic_authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(auth::parse_authorization)
    {
        Some(Credentials::Basic { user, password }) => {
            auth::basic_ok(&user, &password, &inner.config.user, &inner.config.password)
        }
        _ => false,
    }
}

/// The connection's authentication for this request: `Ok((true, mutual))` when the request
/// itself completed a handshake (`mutual`: the `WWW-Authenticate` value for the reply, the
/// Kerberos mutual-authentication token), `Ok((false, None))` when the connection was
/// authenticated already.
fn negotiate(
    inner: &Inner,
    conn: &WinRmConnection,
    headers: &HeaderMap,
    faults: &WinRmFaults,
) -> Result<(bool, Option<HeaderValue>), Box<Response>> {
    let mut state = lock(&conn.state);
    if faults.wrong_credentials {
        // As if the account's password had changed: no handshake succeeds and contexts
        // established before are dropped.
        *state = ContextState::None;
        return Err(Box::new(negotiate_challenge(inner)));
    }
    let credentials = headers
        .get(header::AUTHORIZATION)
        .map(|v| auth::parse_authorization(v.to_str().unwrap_or("")));
    let (scheme, token) = match credentials {
        None => {
            return match &*state {
                ContextState::Established { .. } => Ok((false, None)),
                _ => {
                    *state = ContextState::None;
                    Err(Box::new(negotiate_challenge(inner)))
                }
            };
        }
        Some(Credentials::Token { scheme, token }) => (scheme, token),
        Some(other) => {
            tracing::debug!(credentials = ?other, "WinRM: scheme not accepted");
            *state = ContextState::None;
            return Err(Box::new(negotiate_challenge(inner)));
        }
    };
    let refuse = |state: &mut ContextState, why: AuthRefusal| {
        tracing::debug!(?why, ?scheme, "WinRM: authentication refused");
        *state = ContextState::None;
        Err(Box::new(negotiate_challenge(inner)))
    };
    let mechanism = auth::mechanism_of(scheme, &token);
    let mut acceptor: Box<dyn Acceptor> = match (mechanism, std::mem::take(&mut *state)) {
        (Some(Mechanism::Ntlm), _) if ntlm::message_type(&token) == Some(1) => {
            Box::new(ntlm::NtlmAcceptor::new(
                ntlm::Account::new(&inner.config.user, inner.config.password.clone()),
                conn.tls_binding(),
            ))
        }
        (Some(m @ (Mechanism::Kerberos | Mechanism::SpnegoKerberos)), _) => {
            let Some(config) = &inner.config.kerberos else {
                tracing::debug!("WinRM: a Kerberos token, and no service key configured");
                return refuse(&mut state, AuthRefusal::BadToken);
            };
            let wrapping = if m == Mechanism::Kerberos {
                kerberos::Wrapping::Raw
            } else {
                kerberos::Wrapping::Spnego
            };
            match kerberos::KerberosAcceptor::new(
                config,
                wrapping,
                kerberos::Principals::Only(&inner.config.user),
            ) {
                Ok(a) => Box::new(a),
                Err(why) => return refuse(&mut state, why),
            }
        }
        // The next leg of the handshake in progress (NTLM AUTHENTICATE, SPNEGO NegTokenResp).
        (Some(Mechanism::Ntlm) | None, ContextState::Handshake(acceptor)) => acceptor,
        (None, _) => return refuse(&mut state, AuthRefusal::BadToken),
        _ => return refuse(&mut state, AuthRefusal::OutOfSequence),
    };
    match acceptor.step(&token) {
        Ok(Step::Continue(reply)) => {
            *state = ContextState::Handshake(acceptor);
            inc(&inner.counters.unauthorized);
            inc(&inner.counters.auth_challenges);
            let value = format!("{} {}", scheme.name(), B64.encode(reply));
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            if let Ok(v) = value.parse() {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            Err(Box::new(response))
        }
        Ok(Step::Done {
            user,
            reply,
            channel_bound,
        }) => {
            let mechanism = acceptor.mechanism();
            tracing::debug!(connection = conn.id(), %user, ?mechanism, "WinRM: authenticated");
            if mechanism != Mechanism::Ntlm {
                inc(&inner.counters.kerberos_logons);
            }
            if channel_bound {
                inc(&inner.counters.channel_bound);
            }
            let mutual =
                reply.and_then(|r| format!("{} {}", scheme.name(), B64.encode(r)).parse().ok());
            *state = ContextState::Established { acceptor, user };
            Ok((true, mutual))
        }
        Err(why) => refuse(&mut state, why),
    }
}

async fn handle(State(inner): State<Arc<Inner>>, request: HttpRequest) -> Response {
    let mut mutual = None;
    let mut response = respond(&inner, request, &mut mutual).await;
    // The reply that completes a Kerberos handshake carries the mutual-authentication token
    // (Windows sends it on the 200, or on whatever answers the request that authenticated).
    if let Some(value) = mutual {
        if response.status() != StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

async fn respond(
    inner: &Inner,
    request: HttpRequest,
    mutual: &mut Option<HeaderValue>,
) -> Response {
    inc(&inner.counters.requests);
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let conn = parts
        .extensions
        .get::<ConnectInfo<WinRmConnection>>()
        .map(|c| c.0.clone());
    let mut faults = inner.faults.get();
    if faults.hang_after_accept {
        inner.faults.hang_while_set().await;
        faults = inner.faults.get();
    }
    let limit = inner.config.max_envelope_size;
    let read_limit = limit + ENCRYPTION_OVERHEAD;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Read the body first, also for a 401: a connection whose request body is left unread
    // cannot carry the next leg of the handshake.
    let bytes = match declared {
        Some(n) if n > read_limit as u64 => None,
        _ => axum::body::to_bytes(body, read_limit).await.ok(),
    };
    let channel = match inner.config.auth {
        LabAuth::BasicOverHttp => {
            if faults.wrong_credentials || !basic_authorized(inner, &headers) {
                inc(&inner.counters.unauthorized);
                return basic_challenge();
            }
            Channel::Plain
        }
        LabAuth::Negotiate => {
            let Some(conn) = conn else {
                tracing::error!("WinRM endpoint served without WinRmConnection connect info");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the lab's WinRM router must be served with into_make_service_with_connect_info::<WinRmConnection>()",
                )
                    .into_response();
            };
            let handshake = match negotiate(inner, &conn, &headers, &faults) {
                Ok((handshake, token)) => {
                    *mutual = token;
                    handshake
                }
                Err(response) => return *response,
            };
            if bytes.as_ref().is_some_and(|b| b.is_empty()) {
                // The client's empty-bodied authentication request (or a keep-alive probe).
                tracing::trace!(handshake, "WinRM: empty-bodied request answered 200");
                return StatusCode::OK.into_response();
            }
            let encrypted = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(encryption::encrypted_boundary);
            // Over TLS the body may be plain (TLS protects it) or encrypted anyway (pywinrm
            // with `message_encryption='always'`): Windows accepts both, and answers in kind.
            match encrypted {
                None if conn.is_tls() => Channel::Plain,
                None => Channel::Sealed(conn, encryption::SPNEGO_PROTOCOL),
                Some((_, protocol)) => Channel::Sealed(conn, protocol),
            }
        }
    };
    if let Some(d) = faults.response_delay {
        tokio::time::sleep(d).await;
    }
    let Some(bytes) = bytes else {
        inc(&inner.counters.other);
        return reply(
            inner,
            &channel,
            fault_reply(inner, &envelope_limit(limit), None),
        );
    };
    let plain = match &channel {
        Channel::Plain => Ok(bytes),
        Channel::Sealed(conn, _) => unseal(inner, conn, &headers, &bytes),
    };
    let plain = match plain {
        Ok(p) => p,
        Err(response) => return *response,
    };
    if plain.len() > limit {
        inc(&inner.counters.other);
        return reply(
            inner,
            &channel,
            fault_reply(inner, &envelope_limit(limit), None),
        );
    }
    let out = process(inner, &plain, &faults).await;
    reply(inner, &channel, out)
}

fn envelope_limit(limit: usize) -> Fault {
    Fault::sender(
        "w:EncodingLimit",
        2150858790,
        format!("The WS-Management service cannot process the request because the request envelope is larger than the maximum envelope size ({limit} bytes)."),
    )
}

/// The plaintext of an encrypted request; a plain-text body on a connection that must
/// encrypt is refused with 401 (and the context dropped), an undecryptable one with 400.
fn unseal(
    inner: &Inner,
    conn: &WinRmConnection,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Bytes, Box<Response>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some((boundary, protocol)) = encryption::encrypted_boundary(content_type) else {
        // AllowUnencrypted = false: Windows answers an NTLM client that sends a plain body
        // with 401 (pywinrm/pypsrp report the credentials as rejected).
        inc(&inner.counters.plaintext_refused);
        *lock(&conn.state) = ContextState::None;
        return Err(Box::new(negotiate_challenge(inner)));
    };
    let parts = encryption::decode(body, &boundary, protocol).map_err(|why| {
        tracing::debug!(why, "WinRM: malformed encrypted body");
        Box::new(StatusCode::BAD_REQUEST.into_response())
    })?;
    let mut state = lock(&conn.state);
    let ContextState::Established { acceptor, .. } = &mut *state else {
        drop(state);
        return Err(Box::new(negotiate_challenge(inner)));
    };
    let mut plain = Vec::new();
    for part in parts {
        let Some(p) = acceptor.unseal(&part.header, &part.sealed) else {
            tracing::debug!("WinRM: a message failed to decrypt or verify");
            return Err(Box::new(StatusCode::BAD_REQUEST.into_response()));
        };
        plain.extend_from_slice(&p);
    }
    Ok(Bytes::from(plain))
}

/// A reply (status + SOAP), encrypted when the channel says so.
fn reply(inner: &Inner, channel: &Channel, (status, xml): (StatusCode, String)) -> Response {
    match channel {
        Channel::Plain => soap_response(status, xml),
        Channel::Sealed(conn, protocol) => {
            let sealed = match &mut *lock(&conn.state) {
                ContextState::Established { acceptor, .. } => acceptor.seal(xml.as_bytes()),
                _ => None,
            };
            let Some((header, sealed)) = sealed else {
                tracing::warn!("WinRM: the connection's context is gone; reply not sent");
                return negotiate_challenge(inner);
            };
            (
                status,
                [(header::CONTENT_TYPE, encryption::content_type(protocol))],
                encryption::encode(protocol, &header, &sealed, xml.len()),
            )
                .into_response()
        }
    }
}

fn soap_response(status: StatusCode, xml: String) -> Response {
    (status, [(header::CONTENT_TYPE, SOAP_CONTENT_TYPE)], xml).into_response()
}

/// Parses and runs one plain SOAP request: (HTTP status, envelope).
async fn process(inner: &Inner, bytes: &[u8], faults: &WinRmFaults) -> (StatusCode, String) {
    let req = match std::str::from_utf8(bytes) {
        Ok(text) => soap::parse_request(text),
        Err(_) => Err(Fault::sender(
            "w:SchemaValidationError",
            2150858817,
            "The WS-Management service cannot process the request because the body is not UTF-8.",
        )),
    };
    let req = match req {
        Ok(r) => r,
        Err(f) => {
            inc(&inner.counters.other);
            return fault_reply(inner, &f, None);
        }
    };
    let relates = req.message_id.clone();
    match dispatch(inner, req, faults).await {
        Ok(xml) => (StatusCode::OK, xml),
        Err(f) => fault_reply(inner, &f, relates.as_deref()),
    }
}

fn fault_reply(inner: &Inner, f: &Fault, relates_to: Option<&str>) -> (StatusCode, String) {
    inc(&inner.counters.faults);
    tracing::debug!(subcode = f.subcode, code = f.wsman_code, "WinRM fault");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        soap::fault_envelope(f, relates_to, &inner.config.machine),
    )
}

fn invalid_selectors(shell_id: Option<&str>) -> Fault {
    let reason = match shell_id {
        Some(id) => format!("The request for the Windows Remote Shell with ShellId {id} failed because the shell was not found on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the server. Provide the correct ShellId or create a new shell and retry the operation."),
        None => "The WS-Management service cannot process the request because the request contained invalid selectors for the resource.".into(),
    };
    Fault::sender("w:InvalidSelectors", 2150858843, reason)
}

fn quota(what: &str, max: usize) -> Fault {
    Fault::receiver(
        "w:QuotaLimit",
        2150859173,
        format!("The WS-Management service cannot process the request. This user is allowed a maximum number of {max} {what}, which has been exceeded."),
    )
}

async fn dispatch(inner: &Inner, req: Request, faults: &WinRmFaults) -> Result<String, Fault> {
    let counters = &inner.counters;
    let Some(action) = req.action.clone() else {
        inc(&counters.other);
        return Err(Fault::sender(
            "a:MessageInformationHeaderRequired",
            2150858818,
            "The WS-Management service cannot process the request because the Action header is missing.",
        ));
    };
    let relates = req.message_id.as_deref();
    match action.as_str() {
        soap::ACTION_CREATE => inc(&counters.create),
        soap::ACTION_COMMAND => inc(&counters.command),
        soap::ACTION_RECEIVE => inc(&counters.receive),
        soap::ACTION_SIGNAL => inc(&counters.signal),
        soap::ACTION_DELETE => inc(&counters.delete),
        _ => inc(&counters.other),
    }
    let known = [
        soap::ACTION_CREATE,
        soap::ACTION_COMMAND,
        soap::ACTION_RECEIVE,
        soap::ACTION_SIGNAL,
        soap::ACTION_DELETE,
        soap::ACTION_SEND,
    ];
    if !known.contains(&action.as_str()) {
        return Err(Fault::sender(
            "a:ActionNotSupported",
            2150858771,
            format!("The WS-Management service cannot process the request because the action '{action}' is not supported by the resource."),
        ));
    }
    if !req
        .resource_uri
        .as_deref()
        .is_some_and(|r| r.eq_ignore_ascii_case(soap::RESOURCE_CMD))
    {
        return Err(Fault::sender(
            "w:DestinationUnreachable",
            2150858770,
            format!(
                "The WS-Management service cannot process the request because the resource URI '{}' is not served by the lab (only {}).",
                req.resource_uri.as_deref().unwrap_or(""),
                soap::RESOURCE_CMD
            ),
        ));
    }
    if action == soap::ACTION_CREATE {
        let id = inner
            .shells
            .open(inner.config.max_shells)
            .ok_or_else(|| quota("shells", inner.config.max_shells))?;
        inc(&counters.open_shells);
        let body = format!(
            "<x:ResourceCreated><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address>\
             <a:ReferenceParameters><w:ResourceURI>{res}</w:ResourceURI><w:SelectorSet><w:Selector Name=\"ShellId\">{id}</w:Selector></w:SelectorSet>\
             </a:ReferenceParameters></x:ResourceCreated>\
             <rsp:Shell><rsp:ShellId>{id}</rsp:ShellId><rsp:ResourceUri>{res}</rsp:ResourceUri><rsp:Owner>{owner}</rsp:Owner>\
             <rsp:ClientIP>127.0.0.1</rsp:ClientIP><rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut><rsp:InputStreams>stdin</rsp:InputStreams>\
             <rsp:OutputStreams>stdout stderr</rsp:OutputStreams><rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>\
             <rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity></rsp:Shell>",
            res = soap::RESOURCE_CMD,
            owner = soap::escape(&inner.config.user),
        );
        return Ok(soap::envelope(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
            relates,
            &body,
        ));
    }
    let shell_id = req
        .shell_id
        .clone()
        .ok_or_else(|| invalid_selectors(None))?;
    let Some(shell) = inner.shells.get(&shell_id) else {
        return Err(invalid_selectors(Some(&shell_id)));
    };
    match (action.as_str(), req.body) {
        (soap::ACTION_DELETE, _) => {
            if let Some(s) = inner.shells.remove(&shell_id) {
                let n = s.close();
                dec(&counters.open_commands, n as u64);
                dec(&counters.open_shells, 1);
            }
            Ok(soap::envelope(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
                relates,
                "",
            ))
        }
        (soap::ACTION_SEND, _) => Ok(soap::envelope(
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse",
            relates,
            "<rsp:SendResponse/>",
        )),
        (
            soap::ACTION_COMMAND,
            Body::CommandLine {
                command,
                arguments,
                command_id,
            },
        ) => {
            if faults.command_fault {
                return Err(Fault::receiver(
                    "w:InternalError",
                    1359,
                    "The WS-Management service cannot process the request: an internal error occurred (injected by the lab).",
                ));
            }
            let id = command_id
                .filter(|c| {
                    !c.is_empty()
                        && c.len() <= 64
                        && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                })
                .map(|c| c.to_uppercase())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string().to_uppercase());
            let entry = CommandEntry::new(id.clone(), faults.timed_out_receives);
            {
                let mut cmds = lock(&shell.commands);
                if cmds.len() >= inner.config.max_commands_per_shell {
                    return Err(quota(
                        "commands per shell",
                        inner.config.max_commands_per_shell,
                    ));
                }
                if let Some(old) = cmds.insert(id.clone(), entry.clone()) {
                    old.abort(-1);
                    dec(&counters.open_commands, 1);
                }
            }
            inc(&counters.open_commands);
            start(inner, &entry, cmdline::plan(&command, &arguments), faults);
            Ok(soap::envelope(
                "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse",
                relates,
                &format!("<rsp:CommandResponse><rsp:CommandId>{id}</rsp:CommandId></rsp:CommandResponse>"),
            ))
        }
        (soap::ACTION_RECEIVE, Body::Receive { command_id }) => {
            let cmd = command_id
                .as_deref()
                .and_then(|c| lock(&shell.commands).get(&c.to_uppercase()).cloned())
                .ok_or_else(|| unknown_command(command_id.as_deref()))?;
            let wait = req
                .operation_timeout
                .unwrap_or(inner.config.operation_timeout)
                .min(inner.config.operation_timeout);
            let chunk = (inner.config.max_envelope_size.saturating_sub(8 * 1024) * 3 / 4)
                .clamp(1024, 1 << 20);
            match cmd.receive(wait, chunk).await {
                Received::TimedOut => Err(Fault::receiver(
                    "w:TimedOut",
                    2150858793,
                    "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.",
                )),
                Received::Output { stdout, stderr, done } => {
                    Ok(receive_reply(relates, &cmd.id, &stdout, &stderr, done))
                }
            }
        }
        (soap::ACTION_SIGNAL, Body::Signal { command_id, code }) => {
            let id = command_id.as_deref().map(str::to_uppercase);
            let cmd = id
                .as_deref()
                .and_then(|c| lock(&shell.commands).get(c).cloned());
            let Some(cmd) = cmd else {
                return Err(unknown_command(command_id.as_deref()));
            };
            if code.eq_ignore_ascii_case(soap::SIGNAL_TERMINATE) {
                cmd.abort(-1);
                if lock(&shell.commands).remove(&cmd.id).is_some() {
                    dec(&counters.open_commands, 1);
                }
            } else if code.eq_ignore_ascii_case(soap::SIGNAL_CTRL_C) {
                // STATUS_CONTROL_C_EXIT
                cmd.abort(-1_073_741_510);
            } else {
                return Err(Fault::sender(
                    "w:InvalidParameter",
                    87,
                    format!("The signal code '{code}' is not supported."),
                ));
            }
            Ok(soap::envelope(
                "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SignalResponse",
                relates,
                "<rsp:SignalResponse/>",
            ))
        }
        (_, _) => Err(Fault::sender(
            "w:SchemaValidationError",
            2150858817,
            format!("The SOAP body does not match the action '{action}'."),
        )),
    }
}

fn unknown_command(id: Option<&str>) -> Fault {
    Fault::sender(
        "w:InvalidParameter",
        87,
        format!(
            "The request for the Windows Remote Shell failed because the command '{}' was not found in the shell.",
            id.unwrap_or("")
        ),
    )
}

/// What an injected [`WinRmFaults::command_exit`] prints: a terminating error of the kind a
/// `powershell.exe` that cannot load the IIS module writes.
fn failed_powershell(exit_code: i32) -> ScriptOutput {
    ScriptOutput {
        stdout: String::new(),
        stderr: "Import-Module : The specified module 'WebAdministration' was not loaded because no valid module file was found in any module directory. (injected by the lab)\r\n\
                 \x20   + CategoryInfo          : ResourceUnavailable: (WebAdministration:String) [Import-Module], FileNotFoundException\r\n\
                 \x20   + FullyQualifiedErrorId : Modules_ModuleNotFound,Microsoft.PowerShell.Commands.ImportModuleCommand\r\n"
            .to_owned(),
        exit_code,
    }
}

/// Cuts `out.stdout` in half (on a character boundary): not the document the script printed.
fn malformed(mut out: ScriptOutput) -> ScriptOutput {
    let mut half = out.stdout.len() / 2;
    while !out.stdout.is_char_boundary(half) {
        half -= 1;
    }
    out.stdout.truncate(half);
    if out.stdout.trim().is_empty() {
        out.stdout = "{\"pools\": [".to_owned();
    }
    out
}

fn start(inner: &Inner, entry: &Arc<CommandEntry>, plan: Plan, faults: &WinRmFaults) {
    let host = inner.host.clone();
    let limits = inner.config.script_limits;
    let task_entry = entry.clone();
    let (exit_fault, malformed_output) = (faults.command_exit, faults.malformed_output);
    let handle = tokio::spawn(async move {
        if let Some(code) = exit_fault {
            let mut out = failed_powershell(code);
            out.stderr = clixml::powershell_stderr(&out.stderr);
            task_entry.finish(out);
            return;
        }
        let out: ScriptOutput = match plan {
            Plan::Done(out) => out,
            Plan::Script(script) => {
                let mut out = ps::run_script_with_limits(&*host, &script, limits).await;
                out.stderr = clixml::powershell_stderr(&out.stderr);
                out
            }
            Plan::Native { program, args } => ps::run_native_command(&*host, &program, &args)
                .await
                .unwrap_or_else(|| ScriptOutput {
                    stderr: format!("'{program}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"),
                    exit_code: 1,
                    ..ScriptOutput::default()
                }),
        };
        task_entry.finish(if malformed_output {
            malformed(out)
        } else {
            out
        });
    });
    entry.set_task(handle);
}

fn receive_reply(
    relates: Option<&str>,
    id: &str,
    stdout: &[u8],
    stderr: &[u8],
    done: Option<i32>,
) -> String {
    let mut body = String::from("<rsp:ReceiveResponse>");
    for (name, data) in [("stdout", stdout), ("stderr", stderr)] {
        if !data.is_empty() {
            body.push_str(&format!(
                "<rsp:Stream Name=\"{name}\" CommandId=\"{id}\">{}</rsp:Stream>",
                B64.encode(data)
            ));
        }
    }
    match done {
        Some(code) => {
            body.push_str(&format!(
                "<rsp:Stream Name=\"stdout\" CommandId=\"{id}\" End=\"true\"></rsp:Stream>\
                 <rsp:Stream Name=\"stderr\" CommandId=\"{id}\" End=\"true\"></rsp:Stream>\
                 <rsp:CommandState CommandId=\"{id}\" State=\"{}\"><rsp:ExitCode>{code}</rsp:ExitCode></rsp:CommandState>",
                soap::STATE_DONE
            ));
        }
        None => body.push_str(&format!(
            "<rsp:CommandState CommandId=\"{id}\" State=\"{}\"/>",
            soap::STATE_RUNNING
        )),
    }
    body.push_str("</rsp:ReceiveResponse>");
    soap::envelope(
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
        relates,
        &body,
    )
}
