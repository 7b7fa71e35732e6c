//! The WinRM endpoint over real HTTP on 127.0.0.1, driven by winrm-rs and by raw SOAP.
#![allow(clippy::unwrap_used)]

mod winrm_harness;
mod winrm_support;

use std::net::SocketAddr;
use std::time::Duration;

use exch_lab::winrm::{LabAuth, WinRmConfig, WinRmService};
use winrm_harness::serve_with;
use winrm_rs::{
    AuthMethod, SoapError, WinrmClient, WinrmConfig as ClientConfig, WinrmCredentials, WinrmError,
};
use winrm_support::FakeHost;

const USER: &str = "LAB\\admin";
const PASSWORD: &str = "S3cret!pass";

async fn serve(host: FakeHost) -> (SocketAddr, WinRmService) {
    serve_with(
        host,
        WinRmConfig::new(USER, PASSWORD.to_string().into()).with_auth(LabAuth::BasicOverHttp),
    )
    .await
}

fn client(addr: SocketAddr, password: &str, op_timeout: u64) -> WinrmClient {
    let config = ClientConfig {
        port: addr.port(),
        auth_method: AuthMethod::Basic,
        operation_timeout_secs: op_timeout,
        connect_timeout_secs: 5,
        ..ClientConfig::default()
    };
    WinrmClient::new(config, WinrmCredentials::new(USER, password, "")).unwrap()
}

fn fault_code(e: &WinrmError) -> String {
    match e {
        WinrmError::Soap(SoapError::Fault { code, .. }) => code.clone(),
        other => panic!("expected a SOAP fault, got {other:?}"),
    }
}

const LIST: &str = "$ErrorActionPreference = 'Stop'\nImport-Module WebAdministration\n$result = @()\nforeach ($pool in @(Get-ChildItem -Path 'IIS:\\AppPools')) {\n  $result += [pscustomobject]@{ name = $pool.Name; state = [string]$pool.State }\n}\nConvertTo-Json -InputObject ([pscustomobject]@{ pools = @($result) }) -Depth 5 -Compress";

#[tokio::test]
async fn winrm_rs_runs_a_script_end_to_end() {
    let (addr, service) = serve(FakeHost::exchange()).await;
    let c = client(addr, PASSWORD, 10);
    let out = c.run_powershell("127.0.0.1", LIST).await.unwrap();
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["pools"][1]["name"], "MSExchangeOWAAppPool");
    assert_eq!(json["pools"][1]["state"], "Started");
    // Native command through the same endpoint.
    let out = c
        .run_command("127.0.0.1", "iisreset", &["/status"])
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("W3SVC"));
    let stats = service.counters().snapshot();
    assert_eq!(stats.create, 2);
    assert_eq!(stats.command, 2);
    assert_eq!(stats.delete, 2);
    assert_eq!(stats.open_shells, 0);
    assert_eq!(stats.open_commands, 0);
    assert_eq!(stats.faults, 0);
}

#[tokio::test]
async fn powershell_errors_come_back_as_exit_code_and_stderr() {
    let (addr, _service) = serve(FakeHost::exchange()).await;
    let c = client(addr, PASSWORD, 10);
    let out = c.run_powershell("127.0.0.1", "Foo-Bar").await.unwrap();
    assert_eq!(out.exit_code, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("The term 'Foo-Bar' is not recognized"));
    let out = c
        .run_powershell("127.0.0.1", "if ( { ]]] @{")
        .await
        .unwrap();
    assert_eq!(out.exit_code, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("ParserError"));
    let out = c
        .run_command(
            "127.0.0.1",
            "powershell.exe",
            &["-NoProfile", "-EncodedCommand", "%%%not-base64"],
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not properly encoded"));
    let out = c.run_command("127.0.0.1", "format", &["c:"]).await.unwrap();
    assert_eq!(out.exit_code, 1);
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("'format' is not recognized as an internal or external command"));
}

#[tokio::test]
async fn wrong_password_gets_401_and_the_fault_switch_can_be_cleared() {
    let (addr, service) = serve(FakeHost::exchange()).await;
    let err = client(addr, "wrong", 10)
        .run_powershell("127.0.0.1", "1")
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::AuthFailed(_)), "{err:?}");
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/wsman"))
        .body("<x/>")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"WSMAN\"");
    service.faults().update(|f| f.wrong_credentials = true);
    let err = client(addr, PASSWORD, 10)
        .run_powershell("127.0.0.1", "1")
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::AuthFailed(_)), "{err:?}");
    service.faults().clear();
    let out = client(addr, PASSWORD, 10)
        .run_powershell("127.0.0.1", "1")
        .await
        .unwrap();
    assert_eq!(out.stdout, b"1\r\n");
    assert_eq!(service.counters().snapshot().unauthorized, 3);
}

/// Drives the shell with the low-level calls and re-polls on `w:TimedOut`, as MS-WSMV says.
async fn run_repolling(c: &WinrmClient, script: &str) -> (Vec<u8>, i32, usize) {
    let shell = c.create_shell("127.0.0.1").await.unwrap();
    let encoded = winrm_rs::encode_powershell_command(script);
    let cmd = c
        .execute_command(
            "127.0.0.1",
            &shell,
            "powershell.exe",
            &["-NoProfile", "-NonInteractive", "-EncodedCommand", &encoded],
        )
        .await
        .unwrap();
    let mut stdout = Vec::new();
    let mut timeouts = 0;
    let code = loop {
        match c.receive_output("127.0.0.1", &shell, &cmd).await {
            Ok(o) => {
                stdout.extend(o.stdout);
                if o.done {
                    break o.exit_code.unwrap();
                }
            }
            Err(e) => {
                assert_eq!(fault_code(&e), "w:TimedOut");
                timeouts += 1;
                assert!(timeouts < 20);
            }
        }
    };
    c.signal_terminate("127.0.0.1", &shell, &cmd).await.unwrap();
    c.delete_shell("127.0.0.1", &shell).await.unwrap();
    (stdout, code, timeouts)
}

#[tokio::test]
async fn timed_out_faults_are_sent_and_repolling_gets_the_output() {
    let (addr, service) = serve(FakeHost::exchange()).await;
    service.faults().update(|f| f.timed_out_receives = 2);
    let c = client(addr, PASSWORD, 10);
    // winrm-rs 1.1.2's run_command gives up on the first TimedOut.
    let err = c.run_powershell("127.0.0.1", "'x'").await.unwrap_err();
    assert_eq!(fault_code(&err), "w:TimedOut");
    let (stdout, code, timeouts) = run_repolling(&c, "'hello'").await;
    assert_eq!(
        (stdout.as_slice(), code, timeouts),
        (&b"hello\r\n"[..], 0, 2)
    );
    // A command slower than OperationTimeout (1 s) times out for real, then completes.
    service.faults().clear();
    let mut host = FakeHost::exchange();
    host.recycle_delay = Duration::from_millis(2500);
    let (addr, _slow) = serve(host).await;
    let c = client(addr, PASSWORD, 1);
    let (stdout, code, timeouts) = run_repolling(
        &c,
        "Restart-WebAppPool -Name 'MSExchangeOWAAppPool'; 'recycled'",
    )
    .await;
    assert_eq!((stdout.as_slice(), code), (&b"recycled\r\n"[..], 0));
    assert!(timeouts >= 2, "{timeouts}");
}

#[tokio::test]
async fn unknown_shell_is_invalid_selectors() {
    let (addr, service) = serve(FakeHost::exchange()).await;
    let c = client(addr, PASSWORD, 10);
    let Err(err) = c.receive_output("127.0.0.1", "NO-SUCH-SHELL", "X").await else {
        panic!("expected a fault")
    };
    assert_eq!(fault_code(&err), "w:InvalidSelectors");
    let err = c
        .execute_command("127.0.0.1", "NO-SUCH-SHELL", "iisreset", &[])
        .await
        .unwrap_err();
    assert_eq!(fault_code(&err), "w:InvalidSelectors");
    let (status, body) = raw(
        addr,
        &envelope(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete",
            Some("NOPE"),
            "",
        ),
    )
    .await;
    assert_eq!(status, 500);
    assert!(body.contains("Code=\"2150858843\""), "{body}");
    assert!(
        body.contains("<a:RelatesTo>uuid:11111111-2222-3333-4444-555555555555</a:RelatesTo>"),
        "{body}"
    );
    assert_eq!(service.counters().snapshot().faults, 3);
}

#[tokio::test]
async fn command_fault_switch() {
    let (addr, service) = serve(FakeHost::exchange()).await;
    service.faults().update(|f| f.command_fault = true);
    let c = client(addr, PASSWORD, 10);
    let err = c.run_powershell("127.0.0.1", "1").await.unwrap_err();
    assert_eq!(fault_code(&err), "w:InternalError");
    assert_eq!(
        service.counters().snapshot().open_shells,
        0,
        "run_command deletes the shell"
    );
    service.faults().clear();
    assert_eq!(
        c.run_powershell("127.0.0.1", "1").await.unwrap().exit_code,
        0
    );
}

#[tokio::test]
async fn slow_and_hanging_endpoints_time_the_client_out() {
    let (addr, service) = serve(FakeHost::exchange()).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for faults in [
        exch_lab::winrm::WinRmFaults {
            response_delay: Some(Duration::from_secs(5)),
            ..Default::default()
        },
        exch_lab::winrm::WinRmFaults {
            hang_after_accept: true,
            ..Default::default()
        },
    ] {
        service.faults().set(faults);
        let err = http
            .post(format!("http://{addr}/wsman"))
            .basic_auth(USER, Some(PASSWORD))
            .body(envelope(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
                None,
                "<rsp:Shell/>",
            ))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }
    service.faults().clear();
    let (status, _) = raw(
        addr,
        &envelope(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
            None,
            "<rsp:Shell/>",
        ),
    )
    .await;
    assert_eq!(status, 200);
}

const NS: &str = r#"xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell""#;

fn envelope(action: &str, shell: Option<&str>, body: &str) -> String {
    let selector = shell
        .map(|s| {
            format!(r#"<w:SelectorSet><w:Selector Name="ShellId">{s}</w:Selector></w:SelectorSet>"#)
        })
        .unwrap_or_default();
    format!(
        r#"<s:Envelope {NS}><s:Header><a:Action s:mustUnderstand="true">{action}</a:Action><a:MessageID>uuid:11111111-2222-3333-4444-555555555555</a:MessageID><w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>{selector}<w:OperationTimeout>PT5.000S</w:OperationTimeout></s:Header><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

async fn raw(addr: SocketAddr, body: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/wsman"))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "application/soap+xml;charset=UTF-8")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn create_reply_carries_shell_id_twice_and_relates_to() {
    let (addr, _service) = serve(FakeHost::exchange()).await;
    let (status, body) = raw(
        addr,
        &envelope(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
            None,
            "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams></rsp:Shell>",
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("<a:RelatesTo>uuid:11111111-2222-3333-4444-555555555555</a:RelatesTo>"));
    let id = body
        .split("<rsp:ShellId>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    assert!(
        body.contains(&format!(r#"<w:Selector Name="ShellId">{id}</w:Selector>"#)),
        "{body}"
    );
    // Command with several Arguments and a different prefix, then Receive.
    let cmd = r#"<CommandLine xmlns="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><Command>appcmd.exe</Command><Arguments>recycle</Arguments><Arguments>apppool</Arguments><Arguments>/apppool.name:DefaultAppPool</Arguments></CommandLine>"#;
    let (status, body) = raw(
        addr,
        &envelope(
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command",
            Some(id),
            cmd,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cid = body
        .split("<rsp:CommandId>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let recv = format!(
        r#"<rsp:Receive><rsp:DesiredStream CommandId="{cid}">stdout stderr</rsp:DesiredStream></rsp:Receive>"#
    );
    let (status, body) = raw(
        addr,
        &envelope(
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive",
            Some(id),
            &recv,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.matches("<rsp:CommandState ").count(), 1);
    assert!(
        body.contains("CommandState/Done\"><rsp:ExitCode>0</rsp:ExitCode>"),
        "{body}"
    );
    assert!(body.contains(r#"End="true"></rsp:Stream>"#));
}

#[tokio::test]
async fn malformed_oversize_and_unknown_requests_get_faults() {
    let (addr, service) = serve(FakeHost::exchange()).await;
    for (body, subcode, code) in [
        (
            "this is not xml".to_string(),
            "w:SchemaValidationError",
            "2150858817",
        ),
        (
            "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>".to_string(),
            "w:SchemaValidationError",
            "2150858817",
        ),
        (
            envelope("http://example.invalid/DoSomething", None, ""),
            "a:ActionNotSupported",
            "2150858771",
        ),
        (
            format!("<s:Envelope {NS}>{}</s:Envelope>", "x".repeat(200_000)),
            "w:EncodingLimit",
            "2150858790",
        ),
        (
            envelope(
                "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command",
                None,
                "<rsp:CommandLine/>",
            ),
            "w:InvalidSelectors",
            "2150858843",
        ),
    ] {
        let (status, reply) = raw(addr, &body).await;
        assert_eq!(status, 500, "{reply}");
        assert!(
            reply.contains(&format!("<s:Subcode><s:Value>{subcode}</s:Value>")),
            "{reply}"
        );
        assert!(reply.contains(&format!("Code=\"{code}\"")), "{reply}");
        assert!(reply.contains("<s:Value>s:Sender</s:Value>"));
    }
    // Fuzz-ish: truncations of a valid request never panic and always answer.
    let valid = envelope(
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
        None,
        "<rsp:Shell/>",
    );
    for cut in (0..valid.len()).step_by(37) {
        let (status, _) = raw(addr, &valid[..cut]).await;
        assert_eq!(status, 500);
    }
    assert!(service.counters().snapshot().faults >= 5);
}

#[tokio::test]
async fn signal_and_delete_release_commands_and_shells() {
    let (addr, service) = serve(FakeHost::exchange()).await;
    let c = client(addr, PASSWORD, 10);
    let shell = c.create_shell("127.0.0.1").await.unwrap();
    let c1 = c
        .execute_command("127.0.0.1", &shell, "iisreset", &["/status"])
        .await
        .unwrap();
    let _c2 = c
        .execute_command("127.0.0.1", &shell, "iisreset", &["/status"])
        .await
        .unwrap();
    assert_eq!(service.counters().snapshot().open_commands, 2);
    c.signal_terminate("127.0.0.1", &shell, &c1).await.unwrap();
    assert_eq!(service.counters().snapshot().open_commands, 1);
    c.delete_shell("127.0.0.1", &shell).await.unwrap();
    let s = service.counters().snapshot();
    assert_eq!((s.open_shells, s.open_commands), (0, 0));
    let Err(err) = c.receive_output("127.0.0.1", &shell, &c1).await else {
        panic!("expected a fault")
    };
    assert_eq!(fault_code(&err), "w:InvalidSelectors");
}
