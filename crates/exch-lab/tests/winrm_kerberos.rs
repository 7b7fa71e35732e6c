//! Kerberos against the lab's WinRM endpoint, with independent clients and a real KDC: the
//! Samba AD DC issues the tickets, `SambaAd::add_http_service` registers `HTTP/<fqdn>` and
//! exports the keytab the lab server decrypts them with; pywinrm (`transport="kerberos"`,
//! pykerberos/MIT krb5: raw krb5 under `Negotiate`) and pypsrp (`auth="kerberos"` and
//! `"negotiate"`, pyspnego: raw krb5 and SPNEGO) authenticate from a `kinit` ticket cache,
//! with MS-WSMV message encryption on HTTP and over HTTPS with the lab CA.
//!
//! Skipped (with a `SKIPPED:` line) without Samba, MIT `kinit` or the Python packages;
//! a failure instead under `EXCH_REVOKE_REQUIRE_SAMBA=1` (or `EXCH_REVOKE_REQUIRE_PYWINRM=1`).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod winrm_harness;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use exch_lab::fleet::{Fleet, ServerSpec};
use exch_lab::winrm::{KerberosAcceptorConfig, WinRmStats};
use exch_samba::{AdUser, HttpService, SambaAd};
use secrecy::SecretString;
use winrm_harness::{python_has, run_script, Krb5Env};

const SUITE: &str = "exch-lab winrm kerberos (Samba KDC)";

fn required() -> bool {
    ["EXCH_REVOKE_REQUIRE_SAMBA", "EXCH_REVOKE_REQUIRE_PYWINRM"]
        .iter()
        .any(|v| std::env::var(v).as_deref() == Ok("1"))
}

/// `None` after printing `SKIPPED:` (or a panic when required) if `what` is missing.
fn need(ok: bool, what: &str) -> Option<()> {
    if ok {
        return Some(());
    }
    if required() {
        panic!("{SUITE}: {what} is required (EXCH_REVOKE_REQUIRE_SAMBA=1) but missing");
    }
    exch_lab::samba::record_skip(&format!("{SUITE}: {what} missing; run scripts/test.sh"));
    None
}

/// A lab server whose endpoint has the key of its SPN from the Samba KDC, a user of the DC
/// configured as the accepted WinRM user, and a ticket cache with that user's TGT.
struct KerberosLab {
    ad: &'static SambaAd,
    fleet: Fleet,
    user: AdUser,
    services: Vec<HttpService>,
    krb5_conf: PathBuf,
    ccache: PathBuf,
    ca: PathBuf,
}

impl KerberosLab {
    async fn start() -> Option<KerberosLab> {
        // `RUST_LOG=exch_lab=debug` shows why the endpoint refused a token.
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
        for module in ["winrm", "kerberos", "pypsrp", "spnego", "gssapi"] {
            need(
                python_has(module),
                &format!("python module {module} (pip install 'pywinrm[kerberos]' 'pypsrp[kerberos]' 'pyspnego[kerberos]')"),
            )?;
        }
        let krb5_conf = env.krb5_conf.clone().unwrap();
        let name = SambaAd::unique_name("kx").to_ascii_uppercase();
        let fqdn = format!("{}.{}", name.to_ascii_lowercase(), env.dns_domain());
        let service = {
            let fqdn = fqdn.clone();
            tokio::task::spawn_blocking(move || ad.add_http_service(&fqdn))
                .await
                .unwrap()
                .unwrap()
        };
        let sam = SambaAd::unique_name("krbu");
        let password = "Krb-WinRM-Passw0rd!1";
        let user = ad
            .create_user(&sam, &SecretString::from(password))
            .await
            .unwrap();
        let fleet = Fleet::builder()
            .directory(Arc::new(exch_directory::InMemoryDirectory::new()))
            .dns_domain(env.dns_domain())
            .server(ServerSpec::exchange_2019(name.clone()))
            .winrm_credentials(
                format!("{}\\{sam}", env.domain),
                SecretString::from(password),
            )
            .winrm_kerberos_keytab(name, &service.keytab)
            .winrm_https(true)
            .build()
            .await
            .unwrap();
        let ccache = std::env::temp_dir().join(format!("exch-lab-krb5cc-{sam}"));
        let ca = std::env::temp_dir().join(format!("exch-lab-krb-ca-{sam}.pem"));
        std::fs::write(&ca, fleet.winrm_ca_pem().unwrap()).unwrap();
        let lab = KerberosLab {
            ad,
            fleet,
            user,
            services: vec![service],
            krb5_conf,
            ccache,
            ca,
        };
        lab.kinit(&lab.principal(), password, &lab.ccache);
        Some(lab)
    }

    fn principal(&self) -> String {
        format!("{}@{}", self.user.sam, self.ad.env().realm)
    }

    fn fqdn(&self) -> &str {
        &self.fleet.servers()[0].exchange_server().fqdn
    }

    fn stats(&self) -> WinRmStats {
        self.fleet.servers()[0].winrm_stats()
    }

    /// `kinit principal` into `ccache`, password on stdin.
    fn kinit(&self, principal: &str, password: &str, ccache: &Path) {
        use std::io::Write;
        let mut child = std::process::Command::new("kinit")
            .arg(principal)
            .env("KRB5_CONFIG", &self.krb5_conf)
            .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kinit {principal}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `script` (under scripts/) with `args` and the ticket cache `ccache`: (exit code,
    /// JSON printed).
    async fn run(&self, script: &str, args: &[&str], ccache: &Path) -> (i32, serde_json::Value) {
        let krb5 = Krb5Env {
            krb5_conf: &self.krb5_conf,
            ccache,
        };
        run_script(script, args, Some(krb5)).await
    }

    /// `pywinrm-check.py` with `transport="kerberos"` as `principal` (from `ccache`) against
    /// `url`, asking for a ticket for `HTTP/<spn_host>`; `extra` arguments appended.
    async fn pywinrm_kerberos(
        &self,
        url: &str,
        principal: &str,
        spn_host: &str,
        extra: &[&str],
        ccache: &Path,
    ) -> (i32, serde_json::Value) {
        let mut args = vec![
            url,
            principal,
            "",
            "--transport",
            "kerberos",
            "--hostname-override",
            spn_host,
        ];
        args.extend_from_slice(extra);
        self.run("pywinrm-check.py", &args, ccache).await
    }

    async fn cleanup(self) {
        self.fleet.shutdown().await;
        self.ad.delete(&self.user.dn).await.unwrap();
        for s in &self.services {
            self.ad.delete(&s.account_dn).await.unwrap();
            let _ = std::fs::remove_file(&s.keytab);
        }
        let _ = std::fs::remove_file(&self.ccache);
        let _ = std::fs::remove_file(&self.ca);
    }
}

fn assert_ran(json: &serde_json::Value) {
    assert_eq!(json["ps"]["status_code"], 0, "{json}");
    let pools: serde_json::Value =
        serde_json::from_str(json["ps"]["std_out"].as_str().unwrap().trim()).unwrap();
    assert!(
        pools["pools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "MSExchangeOWAAppPool"),
        "{json}"
    );
    assert_eq!(json["cmd"]["status_code"], 0, "{json}");
    assert!(json["cmd"]["std_out"].as_str().unwrap().contains("W3SVC"));
}

#[tokio::test]
async fn pywinrm_kerberos_with_encryption_runs_powershell_and_cmd() {
    let Some(lab) = KerberosLab::start().await else {
        return;
    };
    let server = &lab.fleet.servers()[0];
    let principal = lab.principal();
    // Plain HTTP: every body sealed with the Kerberos context (pywinrm frames it as
    // HTTP-SPNEGO-session-encrypted after `Negotiate`).
    let url = server.winrm_url();
    let (code, json) = lab
        .pywinrm_kerberos(
            &url,
            &principal,
            lab.fqdn(),
            &["--encryption", "always"],
            &lab.ccache,
        )
        .await;
    assert_eq!(code, 0, "{json}");
    assert_ran(&json);
    let http = lab.stats();
    assert!(http.kerberos_logons >= 1, "{http:?}");
    assert_eq!(
        http.auth_challenges, 0,
        "Kerberos is one round trip: {http:?}"
    );
    assert_eq!(http.plaintext_refused, 0, "{http:?}");
    assert_eq!((http.create, http.delete, http.open_shells), (3, 3, 0));

    // HTTPS with the lab CA: plain SOAP inside TLS, mutual-auth token on the first reply.
    let url = server.winrm_https_url().unwrap();
    let (code, json) = lab
        .pywinrm_kerberos(
            &url,
            &principal,
            lab.fqdn(),
            &["--encryption", "auto", "--ca", lab.ca.to_str().unwrap()],
            &lab.ccache,
        )
        .await;
    assert_eq!(code, 0, "{json}");
    assert_ran(&json);
    let https = lab.stats();
    assert!(https.kerberos_logons > http.kerberos_logons, "{https:?}");
    assert_eq!(https.create, 6, "{https:?}");
    lab.cleanup().await;
}

#[tokio::test]
async fn pypsrp_kerberos_and_spnego_with_encryption_run_commands() {
    let Some(lab) = KerberosLab::start().await else {
        return;
    };
    let url = lab.fleet.servers()[0].winrm_url();
    let principal = lab.principal();
    let mut before = lab.stats();
    // `kerberos`: raw krb5; `negotiate`: SPNEGO NegTokenInit around the AP-REQ (the ticket
    // cache makes pyspnego pick Kerberos; the empty password leaves NTLM no chance).
    for auth in ["kerberos", "negotiate"] {
        let (code, json) = lab
            .run(
                "pypsrp-check.py",
                &[
                    &url,
                    &principal,
                    "",
                    "--auth",
                    auth,
                    "--encryption",
                    "always",
                    "--hostname-override",
                    lab.fqdn(),
                ],
                &lab.ccache,
            )
            .await;
        assert_eq!(code, 0, "{auth}: {json}");
        assert_eq!(json["cmd"]["status_code"], 0, "{auth}: {json}");
        assert!(json["cmd"]["std_out"].as_str().unwrap().contains("W3SVC"));
        assert_eq!(json["ps"]["status_code"], 0, "{auth}: {json}");
        assert!(
            json["ps"]["std_out"].as_str().unwrap().contains("Started"),
            "{auth}: {json}"
        );
        let after = lab.stats();
        assert!(
            after.kerberos_logons > before.kerberos_logons,
            "{auth}: {after:?}"
        );
        assert!(after.create >= before.create + 2, "{auth}: {after:?}");
        assert_eq!(after.plaintext_refused, 0, "{auth}: {after:?}");
        before = after;
    }
    lab.cleanup().await;
}

#[tokio::test]
async fn a_ticket_for_another_spn_or_another_user_is_refused() {
    let Some(mut lab) = KerberosLab::start().await else {
        return;
    };
    let url = lab.fleet.servers()[0].winrm_url();
    let principal = lab.principal();
    // A real ticket, from the same KDC, for another server's SPN: the lab's key cannot
    // decrypt it (and its sname is not the lab's).
    let other_fqdn = format!(
        "{}.{}",
        SambaAd::unique_name("ko").to_ascii_lowercase(),
        lab.ad.env().dns_domain()
    );
    let other = {
        let (ad, fqdn) = (lab.ad, other_fqdn.clone());
        tokio::task::spawn_blocking(move || ad.add_http_service(&fqdn))
            .await
            .unwrap()
            .unwrap()
    };
    lab.services.push(other);
    let (code, json) = lab
        .pywinrm_kerberos(&url, &principal, &other_fqdn, &[], &lab.ccache)
        .await;
    assert_eq!(code, 2, "{json}");
    let stats = lab.stats();
    assert_eq!(
        (stats.kerberos_logons, stats.create, stats.command),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.unauthorized >= 1, "{stats:?}");

    // A valid ticket for the right SPN, for a user that is not the configured one.
    let sam = SambaAd::unique_name("krbo");
    let password = "Krb-Other-Passw0rd!1";
    let stranger = lab
        .ad
        .create_user(&sam, &SecretString::from(password))
        .await
        .unwrap();
    let ccache = std::env::temp_dir().join(format!("exch-lab-krb5cc-{sam}"));
    let stranger_principal = format!("{sam}@{}", lab.ad.env().realm);
    lab.kinit(&stranger_principal, password, &ccache);
    let (code, json) = lab
        .pywinrm_kerberos(&url, &stranger_principal, lab.fqdn(), &[], &ccache)
        .await;
    assert_eq!(code, 2, "{json}");
    let stats = lab.stats();
    assert_eq!((stats.kerberos_logons, stats.create), (0, 0), "{stats:?}");
    let _ = std::fs::remove_file(&ccache);
    lab.ad.delete(&stranger.dn).await.unwrap();
    lab.cleanup().await;
}

#[tokio::test]
async fn a_stale_service_key_or_clock_skew_is_refused() {
    let Some(lab) = KerberosLab::start().await else {
        return;
    };
    let principal = lab.principal();
    let name = lab.fleet.servers()[0].name().to_owned();
    let spn = format!("HTTP/{}", lab.fqdn());
    // The same server name and SPN, in fleets of their own: one with a key the KDC no
    // longer uses (a stale keytab after a password change of the computer account), one
    // that tolerates no clock difference at all (sspi checks the authenticator's time
    // against the real clock, which the lab cannot shift; a zero tolerance stands in for a
    // server whose clock is off).
    let stale = KerberosAcceptorConfig::from_key(spn.clone(), 18, vec![0x42; 32]).unwrap();
    let strict = KerberosAcceptorConfig::from_keytab(spn, &lab.services[0].keytab)
        .unwrap()
        .with_max_skew(std::time::Duration::ZERO);
    for (what, config) in [("stale key", stale), ("clock skew", strict)] {
        let fleet = Fleet::builder()
            .directory(Arc::new(exch_directory::InMemoryDirectory::new()))
            .dns_domain(lab.ad.env().dns_domain())
            .server(ServerSpec::exchange_2019(name.clone()))
            .winrm_credentials(lab.fleet.winrm_user(), lab.fleet.winrm_password().clone())
            .winrm_kerberos(name.clone(), config)
            .build()
            .await
            .unwrap();
        let server = &fleet.servers()[0];
        let (code, json) = lab
            .pywinrm_kerberos(
                &server.winrm_url(),
                &principal,
                lab.fqdn(),
                &[],
                &lab.ccache,
            )
            .await;
        assert_eq!(code, 2, "{what}: {json}");
        let stats = server.winrm_stats();
        assert_eq!(
            (stats.kerberos_logons, stats.create),
            (0, 0),
            "{what}: {stats:?}"
        );
        assert!(stats.unauthorized >= 1, "{what}: {stats:?}");
        fleet.shutdown().await;
    }
    lab.cleanup().await;
}
