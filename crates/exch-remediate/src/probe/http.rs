//! HTTP logons as clients do them: Basic for EWS, ActiveSync, MAPI/HTTP and RPC/HTTP; the OWA form.
//! An endpoint that answers `401` without offering Basic (EWS and MAPI at Exchange's defaults)
//! takes no password logon: [`ProbeResult::NotApplicable`].

use async_trait::async_trait;
use exch_core::{ExchangeServer, Protocol};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::time::Duration;

use super::{ProbeResult, Prober};

/// Why an [`HttpProber`] could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeSetupError {
    /// The HTTP client could not be built (TLS back end, system root certificates).
    #[error("cannot build the HTTP client for the logon probes: {source}; check the system's root certificates, or build your own client and pass it to HttpProber::with_client")]
    HttpClient {
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
}

/// Probes Exchange's HTTP endpoints with real logons (reqwest, rustls).
///
/// The base URL of a server is `https://<fqdn>` unless overridden with
/// [`HttpProber::base_url`] (the lab serves each server on its own loopback port).
#[derive(Debug, Clone)]
pub struct HttpProber {
    client: reqwest::Client,
    overrides: HashMap<String, String>,
}

impl HttpProber {
    /// A prober that verifies TLS certificates with the system roots, 10 s per request.
    pub fn new() -> Result<Self, ProbeSetupError> {
        Self::with_client(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|source| ProbeSetupError::HttpClient { source })?,
        )
    }

    /// A prober with your own client (custom CA, proxy, timeouts). Redirects must not be followed.
    ///
    /// Refuses nothing today; a `Result` so that checks of the client can be added without
    /// breaking callers.
    pub fn with_client(client: reqwest::Client) -> Result<Self, ProbeSetupError> {
        Ok(HttpProber {
            client,
            overrides: HashMap::new(),
        })
    }

    /// Uses `base` (e.g. `http://127.0.0.1:50123`) for the server named `server`.
    pub fn base_url(mut self, server: impl Into<String>, base: impl Into<String>) -> Self {
        self.overrides.insert(
            server.into().to_ascii_lowercase(),
            base.into().trim_end_matches('/').to_owned(),
        );
        self
    }

    /// The override for `server`, else `https://{fqdn}` once the FQDN (from the directory,
    /// so untrusted) has been checked to be a plain host name.
    fn base(&self, server: &ExchangeServer) -> Result<String, exch_core::InvalidHostName> {
        if let Some(base) = self.overrides.get(&server.name.to_ascii_lowercase()) {
            return Ok(base.clone());
        }
        let host = server.url_host()?;
        Ok(format!("https://{host}"))
    }
}

/// Names the servers whose probes go over plain `http://` (the old password in clear text).
fn plain_http_note(overrides: &HashMap<String, String>) -> Option<String> {
    let mut plain: Vec<&str> = overrides
        .iter()
        .filter(|(_, base)| base.to_ascii_lowercase().starts_with("http://"))
        .map(|(server, _)| server.as_str())
        .collect();
    if plain.is_empty() {
        return None;
    }
    plain.sort_unstable();
    Some(format!(
        "probe: logons with the old password go over plain http:// (not encrypted) to {} (HttpProber::base_url); use https:// outside a lab",
        plain.join(", ")
    ))
}

/// The endpoint a client logs on to, per protocol.
fn logon_path(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Mapi => "/mapi/emsmdb",
        Protocol::Owa => "/owa/auth.owa",
        other => other.path(),
    }
}

#[async_trait]
impl Prober for HttpProber {
    fn security_notes(&self) -> Vec<String> {
        plain_http_note(&self.overrides).into_iter().collect()
    }

    async fn probe(
        &self,
        server: &ExchangeServer,
        protocol: Protocol,
        user: &str,
        password: &SecretString,
    ) -> ProbeResult {
        let base = match self.base(server) {
            Ok(b) => b,
            Err(e) => return ProbeResult::Error(e.to_string()),
        };
        let url = format!("{base}{}", logon_path(protocol));
        let request = if protocol == Protocol::Owa {
            let dest = format!("{base}/owa/");
            self.client.post(&url).form(&[
                ("destination", dest.as_str()),
                ("flags", "4"),
                ("forcedownlevel", "0"),
                ("username", user),
                ("password", password.expose_secret()),
                ("isUtf8", "1"),
            ])
        } else {
            self.client
                .get(&url)
                .basic_auth(user, Some(password.expose_secret()))
        };
        let response = match request.send().await {
            Ok(r) => r,
            // reqwest errors carry the URL, never the credentials.
            Err(e) => return ProbeResult::Error(format!("{url}: {e}")),
        };
        let status = response.status();
        if protocol == Protocol::Owa {
            // Exchange answers a form logon with 302: to the mailbox with session cookies on
            // success, back to logon.aspx?reason=… on failure.
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let session = response
                .headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .any(|c| {
                    c.to_str()
                        .map(|c| c.to_ascii_lowercase().starts_with("cadata"))
                        .unwrap_or(false)
                });
            return if status.is_redirection() && location.contains("logon.aspx") {
                ProbeResult::Refused(format!("{url}: HTTP {status}, back to the logon page"))
            } else if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                ProbeResult::Refused(format!("{url}: HTTP {status}"))
            } else if session || status.is_success() || status.is_redirection() {
                ProbeResult::Accepted(format!("{url}: HTTP {status}, session granted"))
            } else {
                ProbeResult::Error(format!("{url}: HTTP {status}"))
            };
        }
        match status.as_u16() {
            401 => {
                // A refusal proves something only when the endpoint takes password logons:
                // an endpoint that offers no Basic (EWS and MAPI at Exchange's defaults accept
                // Windows authentication only) refuses every Basic logon, revoked or not.
                let offers = challenge_schemes(response.headers());
                if offers.iter().any(|o| o.eq_ignore_ascii_case("basic")) {
                    ProbeResult::Refused(format!("{url}: HTTP {status}"))
                } else {
                    ProbeResult::NotApplicable(format!(
                        "{url}: HTTP {status} without a Basic challenge (offers: {}): this endpoint does not take password logons, so a refusal proves nothing",
                        if offers.is_empty() { "nothing".to_owned() } else { offers.join(", ") }
                    ))
                }
            }
            403 => ProbeResult::Refused(format!("{url}: HTTP {status}")),
            200..=299 => ProbeResult::Accepted(format!("{url}: HTTP {status}")),
            _ => ProbeResult::Error(format!("{url}: HTTP {status}")),
        }
    }
}

/// The authentication schemes a `401` reply offers, one per `WWW-Authenticate` header, in order
/// (`Basic`, `Negotiate`, `NTLM`, …): what [`HttpProber`] reads to tell a refused password
/// logon from an endpoint that takes none.
pub fn challenge_schemes(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot HTTP server answering every request with `head` (status line and headers).
    async fn answering(head: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("{head}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        base
    }

    #[tokio::test]
    async fn a_401_without_a_basic_challenge_is_not_a_refusal() {
        let server = ExchangeServer::new("EX1", "ex1.corp.example");
        let pw = SecretString::from("Old-Passw0rd!".to_owned());
        let windows_only = answering(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate\r\nWWW-Authenticate: NTLM",
        )
        .await;
        let p = HttpProber::new()
            .expect("client")
            .base_url("EX1", windows_only);
        match p.probe(&server, Protocol::Ews, "bob", &pw).await {
            ProbeResult::NotApplicable(e) => assert!(e.contains("Negotiate, NTLM"), "{e}"),
            other => panic!("{other:?}"),
        }
        let basic =
            answering("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"").await;
        let p = HttpProber::new().expect("client").base_url("EX1", basic);
        assert!(matches!(
            p.probe(&server, Protocol::Ews, "bob", &pw).await,
            ProbeResult::Refused(_)
        ));
    }

    #[test]
    fn plain_http_base_urls_are_named_as_a_security_note() {
        let https = HttpProber::new()
            .expect("client")
            .base_url("EX1", "https://ex1.corp.example");
        assert!(https.security_notes().is_empty());
        let lab = HttpProber::new()
            .expect("client")
            .base_url("EX2", "HTTP://127.0.0.1:5000")
            .base_url("EX1", "https://ex1.corp.example")
            .base_url("EX3", "http://127.0.0.1:5001/");
        let notes = lab.security_notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("http://") && notes[0].contains("ex2, ex3"),
            "{notes:?}"
        );
        assert!(!notes[0].contains("ex1"), "{notes:?}");
    }
}
