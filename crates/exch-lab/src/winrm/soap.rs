//! WS-Management SOAP: namespace-aware request parsing and reply/fault rendering.

use std::time::Duration;

use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

pub(crate) const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
pub(crate) const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
pub(crate) const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
pub(crate) const NS_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
pub(crate) const NS_TRANSFER: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer";
pub(crate) const NS_FAULT: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";

/// The cmd shell resource.
pub(crate) const RESOURCE_CMD: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd";

pub(crate) const ACTION_CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
pub(crate) const ACTION_DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
pub(crate) const ACTION_COMMAND: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command";
pub(crate) const ACTION_RECEIVE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive";
pub(crate) const ACTION_SIGNAL: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal";
pub(crate) const ACTION_SEND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send";

pub(crate) const SIGNAL_TERMINATE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate";
pub(crate) const SIGNAL_CTRL_C: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c";

pub(crate) const STATE_RUNNING: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running";
pub(crate) const STATE_DONE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";

const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";

/// Most elements and depth accepted in one envelope.
const MAX_ELEMENTS: usize = 4096;
const MAX_DEPTH: usize = 32;

/// A SOAP fault to send (HTTP 500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    /// `s:Sender` or `s:Receiver`.
    pub(crate) code: &'static str,
    /// Qualified subcode, e.g. `w:InvalidSelectors` (`w` = WS-Management, `a` = addressing).
    pub(crate) subcode: &'static str,
    /// `s:Reason/s:Text`.
    pub(crate) reason: String,
    /// `WSManFault Code`.
    pub(crate) wsman_code: u32,
}

impl Fault {
    pub(crate) fn sender(
        subcode: &'static str,
        wsman_code: u32,
        reason: impl Into<String>,
    ) -> Self {
        Fault {
            code: "s:Sender",
            subcode,
            reason: reason.into(),
            wsman_code,
        }
    }

    pub(crate) fn receiver(
        subcode: &'static str,
        wsman_code: u32,
        reason: impl Into<String>,
    ) -> Self {
        Fault {
            code: "s:Receiver",
            subcode,
            reason: reason.into(),
            wsman_code,
        }
    }
}

/// The body of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Body {
    /// No body element.
    #[default]
    Empty,
    /// `rsp:Shell` (Create).
    Shell,
    /// `rsp:CommandLine` (Command).
    CommandLine {
        command: String,
        arguments: Vec<String>,
        command_id: Option<String>,
    },
    /// `rsp:Receive`.
    Receive { command_id: Option<String> },
    /// `rsp:Signal`.
    Signal {
        command_id: Option<String>,
        code: String,
    },
    /// `rsp:Send`.
    Send,
    /// Anything else: `{namespace}local`.
    Other(String),
}

/// The parts of a request the endpoint uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    pub(crate) action: Option<String>,
    pub(crate) message_id: Option<String>,
    pub(crate) resource_uri: Option<String>,
    pub(crate) operation_timeout: Option<Duration>,
    pub(crate) shell_id: Option<String>,
    pub(crate) body: Body,
}

fn malformed(detail: impl std::fmt::Display) -> Fault {
    Fault::sender(
        "w:SchemaValidationError",
        2150858817,
        format!("The WS-Management service cannot process the request because the XML is invalid: {detail}"),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ns {
    Soap,
    Addressing,
    Wsman,
    Shell,
    Other,
}

fn classify(r: &ResolveResult<'_>) -> Result<Ns, Fault> {
    match r {
        ResolveResult::Bound(Namespace(ns)) => Ok(match *ns {
            n if n == NS_SOAP.as_bytes() => Ns::Soap,
            n if n == NS_ADDRESSING.as_bytes() => Ns::Addressing,
            n if n == NS_WSMAN.as_bytes() => Ns::Wsman,
            n if n == NS_SHELL.as_bytes() => Ns::Shell,
            _ => Ns::Other,
        }),
        ResolveResult::Unbound => Ok(Ns::Other),
        ResolveResult::Unknown(p) => Err(malformed(format!(
            "the prefix '{}' is not declared",
            String::from_utf8_lossy(p)
        ))),
    }
}

/// Parses an `xs:duration` such as `PT60.000S` or `P0DT0H1M0S`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim().strip_prefix('P')?;
    let (date, time) = s.split_once('T').unwrap_or((s, ""));
    let mut secs = 0f64;
    let mut num = String::new();
    for (part, is_time) in [(date, false), (time, true)] {
        for c in part.chars() {
            match c {
                '0'..='9' | '.' => num.push(c),
                unit => {
                    let n: f64 = num.parse().ok()?;
                    num.clear();
                    secs += n * match (unit, is_time) {
                        ('D', false) => 86_400.0,
                        ('H', true) => 3_600.0,
                        ('M', true) => 60.0,
                        ('S', true) => 1.0,
                        _ => return None,
                    };
                }
            }
        }
        if !num.is_empty() {
            return None;
        }
    }
    (0.0..1e9)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

/// Parses a WS-Management request envelope by namespace (prefixes and element order do not
/// matter; an `OptionSet` may sit anywhere).
pub(crate) fn parse_request(xml: &str) -> Result<Request, Fault> {
    let mut reader = NsReader::from_str(xml);
    let mut req = Request::default();
    // (namespace, local name) of the open elements.
    let mut stack: Vec<(Ns, String)> = Vec::new();
    let mut text = String::new();
    let mut elements = 0usize;
    let mut saw_envelope = false;
    let mut selector_name: Option<String> = None;
    let mut body_seen = false;
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(malformed)?;
        let (start, end) = match &event {
            Event::Start(_) => (true, false),
            Event::Empty(_) => (true, true),
            Event::End(_) => (false, true),
            Event::Text(t) => {
                let s = t.unescape().map_err(malformed)?;
                text.push_str(&s);
                continue;
            }
            Event::CData(c) => {
                text.push_str(&String::from_utf8_lossy(c));
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        if start {
            let (Event::Start(e) | Event::Empty(e)) = &event else {
                continue;
            };
            elements += 1;
            if elements > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                return Err(malformed("too many or too deeply nested elements"));
            }
            let ns = classify(&resolved)?;
            let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
            let attr = |name: &str| -> Option<String> {
                e.attributes().flatten().find_map(|a| {
                    (a.key.local_name().as_ref() == name.as_bytes())
                        .then(|| a.unescape_value().ok().map(|v| v.into_owned()))
                        .flatten()
                })
            };
            let depth = stack.len();
            let parent = stack.last().map(|(n, l)| (*n, l.as_str()));
            match (depth, parent, ns, local.as_str()) {
                (0, _, Ns::Soap, "Envelope") => saw_envelope = true,
                (0, _, _, _) => {
                    return Err(malformed(format!(
                        "the root element is '{local}', not a SOAP 1.2 Envelope"
                    )))
                }
                (2, Some((Ns::Soap, "Body")), _, _) => {
                    if body_seen {
                        return Err(malformed("the Body has more than one element"));
                    }
                    body_seen = true;
                    req.body = match (ns, local.as_str()) {
                        (Ns::Shell, "Shell") => Body::Shell,
                        (Ns::Shell, "CommandLine") => Body::CommandLine {
                            command: String::new(),
                            arguments: Vec::new(),
                            command_id: attr("CommandId"),
                        },
                        (Ns::Shell, "Receive") => Body::Receive { command_id: None },
                        (Ns::Shell, "Signal") => Body::Signal {
                            command_id: attr("CommandId"),
                            code: String::new(),
                        },
                        (Ns::Shell, "Send") => Body::Send,
                        _ => Body::Other(local.clone()),
                    };
                }
                (_, Some((Ns::Wsman, "SelectorSet")), Ns::Wsman, "Selector") => {
                    selector_name = attr("Name")
                }
                (_, Some((Ns::Shell, "Receive")), Ns::Shell, "DesiredStream") => {
                    if let Body::Receive { command_id } = &mut req.body {
                        *command_id = attr("CommandId");
                    }
                }
                _ => {}
            }
            if !end {
                stack.push((ns, local));
                text.clear();
                continue;
            }
            stack.push((ns, local));
            text.clear();
        }
        // An element ends: use its text according to where it is.
        let Some((ns, local)) = stack.pop() else {
            return Err(malformed("unbalanced end tag"));
        };
        let value = std::mem::take(&mut text);
        let parent = stack.last().map(|(n, l)| (*n, l.as_str()));
        let in_header = stack.len() == 2 && parent == Some((Ns::Soap, "Header"));
        match (in_header, parent, ns, local.as_str()) {
            (true, _, Ns::Addressing, "Action") => req.action = Some(value.trim().to_string()),
            (true, _, Ns::Addressing, "MessageID") => {
                req.message_id = Some(value.trim().to_string())
            }
            (true, _, Ns::Wsman, "ResourceURI") => {
                req.resource_uri = Some(value.trim().to_string())
            }
            (true, _, Ns::Wsman, "OperationTimeout") => {
                req.operation_timeout = parse_duration(&value)
            }
            (_, Some((Ns::Wsman, "SelectorSet")), Ns::Wsman, "Selector")
                if selector_name
                    .take()
                    .is_some_and(|n| n.eq_ignore_ascii_case("ShellId")) =>
            {
                req.shell_id = Some(value.trim().to_string());
            }
            (_, Some((Ns::Shell, "CommandLine")), Ns::Shell, "Command") => {
                if let Body::CommandLine { command, .. } = &mut req.body {
                    *command = value.trim().to_string();
                }
            }
            (_, Some((Ns::Shell, "CommandLine")), Ns::Shell, "Arguments") => {
                if let Body::CommandLine { arguments, .. } = &mut req.body {
                    arguments.push(value);
                }
            }
            (_, Some((Ns::Shell, "Signal")), Ns::Shell, "Code") => {
                if let Body::Signal { code, .. } = &mut req.body {
                    *code = value.trim().to_string();
                }
            }
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(malformed("the document ends inside an element"));
    }
    if !saw_envelope {
        return Err(malformed("the document has no Envelope"));
    }
    Ok(req)
}

/// Escapes text for XML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// A reply envelope with the given action and body.
pub(crate) fn envelope(action: &str, relates_to: Option<&str>, body: &str) -> String {
    let message_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let relates = relates_to
        .map(|r| format!("<a:RelatesTo>{}</a:RelatesTo>", escape(r)))
        .unwrap_or_default();
    format!(
        "<s:Envelope xml:lang=\"en-US\" xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:x=\"{NS_TRANSFER}\" \
         xmlns:w=\"{NS_WSMAN}\" xmlns:rsp=\"{NS_SHELL}\" xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\">\
         <s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{message_id}</a:MessageID>\
         <a:To>{ANONYMOUS}</a:To>{relates}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
}

/// A fault envelope.
pub(crate) fn fault_envelope(f: &Fault, relates_to: Option<&str>, machine: &str) -> String {
    let action = if f.subcode.starts_with("a:") {
        "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault"
    } else {
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
    };
    let reason = escape(&f.reason);
    let body = format!(
        "<s:Fault><s:Code><s:Value>{}</s:Value><s:Subcode><s:Value>{}</s:Value></s:Subcode></s:Code>\
         <s:Reason><s:Text xml:lang=\"en-US\">{reason}</s:Text></s:Reason>\
         <s:Detail><f:WSManFault xmlns:f=\"{NS_FAULT}\" Code=\"{}\" Machine=\"{}\"><f:Message>{reason}</f:Message></f:WSManFault></s:Detail></s:Fault>",
        f.code,
        f.subcode,
        f.wsman_code,
        escape(machine),
    );
    envelope(action, relates_to, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT60.000S"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("PT20S"), Some(Duration::from_secs(20)));
        assert_eq!(
            parse_duration("P0DT0H1M0.5S"),
            Some(Duration::from_millis(60_500))
        );
        assert_eq!(parse_duration("60"), None);
        assert_eq!(parse_duration("PTxS"), None);
        assert_eq!(parse_duration("PT5X"), None);
    }

    #[test]
    fn parses_by_namespace_not_prefix() {
        let xml = r#"<?xml version="1.0"?><E:Envelope xmlns:E="http://www.w3.org/2003/05/soap-envelope"
            xmlns:q="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:m="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">
          <E:Header><m:OptionSet><m:Option Name="x">y</m:Option></m:OptionSet>
            <q:MessageID>uuid:1</q:MessageID><q:Action>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command</q:Action>
            <m:SelectorSet><m:Selector Name="ShellId">ABC</m:Selector></m:SelectorSet>
            <m:OperationTimeout>PT5S</m:OperationTimeout></E:Header>
          <E:Body><CommandLine xmlns="http://schemas.microsoft.com/wbem/wsman/1/windows/shell">
            <Command>powershell</Command><Arguments>-e</Arguments><Arguments>QQA=</Arguments></CommandLine></E:Body></E:Envelope>"#;
        let r = parse_request(xml).unwrap();
        assert_eq!(r.action.as_deref(), Some(ACTION_COMMAND));
        assert_eq!(r.message_id.as_deref(), Some("uuid:1"));
        assert_eq!(r.shell_id.as_deref(), Some("ABC"));
        assert_eq!(r.operation_timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            r.body,
            Body::CommandLine {
                command: "powershell".into(),
                arguments: vec!["-e".into(), "QQA=".into()],
                command_id: None
            }
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "<a>",
            "<s:Envelope xmlns:s='urn:other'/>",
            "<x:Envelope/>",
            "<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body></s:Envelope>",
            "not xml at all",
        ] {
            assert!(parse_request(bad).is_err(), "{bad}");
        }
    }
}
