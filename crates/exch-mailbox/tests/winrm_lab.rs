//! `WinRmMailbox` against the lab (`exch_lab::fleet`): the conformance suite over real WinRM
//! (NTLM, message encryption) into the lab's PowerShell interpreter and its Exchange cmdlets,
//! then what the lab's own store saw — the independent truth: every wipe sent while the device
//! could still connect (wipe before block), account-only where the server has it; the canary
//! mailbox unchanged; no prompt refused; reads changing nothing; and the shells all deleted.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use std::sync::Arc;
use std::time::Duration;

use exch_core::{ExchangeServer, ExchangeVersion};
use exch_directory::{Directory, InMemoryDirectory};
use exch_iis::{WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Fleet, ServerSpec};
use exch_lab::mailbox as lab;
use exch_mailbox::conformance::{self, Fixture, CANARY};
use exch_mailbox::{MailboxAdmin, MailboxError, MailboxId, MailboxState, WinRmMailbox};

/// The lab's form of a conformance seed mailbox. An identity that is an address becomes the
/// primary address; any other (the hostile one) becomes the `Name`.
fn to_lab(m: &MailboxState, n: usize) -> lab::Mailbox {
    let mut mailbox = match m.identity.split_once('@') {
        Some((local, _)) if local.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
            lab::Mailbox::new(local, m.identity.clone())
        }
        _ => {
            let alias = format!("exch-conf-{n}");
            lab::Mailbox::new(alias.clone(), format!("{alias}@lab.example.test"))
                .name(m.identity.clone())
        }
    };
    let mut cas = lab::CasSettings::default();
    cas.owa_enabled = m.cas.owa.unwrap_or(true);
    cas.ews_enabled = m.cas.ews;
    cas.active_sync_enabled = m.cas.active_sync.unwrap_or(true);
    cas.mapi_enabled = m.cas.mapi.unwrap_or(true);
    cas.mapi_block_outlook_rpc_http = !m.cas.outlook_anywhere.unwrap_or(true);
    cas.pop_enabled = m.cas.pop.unwrap_or(true);
    cas.imap_enabled = m.cas.imap.unwrap_or(true);
    cas.ecp_enabled = m.cas.ecp.unwrap_or(true);
    cas.active_sync_blocked_device_ids = m.blocked_device_ids.clone();
    mailbox = mailbox.cas(cas);
    if let Some(smtp) = &m.forwarding.smtp_address {
        let address = smtp.strip_prefix("smtp:").unwrap_or(smtp);
        mailbox = mailbox.forwarding(lab::Forwarding::to_smtp(
            address,
            m.forwarding.deliver_to_mailbox_and_forward,
        ));
    }
    for d in &m.devices {
        mailbox.devices.push(
            lab::MobileDevice::new(d.device_id.clone(), d.device_type.clone())
                .model(d.device_model.clone())
                .friendly_name(d.friendly_name.clone()),
        );
    }
    for r in &m.rules {
        mailbox.inbox_rules.push(
            lab::InboxRule::new(r.name.clone())
                .forward_to(r.forward_to.clone())
                .forward_as_attachment_to(r.forward_as_attachment_to.clone())
                .redirect_to(r.redirect_to.clone())
                .delete_message(r.delete_message)
                .enabled(r.enabled)
                .rule_identity(r.rule_identity.parse().unwrap()),
        );
    }
    // The canary also holds Outlook's client-side rules: a rule change reaching it would
    // delete them, which the snapshot comparison would see.
    if m.identity == CANARY {
        mailbox = mailbox.outlook_rules_blob(true);
    }
    mailbox
}

async fn fleet(spec: ServerSpec, fx: &Fixture) -> Fleet {
    let directory: Arc<dyn Directory> = Arc::new(InMemoryDirectory::new());
    let mut b = Fleet::builder().directory(directory).server(spec);
    for (n, m) in fx.seed.mailboxes().iter().enumerate() {
        b = b.mailbox(to_lab(m, n));
    }
    b.build().await.expect("start the lab fleet")
}

fn mailboxes(fleet: &Fleet) -> WinRmMailbox {
    let mut b = WinRmFlusher::builder()
        .auth(WinRmAuth::Ntlm)
        .credentials(fleet.winrm_user(), fleet.winrm_password().clone())
        .timeout(Duration::from_secs(30))
        .receive_timeout(Duration::from_secs(2));
    for (name, url) in fleet.endpoints() {
        b = b.endpoint(name, url);
    }
    WinRmMailbox::new(b.build().unwrap())
}

fn server(fleet: &Fleet) -> ExchangeServer {
    fleet.exchange_servers().remove(0)
}

async fn conformance_on(spec: ServerSpec) -> (Fleet, Fixture) {
    let fx0 = Fixture::new(ExchangeServer::new("X", "x.example"));
    let fleet = fleet(spec, &fx0).await;
    let fx = Fixture::new(server(&fleet));
    let admin = mailboxes(&fleet);
    let canary_before = fleet.mailboxes().mailbox(CANARY).unwrap();
    conformance::run_all(&admin, &fx).await;

    // What the lab's store saw.
    let lab_server = &fleet.servers()[0];
    assert_eq!(
        lab_server.winrm_stats().open_shells,
        0,
        "a shell was left open"
    );
    let counters = lab_server.counters().exchange;
    assert_eq!(
        counters.prompts_refused, 0,
        "a cmdlet prompted: {counters:?}"
    );
    assert_eq!(counters.what_if, 0);
    assert_eq!(
        fleet.mailboxes().mailbox(CANARY).unwrap(),
        canary_before,
        "the canary changed in the lab's store: a hostile name ran"
    );
    let devices = fleet
        .mailboxes()
        .mailbox(&fx.seed.devices.identity)
        .unwrap();
    assert_eq!(devices.devices.len(), 2);
    for d in &devices.devices {
        assert_eq!(d.wipes.len(), 1, "{}: one wipe: {:?}", d.device_id, d.wipes);
        let w = &d.wipes[0];
        assert!(
            w.device_could_connect,
            "{}: the wipe was sent after the block",
            d.device_id
        );
        assert_eq!(
            w.account_only,
            fx.wipe_mode == exch_mailbox::WipeMode::AccountOnly
        );
        assert_eq!(w.server, fx.server.name);
    }
    let hostile = fleet
        .mailboxes()
        .mailbox(&fx.seed.hostile.identity)
        .unwrap();
    assert!(
        hostile.devices.iter().all(|d| d.wipes.len() == 1),
        "{hostile:?}"
    );
    assert!(!hostile.cas.owa_enabled && hostile.cas.mapi_block_outlook_rpc_http);
    let rules = fleet.mailboxes().mailbox(&fx.seed.rules.identity).unwrap();
    let names: Vec<&str> = rules.inbox_rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["fwd", "att", "del", "Newsletters"],
        "redir removed in the store"
    );
    assert!(!rules.inbox_rules[0].enabled, "fwd disabled in the store");
    let forwarding = fleet
        .mailboxes()
        .mailbox(&fx.seed.forwarding.identity)
        .unwrap();
    assert_eq!(forwarding.forwarding, lab::Forwarding::default());
    (fleet, fx)
}

#[tokio::test]
async fn conformance_against_exchange_2019() {
    let (fleet, fx) = conformance_on(ServerSpec::exchange_2019("EX2019")).await;
    assert_eq!(fx.wipe_mode, exch_mailbox::WipeMode::AccountOnly);
    fleet.shutdown().await;
}

#[tokio::test]
async fn conformance_against_exchange_2013() {
    let spec = ServerSpec::new("EX2013", ExchangeVersion::new(15, 0, 1497));
    let (fleet, fx) = conformance_on(spec).await;
    assert_eq!(
        fx.wipe_mode,
        exch_mailbox::WipeMode::Full,
        "no -AccountOnly on 2013"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn reads_change_nothing_in_the_store() {
    let fx0 = Fixture::new(ExchangeServer::new("X", "x.example"));
    let fleet = fleet(ServerSpec::exchange_2016("EX2016"), &fx0).await;
    let s = server(&fleet);
    let admin = mailboxes(&fleet);
    let before = fleet.mailboxes().snapshot();
    for m in fx0.seed.mailboxes() {
        let id = MailboxId::new(m.identity.clone()).unwrap();
        admin.cas_settings(&s, &id).await.unwrap();
        admin.mobile_devices(&s, &id).await.unwrap();
        admin.forwarding(&s, &id).await.unwrap();
    }
    assert!(
        fleet.mailboxes().snapshot() == before,
        "a read changed the lab's store"
    );
    let counters = fleet.servers()[0].counters().exchange;
    assert_eq!(counters.changes, 0, "{counters:?}");
    assert_eq!(
        counters.add_pssnapin, 18,
        "one snap-in load per script: {counters:?}"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_wildcard_identity_changes_nothing() {
    let fx0 = Fixture::new(ExchangeServer::new("X", "x.example"));
    let fleet = fleet(ServerSpec::exchange_2019("EX2019"), &fx0).await;
    let s = server(&fleet);
    let admin = mailboxes(&fleet);
    let before = fleet.mailboxes().snapshot();
    let every = MailboxId::new("exch-conf-*").unwrap();
    let e = admin
        .set_cas(&s, &every, &exch_mailbox::CasChange::lockdown())
        .await
        .unwrap_err();
    assert!(
        matches!(e, MailboxError::Ambiguous { matches, .. } if matches >= 2),
        "{e:?}"
    );
    let e = admin.remove_forwarding(&s, &every).await.unwrap_err();
    assert!(matches!(e, MailboxError::Ambiguous { .. }), "{e:?}");
    assert!(
        fleet.mailboxes().snapshot() == before,
        "a wildcard changed the store"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn wrong_credentials_are_a_transport_error_naming_the_server() {
    let fx0 = Fixture::new(ExchangeServer::new("X", "x.example"));
    let fleet = fleet(ServerSpec::exchange_2019("EX2019"), &fx0).await;
    let mut b = WinRmFlusher::builder()
        .auth(WinRmAuth::Ntlm)
        .credentials(
            fleet.winrm_user(),
            secrecy::SecretString::from("Wrong-Pa55".to_owned()),
        )
        .timeout(Duration::from_secs(10));
    for (name, url) in fleet.endpoints() {
        b = b.endpoint(name, url);
    }
    let admin = WinRmMailbox::new(b.build().unwrap());
    let e = admin
        .cas_settings(&server(&fleet), &MailboxId::new(CANARY).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            MailboxError::Transport {
                transient: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("EX2019") && !e.to_string().contains("Wrong-Pa55"),
        "{e}"
    );
    fleet.shutdown().await;
}
