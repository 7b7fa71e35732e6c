//! Authentication of the WinRM endpoint: which schemes it offers and accepts, and the
//! security-context acceptors bound to one TCP connection.
//!
//! An [`Acceptor`] (crate-internal) per [`Mechanism`] runs the handshake tokens of its
//! mechanism and then seals and unseals MS-WSMV messages with the context it established:
//! NTLM (`ntlm.rs`) always, Kerberos (`kerberos.rs`) when the endpoint has a service key
//! ([`super::WinRmConfig::kerberos`]).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

/// How the endpoint authenticates clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LabAuth {
    /// Windows Server at its defaults: `WWW-Authenticate: Negotiate` and `Kerberos`, no Basic,
    /// `AllowUnencrypted = false`. Accepted: NTLM tokens under the `Negotiate` (or `NTLM`)
    /// scheme, and — when the endpoint has a service key ([`super::WinRmConfig::kerberos`]) —
    /// Kerberos under `Kerberos` or `Negotiate` (raw or SPNEGO-wrapped). On plain HTTP every
    /// SOAP body must be MS-WSMV-encrypted with the connection's context; over HTTPS plain
    /// SOAP is accepted (TLS protects it).
    #[default]
    Negotiate,
    /// HTTP Basic, bodies in plain text, also on plain HTTP (`Basic = true` and
    /// `AllowUnencrypted = true` on Windows): an explicit, insecure opt-in for tests of
    /// everything but authentication.
    BasicOverHttp,
}

/// A security mechanism the [`LabAuth::Negotiate`] endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mechanism {
    /// Raw NTLM tokens (`Authorization: Negotiate TlRMTVNT…` or `NTLM …`), as pywinrm,
    /// requests-ntlm and pyspnego (`protocol="ntlm"`) send them.
    Ntlm,
    /// A raw krb5 GSS token (AP-REQ) under `Authorization: Kerberos` or `Negotiate`, as the
    /// exch-iis client, pypsrp (`auth="kerberos"`) and pywinrm (`transport="kerberos"`) send it.
    Kerberos,
    /// A SPNEGO `NegTokenInit` under `Negotiate`; accepted only around Kerberos.
    SpnegoKerberos,
}

/// Why an authentication step was refused (never carries a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthRefusal {
    /// Not a token of an accepted mechanism (garbage, or Kerberos without a service key).
    BadToken,
    /// A Kerberos ticket or authenticator that does not check out (another SPN, wrong key,
    /// clock skew, replay).
    BadTicket,
    /// A token that does not fit the state of the connection's context.
    OutOfSequence,
    /// Wrong user or password.
    WrongCredentials,
    /// The NTLM channel binding is not the one of this TLS channel.
    ChannelBindingMismatch,
    /// A setup problem in the lab itself.
    Malformed(&'static str),
}

/// What an accepted handshake token leads to.
pub(crate) enum Step {
    /// Send this token back in a 401 and wait for the next one.
    Continue(Vec<u8>),
    /// Authenticated as `user`.
    Done {
        /// The authenticated user (`DOMAIN\user` as the NTLM client sent it, the client
        /// principal `user@realm` for Kerberos).
        user: String,
        /// A final token for the client (Kerberos mutual authentication), sent in
        /// `WWW-Authenticate` on the reply that completes the handshake.
        reply: Option<Vec<u8>>,
        /// NTLM over TLS: the AUTHENTICATE carried a channel binding that matched.
        channel_bound: bool,
    },
}

/// A server-side security context of one mechanism, living as long as its TCP connection.
pub(crate) trait Acceptor: Send {
    /// Consumes one handshake token.
    fn step(&mut self, token: &[u8]) -> Result<Step, AuthRefusal>;
    /// Verifies and decrypts one MS-WSMV encrypted part (`header` = the signature).
    fn unseal(&mut self, header: &[u8], sealed: &[u8]) -> Option<Vec<u8>>;
    /// Encrypts one message: (header/signature, ciphertext).
    fn seal(&mut self, plain: &[u8]) -> Option<(Vec<u8>, Vec<u8>)>;
    /// The mechanism of this context.
    fn mechanism(&self) -> Mechanism;
}

/// An `Authorization` header, split.
pub(crate) enum Credentials {
    /// `Basic user:password`.
    Basic { user: String, password: String },
    /// `Negotiate <token>` / `NTLM <token>` / `Kerberos <token>`, decoded.
    Token { scheme: Scheme, token: Vec<u8> },
    /// Anything else (unknown scheme, bad base64).
    Unusable,
}

/// A token-carrying scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Negotiate,
    Ntlm,
    Kerberos,
}

impl Scheme {
    /// The scheme name to answer with.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scheme::Negotiate => "Negotiate",
            Scheme::Ntlm => "NTLM",
            Scheme::Kerberos => "Kerberos",
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .finish_non_exhaustive(),
            Credentials::Token { scheme, token } => f
                .debug_struct("Token")
                .field("scheme", scheme)
                .field("len", &token.len())
                .finish(),
            Credentials::Unusable => f.write_str("Unusable"),
        }
    }
}

/// Splits an `Authorization` header value.
pub(crate) fn parse_authorization(value: &str) -> Credentials {
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let Ok(bytes) = B64.decode(rest.trim()) else {
        return Credentials::Unusable;
    };
    let scheme = if scheme.eq_ignore_ascii_case("basic") {
        let Ok(text) = String::from_utf8(bytes) else {
            return Credentials::Unusable;
        };
        return match text.split_once(':') {
            Some((user, password)) => Credentials::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            },
            None => Credentials::Unusable,
        };
    } else if scheme.eq_ignore_ascii_case("negotiate") {
        Scheme::Negotiate
    } else if scheme.eq_ignore_ascii_case("ntlm") {
        Scheme::Ntlm
    } else if scheme.eq_ignore_ascii_case("kerberos") {
        Scheme::Kerberos
    } else {
        return Credentials::Unusable;
    };
    if bytes.is_empty() {
        return Credentials::Unusable;
    }
    Credentials::Token {
        scheme,
        token: bytes,
    }
}

/// Basic credentials check (user case-insensitive, password exact).
pub(crate) fn basic_ok(user: &str, password: &str, want_user: &str, want: &SecretString) -> bool {
    user.eq_ignore_ascii_case(want_user) && password == want.expose_secret()
}

/// The mechanism a token of `scheme` belongs to, if the lab knows it: NTLM messages, and
/// the first token of a Kerberos context (raw krb5 or SPNEGO). Later SPNEGO legs
/// (`NegTokenResp`) belong to the connection's handshake in progress, not to a mechanism.
pub(crate) fn mechanism_of(scheme: Scheme, token: &[u8]) -> Option<Mechanism> {
    use super::kerberos::{initial_token, Wrapping};
    match scheme {
        Scheme::Negotiate | Scheme::Ntlm if super::ntlm::message_type(token).is_some() => {
            Some(Mechanism::Ntlm)
        }
        Scheme::Negotiate | Scheme::Kerberos => match initial_token(token)? {
            Wrapping::Raw => Some(Mechanism::Kerberos),
            Wrapping::Spnego if scheme == Scheme::Negotiate => Some(Mechanism::SpnegoKerberos),
            Wrapping::Spnego => None,
        },
        Scheme::Ntlm => None,
    }
}
