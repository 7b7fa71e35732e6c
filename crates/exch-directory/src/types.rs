//! Accounts, user references and outcomes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DirectoryError;

/// A distinguished name as the directory returned it (or as the caller gave it, validated).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Dn(pub String);

impl Dn {
    /// The DN text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the caller names a user. See [`UserRef::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum UserRef {
    /// `user@upn.suffix` (matched against `userPrincipalName`, then `mail`).
    Upn(String),
    /// `DOMAIN\user` (NetBIOS domain + `sAMAccountName`).
    DownLevel {
        /// NetBIOS domain name.
        domain: String,
        /// `sAMAccountName`.
        sam: String,
    },
    /// Bare `sAMAccountName`.
    Sam(String),
    /// A distinguished name (`CN=…,DC=…`).
    Dn(Dn),
}

impl UserRef {
    /// Parses `bob@corp.example`, `CORP\bob`, `bob` or `CN=Bob,CN=Users,DC=corp,DC=example`.
    pub fn parse(input: &str) -> Result<UserRef, DirectoryError> {
        types_parse::parse(input)
    }
}

#[path = "userref.rs"]
mod types_parse;

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRef::Upn(u) => f.write_str(u),
            UserRef::DownLevel { domain, sam } => write!(f, "{domain}\\{sam}"),
            UserRef::Sam(s) => f.write_str(s),
            UserRef::Dn(d) => f.write_str(d.as_str()),
        }
    }
}

/// The `userAccountControl` bit mask. Unknown bits are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserAccountControl(pub u32);

impl UserAccountControl {
    /// ACCOUNTDISABLE.
    pub const ACCOUNTDISABLE: u32 = 0x2;
    /// LOCKOUT (informational; AD computes lockout elsewhere).
    pub const LOCKOUT: u32 = 0x10;
    /// PASSWD_NOTREQD.
    pub const PASSWD_NOTREQD: u32 = 0x20;
    /// NORMAL_ACCOUNT.
    pub const NORMAL_ACCOUNT: u32 = 0x200;
    /// DONT_EXPIRE_PASSWORD.
    pub const DONT_EXPIRE_PASSWORD: u32 = 0x1_0000;
    /// PASSWORD_EXPIRED.
    pub const PASSWORD_EXPIRED: u32 = 0x80_0000;

    /// Whether the account is disabled.
    pub fn is_disabled(self) -> bool {
        self.0 & Self::ACCOUNTDISABLE != 0
    }

    /// The same flags with ACCOUNTDISABLE set.
    pub fn disabled(self) -> Self {
        UserAccountControl(self.0 | Self::ACCOUNTDISABLE)
    }

    /// The same flags with ACCOUNTDISABLE cleared.
    pub fn enabled(self) -> Self {
        UserAccountControl(self.0 & !Self::ACCOUNTDISABLE)
    }
}

impl fmt::Debug for UserAccountControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserAccountControl({:#x})", self.0)
    }
}

/// A user account as read from one domain controller.
///
/// Backends build it with [`Account::new`] and the `with_…` methods (more attributes may be
/// added in minor releases):
///
/// ```
/// use exch_directory::{Account, Dn, UserAccountControl};
///
/// let bob = Account::new(Dn("CN=Bob,CN=Users,DC=corp,DC=example".into()), "bob")
///     .with_user_principal_name("bob@corp.example")
///     .with_user_account_control(UserAccountControl(0x202));
/// assert!(bob.is_disabled());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Account {
    /// Distinguished name.
    pub dn: Dn,
    /// `sAMAccountName`.
    pub sam_account_name: String,
    /// `userPrincipalName`, if set.
    pub user_principal_name: Option<String>,
    /// `userAccountControl`.
    pub user_account_control: UserAccountControl,
    /// `pwdLastSet` (Windows FILETIME, 100 ns since 1601), if readable.
    pub pwd_last_set: Option<i64>,
    /// `uSNChanged` on the DC that answered, if readable.
    pub usn_changed: Option<u64>,
    /// `whenChanged` (generalized time text), if readable.
    pub when_changed: Option<String>,
}

impl Account {
    /// The account `dn` with `sAMAccountName` `sam_account_name`: an enabled normal account
    /// (`userAccountControl` = `NORMAL_ACCOUNT`) and no other attribute read.
    pub fn new(dn: Dn, sam_account_name: impl Into<String>) -> Self {
        Account {
            dn,
            sam_account_name: sam_account_name.into(),
            user_principal_name: None,
            user_account_control: UserAccountControl(UserAccountControl::NORMAL_ACCOUNT),
            pwd_last_set: None,
            usn_changed: None,
            when_changed: None,
        }
    }

    /// With this `userPrincipalName`.
    pub fn with_user_principal_name(mut self, upn: impl Into<String>) -> Self {
        self.user_principal_name = Some(upn.into());
        self
    }

    /// With this `userAccountControl`.
    pub fn with_user_account_control(mut self, uac: UserAccountControl) -> Self {
        self.user_account_control = uac;
        self
    }

    /// With this `pwdLastSet` (Windows FILETIME).
    pub fn with_pwd_last_set(mut self, filetime: i64) -> Self {
        self.pwd_last_set = Some(filetime);
        self
    }

    /// With this `uSNChanged`.
    pub fn with_usn_changed(mut self, usn: u64) -> Self {
        self.usn_changed = Some(usn);
        self
    }

    /// With this `whenChanged` (generalized time text).
    pub fn with_when_changed(mut self, when: impl Into<String>) -> Self {
        self.when_changed = Some(when.into());
        self
    }

    /// Whether the account is disabled.
    pub fn is_disabled(&self) -> bool {
        self.user_account_control.is_disabled()
    }
}

/// Result of a change request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChangeOutcome {
    /// The directory was changed.
    Applied,
    /// Nothing to do: it was already so (e.g. already disabled).
    AlreadySo,
}

/// Result of a logon attempt (AD bind error `data` codes decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AuthResult {
    /// Logon accepted.
    Success,
    /// Unknown user or wrong password (`data 52e`, also `525`).
    BadCredentials,
    /// Account disabled (`data 533`).
    AccountDisabled,
    /// Account expired (`data 701`).
    AccountExpired,
    /// Password expired (`data 532`).
    PasswordExpired,
    /// Password must be changed at next logon (`data 773`).
    MustChangePassword,
    /// Account locked out (`data 775`).
    AccountLocked,
    /// Logon not permitted at this time or from this workstation (`data 530 / 531`).
    LogonRestricted,
}

impl AuthResult {
    /// Whether the logon was accepted.
    pub fn is_success(self) -> bool {
        self == AuthResult::Success
    }
}

/// A domain controller. Built with [`DomainController::new`] and the `with_…` methods.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DomainController {
    /// Server name (`cn` of the server object).
    pub name: String,
    /// DNS host name.
    pub dns_host_name: String,
    /// AD site, if known.
    pub site: Option<String>,
    /// LDAP URL to reach it directly (`ldaps://host:636`); backends may override.
    pub url: Option<String>,
}

impl DomainController {
    /// The DC `name` (`cn` of its server object) at `dns_host_name`, site and URL unknown.
    ///
    /// ```
    /// use exch_directory::DomainController;
    ///
    /// let dc = DomainController::new("DC2", "dc2.corp.example")
    ///     .with_site("Branch")
    ///     .with_url("ldaps://dc2.corp.example:636");
    /// assert_eq!(dc.site.as_deref(), Some("Branch"));
    /// ```
    pub fn new(name: impl Into<String>, dns_host_name: impl Into<String>) -> Self {
        DomainController {
            name: name.into(),
            dns_host_name: dns_host_name.into(),
            site: None,
            url: None,
        }
    }

    /// In this AD site.
    pub fn with_site(mut self, site: impl Into<String>) -> Self {
        self.site = Some(site.into());
        self
    }

    /// Reached directly at this LDAP URL (`ldaps://host:636`).
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }
}
