//! `WinRmFlusher` against the lab in the modes a Windows server can be in, and the refusals:
//! NTLM sealed over HTTP (the default everywhere), HTTPS with the lab's private CA (SHA-256 and
//! SHA-384 certificates: channel binding with the certificate's own hash), a certificate from
//! another CA, a server that offers no method we allow, and a wrong password — each a clear
//! error naming the server, never a fallback.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use exch_directory::{Directory, InMemoryDirectory};
use exch_iis::{CacheFlusher, FlushMethod, IisError, WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Fleet, FleetBuilder, ServerSpec};
use exch_lab::winrm::tls::{CertSignature, LabCa};
use secrecy::SecretString;

fn builder() -> FleetBuilder {
    let directory: Arc<dyn Directory> = Arc::new(InMemoryDirectory::new());
    Fleet::builder()
        .directory(directory)
        .server(ServerSpec::exchange_2019("EX01"))
}

fn ca_file(name: &str, pem: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exch-iis-sec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

fn base(fleet: &Fleet, auth: WinRmAuth) -> exch_iis::WinRmFlusherBuilder {
    WinRmFlusher::builder()
        .auth(auth)
        .credentials(fleet.winrm_user(), fleet.winrm_password().clone())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
}

/// Flushes the lab's only server with `flusher` and returns the error it must end in.
async fn flush_error(server: &exch_lab::fleet::LabServer, flusher: &WinRmFlusher) -> IisError {
    flusher
        .flush(server.exchange_server(), &FlushMethod::default())
        .await
        .expect_err("the flush must fail")
}

async fn https_flush(signature: CertSignature) {
    let fleet = builder()
        .winrm_https(true)
        .winrm_https_signature(signature)
        .build()
        .await
        .unwrap();
    let server = &fleet.servers()[0];
    let ca = ca_file(
        &format!("ca-{signature:?}.pem"),
        fleet.winrm_ca_pem().unwrap(),
    );
    let url = server.winrm_https_url().unwrap();
    assert!(url.starts_with("https://"), "{url}");
    let flusher = base(&fleet, WinRmAuth::Ntlm)
        .ca_file(&ca)
        .endpoint(server.name(), url)
        .build()
        .unwrap();
    assert!(flusher.security_notes().is_empty());
    let ex = server.exchange_server().clone();
    assert_eq!(flusher.method_for(&ex), "NTLM over HTTPS, channel binding");
    let pools = flusher.app_pools(&ex).await.unwrap();
    assert!(pools.len() >= 5, "{pools:?}");
    let report = flusher.flush(&ex, &FlushMethod::default()).await.unwrap();
    assert!(report.is_proven(), "{report:?}");
    let stats = server.winrm_stats();
    assert_eq!(stats.open_shells, 0);
    assert_eq!(stats.plaintext_refused, 0);
    // The AUTHENTICATE carried a channel binding, and it matched the lab's certificate hashed
    // with the certificate's own algorithm (a SHA-256 hash of a SHA-384 certificate is refused).
    assert!(stats.channel_bound >= 1, "{stats:?}");
    // Token TTL over the same authenticated connection: no new handshake.
    let conns = flusher.connections_total();
    flusher.token_cache(&ex).await.unwrap();
    assert_eq!(flusher.connections_total(), conns);
    fleet.shutdown().await;
}

#[tokio::test]
async fn https_with_the_private_ca_sha256() {
    https_flush(CertSignature::EcdsaP256Sha256).await;
}

#[tokio::test]
async fn https_with_the_private_ca_sha384_channel_binding() {
    https_flush(CertSignature::EcdsaP384Sha384).await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let fleet = builder().winrm_https(true).build().await.unwrap();
    let server = &fleet.servers()[0];
    let other = LabCa::new(CertSignature::EcdsaP256Sha256).unwrap();
    let ca = ca_file("other-ca.pem", other.pem());
    let flusher = base(&fleet, WinRmAuth::Ntlm)
        .ca_file(&ca)
        .endpoint(server.name(), server.winrm_https_url().unwrap())
        .build()
        .unwrap();
    let before = server.winrm_stats().requests;
    let e = flush_error(server, &flusher).await;
    assert!(matches!(e, IisError::Tls { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("EX01") && text.contains("ca_file"), "{text}");
    // Nothing reached the WinRM service: not even the handshake.
    assert_eq!(server.winrm_stats().requests, before);
    fleet.shutdown().await;
}

#[tokio::test]
async fn the_default_lab_refuses_basic_and_says_what_it_offers() {
    let fleet = builder().build().await.unwrap();
    let server = &fleet.servers()[0];
    let flusher = base(&fleet, WinRmAuth::Basic)
        .allow_unencrypted_basic(true)
        .endpoint(server.name(), server.winrm_url())
        .build()
        .unwrap();
    let e = flush_error(server, &flusher).await;
    match &e {
        IisError::AuthMethodUnavailable {
            server, offered, ..
        } => {
            assert_eq!(server, "EX01");
            assert!(
                offered.iter().any(|o| o == "Negotiate") && offered.iter().any(|o| o == "Kerberos"),
                "{offered:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.winrm_stats().create, 0, "no command may run");
    fleet.shutdown().await;
}

#[tokio::test]
async fn ntlm_against_a_basic_only_server_is_refused_not_downgraded() {
    let fleet = builder().winrm_basic_over_http().build().await.unwrap();
    let server = &fleet.servers()[0];
    let flusher = base(&fleet, WinRmAuth::Ntlm)
        .endpoint(server.name(), server.winrm_url())
        .build()
        .unwrap();
    let e = flush_error(server, &flusher).await;
    assert!(
        matches!(&e, IisError::AuthMethodUnavailable { offered, .. } if offered.iter().any(|o| o == "Basic")),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("never") || e.to_string().contains("enable"),
        "{e}"
    );
    assert_eq!(server.winrm_stats().create, 0);
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_is_unauthenticated_with_the_reason() {
    let fleet = builder().build().await.unwrap();
    let server = &fleet.servers()[0];
    for (user, password) in [
        (fleet.winrm_user().to_owned(), "Wrong-Pass-9"),
        ("LAB\\nobody".to_owned(), "Wrong-Pass-9"),
    ] {
        let flusher = WinRmFlusher::builder()
            .credentials(&user, SecretString::from(password.to_owned()))
            .endpoint(server.name(), server.winrm_url())
            .build()
            .unwrap();
        let e = flush_error(server, &flusher).await;
        match &e {
            IisError::Unauthenticated {
                server: name,
                user: who,
                reason,
            } => {
                assert_eq!(name, "EX01");
                assert_eq!(who, &user);
                assert!(
                    reason.contains("password") && reason.contains("unknown user"),
                    "{reason}"
                );
            }
            other => panic!("{user}: {other:?}"),
        }
        assert!(!format!("{e} {e:?}").contains(password));
    }
    assert_eq!(server.winrm_stats().create, 0);
    fleet.shutdown().await;
}

#[tokio::test]
async fn bad_settings_change_nothing_and_say_what_to_do() {
    let pw = || SecretString::from("pw".to_owned());
    let e = WinRmFlusher::builder()
        .auth(WinRmAuth::Kerberos)
        .credentials("svc@lab.example.test", pw())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("kdc"), "{e}");
    let e = WinRmFlusher::builder()
        .auth(WinRmAuth::Kerberos)
        .kdc("127.0.0.1")
        .credentials("LAB\\svc", pw())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("user@REALM"), "{e}");
    let e = WinRmFlusher::builder()
        .https(true)
        .ca_file("/nonexistent/ca.pem")
        .credentials("LAB\\svc", pw())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    let not_pem = ca_file("not-a-ca.pem", "hello");
    let e = WinRmFlusher::builder()
        .https(true)
        .ca_file(&not_pem)
        .credentials("LAB\\svc", pw())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("CERTIFICATE"), "{e}");
}
