//! Issue 7, benchmark 4: bulk incident response — disable + reset N accounts (default 1,000)
//! in Samba AD with the library's `RevokeMany`, against `ldapmodify` applying the same changes
//! from one LDIF file over one connection, and `samba-tool user disable` per account (20
//! accounts, extrapolated). In full mode the library also runs with `contain_first()` (every
//! account disabled, then every password reset), and both library runs print
//! `ManyReport::contained_after` (execute start → every account disabled).
//!
//! ```text
//! export EXCH_REVOKE_AD_ENV=target/samba-ad-dev/ad.env   # or let exch-samba start one
//! cargo bench --bench bulk                                # 1,000 accounts
//! cargo bench --bench bulk -- --accounts 200 --max-in-flight 16 --connections 4
//! ```
//!
//! Without `--bench` (`cargo test --all-targets`) it runs on 5 accounts and asserts only that
//! every account is disabled with its new password set (a bind with the new password is
//! refused with `data 533`, account disabled). Without Samba it prints `SKIPPED: …` and
//! passes, unless `EXCH_REVOKE_REQUIRE_SAMBA=1`.
//!
//! Set-up (not timed): N users created from one LDIF (`ldapadd`, one connection); between the
//! runs every account is re-enabled from one LDIF. The library run uses one in-process
//! `RecordingFlusher` server (no WinRM fleet): what is timed is the directory part — resolve
//! the N users (`plan`), then `execute`: one guarded modify per account (`userAccountControl`
//! swap + `unicodePwd`), the convergence read per account, one (instant) flush.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use exch_core::{ExchangeServer, ExchangeVersion, ServerRoles};
use exch_iis::RecordingFlusher;
use exch_remediate::{NewPassword, Outcome, Remediation, Step};
use exch_samba::SambaAd;
use secrecy::{ExposeSecret, SecretString};

const INITIAL: &str = "Init-Bench-Passw0rd!1";

/// The accounts of one bench run and where their files live.
struct Accounts {
    sams: Vec<String>,
    dns: Vec<String>,
    upns: Vec<String>,
    dir: PathBuf,
}

fn arg_usize(flag: &str, default: usize) -> usize {
    common::arg_value(flag)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `"password"` as UTF-16LE, base64: `unicodePwd::` in LDIF.
fn unicode_pwd_b64(password: &str) -> String {
    let bytes: Vec<u8> = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Runs `ldapmodify` (or `ldapadd`) on `ldif` over one LDAPS connection as the administrator;
/// the password goes through a 0600 file (`-y`), never the command line.
fn ldapmodify(ad: &SambaAd, acc: &Accounts, ldif: &Path, extra: &[&str]) -> Duration {
    let env = ad.env();
    let pw = acc.dir.join("admin.pw");
    if !pw.exists() {
        std::fs::write(&pw, env.admin_password.expose_secret()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let t = Instant::now();
    let out = Command::new("ldapmodify")
        .env("LDAPTLS_CACERT", &env.ca_file)
        .args(["-H", &env.url_ldaps, "-x", "-D", &env.admin_bind, "-y"])
        .arg(&pw)
        .args(extra)
        .arg("-f")
        .arg(ldif)
        .output()
        .expect("run ldapmodify (install ldap-utils)");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "ldapmodify -f {}: {}",
        ldif.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn write_ldif(acc: &Accounts, name: &str, entry: impl Fn(usize, &str) -> String) -> PathBuf {
    let path = acc.dir.join(name);
    let text: String = acc
        .dns
        .iter()
        .enumerate()
        .map(|(i, dn)| entry(i, dn))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn create(ad: &SambaAd, n: usize) -> Accounts {
    let env = ad.env();
    let dir = std::env::temp_dir().join(format!("exch-bulk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sams: Vec<String> = (0..n).map(|_| SambaAd::unique_name("bulk")).collect();
    let acc = Accounts {
        dns: sams
            .iter()
            .map(|s| format!("CN={s},CN=Users,{}", env.base_dn))
            .collect(),
        upns: sams
            .iter()
            .map(|s| format!("{s}@{}", env.dns_domain()))
            .collect(),
        sams,
        dir,
    };
    let pwd = unicode_pwd_b64(INITIAL);
    let add = write_ldif(&acc, "add.ldif", |i, dn| {
        format!(
            "dn: {dn}\nchangetype: add\nobjectClass: user\nsAMAccountName: {}\nuserPrincipalName: {}\nunicodePwd:: {pwd}\nuserAccountControl: 512\n\n",
            acc.sams[i], acc.upns[i]
        )
    });
    ldapmodify(ad, &acc, &add, &[]);
    acc
}

/// Re-enables every account (not timed).
fn reenable(ad: &SambaAd, acc: &Accounts) {
    let f = write_ldif(acc, "enable.ldif", |_, dn| {
        format!("dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 512\n-\n\n")
    });
    ldapmodify(ad, acc, &f, &[]);
}

fn delete(ad: &SambaAd, acc: &Accounts) {
    let list = acc.dir.join("delete.txt");
    std::fs::write(&list, acc.dns.join("\n") + "\n").unwrap();
    let env = ad.env();
    let out = Command::new("ldapdelete")
        .env("LDAPTLS_CACERT", &env.ca_file)
        .args([
            "-c",
            "-H",
            &env.url_ldaps,
            "-x",
            "-D",
            &env.admin_bind,
            "-y",
        ])
        .arg(acc.dir.join("admin.pw"))
        .arg("-f")
        .arg(&list)
        .output();
    if let Err(e) = out {
        println!("cleanup: ldapdelete failed ({e}); delete CN=bulk* under CN=Users by hand");
    }
    let _ = std::fs::remove_dir_all(&acc.dir);
}

/// Every account's `userAccountControl` and `pwdLastSet`, in one search.
async fn read_state(ad: &SambaAd, acc: &Accounts) -> Vec<(u32, i64)> {
    let mut ldap = ad.admin().await.unwrap();
    let mut out = Vec::with_capacity(acc.dns.len());
    for chunk in acc.sams.chunks(200) {
        let filter: String = chunk
            .iter()
            .map(|s| format!("(sAMAccountName={s})"))
            .collect();
        let (entries, _) = ldap
            .search(
                &format!("CN=Users,{}", ad.env().base_dn),
                ldap3::Scope::OneLevel,
                &format!("(|{filter})"),
                vec!["sAMAccountName", "userAccountControl", "pwdLastSet"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        let mut found: Vec<ldap3::SearchEntry> = entries
            .into_iter()
            .map(ldap3::SearchEntry::construct)
            .collect();
        for sam in chunk {
            let i = found
                .iter()
                .position(|e| e.attrs["sAMAccountName"][0].eq_ignore_ascii_case(sam))
                .unwrap_or_else(|| panic!("{sam} not found"));
            let e = found.swap_remove(i);
            out.push((
                e.attrs["userAccountControl"][0].parse().unwrap(),
                e.attrs["pwdLastSet"][0].parse().unwrap(),
            ));
        }
    }
    out
}

struct LibRun {
    plan: Duration,
    execute: Duration,
    change: Duration,
    converge: Duration,
    /// `ManyReport::contained_after`.
    contained: Option<Duration>,
    passwords: Vec<SecretString>,
}

/// What the library run does to every account.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    DisableOnly,
    /// Disable + reset, one combined modify per account.
    Combined,
    /// Disable + reset with `contain_first()`: every disable, then every reset.
    ContainFirst,
}

async fn library(
    ad: &SambaAd,
    acc: &Accounts,
    max_in_flight: usize,
    connections: usize,
    mode: Mode,
) -> LibRun {
    let env = ad.env();
    let dir = env
        .directory()
        .base_dn(env.base_dn.clone())
        .connections(connections)
        .build()
        .await
        .expect("LDAPS to Samba");
    let server = ExchangeServer::new("EX01", "ex01.lab.example.test")
        .with_version(ExchangeVersion::new(15, 2, 1258))
        .with_roles(ServerRoles::MAILBOX);
    let run = Remediation::builder()
        .directory(Arc::new(dir))
        .flusher(Arc::new(RecordingFlusher::new()))
        .servers(vec![server])
        .users(acc.upns.clone())
        .disable();
    let run = match mode {
        Mode::DisableOnly => run,
        Mode::Combined => run.reset_password(NewPassword::Generate),
        Mode::ContainFirst => run.reset_password(NewPassword::Generate).contain_first(),
    };
    let run = run.accounts_in_flight(max_in_flight).build_many().unwrap();
    let passwords = run.new_passwords().map(|(_, p)| p.clone()).collect();
    let t = Instant::now();
    let plan = run.plan().await.unwrap();
    let plan_took = t.elapsed();
    let t = Instant::now();
    let report = run.execute(&plan).await;
    let execute = t.elapsed();
    assert_eq!(report.outcome, Outcome::Revoked, "{}", report.summary());
    let step = |s: Step| {
        report
            .steps
            .iter()
            .find(|r| r.step == s)
            .map(|r| r.elapsed)
            .unwrap_or_default()
    };
    LibRun {
        plan: plan_took,
        execute,
        change: step(Step::ChangeDirectory),
        converge: step(Step::Converge),
        contained: report.contained_after,
        passwords,
    }
}

fn samba_tool_disable(ad: &SambaAd, acc: &Accounts, n: usize) -> Option<Duration> {
    let conf = ad.env().file.parent()?.join("etc/smb.conf");
    if !conf.exists() {
        println!(
            "samba-tool: no {} (a DC not started by scripts/samba-ad.sh): not measured",
            conf.display()
        );
        return None;
    }
    let t = Instant::now();
    for sam in acc.sams.iter().take(n) {
        let out = Command::new("samba-tool")
            .args(["user", "disable", sam, "-s"])
            .arg(&conf)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "samba-tool user disable {sam}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(t.elapsed())
}

/// CPU time (user + system) of process `pid` so far, from `/proc` (Linux).
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ = 100 on Linux
}

/// The Samba process (from `AD_SAMBA_PID` in `ad.env`), to measure its CPU time.
fn samba_pid(ad: &SambaAd) -> Option<String> {
    let text = std::fs::read_to_string(&ad.env().file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("AD_SAMBA_PID="))
        .map(|v| v.trim().to_owned())
}

/// Runs `f`, returning its wall time and the CPU time Samba and this process spent meanwhile.
async fn with_cpu<T>(
    samba: Option<&str>,
    f: impl std::future::Future<Output = T>,
) -> (T, Option<Duration>, Option<Duration>) {
    let s0 = samba.and_then(cpu_time);
    let c0 = cpu_time("self");
    let out = f.await;
    let ds = samba
        .and_then(cpu_time)
        .zip(s0)
        .map(|(a, b)| a.saturating_sub(b));
    let dc = cpu_time("self").zip(c0).map(|(a, b)| a.saturating_sub(b));
    (out, ds, dc)
}

fn ms_per(d: Option<Duration>, n: usize) -> String {
    d.map_or("?".to_owned(), |d| {
        format!("{:.1}", d.as_secs_f64() * 1e3 / n as f64)
    })
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let Some(ad) = SambaAd::require("bulk") else {
        return;
    };
    let full = common::full_mode();
    let n = arg_usize("--accounts", if full { 1000 } else { 5 });
    let max_in_flight = arg_usize("--max-in-flight", 16);
    let connections = arg_usize("--connections", 4);
    let tool_n = arg_usize("--samba-tool-accounts", 20).min(n);
    let t = Instant::now();
    let acc = create(ad, n);
    println!(
        "bulk: {n} accounts created in {:.1}s (set-up, not timed)",
        t.elapsed().as_secs_f64()
    );
    let result =
        std::panic::AssertUnwindSafe(measure(ad, &acc, full, max_in_flight, connections, tool_n));
    let outcome = futures::FutureExt::catch_unwind(result).await;
    delete(ad, &acc);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn measure(
    ad: &SambaAd,
    acc: &Accounts,
    full: bool,
    max_in_flight: usize,
    connections: usize,
    tool_n: usize,
) {
    let n = acc.dns.len();
    let before = read_state(ad, acc).await;

    let samba = samba_pid(ad);
    let samba = samba.as_deref();
    // (a) the library.
    let (lib, lib_samba_cpu, lib_cpu) = with_cpu(
        samba,
        library(ad, acc, max_in_flight, connections, Mode::Combined),
    )
    .await;
    let after = read_state(ad, acc).await;
    for (i, ((uac, pls), (_, pls0))) in after.iter().zip(&before).enumerate() {
        assert!(uac & 2 != 0, "{} not disabled ({uac:#x})", acc.sams[i]);
        assert!(pls > pls0, "{}: pwdLastSet did not move", acc.sams[i]);
    }
    assert!(lib.contained.is_some(), "no containment time");
    if !full {
        for (upn, new) in acc.upns.iter().zip(&lib.passwords) {
            let answer = ad.try_bind(upn, new).await.unwrap();
            assert!(
                answer.rc == 49 && answer.text.contains("data 533"),
                "{upn}: {answer:?}"
            );
        }
        println!("bulk (smoke): {n} accounts disabled with their new passwords set (bind → data 533): ok");
        return;
    }

    // (a') the library with contain_first: every disable, then every reset.
    reenable(ad, acc);
    let first = library(ad, acc, max_in_flight, connections, Mode::ContainFirst).await;
    let again = read_state(ad, acc).await;
    for (i, ((uac, pls), (_, pls0))) in again.iter().zip(&after).enumerate() {
        assert!(uac & 2 != 0, "{} not disabled ({uac:#x})", acc.sams[i]);
        assert!(pls > pls0, "{}: pwdLastSet did not move", acc.sams[i]);
    }

    // (b) ldapmodify, the same changes from one LDIF, one connection.
    reenable(ad, acc);
    let ldif = write_ldif(acc, "revoke.ldif", |i, dn| {
        let pwd = unicode_pwd_b64(&format!("Ldif-Bench-{i}-Passw0rd!x"));
        format!("dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n-\nreplace: unicodePwd\nunicodePwd:: {pwd}\n-\n\n")
    });
    let (ldapmodify_took, ldif_samba_cpu, _) =
        with_cpu(samba, async { ldapmodify(ad, acc, &ldif, &[]) }).await;
    let after = read_state(ad, acc).await;
    assert!(
        after.iter().all(|(uac, _)| uac & 2 != 0),
        "ldapmodify did not disable every account"
    );

    // (c) samba-tool user disable, per account; (d) the library, disable only (the same job).
    reenable(ad, acc);
    let tool = samba_tool_disable(ad, acc, tool_n);
    reenable(ad, acc);
    let (lib_disable, disable_samba_cpu, _) = with_cpu(
        samba,
        library(ad, acc, max_in_flight, connections, Mode::DisableOnly),
    )
    .await;

    let lib_total = lib.plan + lib.execute;
    let first_total = first.plan + first.execute;
    let rows = [
        ("library RevokeMany: plan + execute", n, lib_total),
        ("library RevokeMany: execute only", n, lib.execute),
        ("library RevokeMany contain_first", n, first_total),
        ("ldapmodify, one LDIF, one connection", n, ldapmodify_took),
    ];
    println!();
    println!("Benchmark 4: disable + reset {n} accounts in Samba AD (max_in_flight {max_in_flight}, {connections} LDAP connections)");
    println!(
        "{:<44} {:>9} {:>10} {:>12}",
        "run", "accounts", "time (s)", "accounts/s"
    );
    for (name, k, d) in rows {
        println!(
            "{name:<44} {k:>9} {:>10.2} {:>12.1}",
            d.as_secs_f64(),
            rate(k, d)
        );
    }
    if let Some(d) = tool {
        println!(
            "{:<44} {tool_n:>9} {:>10.2} {:>12.1}   (disable only; {n} extrapolated: {:.0} s)",
            "samba-tool user disable, per account",
            d.as_secs_f64(),
            rate(tool_n, d),
            d.as_secs_f64() * n as f64 / tool_n as f64
        );
    }
    let disable_total = lib_disable.plan + lib_disable.execute;
    println!(
        "{:<44} {n:>9} {:>10.2} {:>12.1}   (disable only: the job samba-tool does)",
        "library RevokeMany, disable only",
        disable_total.as_secs_f64(),
        rate(n, disable_total)
    );
    println!(
        "library breakdown: plan (resolve {n} users) {:.2}s, change {:.2}s, converge {:.2}s",
        lib.plan.as_secs_f64(),
        lib.change.as_secs_f64(),
        lib.converge.as_secs_f64()
    );
    let secs =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64()));
    println!("containment (execute start -> every account disabled, ManyReport::contained_after):");
    println!(
        "  library RevokeMany (combined)      contained after {} s, execute {:.2} s",
        secs(lib.contained),
        lib.execute.as_secs_f64()
    );
    println!(
        "  library RevokeMany contain_first   contained after {} s, execute {:.2} s, plan + execute {:.2} s{}",
        secs(first.contained),
        first.execute.as_secs_f64(),
        first_total.as_secs_f64(),
        match (lib.contained, first.contained) {
            (Some(a), Some(b)) => format!(" ({:.1}x sooner)", a.as_secs_f64() / b.as_secs_f64()),
            _ => String::new(),
        }
    );
    println!(
        "CPU per account: Samba {} ms (library run), {} ms (ldapmodify run), {} ms (library disable only); bench process {} ms (library run)",
        ms_per(lib_samba_cpu, n),
        ms_per(ldif_samba_cpu, n),
        ms_per(disable_samba_cpu, n),
        ms_per(lib_cpu, n)
    );
    let vs_ldif = rate(n, lib_total) / rate(n, ldapmodify_took);
    let vs_ldif_exec = rate(n, lib.execute) / rate(n, ldapmodify_took);
    println!("ratio vs ldapmodify (target >= 1x): {vs_ldif:.2}x plan+execute, {vs_ldif_exec:.2}x execute only");
    if let Some(d) = tool {
        let vs_tool = rate(n, lib_total) / rate(tool_n, d);
        let vs_tool_disable = rate(n, disable_total) / rate(tool_n, d);
        println!(
            "ratio vs samba-tool  (target >= 20x): {vs_tool:.1}x disable + reset vs disable only, {vs_tool_disable:.1}x disable vs disable"
        );
    }
}
