//! Reading the JSON documents the scripts of [`crate::script`] print.
//!
//! Windows PowerShell 5.1's `ConvertTo-Json` unrolls one-element arrays in some positions and
//! writes empty ones as `null`; every list here accepts an array, a single value or `null`,
//! and every string `null` as empty.

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;
use serde_json::Value;

use crate::error::clip;
use crate::{
    CasSettings, CasUpdate, DeviceAccessState, DeviceBlock, Forwarding, InboxRule, ItemResult,
    ItemStatus, MailboxError, MailboxId, MobileDevice,
};

/// The exception Exchange raises for an identity that matches nothing.
const NOT_FOUND: &str = "ManagementObjectNotFoundException";
/// The exception Exchange raises for an identity that matches several objects.
const AMBIGUOUS: &str = "ManagementObjectAmbiguousException";

fn one_or_many<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(D::Error::custom))
            .collect(),
        other => Ok(vec![
            serde_json::from_value(other).map_err(D::Error::custom)?
        ]),
    }
}

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn texts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let items: Vec<Option<String>> = one_or_many(d)?;
    Ok(items.into_iter().flatten().collect())
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

#[derive(Deserialize)]
struct RawFailure {
    #[serde(default, deserialize_with = "text")]
    step: String,
    #[serde(default, deserialize_with = "text")]
    reason: String,
    #[serde(default, rename = "errorId", deserialize_with = "text")]
    error_id: String,
    #[serde(default, deserialize_with = "text")]
    message: String,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct RawCas {
    #[serde(default)]
    OWAEnabled: Option<bool>,
    #[serde(default)]
    EwsEnabled: Option<bool>,
    #[serde(default)]
    ActiveSyncEnabled: Option<bool>,
    #[serde(default)]
    MAPIEnabled: Option<bool>,
    #[serde(default)]
    MAPIBlockOutlookRpcHttp: Option<bool>,
    #[serde(default)]
    PopEnabled: Option<bool>,
    #[serde(default)]
    ImapEnabled: Option<bool>,
    #[serde(default)]
    ECPEnabled: Option<bool>,
}

impl From<RawCas> for CasSettings {
    fn from(r: RawCas) -> CasSettings {
        CasSettings {
            owa: r.OWAEnabled,
            ews: r.EwsEnabled,
            active_sync: r.ActiveSyncEnabled,
            mapi: r.MAPIEnabled,
            outlook_anywhere: r.MAPIBlockOutlookRpcHttp.map(|blocked| !blocked),
            pop: r.PopEnabled,
            imap: r.ImapEnabled,
            ecp: r.ECPEnabled,
        }
    }
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct RawDevice {
    #[serde(default, deserialize_with = "text")]
    Identity: String,
    #[serde(default, deserialize_with = "text")]
    DeviceId: String,
    #[serde(default, deserialize_with = "text")]
    DeviceType: String,
    #[serde(default, deserialize_with = "text")]
    DeviceModel: String,
    #[serde(default, deserialize_with = "text")]
    FriendlyName: String,
    #[serde(default, deserialize_with = "text")]
    DeviceAccessState: String,
}

impl From<RawDevice> for MobileDevice {
    fn from(r: RawDevice) -> MobileDevice {
        MobileDevice {
            identity: r.Identity,
            device_id: r.DeviceId,
            device_type: r.DeviceType,
            device_model: r.DeviceModel,
            friendly_name: r.FriendlyName,
            access_state: DeviceAccessState::from(r.DeviceAccessState),
        }
    }
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct RawForwarding {
    #[serde(default, deserialize_with = "text")]
    ForwardingSmtpAddress: String,
    #[serde(default, deserialize_with = "text")]
    ForwardingAddress: String,
    #[serde(default, deserialize_with = "flag")]
    DeliverToMailboxAndForward: bool,
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl From<RawForwarding> for Forwarding {
    fn from(r: RawForwarding) -> Forwarding {
        Forwarding {
            smtp_address: non_empty(r.ForwardingSmtpAddress),
            address: non_empty(r.ForwardingAddress),
            deliver_to_mailbox_and_forward: r.DeliverToMailboxAndForward,
        }
    }
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct RawRule {
    #[serde(default, deserialize_with = "text")]
    Name: String,
    #[serde(default, deserialize_with = "text")]
    Identity: String,
    #[serde(default, deserialize_with = "text")]
    RuleIdentity: String,
    #[serde(default, deserialize_with = "flag")]
    Enabled: bool,
    #[serde(default, deserialize_with = "texts")]
    ForwardTo: Vec<String>,
    #[serde(default, deserialize_with = "texts")]
    ForwardAsAttachmentTo: Vec<String>,
    #[serde(default, deserialize_with = "texts")]
    RedirectTo: Vec<String>,
    #[serde(default, deserialize_with = "flag")]
    DeleteMessage: bool,
}

impl From<RawRule> for InboxRule {
    fn from(r: RawRule) -> InboxRule {
        InboxRule {
            name: r.Name,
            identity: r.Identity,
            rule_identity: r.RuleIdentity,
            enabled: r.Enabled,
            forward_to: r.ForwardTo,
            forward_as_attachment_to: r.ForwardAsAttachmentTo,
            redirect_to: r.RedirectTo,
            delete_message: r.DeleteMessage,
        }
    }
}

#[derive(Deserialize)]
struct RawResult {
    #[serde(default, deserialize_with = "text")]
    id: String,
    #[serde(default, deserialize_with = "text")]
    status: String,
    #[serde(default, deserialize_with = "text")]
    reason: String,
    #[serde(default, deserialize_with = "text")]
    message: String,
}

/// The context of one parse: what errors name.
pub(crate) struct Ctx<'a> {
    pub(crate) server: &'a str,
    pub(crate) mailbox: &'a MailboxId,
    pub(crate) operation: &'static str,
}

impl Ctx<'_> {
    fn err(&self, detail: impl Into<String>) -> MailboxError {
        MailboxError::Protocol {
            server: self.server.to_owned(),
            operation: self.operation.to_owned(),
            detail: detail.into(),
        }
    }

    /// The document: the whole of stdout, or (when something else was printed first) its last
    /// line that parses.
    fn document(&self, stdout: &str) -> Result<Value, MailboxError> {
        let text = stdout.trim_start_matches('\u{feff}').trim();
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            return Ok(v);
        }
        if let Some(v) = text
            .lines()
            .rev()
            .map(str::trim)
            .filter(|l| l.starts_with('{'))
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
        {
            return Ok(v);
        }
        Err(self.err(format!(
            "the script printed no JSON document; stdout began with {:?}",
            text.chars().take(200).collect::<String>()
        )))
    }

    /// The document of a script whose mailbox matched exactly once, or the error it reports.
    pub(crate) fn envelope(&self, stdout: &str) -> Result<Value, MailboxError> {
        let doc = self.document(stdout)?;
        if let Some(failed) = doc.get("failed").filter(|f| !f.is_null()) {
            let f: RawFailure = serde_json::from_value(failed.clone())
                .map_err(|e| self.err(format!("unreadable failure report: {e}")))?;
            return Err(self.failure(f));
        }
        match doc.get("matches").and_then(Value::as_u64) {
            Some(1) => Ok(doc),
            Some(0) => Err(MailboxError::NotFound {
                server: self.server.to_owned(),
                mailbox: self.mailbox.as_str().to_owned(),
            }),
            Some(n) => Err(MailboxError::Ambiguous {
                server: self.server.to_owned(),
                mailbox: self.mailbox.as_str().to_owned(),
                matches: usize::try_from(n).unwrap_or(usize::MAX),
            }),
            None => Err(self.err("the document has no \"matches\" count")),
        }
    }

    fn failure(&self, f: RawFailure) -> MailboxError {
        let is = |exception: &str| f.reason == exception || f.error_id.contains(exception);
        if f.step == "Add-PSSnapin" {
            MailboxError::ShellUnavailable {
                server: self.server.to_owned(),
                reason: f.reason,
                message: clip(&f.message),
            }
        } else if is(NOT_FOUND) {
            MailboxError::NotFound {
                server: self.server.to_owned(),
                mailbox: self.mailbox.as_str().to_owned(),
            }
        } else if is(AMBIGUOUS) {
            MailboxError::Ambiguous {
                server: self.server.to_owned(),
                mailbox: self.mailbox.as_str().to_owned(),
                matches: 0,
            }
        } else {
            MailboxError::CmdletFailed {
                server: self.server.to_owned(),
                mailbox: self.mailbox.as_str().to_owned(),
                step: f.step,
                reason: f.reason,
                message: clip(&f.message),
            }
        }
    }

    /// Field `key` of `doc`, deserialized.
    pub(crate) fn field<T: DeserializeOwned>(
        &self,
        doc: &Value,
        key: &str,
    ) -> Result<T, MailboxError> {
        let v = doc.get(key).cloned().unwrap_or(Value::Null);
        serde_json::from_value(v).map_err(|e| self.err(format!("field {key:?}: {e}")))
    }

    /// A list field (array, single value or null).
    fn list<T: DeserializeOwned>(&self, doc: &Value, key: &str) -> Result<Vec<T>, MailboxError> {
        match doc.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    serde_json::from_value(v.clone())
                        .map_err(|e| self.err(format!("an item of {key:?}: {e}")))
                })
                .collect(),
            Some(other) => Ok(vec![serde_json::from_value(other.clone())
                .map_err(|e| self.err(format!("field {key:?}: {e}")))?]),
        }
    }

    pub(crate) fn cas(&self, doc: &Value, key: &str) -> Result<CasSettings, MailboxError> {
        Ok(self.field::<RawCas>(doc, key)?.into())
    }

    /// The CAS settings `before` and `after` a write.
    pub(crate) fn cas_update(&self, doc: &Value) -> Result<CasUpdate, MailboxError> {
        Ok(CasUpdate {
            before: self.cas(doc, "before")?,
            after: self.cas(doc, "after")?,
        })
    }

    /// The blocked device IDs `before` and `after` a write.
    pub(crate) fn device_block(&self, doc: &Value) -> Result<DeviceBlock, MailboxError> {
        Ok(DeviceBlock {
            before: self.strings(doc, "before")?,
            after: self.strings(doc, "after")?,
        })
    }

    pub(crate) fn strings(&self, doc: &Value, key: &str) -> Result<Vec<String>, MailboxError> {
        let items: Vec<Option<String>> = self.list(doc, key)?;
        Ok(items.into_iter().flatten().collect())
    }

    pub(crate) fn devices(
        &self,
        doc: &Value,
        key: &str,
    ) -> Result<Vec<MobileDevice>, MailboxError> {
        let raw: Vec<RawDevice> = self.list(doc, key)?;
        Ok(raw.into_iter().map(MobileDevice::from).collect())
    }

    pub(crate) fn forwarding(&self, doc: &Value, key: &str) -> Result<Forwarding, MailboxError> {
        Ok(self.field::<RawForwarding>(doc, key)?.into())
    }

    pub(crate) fn rules(&self, doc: &Value, key: &str) -> Result<Vec<InboxRule>, MailboxError> {
        let raw: Vec<RawRule> = self.list(doc, key)?;
        Ok(raw.into_iter().map(InboxRule::from).collect())
    }

    /// The per-item results, which must name exactly the `requested` identities, in order and
    /// byte for byte (what the script read back from its own literals).
    pub(crate) fn results(
        &self,
        doc: &Value,
        requested: &[String],
    ) -> Result<Vec<ItemResult>, MailboxError> {
        let raw: Vec<RawResult> = self.list(doc, "results")?;
        if raw.len() != requested.len() {
            return Err(self.err(format!(
                "{} results for {} requested items",
                raw.len(),
                requested.len()
            )));
        }
        raw.into_iter()
            .zip(requested)
            .map(|(r, want)| {
                if &r.id != want {
                    return Err(self.err(format!(
                        "the script reported item {:?} where {want:?} was requested",
                        r.id
                    )));
                }
                let status = match r.status.as_str() {
                    "done" => ItemStatus::Done,
                    "notFound" => ItemStatus::NotFound,
                    "failed" => ItemStatus::Failed {
                        reason: r.reason,
                        message: clip(&r.message),
                    },
                    other => return Err(self.err(format!("unknown item status {other:?}"))),
                };
                Ok(ItemResult { id: r.id, status })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(mailbox: &MailboxId) -> Ctx<'_> {
        Ctx {
            server: "EX01",
            mailbox,
            operation: "read CAS settings",
        }
    }

    #[test]
    fn failures_map_to_kinds() {
        let bob = MailboxId::new("bob").unwrap();
        let c = cx(&bob);
        let e = c
            .envelope(r#"{"failed":{"step":"Add-PSSnapin","reason":"PSArgumentException","errorId":"AddPSSnapInRead","message":"not installed"}}"#)
            .unwrap_err();
        assert!(matches!(e, MailboxError::ShellUnavailable { .. }), "{e:?}");
        let e = c
            .envelope(r#"{"failed":{"step":"Get-CASMailbox","reason":"ManagementObjectNotFoundException","errorId":"x","message":"couldn't be found"}}"#)
            .unwrap_err();
        assert!(matches!(e, MailboxError::NotFound { .. }), "{e:?}");
        let e = c
            .envelope(r#"{"failed":{"step":"Set-CASMailbox","reason":"","errorId":"[FailureCategory=Cmdlet-ManagementObjectAmbiguousException] 1,Set","message":"m"}}"#)
            .unwrap_err();
        assert!(matches!(e, MailboxError::Ambiguous { .. }), "{e:?}");
        let e = c
            .envelope(r#"{"failed":{"step":"Set-CASMailbox","reason":"ADOperationException","errorId":null,"message":"Insufficient access rights"}}"#)
            .unwrap_err();
        assert!(
            matches!(&e, MailboxError::CmdletFailed { step, reason, .. } if step == "Set-CASMailbox" && reason == "ADOperationException"),
            "{e:?}"
        );
        assert!(matches!(
            c.envelope(r#"{"matches":0}"#),
            Err(MailboxError::NotFound { .. })
        ));
        assert!(matches!(
            c.envelope(r#"{"matches":3}"#),
            Err(MailboxError::Ambiguous { matches: 3, .. })
        ));
        assert!(matches!(
            c.envelope("WARNING: x"),
            Err(MailboxError::Protocol { .. })
        ));
        // A stray line before the document does not hide it.
        assert!(c.envelope("WARNING: x\n{\"matches\":1}").is_ok());
    }

    #[test]
    fn lists_accept_single_values_and_null() {
        let bob = MailboxId::new("bob").unwrap();
        let c = cx(&bob);
        let doc: Value = serde_json::from_str(
            r#"{"matches":1,"rules":{"Name":"r","Identity":"bob\\1","RuleIdentity":"1","Enabled":true,"ForwardTo":"x@evil.example","ForwardAsAttachmentTo":null,"RedirectTo":[],"DeleteMessage":false},"blocked":null}"#,
        )
        .unwrap();
        let rules = c.rules(&doc, "rules").unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].forward_to, vec!["x@evil.example".to_owned()]);
        assert!(c.strings(&doc, "blocked").unwrap().is_empty());
    }
}
