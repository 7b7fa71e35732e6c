//! `WinRmFlusher` with `WinRmAuth::Kerberos` against the lab, with a real KDC: the Samba AD DC
//! issues the tickets (the client does its own AS and TGS exchanges with the password), the
//! lab server decrypts them with the keytab `add_http_service` exported for its SPN, the
//! client checks the server's AP-REP (mutual authentication) and seals every body over HTTP.
//! The lab's counters say independently that Kerberos was used (`kerberos_logons`).
//!
//! Skipped (with a `SKIPPED:` line) without Samba; a failure instead under
//! `EXCH_REVOKE_REQUIRE_SAMBA=1`.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers panic on purpose

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use exch_directory::{Directory, InMemoryDirectory};
use exch_iis::{CacheFlusher, FlushMethod, IisError, WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_lab::samba::{AdUser, HttpService, SambaAd};
use exch_lab::winrm::KerberosAcceptorConfig;
use secrecy::SecretString;

const SUITE: &str = "exch-iis winrm kerberos (Samba KDC)";
const PASSWORD: &str = "Krb-Flush-Passw0rd!1";

/// A fleet of one server (Kerberos key from the KDC unless `key_of_another_spn`), the
/// accepted WinRM user created in the DC.
struct Lab {
    ad: &'static SambaAd,
    fleet: Fleet,
    user: AdUser,
    services: Vec<HttpService>,
    kdc: String,
}

impl Lab {
    async fn start(key_of_another_spn: bool) -> Option<Lab> {
        let ad = SambaAd::require(SUITE)?;
        let env = ad.env();
        let Some(kdc) = env.kdc.clone() else {
            let why = format!(
                "{} has no AD_KDC (a DC without a KDC); restart it with scripts/samba-ad.sh start DIR",
                env.file.display()
            );
            if std::env::var("EXCH_REVOKE_REQUIRE_SAMBA").as_deref() == Ok("1") {
                panic!("{SUITE}: {why}");
            }
            eprintln!("SKIPPED: {SUITE}: {why}");
            return None;
        };
        let name = SambaAd::unique_name("kf").to_ascii_uppercase();
        let fqdn = format!("{}.{}", name.to_ascii_lowercase(), env.dns_domain());
        let spn_holder = if key_of_another_spn {
            format!(
                "{}.{}",
                SambaAd::unique_name("kg").to_ascii_lowercase(),
                env.dns_domain()
            )
        } else {
            fqdn.clone()
        };
        let mut services = Vec::new();
        for f in [fqdn.clone(), spn_holder.clone()] {
            if services
                .iter()
                .any(|s: &HttpService| s.principal.contains(&f))
            {
                continue;
            }
            services.push(
                tokio::task::spawn_blocking(move || ad.add_http_service(&f))
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        let sam = SambaAd::unique_name("krbf");
        let user = ad
            .create_user(&sam, &SecretString::from(PASSWORD))
            .await
            .unwrap();
        let directory: Arc<dyn Directory> = Arc::new(InMemoryDirectory::new());
        let mut builder = Fleet::builder()
            .directory(directory)
            .dns_domain(env.dns_domain())
            .server(ServerSpec::exchange_2019(name.clone()))
            .winrm_credentials(
                format!("{}\\{sam}", env.domain),
                SecretString::from(PASSWORD),
            )
            .winrm_https(true);
        builder = if key_of_another_spn {
            // The server holds the key of another server's SPN (a misregistered SPN, or a
            // keytab copied from the wrong machine).
            let other = services.last().unwrap();
            builder.winrm_kerberos(
                name,
                KerberosAcceptorConfig::from_keytab(format!("HTTP/{spn_holder}"), &other.keytab)
                    .unwrap(),
            )
        } else {
            builder.winrm_kerberos_keytab(name, &services[0].keytab)
        };
        let fleet = builder.build().await.unwrap();
        Some(Lab {
            ad,
            fleet,
            user,
            services,
            kdc,
        })
    }

    fn flusher(&self, password: &str, https: bool) -> WinRmFlusher {
        let server = &self.fleet.servers()[0];
        let mut b = WinRmFlusher::builder()
            .auth(WinRmAuth::Kerberos)
            .kdc(self.kdc.clone())
            .credentials(self.user.upn.clone(), SecretString::from(password))
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(3));
        b = if https {
            b.ca_file(self.ca_file())
                .endpoint(server.name(), server.winrm_https_url().unwrap())
        } else {
            b.endpoint(server.name(), server.winrm_url())
        };
        b.build().unwrap()
    }

    fn ca_file(&self) -> PathBuf {
        let path = std::env::temp_dir().join(format!("exch-iis-krb-ca-{}.pem", self.user.sam));
        std::fs::write(&path, self.fleet.winrm_ca_pem().unwrap()).unwrap();
        path
    }

    async fn cleanup(self) {
        self.fleet.shutdown().await;
        self.ad.delete(&self.user.dn).await.unwrap();
        for s in &self.services {
            self.ad.delete(&s.account_dn).await.unwrap();
            let _ = std::fs::remove_file(&s.keytab);
        }
        let _ = std::fs::remove_file(self.ca_file());
    }
}

/// Lists pools, flushes (proven), reads `UserTokenTTL`; the lab counts Kerberos logons.
async fn flush_with_kerberos(lab: &Lab, https: bool) {
    let server = &lab.fleet.servers()[0];
    let ex = server.exchange_server().clone();
    let before = server.winrm_stats();
    let flusher = lab.flusher(PASSWORD, https);
    assert_eq!(
        flusher.method_for(&ex),
        if https {
            "Kerberos over HTTPS"
        } else {
            "Kerberos over HTTP, message encryption"
        }
    );
    let pools = flusher.app_pools(&ex).await.unwrap();
    assert!(
        pools
            .iter()
            .any(|p| p.name.as_str() == "MSExchangeOWAAppPool"),
        "{pools:?}"
    );
    let report = flusher.flush(&ex, &FlushMethod::default()).await.unwrap();
    assert!(report.is_proven(), "{report:?}");
    // ServerSpec::exchange_2019 has no UserTokenTTL value: IIS's default 15 minutes.
    let ttl = flusher.token_cache(&ex).await.unwrap();
    assert_eq!(ttl.configured, None, "{ttl:?}");
    let after = server.winrm_stats();
    assert!(
        after.kerberos_logons > before.kerberos_logons,
        "https={https}: {after:?}"
    );
    assert_eq!(
        after.plaintext_refused, before.plaintext_refused,
        "{after:?}"
    );
    assert_eq!(after.open_shells, 0, "{after:?}");
    // Kerberos is one round trip: no 401 challenge leg.
    assert_eq!(after.auth_challenges, before.auth_challenges, "{after:?}");
}

#[tokio::test]
async fn kerberos_over_http_sealed_and_over_https_lists_flushes_and_reads_the_ttl() {
    let Some(lab) = Lab::start(false).await else {
        return;
    };
    flush_with_kerberos(&lab, false).await;
    flush_with_kerberos(&lab, true).await;
    lab.cleanup().await;
}

#[tokio::test]
async fn a_wrong_password_is_refused_by_the_kdc_and_never_shown() {
    let Some(lab) = Lab::start(false).await else {
        return;
    };
    let server = &lab.fleet.servers()[0];
    let wrong = "Not-The-Passw0rd!9";
    let e = lab
        .flusher(wrong, false)
        .flush(server.exchange_server(), &FlushMethod::default())
        .await
        .unwrap_err();
    let IisError::Unauthenticated { reason, .. } = &e else {
        panic!("expected Unauthenticated, got {e:?}");
    };
    assert!(reason.contains("password"), "{reason}");
    for text in [format!("{e}"), format!("{e:?}")] {
        assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
        assert!(text.contains(server.name()), "{text}");
    }
    // The KDC refused: the lab saw no Kerberos logon and ran nothing.
    let stats = server.winrm_stats();
    assert_eq!((stats.kerberos_logons, stats.create), (0, 0), "{stats:?}");
    lab.cleanup().await;
}

#[tokio::test]
async fn a_server_whose_keytab_is_for_another_spn_refuses_the_ticket() {
    let Some(lab) = Lab::start(true).await else {
        return;
    };
    let server = &lab.fleet.servers()[0];
    let e = lab
        .flusher(PASSWORD, false)
        .flush(server.exchange_server(), &FlushMethod::default())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, IisError::Unauthenticated { .. }),
        "expected Unauthenticated, got {e:?}"
    );
    assert!(
        text.contains(server.name()) && text.contains("Kerberos ticket"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD) && !format!("{e:?}").contains(PASSWORD));
    let stats = server.winrm_stats();
    assert_eq!(
        (stats.kerberos_logons, stats.create, stats.command),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.unauthorized >= 1, "{stats:?}");
    lab.cleanup().await;
}
