//! Profiles: saved connection settings in a TOML file, one `[profile.NAME]` section each.
//!
//! ```toml
//! default_profile = "corp"          # used when --profile is not given
//!
//! [profile.corp]
//! ldap_url = "ldaps://dc1.corp.example:636"
//! ca_file = "corp-ca.pem"           # relative paths are relative to this file
//! bind_user = "svc-revoke@corp.example"
//! bind_password_env = "CORP_BIND_PASSWORD"       # or bind_password_command = "vault read …"
//! winrm_user = 'CORP\svc-revoke'
//! winrm_auth = "kerberos"           # ntlm (default), kerberos, basic (HTTPS only)
//! winrm_kdc = "dc1.corp.example"
//! winrm_https = true
//! winrm_ca_file = "corp-ca.pem"
//! strategy = "rolling"              # parallel (default) or rolling
//! batch = 2
//! deadline_secs = 900
//! ```
//!
//! Secrets are never in the file: it names environment variables or commands that hold them
//! (a key such as `bind_password` is refused as unknown). Where the file is: `--config FILE`,
//! else `$EXCH_REVOKE_CONFIG`, else the platform's configuration directory
//! (`~/.config/exch-revoke/config.toml` on Linux, `~/Library/Application Support/exch-revoke/
//! config.toml` on macOS, `%APPDATA%\exch-revoke\config\config.toml` on Windows).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::CliError;

/// The environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "EXCH_REVOKE_CONFIG";

/// WinRM authentication, as written in a profile or on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WinRmAuthArg {
    /// NTLM under Negotiate; every body sealed over HTTP (Windows' default).
    Ntlm,
    /// Kerberos (needs `winrm_kdc` and the user as user@REALM); sealed over HTTP.
    Kerberos,
    /// Basic: HTTPS only, unless `allow_unencrypted_basic` (labs).
    Basic,
}

/// How servers are flushed one after the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyArg {
    /// Up to `max_in_flight` servers at once.
    Parallel,
    /// `batch` servers at a time, `pause_ms` between batches.
    Rolling,
}

/// How a server's token caches are flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodArg {
    /// Recycle the token-caching app pools (overlapped; least disruption). The default.
    Recycle,
    /// `iisreset /noforce`: every site stops for a moment; everyone reconnects.
    Iisreset,
}

/// One `[profile.NAME]` section. Every key is optional; flags override it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // the keys are documented in the README's profile reference
pub struct Profile {
    pub ldap_url: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<PathBuf>>,
    pub starttls: Option<bool>,
    pub allow_plaintext_bind: Option<bool>,
    pub bind_user: Option<String>,
    pub bind_password_env: Option<String>,
    pub bind_password_command: Option<String>,
    pub ldap_timeout_secs: Option<u64>,
    pub domain_controllers: Option<BTreeMap<String, String>>,

    pub winrm_user: Option<String>,
    pub winrm_password_env: Option<String>,
    pub winrm_password_command: Option<String>,
    pub winrm_auth: Option<WinRmAuthArg>,
    pub winrm_kdc: Option<String>,
    pub winrm_https: Option<bool>,
    pub winrm_port: Option<u16>,
    pub winrm_ca_file: Option<Spanned<PathBuf>>,
    pub winrm_insecure: Option<bool>,
    pub allow_unencrypted_basic: Option<bool>,
    pub winrm_endpoints: Option<BTreeMap<String, String>>,

    pub http_base: Option<BTreeMap<String, String>>,
    pub probe_ca_file: Option<Spanned<PathBuf>>,

    pub strategy: Option<StrategyArg>,
    pub max_in_flight: Option<usize>,
    pub batch: Option<usize>,
    pub pause_ms: Option<u64>,
    pub converge_timeout_secs: Option<u64>,
    pub deadline_secs: Option<u64>,
    pub accounts_in_flight: Option<usize>,
    pub method: Option<MethodArg>,
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    pub sites: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    default_profile: Option<Spanned<String>>,
    #[serde(default)]
    profile: BTreeMap<String, Profile>,
}

/// A profile read from its file, with what is needed to point at its lines.
#[derive(Debug, Clone)]
pub struct LoadedProfile {
    /// The section's name.
    pub name: String,
    /// The file.
    pub file: PathBuf,
    /// The section.
    pub profile: Profile,
    /// The file's text (for line numbers of spans).
    text: String,
}

impl LoadedProfile {
    /// The 1-based line of a byte offset in the file.
    pub fn line_of(&self, offset: usize) -> usize {
        line_of(&self.text, offset)
    }

    /// The 1-based line of the section header `[profile.NAME]`.
    pub fn header_line(&self) -> usize {
        header_line(&self.text, &self.name).unwrap_or(1)
    }

    /// A relative path in the profile, made relative to the file's directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            crate::fsutil::parent_dir(&self.file).join(p)
        }
    }

    /// A bad value at `span` of this profile.
    pub fn error_at(
        &self,
        span: std::ops::Range<usize>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> CliError {
        CliError::at_line(
            &self.file,
            self.line_of(span.start),
            format!("[profile.{}] {}", self.name, problem.into()),
            fix,
        )
    }
}

/// Where the configuration file is: `--config`, else `$EXCH_REVOKE_CONFIG`, else the
/// platform's configuration directory. `None` when no home directory is known.
pub fn config_path(flag: Option<&Path>) -> Option<(PathBuf, &'static str)> {
    if let Some(p) = flag {
        return Some((p.to_path_buf(), "--config"));
    }
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return Some((PathBuf::from(p), CONFIG_ENV));
    }
    directories::ProjectDirs::from("", "", "exch-revoke")
        .map(|d| (d.config_dir().join("config.toml"), "the default location"))
}

/// Reads the profile to use: `--profile NAME`, else the file's `default_profile`. `Ok(None)`
/// when no profile is asked for and no file exists at the default location (everything then
/// comes from flags).
pub fn load(
    config_flag: Option<&Path>,
    name: Option<&str>,
) -> Result<Option<LoadedProfile>, CliError> {
    let Some((file, source)) = config_path(config_flag) else {
        return match name {
            Some(n) => Err(CliError::bad_input(
                "--profile",
                format!("no configuration file to read profile {n:?} from (no home directory)"),
                format!("pass --config FILE or set {CONFIG_ENV}"),
            )),
            None => Ok(None),
        };
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && name.is_none() && source == "the default location" => {
            return Ok(None)
        }
        Err(e) => {
            return Err(CliError::bad_input(
                file.display().to_string(),
                format!("cannot read the configuration file (named by {source}): {e}"),
                "create it (see `exch-revoke --help` and the README's \"For admins\"), or pass --config FILE",
            ))
        }
    };
    parse(&file, text, name)
}

/// Parses a configuration file's `text` and picks profile `name` (or the default). `Ok(None)`:
/// no name given and the file names no default (flags only).
fn parse(file: &Path, text: String, name: Option<&str>) -> Result<Option<LoadedProfile>, CliError> {
    let parsed: ProfileFile = toml::from_str(&text).map_err(|e| toml_error(file, &text, &e))?;
    let (name, by_default) = match (name, &parsed.default_profile) {
        (Some(n), _) => (n.to_owned(), None),
        (None, Some(d)) => (d.get_ref().clone(), Some(d.span())),
        (None, None) => return Ok(None),
    };
    let Some(profile) = parsed.profile.get(&name).cloned() else {
        let known: Vec<String> = parsed
            .profile
            .keys()
            .map(|k| format!("{k} (line {})", header_line(&text, k).unwrap_or(1)))
            .collect();
        let (line, what) = match by_default {
            Some(span) => (line_of(&text, span.start), "default_profile names"),
            None => (text.lines().count().max(1), "--profile names"),
        };
        return Err(CliError::at_line(
            file,
            line,
            format!("{what} profile {name:?} but the file has no [profile.{name}] section"),
            if known.is_empty() {
                format!("add a [profile.{name}] section (see the README's \"For admins\")")
            } else {
                format!(
                    "use one of: {}; or add a [profile.{name}] section",
                    known.join(", ")
                )
            },
        ));
    };
    Ok(Some(LoadedProfile {
        name,
        file: file.to_path_buf(),
        profile,
        text,
    }))
}

fn toml_error(file: &Path, text: &str, e: &toml::de::Error) -> CliError {
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
    let message = e.message().trim().to_owned();
    let fix = if message.contains("unknown field") {
        if message.contains("password`") {
            "secrets never go in the file: name an environment variable (`…_password_env = \"VAR\"`) or a command (`…_password_command = \"…\"`)".to_owned()
        } else {
            "remove the key or correct its spelling (the keys are listed in the README's profile reference)".to_owned()
        }
    } else {
        "correct the value (see the README's profile reference)".to_owned()
    };
    CliError::at_line(file, line, message, fix)
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn header_line(text: &str, name: &str) -> Option<usize> {
    let quoted = format!("[profile.\"{name}\"]");
    let plain = format!("[profile.{name}]");
    text.lines()
        .position(|l| {
            let l: String = l
                .split('#')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            l == plain || l == quoted
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str, name: Option<&str>) -> Result<Option<LoadedProfile>, CliError> {
        parse(Path::new("/etc/x/config.toml"), text.to_owned(), name)
    }

    #[test]
    fn unknown_key_names_file_line_and_fix() {
        let e = parse_str(
            "[profile.corp]\nldap_url = \"ldaps://dc\"\nldap_ulr = \"x\"\n",
            Some("corp"),
        )
        .unwrap_err();
        assert_eq!(e.input(), Some("/etc/x/config.toml:3"), "{e}");
        assert!(e.problem().contains("ldap_ulr"), "{e}");
        assert!(e.fix().unwrap().contains("remove the key"), "{e}");
    }

    #[test]
    fn a_password_in_the_file_is_refused() {
        let e = parse_str(
            "[profile.corp]\nbind_password = \"hunter2\"\n",
            Some("corp"),
        )
        .unwrap_err();
        assert_eq!(e.input(), Some("/etc/x/config.toml:2"));
        assert!(e.fix().unwrap().contains("secrets never go in the file"));
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn missing_section_lists_the_others() {
        let e = parse_str(
            "# c\n[profile.corp]\nbatch = 1\n\n[profile.lab]\n",
            Some("prod"),
        )
        .unwrap_err();
        assert!(e.problem().contains("no [profile.prod] section"), "{e}");
        assert!(
            e.fix().unwrap().contains("corp (line 2), lab (line 5)"),
            "{e}"
        );
        let e = parse_str("default_profile = \"x\"\n[profile.corp]\n", None).unwrap_err();
        assert_eq!(e.input(), Some("/etc/x/config.toml:1"));
    }

    #[test]
    fn spans_give_lines_and_paths_are_relative_to_the_file() {
        let p = parse_str(
            "\n[profile.corp]\nldap_url = \"ldaps://dc\"\nca_file = \"ca.pem\"\n",
            None,
        );
        assert!(p.unwrap().is_none(), "no default, no name: flags only");
        let p = parse_str(
            "\n[profile.corp]\nldap_url = \"ldaps://dc\"\nca_file = \"ca.pem\"\n",
            Some("corp"),
        )
        .unwrap()
        .unwrap();
        let ca = p.profile.ca_file.clone().unwrap();
        assert_eq!(p.line_of(ca.span().start), 4);
        assert_eq!(p.header_line(), 2);
        assert_eq!(p.path(ca.get_ref()), PathBuf::from("/etc/x/ca.pem"));
    }

    #[test]
    fn bad_enum_value_names_its_line() {
        let e = parse_str("[profile.corp]\n\nwinrm_auth = \"digest\"\n", Some("corp")).unwrap_err();
        assert_eq!(e.input(), Some("/etc/x/config.toml:3"), "{e}");
    }
}
