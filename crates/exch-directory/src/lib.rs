#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adcodes;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod error;
pub mod escape;
pub mod layers;
mod ldap;
mod memory;
mod password;
mod types;

pub use adcodes::decode_bind_failure;
pub use error::DirectoryError;
pub use ldap::{LdapDirectory, LdapDirectoryBuilder};
pub use memory::{Fault, InMemoryDirectory, NewUser, Operation, PasswordPolicy};
pub use password::{generate_password, GENERATED_PASSWORD_LEN};
pub use types::{
    Account, AuthResult, ChangeOutcome, Dn, DomainController, UserAccountControl, UserRef,
};

use async_trait::async_trait;
use exch_core::ExchangeServer;
use secrecy::SecretString;
use std::fmt::Debug;

/// A directory that holds the accounts and the Exchange topology.
///
/// Backends are held as `Arc<dyn Directory>`. Every method is a single logical operation with
/// its own timeout in the backend; errors are [`DirectoryError`] kinds, never backend types.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Directory: Debug + Send + Sync + 'static {
    /// Finds exactly one account for `user`, or [`DirectoryError::NotFound`] /
    /// [`DirectoryError::Ambiguous`] — never "the first match".
    async fn find_account(&self, user: &UserRef) -> Result<Account, DirectoryError>;

    /// Sets `ACCOUNTDISABLE` (0x2), keeping every other `userAccountControl` bit.
    /// [`ChangeOutcome::AlreadySo`] when it was already disabled.
    async fn disable_account(&self, account: &Account) -> Result<ChangeOutcome, DirectoryError>;

    /// Re-enables the account (clears 0x2, keeping every other bit). Used by tests and rollbacks.
    async fn enable_account(&self, account: &Account) -> Result<ChangeOutcome, DirectoryError>;

    /// Administrative password reset. Refused with [`DirectoryError::InsecureTransport`] before
    /// anything is sent when the connection is not encrypted.
    async fn reset_password(
        &self,
        account: &Account,
        new: &SecretString,
    ) -> Result<ChangeOutcome, DirectoryError>;

    /// What IIS does on a token-cache miss: a logon with `user` (UPN, `DOMAIN\user` or DN) and
    /// `password`. A refused logon is `Ok(AuthResult::…)`, not an error.
    async fn authenticate(
        &self,
        user: &str,
        password: &SecretString,
    ) -> Result<AuthResult, DirectoryError>;

    /// Exchange servers registered in the configuration partition.
    async fn exchange_servers(&self) -> Result<Vec<ExchangeServer>, DirectoryError>;

    /// Domain controllers of the domain (from `nTDSDSA` objects).
    async fn domain_controllers(&self) -> Result<Vec<DomainController>, DirectoryError>;

    /// Reads the account `dn` on one given domain controller (for convergence checks).
    async fn account_on(&self, dc: &DomainController, dn: &Dn) -> Result<Account, DirectoryError>;

    /// The security checks this backend was told to skip or cannot make (an unencrypted
    /// connection, certificate verification off), one sentence each naming the cause. Empty by
    /// default; the orchestrator copies them into its report.
    fn security_notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Finds the accounts of many users (bulk work): one result per user, in order, each what
    /// [`find_account`](Self::find_account) returns for it. The default asks one user at a
    /// time; [`LdapDirectory`] sends one search per chunk of users.
    async fn find_accounts(&self, users: &[UserRef]) -> Vec<Result<Account, DirectoryError>> {
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            out.push(self.find_account(user).await);
        }
        out
    }

    /// Reads the accounts `dns` on one domain controller (bulk convergence checks): one result
    /// per DN, in order, each what [`account_on`](Self::account_on) returns for it. The default
    /// reads one at a time; [`LdapDirectory`] sends one search per chunk of DNs.
    async fn accounts_on(
        &self,
        dc: &DomainController,
        dns: &[Dn],
    ) -> Vec<Result<Account, DirectoryError>> {
        let mut out = Vec::with_capacity(dns.len());
        for dn in dns {
            out.push(self.account_on(dc, dn).await);
        }
        out
    }

    /// Disables the account (when `disable`) and resets its password (when `new_password` is
    /// given) in as few round trips as the backend can, for bulk incident response.
    ///
    /// `account` is the account as the caller last read it: backends may use its
    /// `userAccountControl` as the expected value of a guarded swap (delete the old value, add
    /// the new one) and must then fall back to the one-action methods when it is stale, so the
    /// outcome is the same as [`disable_account`](Self::disable_account) followed by
    /// [`reset_password`](Self::reset_password) — which is what the default does. Each
    /// action's result is reported on its own.
    async fn disable_and_reset<'a>(
        &self,
        account: &Account,
        disable: bool,
        new_password: Option<&'a SecretString>,
    ) -> AccountChanges {
        one_at_a_time(self, account, disable, new_password).await
    }
}

/// [`Directory::disable_and_reset`] with the one-action methods.
pub(crate) async fn one_at_a_time<D: Directory + ?Sized>(
    directory: &D,
    account: &Account,
    disable: bool,
    new_password: Option<&SecretString>,
) -> AccountChanges {
    let disable = match disable {
        true => Some(directory.disable_account(account).await),
        false => None,
    };
    let reset_password = match new_password {
        Some(p) => Some(directory.reset_password(account, p).await),
        None => None,
    };
    AccountChanges {
        disable,
        reset_password,
    }
}

/// What [`Directory::disable_and_reset`] did, per action (`None`: not asked for).
/// Error texts never contain the password. Built with [`AccountChanges::new`].
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct AccountChanges {
    /// The result of disabling the account.
    pub disable: Option<Result<ChangeOutcome, DirectoryError>>,
    /// The result of the password reset.
    pub reset_password: Option<Result<ChangeOutcome, DirectoryError>>,
}

impl AccountChanges {
    /// The result of each action (`None`: not asked for).
    pub fn new(
        disable: Option<Result<ChangeOutcome, DirectoryError>>,
        reset_password: Option<Result<ChangeOutcome, DirectoryError>>,
    ) -> Self {
        AccountChanges {
            disable,
            reset_password,
        }
    }
}
