//! Kerberos clients and kept-open HTTP/1.1 connections for the lab's Negotiate logons.
//!
//! Shared by `crates/exch-lab/tests/iis_kerberos.rs` and the root `tests/containment.rs` (through
//! `#[path]`): tokens come from pyspnego (python-gssapi and MIT krb5, from a `kinit` ticket
//! cache) for `HTTP/<fqdn>`; a plain HTTP/1.1 client sends them over TCP connections it keeps
//! open, to the server's loopback address (the FQDN is only the ticket's SPN).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::PathBuf;

use exch_lab::fleet::LabServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// `None` after recording a `SKIPPED:` line (or a panic under `EXCH_REVOKE_REQUIRE_SAMBA=1`)
/// if `what` is missing for `suite`.
pub fn need(suite: &str, ok: bool, what: &str) -> Option<()> {
    if ok {
        return Some(());
    }
    if std::env::var("EXCH_REVOKE_REQUIRE_SAMBA").as_deref() == Ok("1") {
        panic!("{suite}: {what} is required (EXCH_REVOKE_REQUIRE_SAMBA=1) but missing");
    }
    exch_lab::samba::record_skip(&format!("{suite}: {what} missing; run scripts/test.sh"));
    None
}

/// `Some(())` when the DC has a KDC and MIT `kinit`, pyspnego and python-gssapi are
/// installed; otherwise as [`need`].
pub fn need_kerberos_client(suite: &str, ad: &exch_lab::samba::SambaAd) -> Option<()> {
    let env = ad.env();
    need(
        suite,
        env.krb5_conf.is_some() && env.kdc.is_some(),
        "a DC with a KDC (AD_KRB5_CONF/AD_KDC in ad.env; restart it with scripts/samba-ad.sh start DIR)",
    )?;
    need(
        suite,
        std::process::Command::new("kinit")
            .arg("-V")
            .output()
            .is_ok(),
        "MIT kinit (apt-get install krb5-user)",
    )?;
    need(
        suite,
        python_has("spnego") && python_has("gssapi"),
        "python modules spnego and gssapi (pip install 'pyspnego[kerberos]')",
    )
}

fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// One user's Kerberos client: `principal`'s TGT in a ticket cache of its own.
#[derive(Debug)]
pub struct KerberosClient {
    /// `sam@REALM`.
    pub principal: String,
    krb5_conf: PathBuf,
    ccache: PathBuf,
}

impl KerberosClient {
    /// A client for `sam` in `ad`'s realm (no ticket yet: see [`KerberosClient::kinit`]).
    pub fn new(ad: &exch_lab::samba::SambaAd, sam: &str) -> KerberosClient {
        let env = ad.env();
        KerberosClient {
            principal: format!("{sam}@{}", env.realm),
            krb5_conf: env.krb5_conf.clone().expect("a DC with AD_KRB5_CONF"),
            ccache: std::env::temp_dir().join(format!("exch-krb5cc-{sam}-{}", std::process::id())),
        }
    }

    /// `kinit` with `password` into the client's ticket cache: whether the KDC issued a TGT.
    pub fn kinit(&self, password: &str) -> bool {
        let mut child = std::process::Command::new("kinit")
            .arg(&self.principal)
            .env("KRB5_CONFIG", &self.krb5_conf)
            .env("KRB5CCNAME", format!("FILE:{}", self.ccache.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, format!("{password}\n").as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap().status.success()
    }

    /// One `Authorization: Negotiate` value per entry of `protocols` (pyspnego's
    /// `"negotiate"`: SPNEGO around the AP-REQ, as Windows clients send it; `"kerberos"`: the
    /// raw krb5 token), each from a fresh client context for `HTTP/<fqdn>`: one service
    /// ticket from the cache, a new authenticator each time.
    pub fn negotiate_tokens(&self, fqdn: &str, protocols: &[&str]) -> Vec<String> {
        let script = "import base64, json, sys, spnego\n\
                      out = []\n\
                      for protocol in sys.argv[2:]:\n    \
                          c = spnego.client(hostname=sys.argv[1], service='HTTP', protocol=protocol)\n    \
                          out.append('Negotiate ' + base64.b64encode(c.step()).decode())\n\
                      print(json.dumps(out))\n";
        let out = std::process::Command::new("python3")
            .args(["-c", script, fqdn])
            .args(protocols)
            .env("KRB5_CONFIG", &self.krb5_conf)
            .env("KRB5CCNAME", format!("FILE:{}", self.ccache.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pyspnego: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Removes the ticket cache.
    pub fn cleanup(&self) {
        let _ = std::fs::remove_file(&self.ccache);
    }
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// Every value of header `name`.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of header `name`, or `""`.
    pub fn one(&self, name: &str) -> &str {
        self.header(name).first().copied().unwrap_or("")
    }
}

/// A kept-alive HTTP/1.1 connection: every request goes over the same TCP connection.
pub struct Connection {
    io: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    /// A new TCP connection to `server`'s HTTP listener.
    pub async fn open(server: &LabServer) -> Connection {
        let url = server.base_url();
        let addr = url.trim_start_matches("http://").trim_end_matches('/');
        Connection {
            io: BufReader::new(TcpStream::connect(addr).await.unwrap()),
            host: server.exchange_server().fqdn.clone(),
        }
    }

    /// `GET path`, with `Authorization: <authorization>` if given.
    pub async fn get(&mut self, path: &str, authorization: Option<&str>) -> Answer {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(value) = authorization {
            request.push_str(&format!("Authorization: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.io
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let mut status_line = String::new();
        self.io.read_line(&mut status_line).await.unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.io.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.io.read_exact(&mut body).await.unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}
