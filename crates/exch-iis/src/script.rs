//! The PowerShell scripts exch-iis sends, one per operation (see `docs/powershell-subset.md`).
//!
//! Every script is valid Windows PowerShell 5.1 (with the `WebAdministration` module), stays
//! inside the subset that the lab interprets, prints exactly one JSON document
//! (`ConvertTo-Json -Compress`) on stdout, and fails with a non-zero exit code and the error on
//! stderr. Only validated [`AppPool`] names (written with [`ps_quote`]) and integers are ever
//! put into a script; no other caller text.
//!
//! ```
//! use exch_core::AppPool;
//! use exch_iis::script;
//!
//! let s = script::recycle_pools(&[AppPool::new("MSExchangeOWAAppPool").unwrap()]);
//! assert!(s.contains("@('MSExchangeOWAAppPool')"));
//! assert_eq!(script::ps_quote("it's"), "'it''s'");
//! let command_line = script::command_line(&s);
//! assert_eq!(command_line[0], "powershell.exe");
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use exch_core::AppPool;

/// The registry key that holds `UserTokenTTL`.
pub const INETINFO_PARAMETERS: &str =
    r"HKLM:\SYSTEM\CurrentControlSet\Services\InetInfo\Parameters";

/// Largest `UserTokenTTL` this crate writes (seconds): the largest positive `DWORD` PowerShell
/// 5.1 accepts for `-PropertyType DWord` without a conversion error.
pub const MAX_TOKEN_TTL_SECS: u32 = i32::MAX as u32;

/// The characters PowerShell treats as a single quote: `'` and U+2018, U+2019, U+201A, U+201B.
pub const SINGLE_QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];

/// Writes `s` as a PowerShell single-quoted (verbatim) string literal: every single-quote
/// character, ASCII or typographic, is doubled. Nothing is expanded inside such a literal.
/// Any other character, newlines included, is kept verbatim, except that a NUL cannot be
/// carried by a script at all (hosts and parsers stop at it): refuse control characters
/// before quoting, as [`AppPool::new`](exch_core::AppPool::new) does.
pub fn ps_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if SINGLE_QUOTES.contains(&c) {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// [`ps_quote`] for text this crate did not validate (names read from a server, identities
/// typed by a user): `None` when `s` contains a NUL, which no script can carry (hosts and
/// parsers stop at it) — refuse such a value before building the script. Every other
/// character, `$`, backticks, `;`, double quotes, newlines and all, ends up inside the
/// verbatim literal, where PowerShell expands nothing.
///
/// ```
/// use exch_iis::script::try_ps_quote;
/// assert_eq!(try_ps_quote("o'brien\u{2019}$x").as_deref(), Some("'o''brien\u{2019}\u{2019}$x'"));
/// assert_eq!(try_ps_quote("a\0b"), None);
/// ```
pub fn try_ps_quote(s: &str) -> Option<String> {
    (!s.contains('\0')).then(|| ps_quote(s))
}

/// The inverse of [`ps_quote`] as PowerShell reads a verbatim literal; `None` when `lit` is not
/// one literal (no surrounding quotes, or a lone quote inside).
pub fn ps_unquote(lit: &str) -> Option<String> {
    let mut chars = lit.chars();
    let first = chars.next()?;
    let last = chars.next_back()?;
    if !SINGLE_QUOTES.contains(&first) || !SINGLE_QUOTES.contains(&last) {
        return None;
    }
    let inner: Vec<char> = chars.collect();
    let mut out = String::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        if SINGLE_QUOTES.contains(&c) {
            match inner.get(i + 1) {
                Some(n) if SINGLE_QUOTES.contains(n) => {
                    out.push(*n);
                    i += 2;
                }
                _ => return None,
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(out)
}

/// The longest command line cmd.exe and the WinRS shell accept, in characters (8191).
pub const MAX_COMMAND_LINE: usize = 8191;

/// The length in characters of [`command_line`]`(script)` as the shell sees it: the program
/// and its arguments joined with spaces. At most [`MAX_COMMAND_LINE`] can be sent; the base64
/// of UTF-16LE makes that about 3,000 characters of script.
pub fn command_line_len(script: &str) -> usize {
    let args = command_line(script);
    args.iter().map(String::len).sum::<usize>() + args.len().saturating_sub(1)
}

/// UTF-16LE, then base64: what `powershell.exe -EncodedCommand` expects.
pub fn encode_command(script: &str) -> String {
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    B64.encode(bytes)
}

/// The command line that runs `script`: `powershell.exe -NoProfile -NonInteractive
/// -EncodedCommand <base64>` (program first, then its arguments).
pub fn command_line(script: &str) -> Vec<String> {
    vec![
        "powershell.exe".into(),
        "-NoProfile".into(),
        "-NonInteractive".into(),
        "-EncodedCommand".into(),
        encode_command(script),
    ]
}

const PROLOGUE: &str = "$ErrorActionPreference = 'Stop'\nImport-Module WebAdministration\n";

/// Lists the serving workers (state not `Stopping`: draining workers of an overlapped recycle
/// take no new logons) of the pool whose name is in `$name_var` into `$var`, each with its pid
/// and UTC start time. A worker that exits while being listed is skipped.
fn workers_into(var: &str, name_var: &str, indent: &str) -> String {
    format!(
        "{indent}${var} = @()\n\
         {indent}foreach ($wp in @(Get-ChildItem -Path ('IIS:\\AppPools\\' + {name_var} + '\\WorkerProcesses'))) {{\n\
         {indent}    if ($wp.state -ne 'Stopping') {{\n\
         {indent}        $proc = Get-Process -Id $wp.processId -ErrorAction SilentlyContinue\n\
         {indent}        if ($null -ne $proc) {{\n\
         {indent}            ${var} += [pscustomobject]@{{ pid = [int]$wp.processId; started = $proc.StartTime.ToUniversalTime().ToString('o') }}\n\
         {indent}        }}\n\
         {indent}    }}\n\
         {indent}}}\n"
    )
}

/// Lists every pool with its state and serving workers.
///
/// Prints `{"pools":[{"name":…,"state":…,"workers":[{"pid":…,"started":…}]}]}`.
pub fn list_pools() -> String {
    let mut s = String::from(PROLOGUE);
    s.push_str("$result = @()\n");
    s.push_str("foreach ($pool in @(Get-ChildItem -Path 'IIS:\\AppPools')) {\n");
    s.push_str(&workers_into("workers", "$pool.Name", "    "));
    s.push_str(
        "    $result += [pscustomobject]@{ name = $pool.Name; state = [string]$pool.State; workers = $workers }\n}\n",
    );
    s.push_str(
        "ConvertTo-Json -InputObject ([pscustomobject]@{ pools = @($result) }) -Depth 5 -Compress\n",
    );
    s
}

/// The pool list literal: `@('A', 'B')`.
fn pool_list(pools: &[AppPool]) -> String {
    let quoted: Vec<String> = pools.iter().map(|p| ps_quote(p.as_str())).collect();
    format!("@({})", quoted.join(", "))
}

/// Waits before each look at a recycled pool's workers (milliseconds; the first look is at
/// once); the sum covers the longest shutdown limit
/// ([`crate::catalog::RecycleProfile::IIS_DEFAULT`], 90 s).
const WAIT_STEPS_MS: [u32; 12] = [
    0, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 40000,
];

/// Recycle of `pools`: every pool's recycle is requested first, one after the other (the
/// workers before it read just before its request), then all of them are watched together.
///
/// `Restart-WebAppPool` returns when IIS has accepted the request, not when the new worker
/// serves: on an overlapped pool the old worker keeps taking new requests (from its token
/// cache) until the new one has started; a stop-then-start pool has no worker until the old
/// one has gone. So after the requests the script looks at the pools' serving workers again,
/// with back-off, until for each pool none of the workers listed before still serves and (for
/// a pool that had one) a new worker serves — until the first look at or past that pool's
/// shutdown limit ([`crate::catalog::recycle_profile`]; the back-off steps may pass a 5 s limit
/// by up to 1.4 s) — and reports how long it waited (`waitedMs`). The
/// pools start their new workers in parallel, so a server's flush waits for its slowest pool,
/// not for the sum of them. A pool left without a worker at the limit is proven (no worker, no
/// cache: IIS starts one on demand); one whose old worker still serves is not.
///
/// Names are matched against the server's pools with `-eq` (case-insensitive, like IIS); a pool
/// the server lacks is reported in `missing`, not fatal; a pool that fails to recycle carries
/// the error text. Prints `{"requested":…,"pools":[{"name","state","before","after","error",
/// "waitedMs","limitMs"}],"missing":[…]}` (pools in the order they were done) with
/// `requested` taken from the server clock before the first recycle.
pub fn recycle_pools(pools: &[AppPool]) -> String {
    let limits: Vec<String> = pools
        .iter()
        .map(|p| {
            crate::catalog::recycle_profile(p)
                .shutdown_time_limit
                .as_millis()
                .to_string()
        })
        .collect();
    let steps: Vec<String> = WAIT_STEPS_MS.iter().map(u32::to_string).collect();
    let mut s = String::from(PROLOGUE);
    s.push_str("$present = @(Get-ChildItem -Path 'IIS:\\AppPools')\n");
    s.push_str("$requested = [DateTime]::UtcNow.ToString('o')\n");
    s.push_str("$result = @()\n$missing = @()\n$pending = @()\n");
    s.push_str(&format!("$limits = @({})\n", limits.join(", ")));
    s.push_str(&format!("$steps = @({})\n", steps.join(", ")));
    s.push_str("$index = 0\n");
    // 1. Request every recycle.
    s.push_str(&format!("foreach ($want in {}) {{\n", pool_list(pools)));
    s.push_str("    $limit = $limits[$index]\n    $index += 1\n");
    s.push_str("    $name = $null\n");
    s.push_str("    foreach ($p in $present) { if ($p.Name -eq $want) { $name = $p.Name } }\n");
    s.push_str("    if ($null -eq $name) { $missing += $want }\n    else {\n");
    s.push_str(&workers_into("before", "$name", "        "));
    s.push_str(
        "        try { Restart-WebAppPool -Name $name; $failure = $null } catch { $failure = $_.Exception.Message }\n",
    );
    s.push_str(
        "        $pending += [pscustomobject]@{ name = $name; before = $before; failure = $failure; limit = $limit }\n",
    );
    s.push_str("    }\n}\n");
    // 2. Watch them together until each is done or at its limit.
    s.push_str("$waited = 0\n");
    s.push_str("foreach ($step in $steps) { if ($pending.Count -gt 0) {\n");
    s.push_str("    if ($step -gt 0) { Start-Sleep -Milliseconds $step }\n");
    s.push_str("    $waited += $step\n");
    s.push_str("    $next = @()\n");
    s.push_str("    foreach ($e in $pending) {\n");
    s.push_str("        $name = $e.name\n        $before = $e.before\n");
    s.push_str(&workers_into("after", "$name", "        "));
    s.push_str("        $stale = $false\n");
    s.push_str("        if ($null -eq $e.failure) {\n");
    s.push_str("        if ($before.Count -gt 0 -and $after.Count -eq 0) { $stale = $true }\n");
    s.push_str("        foreach ($w in $after) { foreach ($b in $before) { if ($w.pid -eq $b.pid) { $stale = $true } } } }\n");
    s.push_str("        if ($waited -ge $e.limit) { $stale = $false }\n");
    s.push_str("        if ($stale) { $next += $e }\n");
    s.push_str(
        "        else { $result += [pscustomobject]@{ name = $name; state = [string](Get-WebAppPoolState -Name $name).Value; before = $before; after = $after; error = $e.failure; waitedMs = $waited; limitMs = $e.limit } }\n",
    );
    s.push_str("    }\n    $pending = $next\n} }\n");
    s.push_str(
        "ConvertTo-Json -InputObject ([pscustomobject]@{ requested = $requested; pools = @($result); missing = @($missing) }) -Depth 5 -Compress\n",
    );
    s
}

/// `iisreset /noforce` (or `iisreset` when `force`), with every pool's workers before and after.
///
/// Prints `{"requested":…,"exitCode":…,"output":…,"before":[{"name","workers"}],
/// "pools":[{"name","state","workers"}]}`.
pub fn iis_reset(force: bool) -> String {
    let mut s = String::from(PROLOGUE);
    s.push_str("$requested = [DateTime]::UtcNow.ToString('o')\n");
    s.push_str("$before = @()\n");
    s.push_str("foreach ($pool in @(Get-ChildItem -Path 'IIS:\\AppPools')) {\n");
    s.push_str(&workers_into("workers", "$pool.Name", "    "));
    s.push_str("    $before += [pscustomobject]@{ name = $pool.Name; workers = $workers }\n}\n");
    if force {
        s.push_str("$out = (iisreset | Out-String)\n");
    } else {
        s.push_str("$out = (iisreset /noforce | Out-String)\n");
    }
    s.push_str("$code = $LASTEXITCODE\n");
    s.push_str("$pools = @()\n");
    s.push_str("foreach ($pool in @(Get-ChildItem -Path 'IIS:\\AppPools')) {\n");
    s.push_str(&workers_into("workers", "$pool.Name", "    "));
    s.push_str(
        "    $pools += [pscustomobject]@{ name = $pool.Name; state = [string]$pool.State; workers = $workers }\n}\n",
    );
    s.push_str(
        "ConvertTo-Json -InputObject ([pscustomobject]@{ requested = $requested; exitCode = [int]$code; output = $out; before = @($before); pools = @($pools) }) -Depth 5 -Compress\n",
    );
    s
}

fn read_ttl_tail() -> String {
    format!(
        "$item = Get-ItemProperty -Path {} -Name 'UserTokenTTL' -ErrorAction SilentlyContinue\n\
         $ttl = $null\n\
         if ($null -ne $item) {{ $ttl = [int]$item.UserTokenTTL }}\n\
         ConvertTo-Json -InputObject ([pscustomobject]@{{ userTokenTtl = $ttl }}) -Compress\n",
        ps_quote(INETINFO_PARAMETERS)
    )
}

/// Reads `UserTokenTTL`. Prints `{"userTokenTtl":<int or null>}` (`null` = absent: IIS uses
/// 900 seconds).
pub fn read_token_ttl() -> String {
    let mut s = String::from("$ErrorActionPreference = 'Stop'\n");
    s.push_str(&read_ttl_tail());
    s
}

/// Writes `UserTokenTTL` (a `DWORD`, seconds; at most [`MAX_TOKEN_TTL_SECS`], larger values
/// are clamped) and reads it back like [`read_token_ttl`].
pub fn set_token_ttl(secs: u32) -> String {
    let secs = secs.min(MAX_TOKEN_TTL_SECS);
    let mut s = String::from("$ErrorActionPreference = 'Stop'\n");
    s.push_str(&format!(
        "New-ItemProperty -Path {} -Name 'UserTokenTTL' -PropertyType DWord -Value {secs} -Force | Out-Null\n",
        ps_quote(INETINFO_PARAMETERS)
    ));
    s.push_str(&read_ttl_tail());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quotes_double_every_single_quote_kind() {
        assert_eq!(ps_quote("a'b"), "'a''b'");
        assert_eq!(ps_quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(ps_quote(""), "''");
        assert_eq!(ps_unquote("'a''b'").as_deref(), Some("a'b"));
        assert_eq!(ps_unquote("'a'b'"), None);
        assert_eq!(ps_unquote("a"), None);
    }

    #[test]
    fn encoding_matches_winrm_rs() {
        let s = recycle_pools(&[AppPool::from_static("MSExchangeOWAAppPool")]);
        assert_eq!(encode_command(&s), winrm_rs::encode_powershell_command(&s));
    }

    #[test]
    fn largest_command_line_fits_cmd_limit() {
        // cmd.exe and the WinRS shell cap a command line at 8191 characters.
        let all: Vec<AppPool> = crate::catalog::entries(crate::catalog::PoolSet::Exchange2013Plus)
            .into_iter()
            .map(|e| e.pool)
            .collect();
        for s in [recycle_pools(&all), iis_reset(false), list_pools()] {
            let len = command_line_len(&s);
            assert!(len <= MAX_COMMAND_LINE, "command line of {len} characters");
            eprintln!("command line: {len} characters");
        }
    }

    proptest! {
        #[test]
        fn quote_round_trips(s in "\\PC{0,40}") {
            prop_assert_eq!(ps_unquote(&ps_quote(&s)), Some(s));
        }
    }
}
