//! The mailbox step of the engine (issue 18, first part) against the public fakes: the order
//! wipe → lockdown → directory change, what is always read, the residual section, the dry run,
//! resume.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_directory::InMemoryDirectory;
use exch_iis::RecordingFlusher;
use exch_mailbox::{
    CasSettings, DeviceAccessState, Forwarding, InMemoryMailboxes, InboxRule, MailboxOperation,
    MailboxState, MobileDevice, RuleAction, WipeMode,
};
use exch_remediate::{
    Cause, Event, NewPassword, Outcome, Remediation, RemediationBuilder, Residual, Step, Timeouts,
};
use tokio::sync::mpsc::unbounded_channel;

const UPN: &str = "bob@lab.example.test";

fn device(id: &str) -> MobileDevice {
    MobileDevice {
        identity: format!("bob\\ExchangeActiveSyncDevices\\iPhone§{id}"),
        device_id: id.into(),
        device_type: "iPhone".into(),
        device_model: "iPhone15,2".into(),
        friendly_name: "Bob's phone".into(),
        access_state: DeviceAccessState::Allowed,
    }
}

fn forwarding_rule() -> InboxRule {
    InboxRule {
        name: "fwd everything".into(),
        identity: "bob\\1234567890".into(),
        rule_identity: "1234567890".into(),
        enabled: true,
        forward_to: vec!["\"x\" [SMTP:x@evil.example]".into()],
        forward_as_attachment_to: Vec::new(),
        redirect_to: Vec::new(),
        delete_message: false,
    }
}

fn mailboxes() -> InMemoryMailboxes {
    InMemoryMailboxes::new().with_mailbox(
        MailboxState::new(UPN)
            .with_device(device("DEV1"))
            .with_device(device("DEV2"))
            .with_forwarding(Forwarding {
                smtp_address: Some("smtp:x@evil.example".into()),
                address: None,
                deliver_to_mailbox_and_forward: false,
            })
            .with_rule(forwarding_rule()),
    )
}

fn builder(dir: &InMemoryDirectory) -> RemediationBuilder {
    let servers = ["EX01", "EX02"]
        .into_iter()
        .map(|n| {
            ExchangeServer::new(n, format!("{}.lab.example.test", n.to_lowercase()))
                .with_version(ExchangeVersion::new(15, 2, 1258))
                .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS)
        })
        .collect();
    Remediation::builder()
        .directory(Arc::new(dir.clone()))
        .flusher(Arc::new(RecordingFlusher::new()))
        .user(UPN)
        .disable()
        .reset_password(NewPassword::Generate)
        .servers(servers)
        .timeouts(
            Timeouts::default()
                .with_converge(Duration::from_secs(5))
                .with_converge_poll(Duration::from_millis(5)),
        )
}

fn directory() -> InMemoryDirectory {
    let dir = InMemoryDirectory::new();
    dir.add_user("bob", UPN, "Old-Passw0rd!");
    dir
}

#[tokio::test]
async fn wipe_then_lockdown_then_the_directory_and_the_residual_says_what_was_closed() {
    let dir = directory();
    let mb = Arc::new(mailboxes());
    let (tx, mut rx) = unbounded_channel();
    let r = builder(&dir)
        .mailbox(mb.clone())
        .wipe_devices(WipeMode::AccountOnly)
        .lockdown()
        .remove_forwarding(RuleAction::Disable)
        .events(tx)
        .build()
        .unwrap();
    let plan = r.plan().await.unwrap();
    // The dry run names the step, its server and its impact, and touches no mailbox.
    assert_eq!(
        plan.steps[..3],
        [Step::FindAccount, Step::Mailbox, Step::ChangeDirectory]
    );
    let planned = plan.mailbox.clone().unwrap();
    assert_eq!(planned.server, "EX01");
    assert!(
        plan.impact[0].contains("before the block") && plan.impact[0].contains("refuse OWA"),
        "{:?}",
        plan.impact
    );
    assert!(
        mb.calls().is_empty(),
        "the plan changed or read the mailbox"
    );

    let report = r.execute(&plan).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());

    // Order: devices read, wipe, lockdown, block, forwarding read and removed, rules — all
    // before the directory change.
    let ops: Vec<MailboxOperation> = mb.calls().into_iter().map(|c| c.operation).collect();
    let pos = |f: fn(&MailboxOperation) -> bool| ops.iter().position(f).unwrap();
    let wipe = pos(
        |o| matches!(o, MailboxOperation::WipeDevices(ids, WipeMode::AccountOnly) if ids.len() == 2),
    );
    let lock = pos(|o| matches!(o, MailboxOperation::SetCas(_)));
    let block = pos(|o| matches!(o, MailboxOperation::BlockDevices(ids) if ids.len() == 2));
    let rules = pos(|o| {
        matches!(
            o,
            MailboxOperation::ChangeInboxRules(_, RuleAction::Disable)
        )
    });
    assert!(wipe < lock && lock < block && block < rules, "{ops:?}");
    let events: Vec<Event> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    let mailbox_event = events
        .iter()
        .position(|e| matches!(e, Event::MailboxRecorded { .. }))
        .unwrap();
    let first_change = events
        .iter()
        .position(|e| matches!(e, Event::ActionRecorded { .. }))
        .unwrap();
    assert!(mailbox_event < first_change);

    // The fake's state: every wipe sent, every protocol refused, both devices blocked,
    // forwarding gone, the rule disabled.
    let state = mb.mailbox(UPN).unwrap();
    assert_eq!(state.wipes.len(), 2);
    assert_eq!(state.cas, CasSettings::all(false));
    assert_eq!(state.blocked_device_ids.len(), 2);
    assert!(!state.forwarding.is_set());
    assert!(!state.rules[0].enabled);

    let record = report.mailbox.as_ref().unwrap();
    assert!(record.locked() && record.wiped(), "{record:?}");
    let residual: Vec<String> = report.residual.iter().map(ToString::to_string).collect();
    assert!(
        report.residual.contains(&Residual::KerberosTickets {
            closed: true,
            until: None
        }),
        "{residual:?}"
    );
    assert!(report
        .residual
        .contains(&Residual::WindowsConnections { closed: true }));
    for id in ["DEV1", "DEV2"] {
        assert!(report.residual.contains(&Residual::Device {
            device_id: id.into(),
            state: "wiped and blocked".into()
        }));
    }
    assert!(residual
        .iter()
        .any(|r| r == "forwarding to smtp:x@evil.example: removed"));
    assert!(residual
        .iter()
        .any(|r| r == "inbox rule \"fwd everything\": disabled"));
    assert!(report
        .summary()
        .contains("residual: Kerberos tickets: closed"));
}

#[tokio::test]
async fn without_lockdown_the_kerberos_tickets_and_the_findings_are_reported_as_standing() {
    let dir = directory();
    let mb = Arc::new(mailboxes());
    let r = builder(&dir).mailbox(mb.clone()).build().unwrap();
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    // Read only: nothing in the mailbox changed.
    assert_eq!(mb.mailbox(UPN).unwrap(), mailboxes().mailbox(UPN).unwrap());
    let Some(Residual::KerberosTickets {
        closed: false,
        until: Some(until),
    }) = report.residual.first().cloned()
    else {
        panic!("{:?}", report.residual);
    };
    let hours = (until - report.started).num_minutes();
    assert!(
        (599..=601).contains(&hours),
        "{until} vs {}",
        report.started
    );
    let residual: Vec<String> = report.residual.iter().map(ToString::to_string).collect();
    assert!(residual
        .iter()
        .any(|r| r == "device DEV1: pending: neither wiped nor blocked"));
    assert!(residual
        .iter()
        .any(|r| r == "forwarding to smtp:x@evil.example: left in place"));
    assert!(residual
        .iter()
        .any(|r| r == "inbox rule \"fwd everything\": left in place"));
}

#[tokio::test]
async fn without_a_mailbox_backend_the_residual_says_so_and_changes_are_refused() {
    let dir = directory();
    let r = builder(&dir).build().unwrap();
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert!(report.residual.contains(&Residual::MailboxNotChecked));
    assert!(matches!(
        report.residual[0],
        Residual::KerberosTickets {
            closed: false,
            until: Some(_)
        }
    ));
    let e = builder(&dir).lockdown().build().unwrap_err();
    assert!(e.to_string().contains(".mailbox("), "{e}");
}

#[tokio::test]
async fn a_failing_mailbox_server_makes_the_run_partial_and_the_directory_is_still_changed() {
    let dir = directory();
    let mb = mailboxes().with_error(
        "EX01",
        exch_mailbox::MailboxError::Unreachable {
            server: "EX01".into(),
            operation: "Get-MobileDevice".into(),
            detail: "connection refused".into(),
            source: None,
        },
    );
    let r = builder(&dir)
        .mailbox(Arc::new(mb))
        .lockdown()
        .build()
        .unwrap();
    let report = r.execute(&r.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.summary());
    assert!(report
        .causes
        .iter()
        .any(|c| matches!(c, Cause::MailboxIncomplete { what } if what.iter().any(|w| w.contains("EX01")))));
    assert!(report.actions.iter().all(|a| a.outcome.is_some()));
}

#[tokio::test]
async fn a_resumed_run_does_not_send_the_wipes_again() {
    let dir = directory();
    let mb = Arc::new(mailboxes());
    let first = builder(&dir)
        .mailbox(mb.clone())
        .wipe_devices(WipeMode::AccountOnly)
        .lockdown()
        .build()
        .unwrap();
    let report = first.execute(&first.plan().await.unwrap()).await;
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    let again = builder(&dir)
        .mailbox(mb.clone())
        .wipe_devices(WipeMode::AccountOnly)
        .lockdown()
        .resume(report)
        .build()
        .unwrap();
    let report2 = again.execute(&again.plan().await.unwrap()).await;
    assert_eq!(report2.outcome, Outcome::Revoked, "{}", report2.summary());
    assert_eq!(
        mb.mailbox(UPN).unwrap().wipes.len(),
        2,
        "a wipe was sent twice"
    );
    assert!(report2.mailbox.as_ref().unwrap().wiped());
}
