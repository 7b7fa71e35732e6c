//! The NTLM acceptor of one connection: sspi's NTLM server for the handshake, the session
//! keys and sealing, plus the checks sspi's server leaves out.
//!
//! sspi 0.23's NTLM server derives the session key from the configured password and the
//! user/domain *as sent by the client*, and checks the MIC when there is one; it neither
//! verifies `NTProofStr` (so a client that sends no MIC would pass with any password) nor
//! compares the user name. This module does both itself, as a Windows DC would: the
//! NTLMv2 response must be `HMAC_MD5(NTOWFv2(password, user, domain), ServerChallenge ||
//! blob)`, and the user (and domain, when the configured user names one) must be the
//! configured account (case-insensitive). It also checks the channel binding itself
//! (`MsvAvChannelBindings`, CbtHardeningLevel `Relaxed`): absent or all-zero is accepted, a
//! value that is not the MD5 of this TLS channel's `tls-server-end-point` bindings is refused.

use hmac::{KeyInit, Mac};
use md4::Digest as _;
use secrecy::{ExposeSecret, SecretString};
use sspi::{
    AuthIdentity, BufferType, CredentialUse, DataRepresentation, EncryptionFlags, Ntlm,
    SecurityBuffer, SecurityBufferRef, SecurityStatus, ServerRequestFlags, Sspi, SspiImpl,
    Username,
};

use super::auth::{Acceptor, AuthRefusal, Step};

type HmacMd5 = hmac::Hmac<md5::Md5>;

/// `NTLMSSP\0`.
const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const MSV_AV_EOL: u16 = 0;
const MSV_AV_CHANNEL_BINDINGS: u16 = 0x000A;

/// The NTLM message type (1 NEGOTIATE, 2 CHALLENGE, 3 AUTHENTICATE) of `token`, if it is an
/// NTLM message at all.
pub(crate) fn message_type(token: &[u8]) -> Option<u32> {
    if token.len() < 12 || &token[..8] != SIGNATURE {
        return None;
    }
    Some(u32::from_le_bytes([
        token[8], token[9], token[10], token[11],
    ]))
}

/// The configured account, split the way an NTLM AUTHENTICATE message carries it.
#[derive(Clone)]
pub(crate) struct Account {
    /// `None`: any domain (a local account, or a UPN given whole as the user).
    domain: Option<String>,
    user: String,
    password: SecretString,
}

impl Account {
    /// `LAB\admin` → domain `LAB`, user `admin`; `admin` or `admin@lab.test` → no domain.
    pub(crate) fn new(configured: &str, password: SecretString) -> Self {
        match configured.split_once('\\') {
            Some((d, u)) => Account {
                domain: Some(d.to_owned()),
                user: u.to_owned(),
                password,
            },
            None => Account {
                domain: None,
                user: configured.to_owned(),
                password,
            },
        }
    }

    fn matches(&self, user: &str, domain: &str) -> bool {
        user.eq_ignore_ascii_case(&self.user)
            && self
                .domain
                .as_deref()
                .is_none_or(|d| d.eq_ignore_ascii_case(domain))
    }
}

enum State {
    /// Waiting for NEGOTIATE.
    Initial,
    /// CHALLENGE sent; the server challenge it carried.
    Challenged([u8; 8]),
    /// Authenticated as this user.
    Established,
    /// A step failed: the context is dead.
    Failed,
}

/// One connection's NTLM server context.
pub(crate) struct NtlmAcceptor {
    ntlm: Ntlm,
    account: Account,
    state: State,
    /// `tls-server-end-point:<hash>` of the TLS channel the context lives on, if any.
    channel_binding: Option<Vec<u8>>,
    credentials: Option<sspi::AuthIdentityBuffers>,
}

impl NtlmAcceptor {
    /// A fresh context accepting `account`; `channel_binding` is the application data of the
    /// TLS channel's bindings (`tls-server-end-point:` + certificate hash), `None` on plain HTTP.
    pub(crate) fn new(account: Account, channel_binding: Option<Vec<u8>>) -> Self {
        NtlmAcceptor {
            ntlm: Ntlm::new(),
            account,
            state: State::Initial,
            channel_binding,
            credentials: None,
        }
    }

    fn negotiate(&mut self, token: &[u8]) -> Result<Vec<u8>, AuthRefusal> {
        let username = Username::parse(&format!(
            "{}{}",
            self.account
                .domain
                .as_deref()
                .map(|d| format!("{d}\\"))
                .unwrap_or_default(),
            self.account.user
        ))
        .map_err(|_| AuthRefusal::Malformed("the configured user name is not valid"))?;
        let identity = AuthIdentity {
            username,
            password: self.account.password.expose_secret().to_owned().into(),
        };
        let acquired = self
            .ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Inbound)
            .with_auth_data(&identity)
            .execute(&mut self.ntlm)
            .map_err(|_| AuthRefusal::Malformed("cannot set up the NTLM credentials"))?;
        self.credentials = acquired.credentials_handle;
        let mut output = self.accept(token)?;
        let challenge = output
            .get(24..32)
            .and_then(|c| <[u8; 8]>::try_from(c).ok())
            .ok_or(AuthRefusal::Malformed("sspi wrote a short CHALLENGE"))?;
        self.state = State::Challenged(challenge);
        Ok(std::mem::take(&mut output))
    }

    fn accept(&mut self, token: &[u8]) -> Result<Vec<u8>, AuthRefusal> {
        let mut input = vec![SecurityBuffer::new(token.to_vec(), BufferType::Token)];
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut credentials = self.credentials.clone();
        let builder = self
            .ntlm
            .accept_security_context()
            .with_credentials_handle(&mut credentials)
            .with_context_requirements(ServerRequestFlags::ALLOCATE_MEMORY)
            .with_target_data_representation(DataRepresentation::Native)
            .with_input(&mut input)
            .with_output(&mut output);
        let result = self
            .ntlm
            .accept_security_context_impl(builder)
            .and_then(|mut g| g.resolve_to_result())
            .map_err(|_| AuthRefusal::BadToken)?;
        if [
            SecurityStatus::CompleteAndContinue,
            SecurityStatus::CompleteNeeded,
        ]
        .contains(&result.status)
        {
            self.ntlm
                .complete_auth_token(&mut output)
                .map_err(|_| AuthRefusal::WrongCredentials)?;
        }
        Ok(output.pop().map(|b| b.buffer).unwrap_or_default())
    }

    /// The authenticated user, and whether a channel binding was sent and matched.
    fn authenticate(
        &mut self,
        token: &[u8],
        challenge: [u8; 8],
    ) -> Result<(String, bool), AuthRefusal> {
        let auth = parse_authenticate(token).ok_or(AuthRefusal::BadToken)?;
        if !self.account.matches(&auth.user, &auth.domain) {
            return Err(AuthRefusal::WrongCredentials);
        }
        if !nt_proof_ok(&self.account.password, &auth, &challenge) {
            return Err(AuthRefusal::WrongCredentials);
        }
        let mut bound = false;
        if let (Some(expected), Some(sent)) = (&self.channel_binding, channel_bindings(&auth.blob))
        {
            if sent != [0u8; 16] {
                if sent != bindings_md5(expected) {
                    return Err(AuthRefusal::ChannelBindingMismatch);
                }
                bound = true;
            }
        }
        // sspi derives the session keys (and checks the MIC).
        self.accept(token)?;
        let user = if auth.domain.is_empty() {
            auth.user
        } else {
            format!("{}\\{}", auth.domain, auth.user)
        };
        Ok((user, bound))
    }
}

impl Acceptor for NtlmAcceptor {
    fn mechanism(&self) -> super::auth::Mechanism {
        super::auth::Mechanism::Ntlm
    }

    fn step(&mut self, token: &[u8]) -> Result<Step, AuthRefusal> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        match (state, message_type(token)) {
            (State::Initial, Some(1)) => self.negotiate(token).map(Step::Continue),
            (State::Challenged(challenge), Some(3)) => {
                let (user, channel_bound) = self.authenticate(token, challenge)?;
                self.state = State::Established;
                Ok(Step::Done {
                    user,
                    reply: None,
                    channel_bound,
                })
            }
            _ => Err(AuthRefusal::OutOfSequence),
        }
    }

    fn unseal(&mut self, header: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if !matches!(self.state, State::Established) || header.len() != 16 {
            return None;
        }
        let mut signature = header.to_vec();
        let mut data = sealed.to_vec();
        let mut buffers = vec![
            SecurityBufferRef::token_buf(&mut signature),
            SecurityBufferRef::data_buf(&mut data),
        ];
        self.ntlm.decrypt_message(&mut buffers).ok()?;
        Some(buffers[1].data().to_vec())
    }

    fn seal(&mut self, plain: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        if !matches!(self.state, State::Established) {
            return None;
        }
        let mut signature = vec![0u8; 16];
        let mut data = plain.to_vec();
        let mut buffers = vec![
            SecurityBufferRef::token_buf(&mut signature),
            SecurityBufferRef::data_buf(&mut data),
        ];
        self.ntlm
            .encrypt_message(EncryptionFlags::empty(), &mut buffers)
            .ok()?;
        let signature = buffers[0].data().to_vec();
        let sealed = buffers[1].data().to_vec();
        Some((signature, sealed))
    }
}

/// The parts of an AUTHENTICATE message the checks need.
struct Authenticate {
    nt_response: Vec<u8>,
    /// The NTLMv2 client blob (`NtChallengeResponse[16..]`).
    blob: Vec<u8>,
    user: String,
    domain: String,
}

fn field(msg: &[u8], at: usize) -> Option<&[u8]> {
    let len = u16::from_le_bytes([*msg.get(at)?, *msg.get(at + 1)?]) as usize;
    let off = u32::from_le_bytes(msg.get(at + 4..at + 8)?.try_into().ok()?) as usize;
    msg.get(off..off.checked_add(len)?)
}

fn utf16(bytes: &[u8]) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

fn parse_authenticate(msg: &[u8]) -> Option<Authenticate> {
    if message_type(msg)? != 3 {
        return None;
    }
    // LmChallengeResponseFields at 12, NtChallengeResponseFields at 20, DomainNameFields at
    // 28, UserNameFields at 36 (MS-NLMP 2.2.1.3). Only Unicode names are supported (every
    // client this lab meets negotiates NTLMSSP_NEGOTIATE_UNICODE).
    let nt_response = field(msg, 20)?.to_vec();
    if nt_response.len() < 16 + 28 {
        // Not NTLMv2 (NTLMv1 is refused, as Windows' default LmCompatibilityLevel does).
        return None;
    }
    Some(Authenticate {
        blob: nt_response[16..].to_vec(),
        nt_response,
        domain: utf16(field(msg, 28)?)?,
        user: utf16(field(msg, 36)?)?,
    })
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <HmacMd5 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// MS-NLMP 3.3.2: `NTProofStr == HMAC_MD5(NTOWFv2, ServerChallenge || blob)`.
fn nt_proof_ok(password: &SecretString, auth: &Authenticate, challenge: &[u8; 8]) -> bool {
    let nt_hash = md4::Md4::digest(utf16le(password.expose_secret()));
    let ntowf = hmac_md5(
        &nt_hash,
        &[&utf16le(&format!(
            "{}{}",
            auth.user.to_uppercase(),
            auth.domain
        ))],
    );
    let proof = hmac_md5(&ntowf, &[challenge, &auth.blob]);
    // Not constant time; this is a lab, not a DC.
    proof[..] == auth.nt_response[..16]
}

/// The `MsvAvChannelBindings` value of an NTLMv2 blob, if present.
fn channel_bindings(blob: &[u8]) -> Option<[u8; 16]> {
    // RespType(1) HiRespType(1) Reserved1(2) Reserved2(4) TimeStamp(8) ChallengeFromClient(8)
    // Reserved3(4), then AV pairs.
    let mut rest = blob.get(28..)?;
    while rest.len() >= 4 {
        let id = u16::from_le_bytes([rest[0], rest[1]]);
        let len = u16::from_le_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len)?;
        if id == MSV_AV_EOL {
            return None;
        }
        if id == MSV_AV_CHANNEL_BINDINGS {
            return value.try_into().ok();
        }
        rest = &rest[4 + len..];
    }
    None
}

/// MD5 of a `gss_channel_bindings_struct` with no addresses and `application_data`.
pub(crate) fn bindings_md5(application_data: &[u8]) -> [u8; 16] {
    let mut md5 = md5::Md5::new();
    md5.update([0u8; 16]); // initiator addrtype + length, acceptor addrtype + length
    md5.update((application_data.len() as u32).to_le_bytes());
    md5.update(application_data);
    md5.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntowfv2_matches_ms_nlmp_4_2_4() {
        // MS-NLMP 4.2.4.1.1: User "User", domain "Domain", password "Password".
        let nt_hash = md4::Md4::digest(utf16le("Password"));
        let ntowf = hmac_md5(&nt_hash, &[&utf16le("USERDomain")]);
        assert_eq!(
            ntowf,
            [
                0x0c, 0x86, 0x8a, 0x40, 0x3b, 0xfd, 0x7a, 0x93, 0xa3, 0x00, 0x1e, 0xf2, 0x2e, 0xf0,
                0x2e, 0x3f
            ]
        );
    }

    #[test]
    fn account_matching_is_case_insensitive_and_domain_aware() {
        let a = Account::new("LAB\\admin", SecretString::from("x".to_owned()));
        assert!(a.matches("ADMIN", "lab"));
        assert!(!a.matches("admin", "OTHER"));
        assert!(!a.matches("bob", "LAB"));
        let local = Account::new("admin", SecretString::from("x".to_owned()));
        assert!(local.matches("Admin", "WHATEVER"));
    }
}
