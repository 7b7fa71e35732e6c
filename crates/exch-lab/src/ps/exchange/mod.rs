//! The Exchange cmdlets of the subset, behind `Add-PSSnapin`, over the server's
//! [`ExchangeShell`] (see `docs/powershell-subset.md`, "Exchange cmdlets").
//!
//! Without the snap-in (or on a version that lacks the cmdlet) they are "not recognized",
//! as PowerShell words it. Errors are worded as Exchange words them; parameter-binding
//! errors and the confirmation prompts a non-interactive host cannot show are terminating.

mod objects;

use super::commands::{bind, named, not_recognized, pos, switch, Bound, Common, RawArg, P};
use super::eval::{EResult, Interp, PsError};
use super::value::{Obj, Value};
use crate::mailbox::{CasChange, Cmdlet, ExchangeShell, ForwardingChange, ListChange, ShellError};

/// Runs `Add-PSSnapin` or an Exchange cmdlet; `None` when `key` (the lower-cased name) is
/// neither.
pub(crate) async fn run(
    it: &mut Interp<'_>,
    name: &str,
    key: &str,
    raw: Vec<RawArg>,
    input: &[Value],
    common: &Common,
) -> Option<EResult<Vec<Value>>> {
    if key == "add-pssnapin" {
        return Some(add_pssnapin(it, raw));
    }
    let cmdlet = Cmdlet::from_name(key)?;
    let shell = match it.host.exchange() {
        Some(shell) if shell.has(cmdlet) && snapin_loaded(it, &shell) => shell,
        _ => return Some(Err(not_recognized(name))),
    };
    let mut call = Call {
        it,
        shell,
        cmdlet,
        common,
    };
    // Objects piped in bind to -Identity, one call each (`Get-CASMailbox x |
    // Set-CASMailbox …`), unless the call names its identity itself.
    let named_identity = raw
        .iter()
        .any(|a| matches!(a, RawArg::Param { name, .. } if name.eq_ignore_ascii_case("Identity")));
    if input.is_empty() || named_identity {
        call.shell.count_call(cmdlet);
        return Some(call.run(raw));
    }
    let mut out = Vec::new();
    for item in input {
        let identity = match item {
            Value::Object(o) if o.get("Identity").is_some() => o
                .get("Identity")
                .map(Value::to_ps_string)
                .unwrap_or_default(),
            other => other.to_ps_string(),
        };
        let mut raw = raw.clone();
        raw.push(RawArg::Param {
            name: "Identity".into(),
            value: Some(Value::Str(identity)),
        });
        call.shell.count_call(cmdlet);
        match call.run(raw) {
            Ok(values) => out.extend(values),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(out))
}

fn snapin_loaded(it: &Interp<'_>, shell: &ExchangeShell) -> bool {
    shell
        .snapins()
        .iter()
        .any(|s| it.snapins.iter().any(|l| l.eq_ignore_ascii_case(s)))
}

/// PowerShell's wildcard match (`*` and `?`), case-insensitive.
fn like(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) => a == b && go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    go(&p, &t)
}

/// An optional string parameter given a value other than `$null`.
fn given(b: &Bound, param: &str) -> Option<String> {
    b.get(param)
        .filter(|v| **v != Value::Null)
        .map(Value::to_ps_string)
}

fn snapin_error(message: String, fqid: &str, target: &str) -> PsError {
    PsError::new(message, "InvalidArgument", fqid)
        .exception("PSArgumentException")
        .target(target)
}

/// `Add-PSSnapin [-Name] <name[]> [-PassThru]`: the host's Exchange snap-ins (by exact
/// name or wildcard); anything else fails as PowerShell 5.1 words it.
fn add_pssnapin(it: &mut Interp<'_>, raw: Vec<RawArg>) -> EResult<Vec<Value>> {
    let b = bind(&[pos("Name", 0), switch("PassThru")], raw).map_err(PsError::terminating)?;
    let names =
        match b.get("Name") {
            Some(v) if *v != Value::Null => v.clone().into_items(),
            _ => return Err(PsError::new(
                "Cannot process command because of one or more missing mandatory parameters: Name.",
                "InvalidArgument",
                "MissingMandatoryParameter,Microsoft.PowerShell.Commands.AddPSSnapinCommand",
            )
            .exception("ParameterBindingException")
            .terminating()),
        };
    let shell = it.host.exchange();
    let registered: &[&str] = shell.as_ref().map_or(&[], ExchangeShell::snapins);
    let mut added = Vec::new();
    for n in names {
        let n = n.to_ps_string();
        if n.contains(['*', '?']) {
            let matching: Vec<&str> = registered.iter().copied().filter(|r| like(&n, r)).collect();
            if matching.is_empty() {
                return Err(snapin_error(
                    format!("No Windows PowerShell snap-ins matching the pattern '{n}' were found. Check the pattern and then try the command again."),
                    "NoPSSnapInsFound,Microsoft.PowerShell.Commands.AddPSSnapinCommand",
                    &n,
                ));
            }
            for m in matching {
                if !it.snapins.iter().any(|l| l.eq_ignore_ascii_case(m)) {
                    it.snapins.push(m.to_owned());
                    added.push(m);
                }
            }
            continue;
        }
        let Some(found) = registered.iter().find(|r| r.eq_ignore_ascii_case(&n)) else {
            return Err(snapin_error(
                format!("The Windows PowerShell snap-in '{n}' is not installed on this computer."),
                "AddPSSnapInRead,Microsoft.PowerShell.Commands.AddPSSnapinCommand",
                &n,
            ));
        };
        if it.snapins.iter().any(|l| l.eq_ignore_ascii_case(found)) {
            return Err(snapin_error(
                format!("Cannot add Windows PowerShell snap-in {n} because it is already added. Verify the name of the snap-in, and then try again."),
                "AddPSSnapInRead,Microsoft.PowerShell.Commands.AddPSSnapinCommand",
                &n,
            ));
        }
        it.snapins.push((*found).to_owned());
        added.push(found);
    }
    if let Some(shell) = &shell {
        for _ in &added {
            shell.count_snapin();
        }
    }
    if b.has("PassThru") {
        return Ok(added
            .into_iter()
            .map(|n| {
                Value::Object(
                    Obj::new("System.Management.Automation.PSSnapInInfo")
                        .with("Name", Value::Str(n.to_owned()))
                        .with("PSVersion", Value::Str("1.0".into()))
                        .with_text(n),
                )
            })
            .collect());
    }
    Ok(Vec::new())
}

/// One Exchange cmdlet call.
struct Call<'a, 'h> {
    it: &'a mut Interp<'h>,
    shell: ExchangeShell,
    cmdlet: Cmdlet,
    common: &'a Common,
}

/// Exchange's `FullyQualifiedErrorId` code for an error: stable per cmdlet and reason (the
/// real codes are build-specific; these are the lab's).
fn error_code(cmdlet: Cmdlet, reason: &str) -> String {
    let mut h: u32 = 0x811C_9DC5;
    for b in cmdlet.name().bytes().chain(reason.bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("{h:X}")
}

impl Call<'_, '_> {
    fn run(&mut self, raw: Vec<RawArg>) -> EResult<Vec<Value>> {
        match self.cmdlet {
            Cmdlet::GetMailbox => self.get_mailbox(raw, false),
            Cmdlet::GetCasMailbox => self.get_mailbox(raw, true),
            Cmdlet::SetMailbox => self.set_mailbox(raw),
            Cmdlet::SetCasMailbox => self.set_cas_mailbox(raw),
            Cmdlet::GetMobileDevice => self.get_mobile_device(raw),
            Cmdlet::ClearMobileDevice => self.clear_mobile_device(raw),
            Cmdlet::GetInboxRule => self.get_inbox_rule(raw),
            Cmdlet::DisableInboxRule | Cmdlet::RemoveInboxRule => self.change_inbox_rule(raw),
        }
    }

    fn bind(&self, params: &[P], raw: Vec<RawArg>) -> EResult<Bound> {
        // -WhatIf / -Confirm exist only on cmdlets that change something (the generic binder
        // lets them through everywhere).
        for a in &raw {
            if let RawArg::Param { name, .. } = a {
                let declared = params.iter().any(|p| p.name.eq_ignore_ascii_case(name));
                if !declared && ["whatif", "confirm"].contains(&name.to_ascii_lowercase().as_str())
                {
                    return Err(self.binding_error(
                        format!(
                            "A parameter cannot be found that matches parameter name '{name}'."
                        ),
                        "NamedParameterNotFound",
                    ));
                }
            }
        }
        bind(params, raw).map_err(|mut e| {
            e.fqid = format!("{},{}", e.fqid, self.cmdlet.class());
            e.terminating()
        })
    }

    /// An Exchange task error (`CategoryInfo: NotSpecified: (:) [<cmdlet>], <reason>`).
    fn exchange_error(&self, message: String, reason: &'static str) -> PsError {
        let now = self.shell.now();
        let fqid = format!(
            "[Server={},RequestId={},TimeStamp={}] [FailureCategory=Cmdlet-{reason}] {},{}",
            self.shell.server(),
            uuid::Uuid::new_v4(),
            now.format("%-m/%-d/%Y %-I:%M:%S %p"),
            error_code(self.cmdlet, reason),
            self.cmdlet.class()
        );
        PsError::new(message, "NotSpecified", &fqid).exception(reason)
    }

    fn shell_error(&self, e: ShellError) -> PsError {
        match e {
            ShellError::NotFound(id) => {
                let (dc, _) = self.shell.directory();
                self.exchange_error(
                    format!("The operation couldn't be performed because object '{id}' couldn't be found on '{dc}'."),
                    "ManagementObjectNotFoundException",
                )
            }
            ShellError::Ambiguous(id) => self.exchange_error(
                format!("The operation couldn't be performed because '{id}' matches multiple entries."),
                "ManagementObjectAmbiguousException",
            ),
            ShellError::RuleNotFound(id) => self.exchange_error(
                format!("The operation couldn't be performed because '{id}' couldn't be found."),
                "ManagementObjectNotFoundException",
            ),
            ShellError::RecipientNotFound(id) => self.exchange_error(
                format!("Couldn't find object \"{id}\". Please make sure that it was spelled correctly or specify a different object."),
                "ManagementObjectNotFoundException",
            ),
        }
    }

    /// A parameter-binding error (terminating), `reason` qualified by the cmdlet's class.
    fn binding_error(&self, message: impl Into<String>, reason: &str) -> PsError {
        PsError::new(
            message,
            "InvalidArgument",
            &format!("{reason},{}", self.cmdlet.class()),
        )
        .exception("ParameterBindingException")
        .terminating()
    }

    fn missing_mandatory(&self, param: &str) -> PsError {
        self.binding_error(
            format!("Cannot process command because of one or more missing mandatory parameters: {param}."),
            "MissingMandatoryParameter",
        )
    }

    /// A mandatory string parameter (`-Identity`).
    fn identity(&self, b: &Bound, param: &str) -> EResult<String> {
        match b.get(param) {
            Some(Value::Null) | None => Err(self.missing_mandatory(param)),
            Some(v) => Ok(v.to_ps_string()),
        }
    }

    fn bool_param(&self, b: &Bound, param: &str) -> EResult<Option<bool>> {
        match b.get(param) {
            None => Ok(None),
            Some(Value::Bool(v)) => Ok(Some(*v)),
            Some(Value::Int(n)) => Ok(Some(*n != 0)),
            Some(other) => Err(PsError::new(
                format!(
                    "Cannot process argument transformation on parameter '{param}'. Cannot convert value \"{}\" to type \"System.Boolean\". Boolean parameters accept only Boolean values and numbers, such as $True, $False, 1 or 0.",
                    other.to_ps_string()
                ),
                "InvalidData",
                &format!("ParameterArgumentTransformationError,{}", self.cmdlet.class()),
            )
            .exception("ParameterBindingArgumentTransformationException")
            .terminating()),
        }
    }

    /// `-WhatIf`: tells what would happen and changes nothing. Returns whether it was given.
    fn what_if(&mut self, b: &Bound, target: &str) -> bool {
        if !b.has("WhatIf") {
            return false;
        }
        self.shell.count_what_if();
        self.it.host_line(&format!(
            "What if: Performing the operation \"{}\" on target \"{target}\".",
            self.cmdlet.name()
        ));
        true
    }

    /// The prompt a non-interactive host cannot show (ShouldProcess of a high-impact
    /// cmdlet, `-Confirm`, or Exchange's ShouldContinue): refused, terminating.
    fn refuse_prompt(&self) -> PsError {
        self.shell.count_prompt_refused();
        PsError::new(
            "Windows PowerShell is in NonInteractive mode. Read and Prompt functionality is not available.",
            "InvalidOperation",
            &format!("InvalidOperation,{}", self.cmdlet.class()),
        )
        .exception("PSInvalidOperationException")
        .terminating()
    }

    /// Whether ShouldProcess prompts: always for a destructive cmdlet unless
    /// `-Confirm:$false` (or `$ConfirmPreference = 'None'`), and for any cmdlet with
    /// `-Confirm`.
    fn prompts(&self, b: &Bound, destructive: bool) -> bool {
        match b.get("Confirm") {
            Some(v) => v.truthy(),
            None => destructive && self.it.preference("ConfirmPreference") != "none",
        }
    }

    /// ShouldProcess on `target`: `Ok(false)` when `-WhatIf` told what would happen, the
    /// refused prompt when it would ask, `Ok(true)` to go ahead.
    fn should_process(&mut self, b: &Bound, target: &str, destructive: bool) -> EResult<bool> {
        if self.what_if(b, target) {
            return Ok(false);
        }
        if self.prompts(b, destructive) {
            return Err(self.refuse_prompt());
        }
        Ok(true)
    }

    fn warn(&mut self, text: &str) -> EResult<()> {
        let action = self.common.warning_action.clone();
        self.it.warn(action.as_deref(), text)
    }

    fn get_mailbox(&mut self, raw: Vec<RawArg>, cas: bool) -> EResult<Vec<Value>> {
        let b = self.bind(
            &[
                pos("Identity", 0),
                named("ResultSize"),
                named("DomainController"),
            ],
            raw,
        )?;
        let id = given(&b, "Identity");
        let found = self
            .shell
            .mailboxes(id.as_deref())
            .map_err(|e| self.shell_error(e))?;
        let (_, domain) = self.shell.directory();
        Ok(found
            .iter()
            .map(|m| {
                if cas {
                    objects::cas_mailbox(&domain, m)
                } else {
                    objects::mailbox(&domain, m)
                }
            })
            .collect())
    }

    fn set_mailbox(&mut self, raw: Vec<RawArg>) -> EResult<Vec<Value>> {
        let b = self.bind(
            &[
                pos("Identity", 0),
                named("ForwardingSmtpAddress"),
                named("ForwardingAddress"),
                named("DeliverToMailboxAndForward"),
                named("DomainController"),
                switch("Force"),
                switch("Confirm"),
                switch("WhatIf"),
            ],
            raw,
        )?;
        let id = self.identity(&b, "Identity")?;
        let change = ForwardingChange {
            smtp_address: b.get("ForwardingSmtpAddress").map(|v| {
                let text = v.to_ps_string();
                let text = match text.get(..5) {
                    Some(p) if p.eq_ignore_ascii_case("smtp:") => text[5..].to_owned(),
                    _ => text,
                };
                (!text.is_empty()).then_some(text)
            }),
            address: b.get("ForwardingAddress").map(|v| {
                let text = v.to_ps_string();
                (!text.is_empty()).then_some(text)
            }),
            deliver_to_mailbox_and_forward: self.bool_param(&b, "DeliverToMailboxAndForward")?,
        };
        self.write_settings(&b, &id, |shell| shell.set_forwarding(&id, &change))
    }

    /// The shared end of `Set-Mailbox` / `Set-CASMailbox`: resolve, `-WhatIf`, `-Confirm`,
    /// apply, and Exchange's warning when nothing changed.
    fn write_settings(
        &mut self,
        b: &Bound,
        id: &str,
        apply: impl FnOnce(&ExchangeShell) -> Result<(crate::mailbox::Mailbox, bool), ShellError>,
    ) -> EResult<Vec<Value>> {
        let m = self.shell.mailbox(id).map_err(|e| self.shell_error(e))?;
        let (_, domain) = self.shell.directory();
        let target = domain.mailbox_canonical(&m.name);
        if !self.should_process(b, &target, false)? {
            return Ok(Vec::new());
        }
        let (m, changed) = apply(&self.shell).map_err(|e| self.shell_error(e))?;
        if !changed {
            let target = domain.mailbox_canonical(&m.name);
            self.warn(&format!(
                "The command completed successfully but no settings of '{target}' have been modified."
            ))?;
        }
        Ok(Vec::new())
    }

    fn list_param(&self, b: &Bound, param: &str) -> Option<ListChange> {
        let v = b.get(param)?;
        let items = |v: Option<&Value>| -> Vec<String> {
            match v {
                None | Some(Value::Null) => Vec::new(),
                Some(v) => v
                    .clone()
                    .into_items()
                    .iter()
                    .map(Value::to_ps_string)
                    .collect(),
            }
        };
        Some(match v {
            Value::Object(o) if o.hashtable => ListChange::AddRemove {
                add: items(o.get("Add")),
                remove: items(o.get("Remove")),
            },
            other => ListChange::Replace(items(Some(other))),
        })
    }

    fn set_cas_mailbox(&mut self, raw: Vec<RawArg>) -> EResult<Vec<Value>> {
        let b = self.bind(
            &[
                pos("Identity", 0),
                named("OWAEnabled"),
                named("EwsEnabled"),
                named("ActiveSyncEnabled"),
                named("MAPIEnabled"),
                named("MAPIBlockOutlookRpcHttp"),
                named("PopEnabled"),
                named("ImapEnabled"),
                named("ECPEnabled"),
                named("ActiveSyncBlockedDeviceIDs"),
                named("ActiveSyncAllowedDeviceIDs"),
                named("DomainController"),
                switch("Confirm"),
                switch("WhatIf"),
            ],
            raw,
        )?;
        let id = self.identity(&b, "Identity")?;
        let change = CasChange {
            owa_enabled: self.bool_param(&b, "OWAEnabled")?,
            // EwsEnabled is a nullable Boolean: `$null` puts it back to unset.
            ews_enabled: match b.get("EwsEnabled") {
                Some(Value::Null) => Some(None),
                _ => self.bool_param(&b, "EwsEnabled")?.map(Some),
            },
            active_sync_enabled: self.bool_param(&b, "ActiveSyncEnabled")?,
            mapi_enabled: self.bool_param(&b, "MAPIEnabled")?,
            mapi_block_outlook_rpc_http: self.bool_param(&b, "MAPIBlockOutlookRpcHttp")?,
            pop_enabled: self.bool_param(&b, "PopEnabled")?,
            imap_enabled: self.bool_param(&b, "ImapEnabled")?,
            ecp_enabled: self.bool_param(&b, "ECPEnabled")?,
            blocked_device_ids: self.list_param(&b, "ActiveSyncBlockedDeviceIDs"),
            allowed_device_ids: self.list_param(&b, "ActiveSyncAllowedDeviceIDs"),
        };
        self.write_settings(&b, &id, |shell| shell.set_cas(&id, &change))
    }

    fn get_mobile_device(&mut self, raw: Vec<RawArg>) -> EResult<Vec<Value>> {
        let b = self.bind(
            &[
                pos("Identity", 0),
                named("Mailbox"),
                switch("ActiveSync"),
                named("ResultSize"),
                named("DomainController"),
            ],
            raw,
        )?;
        let (_, domain) = self.shell.directory();
        let found = match (given(&b, "Identity"), given(&b, "Mailbox")) {
            (Some(_), Some(_)) => {
                return Err(self.binding_error(
                    "Parameter set cannot be resolved using the specified named parameters.",
                    "AmbiguousParameterSet",
                ))
            }
            (Some(id), None) => vec![self.shell.device(&id).map_err(|e| self.shell_error(e))?],
            (None, Some(mbx)) => {
                let m = self.shell.mailbox(&mbx).map_err(|e| self.shell_error(e))?;
                m.devices.iter().map(|d| (m.clone(), d.clone())).collect()
            }
            (None, None) => self.shell.all_devices(),
        };
        Ok(found
            .iter()
            .map(|(m, d)| objects::mobile_device(&domain, m, d))
            .collect())
    }

    fn clear_mobile_device(&mut self, raw: Vec<RawArg>) -> EResult<Vec<Value>> {
        let mut params = vec![
            pos("Identity", 0),
            named("NotificationEmailAddresses"),
            named("DomainController"),
            switch("Confirm"),
            switch("WhatIf"),
        ];
        if self.shell.has_account_only_wipe() {
            params.push(switch("AccountOnly"));
        }
        let b = self.bind(&params, raw)?;
        let id = self.identity(&b, "Identity")?;
        let (m, d) = self.shell.device(&id).map_err(|e| self.shell_error(e))?;
        let (_, domain) = self.shell.directory();
        if !self.should_process(&b, &domain.device_canonical(&m, &d), true)? {
            return Ok(Vec::new());
        }
        self.shell
            .wipe_device(&id, b.has("AccountOnly"))
            .map_err(|e| self.shell_error(e))?;
        Ok(Vec::new())
    }

    fn get_inbox_rule(&mut self, raw: Vec<RawArg>) -> EResult<Vec<Value>> {
        let b = self.bind(
            &[
                pos("Identity", 0),
                named("Mailbox"),
                switch("IncludeHidden"),
                named("ResultSize"),
                named("DomainController"),
            ],
            raw,
        )?;
        let (_, domain) = self.shell.directory();
        match (given(&b, "Identity"), given(&b, "Mailbox")) {
            (Some(id), mbx) => {
                let (m, r) = self
                    .shell
                    .rule(&id, mbx.as_deref())
                    .map_err(|e| self.shell_error(e))?;
                let priority = m.inbox_rules.iter().position(|x| *x == r).unwrap_or(0) + 1;
                Ok(vec![objects::inbox_rule(&domain, &m, &r, priority)])
            }
            (None, Some(mbx)) => {
                let m = self.shell.mailbox(&mbx).map_err(|e| self.shell_error(e))?;
                Ok(m.inbox_rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| objects::inbox_rule(&domain, &m, r, i + 1))
                    .collect())
            }
            (None, None) => Err(PsError::new(
                "The lab's Get-InboxRule needs -Mailbox or -Identity: the shell's own account has no mailbox in the lab.",
                "NotImplemented",
                "LabUnsupported",
            )
            .terminating()),
        }
    }

    /// `Disable-InboxRule` / `Remove-InboxRule`.
    fn change_inbox_rule(&mut self, raw: Vec<RawArg>) -> EResult<Vec<Value>> {
        let b = self.bind(
            &[
                pos("Identity", 0),
                named("Mailbox"),
                switch("Force"),
                switch("AlwaysDeleteOutlookRulesBlob"),
                named("DomainController"),
                switch("Confirm"),
                switch("WhatIf"),
            ],
            raw,
        )?;
        let id = self.identity(&b, "Identity")?;
        let mbx = given(&b, "Mailbox");
        let (m, r) = self
            .shell
            .rule(&id, mbx.as_deref())
            .map_err(|e| self.shell_error(e))?;
        if !self.should_process(&b, &r.identity, true)? {
            return Ok(Vec::new());
        }
        // Changing rules from the shell deletes the rules Outlook keeps on the client side;
        // Exchange asks first (ShouldContinue) unless -Force.
        let forced = b.has("Force") || b.has("AlwaysDeleteOutlookRulesBlob");
        if m.outlook_rules_blob && !forced {
            return Err(self.refuse_prompt());
        }
        let delete_blob = m.outlook_rules_blob;
        // The rule is found again by its unique RuleIdentity (the name could repeat).
        let by_number = r.rule_identity.to_string();
        let mailbox = m.guid.to_string();
        let result = if self.cmdlet == Cmdlet::RemoveInboxRule {
            self.shell
                .remove_rule(&by_number, Some(&mailbox), delete_blob)
                .map(|_| ())
        } else {
            self.shell
                .disable_rule(&by_number, Some(&mailbox), delete_blob)
                .map(|_| ())
        };
        result.map_err(|e| self.shell_error(e))?;
        Ok(Vec::new())
    }
}
