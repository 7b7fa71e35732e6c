//! Step 3, convergence: every changed account read on every DC until it shows its change.

use exch_directory::{Dn, DomainController, UserRef};
use futures::StreamExt;
use tokio::time::Instant;

use super::change::Expected;
use super::Engine;
use crate::deadline::Deadline;
use crate::report::DcRecord;
use crate::Event;

/// Accounts per [`exch_directory::Directory::accounts_on`] call.
const READ_CHUNK: usize = 100;

/// One account to wait for: its user (as given), DN and what it must show.
pub(crate) struct Awaited<'a> {
    pub(crate) user: &'a str,
    pub(crate) dn: Dn,
    pub(crate) expected: Expected,
}

impl Engine {
    /// Reads every account of `targets` on every DC until it shows its change (or the
    /// convergence limit): per DC, the accounts not yet converged are read in chunks
    /// ([`exch_directory::Directory::accounts_on`]), `accounts_in_flight` chunks at a time,
    /// every `converge_poll`. Without DC objects, the bind server is read
    /// ([`exch_directory::Directory::find_accounts`]). One list of records per target, in
    /// order.
    pub(crate) async fn converge_all(
        &self,
        dl: Deadline,
        targets: &[Awaited<'_>],
    ) -> Vec<Vec<DcRecord>> {
        if targets.is_empty() {
            return Vec::new();
        }
        let dcs: Vec<Option<DomainController>> = match self
            .dir_within(
                dl,
                "list domain controllers",
                self.directory.domain_controllers(),
            )
            .await
        {
            Ok(d) if d.is_empty() => vec![None],
            Ok(d) => d.into_iter().map(Some).collect(),
            Err(e) => {
                let rec = DcRecord {
                    dc: "(discovery)".into(),
                    converged: false,
                    after: None,
                    reads: 0,
                    error: Some(format!("cannot list domain controllers: {e}")),
                };
                return targets.iter().map(|_| vec![rec.clone()]).collect();
            }
        };
        let t0 = Instant::now();
        let deadline = dl.cap_instant(t0 + self.timeouts.converge);
        let per_dc = futures::future::join_all(
            dcs.iter()
                .map(|dc| self.converge_on(dl, dc.as_ref(), targets, t0, deadline)),
        )
        .await;
        let mut out: Vec<Vec<DcRecord>> = targets.iter().map(|_| Vec::new()).collect();
        for records in per_dc {
            for (k, rec) in records.into_iter().enumerate() {
                out[k].push(rec);
            }
        }
        out
    }

    /// Reads every target on `dc` (or, without DC objects, on the bind server) until it shows
    /// its change or the deadline; one record per target, in order.
    async fn converge_on(
        &self,
        dl: Deadline,
        dc: Option<&DomainController>,
        targets: &[Awaited<'_>],
        t0: Instant,
        deadline: Instant,
    ) -> Vec<DcRecord> {
        let name = dc.map_or_else(|| "(bind server)".to_owned(), |d| d.name.clone());
        let mut records: Vec<DcRecord> = targets
            .iter()
            .map(|_| DcRecord {
                dc: name.clone(),
                converged: false,
                after: None,
                reads: 0,
                error: None,
            })
            .collect();
        loop {
            let pending: Vec<usize> = (0..targets.len())
                .filter(|&k| !records[k].converged)
                .collect();
            // Futures are created up front (lazily polled): keeps `execute` Send.
            let reads: Vec<_> = pending
                .chunks(READ_CHUNK)
                .map(|chunk| async move {
                    let dns: Vec<Dn> = chunk.iter().map(|&k| targets[k].dn.clone()).collect();
                    let limit = dl.cap(self.timeouts.directory.saturating_mul(4));
                    let results = match dc {
                        Some(dc) => {
                            tokio::time::timeout(limit, self.directory.accounts_on(dc, &dns)).await
                        }
                        None => {
                            let refs: Vec<UserRef> = dns.into_iter().map(UserRef::Dn).collect();
                            tokio::time::timeout(limit, self.directory.find_accounts(&refs)).await
                        }
                    };
                    (chunk, results)
                })
                .collect();
            let done: Vec<_> = futures::stream::iter(reads)
                .buffer_unordered(self.accounts_in_flight)
                .collect()
                .await;
            for (chunk, results) in done {
                for (n, &k) in chunk.iter().enumerate() {
                    let rec = &mut records[k];
                    rec.reads += 1;
                    let read = match &results {
                        Ok(v) => v.get(n),
                        Err(_) => None,
                    };
                    match read {
                        Some(Ok(a)) if targets[k].expected.shown_by(a) => {
                            let after = t0.elapsed();
                            rec.converged = true;
                            rec.after = Some(after);
                            rec.error = None;
                            self.emit(Event::DcConverged {
                                user: targets[k].user.to_owned(),
                                dc: name.clone(),
                                after,
                            });
                        }
                        Some(Ok(_)) => rec.error = Some("does not show the change yet".into()),
                        Some(Err(e)) => rec.error = Some(e.to_string()),
                        None => rec.error = Some("the read timed out".into()),
                    }
                }
            }
            if records.iter().all(|x| x.converged) {
                return records;
            }
            let now = Instant::now();
            if now >= deadline || self.cancel.is_cancelled() {
                let waited = if dl.expired() {
                    format!("{:?} (the run deadline was reached)", t0.elapsed())
                } else {
                    format!("{:?}", self.timeouts.converge)
                };
                for rec in records.iter_mut().filter(|x| !x.converged) {
                    let why = rec.error.take().unwrap_or_default();
                    rec.error = Some(format!("not converged after {waited}: {why}"));
                }
                return records;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timeouts.converge_poll.min(deadline - now)) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
    }
}
