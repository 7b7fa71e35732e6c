//! The seed scenario against a real Samba AD DC: every token-cache miss is a real LDAP bind,
//! the fleet is registered as `msExchExchangeServer` objects and found by discovery.
//! Skipped (with a `SKIPPED:` line) when no DC is available, unless
//! `EXCH_REVOKE_REQUIRE_SAMBA=1`; `scripts/test.sh` runs it.
#![allow(clippy::unwrap_used)]

mod fleet_support;

use std::sync::Arc;

use exch_directory::Directory;
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_samba::SambaAd;
use fleet_support::scenario::{disable_then_recycle, reset_then_recycle};
use secrecy::SecretString;

async fn ldap(ad: &SambaAd) -> Arc<dyn Directory> {
    let env = ad.env();
    let dir = env.directory().base_dn(env.base_dn.clone()).build().await;
    Arc::new(dir.unwrap())
}

async fn fleet(ad: &'static SambaAd, dir: Arc<dyn Directory>) -> Fleet {
    Fleet::builder()
        .winrm_basic_over_http()
        .directory(dir)
        .dns_domain(ad.env().dns_domain())
        .registrar(ad.registrar())
        .server(ServerSpec::exchange_2019(SambaAd::unique_name("EX")))
        .server(ServerSpec::exchange_2010(SambaAd::unique_name("EX14")))
        .build()
        .await
        .unwrap()
}

async fn cleanup(ad: &SambaAd, fleet: &Fleet, user_dn: &str) {
    fleet.shutdown().await;
    let names = fleet.servers().iter().map(|s| s.name());
    ad.remove_exchange_servers(names).await.unwrap();
    ad.delete(user_dn).await.unwrap();
}

#[tokio::test]
async fn samba_disabled_account_stays_in_until_the_pools_recycle() {
    let Some(ad) = SambaAd::require("exch-lab seed scenario, disable (Samba AD)") else {
        return;
    };
    let dir = ldap(ad).await;
    let pw = "Seed-Passw0rd!1";
    let user = ad
        .create_user(&SambaAd::unique_name("seedd"), &SecretString::from(pw))
        .await
        .unwrap();
    let fleet = fleet(ad, Arc::clone(&dir)).await;
    // Discovery finds the fleet in the configuration partition.
    let discovered = dir.exchange_servers().await.unwrap();
    for s in fleet.servers() {
        let found = discovered
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(s.name()))
            .unwrap_or_else(|| panic!("{} not discovered", s.name()));
        assert_eq!(found.fqdn, s.exchange_server().fqdn);
        assert_eq!(
            found.version.map(|v| v.major),
            s.exchange_server().version.map(|v| v.major)
        );
    }
    disable_then_recycle(&fleet, dir.as_ref(), &user.upn, pw).await;
    for s in fleet.servers() {
        assert!(
            s.counters().iis.logons_from_directory > 0,
            "real binds were made"
        );
    }
    cleanup(ad, &fleet, &user.dn).await;
}

#[tokio::test]
async fn samba_old_password_stays_valid_until_the_pools_recycle() {
    let Some(ad) = SambaAd::require("exch-lab seed scenario, password reset (Samba AD)") else {
        return;
    };
    let dir = ldap(ad).await;
    let (old, new) = ("Old-Blue-Sky-7!x", "New-Red-Moon-8!y");
    let user = ad
        .create_user(&SambaAd::unique_name("seedr"), &SecretString::from(old))
        .await
        .unwrap();
    let fleet = fleet(ad, Arc::clone(&dir)).await;
    reset_then_recycle(&fleet, dir.as_ref(), &user.upn, old, new).await;
    cleanup(ad, &fleet, &user.dn).await;
}
