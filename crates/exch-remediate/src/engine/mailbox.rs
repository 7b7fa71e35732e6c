//! The mailbox step (before the directory change): per user, the devices read, wiped when
//! asked (before the block), the protocols refused and the devices blocked (lockdown),
//! forwarding and inbox rules read and removed when asked. `accounts_in_flight` users at a
//! time, every operation bounded by the per-server limit and the run's deadline.

use std::future::Future;
use std::sync::Arc;

use exch_core::ExchangeServer;
use exch_mailbox::{CasChange, MailboxAdmin, MailboxError, MailboxId};
use futures::StreamExt;

use super::run::Work;
use super::Engine;
use crate::deadline::Deadline;
use crate::{Event, MailboxRecord};

impl Engine {
    /// Runs the step for every item of `work` through `server`; one record per item, in
    /// order.
    pub(crate) async fn mailbox_all(
        &self,
        dl: Deadline,
        admin: &Arc<dyn MailboxAdmin>,
        server: &ExchangeServer,
        work: &[Work<'_>],
    ) -> Vec<MailboxRecord> {
        // Futures are created up front (lazily polled): keeps `execute` Send.
        let jobs: Vec<_> = work
            .iter()
            .enumerate()
            .map(|(k, w)| async move { (k, self.mailbox_one(dl, admin.as_ref(), server, w).await) })
            .collect();
        let mut done: Vec<(usize, MailboxRecord)> = futures::stream::iter(jobs)
            .buffer_unordered(self.accounts_in_flight)
            .collect()
            .await;
        done.sort_by_key(|(k, _)| *k);
        done.into_iter().map(|(_, r)| r).collect()
    }

    async fn mailbox_one(
        &self,
        dl: Deadline,
        admin: &dyn MailboxAdmin,
        server: &ExchangeServer,
        w: &Work<'_>,
    ) -> MailboxRecord {
        let mut r = MailboxRecord {
            server: server.name.clone(),
            ..MailboxRecord::default()
        };
        let login = w
            .account
            .user_principal_name
            .clone()
            .unwrap_or_else(|| w.account.sam_account_name.clone());
        let id = match MailboxId::new(login) {
            Ok(id) => id,
            Err(e) => {
                r.errors.push(e.to_string());
                return self.recorded(w, r);
            }
        };
        let a = self.mailbox_actions;
        let earlier = self
            .earlier
            .as_ref()
            .and_then(|e| e.mailbox(&w.target.text));
        r.devices = self
            .mailbox_op(dl, &mut r.errors, admin.mobile_devices(server, &id))
            .await;
        // 1. Wipe, before anything blocks the device (once: a wipe an earlier run sent is
        //    not sent again).
        if let (Some(mode), Some(devices)) = (a.wipe, &r.devices) {
            match earlier.filter(|e| e.wiped()) {
                Some(e) => r.wipe = e.wipe.clone(),
                None => {
                    let identities: Vec<String> =
                        devices.devices.iter().map(|d| d.identity.clone()).collect();
                    if !identities.is_empty() {
                        r.wipe = self
                            .mailbox_op(
                                dl,
                                &mut r.errors,
                                admin.wipe_devices(server, &id, &identities, mode),
                            )
                            .await;
                    }
                }
            }
        }
        // 2. Lockdown: every protocol refused, every device blocked.
        if a.lockdown {
            r.lockdown = self
                .mailbox_op(
                    dl,
                    &mut r.errors,
                    admin.set_cas(server, &id, &CasChange::lockdown()),
                )
                .await;
            if let Some(devices) = &r.devices {
                let ids: Vec<String> = devices
                    .devices
                    .iter()
                    .map(|d| d.device_id.clone())
                    .collect();
                if !ids.is_empty() {
                    r.blocked = self
                        .mailbox_op(dl, &mut r.errors, admin.block_devices(server, &id, &ids))
                        .await;
                }
            }
        }
        // 3. Forwarding and inbox rules: always read; removed only when asked.
        r.forwarding = self
            .mailbox_op(dl, &mut r.errors, admin.forwarding(server, &id))
            .await;
        if let (Some(action), Some(found)) = (a.forwarding, r.forwarding.clone()) {
            if found.forwarding.is_set() {
                r.forwarding_removed = self
                    .mailbox_op(dl, &mut r.errors, admin.remove_forwarding(server, &id))
                    .await;
            }
            let rules: Vec<String> = found.rules.iter().map(|x| x.identity.clone()).collect();
            if !rules.is_empty() {
                r.rules_changed = self
                    .mailbox_op(
                        dl,
                        &mut r.errors,
                        admin.change_inbox_rules(server, &id, &rules, action),
                    )
                    .await;
            }
        }
        self.recorded(w, r)
    }

    fn recorded(&self, w: &Work<'_>, r: MailboxRecord) -> MailboxRecord {
        self.emit(Event::MailboxRecorded {
            user: w.target.text.clone(),
            record: Box::new(r.clone()),
        });
        r
    }

    /// One mailbox operation within the per-server limit and the deadline; an error is
    /// written to `errors` (server and mailbox named by the backend).
    async fn mailbox_op<T>(
        &self,
        dl: Deadline,
        errors: &mut Vec<String>,
        fut: impl Future<Output = Result<T, MailboxError>>,
    ) -> Option<T> {
        let limit = dl.cap(self.timeouts.per_server);
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                errors.push(e.to_string());
                None
            }
            Err(_) => {
                errors.push(format!("no answer after {limit:?}"));
                None
            }
        }
    }
}

/// What the mailbox step left undone of what was asked, for the user's causes.
pub(crate) fn incomplete(actions: crate::MailboxActions, r: &MailboxRecord) -> Vec<String> {
    let mut what = r.errors.clone();
    if actions.wipe.is_some() && !r.wiped() {
        what.push("not every device was sent its wipe".into());
    }
    if actions.lockdown && !r.locked() {
        what.push("the mailbox is not locked down (a protocol or device is still open)".into());
    }
    if actions.forwarding.is_some() {
        if r.forwarding.is_none() {
            what.push("forwarding and inbox rules could not be read".into());
        }
        if r.forwarding_removed
            .as_ref()
            .is_some_and(|c| c.after.is_set())
        {
            what.push("forwarding is still set".into());
        }
        if let Some(c) = &r.rules_changed {
            if !c.rules.iter().all(|x| x.is_done()) {
                what.push(format!("not every inbox rule was {}d", c.action));
            }
        }
    }
    what
}
