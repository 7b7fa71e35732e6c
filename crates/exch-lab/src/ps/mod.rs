//! The lab's PowerShell-subset interpreter.
//!
//! The WinRM endpoint ([`crate::winrm`]) decodes `powershell.exe -EncodedCommand …` and hands the
//! script to [`run_script`], which talks to the simulated server only through
//! [`IisHost`]. The subset is the contract in `docs/powershell-subset.md`
//! (the scripts `exch-iis` generates); anything outside it fails the way PowerShell does: exit
//! code 1 and PowerShell-style error text on stderr.
//!
//! # Grammar (names case-insensitive)
//! - Statements separated by newlines or `;`; `#` and `<# … #>` comments; backtick line
//!   continuation.
//! - `$var = <pipeline>`, `$var += <pipeline>` (array append, number add, string concat).
//! - `foreach ($x in <pipeline>) { … }`, `if (…) { … } elseif (…) { … } else { … }`,
//!   `try { … } catch [Type] { … } finally { … }` (in `catch`, `$_.Exception.Message` is the
//!   error text). `continue` / `break` are not in the subset.
//! - Pipelines `<command or expression> | <command> | …`; a statement that is not an assignment
//!   writes its output to stdout (strings as-is, one per line; objects as `@{Name=…; …}`, not as
//!   PowerShell's tables).
//! - Commands: a bareword name (`Get-ChildItem`, `iisreset.exe`, `C:\…\appcmd.exe`) or
//!   `& <expr>`, with `-Param value`, `-Param:value`, switches, positional values and barewords
//!   (`/noforce`, `/apppool.name:X`). Parameter names may be abbreviated to a unique prefix, as in
//!   PowerShell. `-ErrorAction` (`-ea`) is honoured on every cmdlet.
//! - Expressions: `'single'` (`''` escapes a quote) and `"double"` strings (backtick escapes,
//!   **no** `$` expansion), integers, `$null`, `$true`, `$false`, variables, `$_`, member access
//!   (member enumeration over arrays, `.Count`, `.Length`), `.ToUniversalTime()`,
//!   `.ToString('o' | 's' | 'u')` on dates, `.ToString()`, `[DateTime]::UtcNow`, casts `[int]`,
//!   `[string]`, `[bool]`, `[datetime]`, `[array]`, `[pscustomobject]`, `@()`, `@(…)`, comma lists,
//!   `(…)`, `@{ k = v; … }` (key order kept), indexing `[n]`, operators `+`, `-`, `-eq`, `-ne`,
//!   `-gt`, `-ge`, `-lt`, `-le` (case-insensitive), `-not`, `!`, `-and`, `-or`.
//! - `$ErrorActionPreference = 'Stop'` makes cmdlet errors terminating (catchable); otherwise they
//!   are written to stderr and the script continues. `$LASTEXITCODE` is set by native commands.
//! - `-WarningAction` / `$WarningPreference`: warnings go to stdout (`WARNING: …`) before the
//!   output of the statement that wrote them. Binding errors and refused prompts end their
//!   statement whatever `-ErrorAction` says (`try` catches them).
//!
//! # Commands
//! | command | behaviour |
//! |---|---|
//! | `Import-Module WebAdministration` | no-op (other modules: error) |
//! | `Get-ChildItem 'IIS:\AppPools'` | pool items `.Name`, `.State` |
//! | `Get-ChildItem 'IIS:\AppPools\<pool>\WorkerProcesses'` | worker items `.processId`, `.state` (`Running`, or `Stopping` for a recycle's old worker) |
//! | `Test-Path 'IIS:\AppPools\<pool>'` | `$true` / `$false` |
//! | `Get-Process -Id <pid>` | `.Id`, `.ProcessName` (`w3wp`), `.StartTime` |
//! | `Get-WebAppPoolState -Name <pool>` | `.Value` (`Started`/`Stopped`) |
//! | `Restart-WebAppPool`, `Start-WebAppPool`, `Stop-WebAppPool -Name <pool>` | through the host |
//! | `iisreset[.exe] [/noforce] [/status] [/stop] [/start]` | host's text, `$LASTEXITCODE` |
//! | `appcmd[.exe] recycle apppool /apppool.name:<pool>` (and `list apppool`) | IIS-style text, `$LASTEXITCODE` |
//! | `Get-ItemProperty` / `Set-ItemProperty` / `New-ItemProperty` of `HKLM:\SYSTEM\CurrentControlSet\Services\InetInfo\Parameters` `UserTokenTTL` | through the host |
//! | `ConvertTo-Json [-InputObject x] [-Depth n] [-Compress]` | PS 5.1 JSON (`'`, `<`, `>`, `&` escaped as `\u00XX`, dates as `/Date(ms)/`) |
//! | `Out-Null`, `Out-String`, `Write-Output` | as PowerShell |
//! | `Start-Sleep [-Seconds] n` / `-Milliseconds n` | waits (at most a minute per call) |
//! | `Add-PSSnapin <name>` | the host's Exchange snap-in ([`IisHost::exchange`]); others fail as PowerShell does |
//! | `Get-Mailbox`, `Set-Mailbox`, `Get-CASMailbox`, `Set-CASMailbox`, `Get-MobileDevice`, `Clear-MobileDevice`, `Get-InboxRule`, `Disable-InboxRule`, `Remove-InboxRule` | over the host's [`crate::mailbox::ExchangeShell`], after `Add-PSSnapin`; Exchange's wording in errors; destructive ones need `-Confirm:$false` |
//!
//! A missing pool fails with `Cannot find path 'IIS:\AppPools\<pool>' because it does not
//! exist.`; an unknown command with `The term 'X' is not recognized as the name of a cmdlet, …`.
//! Syntax errors are reported like PowerShell's `ParserError` (nothing runs, exit 1).
//!
//! # Exit code
//! 1 when a terminating error was not caught, or when the last statement wrote an error;
//! otherwise 0 (like `powershell.exe -EncodedCommand`).
//!
//! # Guards
//! Scripts are capped ([`Limits`]): size, nesting depth, statements + loop iterations, wall time,
//! objects per pipeline, bytes per value and output size. Tripping a guard stops the script with
//! an error on stderr and exit 1; it never panics or hangs.
//!
//! ```
//! # use exch_lab::ps::run_script;
//! # async fn demo(host: &dyn exch_lab::host::IisHost) {
//! let out = run_script(host, "ConvertTo-Json -InputObject @{ a = 1 } -Compress").await;
//! assert_eq!(out.stdout.trim_end(), r#"{"a":1}"#);
//! # }
//! ```

mod ast;
mod commands;
mod eval;
mod exchange;
mod ops;
mod parser;
mod value;

use std::time::Duration;

use crate::host::IisHost;
use ast::Span;
use eval::{Interp, PsError};

/// Output of a script run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScriptOutput {
    /// Text written to stdout (lines end in `\r\n`).
    pub stdout: String,
    /// Text written to stderr (PowerShell-style error records).
    pub stderr: String,
    /// The process exit code.
    pub exit_code: i32,
}

/// Resource guards of the interpreter.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest script accepted, in bytes.
    pub max_script_bytes: usize,
    /// Statements, commands and loop iterations executed.
    pub max_steps: u64,
    /// Wall-clock time for the whole script (host calls included).
    pub max_duration: Duration,
    /// Objects in one pipeline or array.
    pub max_items: usize,
    /// Approximate bytes of one value.
    pub max_value_bytes: usize,
    /// Bytes of stdout (and of stderr).
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_script_bytes: 256 * 1024,
            max_steps: 200_000,
            max_duration: Duration::from_secs(300),
            max_items: 100_000,
            max_value_bytes: 4 * 1024 * 1024,
            max_output_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Runs a script with the default [`Limits`].
pub async fn run_script(host: &dyn IisHost, script: &str) -> ScriptOutput {
    run_script_with_limits(host, script, Limits::default()).await
}

/// Runs a script with explicit [`Limits`].
pub async fn run_script_with_limits(
    host: &dyn IisHost,
    script: &str,
    limits: Limits,
) -> ScriptOutput {
    if script.len() > limits.max_script_bytes {
        return ScriptOutput {
            stdout: String::new(),
            stderr: format!(
                "The script is {} bytes long; the lab accepts at most {} bytes.\r\n",
                script.len(),
                limits.max_script_bytes
            ),
            exit_code: 1,
        };
    }
    let stmts = match parser::parse_script(script) {
        Ok(s) => s,
        Err(e) => {
            return ScriptOutput {
                stdout: String::new(),
                stderr: render_parse_error(script, &e),
                exit_code: 1,
            }
        }
    };
    let mut interp = Interp::new(host, script, limits);
    let mut stdout = String::new();
    let mut result = Ok(());
    // Statement by statement, so that what the host writes (warnings, `What if:`) comes out
    // before the output of the statement that wrote it, as the console host prints it.
    for stmt in &stmts {
        let mut out = Vec::new();
        result = interp
            .exec_block(std::slice::from_ref(stmt), &mut out)
            .await;
        stdout.push_str(&std::mem::take(&mut interp.console));
        for v in &out {
            if matches!(v, value::Value::Null) {
                continue;
            }
            stdout.push_str(&v.to_ps_string());
            stdout.push_str("\r\n");
        }
        if stdout.len() > limits.max_output_bytes {
            stdout.truncate(floor_char_boundary(&stdout, limits.max_output_bytes));
            interp
                .stderr
                .push_str("The script's output exceeded the lab's limit and was truncated.\r\n");
            interp.last_failed = true;
            break;
        }
        if result.is_err() {
            break;
        }
    }
    let exit_code = match result {
        Err(e) => {
            interp.stderr.push_str(&render_runtime_error(script, &e));
            1
        }
        Ok(()) if interp.last_failed => 1,
        Ok(()) => 0,
    };
    ScriptOutput {
        stdout,
        stderr: interp.stderr,
        exit_code,
    }
}

/// The largest char boundary of `s` at or below `max`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    (0..=max.min(s.len()))
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
}

/// Runs a native program the lab knows (`iisreset`, `appcmd`, with or without `.exe` or a
/// directory) with the given arguments; `None` if the program is not one of them.
pub async fn run_native_command(
    host: &dyn IisHost,
    program: &str,
    args: &[String],
) -> Option<ScriptOutput> {
    let out = commands::run_native(host, program, args).await?;
    Some(ScriptOutput {
        stdout: out.stdout,
        stderr: String::new(),
        exit_code: out.exit_code,
    })
}

/// The program name of a native command line token (`C:\x\AppCmd.exe` → `appcmd`).
pub fn native_program_name(token: &str) -> String {
    commands::native_name(token)
}

/// Line number (1-based), column (1-based) and the text of the line containing `pos`.
fn locate(src: &str, pos: usize) -> (usize, usize, &str) {
    let pos = pos.min(src.len());
    let pos = (0..=pos)
        .rev()
        .find(|p| src.is_char_boundary(*p))
        .unwrap_or(0);
    let line_start = src[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[pos..].find(['\n', '\r']).map_or(src.len(), |i| pos + i);
    let line_no = src[..pos].matches('\n').count() + 1;
    let col = src[line_start..pos].chars().count() + 1;
    (line_no, col, &src[line_start..line_end])
}

fn position_block(src: &str, span: Span) -> String {
    let (line, col, text) = locate(src, span.start);
    let width = src
        .get(span.start..span.end.max(span.start))
        .map(|s| s.lines().next().unwrap_or("").trim_end().chars().count())
        .unwrap_or(1)
        .max(1);
    let text: String = text.chars().take(200).collect();
    format!(
        "At line:{line} char:{col}\r\n+ {text}\r\n+ {}{}\r\n",
        " ".repeat(col - 1),
        "~".repeat(width.min(200))
    )
}

/// Renders a syntax error like PowerShell's `ParserError`.
fn render_parse_error(src: &str, e: &parser::ParseError) -> String {
    let mut s = position_block(
        src,
        Span {
            start: e.pos,
            end: e.pos + 1,
        },
    );
    s.push_str(&e.message);
    s.push_str("\r\n    + CategoryInfo          : ParserError: (:) [], ParentContainsErrorRecordException\r\n");
    s.push_str(&format!("    + FullyQualifiedErrorId : {}\r\n \r\n", e.id));
    s
}

/// Renders an error record like PowerShell's console host.
pub(crate) fn render_runtime_error(src: &str, e: &PsError) -> String {
    let mut s = String::new();
    match &e.command {
        Some(c) => s.push_str(&format!("{c} : {}\r\n", e.message)),
        None => s.push_str(&format!("{}\r\n", e.message)),
    }
    if let Some(span) = e.span {
        s.push_str(&position_block(src, span));
    }
    let cmd = e.command.clone().unwrap_or_default();
    // PowerShell shows `(target:String)` for a string target and `(:)` for none.
    let target = if e.target.is_empty() {
        ":".to_owned()
    } else {
        format!("{}:String", e.target)
    };
    s.push_str(&format!(
        "    + CategoryInfo          : {}: ({target}) [{cmd}], {}\r\n",
        e.category, e.exception
    ));
    s.push_str(&format!(
        "    + FullyQualifiedErrorId : {}\r\n \r\n",
        e.fqid
    ));
    s
}
