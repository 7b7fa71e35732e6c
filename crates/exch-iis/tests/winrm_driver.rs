//! `WinRmFlusher`'s shell driving against a minimal scripted WS-Man responder on loopback:
//! round trips, `w:TimedOut` re-polls, shell deletion after errors and after the deadline, and
//! HTTP 401. The responder speaks Basic over plain HTTP (the explicit opt-in) so that these
//! tests are about the shell, not the security layer; authentication and message encryption
//! run against the lab in its Windows-default mode in `winrm_lab.rs`.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use exch_core::{AppPool, ExchangeServer, ExchangeVersion, ServerRoles};
use exch_iis::{CacheFlusher, FlushMethod, IisError, WinRmAuth, WinRmFlusher};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const DONE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";

#[derive(Clone)]
struct Script {
    timed_out_polls: usize,
    stdout: String,
    exit_code: i32,
    status: u16,
    receive_delay: Duration,
}

#[derive(Default)]
struct Log {
    actions: Vec<String>,
}

fn action(body: &str) -> &'static str {
    for (needle, name) in [
        ("transfer/Create", "Create"),
        ("shell/Command", "Command"),
        ("shell/Receive", "Receive"),
        ("shell/Signal", "Signal"),
        ("transfer/Delete", "Delete"),
    ] {
        if body.contains(needle) {
            return name;
        }
    }
    "Unknown"
}

fn envelope(body: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

fn timed_out() -> String {
    envelope(
        r#"<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:TimedOut</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">The WS-Management service cannot complete the operation within the time specified in OperationTimeout.</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="2150858793"/></s:Detail></s:Fault>"#,
    )
}

async fn answer(
    script: &Script,
    log: &Mutex<Log>,
    polls: &Mutex<usize>,
    body: &str,
) -> (u16, String) {
    let act = action(body);
    log.lock().unwrap().actions.push(act.to_string());
    if script.status != 200 {
        return (script.status, String::new());
    }
    match act {
        "Create" => (
            200,
            envelope("<rsp:Shell><rsp:ShellId>SHELL-1</rsp:ShellId></rsp:Shell>"),
        ),
        "Command" => (
            200,
            envelope(
                "<rsp:CommandResponse><rsp:CommandId>CMD-1</rsp:CommandId></rsp:CommandResponse>",
            ),
        ),
        "Receive" => {
            tokio::time::sleep(script.receive_delay).await;
            let n = {
                let mut p = polls.lock().unwrap();
                *p += 1;
                *p
            };
            if n <= script.timed_out_polls {
                return (500, timed_out());
            }
            let (name, data) = if script.exit_code == 0 {
                ("stdout", &script.stdout)
            } else {
                ("stderr", &script.stdout)
            };
            (
                200,
                envelope(&format!(
                    r#"<rsp:ReceiveResponse><rsp:Stream Name="{name}" CommandId="CMD-1">{}</rsp:Stream><rsp:CommandState CommandId="CMD-1" State="{DONE}"><rsp:ExitCode>{}</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse>"#,
                    B64.encode(data),
                    script.exit_code
                )),
            )
        }
        _ => (200, envelope("")),
    }
}

/// Serves `script` on 127.0.0.1; returns the URL and the log.
async fn responder(script: Script) -> (String, Arc<Mutex<Log>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/wsman", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Log::default()));
    let polls = Arc::new(Mutex::new(0usize));
    let log2 = Arc::clone(&log);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (script, log, polls) = (script.clone(), Arc::clone(&log2), Arc::clone(&polls));
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let (status, text) =
                        answer(&script, &log, &polls, &String::from_utf8_lossy(&body)).await;
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\n{}Content-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{text}",
                        if status == 401 { "WWW-Authenticate: Basic realm=\"WSMAN\"\r\n" } else { "" },
                        text.len()
                    );
                    if w.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, log)
}

fn server() -> ExchangeServer {
    ExchangeServer::new("EX01", "ex01.corp.example")
        .with_version(ExchangeVersion::new(15, 2, 1258))
        .with_roles(ServerRoles::MAILBOX | ServerRoles::CLIENT_ACCESS)
}

fn flusher(url: &str, timeout: Duration) -> WinRmFlusher {
    WinRmFlusher::builder()
        .auth(WinRmAuth::Basic)
        .allow_unencrypted_basic(true)
        .credentials("LAB\\winrm", SecretString::from("s3cret-pw".to_string()))
        .endpoint("ex01", url)
        .timeout(timeout)
        .receive_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

const RECYCLE_OUT: &str = r#"{"requested":"2026-11-23T10:00:00.0000000Z","pools":[{"name":"MSExchangeOWAAppPool","state":"Started","before":[{"pid":10,"started":"2026-11-23T09:00:00.0000000Z"}],"after":[{"pid":11,"started":"2026-11-23T10:00:00.5000000Z"}],"error":null}],"missing":[]}"#;

fn ok_script(timed_out_polls: usize) -> Script {
    Script {
        timed_out_polls,
        stdout: RECYCLE_OUT.into(),
        exit_code: 0,
        status: 200,
        receive_delay: Duration::ZERO,
    }
}

fn actions(log: &Mutex<Log>) -> Vec<String> {
    log.lock().unwrap().actions.clone()
}

#[tokio::test]
async fn a_flush_takes_four_round_trips() {
    let (url, log) = responder(ok_script(0)).await;
    let f = flusher(&url, Duration::from_secs(5));
    let pools = vec![AppPool::from_static("MSExchangeOWAAppPool")];
    let r = f
        .flush(&server(), &FlushMethod::RecycleAppPools(pools))
        .await
        .unwrap();
    assert!(r.is_proven());
    assert_eq!(r.round_trips, 4);
    assert_eq!(actions(&log), ["Create", "Command", "Receive", "Delete"]);
    assert_eq!(f.round_trips_total(), 4);
}

#[tokio::test]
async fn timed_out_faults_are_polled_again() {
    let (url, log) = responder(ok_script(3)).await;
    let f = flusher(&url, Duration::from_secs(5));
    let r = f.flush(&server(), &FlushMethod::default()).await.unwrap();
    assert_eq!(r.round_trips, 7);
    assert_eq!(
        actions(&log),
        ["Create", "Command", "Receive", "Receive", "Receive", "Receive", "Delete"]
    );
}

#[tokio::test]
async fn a_failing_script_is_command_failed_and_the_shell_is_deleted() {
    let mut s = ok_script(0);
    s.exit_code = 1;
    s.stdout = "Import-Module : The specified module 'WebAdministration' was not loaded.".into();
    let (url, log) = responder(s).await;
    let e = flusher(&url, Duration::from_secs(5))
        .token_cache(&server())
        .await
        .unwrap_err();
    match &e {
        IisError::CommandFailed {
            server,
            exit_code: 1,
            stderr,
        } => {
            assert_eq!(server, "EX01");
            assert!(stderr.contains("WebAdministration"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(actions(&log).last().map(String::as_str), Some("Delete"));
}

#[tokio::test]
async fn the_deadline_is_a_timeout_and_the_shell_is_still_deleted() {
    let mut s = ok_script(0);
    // The answer would come after a minute: only the 800 ms deadline can end the call within
    // the loose ceiling below.
    s.receive_delay = Duration::from_secs(60);
    let (url, log) = responder(s).await;
    let t = std::time::Instant::now();
    let e = flusher(&url, Duration::from_millis(800))
        .app_pools(&server())
        .await
        .unwrap_err();
    assert!(
        matches!(e, IisError::Timeout { .. }) && e.is_transient(),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // The background cleanup deletes the shell (on a fresh connection): wait for the
    // responder to see it (a loose ceiling, far below the 60 s answer).
    let waited = std::time::Instant::now();
    while waited.elapsed() < Duration::from_secs(30) {
        if actions(&log).iter().any(|a| a == "Delete") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("shell not deleted: {:?}", actions(&log));
}

#[tokio::test]
async fn http_401_is_unauthenticated_without_the_password() {
    let mut s = ok_script(0);
    s.status = 401;
    let (url, _log) = responder(s).await;
    let e = flusher(&url, Duration::from_secs(5))
        .flush(&server(), &FlushMethod::default())
        .await
        .unwrap_err();
    assert!(matches!(e, IisError::Unauthenticated { .. }), "{e:?}");
    let text = format!("{e} {e:?}");
    assert!(text.contains("EX01") && text.contains("LAB\\winrm") && !text.contains("s3cret-pw"));
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/wsman", listener.local_addr().unwrap());
    drop(listener);
    let e = flusher(&url, Duration::from_secs(5))
        .flush(&server(), &FlushMethod::default())
        .await
        .unwrap_err();
    assert!(matches!(e, IisError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("EX01"));
}
