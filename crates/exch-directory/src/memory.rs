//! [`InMemoryDirectory`]: a public fake with the semantics of the LDAP backend against AD.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use exch_core::ExchangeServer;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::escape::{dn_canonical, dn_value, same_name};
use crate::{
    Account, AuthResult, ChangeOutcome, Directory, DirectoryError, Dn, DomainController,
    UserAccountControl, UserRef,
};

const URL: &str = "memory://in-memory-directory";

/// The operations of [`Directory`], for fault and latency injection and call counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`Directory::find_account`].
    FindAccount,
    /// [`Directory::disable_account`].
    DisableAccount,
    /// [`Directory::enable_account`].
    EnableAccount,
    /// [`Directory::reset_password`].
    ResetPassword,
    /// [`Directory::authenticate`].
    Authenticate,
    /// [`Directory::exchange_servers`].
    ExchangeServers,
    /// [`Directory::domain_controllers`].
    DomainControllers,
    /// [`Directory::account_on`].
    AccountOn,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::FindAccount => "find account",
            Operation::DisableAccount => "disable account",
            Operation::EnableAccount => "enable account",
            Operation::ResetPassword => "password reset",
            Operation::Authenticate => "authenticate",
            Operation::ExchangeServers => "Exchange server discovery",
            Operation::DomainControllers => "domain controller discovery",
            Operation::AccountOn => "read account on DC",
        }
    }
}

/// The error kind an injected fault produces (see [`InMemoryDirectory::fail_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// [`DirectoryError::Unreachable`] (transient).
    Unreachable,
    /// [`DirectoryError::Timeout`] (transient).
    Timeout,
    /// [`DirectoryError::ConcurrentModification`] (transient).
    ConcurrentModification,
    /// [`DirectoryError::PermissionDenied`].
    PermissionDenied,
    /// [`DirectoryError::PolicyViolation`].
    PolicyViolation,
    /// [`DirectoryError::InsecureTransport`].
    InsecureTransport,
    /// [`DirectoryError::Protocol`].
    Protocol,
}

impl Fault {
    fn to_error(self, op: Operation, object: &str) -> DirectoryError {
        self.error_at(URL, op, object)
    }

    /// The error this fault stands for, as `url` would return it for `op` on `object`.
    pub(crate) fn error_at(self, url: &str, op: Operation, object: &str) -> DirectoryError {
        let operation = format!("{} ({object})", op.name());
        match self {
            Fault::Unreachable => DirectoryError::Unreachable {
                url: url.into(),
                detail: format!("injected fault during {operation}"),
                source: None,
            },
            Fault::Timeout => DirectoryError::Timeout {
                operation,
                url: url.into(),
                after: Duration::from_secs(0),
            },
            Fault::ConcurrentModification => DirectoryError::ConcurrentModification {
                dn: object.into(),
                operation: op.name().into(),
            },
            Fault::PermissionDenied => DirectoryError::PermissionDenied {
                operation,
                detail: "injected fault: insufficient access rights".into(),
            },
            Fault::PolicyViolation => DirectoryError::PolicyViolation {
                operation,
                reason: "injected fault: 0000052D: constraint violation".into(),
            },
            Fault::InsecureTransport => DirectoryError::InsecureTransport {
                operation,
                url: url.into(),
            },
            Fault::Protocol => DirectoryError::Protocol {
                url: url.into(),
                operation,
                detail: "injected fault: malformed answer".into(),
                source: None,
            },
        }
    }
}

/// Password rules checked by [`Directory::reset_password`], like AD's default domain policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Minimum length in characters (AD default 7).
    pub min_length: usize,
    /// AD complexity: 3 of the 4 classes (upper, lower, digit, other) and not containing the
    /// `sAMAccountName` (AD default on).
    pub complexity: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: 7,
            complexity: true,
        }
    }
}

impl PasswordPolicy {
    /// Why `password` is refused for the account `sam`, or `None` when it is acceptable.
    pub fn violation(&self, sam: &str, password: &str) -> Option<String> {
        let len = password.chars().count();
        if len < self.min_length {
            return Some(format!(
                "0000052D: the password is too short; it must have at least {} characters",
                self.min_length
            ));
        }
        if self.complexity {
            let classes = [
                password.chars().any(|c| c.is_uppercase()),
                password.chars().any(|c| c.is_lowercase()),
                password.chars().any(|c| c.is_ascii_digit()),
                password.chars().any(|c| !c.is_alphanumeric()),
            ];
            if classes.iter().filter(|b| **b).count() < 3 {
                return Some(
                    "0000052D: the password does not meet the complexity requirements (3 of: upper case, lower case, digit, symbol)"
                        .into(),
                );
            }
            if sam.chars().count() >= 3 && password.to_lowercase().contains(&sam.to_lowercase()) {
                return Some(
                    "0000052D: the password does not meet the complexity requirements (contains the account name)"
                        .into(),
                );
            }
        }
        None
    }
}

/// A user to add to an [`InMemoryDirectory`] (see [`InMemoryDirectory::try_add`]).
#[derive(Clone)]
pub struct NewUser {
    sam: String,
    upn: Option<String>,
    password: SecretString,
    display_name: Option<String>,
    mail: Option<String>,
    user_account_control: UserAccountControl,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("sam", &self.sam)
            .field("upn", &self.upn)
            .field("password", &"[REDACTED]")
            .field("display_name", &self.display_name)
            .field("mail", &self.mail)
            .field("user_account_control", &self.user_account_control)
            .finish()
    }
}

impl NewUser {
    /// A normal, enabled account (`userAccountControl` 512) with this `sAMAccountName` and
    /// password.
    pub fn new(sam: impl Into<String>, password: impl Into<String>) -> Self {
        NewUser {
            sam: sam.into(),
            upn: None,
            password: SecretString::from(password.into()),
            display_name: None,
            mail: None,
            user_account_control: UserAccountControl(UserAccountControl::NORMAL_ACCOUNT),
        }
    }

    /// Sets `userPrincipalName`.
    pub fn upn(mut self, upn: impl Into<String>) -> Self {
        self.upn = Some(upn.into());
        self
    }

    /// Sets the display name (also used as the `CN` of the DN).
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// Sets `mail` (found by [`UserRef::Upn`] when no UPN matches).
    pub fn mail(mut self, mail: impl Into<String>) -> Self {
        self.mail = Some(mail.into());
        self
    }

    /// Sets the initial `userAccountControl` (e.g. with ACCOUNTDISABLE).
    pub fn user_account_control(mut self, uac: UserAccountControl) -> Self {
        self.user_account_control = uac;
        self
    }
}

/// One version of an account as replicas see it: `at == None` means "seeded, on every DC".
#[derive(Clone)]
struct Snapshot {
    at: Option<Instant>,
    account: Account,
}

struct User {
    account: Account,
    password: SecretString,
    display_name: Option<String>,
    mail: Option<String>,
    restriction: Option<AuthResult>,
    history: Vec<Snapshot>,
}

struct Dc {
    dc: DomainController,
    lag: Duration,
    reachable: bool,
}

struct FaultPlan {
    remaining: usize,
    fault: Fault,
}

struct State {
    netbios: String,
    dns_domain: String,
    base_dn: String,
    /// Keyed by canonical DN.
    users: Vec<User>,
    servers: Vec<ExchangeServer>,
    dcs: Vec<Dc>,
    faults: HashMap<Operation, FaultPlan>,
    /// Writes whose answer is lost after they were applied (see `lose_answer_next`).
    lost_answers: HashMap<Operation, usize>,
    latency: HashMap<Operation, Duration>,
    calls: HashMap<Operation, usize>,
    usn: u64,
    policy: PasswordPolicy,
    insecure: bool,
}

impl State {
    fn user_index(&self, dn: &str) -> Option<usize> {
        let key = dn_canonical(dn);
        self.users
            .iter()
            .position(|u| dn_canonical(u.account.dn.as_str()) == key)
    }

    fn touch(&mut self, idx: usize) {
        self.usn += 1;
        let usn = self.usn;
        let user = &mut self.users[idx];
        user.account.usn_changed = Some(usn);
        user.account.when_changed = Some(generalized_time_now());
        user.history.push(Snapshot {
            at: Some(Instant::now()),
            account: user.account.clone(),
        });
    }

    fn matches(&self, user: &UserRef) -> Result<Vec<usize>, DirectoryError> {
        let all = || 0..self.users.len();
        Ok(match user {
            UserRef::Upn(upn) => {
                let by_upn: Vec<usize> = all()
                    .filter(|&i| {
                        self.users[i]
                            .account
                            .user_principal_name
                            .as_deref()
                            .is_some_and(|u| same_name(upn, u))
                    })
                    .collect();
                if by_upn.is_empty() {
                    all()
                        .filter(|&i| {
                            self.users[i]
                                .mail
                                .as_deref()
                                .is_some_and(|m| same_name(upn, m))
                        })
                        .collect()
                } else {
                    by_upn
                }
            }
            UserRef::DownLevel { domain, sam } => {
                if !domain.eq_ignore_ascii_case(&self.netbios) {
                    return Err(DirectoryError::NotFound {
                        what: format!(
                            "{user} (domain {domain:?} is not this directory's domain {:?})",
                            self.netbios
                        ),
                    });
                }
                self.by_sam(sam)
            }
            UserRef::Sam(sam) => self.by_sam(sam),
            UserRef::Dn(dn) => {
                // Like LdapDirectory: a malformed DN is InvalidInput, not NotFound.
                crate::escape::parse_dn(dn.as_str())?;
                self.user_index(dn.as_str()).into_iter().collect()
            }
        })
    }

    fn by_sam(&self, sam: &str) -> Vec<usize> {
        (0..self.users.len())
            .filter(|&i| same_name(sam, &self.users[i].account.sam_account_name))
            .collect()
    }

    /// Who a bind name means, the way AD resolves simple-bind names: UPN (explicit, or the
    /// implicit `sam@dns.domain`), `DOMAIN\sam`, or DN. Bare names and `mail` do not bind.
    fn bind_target(&self, name: &str) -> Option<usize> {
        let one = |v: Vec<usize>| if v.len() == 1 { Some(v[0]) } else { None };
        if let Some((domain, sam)) = name.split_once('\\') {
            if !domain.eq_ignore_ascii_case(&self.netbios) {
                return None;
            }
            return one(self.by_sam(sam));
        }
        if let Ok(UserRef::Dn(dn)) = UserRef::parse(name) {
            return self.user_index(dn.as_str());
        }
        let (local, suffix) = name.rsplit_once('@')?;
        let explicit: Vec<usize> = (0..self.users.len())
            .filter(|&i| {
                self.users[i]
                    .account
                    .user_principal_name
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(name))
            })
            .collect();
        if !explicit.is_empty() {
            return one(explicit);
        }
        if suffix.eq_ignore_ascii_case(&self.dns_domain) {
            return one(self.by_sam(local));
        }
        None
    }
}

/// An in-memory [`Directory`] with the semantics of `LdapDirectory`
/// against Active Directory, for tests of code that uses a directory.
///
/// * Finding: [`UserRef::Upn`] matches `userPrincipalName`, then `mail`; `DOMAIN\sam` checks the
///   NetBIOS domain; more than one match is [`DirectoryError::Ambiguous`].
/// * Logons ([`Directory::authenticate`]) resolve names as AD simple binds do (UPN, implicit
///   UPN `sam@dns.domain`, `DOMAIN\sam`, DN; not bare names, not `mail`). Like AD, a disabled
///   account reports [`AuthResult::AccountDisabled`] only with the right password; a wrong
///   password is [`AuthResult::BadCredentials`]. An empty password never logs on.
/// * Password resets check a [`PasswordPolicy`] ([`DirectoryError::PolicyViolation`]; an
///   empty password is [`DirectoryError::InvalidInput`]); the old password stops working at
///   once. A malformed DN is [`DirectoryError::InvalidInput`], as in the LDAP backend.
/// * Domain controllers: one, `DC1`, to start with; more with
///   [`add_domain_controller`](Self::add_domain_controller), each with a replication lag —
///   [`Directory::account_on`] shows a DC the state of `lag` ago. Users added with
///   [`add_user`](Self::add_user) are on every DC at once.
/// * Faults ([`fail_next`](Self::fail_next), [`set_dc_reachable`](Self::set_dc_reachable)) and
///   latency ([`set_latency`](Self::set_latency)) per [`Operation`]; [`calls`](Self::calls)
///   counts calls (failed ones too).
///
/// Cloning is cheap and clones share state, so a test can keep a handle while the code under
/// test holds an `Arc<dyn Directory>`. Latency uses `tokio::time`, so it obeys a paused clock.
///
/// ```
/// # tokio_test_block_on(async {
/// use exch_directory::{Directory, InMemoryDirectory, UserRef, AuthResult, ChangeOutcome};
/// use secrecy::SecretString;
///
/// let dir = InMemoryDirectory::new();
/// dir.add_user("bob", "bob@lab.example.test", "Old-Passw0rd!");
/// let bob = dir.find_account(&UserRef::parse("LAB\\bob")?).await?;
/// assert_eq!(dir.disable_account(&bob).await?, ChangeOutcome::Applied);
/// let pw = SecretString::from("Old-Passw0rd!");
/// assert_eq!(dir.authenticate("bob@lab.example.test", &pw).await?, AuthResult::AccountDisabled);
/// # Ok::<(), exch_directory::DirectoryError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct InMemoryDirectory {
    state: Arc<Mutex<State>>,
}

impl Default for InMemoryDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for InMemoryDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("InMemoryDirectory")
            .field("domain", &s.netbios)
            .field("dns_domain", &s.dns_domain)
            .field("users", &s.users.len())
            .field("exchange_servers", &s.servers.len())
            .field("domain_controllers", &s.dcs.len())
            .finish_non_exhaustive()
    }
}

impl InMemoryDirectory {
    /// The domain of the project's Samba lab: NetBIOS `LAB`, DNS `lab.example.test`.
    pub fn new() -> Self {
        Self::with_domain("LAB", "lab.example.test")
    }

    /// A directory for the domain `netbios` / `dns_domain` (e.g. `CORP`, `corp.example`), with
    /// one domain controller `DC1` in `Default-First-Site-Name`.
    pub fn with_domain(netbios: &str, dns_domain: &str) -> Self {
        let base_dn = dns_domain
            .split('.')
            .map(|p| format!("DC={}", dn_value(p)))
            .collect::<Vec<_>>()
            .join(",");
        let dir = InMemoryDirectory {
            state: Arc::new(Mutex::new(State {
                netbios: netbios.to_owned(),
                dns_domain: dns_domain.to_ascii_lowercase(),
                base_dn,
                users: Vec::new(),
                servers: Vec::new(),
                dcs: Vec::new(),
                faults: HashMap::new(),
                lost_answers: HashMap::new(),
                latency: HashMap::new(),
                calls: HashMap::new(),
                usn: 1000,
                policy: PasswordPolicy::default(),
                insecure: false,
            })),
        };
        dir.add_domain_controller("DC1", Duration::ZERO);
        dir
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters for a test fake; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The base DN (`DC=lab,DC=example,DC=test`).
    pub fn base_dn(&self) -> String {
        self.lock().base_dn.clone()
    }

    /// The NetBIOS domain name (`LAB`).
    pub fn netbios_domain(&self) -> String {
        self.lock().netbios.clone()
    }

    /// Adds an enabled user `CN=<sam>,CN=Users,<base>`.
    ///
    /// # Panics
    /// When the `sAMAccountName`, UPN or DN is already taken (see [`Self::try_add`]).
    pub fn add_user(&self, sam: &str, upn: &str, password: &str) -> Account {
        self.add(NewUser::new(sam, password).upn(upn))
    }

    /// Adds an enabled user with display name (its `CN`) and `mail`.
    ///
    /// # Panics
    /// When the `sAMAccountName`, UPN or DN is already taken (see [`Self::try_add`]).
    pub fn add_user_with_mail(
        &self,
        sam: &str,
        upn: &str,
        password: &str,
        display_name: &str,
        mail: &str,
    ) -> Account {
        self.add(
            NewUser::new(sam, password)
                .upn(upn)
                .display_name(display_name)
                .mail(mail),
        )
    }

    /// Adds `user`.
    ///
    /// # Panics
    /// When the `sAMAccountName`, UPN or DN is already taken (see [`Self::try_add`]).
    pub fn add(&self, user: NewUser) -> Account {
        match self.try_add(user) {
            Ok(a) => a,
            Err(e) => panic!("InMemoryDirectory::add: {e}"),
        }
    }

    /// Adds `user` at `CN=<display name or sam>,CN=Users,<base>`, visible on every DC at once.
    /// Refused like AD refuses it when the `sAMAccountName`, the UPN or the DN is taken (and
    /// a UPN without `@` may not equal another account's `sAMAccountName`). The password is
    /// not checked against the policy.
    pub fn try_add(&self, user: NewUser) -> Result<Account, DirectoryError> {
        let mut s = self.lock();
        let cn = user
            .display_name
            .clone()
            .unwrap_or_else(|| user.sam.clone());
        let dn = format!("CN={},CN=Users,{}", dn_value(&cn), s.base_dn);
        let taken = |what: &str| DirectoryError::InvalidInput {
            what: format!("new user {:?}", user.sam),
            reason: format!("{what} is already in use; pick another"),
        };
        if user.sam.is_empty() || user.sam.chars().count() > 20 {
            return Err(DirectoryError::InvalidInput {
                what: format!("new user {:?}", user.sam),
                reason: "sAMAccountName must have 1 to 20 characters".into(),
            });
        }
        if !s.by_sam(&user.sam).is_empty() {
            return Err(taken(&format!("sAMAccountName {:?}", user.sam)));
        }
        if s.user_index(&dn).is_some() {
            return Err(taken(&format!("DN {dn:?}")));
        }
        if let Some(upn) = &user.upn {
            let clash = s.users.iter().any(|u| {
                u.account
                    .user_principal_name
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(upn))
                    || (!upn.contains('@') && u.account.sam_account_name.eq_ignore_ascii_case(upn))
            });
            if clash {
                return Err(taken(&format!("userPrincipalName {upn:?}")));
            }
        }
        s.usn += 1;
        let account = Account {
            dn: Dn(dn),
            sam_account_name: user.sam.clone(),
            user_principal_name: user.upn.clone(),
            user_account_control: user.user_account_control,
            pwd_last_set: Some(filetime_now()),
            usn_changed: Some(s.usn),
            when_changed: Some(generalized_time_now()),
        };
        s.users.push(User {
            account: account.clone(),
            password: user.password,
            display_name: user.display_name,
            mail: user.mail,
            restriction: None,
            history: vec![Snapshot {
                at: None,
                account: account.clone(),
            }],
        });
        Ok(account)
    }

    /// Removes the user `dn`; returns whether it existed.
    pub fn remove_user(&self, dn: &Dn) -> bool {
        let mut s = self.lock();
        match s.user_index(dn.as_str()) {
            Some(i) => {
                s.users.remove(i);
                true
            }
            None => false,
        }
    }

    /// The current account `dn` (as the first DC has it), if it exists.
    pub fn account(&self, dn: &Dn) -> Option<Account> {
        let s = self.lock();
        s.user_index(dn.as_str())
            .map(|i| s.users[i].account.clone())
    }

    /// All accounts.
    pub fn accounts(&self) -> Vec<Account> {
        self.lock()
            .users
            .iter()
            .map(|u| u.account.clone())
            .collect()
    }

    /// The display name and `mail` of account `dn`.
    pub fn contact(&self, dn: &Dn) -> Option<(Option<String>, Option<String>)> {
        let s = self.lock();
        s.user_index(dn.as_str())
            .map(|i| (s.users[i].display_name.clone(), s.users[i].mail.clone()))
    }

    /// Changes `userAccountControl` of `dn` behind the back of any caller (like another admin
    /// would); replicates with lag like any change. Returns whether the account exists.
    pub fn set_user_account_control(&self, dn: &Dn, uac: UserAccountControl) -> bool {
        let mut s = self.lock();
        let Some(i) = s.user_index(dn.as_str()) else {
            return false;
        };
        s.users[i].account.user_account_control = uac;
        s.touch(i);
        true
    }

    /// Makes a logon of `dn` with the right password (on an enabled account) answer `result`
    /// instead of [`AuthResult::Success`] — e.g. [`AuthResult::AccountLocked`] or
    /// [`AuthResult::PasswordExpired`]; `None` clears it. Returns whether the account exists.
    pub fn set_logon_restriction(&self, dn: &Dn, result: Option<AuthResult>) -> bool {
        let mut s = self.lock();
        let Some(i) = s.user_index(dn.as_str()) else {
            return false;
        };
        s.users[i].restriction = result;
        true
    }

    /// Sets the password policy checked by resets.
    pub fn set_password_policy(&self, policy: PasswordPolicy) {
        self.lock().policy = policy;
    }

    /// Simulates a plain `ldap://` connection without StartTLS: every password reset is
    /// refused with [`DirectoryError::InsecureTransport`].
    pub fn set_insecure_transport(&self, insecure: bool) {
        self.lock().insecure = insecure;
    }

    /// Adds an Exchange server. Without a DN it gets one under
    /// `CN=Servers,CN=Exchange Administrative Group (FYDIBOHF23SPDLT),…,CN=Microsoft Exchange,CN=Services,CN=Configuration,<base>`.
    pub fn add_exchange_server(&self, mut server: ExchangeServer) -> ExchangeServer {
        let mut s = self.lock();
        if server.dn.is_none() {
            server.dn = Some(format!(
                "CN={},CN=Servers,CN=Exchange Administrative Group (FYDIBOHF23SPDLT),CN=Administrative Groups,CN=Lab,CN=Microsoft Exchange,CN=Services,CN=Configuration,{}",
                dn_value(&server.name),
                s.base_dn
            ));
        }
        s.servers.push(server.clone());
        server
    }

    /// Removes the Exchange server called `name`; returns whether it existed.
    pub fn remove_exchange_server(&self, name: &str) -> bool {
        let mut s = self.lock();
        let before = s.servers.len();
        s.servers.retain(|x| !x.name.eq_ignore_ascii_case(name));
        before != s.servers.len()
    }

    /// Adds a domain controller `name` (DNS `name.<dns domain>`, site
    /// `Default-First-Site-Name`) that sees every change `replication_lag` after the first
    /// DC. Returns it as [`Directory::domain_controllers`] lists it.
    pub fn add_domain_controller(&self, name: &str, replication_lag: Duration) -> DomainController {
        let mut s = self.lock();
        let dc = DomainController {
            name: name.to_owned(),
            dns_host_name: format!("{}.{}", name.to_ascii_lowercase(), s.dns_domain),
            site: Some("Default-First-Site-Name".into()),
            url: None,
        };
        s.dcs.retain(|d| !d.dc.name.eq_ignore_ascii_case(name));
        s.dcs.push(Dc {
            dc: dc.clone(),
            lag: replication_lag,
            reachable: true,
        });
        dc
    }

    /// Changes the replication lag of DC `name`; returns whether it exists.
    pub fn set_replication_lag(&self, name: &str, lag: Duration) -> bool {
        self.with_dc(name, |d| d.lag = lag)
    }

    /// Makes DC `name` unreachable (or reachable again) for [`Directory::account_on`];
    /// returns whether it exists.
    pub fn set_dc_reachable(&self, name: &str, reachable: bool) -> bool {
        self.with_dc(name, |d| d.reachable = reachable)
    }

    /// Applies `change` to DC `name` (case-insensitive); whether it exists.
    fn with_dc(&self, name: &str, change: impl FnOnce(&mut Dc)) -> bool {
        let mut s = self.lock();
        let dc = s
            .dcs
            .iter_mut()
            .find(|d| d.dc.name.eq_ignore_ascii_case(name));
        dc.map(change).is_some()
    }

    /// The next `times` calls of `operation` fail with `fault` (replacing an earlier plan for
    /// the same operation). The calls still count in [`Self::calls`] and still wait for the
    /// injected latency; nothing is changed by a failed call.
    pub fn fail_next(&self, operation: Operation, times: usize, fault: Fault) {
        self.lock().faults.insert(
            operation,
            FaultPlan {
                remaining: times,
                fault,
            },
        );
    }

    /// The next `times` successful calls of a write `operation` (disable, enable, reset) are
    /// **applied**, then fail with [`DirectoryError::Timeout`] as if the answer had been lost
    /// on the way back: the case where a caller cannot know whether its change happened.
    pub fn lose_answer_next(&self, operation: Operation, times: usize) {
        self.lock().lost_answers.insert(operation, times);
    }

    /// After a write was applied: the injected lost answer, if one is planned.
    fn answer(
        &self,
        op: Operation,
        object: &str,
        outcome: ChangeOutcome,
    ) -> Result<ChangeOutcome, DirectoryError> {
        let mut s = self.lock();
        match s.lost_answers.get_mut(&op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(DirectoryError::Timeout {
                    operation: format!(
                        "{} ({object}): answer lost after the change was applied",
                        op.name()
                    ),
                    url: URL.into(),
                    after: Duration::ZERO,
                })
            }
            _ => Ok(outcome),
        }
    }

    /// Every call of `operation` waits `latency` (on the `tokio` clock) before it runs.
    pub fn set_latency(&self, operation: Operation, latency: Duration) {
        self.lock().latency.insert(operation, latency);
    }

    /// How many times `operation` was called so far.
    pub fn calls(&self, operation: Operation) -> usize {
        self.lock().calls.get(&operation).copied().unwrap_or(0)
    }

    /// Counts the call, waits the latency, then fails if a fault is planned.
    async fn enter(&self, op: Operation, object: &str) -> Result<(), DirectoryError> {
        let latency = {
            let mut s = self.lock();
            *s.calls.entry(op).or_insert(0) += 1;
            s.latency.get(&op).copied()
        };
        if let Some(d) = latency {
            tokio::time::sleep(d).await;
        }
        let mut s = self.lock();
        if let Some(plan) = s.faults.get_mut(&op) {
            if plan.remaining > 0 {
                plan.remaining -= 1;
                let fault = plan.fault;
                if plan.remaining == 0 {
                    s.faults.remove(&op);
                }
                return Err(fault.to_error(op, object));
            }
        }
        Ok(())
    }

    fn set_disabled(
        &self,
        account: &Account,
        disabled: bool,
    ) -> Result<ChangeOutcome, DirectoryError> {
        let mut s = self.lock();
        let i = s
            .user_index(account.dn.as_str())
            .ok_or_else(|| DirectoryError::NotFound {
                what: account.dn.to_string(),
            })?;
        let uac = s.users[i].account.user_account_control;
        if uac.is_disabled() == disabled {
            return Ok(ChangeOutcome::AlreadySo);
        }
        s.users[i].account.user_account_control = if disabled {
            uac.disabled()
        } else {
            uac.enabled()
        };
        s.touch(i);
        Ok(ChangeOutcome::Applied)
    }
}

#[async_trait]
impl Directory for InMemoryDirectory {
    async fn find_account(&self, user: &UserRef) -> Result<Account, DirectoryError> {
        self.enter(Operation::FindAccount, &user.to_string())
            .await?;
        let s = self.lock();
        let found = s.matches(user)?;
        let i = crate::error::exactly_one(user, &found, |&i| s.users[i].account.dn.to_string())?;
        Ok(s.users[*i].account.clone())
    }

    async fn disable_account(&self, account: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.enter(Operation::DisableAccount, account.dn.as_str())
            .await?;
        let outcome = self.set_disabled(account, true)?;
        self.answer(Operation::DisableAccount, account.dn.as_str(), outcome)
    }

    async fn enable_account(&self, account: &Account) -> Result<ChangeOutcome, DirectoryError> {
        self.enter(Operation::EnableAccount, account.dn.as_str())
            .await?;
        let outcome = self.set_disabled(account, false)?;
        self.answer(Operation::EnableAccount, account.dn.as_str(), outcome)
    }

    async fn reset_password(
        &self,
        account: &Account,
        new: &SecretString,
    ) -> Result<ChangeOutcome, DirectoryError> {
        self.enter(Operation::ResetPassword, account.dn.as_str())
            .await?;
        let mut s = self.lock();
        if s.insecure {
            return Err(DirectoryError::InsecureTransport {
                operation: format!("password reset of {}", account.dn),
                url: "ldap://in-memory-directory:389".into(),
            });
        }
        let i = s
            .user_index(account.dn.as_str())
            .ok_or_else(|| DirectoryError::NotFound {
                what: account.dn.to_string(),
            })?;
        // Like LdapDirectory, whatever the policy: an empty password is a caller's mistake.
        if new.expose_secret().is_empty() {
            return Err(DirectoryError::InvalidInput {
                what: format!("new password for {}", account.dn),
                reason: "empty; use generate_password()".into(),
            });
        }
        let sam = s.users[i].account.sam_account_name.clone();
        if let Some(reason) = s.policy.violation(&sam, new.expose_secret()) {
            return Err(DirectoryError::PolicyViolation {
                operation: format!("password reset of {}", account.dn),
                reason,
            });
        }
        s.users[i].password = new.clone();
        s.users[i].account.pwd_last_set = Some(filetime_now());
        s.touch(i);
        drop(s);
        self.answer(
            Operation::ResetPassword,
            account.dn.as_str(),
            ChangeOutcome::Applied,
        )
    }

    async fn authenticate(
        &self,
        user: &str,
        password: &SecretString,
    ) -> Result<AuthResult, DirectoryError> {
        self.enter(Operation::Authenticate, user).await?;
        let s = self.lock();
        if user.chars().any(char::is_control) {
            return Ok(AuthResult::BadCredentials);
        }
        let Some(i) = s.bind_target(user.trim()) else {
            return Ok(AuthResult::BadCredentials);
        };
        let u = &s.users[i];
        let given = password.expose_secret();
        if given.is_empty() || given != u.password.expose_secret() {
            return Ok(AuthResult::BadCredentials);
        }
        if u.account.is_disabled() {
            return Ok(AuthResult::AccountDisabled);
        }
        Ok(u.restriction.unwrap_or(AuthResult::Success))
    }

    async fn exchange_servers(&self) -> Result<Vec<ExchangeServer>, DirectoryError> {
        self.enter(Operation::ExchangeServers, "configuration partition")
            .await?;
        Ok(self.lock().servers.clone())
    }

    async fn domain_controllers(&self) -> Result<Vec<DomainController>, DirectoryError> {
        self.enter(Operation::DomainControllers, "configuration partition")
            .await?;
        Ok(self.lock().dcs.iter().map(|d| d.dc.clone()).collect())
    }

    async fn account_on(&self, dc: &DomainController, dn: &Dn) -> Result<Account, DirectoryError> {
        self.enter(Operation::AccountOn, &format!("{dn} on {}", dc.name))
            .await?;
        crate::escape::parse_dn(dn.as_str())?;
        let s = self.lock();
        let d = s
            .dcs
            .iter()
            .find(|d| d.dc.name.eq_ignore_ascii_case(&dc.name))
            .ok_or_else(|| DirectoryError::InvalidInput {
                what: format!("domain controller {:?}", dc.name),
                reason:
                    "not a domain controller of this directory; use one from domain_controllers()"
                        .into(),
            })?;
        if !d.reachable {
            return Err(DirectoryError::Unreachable {
                url: format!("ldaps://{}:636", d.dc.dns_host_name),
                detail: "domain controller is down (simulated)".into(),
                source: None,
            });
        }
        let not_found = || DirectoryError::NotFound {
            what: format!("{dn} on {}", d.dc.name),
        };
        let i = s.user_index(dn.as_str()).ok_or_else(not_found)?;
        let history = &s.users[i].history;
        if d.lag.is_zero() {
            return Ok(s.users[i].account.clone());
        }
        let now = Instant::now();
        history
            .iter()
            .rev()
            .find(|snap| match snap.at {
                None => true,
                Some(at) => now.saturating_duration_since(at) >= d.lag,
            })
            .map(|snap| snap.account.clone())
            .ok_or_else(not_found)
    }
}

/// Now as a Windows FILETIME (100 ns intervals since 1601-01-01).
fn filetime_now() -> i64 {
    const EPOCH_DIFF_SECS: i64 = 11_644_473_600;
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64 + EPOCH_DIFF_SECS) * 10_000_000 + i64::from(d.subsec_nanos() / 100)
}

/// Now as an LDAP generalized time (`20240131120000.0Z`).
fn generalized_time_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}.0Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn policy() {
        let p = PasswordPolicy::default();
        assert!(p.violation("bob", "Sh0rt!").is_some());
        assert!(p.violation("bob", "alllowercase").is_some());
        assert!(p.violation("bob", "Xbob-Passw0rd").is_some());
        assert!(p.violation("bob", "N3w-Secret!x").is_none());
    }

    #[test]
    fn debug_has_no_password() {
        let dir = InMemoryDirectory::new();
        dir.add_user("bob", "bob@lab.example.test", "Sup3r-Secret-Value");
        let u = NewUser::new("x", "Sup3r-Secret-Value");
        assert!(!format!("{dir:?}{u:?}").contains("Sup3r"));
    }

    #[tokio::test(start_paused = true)]
    async fn replication_lag_and_unreachable_dc() {
        let dir = InMemoryDirectory::new();
        let bob = dir.add_user("bob", "bob@lab.example.test", "Old-Passw0rd!");
        let dc2 = dir.add_domain_controller("DC2", Duration::from_secs(5));
        let dcs = dir.domain_controllers().await.unwrap();
        assert_eq!(dcs.len(), 2);
        dir.disable_account(&bob).await.unwrap();
        assert!(dir
            .account_on(&dcs[0], &bob.dn)
            .await
            .unwrap()
            .is_disabled());
        assert!(!dir.account_on(&dc2, &bob.dn).await.unwrap().is_disabled());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(dir.account_on(&dc2, &bob.dn).await.unwrap().is_disabled());
        dir.set_dc_reachable("DC2", false);
        let e = dir.account_on(&dc2, &bob.dn).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("dc2.lab.example.test"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn faults_and_latency() {
        let dir = InMemoryDirectory::new();
        let bob = dir.add_user("bob", "bob@lab.example.test", "Old-Passw0rd!");
        dir.fail_next(Operation::DisableAccount, 2, Fault::Timeout);
        assert!(matches!(
            dir.disable_account(&bob).await,
            Err(DirectoryError::Timeout { .. })
        ));
        assert!(matches!(
            dir.disable_account(&bob).await,
            Err(DirectoryError::Timeout { .. })
        ));
        assert!(
            !dir.account(&bob.dn).unwrap().is_disabled(),
            "a failed call changed nothing"
        );
        assert_eq!(
            dir.disable_account(&bob).await.unwrap(),
            ChangeOutcome::Applied
        );
        assert_eq!(dir.calls(Operation::DisableAccount), 3);
        dir.set_latency(Operation::FindAccount, Duration::from_millis(700));
        let t0 = Instant::now();
        dir.find_account(&UserRef::parse("bob").unwrap())
            .await
            .unwrap();
        assert_eq!(t0.elapsed(), Duration::from_millis(700));
    }
}
