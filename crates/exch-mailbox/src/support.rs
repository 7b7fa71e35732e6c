//! What a server can do, and the checks every backend makes before it does anything (the
//! caller's input, the server's version and role). One place, so that the fake refuses exactly
//! what the WinRM backend refuses, and a plan can ask before a run.

use exch_core::ExchangeServer;

use crate::{CasChange, MailboxError, WipeMode};

/// Refuses a value with a NUL character: no PowerShell script can carry one.
pub(crate) fn no_nul(what: &str, value: &str) -> Result<(), MailboxError> {
    if value.contains('\0') {
        return Err(MailboxError::InvalidInput {
            what: what.to_owned(),
            reason: format!(
                "{value:?} contains a NUL character, which no PowerShell command line can carry; nothing was sent"
            ),
        });
    }
    Ok(())
}

/// A list of identities to act on: at least one, none empty or with a NUL; duplicates
/// (ignoring case, as Exchange compares them) dropped, first kept, order kept.
pub(crate) fn items(what: &str, items: &[String]) -> Result<Vec<String>, MailboxError> {
    if items.is_empty() {
        return Err(MailboxError::InvalidInput {
            what: what.to_owned(),
            reason: "the list is empty; name at least one".into(),
        });
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if item.is_empty() {
            return Err(MailboxError::InvalidInput {
                what: what.to_owned(),
                reason: "an entry is empty".into(),
            });
        }
        no_nul(what, item)?;
        if !crate::types::contains_ci(&out, item) {
            out.push(item.clone());
        }
    }
    Ok(out)
}

/// A block list to write back as it is: may be empty; no entry empty or with a NUL.
pub(crate) fn block_list(items: &[String]) -> Result<Vec<String>, MailboxError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    self::items("device IDs", items)
}

/// Refuses an empty [`CasChange`].
pub(crate) fn cas_change(change: &CasChange) -> Result<(), MailboxError> {
    if change.is_empty() {
        return Err(MailboxError::InvalidInput {
            what: "CAS change".into(),
            reason: "it names no protocol; use CasChange::lockdown() or disable(..)".into(),
        });
    }
    Ok(())
}

/// Whether `server` can run the mailbox operations: not an Edge Transport server (no
/// mailboxes, no Exchange Management Shell over the organization), and Exchange 2013 or later
/// when its version is known (the snap-in `Microsoft.Exchange.Management.PowerShell.SnapIn`
/// and the `*-MobileDevice` cmdlets; Exchange 2010 names them otherwise). Nothing is sent to a
/// server that cannot.
///
/// ```
/// use exch_core::{ExchangeServer, ExchangeVersion};
/// use exch_mailbox::support;
/// let ex2010 = ExchangeServer::new("EX2010", "ex2010.corp.example").with_version(ExchangeVersion::new(14, 3, 123));
/// assert!(support::check_server(&ex2010).is_err());
/// let ex2019 = ExchangeServer::new("EX2019", "ex2019.corp.example").with_version(ExchangeVersion::new(15, 2, 1258));
/// assert!(support::check_server(&ex2019).is_ok());
/// ```
pub fn check_server(server: &ExchangeServer) -> Result<(), MailboxError> {
    let unsupported = |reason: String| MailboxError::Unsupported {
        server: server.name.clone(),
        what: "mailbox administration".into(),
        reason,
    };
    if server.is_edge() {
        return Err(unsupported(
            "it is an Edge Transport server (no mailboxes); pick a Mailbox server".into(),
        ));
    }
    if let Some(v) = server.version {
        if v.major < 15 {
            return Err(unsupported(format!(
                "it runs {} ({v}); the Exchange Management Shell snap-in and the mobile-device cmdlets used here are those of Exchange 2013 and later; pick an Exchange 2013 or later server",
                v.product()
            )));
        }
    }
    Ok(())
}

/// Whether `server` can send a wipe of `mode`: [`WipeMode::AccountOnly`] (`-AccountOnly`)
/// exists on Exchange 2016 and later (Microsoft's `Clear-MobileDevice` reference lists it for
/// Exchange Server 2016, 2019 and Exchange Online, not 2013). On Exchange 2013, or when the
/// version is unknown, an account-only wipe is refused rather than turned into a full one.
///
/// ```
/// use exch_core::{ExchangeServer, ExchangeVersion};
/// use exch_mailbox::{support, WipeMode};
/// let ex2013 = ExchangeServer::new("EX2013", "ex2013.corp.example").with_version(ExchangeVersion::new(15, 0, 1497));
/// assert!(support::check_wipe(&ex2013, WipeMode::AccountOnly).is_err());
/// assert!(support::check_wipe(&ex2013, WipeMode::Full).is_ok());
/// let ex2016 = ExchangeServer::new("EX2016", "ex2016.corp.example").with_version(ExchangeVersion::new(15, 1, 2507));
/// assert!(support::check_wipe(&ex2016, WipeMode::AccountOnly).is_ok());
/// ```
pub fn check_wipe(server: &ExchangeServer, mode: WipeMode) -> Result<(), MailboxError> {
    check_server(server)?;
    if mode == WipeMode::Full {
        return Ok(());
    }
    let unsupported = |reason: String| MailboxError::Unsupported {
        server: server.name.clone(),
        what: "an account-only wipe (Clear-MobileDevice -AccountOnly)".into(),
        reason,
    };
    match server.version {
        None => Err(unsupported(
            "its Exchange version is unknown, and -AccountOnly exists only on Exchange 2016 and later; give the server's version, pick another server, or ask for a full wipe explicitly".into(),
        )),
        Some(v) if (v.major, v.minor) < (15, 1) => {
            Err(unsupported(format!(
                "it runs {} ({v}), which has no -AccountOnly (Exchange 2016 and later); pick an Exchange 2016 or later server, or ask for a full wipe explicitly",
                v.product()
            )))
        }
        Some(_) => Ok(()),
    }
}
