//! `exch-revoke audit`, the real binary against Samba AD and a lab fleet registered in it:
//! a server with `UserTokenTTL` 0, a server whose WinRM port has no listener and a server whose
//! WinRM refuses the credentials are reported
//! (JSON and table) and the exit code is 3; a healthy fleet exits 0. What the lab's own
//! counters saw proves the audit changed nothing (no recycle, no TTL written), and a plain TCP
//! connect proves the "unreachable" server really has no listener.
//!
//! Needs Samba (`EXCH_REVOKE_AD_ENV`; skipped with a `SKIPPED:` line otherwise, failed when
//! `EXCH_REVOKE_REQUIRE_SAMBA=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::SerialLab as Lab;
use exch_lab::fleet::ServerSpec;
use exch_samba::SambaAd;
use serde_json::Value;

const WINRM_USER: &str = "LAB\\svc-audit";
const WINRM_PW: &str = "Audit-WinRM-Pw!k4";

/// A lab fleet registered in the shared DC, and how to run the binary against it.
impl Lab {
    /// The servers `specs` registered in the DC; `None` when the suite is skipped.
    async fn start_audited(specs: Vec<ServerSpec>) -> Option<Lab> {
        let suite = "exch-revoke audit (Samba AD + lab fleet + the binary)";
        Lab::start(suite, "audit", specs, WINRM_USER, WINRM_PW).await
    }

    /// Connection flags for this DC and fleet (only this fleet's servers are included: the
    /// DC is shared with other suites).
    fn args(&self) -> Vec<String> {
        let env = self.ad.env();
        let mut a: Vec<String> = vec![
            "--ldap-url".into(),
            env.url_ldaps.clone(),
            "--ca-file".into(),
            env.ca_file.display().to_string(),
            "--bind-user".into(),
            env.admin_bind.clone(),
            "--winrm-user".into(),
            WINRM_USER.into(),
            "--winrm-auth".into(),
            "ntlm".into(),
        ];
        for s in self.fleet.servers() {
            a.push("--winrm-endpoint".into());
            a.push(format!("{}={}", s.name(), s.winrm_url()));
            a.push("--include".into());
            a.push(s.name().to_owned());
        }
        a
    }

    /// Runs `exch-revoke ARGS…` with an empty configuration file and the service passwords in
    /// the environment.
    async fn run(&self, args: &[&str]) -> std::process::Output {
        let config = self.dir.join("empty.toml");
        std::fs::write(&config, "").unwrap();
        let mut cmd = tokio::process::Command::from(self.samba.command(&config));
        cmd.args(args)
            .args(self.args())
            .stdin(std::process::Stdio::null());
        cmd.output().await.unwrap()
    }

    /// Runs `exch-revoke ARGS…` like [`Lab::run`], asserts the exit code `code` and returns
    /// stdout.
    async fn stdout_of(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args).await;
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{stdout}\n{}",
            text(&out.stderr)
        );
        stdout
    }

    /// Recycles and `UserTokenTTL` writes the lab saw, all servers.
    fn changes_seen(&self) -> u64 {
        self.fleet
            .servers()
            .iter()
            .map(|s| {
                let c = s.counters().iis;
                c.recycles + c.recycle_failures + c.iisresets
            })
            .sum()
    }
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn server<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the report: {report:#}"))
}

fn kinds(server: &Value) -> Vec<String> {
    server["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_ttl_zero_and_an_unreachable_server_and_exits_non_zero() {
    let p = SambaAd::unique_name("au");
    let (ok, zero, down, refused) = (
        format!("{p}a"),
        format!("{p}b"),
        format!("{p}c"),
        format!("{p}d"),
    );
    let Some(lab) = Lab::start_audited(vec![
        ServerSpec::exchange_2019(&ok).site("Default-First-Site-Name"),
        ServerSpec::exchange_2016(&zero).user_token_ttl(0),
        ServerSpec::exchange_2019(&down),
        ServerSpec::exchange_2019(&refused),
    ])
    .await
    else {
        return;
    };
    // This one's WinRM refuses the service account's credentials.
    lab.fleet
        .server(&refused)
        .unwrap()
        .set_wrong_credentials(true);
    let gone = lab.fleet.server(&down).unwrap();
    gone.set_unreachable(true).await.unwrap();
    // Independent truth: nobody listens on that server's WinRM port now.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", gone.port())).is_err(),
        "{down} still accepts connections"
    );

    // JSON for scripts.
    let out = lab.run(&["audit", "--json"]).await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"], 3, "{report:#}");

    let z = server(&report, &zero);
    assert_eq!(z["token_ttl"]["never_expires"], true, "{z:#}");
    assert_eq!(z["token_ttl"]["configured_secs"], 0, "{z:#}");
    assert!(
        kinds(z).contains(&"tokens_never_expire".to_owned()),
        "{z:#}"
    );
    assert_eq!(z["winrm"]["reachable"], true);
    assert_eq!(z["winrm"]["authenticated"], true);
    assert_eq!(z["product"], "Exchange 2016");

    let d = server(&report, &down);
    assert_eq!(d["winrm"]["reachable"], false, "{d:#}");
    assert_eq!(kinds(d), ["winrm_unreachable"], "{d:#}");
    assert!(
        d["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&gone.port().to_string()),
        "the finding names the endpoint: {d:#}"
    );

    let r = server(&report, &refused);
    assert_eq!(r["winrm"]["reachable"], true, "{r:#}");
    assert_eq!(r["winrm"]["authenticated"], false, "{r:#}");
    assert_eq!(kinds(r), ["winrm_auth_failed"], "{r:#}");

    let o = server(&report, &ok);
    assert!(kinds(o).is_empty(), "{o:#}");
    assert_eq!(o["winrm"]["method"], "NTLM over HTTP, message encryption");
    assert_eq!(o["token_ttl"]["effective_secs"], 900);
    assert_eq!(o["site"], "Default-First-Site-Name");
    assert!(o["roles"]
        .as_array()
        .unwrap()
        .contains(&Value::from("Mailbox")));
    // Every default pool of the catalog is there, and a revoke recycles exactly those.
    let pools = o["pools"].as_array().unwrap();
    let default: Vec<&Value> = pools
        .iter()
        .filter(|p| p["default_flush"] == true)
        .collect();
    assert_eq!(default.len(), 7, "{o:#}");
    assert!(default
        .iter()
        .all(|p| p["present"] == true && p["recycled"] == true));
    assert_eq!(o["would_recycle"].as_array().unwrap().len(), 7);
    assert!(
        o["impact"].as_str().unwrap().contains("stop-then-start"),
        "{o:#}"
    );

    // Every DC of the domain answers.
    let dcs = report["domains"][0]["domain_controllers"]
        .as_array()
        .unwrap();
    assert!(!dcs.is_empty(), "{report:#}");
    assert!(dcs.iter().all(|d| d["answers"] == true), "{report:#}");

    // For people: a table naming both problems, no escape codes when piped.
    let stdout = lab.stdout_of(&["audit"], 3).await;
    assert!(!stdout.contains('\x1b'), "{stdout}");
    eprintln!("{stdout}");
    let line_of = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
            .to_owned()
    };
    assert!(line_of(&zero).contains("0 (never expires)"), "{stdout}");
    assert!(line_of(&down).contains("unreachable"), "{stdout}");
    assert!(line_of(&refused).contains("auth refused"), "{stdout}");
    assert!(line_of(&ok).contains("ok"), "{stdout}");
    assert!(stdout.contains("Problems (3)"), "{stdout}");
    assert!(stdout.contains("tokens never expire"), "{stdout}");

    // The audit only read: no recycle, no iisreset, nothing written on any server.
    assert_eq!(lab.changes_seen(), 0);
    lab.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_of_a_healthy_fleet_exits_zero() {
    let p = SambaAd::unique_name("ah");
    let Some(lab) = Lab::start_audited(vec![
        ServerSpec::exchange_2019(format!("{p}a")),
        ServerSpec::exchange_2010(format!("{p}b")),
    ])
    .await
    else {
        return;
    };
    let stdout = lab
        .stdout_of(&["audit", "--json", "--concurrency", "1"], 0)
        .await;
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["problems"], 0);
    // Exchange 2010 recycles DefaultAppPool (RPC over HTTP) among its six.
    let b = server(&report, &format!("{p}b"));
    let recycled: Vec<&str> = b["would_recycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(recycled.contains(&"DefaultAppPool"), "{b:#}");
    assert_eq!(recycled.len(), 6, "{b:#}");
    assert_eq!(lab.changes_seen(), 0);
    lab.cleanup().await;
}
