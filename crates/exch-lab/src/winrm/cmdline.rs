//! Decoding the command line of a `rsp:CommandLine` into what the lab runs.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::ps::ScriptOutput;

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// A PowerShell script (`-EncodedCommand` decoded, or `-Command` text).
    Script(String),
    /// A native program (`iisreset`, `appcmd`) with its arguments.
    Native { program: String, args: Vec<String> },
    /// Nothing to run: the result is known already (usage errors, unknown programs).
    Done(ScriptOutput),
}

fn failed(stderr: String) -> Plan {
    Plan::Done(ScriptOutput {
        stdout: String::new(),
        stderr,
        exit_code: 1,
    })
}

/// Splits a Windows command line (whitespace separates, double quotes group, `\"` is a quote).
pub(crate) fn split_command_line(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut has_token = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
                has_token = true;
            }
            '"' => {
                in_quotes = !in_quotes;
                has_token = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has_token {
                    out.push(std::mem::take(&mut cur));
                    has_token = false;
                }
            }
            c => {
                cur.push(c);
                has_token = true;
            }
        }
    }
    if has_token {
        out.push(cur);
    }
    out
}

fn program_name(token: &str) -> String {
    crate::ps::native_program_name(token)
}

/// Decodes `-EncodedCommand` text (base64 of UTF-16LE).
pub(crate) fn decode_encoded(b64: &str) -> Option<String> {
    let bytes = B64.decode(b64.trim()).ok()?;
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let s = String::from_utf16_lossy(&units);
    Some(s.strip_prefix('\u{feff}').unwrap_or(&s).to_string())
}

/// Works out what to run for `command` + `arguments` (WinRS joins them with spaces).
pub(crate) fn plan(command: &str, arguments: &[String]) -> Plan {
    let mut line = command.to_string();
    for a in arguments {
        line.push(' ');
        line.push_str(a);
    }
    // cmd.exe refuses a command line longer than 8191 characters (UTF-16 units), before
    // anything runs.
    if line.encode_utf16().count() > MAX_CMD_LINE {
        return failed("The command line is too long.\r\n".to_owned());
    }
    plan_line(&line, 0)
}

/// The longest command line cmd.exe accepts (UTF-16 units).
pub(crate) const MAX_CMD_LINE: usize = 8191;

fn not_recognized(name: &str) -> Plan {
    failed(format!(
        "'{name}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
    ))
}

fn plan_line(line: &str, depth: usize) -> Plan {
    let tokens = split_command_line(line);
    let Some(first) = tokens.first() else {
        return Plan::Done(ScriptOutput::default());
    };
    match program_name(first).as_str() {
        "powershell" | "pwsh" => plan_powershell(&tokens[1..]),
        "iisreset" | "appcmd" => Plan::Native {
            program: first.clone(),
            args: tokens[1..].to_vec(),
        },
        "cmd" if depth < 2 => {
            let pos = tokens
                .iter()
                .position(|t| t.eq_ignore_ascii_case("/c") || t.eq_ignore_ascii_case("/k"));
            match pos {
                Some(i) => plan_line(&tokens[i + 1..].join(" "), depth + 1),
                None => Plan::Done(ScriptOutput::default()),
            }
        }
        _ => not_recognized(first),
    }
}

fn is_prefix(arg: &str, full: &str, min: usize) -> bool {
    arg.len() >= min && full.starts_with(arg)
}

fn plan_powershell(args: &[String]) -> Plan {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(name) = a.strip_prefix('-').or_else(|| a.strip_prefix('/')) else {
            // The first non-parameter starts the command text.
            return Plan::Script(args[i..].join(" "));
        };
        let name = name.to_ascii_lowercase();
        let value = args.get(i + 1);
        if name == "e"
            || name == "ec"
            || is_prefix(&name, "encodedcommand", 2) && name.starts_with("en")
        {
            let Some(v) = value else {
                return failed("Cannot process the command because of a missing parameter. A command must follow -EncodedCommand.\r\n".into());
            };
            return match decode_encoded(v) {
                Some(script) => Plan::Script(script),
                None => failed(
                    "Cannot process the command because the value specified with -EncodedCommand is not properly encoded. The value must be Base64 encoded.\r\n"
                        .into(),
                ),
            };
        }
        if name == "c" || is_prefix(&name, "command", 2) {
            return Plan::Script(args[i + 1..].join(" "));
        }
        let takes_value = name == "ep"
            || name == "if"
            || name == "of"
            || name == "w"
            || name == "v"
            || is_prefix(&name, "executionpolicy", 2) && name.starts_with("ex")
            || is_prefix(&name, "inputformat", 3)
            || is_prefix(&name, "outputformat", 1)
            || is_prefix(&name, "windowstyle", 1)
            || is_prefix(&name, "version", 1)
            || is_prefix(&name, "psconsolefile", 3);
        let flag = is_prefix(&name, "noprofile", 3)
            || is_prefix(&name, "noninteractive", 4)
            || is_prefix(&name, "nologo", 3)
            || is_prefix(&name, "noexit", 3)
            || name == "sta"
            || name == "mta";
        if takes_value {
            if value.is_none() {
                return failed(format!("Missing argument for parameter {a}.\r\n"));
            }
            i += 2;
        } else if flag {
            i += 1;
        } else if is_prefix(&name, "file", 1) {
            return failed(
                "The lab does not run script files (-File); use -EncodedCommand.\r\n".into(),
            );
        } else {
            // PowerShell treats an unknown parameter as the start of the command text.
            return Plan::Script(args[i..].join(" "));
        }
    }
    Plan::Done(ScriptOutput::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_over_8191_characters_fail_like_cmd() {
        let ok = "x".repeat(MAX_CMD_LINE - "powershell -EncodedCommand ".len());
        assert!(!matches!(
            plan("powershell", &["-EncodedCommand".into(), ok.clone()]),
            Plan::Done(ref o) if o.stderr.contains("too long")
        ));
        match plan("powershell", &["-EncodedCommand".into(), format!("{ok}x")]) {
            Plan::Done(out) => {
                assert_eq!(out.exit_code, 1);
                assert_eq!(out.stderr, "The command line is too long.\r\n");
            }
            other => panic!("{other:?}"),
        }
    }

    fn enc(s: &str) -> String {
        let b: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
        B64.encode(b)
    }

    #[test]
    fn powershell_forms() {
        let e = enc("'hi'");
        let want = Plan::Script("'hi'".into());
        assert_eq!(plan(&format!("powershell -encodedcommand {e}"), &[]), want);
        assert_eq!(
            plan(
                "powershell.exe",
                &[
                    "-NoProfile".into(),
                    "-NonInteractive".into(),
                    "-EncodedCommand".into(),
                    e.clone()
                ]
            ),
            want
        );
        assert_eq!(
            plan(
                "PowerShell.EXE",
                &[format!("-ExecutionPolicy Bypass -enc {e}")]
            ),
            want
        );
        assert_eq!(
            plan(
                r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe -e",
                std::slice::from_ref(&e)
            ),
            want
        );
        assert_eq!(
            plan(&format!("cmd /c powershell -NoP -NonI -EC {e}"), &[]),
            want
        );
        assert_eq!(
            plan("powershell -Command 'a'", &[]),
            Plan::Script("'a'".into())
        );
    }

    #[test]
    fn bad_base64_is_a_powershell_error() {
        for bad in ["!!!notbase64", "QQ", "QUJD"] {
            match plan("powershell -EncodedCommand", &[bad.into()]) {
                Plan::Done(o) => {
                    assert_eq!(o.exit_code, 1);
                    assert!(o.stderr.contains("not properly encoded"), "{bad}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn natives_and_unknown() {
        assert_eq!(
            plan("iisreset", &["/noforce".into()]),
            Plan::Native {
                program: "iisreset".into(),
                args: vec!["/noforce".into()]
            }
        );
        match plan("format c:", &[]) {
            Plan::Done(o) => {
                assert_eq!(o.exit_code, 1);
                assert!(o
                    .stderr
                    .starts_with("'format' is not recognized as an internal or external command"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(plan("   ", &[]), Plan::Done(ScriptOutput::default()));
        assert_eq!(
            split_command_line(r#"a "b c" d\"e"#),
            vec!["a", "b c", "d\"e"]
        );
    }
}
