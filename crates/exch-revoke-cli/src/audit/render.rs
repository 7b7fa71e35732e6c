//! The audit for people: a table per domain and for the servers, what a revoke would do, and
//! the problems and notes, each naming its server or DC.

use crate::output::{Out, Style, Table};

use super::report::{AuditReport, Rated, ServerAudit, Severity};

/// Prints `report` on `out` (stdout; colour only on a terminal, never with `NO_COLOR`).
pub fn render(out: &Out, report: &AuditReport) {
    for domain in &report.domains {
        let name = domain.name.as_deref().unwrap_or("(the connected domain)");
        out.line(out.paint(Style::Bold, &format!("Domain {name}")));
        match &domain.known_object {
            Some(dn) => out.line(format!("  each DC was asked for {dn}")),
            None => out.line("  the DCs were not asked (no known object could be read)"),
        }
        if !domain.domain_controllers.is_empty() {
            let mut t = Table::new(["DC", "HOST", "SITE", "ANSWERS"]);
            for dc in &domain.domain_controllers {
                let answers = match dc.answers {
                    Some(true) => (format!("yes ({} ms)", dc.elapsed_ms), Some(Style::Good)),
                    Some(false) => ("NO".to_owned(), Some(Style::Bad)),
                    None => ("not asked".to_owned(), Some(Style::Warn)),
                };
                t.styled_row(vec![
                    (dc.name.clone(), None),
                    (dc.dns_host_name.clone(), None),
                    (dc.site.clone().unwrap_or_else(|| "-".into()), None),
                    answers,
                ]);
            }
            out.table(&t);
        }
        out.line("");
    }

    out.line(out.paint(
        Style::Bold,
        &format!("Exchange servers ({})", report.servers.len()),
    ));
    if !report.servers.is_empty() {
        let mut t = Table::new([
            "SERVER",
            "VERSION",
            "ROLES",
            "SITE",
            "WINRM",
            "AUTHENTICATION",
            "USERTOKENTTL",
            "POOLS",
            "STATUS",
        ]);
        for s in &report.servers {
            t.styled_row(server_row(s));
        }
        out.table(&t);
    }
    out.line("");

    render_impact(out, report);

    let problems = findings_of(report, Severity::Problem);
    let notes = findings_of(report, Severity::Note);
    if !problems.is_empty() {
        out.line(out.paint(Style::Bad, &format!("Problems ({})", problems.len())));
        for (who, f) in &problems {
            out.line(format!("  {who}: {}", without_prefix(&f.message, who)));
        }
        out.line("");
    }
    if !notes.is_empty() {
        out.line(out.paint(Style::Bold, &format!("Notes ({})", notes.len())));
        for (who, f) in &notes {
            out.line(format!("  {who}: {}", without_prefix(&f.message, who)));
        }
        out.line("");
    }
    if report.ok {
        out.line(out.paint(
            Style::Good,
            "audit: nothing found that would make a revoke fail or be slow",
        ));
    } else {
        let n = report.problems;
        out.line(out.paint(
            Style::Bad,
            &format!(
                "audit: {n} problem{} that would make a revoke fail or be slow",
                if n == 1 { "" } else { "s" }
            ),
        ));
    }
}

/// What a revoke would do, once per distinct set of pools (servers of one version recycle the
/// same pools): the servers, then one line per pool with how it recycles and what it cuts
/// ([`exch_remediate::PlannedServer::impact`], split at its `; ` between pools).
fn render_impact(out: &Out, report: &AuditReport) {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for s in report.servers.iter().filter(|s| !s.impact.is_empty()) {
        let what = without_prefix(&s.impact, &s.name).to_owned();
        match groups.iter_mut().find(|(w, _)| *w == what) {
            Some((_, names)) => names.push(&s.name),
            None => groups.push((what, vec![&s.name])),
        }
    }
    let Some(first) = report.servers.first() else {
        return;
    };
    out.line(out.paint(
        Style::Bold,
        &format!("What a revoke would do ({})", first.flush_method),
    ));
    for (what, names) in &groups {
        out.line(format!("  {}:", names.join(", ")));
        for part in what.split("; ") {
            out.line(format!("    {part}"));
        }
    }
    out.line("");
}

/// `text` without a leading `who: ` (library messages name their server themselves).
fn without_prefix<'a>(text: &'a str, who: &str) -> &'a str {
    text.strip_prefix(who)
        .and_then(|t| t.strip_prefix(": "))
        .unwrap_or(text)
}

/// Every finding of `severity`, with who it is about.
fn findings_of(report: &AuditReport, severity: Severity) -> Vec<(String, &Rated)> {
    let mut v: Vec<(String, &Rated)> = Vec::new();
    for f in &report.findings {
        v.push(("fleet".into(), f));
    }
    for d in &report.domains {
        let name = d.name.clone().unwrap_or_else(|| "domain".into());
        for f in &d.findings {
            v.push((name.clone(), f));
        }
        for dc in &d.domain_controllers {
            for f in &dc.findings {
                v.push((format!("DC {}", dc.name), f));
            }
        }
    }
    for s in &report.servers {
        for f in &s.findings {
            v.push((s.name.clone(), f));
        }
    }
    v.retain(|(_, f)| f.severity == severity);
    v
}

fn server_row(s: &ServerAudit) -> Vec<(String, Option<Style>)> {
    let version = match (&s.product, &s.version) {
        (Some(p), Some(v)) => format!("{p} {v}"),
        _ => "unknown".into(),
    };
    let roles = if s.roles.is_empty() {
        "none".to_owned()
    } else {
        s.roles.join(", ")
    };
    let winrm = match (s.winrm.reachable, s.winrm.authenticated) {
        (None, None) if s.token_ttl.is_none() && s.has_problem() => {
            ("no answer".to_owned(), Some(Style::Bad))
        }
        (None, _) => ("not contacted".to_owned(), Some(Style::Dim)),
        (Some(false), _) => ("unreachable".to_owned(), Some(Style::Bad)),
        (Some(true), Some(false)) => ("auth refused".to_owned(), Some(Style::Bad)),
        (Some(true), _) => ("ok".to_owned(), Some(Style::Good)),
    };
    let ttl = match &s.token_ttl {
        None => ("-".to_owned(), None),
        Some(t) if t.never_expires => ("0 (never expires)".to_owned(), Some(Style::Bad)),
        Some(t) => match t.configured_secs {
            None => (format!("{} s (default)", t.effective_secs), None),
            Some(c) if c > 900 => (format!("{c} s"), Some(Style::Warn)),
            Some(c) => (format!("{c} s"), None),
        },
    };
    let pools = match &s.pools {
        None => ("-".to_owned(), None),
        Some(pools) => {
            let default: Vec<_> = pools.iter().filter(|p| p.default_flush).collect();
            let present = default.iter().filter(|p| p.present).count();
            let style = (present < default.len()).then_some(Style::Bad);
            (format!("{present}/{} present", default.len()), style)
        }
    };
    let status = if s.has_problem() {
        ("PROBLEM".to_owned(), Some(Style::Bad))
    } else if s.findings.is_empty() {
        ("ok".to_owned(), Some(Style::Good))
    } else {
        ("ok (notes)".to_owned(), Some(Style::Good))
    };
    vec![
        (s.name.clone(), None),
        (version, None),
        (roles, None),
        (s.site.clone().unwrap_or_else(|| "-".into()), None),
        winrm,
        (s.winrm.method.clone(), None),
        ttl,
        pools,
        status,
    ]
}
