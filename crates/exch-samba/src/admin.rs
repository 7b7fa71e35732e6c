//! Administrator operations on the test DC: users, Exchange server objects, attributes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use exch_core::{ExchangeVersion, ServerRoles};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapResult, Mod, Scope, SearchEntry};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use secrecy::{ExposeSecret, SecretString};

use crate::{SambaAd, SambaError};

const TIMEOUT: Duration = Duration::from_secs(15);

/// A user created by [`SambaAd::create_user`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdUser {
    /// `sAMAccountName`.
    pub sam: String,
    /// Distinguished name.
    pub dn: String,
    /// `userPrincipalName` (`sam@dns.domain`).
    pub upn: String,
}

/// The raw answer to a simple bind (see [`SambaAd::try_bind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindAnswer {
    /// LDAP result code (0 success, 49 invalid credentials, 8 strong auth required …).
    pub rc: u32,
    /// The server's diagnostic text (`… data 52e …`).
    pub text: String,
}

fn names_ok(what: &str, v: &str) -> Result<(), SambaError> {
    let ok = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
    if ok {
        Ok(())
    } else {
        Err(SambaError::new(format!(
            "{what} {v:?} must be letters, digits, '-', '_', '.' or space (the harness does not escape DNs)"
        )))
    }
}

fn set(v: impl Into<Vec<u8>>) -> HashSet<Vec<u8>> {
    HashSet::from([v.into()])
}

fn check(what: &str, r: LdapResult, ok: &[u32]) -> Result<(), SambaError> {
    if r.rc == 0 || ok.contains(&r.rc) {
        Ok(())
    } else {
        Err(SambaError::new(format!(
            "{what}: LDAP {} {}",
            r.rc,
            r.text.trim()
        )))
    }
}

fn ldap_err(what: &str) -> impl FnOnce(ldap3::LdapError) -> SambaError + '_ {
    move |e| SambaError::new(format!("{what}: {e}"))
}

impl SambaAd {
    fn tls(&self) -> Result<Arc<ClientConfig>, SambaError> {
        let pem = std::fs::read(&self.env.ca_file).map_err(|e| {
            SambaError::new(format!(
                "cannot read CA file {}: {e}",
                self.env.ca_file.display()
            ))
        })?;
        let mut roots = RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert: CertificateDer<'static> =
                cert.map_err(|e| SambaError::new(format!("bad CA file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| SambaError::new(format!("bad CA certificate: {e}")))?;
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| SambaError::new(format!("TLS set-up: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// An unauthenticated LDAPS connection to the DC (driver spawned on the current runtime).
    async fn open(&self) -> Result<Ldap, SambaError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(TIMEOUT)
            .set_config(self.tls()?);
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.env.url_ldaps)
            .await
            .map_err(|e| SambaError::new(format!("connect to {}: {e}", self.env.url_ldaps)))?;
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        Ok(ldap)
    }

    /// A new LDAPS connection bound as the administrator. Connections are per call because
    /// every `#[tokio::test]` has its own runtime.
    pub async fn admin(&self) -> Result<Ldap, SambaError> {
        let mut ldap = self.open().await?;
        let r = ldap
            .with_timeout(TIMEOUT)
            .simple_bind(
                &self.env.admin_bind,
                self.env.admin_password.expose_secret(),
            )
            .await
            .map_err(ldap_err("administrator bind"))?;
        check(&format!("bind as {}", self.env.admin_bind), r, &[])?;
        Ok(ldap)
    }

    /// A simple bind as `name` over LDAPS on a fresh connection, independent of the code
    /// under test; returns the server's answer.
    pub async fn try_bind(
        &self,
        name: &str,
        password: &SecretString,
    ) -> Result<BindAnswer, SambaError> {
        let mut ldap = self.open().await?;
        let r = ldap
            .with_timeout(TIMEOUT)
            .simple_bind(name, password.expose_secret())
            .await
            .map_err(ldap_err("bind"))?;
        let _ = ldap.unbind().await;
        Ok(BindAnswer {
            rc: r.rc,
            text: r.text,
        })
    }

    /// Creates an enabled user (`userAccountControl` 512) `CN=<sam>,CN=Users,<base>` with
    /// UPN `sam@dns.domain`, over LDAPS (`unicodePwd`).
    pub async fn create_user(
        &self,
        sam: &str,
        password: &SecretString,
    ) -> Result<AdUser, SambaError> {
        self.create_user_with(sam, password, None, None).await
    }

    /// [`Self::create_user`] with `mail` and `displayName`.
    pub async fn create_user_with(
        &self,
        sam: &str,
        password: &SecretString,
        mail: Option<&str>,
        display_name: Option<&str>,
    ) -> Result<AdUser, SambaError> {
        names_ok("sAMAccountName", sam)?;
        let dn = format!("CN={sam},CN=Users,{}", self.env.base_dn);
        let upn = format!("{sam}@{}", self.env.dns_domain());
        let pwd: Vec<u8> = format!("\"{}\"", password.expose_secret())
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
            (b"objectClass".to_vec(), set("user")),
            (b"sAMAccountName".to_vec(), set(sam)),
            (b"userPrincipalName".to_vec(), set(upn.as_str())),
            (b"unicodePwd".to_vec(), set(pwd)),
            (b"userAccountControl".to_vec(), set("512")),
        ];
        if let Some(m) = mail {
            attrs.push((b"mail".to_vec(), set(m)));
        }
        if let Some(d) = display_name {
            attrs.push((b"displayName".to_vec(), set(d)));
        }
        let mut ldap = self.admin().await?;
        let r = ldap
            .with_timeout(TIMEOUT)
            .add(&dn, attrs)
            .await
            .map_err(ldap_err("add user"))?;
        check(&format!("add user {dn}"), r, &[])?;
        Ok(AdUser {
            sam: sam.to_owned(),
            dn,
            upn,
        })
    }

    /// Deletes `dn` (and nothing else); a missing object is fine.
    pub async fn delete(&self, dn: &str) -> Result<(), SambaError> {
        let mut ldap = self.admin().await?;
        let r = ldap
            .with_timeout(TIMEOUT)
            .delete(dn)
            .await
            .map_err(ldap_err("delete"))?;
        check(&format!("delete {dn}"), r, &[32])
    }

    /// Replaces `attr` of `dn` with `value` (as the administrator, behind the back of the
    /// code under test).
    pub async fn replace_attribute(
        &self,
        dn: &str,
        attr: &str,
        value: &str,
    ) -> Result<(), SambaError> {
        let mut ldap = self.admin().await?;
        let r = ldap
            .with_timeout(TIMEOUT)
            .modify(dn, vec![Mod::Replace(attr.as_bytes().to_vec(), set(value))])
            .await
            .map_err(ldap_err("modify"))?;
        check(&format!("replace {attr} of {dn}"), r, &[])
    }

    /// The first value of `attr` of `dn`, read as the administrator.
    pub async fn read_attribute(&self, dn: &str, attr: &str) -> Result<Option<String>, SambaError> {
        let mut ldap = self.admin().await?;
        let (entries, _) = ldap
            .with_timeout(TIMEOUT)
            .search(dn, Scope::Base, "(objectClass=*)", vec![attr])
            .await
            .map_err(ldap_err("search"))?
            .success()
            .map_err(ldap_err("search"))?;
        Ok(entries
            .into_iter()
            .map(SearchEntry::construct)
            .find_map(|e| {
                e.attrs
                    .into_iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                    .and_then(|(_, v)| v.into_iter().next())
            }))
    }

    /// The container the harness puts Exchange server objects into, like Exchange does:
    /// `CN=Servers,CN=Exchange Administrative Group (FYDIBOHF23SPDLT),CN=Administrative Groups,CN=Lab Org,CN=Microsoft Exchange,CN=Services,<config>`.
    pub fn exchange_servers_container(&self) -> String {
        format!(
            "CN=Servers,CN=Exchange Administrative Group (FYDIBOHF23SPDLT),CN=Administrative Groups,CN=Lab Org,CN=Microsoft Exchange,CN=Services,{}",
            self.env.config_dn
        )
    }

    /// Creates an `msExchExchangeServer` object `name` with `versionNumber`, `serialNumber`,
    /// `msExchCurrentServerRoles`, `networkAddress` (`ncacn_ip_tcp:<fqdn>`, `netbios:<name>`)
    /// and, with `site`, `msExchServerSite` pointing at `CN=<site>,CN=Sites,<config>` (created
    /// when missing). Returns its DN. An object of that name already there (left behind by an
    /// earlier run) is replaced.
    pub async fn add_exchange_server(
        &self,
        name: &str,
        fqdn: &str,
        version: ExchangeVersion,
        roles: ServerRoles,
        site: Option<&str>,
    ) -> Result<String, SambaError> {
        names_ok("server name", name)?;
        names_ok("FQDN", fqdn)?;
        let mut ldap = self.admin().await?;
        // Parent containers, outermost first (already existing is fine).
        let ex = format!("CN=Microsoft Exchange,CN=Services,{}", self.env.config_dn);
        let org = format!("CN=Lab Org,{ex}");
        let groups = format!("CN=Administrative Groups,{org}");
        let group = format!("CN=Exchange Administrative Group (FYDIBOHF23SPDLT),{groups}");
        let servers = self.exchange_servers_container();
        for c in [&org, &groups, &group, &servers] {
            let r = ldap
                .with_timeout(TIMEOUT)
                .add(
                    c.as_str(),
                    vec![(b"objectClass".to_vec(), set("container"))],
                )
                .await
                .map_err(ldap_err("add container"))?;
            check(
                &format!(
                    "add {c} (is the Exchange-like schema loaded? scripts/samba-ad.sh loads it)"
                ),
                r,
                &[68],
            )?;
        }
        let site_dn = match site {
            Some(s) => {
                names_ok("site", s)?;
                let dn = format!("CN={s},CN=Sites,{}", self.env.config_dn);
                let r = ldap
                    .with_timeout(TIMEOUT)
                    .add(dn.as_str(), vec![(b"objectClass".to_vec(), set("site"))])
                    .await
                    .map_err(ldap_err("add site"))?;
                check(&format!("add site {dn}"), r, &[68])?;
                Some(dn)
            }
            None => None,
        };
        let dn = format!("CN={name},{servers}");
        let netbios = name.to_uppercase();
        let attrs = |with_site: bool| {
            let mut a: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
                (b"objectClass".to_vec(), set("msExchExchangeServer")),
                (
                    b"versionNumber".to_vec(),
                    set(version.to_version_number().to_string()),
                ),
                (b"serialNumber".to_vec(), set(version.to_serial_number())),
                (
                    b"msExchCurrentServerRoles".to_vec(),
                    set((roles.bits() as i32).to_string()),
                ),
                (
                    b"networkAddress".to_vec(),
                    HashSet::from([
                        format!("ncacn_ip_tcp:{fqdn}").into_bytes(),
                        format!("netbios:{netbios}").into_bytes(),
                    ]),
                ),
            ];
            if let (true, Some(s)) = (with_site, &site_dn) {
                a.push((b"msExchServerSite".to_vec(), set(s.as_str())));
            }
            a
        };
        let mut r = ldap
            .with_timeout(TIMEOUT)
            .add(&dn, attrs(true))
            .await
            .map_err(ldap_err("add Exchange server"))?;
        // 68: entryAlreadyExists.
        if r.rc == 68 {
            let gone = ldap
                .with_timeout(TIMEOUT)
                .delete(&dn)
                .await
                .map_err(ldap_err("delete"))?;
            check(&format!("delete {dn}"), gone, &[32])?;
            r = ldap
                .with_timeout(TIMEOUT)
                .add(&dn, attrs(true))
                .await
                .map_err(ldap_err("add Exchange server"))?;
        }
        // A DC set up before msExchServerSite joined the script's schema: add it, then retry.
        if site_dn.is_some() && matches!(r.rc, 16 | 17 | 65) && r.text.contains("msExchServerSite")
        {
            self.ensure_site_schema(&mut ldap).await?;
            let r = ldap
                .with_timeout(TIMEOUT)
                .add(&dn, attrs(true))
                .await
                .map_err(ldap_err("add Exchange server"))?;
            check(&format!("add {dn}"), r, &[])?;
        } else {
            check(
                &format!(
                    "add {dn} (is the Exchange-like schema loaded? scripts/samba-ad.sh loads it)"
                ),
                r,
                &[],
            )?;
        }
        Ok(dn)
    }

    /// Adds `msExchServerSite` to the schema and to `msExchExchangeServer` (idempotent).
    async fn ensure_site_schema(&self, ldap: &mut Ldap) -> Result<(), SambaError> {
        let schema = format!("CN=Schema,{}", self.env.config_dn);
        let attr_dn = format!("CN=ms-Exch-Server-Site,{schema}");
        let r = ldap
            .with_timeout(TIMEOUT)
            .add(
                attr_dn.as_str(),
                vec![
                    (b"objectClass".to_vec(), set("attributeSchema")),
                    (b"lDAPDisplayName".to_vec(), set("msExchServerSite")),
                    (
                        b"attributeID".to_vec(),
                        set("1.2.840.113556.1.8000.2554.41234.1.3"),
                    ),
                    (b"attributeSyntax".to_vec(), set("2.5.5.1")),
                    (b"oMSyntax".to_vec(), set("127")),
                    (
                        b"oMObjectClass".to_vec(),
                        set(vec![0x2b, 0x0c, 0x02, 0x87, 0x73, 0x1c, 0x00, 0x85, 0x4a]),
                    ),
                    (b"isSingleValued".to_vec(), set("TRUE")),
                ],
            )
            .await
            .map_err(ldap_err("add msExchServerSite"))?;
        check("add attribute msExchServerSite", r, &[68])?;
        self.schema_update_now(ldap).await?;
        let class_dn = format!("CN=ms-Exch-Exchange-Server,{schema}");
        let r = ldap
            .with_timeout(TIMEOUT)
            .modify(
                class_dn.as_str(),
                vec![Mod::Add(b"mayContain".to_vec(), set("msExchServerSite"))],
            )
            .await
            .map_err(ldap_err("extend msExchExchangeServer"))?;
        check("add msExchServerSite to msExchExchangeServer", r, &[20])?;
        self.schema_update_now(ldap).await
    }

    async fn schema_update_now(&self, ldap: &mut Ldap) -> Result<(), SambaError> {
        let r = ldap
            .with_timeout(TIMEOUT)
            .modify("", vec![Mod::Add(b"schemaUpdateNow".to_vec(), set("1"))])
            .await
            .map_err(ldap_err("schemaUpdateNow"))?;
        check("schemaUpdateNow", r, &[])
    }
}
