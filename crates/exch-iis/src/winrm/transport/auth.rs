//! The client side of the authentication handshake and of message sealing, on top of the
//! pure-Rust SSPI implementation of the `sspi` crate.
//!
//! - NTLM runs as raw NTLM tokens under the `Negotiate` HTTP scheme, which is what a Windows
//!   WinRM service at its defaults accepts (and what pywinrm/pyspnego send).
//! - Kerberos runs under the `Kerberos` HTTP scheme (GSS-framed AP-REQ, mutual authentication
//!   checked on the AP-REP of the 200 reply), with a ticket the client gets itself from the KDC
//!   with the password (sspi 0.23 cannot read a `kinit` credential cache). There is no
//!   fallback to NTLM.
//!
//! A context belongs to one TCP connection (see [`super::conn`]); sealing uses sequence
//! numbers, so messages must be sealed and unsealed in order.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sspi::network_client::NetworkClient;
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, CredentialUse, Credentials, CredentialsBuffers,
    DataRepresentation, EncryptionFlags, ErrorKind, Kerberos, KerberosConfig, NetworkProtocol,
    NetworkRequest, Ntlm, SecurityBuffer, SecurityBufferRef, SecurityStatus, Sspi, SspiImpl,
    Username,
};

use super::framing;

/// Why a handshake or a sealing step failed (no secret in it).
#[derive(Debug)]
pub(crate) struct AuthError {
    pub(crate) kind: AuthErrorKind,
    pub(crate) detail: String,
}

/// The kinds the transport maps to [`crate::IisError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthErrorKind {
    /// Our settings cannot be used (bad user name form).
    Settings,
    /// The server's token or sealed message does not check out.
    Protocol,
    /// The KDC refused the credentials (wrong password, unknown or disabled user).
    Refused,
    /// The KDC cannot be reached.
    KdcUnreachable,
}

impl AuthError {
    fn protocol(what: &str, e: impl std::fmt::Display) -> AuthError {
        AuthError {
            kind: AuthErrorKind::Protocol,
            detail: format!("{what}: {e}"),
        }
    }

    fn settings(detail: String) -> AuthError {
        AuthError {
            kind: AuthErrorKind::Settings,
            detail,
        }
    }
}

/// One step of the handshake: the token to send (empty: nothing more to send), and whether
/// the context is complete.
pub(crate) struct Step {
    pub(crate) token: Vec<u8>,
    pub(crate) complete: bool,
}

/// The KDC, reached over TCP (RFC 4120 7.2.2). Blocking: Kerberos steps run on
/// `spawn_blocking`.
#[derive(Debug, Clone)]
pub(crate) struct KdcClient {
    pub(crate) timeout: Duration,
}

fn kdc_unreachable(msg: String) -> sspi::Error {
    sspi::Error::new(ErrorKind::NoAuthenticatingAuthority, msg)
}

impl NetworkClient for KdcClient {
    fn send(&self, req: &NetworkRequest) -> sspi::Result<Vec<u8>> {
        const MAX_REPLY: usize = 1 << 20;
        if req.protocol != NetworkProtocol::Tcp {
            return Err(kdc_unreachable(format!(
                "only tcp:// KDCs are supported, not {}",
                req.url
            )));
        }
        let host = req.url.host_str().unwrap_or_default();
        let port = req.url.port().unwrap_or(88);
        let fail = |e: &dyn std::fmt::Display| kdc_unreachable(format!("KDC {host}:{port}: {e}"));
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| fail(&e))?
            .next()
            .ok_or_else(|| fail(&"no address"))?;
        let mut s = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| fail(&e))?;
        s.set_read_timeout(Some(self.timeout))
            .map_err(|e| fail(&e))?;
        s.set_write_timeout(Some(self.timeout))
            .map_err(|e| fail(&e))?;
        // sspi hands over the request with its 4-byte length prefix and wants the reply
        // with its prefix too.
        s.write_all(&req.data).map_err(|e| fail(&e))?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len).map_err(|e| fail(&e))?;
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_REPLY {
            return Err(fail(&format!("a reply of {n} bytes")));
        }
        let mut out = vec![0u8; 4 + n];
        out[..4].copy_from_slice(&len);
        s.read_exact(&mut out[4..]).map_err(|e| fail(&e))?;
        Ok(out)
    }
}

enum Mech {
    Ntlm {
        ntlm: Box<Ntlm>,
        creds: <Ntlm as SspiImpl>::CredentialsHandle,
    },
    Kerberos {
        krb: Box<Kerberos>,
        creds: Option<CredentialsBuffers>,
        kdc: KdcClient,
    },
}

/// A client security context (one per connection).
pub(crate) struct ClientContext {
    mech: Mech,
    target: String,
}

impl std::fmt::Debug for ClientContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientContext")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Splits `DOMAIN\user` / `user@domain` / `user` for NTLM.
pub(crate) fn ntlm_username(user: &str) -> Result<Username, AuthError> {
    let parsed = match user.split_once('\\') {
        Some((domain, account)) => Username::new(account, Some(domain)),
        None => Username::parse(user),
    };
    parsed.map_err(|e| {
        AuthError::settings(format!(
            "user name {user:?} cannot be used for NTLM: {e}; write it as DOMAIN\\user or user@domain"
        ))
    })
}

/// Checks a Kerberos user name: `user@REALM` (the UPN), since the realm is not the NetBIOS
/// domain of `DOMAIN\user`.
pub(crate) fn kerberos_username(user: &str) -> Result<Username, AuthError> {
    let bad = |why: &str| {
        AuthError::settings(format!(
            "user name {user:?} cannot be used for Kerberos: {why}; write it as user@REALM (the UPN, e.g. svc-revoke@corp.example)"
        ))
    };
    match user.split_once('@') {
        Some((account, realm)) if !account.is_empty() && realm.contains('.') => {
            Username::parse(user).map_err(|e| bad(&e.to_string()))
        }
        _ => Err(bad("no realm")),
    }
}

fn ntlm_flags() -> ClientRequestFlags {
    ClientRequestFlags::CONFIDENTIALITY
        | ClientRequestFlags::INTEGRITY
        | ClientRequestFlags::ALLOCATE_MEMORY
}

fn kerberos_flags() -> ClientRequestFlags {
    ClientRequestFlags::MUTUAL_AUTH
        | ClientRequestFlags::INTEGRITY
        | ClientRequestFlags::CONFIDENTIALITY
        | ClientRequestFlags::SEQUENCE_DETECT
        | ClientRequestFlags::REPLAY_DETECT
}

/// What a KDC or Kerberos error means for the admin.
fn kerberos_error(e: sspi::Error, target: &str) -> AuthError {
    let text = e.description.to_ascii_lowercase();
    let refused = |detail: &str| AuthError {
        kind: AuthErrorKind::Refused,
        detail: detail.to_owned(),
    };
    match e.error_type {
        ErrorKind::NoAuthenticatingAuthority => AuthError {
            kind: AuthErrorKind::KdcUnreachable,
            detail: format!("cannot reach the KDC: {}", e.description),
        },
        _ if text.contains("pre-authentication") => {
            refused("the KDC refused the password (Kerberos pre-authentication failed)")
        }
        _ if text.contains("client not found") => {
            refused("the KDC does not know the user (client not found in the realm)")
        }
        _ if text.contains("revoked") => {
            refused("the KDC says the account is disabled, locked or expired")
        }
        _ if text.contains("server not found") => AuthError {
            kind: AuthErrorKind::Refused,
            detail: format!(
                "the KDC knows no service principal {target}; register it (setspn -S {target} <server account>) or reach the server by the name the directory gives it"
            ),
        },
        ErrorKind::TimeSkew => refused(
            "clock skew: this machine, the KDC and the server must agree within 5 minutes (check NTP)",
        ),
        _ => AuthError::protocol("Kerberos", e),
    }
}

fn seal_with<C: Sspi>(ctx: &mut C, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), AuthError> {
    let trailer = ctx
        .query_context_sizes()
        .map_err(|e| AuthError::protocol("context sizes", e))?
        .security_trailer as usize;
    let mut header = vec![0u8; trailer];
    let mut data = plain.to_vec();
    let mut buffers = [
        SecurityBufferRef::token_buf(header.as_mut_slice()),
        SecurityBufferRef::data_buf(data.as_mut_slice()),
    ];
    ctx.encrypt_message(EncryptionFlags::empty(), &mut buffers)
        .map_err(|e| AuthError::protocol("sealing the request", e))?;
    Ok((buffers[0].data().to_vec(), buffers[1].data().to_vec()))
}

fn unseal_with<C: Sspi>(ctx: &mut C, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
    let mut header = header.to_vec();
    let mut data = sealed.to_vec();
    let mut buffers = [
        SecurityBufferRef::token_buf(header.as_mut_slice()),
        SecurityBufferRef::data_buf(data.as_mut_slice()),
    ];
    ctx.decrypt_message(&mut buffers)
        .map_err(|e| AuthError::protocol("the sealed reply does not unseal", e))?;
    Ok(buffers[1].data().to_vec())
}

impl ClientContext {
    /// A fresh NTLM context for `user`, bound to the TLS channel when `channel_binding` (the
    /// RFC 5929 `tls-server-end-point:` application data) is given.
    pub(crate) fn ntlm(
        user: &str,
        password: &SecretString,
        target_host: &str,
        channel_binding: Option<&[u8]>,
    ) -> Result<ClientContext, AuthError> {
        let mut ntlm = Box::new(Ntlm::new());
        if let Some(cb) = channel_binding {
            ntlm.set_channel_bindings(cb);
        }
        let identity = AuthIdentity {
            username: ntlm_username(user)?,
            password: password.expose_secret().to_owned().into(),
        };
        let acquired = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut *ntlm)
            .map_err(|e| AuthError::settings(format!("cannot set up NTLM: {e}")))?;
        Ok(ClientContext {
            mech: Mech::Ntlm {
                ntlm,
                creds: acquired.credentials_handle,
            },
            target: format!("HTTP/{target_host}"),
        })
    }

    /// A fresh Kerberos context for `user` (`user@REALM`) towards `HTTP/<target_host>`, with
    /// tickets from the KDC at `kdc` (`host:port`).
    pub(crate) fn kerberos(
        user: &str,
        password: &SecretString,
        target_host: &str,
        kdc: &str,
        kdc_timeout: Duration,
    ) -> Result<ClientContext, AuthError> {
        let identity = AuthIdentity {
            username: kerberos_username(user)?,
            password: password.expose_secret().to_owned().into(),
        };
        let creds = CredentialsBuffers::try_from(Credentials::AuthIdentity(identity))
            .map_err(|e| AuthError::settings(format!("cannot set up Kerberos: {e}")))?;
        let config =
            KerberosConfig::new_with_kdc_url(&format!("tcp://{kdc}"), "exch-revoke".into());
        let krb = Kerberos::new_client_from_config(config)
            .map_err(|e| AuthError::settings(format!("cannot set up Kerberos: {e}")))?;
        Ok(ClientContext {
            mech: Mech::Kerberos {
                krb: Box::new(krb),
                creds: Some(creds),
                kdc: KdcClient {
                    timeout: kdc_timeout,
                },
            },
            target: format!("HTTP/{target_host}"),
        })
    }

    /// Whether a step may talk to the network (the KDC): run it on `spawn_blocking`.
    pub(crate) fn blocking(&self) -> bool {
        matches!(self.mech, Mech::Kerberos { .. })
    }

    /// The HTTP authentication scheme.
    pub(crate) fn scheme(&self) -> &'static str {
        match self.mech {
            Mech::Ntlm { .. } => "Negotiate",
            Mech::Kerberos { .. } => "Kerberos",
        }
    }

    /// The MS-WSMV encryption protocol string.
    pub(crate) fn protocol(&self) -> &'static str {
        match self.mech {
            Mech::Ntlm { .. } => framing::SPNEGO_PROTOCOL,
            Mech::Kerberos { .. } => framing::KERBEROS_PROTOCOL,
        }
    }

    /// The service principal asked for (`HTTP/<host>`).
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Whether this is a Kerberos context (one round trip, mutual authentication).
    pub(crate) fn is_kerberos(&self) -> bool {
        matches!(self.mech, Mech::Kerberos { .. })
    }

    /// The mechanism's name, for messages.
    pub(crate) fn name(&self) -> &'static str {
        match self.mech {
            Mech::Ntlm { .. } => "NTLM",
            Mech::Kerberos { .. } => "Kerberos",
        }
    }

    /// Feeds the server's token (none on the first call) and returns ours.
    pub(crate) fn step(&mut self, input: Option<&[u8]>) -> Result<Step, AuthError> {
        let mut inbuf = vec![SecurityBuffer::new(
            input.map(<[u8]>::to_vec).unwrap_or_default(),
            BufferType::Token,
        )];
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let target = self.target.clone();
        let status = match &mut self.mech {
            Mech::Ntlm { ntlm, creds } => {
                let mut builder = ntlm
                    .initialize_security_context()
                    .with_credentials_handle(creds)
                    .with_context_requirements(ntlm_flags())
                    .with_target_data_representation(DataRepresentation::Native)
                    .with_target_name(&target)
                    .with_input(&mut inbuf)
                    .with_output(&mut output);
                ntlm.initialize_security_context_impl(&mut builder)
                    .and_then(|mut g| g.resolve_to_result())
                    .map_err(|e| {
                        AuthError::protocol("the server's NTLM challenge was not accepted", e)
                    })?
                    .status
            }
            Mech::Kerberos { krb, creds, kdc } => {
                let mut builder = krb
                    .initialize_security_context()
                    .with_credentials_handle(creds)
                    .with_context_requirements(kerberos_flags())
                    .with_target_data_representation(DataRepresentation::Native)
                    .with_target_name(&target)
                    .with_input(&mut inbuf)
                    .with_output(&mut output);
                krb.initialize_security_context_impl(&mut builder)
                    .and_then(|mut g| g.resolve_with_client(&*kdc))
                    .map_err(|e| kerberos_error(e, &target))?
                    .status
            }
        };
        let token = std::mem::take(&mut output[0].buffer);
        let complete = !matches!(
            status,
            SecurityStatus::ContinueNeeded | SecurityStatus::CompleteAndContinue
        );
        Ok(Step { token, complete })
    }

    /// Seals `plain`: returns the security header (NTLM signature, Kerberos wrap token
    /// header) and the ciphertext.
    pub(crate) fn seal(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), AuthError> {
        match &mut self.mech {
            Mech::Ntlm { ntlm, .. } => seal_with(&mut **ntlm, plain),
            Mech::Kerberos { krb, .. } => seal_with(&mut **krb, plain),
        }
    }

    /// Unseals a reply sealed by the server's side of this context.
    pub(crate) fn unseal(&mut self, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
        match &mut self.mech {
            Mech::Ntlm { ntlm, .. } => unseal_with(&mut **ntlm, header, sealed),
            Mech::Kerberos { krb, .. } => unseal_with(&mut **krb, header, sealed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sspi::{ServerRequestFlags, SspiImpl};

    /// sspi's own NTLM acceptor, for a quick in-process check of the client side (the lab
    /// and pywinrm check it over HTTP).
    fn server() -> (Ntlm, <Ntlm as SspiImpl>::CredentialsHandle) {
        let mut ntlm = Ntlm::new();
        let identity = AuthIdentity {
            username: Username::new("admin", Some("LAB")).unwrap(),
            password: "Pa55-word".to_owned().into(),
        };
        let creds = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Inbound)
            .with_auth_data(&identity)
            .execute(&mut ntlm)
            .unwrap()
            .credentials_handle;
        (ntlm, creds)
    }

    fn accept(
        ntlm: &mut Ntlm,
        creds: &mut <Ntlm as SspiImpl>::CredentialsHandle,
        token: Vec<u8>,
    ) -> sspi::Result<(Vec<u8>, SecurityStatus)> {
        let mut input = vec![SecurityBuffer::new(token, BufferType::Token)];
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let builder = ntlm
            .accept_security_context()
            .with_credentials_handle(creds)
            .with_context_requirements(ServerRequestFlags::ALLOCATE_MEMORY)
            .with_target_data_representation(DataRepresentation::Native)
            .with_input(&mut input)
            .with_output(&mut output);
        let r = ntlm
            .accept_security_context_impl(builder)?
            .resolve_to_result()?;
        if matches!(
            r.status,
            SecurityStatus::CompleteNeeded | SecurityStatus::CompleteAndContinue
        ) {
            ntlm.complete_auth_token(&mut output)?;
        }
        Ok((std::mem::take(&mut output[0].buffer), r.status))
    }

    fn handshake(password: &str) -> sspi::Result<(ClientContext, Ntlm)> {
        let (mut srv, mut creds) = server();
        let mut client = ClientContext::ntlm(
            "LAB\\admin",
            &SecretString::from(password.to_owned()),
            "ex01.lab.example.test",
            None,
        )
        .unwrap();
        let negotiate = client.step(None).unwrap();
        assert!(!negotiate.complete);
        let (challenge, _) = accept(&mut srv, &mut creds, negotiate.token)?;
        let authenticate = client.step(Some(&challenge)).unwrap();
        assert!(authenticate.complete);
        accept(&mut srv, &mut creds, authenticate.token)?;
        Ok((client, srv))
    }

    #[test]
    fn handshake_and_sealing_both_ways() {
        let (mut client, mut srv) = handshake("Pa55-word").unwrap();
        let mut last = (Vec::new(), Vec::new());
        for msg in ["<s:Envelope>one</s:Envelope>", "two", ""] {
            let (header, sealed) = client.seal(msg.as_bytes()).unwrap();
            assert_eq!(header.len(), 16);
            assert!(
                msg.is_empty() || sealed != msg.as_bytes(),
                "sealed, not plain"
            );
            let mut h = header.clone();
            let mut d = sealed.clone();
            let mut bufs = [
                SecurityBufferRef::token_buf(h.as_mut_slice()),
                SecurityBufferRef::data_buf(d.as_mut_slice()),
            ];
            srv.decrypt_message(&mut bufs).unwrap();
            assert_eq!(bufs[1].data(), msg.as_bytes());
            // And the reply.
            let mut h = vec![0u8; 16];
            let mut d = format!("re:{msg}").into_bytes();
            let mut bufs = [
                SecurityBufferRef::token_buf(h.as_mut_slice()),
                SecurityBufferRef::data_buf(d.as_mut_slice()),
            ];
            srv.encrypt_message(EncryptionFlags::empty(), &mut bufs)
                .unwrap();
            let (h, d) = (bufs[0].data().to_vec(), bufs[1].data().to_vec());
            assert_eq!(
                client.unseal(&h, &d).unwrap(),
                format!("re:{msg}").as_bytes()
            );
            last = (h, d);
        }
        // A replayed reply is refused (sequence numbers); the session is then unusable.
        assert!(client.unseal(&last.0, &last.1).is_err());
    }

    #[test]
    fn wrong_password_is_refused_by_the_acceptor() {
        assert!(handshake("wrong").is_err());
    }

    #[test]
    fn user_name_forms() {
        assert!(ntlm_username("LAB\\admin").is_ok());
        assert!(ntlm_username("admin@lab.example.test").is_ok());
        assert!(ntlm_username("admin").is_ok());
    }
}
