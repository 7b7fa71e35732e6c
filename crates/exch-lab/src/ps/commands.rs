//! The cmdlets and native commands the lab implements, and parameter binding.

use super::eval::{to_int, EResult, Interp, PsError};
use super::value::{to_json, JsonOptions, Obj, Value};
use crate::host::{IisHost, IisResetMode, NativeOutput};

/// The registry key that holds `UserTokenTTL`.
const INETINFO_KEY: &str = r"SYSTEM\CurrentControlSet\Services\InetInfo\Parameters";

/// An evaluated argument before binding.
#[derive(Debug, Clone)]
pub(crate) enum RawArg {
    /// `-Name` / `-Name:value`.
    Param { name: String, value: Option<Value> },
    /// A value.
    Value(Value),
}

/// The common parameters the interpreter handles itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct Common {
    /// `-ErrorAction` / `-ea`.
    pub(crate) error_action: Option<String>,
    /// `-WarningAction` / `-wa`.
    pub(crate) warning_action: Option<String>,
}

/// Removes `-ErrorAction` / `-ea` and `-WarningAction` / `-wa` from the arguments; returns
/// their values.
pub(crate) fn take_common(raw: Vec<RawArg>) -> EResult<(Common, Vec<RawArg>)> {
    let mut common = Common::default();
    let mut rest = Vec::with_capacity(raw.len());
    let mut it = raw.into_iter();
    while let Some(a) = it.next() {
        match a {
            RawArg::Param { name, value, .. }
                if ["erroraction", "ea", "warningaction", "wa"]
                    .contains(&name.to_ascii_lowercase().as_str()) =>
            {
                let error = name.to_ascii_lowercase().starts_with('e');
                let full = if error {
                    "ErrorAction"
                } else {
                    "WarningAction"
                };
                let v = match value {
                    Some(v) => v,
                    None => match it.next() {
                        Some(RawArg::Value(v)) => v,
                        _ => return Err(missing_argument(full)),
                    },
                };
                if error {
                    common.error_action = Some(v.to_ps_string());
                } else {
                    common.warning_action = Some(v.to_ps_string());
                }
            }
            other => rest.push(other),
        }
    }
    Ok((common, rest))
}

fn missing_argument(name: &str) -> PsError {
    PsError::new(
        format!("Missing an argument for parameter '{name}'. Specify a parameter of type 'System.Object' and try again."),
        "InvalidArgument",
        "MissingArgument",
    )
    .exception("ParameterBindingException")
}

/// A parameter declaration.
pub(crate) struct P {
    pub(crate) name: &'static str,
    switch: bool,
    position: Option<usize>,
}

pub(crate) const fn named(name: &'static str) -> P {
    P {
        name,
        switch: false,
        position: None,
    }
}
pub(crate) const fn pos(name: &'static str, position: usize) -> P {
    P {
        name,
        switch: false,
        position: Some(position),
    }
}
pub(crate) const fn switch(name: &'static str) -> P {
    P {
        name,
        switch: true,
        position: None,
    }
}

/// Bound parameters.
pub(crate) struct Bound(Vec<(&'static str, Value)>);

impl Bound {
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some_and(Value::truthy)
    }
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(Value::to_ps_string)
    }
    fn required(&self, cmd: &str, name: &str) -> EResult<String> {
        match self.get(name) {
            Some(v) if !matches!(v, Value::Null) => Ok(v.to_ps_string()),
            _ => Err(PsError::new(
                format!("Cannot bind argument to parameter '{name}' because it is null or was not supplied (the lab's {cmd} runs non-interactively)."),
                "InvalidData",
                "ParameterArgumentValidationErrorNullNotAllowed",
            )
            .exception("ParameterBindingValidationException")),
        }
    }
}

pub(crate) fn bind(params: &[P], raw: Vec<RawArg>) -> EResult<Bound> {
    let mut bound: Vec<(&'static str, Value)> = Vec::new();
    let mut positional = Vec::new();
    let mut it = raw.into_iter();
    while let Some(a) = it.next() {
        match a {
            RawArg::Value(v) => positional.push(v),
            RawArg::Param { name, value, .. } => {
                let lname = name.to_ascii_lowercase();
                let exact = params.iter().find(|p| p.name.eq_ignore_ascii_case(&name));
                let matches: Vec<&P> = params
                    .iter()
                    .filter(|p| p.name.to_ascii_lowercase().starts_with(&lname))
                    .collect();
                let p = match (exact, matches.as_slice()) {
                    (Some(p), _) => p,
                    (None, [one]) => *one,
                    (None, []) => {
                        if ["verbose", "debug", "whatif", "confirm"].contains(&lname.as_str()) {
                            continue;
                        }
                        return Err(PsError::new(
                            format!("A parameter cannot be found that matches parameter name '{name}'."),
                            "InvalidArgument",
                            "NamedParameterNotFound",
                        )
                        .exception("ParameterBindingException"));
                    }
                    (None, _) => {
                        return Err(PsError::new(
                            format!("Parameter cannot be processed because the parameter name '{name}' is ambiguous."),
                            "InvalidArgument",
                            "AmbiguousParameter",
                        )
                        .exception("ParameterBindingException"))
                    }
                };
                let v = if p.switch {
                    value.unwrap_or(Value::Bool(true))
                } else {
                    match value {
                        Some(v) => v,
                        None => match it.next() {
                            Some(RawArg::Value(v)) => v,
                            _ => return Err(missing_argument(p.name)),
                        },
                    }
                };
                if bound.iter().any(|(k, _)| *k == p.name) {
                    return Err(PsError::new(
                        format!("Cannot bind parameter because parameter '{}' is specified more than once.", p.name),
                        "InvalidArgument",
                        "ParameterAlreadyBound",
                    )
                    .exception("ParameterBindingException"));
                }
                bound.push((p.name, v));
            }
        }
    }
    let mut slots = params
        .iter()
        .filter(|p| p.position.is_some() && !bound.iter().any(|(k, _)| *k == p.name))
        .collect::<Vec<_>>();
    slots.sort_by_key(|p| p.position);
    let mut slots = slots.into_iter();
    for v in positional {
        match slots.next() {
            Some(p) => bound.push((p.name, v)),
            None => {
                return Err(PsError::new(
                    format!(
                        "A positional parameter cannot be found that accepts argument '{}'.",
                        v.to_ps_string()
                    ),
                    "InvalidArgument",
                    "PositionalParameterNotFound",
                )
                .exception("ParameterBindingException"))
            }
        }
    }
    Ok(Bound(bound))
}

fn not_found_path(path: &str) -> PsError {
    PsError::new(
        format!("Cannot find path '{path}' because it does not exist."),
        "ObjectNotFound",
        "PathNotFound",
    )
    .exception("ItemNotFoundException")
    .target(path)
}

/// A parsed provider path.
enum IisPath {
    Pools,
    Pool(String),
    Workers(String),
    InetInfo,
    Other,
}

fn parse_path(path: &str) -> IisPath {
    let p = path.trim().trim_end_matches('\\').replace('/', "\\");
    let lower = p.to_ascii_lowercase();
    for prefix in [
        r"hklm:\",
        r"registry::hkey_local_machine\",
        r"microsoft.powershell.core\registry::hkey_local_machine\",
    ] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            return if rest == INETINFO_KEY.to_ascii_lowercase() {
                IisPath::InetInfo
            } else {
                IisPath::Other
            };
        }
    }
    let Some(rest) = lower.strip_prefix(r"iis:\apppools") else {
        return IisPath::Other;
    };
    if rest.is_empty() {
        return IisPath::Pools;
    }
    let Some(rest) = rest.strip_prefix('\\') else {
        return IisPath::Other;
    };
    // Keep the pool name's original case.
    let orig = &p[p.len() - rest.len()..];
    match orig.split_once('\\') {
        None => IisPath::Pool(orig.to_string()),
        Some((pool, sub)) if sub.eq_ignore_ascii_case("WorkerProcesses") => {
            IisPath::Workers(pool.to_string())
        }
        Some(_) => IisPath::Other,
    }
}

fn find_pool(host: &dyn IisHost, name: &str) -> Option<crate::host::HostPool> {
    host.pools()
        .into_iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
}

fn pool_state(started: bool) -> Value {
    Value::Str(if started { "Started" } else { "Stopped" }.into())
}

fn require_pool(host: &dyn IisHost, name: &str) -> EResult<crate::host::HostPool> {
    find_pool(host, name).ok_or_else(|| not_found_path(&format!(r"IIS:\AppPools\{name}")))
}

fn host_error(message: String) -> PsError {
    PsError::new(message, "InvalidOperation", "InvalidOperation")
        .exception("InvalidOperationException")
}

pub(crate) fn not_recognized(name: &str) -> PsError {
    PsError::new(
        format!("The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again."),
        "ObjectNotFound",
        "CommandNotFoundException",
    )
    .exception("CommandNotFoundException")
    .target(name)
}

/// The program name of a native command (`C:\x\appcmd.exe` → `appcmd`).
pub(crate) fn native_name(name: &str) -> String {
    let base = name
        .rsplit(['\\', '/'])
        .next()
        .unwrap_or(name)
        .to_ascii_lowercase();
    base.strip_suffix(".exe").unwrap_or(&base).to_string()
}

/// Runs a native program the lab knows (`iisreset`, `appcmd`); `None` if it is not one.
pub(crate) async fn run_native(
    host: &dyn IisHost,
    name: &str,
    args: &[String],
) -> Option<NativeOutput> {
    match native_name(name).as_str() {
        "iisreset" => Some(iisreset(host, args).await),
        "appcmd" => Some(appcmd(host, args).await),
        _ => None,
    }
}

async fn iisreset(host: &dyn IisHost, args: &[String]) -> NativeOutput {
    let mut mode = IisResetMode::Restart;
    let mut noforce = false;
    for a in args {
        match a.to_ascii_lowercase().trim_start_matches(['/', '-']) {
            "noforce" => noforce = true,
            "status" => mode = IisResetMode::Status,
            "stop" => mode = IisResetMode::Stop,
            "start" => mode = IisResetMode::Start,
            "restart" => mode = IisResetMode::Restart,
            "timeout" | "rebootonerror" => {}
            s if s.starts_with("timeout:") => {}
            _ => {
                return NativeOutput {
                    exit_code: 1,
                    stdout: format!("Invalid option '{a}'.\r\nUsage: iisreset [/RESTART | /START | /STOP | /STATUS] [/NOFORCE]\r\n"),
                }
            }
        }
    }
    if noforce && mode == IisResetMode::Restart {
        mode = IisResetMode::RestartNoForce;
    }
    host.iisreset(mode).await
}

async fn appcmd(host: &dyn IisHost, args: &[String]) -> NativeOutput {
    let lower: Vec<String> = args.iter().map(|a| a.to_ascii_lowercase()).collect();
    let fail = |exit_code: i32, msg: String| NativeOutput {
        exit_code,
        stdout: format!("ERROR ( message:{msg} )\r\n"),
    };
    match lower.as_slice() {
        [verb, obj, ..] if verb == "recycle" && obj == "apppool" => {
            let name = args[2..].iter().find_map(|a| {
                let l = a.to_ascii_lowercase();
                if l.starts_with("/apppool.name:") {
                    Some(a["/apppool.name:".len()..].trim_matches('"').to_string())
                } else if !a.starts_with('/') {
                    Some(a.trim_matches('"').to_string())
                } else {
                    None
                }
            });
            let Some(name) = name else {
                return fail(87, "Must specify the APPPOOL object with identifier or \"APPPOOL.NAME\" parameter.".into());
            };
            if find_pool(host, &name).is_none() {
                return fail(
                    1168,
                    format!("Cannot find APPPOOL object with identifier \"{name}\". "),
                );
            }
            match host.recycle_pool(&name).await {
                Ok(()) => NativeOutput {
                    exit_code: 0,
                    stdout: format!("\"{name}\" successfully recycled\r\n"),
                },
                Err(e) => fail(1, e),
            }
        }
        [verb, obj, ..] if verb == "list" && obj == "apppool" => {
            let mut out = String::new();
            for p in host.pools() {
                let state = if p.started { "Started" } else { "Stopped" };
                out.push_str(&format!(
                    "APPPOOL \"{}\" (MgdVersion:v4.0,MgdMode:Integrated,state:{state})\r\n",
                    p.name
                ));
            }
            NativeOutput {
                exit_code: 0,
                stdout: out,
            }
        }
        _ => fail(
            1,
            format!(
                "The lab's appcmd supports only 'recycle apppool' and 'list apppool', not '{}'.",
                args.join(" ")
            ),
        ),
    }
}

fn registry_object(ttl: Option<u32>, with_ttl: bool) -> Value {
    let mut o = Obj::new("System.Management.Automation.PSCustomObject");
    if let (true, Some(t)) = (with_ttl, ttl) {
        o.props
            .push(("UserTokenTTL".into(), Value::Int(i64::from(t))));
    }
    o.props.push((
        "PSPath".into(),
        Value::Str(format!(
            r"Microsoft.PowerShell.Core\Registry::HKEY_LOCAL_MACHINE\{INETINFO_KEY}"
        )),
    ));
    o.props
        .push(("PSChildName".into(), Value::Str("Parameters".into())));
    o.props.push((
        "PSProvider".into(),
        Value::Str(r"Microsoft.PowerShell.Core\Registry".into()),
    ));
    Value::Object(o)
}

fn check_ttl_name(path: &str, name: &str) -> EResult<()> {
    if name.eq_ignore_ascii_case("UserTokenTTL") {
        Ok(())
    } else {
        Err(PsError::new(
            format!("Property {name} does not exist at path HKEY_LOCAL_MACHINE\\{INETINFO_KEY} (the lab models only UserTokenTTL)."),
            "ObjectNotFound",
            "System.Management.Automation.PSArgumentException",
        )
        .exception("PSArgumentException")
        .target(path))
    }
}

/// Runs a command by name. Errors are returned; the caller applies `-ErrorAction`.
pub(crate) async fn run(
    it: &mut Interp<'_>,
    name: &str,
    raw: Vec<RawArg>,
    input: Vec<Value>,
    common: &Common,
) -> EResult<Vec<Value>> {
    let host = it.host;
    let key = name.to_ascii_lowercase();
    if let Some(out) = super::exchange::run(it, name, &key, raw.clone(), &input, common).await {
        return out;
    }
    match key.as_str() {
        "import-module" | "ipmo" => {
            let b = bind(&[pos("Name", 0), switch("Force"), switch("Global")], raw)?;
            let module = b.required(name, "Name")?;
            if module.eq_ignore_ascii_case("WebAdministration") {
                Ok(Vec::new())
            } else {
                Err(PsError::new(
                    format!("The specified module '{module}' was not loaded because no valid module file was found in any module directory."),
                    "ResourceUnavailable",
                    "Modules_ModuleNotFound,Microsoft.PowerShell.Commands.ImportModuleCommand",
                )
                .exception("FileNotFoundException")
                .target(module))
            }
        }
        "get-childitem" | "gci" | "dir" | "ls" => {
            let b = bind(
                &[pos("Path", 0), named("LiteralPath"), switch("Force")],
                raw,
            )?;
            let path = b
                .string("Path")
                .or_else(|| b.string("LiteralPath"))
                .unwrap_or_default();
            match parse_path(&path) {
                IisPath::Pools => Ok(host
                    .pools()
                    .into_iter()
                    .map(|p| {
                        Value::Object(
                            Obj::new("Microsoft.IIs.PowerShell.Framework.ConfigurationElement")
                                .with("Name", Value::Str(p.name))
                                .with("State", pool_state(p.started)),
                        )
                    })
                    .collect()),
                IisPath::Workers(pool) => {
                    let p = find_pool(host, &pool).ok_or_else(|| not_found_path(&path))?;
                    // Serving workers first, then the stopping ones (a recycle's old worker
                    // finishing its requests), as IIS lists them with their state.
                    let stopping = host.stopping_workers(&p.name);
                    Ok(p.workers
                        .into_iter()
                        .map(|w| (w, "Running"))
                        .chain(stopping.into_iter().map(|w| (w, "Stopping")))
                        .map(|(w, state)| {
                            Value::Object(
                                Obj::new("Microsoft.IIs.PowerShell.Framework.ConfigurationElement")
                                    .with("processId", Value::Int(i64::from(w.pid)))
                                    .with("state", Value::Str(state.into())),
                            )
                        })
                        .collect())
                }
                IisPath::Pool(pool) => {
                    find_pool(host, &pool).ok_or_else(|| not_found_path(&path))?;
                    Ok(vec![Value::Object(
                        Obj::new("Microsoft.IIs.PowerShell.Framework.ConfigurationElement")
                            .with("Name", Value::Str("WorkerProcesses".into())),
                    )])
                }
                IisPath::InetInfo | IisPath::Other => Err(not_found_path(&path)),
            }
        }
        "test-path" => {
            let b = bind(
                &[pos("Path", 0), named("LiteralPath"), named("PathType")],
                raw,
            )?;
            let path = b
                .string("Path")
                .or_else(|| b.string("LiteralPath"))
                .unwrap_or_default();
            let exists = match parse_path(&path) {
                IisPath::Pools | IisPath::InetInfo => true,
                IisPath::Pool(p) | IisPath::Workers(p) => find_pool(host, &p).is_some(),
                IisPath::Other => false,
            };
            Ok(vec![Value::Bool(exists)])
        }
        "get-process" | "gps" | "ps" => {
            let b = bind(&[named("Id"), pos("Name", 0)], raw)?;
            let Some(id) = b.get("Id") else {
                return Err(PsError::new(
                    "The lab's Get-Process supports only -Id.",
                    "NotImplemented",
                    "LabUnsupported",
                ));
            };
            let mut out = Vec::new();
            for v in id.clone().into_items() {
                let pid = to_int(&v)?;
                let started = u32::try_from(pid)
                    .ok()
                    .and_then(|p| host.process_start_time(p));
                match started {
                    Some(t) => out.push(Value::Object(
                        Obj::new("System.Diagnostics.Process")
                            .with("Id", Value::Int(pid))
                            .with("ProcessName", Value::Str("w3wp".into()))
                            .with("StartTime", Value::Date(t)),
                    )),
                    None => return Err(PsError::new(
                        format!("Cannot find a process with the process identifier {pid}."),
                        "ObjectNotFound",
                        "NoProcessFoundForGivenId,Microsoft.PowerShell.Commands.GetProcessCommand",
                    )
                    .exception("ProcessCommandException")
                    .target(pid.to_string())),
                }
            }
            Ok(out)
        }
        "get-webapppoolstate" => {
            let b = bind(&[pos("Name", 0)], raw)?;
            let pool = b.required(name, "Name")?;
            let p = require_pool(host, &pool)?;
            Ok(vec![Value::Object(
                Obj::new("Microsoft.IIs.PowerShell.Framework.CodeProperty")
                    .with("Value", pool_state(p.started)),
            )])
        }
        "restart-webapppool" | "start-webapppool" | "stop-webapppool" => {
            let b = bind(&[pos("Name", 0), switch("PassThru")], raw)?;
            let pool = b.required(name, "Name")?;
            let p = require_pool(host, &pool)?;
            let r = match key.as_str() {
                "restart-webapppool" => host.recycle_pool(&p.name).await,
                "start-webapppool" => host.start_pool(&p.name).await,
                _ => host.stop_pool(&p.name).await,
            };
            r.map_err(host_error)?;
            Ok(Vec::new())
        }
        "get-itemproperty" | "gp" => {
            let b = bind(&[pos("Path", 0), pos("Name", 1), named("LiteralPath")], raw)?;
            let path = b
                .string("Path")
                .or_else(|| b.string("LiteralPath"))
                .unwrap_or_default();
            if !matches!(parse_path(&path), IisPath::InetInfo) {
                return Err(not_found_path(&path));
            }
            let ttl = host.token_ttl();
            match b.string("Name") {
                Some(n) => {
                    check_ttl_name(&path, &n)?;
                    if ttl.is_none() {
                        return Err(PsError::new(
                            format!("Property {n} does not exist at path HKEY_LOCAL_MACHINE\\{INETINFO_KEY}."),
                            "InvalidArgument",
                            "System.Management.Automation.PSArgumentException,Microsoft.PowerShell.Commands.GetItemPropertyCommand",
                        )
                        .exception("PSArgumentException")
                        .target(n));
                    }
                    Ok(vec![registry_object(ttl, true)])
                }
                None => Ok(vec![registry_object(ttl, true)]),
            }
        }
        "set-itemproperty" | "sp" | "new-itemproperty" => {
            let b = bind(
                &[
                    pos("Path", 0),
                    pos("Name", 1),
                    pos("Value", 2),
                    named("LiteralPath"),
                    named("PropertyType"),
                    named("Type"),
                    switch("Force"),
                    switch("PassThru"),
                ],
                raw,
            )?;
            let path = b
                .string("Path")
                .or_else(|| b.string("LiteralPath"))
                .unwrap_or_default();
            if !matches!(parse_path(&path), IisPath::InetInfo) {
                return Err(not_found_path(&path));
            }
            let prop = b.required(name, "Name")?;
            check_ttl_name(&path, &prop)?;
            let value = to_int(b.get("Value").unwrap_or(&Value::Null))?;
            let value = u32::try_from(value).map_err(|_| {
                PsError::new(
                    format!(
                        "Cannot convert value \"{value}\" to type \"System.UInt32\" (a DWord)."
                    ),
                    "InvalidArgument",
                    "InvalidCastIConvertible",
                )
            })?;
            let is_new = key == "new-itemproperty";
            if is_new && host.token_ttl().is_some() && !b.has("Force") {
                return Err(PsError::new(
                    "The property already exists.",
                    "ResourceExists",
                    "System.IO.IOException,Microsoft.PowerShell.Commands.NewItemPropertyCommand",
                )
                .exception("IOException")
                .target(path));
            }
            host.set_token_ttl(value);
            if is_new || b.has("PassThru") {
                Ok(vec![registry_object(Some(value), true)])
            } else {
                Ok(Vec::new())
            }
        }
        "convertto-json" => {
            let b = bind(
                &[pos("InputObject", 0), named("Depth"), switch("Compress")],
                raw,
            )?;
            let depth = match b.get("Depth") {
                Some(d) => usize::try_from(to_int(d)?).unwrap_or(0).min(100),
                None => 2,
            };
            let opts = JsonOptions {
                depth,
                compress: b.has("Compress"),
            };
            let value = match b.get("InputObject") {
                Some(v) => v.clone(),
                None => match input.len() {
                    0 => return Ok(Vec::new()),
                    1 => input.into_iter().next().unwrap_or(Value::Null),
                    _ => Value::Array(input),
                },
            };
            Ok(vec![Value::Str(to_json(&value, opts))])
        }
        "out-null" => {
            bind(&[pos("InputObject", 0)], raw)?;
            Ok(Vec::new())
        }
        "start-sleep" | "sleep" => {
            let b = bind(&[pos("Seconds", 0), named("Milliseconds")], raw)?;
            let ms =
                match (b.get("Milliseconds"), b.get("Seconds")) {
                    (Some(ms), None) => to_int(ms)?,
                    (None, Some(s)) => to_int(s)?.saturating_mul(1000),
                    _ => return Err(PsError::new(
                        "Parameter set cannot be resolved using the specified named parameters.",
                        "InvalidArgument",
                        "AmbiguousParameterSet,Microsoft.PowerShell.Commands.StartSleepCommand",
                    )),
                };
            let ms = u64::try_from(ms).map_err(|_| {
                PsError::new(
                    format!("Cannot validate argument on parameter 'Milliseconds'. The {ms} argument is less than the minimum allowed range of 0."),
                    "InvalidData",
                    "ParameterArgumentValidationError,Microsoft.PowerShell.Commands.StartSleepCommand",
                )
            })?;
            // The script's wall-time guard still applies; one sleep is capped at a minute.
            tokio::time::sleep(std::time::Duration::from_millis(ms.min(60_000))).await;
            Ok(Vec::new())
        }
        "out-string" => {
            let b = bind(
                &[pos("InputObject", 0), named("Width"), switch("Stream")],
                raw,
            )?;
            let items = match b.get("InputObject") {
                Some(v) => vec![v.clone()],
                None => input,
            };
            let mut s = String::new();
            for i in items {
                if i == Value::Null {
                    continue;
                }
                s.push_str(&i.to_ps_string());
                s.push_str("\r\n");
            }
            Ok(vec![Value::Str(s)])
        }
        "write-output" | "echo" | "write" => {
            // -InputObject takes the remaining positional arguments.
            let (values, mut raw): (Vec<RawArg>, Vec<RawArg>) =
                raw.into_iter().partition(|a| matches!(a, RawArg::Value(_)));
            let values: Vec<Value> = values
                .into_iter()
                .filter_map(|a| match a {
                    RawArg::Value(v) => Some(v),
                    RawArg::Param { .. } => None,
                })
                .collect();
            match values.len() {
                0 => {}
                1 => raw.extend(values.into_iter().map(RawArg::Value)),
                _ => raw.push(RawArg::Value(Value::Array(values))),
            }
            let b = bind(&[pos("InputObject", 0), switch("NoEnumerate")], raw)?;
            match b.get("InputObject") {
                Some(v) => Ok(v.clone().into_items()),
                None => Ok(input),
            }
        }
        _ => {
            // Native commands.
            let mut args = Vec::new();
            for a in raw {
                match a {
                    RawArg::Value(v) => args.extend(v.into_items().iter().map(Value::to_ps_string)),
                    RawArg::Param { name, value, .. } => match value {
                        Some(v) => args.push(format!("-{name}:{}", v.to_ps_string())),
                        None => args.push(format!("-{name}")),
                    },
                }
            }
            match run_native(host, name, &args).await {
                Some(out) => {
                    it.set_var("LASTEXITCODE", Value::Int(i64::from(out.exit_code)));
                    Ok(out
                        .stdout
                        .lines()
                        .map(|l| Value::Str(l.trim_end_matches('\r').to_string()))
                        .collect())
                }
                None => Err(not_recognized(name)),
            }
        }
    }
}
