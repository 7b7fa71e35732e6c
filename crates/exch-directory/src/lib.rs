#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod adcodes;
pub mod conformance;
mod error;
pub mod escape;
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
}
