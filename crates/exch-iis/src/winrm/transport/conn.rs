//! One TCP (optionally TLS) connection with an HTTP/1.1 client on it. Every security context
//! lives on exactly one of these: NTLM and Kerberos authenticate the connection, not the
//! request, so a context is never moved to another connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::{Endpoint, WsmanError};

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A reply: status, headers, body.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// One open connection.
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// RFC 5929 `tls-server-end-point` application data, for HTTPS.
    pub(crate) channel_binding: Option<Vec<u8>>,
}

/// Most bytes accepted in one reply body.
const MAX_REPLY: usize = 16 * 1024 * 1024;

impl Conn {
    /// Connects to `ep` (TLS with `tls` when the endpoint is https).
    pub(crate) async fn open(
        ep: &Endpoint,
        tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
        connect_timeout: Duration,
    ) -> Result<Conn, WsmanError> {
        let host = ep.host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect((host, ep.port)))
            .await
            .map_err(|_| WsmanError::ConnectTimeout(connect_timeout))?
            .map_err(WsmanError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let (io, channel_binding): (Box<dyn Io>, Option<Vec<u8>>) = if ep.https {
            let config = tls.ok_or_else(|| {
                WsmanError::Protocol("https endpoint without a TLS configuration".into())
            })?;
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| WsmanError::Protocol(format!("bad TLS server name {host:?}: {e}")))?;
            let stream = tokio::time::timeout(
                connect_timeout,
                TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| WsmanError::ConnectTimeout(connect_timeout))?
            .map_err(WsmanError::Tls)?;
            let cb = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| tls_server_end_point(c.as_ref()));
            (Box::new(stream), cb)
        } else {
            (Box::new(tcp), None)
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(WsmanError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "WinRM connection ended");
            }
        });
        Ok(Conn {
            sender,
            channel_binding,
        })
    }

    /// Whether the connection can take another request (the server may have closed an idle
    /// keep-alive connection).
    pub(crate) fn is_usable(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request and reads the whole reply.
    pub(crate) async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, WsmanError> {
        self.sender.ready().await.map_err(WsmanError::Http)?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(WsmanError::Http)?;
        let (parts, body) = resp.into_parts();
        let limited = http_body_util::Limited::new(body, MAX_REPLY);
        let body = limited
            .collect()
            .await
            .map_err(|e| WsmanError::Protocol(format!("reading the reply: {e}")))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// RFC 5929 `tls-server-end-point`: the server certificate hashed with its signature's hash
/// function (SHA-256 when that is MD5 or SHA-1, or when it cannot be told), prefixed as the
/// channel-binding application data of GSS-API/SSPI.
pub(crate) fn tls_server_end_point(cert_der: &[u8]) -> Vec<u8> {
    let hash: Vec<u8> = match signature_hash(cert_der) {
        SigHash::Sha384 => sha2::Sha384::digest(cert_der).to_vec(),
        SigHash::Sha512 => sha2::Sha512::digest(cert_der).to_vec(),
        SigHash::Sha256 => sha2::Sha256::digest(cert_der).to_vec(),
    };
    let mut out = b"tls-server-end-point:".to_vec();
    out.extend_from_slice(&hash);
    out
}

#[derive(Debug, PartialEq, Eq)]
enum SigHash {
    Sha256,
    Sha384,
    Sha512,
}

fn signature_hash(cert_der: &[u8]) -> SigHash {
    use x509_parser::prelude::FromDer;
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(cert_der) else {
        return SigHash::Sha256;
    };
    let alg = &cert.signature_algorithm;
    let oid = alg.algorithm.to_id_string();
    match oid.as_str() {
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => SigHash::Sha384,
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => SigHash::Sha512,
        // RSASSA-PSS: the hash is in the parameters.
        "1.2.840.113549.1.1.10" => {
            let params = alg
                .parameters
                .as_ref()
                .map(|p| p.as_bytes().to_vec())
                .unwrap_or_default();
            // DER of the OIDs id-sha384 (2.16.840.1.101.3.4.2.2) and id-sha512 (.3).
            let sha384 = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
            let sha512 = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
            if params.windows(9).any(|w| w == sha384) {
                SigHash::Sha384
            } else if params.windows(9).any(|w| w == sha512) {
                SigHash::Sha512
            } else {
                SigHash::Sha256
            }
        }
        _ => SigHash::Sha256,
    }
}
