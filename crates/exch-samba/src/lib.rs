#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod admin;
#[cfg(feature = "directory")]
mod directory;
mod fleet;
mod kerberos;
mod pair;
mod start;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::SecretString;

pub use admin::{AdUser, BindAnswer};
pub use fleet::Registration;
pub use kerberos::HttpService;
pub use pair::{DcId, PairDc, PairGuard, SambaPair, AD_PAIR_ENV_VAR, SHARED_NOTIFY_INTERVAL};

/// Environment variable naming an `ad.env` file of a running DC.
pub const AD_ENV_VAR: &str = "EXCH_REVOKE_AD_ENV";
/// Environment variable that turns "Samba not available" from a skip into a failure.
pub const REQUIRE_VAR: &str = "EXCH_REVOKE_REQUIRE_SAMBA";
/// Environment variable (`=1`) that forbids starting a DC: without [`AD_ENV_VAR`] the Samba
/// suites then skip (or fail under [`REQUIRE_VAR`]) instead of starting `target/samba-ad-auto`.
pub const NO_START_VAR: &str = "EXCH_REVOKE_NO_SAMBA_START";
/// Environment variable naming the file every skipped suite is recorded in (one
/// `SKIPPED: …` line each, see [`record_skip`]); default `target/test-skips.txt` of this
/// workspace. `scripts/test.sh` empties it first, prints it at the end and fails when it is
/// not empty.
pub const SKIP_FILE_VAR: &str = "EXCH_REVOKE_SKIP_FILE";

/// The file [`record_skip`] appends to: [`SKIP_FILE_VAR`], or `target/test-skips.txt` of the
/// workspace this crate was built in.
pub fn skip_file() -> std::path::PathBuf {
    match std::env::var_os(SKIP_FILE_VAR) {
        Some(p) if !p.is_empty() => p.into(),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-skips.txt"),
    }
}

/// Records that a test suite skipped itself: prints `SKIPPED: <what>` to stderr (which
/// `cargo test` captures and hides when the test passes) **and** appends the line, with the
/// test binary's name, to [`skip_file`], so that a skip stays visible after the run
/// (`scripts/test.sh` fails on it). For test suites and benches.
pub fn record_skip(what: &str) {
    use std::io::Write as _;
    let line = format!("SKIPPED: {what}");
    eprintln!("{line}");
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let path = skip_file();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line} [{binary}]\n").as_bytes()));
    if let Err(e) = written {
        eprintln!("(could not record the skip in {}: {e})", path.display());
    }
}

/// A harness failure: what failed and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Samba AD harness: {0}")]
pub struct SambaError(pub String);

impl SambaError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        SambaError(msg.into())
    }
}

/// The values of an `ad.env` file (see `scripts/samba-ad.sh`).
#[derive(Clone)]
pub struct AdEnv {
    /// `ldap://127.0.0.1:389`.
    pub url_ldap: String,
    /// `ldaps://127.0.0.1:636`.
    pub url_ldaps: String,
    /// PEM file of the CA that signed the DC's certificate.
    pub ca_file: PathBuf,
    /// `DC=lab,DC=example,DC=test`.
    pub base_dn: String,
    /// `CN=Configuration,DC=lab,DC=example,DC=test`.
    pub config_dn: String,
    /// `Administrator@lab.example.test`.
    pub admin_bind: String,
    /// `CN=Administrator,CN=Users,…`.
    pub admin_dn: String,
    /// The administrator's password.
    pub admin_password: SecretString,
    /// Kerberos realm / DNS domain in upper case, `LAB.EXAMPLE.TEST`.
    pub realm: String,
    /// NetBIOS domain name, `LAB`.
    pub domain: String,
    /// The `ad.env` file these values came from.
    pub file: PathBuf,
    /// `AD_DIR`: the DC's state directory (`etc/smb.conf`, `keytabs/`); `None` in old files.
    pub dir: Option<PathBuf>,
    /// `AD_KRB5_CONF`: a `krb5.conf` naming the KDC by IP (for `KRB5_CONFIG=… kinit`);
    /// `None` when the DC was started without a KDC (older script).
    pub krb5_conf: Option<PathBuf>,
    /// `AD_KDC`: `127.0.0.1:88` (TCP and UDP); `None` without a KDC.
    pub kdc: Option<String>,
}

impl fmt::Debug for AdEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdEnv")
            .field("url_ldap", &self.url_ldap)
            .field("url_ldaps", &self.url_ldaps)
            .field("ca_file", &self.ca_file)
            .field("base_dn", &self.base_dn)
            .field("admin_bind", &self.admin_bind)
            .field("admin_password", &"[REDACTED]")
            .field("file", &self.file)
            .field("kdc", &self.kdc)
            .finish_non_exhaustive()
    }
}

impl AdEnv {
    /// Reads an `ad.env` file (`KEY=value` lines).
    pub fn from_file(path: &Path) -> Result<AdEnv, SambaError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SambaError::new(format!(
                "cannot read {} ({e}); start a DC with scripts/samba-ad.sh start DIR and point {AD_ENV_VAR} at DIR/ad.env",
                path.display()
            ))
        })?;
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |k: &str| {
            vars.get(k).map(|v| v.to_string()).ok_or_else(|| {
                SambaError::new(format!(
                    "{} has no {k}; rewrite it with scripts/samba-ad.sh",
                    path.display()
                ))
            })
        };
        let base_dn = get("AD_BASE_DN")?;
        // Older ad.env files lack AD_REALM / AD_DOMAIN: derive them from the base DN.
        let realm = get("AD_REALM").unwrap_or_else(|_| {
            base_dn
                .split(',')
                .filter_map(|p| {
                    p.trim()
                        .strip_prefix("DC=")
                        .or_else(|| p.trim().strip_prefix("dc="))
                })
                .collect::<Vec<_>>()
                .join(".")
                .to_uppercase()
        });
        let domain = get("AD_DOMAIN")
            .unwrap_or_else(|_| realm.split('.').next().unwrap_or_default().to_owned());
        Ok(AdEnv {
            url_ldap: get("AD_URL_LDAP")?,
            url_ldaps: get("AD_URL_LDAPS")?,
            ca_file: PathBuf::from(get("AD_CA_FILE")?),
            config_dn: get("AD_CONFIG_DN")?,
            admin_bind: get("AD_ADMIN_BIND")?,
            admin_dn: get("AD_ADMIN_DN")?,
            admin_password: SecretString::from(get("AD_ADMIN_PASSWORD")?),
            base_dn,
            realm,
            domain,
            file: path.to_owned(),
            dir: vars.get("AD_DIR").map(PathBuf::from),
            krb5_conf: vars.get("AD_KRB5_CONF").map(PathBuf::from),
            kdc: vars.get("AD_KDC").map(|v| v.to_string()),
        })
    }

    /// The DNS domain in lower case (`lab.example.test`): the UPN suffix of created users.
    pub fn dns_domain(&self) -> String {
        self.realm.to_lowercase()
    }
}

/// A running Samba AD DC shared by the tests of one run.
#[derive(Debug)]
pub struct SambaAd {
    env: AdEnv,
    /// Where the DC came from, for messages.
    origin: String,
}

static SHARED: OnceLock<Result<Result<SambaAd, String>, SambaError>> = OnceLock::new();

impl SambaAd {
    /// The shared DC: from `EXCH_REVOKE_AD_ENV`, or started once by this harness (root with
    /// `samba` installed). `Ok(None)` when neither is possible — [`Self::unavailable_reason`]
    /// says why. An `EXCH_REVOKE_AD_ENV` that cannot be read, or a start that fails, is an
    /// error.
    pub fn shared() -> Result<Option<&'static SambaAd>, SambaError> {
        match SHARED.get_or_init(start::locate) {
            Ok(Ok(ad)) => Ok(Some(ad)),
            Ok(Err(_)) => Ok(None),
            Err(e) => Err(e.clone()),
        }
    }

    /// Why [`Self::shared`] found no DC, if it did not.
    pub fn unavailable_reason() -> Option<String> {
        match SHARED.get_or_init(start::locate) {
            Ok(Err(reason)) => Some(reason.clone()),
            Err(e) => Some(e.to_string()),
            Ok(Ok(_)) => None,
        }
    }

    /// For test suites: the shared DC, or `None` after recording the skip ([`record_skip`]:
    /// `SKIPPED: <suite>: Samba AD not available (<reason>); run scripts/test.sh to run it`
    /// on stderr and in [`skip_file`]).
    ///
    /// # Panics
    /// When `EXCH_REVOKE_REQUIRE_SAMBA=1` and no DC is available, and whenever
    /// [`Self::shared`] fails (a configured DC that cannot be used is never a skip).
    pub fn require(suite: &str) -> Option<&'static SambaAd> {
        match Self::shared() {
            Ok(Some(ad)) => Some(ad),
            Ok(None) => {
                let reason = Self::unavailable_reason().unwrap_or_default();
                if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                    panic!("{suite}: Samba AD is required ({REQUIRE_VAR}=1) but not available: {reason}");
                }
                record_skip(&format!(
                    "{suite}: Samba AD not available ({reason}); run scripts/test.sh to run it"
                ));
                None
            }
            Err(e) => panic!("{suite}: {e}"),
        }
    }

    /// A DC described by an `ad.env` file (no sharing, no start).
    pub fn from_env_file(path: &Path) -> Result<SambaAd, SambaError> {
        Ok(SambaAd {
            env: AdEnv::from_file(path)?,
            origin: format!("{}", path.display()),
        })
    }

    /// Its connection values.
    pub fn env(&self) -> &AdEnv {
        &self.env
    }

    /// Where the DC came from (`ad.env` path).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A name unique across processes and calls, usable as `sAMAccountName` (at most 20
    /// characters): the first 8 characters of `prefix` (letters, digits, `-`, `_`), then a
    /// per-process tag and a counter.
    pub fn unique_name(prefix: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        static TAG: OnceLock<String> = OnceLock::new();
        let tag = TAG.get_or_init(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let mix = (u128::from(std::process::id()) << 32) ^ nanos;
            let mut x = (mix % (36u128.pow(6))) as u64;
            let mut s = String::new();
            for _ in 0..6 {
                let d = (x % 36) as u32;
                s.push(char::from_digit(d, 36).unwrap_or('0'));
                x /= 36;
            }
            s
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p: String = prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(8)
            .collect();
        let mut name = format!("{p}{tag}{n}");
        name.truncate(20);
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_sam_rules() {
        let a = SambaAd::unique_name("averyveryverylongprefix");
        let b = SambaAd::unique_name("averyveryverylongprefix");
        assert_ne!(a, b);
        assert!(a.len() <= 20, "{a}");
        let c = SambaAd::unique_name("x*(y)");
        assert!(c.starts_with("xy"), "{c}");
    }

    #[test]
    fn env_file_parsing_and_redaction() {
        let dir = std::env::temp_dir().join(format!("exch-samba-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ad.env");
        std::fs::write(
            &f,
            "AD_URL_LDAP=ldap://127.0.0.1:389\nAD_URL_LDAPS=ldaps://127.0.0.1:636\nAD_CA_FILE=/x/ca.pem\nAD_BASE_DN=DC=lab,DC=example,DC=test\nAD_CONFIG_DN=CN=Configuration,DC=lab,DC=example,DC=test\nAD_ADMIN_BIND=Administrator@lab.example.test\nAD_ADMIN_DN=CN=Administrator,CN=Users,DC=lab,DC=example,DC=test\nAD_ADMIN_PASSWORD=Sekrit-Pa55\n",
        )
        .unwrap();
        let env = AdEnv::from_file(&f).unwrap();
        assert_eq!(env.kdc, None);
        assert_eq!(env.realm, "LAB.EXAMPLE.TEST");
        assert_eq!(env.domain, "LAB");
        assert_eq!(env.dns_domain(), "lab.example.test");
        assert!(!format!("{env:?}").contains("Sekrit"));
        let e = AdEnv::from_file(&dir.join("missing.env")).unwrap_err();
        assert!(e.to_string().contains("missing.env"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
