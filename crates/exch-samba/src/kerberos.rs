//! Kerberos on the test DC: service principals and keytabs for lab Exchange servers.

use std::path::PathBuf;
use std::process::Command;

use crate::{SambaAd, SambaError};

/// A service principal `HTTP/<fqdn>` registered by [`SambaAd::add_http_service`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpService {
    /// `HTTP/ex01.lab.example.test@LAB.EXAMPLE.TEST`.
    pub principal: String,
    /// The account holding the SPN (`CN=EX01,CN=Computers,…`).
    pub account_dn: String,
    /// MIT keytab (format 0x0502) with the account's aes256 (etype 18) and aes128 (17) keys
    /// under the SPN, for an acceptor (sspi `ServerProperties::ticket_decryption_key`, or
    /// `KRB5_KTNAME` for a GSSAPI acceptor).
    pub keytab: PathBuf,
}

impl SambaAd {
    /// Registers `HTTP/<fqdn>` for a lab Exchange server and exports its keytab, with
    /// `scripts/samba-ad.sh spn DIR FQDN`: on the computer account `<FIRST LABEL>$` (created
    /// with a random password when missing, like a domain-joined server's machine account),
    /// limited to AES (`msDS-SupportedEncryptionTypes` 24) so tickets are aes256. Idempotent:
    /// a second call keeps the keys (same kvno) and rewrites the keytab
    /// (`DIR/keytabs/HTTP-<fqdn>.keytab`).
    ///
    /// Blocking (runs `samba-tool` on the DC's own files, ~1 s): needs root on the DC's
    /// machine and a DC started by a script with Kerberos (`AD_KDC` in `ad.env`).
    /// Clients get tickets with `KRB5_CONFIG=<env().krb5_conf>` or from the KDC at `env().kdc`
    /// (`tcp://<kdc>`); the FQDN need not resolve.
    pub fn add_http_service(&self, fqdn: &str) -> Result<HttpService, SambaError> {
        let ok = !fqdn.is_empty()
            && fqdn.contains('.')
            && fqdn
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !ok {
            return Err(SambaError::new(format!(
                "FQDN {fqdn:?} must be letters, digits, '-' and '.', with a domain"
            )));
        }
        let env = &self.env;
        if env.kdc.is_none() {
            return Err(SambaError::new(format!(
                "{} has no AD_KDC: the DC was started without a KDC; restart it with scripts/samba-ad.sh start DIR",
                env.file.display()
            )));
        }
        let dir = env.dir.clone().ok_or_else(|| {
            SambaError::new(format!(
                "{} has no AD_DIR; rewrite it with scripts/samba-ad.sh",
                env.file.display()
            ))
        })?;
        let script = crate::start::workspace_root().join("scripts/samba-ad.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("spn")
            .arg(&dir)
            .arg(fqdn)
            .output()
            .map_err(|e| SambaError::new(format!("cannot run {}: {e}", script.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(SambaError::new(format!(
                "{} spn {} {fqdn} failed ({}): {}",
                script.display(),
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let get = |k: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .map(str::to_owned)
                .ok_or_else(|| SambaError::new(format!("samba-ad.sh spn printed no {k}: {stdout}")))
        };
        Ok(HttpService {
            principal: get("SPN")?,
            account_dn: get("SPN_ACCOUNT_DN")?,
            keytab: PathBuf::from(get("KEYTAB")?),
        })
    }
}
