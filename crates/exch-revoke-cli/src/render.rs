//! What people read: the plan and the result as tables, the SECURITY and residual-risk lines.

use exch_remediate::{
    Action, ManyPlan, ManyReport, Outcome, ServerOutcome, ServerRecord, Step, UserRecord,
};

use crate::output::{Out, Style, Table};

/// What a revoke leaves standing, whatever its outcome (printed after every run).
pub const RESIDUAL: [&str; 4] = [
    "Kerberos service tickets already issued stay valid until they expire (10 h by default); services other than Exchange's HTTP endpoints are not flushed",
    "OAuth tokens (hybrid modern authentication) stay valid until they expire",
    "mobile devices and Outlook keep the mail they have already synced (wipe devices with the mailbox containment)",
    "sessions already open keep working until their next authentication (Direct Push and Outlook reconnect within minutes)",
];

/// A step's name as people read it.
pub fn step_name(step: Step) -> &'static str {
    match step {
        Step::FindAccount => "find accounts",
        Step::ChangeDirectory => "change directory",
        Step::Converge => "wait for DCs",
        Step::Flush => "flush servers",
        Step::Probe => "probe old passwords",
        Step::Mailbox => "mailbox",
        _ => "step",
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Disable => "disable",
        Action::ResetPassword => "reset password",
        _ => "action",
    }
}

/// The plan as tables: users, servers, DCs, impact.
pub fn plan(out: &Out, plan: &ManyPlan) {
    let mut users = Table::new(["USER", "ACCOUNT", "ACTIONS", "STATUS"]);
    for u in &plan.users {
        let account = u
            .account
            .as_ref()
            .map(|a| a.dn.to_string())
            .unwrap_or_else(|| "-".into());
        let actions: Vec<String> = u
            .actions
            .iter()
            .map(|a| {
                let name = action_name(a.action);
                if a.done_earlier {
                    format!("{name} (done earlier)")
                } else if a.already_so {
                    format!("{name} (already so)")
                } else {
                    name.to_owned()
                }
            })
            .collect();
        let (status, style) = match &u.problem {
            Some(p) => (format!("NOT RESOLVED: {p}"), Style::Bad),
            None => ("ok".to_owned(), Style::Good),
        };
        users.styled_row(vec![
            (crate::users::printable(&u.user), None),
            (account, None),
            (
                if actions.is_empty() {
                    "-".into()
                } else {
                    actions.join(", ")
                },
                None,
            ),
            (status, Some(style)),
        ]);
    }
    out.table(&users);
    out.line("");
    let mut servers = Table::new(["SERVER", "VERSION", "SITE", "POOLS", "PLAN"]);
    for s in &plan.servers {
        let version = s
            .server
            .version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into());
        let (what, style) = match &s.skip {
            Some(reason) => (format!("skip: {reason}"), Some(Style::Dim)),
            None => (s.why.clone(), None),
        };
        servers.styled_row(vec![
            (s.server.name.clone(), None),
            (version, None),
            (s.server.site.clone().unwrap_or_else(|| "-".into()), None),
            (
                if s.skip.is_some() {
                    "-".into()
                } else {
                    s.pools.len().to_string()
                },
                None,
            ),
            (what, style),
        ]);
    }
    out.table(&servers);
    out.line("");
    out.line(plan_line(plan));
    impact(out, &plan.impact);
}

/// The plan in one line: actions, users, DCs, servers, strategy.
pub fn plan_line(plan: &ManyPlan) -> String {
    let resolved = plan.resolved().count();
    let unresolved = plan.users.len() - resolved;
    let flushed = plan.servers.iter().filter(|s| s.is_flushed()).count();
    let actions: Vec<&str> = plan.actions.iter().map(|a| action_name(*a)).collect();
    format!(
        "Plan: {} {resolved} of {} users{}; wait for {} DC(s) ({}); flush {flushed} of {} servers once for all users ({}){}.",
        actions.join(" + "),
        plan.users.len(),
        if unresolved > 0 { format!(" ({unresolved} NOT resolved)") } else { String::new() },
        plan.domain_controllers.len(),
        plan.domain_controllers.join(", "),
        plan.servers.len(),
        strategy(&plan.strategy),
        if plan.contain_first { "; contain first: every account disabled before any password is reset" } else { "" },
    )
}

/// The impact lines, grouped: servers whose impact reads the same share one block, one pool
/// per line.
fn impact(out: &Out, lines: &[String]) {
    let mut groups: Vec<(Vec<&str>, &str)> = Vec::new();
    for line in lines {
        let (server, text) = line.split_once(": ").unwrap_or(("", line.as_str()));
        match groups.iter_mut().find(|(_, t)| *t == text) {
            Some((servers, _)) => servers.push(server),
            None => groups.push((vec![server], text)),
        }
    }
    for (servers, text) in groups {
        out.line(format!("Impact on {}:", servers.join(", ")));
        for clause in text.split("; ") {
            out.line(format!("  - {clause}"));
        }
    }
}

fn strategy(s: &exch_remediate::Strategy) -> String {
    match s {
        exch_remediate::Strategy::Parallel { max_in_flight } => {
            format!("parallel, {max_in_flight} at once")
        }
        exch_remediate::Strategy::Rolling { batch, pause } => {
            format!("rolling, {batch} at a time, {} ms pause", pause.as_millis())
        }
        _ => format!("{s:?}"),
    }
}

/// Pools recycled, workers old → new, for a server record.
fn flush_cells(r: &ServerRecord) -> (String, String) {
    let flush = match &r.outcome {
        ServerOutcome::Flushed { flush, .. } | ServerOutcome::Unproven { flush, .. } => flush,
        _ => return ("-".into(), "-".into()),
    };
    let recycled = flush.pools.iter().filter(|p| p.error.is_none()).count();
    let pools = if flush.missing_pools.is_empty() {
        format!("{recycled}/{}", flush.pools.len())
    } else {
        format!(
            "{recycled}/{} ({} missing)",
            flush.pools.len(),
            flush.missing_pools.len()
        )
    };
    let old: usize = flush.pools.iter().map(|p| p.before.len()).sum();
    let new: usize = flush.pools.iter().map(|p| p.after.len()).sum();
    let proven = flush.pools.iter().filter(|p| p.proven).count();
    let workers = format!(
        "{old} → {new} ({proven}/{} pools all new)",
        flush.pools.len()
    );
    (pools, workers)
}

/// The probes of server `name` over every user: `refused 5/5`, `ACCEPTED 1/5`, `-`.
fn probe_cell(report: &ManyReport, name: &str) -> (String, Option<Style>) {
    let probes: Vec<&exch_remediate::ProbeRecord> = report
        .users
        .iter()
        .flat_map(|u| &u.probes)
        .filter(|p| p.server.eq_ignore_ascii_case(name))
        .flat_map(|p| &p.probes)
        .collect();
    if probes.is_empty() {
        return ("-".into(), None);
    }
    // Endpoints that take no password logon (EWS and MAPI at Exchange's defaults) prove
    // nothing either way: counted neither as refused nor as not refused.
    let applicable = probes.iter().filter(|p| p.applicable).count();
    let open = probes.iter().filter(|p| p.is_open()).count();
    if applicable == 0 {
        ("not applicable".into(), None)
    } else if open == 0 {
        (
            format!("refused {applicable}/{applicable}"),
            Some(Style::Good),
        )
    } else {
        (format!("NOT REFUSED {open}/{applicable}"), Some(Style::Bad))
    }
}

fn outcome_style(o: Outcome) -> Style {
    match o {
        Outcome::Revoked => Style::Good,
        Outcome::Partial => Style::Warn,
        _ => Style::Bad,
    }
}

fn server_result(o: &ServerOutcome) -> (String, Style) {
    match o {
        ServerOutcome::Flushed { attempts, .. } => (
            if *attempts > 1 {
                format!("proven ({attempts} attempts)")
            } else {
                "proven".into()
            },
            Style::Good,
        ),
        ServerOutcome::Unproven { reason, .. } => (format!("NOT PROVEN: {reason}"), Style::Warn),
        ServerOutcome::Failed { kind, error, .. } => {
            (format!("FAILED ({kind}): {error}"), Style::Bad)
        }
        ServerOutcome::Skipped { reason } if reason.is_retried() => {
            (format!("NOT FLUSHED: {reason}"), Style::Warn)
        }
        ServerOutcome::Skipped { reason } => (format!("skipped: {reason}"), Style::Dim),
        other => (other.to_string(), Style::Warn),
    }
}

fn user_detail(u: &UserRecord) -> String {
    if u.outcome == Outcome::Revoked {
        let done: Vec<String> = u
            .actions
            .iter()
            .map(|a| {
                let name = action_name(a.action);
                if a.done_earlier {
                    format!("{name} (earlier run)")
                } else {
                    match a.outcome {
                        Some(exch_directory::ChangeOutcome::AlreadySo) => {
                            format!("{name} (already so)")
                        }
                        _ => name.to_owned(),
                    }
                }
            })
            .collect();
        let dcs = u.domain_controllers.iter().filter(|d| d.converged).count();
        return format!(
            "{}; on {dcs}/{} DCs",
            done.join(", "),
            u.domain_controllers.len()
        );
    }
    u.reasons.join("; ")
}

/// The result: servers table, users table, SECURITY and residual lines, the summary line.
pub fn report(out: &Out, report: &ManyReport) {
    let mut servers = Table::new([
        "SERVER",
        "POOLS RECYCLED",
        "WORKERS OLD → NEW",
        "PROBE",
        "RESULT",
    ]);
    for r in &report.servers {
        let (pools, workers) = flush_cells(r);
        let (probe, probe_style) = probe_cell(report, &r.server);
        let (result, style) = server_result(&r.outcome);
        servers.styled_row(vec![
            (r.server.clone(), None),
            (pools, None),
            (workers, None),
            (probe, probe_style),
            (result, Some(style)),
        ]);
    }
    if !servers.is_empty() {
        out.table(&servers);
        out.line("");
    }
    let mut users = Table::new(["USER", "OUTCOME", "DETAIL"]);
    for u in &report.users {
        users.styled_row(vec![
            (crate::users::printable(&u.user), None),
            (format!("{:?}", u.outcome), Some(outcome_style(u.outcome))),
            (user_detail(u), None),
        ]);
    }
    out.table(&users);
    out.line("");
    for note in &report.security {
        out.line(format!("{} {note}", out.paint(Style::Bad, "SECURITY:")));
    }
    // With the mailbox step, the engine says per user what was closed and what still stands;
    // without it, what a flush alone leaves.
    if report.users.iter().any(|u| u.mailbox.is_some()) {
        for u in &report.users {
            for r in &u.residual {
                out.line(format!(
                    "{} {}: {r}",
                    out.paint(Style::Dim, "RESIDUAL:"),
                    crate::users::printable(&u.user)
                ));
            }
        }
    } else {
        for line in RESIDUAL {
            out.line(format!("{} {line}", out.paint(Style::Dim, "RESIDUAL:")));
        }
    }
    let revoked = report
        .users
        .iter()
        .filter(|u| u.outcome == Outcome::Revoked)
        .count();
    let proven = report
        .servers
        .iter()
        .filter(|s| s.outcome.is_proven())
        .count();
    let flushed_total = report
        .servers
        .iter()
        .filter(
            |s| !matches!(&s.outcome, ServerOutcome::Skipped { reason } if !reason.is_retried()),
        )
        .count();
    let mut line = format!(
        "{}: {revoked}/{} users revoked, {proven}/{flushed_total} servers proven flushed, in {:.1} s",
        out.paint(outcome_style(report.outcome), &format!("{:?}", report.outcome)),
        report.users.len(),
        report.elapsed.as_secs_f64()
    );
    if let Some(c) = report.contained_after {
        line.push_str(&format!(
            " (every account disabled after {:.2} s)",
            c.as_secs_f64()
        ));
    }
    if report.cancelled {
        line.push_str(" — INTERRUPTED");
    }
    out.line(line);
    for r in &report.reasons {
        out.line(format!("  reason: {r}"));
    }
}
