//! Per-server work of the engine (one user or many): flushing the
//! planned servers with the chosen strategy (and retries, within the run's deadline), and
//! probing a flushed server's endpoints with the old password.

use exch_core::Protocol;
use exch_iis::{FlushMethod, IisError};
use futures::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::deadline::Deadline;
use crate::engine::Engine;
use crate::plan::PlannedServer;
use crate::reasons::{FailureKind, SkipReason};
use crate::report::{ProbeRecord, ServerRecord};
use crate::{Event, ProbeResult, ServerOutcome};

/// Servers probed at once (never more than the strategy flushes at once). Every probe that is
/// refused is a logon that the server's IIS checks with a domain controller, so this bounds the
/// burst a DC sees: 4 servers ≈ 20 logons in flight. Measured with 50 servers against Samba AD
/// (one process, listen backlog 10): one server at a time took 3.0 s, 2 → 1.47 s, 4 → 1.3 s
/// (1.6 s when the DC's backlog overflowed), 8 → 1.49 s, 64 → 10 s time-outs (BENCHMARKS.md).
pub(crate) const PROBE_SERVERS_IN_FLIGHT: usize = 4;

/// Protocols whose logon can be probed over HTTP with a user name and password. EWS and MAPI
/// take Windows authentication only at Exchange's defaults: there the prober answers
/// [`ProbeResult::NotApplicable`] and the record says so ([`ProbeRecord::applicable`]); they
/// stay on the list for the deployments that allow Basic on them, where a logon proves as much
/// as on ActiveSync.
const PROBED: [Protocol; 5] = [
    Protocol::Owa,
    Protocol::Ews,
    Protocol::Eas,
    Protocol::Mapi,
    Protocol::RpcHttp,
];

/// Logs on to `p`'s endpoints (the protocols its flushed pools serve) as `user` with the old
/// password `old`; one record per protocol.
pub(crate) async fn probe_server(
    r: &Engine,
    prober: &dyn crate::Prober,
    p: &PlannedServer,
    user: &str,
    old: &secrecy::SecretString,
    dl: Deadline,
) -> Vec<ProbeRecord> {
    let protocols: Vec<Protocol> = match &r.method {
        FlushMethod::IisReset { .. } => PROBED.to_vec(),
        _ => {
            let mut v: Vec<Protocol> = p
                .pools
                .iter()
                .flat_map(|x| x.protocols.iter().copied())
                .filter(|x| PROBED.contains(x))
                .collect();
            v.sort();
            v.dedup();
            v
        }
    };
    let results = dl
        .bound(futures::future::join_all(
            protocols
                .iter()
                .map(|&proto| prober.probe(&p.server, proto, user, old)),
        ))
        .await
        .unwrap_or_else(|| {
            let why = format!("not probed: the run deadline ({:?}) was reached", dl.limit);
            protocols
                .iter()
                .map(|_| ProbeResult::Error(why.clone()))
                .collect()
        });
    protocols
        .iter()
        .zip(results)
        .map(|(&protocol, res)| {
            let (refused, applicable, detail) = match res {
                ProbeResult::Refused(d) => (true, true, d),
                ProbeResult::Accepted(d) => (false, true, format!("ACCEPTED: {d}")),
                ProbeResult::NotApplicable(d) => (false, false, format!("not applicable: {d}")),
                ProbeResult::Error(d) => (false, true, format!("probe failed: {d}")),
            };
            ProbeRecord {
                protocol,
                refused,
                applicable,
                detail,
            }
        })
        .collect()
}

/// Flushes `servers` with the run's strategy; records in plan order.
pub(crate) async fn flush_servers(
    r: &Engine,
    servers: &[PlannedServer],
    dl: Deadline,
) -> Vec<ServerRecord> {
    let planned: Vec<&PlannedServer> = servers.iter().collect();
    let records: Vec<ServerRecord> = match r.strategy {
        crate::Strategy::Parallel { max_in_flight } => {
            // Futures are created up front (lazily polled): keeps `execute` Send. Unordered:
            // `buffered` counts a finished flush against the limit until every earlier one
            // has finished too, so one slow server held back the next ones (BENCHMARKS.md).
            let flushes: Vec<_> = planned
                .iter()
                .enumerate()
                .map(|(i, p)| async move { (i, flush_one(r, p, dl).await) })
                .collect();
            let mut done: Vec<(usize, ServerRecord)> = futures::stream::iter(flushes)
                .buffer_unordered(max_in_flight.max(1))
                .collect()
                .await;
            // Report in plan order.
            done.sort_by_key(|(i, _)| *i);
            done.into_iter().map(|(_, rec)| rec).collect()
        }
        crate::Strategy::Rolling { batch, pause } => {
            let mut out = Vec::with_capacity(planned.len());
            let to_flush: Vec<&PlannedServer> =
                planned.iter().copied().filter(|p| p.is_flushed()).collect();
            for (i, chunk) in to_flush.chunks(batch).enumerate() {
                if i > 0 && !pause.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(dl.cap(pause)) => {}
                        _ = r.cancel.cancelled() => {}
                    }
                }
                out.extend(
                    futures::future::join_all(chunk.iter().map(|p| flush_one(r, p, dl))).await,
                );
            }
            for p in planned.iter().filter(|p| !p.is_flushed()) {
                out.push(flush_one(r, p, dl).await);
            }
            // Report in plan order, whatever the batching.
            out.sort_by_key(|rec| planned.iter().position(|p| p.server.name == rec.server));
            out
        }
    };
    records
}

/// `Restart-WebAppPool` returns before the recycle is complete: an overlapped pool's old
/// worker keeps taking new requests (from its token cache) until the new one has started. A
/// pool that is not proven only because an old worker still serves (no error) is looked at
/// again with [`exch_iis::CacheFlusher::app_pools`], with back-off, until no worker listed
/// before the flush serves — at most the pool's shutdown limit
/// ([`exch_iis::catalog::recycle_profile`]) and the run's deadline. Pools with an error are
/// left as they are (a backend that already waited, like `WinRmFlusher`, says so in the error).
async fn await_old_workers(
    r: &Engine,
    p: &PlannedServer,
    mut flush: exch_iis::FlushReport,
    dl: Deadline,
) -> exch_iis::FlushReport {
    // The pools still waiting, with their shutdown limits: a pool leaves once proven or once
    // its limit has passed (it is not looked at again after that).
    let mut pending: Vec<(usize, std::time::Duration)> = flush
        .pools
        .iter()
        .enumerate()
        .filter(|(_, x)| !x.proven && x.error.is_none())
        .map(|(i, x)| {
            let profile = exch_iis::catalog::recycle_profile(&x.pool);
            (i, profile.shutdown_time_limit)
        })
        .collect();
    let Some(limit) = pending.iter().map(|&(_, l)| l).max() else {
        return flush;
    };
    let limit = dl.cap(limit);
    let started = Instant::now();
    let mut delay = std::time::Duration::from_millis(50);
    while !pending.is_empty() && started.elapsed() < limit && !r.cancel.is_cancelled() {
        tokio::select! {
            _ = tokio::time::sleep(delay.min(limit.saturating_sub(started.elapsed()))) => {}
            _ = r.cancel.cancelled() => break,
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
        let listed = match tokio::time::timeout(
            dl.cap(r.timeouts.per_server),
            r.flusher.app_pools(&p.server),
        )
        .await
        {
            Ok(Ok(listed)) => listed,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not list the pools again");
                continue;
            }
            Err(_) => continue,
        };
        let elapsed = started.elapsed();
        pending.retain(|&(_, pool_limit)| elapsed <= pool_limit);
        for &(i, _) in &pending {
            let x = &flush.pools[i];
            let Some(now) = listed
                .iter()
                .find(|l| l.name.as_str().eq_ignore_ascii_case(x.pool.as_str()))
            else {
                continue;
            };
            flush.pools[i] = exch_iis::PoolFlush::new(
                x.pool.clone(),
                x.before.clone(),
                now.workers.clone(),
                now.state,
                None,
                flush.requested_at,
            );
        }
        pending.retain(|&(i, _)| !flush.pools[i].proven);
        if flush.pools.iter().all(|x| x.proven || x.error.is_some()) {
            tracing::debug!(waited = ?elapsed, "old workers gone");
        }
    }
    flush
}

pub(crate) async fn flush_one(r: &Engine, p: &PlannedServer, dl: Deadline) -> ServerRecord {
    let t = Instant::now();
    let record = |outcome| ServerRecord {
        server: p.server.name.clone(),
        fqdn: p.server.fqdn.clone(),
        outcome,
        probes: Vec::new(),
        elapsed: t.elapsed(),
    };
    if let Some(reason) = &p.skip {
        return record(ServerOutcome::Skipped {
            reason: reason.clone(),
        });
    }
    if r.cancel.is_cancelled() {
        return record(ServerOutcome::Skipped {
            reason: SkipReason::Cancelled,
        });
    }
    if dl.expired() {
        return record(ServerOutcome::Skipped {
            reason: SkipReason::Deadline { limit: dl.limit },
        });
    }
    let span = tracing::info_span!("flush", server = %p.server.name);
    let outcome = async {
        r.emit(Event::ServerStarted {
            server: p.server.name.clone(),
        });
        // The planned pools, named: what the plan showed is what is recycled.
        let method = match &r.method {
            FlushMethod::IisReset { .. } => r.method.clone(),
            _ if p.pools.is_empty() => FlushMethod::RecycleCatalogPools,
            _ => FlushMethod::RecycleAppPools(p.pools.iter().map(|x| x.pool.clone()).collect()),
        };
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let limit = dl.cap(r.timeouts.per_server);
            let result =
                match tokio::time::timeout(limit, r.flusher.flush(&p.server, &method)).await {
                    Ok(res) => res,
                    Err(_) if limit < r.timeouts.per_server => Err(IisError::Timeout {
                        server: p.server.name.clone(),
                        operation: format!("flush (cut by the run deadline of {:?})", dl.limit),
                        after: limit,
                    }),
                    Err(_) => Err(IisError::Timeout {
                        server: p.server.name.clone(),
                        operation: "flush".into(),
                        after: r.timeouts.per_server,
                    }),
                };
            let result = match result {
                Ok(flush) if !flush.is_proven() => Ok(await_old_workers(r, p, flush, dl).await),
                other => other,
            };
            match result {
                Ok(flush) if flush.is_proven() => {
                    break ServerOutcome::Flushed {
                        flush,
                        attempts: attempt,
                    }
                }
                Ok(flush) => {
                    let bad: Vec<String> = flush
                        .pools
                        .iter()
                        .filter(|x| !x.proven)
                        .map(|x| match &x.error {
                            Some(e) => format!("{}: {e}", x.pool),
                            None => format!(
                                "{}: a worker that served before the recycle still takes new requests after waiting {:.1} s (the pool's shutdown limit, or the run's deadline)",
                                x.pool,
                                dl.cap(exch_iis::catalog::recycle_profile(&x.pool).shutdown_time_limit)
                                    .as_secs_f64()
                            ),
                        })
                        .collect();
                    let reason = if flush.pools.is_empty() {
                        "no pool was flushed (none of the planned pools exists on the server)"
                            .to_owned()
                    } else {
                        bad.join("; ")
                    };
                    break ServerOutcome::Unproven {
                        flush,
                        attempts: attempt,
                        reason,
                    };
                }
                Err(e)
                    if e.is_transient()
                        && attempt < r.retry.attempts
                        && !r.cancel.is_cancelled()
                        && dl.cap(r.retry.delay(attempt)) == r.retry.delay(attempt)
                        && !dl.expired() =>
                {
                    let delay = r.retry.delay(attempt);
                    tracing::warn!(attempt, error = %e, "flush failed, retrying");
                    r.emit(Event::Retry {
                        target: p.server.name.clone(),
                        attempt,
                        delay,
                        error: e.to_string(),
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = r.cancel.cancelled() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "flush failed");
                    break ServerOutcome::Failed {
                        kind: FailureKind::of(&e),
                        error: e.to_string(),
                        attempts: attempt,
                    };
                }
            }
        };
        r.emit(Event::ServerFinished {
            server: p.server.name.clone(),
            proven: outcome.is_proven(),
        });
        outcome
    }
    .instrument(span)
    .await;
    let rec = record(outcome);
    r.emit(Event::ServerRecorded {
        record: Box::new(rec.clone()),
    });
    rec
}
