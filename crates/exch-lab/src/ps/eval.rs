//! The evaluator: runs a parsed script against an [`IisHost`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use super::ast::{Arg, BinOp, Command, CommandName, Element, Expr, Pipeline, Span, Stmt};
use super::commands::{self, RawArg};
use super::value::{approx_size, Obj, Value};
use super::Limits;
use crate::host::IisHost;

pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A PowerShell error record (boxed: errors travel through every `Result`).
#[derive(Debug, Clone)]
pub(crate) struct PsError(Box<ErrorRecord>);

impl std::ops::Deref for PsError {
    type Target = ErrorRecord;
    fn deref(&self) -> &ErrorRecord {
        &self.0
    }
}

impl std::ops::DerefMut for PsError {
    fn deref_mut(&mut self) -> &mut ErrorRecord {
        &mut self.0
    }
}

/// The fields of a [`PsError`].
#[derive(Debug, Clone)]
pub(crate) struct ErrorRecord {
    /// The message (`$_.Exception.Message`).
    pub(crate) message: String,
    /// `CategoryInfo` category (`ObjectNotFound`, `InvalidArgument`, …).
    pub(crate) category: &'static str,
    /// `FullyQualifiedErrorId`.
    pub(crate) fqid: String,
    /// .NET exception type name.
    pub(crate) exception: &'static str,
    /// The command that failed, if any.
    pub(crate) command: Option<String>,
    /// Target object shown in `CategoryInfo`.
    pub(crate) target: String,
    /// Where in the script.
    pub(crate) span: Option<Span>,
    /// A lab guard tripped: not catchable, stops the script.
    pub(crate) fatal: bool,
}

impl PsError {
    /// A runtime error with the given message, category and id.
    pub(crate) fn new(message: impl Into<String>, category: &'static str, fqid: &str) -> Self {
        PsError(Box::new(ErrorRecord {
            message: message.into(),
            category,
            fqid: fqid.to_string(),
            exception: "RuntimeException",
            command: None,
            target: String::new(),
            span: None,
            fatal: false,
        }))
    }

    /// Sets the exception type name.
    pub(crate) fn exception(mut self, name: &'static str) -> Self {
        self.exception = name;
        self
    }

    /// Sets the target object.
    pub(crate) fn target(mut self, t: impl Into<String>) -> Self {
        self.target = t.into();
        self
    }

    fn at(mut self, span: Span) -> Self {
        if self.span.is_none() {
            self.span = Some(span);
        }
        self
    }

    fn fatal(message: impl Into<String>) -> Self {
        let mut e = PsError::new(message, "LimitsExceeded", "LabLimitExceeded");
        e.fatal = true;
        e
    }

    /// The error record as `$_` sees it.
    fn record(&self) -> Value {
        let exception = Obj::new(&format!("System.Management.Automation.{}", self.exception))
            .with("Message", Value::Str(self.message.clone()));
        Value::Object(
            Obj::new("System.Management.Automation.ErrorRecord")
                .with("Exception", Value::Object(exception))
                .with("FullyQualifiedErrorId", Value::Str(self.fqid.clone()))
                .with("TargetObject", Value::Str(self.target.clone())),
        )
    }
}

pub(crate) type EResult<T> = Result<T, PsError>;

/// Interpreter state for one script run.
pub(crate) struct Interp<'h> {
    pub(crate) host: &'h dyn IisHost,
    pub(crate) limits: Limits,
    vars: HashMap<String, Value>,
    /// Rendered non-terminating errors.
    pub(crate) stderr: String,
    pub(crate) src: &'h str,
    steps: u64,
    started: Instant,
    /// The last statement wrote a non-terminating error.
    pub(crate) last_failed: bool,
}

fn collapse(mut items: Vec<Value>) -> Value {
    match items.len() {
        0 => Value::Null,
        1 => items.remove(0),
        _ => Value::Array(items),
    }
}

impl<'h> Interp<'h> {
    pub(crate) fn new(host: &'h dyn IisHost, src: &'h str, limits: Limits) -> Self {
        Interp {
            host,
            limits,
            vars: HashMap::new(),
            stderr: String::new(),
            src,
            steps: 0,
            started: Instant::now(),
            last_failed: false,
        }
    }

    async fn step(&mut self) -> EResult<()> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(PsError::fatal(format!(
                "The script exceeded the lab's limit of {} statements and loop iterations.",
                self.limits.max_steps
            )));
        }
        if self.steps.is_multiple_of(256) {
            if self.started.elapsed() > self.limits.max_duration {
                return Err(PsError::fatal(format!(
                    "The script exceeded the lab's time limit of {:?}.",
                    self.limits.max_duration
                )));
            }
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    fn guard(&self, v: Value) -> EResult<Value> {
        if approx_size(&v) > self.limits.max_value_bytes {
            return Err(PsError::fatal(format!(
                "A value exceeded the lab's memory limit of {} bytes.",
                self.limits.max_value_bytes
            )));
        }
        Ok(v)
    }

    fn var(&self, name: &str) -> Value {
        match name.to_ascii_lowercase().as_str() {
            "null" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => self.vars.get(other).cloned().unwrap_or(Value::Null),
        }
    }

    pub(crate) fn set_var(&mut self, name: &str, v: Value) {
        let key = name.to_ascii_lowercase();
        if key != "null" {
            self.vars.insert(key, v);
        }
    }

    /// Records a non-terminating error on stderr.
    pub(crate) fn write_error(&mut self, e: &PsError) {
        self.last_failed = true;
        if self.stderr.len() < self.limits.max_output_bytes {
            self.stderr
                .push_str(&super::render_runtime_error(self.src, e));
        }
    }

    /// Runs statements, appending their output to `out`.
    pub(crate) fn exec_block<'a>(
        &'a mut self,
        stmts: &'a [Stmt],
        out: &'a mut Vec<Value>,
    ) -> BoxFut<'a, EResult<()>> {
        Box::pin(async move {
            for s in stmts {
                self.exec_stmt(s, out).await?;
            }
            Ok(())
        })
    }

    async fn exec_stmt(&mut self, s: &Stmt, out: &mut Vec<Value>) -> EResult<()> {
        self.step().await?;
        self.last_failed = false;
        match s {
            Stmt::Assign { var, append, value } => {
                let v = self.pipeline_value(value).await?;
                if var.eq_ignore_ascii_case("true") || var.eq_ignore_ascii_case("false") {
                    return Err(PsError::new(
                        format!(
                            "Cannot overwrite variable {var} because it is read-only or constant."
                        ),
                        "WriteError",
                        "VariableNotWritable",
                    )
                    .exception("SessionStateUnauthorizedAccessException"));
                }
                let v = if *append {
                    let key = var.to_ascii_lowercase();
                    let old = self.vars.remove(&key).unwrap_or(Value::Null);
                    self.add(old, v)?
                } else {
                    v
                };
                self.set_var(var, v);
            }
            Stmt::Foreach { var, source, body } => {
                let items = match self.pipeline_value(source).await? {
                    Value::Null => Vec::new(),
                    v => v.into_items(),
                };
                for item in items {
                    self.step().await?;
                    self.set_var(var, item);
                    self.exec_block(body, out).await?;
                }
            }
            Stmt::If {
                branches,
                otherwise,
            } => {
                for (cond, body) in branches {
                    if self.pipeline_value(cond).await?.truthy() {
                        return self.exec_block(body, out).await;
                    }
                }
                if let Some(body) = otherwise {
                    self.exec_block(body, out).await?;
                }
            }
            Stmt::Try {
                body,
                catch,
                finally,
            } => {
                let mut result = self.exec_block(body, out).await;
                if let (Err(e), Some(handler)) = (&result, catch) {
                    if !e.fatal {
                        let previous = self.var("_");
                        self.set_var("_", e.record());
                        result = self.exec_block(handler, out).await;
                        self.set_var("_", previous);
                    }
                }
                if let Some(f) = finally {
                    self.exec_block(f, out).await?;
                }
                result?;
            }
            Stmt::Pipeline(p) => self.pipeline(p, out).await?,
        }
        Ok(())
    }

    fn push_output(&self, out: &mut Vec<Value>, v: Value) -> EResult<()> {
        for item in v.into_items() {
            if out.len() >= self.limits.max_items {
                return Err(PsError::fatal(format!(
                    "The pipeline exceeded the lab's limit of {} objects.",
                    self.limits.max_items
                )));
            }
            out.push(item);
        }
        Ok(())
    }

    /// Runs a pipeline, appending its (unrolled) output to `out`.
    fn pipeline<'a>(
        &'a mut self,
        p: &'a Pipeline,
        out: &'a mut Vec<Value>,
    ) -> BoxFut<'a, EResult<()>> {
        Box::pin(async move {
            let mut items = Vec::new();
            match &p.first {
                Element::Expr(e) => {
                    let v = self.eval(e).await?;
                    self.push_output(&mut items, v)?;
                }
                Element::Command(c) => self.invoke(c, Vec::new(), &mut items).await?,
            }
            for c in &p.rest {
                let input = std::mem::take(&mut items);
                self.invoke(c, input, &mut items).await?;
            }
            self.push_output(out, Value::Array(items))
        })
    }

    /// The value of a pipeline used as an expression: a lone expression keeps its value (an
    /// empty array stays an array); a command's output is collapsed (none → `$null`, one → it).
    pub(crate) fn pipeline_value<'a>(&'a mut self, p: &'a Pipeline) -> BoxFut<'a, EResult<Value>> {
        Box::pin(async move {
            if let (Element::Expr(e), true) = (&p.first, p.rest.is_empty()) {
                return self.eval(e).await;
            }
            let mut out = Vec::new();
            self.pipeline(p, &mut out).await?;
            Ok(collapse(out))
        })
    }

    async fn invoke(
        &mut self,
        c: &Command,
        input: Vec<Value>,
        out: &mut Vec<Value>,
    ) -> EResult<()> {
        self.step().await?;
        let name = match &c.name {
            CommandName::Bare(n) => n.clone(),
            CommandName::Call(e) => self.eval(e).await?.to_ps_string(),
        };
        let mut raw = Vec::with_capacity(c.args.len());
        for a in &c.args {
            match a {
                Arg::Param { name, inline, .. } => {
                    let value = match inline {
                        Some(e) => Some(self.eval(e).await?),
                        None => None,
                    };
                    raw.push(RawArg::Param {
                        name: name.clone(),
                        value,
                    });
                }
                Arg::Value(e) => raw.push(RawArg::Value(self.eval(e).await?)),
            }
        }
        let (action, raw) = commands::take_error_action(raw).map_err(|e| e.at(c.span))?;
        let result = commands::run(self, &name, raw, input).await;
        match result {
            Ok(values) => {
                for v in values {
                    self.push_output(out, v)?;
                }
                Ok(())
            }
            Err(e) if e.fatal => Err(e),
            Err(e) => {
                let mut e = e.at(c.span);
                if e.command.is_none() {
                    e.command = Some(name.clone());
                }
                let action = action
                    .unwrap_or_else(|| self.var("ErrorActionPreference").to_ps_string())
                    .to_ascii_lowercase();
                match action.as_str() {
                    "stop" => Err(e),
                    "silentlycontinue" | "ignore" => Ok(()),
                    _ => {
                        self.write_error(&e);
                        Ok(())
                    }
                }
            }
        }
    }

    /// Evaluates an expression.
    pub(crate) fn eval<'a>(&'a mut self, e: &'a Expr) -> BoxFut<'a, EResult<Value>> {
        Box::pin(async move {
            match e {
                Expr::Str(s) => Ok(Value::Str(s.clone())),
                Expr::Int(n) => Ok(Value::Int(*n)),
                Expr::Var(name) => Ok(self.var(name)),
                Expr::List(items) => {
                    let mut vals = Vec::with_capacity(items.len());
                    for i in items {
                        vals.push(self.eval(i).await?);
                    }
                    self.guard(Value::Array(vals))
                }
                Expr::SubArray(stmts) => {
                    let mut out = Vec::new();
                    self.exec_block(stmts, &mut out).await?;
                    self.guard(Value::Array(out))
                }
                Expr::Paren(p) => self.pipeline_value(p).await,
                Expr::Hash(entries) => {
                    let mut obj = Obj::new("System.Collections.Hashtable");
                    obj.hashtable = true;
                    for (k, p) in entries {
                        let v = self.pipeline_value(p).await?;
                        obj.props.push((k.clone(), v));
                    }
                    self.guard(Value::Object(obj))
                }
                Expr::Cast(ty, inner, span) => {
                    let v = self.eval(inner).await?;
                    cast(ty, v).map_err(|e| e.at(*span))
                }
                Expr::Static(ty, member, span) => self.static_member(ty, member).map_err(|e| e.at(*span)),
                Expr::Member(target, name) => {
                    let v = self.eval(target).await?;
                    Ok(member(&v, name))
                }
                Expr::Method(target, name, args, span) => {
                    let v = self.eval(target).await?;
                    let mut vals = Vec::with_capacity(args.len());
                    for a in args {
                        vals.push(self.eval(a).await?);
                    }
                    method(&v, name, &vals).map_err(|e| e.at(*span))
                }
                Expr::Index(target, index) => {
                    let v = self.eval(target).await?;
                    let i = self.eval(index).await?;
                    index_value(&v, &i)
                }
                Expr::Not(inner) => Ok(Value::Bool(!self.eval(inner).await?.truthy())),
                Expr::Neg(inner) => match self.eval(inner).await? {
                    Value::Int(n) => Ok(Value::Int(n.checked_neg().unwrap_or(i64::MAX))),
                    other => Err(PsError::new(
                        format!(
                            "Method invocation failed because [{}] does not contain a method named 'op_UnaryNegation'.",
                            other.type_name()
                        ),
                        "InvalidOperation",
                        "MethodNotFound",
                    )),
                },
                Expr::Binary(op, l, r, span) => {
                    let lv = self.eval(l).await?;
                    match op {
                        BinOp::And if !lv.truthy() => return Ok(Value::Bool(false)),
                        BinOp::Or if lv.truthy() => return Ok(Value::Bool(true)),
                        _ => {}
                    }
                    let rv = self.eval(r).await?;
                    self.binary(*op, lv, rv).map_err(|e| e.at(*span))
                }
            }
        })
    }

    fn static_member(&self, ty: &str, member: &str) -> EResult<Value> {
        let ty_l = ty.to_ascii_lowercase();
        if ty_l == "datetime" || ty_l == "system.datetime" {
            match member.to_ascii_lowercase().as_str() {
                "utcnow" | "now" => return Ok(Value::Date(self.host.now())),
                "today" => {
                    let now = self.host.now();
                    return Ok(Value::Date(
                        now.date_naive()
                            .and_hms_opt(0, 0, 0)
                            .map(|d| d.and_utc())
                            .unwrap_or(now),
                    ));
                }
                _ => {}
            }
            return Ok(Value::Null);
        }
        Err(PsError::new(
            format!("Unable to find type [{ty}]."),
            "InvalidOperation",
            "TypeNotFound",
        )
        .target(ty))
    }

    fn add(&self, l: Value, r: Value) -> EResult<Value> {
        let v = match (l, r) {
            (Value::Null, r) => r,
            (Value::Array(mut items), r) => {
                match r {
                    Value::Array(more) => items.extend(more),
                    other => items.push(self.guard(other)?),
                }
                if items.len() > self.limits.max_items {
                    return Err(PsError::fatal(format!(
                        "An array exceeded the lab's limit of {} elements.",
                        self.limits.max_items
                    )));
                }
                return Ok(Value::Array(items));
            }
            (Value::Int(a), r) => {
                let b = to_int(&r)?;
                Value::Int(a.checked_add(b).ok_or_else(|| {
                    PsError::new("Arithmetic operation resulted in an overflow.", "NotSpecified", "RuntimeException")
                })?)
            }
            (Value::Str(mut a), r) => {
                a.push_str(&r.to_ps_string());
                Value::Str(a)
            }
            (l, _) => {
                return Err(PsError::new(
                    format!(
                        "Method invocation failed because [{}] does not contain a method named 'op_Addition'.",
                        l.type_name()
                    ),
                    "InvalidOperation",
                    "MethodNotFound",
                ))
            }
        };
        self.guard(v)
    }

    fn binary(&self, op: BinOp, l: Value, r: Value) -> EResult<Value> {
        match op {
            BinOp::Add => self.add(l, r),
            BinOp::Sub => {
                let a = to_int(&l)?;
                let b = to_int(&r)?;
                a.checked_sub(b).map(Value::Int).ok_or_else(|| {
                    PsError::new(
                        "Arithmetic operation resulted in an overflow.",
                        "NotSpecified",
                        "RuntimeException",
                    )
                })
            }
            BinOp::And => Ok(Value::Bool(l.truthy() && r.truthy())),
            BinOp::Or => Ok(Value::Bool(l.truthy() || r.truthy())),
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le => {
                if let Value::Array(items) = l {
                    let kept = items
                        .into_iter()
                        .filter(|i| compare(op, i, &r))
                        .collect::<Vec<_>>();
                    return Ok(Value::Array(kept));
                }
                Ok(Value::Bool(compare(op, &l, &r)))
            }
        }
    }
}

/// Converts to an integer as `[int]` does.
pub(crate) fn to_int(v: &Value) -> EResult<i64> {
    match v {
        Value::Null => Ok(0),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Int(n) => Ok(*n),
        Value::Str(s) => s.trim().parse::<i64>().map_err(|_| {
            PsError::new(
                format!(
                    "Cannot convert value \"{s}\" to type \"System.Int32\". Error: \"Input string was not in a correct format.\""
                ),
                "InvalidArgument",
                "InvalidCastFromStringToInteger",
            )
            .exception("PSInvalidCastException")
            .target(s.clone())
        }),
        Value::Array(items) if items.len() == 1 => to_int(&items[0]),
        other => Err(PsError::new(
            format!(
                "Cannot convert the \"{}\" value of type \"{}\" to type \"System.Int32\".",
                other.to_ps_string(),
                other.type_name()
            ),
            "InvalidArgument",
            "InvalidCastFromAnyTypeToInteger",
        )
        .exception("PSInvalidCastException")),
    }
}

fn compare(op: BinOp, l: &Value, r: &Value) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (l, r) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Int(a), r) => to_int(r).ok().map(|b| a.cmp(&b)),
        (Value::Bool(a), r) => Some(a.cmp(&r.truthy())),
        (Value::Date(a), Value::Date(b)) => Some(a.cmp(b)),
        (Value::Str(a), r) => Some(a.to_lowercase().cmp(&r.to_ps_string().to_lowercase())),
        (a, b) => (a == b).then_some(Ordering::Equal),
    };
    match op {
        BinOp::Eq => ord == Some(Ordering::Equal),
        BinOp::Ne => ord != Some(Ordering::Equal),
        BinOp::Gt => ord == Some(Ordering::Greater),
        BinOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        BinOp::Lt => ord == Some(Ordering::Less),
        BinOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        _ => false,
    }
}

fn cast(ty: &str, v: Value) -> EResult<Value> {
    let t = ty.to_ascii_lowercase();
    let t = t.strip_prefix("system.").unwrap_or(&t);
    match t {
        "int" | "int32" | "long" | "int64" | "uint32" => Ok(Value::Int(to_int(&v)?)),
        "string" => Ok(Value::Str(v.to_ps_string())),
        "bool" | "boolean" => Ok(Value::Bool(v.truthy())),
        "datetime" => match v {
            Value::Date(d) => Ok(Value::Date(d)),
            Value::Str(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|d| Value::Date(d.with_timezone(&chrono::Utc)))
                .map_err(|_| {
                    PsError::new(
                        format!("Cannot convert value \"{s}\" to type \"System.DateTime\"."),
                        "InvalidArgument",
                        "InvalidCastParseTargetInvocationWithFormatProvider",
                    )
                }),
            other => Err(PsError::new(
                format!(
                    "Cannot convert value \"{}\" to type \"System.DateTime\".",
                    other.to_ps_string()
                ),
                "InvalidArgument",
                "InvalidCastFromAnyTypeToDateTime",
            )),
        },
        "pscustomobject" | "psobject" | "management.automation.pscustomobject" => match v {
            Value::Object(mut o) => {
                if o.hashtable {
                    o.hashtable = false;
                    o.type_name = "System.Management.Automation.PSCustomObject".into();
                }
                Ok(Value::Object(o))
            }
            other => Ok(other),
        },
        "array" | "object[]" => match v {
            Value::Null => Ok(Value::Null),
            other => Ok(Value::Array(other.into_items())),
        },
        "hashtable" | "ordered" | "collections.hashtable" => match v {
            Value::Object(mut o) => {
                o.hashtable = true;
                Ok(Value::Object(o))
            }
            other => Ok(other),
        },
        "object" => Ok(v),
        _ => Err(PsError::new(
            format!("Unable to find type [{ty}]."),
            "InvalidOperation",
            "TypeNotFound",
        )
        .target(ty)),
    }
}

fn member(v: &Value, name: &str) -> Value {
    let n = name.to_ascii_lowercase();
    match v {
        Value::Object(o) => match o.get(name) {
            Some(v) => v.clone(),
            None if o.hashtable && n == "count" => Value::Int(o.props.len() as i64),
            None => Value::Null,
        },
        Value::Array(items) => match n.as_str() {
            "count" | "length" => Value::Int(items.len() as i64),
            _ => {
                let vals: Vec<Value> = items
                    .iter()
                    .map(|i| member(i, name))
                    .filter(|v| *v != Value::Null)
                    .collect();
                collapse(vals)
            }
        },
        Value::Str(s) if n == "length" => Value::Int(s.encode_utf16().count() as i64),
        Value::Date(d) => {
            use chrono::{Datelike, Timelike};
            match n.as_str() {
                "year" => Value::Int(i64::from(d.year())),
                "month" => Value::Int(i64::from(d.month())),
                "day" => Value::Int(i64::from(d.day())),
                "hour" => Value::Int(i64::from(d.hour())),
                "minute" => Value::Int(i64::from(d.minute())),
                "second" => Value::Int(i64::from(d.second())),
                "kind" => Value::Str("Utc".into()),
                _ => Value::Null,
            }
        }
        Value::Null if n == "count" || n == "length" => Value::Int(0),
        Value::Null => Value::Null,
        _ if n == "count" || n == "length" => Value::Int(1),
        _ => Value::Null,
    }
}

fn method(v: &Value, name: &str, args: &[Value]) -> EResult<Value> {
    let n = name.to_ascii_lowercase();
    let not_found = || {
        PsError::new(
            format!(
                "Method invocation failed because [{}] does not contain a method named '{name}'.",
                v.type_name()
            ),
            "InvalidOperation",
            "MethodNotFound",
        )
    };
    match (v, n.as_str(), args) {
        (Value::Null, _, _) => Err(PsError::new(
            "You cannot call a method on a null-valued expression.",
            "InvalidOperation",
            "InvokeMethodOnNull",
        )),
        (Value::Date(d), "touniversaltime" | "tolocaltime", []) => Ok(Value::Date(*d)),
        (Value::Date(d), "tostring", [fmt]) => {
            let f = fmt.to_ps_string();
            let s = match f.as_str() {
                "o" | "O" => format!(
                    "{}.{:07}Z",
                    d.format("%Y-%m-%dT%H:%M:%S"),
                    chrono::Timelike::nanosecond(d) % 1_000_000_000 / 100
                ),
                "s" => d.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "u" => d.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                _ => {
                    return Err(PsError::new(
                        format!(
                            "The lab supports only the 'o', 's' and 'u' date formats, not '{f}'."
                        ),
                        "NotImplemented",
                        "FormatException",
                    ))
                }
            };
            Ok(Value::Str(s))
        }
        (_, "tostring", []) => Ok(Value::Str(v.to_ps_string())),
        (Value::Str(s), "tolower" | "tolowerinvariant", []) => Ok(Value::Str(s.to_lowercase())),
        (Value::Str(s), "toupper" | "toupperinvariant", []) => Ok(Value::Str(s.to_uppercase())),
        (Value::Str(s), "trim", []) => Ok(Value::Str(s.trim().to_string())),
        _ => Err(not_found()),
    }
}

fn index_value(v: &Value, i: &Value) -> EResult<Value> {
    match v {
        Value::Null => Err(PsError::new(
            "Cannot index into a null array.",
            "InvalidOperation",
            "NullArray",
        )),
        Value::Array(items) => {
            let n = to_int(i)?;
            let idx = if n < 0 { items.len() as i64 + n } else { n };
            Ok(usize::try_from(idx)
                .ok()
                .and_then(|k| items.get(k).cloned())
                .unwrap_or(Value::Null))
        }
        Value::Object(o) => Ok(o.get(&i.to_ps_string()).cloned().unwrap_or(Value::Null)),
        Value::Str(s) => {
            let n = to_int(i)?;
            Ok(usize::try_from(n)
                .ok()
                .and_then(|k| s.chars().nth(k))
                .map(|c| Value::Str(c.to_string()))
                .unwrap_or(Value::Null))
        }
        other => Err(PsError::new(
            format!(
                "Unable to index into an object of type {}.",
                other.type_name()
            ),
            "InvalidOperation",
            "CannotIndex",
        )),
    }
}
