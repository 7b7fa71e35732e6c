//! One server's Exchange Management Shell: the snap-in it registers, the cmdlets it runs
//! against the fleet's [`MailboxStore`], and what it counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use exch_core::ExchangeVersion;
use exch_directory::escape::same_name;
use serde::Serialize;

use super::ident::{self, Domain};
use super::{InboxRule, Lookup, Mailbox, MailboxStore, MobileDevice, StoreState, WipeRecord};
use crate::clock::LabClock;

/// The Exchange cmdlets of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmdlet {
    GetMailbox,
    SetMailbox,
    GetCasMailbox,
    SetCasMailbox,
    GetMobileDevice,
    ClearMobileDevice,
    GetInboxRule,
    DisableInboxRule,
    RemoveInboxRule,
}

impl Cmdlet {
    const ALL: [Cmdlet; 9] = [
        Cmdlet::GetMailbox,
        Cmdlet::SetMailbox,
        Cmdlet::GetCasMailbox,
        Cmdlet::SetCasMailbox,
        Cmdlet::GetMobileDevice,
        Cmdlet::ClearMobileDevice,
        Cmdlet::GetInboxRule,
        Cmdlet::DisableInboxRule,
        Cmdlet::RemoveInboxRule,
    ];

    /// The cmdlet named `name` (case-insensitive).
    pub(crate) fn from_name(name: &str) -> Option<Cmdlet> {
        Cmdlet::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// Its name as Exchange spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Cmdlet::GetMailbox => "Get-Mailbox",
            Cmdlet::SetMailbox => "Set-Mailbox",
            Cmdlet::GetCasMailbox => "Get-CASMailbox",
            Cmdlet::SetCasMailbox => "Set-CASMailbox",
            Cmdlet::GetMobileDevice => "Get-MobileDevice",
            Cmdlet::ClearMobileDevice => "Clear-MobileDevice",
            Cmdlet::GetInboxRule => "Get-InboxRule",
            Cmdlet::DisableInboxRule => "Disable-InboxRule",
            Cmdlet::RemoveInboxRule => "Remove-InboxRule",
        }
    }

    /// The .NET class implementing it (the tail of its errors' `FullyQualifiedErrorId`).
    pub(crate) fn class(self) -> &'static str {
        match self {
            Cmdlet::GetMailbox => "Microsoft.Exchange.Management.RecipientTasks.GetMailbox",
            Cmdlet::SetMailbox => "Microsoft.Exchange.Management.RecipientTasks.SetMailbox",
            Cmdlet::GetCasMailbox => "Microsoft.Exchange.Management.RecipientTasks.GetCASMailbox",
            Cmdlet::SetCasMailbox => "Microsoft.Exchange.Management.RecipientTasks.SetCASMailbox",
            Cmdlet::GetMobileDevice => "Microsoft.Exchange.Management.Tasks.GetMobileDevice",
            Cmdlet::ClearMobileDevice => "Microsoft.Exchange.Management.Tasks.ClearMobileDevice",
            Cmdlet::GetInboxRule => "Microsoft.Exchange.Management.StoreTasks.GetInboxRule",
            Cmdlet::DisableInboxRule => "Microsoft.Exchange.Management.StoreTasks.DisableInboxRule",
            Cmdlet::RemoveInboxRule => "Microsoft.Exchange.Management.StoreTasks.RemoveInboxRule",
        }
    }

    fn index(self) -> usize {
        Cmdlet::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// What a cmdlet lookup found wrong; the PowerShell layer words it as Exchange does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShellError {
    /// No directory object has that identity (mailbox, device).
    NotFound(String),
    /// More than one object has it.
    Ambiguous(String),
    /// No inbox rule has that identity.
    RuleNotFound(String),
    /// A recipient parameter (`-ForwardingAddress`) names nobody.
    RecipientNotFound(String),
}

fn lookup_error(id: &str) -> impl Fn(Lookup) -> ShellError + '_ {
    move |l| match l {
        Lookup::None => ShellError::NotFound(id.to_owned()),
        Lookup::Many => ShellError::Ambiguous(id.to_owned()),
    }
}

/// A change to a multi-valued property (`ActiveSyncBlockedDeviceIDs`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListChange {
    /// The whole list (`-P 'a','b'`, `-P @()`, `-P $null`).
    Replace(Vec<String>),
    /// `-P @{Add='a'; Remove='b'}`.
    AddRemove {
        add: Vec<String>,
        remove: Vec<String>,
    },
}

impl ListChange {
    /// Applies the change; duplicates (case-insensitive) are kept once. Returns whether the
    /// list changed.
    fn apply(&self, list: &mut Vec<String>) -> bool {
        let before = list.clone();
        let mut next = match self {
            ListChange::Replace(items) => items.clone(),
            ListChange::AddRemove { add, remove } => {
                let mut l = list.clone();
                l.retain(|v| !remove.iter().any(|r| same_name(r, v)));
                l.extend(add.iter().cloned());
                l
            }
        };
        let mut seen: Vec<String> = Vec::new();
        next.retain(|v| {
            let dup = seen.iter().any(|s| same_name(s, v));
            seen.push(v.clone());
            !dup
        });
        *list = next;
        *list != before
    }
}

/// The parameters a `Set-CASMailbox` gave (unset = `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CasChange {
    pub(crate) owa_enabled: Option<bool>,
    /// `Some(None)`: `-EwsEnabled $null`.
    pub(crate) ews_enabled: Option<Option<bool>>,
    pub(crate) active_sync_enabled: Option<bool>,
    pub(crate) mapi_enabled: Option<bool>,
    pub(crate) mapi_block_outlook_rpc_http: Option<bool>,
    pub(crate) pop_enabled: Option<bool>,
    pub(crate) imap_enabled: Option<bool>,
    pub(crate) ecp_enabled: Option<bool>,
    pub(crate) blocked_device_ids: Option<ListChange>,
    pub(crate) allowed_device_ids: Option<ListChange>,
}

/// The parameters a `Set-Mailbox` gave (unset = `None`; `Some(None)` = `$null`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ForwardingChange {
    pub(crate) smtp_address: Option<Option<String>>,
    pub(crate) address: Option<Option<String>>,
    pub(crate) deliver_to_mailbox_and_forward: Option<bool>,
}

fn set<T: PartialEq>(slot: &mut T, value: Option<T>) -> bool {
    match value {
        Some(v) if *slot != v => {
            *slot = v;
            true
        }
        _ => false,
    }
}

/// Counts of one server's Exchange cmdlet calls (every call that reached the cmdlet, whether
/// it succeeded or not), monotonic since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ExchangeCounters {
    /// `Add-PSSnapin` of an Exchange snap-in.
    pub add_pssnapin: u64,
    /// `Get-Mailbox`.
    pub get_mailbox: u64,
    /// `Set-Mailbox`.
    pub set_mailbox: u64,
    /// `Get-CASMailbox`.
    pub get_cas_mailbox: u64,
    /// `Set-CASMailbox`.
    pub set_cas_mailbox: u64,
    /// `Get-MobileDevice`.
    pub get_mobile_device: u64,
    /// `Clear-MobileDevice`.
    pub clear_mobile_device: u64,
    /// `Get-InboxRule`.
    pub get_inbox_rule: u64,
    /// `Disable-InboxRule`.
    pub disable_inbox_rule: u64,
    /// `Remove-InboxRule`.
    pub remove_inbox_rule: u64,
    /// Calls that changed the store (a setting, a wipe sent, a rule disabled or removed).
    pub changes: u64,
    /// Calls refused because they would have prompted (no `-Confirm:$false` / `-Force`).
    pub prompts_refused: u64,
    /// Calls run with `-WhatIf` (nothing changed).
    pub what_if: u64,
}

#[derive(Default)]
struct Counters {
    cmdlets: [AtomicU64; 9],
    add_pssnapin: AtomicU64,
    changes: AtomicU64,
    prompts_refused: AtomicU64,
    what_if: AtomicU64,
}

/// One server's Exchange Management Shell: which snap-ins it registers (by version), the
/// fleet's mailbox store it works on, its clock and its counters. Cheap to clone (the
/// counters are shared).
#[derive(Clone)]
pub struct ExchangeShell {
    store: MailboxStore,
    server: String,
    version: ExchangeVersion,
    clock: LabClock,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for ExchangeShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeShell")
            .field("server", &self.server)
            .field("version", &self.version.to_string())
            .finish_non_exhaustive()
    }
}

impl ExchangeShell {
    /// The shell of server `server` (Exchange `version`) working on `store`, timing wipes
    /// with `clock`.
    pub fn new(
        store: MailboxStore,
        server: impl Into<String>,
        version: ExchangeVersion,
        clock: LabClock,
    ) -> Self {
        ExchangeShell {
            store,
            server: server.into(),
            version,
            clock,
            counters: Arc::new(Counters::default()),
        }
    }

    /// The same shell (same counters) working on another store.
    pub fn with_store(&self, store: MailboxStore) -> Self {
        ExchangeShell {
            store,
            ..self.clone()
        }
    }

    /// The store it works on.
    pub fn store(&self) -> &MailboxStore {
        &self.store
    }

    /// The server it runs on.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The Exchange snap-ins this version registers: `Microsoft.Exchange.Management.PowerShell.Admin`
    /// (2007), `….E2010` (2010, and still on 2013 and later), `….SnapIn` (2013 and later).
    pub fn snapins(&self) -> &'static [&'static str] {
        match self.version.major {
            8 => &["Microsoft.Exchange.Management.PowerShell.Admin"],
            14 => &["Microsoft.Exchange.Management.PowerShell.E2010"],
            _ => &[
                "Microsoft.Exchange.Management.PowerShell.SnapIn",
                "Microsoft.Exchange.Management.PowerShell.E2010",
            ],
        }
    }

    /// Whether this version has the cmdlet (`*-MobileDevice` came with Exchange 2013;
    /// 2007 and 2010 have `*-ActiveSyncDevice`, which the lab does not implement).
    pub(crate) fn has(&self, cmdlet: Cmdlet) -> bool {
        match cmdlet {
            Cmdlet::GetMobileDevice | Cmdlet::ClearMobileDevice => self.version.major >= 15,
            _ => true,
        }
    }

    /// Whether `Clear-MobileDevice` has `-AccountOnly` (Exchange 2016 and later).
    pub(crate) fn has_account_only_wipe(&self) -> bool {
        (self.version.major, self.version.minor) >= (15, 1)
    }

    /// A snapshot of its counters.
    pub fn counters(&self) -> ExchangeCounters {
        let c = &self.counters;
        let n = |cmdlet: Cmdlet| c.cmdlets[cmdlet.index()].load(Ordering::Relaxed);
        ExchangeCounters {
            add_pssnapin: c.add_pssnapin.load(Ordering::Relaxed),
            get_mailbox: n(Cmdlet::GetMailbox),
            set_mailbox: n(Cmdlet::SetMailbox),
            get_cas_mailbox: n(Cmdlet::GetCasMailbox),
            set_cas_mailbox: n(Cmdlet::SetCasMailbox),
            get_mobile_device: n(Cmdlet::GetMobileDevice),
            clear_mobile_device: n(Cmdlet::ClearMobileDevice),
            get_inbox_rule: n(Cmdlet::GetInboxRule),
            disable_inbox_rule: n(Cmdlet::DisableInboxRule),
            remove_inbox_rule: n(Cmdlet::RemoveInboxRule),
            changes: c.changes.load(Ordering::Relaxed),
            prompts_refused: c.prompts_refused.load(Ordering::Relaxed),
            what_if: c.what_if.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_call(&self, cmdlet: Cmdlet) {
        self.counters.cmdlets[cmdlet.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_snapin(&self) {
        self.counters.add_pssnapin.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_prompt_refused(&self) {
        self.counters
            .prompts_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_what_if(&self) {
        self.counters.what_if.fetch_add(1, Ordering::Relaxed);
    }

    fn changed(&self, changed: bool) -> bool {
        if changed {
            self.counters.changes.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    /// The lab clock's now.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The domain controller named in errors, and the domain.
    pub(crate) fn directory(&self) -> (String, Domain) {
        self.store
            .with(|s| (s.domain_controller.clone(), s.domain.clone()))
    }

    /// Every mailbox `id` names (wildcards allowed; every mailbox without an id).
    pub(crate) fn mailboxes(&self, id: Option<&str>) -> Result<Vec<Mailbox>, ShellError> {
        self.store.with(|s| {
            let found: Vec<Mailbox> = match id {
                None => s.mailboxes.clone(),
                Some(id) => s
                    .find_all(id)
                    .into_iter()
                    .map(|i| s.mailboxes[i].clone())
                    .collect(),
            };
            match (id, found.is_empty()) {
                (Some(id), true) => Err(ShellError::NotFound(id.to_owned())),
                _ => Ok(found),
            }
        })
    }

    /// The one mailbox `id` names.
    pub(crate) fn mailbox(&self, id: &str) -> Result<Mailbox, ShellError> {
        self.store.with(|s| {
            s.find_one(id)
                .map(|i| s.mailboxes[i].clone())
                .map_err(lookup_error(id))
        })
    }

    /// `Set-CASMailbox`: applies `change`; returns the mailbox after it and whether anything
    /// changed.
    pub(crate) fn set_cas(
        &self,
        id: &str,
        change: &CasChange,
    ) -> Result<(Mailbox, bool), ShellError> {
        let (m, changed) = self.store.with(|s| {
            let i = s.find_one(id).map_err(lookup_error(id))?;
            let cas = &mut s.mailboxes[i].cas;
            let mut changed = false;
            changed |= set(&mut cas.owa_enabled, change.owa_enabled);
            changed |= set(&mut cas.ews_enabled, change.ews_enabled);
            changed |= set(&mut cas.active_sync_enabled, change.active_sync_enabled);
            changed |= set(&mut cas.mapi_enabled, change.mapi_enabled);
            changed |= set(
                &mut cas.mapi_block_outlook_rpc_http,
                change.mapi_block_outlook_rpc_http,
            );
            changed |= set(&mut cas.pop_enabled, change.pop_enabled);
            changed |= set(&mut cas.imap_enabled, change.imap_enabled);
            changed |= set(&mut cas.ecp_enabled, change.ecp_enabled);
            if let Some(l) = &change.blocked_device_ids {
                changed |= l.apply(&mut cas.active_sync_blocked_device_ids);
            }
            if let Some(l) = &change.allowed_device_ids {
                changed |= l.apply(&mut cas.active_sync_allowed_device_ids);
            }
            Ok::<_, ShellError>((s.mailboxes[i].clone(), changed))
        })?;
        Ok((m, self.changed(changed)))
    }

    /// `Set-Mailbox`: applies `change` (`-ForwardingAddress` must name a mailbox of the
    /// store); returns the mailbox after it and whether anything changed.
    pub(crate) fn set_forwarding(
        &self,
        id: &str,
        change: &ForwardingChange,
    ) -> Result<(Mailbox, bool), ShellError> {
        let (m, changed) = self.store.with(|s| {
            let i = s.find_one(id).map_err(lookup_error(id))?;
            let address = match &change.address {
                Some(Some(recipient)) => {
                    let r = s.find_one(recipient).map_err(|l| match l {
                        Lookup::None => ShellError::RecipientNotFound(recipient.clone()),
                        Lookup::Many => ShellError::Ambiguous(recipient.clone()),
                    })?;
                    Some(Some(s.mailboxes[r].name.clone()))
                }
                other => other.clone(),
            };
            let f = &mut s.mailboxes[i].forwarding;
            let mut changed = set(&mut f.smtp_address, change.smtp_address.clone());
            changed |= set(&mut f.address, address);
            changed |= set(
                &mut f.deliver_to_mailbox_and_forward,
                change.deliver_to_mailbox_and_forward,
            );
            Ok::<_, ShellError>((s.mailboxes[i].clone(), changed))
        })?;
        Ok((m, self.changed(changed)))
    }

    /// Every device of every mailbox.
    pub(crate) fn all_devices(&self) -> Vec<(Mailbox, MobileDevice)> {
        self.store.with(|s| {
            s.mailboxes
                .iter()
                .flat_map(|m| m.devices.iter().map(move |d| (m.clone(), d.clone())))
                .collect()
        })
    }

    /// The one device `id` names, with its mailbox.
    pub(crate) fn device(&self, id: &str) -> Result<(Mailbox, MobileDevice), ShellError> {
        self.store.with(|s| {
            find_device(s, id)
                .map(|(i, j)| (s.mailboxes[i].clone(), s.mailboxes[i].devices[j].clone()))
        })
    }

    /// `Clear-MobileDevice`: records a wipe of device `id` (sent whether or not the device
    /// can still connect, as Exchange does; the record says which).
    pub(crate) fn wipe_device(
        &self,
        id: &str,
        account_only: bool,
    ) -> Result<(Mailbox, MobileDevice), ShellError> {
        let now = self.now();
        let server = self.server.clone();
        let found = self.store.with(|s| {
            let (i, j) = find_device(s, id)?;
            let m = &mut s.mailboxes[i];
            let could = m.device_can_connect(&m.devices[j]);
            m.devices[j].wipes.push(WipeRecord {
                requested_at: now,
                account_only,
                device_could_connect: could,
                server,
            });
            Ok::<_, ShellError>((m.clone(), m.devices[j].clone()))
        })?;
        self.changed(true);
        Ok(found)
    }

    /// The one rule `id` names (`<mailbox>\<RuleIdentity or name>`, or the rule alone with
    /// `mailbox`), with its mailbox.
    pub(crate) fn rule(
        &self,
        id: &str,
        mailbox: Option<&str>,
    ) -> Result<(Mailbox, InboxRule), ShellError> {
        self.store.with(|s| {
            find_rule(s, id, mailbox).map(|(i, j)| {
                (
                    s.mailboxes[i].clone(),
                    s.mailboxes[i].inbox_rules[j].clone(),
                )
            })
        })
    }

    /// `Disable-InboxRule`; `delete_blob` deletes the Outlook rules blob (`-Force`).
    /// Returns the mailbox after it and whether anything changed.
    pub(crate) fn disable_rule(
        &self,
        id: &str,
        mailbox: Option<&str>,
        delete_blob: bool,
    ) -> Result<(Mailbox, bool), ShellError> {
        let (m, changed) = self.store.with(|s| {
            let (i, j) = find_rule(s, id, mailbox)?;
            let m = &mut s.mailboxes[i];
            let mut changed = set(&mut m.inbox_rules[j].enabled, Some(false));
            if delete_blob {
                changed |= set(&mut m.outlook_rules_blob, Some(false));
            }
            Ok::<_, ShellError>((m.clone(), changed))
        })?;
        Ok((m, self.changed(changed)))
    }

    /// `Remove-InboxRule`; `delete_blob` as for [`ExchangeShell::disable_rule`].
    pub(crate) fn remove_rule(
        &self,
        id: &str,
        mailbox: Option<&str>,
        delete_blob: bool,
    ) -> Result<Mailbox, ShellError> {
        let m = self.store.with(|s| {
            let (i, j) = find_rule(s, id, mailbox)?;
            let m = &mut s.mailboxes[i];
            m.inbox_rules.remove(j);
            if delete_blob {
                m.outlook_rules_blob = false;
            }
            Ok::<_, ShellError>(m.clone())
        })?;
        self.changed(true);
        Ok(m)
    }
}

impl Mailbox {
    /// Whether device `d` can still connect over ActiveSync: the mailbox's
    /// `ActiveSyncEnabled` is on, the device is not in `ActiveSyncBlockedDeviceIDs`, and it is
    /// either in `ActiveSyncAllowedDeviceIDs` (a personal exemption) or `Allowed`.
    pub fn device_can_connect(&self, d: &MobileDevice) -> bool {
        let listed = |l: &[String]| l.iter().any(|x| same_name(x, &d.device_id));
        self.cas.active_sync_enabled
            && !listed(&self.cas.active_sync_blocked_device_ids)
            && (listed(&self.cas.active_sync_allowed_device_ids)
                || d.access_state == super::DeviceAccessState::Allowed)
    }
}

fn find_device(s: &StoreState, id: &str) -> Result<(usize, usize), ShellError> {
    let mut found = Vec::new();
    for (i, m) in s.mailboxes.iter().enumerate() {
        for (j, d) in m.devices.iter().enumerate() {
            if ident::device_matches(&s.domain, m, d, id) {
                found.push((i, j));
            }
        }
    }
    match found.as_slice() {
        [] => Err(ShellError::NotFound(id.to_owned())),
        [one] => Ok(*one),
        _ => Err(ShellError::Ambiguous(id.to_owned())),
    }
}

fn rules_in(m: &Mailbox, rule: &str) -> Vec<usize> {
    (0..m.inbox_rules.len())
        .filter(|j| ident::rule_matches(&m.inbox_rules[*j], rule))
        .collect()
}

fn find_rule(
    s: &StoreState,
    id: &str,
    mailbox: Option<&str>,
) -> Result<(usize, usize), ShellError> {
    let pick = |i: usize, rule: &str| match rules_in(&s.mailboxes[i], rule).as_slice() {
        [] => Err(ShellError::RuleNotFound(id.to_owned())),
        [j] => Ok((i, *j)),
        _ => Err(ShellError::Ambiguous(id.to_owned())),
    };
    if let Some(mbx) = mailbox {
        let i = s.find_one(mbx).map_err(lookup_error(mbx))?;
        return pick(i, id);
    }
    // `<mailbox>\<rule>`: mailbox identities and rule names may both hold a backslash, so
    // every split is tried; the first whose mailbox resolves and holds the rule wins.
    let mut fallback = Err(ShellError::RuleNotFound(id.to_owned()));
    for (at, _) in id.match_indices('\\') {
        let (mbx, rule) = (&id[..at], &id[at + 1..]);
        if mbx.is_empty() || mbx.contains('*') {
            continue;
        }
        if let Ok(i) = s.find_one(mbx) {
            match pick(i, rule) {
                Ok(found) => return Ok(found),
                Err(e @ ShellError::Ambiguous(_)) => fallback = Err(e),
                Err(_) => {}
            }
        }
    }
    fallback
}
