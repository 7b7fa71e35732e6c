//! The Kerberos acceptor of one connection (sspi's Kerberos server, and its SPNEGO server
//! restricted to Kerberos), with the service key of the endpoint's SPN taken from a keytab.
//!
//! Accepted first tokens:
//! - a raw krb5 GSS token (`60 .. 06 09 2a864886f712010202 0100 <AP-REQ>`) under
//!   `Authorization: Kerberos` (the exch-iis client, pypsrp `auth="kerberos"`) or
//!   `Authorization: Negotiate` (pywinrm's `transport="kerberos"`, through pykerberos);
//! - a SPNEGO `NegTokenInit` carrying a Kerberos AP-REQ under `Negotiate` (pyspnego
//!   `protocol="negotiate"`, Windows clients). SPNEGO offering only NTLM is refused (the lab's
//!   NTLM is raw NTLM under `Negotiate`).
//!
//! One round trip, as on Windows: the AP-REQ is answered with the mutual-authentication
//! token (AP-REP, or a SPNEGO `NegTokenResp` around it) on the reply that completes the
//! handshake. A ticket for another SPN, a ticket the key cannot decrypt, an authenticator
//! outside `max_skew` or a replayed authenticator (within the connection) is refused with 401.
//!
//! Shared by the lab's two HTTP front doors:
//! - the WinRM endpoint ([`super`]), where the client principal must be the endpoint's
//!   configured user ([`Principals::Only`], see [`principal_matches`]) and the context then
//!   seals the SOAP bodies;
//! - the IIS virtual directories with Windows authentication ([`crate::iis`]), where any
//!   principal whose ticket the service key opens is a logon ([`Principals::Any`]; IIS maps
//!   it to its account) and nothing is sealed ([`accept_ap_req`]).
//!
//! Only the ticket and the authenticator are checked, with the service key: the KDC is not
//! asked, so a ticket issued before its account was disabled keeps working until it expires
//! (as on Windows; MS-KILE 3.4.5).

use std::path::Path;
use std::time::Duration;

use sspi::kerberos::ServerProperties;
use sspi::{
    BufferType, DataRepresentation, EncryptionFlags, Kerberos, KerberosConfig,
    KerberosServerConfig, Negotiate, NegotiateConfig, SecurityBuffer, SecurityBufferRef,
    SecurityStatus, ServerRequestFlags, Sspi, SspiImpl,
};

use super::auth::{Acceptor, AuthRefusal, Mechanism, Step};
use super::keytab;

/// The key a [`KerberosAcceptorConfig`] decrypts tickets with.
#[derive(Clone)]
struct ServiceKey {
    etype: u16,
    kvno: Option<u32>,
    key: Vec<u8>,
}

/// Why a Kerberos acceptor could not be set up (never carries key material).
#[derive(Debug, Clone, thiserror::Error)]
#[error("Kerberos acceptor for {spn}: {detail}")]
pub struct KerberosSetupError {
    /// The SPN being set up.
    pub spn: String,
    /// What is wrong and what to do.
    pub detail: String,
}

/// How an endpoint accepts Kerberos: its service principal and the key tickets for it are
/// encrypted with (what a Windows server takes from its computer account).
///
/// ```no_run
/// # fn demo() -> Result<(), exch_lab::winrm::KerberosSetupError> {
/// use exch_lab::winrm::KerberosAcceptorConfig;
/// // A keytab exported by `scripts/samba-ad.sh spn DIR ex01.lab.example.test`.
/// let kerberos = KerberosAcceptorConfig::from_keytab(
///     "HTTP/ex01.lab.example.test",
///     "target/samba-ad-dev/keytabs/HTTP-ex01.lab.example.test.keytab",
/// )?;
/// # let _ = kerberos; Ok(()) }
/// ```
#[derive(Clone)]
pub struct KerberosAcceptorConfig {
    spn: String,
    key: ServiceKey,
    /// Largest accepted difference between the authenticator's time and the lab's clock
    /// (default 5 minutes, Windows' `MaxClockSkew`). Real time, not [`crate::clock::LabClock`].
    pub max_skew: Duration,
}

impl std::fmt::Debug for KerberosAcceptorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KerberosAcceptorConfig")
            .field("spn", &self.spn)
            .field("etype", &self.key.etype)
            .field("kvno", &self.key.kvno)
            .field("max_skew", &self.max_skew)
            .finish_non_exhaustive()
    }
}

impl KerberosAcceptorConfig {
    /// The key of `spn` (`HTTP/<fqdn>`, matched case-insensitively, realm ignored) from an MIT
    /// keytab file: its aes256 key (etype 18) with the highest kvno, else aes128 (17), else
    /// any. sspi decrypts every ticket with that one key, so the KDC must issue tickets of
    /// that etype (the Samba harness limits service accounts to AES: aes256 tickets).
    pub fn from_keytab(
        spn: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<Self, KerberosSetupError> {
        let spn = spn.into();
        let path = path.as_ref();
        let err = |detail: String| KerberosSetupError {
            spn: spn.clone(),
            detail,
        };
        let bytes = std::fs::read(path)
            .map_err(|e| err(format!("cannot read the keytab {}: {e}", path.display())))?;
        let entries = keytab::parse(&bytes)
            .map_err(|e| err(format!("the keytab {} is unusable: {e}", path.display())))?;
        let entry = keytab::service_key(&entries, &spn).ok_or_else(|| {
            let held: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
            err(format!(
                "the keytab {} has no key for it (it holds: {}); export one with scripts/samba-ad.sh spn DIR FQDN",
                path.display(),
                if held.is_empty() { "nothing".to_owned() } else { held.join(", ") }
            ))
        })?;
        let config = KerberosAcceptorConfig {
            key: ServiceKey {
                etype: entry.enctype,
                kvno: Some(entry.kvno),
                key: entry.key.clone(),
            },
            spn,
            max_skew: Duration::from_secs(300),
        };
        config.check()?;
        Ok(config)
    }

    /// The service key given directly: `etype` (18 aes256, 17 aes128) and its bytes.
    pub fn from_key(
        spn: impl Into<String>,
        etype: u16,
        key: Vec<u8>,
    ) -> Result<Self, KerberosSetupError> {
        let config = KerberosAcceptorConfig {
            spn: spn.into(),
            key: ServiceKey {
                etype,
                kvno: None,
                key,
            },
            max_skew: Duration::from_secs(300),
        };
        config.check()?;
        Ok(config)
    }

    /// Sets [`KerberosAcceptorConfig::max_skew`].
    pub fn with_max_skew(mut self, max_skew: Duration) -> Self {
        self.max_skew = max_skew;
        self
    }

    /// The service principal name, `HTTP/<fqdn>`.
    pub fn spn(&self) -> &str {
        &self.spn
    }

    /// The etype of the service key (18 aes256, 17 aes128).
    pub fn etype(&self) -> u16 {
        self.key.etype
    }

    fn components(&self) -> Vec<&str> {
        self.spn.split('/').collect()
    }

    fn check(&self) -> Result<(), KerberosSetupError> {
        let err = |detail: &str| KerberosSetupError {
            spn: self.spn.clone(),
            detail: detail.to_owned(),
        };
        let parts = self.components();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty() || !p.is_ascii()) {
            return Err(err(
                "the SPN must be service/host, e.g. HTTP/ex01.lab.example.test",
            ));
        }
        let want = match self.key.etype {
            18 => 32,
            17 => 16,
            _ => {
                return Err(err(
                    "only aes256-cts-hmac-sha1-96 (18) and aes128-cts-hmac-sha1-96 (17) keys are supported",
                ))
            }
        };
        if self.key.key.len() != want {
            return Err(err("the key's length does not fit its etype"));
        }
        self.properties()
            .map(|_| ())
            .map_err(|e| err(&format!("sspi refuses the service name: {e}")))
    }

    /// sspi's acceptor properties: the SPN, and — as a Windows server accepts a ticket for any
    /// SPN of its computer account, whose key they share — `HOST/<host>` and `WSMAN/<host>`
    /// (pypsrp asks for `host/`, WinRM's own docs name `WSMAN/`), in the spellings clients
    /// use (sspi compares names exactly; the KDC does not).
    fn properties(&self) -> sspi::Result<ServerProperties> {
        let parts = self.components();
        let mut properties = ServerProperties::new(
            &parts,
            None,
            self.max_skew,
            Some(self.key.key.clone().into()),
        )?;
        let host = parts.get(1).copied().unwrap_or_default();
        let mut aliases: Vec<String> = Vec::new();
        for class in ["HTTP", "HOST", "WSMAN", parts[0]] {
            for spelling in [class.to_owned(), class.to_ascii_lowercase()] {
                if spelling != parts[0] && !aliases.contains(&spelling) {
                    aliases.push(spelling);
                }
            }
        }
        for class in aliases {
            properties.add_service_key(&[&class, host], self.key.key.clone().into())?;
        }
        Ok(properties)
    }
}

/// The mechanism a first Kerberos token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrapping {
    /// A raw krb5 GSS token.
    Raw,
    /// A SPNEGO `NegTokenInit`.
    Spnego,
}

/// krb5 mechanism OID 1.2.840.113554.1.2.2.
const KRB5_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// SPNEGO OID 1.3.6.1.5.5.2.
const SPNEGO_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];

/// The mechanism OID of a GSS `InitialContextToken` (RFC 2743 3.1: `60 <len> 06 <len> OID`).
fn gss_mech_oid(token: &[u8]) -> Option<&[u8]> {
    if *token.first()? != 0x60 {
        return None;
    }
    let first = *token.get(1)?;
    let at = if first < 0x80 {
        2
    } else {
        2 + usize::from(first & 0x7f)
    };
    if *token.get(at)? != 0x06 {
        return None;
    }
    let len = usize::from(*token.get(at + 1)?);
    token.get(at + 2..at + 2 + len)
}

/// Whether `token` starts a Kerberos context, and how it is wrapped.
pub(crate) fn initial_token(token: &[u8]) -> Option<Wrapping> {
    match gss_mech_oid(token)? {
        KRB5_OID => Some(Wrapping::Raw),
        SPNEGO_OID => Some(Wrapping::Spnego),
        _ => None,
    }
}

/// Whether the client principal `principal` (`user@realm`, as sspi reports it) is the
/// configured `configured` user, case-insensitively:
/// - `user@dns.domain` (a UPN): the same principal;
/// - `DOMAIN\user`: `user@<realm>` where the realm's first label is `DOMAIN` (`LAB\admin`
///   accepts `admin@LAB.EXAMPLE.TEST`: the NetBIOS name is, by the lab's convention and
///   Samba's default, the first label of the realm; a domain whose NetBIOS name differs is
///   not modelled);
/// - `user`: that user in any realm.
pub(crate) fn principal_matches(configured: &str, principal: &str) -> bool {
    let Some((user, realm)) = principal.rsplit_once('@') else {
        return false;
    };
    if configured.contains('@') {
        return configured.eq_ignore_ascii_case(principal);
    }
    match configured.split_once('\\') {
        Some((domain, want)) => {
            want.eq_ignore_ascii_case(user)
                && realm
                    .split('.')
                    .next()
                    .is_some_and(|label| label.eq_ignore_ascii_case(domain))
        }
        None => configured.eq_ignore_ascii_case(user),
    }
}

enum Context {
    Kerberos(Box<Kerberos>),
    Spnego(Box<Negotiate>),
}

/// Which client principals an acceptor lets in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Principals<'a> {
    /// Only this configured user (see [`principal_matches`]): the WinRM endpoint.
    Only(&'a str),
    /// Any principal whose ticket the service key decrypts: an IIS virtual directory, where
    /// authorization is the application's business.
    Any,
}

/// One connection's Kerberos server context.
pub(crate) struct KerberosAcceptor {
    context: Context,
    configured_user: Option<String>,
    established: bool,
}

fn flags() -> ServerRequestFlags {
    ServerRequestFlags::MUTUAL_AUTH
        | ServerRequestFlags::INTEGRITY
        | ServerRequestFlags::CONFIDENTIALITY
        | ServerRequestFlags::SEQUENCE_DETECT
        | ServerRequestFlags::REPLAY_DETECT
}

fn accept<C>(ctx: &mut C, token: &[u8]) -> sspi::Result<(SecurityStatus, Vec<u8>)>
where
    C: Sspi + SspiImpl<CredentialsHandle = Option<sspi::CredentialsBuffers>>,
{
    let mut input = [SecurityBuffer::new(token.to_vec(), BufferType::Token)];
    let mut output = [SecurityBuffer::new(Vec::new(), BufferType::Token)];
    let mut credentials = None;
    let builder = ctx
        .accept_security_context()
        .with_credentials_handle(&mut credentials)
        .with_context_requirements(flags())
        .with_target_data_representation(DataRepresentation::Native)
        .with_input(&mut input)
        .with_output(&mut output);
    // A plain AP exchange never talks to the KDC: a generator that asks to is an error.
    let result = ctx
        .accept_security_context_impl(builder)?
        .resolve_to_result()?;
    Ok((result.status, std::mem::take(&mut output[0].buffer)))
}

fn seal<C: Sspi>(ctx: &mut C, plain: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let trailer = ctx.query_context_sizes().ok()?.security_trailer as usize;
    let mut token = vec![0u8; trailer];
    let mut data = plain.to_vec();
    let mut buffers = [
        SecurityBufferRef::token_buf(&mut token),
        SecurityBufferRef::data_buf(&mut data),
    ];
    ctx.encrypt_message(EncryptionFlags::empty(), &mut buffers)
        .ok()?;
    Some((buffers[0].data().to_vec(), buffers[1].data().to_vec()))
}

fn unseal<C: Sspi>(ctx: &mut C, header: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let mut token = header.to_vec();
    let mut data = sealed.to_vec();
    let mut buffers = [
        SecurityBufferRef::token_buf(&mut token),
        SecurityBufferRef::data_buf(&mut data),
    ];
    ctx.decrypt_message(&mut buffers).ok()?;
    Some(buffers[1].data().to_vec())
}

impl KerberosAcceptor {
    /// A fresh context for `config`'s SPN accepting `principals`.
    pub(crate) fn new(
        config: &KerberosAcceptorConfig,
        wrapping: Wrapping,
        principals: Principals<'_>,
    ) -> Result<Self, AuthRefusal> {
        let setup = |_| AuthRefusal::Malformed("cannot set up the Kerberos acceptor");
        let properties = config.properties().map_err(setup)?;
        // Required by the constructors, unused for an AP exchange (no KDC traffic).
        let kerberos_config =
            KerberosConfig::new_with_kdc_url("tcp://127.0.0.1:88", "exch-lab".to_owned());
        let context = match wrapping {
            Wrapping::Raw => Context::Kerberos(Box::new(
                Kerberos::new_server_from_config(kerberos_config, properties).map_err(setup)?,
            )),
            Wrapping::Spnego => Context::Spnego(Box::new(
                Negotiate::new_server(
                    NegotiateConfig::new(
                        Box::new(KerberosServerConfig {
                            kerberos_config,
                            server_properties: properties,
                        }),
                        Some("kerberos,!ntlm".to_owned()),
                        "exch-lab".to_owned(),
                    ),
                    Vec::new(),
                )
                .map_err(setup)?,
            )),
        };
        Ok(KerberosAcceptor {
            context,
            configured_user: match principals {
                Principals::Only(user) => Some(user.to_owned()),
                Principals::Any => None,
            },
            established: false,
        })
    }

    fn client(&mut self) -> Option<String> {
        let names = match &mut self.context {
            Context::Kerberos(k) => k.query_context_names(),
            Context::Spnego(n) => n.query_context_names(),
        };
        names.ok().map(|n| n.username.inner().to_owned())
    }
}

impl Acceptor for KerberosAcceptor {
    fn mechanism(&self) -> Mechanism {
        match self.context {
            Context::Kerberos(_) => Mechanism::Kerberos,
            Context::Spnego(_) => Mechanism::SpnegoKerberos,
        }
    }

    fn step(&mut self, token: &[u8]) -> Result<Step, AuthRefusal> {
        if self.established {
            return Err(AuthRefusal::OutOfSequence);
        }
        let result = match &mut self.context {
            Context::Kerberos(k) => accept(&mut **k, token),
            Context::Spnego(n) => accept(&mut **n, token),
        };
        let (status, reply) = result.map_err(|e| {
            tracing::debug!(kind = ?e.error_type, error = %e.description, "Kerberos token refused");
            AuthRefusal::BadTicket
        })?;
        match status {
            SecurityStatus::Ok | SecurityStatus::CompleteNeeded => {
                let client = self.client().ok_or(AuthRefusal::BadTicket)?;
                let refused = self
                    .configured_user
                    .as_deref()
                    .is_some_and(|user| !principal_matches(user, &client));
                if refused {
                    tracing::debug!(%client, "Kerberos principal is not the accepted user");
                    return Err(AuthRefusal::WrongCredentials);
                }
                self.established = true;
                Ok(Step::Done {
                    user: client,
                    reply: (!reply.is_empty()).then_some(reply),
                    channel_bound: false,
                })
            }
            SecurityStatus::ContinueNeeded => Ok(Step::Continue(reply)),
            _ => Err(AuthRefusal::BadTicket),
        }
    }

    fn unseal(&mut self, header: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if !self.established {
            return None;
        }
        match &mut self.context {
            Context::Kerberos(k) => unseal(&mut **k, header, sealed),
            Context::Spnego(n) => unseal(&mut **n, header, sealed),
        }
    }

    fn seal(&mut self, plain: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        if !self.established {
            return None;
        }
        match &mut self.context {
            Context::Kerberos(k) => seal(&mut **k, plain),
            Context::Spnego(n) => seal(&mut **n, plain),
        }
    }
}

/// A Kerberos logon in one token, as IIS's Windows authentication takes it on a virtual
/// directory: `token` (the base64-decoded `Authorization: Negotiate` value) must be a raw krb5
/// AP-REQ or a SPNEGO `NegTokenInit` around one, for `config`'s SPN (or its `HOST/`,
/// `WSMAN/` aliases). Returns the client principal (`user@REALM`) and the mutual-authentication
/// token for `WWW-Authenticate: Negotiate …`. Any principal is accepted ([`Principals::Any`]).
pub(crate) fn accept_ap_req(
    config: &KerberosAcceptorConfig,
    token: &[u8],
) -> Result<(String, Option<Vec<u8>>), AuthRefusal> {
    let wrapping = initial_token(token).ok_or(AuthRefusal::BadToken)?;
    let mut acceptor = KerberosAcceptor::new(config, wrapping, Principals::Any)?;
    match acceptor.step(token)? {
        Step::Done { user, reply, .. } => Ok((user, reply)),
        // A first Kerberos token completes the exchange; anything else is not an AP-REQ.
        Step::Continue(_) => Err(AuthRefusal::BadToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_mapping() {
        assert!(principal_matches("LAB\\alice", "alice@lab.example.test"));
        assert!(principal_matches("lab\\ALICE", "Alice@LAB.EXAMPLE.TEST"));
        assert!(!principal_matches("LAB\\alice", "alice@OTHER.EXAMPLE.TEST"));
        assert!(!principal_matches("LAB\\alice", "bob@LAB.EXAMPLE.TEST"));
        assert!(principal_matches(
            "alice@lab.example.test",
            "ALICE@LAB.EXAMPLE.TEST"
        ));
        assert!(!principal_matches(
            "alice@lab.test",
            "alice@LAB.EXAMPLE.TEST"
        ));
        assert!(principal_matches("alice", "alice@ANY.REALM"));
        assert!(!principal_matches("alice", "alice"));
    }

    #[test]
    fn token_classification() {
        let mut raw = vec![0x60, 0x0b, 0x06, 0x09];
        raw.extend_from_slice(KRB5_OID);
        assert_eq!(initial_token(&raw), Some(Wrapping::Raw));
        let mut spnego = vec![0x60, 0x82, 0x01, 0x00, 0x06, 0x06];
        spnego.extend_from_slice(SPNEGO_OID);
        assert_eq!(initial_token(&spnego), Some(Wrapping::Spnego));
        assert_eq!(initial_token(b"NTLMSSP\0\x01\0\0\0"), None);
        assert_eq!(initial_token(&[0x60]), None);
    }

    #[test]
    fn config_checks_and_redacts() {
        let c = KerberosAcceptorConfig::from_key("HTTP/ex01.lab.test", 18, vec![7; 32]).unwrap();
        assert!(!format!("{c:?}").contains("7, 7"));
        assert!(KerberosAcceptorConfig::from_key("HTTP/ex01.lab.test", 18, vec![7; 16]).is_err());
        assert!(KerberosAcceptorConfig::from_key("ex01", 18, vec![7; 32]).is_err());
        assert!(KerberosAcceptorConfig::from_key("HTTP/ex01", 23, vec![7; 16]).is_err());
        let e = KerberosAcceptorConfig::from_keytab("HTTP/x.y", "/nonexistent/kt").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/kt"), "{e}");
    }
}
