//! The conformance suite against `InMemoryMailboxes`, through `Arc` and `Box` too, and what the
//! fake records: wipes before blocks, nothing recorded for refused input, errors injected per
//! server.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use std::sync::Arc;

use exch_core::{ExchangeServer, ExchangeVersion};
use exch_mailbox::conformance::{self, Fixture};
use exch_mailbox::{
    InMemoryMailboxes, MailboxAdmin, MailboxError, MailboxId, MailboxOperation, WipeMode,
};

fn ex2019() -> ExchangeServer {
    ExchangeServer::new("EX2019", "ex2019.corp.example")
        .with_version(ExchangeVersion::new(15, 2, 1258))
}

fn seeded(fx: &Fixture) -> InMemoryMailboxes {
    let fake = InMemoryMailboxes::new();
    for m in fx.seed.mailboxes() {
        fake.insert(m);
    }
    fake
}

#[tokio::test]
async fn conformance_on_exchange_2019_and_2013() {
    let fx = Fixture::new(ex2019());
    assert_eq!(fx.wipe_mode, WipeMode::AccountOnly);
    let fake = seeded(&fx);
    conformance::run_all(&fake, &fx).await;
    // The wipes went out as account-only wipes, to the devices of the two mailboxes wiped.
    let wiped = fake.mailbox(&fx.seed.devices.identity).unwrap().wipes;
    assert_eq!(wiped.len(), 2);
    assert!(wiped.iter().all(|w| w.mode == WipeMode::AccountOnly));
    assert!(fake.mailbox(conformance::CANARY).unwrap() == fx.seed.canary);

    let ex2013 = ExchangeServer::new("EX2013", "ex2013.corp.example")
        .with_version(ExchangeVersion::new(15, 0, 1497));
    let fx = Fixture::new(ex2013);
    assert_eq!(
        fx.wipe_mode,
        WipeMode::Full,
        "no -AccountOnly on Exchange 2013"
    );
    conformance::run_all(&seeded(&fx), &fx).await;
}

#[tokio::test]
async fn conformance_through_arc_and_box() {
    let fx = Fixture::new(ex2019());
    let shared: Arc<dyn MailboxAdmin> = Arc::new(seeded(&fx));
    conformance::run_all(&shared, &fx).await;
    let boxed: Box<dyn MailboxAdmin> = Box::new(seeded(&fx));
    conformance::run_all(&boxed, &fx).await;
}

#[tokio::test]
async fn reads_change_nothing_and_refusals_are_not_recorded() {
    let fx = Fixture::new(ex2019());
    let fake = seeded(&fx);
    let before = fake.mailboxes();
    let s = &fx.server;
    for m in fx.seed.mailboxes() {
        let id = MailboxId::new(m.identity.clone()).unwrap();
        fake.cas_settings(s, &id).await.unwrap();
        fake.mobile_devices(s, &id).await.unwrap();
        fake.forwarding(s, &id).await.unwrap();
    }
    assert_eq!(fake.mailboxes(), before, "reads change nothing");
    let calls = fake.calls().len();
    let id = MailboxId::new(fx.seed.devices.identity.clone()).unwrap();
    let nul = vec!["a\0b".to_owned()];
    assert!(fake.block_devices(s, &id, &nul).await.is_err());
    assert!(fake.block_devices(s, &id, &[]).await.is_err());
    assert_eq!(fake.calls().len(), calls, "refused input is never sent");
    assert_eq!(fake.mailboxes(), before);
}

#[tokio::test]
async fn the_call_log_shows_the_wipe_before_the_block() {
    let fx = Fixture::new(ex2019());
    let fake = seeded(&fx);
    let s = &fx.server;
    let id = MailboxId::new(fx.seed.devices.identity.clone()).unwrap();
    let listed = fake.mobile_devices(s, &id).await.unwrap();
    let identities: Vec<String> = listed.devices.iter().map(|d| d.identity.clone()).collect();
    let ids: Vec<String> = listed.devices.iter().map(|d| d.device_id.clone()).collect();
    fake.wipe_devices(s, &id, &identities, WipeMode::AccountOnly)
        .await
        .unwrap();
    fake.block_devices(s, &id, &ids).await.unwrap();
    let ops: Vec<MailboxOperation> = fake.calls().into_iter().map(|c| c.operation).collect();
    assert!(
        matches!(
            ops.as_slice(),
            [
                MailboxOperation::MobileDevices,
                MailboxOperation::WipeDevices(w, WipeMode::AccountOnly),
                MailboxOperation::BlockDevices(b),
            ] if *w == identities && *b == ids
        ),
        "{ops:?}"
    );
}

#[tokio::test]
async fn injected_errors_name_the_server() {
    let fx = Fixture::new(ex2019());
    let fake = seeded(&fx).with_error(
        "ex2019",
        MailboxError::Unreachable {
            server: "EX2019".into(),
            operation: "read CAS settings".into(),
            detail: "connection refused".into(),
            source: None,
        },
    );
    let id = MailboxId::new(fx.seed.cas.identity.clone()).unwrap();
    let e = fake.cas_settings(&fx.server, &id).await.unwrap_err();
    assert!(e.is_transient() && e.server() == Some("EX2019"), "{e}");
    fake.clear_error("EX2019");
    assert!(fake.cas_settings(&fx.server, &id).await.is_ok());
}

#[tokio::test]
async fn insert_replaces_the_same_identity_and_unknown_is_not_found() {
    let fake = InMemoryMailboxes::new()
        .with_mailbox(exch_mailbox::MailboxState::new("bob"))
        .with_mailbox(exch_mailbox::MailboxState::new("Bob2"));
    // `insert` replaces a mailbox with the same identity (ignoring case) …
    fake.insert(exch_mailbox::MailboxState::new("BOB"));
    assert_eq!(fake.mailboxes().len(), 2);
    let e = fake
        .cas_settings(&ex2019(), &MailboxId::new("nobody").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, MailboxError::NotFound { .. }), "{e:?}");
}
