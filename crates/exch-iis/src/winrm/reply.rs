//! Reading WS-Management replies: ShellId, CommandId, Receive output and SOAP faults, by local
//! element name (any namespace prefix), with quick-xml.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// One Receive reply.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Output {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// `CommandState` is `…/Done`.
    pub(crate) done: bool,
    pub(crate) exit_code: Option<i32>,
}

/// A SOAP fault.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    /// `WSManFault Code` when present, else the SOAP subcode (`w:TimedOut`), else the code.
    pub(crate) code: String,
    pub(crate) reason: String,
}

fn local(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (local(a.key.as_ref()) == name)
            .then(|| a.unescape_value().ok().map(|v| v.into_owned()))
            .flatten()
    })
}

/// What [`walk`] reports.
enum Ev<'a, 'b> {
    Start(&'a BytesStart<'b>),
    Text(&'a str),
}

/// Walks the document: `f(path of local names, event)`.
fn walk(xml: &str, mut f: impl FnMut(&[Vec<u8>], Ev<'_, '_>)) -> Result<(), String> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                path.push(local(e.name().as_ref()).to_vec());
                f(&path, Ev::Start(&e));
            }
            Ok(Event::Empty(e)) => {
                path.push(local(e.name().as_ref()).to_vec());
                f(&path, Ev::Start(&e));
                path.pop();
            }
            Ok(Event::End(_)) => {
                path.pop();
            }
            Ok(Event::Text(t)) => {
                let text = t.unescape().map_err(|e| format!("bad XML text: {e}"))?;
                f(&path, Ev::Text(&text));
            }
            Ok(Event::CData(t)) => {
                f(&path, Ev::Text(&String::from_utf8_lossy(&t)));
            }
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "malformed XML at {}: {e}",
                    reader.buffer_position()
                ))
            }
        }
    }
}

fn last_is(path: &[Vec<u8>], name: &[u8]) -> bool {
    path.last().is_some_and(|l| l.as_slice() == name)
}

/// The ShellId of a Create reply (`rsp:ShellId`, or the `ShellId` selector).
pub(crate) fn shell_id(xml: &str) -> Result<String, String> {
    let mut id = None;
    let mut in_selector = false;
    walk(xml, |path, ev| match ev {
        Ev::Start(e) => {
            in_selector =
                last_is(path, b"Selector") && attr(e, b"Name").as_deref() == Some("ShellId");
        }
        Ev::Text(text) => {
            let t = text.trim();
            if t.is_empty() || id.is_some() {
                return;
            }
            if last_is(path, b"ShellId") || (in_selector && last_is(path, b"Selector")) {
                id = Some(t.to_owned());
            }
        }
    })?;
    id.ok_or_else(|| "the Create reply has no ShellId".into())
}

/// The CommandId of a Command reply.
pub(crate) fn command_id(xml: &str) -> Result<String, String> {
    let mut id = None;
    walk(xml, |path, ev| {
        if let Ev::Text(text) = ev {
            if id.is_none() && last_is(path, b"CommandId") && !text.trim().is_empty() {
                id = Some(text.trim().to_owned());
            }
        }
    })?;
    id.ok_or_else(|| "the Command reply has no CommandId".into())
}

/// The streams and state of a Receive reply.
pub(crate) fn receive(xml: &str) -> Result<Output, String> {
    let mut out = Output::default();
    let mut stream: Option<String> = None;
    let mut bad: Option<String> = None;
    walk(xml, |path, ev| match ev {
        Ev::Start(e) => {
            if last_is(path, b"Stream") {
                stream = attr(e, b"Name");
            } else if last_is(path, b"CommandState") {
                if let Some(state) = attr(e, b"State") {
                    out.done = state.ends_with("/Done") || state == "Done";
                }
            }
        }
        Ev::Text(text) => {
            if last_is(path, b"Stream") {
                let data = match B64.decode(text.trim()) {
                    Ok(d) => d,
                    Err(e) => {
                        bad = Some(format!("a Stream is not base64: {e}"));
                        return;
                    }
                };
                match stream.as_deref() {
                    Some("stdout") => out.stdout.extend_from_slice(&data),
                    Some("stderr") => out.stderr.extend_from_slice(&data),
                    _ => {}
                }
            } else if last_is(path, b"ExitCode") {
                match text.trim().parse::<i64>() {
                    // Windows exit codes are DWORDs; NTSTATUS values come as large unsigned.
                    Ok(c) => out.exit_code = Some(c as i32),
                    Err(_) => bad = Some(format!("bad ExitCode {:?}", text.trim())),
                }
            }
        }
    })?;
    match bad {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The fault in `xml`, if it is one.
pub(crate) fn fault(xml: &str) -> Option<Fault> {
    let mut is_fault = false;
    let mut wsman_code = None;
    let mut subcode = None;
    let mut code = None;
    let mut reason = String::new();
    let mut message = String::new();
    walk(xml, |path, ev| match ev {
        Ev::Start(e) => {
            if last_is(path, b"Fault") {
                is_fault = true;
            }
            if last_is(path, b"WSManFault") {
                wsman_code = attr(e, b"Code");
            }
        }
        Ev::Text(text) => {
            let t = text.trim();
            if t.is_empty() {
                return;
            }
            let n = path.len();
            let parent = |k: usize, name: &[u8]| n >= k && path[n - k].as_slice() == name;
            if last_is(path, b"Value") && parent(2, b"Subcode") {
                subcode = Some(t.to_owned());
            } else if last_is(path, b"Value") && parent(2, b"Code") {
                code = Some(t.to_owned());
            } else if last_is(path, b"Text") && parent(2, b"Reason") {
                reason.push_str(t);
            } else if path.iter().any(|p| p.as_slice() == b"Message") {
                if !message.is_empty() {
                    message.push(' ');
                }
                message.push_str(t);
            }
        }
    })
    .ok()?;
    if !is_fault {
        return None;
    }
    let code = match (wsman_code, subcode) {
        (Some(w), Some(s)) => format!("{s} ({w})"),
        (Some(w), None) => w,
        (None, Some(s)) => s,
        (None, None) => code.unwrap_or_else(|| "unknown".into()),
    };
    let reason = if message.is_empty() { reason } else { message };
    Some(Fault { code, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_receive_reply() {
        let xml = r#"<s:Envelope xmlns:s="x" xmlns:rsp="y"><s:Body><rsp:ReceiveResponse>
<rsp:Stream Name="stdout" CommandId="C">aGk=</rsp:Stream><rsp:Stream Name="stderr" CommandId="C">ZXJy</rsp:Stream>
<rsp:Stream Name="stdout" CommandId="C" End="true"></rsp:Stream>
<rsp:CommandState CommandId="C" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"><rsp:ExitCode>3</rsp:ExitCode></rsp:CommandState>
</rsp:ReceiveResponse></s:Body></s:Envelope>"#;
        let out = receive(xml).unwrap();
        assert_eq!(
            out,
            Output {
                stdout: b"hi".to_vec(),
                stderr: b"err".to_vec(),
                done: true,
                exit_code: Some(3)
            }
        );
    }

    #[test]
    fn reads_ids_and_faults() {
        let create = r#"<s:Envelope xmlns:s="a"><s:Body><x:ResourceCreated xmlns:x="b" xmlns:w="c"><w:SelectorSet><w:Selector Name="ShellId">S-1</w:Selector></w:SelectorSet></x:ResourceCreated></s:Body></s:Envelope>"#;
        assert_eq!(shell_id(create).unwrap(), "S-1");
        assert!(shell_id("<a/>").is_err());
        let cmd = r#"<e><b><rsp:CommandResponse xmlns:rsp="r"><rsp:CommandId>C-9</rsp:CommandId></rsp:CommandResponse></b></e>"#;
        assert_eq!(command_id(cmd).unwrap(), "C-9");
        let f = r#"<s:Envelope xmlns:s="s" xmlns:w="w" xmlns:f="f"><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:TimedOut</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">The operation timed out.</s:Text></s:Reason><s:Detail><f:WSManFault Code="2150858793" Machine="m"><f:Message>Timed out.</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"#;
        let fault = fault(f).unwrap();
        assert_eq!(fault.code, "w:TimedOut (2150858793)");
        assert_eq!(fault.reason, "Timed out.");
        assert!(super::fault(create).is_none());
    }
}
