//! The HTTP endpoints honour the mailbox's CAS settings through each worker's settings cache:
//! a lockdown made with `Set-CASMailbox` (over WinRM) or the store API keeps admitting a user
//! whose settings a worker has cached, until the pool is recycled or the cache entry's
//! lifetime passes on the lab clock; then the request is refused with a 403. A user without a
//! mailbox is unaffected.
#![allow(clippy::unwrap_used)]

mod exchange_support;
mod fleet_support;

use std::sync::Arc;
use std::time::Duration;

use exch_core::Protocol;
use exch_directory::InMemoryDirectory;
use exch_lab::catalog::VdirAuth;
use exch_lab::clock::LabClock;
use exch_lab::fleet::{Fleet, LabServer, ServerSpec};
use exch_lab::mailbox::{CasSettings, Mailbox, MobileDevice};
use exch_lab::model::DEFAULT_MAILBOX_SETTINGS_LIFETIME;
use exchange_support::{assert_parses, SNAPIN};
use fleet_support::{basic, client, every_protocol, owa_logon, owa_mailbox, run_powershell, Seen};
use reqwest::StatusCode;

const PW: &str = "Old-Passw0rd!";
const ALICE: &str = "alice@lab.example.test";
const EWS: &str = "/EWS/Exchange.asmx";
const EAS: &str = "/Microsoft-Server-ActiveSync";

/// One Exchange 2019 server; EWS and MAPI opted in to Basic (Microsoft's default is Windows
/// only) because these tests check their own per-mailbox protocol settings with Basic logons.
async fn lab(clock: LabClock) -> Fleet {
    let dir = InMemoryDirectory::new();
    dir.add_user("alice", ALICE, PW);
    dir.add_user("carol", "carol@lab.example.test", PW);
    let fleet = Fleet::builder()
        .winrm_basic_over_http()
        .directory(Arc::new(dir))
        .server(ServerSpec::exchange_2019("EX01"))
        .clock(clock)
        .mailbox(Mailbox::new("alice", ALICE))
        .build()
        .await
        .unwrap();
    for protocol in [Protocol::Ews, Protocol::Mapi] {
        fleet.servers()[0]
            .iis()
            .set_vdir_auth(protocol, VdirAuth::BasicAndWindows)
            .unwrap();
    }
    fleet
}

/// [`every_protocol`] plus EWS and MAPI, which [`lab`] opted in to Basic, in the order
/// OWA, EWS, ActiveSync, MAPI, Outlook Anywhere.
async fn every_protocol_with_ews_and_mapi(
    ex: &LabServer,
    user: &str,
    password: &str,
) -> Vec<(String, Seen)> {
    let mut seen = every_protocol(ex, user, password).await;
    let ews = basic(ex, EWS, user, password).await;
    let mapi = basic(ex, "/mapi/emsmdb", user, password).await;
    seen.insert(1, (Protocol::Ews.to_string(), ews));
    seen.insert(3, (Protocol::Mapi.to_string(), mapi));
    seen
}

/// Runs an Exchange Management Shell script on `server` over WinRM; it must succeed.
async fn shell(fleet: &Fleet, server: &LabServer, script: &str) {
    let script = format!("{SNAPIN}$ErrorActionPreference = 'Stop'\n{script}\n");
    assert_parses(&script);
    let out = run_powershell(fleet, server, &script).await.unwrap();
    assert_eq!(
        out.exit_code,
        0,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Recycles `pool` and waits until its new worker serves.
async fn recycle(server: &LabServer, pool: &str) {
    server.iis().recycle(pool).await.unwrap();
    assert!(server.iis().recycled(pool, Duration::from_secs(5)).await);
}

/// A 403 and the `Get-CASMailbox` property the lab names in `X-Lab-Cas-Block`.
#[derive(Debug, PartialEq, Eq)]
struct Forbidden {
    setting: String,
    owa_error: String,
}

async fn forbidden(response: reqwest::Response) -> Forbidden {
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let header = |n: &str| {
        response
            .headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    Forbidden {
        setting: header("x-lab-cas-block"),
        owa_error: header("x-owa-error"),
    }
}

async fn get_with_cookie(server: &LabServer, page: &str, session: &str) -> reqwest::Response {
    client()
        .get(format!("{}{page}", server.base_url()))
        .header("cookie", format!("cadata={session}"))
        .send()
        .await
        .unwrap()
}

async fn eas(server: &LabServer, user: &str, device_id: &str) -> reqwest::Response {
    client()
        .post(format!(
            "{}{EAS}?Cmd=Sync&User=alice&DeviceId={device_id}&DeviceType=iPhone",
            server.base_url()
        ))
        .basic_auth(user, Some(PW))
        .body("")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn owa_lockdown_is_served_from_the_worker_cache_until_the_pool_is_recycled() {
    let fleet = lab(LabClock::frozen()).await;
    let ex = &fleet.servers()[0];
    let (seen, session) = owa_logon(ex, ALICE, PW).await;
    assert!(matches!(seen, Seen::Ok { .. }));
    let session = session.unwrap();
    assert!(matches!(owa_mailbox(ex, &session).await, Seen::Ok { .. }));
    assert_eq!(ex.counters().iis.mailbox_settings_read, 1);

    shell(
        &fleet,
        ex,
        "Set-CASMailbox -Identity 'alice' -OWAEnabled $false",
    )
    .await;
    assert!(!fleet.mailboxes().mailbox("alice").unwrap().cas.owa_enabled);

    // The OWA worker read alice's settings before the change: it keeps admitting her.
    assert!(matches!(owa_mailbox(ex, &session).await, Seen::Ok { .. }));
    let c = ex.counters().iis;
    assert_eq!(
        (c.mailbox_settings_read, c.mailbox_settings_from_cache),
        (1, 1)
    );
    assert_eq!(c.refused_by_cas.total(), 0);

    // A new worker starts with an empty cache: the lockdown takes effect at once.
    recycle(ex, "MSExchangeOWAAppPool").await;
    let refused = forbidden(get_with_cookie(ex, "/owa/", &session).await).await;
    assert_eq!(
        refused,
        Forbidden {
            setting: "OWAEnabled".to_owned(),
            owa_error: "Microsoft.Exchange.Data.Storage.AccountDisabledException".to_owned(),
        }
    );
    // The logon itself still succeeds (the account is enabled); ECP is not locked.
    let ecp = get_with_cookie(ex, "/ecp/", &session).await;
    assert_eq!(ecp.status(), StatusCode::OK);
    let c = ex.counters().iis;
    assert_eq!(c.refused_by_cas.owa, 1);
    assert_eq!(c.refused_by_cas.total(), 1);
    assert_eq!(c.logons_refused, 0, "the directory refused nothing");

    // ECP locked through the store API: its worker cached "enabled" a moment ago.
    let mut cas = fleet.mailboxes().mailbox("alice").unwrap().cas;
    cas.ecp_enabled = false;
    fleet.mailboxes().set_cas("alice", cas).unwrap();
    assert_eq!(
        get_with_cookie(ex, "/ecp/", &session).await.status(),
        StatusCode::OK
    );
    recycle(ex, "MSExchangeECPAppPool").await;
    let refused = forbidden(get_with_cookie(ex, "/ecp/", &session).await).await;
    assert_eq!(refused.setting, "ECPEnabled");
    assert_eq!(ex.counters().iis.refused_by_cas.ecp, 1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_cached_enabled_expires_with_its_lifetime_on_the_lab_clock() {
    let clock = LabClock::frozen();
    let fleet = lab(clock.clone()).await;
    let ex = &fleet.servers()[0];
    assert!(matches!(basic(ex, EWS, ALICE, PW).await, Seen::Ok { .. }));

    let mut cas = CasSettings::default();
    cas.ews_enabled = Some(false);
    cas.mapi_block_outlook_rpc_http = true;
    fleet.mailboxes().set_cas(ALICE, cas).unwrap();

    // One second short of the lifetime: the EWS worker's copy still says enabled.
    let lifetime = DEFAULT_MAILBOX_SETTINGS_LIFETIME;
    assert_eq!(lifetime, Duration::from_secs(900));
    clock.advance(lifetime - Duration::from_secs(1));
    assert!(matches!(basic(ex, EWS, ALICE, PW).await, Seen::Ok { .. }));
    // Outlook Anywhere's worker never read alice's mailbox: it reads the lockdown now.
    assert_eq!(
        basic(ex, "/rpc/rpcproxy.dll", ALICE, PW).await,
        Seen::Status(StatusCode::FORBIDDEN)
    );

    // Use did not renew the entry: at its lifetime the worker reads the store again.
    clock.advance(Duration::from_secs(1));
    let response = client()
        .post(format!("{}{EWS}", ex.base_url()))
        .basic_auth(ALICE, Some(PW))
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden(response).await.setting, "EwsEnabled");
    let c = ex.counters().iis;
    assert_eq!((c.refused_by_cas.ews, c.refused_by_cas.rpc_http), (1, 1));
    // The token was still cached: the refusal is the mailbox's, not the directory's.
    assert_eq!((c.logons_from_directory, c.logons_refused), (2, 0));
    // MAPI is not locked.
    assert!(matches!(
        basic(ex, "/mapi/emsmdb", ALICE, PW).await,
        Seen::Ok { .. }
    ));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_blocked_device_syncs_from_the_cache_until_the_recycle() {
    let fleet = lab(LabClock::frozen()).await;
    let ex = &fleet.servers()[0];
    fleet
        .mailboxes()
        .add_device("alice", MobileDevice::new("ApplF17X", "iPhone"))
        .unwrap();
    assert_eq!(
        eas(ex, "LAB\\alice", "ApplF17X").await.status(),
        StatusCode::OK
    );

    shell(
        &fleet,
        ex,
        "Set-CASMailbox -Identity 'alice' -ActiveSyncBlockedDeviceIDs 'ApplF17X'",
    )
    .await;
    assert_eq!(
        eas(ex, "LAB\\alice", "ApplF17X").await.status(),
        StatusCode::OK
    );

    recycle(ex, "MSExchangeSyncAppPool").await;
    let refused = forbidden(eas(ex, "LAB\\alice", "applf17x").await).await;
    assert_eq!(refused.setting, "ActiveSyncBlockedDeviceIDs");
    // Another device of hers, and a request that names none, still sync.
    assert_eq!(
        eas(ex, "LAB\\alice", "Andr0id9").await.status(),
        StatusCode::OK
    );
    assert!(matches!(
        basic(ex, EAS, "LAB\\alice", PW).await,
        Seen::Ok { .. }
    ));
    assert_eq!(ex.counters().iis.refused_by_cas.active_sync_device, 1);

    // ActiveSync off for the mailbox: MS-ASHTTP's 403, once the worker reads it.
    shell(
        &fleet,
        ex,
        "Set-CASMailbox -Identity 'alice' -ActiveSyncEnabled $false",
    )
    .await;
    assert_eq!(
        eas(ex, "LAB\\alice", "Andr0id9").await.status(),
        StatusCode::OK
    );
    recycle(ex, "MSExchangeSyncAppPool").await;
    let response = eas(ex, "LAB\\alice", "Andr0id9").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("The user is not enabled for ActiveSync synchronization."));
    assert_eq!(ex.counters().iis.refused_by_cas.active_sync, 1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_user_without_a_mailbox_is_unaffected() {
    let fleet = lab(LabClock::frozen()).await;
    let ex = &fleet.servers()[0];
    let mut locked = CasSettings::default();
    locked.owa_enabled = false;
    locked.ecp_enabled = false;
    locked.ews_enabled = Some(false);
    locked.active_sync_enabled = false;
    locked.mapi_enabled = false;
    locked.mapi_block_outlook_rpc_http = true;
    fleet.mailboxes().set_cas("alice", locked).unwrap();

    let carol = every_protocol_with_ews_and_mapi(ex, "carol@lab.example.test", PW).await;
    assert!(
        carol.iter().all(|(_, s)| matches!(s, Seen::Ok { .. })),
        "{carol:?}"
    );
    let (_, session) = owa_logon(ex, "carol@lab.example.test", PW).await;
    assert!(matches!(
        owa_mailbox(ex, &session.unwrap()).await,
        Seen::Ok { .. }
    ));
    // Alice, locked everywhere and never cached, is refused everywhere at once.
    let alice = every_protocol_with_ews_and_mapi(ex, ALICE, PW).await;
    let forbidden: Vec<_> = alice
        .iter()
        .filter(|(_, s)| *s == Seen::Status(StatusCode::FORBIDDEN))
        .map(|(p, _)| p.as_str())
        .collect();
    assert_eq!(forbidden, ["ews", "eas", "mapi", "rpchttp"], "{alice:?}");
    let c = ex.counters().iis;
    assert_eq!(c.refused_by_cas.total(), 4);
    assert!(
        c.mailbox_settings_read >= 5,
        "carol's settings were looked up: {c:?}"
    );
    fleet.shutdown().await;
}
