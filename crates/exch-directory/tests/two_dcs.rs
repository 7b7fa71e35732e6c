//! `LdapDirectory` against two real Samba AD DCs of one domain with DRS replication
//! (`exch_samba::SambaPair`, `scripts/samba-ad-pair.sh`): both DCs discovered from their
//! `nTDSDSA` objects, the account read on each over LDAPS with the lab CA, and what each DC
//! shows checked against a plain LDAP read of that DC. Skipped (with a SKIPPED line) when no
//! pair is available, failed when EXCH_REVOKE_REQUIRE_SAMBA=1.

use std::time::{Duration, Instant};

use exch_directory::{Directory, DirectoryError, Dn, DomainController, LdapDirectory, UserRef};
use exch_samba::{AdUser, DcId, SambaAd, SambaPair};
use secrecy::SecretString;

const SUITE: &str = "exch-directory two_dcs";
const OLD: &str = "Old-Passw0rd!";

async fn connect(pair: &SambaPair, url: &str) -> LdapDirectory {
    pair.env()
        .directory_at(url)
        .timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap_or_else(|e| panic!("LDAPS to {url}: {e}"))
}

/// A directory connected to DC1 by its name, and the DCs it discovers.
async fn discover_from_dc1(pair: &SambaPair) -> (LdapDirectory, Vec<DomainController>) {
    let dir = connect(pair, &pair.dc(DcId::Dc1).url).await;
    let dcs = dir.domain_controllers().await.expect("discovery");
    (dir, dcs)
}

/// A fresh user `<tag>…` with the password [`OLD`].
async fn new_user(ad: &SambaAd, tag: &str) -> AdUser {
    ad.create_user(&SambaAd::unique_name(tag), &SecretString::from(OLD))
        .await
        .expect("create user")
}

fn named<'a>(dcs: &'a [DomainController], name: &str) -> &'a DomainController {
    dcs.iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no DC {name} in {dcs:?}"))
}

/// The `userAccountControl` DC `dc` holds for `dn`, read as the administrator on that DC.
async fn uac_on(pair: &SambaPair, dc: DcId, dn: &str) -> u32 {
    pair.dc(dc)
        .ad
        .read_attribute(dn, "userAccountControl")
        .await
        .expect("read on the DC")
        .expect("userAccountControl")
        .parse()
        .expect("number")
}

#[tokio::test]
async fn both_dcs_are_discovered_from_ntdsdsa_objects() {
    let Some(pair) = SambaPair::require(SUITE) else {
        return;
    };
    let _serial = pair.exclusive().await;
    let (dc1, dc2) = (pair.dc(DcId::Dc1), pair.dc(DcId::Dc2));
    // Connected to DC1 by its name: DC1 gets the directory's own URL, DC2 its dNSHostName.
    let dir = connect(pair, &dc1.url).await;
    let dcs = dir.domain_controllers().await.expect("discovery");
    assert_eq!(dcs.len(), 2, "{dcs:?}");
    let (d1, d2) = (named(&dcs, &dc1.name), named(&dcs, &dc2.name));
    assert_eq!(d1.url.as_deref(), Some(dc1.url.as_str()), "{d1:?}");
    assert_eq!(d2.url, None, "{d2:?}");
    let realm = pair.env().dns_domain();
    assert_eq!(d2.dns_host_name, format!("dc2.{realm}"));
    assert_eq!(d1.site.as_deref(), Some("Default-First-Site-Name"));
    // From DC2's side the roles swap.
    let dir2 = connect(pair, &dc2.url).await;
    let dcs2 = dir2.domain_controllers().await.expect("discovery on DC2");
    assert_eq!(
        named(&dcs2, &dc2.name).url.as_deref(),
        Some(dc2.url.as_str())
    );
    assert_eq!(named(&dcs2, &dc1.name).url, None);
}

/// DC2's inbound replication paused: the account read on each DC is what that DC holds (DC1
/// disabled, DC2 still enabled, both confirmed by a plain read of each DC); replication
/// resumed and forced: DC2 shows it too, through `account_on` and `accounts_on`.
#[tokio::test]
async fn account_is_read_on_each_dc_and_converges_on_real_replication() {
    let Some(pair) = SambaPair::require(SUITE) else {
        return;
    };
    let _serial = pair.exclusive().await;
    let ad = &pair.dc(DcId::Dc1).ad;
    let user = new_user(ad, "two").await;
    pair.blocking(|p| p.replicate_now()).await;
    let (dir, dcs) = discover_from_dc1(pair).await;
    let (d1, d2) = (named(&dcs, "DC1"), named(&dcs, "DC2"));
    let dn = Dn(user.dn.clone());
    assert!(!dir.account_on(d2, &dn).await.expect("DC2").is_disabled());

    pair.blocking(|p| p.set_inbound_replication(DcId::Dc2, false))
        .await;
    let account = dir
        .find_account(&UserRef::parse(&user.upn).unwrap())
        .await
        .unwrap();
    dir.disable_account(&account).await.expect("disable on DC1");
    // Longer than a notify round (1 s) and DC2's pull: it stays stale while paused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let on1 = dir.account_on(d1, &dn).await.expect("DC1");
    let on2 = dir.account_on(d2, &dn).await.expect("DC2");
    let (raw1, raw2) = (
        uac_on(pair, DcId::Dc1, &user.dn).await,
        uac_on(pair, DcId::Dc2, &user.dn).await,
    );
    assert!(on1.is_disabled() && raw1 & 2 == 2, "DC1: {on1:?} / {raw1}");
    assert!(!on2.is_disabled() && raw2 & 2 == 0, "DC2: {on2:?} / {raw2}");
    assert_eq!(on2.user_account_control.0, raw2);
    let bulk = dir.accounts_on(d2, std::slice::from_ref(&dn)).await;
    assert!(!bulk[0].as_ref().expect("bulk DC2").is_disabled());

    pair.blocking(|p| p.set_inbound_replication(DcId::Dc2, true))
        .await;
    pair.blocking(|p| p.replicate_now()).await;
    let on2 = dir.account_on(d2, &dn).await.expect("DC2");
    assert!(on2.is_disabled(), "{on2:?}");
    assert_eq!(
        on2.user_account_control.0,
        uac_on(pair, DcId::Dc2, &user.dn).await
    );
    assert!(dir.accounts_on(d2, &[dn]).await[0]
        .as_ref()
        .unwrap()
        .is_disabled());
    ad.delete(&user.dn).await.expect("delete");
}

/// A change made on DC1 shows on DC2 by replication alone (notify interval 1 s): polled
/// through `account_on`, within the harness's bound.
#[tokio::test]
async fn change_on_dc1_reaches_dc2_by_notification() {
    let Some(pair) = SambaPair::require(SUITE) else {
        return;
    };
    let _serial = pair.exclusive().await;
    let ad = &pair.dc(DcId::Dc1).ad;
    let user = new_user(ad, "ntf").await;
    let (dir, dcs) = discover_from_dc1(pair).await;
    let d2 = named(&dcs, "DC2");
    let dn = Dn(user.dn.clone());
    // Wait until DC2 has the user at all (the add replicates like any change).
    let t = Instant::now();
    while dir.account_on(d2, &dn).await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "user never reached DC2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let account = dir.find_account(&UserRef::Dn(dn.clone())).await.unwrap();
    dir.disable_account(&account).await.expect("disable");
    let t = Instant::now();
    loop {
        if dir.account_on(d2, &dn).await.expect("DC2").is_disabled() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "DC2 did not show the disable within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(uac_on(pair, DcId::Dc2, &user.dn).await & 2, 2);
    ad.delete(&user.dn).await.expect("delete");
}

/// DC2 stopped: reading on it is `Unreachable`, transient, and names DC2's URL; DC1 answers.
#[tokio::test]
async fn a_stopped_dc_is_named_and_transient() {
    let Some(pair) = SambaPair::require(SUITE) else {
        return;
    };
    let _serial = pair.exclusive().await;
    let (dir, dcs) = discover_from_dc1(pair).await;
    let (d1, d2) = (named(&dcs, "DC1"), named(&dcs, "DC2"));
    let admin = Dn(pair.env().admin_dn.clone());
    pair.blocking(|p| p.stop_dc(DcId::Dc2)).await;
    assert!(!pair.is_running(DcId::Dc2));
    let e = dir
        .account_on(d2, &admin)
        .await
        .expect_err("DC2 is stopped");
    let on1 = dir.account_on(d1, &admin).await;
    pair.blocking(|p| p.start_dc(DcId::Dc2)).await;
    assert!(
        matches!(e, DirectoryError::Unreachable { .. }) && e.is_transient(),
        "{e:?}"
    );
    assert!(e.to_string().contains(&pair.dc(DcId::Dc2).url), "{e}");
    on1.expect("DC1 answers while DC2 is stopped");
    // Back: the same directory reads DC2 again (a new connection).
    dir.account_on(d2, &admin).await.expect("DC2 after restart");
}
