//! stderr of `powershell.exe` under WinRM: PowerShell writes its error stream as CLIXML
//! (`#< CLIXML` then `<Objs>` with `<S S="Error">` lines and progress records), not as text.
//! [`readable`] turns that into the lines a person would have seen in a console.

/// The error and warning lines of a CLIXML stderr, decoded; any other text unchanged.
pub(crate) fn readable(stderr: &str) -> String {
    let Some(xml) = stderr.trim_start().strip_prefix("#< CLIXML") else {
        return stderr.to_owned();
    };
    let mut out = String::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<S S=\"") {
        let after = &rest[start + 6..];
        let Some(q) = after.find('"') else { break };
        let stream = &after[..q];
        let Some(gt) = after[q..].find('>') else {
            break;
        };
        let body_start = q + gt + 1;
        let Some(end) = after[body_start..].find("</S>") else {
            break;
        };
        let text = &after[body_start..body_start + end];
        if matches!(
            stream,
            "Error" | "Warning" | "Verbose" | "Debug" | "Information"
        ) {
            out.push_str(&unescape(text));
        }
        rest = &after[body_start + end + 4..];
    }
    out
}

/// XML entities and PowerShell's `_xHHHH_` escapes.
fn unescape(text: &str) -> String {
    let xml = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml.as_str();
    while let Some(i) = rest.find("_x") {
        out.push_str(&rest[..i]);
        let cand = &rest[i..];
        let decoded = cand
            .get(2..6)
            .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
            .filter(|_| cand.get(6..7) == Some("_"))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32);
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &cand[7..];
            }
            None => {
                out.push_str("_x");
                rest = &cand[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_kept_progress_dropped() {
        let s = "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><Obj S=\"progress\" RefId=\"0\"><TN RefId=\"0\"><T>System.Management.Automation.PSCustomObject</T></TN><MS><I64 N=\"SourceId\">1</I64><PR N=\"Record\"><AV>Preparing modules for first use.</AV></PR></MS></Obj><S S=\"Error\">Restart-WebAppPool : no pool &lt;X&gt;_x000D__x000A_</S><S S=\"Error\">    + CategoryInfo : x_x000D__x000A_</S></Objs>";
        assert_eq!(
            readable(s),
            "Restart-WebAppPool : no pool <X>\r\n    + CategoryInfo : x\r\n"
        );
        assert_eq!(readable("plain text"), "plain text");
        assert_eq!(unescape("a_x0041_b_xZZ_c"), "aAb_xZZ_c");
    }
}
