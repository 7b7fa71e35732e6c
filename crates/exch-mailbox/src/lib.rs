#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod error;
mod memory;
mod parse;
pub mod script;
pub mod support;
mod types;
mod winrm;

pub use error::MailboxError;
pub use memory::{InMemoryMailboxes, MailboxCall, MailboxOperation, MailboxState, WipeRequest};
pub use types::{
    CasChange, CasProtocol, CasSettings, CasUpdate, DeviceAccessState, DeviceBlock, Forwarding,
    ForwardingChange, ForwardingReport, InboxRule, ItemResult, ItemStatus, MailboxId, MobileDevice,
    MobileDevices, RuleAction, RuleChange, RuleConcern, WipeMode, WipeReport,
};
pub use winrm::WinRmMailbox;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use exch_core::ExchangeServer;

/// The mailbox-side steps of a revocation: protocol lockdown, mobile devices, forwarding and
/// inbox rules — run through one Exchange server (`server`), which also names every error.
///
/// Backends are held as `Arc<dyn MailboxAdmin>`. Every method checks its input and the
/// server ([`support`]) before sending anything; reads change nothing; every change reads the
/// state before and after and returns both, so that it can be reported and undone.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MailboxAdmin: Debug + Send + Sync + 'static {
    /// Reads the mailbox's protocol access (`Get-CASMailbox`).
    async fn cas_settings(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<CasSettings, MailboxError>;

    /// Allows or refuses protocols (`Set-CASMailbox`); the others are left as they are.
    /// Returns the settings before (give them to [`restore_cas`](Self::restore_cas) to undo)
    /// and as read back after. An empty change is [`MailboxError::InvalidInput`].
    async fn set_cas(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        change: &CasChange,
    ) -> Result<CasUpdate, MailboxError>;

    /// Puts protocol access back as `before` says ([`CasSettings::restore_values`]).
    async fn restore_cas(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        before: &CasSettings,
    ) -> Result<CasUpdate, MailboxError>;

    /// Lists the mailbox's mobile devices (`Get-MobileDevice -Mailbox`) and its blocked
    /// device IDs.
    async fn mobile_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<MobileDevices, MailboxError>;

    /// Sends a remote wipe (`Clear-MobileDevice`) to each of the mailbox's devices named by
    /// [`MobileDevice::identity`]; one result per identity, in order, a duplicate (ignoring
    /// case) once (a device the mailbox does not have is [`ItemStatus::NotFound`]: devices of
    /// other mailboxes are never touched). An empty list is [`MailboxError::InvalidInput`].
    /// Send wipes **before** [`block_devices`](Self::block_devices): a blocked device no longer
    /// connects, so it never receives the wipe. [`WipeMode::AccountOnly`] needs Exchange 2016
    /// or later ([`support::check_wipe`]); it is refused, never turned into a full wipe.
    async fn wipe_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        identities: &[String],
        mode: WipeMode,
    ) -> Result<WipeReport, MailboxError>;

    /// Adds [`MobileDevice::device_id`]s to the mailbox's `ActiveSyncBlockedDeviceIDs` (an ID
    /// already there, ignoring case, is not added twice) and writes the full list back
    /// (`Set-CASMailbox -ActiveSyncBlockedDeviceIDs`). Returns the
    /// list before (give it to [`restore_blocked_devices`](Self::restore_blocked_devices) to
    /// undo) and after.
    async fn block_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        device_ids: &[String],
    ) -> Result<DeviceBlock, MailboxError>;

    /// Writes `ActiveSyncBlockedDeviceIDs` as exactly `device_ids` (empty: none).
    async fn restore_blocked_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        device_ids: &[String],
    ) -> Result<DeviceBlock, MailboxError>;

    /// Finds the mailbox's forwarding (`Get-Mailbox`) and its inbox rules that forward,
    /// redirect or delete (`Get-InboxRule -Mailbox`). Changes nothing.
    async fn forwarding(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<ForwardingReport, MailboxError>;

    /// Clears the mailbox's forwarding (`Set-Mailbox -ForwardingSmtpAddress $null
    /// -ForwardingAddress $null -DeliverToMailboxAndForward $false`), nothing else.
    async fn remove_forwarding(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<ForwardingChange, MailboxError>;

    /// Disables or removes the mailbox's inbox rules named by [`InboxRule::identity`]; one
    /// result per identity, in order, a duplicate (ignoring case) once (a rule the mailbox
    /// does not have is [`ItemStatus::NotFound`]); the rules of concern as read back
    /// afterwards. An empty list is [`MailboxError::InvalidInput`]. Note that
    /// Exchange deletes a mailbox's client-only Outlook rules whenever a rule is changed
    /// through Exchange PowerShell (Microsoft's documented behaviour): change rules only when
    /// asked.
    async fn change_inbox_rules(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        identities: &[String],
        action: RuleAction,
    ) -> Result<RuleChange, MailboxError>;

    /// The security checks this backend was told to skip, one sentence each (empty by
    /// default); the orchestrator copies them into its report.
    fn security_notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// `Arc<A>` and `Box<A>` forward every method to `A`: each method is listed once, by its name,
/// the arguments after `server` and `mailbox`, and what it returns.
macro_rules! forward_mailbox_admin {
    ($($ptr:ident),+) => {
        $(forward_mailbox_admin!(@impl $ptr {
            cas_settings() -> CasSettings;
            set_cas(change: &CasChange) -> CasUpdate;
            restore_cas(before: &CasSettings) -> CasUpdate;
            mobile_devices() -> MobileDevices;
            wipe_devices(identities: &[String], mode: WipeMode) -> WipeReport;
            block_devices(device_ids: &[String]) -> DeviceBlock;
            restore_blocked_devices(device_ids: &[String]) -> DeviceBlock;
            forwarding() -> ForwardingReport;
            remove_forwarding() -> ForwardingChange;
            change_inbox_rules(identities: &[String], action: RuleAction) -> RuleChange;
        });)+
    };
    (@impl $ptr:ident { $($method:ident($($arg:ident: $ty:ty),*) -> $out:ty;)* }) => {
        #[async_trait]
        impl<A: MailboxAdmin + ?Sized> MailboxAdmin for $ptr<A> {
            $(
                async fn $method(
                    &self,
                    server: &ExchangeServer,
                    mailbox: &MailboxId,
                    $($arg: $ty),*
                ) -> Result<$out, MailboxError> {
                    (**self).$method(server, mailbox, $($arg),*).await
                }
            )*
            fn security_notes(&self) -> Vec<String> {
                (**self).security_notes()
            }
        }
    };
}

forward_mailbox_admin!(Arc, Box);
