//! Shared by the lab's integration tests: logon probes over real HTTP, WinRM over winrm-rs.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use exch_core::Protocol;
use exch_lab::fleet::{Fleet, LabServer};
use reqwest::{redirect, StatusCode};
use secrecy::ExposeSecret;

/// Protocols that take Basic logons in Microsoft's default configuration, and the path a
/// client uses for each. EWS and MAPI take Windows authentication only at the defaults
/// ([`exch_lab::catalog::default_auth`]): a Basic request there gets [`Seen::NoPasswordLogon`].
pub const BASIC: [(Protocol, &str); 2] = [
    (Protocol::Eas, "/Microsoft-Server-ActiveSync"),
    (Protocol::RpcHttp, "/rpc/rpcproxy.dll"),
];

/// What a client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// 200; `X-Lab-Token` (`cache`/`directory`) and `X-Lab-Pid`.
    Ok { token: String, pid: u32 },
    /// 401 with a Basic challenge, or the OWA logon page.
    Refused,
    /// 401 without a Basic challenge: the endpoint takes no password logon (Windows
    /// authentication only), so nothing about the account was checked.
    NoPasswordLogon,
    /// Any other status.
    Status(StatusCode),
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

fn seen(response: &reqwest::Response) -> Seen {
    let header = |n: &str| {
        response
            .headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    match response.status() {
        StatusCode::OK => Seen::Ok {
            token: header("x-lab-token"),
            pid: header("x-lab-pid").parse().unwrap_or(0),
        },
        StatusCode::UNAUTHORIZED if header("www-authenticate").starts_with("Basic realm=") => {
            Seen::Refused
        }
        StatusCode::UNAUTHORIZED => Seen::NoPasswordLogon,
        StatusCode::FOUND if header("location").starts_with("/owa/auth/logon.aspx") => {
            Seen::Refused
        }
        other => Seen::Status(other),
    }
}

/// A Basic-auth request to `path`.
pub async fn basic(server: &LabServer, path: &str, user: &str, password: &str) -> Seen {
    let response = client()
        .post(format!("{}{path}", server.base_url()))
        .basic_auth(user, Some(password))
        .body("")
        .send()
        .await
        .unwrap();
    seen(&response)
}

/// OWA forms logon; the `cadata` session id on success.
pub async fn owa_logon(server: &LabServer, user: &str, password: &str) -> (Seen, Option<String>) {
    let response = client()
        .post(format!("{}/owa/auth.owa", server.base_url()))
        .form(&[
            ("destination", "/owa/"),
            ("flags", "4"),
            ("forcedownlevel", "0"),
            ("username", user),
            ("password", password),
            ("isUtf8", "1"),
        ])
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("cadata="))
        .map(|c| c.split(';').next().unwrap_or("").to_owned());
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    match (status, cookie) {
        (StatusCode::FOUND, Some(c)) if location == "/owa/" => (
            Seen::Ok {
                token: String::new(),
                pid: 0,
            },
            Some(c),
        ),
        _ => (seen(&response), None),
    }
}

/// `GET /owa/` with a session cookie.
pub async fn owa_mailbox(server: &LabServer, session: &str) -> Seen {
    forms_page(server, "/owa/", session).await
}

/// `GET <page>` (`/owa/`, `/ecp/`) with a `cadata` cookie; `Refused` only when the cookie's
/// credentials were refused (the logon page with `reason=2`), `Status(302)` for any other
/// redirect (no readable cookie).
pub async fn forms_page(server: &LabServer, page: &str, session: &str) -> Seen {
    let response = client()
        .get(format!("{}{page}", server.base_url()))
        .header("cookie", format!("cadata={session}"))
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if response.status() == StatusCode::FOUND && location != exch_lab::iis::LOGON_REFUSED {
        return Seen::Status(StatusCode::FOUND);
    }
    seen(&response)
}

/// Logs on to every protocol the server serves (OWA by forms, a fresh session each time).
pub async fn every_protocol(server: &LabServer, user: &str, password: &str) -> Vec<(String, Seen)> {
    let mut out = Vec::new();
    let (owa, _) = owa_logon(server, user, password).await;
    out.push(("owa".to_owned(), owa));
    for (protocol, path) in BASIC {
        if server.iis().pool_for(protocol).is_some() {
            out.push((
                protocol.to_string(),
                basic(server, path, user, password).await,
            ));
        }
    }
    out
}

pub fn all_accepted(seen: &[(String, Seen)]) -> bool {
    seen.iter().all(|(_, s)| matches!(s, Seen::Ok { .. }))
}

pub fn all_refused(seen: &[(String, Seen)]) -> bool {
    seen.iter().all(|(_, s)| *s == Seen::Refused)
}

/// Runs `script` on `server` through its WinRM endpoint with winrm-rs (Basic auth).
pub async fn run_powershell(
    fleet: &Fleet,
    server: &LabServer,
    script: &str,
) -> Result<winrm_rs::CommandOutput, winrm_rs::WinrmError> {
    let config = winrm_rs::WinrmConfig {
        port: server.port(),
        auth_method: winrm_rs::AuthMethod::Basic,
        connect_timeout_secs: 5,
        operation_timeout_secs: 20,
        ..Default::default()
    };
    let credentials = winrm_rs::WinrmCredentials::new(
        fleet.winrm_user(),
        fleet.winrm_password().expose_secret(),
        "",
    );
    let client = winrm_rs::WinrmClient::new(config, credentials)?;
    client.run_powershell("127.0.0.1", script).await
}

/// The recycle script of docs/powershell-subset.md for `pools`.
pub fn recycle_script(pools: &[&str]) -> String {
    let list = pools
        .iter()
        .map(|p| format!("'{}'", p.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"$ErrorActionPreference = 'Stop'
Import-Module WebAdministration
$requested = [DateTime]::UtcNow.ToString('o')
$result = @()
$missing = @()
foreach ($name in @({list})) {{
    if (-not (Test-Path -Path ('IIS:\AppPools\' + $name))) {{ $missing += $name }}
    else {{
        $before = @()
        foreach ($wp in @(Get-ChildItem -Path ('IIS:\AppPools\' + $name + '\WorkerProcesses'))) {{
            $before += [pscustomobject]@{{ pid = [int]$wp.processId; started = (Get-Process -Id $wp.processId).StartTime.ToUniversalTime().ToString('o') }}
        }}
        try {{ Restart-WebAppPool -Name $name; $failure = $null }} catch {{ $failure = $_.Exception.Message }}
        $after = @()
        foreach ($wp in @(Get-ChildItem -Path ('IIS:\AppPools\' + $name + '\WorkerProcesses'))) {{
            $after += [pscustomobject]@{{ pid = [int]$wp.processId; started = (Get-Process -Id $wp.processId).StartTime.ToUniversalTime().ToString('o') }}
        }}
        $result += [pscustomobject]@{{ name = $name; state = [string](Get-WebAppPoolState -Name $name).Value; before = $before; after = $after; error = $failure }}
    }}
}}
ConvertTo-Json -InputObject ([pscustomobject]@{{ requested = $requested; pools = @($result); missing = @($missing) }}) -Depth 5 -Compress
"#
    )
}

/// The pools KB 3035228 / KB 2612821 say to recycle, for a server's version, and ECP (which
/// shares OWA's forms logon; issue 15). Names as the default `applicationHost.config` spells them.
pub fn auth_pools(server: &LabServer) -> Vec<&'static str> {
    let mut pools = vec![
        "MSExchangeSyncAppPool",
        "MSExchangeServicesAppPool",
        "MSExchangeOWAAppPool",
        "MSExchangeECPAppPool",
    ];
    if server
        .exchange_server()
        .version
        .is_some_and(|v| v.major >= 15)
    {
        pools.extend([
            "MSExchangeRpcProxyFrontEndAppPool",
            "MSExchangeMapiFrontEndAppPool",
        ]);
    } else {
        pools.push("DefaultAppPool");
    }
    pools
}

pub mod scenario;
