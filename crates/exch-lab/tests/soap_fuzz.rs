//! The lab's untrusted-input parsers under arbitrary input: the WinRM endpoint (SOAP over
//! HTTP, parsed by `winrm/soap.rs`) and the PowerShell interpreter (`ps/`). No panic, no
//! hang, bounded memory: bodies and scripts up to 1 MiB finish quickly and deep nesting
//! (100 000 `(`, `{`, `@(`, `$(`, `[`, XML elements) does not overflow the stack.
//! PROPTEST_CASES raises the case count (default 256).
#![allow(clippy::unwrap_used)]

mod winrm_support;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use exch_lab::ps::{run_script_with_limits, Limits};
use exch_lab::winrm::{LabAuth, WinRmConfig, WinRmService};
use proptest::prelude::*;
use winrm_support::FakeHost;

const USER: &str = "LAB\\admin";
const PASSWORD: &str = "S3cret!pass";

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// One runtime and one lab endpoint for the whole file.
fn lab() -> &'static (tokio::runtime::Runtime, SocketAddr, reqwest::Client) {
    static LAB: OnceLock<(tokio::runtime::Runtime, SocketAddr, reqwest::Client)> = OnceLock::new();
    LAB.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let addr = rt.block_on(async {
            let service = WinRmService::new(
                Arc::new(FakeHost::exchange()),
                WinRmConfig::new(USER, PASSWORD.to_string().into())
                    .with_auth(LabAuth::BasicOverHttp),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let router = service.router();
            tokio::spawn(async move {
                axum::serve(listener, router).await.unwrap();
            });
            addr
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        (rt, addr, client)
    })
}

/// POSTs `body` to the lab's /wsman with valid Basic credentials; the HTTP status.
fn post(body: Vec<u8>) -> u16 {
    try_post(body).unwrap_or_else(|e| panic!("the lab stopped answering: {e}"))
}

/// [`post`], with the transport error as `Err`.
fn try_post(body: Vec<u8>) -> Result<u16, String> {
    let (rt, addr, client) = lab();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    rt.block_on(async {
        client
            .post(format!("http://{addr}/wsman"))
            .header("Authorization", format!("Basic {auth}"))
            .header("Content-Type", "application/soap+xml;charset=UTF-8")
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    })
}

/// A well-formed Create request still works: the endpoint survived whatever came before.
fn assert_alive() {
    let create = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><a:To>http://x/wsman</a:To><w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Create</a:Action><a:MessageID>uuid:1</a:MessageID></s:Header><s:Body><rsp:Shell xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell></s:Body></s:Envelope>"#;
    assert_eq!(
        post(create.as_bytes().to_vec()),
        200,
        "a valid Create failed"
    );
}

/// XML-ish fragments that reach deeper into the parser than random bytes do.
fn soapish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\">".to_owned()),
        Just("<s:Header>".to_owned()),
        Just("</s:Header>".to_owned()),
        Just("<s:Body>".to_owned()),
        Just("<a:Action xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\">http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command</a:Action>".to_owned()),
        Just("<w:SelectorSet xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\"><w:Selector Name=\"ShellId\">".to_owned()),
        Just("<w:OperationTimeout>PT".to_owned()),
        Just("<rsp:Arguments>".to_owned()),
        Just("&#x0;&amp;&lt;&#99999999;]]><![CDATA[".to_owned()),
        Just("<!DOCTYPE x [<!ENTITY a \"aaaaaaaa\">]>&a;".to_owned()),
        Just("</s:Body></s:Envelope>".to_owned()),
        "[ -~]{0,12}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat().into_bytes())
}

fn ps_limits() -> Limits {
    Limits {
        max_steps: 20_000,
        max_duration: Duration::from_secs(5),
        max_script_bytes: 2 * 1024 * 1024,
        ..Limits::default()
    }
}

/// Runs `script` in the lab interpreter; how long it took.
fn run_ps(script: &str) -> Duration {
    let (rt, _, _) = lab();
    let host = FakeHost::exchange();
    let t = Instant::now();
    let out = rt.block_on(run_script_with_limits(&host, script, ps_limits()));
    let _ = out.exit_code;
    t.elapsed()
}

/// PowerShell-ish token soup.
fn psish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("$x".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("@(".to_owned()),
        Just("$(".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("`".to_owned()),
        Just(" | ".to_owned()),
        Just("; ".to_owned()),
        Just("\n".to_owned()),
        Just("foreach ($p in @(1,2)) ".to_owned()),
        Just("Get-ChildItem -Path 'IIS:\\AppPools'".to_owned()),
        Just("ConvertTo-Json -Depth 99 -InputObject ".to_owned()),
        Just("[pscustomobject]@{ a = ".to_owned()),
        Just("1..100000".to_owned()),
        Just(" -eq ".to_owned()),
        Just(" += ".to_owned()),
        "[ -~]{0,10}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..32).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bodies_never_break_the_endpoint(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        soapish(),
    ]) {
        let status = post(body);
        prop_assert!([200, 400, 401, 413, 415, 500].contains(&status), "status {status}");
    }

    #[test]
    fn arbitrary_scripts_finish(script in prop_oneof![any::<String>(), psish()]) {
        let took = run_ps(&script);
        // A loose per-case ceiling (debug build, loaded machine): the interpreter's own
        // limits (`max_duration` 5 s above) end a script that runs away.
        prop_assert!(took < Duration::from_secs(30), "{took:?} for {script:?}");
    }
}

#[test]
fn deep_and_large_soap_bodies() {
    let n = 100_000;
    let deep = format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
    let deep_envelope = format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Header>{deep}</s:Header><s:Body/></s:Envelope>"
    );
    let one_mib_text = format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>{}</s:Body></s:Envelope>",
        "x".repeat(1 << 20)
    );
    let many_attrs = format!(
        "<a {}/>",
        (0..40_000)
            .map(|i| format!("a{i}=\"\" "))
            .collect::<String>()
    );
    for (what, body) in [
        ("100k nested elements", deep),
        ("100k nested elements in a header", deep_envelope),
        ("1 MiB of text", one_mib_text),
        ("40k attributes", many_attrs),
        ("1 MiB of '<'", "<".repeat(1 << 20)),
    ] {
        let t = Instant::now();
        let len = body.len();
        // A body over the envelope limit is refused from its Content-Length, before it is read
        // (as HTTP.sys does): the connection may then close while the client still writes, which
        // the client sees as a send error. Either way the endpoint must answer the next request.
        let status = match try_post(body.into_bytes()) {
            Ok(status) => status,
            Err(e) if len > 153_600 => {
                eprintln!("{what}: refused before it was read ({e})");
                assert_alive();
                413
            }
            Err(e) => panic!("{what}: the lab stopped answering: {e}"),
        };
        assert!(
            [200, 400, 413, 500].contains(&status),
            "{what}: status {status}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what}: {:?}",
            t.elapsed()
        );
    }
    assert_alive();
}

#[test]
fn deep_and_large_scripts() {
    let n = 100_000;
    for (what, script) in [
        ("100k (", "(".repeat(n)),
        ("100k ( )", format!("{}1{}", "(".repeat(n), ")".repeat(n))),
        ("100k @(", "@(".repeat(n)),
        ("100k $(", "$(".repeat(n)),
        ("100k {", "{".repeat(n)),
        ("100k [", "[".repeat(n)),
        ("100k [int]", "[int]".repeat(n)),
        ("100k -not", format!("{}1", "-not ".repeat(n))),
        ("100k nested strings", "\"$(".repeat(n)),
        ("100k @{ a =", "@{a=".repeat(n)),
        ("100k foreach", "foreach ($p in 1) {".repeat(n / 4)),
        ("1 MiB of 'a'", "a".repeat(1 << 20)),
        ("1 MiB string", format!("'{}'", "a".repeat(1 << 20))),
        ("100k pipes", "1".to_owned() + &" | %{$_}".repeat(n / 4)),
    ] {
        let took = run_ps(&script);
        assert!(took < Duration::from_secs(10), "{what}: {took:?}");
    }
}
