//! One PowerShell invocation over one WinRM shell: Create, Command, Receive (re-polled on
//! `w:TimedOut`), Delete — on one authenticated session — and the mapping of transport errors
//! to [`IisError`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::envelope::Envelopes;
use super::reply;
use super::transport::auth::AuthErrorKind;
use super::transport::{Session, Transport, WsmanError};
use super::Endpoint;
use crate::error::clip;
use crate::IisError;

/// The WS-Management fault code for "no output before OperationTimeout" (MS-WSMV): the client
/// must simply Receive again.
pub(crate) const TIMED_OUT_CODE: &str = "2150858793";

/// Most output accepted from one script (the JSON documents are a few KiB).
const MAX_OUTPUT: usize = 8 * 1024 * 1024;

/// What identifies the target in errors.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) server: String,
    pub(crate) endpoint: Endpoint,
    pub(crate) user: String,
}

/// The result of one script run, whatever its exit code.
pub(crate) struct ScriptRun {
    pub(crate) stdout: String,
    /// Readable text (CLIXML decoded).
    pub(crate) stderr: String,
    /// `None` when the command ended without one (treated as a failure).
    pub(crate) exit_code: Option<i32>,
    pub(crate) round_trips: u32,
}

impl ScriptRun {
    /// The run when it exited with 0, else [`IisError::CommandFailed`] naming `server` with
    /// stderr (or stdout when stderr is empty), trimmed and clipped.
    pub(crate) fn succeeded(self, server: &str) -> Result<ScriptRun, IisError> {
        match self.exit_code {
            Some(0) => Ok(self),
            code => Err(IisError::CommandFailed {
                server: server.to_string(),
                exit_code: code.unwrap_or(-1),
                stderr: clip(if self.stderr.trim().is_empty() {
                    &self.stdout
                } else {
                    &self.stderr
                }),
            }),
        }
    }
}

/// Deletes the shell when dropped while armed: covers a cancelled future and a deadline that
/// expired mid-operation. Runs in the background on a session of its own, bounded by
/// `cleanup_timeout`.
struct ShellGuard {
    transport: Arc<Transport>,
    endpoint: Endpoint,
    envelopes: Arc<Envelopes>,
    shell: Arc<Mutex<Option<String>>>,
    cleanup_timeout: Duration,
    armed: bool,
}

impl Drop for ShellGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let shell = self.shell.lock().ok().and_then(|mut s| s.take());
        let (Some(shell), Ok(rt)) = (shell, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let transport = Arc::clone(&self.transport);
        let endpoint = self.endpoint.clone();
        let envelopes = Arc::clone(&self.envelopes);
        let limit = self.cleanup_timeout;
        rt.spawn(async move {
            let host = endpoint.host.clone();
            let work = async {
                let mut s = transport.session(&endpoint).await?;
                transport.post(&mut s, &envelopes.delete(&shell)).await?;
                transport.give_back(s);
                Ok::<_, WsmanError>(())
            };
            match tokio::time::timeout(limit, work).await {
                Ok(Ok(())) => {
                    tracing::debug!(%host, %shell, "deleted WinRM shell in the background")
                }
                Ok(Err(e)) => {
                    tracing::warn!(%host, %shell, error = %e, "could not delete WinRM shell")
                }
                Err(_) => tracing::warn!(%host, %shell, "deleting WinRM shell timed out"),
            }
        });
    }
}

fn is_timed_out(e: &WsmanError) -> bool {
    matches!(e, WsmanError::Fault { code, reason }
        if code.ends_with("TimedOut") || code.contains(TIMED_OUT_CODE) || reason.contains(TIMED_OUT_CODE))
}

fn soap<T>(r: Result<T, String>) -> Result<T, WsmanError> {
    r.map_err(|e| WsmanError::Protocol(format!("unexpected WS-Management reply: {e}")))
}

/// Runs `command` on `target` and returns what it printed and its exit code (a non-zero exit
/// is not an error here: see [`ScriptRun::succeeded`]); every failure names the server.
pub(crate) async fn run_script(
    transport: Arc<Transport>,
    target: &Target,
    envelopes: Arc<Envelopes>,
    operation: &'static str,
    command: &[String],
    deadline_after: Duration,
    cleanup_timeout: Duration,
) -> Result<ScriptRun, IisError> {
    let deadline = Instant::now() + deadline_after;
    let round_trips = AtomicU32::new(0);
    let shell_cell: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let mut guard = ShellGuard {
        transport: Arc::clone(&transport),
        endpoint: target.endpoint.clone(),
        envelopes: Arc::clone(&envelopes),
        shell: Arc::clone(&shell_cell),
        cleanup_timeout,
        armed: true,
    };
    let mut slot: Option<Session> = None;
    let t = &transport;
    let env = &envelopes;

    let work = async {
        let session = match slot.take() {
            Some(s) => slot.insert(s),
            None => slot.insert(t.session(&target.endpoint).await?),
        };
        round_trips.fetch_add(1, Ordering::Relaxed);
        let answer = t.post(session, &env.create()).await?;
        let shell = soap(reply::shell_id(&answer))?;
        if let Ok(mut cell) = shell_cell.lock() {
            *cell = Some(shell.clone());
        }
        tracing::debug!(%shell, "shell created");
        let (program, args) = command
            .split_first()
            .ok_or_else(|| WsmanError::Protocol("empty command line (exch-iis bug)".into()))?;
        round_trips.fetch_add(1, Ordering::Relaxed);
        let answer = t.post(session, &env.command(&shell, program, args)).await?;
        let command_id = soap(reply::command_id(&answer))?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut exit_code = None;
        loop {
            round_trips.fetch_add(1, Ordering::Relaxed);
            match t.post(session, &env.receive(&shell, &command_id)).await {
                Ok(answer) => {
                    let out = soap(reply::receive(&answer))?;
                    stdout.extend_from_slice(&out.stdout);
                    stderr.extend_from_slice(&out.stderr);
                    if out.exit_code.is_some() {
                        exit_code = out.exit_code;
                    }
                    if stdout.len() + stderr.len() > MAX_OUTPUT {
                        round_trips.fetch_add(1, Ordering::Relaxed);
                        let _ = t.post(session, &env.terminate(&shell, &command_id)).await;
                        return Err(WsmanError::Protocol(format!(
                            "the script printed more than {MAX_OUTPUT} bytes"
                        )));
                    }
                    if out.done {
                        break;
                    }
                }
                Err(e) if is_timed_out(&e) => {
                    tracing::debug!("Receive timed out on the server; polling again");
                }
                Err(e) => return Err(e),
            }
        }
        Ok::<_, WsmanError>((stdout, stderr, exit_code))
    };

    let outcome = tokio::time::timeout_at(deadline, work).await;
    let result = match outcome {
        // Deadline: leave the guard armed; it deletes the shell in the background.
        Err(_) => {
            return Err(IisError::Timeout {
                server: target.server.clone(),
                operation: operation.to_string(),
                after: deadline_after,
            })
        }
        Ok(r) => r,
    };
    // Delete the shell inline (counted), also after an error, on the same session when it is
    // still good. The guard stays armed until the Delete has been answered, so a caller that
    // gives up meanwhile still gets it deleted.
    let shell = shell_cell.lock().ok().and_then(|s| s.clone());
    if let Some(shell) = shell {
        round_trips.fetch_add(1, Ordering::Relaxed);
        let delete = async {
            let mut s = match slot.take().filter(Session::is_healthy) {
                Some(s) => s,
                None => t.session(&target.endpoint).await?,
            };
            let r = t.post(&mut s, &env.delete(&shell)).await;
            slot = Some(s);
            r.map(|_| ())
        };
        match tokio::time::timeout(cleanup_timeout, delete).await {
            Ok(Ok(())) => tracing::debug!(%shell, "shell deleted"),
            Ok(Err(e)) => tracing::warn!(%shell, error = %e, "could not delete WinRM shell"),
            Err(_) => tracing::warn!(%shell, "deleting WinRM shell timed out"),
        }
    }
    guard.armed = false;
    if let Some(s) = slot.take() {
        transport.give_back(s);
    }
    let (stdout, stderr, exit_code) =
        result.map_err(|e| map_error(e, target, operation, deadline_after))?;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = crate::clixml::readable(&String::from_utf8_lossy(&stderr));
    Ok(ScriptRun {
        stdout,
        stderr,
        exit_code,
        round_trips: round_trips.load(Ordering::Relaxed),
    })
}

/// Maps a transport error to the crate's kinds (the underlying error only as `source`).
pub(crate) fn map_error(
    e: WsmanError,
    target: &Target,
    operation: &str,
    limit: Duration,
) -> IisError {
    let server = target.server.clone();
    let endpoint = target.endpoint.url();
    match e {
        WsmanError::Http(h) if h.is_timeout() => IisError::Timeout {
            server,
            operation: operation.to_string(),
            after: limit,
        },
        e @ (WsmanError::Connect(_) | WsmanError::ConnectTimeout(_) | WsmanError::Http(_)) => {
            IisError::Unreachable {
                server,
                endpoint,
                detail: e.to_string(),
                source: Some(Box::new(e)),
            }
        }
        WsmanError::Tls(io) => IisError::Tls {
            server,
            endpoint,
            detail: io.to_string(),
        },
        WsmanError::Refused(reason) => IisError::Unauthenticated {
            server,
            user: target.user.clone(),
            reason,
        },
        WsmanError::NoAllowedMethod { offered, wanted } => IisError::AuthMethodUnavailable {
            server,
            offered,
            wanted: wanted.to_owned(),
        },
        WsmanError::Auth(a) if a.kind == AuthErrorKind::Settings => IisError::InvalidInput {
            what: "credentials".into(),
            reason: a.detail,
        },
        WsmanError::Fault { code, reason } => IisError::Fault {
            server,
            code,
            message: clip(&reason),
        },
        other => IisError::Protocol {
            server,
            detail: clip(&format!("{endpoint}: {other}")),
            source: None,
        },
    }
}
