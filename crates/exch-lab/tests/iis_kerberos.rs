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
//! HTTP/1.1 client (`negotiate_support`, shared with the root `tests/containment.rs`) sends
//! them over TCP connections it keeps open, to the server's loopback address (the FQDN is only the ticket's SPN, so it need not resolve).
//!
//! Skipped (with a `SKIPPED:` line) without Samba, MIT `kinit` or pyspnego/gssapi; a failure
//! instead under `EXCH_REVOKE_REQUIRE_SAMBA=1`. The last test needs no Samba.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod negotiate_support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use exch_core::Protocol;
use exch_lab::catalog::{default_auth, VdirAuth};
use exch_lab::fleet::{Fleet, LabServer, ServerSpec};
use exch_lab::mailbox::Mailbox;
use exch_lab::winrm::KerberosAcceptorConfig;
use exch_samba::{AdUser, HttpService, SambaAd};
use negotiate_support::{need_kerberos_client, Answer, Connection, KerberosClient};
use secrecy::SecretString;

const SUITE: &str = "exch-lab IIS Kerberos (Samba KDC)";
const EWS: &str = "/EWS/Exchange.asmx";
const EWS_POOL: &str = "MSExchangeServicesAppPool";
const PASSWORD: &str = "Krb-Iis-Passw0rd!1";

/// A lab server with the `HTTP/<fqdn>` key from the Samba KDC, a user of the DC with a
/// mailbox in the lab, and that user's TGT in a ticket cache.
struct Lab {
    ad: &'static SambaAd,
    fleet: Fleet,
    user: AdUser,
    service: HttpService,
    krb: KerberosClient,
}

impl Lab {
    async fn start() -> Option<Lab> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let ad = SambaAd::require(SUITE)?;
        let env = ad.env();
        need_kerberos_client(SUITE, ad)?;
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
            krb: KerberosClient::new(ad, &sam),
        };
        assert!(lab.kinit(), "kinit {} refused", lab.principal());
        Some(lab)
    }

    fn principal(&self) -> String {
        self.krb.principal.clone()
    }

    fn server(&self) -> &LabServer {
        &self.fleet.servers()[0]
    }

    /// `kinit` with the user's password: whether the KDC issued a TGT.
    fn kinit(&self) -> bool {
        self.krb.kinit(PASSWORD)
    }

    /// See [`KerberosClient::negotiate_tokens`], for this server's `HTTP/<fqdn>`.
    fn negotiate_tokens(&self, protocols: &[&str]) -> Vec<String> {
        self.krb
            .negotiate_tokens(&self.server().exchange_server().fqdn, protocols)
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
        self.krb.cleanup();
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
    // EWS at Microsoft's default: Windows authentication only, no Basic offered.
    assert_eq!(
        fresh.header("WWW-Authenticate"),
        ["Negotiate", "NTLM"],
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

    // At Microsoft's default (the lab's too) EWS is Windows-only: a Basic request is
    // challenged without any logon, a ticket is still taken (and refused by the lockdown).
    assert_eq!(
        server.iis().vdir_auth(Protocol::Ews),
        default_auth(Protocol::Ews)
    );
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
        ("/mapi/emsmdb", vec!["Negotiate", "NTLM"]),
        ("/EWS/Exchange.asmx", vec!["Negotiate", "NTLM"]),
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
