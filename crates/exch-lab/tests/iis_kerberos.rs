//! Kerberos (Negotiate) logons on the lab's IIS virtual directories, with tickets from a real
//! KDC (the Samba AD DC), and connections that stay authenticated across a recycle.
//!
//! The residual risk of issue 18: a service ticket is checked only when it is presented (its
//! AP-REQ, with the server's service key), so one obtained before the account was disabled
//! still gets in after the disable and after the flush (the recycle), and so does a TCP
//! connection that authenticated before; only the mailbox's CAS settings, which the new
//! worker reads again, shut both out.
//!
//! The client: pyspnego (through python-gssapi and MIT krb5, from a `kinit` ticket cache)
//! makes the `Authorization: Negotiate` tokens, all of them **before** the disable; a plain
//! HTTP/1.1 client written here sends them over TCP connections it keeps open, to the
//! server's loopback address (the FQDN is only the ticket's SPN, so it need not resolve).
//!
//! Skipped (with a `SKIPPED:` line) without Samba, MIT `kinit` or pyspnego/gssapi; a failure
//! instead under `EXCH_REVOKE_REQUIRE_SAMBA=1`. The last test needs no Samba.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use exch_core::Protocol;
use exch_lab::catalog::{default_auth, VdirAuth};
use exch_lab::fleet::{Fleet, LabServer, ServerSpec};
use exch_lab::mailbox::Mailbox;
use exch_lab::winrm::KerberosAcceptorConfig;
use exch_samba::{AdUser, HttpService, SambaAd};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SUITE: &str = "exch-lab IIS Kerberos (Samba KDC)";
const EWS: &str = "/EWS/Exchange.asmx";
const EWS_POOL: &str = "MSExchangeServicesAppPool";
const PASSWORD: &str = "Krb-Iis-Passw0rd!1";

/// `None` after printing `SKIPPED:` (or a panic under `EXCH_REVOKE_REQUIRE_SAMBA=1`) if
/// `what` is missing.
fn need(ok: bool, what: &str) -> Option<()> {
    if ok {
        return Some(());
    }
    if std::env::var("EXCH_REVOKE_REQUIRE_SAMBA").as_deref() == Ok("1") {
        panic!("{SUITE}: {what} is required (EXCH_REVOKE_REQUIRE_SAMBA=1) but missing");
    }
    exch_lab::samba::record_skip(&format!("{SUITE}: {what} missing; run scripts/test.sh"));
    None
}

fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> &str {
        self.header(name).first().copied().unwrap_or("")
    }
}

/// A kept-alive HTTP/1.1 connection: every request goes over the same TCP connection.
struct Connection {
    io: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    async fn open(server: &LabServer) -> Connection {
        let url = server.base_url();
        let addr = url.trim_start_matches("http://").trim_end_matches('/');
        Connection {
            io: BufReader::new(TcpStream::connect(addr).await.unwrap()),
            host: server.exchange_server().fqdn.clone(),
        }
    }

    /// `GET path`, with `Authorization: <authorization>` if given.
    async fn get(&mut self, path: &str, authorization: Option<&str>) -> Answer {
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

/// A lab server with the `HTTP/<fqdn>` key from the Samba KDC, a user of the DC with a
/// mailbox in the lab, and that user's TGT in a ticket cache.
struct Lab {
    ad: &'static SambaAd,
    fleet: Fleet,
    user: AdUser,
    service: HttpService,
    krb5_conf: PathBuf,
    ccache: PathBuf,
}

impl Lab {
    async fn start() -> Option<Lab> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let ad = SambaAd::require(SUITE)?;
        let env = ad.env();
        need(
            env.krb5_conf.is_some() && env.kdc.is_some(),
            "a DC with a KDC (AD_KRB5_CONF/AD_KDC in ad.env; restart it with scripts/samba-ad.sh start DIR)",
        )?;
        need(
            std::process::Command::new("kinit")
                .arg("-V")
                .output()
                .is_ok(),
            "MIT kinit (apt-get install krb5-user)",
        )?;
        need(
            python_has("spnego") && python_has("gssapi"),
            "python modules spnego and gssapi (pip install 'pyspnego[kerberos]')",
        )?;
        let name = SambaAd::unique_name("ki").to_ascii_uppercase();
        let fqdn = format!("{}.{}", name.to_ascii_lowercase(), env.dns_domain());
        let service = tokio::task::spawn_blocking(move || ad.add_http_service(&fqdn))
            .await
            .unwrap()
            .unwrap();
        let sam = SambaAd::unique_name("kiu");
        let user = ad
            .create_user(&sam, &SecretString::from(PASSWORD))
            .await
            .unwrap();
        let fleet = Fleet::builder()
            .directory(Arc::new(exch_directory::InMemoryDirectory::new()))
            .dns_domain(env.dns_domain())
            .server(ServerSpec::exchange_2019(name.clone()))
            .winrm_kerberos_keytab(name, &service.keytab)
            .mailbox(Mailbox::new(
                sam.clone(),
                format!("{sam}@{}", env.dns_domain()),
            ))
            .build()
            .await
            .unwrap();
        let lab = Lab {
            ad,
            fleet,
            user,
            service,
            krb5_conf: env.krb5_conf.clone().unwrap(),
            ccache: std::env::temp_dir().join(format!("exch-lab-iis-krb5cc-{sam}")),
        };
        assert!(lab.kinit(), "kinit {} refused", lab.principal());
        Some(lab)
    }

    fn principal(&self) -> String {
        format!("{}@{}", self.user.sam, self.ad.env().realm)
    }

    fn server(&self) -> &LabServer {
        &self.fleet.servers()[0]
    }

    /// `kinit` with the user's password into the test's ticket cache: whether the KDC
    /// issued a TGT.
    fn kinit(&self) -> bool {
        let mut child = std::process::Command::new("kinit")
            .arg(self.principal())
            .env("KRB5_CONFIG", &self.krb5_conf)
            .env("KRB5CCNAME", format!("FILE:{}", self.ccache.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, format!("{PASSWORD}\n").as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap().status.success()
    }

    /// One `Authorization: Negotiate` value per entry of `protocols` (pyspnego's
    /// `"negotiate"`: SPNEGO around the AP-REQ, as Windows clients send it; `"kerberos"`: the
    /// raw krb5 token), each from a fresh client context for `HTTP/<fqdn>`: one service
    /// ticket from the cache, a new authenticator each time.
    fn negotiate_tokens(&self, protocols: &[&str]) -> Vec<String> {
        let script = "import base64, json, sys, spnego\n\
                      out = []\n\
                      for protocol in sys.argv[2:]:\n    \
                          c = spnego.client(hostname=sys.argv[1], service='HTTP', protocol=protocol)\n    \
                          out.append('Negotiate ' + base64.b64encode(c.step()).decode())\n\
                      print(json.dumps(out))\n";
        let out = std::process::Command::new("python3")
            .args(["-c", script, &self.server().exchange_server().fqdn])
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

    /// Recycles the EWS pool as the flush does and waits until the new worker serves.
    async fn recycle_ews(&self) -> u32 {
        let iis = self.server().iis();
        iis.recycle(EWS_POOL).await.unwrap();
        assert!(iis.recycled(EWS_POOL, Duration::from_secs(10)).await);
        iis.current_pid(EWS_POOL).unwrap_or(0)
    }

    async fn cleanup(self) {
        self.fleet.shutdown().await;
        self.ad.delete(&self.user.dn).await.unwrap();
        self.ad.delete(&self.service.account_dn).await.unwrap();
        let _ = std::fs::remove_file(&self.service.keytab);
        let _ = std::fs::remove_file(&self.ccache);
    }
}

fn assert_served(answer: &Answer, source: &str, pid: u32) {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.one("X-Lab-Token"), source, "{answer:?}");
    assert_eq!(answer.one("X-Lab-Pid"), pid.to_string(), "{answer:?}");
}

fn assert_ews_refused_by_cas(answer: &Answer) {
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.one("X-Lab-Cas-Block"), "EwsEnabled", "{answer:?}");
    assert!(answer.body.contains("(EwsEnabled)"), "{answer:?}");
}

#[tokio::test]
async fn a_ticket_and_a_connection_from_before_the_disable_survive_the_flush_not_the_lockdown() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    let server = lab.server();
    // Every token is made now, while the account is enabled: after the disable nothing
    // asks the KDC again.
    let tokens = lab.negotiate_tokens(&["negotiate", "negotiate", "kerberos", "negotiate"]);

    // Logon: the ticket is opened with the service key; the directory is not asked.
    let mut kept = Connection::open(server).await;
    let first = kept.get(EWS, Some(&tokens[0])).await;
    let pid = server.iis().current_pid(EWS_POOL).unwrap();
    assert_served(&first, "ticket", pid);
    let mutual = first.one("WWW-Authenticate");
    let ap_rep = mutual.strip_prefix("Negotiate ").unwrap_or("");
    assert!(
        !base64::engine::general_purpose::STANDARD
            .decode(ap_rep)
            .unwrap_or_default()
            .is_empty(),
        "mutual authentication token: {first:?}"
    );
    // The connection stays authenticated: no header needed …
    assert_served(&kept.get(EWS, None).await, "connection", pid);
    // … but only that connection: another one is challenged.
    let fresh = Connection::open(server).await.get(EWS, None).await;
    assert_eq!(fresh.status, 401, "{fresh:?}");
    assert_eq!(
        fresh.header("WWW-Authenticate"),
        [
            format!("Basic realm=\"{}\"", server.exchange_server().fqdn).as_str(),
            "Negotiate",
            "NTLM"
        ],
        "the lab's EWS: Basic kept next to Windows authentication"
    );

    // The account is disabled in AD (plain LDAP, behind the lab's back), and the KDC
    // refuses it a new TGT; then the flush: the EWS pool is recycled.
    lab.ad
        .replace_attribute(&lab.user.dn, "userAccountControl", "514")
        .await
        .unwrap();
    assert_eq!(
        lab.ad
            .read_attribute(&lab.user.dn, "userAccountControl")
            .await
            .unwrap()
            .as_deref(),
        Some("514")
    );
    assert!(!lab.kinit(), "the KDC must refuse a disabled account");
    let new_pid = lab.recycle_ews().await;
    assert_ne!(new_pid, pid, "a new worker serves");

    // Residual risk: a NEW connection with the ticket obtained before the disable gets in
    // (the AP-REQ is all that is checked), and so does the connection opened before.
    let mut second = Connection::open(server).await;
    assert_served(&second.get(EWS, Some(&tokens[1])).await, "ticket", new_pid);
    assert_served(&kept.get(EWS, None).await, "connection", new_pid);
    assert_served(&second.get(EWS, None).await, "connection", new_pid);

    // The lockdown (Set-CASMailbox -EwsEnabled $false, through the server's Exchange shell)
    // plus a recycle: the new worker reads the mailbox again and refuses both.
    let out = exch_lab::ps::run_script(
        server.iis(),
        &format!(
            "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn\n\
             Set-CASMailbox -Identity '{}' -EwsEnabled $false",
            lab.user.sam
        ),
    )
    .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let mailbox = lab.fleet.mailboxes().mailbox(&lab.user.sam).unwrap();
    assert_eq!(mailbox.cas.ews_enabled, Some(false));
    lab.recycle_ews().await;
    let mut third = Connection::open(server).await;
    assert_ews_refused_by_cas(&third.get(EWS, Some(&tokens[2])).await);
    assert_ews_refused_by_cas(&kept.get(EWS, None).await);
    assert_ews_refused_by_cas(&second.get(EWS, None).await);
    assert_ews_refused_by_cas(&third.get(EWS, None).await);

    let counters = server.counters().iis;
    assert_eq!(
        (counters.logons_by_ticket, counters.tickets_refused),
        (3, 0),
        "{counters:?}"
    );
    assert_eq!(
        counters.requests_on_authenticated_connections, 6,
        "{counters:?}"
    );
    assert_eq!(counters.refused_by_cas.ews, 4, "{counters:?}");
    assert_eq!(
        (counters.logons_from_cache, counters.logons_from_directory),
        (0, 0),
        "no Basic logon, no directory: {counters:?}"
    );

    // At Microsoft's default EWS is Windows-only: a Basic request is challenged without any
    // logon, a ticket is still taken (and refused by the lockdown).
    server
        .iis()
        .set_vdir_auth(Protocol::Ews, default_auth(Protocol::Ews))
        .unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{PASSWORD}", lab.principal()))
    );
    let refused = Connection::open(server).await.get(EWS, Some(&basic)).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(refused.header("WWW-Authenticate"), ["Negotiate", "NTLM"]);
    let mut fourth = Connection::open(server).await;
    assert_ews_refused_by_cas(&fourth.get(EWS, Some(&tokens[3])).await);
    let after = server.counters().iis;
    assert_eq!(after.logons_by_ticket, 4, "{after:?}");
    assert_eq!(after.logons_refused, 0, "{after:?}");
    lab.cleanup().await;
}

/// Without Samba: Windows authentication where it is enabled, refusals that say why.
#[tokio::test]
async fn negotiate_is_offered_per_vdir_and_a_bad_token_is_refused() {
    let fleet = Fleet::builder()
        .directory(Arc::new(exch_directory::InMemoryDirectory::new()))
        .server(ServerSpec::exchange_2019("EX01"))
        .server(ServerSpec::exchange_2019("EX02"))
        .winrm_kerberos(
            "EX01",
            KerberosAcceptorConfig::from_key("HTTP/ex01.lab.example.test", 18, vec![7; 32])
                .unwrap(),
        )
        .build()
        .await
        .unwrap();
    let (ex01, ex02) = (&fleet.servers()[0], &fleet.servers()[1]);
    let realm = format!("Basic realm=\"{}\"", ex01.exchange_server().fqdn);
    for (path, offered) in [
        ("/OAB/", vec!["Negotiate", "NTLM"]),
        (
            "/rpc/rpcproxy.dll",
            vec![realm.as_str(), "Negotiate", "NTLM"],
        ),
        (
            "/Autodiscover/Autodiscover.xml",
            vec![realm.as_str(), "Negotiate", "NTLM"],
        ),
        ("/Microsoft-Server-ActiveSync", vec![realm.as_str()]),
        ("/mapi/emsmdb", vec![realm.as_str(), "Negotiate", "NTLM"]),
    ] {
        let answer = Connection::open(ex01).await.get(path, None).await;
        assert_eq!(answer.status, 401, "{path}: {answer:?}");
        assert_eq!(answer.header("WWW-Authenticate"), offered, "{path}");
    }
    assert_eq!(
        ex01.iis().vdir_auth(Protocol::Oab),
        VdirAuth::WindowsOnly,
        "Microsoft's default"
    );

    // Not a Kerberos token (an NTLM NEGOTIATE), garbage, and a ticket-shaped token the key
    // cannot open: 401 and counted; a server without a service key refuses the same.
    let mut krb = vec![0x60, 0x0b, 0x06, 0x09];
    krb.extend_from_slice(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02]);
    let b64 = |bytes: &[u8]| {
        format!(
            "Negotiate {}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    };
    let tokens = [
        b64(b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2"),
        "Negotiate !!!".to_owned(),
        b64(&krb),
    ];
    for server in [ex01, ex02] {
        for token in &tokens {
            let mut connection = Connection::open(server).await;
            let answer = connection.get(EWS, Some(token)).await;
            assert_eq!(answer.status, 401, "{token}: {answer:?}");
            // A refused token leaves the connection unauthenticated.
            assert_eq!(connection.get(EWS, None).await.status, 401);
        }
        let counters = server.counters().iis;
        assert_eq!(
            (counters.tickets_refused, counters.logons_by_ticket),
            (3, 0),
            "{counters:?}"
        );
    }
    // ActiveSync has no Windows authentication: the Negotiate header is not even read.
    let answer = Connection::open(ex01)
        .await
        .get("/Microsoft-Server-ActiveSync", Some(&tokens[2]))
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(ex01.counters().iis.tickets_refused, 3);
    fleet.shutdown().await;
}
