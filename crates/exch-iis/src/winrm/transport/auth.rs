//! The client side of the authentication handshake and of message sealing, on top of the
//! pure-Rust SSPI implementation of the `sspi` crate.
//!
//! NTLM runs as raw NTLM tokens under the `Negotiate` HTTP scheme, which is what a Windows
//! WinRM service at its defaults accepts (and what pywinrm/pyspnego send). The context belongs
//! to one TCP connection (see [`super::conn`]); sealing uses NTLMv2 session security with
//! 128-bit keys and sequence numbers, so messages must be sealed and unsealed in order.

use secrecy::{ExposeSecret, SecretString};
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, CredentialUse, DataRepresentation,
    EncryptionFlags, Ntlm, SecurityBuffer, SecurityBufferRef, SecurityStatus, Sspi, SspiImpl,
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
}

impl AuthError {
    fn protocol(what: &str, e: impl std::fmt::Display) -> AuthError {
        AuthError {
            kind: AuthErrorKind::Protocol,
            detail: format!("{what}: {e}"),
        }
    }
}

/// One step of the handshake: the token to send, and whether the context is complete once
/// the server accepts it.
pub(crate) struct Step {
    pub(crate) token: Vec<u8>,
    pub(crate) complete: bool,
}

/// A client security context (one per connection).
pub(crate) struct ClientContext {
    ntlm: Ntlm,
    creds: <Ntlm as SspiImpl>::CredentialsHandle,
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
    parsed.map_err(|e| AuthError {
        kind: AuthErrorKind::Settings,
        detail: format!("user name {user:?} cannot be used for NTLM: {e}; write it as DOMAIN\\user or user@domain"),
    })
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
        let mut ntlm = Ntlm::new();
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
            .execute(&mut ntlm)
            .map_err(|e| AuthError {
                kind: AuthErrorKind::Settings,
                detail: format!("cannot set up NTLM: {e}"),
            })?;
        Ok(ClientContext {
            ntlm,
            creds: acquired.credentials_handle,
            target: format!("HTTP/{target_host}"),
        })
    }

    /// The HTTP authentication scheme.
    pub(crate) fn scheme(&self) -> &'static str {
        "Negotiate"
    }

    /// The MS-WSMV encryption protocol string.
    pub(crate) fn protocol(&self) -> &'static str {
        framing::SPNEGO_PROTOCOL
    }

    /// Feeds the server's token (none on the first call) and returns ours.
    pub(crate) fn step(&mut self, input: Option<&[u8]>) -> Result<Step, AuthError> {
        let mut input = vec![SecurityBuffer::new(
            input.map(<[u8]>::to_vec).unwrap_or_default(),
            BufferType::Token,
        )];
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut builder = self
            .ntlm
            .initialize_security_context()
            .with_credentials_handle(&mut self.creds)
            .with_context_requirements(
                ClientRequestFlags::CONFIDENTIALITY
                    | ClientRequestFlags::INTEGRITY
                    | ClientRequestFlags::ALLOCATE_MEMORY,
            )
            .with_target_data_representation(DataRepresentation::Native)
            .with_target_name(&self.target)
            .with_input(&mut input)
            .with_output(&mut output);
        let result = self
            .ntlm
            .initialize_security_context_impl(&mut builder)
            .and_then(|mut g| g.resolve_to_result())
            .map_err(|e| AuthError::protocol("the server's NTLM challenge was not accepted", e))?;
        let token = std::mem::take(&mut output[0].buffer);
        let complete = !matches!(
            result.status,
            SecurityStatus::ContinueNeeded | SecurityStatus::CompleteAndContinue
        );
        Ok(Step { token, complete })
    }

    /// Seals `plain`: returns the security header (NTLM signature) and the ciphertext.
    pub(crate) fn seal(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), AuthError> {
        let trailer = self
            .ntlm
            .query_context_sizes()
            .map_err(|e| AuthError::protocol("NTLM context sizes", e))?
            .security_trailer as usize;
        let mut header = vec![0u8; trailer];
        let mut data = plain.to_vec();
        let mut buffers = [
            SecurityBufferRef::token_buf(header.as_mut_slice()),
            SecurityBufferRef::data_buf(data.as_mut_slice()),
        ];
        self.ntlm
            .encrypt_message(EncryptionFlags::empty(), &mut buffers)
            .map_err(|e| AuthError::protocol("sealing the request", e))?;
        let header = buffers[0].data().to_vec();
        let sealed = buffers[1].data().to_vec();
        Ok((header, sealed))
    }

    /// Unseals a reply sealed by the server's side of this context.
    pub(crate) fn unseal(&mut self, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
        let mut header = header.to_vec();
        let mut data = sealed.to_vec();
        let mut buffers = [
            SecurityBufferRef::token_buf(header.as_mut_slice()),
            SecurityBufferRef::data_buf(data.as_mut_slice()),
        ];
        self.ntlm
            .decrypt_message(&mut buffers)
            .map_err(|e| AuthError::protocol("the sealed reply does not unseal", e))?;
        Ok(buffers[1].data().to_vec())
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
        let r = ntlm.accept_security_context_impl(builder)?.resolve_to_result()?;
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
            assert!(msg.is_empty() || sealed != msg.as_bytes(), "sealed, not plain");
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
            srv.encrypt_message(EncryptionFlags::empty(), &mut bufs).unwrap();
            let (h, d) = (bufs[0].data().to_vec(), bufs[1].data().to_vec());
            assert_eq!(client.unseal(&h, &d).unwrap(), format!("re:{msg}").as_bytes());
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
