//! The default (Windows-like) WinRM authentication, driven from Rust over raw HTTP/1.1 so
//! that the test controls the TCP connections: NTLM bound to its connection, MS-WSMV
//! encryption framed as Windows frames it, plain text refused, channel bindings over TLS.
#![allow(clippy::unwrap_used)]

mod winrm_harness;
mod winrm_support;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_lab::winrm::{WinRmConfig, WinRmService};
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, CredentialUse, DataRepresentation,
    EncryptionFlags, Ntlm, SecurityBuffer, SecurityBufferRef, Sspi, SspiImpl, Username,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use winrm_harness::serve_with;
use winrm_support::FakeHost;

const USER: &str = "LAB\\admin";
const PASSWORD: &str = "Ntlm-pass1";
const BOUNDARY_END: &[u8] = b"--Encrypted Boundary--\r\n";
const NS: &str = r#"xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell""#;

fn envelope(action: &str, shell: Option<&str>, body: &str) -> String {
    let selector = shell
        .map(|s| {
            format!(r#"<w:SelectorSet><w:Selector Name="ShellId">{s}</w:Selector></w:SelectorSet>"#)
        })
        .unwrap_or_default();
    format!(
        r#"<s:Envelope {NS}><s:Header><a:Action s:mustUnderstand="true">{action}</a:Action><a:MessageID>uuid:11111111-2222-3333-4444-555555555555</a:MessageID><w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>{selector}<w:OperationTimeout>PT5.000S</w:OperationTimeout></s:Header><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

fn create() -> String {
    envelope(
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
        None,
        "<rsp:Shell/>",
    )
}

async fn serve() -> (SocketAddr, WinRmService) {
    serve_with(
        FakeHost::exchange(),
        WinRmConfig::new(USER, PASSWORD.to_string().into()),
    )
    .await
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One HTTP/1.1 keep-alive connection.
struct Conn<S> {
    io: S,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn post(&mut self, headers: &[(&str, String)], body: &[u8]) -> Reply {
        let mut req = format!(
            "POST /wsman HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.io.write_all(req.as_bytes()).await.unwrap();
        self.io.write_all(body).await.unwrap();
        self.io.flush().await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 4096];
            let n = self.io.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed by the server");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < len {
            let mut chunk = vec![0u8; len - body.len()];
            let n = self.io.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-body");
            body.extend_from_slice(&chunk[..n]);
        }
        Reply {
            status,
            headers,
            body,
        }
    }
}

async fn connect(addr: SocketAddr) -> Conn<tokio::net::TcpStream> {
    Conn {
        io: tokio::net::TcpStream::connect(addr).await.unwrap(),
    }
}

/// The client side of NTLM (sspi).
struct Client {
    ntlm: Ntlm,
    creds: Option<sspi::AuthIdentityBuffers>,
}

impl Client {
    fn new(user: &str, password: &str) -> Self {
        let mut ntlm = Ntlm::new();
        let identity = AuthIdentity {
            username: Username::parse(user).unwrap(),
            password: password.to_owned().into(),
        };
        let creds = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut ntlm)
            .unwrap()
            .credentials_handle;
        Client { ntlm, creds }
    }

    fn step(&mut self, input: Option<&[u8]>) -> Vec<u8> {
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut input = input.map(|t| vec![SecurityBuffer::new(t.to_vec(), BufferType::Token)]);
        let mut creds = self.creds.clone();
        let mut builder = self
            .ntlm
            .initialize_security_context()
            .with_credentials_handle(&mut creds)
            .with_context_requirements(
                ClientRequestFlags::CONFIDENTIALITY
                    | ClientRequestFlags::INTEGRITY
                    | ClientRequestFlags::ALLOCATE_MEMORY,
            )
            .with_target_data_representation(DataRepresentation::Native)
            .with_target_name("HTTP/127.0.0.1")
            .with_output(&mut output);
        if let Some(input) = input.as_mut() {
            builder = builder.with_input(input);
        }
        self.ntlm
            .initialize_security_context_impl(&mut builder)
            .unwrap()
            .resolve_to_result()
            .unwrap();
        output.pop().unwrap().buffer
    }

    fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; 16];
        let mut data = plain.to_vec();
        let mut bufs = vec![
            SecurityBufferRef::token_buf(&mut sig),
            SecurityBufferRef::data_buf(&mut data),
        ];
        self.ntlm
            .encrypt_message(EncryptionFlags::empty(), &mut bufs)
            .unwrap();
        let (sig, data) = (bufs[0].data().to_vec(), bufs[1].data().to_vec());
        let mut out = format!(
            "--Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={}\r\n--Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n",
            plain.len()
        )
        .into_bytes();
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&sig);
        out.extend_from_slice(&data);
        out.extend_from_slice(BOUNDARY_END);
        out
    }

    fn unseal(&mut self, sig: &[u8], sealed: &[u8]) -> Vec<u8> {
        let (mut sig, mut data) = (sig.to_vec(), sealed.to_vec());
        let mut bufs = vec![
            SecurityBufferRef::token_buf(&mut sig),
            SecurityBufferRef::data_buf(&mut data),
        ];
        self.ntlm.decrypt_message(&mut bufs).unwrap();
        bufs[1].data().to_vec()
    }
}

fn token_of(reply: &Reply) -> Vec<u8> {
    let value = reply.header("www-authenticate")[0];
    let b64 = value.strip_prefix("Negotiate ").expect(value);
    B64.decode(b64).unwrap()
}

fn negotiate(token: &[u8]) -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Negotiate {}", B64.encode(token)))]
}

const ENCRYPTED: &str =
    "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"";

/// Runs the handshake with an empty body on `conn`: the final reply.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    client: &mut Client,
) -> Reply {
    let t1 = client.step(None);
    let challenge = conn.post(&negotiate(&t1), b"").await;
    assert_eq!(challenge.status, 401);
    let t3 = client.step(Some(&token_of(&challenge)));
    conn.post(&negotiate(&t3), b"").await
}

/// (signature, ciphertext, Length) of an encrypted reply, checking the Windows framing: the
/// ciphertext is followed immediately by the closing boundary.
fn split_reply(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let text = String::from_utf8_lossy(body);
    let length: usize = text
        .split("Length=")
        .nth(1)
        .unwrap()
        .split("\r\n")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let marker = b"\tContent-Type: application/octet-stream\r\n";
    let at = body
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap()
        + marker.len();
    let hlen = u32::from_le_bytes(body[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(hlen, 16);
    let sig = body[at + 4..at + 20].to_vec();
    let cipher = body[at + 20..at + 20 + length].to_vec();
    assert_eq!(
        &body[at + 20 + length..],
        BOUNDARY_END,
        "ciphertext must be followed by the closing boundary, no CRLF"
    );
    (sig, cipher)
}

#[tokio::test]
async fn encrypted_replies_and_faults_are_framed_as_windows_frames_them() {
    let (addr, service) = serve().await;
    let mut conn = connect(addr).await;
    let anonymous = conn.post(&[], b"").await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.header("www-authenticate"),
        ["Negotiate", "Kerberos"]
    );
    let mut client = Client::new(USER, PASSWORD);
    let done = handshake(&mut conn, &mut client).await;
    assert_eq!(done.status, 200);
    assert!(done.body.is_empty());

    let body = client.seal(create().as_bytes());
    let reply = conn
        .post(&[("Content-Type", ENCRYPTED.into())], &body)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), [ENCRYPTED]);
    assert!(reply.body.ends_with(BOUNDARY_END));
    let (sig, cipher) = split_reply(&reply.body);
    let plain = String::from_utf8(client.unseal(&sig, &cipher)).unwrap();
    assert!(
        plain.contains("CreateResponse") && plain.contains("RelatesTo"),
        "{plain}"
    );

    // A fault is encrypted too (HTTP 500).
    let bad = envelope(
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete",
        Some("NO-SUCH-SHELL"),
        "",
    );
    let body = client.seal(bad.as_bytes());
    let reply = conn
        .post(&[("Content-Type", ENCRYPTED.into())], &body)
        .await;
    assert_eq!(reply.status, 500);
    let (sig, cipher) = split_reply(&reply.body);
    let plain = String::from_utf8(client.unseal(&sig, &cipher)).unwrap();
    assert!(plain.contains("w:InvalidSelectors"), "{plain}");

    let stats = service.counters().snapshot();
    assert_eq!((stats.create, stats.delete), (1, 1));
    assert_eq!(
        (stats.unauthorized, stats.auth_challenges),
        (2, 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn the_ntlm_context_belongs_to_its_connection() {
    let (addr, service) = serve().await;
    let mut client = Client::new(USER, PASSWORD);
    let mut a = connect(addr).await;
    let t1 = client.step(None);
    let challenge = a.post(&negotiate(&t1), b"").await;
    assert_eq!(challenge.status, 401);
    let t3 = client.step(Some(&token_of(&challenge)));
    // The AUTHENTICATE on another connection: that connection has no handshake under way.
    let mut b = connect(addr).await;
    let refused = b.post(&negotiate(&t3), b"").await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("www-authenticate"),
        ["Negotiate", "Kerberos"]
    );

    // A fresh handshake on `a` works; a new connection starts unauthenticated.
    let mut client = Client::new(USER, PASSWORD);
    assert_eq!(handshake(&mut a, &mut client).await.status, 200);
    let body = client.seal(create().as_bytes());
    let mut c = connect(addr).await;
    let reply = c.post(&[("Content-Type", ENCRYPTED.into())], &body).await;
    assert_eq!(reply.status, 401);
    assert_eq!(service.counters().snapshot().create, 0);
}

#[tokio::test]
async fn wrong_password_or_user_is_refused_and_counted() {
    let (addr, service) = serve().await;
    for (user, password) in [
        (USER, "wrong"),
        ("LAB\\mallory", PASSWORD),
        ("OTHER\\admin", PASSWORD),
    ] {
        let mut conn = connect(addr).await;
        let mut client = Client::new(user, password);
        let reply = handshake(&mut conn, &mut client).await;
        assert_eq!(reply.status, 401, "{user}");
        assert_eq!(reply.header("www-authenticate"), ["Negotiate", "Kerberos"]);
    }
    // Case-insensitive user and domain, as Windows.
    let mut conn = connect(addr).await;
    let mut client = Client::new("lab\\ADMIN", PASSWORD);
    assert_eq!(handshake(&mut conn, &mut client).await.status, 200);
    let stats = service.counters().snapshot();
    assert_eq!(
        (stats.unauthorized, stats.auth_challenges),
        (7, 4),
        "{stats:?}"
    );
}

#[tokio::test]
async fn plain_soap_is_refused_once_encryption_is_required() {
    let (addr, service) = serve().await;
    let mut conn = connect(addr).await;
    let mut client = Client::new(USER, PASSWORD);
    assert_eq!(handshake(&mut conn, &mut client).await.status, 200);
    let reply = conn
        .post(
            &[("Content-Type", "application/soap+xml;charset=UTF-8".into())],
            create().as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 401);
    let stats = service.counters().snapshot();
    assert_eq!((stats.create, stats.plaintext_refused), (0, 1), "{stats:?}");
    // Basic is not accepted either.
    let basic = format!("Basic {}", B64.encode(format!("{USER}:{PASSWORD}")));
    let reply = conn
        .post(
            &[
                ("Authorization", basic),
                ("Content-Type", "application/soap+xml;charset=UTF-8".into()),
            ],
            create().as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(service.counters().snapshot().create, 0);
}

fn ca_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    B64.decode(b64).unwrap()
}

#[tokio::test]
async fn over_tls_a_wrong_channel_binding_is_refused_and_none_is_accepted() {
    let dir = exch_directory::InMemoryDirectory::new();
    let fleet = Fleet::builder()
        .directory(Arc::new(dir))
        .server(ServerSpec::exchange_2019("EX01"))
        .winrm_credentials(USER, PASSWORD.to_string().into())
        .winrm_https(true)
        .build()
        .await
        .unwrap();
    let server = fleet.servers()[0].clone();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der(
            fleet.winrm_ca_pem().unwrap(),
        )))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = || async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.https_port().unwrap()))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("ex01.lab.example.test").unwrap();
        Conn {
            io: connector.connect(name, tcp).await.unwrap(),
        }
    };

    // A channel binding of another certificate: refused.
    let mut conn = tls().await;
    let mut client = Client::new(USER, PASSWORD);
    let t1 = client.step(None);
    let challenge = conn.post(&negotiate(&t1), b"").await;
    let mut wrong = b"tls-server-end-point:".to_vec();
    wrong.extend_from_slice(&[7u8; 32]);
    client.ntlm.set_channel_bindings(&wrong);
    let t3 = client.step(Some(&token_of(&challenge)));
    assert_eq!(conn.post(&negotiate(&t3), b"").await.status, 401);

    // The right channel binding (SHA-256 of the certificate the client saw): accepted.
    let mut conn = tls().await;
    let cert = conn.io.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let mut right = b"tls-server-end-point:".to_vec();
    right.extend_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(&cert));
    let mut client = Client::new(USER, PASSWORD);
    let t1 = client.step(None);
    let challenge = conn.post(&negotiate(&t1), b"").await;
    client.ntlm.set_channel_bindings(&right);
    let t3 = client.step(Some(&token_of(&challenge)));
    assert_eq!(conn.post(&negotiate(&t3), b"").await.status, 200);

    // No channel binding (CbtHardeningLevel Relaxed): accepted; plain SOAP inside TLS.
    let mut conn = tls().await;
    let mut client = Client::new(USER, PASSWORD);
    assert_eq!(handshake(&mut conn, &mut client).await.status, 200);
    let reply = conn
        .post(
            &[("Content-Type", "application/soap+xml;charset=UTF-8".into())],
            create().as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(String::from_utf8_lossy(&reply.body).contains("CreateResponse"));
    assert_eq!(server.winrm_stats().create, 1);
    fleet.shutdown().await;
}
