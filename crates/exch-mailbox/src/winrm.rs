//! [`WinRmMailbox`]: the [`MailboxAdmin`] that runs the Exchange Management Shell on an
//! Exchange server over exch-iis's WinRM transport.

use async_trait::async_trait;
use exch_core::ExchangeServer;
use exch_iis::{script as iis_script, CacheFlusher, IisError, WinRmFlusher};
use serde_json::Value;
use tracing::Instrument;

use crate::error::clip;
use crate::parse::Ctx;
use crate::{
    script, support, CasChange, CasSettings, CasUpdate, DeviceBlock, ForwardingChange,
    ForwardingReport, MailboxAdmin, MailboxError, MailboxId, MobileDevices, RuleAction, RuleChange,
    WipeMode, WipeReport,
};

/// Runs the mailbox operations as Exchange Management Shell scripts ([`crate::script`]) on
/// the Exchange server each call names, one script per operation, over the WinRM transport of
/// an [`exch_iis::WinRmFlusher`] — with its security properties (NTLM or Kerberos with message
/// encryption over HTTP, or HTTPS trusting your CA; no Basic unless opted in), its timeouts,
/// and its authenticated sessions (a clone of the flusher that flushes the caches shares
/// them).
///
/// Each script loads the snap-in `Microsoft.Exchange.Management.PowerShell.SnapIn` locally on
/// that server. **The local snap-in bypasses RBAC**: the cmdlets run with the Active
/// Directory and mailbox rights of the WinRM account itself, not with the roles Exchange
/// would grant it over remote PowerShell. Use an account that holds the **Recipient
/// Management** role group (CAS settings, devices, forwarding, inbox rules) or **Organization
/// Management**, and is a local administrator of the server (WinRM's default access). The
/// server must run Exchange 2013 or later with the management tools (the snap-in's name and
/// the `*-MobileDevice` cmdlets); an Edge Transport or Exchange 2010 server is refused before
/// anything is sent ([`support::check_server`]).
///
/// Every caller value reaches PowerShell only as a single-quoted literal; a value with a NUL,
/// or a request whose command line would exceed 8191 characters, is refused before anything
/// is sent ([`MailboxError::InvalidInput`], [`MailboxError::ScriptTooLong`]).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use exch_core::{ExchangeServer, ExchangeVersion};
/// use exch_iis::WinRmFlusher;
/// use exch_mailbox::{CasChange, MailboxAdmin, MailboxId, WinRmMailbox};
/// use secrecy::SecretString;
///
/// let winrm = WinRmFlusher::builder()
///     .https(true)
///     .ca_file("corp-ca.pem")
///     .credentials(r"CORP\exadmin", SecretString::from(std::env::var("PW")?))
///     .build()?;
/// let mailboxes = WinRmMailbox::new(winrm);
/// let ex01 = ExchangeServer::new("EX01", "ex01.corp.example").with_version(ExchangeVersion::new(15, 2, 1258));
/// let bob = MailboxId::new("bob@corp.example")?;
/// let update = mailboxes.set_cas(&ex01, &bob, &CasChange::lockdown()).await?;
/// assert!(update.after.open_protocols().is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WinRmMailbox {
    winrm: WinRmFlusher,
}

impl WinRmMailbox {
    /// Runs the scripts over `winrm`'s transport and settings.
    pub fn new(winrm: WinRmFlusher) -> WinRmMailbox {
        WinRmMailbox { winrm }
    }

    /// The transport.
    pub fn winrm(&self) -> &WinRmFlusher {
        &self.winrm
    }

    /// Runs `script_text` for `operation` on `server` and returns the document of a script
    /// whose mailbox matched exactly once, with the context that parses it.
    async fn run<'a>(
        &self,
        server: &'a ExchangeServer,
        mailbox: &'a MailboxId,
        operation: &'static str,
        script_text: String,
    ) -> Result<(Ctx<'a>, Value), MailboxError> {
        support::check_server(server)?;
        let length = iis_script::command_line_len(&script_text);
        if length > iis_script::MAX_COMMAND_LINE {
            return Err(MailboxError::ScriptTooLong {
                server: server.name.clone(),
                mailbox: mailbox.as_str().to_owned(),
                operation: operation.to_owned(),
                length,
                limit: iis_script::MAX_COMMAND_LINE,
            });
        }
        let span = tracing::info_span!("mailbox", server = %server.name, operation, mailbox = ?mailbox.as_str());
        let out = self
            .winrm
            .run_powershell(server, &script_text)
            .instrument(span)
            .await
            .map_err(|e| transport_error(e, &server.name, operation))?;
        if !out.succeeded() {
            return Err(MailboxError::CommandFailed {
                server: server.name.clone(),
                operation: operation.to_owned(),
                exit_code: out.exit_code.unwrap_or(-1),
                stderr: clip(if out.stderr.trim().is_empty() {
                    &out.stdout
                } else {
                    &out.stderr
                }),
            });
        }
        let cx = ctx(server, mailbox, operation);
        match cx.envelope(&out.stdout) {
            Ok(doc) => Ok((cx, doc)),
            Err(e) => {
                tracing::warn!(server = %server.name, operation, error = %e, "mailbox operation failed");
                Err(e)
            }
        }
    }
}

fn ctx<'a>(server: &'a ExchangeServer, mailbox: &'a MailboxId, operation: &'static str) -> Ctx<'a> {
    Ctx {
        server: &server.name,
        mailbox,
        operation,
    }
}

/// Maps exch-iis's transport errors to this crate's kinds (the original only as `source`).
fn transport_error(e: IisError, server: &str, operation: &str) -> MailboxError {
    match e {
        IisError::Unreachable { ref detail, .. } => MailboxError::Unreachable {
            server: server.to_owned(),
            operation: operation.to_owned(),
            detail: detail.clone(),
            source: Some(Box::new(e)),
        },
        IisError::Timeout { after, .. } => MailboxError::Timeout {
            server: server.to_owned(),
            operation: operation.to_owned(),
            after,
        },
        IisError::InvalidInput { what, reason } => MailboxError::InvalidInput { what, reason },
        other => MailboxError::Transport {
            server: server.to_owned(),
            operation: operation.to_owned(),
            detail: other.to_string(),
            transient: other.is_transient(),
            source: Some(Box::new(other)),
        },
    }
}

#[async_trait]
impl MailboxAdmin for WinRmMailbox {
    async fn cas_settings(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<CasSettings, MailboxError> {
        const OP: &str = "read CAS settings";
        let (cx, doc) = self
            .run(server, mailbox, OP, script::read_cas(mailbox))
            .await?;
        cx.cas(&doc, "cas")
    }

    async fn set_cas(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        change: &CasChange,
    ) -> Result<CasUpdate, MailboxError> {
        const OP: &str = "set CAS settings";
        support::cas_change(change)?;
        let text = script::write_cas(mailbox, &change.values());
        let (cx, doc) = self.run(server, mailbox, OP, text).await?;
        cx.cas_update(&doc)
    }

    async fn restore_cas(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        before: &CasSettings,
    ) -> Result<CasUpdate, MailboxError> {
        const OP: &str = "restore CAS settings";
        let text = script::write_cas(mailbox, &before.restore_values());
        let (cx, doc) = self.run(server, mailbox, OP, text).await?;
        cx.cas_update(&doc)
    }

    async fn mobile_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<MobileDevices, MailboxError> {
        const OP: &str = "list mobile devices";
        let (cx, doc) = self
            .run(server, mailbox, OP, script::list_devices(mailbox))
            .await?;
        Ok(MobileDevices {
            devices: cx.devices(&doc, "devices")?,
            blocked_device_ids: cx.strings(&doc, "blocked")?,
        })
    }

    async fn wipe_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        identities: &[String],
        mode: WipeMode,
    ) -> Result<WipeReport, MailboxError> {
        const OP: &str = "wipe mobile devices";
        let ids = support::items("device identities", identities)?;
        support::check_wipe(server, mode)?;
        let text = script::wipe_devices(mailbox, &ids, mode);
        let (cx, doc) = self.run(server, mailbox, OP, text).await?;
        Ok(WipeReport {
            mode,
            devices: cx.results(&doc, &ids)?,
        })
    }

    async fn block_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        device_ids: &[String],
    ) -> Result<DeviceBlock, MailboxError> {
        const OP: &str = "block mobile devices";
        let ids = support::items("device IDs", device_ids)?;
        let text = script::block_devices(mailbox, &ids);
        let (cx, doc) = self.run(server, mailbox, OP, text).await?;
        cx.device_block(&doc)
    }

    async fn restore_blocked_devices(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        device_ids: &[String],
    ) -> Result<DeviceBlock, MailboxError> {
        const OP: &str = "restore blocked device IDs";
        let ids = support::block_list(device_ids)?;
        let text = script::set_blocked_devices(mailbox, &ids);
        let (cx, doc) = self.run(server, mailbox, OP, text).await?;
        cx.device_block(&doc)
    }

    async fn forwarding(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<ForwardingReport, MailboxError> {
        const OP: &str = "read forwarding and inbox rules";
        let (cx, doc) = self
            .run(server, mailbox, OP, script::read_forwarding(mailbox))
            .await?;
        Ok(ForwardingReport::new(
            cx.forwarding(&doc, "forwarding")?,
            cx.rules(&doc, "rules")?,
        ))
    }

    async fn remove_forwarding(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
    ) -> Result<ForwardingChange, MailboxError> {
        const OP: &str = "remove forwarding";
        let (cx, doc) = self
            .run(server, mailbox, OP, script::remove_forwarding(mailbox))
            .await?;
        Ok(ForwardingChange {
            before: cx.forwarding(&doc, "before")?,
            after: cx.forwarding(&doc, "after")?,
        })
    }

    async fn change_inbox_rules(
        &self,
        server: &ExchangeServer,
        mailbox: &MailboxId,
        identities: &[String],
        action: RuleAction,
    ) -> Result<RuleChange, MailboxError> {
        let operation = match action {
            RuleAction::Disable => "disable inbox rules",
            RuleAction::Remove => "remove inbox rules",
        };
        let ids = support::items("inbox rule identities", identities)?;
        let text = script::change_inbox_rules(mailbox, &ids, action);
        let (cx, doc) = self.run(server, mailbox, operation, text).await?;
        let results = cx.results(&doc, &ids)?;
        Ok(RuleChange::new(action, results, cx.rules(&doc, "rules")?))
    }

    fn security_notes(&self) -> Vec<String> {
        self.winrm.security_notes()
    }
}
