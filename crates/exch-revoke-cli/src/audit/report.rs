//! What `exch-revoke audit` found: per server and per domain, with every finding as a type
//! (serde for scripts, `Display` for people) and its [`Severity`].

use exch_iis::PoolRunState;
use serde::Serialize;

/// How much a finding matters for a revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; a revoke works as usual.
    Note,
    /// Would make a revoke fail, or leave tokens valid for longer than it should: the audit
    /// exits non-zero.
    Problem,
}

/// One thing the audit found about a server, a domain controller or the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// WinRM could not be reached (connection refused, DNS, reset, TLS): a revoke cannot
    /// flush this server.
    #[serde(rename = "winrm_unreachable")]
    WinRmUnreachable {
        /// What the client saw.
        detail: String,
    },
    /// WinRM answered but refused the configured authentication.
    #[serde(rename = "winrm_auth_failed")]
    WinRmAuthFailed {
        /// What the server said.
        detail: String,
    },
    /// The server did not answer in time.
    TimedOut {
        /// The limit, in seconds.
        after_secs: u64,
    },
    /// WinRM worked but the read-only command failed.
    CommandFailed {
        /// What the server said.
        detail: String,
    },
    /// `UserTokenTTL` = 0: cached logon tokens never expire; only a recycle removes them.
    TokensNeverExpire,
    /// `UserTokenTTL` above IIS's default (900 s): an unflushed token lives that long.
    LongTokenTtl {
        /// The configured value, in seconds.
        secs: u64,
    },
    /// Pools the default flush recycles that do not exist on the server.
    MissingPools {
        /// Their names.
        pools: Vec<String>,
    },
    /// A pool the default flush recycles is not started.
    PoolNotStarted {
        /// The pool.
        pool: String,
        /// Its state.
        state: PoolRunState,
    },
    /// The pool layout was assumed (version or roles unknown).
    AssumedLayout {
        /// Why.
        why: String,
    },
    /// An Edge Transport server: no domain logons, no token cache; a revoke skips it and so
    /// does the audit (not contacted).
    EdgeNotFlushed,
    /// The server holds no token cache a revoke would flush (its roles serve no client).
    NothingToFlush,
    /// A domain controller did not answer a read.
    DcNotAnswering {
        /// What the client saw.
        detail: String,
    },
    /// The domain controllers could not be listed.
    DcDiscoveryFailed {
        /// What the directory said.
        detail: String,
    },
    /// No domain controller was found.
    NoDomainControllers,
    /// No object could be read to check the domain controllers with.
    NoKnownObject {
        /// What the directory said.
        detail: String,
    },
    /// No Exchange server was found (or none is selected).
    NoServers,
    /// A server named by `--include` (or the profile's `include`) is not in the directory.
    SelectedServerUnknown {
        /// The name as given.
        name: String,
    },
    /// Servers of the directory left out by `--include`, `--exclude` or `--site`.
    NotSelected {
        /// How many.
        count: usize,
    },
}

impl Finding {
    /// How much it matters.
    pub fn severity(&self) -> Severity {
        match self {
            Finding::WinRmUnreachable { .. }
            | Finding::WinRmAuthFailed { .. }
            | Finding::TimedOut { .. }
            | Finding::CommandFailed { .. }
            | Finding::TokensNeverExpire
            | Finding::MissingPools { .. }
            | Finding::DcNotAnswering { .. }
            | Finding::DcDiscoveryFailed { .. }
            | Finding::NoDomainControllers
            | Finding::NoKnownObject { .. }
            | Finding::NoServers
            | Finding::SelectedServerUnknown { .. } => Severity::Problem,
            Finding::LongTokenTtl { .. }
            | Finding::PoolNotStarted { .. }
            | Finding::AssumedLayout { .. }
            | Finding::EdgeNotFlushed
            | Finding::NothingToFlush
            | Finding::NotSelected { .. } => Severity::Note,
        }
    }

    /// Whether it would make a revoke fail or be slow.
    pub fn is_problem(&self) -> bool {
        self.severity() == Severity::Problem
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::WinRmUnreachable { detail } => write!(
                f,
                "{detail}; a revoke cannot flush this server (start WinRM, open the port, or check --winrm-endpoint / the profile)"
            ),
            Finding::WinRmAuthFailed { detail } => {
                write!(f, "WinRM refused the configured authentication: {detail}")
            }
            Finding::TimedOut { after_secs } => write!(
                f,
                "no answer within {after_secs} s; a revoke would wait that long for this server"
            ),
            Finding::CommandFailed { detail } => {
                write!(f, "WinRM works but the read-only command failed: {detail}")
            }
            Finding::TokensNeverExpire => f.write_str(
                "UserTokenTTL is 0: tokens never expire — a password stays usable from the cache until the pools are recycled; set it (e.g. 900) under HKLM\\SYSTEM\\CurrentControlSet\\Services\\InetInfo\\Parameters",
            ),
            Finding::LongTokenTtl { secs } => write!(
                f,
                "UserTokenTTL is {secs} s (IIS default 900 s): an unflushed token stays valid that long"
            ),
            Finding::MissingPools { pools } => write!(
                f,
                "pools the default flush recycles are missing: {}; a revoke reports them as not flushed (check IIS, or the server's version and roles)",
                pools.join(", ")
            ),
            Finding::PoolNotStarted { pool, state } => {
                write!(f, "{pool} is {state:?}, not Started")
            }
            Finding::AssumedLayout { why } => write!(f, "pool layout assumed: {why}"),
            Finding::EdgeNotFlushed => {
                f.write_str("Edge Transport: no domain logons, no token cache; not contacted")
            }
            Finding::NothingToFlush => {
                f.write_str("its roles serve no client logons: nothing for a revoke to flush")
            }
            Finding::DcNotAnswering { detail } => write!(
                f,
                "does not answer: {detail}; a revoke waits for every DC to show the change and would time out"
            ),
            Finding::DcDiscoveryFailed { detail } => {
                write!(f, "cannot list the domain controllers: {detail}")
            }
            Finding::NoDomainControllers => f.write_str(
                "no domain controller found under CN=Sites of the configuration partition",
            ),
            Finding::NoKnownObject { detail } => write!(
                f,
                "cannot read a known object to check the domain controllers with: {detail}"
            ),
            Finding::NoServers => f.write_str(
                "no Exchange server found (or none selected): a revoke would flush nothing",
            ),
            Finding::SelectedServerUnknown { name } => write!(
                f,
                "{name} is selected (--include / include) but the directory has no such Exchange server; correct the name"
            ),
            Finding::NotSelected { count } => write!(
                f,
                "{count} other server{} of the directory not selected (--include / --exclude / --site) and not audited",
                if *count == 1 { "" } else { "s" }
            ),
        }
    }
}

/// A finding with its severity, as it appears in the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rated {
    /// `note` or `problem`.
    pub severity: Severity,
    /// The finding (its `kind` and fields).
    #[serde(flatten)]
    pub finding: Finding,
    /// The finding in words.
    pub message: String,
}

impl From<Finding> for Rated {
    fn from(finding: Finding) -> Rated {
        Rated {
            severity: finding.severity(),
            message: finding.to_string(),
            finding,
        }
    }
}

/// The WinRM side of one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WinRmAudit {
    /// How the tool authenticates to it and protects the traffic
    /// (`WinRmFlusher::method_for`, e.g. "NTLM over HTTP, message encryption").
    pub method: String,
    /// Whether a connection was made (`None`: not contacted).
    pub reachable: Option<bool>,
    /// Whether that method was accepted (`None`: not contacted or not reached).
    pub authenticated: Option<bool>,
}

/// `UserTokenTTL` as read from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenTtlAudit {
    /// The registry value in seconds; `None` when absent (IIS then uses 900 s).
    pub configured_secs: Option<u64>,
    /// The TTL in effect, in seconds (0 = never expires).
    pub effective_secs: u64,
    /// Whether tokens never expire (`UserTokenTTL` = 0).
    pub never_expires: bool,
}

/// One application pool as the audit sees it: present on the server, in the catalog, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolAudit {
    /// The pool (the server's spelling when present).
    pub name: String,
    /// Whether the server has it.
    pub present: bool,
    /// Its state on the server (`None` when absent).
    pub state: Option<PoolRunState>,
    /// Its serving worker processes.
    pub workers: usize,
    /// Whether the catalog lists it as a token-caching pool for this server.
    pub in_catalog: bool,
    /// Whether the default flush recycles it.
    pub default_flush: bool,
    /// Whether a revoke with the configured method recycles it.
    pub recycled: bool,
    /// The protocols it serves (from the catalog).
    pub protocols: Vec<String>,
    /// Overlapped recycle (`false`: stop-then-start).
    pub overlapping: bool,
    /// Requests still running after this many seconds are cut.
    pub shutdown_time_limit_secs: u64,
}

/// One Exchange server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerAudit {
    /// Name (`cn`).
    pub name: String,
    /// FQDN.
    pub fqdn: String,
    /// Product (e.g. "Exchange 2019"), when the version is known.
    pub product: Option<String>,
    /// Version (e.g. "15.2.1258"), when known.
    pub version: Option<String>,
    /// Roles, e.g. ["Mailbox", "ClientAccess"].
    pub roles: Vec<String>,
    /// AD site.
    pub site: Option<String>,
    /// WinRM.
    pub winrm: WinRmAudit,
    /// `UserTokenTTL` (`None`: not read).
    pub token_ttl: Option<TokenTtlAudit>,
    /// Token-caching pools of the catalog and what the server has of them (`None`: not read).
    pub pools: Option<Vec<PoolAudit>>,
    /// What a revoke would do on this server, e.g. "recycle the catalog's pools".
    pub flush_method: String,
    /// The pools a revoke would recycle (empty for iisreset or when nothing is flushed).
    pub would_recycle: Vec<String>,
    /// What a revoke's flush costs the server's users, in one line.
    pub impact: String,
    /// What was found.
    pub findings: Vec<Rated>,
    /// Milliseconds the server's checks took.
    pub elapsed_ms: u64,
}

impl ServerAudit {
    /// Whether anything found would make a revoke fail or be slow.
    pub fn has_problem(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Problem)
    }
}

/// One domain controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DcAudit {
    /// Name (`cn` of its server object).
    pub name: String,
    /// DNS host name.
    pub dns_host_name: String,
    /// AD site.
    pub site: Option<String>,
    /// Whether it answered a read of the known object (`None`: not asked).
    pub answers: Option<bool>,
    /// Milliseconds the read took.
    pub elapsed_ms: u64,
    /// What was found.
    pub findings: Vec<Rated>,
}

/// The domain the tool is connected to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainAudit {
    /// The domain's naming context (e.g. `DC=corp,DC=example`), when known.
    pub name: Option<String>,
    /// The object read on every DC to see that it answers (the DN).
    pub known_object: Option<String>,
    /// Its domain controllers.
    pub domain_controllers: Vec<DcAudit>,
    /// What was found about the domain as a whole.
    pub findings: Vec<Rated>,
}

impl DomainAudit {
    /// Whether anything found would make a revoke fail or be slow.
    pub fn has_problem(&self) -> bool {
        self.findings
            .iter()
            .chain(self.domain_controllers.iter().flat_map(|d| &d.findings))
            .any(|f| f.severity == Severity::Problem)
    }
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    /// When it ran (UTC, RFC 3339).
    pub generated_at: String,
    /// Per domain (the one the tool is connected to).
    pub domains: Vec<DomainAudit>,
    /// Per Exchange server, in discovery order.
    pub servers: Vec<ServerAudit>,
    /// Findings not tied to one server or DC (e.g. no server found).
    pub findings: Vec<Rated>,
    /// Problems found in total (findings of severity `problem`).
    pub problems: usize,
    /// `true` when nothing would make a revoke fail or be slow.
    pub ok: bool,
}

impl AuditReport {
    /// Puts the parts together and counts the problems.
    pub fn new(domains: Vec<DomainAudit>, servers: Vec<ServerAudit>, findings: Vec<Rated>) -> Self {
        let problems = findings
            .iter()
            .chain(servers.iter().flat_map(|s| &s.findings))
            .chain(domains.iter().flat_map(|d| {
                d.findings
                    .iter()
                    .chain(d.domain_controllers.iter().flat_map(|c| &c.findings))
            }))
            .filter(|f| f.severity == Severity::Problem)
            .count();
        AuditReport {
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            domains,
            servers,
            findings,
            problems,
            ok: problems == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scripts match on `kind` and `severity`: their spelling is part of the interface.
    #[test]
    fn findings_serialize_with_stable_kinds_and_severities() {
        let cases = [
            (
                Finding::WinRmUnreachable { detail: "x".into() },
                "winrm_unreachable",
                "problem",
            ),
            (
                Finding::WinRmAuthFailed { detail: "x".into() },
                "winrm_auth_failed",
                "problem",
            ),
            (Finding::TokensNeverExpire, "tokens_never_expire", "problem"),
            (
                Finding::MissingPools {
                    pools: vec!["P".into()],
                },
                "missing_pools",
                "problem",
            ),
            (
                Finding::DcNotAnswering { detail: "x".into() },
                "dc_not_answering",
                "problem",
            ),
            (
                Finding::LongTokenTtl { secs: 3600 },
                "long_token_ttl",
                "note",
            ),
            (Finding::EdgeNotFlushed, "edge_not_flushed", "note"),
        ];
        for (finding, kind, severity) in cases {
            let v = serde_json::to_value(Rated::from(finding)).expect("serializes");
            assert_eq!(v["kind"], kind, "{v}");
            assert_eq!(v["severity"], severity, "{v}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        }
    }

    #[test]
    fn the_report_counts_problems_everywhere_and_only_problems() {
        let dc = DcAudit {
            name: "DC2".into(),
            dns_host_name: "dc2.corp.example".into(),
            site: None,
            answers: Some(false),
            elapsed_ms: 0,
            findings: vec![Rated::from(Finding::DcNotAnswering {
                detail: "refused".into(),
            })],
        };
        let domain = DomainAudit {
            name: None,
            known_object: None,
            domain_controllers: vec![dc],
            findings: Vec::new(),
        };
        let notes = vec![Rated::from(Finding::NotSelected { count: 2 })];
        let report = AuditReport::new(vec![domain], Vec::new(), notes);
        assert_eq!(report.problems, 1);
        assert!(!report.ok);
        let clean = AuditReport::new(
            Vec::new(),
            Vec::new(),
            vec![Rated::from(Finding::EdgeNotFlushed)],
        );
        assert!(clean.ok);
    }
}
