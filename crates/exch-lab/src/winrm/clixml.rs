//! stderr of `powershell.exe` under WinRM: CLIXML, as the console host serializes its error
//! and progress streams when its output is redirected (`-OutputFormat Text` is not used by
//! WinRM clients; the `#< CLIXML` marker is what pywinrm's `_clean_error_msg` looks for).
//!
//! Every run writes one progress record first (loading a module under WinRM does: "Preparing
//! modules for first use."), even when it succeeds; each line of an error record is one
//! `<S S="Error">` element ending in an escaped CRLF.

const PROGRESS: &str = "<Obj S=\"progress\" RefId=\"0\"><TN RefId=\"0\"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN><MS><I64 N=\"SourceId\">1</I64><PR N=\"Record\"><AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>";

/// Escapes `text` for a CLIXML string: XML entities, and control characters and `_x` as
/// `_xHHHH_` (PowerShell's `XmlConvert.EncodeName`-like encoding).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '_' if chars.peek() == Some(&'x') => out.push_str("_x005F_"),
            c if (c as u32) < 0x20 => out.push_str(&format!("_x{:04X}_", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `stderr` (plain text, lines ending in CRLF or LF) as `powershell.exe` writes it under
/// WinRM: `#< CLIXML\r\n<Objs …>` with a progress record and one `<S S="Error">` per line.
pub(crate) fn powershell_stderr(stderr: &str) -> String {
    let mut out = String::from(
        "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">",
    );
    out.push_str(PROGRESS);
    for line in stderr.lines() {
        out.push_str("<S S=\"Error\">");
        out.push_str(&escape(line));
        out.push_str("_x000D__x000A_</S>");
    }
    out.push_str("</Objs>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_lines_and_escapes() {
        let s = powershell_stderr("a <b> & c_x\r\nline two\r\n");
        assert!(s.starts_with("#< CLIXML\r\n<Objs Version=\"1.1.0.1\""));
        assert!(s.contains("<S S=\"Error\">a &lt;b&gt; &amp; c_x005F_x_x000D__x000A_</S>"));
        assert!(s.contains("<S S=\"Error\">line two_x000D__x000A_</S></Objs>"));
        assert!(powershell_stderr("").contains("S=\"progress\""));
    }
}
