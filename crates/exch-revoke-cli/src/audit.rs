//! `exch-revoke audit`: the fleet before an incident, read-only.
//!
//! Per Exchange server: version, roles, site; whether WinRM answers with the configured
//! authentication (and which: [`WinRmFlusher::method_for`](exch_iis::WinRmFlusher::method_for));
//! `UserTokenTTL` (0 is flagged: tokens never expire); the token-caching pools of the catalog
//! against those present; what a revoke would recycle there and what that costs its users.
//! Per domain: the domain controllers, and whether each answers a read of a known object (the
//! bind account, else `krbtgt`). Servers are checked concurrently, a bounded number at a time.
//!
//! Exit code 0 when nothing was found that would make a revoke fail or be slow, 3 (partial)
//! when something was (an unreachable server, refused credentials, `UserTokenTTL` 0, a DC
//! that does not answer, missing pools), 1 when the directory itself cannot be used.
//! Nothing is changed: every call is a read.

mod check;
mod render;
mod report;

use std::sync::Arc;
use std::time::Duration;

use exch_core::ExchangeServer;
use exch_directory::Directory;
use exch_iis::CacheFlusher;

pub use check::{
    audit, audit_domain, audit_server, audit_servers, known_objects, AuditPlan, MethodDescriber,
};
pub use render::render;
pub use report::{
    AuditReport, DcAudit, DomainAudit, Finding, PoolAudit, Rated, ServerAudit, Severity,
    TokenTtlAudit, WinRmAudit,
};

use crate::error::CliError;
use crate::exit::Exit;
use crate::output::Out;
use crate::settings::{RunSettings, Settings};

/// Options of `exch-revoke audit` (the servers are chosen with the connection flags
/// `--include`, `--exclude` and `--site`, or the profile's lists).
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Print the audit as JSON on stdout (for scripts) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Servers checked at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Seconds one server (or one DC) may take before it counts as not answering.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

/// Runs the audit: connects to the DC, discovers the servers, checks them and the DCs, prints
/// the result (tables, or JSON with `--json`).
pub async fn run(settings: &Settings, args: &AuditArgs, out: &mut Out) -> Result<Exit, CliError> {
    let flusher = settings.flusher()?;
    let directory = settings.directory().await?;
    for note in settings.security_notes(Some(&flusher), Some(&directory)) {
        out.security(note);
    }
    let plan = AuditPlan {
        method: settings.run.method.clone().unwrap_or_default(),
        concurrency: usize::from(args.concurrency),
        per_target_timeout: Duration::from_secs(args.timeout),
        known_objects: known_objects(Some(&settings.ldap.bind_user)),
        domain_name: Some(directory.base_dn().to_owned()),
    };
    let discovered = directory.exchange_servers().await.map_err(|e| {
        CliError::failed(
            Some(settings.ldap.url.clone()),
            format!("cannot list the Exchange servers: {e}"),
            Some("the bind account needs read access to the configuration partition".into()),
        )
    })?;
    let (servers, selection_findings) = select(discovered, &settings.run);
    out.note(format!(
        "audit: {} server{} ({} at a time), the domain controllers of {}",
        servers.len(),
        if servers.len() == 1 { "" } else { "s" },
        plan.concurrency,
        directory.base_dn()
    ));
    let describe: MethodDescriber = {
        let flusher = Arc::clone(&flusher);
        Arc::new(move |s: &ExchangeServer| flusher.method_for(s))
    };
    let dir: Arc<dyn Directory> = directory;
    let fl: Arc<dyn CacheFlusher> = flusher;
    let mut report = audit(dir, fl, describe, servers, &plan).await;
    if !selection_findings.is_empty() {
        let mut findings = report.findings.clone();
        findings.extend(selection_findings);
        report = AuditReport::new(report.domains, report.servers, findings);
    }
    if args.json {
        out.json(&report)?;
    } else {
        render(out, &report);
    }
    Ok(if report.ok {
        Exit::Revoked
    } else {
        Exit::Partial
    })
}

/// The servers a revoke would consider (`--include`, `--exclude`, `--site`), and a finding for
/// every included name the directory does not know.
pub fn select(
    servers: Vec<ExchangeServer>,
    run: &RunSettings,
) -> (Vec<ExchangeServer>, Vec<Rated>) {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let mut findings = Vec::new();
    for name in &run.include {
        if !servers
            .iter()
            .any(|s| eq(&s.name, name) || eq(&s.fqdn, name))
        {
            findings.push(Rated::from(Finding::SelectedServerUnknown {
                name: name.clone(),
            }));
        }
    }
    let total = servers.len();
    let chosen: Vec<ExchangeServer> = servers
        .into_iter()
        .filter(|s| {
            run.include.is_empty() || run.include.iter().any(|i| eq(i, &s.name) || eq(i, &s.fqdn))
        })
        .filter(|s| !run.exclude.iter().any(|x| eq(x, &s.name) || eq(x, &s.fqdn)))
        .filter(|s| {
            run.sites.is_empty()
                || s.site
                    .as_deref()
                    .is_some_and(|site| run.sites.iter().any(|x| eq(x, site)))
        })
        .collect();
    if chosen.len() < total {
        findings.push(Rated::from(Finding::NotSelected {
            count: total - chosen.len(),
        }));
    }
    (chosen, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exch_remediate::{Strategy, Timeouts};

    fn run_settings(include: &[&str], exclude: &[&str], sites: &[&str]) -> RunSettings {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        RunSettings {
            strategy: Strategy::Parallel { max_in_flight: 4 },
            timeouts: Timeouts::default(),
            deadline: None,
            accounts_in_flight: None,
            method: None,
            include: v(include),
            exclude: v(exclude),
            sites: v(sites),
        }
    }

    fn servers() -> Vec<ExchangeServer> {
        vec![
            ExchangeServer::new("EX01", "ex01.corp.example").with_site("HQ"),
            ExchangeServer::new("EX02", "ex02.corp.example").with_site("Branch"),
            ExchangeServer::new("EX03", "ex03.corp.example"),
        ]
    }

    fn names(v: &[ExchangeServer]) -> Vec<&str> {
        v.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn selection_follows_include_exclude_and_sites_case_insensitively() {
        let (all, f) = select(servers(), &run_settings(&[], &[], &[]));
        assert_eq!(names(&all), ["EX01", "EX02", "EX03"]);
        assert!(f.is_empty());

        let (some, f) = select(
            servers(),
            &run_settings(&["ex01", "EX02.corp.example"], &["Ex02"], &[]),
        );
        assert_eq!(names(&some), ["EX01"]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].finding, Finding::NotSelected { count: 2 });

        let (hq, _) = select(servers(), &run_settings(&[], &[], &["hq"]));
        assert_eq!(names(&hq), ["EX01"]);
    }

    #[test]
    fn an_included_name_the_directory_does_not_know_is_a_problem() {
        let (chosen, f) = select(servers(), &run_settings(&["EX01", "EX9"], &[], &[]));
        assert_eq!(names(&chosen), ["EX01"]);
        assert!(f.iter().any(|r| r.finding
            == Finding::SelectedServerUnknown { name: "EX9".into() }
            && r.severity == Severity::Problem));
    }
}
