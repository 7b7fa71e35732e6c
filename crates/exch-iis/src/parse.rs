//! Parsing the JSON documents that the scripts of [`crate::script`] print, for
//! [`WinRmFlusher`](crate::WinRmFlusher) and for callers that run the scripts through a
//! transport of their own. Every error is [`IisError::Protocol`] naming `server`.
//!
//! Windows PowerShell 5.1's `ConvertTo-Json` unrolls one-element arrays in some positions and
//! writes empty ones as `null`; every list here accepts an array, a single object or `null`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use exch_core::AppPool;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;

use crate::{
    AppPoolState, FlushMethod, FlushReport, IisError, PoolFlush, PoolRunState, TokenCacheSettings,
    WorkerProcess,
};

fn one_or_many<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(D::Error::custom))
            .collect(),
        other => Ok(vec![
            serde_json::from_value(other).map_err(D::Error::custom)?
        ]),
    }
}

#[derive(Deserialize)]
struct RawWorker {
    pid: i64,
    started: String,
}

#[derive(Deserialize)]
struct RawPool {
    name: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    workers: Vec<RawWorker>,
}

#[derive(Deserialize)]
struct RawList {
    #[serde(default, deserialize_with = "one_or_many")]
    pools: Vec<RawPool>,
}

#[derive(Deserialize)]
struct RawRecyclePool {
    name: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    before: Vec<RawWorker>,
    #[serde(default, deserialize_with = "one_or_many")]
    after: Vec<RawWorker>,
    #[serde(default)]
    error: Option<String>,
    /// How long the script waited for the old workers to stop serving.
    #[serde(default, rename = "waitedMs")]
    waited_ms: Option<u64>,
    /// The pool's shutdown limit the wait was bounded by.
    #[serde(default, rename = "limitMs")]
    limit_ms: Option<u64>,
}

#[derive(Deserialize)]
struct RawRecycle {
    requested: String,
    #[serde(default, deserialize_with = "one_or_many")]
    pools: Vec<RawRecyclePool>,
    #[serde(default, deserialize_with = "one_or_many")]
    missing: Vec<String>,
}

#[derive(Deserialize)]
struct RawBefore {
    name: String,
    #[serde(default, deserialize_with = "one_or_many")]
    workers: Vec<RawWorker>,
}

#[derive(Deserialize)]
struct RawReset {
    requested: String,
    #[serde(rename = "exitCode")]
    exit_code: Option<i64>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    before: Vec<RawBefore>,
    #[serde(default, deserialize_with = "one_or_many")]
    pools: Vec<RawPool>,
}

#[derive(Deserialize)]
struct RawTtl {
    #[serde(rename = "userTokenTtl")]
    user_token_ttl: Option<i64>,
}

struct Ctx<'a> {
    server: &'a str,
}

impl Ctx<'_> {
    fn err(&self, detail: impl Into<String>) -> IisError {
        IisError::Protocol {
            server: self.server.to_string(),
            detail: detail.into(),
            source: None,
        }
    }

    fn json<T: DeserializeOwned>(&self, what: &str, stdout: &str) -> Result<T, IisError> {
        let text = stdout.trim_start_matches('\u{feff}').trim();
        // serde_json's message quotes the offending value in full (a 1 MiB string from a
        // hostile server would end up in the error, the report and the logs): keep an excerpt
        // and leave the serde error out of the source chain.
        serde_json::from_str(text).map_err(|e| {
            let full = e.to_string();
            let reason = if full.chars().count() > 200 {
                let head: String = full.chars().take(160).collect();
                format!("{head}… at line {} column {}", e.line(), e.column())
            } else {
                full
            };
            IisError::Protocol {
                server: self.server.to_string(),
                detail: format!(
                    "the {what} script printed no valid JSON ({reason}); stdout began with {:?}",
                    text.chars().take(200).collect::<String>()
                ),
                source: None,
            }
        })
    }

    fn time(&self, s: &str) -> Result<DateTime<Utc>, IisError> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                let head: String = s.chars().take(64).collect();
                self.err(format!("bad timestamp {head:?}: {e}"))
            })
    }

    fn workers(&self, raw: &[RawWorker]) -> Result<Vec<WorkerProcess>, IisError> {
        raw.iter()
            .map(|w| {
                let pid = u32::try_from(w.pid)
                    .map_err(|_| self.err(format!("bad worker pid {}", w.pid)))?;
                Ok(WorkerProcess {
                    pid,
                    started: self.time(&w.started)?,
                })
            })
            .collect()
    }

    fn pool(&self, name: &str) -> Result<AppPool, IisError> {
        AppPool::new(name).map_err(|e| self.err(format!("server reported pool {e}")))
    }
}

fn state(s: Option<&str>) -> PoolRunState {
    s.map(PoolRunState::parse).unwrap_or(PoolRunState::Unknown)
}

/// Parses the output of [`crate::script::list_pools`]. Pools whose names this crate cannot
/// represent (outside [`AppPool`]'s alphabet) are skipped with a warning: they cannot be
/// targeted by a flush either.
pub fn pool_list(server: &str, stdout: &str) -> Result<Vec<AppPoolState>, IisError> {
    let cx = Ctx { server };
    let raw: RawList = cx.json("pool listing", stdout)?;
    let mut out = Vec::with_capacity(raw.pools.len());
    for p in raw.pools {
        let Ok(name) = AppPool::new(p.name.as_str()) else {
            tracing::warn!(server, pool = %p.name, "skipping a pool whose name exch-iis cannot address");
            continue;
        };
        out.push(AppPoolState {
            name,
            state: state(p.state.as_deref()),
            workers: cx.workers(&p.workers)?,
        });
    }
    Ok(out)
}

/// Parses the output of [`crate::script::recycle_pools`].
pub fn recycle_report(
    server: &str,
    method: &FlushMethod,
    stdout: &str,
) -> Result<FlushReport, IisError> {
    let cx = Ctx { server };
    let raw: RawRecycle = cx.json("recycle", stdout)?;
    let requested_at = cx.time(&raw.requested)?;
    let mut pools = Vec::with_capacity(raw.pools.len());
    for p in raw.pools {
        let mut flush = PoolFlush::new(
            cx.pool(&p.name)?,
            cx.workers(&p.before)?,
            cx.workers(&p.after)?,
            state(p.state.as_deref()),
            p.error.filter(|e| !e.trim().is_empty()),
            requested_at,
        );
        if !flush.proven && flush.error.is_none() {
            flush.error = Some(stale_workers(
                &flush.before,
                &flush.after,
                p.waited_ms,
                p.limit_ms,
            ));
        }
        pools.push(flush);
    }
    let missing_pools = raw
        .missing
        .iter()
        .map(|m| cx.pool(m))
        .collect::<Result<_, _>>()?;
    Ok(FlushReport {
        server: server.to_string(),
        method: method.clone(),
        requested_at,
        pools,
        missing_pools,
        elapsed: Duration::ZERO,
        round_trips: 0,
    })
}

/// Why a pool whose recycle was accepted is not proven: a worker that served before the
/// request still takes new requests, after the script waited (bounded by the pool's shutdown
/// limit).
fn stale_workers(
    before: &[WorkerProcess],
    after: &[WorkerProcess],
    waited_ms: Option<u64>,
    limit_ms: Option<u64>,
) -> String {
    let stale: Vec<String> = after
        .iter()
        .filter(|w| before.iter().any(|b| b.pid == w.pid))
        .map(|w| w.pid.to_string())
        .collect();
    let who = if stale.is_empty() {
        "a worker that started before the request".to_owned()
    } else {
        format!("the old worker (pid {})", stale.join(", "))
    };
    let waited = waited_ms.unwrap_or(0) as f64 / 1000.0;
    match limit_ms {
        Some(limit) => format!(
            "recycle not complete: {who} still takes new requests after waiting {waited:.1} s (the pool's shutdown limit is {:.0} s)",
            limit as f64 / 1000.0
        ),
        None => format!("recycle not complete: {who} still takes new requests after waiting {waited:.1} s"),
    }
}

/// Parses the output of [`crate::script::iis_reset`]; a non-zero `iisreset` exit code is
/// [`IisError::CommandFailed`] with iisreset's own output.
pub fn reset_report(
    server: &str,
    method: &FlushMethod,
    stdout: &str,
) -> Result<FlushReport, IisError> {
    let cx = Ctx { server };
    let raw: RawReset = cx.json("iisreset", stdout)?;
    let code = raw.exit_code.unwrap_or(0);
    if code != 0 {
        let output = raw.output.as_deref().unwrap_or("iisreset failed");
        // A `/noforce` stop that timed out cannot be cancelled (the Service Control Manager
        // goes on stopping W3SVC): say so when every pool is left without a running state.
        let left_stopped = !raw.pools.is_empty()
            && raw.pools.iter().all(|p| {
                !matches!(
                    state(p.state.as_deref()),
                    PoolRunState::Started | PoolRunState::Starting
                )
            });
        let stderr = if left_stopped {
            format!(
                "IIS is left stopped: every application pool is stopped and requests get 503 \
                 until `iisreset /start` (a service stop cannot be cancelled). iisreset said: {output}"
            )
        } else {
            output.to_owned()
        };
        return Err(IisError::CommandFailed {
            server: server.to_string(),
            exit_code: i32::try_from(code).unwrap_or(i32::MIN),
            stderr: crate::error::clip(&stderr),
        });
    }
    let requested_at = cx.time(&raw.requested)?;
    let mut pools = Vec::with_capacity(raw.pools.len());
    for p in raw.pools {
        let Ok(pool) = AppPool::new(p.name.as_str()) else {
            tracing::warn!(server, pool = %p.name, "skipping a pool whose name exch-iis cannot address");
            continue;
        };
        let before = match raw.before.iter().find(|b| b.name == p.name) {
            Some(b) => cx.workers(&b.workers)?,
            None => Vec::new(),
        };
        pools.push(PoolFlush::new(
            pool,
            before,
            cx.workers(&p.workers)?,
            state(p.state.as_deref()),
            None,
            requested_at,
        ));
    }
    Ok(FlushReport {
        server: server.to_string(),
        method: method.clone(),
        requested_at,
        pools,
        missing_pools: Vec::new(),
        elapsed: Duration::ZERO,
        round_trips: 0,
    })
}

/// Parses the output of [`crate::script::read_token_ttl`] / [`crate::script::set_token_ttl`].
pub fn token_ttl(server: &str, stdout: &str) -> Result<TokenCacheSettings, IisError> {
    let cx = Ctx { server };
    let raw: RawTtl = cx.json("UserTokenTTL", stdout)?;
    let configured = match raw.user_token_ttl {
        None => None,
        Some(s) => {
            Some(Duration::from_secs(u64::try_from(s).map_err(|_| {
                cx.err(format!("UserTokenTTL is negative ({s})"))
            })?))
        }
    };
    Ok(TokenCacheSettings { configured })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycle_output_is_proven_when_workers_are_new() {
        let out = r#"{"requested":"2026-11-23T10:00:00.1234567Z","pools":[{"name":"MSExchangeOWAAppPool","state":"Started","before":[{"pid":100,"started":"2026-11-23T09:00:00.0000000Z"}],"after":{"pid":101,"started":"2026-11-23T10:00:01.0000000Z"},"error":null},{"name":"MSExchangeSyncAppPool","state":"Started","before":null,"after":[],"error":null}],"missing":"MSExchangeOABAppPool"}"#;
        let r = recycle_report("EX1", &FlushMethod::default(), out).unwrap();
        assert_eq!(r.pools.len(), 2);
        assert!(r.pools.iter().all(|p| p.proven));
        assert_eq!(r.missing_pools[0].as_str(), "MSExchangeOABAppPool");
        assert!(r.is_proven());
    }

    #[test]
    fn old_worker_or_error_is_not_proven() {
        let out = r#"{"requested":"2026-11-23T10:00:00Z","pools":[{"name":"A","state":"Started","before":[{"pid":1,"started":"2026-11-23T09:00:00Z"}],"after":[{"pid":1,"started":"2026-11-23T09:00:00Z"}],"error":null},{"name":"B","state":"Stopped","before":[],"after":[],"error":"boom"}],"missing":[]}"#;
        let r = recycle_report("EX1", &FlushMethod::default(), out).unwrap();
        assert!(!r.pools[0].proven && !r.pools[1].proven);
        assert_eq!(r.pools[1].state, PoolRunState::Stopped);
        // The old worker still serving is named, with how long the script waited.
        assert_eq!(
            r.pools[0].error.as_deref(),
            Some("recycle not complete: the old worker (pid 1) still takes new requests after waiting 0.0 s")
        );
        let waited = out.replace(
            r#""error":null}"#,
            r#""error":null,"waitedMs":5000,"limitMs":5000}"#,
        );
        let r = recycle_report("EX1", &FlushMethod::default(), &waited).unwrap();
        let e = r.pools[0].error.as_deref().unwrap_or("");
        assert!(
            e.contains("after waiting 5.0 s (the pool's shutdown limit is 5 s)"),
            "{e}"
        );
    }

    #[test]
    fn garbage_is_a_protocol_error_naming_the_server() {
        let e = recycle_report("EX7", &FlushMethod::default(), "WARNING: hello").unwrap_err();
        assert!(matches!(e, IisError::Protocol { .. }));
        assert!(e.to_string().contains("EX7"), "{e}");
        let e = token_ttl("EX7", r#"{"userTokenTtl":-1}"#).unwrap_err();
        assert!(matches!(e, IisError::Protocol { .. }));
    }

    #[test]
    fn iisreset_failure_is_command_failed() {
        let out = r#"{"requested":"2026-11-23T10:00:00Z","exitCode":1,"output":"Restart attempt failed.","before":[],"pools":[]}"#;
        let e = reset_report("EX2", &FlushMethod::IisReset { force: false }, out).unwrap_err();
        assert!(
            matches!(e, IisError::CommandFailed { exit_code: 1, .. }),
            "{e}"
        );
        assert!(!e.to_string().contains("left stopped"), "{e}");
        // A /noforce stop that timed out leaves IIS stopped: the error says so.
        let out = r#"{"requested":"2026-11-23T10:00:00Z","exitCode":1,"output":"Restart attempt failed.","before":[],"pools":[{"name":"A","state":"Stopped","workers":[]},{"name":"B","state":"Stopped","workers":[]}]}"#;
        let e = reset_report("EX2", &FlushMethod::IisReset { force: false }, out).unwrap_err();
        let IisError::CommandFailed { stderr, .. } = &e else {
            panic!("{e}")
        };
        assert!(
            stderr.starts_with("IIS is left stopped") && stderr.contains("iisreset /start"),
            "{stderr}"
        );
    }

    #[test]
    fn ttl_null_means_default() {
        let t = token_ttl("EX", "\u{feff}{\"userTokenTtl\":null}\r\n").unwrap();
        assert_eq!(t.configured, None);
        assert_eq!(t.effective_ttl(), Duration::from_secs(900));
    }
}
