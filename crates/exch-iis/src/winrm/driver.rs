//! One PowerShell invocation over one WinRM shell: Create, Command, Receive (re-polled on
//! `w:TimedOut`), Delete — and the mapping of winrm-rs errors to [`IisError`].

use std::error::Error as StdError;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use winrm_rs::{SoapError, WinrmClient, WinrmError};

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
    pub(crate) endpoint: String,
    pub(crate) host: String,
    pub(crate) user: String,
}

/// The result of one script run.
pub(crate) struct ScriptRun {
    pub(crate) stdout: String,
    pub(crate) round_trips: u32,
}

/// Deletes the shell when dropped while armed: covers a cancelled future and a deadline that
/// expired mid-operation. Runs in the background, bounded by `cleanup_timeout`.
struct ShellGuard {
    client: Arc<WinrmClient>,
    host: String,
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
        let client = Arc::clone(&self.client);
        let host = self.host.clone();
        let limit = self.cleanup_timeout;
        rt.spawn(async move {
            match tokio::time::timeout(limit, client.delete_shell(&host, &shell)).await {
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

fn is_timed_out(e: &WinrmError) -> bool {
    matches!(e, WinrmError::Soap(SoapError::Fault { code, reason })
        if code.ends_with("TimedOut") || code.contains(TIMED_OUT_CODE) || reason.contains(TIMED_OUT_CODE))
}

/// Runs `script` on `target` and returns its stdout; every failure names the server.
pub(crate) async fn run_script(
    client: Arc<WinrmClient>,
    target: &Target,
    operation: &'static str,
    command: &[String],
    deadline_after: Duration,
    cleanup_timeout: Duration,
) -> Result<ScriptRun, IisError> {
    let deadline = Instant::now() + deadline_after;
    let round_trips = AtomicU32::new(0);
    let shell_cell: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let mut guard = ShellGuard {
        client: Arc::clone(&client),
        host: target.host.clone(),
        shell: Arc::clone(&shell_cell),
        cleanup_timeout,
        armed: true,
    };
    let host = target.host.as_str();

    let work = async {
        round_trips.fetch_add(1, Ordering::Relaxed);
        let shell = client.create_shell(host).await?;
        if let Ok(mut cell) = shell_cell.lock() {
            *cell = Some(shell.clone());
        }
        tracing::debug!(%shell, "shell created");
        let (program, args) = command
            .split_first()
            .ok_or_else(|| WinrmError::Transfer("empty command line (exch-iis bug)".into()))?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        round_trips.fetch_add(1, Ordering::Relaxed);
        let command_id = client.execute_command(host, &shell, program, &args).await?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut exit_code = None;
        loop {
            round_trips.fetch_add(1, Ordering::Relaxed);
            match client.receive_output(host, &shell, &command_id).await {
                Ok(out) => {
                    stdout.extend_from_slice(&out.stdout);
                    stderr.extend_from_slice(&out.stderr);
                    if out.exit_code.is_some() {
                        exit_code = out.exit_code;
                    }
                    if stdout.len() + stderr.len() > MAX_OUTPUT {
                        round_trips.fetch_add(1, Ordering::Relaxed);
                        let _ = client.signal_terminate(host, &shell, &command_id).await;
                        return Err(WinrmError::Transfer(format!(
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
        Ok::<_, WinrmError>((stdout, stderr, exit_code))
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
    // Delete the shell inline (counted), also after an error. The guard stays armed until the
    // Delete has been answered, so a caller that gives up meanwhile still gets it deleted.
    let shell = shell_cell.lock().ok().and_then(|s| s.clone());
    if let Some(shell) = shell {
        round_trips.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(cleanup_timeout, client.delete_shell(host, &shell)).await {
            Ok(Ok(())) => tracing::debug!(%shell, "shell deleted"),
            Ok(Err(e)) => tracing::warn!(%shell, error = %e, "could not delete WinRM shell"),
            Err(_) => tracing::warn!(%shell, "deleting WinRM shell timed out"),
        }
    }
    guard.armed = false;
    let (stdout, stderr, exit_code) =
        result.map_err(|e| map_error(e, target, operation, deadline_after))?;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    match exit_code {
        Some(0) => Ok(ScriptRun {
            stdout,
            round_trips: round_trips.load(Ordering::Relaxed),
        }),
        code => Err(IisError::CommandFailed {
            server: target.server.clone(),
            exit_code: code.unwrap_or(-1),
            stderr: clip(if stderr.trim().is_empty() {
                &stdout
            } else {
                &stderr
            }),
        }),
    }
}

fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Maps a winrm-rs error to the crate's kinds (the winrm-rs error only as `source`).
pub(crate) fn map_error(
    e: WinrmError,
    target: &Target,
    operation: &str,
    limit: Duration,
) -> IisError {
    let server = target.server.clone();
    match e {
        WinrmError::Http(h) if h.is_timeout() => IisError::Timeout {
            server,
            operation: operation.to_string(),
            after: limit,
        },
        WinrmError::Http(h) => IisError::Unreachable {
            server,
            endpoint: target.endpoint.clone(),
            detail: chain(&h),
            source: Some(Box::new(h)),
        },
        WinrmError::Timeout(_) => IisError::Timeout {
            server,
            operation: operation.to_string(),
            after: limit,
        },
        WinrmError::AuthFailed(msg)
            if msg.starts_with("HTTP 401")
                || msg.starts_with("NTLM authentication rejected")
                || msg.contains("WWW-Authenticate") =>
        {
            IisError::Unauthenticated {
                server,
                user: target.user.clone(),
            }
        }
        WinrmError::AuthFailed(msg) => IisError::Protocol {
            server,
            detail: clip(&format!(
                "the WinRM endpoint {} answered {msg}",
                target.endpoint
            )),
            source: None,
        },
        WinrmError::Soap(SoapError::Fault { code, reason }) => IisError::Fault {
            server,
            code,
            message: clip(&reason),
        },
        other => IisError::Protocol {
            server,
            detail: clip(&other.to_string()),
            source: Some(Box::new(other)),
        },
    }
}
