//! [`LdapDirectory`]: Active Directory over LDAP (ldap3 + rustls).

mod bulk;
mod conn;
mod discovery;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use exch_core::ExchangeServer;
use ldap3::{Ldap, Mod, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use self::conn::{attr, map_error, one, result_error, search, ConnConfig};
use crate::escape::{dn_canonical, filter_value, parse_dn};
use crate::{
    Account, AuthResult, ChangeOutcome, Directory, DirectoryError, Dn, DomainController,
    UserAccountControl, UserRef,
};

const ACCOUNT_ATTRS: &[&str] = &[
    "distinguishedName",
    "sAMAccountName",
    "userPrincipalName",
    "mail",
    "userAccountControl",
    "pwdLastSet",
    "uSNChanged",
    "whenChanged",
];

/// Only user accounts (not computers, not contacts).
const USER_FILTER: &str = "(objectCategory=person)(objectClass=user)";

/// Builds an [`LdapDirectory`]; see [`LdapDirectory::builder`].
#[derive(Default)]
pub struct LdapDirectoryBuilder {
    url: Option<String>,
    ca_file: Option<PathBuf>,
    bind: Option<(String, SecretString)>,
    base_dn: Option<String>,
    timeout: Option<Duration>,
    starttls: bool,
    dc_urls: Vec<(String, String)>,
    connections: Option<usize>,
    allow_plaintext_bind: bool,
}

impl fmt::Debug for LdapDirectoryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapDirectoryBuilder")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("bind", &self.bind.as_ref().map(|(n, _)| n))
            .field("base_dn", &self.base_dn)
            .field("timeout", &self.timeout)
            .field("starttls", &self.starttls)
            .field("connections", &self.connections)
            .field("allow_plaintext_bind", &self.allow_plaintext_bind)
            .finish_non_exhaustive()
    }
}

impl LdapDirectoryBuilder {
    /// How many bound connections to the configured server operations are spread over
    /// (round robin; default 1, at most 64). ldap3 multiplexes requests on each connection;
    /// more connections help when the server works on one connection's requests one at a time
    /// (Samba's `prefork` model, busy DCs) — e.g. bulk revocation with `max_in_flight` > 1.
    /// Extra connections are opened on first use.
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = Some(n);
        self
    }

    /// The domain controller: `ldaps://dc1.corp.example:636` or `ldap://dc1.corp.example:389`
    /// (then use [`starttls`](Self::starttls)). Required.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// PEM file with the CA certificate(s) to trust; without it, the system's roots.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The service account: UPN (`svc@corp.example`), `DOMAIN\user` or DN, and its password.
    /// Required.
    pub fn bind(mut self, name: impl Into<String>, password: SecretString) -> Self {
        self.bind = Some((name.into(), password));
        self
    }

    /// Where to look for users; default: the server's `defaultNamingContext`.
    pub fn base_dn(mut self, dn: impl Into<String>) -> Self {
        self.base_dn = Some(dn.into());
        self
    }

    /// Limit for every single operation, connecting included (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Upgrade `ldap://` connections with StartTLS (default off).
    pub fn starttls(mut self, on: bool) -> Self {
        self.starttls = on;
        self
    }

    /// **Insecure; labs only.** Allow the service account's simple bind over an unencrypted
    /// `ldap://` connection without StartTLS, which sends its password in clear text (default
    /// off: [`build`](Self::build) refuses such a URL before connecting). Password resets and
    /// logons stay refused on such a connection, and [`Directory::security_notes`] (hence the
    /// remediation report) names the opt-out.
    pub fn allow_plaintext_bind(mut self, allow: bool) -> Self {
        self.allow_plaintext_bind = allow;
        self
    }

    /// How to reach domain controller `name` (the `cn` of its server object) for
    /// [`Directory::account_on`], instead of `ldaps://<dNSHostName>:636`.
    pub fn domain_controller_url(
        mut self,
        name: impl Into<String>,
        url: impl Into<String>,
    ) -> Self {
        self.dc_urls.push((name.into(), url.into()));
        self
    }

    /// Connects, binds (proving the credentials) and reads the RootDSE and the domain's
    /// NetBIOS name.
    pub async fn build(self) -> Result<LdapDirectory, DirectoryError> {
        let url = self.url.ok_or_else(|| DirectoryError::InvalidInput {
            what: "LdapDirectory url".into(),
            reason: "missing; call .url(\"ldaps://dc1.corp.example:636\")".into(),
        })?;
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("ldaps://") || lower.starts_with("ldap://")) {
            return Err(DirectoryError::InvalidInput {
                what: format!("LDAP URL {url:?}"),
                reason: "must start with ldaps:// or ldap://".into(),
            });
        }
        let (bind_name, bind_password) = self.bind.ok_or_else(|| DirectoryError::InvalidInput {
            what: "LdapDirectory bind".into(),
            reason: "missing; call .bind(\"svc@corp.example\", password)".into(),
        })?;
        if lower.starts_with("ldap://") && !self.starttls && !self.allow_plaintext_bind {
            return Err(DirectoryError::InsecureTransport {
                operation: format!(
                    "simple bind as {bind_name} (its password would be sent in clear text)"
                ),
                url,
            });
        }
        let tls = match &self.ca_file {
            Some(path) => Some(conn::tls_config(path)?),
            None => None,
        };
        let timeout = self.timeout.unwrap_or(Duration::from_secs(10));
        let connections = self.connections.unwrap_or(1);
        if !(1..=64).contains(&connections) {
            return Err(DirectoryError::InvalidInput {
                what: format!("LdapDirectory connections ({connections})"),
                reason: "must be between 1 and 64".into(),
            });
        }
        let cfg = ConnConfig {
            tls,
            starttls: self.starttls,
            timeout,
            bind_name,
            bind_password,
        };
        let setup = async {
            let mut ldap = cfg.open_bound(&url).await?;
            let root = search(
                &mut ldap,
                timeout,
                "",
                Scope::Base,
                "(objectClass=*)",
                &[
                    "defaultNamingContext",
                    "configurationNamingContext",
                    "dsServiceName",
                    "dnsHostName",
                ],
            )
            .await
            .map_err(|e| map_error("read RootDSE", &url, "RootDSE", e))?
            .and_then(|v| v.into_iter().next())
            .ok_or_else(|| DirectoryError::Protocol {
                url: url.clone(),
                operation: "read RootDSE".into(),
                detail: "no RootDSE entry; is this an Active Directory domain controller?".into(),
                source: None,
            })?;
            let need = |name: &str| {
                attr(&root, name)
                    .map(str::to_owned)
                    .ok_or_else(|| DirectoryError::Protocol {
                        url: url.clone(),
                        operation: "read RootDSE".into(),
                        detail: format!(
                            "no {name}; is this an Active Directory domain controller?"
                        ),
                        source: None,
                    })
            };
            let config_dn = need("configurationNamingContext")?;
            let base_dn = match &self.base_dn {
                Some(b) => {
                    parse_dn(b)?;
                    b.clone()
                }
                None => need("defaultNamingContext")?,
            };
            let ds_service_name = attr(&root, "dsServiceName").unwrap_or_default().to_owned();
            let partitions = format!("CN=Partitions,{config_dn}");
            let netbios = search(
                &mut ldap,
                timeout,
                &partitions,
                Scope::OneLevel,
                &format!(
                    "(&(objectClass=crossRef)(nCName={}))",
                    filter_value(&base_dn)
                ),
                &["nETBIOSName"],
            )
            .await
            .map_err(|e| map_error("read NetBIOS domain name", &url, &partitions, e))?
            .unwrap_or_default()
            .into_iter()
            .find_map(|e| attr(&e, "nETBIOSName").map(str::to_owned));
            Ok::<_, DirectoryError>((ldap, base_dn, config_dn, ds_service_name, netbios))
        };
        let (ldap, base_dn, config_dn, ds_service_name, netbios) =
            match tokio::time::timeout(timeout, setup).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(DirectoryError::Timeout {
                        operation: "connect and bind".into(),
                        url,
                        after: timeout,
                    })
                }
            };
        tracing::debug!(%url, %base_dn, netbios = ?netbios, "LDAP directory connected");
        let mut pool = HashMap::new();
        pool.insert(url.clone(), ldap);
        Ok(LdapDirectory {
            inner: Arc::new(Inner {
                url,
                cfg,
                base_dn,
                config_dn,
                ds_service_name,
                netbios,
                dc_urls: self.dc_urls,
                pool: Mutex::new(pool),
                connections,
                next: AtomicUsize::new(0),
                logons: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }
}

struct Inner {
    url: String,
    cfg: ConnConfig,
    base_dn: String,
    config_dn: String,
    ds_service_name: String,
    netbios: Option<String>,
    dc_urls: Vec<(String, String)>,
    /// Bound connections by slot (see [`LdapDirectory::slot`]), reused by every operation.
    pool: Mutex<HashMap<String, Ldap>>,
    /// Connections to `url` (the builder's `connections`).
    connections: usize,
    /// Round-robin counter over those.
    next: AtomicUsize,
    /// Idle connections used only for [`Directory::authenticate`] (each logon rebinds one as
    /// the user; at most [`MAX_IDLE_LOGON_CONNECTIONS`] are kept).
    logons: std::sync::Mutex<Vec<Ldap>>,
}

/// Idle logon connections kept for reuse: a logon then costs one bind instead of a TCP + TLS
/// handshake and a bind (about 40% of a Samba DC's work per logon, measured with `ldapwhoami`).
const MAX_IDLE_LOGON_CONNECTIONS: usize = 8;

/// Active Directory over LDAP: `ldaps://`, or `ldap://` with StartTLS, with a custom CA.
///
/// * One bound service connection per DC (or [`LdapDirectoryBuilder::connections`] of them to
///   the configured server, used round robin), reused (ldap3 multiplexes requests), reopened
///   when it breaks; reads are retried once on a fresh connection. Every operation, connecting
///   included, is bounded by the builder's timeout.
/// * [`Directory::disable_and_reset`] reads the account and sends one modify (guarded
///   `userAccountControl` swap from the value just read, + `unicodePwd`), and falls back to
///   the one-action methods when the account is already disabled or the server refuses the
///   modify (e.g. the account changed in between, or the password violates the policy).
/// * [`Directory::disable_account`] reads `userAccountControl` and writes it back with the
///   disable bit in one modify that deletes the old value and adds the new one: if someone
///   changed it in between, the delete fails and the result is
///   [`DirectoryError::ConcurrentModification`] instead of a lost update.
/// * [`Directory::reset_password`] and [`Directory::authenticate`] refuse to send a password
///   over an unencrypted connection ([`DirectoryError::InsecureTransport`]).
/// * [`Directory::authenticate`] binds on its own short-lived connection, never on the service
///   connection.
///
/// Cloning is cheap (shared connections).
#[derive(Clone)]
pub struct LdapDirectory {
    inner: Arc<Inner>,
}

impl fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapDirectory")
            .field("url", &self.inner.url)
            .field("bind", &self.inner.cfg.bind_name)
            .field("base_dn", &self.inner.base_dn)
            .field("encrypted", &self.is_encrypted())
            .finish_non_exhaustive()
    }
}

impl LdapDirectory {
    fn take_logon_connection(&self) -> Option<Ldap> {
        self.inner
            .logons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    /// One simple bind as `user` on `ldap`. The connection is kept for the next logon when the
    /// server answered (success or a refusal), dropped on any transport error.
    async fn logon_on(
        &self,
        mut ldap: Ldap,
        user: &str,
        password: &SecretString,
    ) -> Result<AuthResult, DirectoryError> {
        let url = self.inner.url.as_str();
        let res = ldap
            .with_timeout(self.inner.cfg.timeout)
            .simple_bind(user, password.expose_secret())
            .await
            .map_err(|e| map_error("logon", url, user, e))?;
        let result = match res.rc {
            0 => AuthResult::Success,
            49 => crate::adcodes::decode_bind_failure(&res.text),
            _ => return Err(result_error("logon", url, user, res)),
        };
        let surplus = {
            let mut idle = self
                .inner
                .logons
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < MAX_IDLE_LOGON_CONNECTIONS {
                idle.push(ldap);
                None
            } else {
                Some(ldap)
            }
        };
        if let Some(mut ldap) = surplus {
            let _ = ldap.unbind().await;
        }
        Ok(result)
    }

    /// Starts a builder:
    /// `LdapDirectory::builder().url(..).ca_file(..).bind(..).build().await`.
    pub fn builder() -> LdapDirectoryBuilder {
        LdapDirectoryBuilder::default()
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The base DN users are searched under.
    pub fn base_dn(&self) -> &str {
        &self.inner.base_dn
    }

    /// The configuration partition (`CN=Configuration,…`).
    pub fn config_dn(&self) -> &str {
        &self.inner.config_dn
    }

    /// The domain's NetBIOS name (`CORP`), if the server told.
    pub fn netbios_domain(&self) -> Option<&str> {
        self.inner.netbios.as_deref()
    }

    /// Whether the service connection is encrypted (ldaps://, or ldap:// with StartTLS).
    pub fn is_encrypted(&self) -> bool {
        self.inner.cfg.is_encrypted(&self.inner.url)
    }

    fn timeout(&self) -> Duration {
        self.inner.cfg.timeout
    }

    /// The pool key of the connection the next operation on `url` uses: `url` itself, or
    /// `url#i` for the extra connections to the configured server (round robin).
    fn slot(&self, url: &str) -> String {
        let n = self.inner.connections;
        if n <= 1 || url != self.inner.url {
            return url.to_owned();
        }
        match self.inner.next.fetch_add(1, Ordering::Relaxed) % n {
            0 => url.to_owned(),
            i => format!("{url}#{i}"),
        }
    }

    /// The pooled, bound connection of `slot` (to `url`).
    async fn conn(&self, slot: &str, url: &str) -> Result<Ldap, DirectoryError> {
        let mut pool = self.inner.pool.lock().await;
        if let Some(ldap) = pool.get_mut(slot) {
            if !ldap.is_closed() {
                return Ok(ldap.clone());
            }
        }
        let ldap = self.inner.cfg.open_bound(url).await?;
        pool.insert(slot.to_owned(), ldap.clone());
        Ok(ldap)
    }

    async fn forget(&self, slot: &str) {
        self.inner.pool.lock().await.remove(slot);
    }

    /// Runs `f` under the timeout; on a broken connection the pooled connection is dropped
    /// and, when `retry`, `f` runs once more on a new one.
    async fn run<T, F, Fut>(
        &self,
        url: &str,
        operation: &str,
        retry: bool,
        f: F,
    ) -> Result<T, DirectoryError>
    where
        F: Fn(Ldap) -> Fut,
        Fut: Future<Output = Result<T, DirectoryError>>,
    {
        let slot = self.slot(url);
        let attempt = async {
            let ldap = self.conn(&slot, url).await?;
            match f(ldap).await {
                Err(e @ DirectoryError::Unreachable { .. }) => {
                    self.forget(&slot).await;
                    if !retry {
                        return Err(e);
                    }
                    tracing::debug!(%url, error = %e, "LDAP connection broke; retrying on a new one");
                    let ldap = self.conn(&slot, url).await?;
                    f(ldap).await
                }
                r => r,
            }
        };
        match tokio::time::timeout(self.timeout(), attempt).await {
            Ok(r) => r,
            Err(_) => {
                self.forget(&slot).await;
                Err(DirectoryError::Timeout {
                    operation: operation.to_owned(),
                    url: url.to_owned(),
                    after: self.timeout(),
                })
            }
        }
    }

    /// Reads account `dn` on the server at `url`.
    pub(super) async fn read_account(
        &self,
        url: &str,
        dn: &str,
    ) -> Result<Account, DirectoryError> {
        parse_dn(dn)?;
        let timeout = self.timeout();
        let filter = format!("(&{USER_FILTER})");
        self.run(url, &format!("read {dn}"), true, |mut ldap| {
            let filter = filter.clone();
            async move {
                let found = search(&mut ldap, timeout, dn, Scope::Base, &filter, ACCOUNT_ATTRS)
                    .await
                    .map_err(|e| map_error("read account", url, dn, e))?;
                let entry = found.and_then(|v| v.into_iter().next()).ok_or_else(|| {
                    DirectoryError::NotFound {
                        what: format!("{dn} (on {url})"),
                    }
                })?;
                account_from(&entry, url).and_then(|a| crate::escape::exact_dn(dn, a))
            }
        })
        .await
    }

    /// Compare-and-swap of `userAccountControl`: one modify that deletes `expected` and adds
    /// `new`. When the attribute no longer holds `expected` the server refuses the delete and
    /// this returns [`DirectoryError::ConcurrentModification`]; nothing is written then.
    /// (Samba accepts the request when `new` equals the current value: the outcome is the
    /// same.)
    pub async fn swap_user_account_control(
        &self,
        dn: &Dn,
        expected: UserAccountControl,
        new: UserAccountControl,
    ) -> Result<(), DirectoryError> {
        parse_dn(dn.as_str())?;
        let url = self.inner.url.as_str();
        let timeout = self.timeout();
        let op = "change userAccountControl";
        self.run(url, op, false, |mut ldap| async move {
            let (del_name, del_values) =
                one("userAccountControl", expected.0.to_string().into_bytes());
            let (add_name, add_values) = one("userAccountControl", new.0.to_string().into_bytes());
            let mods = vec![
                Mod::Delete(del_name, del_values),
                Mod::Add(add_name, add_values),
            ];
            let res = conn::modify(&mut ldap, timeout, dn.as_str(), mods)
                .await
                .map_err(|e| map_error(op, url, dn.as_str(), e))?;
            match res.rc {
                0 => Ok(()),
                16 => Err(DirectoryError::ConcurrentModification {
                    dn: dn.to_string(),
                    operation: format!("{op} from {:#x} to {:#x}", expected.0, new.0),
                }),
                _ => Err(result_error(op, url, dn.as_str(), res)),
            }
        })
        .await
    }

    async fn set_disabled(
        &self,
        account: &Account,
        disabled: bool,
    ) -> Result<ChangeOutcome, DirectoryError> {
        let current = self
            .read_account(&self.inner.url, account.dn.as_str())
            .await?;
        let uac = current.user_account_control;
        if uac.is_disabled() == disabled {
            tracing::debug!(dn = %account.dn, disabled, "account already so");
            return Ok(ChangeOutcome::AlreadySo);
        }
        let new = if disabled {
            uac.disabled()
        } else {
            uac.enabled()
        };
        self.swap_user_account_control(&current.dn, uac, new)
            .await?;
        tracing::info!(dn = %account.dn, from = uac.0, to = new.0, "userAccountControl changed");
        Ok(ChangeOutcome::Applied)
    }

    fn dc_url(&self, dc: &DomainController) -> String {
        if let Some((_, url)) = self
            .inner
            .dc_urls
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&dc.name))
        {
            return url.clone();
        }
        dc.url
            .clone()
            .unwrap_or_else(|| format!("ldaps://{}:636", dc.dns_host_name))
    }
}

/// An [`Account`] from a search entry.
fn account_from(e: &SearchEntry, url: &str) -> Result<Account, DirectoryError> {
    let bad = |what: &str| DirectoryError::Protocol {
        url: url.to_owned(),
        operation: format!("read account {}", e.dn),
        detail: what.to_owned(),
        source: None,
    };
    let uac = attr(e, "userAccountControl")
        .ok_or_else(|| bad("no userAccountControl; does the service account have read access?"))?;
    let uac: i64 = uac
        .parse()
        .map_err(|_| bad("userAccountControl is not a number"))?;
    Ok(Account {
        dn: Dn(attr(e, "distinguishedName").unwrap_or(&e.dn).to_owned()),
        sam_account_name: attr(e, "sAMAccountName")
            .ok_or_else(|| bad("no sAMAccountName"))?
            .to_owned(),
        user_principal_name: attr(e, "userPrincipalName").map(str::to_owned),
        // AD hands out the 32-bit mask as a signed integer.
        user_account_control: UserAccountControl(uac as u32),
        pwd_last_set: attr(e, "pwdLastSet").and_then(|v| v.parse().ok()),
        usn_changed: attr(e, "uSNChanged").and_then(|v| v.parse().ok()),
        when_changed: attr(e, "whenChanged").map(str::to_owned),
    })
}

/// `"password"` (with the quotes) as UTF-16LE, as `unicodePwd` wants it.
fn unicode_pwd(password: &str) -> Vec<u8> {
    let quoted = format!("\"{password}\"");
    quoted.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

#[async_trait]
impl Directory for LdapDirectory {
    async fn find_account(&self, user: &UserRef) -> Result<Account, DirectoryError> {
        let url = self.inner.url.as_str();
        crate::escape::check_user_ref(user)?;
        if let UserRef::Dn(dn) = user {
            return self.read_account(url, dn.as_str()).await;
        }
        let clause = self.user_clause(user)?;
        let filter = format!("(&{USER_FILTER}{clause})");
        let entries = self
            .search_users(&filter, &format!("find {user}"), &user.to_string())
            .await?;
        // Exact matches only; UPN first, `mail` only when no UPN matches.
        let entries = crate::escape::exact_matches(user, &entries, |e, a| attr(e, a))?;
        bulk::pick(user, &entries, url)
    }

    async fn find_accounts(&self, users: &[UserRef]) -> Vec<Result<Account, DirectoryError>> {
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(bulk::FIND_CHUNK) {
            out.extend(self.find_chunk(chunk).await);
        }
        out
    }

    async fn disable_account(&self, account: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.set_disabled(account, true).await
    }

    async fn enable_account(&self, account: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.set_disabled(account, false).await
    }

    async fn reset_password(
        &self,
        account: &Account,
        new: &SecretString,
    ) -> Result<ChangeOutcome, DirectoryError> {
        let url = self.inner.url.as_str();
        let operation = format!("password reset of {}", account.dn);
        if !self.is_encrypted() {
            return Err(DirectoryError::InsecureTransport {
                operation,
                url: url.to_owned(),
            });
        }
        if new.expose_secret().is_empty() {
            return Err(DirectoryError::InvalidInput {
                what: format!("new password for {}", account.dn),
                reason: "empty; use generate_password()".into(),
            });
        }
        parse_dn(account.dn.as_str())?;
        let timeout = self.timeout();
        let dn = account.dn.as_str();
        self.run(url, &operation, false, |mut ldap| async move {
            let (name, values) = one("unicodePwd", unicode_pwd(new.expose_secret()));
            let res = conn::modify(&mut ldap, timeout, dn, vec![Mod::Replace(name, values)])
                .await
                .map_err(|e| map_error("password reset", url, dn, e))?;
            password_result(url, dn, res)
        })
        .await?;
        tracing::info!(dn = %account.dn, "password reset");
        Ok(ChangeOutcome::Applied)
    }

    async fn accounts_on(
        &self,
        dc: &DomainController,
        dns: &[Dn],
    ) -> Vec<Result<Account, DirectoryError>> {
        let url = self.dc_url(dc);
        let mut out = Vec::with_capacity(dns.len());
        for chunk in dns.chunks(bulk::FIND_CHUNK) {
            out.extend(self.read_chunk(&url, chunk).await);
        }
        out
    }

    /// One modify per account; see `disable_and_reset_combined` in `bulk.rs`.
    async fn disable_and_reset<'a>(
        &self,
        account: &Account,
        disable: bool,
        new_password: Option<&'a SecretString>,
    ) -> crate::AccountChanges {
        self.disable_and_reset_combined(account, disable, new_password)
            .await
    }

    async fn authenticate(
        &self,
        user: &str,
        password: &SecretString,
    ) -> Result<AuthResult, DirectoryError> {
        let url = self.inner.url.as_str();
        // An empty password would be an anonymous ("unauthenticated") bind, which succeeds;
        // a NUL in the name would be cut off by some servers.
        if user.trim().is_empty()
            || password.expose_secret().is_empty()
            || user.chars().any(char::is_control)
        {
            return Ok(AuthResult::BadCredentials);
        }
        if !self.is_encrypted() {
            return Err(DirectoryError::InsecureTransport {
                operation: format!("logon of {user}"),
                url: url.to_owned(),
            });
        }
        let cfg = &self.inner.cfg;
        let attempt = async {
            // A kept connection may have been closed by the server meanwhile: then the bind
            // fails with an I/O error and the logon is tried once on a fresh connection.
            if let Some(ldap) = self.take_logon_connection() {
                if let Ok(result) = self.logon_on(ldap, user, password).await {
                    return Ok(result);
                }
            }
            let ldap = cfg.open(url).await?;
            self.logon_on(ldap, user, password).await
        };
        let result = match tokio::time::timeout(cfg.timeout, attempt).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(DirectoryError::Timeout {
                    operation: format!("logon of {user}"),
                    url: url.to_owned(),
                    after: cfg.timeout,
                })
            }
        };
        tracing::debug!(%user, ?result, "logon attempt");
        Ok(result)
    }

    async fn exchange_servers(&self) -> Result<Vec<ExchangeServer>, DirectoryError> {
        discovery::exchange_servers(self).await
    }

    async fn domain_controllers(&self) -> Result<Vec<DomainController>, DirectoryError> {
        discovery::domain_controllers(self).await
    }

    async fn account_on(&self, dc: &DomainController, dn: &Dn) -> Result<Account, DirectoryError> {
        let url = self.dc_url(dc);
        self.read_account(&url, dn.as_str()).await
    }

    /// TLS certificates are always verified (there is no opt-out); the only note is an
    /// unencrypted `ldap://` connection without StartTLS.
    fn security_notes(&self) -> Vec<String> {
        if self.is_encrypted() {
            return Vec::new();
        }
        vec![format!(
            "LDAP: {} is not encrypted (neither ldaps:// nor StartTLS; allow_plaintext_bind opted in): the service account's bind password crosses the network in clear text; password resets and logons are refused on it",
            self.inner.url
        )]
    }
}

/// The result of a modify that sets `unicodePwd`.
fn password_result(
    url: &str,
    dn: &str,
    res: ldap3::LdapResult,
) -> Result<ChangeOutcome, DirectoryError> {
    let text = res.text.trim().to_owned();
    match res.rc {
        0 => Ok(ChangeOutcome::Applied),
        19 => Err(DirectoryError::PolicyViolation {
            operation: format!("password reset of {dn}"),
            reason: text,
        }),
        53 => Err(DirectoryError::PolicyViolation {
            operation: format!("password reset of {dn}"),
            reason: format!("the server is unwilling to set this password: {text}"),
        }),
        _ if text.contains("0000052D") => Err(DirectoryError::PolicyViolation {
            operation: format!("password reset of {dn}"),
            reason: text,
        }),
        _ => Err(result_error("password reset", url, dn, res)),
    }
}

/// Same object? (used to match the DC we are connected to)
fn same_dn(a: &str, b: &str) -> bool {
    !a.is_empty() && dn_canonical(a) == dn_canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        assert_eq!(unicode_pwd("ab"), vec![b'"', 0, b'a', 0, b'b', 0, b'"', 0]);
        assert_eq!(unicode_pwd("é").len(), 6);
    }

    #[tokio::test]
    async fn builder_refuses_bad_input_before_connecting() {
        let e = LdapDirectory::builder().build().await.unwrap_err();
        assert!(e.to_string().contains(".url("), "{e}");
        let e = LdapDirectory::builder()
            .url("http://x")
            .build()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("ldaps://"), "{e}");
        let e = LdapDirectory::builder()
            .url("ldaps://127.0.0.1:1")
            .bind("a@b", SecretString::from("Secret-Value-123"))
            .ca_file("/nonexistent/ca.pem")
            .build()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        assert!(!format!("{e:?}").contains("Secret-Value-123"));
    }

    #[tokio::test]
    async fn unreachable_server_is_transient_and_named() {
        let e = LdapDirectory::builder()
            .url("ldaps://127.0.0.1:1")
            .bind("a@b", SecretString::from("Secret-Value-123"))
            .timeout(Duration::from_secs(2))
            .build()
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
        assert!(!format!("{e:?}{e}").contains("Secret-Value-123"));
    }

    /// Nothing listens on port 1: the refusal comes before any connection is tried.
    #[tokio::test]
    async fn plaintext_bind_is_refused_before_connecting_unless_allowed() {
        let e = LdapDirectory::builder()
            .url("LDAP://127.0.0.1:1")
            .bind("svc@corp.example", SecretString::from("Secret-Value-123"))
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(e, DirectoryError::InsecureTransport { .. }) && !e.is_transient(),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("LDAP://127.0.0.1:1")
                && msg.contains("svc@corp.example")
                && msg.contains("StartTLS"),
            "{msg}"
        );
        assert!(!format!("{e:?}{e}").contains("Secret-Value-123"));
        // With StartTLS, or with the explicit opt-out, the builder goes on to connect (and
        // fails to: nothing listens).
        for b in [
            LdapDirectory::builder().starttls(true),
            LdapDirectory::builder().allow_plaintext_bind(true),
        ] {
            let e = b
                .url("ldap://127.0.0.1:1")
                .bind("svc@corp.example", SecretString::from("Secret-Value-123"))
                .timeout(Duration::from_secs(2))
                .build()
                .await
                .unwrap_err();
            assert!(e.is_transient(), "{e:?}");
        }
    }
}
