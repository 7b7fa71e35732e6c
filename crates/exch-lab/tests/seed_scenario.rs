//! The seed scenario over real HTTP and real WinRM, against the in-memory directory:
//! logon → disable (or password reset) → still in from the cache → recycle through WinRM →
//! refused on every endpoint of every server.
#![allow(clippy::unwrap_used)]

mod fleet_support;

use std::sync::Arc;

use exch_directory::InMemoryDirectory;
use exch_lab::fleet::{Fleet, ServerSpec};
use fleet_support::scenario::{
    disable_then_recycle, recycle, recycle_before_disable_leaves_the_user_in, recycle_everywhere,
    reset_then_recycle,
};
use fleet_support::{basic, Seen};

async fn fleet(dir: &InMemoryDirectory) -> Fleet {
    Fleet::builder()
        .winrm_basic_over_http()
        .directory(Arc::new(dir.clone()))
        .registrar(dir.clone())
        .servers(2, ServerSpec::exchange_2019("EX"))
        .server(ServerSpec::exchange_2016("EX16"))
        .server(ServerSpec::exchange_2010("EX14"))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn disabled_account_stays_in_until_the_pools_recycle() {
    let dir = InMemoryDirectory::new();
    dir.add_user("erin", "erin@lab.example.test", "Erin-Passw0rd!");
    let fleet = fleet(&dir).await;
    disable_then_recycle(&fleet, &dir, "erin@lab.example.test", "Erin-Passw0rd!").await;
    fleet.shutdown().await;
    for s in fleet.servers() {
        let c = s.counters();
        assert_eq!((c.open_connections, c.open_shells), (0, 0), "{}", s.name());
        assert!(
            c.winrm_requests >= 5,
            "Create, Command, Receive, Signal, Delete"
        );
        assert!(c.iis.logons_from_cache > 0 && c.iis.logons_refused > 0);
    }
}

#[tokio::test]
async fn a_flush_before_the_change_leaves_the_sessions_in() {
    let dir = InMemoryDirectory::new();
    dir.add_user("hank", "hank@lab.example.test", "Hank-Passw0rd!");
    let fleet = fleet(&dir).await;
    recycle_before_disable_leaves_the_user_in(
        &fleet,
        &dir,
        "hank@lab.example.test",
        "Hank-Passw0rd!",
    )
    .await;
    fleet.shutdown().await;
}

#[tokio::test]
async fn old_password_stays_valid_until_the_pools_recycle() {
    let dir = InMemoryDirectory::new();
    dir.add_user("frank", "frank@lab.example.test", "Old-Blue-Sky-7!");
    let fleet = fleet(&dir).await;
    reset_then_recycle(
        &fleet,
        &dir,
        "frank@lab.example.test",
        "Old-Blue-Sky-7!",
        "New-Red-Moon-8!",
    )
    .await;
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_pool_that_fails_to_recycle_keeps_its_cache_until_the_fault_is_cleared() {
    let dir = InMemoryDirectory::new();
    dir.add_user("gina", "gina@lab.example.test", "Gina-Passw0rd!");
    let fleet = Fleet::builder()
        .winrm_basic_over_http()
        .directory(Arc::new(dir.clone()))
        .server(ServerSpec::exchange_2019("EX01"))
        .build()
        .await
        .unwrap();
    let ex = &fleet.servers()[0];
    let (user, pw) = ("gina@lab.example.test", "Gina-Passw0rd!");
    assert!(matches!(
        basic(ex, "/Microsoft-Server-ActiveSync", user, pw).await,
        Seen::Ok { .. }
    ));
    ex.fail_recycle("MSExchangeSyncAppPool");
    dir.set_user_account_control(
        &dir.accounts()[0].dn,
        dir.accounts()[0].user_account_control.disabled(),
    );
    let report = recycle(&fleet, ex).await;
    let ews = report["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "MSExchangeSyncAppPool")
        .unwrap();
    assert!(
        ews["error"].as_str().unwrap().contains("0x80070020"),
        "{ews}"
    );
    assert_eq!(ews["before"], ews["after"]);
    assert!(matches!(
        basic(ex, "/Microsoft-Server-ActiveSync", user, pw).await,
        Seen::Ok { .. }
    ));

    ex.clear_recycle_fault("MSExchangeSyncAppPool");
    recycle_everywhere(&fleet).await;
    assert_eq!(
        basic(ex, "/Microsoft-Server-ActiveSync", user, pw).await,
        Seen::Refused
    );
    fleet.shutdown().await;
}
