//! `exch-revoke profile check`: tries every endpoint of the resolved settings and changes
//! nothing.
//!
//! | endpoint | what is tried |
//! |---|---|
//! | LDAP | connect (LDAPS, or StartTLS), verify the certificate, bind as the service account, read the RootDSE |
//! | Discovery | list the Exchange servers of the configuration partition (the servers below) |
//! | DC (each) | read a known object (the bind account, else `krbtgt`) on that DC |
//! | WinRM (each server) | authenticate with the configured method and run one read-only command (read `UserTokenTTL`) |
//! | HTTPS (each server, when probes are configured: `http_base` or `probe_ca_file`) | an anonymous `GET` of the EWS endpoint: it must answer and ask for credentials (no logon is sent) |
//!
//! One line per endpoint (`ok` / `FAIL`, the endpoint, its address, what happened); exit code 0
//! when every endpoint worked, 3 when any failed (its line says which), 1 when the directory
//! could not be used at all and no server could be named.

use std::sync::Arc;
use std::time::{Duration, Instant};

use exch_core::{ExchangeServer, Protocol};
use exch_directory::Directory;
use exch_iis::{CacheFlusher, WinRmFlusher};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::audit::{self, AuditPlan};
use crate::error::CliError;
use crate::exit::Exit;
use crate::output::{Out, Style, Table};
use crate::settings::Settings;

/// Servers tried at once.
const SERVERS_IN_FLIGHT: usize = 16;
/// The limit for one endpoint.
const PER_ENDPOINT: Duration = Duration::from_secs(30);

/// One endpoint tried.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EndpointCheck {
    /// What kind of endpoint: `LDAP`, `Discovery`, `DC`, `WinRM`, `HTTPS`.
    pub endpoint: String,
    /// Which one: a URL, or a server / DC name and its address.
    pub target: String,
    /// Whether it worked.
    pub ok: bool,
    /// What happened, or what went wrong and what to do.
    pub detail: String,
}

impl EndpointCheck {
    fn new(endpoint: &str, target: impl Into<String>, result: Result<String, String>) -> Self {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        EndpointCheck {
            endpoint: endpoint.to_owned(),
            target: target.into(),
            ok,
            detail,
        }
    }
}

/// Tries every endpoint of the profile; changes nothing.
pub async fn run(settings: &Settings, out: &mut Out) -> Result<Exit, CliError> {
    match &settings.profile {
        Some((name, file)) => {
            out.line(out.paint(Style::Bold, &format!("profile {name} ({})", file.display())))
        }
        None => out.line(out.paint(Style::Bold, "settings from the command line (no profile)")),
    }
    let mut checks: Vec<EndpointCheck> = Vec::new();

    // The WinRM settings are validated (and the password fetched) before anything is contacted.
    let flusher = match settings.flusher() {
        Ok(f) => Some(f),
        Err(e) => {
            checks.push(EndpointCheck::new("WinRM", "settings", Err(e.to_string())));
            None
        }
    };

    // LDAP: bind, then a read.
    let ldap_url = settings.ldap.url.clone();
    let directory = match settings.directory().await {
        Ok(d) => {
            let tls = if d.is_encrypted() {
                match &settings.ldap.ca_file {
                    Some(ca) => format!("TLS verified with {}", ca.display()),
                    None => "TLS verified with the system's roots".to_owned(),
                }
            } else {
                "NOT ENCRYPTED".to_owned()
            };
            checks.push(EndpointCheck::new(
                "LDAP",
                ldap_url.clone(),
                Ok(format!(
                    "bound as {}; {tls}; RootDSE read ({})",
                    settings.ldap.bind_user,
                    d.base_dn()
                )),
            ));
            Some(d)
        }
        Err(e) => {
            checks.push(EndpointCheck::new(
                "LDAP",
                ldap_url.clone(),
                Err(e.problem().to_owned()),
            ));
            None
        }
    };
    if let (Some(d), Some(f)) = (&directory, &flusher) {
        for note in settings.security_notes(Some(f), Some(d)) {
            out.security(note);
        }
    }

    let mut servers: Vec<ExchangeServer> = Vec::new();
    if let Some(dir) = &directory {
        match tokio::time::timeout(PER_ENDPOINT, dir.exchange_servers()).await {
            Ok(Ok(found)) => {
                let total = found.len();
                let (chosen, _) = audit::select(found, &settings.run);
                checks.push(EndpointCheck::new(
                    "Discovery",
                    ldap_url.clone(),
                    Ok(format!(
                        "{total} Exchange server{} in the configuration partition, {} selected",
                        if total == 1 { "" } else { "s" },
                        chosen.len()
                    )),
                ));
                for name in &settings.run.include {
                    if !chosen.iter().any(|s| {
                        s.name.eq_ignore_ascii_case(name) || s.fqdn.eq_ignore_ascii_case(name)
                    }) {
                        checks.push(EndpointCheck::new(
                            "WinRM",
                            name.clone(),
                            Err("selected (--include / include) but the directory has no such Exchange server; correct the name".into()),
                        ));
                    }
                }
                servers = chosen;
            }
            Ok(Err(e)) => checks.push(EndpointCheck::new(
                "Discovery",
                ldap_url.clone(),
                Err(format!("cannot list the Exchange servers: {e}")),
            )),
            Err(_) => checks.push(EndpointCheck::new(
                "Discovery",
                ldap_url.clone(),
                Err(format!("no answer within {} s", PER_ENDPOINT.as_secs())),
            )),
        }
        let plan = AuditPlan {
            method: settings.run.method.clone().unwrap_or_default(),
            concurrency: SERVERS_IN_FLIGHT,
            per_target_timeout: PER_ENDPOINT,
            known_objects: audit::known_objects(Some(&settings.ldap.bind_user)),
            domain_name: Some(dir.base_dn().to_owned()),
        };
        let as_dyn: Arc<dyn Directory> = dir.clone();
        checks.extend(dc_checks(as_dyn, &plan, settings).await);
    } else {
        // Without the directory, the servers the settings name explicitly are still tried.
        servers = settings
            .winrm
            .endpoints
            .iter()
            .map(|(name, _)| ExchangeServer::new(name.clone(), name.clone()))
            .collect();
    }

    if let Some(f) = &flusher {
        checks.extend(winrm_checks(f, settings, &servers).await);
    }
    checks.extend(https_checks(settings, &servers).await);

    render(out, &checks);
    let failed: Vec<&EndpointCheck> = checks.iter().filter(|c| !c.ok).collect();
    if failed.is_empty() {
        out.line(out.paint(
            Style::Good,
            &format!(
                "profile check: all {} endpoints answered; nothing was changed",
                checks.len()
            ),
        ));
        return Ok(Exit::Revoked);
    }
    let names: Vec<String> = failed
        .iter()
        .map(|c| format!("{} {}", c.endpoint, c.target))
        .collect();
    out.line(out.paint(
        Style::Bad,
        &format!(
            "profile check: {} of {} endpoints failed: {}; nothing was changed",
            failed.len(),
            checks.len(),
            names.join(", ")
        ),
    ));
    if directory.is_none() && servers.is_empty() {
        return Ok(Exit::Failed);
    }
    Ok(Exit::Partial)
}

fn render(out: &Out, checks: &[EndpointCheck]) {
    let mut t = Table::new(["RESULT", "ENDPOINT", "TARGET", "DETAIL"]);
    for c in checks {
        let result = if c.ok {
            ("ok".to_owned(), Some(Style::Good))
        } else {
            ("FAIL".to_owned(), Some(Style::Bad))
        };
        t.styled_row(vec![
            result,
            (c.endpoint.clone(), None),
            (c.target.clone(), None),
            (one_line(&c.detail), None),
        ]);
    }
    out.table(&t);
}

/// Messages of [`CliError`] carry a `fix:` on a second line; a table row wants one.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" — ")
}

/// One line per DC (the audit's domain check: one rule, one place).
async fn dc_checks(
    directory: Arc<dyn Directory>,
    plan: &AuditPlan,
    settings: &Settings,
) -> Vec<EndpointCheck> {
    let domain = audit::audit_domain(directory, plan).await;
    let mut v: Vec<EndpointCheck> = domain
        .findings
        .iter()
        .map(|f| EndpointCheck::new("DC", "domain", Err(f.message.clone())))
        .collect();
    for dc in &domain.domain_controllers {
        let url = settings
            .ldap
            .dc_urls
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&dc.name))
            .map(|(_, u)| u.clone());
        let target = match url {
            Some(u) => format!("{} {u}", dc.name),
            None => format!("{} {}", dc.name, dc.dns_host_name),
        };
        let result = match dc.answers {
            Some(true) => Ok(format!(
                "answers: read {} in {} ms",
                domain.known_object.as_deref().unwrap_or("the known object"),
                dc.elapsed_ms
            )),
            _ => Err(dc
                .findings
                .first()
                .map(|f| f.message.clone())
                .unwrap_or_else(|| "not asked".into())),
        };
        v.push(EndpointCheck::new("DC", target, result));
    }
    v
}

/// The WinRM address of `server` as the settings make it (for the line; the flusher decides).
fn winrm_address(settings: &Settings, server: &ExchangeServer) -> String {
    let w = &settings.winrm;
    if let Some((_, url)) = w
        .endpoints
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&server.name) || n.eq_ignore_ascii_case(&server.fqdn))
    {
        return url.clone();
    }
    let scheme = if w.https { "https" } else { "http" };
    let port = w.port.unwrap_or(if w.https { 5986 } else { 5985 });
    format!("{scheme}://{}:{port}/wsman", server.fqdn)
}

/// Every server's WinRM, with one read-only command, a bounded number at a time.
async fn winrm_checks(
    flusher: &Arc<WinRmFlusher>,
    settings: &Settings,
    servers: &[ExchangeServer],
) -> Vec<EndpointCheck> {
    let permits = Arc::new(Semaphore::new(SERVERS_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for (i, server) in servers.iter().cloned().enumerate() {
        let flusher = Arc::clone(flusher);
        let permits = Arc::clone(&permits);
        let target = format!("{} {}", server.name, winrm_address(settings, &server));
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.ok();
            let method = flusher.method_for(&server);
            let result = if server.is_edge() {
                Ok("Edge Transport: not used by a revoke; not contacted".to_owned())
            } else {
                let started = Instant::now();
                match tokio::time::timeout(PER_ENDPOINT, flusher.token_cache(&server)).await {
                    Ok(Ok(ttl)) => Ok(format!(
                        "{method}: authenticated; read-only command ran in {} ms (UserTokenTTL {})",
                        started.elapsed().as_millis(),
                        match ttl.configured {
                            Some(d) => format!("{} s", d.as_secs()),
                            None => "absent: 900 s".to_owned(),
                        }
                    )),
                    Ok(Err(e)) => {
                        let text = e.to_string();
                        let text = text
                            .strip_prefix(&format!("{}: ", server.name))
                            .unwrap_or(&text);
                        Err(format!("{text} ({method})"))
                    }
                    Err(_) => Err(format!(
                        "{method}: no answer within {} s",
                        PER_ENDPOINT.as_secs()
                    )),
                }
            };
            (i, EndpointCheck::new("WinRM", target, result))
        });
    }
    collect_in_order(tasks, servers.len()).await
}

async fn collect_in_order(
    mut tasks: JoinSet<(usize, EndpointCheck)>,
    n: usize,
) -> Vec<EndpointCheck> {
    let mut done: Vec<Option<EndpointCheck>> = vec![None; n];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, check)) = joined {
            done[i] = Some(check);
        }
    }
    done.into_iter().flatten().collect()
}

/// `e` and its sources, `: `-separated (reqwest's own message names only the URL).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// The probe endpoints (when probes are configured): an anonymous GET of EWS, which must
/// answer 401 with a challenge. No credentials are sent, so no logon reaches a DC.
async fn https_checks(settings: &Settings, servers: &[ExchangeServer]) -> Vec<EndpointCheck> {
    let p = &settings.probe;
    if p.http_base.is_empty() && p.ca_file.is_none() {
        return Vec::new();
    }
    let client = match settings.probe_http_client() {
        Ok(c) => c,
        Err(e) => {
            let why = e.problem().to_owned();
            return vec![EndpointCheck::new("HTTPS", "probe settings", Err(why))];
        }
    };
    let permits = Arc::new(Semaphore::new(SERVERS_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let targets: Vec<&ExchangeServer> = servers.iter().filter(|s| !s.is_edge()).collect();
    for (i, server) in targets.iter().enumerate() {
        let base = match p.http_base.iter().find(|(n, _)| {
            n.eq_ignore_ascii_case(&server.name) || n.eq_ignore_ascii_case(&server.fqdn)
        }) {
            Some((_, b)) => b.trim_end_matches('/').to_owned(),
            None => match server.url_host() {
                Ok(h) => format!("https://{h}"),
                Err(e) => {
                    let check =
                        EndpointCheck::new("HTTPS", server.name.clone(), Err(e.to_string()));
                    tasks.spawn(async move { (i, check) });
                    continue;
                }
            },
        };
        let url = format!("{base}{}", Protocol::Ews.path());
        let client = client.clone();
        let permits = Arc::clone(&permits);
        let target = format!("{} {url}", server.name);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.ok();
            let result = match client.get(&url).send().await {
                Ok(r) => {
                    let schemes = exch_remediate::challenge_schemes(r.headers());
                    if r.status() == reqwest::StatusCode::UNAUTHORIZED && !schemes.is_empty() {
                        Ok(format!(
                            "answers and asks for credentials ({}); no logon sent",
                            schemes.join(", ")
                        ))
                    } else {
                        Err(format!(
                            "answered {} without asking for credentials; a probe there proves nothing — check the URL (http_base)",
                            r.status()
                        ))
                    }
                }
                Err(e) => Err(format!("cannot reach it: {}", error_chain(&e))),
            };
            (i, EndpointCheck::new("HTTPS", target, result))
        });
    }
    collect_in_order(tasks, targets.len()).await
}
