//! Connections, TLS and error mapping for [`LdapDirectory`](super::LdapDirectory).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ldap3::result::LdapError;
use ldap3::{LdapConnAsync, LdapConnSettings, LdapResult, Mod, Scope, SearchEntry};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use secrecy::{ExposeSecret, SecretString};

use crate::DirectoryError;

/// How to open connections (to the configured server and to other DCs).
#[derive(Clone)]
pub(super) struct ConnConfig {
    pub(super) tls: Option<Arc<ClientConfig>>,
    pub(super) starttls: bool,
    pub(super) timeout: Duration,
    pub(super) bind_name: String,
    pub(super) bind_password: SecretString,
}

impl ConnConfig {
    /// Whether a connection to `url` is encrypted (ldaps://, or ldap:// with StartTLS).
    pub(super) fn is_encrypted(&self, url: &str) -> bool {
        let lower = url.to_ascii_lowercase();
        lower.starts_with("ldaps://") || (lower.starts_with("ldap://") && self.starttls)
    }

    /// Opens an unauthenticated connection to `url` and spawns its driver.
    pub(super) async fn open(&self, url: &str) -> Result<ldap3::Ldap, DirectoryError> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.timeout);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(Arc::clone(tls));
        }
        if self.starttls && url.to_ascii_lowercase().starts_with("ldap://") {
            settings = settings.set_starttls(true);
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| map_error("connect", url, url, e))?;
        let url_owned = url.to_owned();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(url = %url_owned, error = %e, "LDAP connection closed");
            }
        });
        Ok(ldap)
    }

    /// Opens a connection to `url` bound as the service account.
    pub(super) async fn open_bound(&self, url: &str) -> Result<ldap3::Ldap, DirectoryError> {
        let mut ldap = self.open(url).await?;
        let res = ldap
            .with_timeout(self.timeout)
            .simple_bind(&self.bind_name, self.bind_password.expose_secret())
            .await
            .map_err(|e| map_error("bind", url, &self.bind_name, e))?;
        match res.rc {
            0 => Ok(ldap),
            8 => Err(DirectoryError::InsecureTransport {
                operation: format!("bind as {}", self.bind_name),
                url: url.to_owned(),
            }),
            49 => Err(DirectoryError::BindFailed {
                url: url.to_owned(),
                bind: self.bind_name.clone(),
                detail: format!(
                    "{}; check the bind name and password of the service account",
                    crate::adcodes::describe(
                        crate::adcodes::decode_bind_failure(&res.text),
                        &res.text
                    )
                ),
            }),
            _ => Err(result_error("bind", url, &self.bind_name, res)),
        }
    }
}

/// Reads a PEM file of trusted CA certificates into a rustls client configuration.
pub(super) fn tls_config(ca_file: &Path) -> Result<Arc<ClientConfig>, DirectoryError> {
    let what = format!("CA file {}", ca_file.display());
    let pem = std::fs::read(ca_file).map_err(|e| DirectoryError::InvalidInput {
        what: what.clone(),
        reason: format!(
            "cannot read it ({e}); pass the PEM file of the CA that signed the DC's certificate"
        ),
    })?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| DirectoryError::InvalidInput {
            what: what.clone(),
            reason: format!("not a PEM certificate file ({e})"),
        })?;
    if certs.is_empty() {
        return Err(DirectoryError::InvalidInput {
            what,
            reason: "contains no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| DirectoryError::InvalidInput {
            what: what.clone(),
            reason: format!("a certificate in it is not a usable CA certificate ({e})"),
        })?;
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| DirectoryError::InvalidInput {
                what,
                reason: format!("TLS set-up failed: {e}"),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Searches and keeps only entries (referrals and intermediate messages skipped).
/// `Ok(None)` when the base object does not exist (`noSuchObject`).
pub(super) async fn search(
    ldap: &mut ldap3::Ldap,
    timeout: Duration,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
) -> Result<Option<Vec<SearchEntry>>, LdapError> {
    let res = ldap
        .with_timeout(timeout)
        .search(base, scope, filter, attrs.to_vec())
        .await?;
    if res.1.rc == 32 {
        return Ok(None);
    }
    let (entries, _) = res.non_error()?;
    Ok(Some(
        entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .collect(),
    ))
}

/// One modify request; the result code is returned, not turned into an error.
pub(super) async fn modify(
    ldap: &mut ldap3::Ldap,
    timeout: Duration,
    dn: &str,
    mods: Vec<Mod<Vec<u8>>>,
) -> Result<LdapResult, LdapError> {
    ldap.with_timeout(timeout).modify(dn, mods).await
}

/// A `Mod` with one value.
pub(super) fn one(attr: &str, value: Vec<u8>) -> (Vec<u8>, HashSet<Vec<u8>>) {
    (attr.as_bytes().to_vec(), HashSet::from([value]))
}

/// The first value of `attr` (case-insensitive name).
pub(super) fn attr<'a>(entry: &'a SearchEntry, attr: &str) -> Option<&'a str> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// All values of `attr` (case-insensitive name).
pub(super) fn attrs<'a>(entry: &'a SearchEntry, attr: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

/// Maps an ldap3 error of `operation` on `object` at `url` to a [`DirectoryError`].
pub(super) fn map_error(operation: &str, url: &str, object: &str, e: LdapError) -> DirectoryError {
    match e {
        LdapError::LdapResult { result } => result_error(operation, url, object, result),
        LdapError::Timeout { .. } => DirectoryError::Timeout {
            operation: format!("{operation} ({object})"),
            url: url.to_owned(),
            after: Duration::ZERO,
        },
        LdapError::Io { source } => {
            let tls = source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .map(|e| e.to_string());
            match tls {
                Some(detail) => DirectoryError::Tls {
                    url: url.to_owned(),
                    detail: format!(
                        "{detail}; trust the CA that signed the DC's certificate with ca_file(), and use the host name or IP address the certificate names"
                    ),
                    source: Some(Box::new(source)),
                },
                None => DirectoryError::Unreachable {
                    url: url.to_owned(),
                    detail: format!("{operation}: {source}; check the URL, the port and that the DC is running"),
                    source: Some(Box::new(source)),
                },
            }
        }
        LdapError::Rustls { source } => DirectoryError::Tls {
            url: url.to_owned(),
            detail: source.to_string(),
            source: Some(Box::new(source)),
        },
        LdapError::DNSName { source } => DirectoryError::Tls {
            url: url.to_owned(),
            detail: format!(
                "{source}: the host in the URL cannot be checked against a certificate"
            ),
            source: Some(Box::new(source)),
        },
        e @ (LdapError::UrlParsing { .. } | LdapError::UnknownScheme(_)) => {
            DirectoryError::InvalidInput {
                what: format!("LDAP URL {url:?}"),
                reason: format!("{e}; use ldaps://host:636 or ldap://host:389"),
            }
        }
        e @ (LdapError::OpSend { .. }
        | LdapError::ResultRecv { .. }
        | LdapError::IdScrubSend { .. }
        | LdapError::EndOfStream) => DirectoryError::Unreachable {
            url: url.to_owned(),
            detail: format!("{operation}: connection lost ({e})"),
            source: Some(Box::new(e)),
        },
        e => DirectoryError::Protocol {
            url: url.to_owned(),
            operation: format!("{operation} ({object})"),
            detail: e.to_string(),
            source: Some(Box::new(e)),
        },
    }
}

/// Maps a non-success LDAP result code to a [`DirectoryError`].
pub(super) fn result_error(
    operation: &str,
    url: &str,
    object: &str,
    r: LdapResult,
) -> DirectoryError {
    let text = r.text.trim().to_owned();
    let op = format!("{operation} ({object})");
    match r.rc {
        3 => DirectoryError::Timeout {
            operation: op,
            url: url.to_owned(),
            after: Duration::ZERO,
        },
        8 | 13 => DirectoryError::InsecureTransport {
            operation: op,
            url: url.to_owned(),
        },
        16 | 20 => DirectoryError::ConcurrentModification {
            dn: object.to_owned(),
            operation: operation.to_owned(),
        },
        19 => DirectoryError::PolicyViolation {
            operation: op,
            reason: text,
        },
        32 => DirectoryError::NotFound {
            what: object.to_owned(),
        },
        34 => DirectoryError::InvalidInput {
            what: format!("DN {object:?}"),
            reason: format!("the server says it is not a valid DN ({text})"),
        },
        49 => DirectoryError::BindFailed {
            url: url.to_owned(),
            bind: object.to_owned(),
            detail: text,
        },
        50 => DirectoryError::PermissionDenied {
            operation: op,
            detail: format!(
                "{text}; grant the service account the right, or bind as an account that has it"
            ),
        },
        51 | 52 | 80 => DirectoryError::Unreachable {
            url: url.to_owned(),
            detail: format!("{op}: server busy or unavailable (LDAP {}: {text})", r.rc),
            source: None,
        },
        10 => DirectoryError::Protocol {
            url: url.to_owned(),
            operation: op,
            detail: format!(
                "referral to {:?}; point the library at a domain controller of the object's domain",
                r.refs
            ),
            source: None,
        },
        rc => DirectoryError::Protocol {
            url: url.to_owned(),
            operation: op,
            detail: format!("LDAP result {rc}: {text}"),
            source: None,
        },
    }
}
