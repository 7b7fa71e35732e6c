//! `WinRmFlusher::run_powershell` against the lab (`exch_lab::fleet`): a caller's script runs
//! over the same encrypted NTLM transport as the flushes, its stdout, stderr and exit code come
//! back as they are, a failing script is not a transport error, and the shell is deleted.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use std::sync::Arc;
use std::time::Duration;

use exch_directory::{Directory, InMemoryDirectory};
use exch_iis::{script, WinRmAuth, WinRmFlusher};
use exch_lab::fleet::{Fleet, ServerSpec};

async fn fleet() -> Fleet {
    let directory: Arc<dyn Directory> = Arc::new(InMemoryDirectory::new());
    Fleet::builder()
        .directory(directory)
        .server(ServerSpec::exchange_2019("EX01"))
        .build()
        .await
        .expect("start the lab fleet")
}

fn runner(fleet: &Fleet) -> WinRmFlusher {
    let mut b = WinRmFlusher::builder()
        .auth(WinRmAuth::Ntlm)
        .credentials(fleet.winrm_user(), fleet.winrm_password().clone())
        .timeout(Duration::from_secs(20))
        .receive_timeout(Duration::from_secs(1));
    for (name, url) in fleet.endpoints() {
        b = b.endpoint(name, url);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn a_script_runs_and_its_output_comes_back() {
    let fleet = fleet().await;
    let winrm = runner(&fleet);
    let server = &fleet.exchange_servers()[0];
    let hostile = "it's \u{2018}quoted\u{2019} $(Get-Date) `n; \"dq\"";
    let lit = script::try_ps_quote(hostile).unwrap();
    let out = winrm
        .run_powershell(
            server,
            &format!(
                "ConvertTo-Json -InputObject ([pscustomobject]@{{ value = {lit} }}) -Compress"
            ),
        )
        .await
        .unwrap();
    assert!(out.succeeded(), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["value"].as_str(), Some(hostile), "{}", out.stdout);
    assert!(out.round_trips >= 4, "{out:?}");
    assert_eq!(fleet.servers()[0].winrm_stats().open_shells, 0);
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_failing_script_is_an_exit_code_not_an_error() {
    let fleet = fleet().await;
    let winrm = runner(&fleet);
    let server = &fleet.exchange_servers()[0];
    let out = winrm
        .run_powershell(
            server,
            "$ErrorActionPreference = 'Stop'\nNo-SuchCmdlet -X 1\n",
        )
        .await
        .unwrap();
    assert!(!out.succeeded(), "{out:?}");
    assert_eq!(out.exit_code, Some(1), "{out:?}");
    assert!(out.stderr.contains("No-SuchCmdlet"), "{out:?}");
    assert_eq!(fleet.servers()[0].winrm_stats().open_shells, 0);
    fleet.shutdown().await;
}
