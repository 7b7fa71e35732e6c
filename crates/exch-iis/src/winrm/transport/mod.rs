//! exch-iis's own WinRM transport: HTTP/1.1 on connections it owns, authentication and
//! MS-WSMV message encryption with the `sspi` crate, TLS with rustls.
//!
//! Why not winrm-rs's transport (1.1.2, the newest that builds on rustc 1.95): its NTLM path
//! sends the first SOAP request in clear, cannot unseal replies framed as Windows frames them,
//! resends in clear after an encrypted fault and spreads one NTLM context over a pool of
//! connections; its Kerberos never encrypts; its HTTPS trusts public roots only. A Windows
//! server at its defaults (AllowUnencrypted = false, Basic = false) refuses all of that.
//!
//! What this transport does instead, per [`Session`] (one TCP connection):
//! - NTLM (raw NTLM tokens under `Negotiate`): authenticate first with empty-bodied POSTs
//!   (NEGOTIATE → 401 + CHALLENGE → AUTHENTICATE → 200), as Windows clients do; then over
//!   `http://` every SOAP body is sealed (`multipart/encrypted`, see [`framing`]) and every
//!   reply — faults included — is unsealed with the same context; over `https://` the bodies
//!   are plain (TLS protects them) and the AUTHENTICATE carries the channel binding of the
//!   server certificate (RFC 5929, the certificate's own hash).
//! - Basic: the header on every request, only over `https://` unless explicitly allowed.
//! - Nothing is ever resent in clear, and no method falls back to a weaker one.
//! - Idle authenticated sessions are kept (at most [`IDLE_SESSIONS`] in all) and reused, so a
//!   second operation on a server costs no handshake.

pub(crate) mod auth;
mod conn;
pub(crate) mod framing;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use hyper::{Request, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tokio_rustls::rustls;

use super::{Endpoint, WinRmAuth};
use auth::{AuthError, ClientContext};
use conn::{Conn, Reply};

/// Most idle authenticated sessions kept, all servers together.
pub(crate) const IDLE_SESSIONS: usize = 64;

const SOAP_CONTENT_TYPE: &str = "application/soap+xml;charset=UTF-8";

/// What went wrong below the SOAP layer (or a SOAP fault). Never holds a secret.
#[derive(Debug)]
pub(crate) enum WsmanError {
    /// TCP connect failed.
    Connect(io::Error),
    /// TCP connect or TLS handshake took too long.
    ConnectTimeout(Duration),
    /// The TLS handshake failed (certificate not trusted, name mismatch, protocol).
    Tls(io::Error),
    /// The HTTP exchange failed (connection reset, closed).
    Http(hyper::Error),
    /// The server refused the credentials (401 after a complete handshake, or to Basic).
    Refused(String),
    /// The server offers none of the methods this client is allowed to use.
    NoAllowedMethod {
        /// The schemes in the server's `WWW-Authenticate` headers.
        offered: Vec<String>,
        /// The scheme we wanted.
        wanted: &'static str,
    },
    /// The security context failed (bad token, unsealing failed).
    Auth(AuthError),
    /// A SOAP fault.
    Fault {
        /// WSManFault code or SOAP subcode.
        code: String,
        /// Fault text.
        reason: String,
    },
    /// Anything else unexpected.
    Protocol(String),
}

impl std::fmt::Display for WsmanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsmanError::Connect(e) => write!(f, "connect: {e}"),
            WsmanError::ConnectTimeout(d) => write!(f, "no connection within {d:?}"),
            WsmanError::Tls(e) => write!(f, "TLS: {e}"),
            WsmanError::Http(e) => write!(f, "HTTP: {e}"),
            WsmanError::Refused(d) => write!(f, "credentials refused: {d}"),
            WsmanError::NoAllowedMethod { offered, wanted } => write!(
                f,
                "the server offers {} but not {wanted}",
                if offered.is_empty() {
                    "no authentication method".to_owned()
                } else {
                    offered.join(", ")
                }
            ),
            WsmanError::Auth(e) => write!(f, "{}", e.detail),
            WsmanError::Fault { code, reason } => write!(f, "fault {code}: {reason}"),
            WsmanError::Protocol(d) => f.write_str(d),
        }
    }
}

impl std::error::Error for WsmanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WsmanError::Connect(e) | WsmanError::Tls(e) => Some(e),
            WsmanError::Http(e) => Some(e),
            _ => None,
        }
    }
}

impl From<AuthError> for WsmanError {
    fn from(e: AuthError) -> Self {
        match e.kind {
            auth::AuthErrorKind::Refused => WsmanError::Refused(e.detail),
            _ => WsmanError::Auth(e),
        }
    }
}

/// How server certificates are checked.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    /// The operating system's trust store.
    System,
    /// Only the CA certificates of this PEM file.
    CaPem(Vec<rustls::pki_types::CertificateDer<'static>>),
    /// Anything (explicit opt-out).
    AcceptAny,
}

/// The settings every session uses.
pub(crate) struct Settings {
    pub(crate) auth: WinRmAuth,
    pub(crate) user: String,
    pub(crate) password: SecretString,
    pub(crate) connect_timeout: Duration,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// The KDC (`host:port`) for Kerberos.
    pub(crate) kdc: Option<String>,
}

/// Counters of the transport (all sessions).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// HTTP requests sent (handshake legs included).
    pub(crate) http_requests: AtomicU64,
    /// Connections opened.
    pub(crate) connections: AtomicU64,
}

/// One authenticated connection.
pub(crate) struct Session {
    key: String,
    conn: Conn,
    ctx: Option<ClientContext>,
    /// Seal bodies (NTLM over plain HTTP).
    seal: bool,
    host_header: String,
    /// Set when something went wrong mid-exchange: the session is not put back.
    broken: bool,
}

impl Session {
    /// Whether the session can carry another request.
    pub(crate) fn is_healthy(&self) -> bool {
        !self.broken && self.conn.is_usable()
    }
}

/// The transport: settings, counters and the idle sessions.
pub(crate) struct Transport {
    settings: Settings,
    idle: Mutex<VecDeque<Session>>,
    pub(crate) counters: Counters,
}

fn header_schemes(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| v.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn challenge_token(reply: &Reply, scheme: &str) -> Option<Vec<u8>> {
    reply
        .headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (s, token) = v.trim().split_once(' ')?;
            s.eq_ignore_ascii_case(scheme)
                .then(|| B64.decode(token.trim()).ok())
                .flatten()
        })
}

/// Builds the TLS client configuration for `trust`.
pub(crate) fn tls_config(trust: &Trust) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match trust {
        Trust::AcceptAny => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
        Trust::CaPem(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs {
                roots
                    .add(c.clone())
                    .map_err(|e| format!("not a usable CA certificate: {e}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::System => {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("the system trust store has no CA certificates; pass the CA that issued the WinRM certificates with ca_file".into());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// Reads the CA certificates of a PEM file.
pub(crate) fn read_ca_pem(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no CERTIFICATE block; give the PEM of the CA that issued the WinRM certificates",
            path.display()
        ));
    }
    Ok(certs)
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Transport {
    pub(crate) fn new(settings: Settings) -> Transport {
        Transport {
            settings,
            idle: Mutex::new(VecDeque::new()),
            counters: Counters::default(),
        }
    }

    /// Idle sessions held now.
    pub(crate) fn idle_sessions(&self) -> usize {
        self.idle.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// An authenticated session to `ep`: an idle one when there is one, else a new
    /// connection with a full handshake.
    pub(crate) async fn session(&self, ep: &Endpoint) -> Result<Session, WsmanError> {
        let key = ep.url();
        loop {
            let found = {
                let mut idle = self
                    .idle
                    .lock()
                    .map_err(|_| WsmanError::Protocol("session pool poisoned".into()))?;
                idle.iter()
                    .rposition(|s| s.key == key)
                    .and_then(|i| idle.remove(i))
            };
            match found {
                Some(s) if s.conn.is_usable() => return Ok(s),
                Some(_) => continue,
                None => break,
            }
        }
        self.open(ep, key).await
    }

    /// Puts a healthy session back for reuse.
    pub(crate) fn give_back(&self, session: Session) {
        if session.broken || !session.conn.is_usable() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push_back(session);
            while idle.len() > IDLE_SESSIONS {
                idle.pop_front();
            }
        }
    }

    async fn open(&self, ep: &Endpoint, key: String) -> Result<Session, WsmanError> {
        let s = &self.settings;
        let tls = if ep.https { s.tls.clone() } else { None };
        let conn = Conn::open(ep, tls, s.connect_timeout).await?;
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        let host_header = format!("{}:{}", ep.host, ep.port);
        let mut session = Session {
            key,
            conn,
            ctx: None,
            seal: false,
            host_header,
            broken: false,
        };
        let ctx = match s.auth {
            WinRmAuth::Basic => None,
            WinRmAuth::Ntlm => Some(ClientContext::ntlm(
                &s.user,
                &s.password,
                &ep.spn_host,
                session.conn.channel_binding.as_deref(),
            )?),
            WinRmAuth::Kerberos => {
                let kdc = s.kdc.as_deref().ok_or_else(|| {
                    WsmanError::Protocol(
                        "Kerberos without a KDC (exch-iis bug: build checks it)".into(),
                    )
                })?;
                Some(ClientContext::kerberos(
                    &s.user,
                    &s.password,
                    &ep.spn_host,
                    kdc,
                    s.connect_timeout,
                )?)
            }
        };
        if let Some(ctx) = ctx {
            session.ctx = Some(ctx);
            session.seal = !ep.https;
            self.handshake(&mut session).await?;
        }
        Ok(session)
    }

    fn request(
        &self,
        session: &Session,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, WsmanError> {
        let mut b = Request::post("/wsman").header(HOST, session.host_header.as_str());
        if let Some(ct) = content_type {
            b = b.header(CONTENT_TYPE, ct);
        }
        b.body(Full::new(body))
            .map_err(|e| WsmanError::Protocol(format!("cannot build the HTTP request: {e}")))
    }

    async fn send(
        &self,
        session: &mut Session,
        req: Request<Full<Bytes>>,
    ) -> Result<Reply, WsmanError> {
        self.counters.http_requests.fetch_add(1, Ordering::Relaxed);
        let r = session.conn.send(req).await;
        if r.is_err() {
            session.broken = true;
        }
        r
    }

    /// One step of the context; Kerberos steps (which may talk to the KDC) on a blocking
    /// thread.
    async fn step(session: &mut Session, input: Option<Vec<u8>>) -> Result<auth::Step, WsmanError> {
        let mut ctx = session
            .ctx
            .take()
            .ok_or_else(|| WsmanError::Protocol("handshake without a context".into()))?;
        if !ctx.blocking() {
            let r = ctx.step(input.as_deref());
            session.ctx = Some(ctx);
            return Ok(r?);
        }
        let (ctx, r) = tokio::task::spawn_blocking(move || {
            let r = ctx.step(input.as_deref());
            (ctx, r)
        })
        .await
        .map_err(|e| WsmanError::Protocol(format!("the Kerberos step failed: {e}")))?;
        session.ctx = Some(ctx);
        Ok(r?)
    }

    /// On empty-bodied POSTs: NTLM's NEGOTIATE → 401 + CHALLENGE → AUTHENTICATE → 200;
    /// Kerberos's AP-REQ → 200 + AP-REP (mutual authentication, checked).
    async fn handshake(&self, session: &mut Session) -> Result<(), WsmanError> {
        let mut input: Option<Vec<u8>> = None;
        let (scheme, mech, kerberos, spn) = match &session.ctx {
            Some(c) => (c.scheme(), c.name(), c.is_kerberos(), c.target().to_owned()),
            None => return Err(WsmanError::Protocol("handshake without a context".into())),
        };
        loop {
            let step = Self::step(session, input.take()).await?;
            let mut req = self.request(session, Bytes::new(), None)?;
            let value = format!("{scheme} {}", B64.encode(&step.token));
            req.headers_mut().insert(
                AUTHORIZATION,
                value
                    .parse()
                    .map_err(|_| WsmanError::Protocol("bad Authorization header".into()))?,
            );
            let reply = self.send(session, req).await?;
            match reply.status {
                s if s.is_success() => {
                    if step.complete {
                        return Ok(());
                    }
                    // Kerberos: the 200 carries the AP-REP; the context is complete (and the
                    // server proven) only once it checks out.
                    let Some(token) = challenge_token(&reply, scheme) else {
                        session.broken = true;
                        return Err(WsmanError::Protocol(format!(
                            "the server answered {s} before the {mech} handshake was complete (no mutual authentication token)"
                        )));
                    };
                    let last = Self::step(session, Some(token)).await?;
                    if !last.complete || !last.token.is_empty() {
                        session.broken = true;
                        return Err(WsmanError::Protocol(format!(
                            "the {mech} handshake did not complete after the server's reply"
                        )));
                    }
                    return Ok(());
                }
                StatusCode::UNAUTHORIZED => {
                    let offered = header_schemes(&reply);
                    if !offered.iter().any(|o| o.eq_ignore_ascii_case(scheme)) {
                        session.broken = true;
                        return Err(WsmanError::NoAllowedMethod {
                            offered,
                            wanted: if kerberos {
                                "Kerberos"
                            } else {
                                "Negotiate (NTLM)"
                            },
                        });
                    }
                    if step.complete || kerberos {
                        session.broken = true;
                        return Err(WsmanError::Refused(if kerberos {
                            format!("the server refused the Kerberos ticket for {spn} (clock skew between the server and the KDC, a stale service key, the SPN registered on another account, or no right to use WinRM)")
                        } else {
                            "the server refused the NTLM AUTHENTICATE message (wrong user or password, unknown user, locked or disabled account, or no right to use WinRM)".into()
                        }));
                    }
                    match challenge_token(&reply, scheme) {
                        Some(t) => input = Some(t),
                        None => {
                            // It offers the scheme but answers our first message with a bare
                            // 401: it will not authenticate us (NTLM refused by policy, or the
                            // account is not allowed).
                            session.broken = true;
                            return Err(WsmanError::Refused(format!(
                                "the server offers {scheme} but refused to start an {mech} handshake (NTLM disabled by policy, or the account may not use WinRM)"
                            )));
                        }
                    }
                }
                other => {
                    session.broken = true;
                    return Err(WsmanError::Protocol(format!(
                        "the server answered {other} to the {scheme} handshake"
                    )));
                }
            }
        }
    }

    /// Posts one SOAP envelope on `session` and returns the reply envelope (SOAP faults as
    /// [`WsmanError::Fault`]).
    pub(crate) async fn post(
        &self,
        session: &mut Session,
        envelope: &str,
    ) -> Result<String, WsmanError> {
        let mut req = if session.seal {
            let ctx = session
                .ctx
                .as_mut()
                .ok_or_else(|| WsmanError::Protocol("sealing without a context".into()))?;
            let (header, sealed) = ctx.seal(envelope.as_bytes())?;
            let body = framing::encode(ctx.protocol(), envelope.len(), &header, &sealed);
            let ct = framing::content_type(ctx.protocol());
            self.request(session, Bytes::from(body), Some(&ct))?
        } else {
            self.request(
                session,
                Bytes::from(envelope.to_owned()),
                Some(SOAP_CONTENT_TYPE),
            )?
        };
        if self.settings.auth == WinRmAuth::Basic {
            let s = &self.settings;
            let cred = B64.encode(format!("{}:{}", s.user, s.password.expose_secret()));
            let mut value: hyper::header::HeaderValue =
                format!("Basic {cred}").parse().map_err(|_| {
                    WsmanError::Protocol("the user name cannot go in a Basic header".into())
                })?;
            value.set_sensitive(true);
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        let reply = self.send(session, req).await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            session.broken = true;
            let offered = header_schemes(&reply);
            return Err(match self.settings.auth {
                WinRmAuth::Basic if !offered.iter().any(|s| s.eq_ignore_ascii_case("basic")) => {
                    WsmanError::NoAllowedMethod {
                        offered,
                        wanted: "Basic",
                    }
                }
                WinRmAuth::Basic => {
                    WsmanError::Refused("the server refused the Basic credentials".into())
                }
                _ => WsmanError::Refused(
                    "the server no longer accepts this connection's authentication".into(),
                ),
            });
        }
        let content_type = reply
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let xml = if framing::is_encrypted(&content_type) {
            let ctx = session
                .ctx
                .as_mut()
                .filter(|_| session.seal)
                .ok_or_else(|| {
                    WsmanError::Protocol(
                        "an encrypted reply on a connection without sealing".into(),
                    )
                })?;
            let parts = framing::decode(&reply.body).map_err(|e| {
                WsmanError::Protocol(format!("cannot take the encrypted reply apart: {e}"))
            })?;
            let plain = ctx.unseal(parts.header, parts.sealed).inspect_err(|_| {
                session.broken = true;
            })?;
            if plain.len() != parts.plain_len {
                session.broken = true;
                return Err(WsmanError::Protocol(format!(
                    "the unsealed reply has {} bytes, the server announced {}",
                    plain.len(),
                    parts.plain_len
                )));
            }
            String::from_utf8(plain)
                .map_err(|_| WsmanError::Protocol("the reply is not UTF-8".into()))?
        } else if session.seal && !reply.body.is_empty() {
            // A server that answers a sealed request in clear is not the server we
            // authenticated to (or is broken): never trust it.
            session.broken = true;
            return Err(WsmanError::Protocol(format!(
                "HTTP {} with an unencrypted body to an encrypted request",
                reply.status
            )));
        } else {
            String::from_utf8_lossy(&reply.body).into_owned()
        };
        match reply.status {
            s if s.is_success() => Ok(xml),
            StatusCode::INTERNAL_SERVER_ERROR | StatusCode::BAD_REQUEST => {
                match super::reply::fault(&xml) {
                    Some(super::reply::Fault { code, reason }) => {
                        Err(WsmanError::Fault { code, reason })
                    }
                    None => Err(WsmanError::Protocol(format!(
                        "HTTP {} without a SOAP fault: {}",
                        reply.status,
                        crate::error::clip(&xml)
                    ))),
                }
            }
            other => {
                session.broken = true;
                Err(WsmanError::Protocol(format!(
                    "HTTP {other}: {}",
                    crate::error::clip(&xml)
                )))
            }
        }
    }
}
