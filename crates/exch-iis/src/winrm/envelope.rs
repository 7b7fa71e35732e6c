//! The WS-Management (MS-WSMV) requests exch-iis sends: Create, Command, Receive, Signal and
//! Delete of the `cmd` shell. Replies are read with winrm-rs's public parsers.

use std::fmt::Write;

const RESOURCE_CMD: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd";
const ACTION_CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
const ACTION_DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
const ACTION_COMMAND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command";
const ACTION_RECEIVE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive";
const ACTION_SIGNAL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal";
const SIGNAL_TERMINATE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate";

/// Largest reply we let the server send (`MaxEnvelopeSize`, bytes).
const MAX_ENVELOPE: u32 = 512_000;

/// XML-escapes text and attribute values (`&`, `<`, `>`, `'`, `"`).
pub(crate) fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// What every request of one endpoint shares.
pub(crate) struct Envelopes {
    /// The endpoint URL (`wsa:To`).
    pub(crate) to: String,
    /// `wsman:OperationTimeout`, whole seconds.
    pub(crate) timeout_secs: u64,
}

impl Envelopes {
    fn wrap(&self, action: &str, shell: Option<&str>, options: &str, body: &str) -> String {
        let mut selector = String::new();
        if let Some(id) = shell {
            let _ = write!(
                selector,
                "<w:SelectorSet><w:Selector Name=\"ShellId\">{}</w:Selector></w:SelectorSet>",
                escape(id)
            );
        }
        format!(
            "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" \
xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\" \
xmlns:rsp=\"http://schemas.microsoft.com/wbem/wsman/1/windows/shell\">\
<s:Header><a:To>{to}</a:To>\
<w:ResourceURI s:mustUnderstand=\"true\">{RESOURCE_CMD}</w:ResourceURI>\
<a:ReplyTo><a:Address s:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>\
<a:Action s:mustUnderstand=\"true\">{action}</a:Action>\
<w:MaxEnvelopeSize s:mustUnderstand=\"true\">{MAX_ENVELOPE}</w:MaxEnvelopeSize>\
<a:MessageID>uuid:{id}</a:MessageID>\
<w:Locale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/>\
<p:DataLocale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/>\
<w:OperationTimeout>PT{secs}S</w:OperationTimeout>{selector}{options}</s:Header>\
<s:Body>{body}</s:Body></s:Envelope>",
            to = escape(&self.to),
            id = uuid::Uuid::new_v4().to_string().to_uppercase(),
            secs = self.timeout_secs,
        )
    }

    /// Create a `cmd` shell (UTF-8 code page, no profile).
    pub(crate) fn create(&self) -> String {
        self.wrap(
            ACTION_CREATE,
            None,
            "<w:OptionSet><w:Option Name=\"WINRS_NOPROFILE\">TRUE</w:Option>\
<w:Option Name=\"WINRS_CODEPAGE\">65001</w:Option></w:OptionSet>",
            "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams>\
<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>",
        )
    }

    /// Run `program args…` in `shell`.
    pub(crate) fn command(&self, shell: &str, program: &str, args: &[String]) -> String {
        let mut body = format!(
            "<rsp:CommandLine><rsp:Command>{}</rsp:Command>",
            escape(program)
        );
        for a in args {
            let _ = write!(body, "<rsp:Arguments>{}</rsp:Arguments>", escape(a));
        }
        body.push_str("</rsp:CommandLine>");
        self.wrap(
            ACTION_COMMAND,
            Some(shell),
            "<w:OptionSet><w:Option Name=\"WINRS_CONSOLEMODE_STDIN\">TRUE</w:Option>\
<w:Option Name=\"WINRS_SKIP_CMD_SHELL\">FALSE</w:Option></w:OptionSet>",
            &body,
        )
    }

    /// Receive stdout and stderr of `command`.
    pub(crate) fn receive(&self, shell: &str, command: &str) -> String {
        self.wrap(
            ACTION_RECEIVE,
            Some(shell),
            "",
            &format!(
                "<rsp:Receive><rsp:DesiredStream CommandId=\"{}\">stdout stderr</rsp:DesiredStream></rsp:Receive>",
                escape(command)
            ),
        )
    }

    /// Terminate `command`.
    pub(crate) fn terminate(&self, shell: &str, command: &str) -> String {
        self.wrap(
            ACTION_SIGNAL,
            Some(shell),
            "",
            &format!(
                "<rsp:Signal CommandId=\"{}\"><rsp:Code>{SIGNAL_TERMINATE}</rsp:Code></rsp:Signal>",
                escape(command)
            ),
        )
    }

    /// Delete `shell`.
    pub(crate) fn delete(&self, shell: &str) -> String {
        self.wrap(ACTION_DELETE, Some(shell), "", "")
    }
}
