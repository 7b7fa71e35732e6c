//! `LdapDirectory` against a real Samba AD DC (see exch-samba): the conformance suite plus
//! the transport, concurrency and discovery checks that only a real server can show.
//! Skipped (with a SKIPPED line) when no DC is available, failed when
//! EXCH_REVOKE_REQUIRE_SAMBA=1.

use std::time::Duration;

use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::conformance::{self, FixtureUser};
use exch_directory::{
    AuthResult, ChangeOutcome, Directory, DirectoryError, Dn, LdapDirectory, UserAccountControl,
    UserRef,
};
use exch_samba::SambaAd;
use secrecy::SecretString;

const SUITE: &str = "exch-directory ldap_samba";
const OLD: &str = "Old-Passw0rd!";

fn ad() -> Option<&'static SambaAd> {
    SambaAd::require(SUITE)
}

async fn connect(ad: &SambaAd, url: &str, starttls: bool) -> Result<LdapDirectory, DirectoryError> {
    connect_with(ad, url, starttls, false).await
}

async fn connect_with(
    ad: &SambaAd,
    url: &str,
    starttls: bool,
    allow_plaintext_bind: bool,
) -> Result<LdapDirectory, DirectoryError> {
    ad.env()
        .directory_at(url)
        .starttls(starttls)
        .allow_plaintext_bind(allow_plaintext_bind)
        .timeout(Duration::from_secs(15))
        .build()
        .await
}

async fn ldaps(ad: &SambaAd) -> LdapDirectory {
    connect(ad, &ad.env().url_ldaps, false)
        .await
        .expect("LDAPS connect")
}

async fn user(ad: &SambaAd, prefix: &str) -> FixtureUser {
    let sam = SambaAd::unique_name(prefix);
    let pw = SecretString::from(OLD.to_owned());
    let u = ad.create_user(&sam, &pw).await.expect("create user");
    FixtureUser {
        sam: u.sam,
        upn: u.upn,
        dn: u.dn,
        domain: ad.env().domain.clone(),
        password: pw,
    }
}

/// A conformance case on one fresh user over LDAPS: the test skips without a DC, and the user
/// is deleted afterwards.
macro_rules! one_user_case {
    ($name:ident, $prefix:literal, |$ad:ident, $dir:ident, $u:ident| $body:expr) => {
        #[tokio::test]
        async fn $name() {
            let Some($ad) = ad() else { return };
            let $dir = ldaps($ad).await;
            let $u = user($ad, $prefix).await;
            $body.await;
            $ad.delete(&$u.dn).await.unwrap();
        }
    };
}

one_user_case!(find_by_every_form, "find", |ad, dir, u| {
    conformance::find_by_every_form(&dir, &u)
});

#[tokio::test]
async fn ambiguous_mail() {
    let Some(ad) = ad() else { return };
    let dir = ldaps(ad).await;
    let mail = format!("{}@lab.example.test", SambaAd::unique_name("team"));
    let pw = SecretString::from(OLD.to_owned());
    let a = ad
        .create_user_with(&SambaAd::unique_name("amb"), &pw, Some(&mail), None)
        .await
        .unwrap();
    let b = ad
        .create_user_with(&SambaAd::unique_name("amb"), &pw, Some(&mail), None)
        .await
        .unwrap();
    conformance::ambiguous_is_an_error(&dir, &mail, [a.dn.as_str(), b.dn.as_str()]).await;
    // A UPN match wins over mail matches: not ambiguous.
    let found = dir
        .find_account(&UserRef::parse(&a.upn).unwrap())
        .await
        .unwrap();
    assert_eq!(found.dn.as_str(), a.dn);
    ad.delete(&a.dn).await.unwrap();
    ad.delete(&b.dn).await.unwrap();
}

one_user_case!(injection_finds_nothing, "inj", |ad, dir, u| {
    conformance::injection_finds_nothing(&dir, &u, &ad.env().base_dn)
});

one_user_case!(disable_enable_idempotent, "dis", |ad, dir, u| {
    conformance::disable_enable_idempotent(&dir, &u)
});

one_user_case!(logon_name_forms, "logon", |ad, dir, u| {
    conformance::logon_name_forms(&dir, &u)
});

/// Logons reuse idle connections (one bind each, no new TLS handshake): a connection last bound
/// as one user must judge the next user's password on its own, in every order, also when many
/// logons run at once and after a refusal.
#[tokio::test]
async fn reused_logon_connections_judge_each_logon_afresh() {
    let Some(ad) = ad() else { return };
    let dir = ldaps(ad).await;
    let a = user(ad, "logona").await;
    let b = user(ad, "logonb").await;
    let wrong = SecretString::from("not-the-password".to_owned());
    for _ in 0..3 {
        assert_eq!(
            dir.authenticate(&a.upn, &a.password).await.unwrap(),
            AuthResult::Success
        );
        assert_eq!(
            dir.authenticate(&b.upn, &wrong).await.unwrap(),
            AuthResult::BadCredentials
        );
        assert_eq!(
            dir.authenticate(&b.upn, &b.password).await.unwrap(),
            AuthResult::Success
        );
        assert_eq!(
            dir.authenticate(&a.upn, &wrong).await.unwrap(),
            AuthResult::BadCredentials
        );
    }
    let logons = (0..24).map(|i| {
        let (u, pw, want) = match i % 3 {
            0 => (&a, &a.password, AuthResult::Success),
            1 => (&b, &b.password, AuthResult::Success),
            _ => (&a, &wrong, AuthResult::BadCredentials),
        };
        let dir = &dir;
        async move { (dir.authenticate(&u.upn, pw).await.unwrap(), want) }
    });
    for (got, want) in futures::future::join_all(logons).await {
        assert_eq!(got, want);
    }
    // A kept connection last bound as `a` does not carry `a`'s rights into a later refusal.
    let account = dir
        .find_account(&UserRef::parse(&a.upn).unwrap())
        .await
        .unwrap();
    dir.disable_account(&account).await.unwrap();
    assert_eq!(
        dir.authenticate(&a.upn, &a.password).await.unwrap(),
        AuthResult::AccountDisabled
    );
    ad.delete(&a.dn).await.unwrap();
    ad.delete(&b.dn).await.unwrap();
}

/// create user → bind works → disable → AccountDisabled → reset over LDAPS → old password
/// refused, new one AccountDisabled until re-enable, then Success.
#[tokio::test]
async fn compromised_user_flow_over_ldaps() {
    let Some(ad) = ad() else { return };
    let dir = ldaps(ad).await;
    let u = user(ad, "flow").await;
    let new = exch_directory::generate_password();
    conformance::reset_password_flow(&dir, &u, &new).await;
    // Independent of the library: the harness's own bind agrees.
    assert_eq!(ad.try_bind(&u.upn, &new).await.unwrap().rc, 0);
    let old = ad.try_bind(&u.upn, &u.password).await.unwrap();
    assert_eq!(old.rc, 49, "{old:?}");
    assert!(old.text.contains("52e"), "{old:?}");
    ad.delete(&u.dn).await.unwrap();
}

/// Plain ldap:// without StartTLS: the service bind is refused before connecting unless the
/// caller opts out; with the opt-out (named in the security notes), the library still refuses
/// the reset (and logons) before sending anything, although this Samba would accept unicodePwd
/// in clear text; the password stays.
#[tokio::test]
async fn reset_over_plain_ldap_is_refused_by_the_library() {
    let Some(ad) = ad() else { return };
    let u = user(ad, "plain").await;
    let e = connect(ad, &ad.env().url_ldap, false).await.unwrap_err();
    assert!(matches!(e, DirectoryError::InsecureTransport { .. }), "{e}");
    match connect_with(ad, &ad.env().url_ldap, false, true).await {
        Ok(dir) => {
            assert!(!dir.is_encrypted());
            let notes = dir.security_notes();
            assert!(
                notes.len() == 1 && notes[0].contains("allow_plaintext_bind"),
                "{notes:?}"
            );
            let a = dir
                .find_account(&UserRef::parse(&u.upn).unwrap())
                .await
                .unwrap();
            let e = dir
                .reset_password(&a, &SecretString::from("Plain-Passw0rd!".to_owned()))
                .await
                .unwrap_err();
            assert!(matches!(e, DirectoryError::InsecureTransport { .. }), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&ad.env().url_ldap) && msg.contains("StartTLS"),
                "{msg}"
            );
            let e = dir.authenticate(&u.upn, &u.password).await.unwrap_err();
            assert!(matches!(e, DirectoryError::InsecureTransport { .. }), "{e}");
        }
        // A DC started with AD_ALLOW_PLAIN_BIND=0 refuses the service bind itself.
        Err(e) => assert!(matches!(e, DirectoryError::InsecureTransport { .. }), "{e}"),
    }
    let still = ad.try_bind(&u.upn, &u.password).await.unwrap();
    assert_eq!(still.rc, 0, "password must be unchanged: {still:?}");
    let plain = ad
        .try_bind(&u.upn, &SecretString::from("Plain-Passw0rd!".to_owned()))
        .await
        .unwrap();
    assert_eq!(plain.rc, 49);
    ad.delete(&u.dn).await.unwrap();
}

#[tokio::test]
async fn starttls_path_works() {
    let Some(ad) = ad() else { return };
    let dir = connect(ad, &ad.env().url_ldap, true)
        .await
        .expect("StartTLS connect");
    assert!(dir.is_encrypted());
    let u = user(ad, "stls").await;
    let a = dir
        .find_account(&UserRef::parse(&u.upn).unwrap())
        .await
        .unwrap();
    let new = exch_directory::generate_password();
    assert_eq!(
        dir.reset_password(&a, &new).await.unwrap(),
        ChangeOutcome::Applied
    );
    assert_eq!(
        dir.authenticate(&u.upn, &new).await.unwrap(),
        AuthResult::Success
    );
    assert_eq!(
        dir.authenticate(&u.upn, &u.password).await.unwrap(),
        AuthResult::BadCredentials
    );
    assert_eq!(ad.try_bind(&u.upn, &new).await.unwrap().rc, 0);
    ad.delete(&u.dn).await.unwrap();
}

/// A change between our read and our write is detected, not overwritten.
#[tokio::test]
async fn concurrent_change_is_detected() {
    let Some(ad) = ad() else { return };
    let dir = ldaps(ad).await;
    let u = user(ad, "conc").await;
    let a = dir
        .find_account(&UserRef::parse(&u.dn).unwrap())
        .await
        .unwrap();
    assert_eq!(a.user_account_control.0, 512);
    // Someone else sets DONT_EXPIRE_PASSWORD after we read.
    ad.replace_attribute(&u.dn, "userAccountControl", "66048")
        .await
        .unwrap();
    let e = dir
        .swap_user_account_control(
            &a.dn,
            a.user_account_control,
            a.user_account_control.disabled(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, DirectoryError::ConcurrentModification { .. }),
        "{e}"
    );
    assert!(e.is_transient());
    assert_eq!(
        ad.read_attribute(&u.dn, "userAccountControl")
            .await
            .unwrap()
            .as_deref(),
        Some("66048")
    );
    // disable_account reads afresh and keeps the other writer's bit.
    assert_eq!(
        dir.disable_account(&a).await.unwrap(),
        ChangeOutcome::Applied
    );
    let now = dir.find_account(&UserRef::Dn(a.dn.clone())).await.unwrap();
    assert_eq!(now.user_account_control, UserAccountControl(66048 | 2));
    ad.delete(&u.dn).await.unwrap();
}

#[tokio::test]
async fn discovery_finds_the_harness_servers() {
    let Some(ad) = ad() else { return };
    let dir = ldaps(ad).await;
    let site = SambaAd::unique_name("Site");
    let ex = SambaAd::unique_name("EX");
    let edge = SambaAd::unique_name("EDGE");
    let v2019 = ExchangeVersion::new(15, 2, 1258);
    let v2016 = ExchangeVersion::new(15, 1, 2507);
    let mbx = ServerRoles::from_bits(2 | 4 | 16 | 32 | 16384);
    let ex_dn = ad
        .add_exchange_server(
            &ex,
            &format!("{}.lab.example.test", ex.to_lowercase()),
            v2019,
            mbx,
            Some(&site),
        )
        .await
        .unwrap();
    let edge_dn = ad
        .add_exchange_server(
            &edge,
            &format!("{}.dmz.example.test", edge.to_lowercase()),
            v2016,
            ServerRoles::EDGE,
            None,
        )
        .await
        .unwrap();
    // serialNumber carries no revision here, so the discovered version equals these.
    let expected = vec![
        ExchangeServer::new(
            ex.clone(),
            format!("{}.lab.example.test", ex.to_lowercase()),
        )
        .with_version(v2019)
        .with_roles(mbx)
        .with_site(site.clone()),
        ExchangeServer::new(
            edge.clone(),
            format!("{}.dmz.example.test", edge.to_lowercase()),
        )
        .with_version(v2016)
        .with_roles(ServerRoles::EDGE),
    ];
    conformance::exchange_servers_listed(&dir, &expected).await;
    let found = dir.exchange_servers().await.unwrap();
    let got = found.iter().find(|s| s.name == ex).unwrap();
    assert_eq!(got.dn.as_deref(), Some(ex_dn.as_str()));
    assert!(!got.is_edge() && found.iter().find(|s| s.name == edge).unwrap().is_edge());
    ad.delete(&ex_dn).await.unwrap();
    ad.delete(&edge_dn).await.unwrap();
    ad.delete(&format!("CN={site},CN=Sites,{}", ad.env().config_dn))
        .await
        .unwrap();
    let after = dir.exchange_servers().await.unwrap();
    assert!(!after.iter().any(|s| s.name == ex || s.name == edge));
}

#[tokio::test]
async fn domain_controllers_and_account_on() {
    let Some(ad) = ad() else { return };
    let dir = ldaps(ad).await;
    let u = user(ad, "dcs").await;
    let dcs = dir.domain_controllers().await.unwrap();
    assert_eq!(dcs.len(), 1, "{dcs:?}");
    assert_eq!(dcs[0].name, "DC1");
    assert_eq!(dcs[0].dns_host_name, "dc1.lab.example.test");
    assert_eq!(dcs[0].site.as_deref(), Some("Default-First-Site-Name"));
    assert_eq!(
        dcs[0].url.as_deref(),
        Some(ad.env().url_ldaps.as_str()),
        "the DC we talk to gets our URL"
    );
    conformance::domain_controllers_agree(&dir, &u).await;
    let a = dir
        .find_account(&UserRef::parse(&u.upn).unwrap())
        .await
        .unwrap();
    dir.disable_account(&a).await.unwrap();
    assert!(dir
        .account_on(&dcs[0], &Dn(u.dn.clone()))
        .await
        .unwrap()
        .is_disabled());
    // Not reachable: a DC whose name does not resolve is an Unreachable error naming it.
    let mut ghost = dcs[0].clone();
    ghost.url = None;
    ghost.dns_host_name = "ghost-dc.invalid".into();
    let e = dir.account_on(&ghost, &Dn(u.dn.clone())).await.unwrap_err();
    assert!(
        e.is_transient() && e.to_string().contains("ghost-dc.invalid"),
        "{e}"
    );
    ad.delete(&u.dn).await.unwrap();
}

#[tokio::test]
async fn bad_service_credentials_and_untrusted_ca() {
    let Some(ad) = ad() else { return };
    let env = ad.env();
    let e = env
        .directory()
        .bind(
            env.admin_bind.clone(),
            SecretString::from("Wr0ng-Admin-Pw!".to_owned()),
        )
        .build()
        .await
        .unwrap_err();
    assert!(matches!(e, DirectoryError::BindFailed { .. }), "{e}");
    assert!(e.to_string().contains("52e"), "{e}");
    assert!(!format!("{e}{e:?}").contains("Wr0ng-Admin-Pw!"));
    // The DC's own certificate is not a CA: the chain cannot be verified.
    let leaf = env.ca_file.with_file_name("cert.pem");
    let e = env.directory().ca_file(&leaf).build().await.unwrap_err();
    assert!(matches!(e, DirectoryError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("ca_file"), "{e}");
}

#[tokio::test]
async fn connection_is_reused_and_debug_has_no_secret() {
    let Some(ad) = ad() else { return };
    // A TCP relay in front of the DC that counts the connections made through it (it listens
    // on the DC's IP, which the DC's certificate names).
    let upstream: std::net::SocketAddr = ad
        .env()
        .url_ldaps
        .trim_start_matches("ldaps://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let listener = tokio::net::TcpListener::bind((upstream.ip(), 0))
        .await
        .unwrap();
    let relay = format!("ldaps://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let relay_task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    let dir = connect(ad, &relay, false)
        .await
        .expect("LDAPS via the relay");
    let u = user(ad, "reuse").await;
    let r = UserRef::parse(&u.upn).unwrap();
    let after_build = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(after_build >= 1, "the build made no connection");
    for _ in 0..20 {
        dir.find_account(&r).await.unwrap();
    }
    let after = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        after,
        after_build,
        "20 find_account calls opened {} new connection(s)",
        after - after_build
    );
    let dbg = format!("{dir:?}");
    assert!(
        !dbg.contains(secrecy::ExposeSecret::expose_secret(
            &ad.env().admin_password
        )),
        "{dbg}"
    );
    relay_task.abort();
    ad.delete(&u.dn).await.unwrap();
}

/// `n` fixture users created a few at a time, in order.
async fn users(ad: &SambaAd, prefix: &str, n: usize) -> Vec<FixtureUser> {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|_| user(ad, prefix))
        .buffered(8)
        .collect()
        .await
}

async fn delete_all(ad: &SambaAd, dns: impl IntoIterator<Item = String>) {
    use futures::StreamExt;
    let deleted: Vec<_> = futures::stream::iter(dns)
        .map(|dn| async move { ad.delete(&dn).await.map_err(|e| format!("{dn}: {e}")) })
        .buffer_unordered(8)
        .collect()
        .await;
    let failed: Vec<String> = deleted.into_iter().filter_map(Result::err).collect();
    assert!(failed.is_empty(), "delete failed: {failed:?}");
}

/// find_accounts and accounts_on over 104 users (more than one chunk of 100) plus two that
/// share a `mail`; the DC's own computer object is the non-user DN.
#[tokio::test]
async fn bulk_reads_in_order() {
    let Some(ad) = ad() else { return };
    let dir = ldaps(ad).await;
    let t0 = std::time::Instant::now();
    let many = users(ad, "bulk", 104).await;
    let mail = format!("{}@lab.example.test", SambaAd::unique_name("team"));
    let pw = SecretString::from(OLD.to_owned());
    let mut shared = Vec::new();
    for _ in 0..2 {
        let u = ad
            .create_user_with(&SambaAd::unique_name("bulkm"), &pw, Some(&mail), None)
            .await
            .unwrap();
        shared.push(u.dn);
    }
    eprintln!(
        "bulk_reads_in_order: 106 users created in {:?}",
        t0.elapsed()
    );
    let t1 = std::time::Instant::now();
    conformance::find_accounts_in_order(&dir, &many, &mail).await;
    eprintln!("find_accounts_in_order: {:?}", t1.elapsed());
    let dcs = dir.domain_controllers().await.unwrap();
    let computer = format!(
        "CN={},OU=Domain Controllers,{}",
        dcs[0].name,
        ad.env().base_dn
    );
    assert!(
        ad.read_attribute(&computer, "sAMAccountName")
            .await
            .unwrap()
            .is_some(),
        "{computer} exists"
    );
    let t2 = std::time::Instant::now();
    conformance::accounts_on_in_order(&dir, &dcs[0], &many, &Dn(computer)).await;
    eprintln!("accounts_on_in_order: {:?}", t2.elapsed());
    delete_all(ad, many.into_iter().map(|u| u.dn).chain(shared)).await;
}

#[tokio::test]
async fn disable_and_reset_flow() {
    let Some(ad) = ad() else { return };
    let dir = ldaps(ad).await;
    let u = user(ad, "dnr").await;
    let new = exch_directory::generate_password();
    conformance::disable_and_reset_flow(&dir, &u, &new).await;
    assert_eq!(ad.try_bind(&u.upn, &new).await.unwrap().rc, 0);
    ad.delete(&u.dn).await.unwrap();
}

/// As concurrent_change_is_detected, through disable_and_reset: the guarded swap from the
/// stale value is refused and the fallback keeps the other writer's bit.
#[tokio::test]
async fn disable_and_reset_keeps_concurrent_change() {
    let Some(ad) = ad() else { return };
    let dir = ldaps(ad).await;
    let u = user(ad, "dnrconc").await;
    let stale = dir
        .find_account(&UserRef::parse(&u.dn).unwrap())
        .await
        .unwrap();
    ad.replace_attribute(&u.dn, "userAccountControl", "66048")
        .await
        .unwrap();
    let new = exch_directory::generate_password();
    conformance::disable_and_reset_keeps_concurrent_change(&dir, &u, &stale, &new).await;
    assert_eq!(
        ad.read_attribute(&u.dn, "userAccountControl")
            .await
            .unwrap()
            .as_deref(),
        Some("66048")
    );
    ad.delete(&u.dn).await.unwrap();
}
