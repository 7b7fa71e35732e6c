//! The PowerShell-subset interpreter against a fake host: every script shape of
//! `docs/powershell-subset.md` and the error cases.
#![allow(clippy::unwrap_used)]

mod winrm_support;

use exch_lab::ps::{run_script, run_script_with_limits, Limits};
use serde_json::Value as Json;
use winrm_support::FakeHost;

const LIST_POOLS: &str = r#"$ErrorActionPreference = 'Stop'
Import-Module WebAdministration
$result = @()
foreach ($pool in @(Get-ChildItem -Path 'IIS:\AppPools')) {
    $workers = @()
    foreach ($wp in @(Get-ChildItem -Path ('IIS:\AppPools\' + $pool.Name + '\WorkerProcesses'))) {
        $workers += [pscustomobject]@{ pid = [int]$wp.processId; started = (Get-Process -Id $wp.processId).StartTime.ToUniversalTime().ToString('o') }
    }
    $result += [pscustomobject]@{ name = $pool.Name; state = [string]$pool.State; workers = $workers }
}
ConvertTo-Json -InputObject ([pscustomobject]@{ pools = @($result) }) -Depth 5 -Compress
"#;

fn recycle_script(pools: &[&str]) -> String {
    let list: Vec<String> = pools
        .iter()
        .map(|p| format!("'{}'", p.replace('\'', "''")))
        .collect();
    let workers = |var: &str| {
        format!(
            "        ${var} = @()\n        foreach ($wp in @(Get-ChildItem -Path ('IIS:\\AppPools\\' + $name + '\\WorkerProcesses'))) {{\n            ${var} += [pscustomobject]@{{ pid = [int]$wp.processId; started = (Get-Process -Id $wp.processId).StartTime.ToUniversalTime().ToString('o') }}\n        }}\n"
        )
    };
    format!(
        "$ErrorActionPreference = 'Stop'\nImport-Module WebAdministration\n$requested = [DateTime]::UtcNow.ToString('o')\n$result = @()\n$missing = @()\nforeach ($name in @({})) {{\n    if (-not (Test-Path -Path ('IIS:\\AppPools\\' + $name))) {{ $missing += $name }}\n    else {{\n{}        try {{ Restart-WebAppPool -Name $name; $failure = $null }} catch {{ $failure = $_.Exception.Message }}\n{}        $result += [pscustomobject]@{{ name = $name; state = [string](Get-WebAppPoolState -Name $name).Value; before = $before; after = $after; error = $failure }}\n    }}\n}}\nConvertTo-Json -InputObject ([pscustomobject]@{{ requested = $requested; pools = @($result); missing = @($missing) }}) -Depth 5 -Compress\n",
        list.join(", "),
        workers("before"),
        workers("after"),
    )
}

const IISRESET: &str = r#"$ErrorActionPreference = 'Stop'
Import-Module WebAdministration
$requested = [DateTime]::UtcNow.ToString('o')
$before = @()
foreach ($pool in @(Get-ChildItem -Path 'IIS:\AppPools')) {
    $workers = @()
    foreach ($wp in @(Get-ChildItem -Path ('IIS:\AppPools\' + $pool.Name + '\WorkerProcesses'))) {
        $workers += [pscustomobject]@{ pid = [int]$wp.processId; started = (Get-Process -Id $wp.processId).StartTime.ToUniversalTime().ToString('o') }
    }
    $before += [pscustomobject]@{ name = $pool.Name; workers = $workers }
}
$out = (iisreset /noforce | Out-String)
$code = $LASTEXITCODE
$pools = @()
foreach ($pool in @(Get-ChildItem -Path 'IIS:\AppPools')) {
    $workers = @()
    foreach ($wp in @(Get-ChildItem -Path ('IIS:\AppPools\' + $pool.Name + '\WorkerProcesses'))) {
        $workers += [pscustomobject]@{ pid = [int]$wp.processId; started = (Get-Process -Id $wp.processId).StartTime.ToUniversalTime().ToString('o') }
    }
    $pools += [pscustomobject]@{ name = $pool.Name; state = [string]$pool.State; before = @(); after = $workers }
}
ConvertTo-Json -InputObject ([pscustomobject]@{ requested = $requested; exitCode = $code; output = $out; pools = @($pools) }) -Depth 5 -Compress
"#;

const TTL_READ: &str = r#"$ErrorActionPreference = 'Stop'
$p = Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Services\InetInfo\Parameters' -Name 'UserTokenTTL' -ErrorAction SilentlyContinue
if ($null -eq $p) { $ttl = $null } else { $ttl = [int]$p.UserTokenTTL }
ConvertTo-Json -InputObject ([pscustomobject]@{ userTokenTtl = $ttl }) -Compress
"#;

fn ttl_write(n: u32) -> String {
    format!(
        "$ErrorActionPreference = 'Stop'\nNew-ItemProperty -Path 'HKLM:\\SYSTEM\\CurrentControlSet\\Services\\InetInfo\\Parameters' -Name 'UserTokenTTL' -PropertyType DWord -Value {n} -Force | Out-Null\n{TTL_READ}"
    )
}

async fn json_of(host: &FakeHost, script: &str) -> Json {
    let out = run_script(host, script).await;
    assert_eq!(out.exit_code, 0, "stderr: {}", out.stderr);
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);
    assert!(out.stdout.ends_with("\r\n"));
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "one JSON document on one line: {}",
        out.stdout
    );
    serde_json::from_str(out.stdout.trim_end()).unwrap()
}

#[tokio::test]
async fn list_pools_prints_pools_with_workers() {
    let host = FakeHost::exchange();
    let j = json_of(&host, LIST_POOLS).await;
    let pools = j["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 4);
    assert_eq!(pools[1]["name"], "MSExchangeOWAAppPool");
    assert_eq!(pools[1]["state"], "Started");
    assert_eq!(pools[1]["workers"][0]["pid"], 1001);
    assert_eq!(
        pools[1]["workers"][0]["started"],
        "2026-11-23T09:00:00.0000000Z"
    );
    // Key order is kept.
    let text = serde_json::to_string(&pools[0]).unwrap();
    assert!(text.find("\"name\"").unwrap() < text.find("\"workers\"").unwrap());
}

#[tokio::test]
async fn list_pools_with_a_stopped_pool_has_empty_workers_array() {
    let host = FakeHost::new(&["A"]);
    exch_lab::host::IisHost::stop_pool(&host, "A")
        .await
        .unwrap();
    let j = json_of(&host, LIST_POOLS).await;
    assert_eq!(j["pools"][0]["state"], "Stopped");
    assert_eq!(j["pools"][0]["workers"], serde_json::json!([]));
}

#[tokio::test]
async fn list_pools_with_no_pools_is_an_empty_array() {
    let host = FakeHost::new(&[]);
    let out = run_script(&host, LIST_POOLS).await;
    assert_eq!(out.stdout, "{\"pools\":[]}\r\n");
}

#[tokio::test]
async fn recycle_reports_before_after_and_missing() {
    let host = FakeHost::exchange();
    let script = recycle_script(&[
        "MSExchangeOWAAppPool",
        "NoSuchPool",
        "MSExchangeSyncAppPool",
    ]);
    let j = json_of(&host, &script).await;
    assert_eq!(j["requested"], "2026-11-23T10:00:00.0000000Z");
    assert_eq!(j["missing"], serde_json::json!(["NoSuchPool"]));
    let pools = j["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 2);
    assert_eq!(pools[0]["name"], "MSExchangeOWAAppPool");
    assert_eq!(pools[0]["state"], "Started");
    assert_eq!(pools[0]["before"][0]["pid"], 1001);
    assert_eq!(pools[0]["after"][0]["pid"], 5000);
    assert_eq!(pools[0]["error"], Json::Null);
    assert_eq!(pools[1]["after"][0]["pid"], 5001);
    assert_eq!(host.pid("MSExchangeSyncAppPool"), Some(5001));
}

#[tokio::test]
async fn recycle_failure_is_reported_not_fatal() {
    let host = FakeHost::exchange();
    host.fail_recycle("MSExchangeOWAAppPool");
    let j = json_of(&host, &recycle_script(&["MSExchangeOWAAppPool"])).await;
    let p = &j["pools"][0];
    assert_eq!(
        p["error"],
        "The worker process for application pool 'MSExchangeOWAAppPool' failed to start."
    );
    assert_eq!(p["before"], p["after"]);
}

#[tokio::test]
async fn recycle_with_only_missing_pools() {
    let host = FakeHost::exchange();
    let out = run_script(&host, &recycle_script(&["Nope"])).await;
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .ends_with("\"pools\":[],\"missing\":[\"Nope\"]}\r\n"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn iisreset_script_reports_exit_code_output_and_pools() {
    let host = FakeHost::exchange();
    let j = json_of(&host, IISRESET).await;
    assert_eq!(j["exitCode"], 0);
    assert!(j["output"]
        .as_str()
        .unwrap()
        .contains("Internet services successfully restarted\r\n"));
    assert_eq!(j["pools"][0]["after"][0]["pid"], 5000);
    assert_eq!(
        host.resets(),
        vec![exch_lab::host::IisResetMode::RestartNoForce]
    );
}

#[tokio::test]
async fn token_ttl_read_absent_present_and_write() {
    let host = FakeHost::exchange();
    assert_eq!(
        json_of(&host, TTL_READ).await,
        serde_json::json!({ "userTokenTtl": null })
    );
    let host = FakeHost::exchange().with_ttl(900);
    assert_eq!(
        json_of(&host, TTL_READ).await,
        serde_json::json!({ "userTokenTtl": 900 })
    );
    assert_eq!(
        json_of(&host, &ttl_write(60)).await,
        serde_json::json!({ "userTokenTtl": 60 })
    );
    assert_eq!(exch_lab::host::IisHost::token_ttl(&host), Some(60));
}

#[tokio::test]
async fn get_itemproperty_with_name_fails_when_absent() {
    let host = FakeHost::exchange();
    let out = run_script(
        &host,
        r"Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Services\InetInfo\Parameters' -Name 'UserTokenTTL'",
    )
    .await;
    assert_eq!(out.exit_code, 1);
    assert!(
        out.stderr.contains("Property UserTokenTTL does not exist"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn native_commands_set_lastexitcode() {
    let host = FakeHost::exchange();
    let out = run_script(
        &host,
        "& 'C:\\Windows\\System32\\inetsrv\\appcmd.exe' recycle apppool /apppool.name:MSExchangeOWAAppPool\n$LASTEXITCODE\nappcmd recycle apppool /apppool.name:Nope\n$LASTEXITCODE\niisreset.exe /status",
    )
    .await;
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "\"MSExchangeOWAAppPool\" successfully recycled");
    assert_eq!(lines[1], "0");
    assert!(lines[2].starts_with("ERROR ( message:Cannot find APPPOOL object"));
    assert_eq!(lines[3], "1168");
    assert!(lines[4].starts_with("Status for World Wide Web Publishing Service"));
}

#[tokio::test]
async fn json_conventions() {
    let host = FakeHost::new(&[]);
    let cases: &[(&str, &str)] = &[
        ("ConvertTo-Json -InputObject @() -Compress", "[]"),
        ("@(1, 'a', $null, $true) | ConvertTo-Json -Compress", "[1,\"a\",null,true]"),
        ("ConvertTo-Json -InputObject @(1) -Compress", "[1]"),
        ("@(1) | ConvertTo-Json -Compress", "1"),
        ("$null | ConvertTo-Json", "null"),
        ("'it''s <b> & \"q\"\\' | ConvertTo-Json", r#""it\u0027s \u003cb\u003e \u0026 \"q\"\\""#),
        ("[pscustomobject]@{ z = 1; a = @{ b = @{ c = 1 } } } | ConvertTo-Json -Compress -Depth 1", r#"{"z":1,"a":{"b":"System.Collections.Hashtable"}}"#),
        ("[pscustomobject]@{\n  first = 'x'\n  second = -5\n} | ConvertTo-Json", "{\r\n    \"first\":  \"x\",\r\n    \"second\":  -5\r\n}"),
    ];
    for (script, want) in cases {
        let out = run_script(&host, script).await;
        assert_eq!(out.exit_code, 0, "{script}: {}", out.stderr);
        assert_eq!(out.stdout, format!("{want}\r\n"), "{script}");
    }
}

#[tokio::test]
async fn expressions_and_control_flow() {
    let host = FakeHost::new(&[]);
    let script = "$a = 1; $a += 2; $s = 'x'; $s += 3
if ($a -eq 3 -and -not ($s -ne 'X3')) { 'yes' } elseif ($true) { 'no' } else { 'never' }
$arr = 'a', 'b'
$arr += 'c'
$arr.Count
foreach ($i in $arr) { $i.ToUpper() }
foreach ($i in $null) { 'not reached' }
[string]$null -eq ''
!$false
@(Write-Output 1 2).Count
(Write-Output 'q' | Out-String)
# a comment
<# block
comment #> 'done'; $x = $null; $x.Missing; [int]'42' + 1";
    let out = run_script(&host, script).await;
    assert_eq!(out.stderr, "");
    assert_eq!(
        out.stdout,
        "yes\r\n3\r\nA\r\nB\r\nC\r\nTrue\r\nTrue\r\n2\r\nq\r\n\r\ndone\r\n43\r\n"
    );
}

#[tokio::test]
async fn unknown_cmdlet_fails_like_powershell() {
    let host = FakeHost::new(&[]);
    let out = run_script(&host, "Foo-Bar -Name x").await;
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.starts_with(
        "Foo-Bar : The term 'Foo-Bar' is not recognized as the name of a cmdlet, function, script file, or operable program."
    ), "{}", out.stderr);
    assert!(out.stderr.contains("At line:1 char:1"), "{}", out.stderr);
    assert!(out.stderr.contains("CommandNotFoundException"));
}

#[tokio::test]
async fn missing_pool_is_a_terminating_error_under_stop() {
    let host = FakeHost::exchange();
    let out = run_script(
        &host,
        "$ErrorActionPreference = 'Stop'\nRestart-WebAppPool -Name 'Nope'\n'after'",
    )
    .await;
    assert_eq!(out.exit_code, 1);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains("Cannot find path 'IIS:\\AppPools\\Nope' because it does not exist."),
        "{}",
        out.stderr
    );
    // Continue: the error is written and the script goes on.
    let out = run_script(&host, "Restart-WebAppPool -Name 'Nope'\n'after'").await;
    assert_eq!(out.stdout, "after\r\n");
    assert_eq!(out.exit_code, 0);
    assert!(out.stderr.contains("Restart-WebAppPool : Cannot find path"));
    // Caught.
    let out = run_script(&host, "$ErrorActionPreference = 'Stop'\ntry { Get-WebAppPoolState -Name 'Nope' } catch { 'caught: ' + $_.Exception.Message }").await;
    assert_eq!(
        out.stdout,
        "caught: Cannot find path 'IIS:\\AppPools\\Nope' because it does not exist.\r\n"
    );
    assert_eq!(out.exit_code, 0);
}

#[tokio::test]
async fn other_modules_and_parameters_fail() {
    let host = FakeHost::exchange();
    for (script, needle) in [
        (
            "Import-Module ActiveDirectory",
            "The specified module 'ActiveDirectory' was not loaded",
        ),
        (
            "Get-WebAppPoolState -Bogus 1",
            "A parameter cannot be found that matches parameter name 'Bogus'.",
        ),
        (
            "Get-Process -Id 424242",
            "Cannot find a process with the process identifier 424242.",
        ),
        (
            "Get-ChildItem -Path 'C:\\Windows'",
            "Cannot find path 'C:\\Windows' because it does not exist.",
        ),
        (
            "$x = $null; $x.ToString()",
            "You cannot call a method on a null-valued expression.",
        ),
        ("[Foo]'x'", "Unable to find type [Foo]."),
    ] {
        let out = run_script(&host, script).await;
        assert_eq!(out.exit_code, 1, "{script}");
        assert!(out.stderr.contains(needle), "{script}: {}", out.stderr);
    }
}

#[tokio::test]
async fn syntax_errors_are_parser_errors() {
    let host = FakeHost::exchange();
    for (script, needle) in [
        (
            "if ($true { 'x' }",
            "Missing closing ')' after expression in 'if' statement.",
        ),
        ("foreach ($x in @(1) { }", "Missing closing ')'"),
        ("'unterminated", "The string is missing the terminator: '."),
        (
            "$x = ",
            "You must provide a value expression following the '=' operator.",
        ),
        (
            "@{ a = 1; a = 2 }",
            "Duplicate keys 'a' are not allowed in hash literals.",
        ),
        (
            "try { 1 }",
            "The Try statement is missing its Catch or Finally block.",
        ),
        (
            "1 | 2",
            "Expressions are only allowed as the first element of a pipeline.",
        ),
        ("}", "Unexpected token '}'"),
        ("$a -foo 1", "Unexpected token '-foo'"),
    ] {
        let out = run_script(&host, script).await;
        assert_eq!(out.exit_code, 1, "{script}");
        assert!(out.stderr.contains(needle), "{script}: {}", out.stderr);
        assert!(
            out.stderr.contains("ParserError"),
            "{script}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test]
async fn guards_stop_abusive_scripts() {
    let host = FakeHost::new(&[]);
    let limits = Limits {
        max_steps: 1_000,
        ..Limits::default()
    };
    // Exponential growth.
    let out = run_script_with_limits(&host, "$a = @(1); foreach ($i in @(1..3)) {}", limits).await;
    assert_eq!(out.exit_code, 1);
    let grow = "$a = 'xxxxxxxxxxxxxxxx'\n$l = @(1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30)\nforeach ($i in $l) { $a = $a, $a }";
    let out = run_script(&host, grow).await;
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.contains("memory limit"), "{}", out.stderr);
    // Too many steps.
    let steps = "$l = @(1,2,3,4,5,6,7,8,9,10)\nforeach ($a in $l) { foreach ($b in $l) { foreach ($c in $l) { $x = 1 } } }";
    let out = run_script_with_limits(&host, steps, limits).await;
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.contains("limit of 1000"), "{}", out.stderr);
    // Deep nesting.
    let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    let out = run_script(&host, &deep).await;
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.contains("nested too deeply"), "{}", out.stderr);
    // Huge script.
    let out = run_script(&host, &"#".repeat(1024 * 1024)).await;
    assert_eq!(out.exit_code, 1);
}

#[tokio::test]
async fn garbage_never_panics() {
    let host = FakeHost::exchange();
    let samples = [
        "",
        "\0\u{1}",
        "$",
        "@",
        "@(",
        "@{",
        "[",
        "[int",
        "[int]",
        "&",
        "& ",
        "-",
        "--x",
        "'",
        "\"",
        "`",
        "$a.",
        "$a.b(",
        "((((",
        "))))",
        "{{{{",
        "}}}}",
        "| |",
        "a |",
        "$x +",
        "1 +",
        "-not",
        "!",
        "foreach",
        "foreach (",
        "foreach ($x",
        "foreach ($x in",
        "if",
        "if (",
        "if ($true)",
        "try {",
        "catch",
        "else",
        "$a[",
        "$a[1",
        "@{ a",
        "@{ a =",
        "@{ 'a' = 1",
        "[DateTime]::",
        "[DateTime]::UtcNow.ToString(",
        "Get-ChildItem -Path:",
        "Get-ChildItem -",
        "$x = @(1) + @{}",
        "[int]@{}",
        "$a = 9223372036854775807 + 1",
        "99999999999999999999999",
        "$true = 1",
        "Write-Output -InputObject",
        "ConvertTo-Json -Depth x",
        "\u{2018}smart\u{2019}",
        "ünïcödé-Cmdlet",
        "$ErrorActionPreference = 'Stop'; Foo",
    ];
    for s in samples {
        let out = run_script(&host, s).await;
        assert!(out.exit_code == 0 || out.exit_code == 1, "{s:?}");
    }
}

/// The shape exch-iis generates today (worker filter, `-ErrorAction SilentlyContinue`,
/// `$null -ne`, pool lookup by name).
#[tokio::test]
async fn exch_iis_style_recycle_script() {
    let workers = |var: &str| {
        format!(
            "        ${var} = @()\n        foreach ($wp in @(Get-ChildItem -Path ('IIS:\\AppPools\\' + $name + '\\WorkerProcesses'))) {{\n            if ($wp.state -ne 'Stopping') {{\n                $proc = Get-Process -Id $wp.processId -ErrorAction SilentlyContinue\n                if ($null -ne $proc) {{\n                    ${var} += [pscustomobject]@{{ pid = [int]$wp.processId; started = $proc.StartTime.ToUniversalTime().ToString('o') }}\n                }}\n            }}\n        }}\n"
        )
    };
    let script = format!(
        "$ErrorActionPreference = 'Stop'\nImport-Module WebAdministration\n$present = @(Get-ChildItem -Path 'IIS:\\AppPools')\n$requested = [DateTime]::UtcNow.ToString('o')\n$result = @()\n$missing = @()\nforeach ($want in @('msexchangeowaapppool', 'Gone')) {{\n    $name = $null\n    foreach ($p in $present) {{ if ($p.Name -eq $want) {{ $name = $p.Name }} }}\n    if ($null -eq $name) {{ $missing += $want }}\n    else {{\n{}        try {{ Restart-WebAppPool -Name $name; $failure = $null }} catch {{ $failure = $_.Exception.Message }}\n{}        $result += [pscustomobject]@{{ name = $name; state = [string](Get-WebAppPoolState -Name $name).Value; before = $before; after = $after; error = $failure }}\n    }}\n}}\nConvertTo-Json -InputObject ([pscustomobject]@{{ requested = $requested; pools = @($result); missing = @($missing) }}) -Depth 5 -Compress\n",
        workers("before"),
        workers("after")
    );
    let host = FakeHost::exchange();
    let j = json_of(&host, &script).await;
    assert_eq!(j["pools"][0]["name"], "MSExchangeOWAAppPool");
    assert_eq!(j["pools"][0]["before"][0]["pid"], 1001);
    assert_eq!(j["pools"][0]["after"][0]["pid"], 5000);
    assert_eq!(j["missing"], serde_json::json!(["Gone"]));
}
