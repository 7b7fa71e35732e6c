//! A conformance suite for [`MailboxAdmin`] backends: plain async functions that panic with a
//! message naming the server and the mailbox when a backend misbehaves (like object_store's
//! `integration`).
//!
//! Seed your backend with [`Seed::mailboxes`] (six mailboxes: one per check, one with hostile
//! names, and a canary that no check targets), then run [`run_all`] once on that fresh seed.
//! The checks each touch only their own mailbox, so each can also run alone on a fresh seed.
//! The hostile names are PowerShell that would change the canary if a backend ever executed
//! them; [`canary_untouched`] looks.
//!
//! **Unstable: may change in any release; for backend authors' tests.** Compiled only with the
//! `conformance` feature, which you enable in your `[dev-dependencies]`:
//! `exch-mailbox = { version = "…", features = ["conformance"] }`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use exch_core::{ExchangeServer, ExchangeVersion};
//! use exch_mailbox::conformance::{self, Fixture};
//! use exch_mailbox::InMemoryMailboxes;
//!
//! let fixture = Fixture::new(
//!     ExchangeServer::new("EX01", "ex01.corp.example").with_version(ExchangeVersion::new(15, 2, 1258)),
//! );
//! let fake = InMemoryMailboxes::new();
//! for m in fixture.seed.mailboxes() {
//!     fake.insert(m);
//! }
//! conformance::run_all(&fake, &fixture).await;
//! # }
//! ```

use exch_core::{ExchangeServer, ExchangeVersion};

use crate::{
    support, CasChange, CasProtocol, CasSettings, Forwarding, ForwardingReport, InboxRule,
    ItemStatus, MailboxAdmin, MailboxError, MailboxId, MailboxState, MobileDevice, MobileDevices,
    RuleAction, WipeMode,
};

mod seed;

pub use seed::{hostile_names, Seed, CANARY};

/// The server under test and what the suite may expect of it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Fixture {
    /// The server the calls go through (Exchange 2013 or later).
    pub server: ExchangeServer,
    /// What the backend was seeded with.
    pub seed: Seed,
    /// The wipe to send: account-only where the server has it, else a full wipe.
    pub wipe_mode: WipeMode,
}

impl Fixture {
    /// The standard seed on `server`.
    pub fn new(server: ExchangeServer) -> Fixture {
        let wipe_mode = if support::check_wipe(&server, WipeMode::AccountOnly).is_ok() {
            WipeMode::AccountOnly
        } else {
            WipeMode::Full
        };
        Fixture {
            server,
            seed: Seed::standard(),
            wipe_mode,
        }
    }
}

fn id(m: &MailboxState) -> MailboxId {
    MailboxId::new(m.identity.clone()).unwrap_or_else(|e| panic!("seed identity: {e}"))
}

/// One check's mailbox: the backend, the server and the seeded mailbox; a call that fails
/// panics naming the server and the mailbox.
struct Check<'a> {
    admin: &'a dyn MailboxAdmin,
    fx: &'a Fixture,
    m: &'a MailboxState,
    mb: MailboxId,
}

impl<'a> Check<'a> {
    fn new(admin: &'a dyn MailboxAdmin, fx: &'a Fixture, m: &'a MailboxState) -> Check<'a> {
        Check {
            admin,
            fx,
            m,
            mb: id(m),
        }
    }

    fn ok<T>(&self, what: &str, r: Result<T, MailboxError>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!(
                "{}: {:?}: {what} failed: {e}",
                self.fx.server.name, self.m.identity
            ),
        }
    }

    async fn cas_settings(&self) -> CasSettings {
        let r = self.admin.cas_settings(&self.fx.server, &self.mb).await;
        self.ok("cas_settings", r)
    }

    async fn mobile_devices(&self) -> MobileDevices {
        let r = self.admin.mobile_devices(&self.fx.server, &self.mb).await;
        self.ok("mobile_devices", r)
    }

    async fn forwarding(&self) -> ForwardingReport {
        let r = self.admin.forwarding(&self.fx.server, &self.mb).await;
        self.ok("forwarding", r)
    }
}

fn concerning(rules: &[InboxRule]) -> Vec<InboxRule> {
    rules
        .iter()
        .filter(|r| r.is_of_concern())
        .cloned()
        .collect()
}

/// A reported device is the seeded one: same ID, type, model, name and access state, byte for
/// byte, and an identity (whose form is the backend's: Exchange writes a canonical name).
fn assert_devices(fx: &Fixture, what: &str, reported: &[MobileDevice], seeded: &[MobileDevice]) {
    let n = &fx.server.name;
    let key = |d: &MobileDevice| {
        (
            d.device_id.clone(),
            d.device_type.clone(),
            d.device_model.clone(),
            d.friendly_name.clone(),
            d.access_state.clone(),
        )
    };
    let got: Vec<_> = reported.iter().map(key).collect();
    let want: Vec<_> = seeded.iter().map(key).collect();
    assert_eq!(got, want, "{n}: {what}: devices as seeded");
    assert!(
        reported.iter().all(|d| !d.identity.is_empty()),
        "{n}: {what}: every device has an identity"
    );
}

/// Reported recipients name the seeded addresses, in order (Exchange writes each as
/// `"<display name>" [SMTP:<address>]`).
fn same_recipients(reported: &[String], seeded: &[String]) -> bool {
    reported.len() == seeded.len()
        && reported
            .iter()
            .zip(seeded)
            .all(|(r, s)| r.contains(s.as_str()))
}

/// Reported rules are the seeded ones, in order: same name (byte for byte), state, actions;
/// each with an identity (the backend's).
fn assert_rules(fx: &Fixture, what: &str, reported: &[InboxRule], seeded: &[InboxRule]) {
    let n = &fx.server.name;
    let names = |rules: &[InboxRule]| rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(reported),
        names(seeded),
        "{n}: {what}: rule names byte for byte"
    );
    for (r, s) in reported.iter().zip(seeded) {
        assert!(
            r.enabled == s.enabled
                && r.delete_message == s.delete_message
                && same_recipients(&r.forward_to, &s.forward_to)
                && same_recipients(&r.forward_as_attachment_to, &s.forward_as_attachment_to)
                && same_recipients(&r.redirect_to, &s.redirect_to),
            "{n}: {what}: rule {:?}: reported {r:?}, seeded {s:?}",
            s.name
        );
        assert!(
            !r.identity.is_empty(),
            "{n}: {what}: rule {:?} has no identity",
            s.name
        );
    }
}

/// The identity the backend reported for the rule named `name`.
fn rule_identity(fx: &Fixture, rules: &[InboxRule], name: &str) -> String {
    rules
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.identity.clone())
        .unwrap_or_else(|| panic!("{}: no rule named {name:?} in {rules:?}", fx.server.name))
}

/// Reads, lockdown, a partial change, restore; an empty change is refused.
pub async fn cas_set_and_restore(admin: &dyn MailboxAdmin, fx: &Fixture) {
    let (s, m) = (&fx.server, &fx.seed.cas);
    let c = Check::new(admin, fx, m);
    let mb = &c.mb;
    let n = &s.name;
    let read = c.cas_settings().await;
    assert_eq!(read, m.cas, "{n}: {:?}: settings as seeded", m.identity);
    let locked = c.ok(
        "lockdown",
        admin.set_cas(s, mb, &CasChange::lockdown()).await,
    );
    assert_eq!(locked.before, m.cas, "{n}: lockdown: before");
    assert_eq!(
        locked.after,
        CasSettings::all(false),
        "{n}: lockdown: after"
    );
    assert!(locked.after.open_protocols().is_empty());
    let read = c.cas_settings().await;
    assert_eq!(read, CasSettings::all(false), "{n}: read after lockdown");
    let partial = CasChange::new()
        .enable(CasProtocol::OutlookAnywhere)
        .enable(CasProtocol::Ews);
    let up = c.ok("partial change", admin.set_cas(s, mb, &partial).await);
    let want = CasSettings::all(false)
        .with(CasProtocol::OutlookAnywhere, Some(true))
        .with(CasProtocol::Ews, Some(true));
    assert_eq!(
        up.after, want,
        "{n}: only the named protocols change (Outlook Anywhere inverted)"
    );
    let back = c.ok(
        "restore_cas",
        admin.restore_cas(s, mb, &locked.before).await,
    );
    assert_eq!(back.before, want, "{n}: restore: before");
    assert_eq!(back.after, m.cas, "{n}: restore: after");
    let read = c.cas_settings().await;
    assert_eq!(read, m.cas, "{n}: read after restore");
    match admin.set_cas(s, mb, &CasChange::new()).await {
        Err(MailboxError::InvalidInput { .. }) => {}
        other => panic!("{n}: an empty CAS change must be InvalidInput, got {other:?}"),
    }
}

/// Every operation on an identity no mailbox has is [`MailboxError::NotFound`] naming the
/// server and the identity.
pub async fn unknown_mailbox_is_not_found(admin: &dyn MailboxAdmin, fx: &Fixture) {
    let (s, mb) = (&fx.server, &fx.seed.absent);
    let results: Vec<(&str, Result<(), MailboxError>)> = vec![
        ("cas_settings", admin.cas_settings(s, mb).await.map(drop)),
        (
            "set_cas",
            admin.set_cas(s, mb, &CasChange::lockdown()).await.map(drop),
        ),
        (
            "mobile_devices",
            admin.mobile_devices(s, mb).await.map(drop),
        ),
        (
            "block_devices",
            admin
                .block_devices(s, mb, &["X1".to_owned()])
                .await
                .map(drop),
        ),
        ("forwarding", admin.forwarding(s, mb).await.map(drop)),
        (
            "remove_forwarding",
            admin.remove_forwarding(s, mb).await.map(drop),
        ),
        (
            "change_inbox_rules",
            admin
                .change_inbox_rules(s, mb, &["x\\1".to_owned()], RuleAction::Disable)
                .await
                .map(drop),
        ),
    ];
    for (what, r) in results {
        match r {
            Err(e @ MailboxError::NotFound { .. }) => {
                assert_eq!(e.server(), Some(s.name.as_str()), "{what}: {e}");
                assert_eq!(e.mailbox(), Some(mb.as_str()), "{what}: {e}");
                assert!(
                    e.to_string().contains(&s.name) && e.to_string().contains(mb.as_str()),
                    "{what}: {e}"
                );
            }
            other => panic!(
                "{}: {what} of {mb:?}: expected NotFound, got {other:?}",
                s.name
            ),
        }
    }
}

/// Devices listed as seeded; wipes sent to the identities listed (a device the mailbox lacks
/// is `NotFound`); IDs blocked once each on top of the list before; the list put back.
pub async fn devices_wiped_then_blocked(admin: &dyn MailboxAdmin, fx: &Fixture) {
    let (s, m) = (&fx.server, &fx.seed.devices);
    let c = Check::new(admin, fx, m);
    let mb = &c.mb;
    let n = &s.name;
    let listed = c.mobile_devices().await;
    assert_devices(fx, "mobile_devices", &listed.devices, &m.devices);
    assert_eq!(
        listed.blocked_device_ids, m.blocked_device_ids,
        "{n}: blocked IDs as seeded"
    );
    let mut wanted: Vec<String> = listed.devices.iter().map(|d| d.identity.clone()).collect();
    let absent = format!("{}\\ExchangeActiveSyncDevices\\NoSuchDevice", m.identity);
    wanted.push(absent.clone());
    let wiped = c.ok(
        "wipe_devices",
        admin.wipe_devices(s, mb, &wanted, fx.wipe_mode).await,
    );
    assert_eq!(wiped.mode, fx.wipe_mode);
    let ids: Vec<&str> = wiped.devices.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        wanted.iter().map(String::as_str).collect::<Vec<_>>(),
        "{n}: one result per identity, in order"
    );
    for r in &wiped.devices {
        let want = if r.id == absent {
            ItemStatus::NotFound
        } else {
            ItemStatus::Done
        };
        assert_eq!(r.status, want, "{n}: wipe of {:?}", r.id);
    }
    let device_ids: Vec<String> = m.devices.iter().map(|d| d.device_id.clone()).collect();
    let mut with_dup = device_ids.clone();
    with_dup.push(m.blocked_device_ids[0].to_lowercase());
    let block = c.ok("block_devices", admin.block_devices(s, mb, &with_dup).await);
    assert_eq!(block.before, m.blocked_device_ids, "{n}: block: before");
    let mut want = m.blocked_device_ids.clone();
    want.extend(device_ids.iter().cloned());
    assert_eq!(
        block.after, want,
        "{n}: block: the full list, an ID already there not added twice"
    );
    assert_eq!(
        block.added(),
        device_ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let again = c.ok(
        "block_devices again",
        admin.block_devices(s, mb, &device_ids).await,
    );
    assert_eq!(again.after, want, "{n}: blocking again changes nothing");
    let listed = c.mobile_devices().await;
    assert_eq!(
        listed.blocked_device_ids, want,
        "{n}: blocked IDs read back"
    );
    for d in &device_ids {
        assert!(listed.is_blocked(d), "{n}: {d:?} blocked");
    }
    let back = c.ok(
        "restore_blocked_devices",
        admin.restore_blocked_devices(s, mb, &block.before).await,
    );
    assert_eq!(back.after, m.blocked_device_ids, "{n}: block list restored");
    let none = c.ok(
        "restore to none",
        admin.restore_blocked_devices(s, mb, &[]).await,
    );
    assert!(none.after.is_empty(), "{n}: an empty list clears: {none:?}");
    c.ok(
        "restore_blocked_devices",
        admin
            .restore_blocked_devices(s, mb, &m.blocked_device_ids)
            .await,
    );
}

/// An account-only wipe is refused, before anything is sent, where the server has no
/// `-AccountOnly` (Exchange 2013) or its version is unknown; an Exchange 2010 or Edge server is
/// refused for every operation.
pub async fn unsupported_servers_are_refused(admin: &dyn MailboxAdmin, fx: &Fixture) {
    let m = &fx.seed.devices;
    let mb = id(m);
    let ids = vec![format!("{}\\ExchangeActiveSyncDevices\\Any", m.identity)];
    let mut ex2013 = fx.server.clone();
    ex2013.version = Some(ExchangeVersion::new(15, 0, 1497));
    let mut unknown = fx.server.clone();
    unknown.version = None;
    for s in [&ex2013, &unknown] {
        match admin
            .wipe_devices(s, &mb, &ids, WipeMode::AccountOnly)
            .await
        {
            Err(e @ MailboxError::Unsupported { .. }) => {
                assert_eq!(e.server(), Some(s.name.as_str()), "{e}");
            }
            other => panic!(
                "{}: an account-only wipe via {:?} must be Unsupported, got {other:?}",
                s.name, s.version
            ),
        }
    }
    let mut ex2010 = fx.server.clone();
    ex2010.version = Some(ExchangeVersion::new(14, 3, 123));
    match admin.cas_settings(&ex2010, &mb).await {
        Err(MailboxError::Unsupported { .. }) => {}
        other => panic!(
            "{}: Exchange 2010 must be Unsupported, got {other:?}",
            fx.server.name
        ),
    }
}

/// Forwarding and the rules of concern reported as seeded (harmless rules counted, not
/// listed); forwarding removed and nothing else changed.
pub async fn forwarding_found_and_removed(admin: &dyn MailboxAdmin, fx: &Fixture) {
    let (s, m) = (&fx.server, &fx.seed.forwarding);
    let c = Check::new(admin, fx, m);
    let mb = &c.mb;
    let n = &s.name;
    let found = c.forwarding().await;
    assert_eq!(found.forwarding, m.forwarding, "{n}: forwarding as seeded");
    assert_rules(fx, "forwarding", &found.rules, &concerning(&m.rules));
    assert_eq!(
        found.other_rules,
        m.rules.len() - concerning(&m.rules).len(),
        "{n}: other rules counted"
    );
    let removed = c.ok("remove_forwarding", admin.remove_forwarding(s, mb).await);
    assert_eq!(removed.before, m.forwarding, "{n}: remove: before");
    assert_eq!(removed.after, Forwarding::default(), "{n}: remove: after");
    let again = c.forwarding().await;
    assert!(
        !again.forwarding.is_set() && !again.forwarding.deliver_to_mailbox_and_forward,
        "{n}: {again:?}"
    );
    assert_eq!(
        again.rules, found.rules,
        "{n}: removing forwarding leaves the rules alone"
    );
    assert_eq!(again.other_rules, found.other_rules);
    let cas = c.cas_settings().await;
    assert_eq!(
        cas, m.cas,
        "{n}: removing forwarding leaves protocol access alone"
    );
}

/// One rule disabled, one removed, an unknown one reported `NotFound`; the others untouched.
pub async fn inbox_rules_disabled_and_removed(admin: &dyn MailboxAdmin, fx: &Fixture) {
    let (s, m) = (&fx.server, &fx.seed.rules);
    let c = Check::new(admin, fx, m);
    let mb = &c.mb;
    let n = &s.name;
    let [fwd, att, redir, ..] = &m.rules[..] else {
        panic!("the rules seed has at least three rules");
    };
    let found = c.forwarding().await;
    assert_rules(fx, "forwarding", &found.rules, &concerning(&m.rules));
    let fwd_id = rule_identity(fx, &found.rules, &fwd.name);
    let redir_id = rule_identity(fx, &found.rules, &redir.name);
    let absent = format!("{}\\999", m.identity);
    let disabled = c.ok(
        "disable",
        admin
            .change_inbox_rules(
                s,
                mb,
                &[fwd_id.clone(), absent.clone()],
                RuleAction::Disable,
            )
            .await,
    );
    assert_eq!(disabled.action, RuleAction::Disable);
    let statuses: Vec<(&str, &ItemStatus)> = disabled
        .rules
        .iter()
        .map(|r| (r.id.as_str(), &r.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (fwd_id.as_str(), &ItemStatus::Done),
            (absent.as_str(), &ItemStatus::NotFound)
        ],
        "{n}: disable results"
    );
    let mut want = concerning(&m.rules);
    want[0].enabled = false;
    assert_rules(fx, "after disable", &disabled.after, &want);
    let removed = c.ok(
        "remove",
        admin
            .change_inbox_rules(s, mb, &[redir_id], RuleAction::Remove)
            .await,
    );
    assert!(
        removed.rules.iter().all(|r| r.is_done()),
        "{n}: {removed:?}"
    );
    want.retain(|r| r.name != redir.name);
    assert_rules(fx, "after remove", &removed.after, &want);
    let found = c.forwarding().await;
    assert_rules(fx, "read back", &found.rules, &want);
    assert!(
        found.rules.iter().any(|r| r.name == att.name && r.enabled),
        "{n}: others untouched"
    );
    assert_eq!(
        found.other_rules,
        m.rules.len() - concerning(&m.rules).len(),
        "{n}: harmless rules untouched"
    );
}

/// Hostile identities, device IDs and rule names are matched, acted on and reported byte for
/// byte, never run.
pub async fn hostile_names_are_data(admin: &dyn MailboxAdmin, fx: &Fixture) {
    let (s, m) = (&fx.server, &fx.seed.hostile);
    let c = Check::new(admin, fx, m);
    let mb = &c.mb;
    let n = &s.name;
    let cas = c.cas_settings().await;
    assert_eq!(cas, m.cas, "{n}: a hostile identity is found as it is");
    let listed = c.mobile_devices().await;
    assert_devices(
        fx,
        "hostile device IDs and names",
        &listed.devices,
        &m.devices,
    );
    let found = c.forwarding().await;
    assert_rules(
        fx,
        "hostile rule names",
        &found.rules,
        &concerning(&m.rules),
    );
    let identities: Vec<String> = listed.devices.iter().map(|d| d.identity.clone()).collect();
    let wiped = c.ok(
        "wipe_devices",
        admin.wipe_devices(s, mb, &identities, fx.wipe_mode).await,
    );
    assert!(wiped.all_done(), "{n}: {wiped:?}");
    let ids: Vec<String> = m.devices.iter().map(|d| d.device_id.clone()).collect();
    let block = c.ok("block_devices", admin.block_devices(s, mb, &ids).await);
    assert_eq!(
        block.after, ids,
        "{n}: hostile device IDs blocked byte for byte"
    );
    let rules: Vec<String> = found.rules.iter().map(|r| r.identity.clone()).collect();
    let changed = c.ok(
        "change_inbox_rules",
        admin
            .change_inbox_rules(s, mb, &rules, RuleAction::Disable)
            .await,
    );
    assert!(
        changed.rules.iter().all(|r| r.is_done()),
        "{n}: {changed:?}"
    );
    assert!(changed.after.iter().all(|r| !r.enabled), "{n}: {changed:?}");
    let up = c.ok(
        "lockdown",
        admin.set_cas(s, mb, &CasChange::lockdown()).await,
    );
    assert_eq!(up.after, CasSettings::all(false), "{n}");
}

/// A NUL (which no script can carry) and empty lists are refused as
/// [`MailboxError::InvalidInput`], the value shown escaped.
pub async fn unsendable_input_is_refused(admin: &dyn MailboxAdmin, fx: &Fixture) {
    assert!(MailboxId::new("bob\0x").is_err());
    let (s, m) = (&fx.server, &fx.seed.devices);
    let mb = id(m);
    let nul = vec!["dev\0ice".to_owned()];
    let results: Vec<(&str, Result<(), MailboxError>)> = vec![
        (
            "wipe_devices",
            admin
                .wipe_devices(s, &mb, &nul, WipeMode::Full)
                .await
                .map(drop),
        ),
        (
            "block_devices",
            admin.block_devices(s, &mb, &nul).await.map(drop),
        ),
        (
            "restore_blocked_devices",
            admin.restore_blocked_devices(s, &mb, &nul).await.map(drop),
        ),
        (
            "change_inbox_rules",
            admin
                .change_inbox_rules(s, &mb, &nul, RuleAction::Remove)
                .await
                .map(drop),
        ),
    ];
    for (what, r) in results {
        match r {
            Err(e @ MailboxError::InvalidInput { .. }) => {
                assert!(
                    e.to_string().contains("dev\\0ice"),
                    "{what}: the value is shown escaped: {e}"
                )
            }
            other => panic!(
                "{}: {what} with a NUL must be InvalidInput, got {other:?}",
                s.name
            ),
        }
    }
    let empty: Vec<String> = Vec::new();
    for r in [
        admin
            .wipe_devices(s, &mb, &empty, WipeMode::Full)
            .await
            .map(drop),
        admin.block_devices(s, &mb, &empty).await.map(drop),
        admin
            .change_inbox_rules(s, &mb, &empty, RuleAction::Disable)
            .await
            .map(drop),
    ] {
        assert!(
            matches!(r, Err(MailboxError::InvalidInput { .. })),
            "{}: empty list: {r:?}",
            s.name
        );
    }
}

/// The canary mailbox is exactly as seeded (run last).
pub async fn canary_untouched(admin: &dyn MailboxAdmin, fx: &Fixture) {
    let m = &fx.seed.canary;
    let c = Check::new(admin, fx, m);
    let n = &fx.server.name;
    let cas = c.cas_settings().await;
    assert_eq!(
        cas, m.cas,
        "{n}: the canary's protocol access changed: a hostile name ran"
    );
    let devices = c.mobile_devices().await;
    assert_devices(fx, "canary devices", &devices.devices, &m.devices);
    assert_eq!(
        devices.blocked_device_ids, m.blocked_device_ids,
        "{n}: canary block list"
    );
    let found = c.forwarding().await;
    assert_eq!(
        found.forwarding, m.forwarding,
        "{n}: the canary's forwarding changed: a hostile name ran"
    );
    assert_rules(fx, "canary rules", &found.rules, &concerning(&m.rules));
}

/// Every check above, in order, on a freshly seeded backend.
pub async fn run_all(admin: &dyn MailboxAdmin, fx: &Fixture) {
    cas_set_and_restore(admin, fx).await;
    unknown_mailbox_is_not_found(admin, fx).await;
    devices_wiped_then_blocked(admin, fx).await;
    unsupported_servers_are_refused(admin, fx).await;
    forwarding_found_and_removed(admin, fx).await;
    inbox_rules_disabled_and_removed(admin, fx).await;
    hostile_names_are_data(admin, fx).await;
    unsendable_input_is_refused(admin, fx).await;
    canary_untouched(admin, fx).await;
}
