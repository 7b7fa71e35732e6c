//! The evaluator: runs a parsed script against an [`IisHost`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use super::ast::{Arg, BinOp, Command, CommandName, Element, Expr, Pipeline, Span, Stmt};
use super::commands::{self, RawArg};
pub(crate) use super::ops::to_int;
use super::ops::{cast, compare, index_value, member, method};
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
    /// Terminating whatever `-ErrorAction` says (e.g. a prompt that a non-interactive host
    /// cannot show): caught by `try`, otherwise written and the statement ends.
    pub(crate) terminating: bool,
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
            terminating: false,
        }))
    }

    /// Makes the error terminating whatever `-ErrorAction` says.
    pub(crate) fn terminating(mut self) -> Self {
        self.terminating = true;
        self
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
            .with("Message", Value::Str(self.message.clone()))
            .with_text(self.message.clone());
        let category = Obj::new("System.Management.Automation.ErrorCategoryInfo")
            .with("Category", Value::Str(self.category.to_owned()))
            .with(
                "Activity",
                Value::Str(self.command.clone().unwrap_or_default()),
            )
            .with("Reason", Value::Str(self.exception.to_owned()))
            .with("TargetName", Value::Str(self.target.clone()));
        Value::Object(
            Obj::new("System.Management.Automation.ErrorRecord")
                .with("Exception", Value::Object(exception))
                .with("CategoryInfo", Value::Object(category))
                .with("FullyQualifiedErrorId", Value::Str(self.fqid.clone()))
                .with("TargetObject", Value::Str(self.target.clone()))
                .with_text(self.message.clone()),
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
    /// Snap-ins added with `Add-PSSnapin` (their registered names).
    pub(crate) snapins: Vec<String>,
    /// Text the host wrote outside the pipeline (`WARNING: …`, `What if: …`), flushed to
    /// stdout before the output of the statement that wrote it.
    pub(crate) console: String,
    /// `try` blocks being run (a terminating error inside one is caught, not written).
    try_depth: usize,
}

pub(super) fn collapse(mut items: Vec<Value>) -> Value {
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
            snapins: Vec::new(),
            console: String::new(),
            try_depth: 0,
        }
    }

    /// The value of a preference variable (`ErrorActionPreference`, …), lower-cased.
    pub(crate) fn preference(&self, name: &str) -> String {
        self.var(name).to_ps_string().to_ascii_lowercase()
    }

    /// Writes a warning to the host unless `-WarningAction` (or `$WarningPreference`) says
    /// `SilentlyContinue` / `Ignore`; `Stop` makes it a terminating error.
    pub(crate) fn warn(&mut self, action: Option<&str>, text: &str) -> EResult<()> {
        let action = action
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| self.preference("WarningPreference"));
        match action.as_str() {
            "silentlycontinue" | "ignore" => Ok(()),
            "stop" => Err(PsError::new(
                format!("The running command stopped because the preference variable \"WarningPreference\" or common parameter is set to Stop: {text}"),
                "OperationStopped",
                "ActionPreferenceStop",
            )
            .exception("ActionPreferenceStopException")
            .terminating()),
            _ => {
                self.host_line(&format!("WARNING: {text}"));
                Ok(())
            }
        }
    }

    /// Writes a line to the host (stdout), outside the pipeline.
    pub(crate) fn host_line(&mut self, text: &str) {
        if self.console.len() < self.limits.max_output_bytes {
            self.console.push_str(text);
            self.console.push_str("\r\n");
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
        match self.exec_stmt_inner(s, out).await {
            // A statement-terminating error outside `try` (and without `Stop`) ends the
            // statement, not the script.
            Err(e)
                if e.terminating
                    && !e.fatal
                    && self.try_depth == 0
                    && self.preference("ErrorActionPreference") != "stop" =>
            {
                self.write_error(&e);
                Ok(())
            }
            other => other,
        }
    }

    async fn exec_stmt_inner(&mut self, s: &Stmt, out: &mut Vec<Value>) -> EResult<()> {
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
                self.try_depth += 1;
                let mut result = self.exec_block(body, out).await;
                self.try_depth -= 1;
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
        let (common, raw) = commands::take_common(raw).map_err(|e| e.at(c.span))?;
        let action = common.error_action.clone();
        let result = commands::run(self, &name, raw, input, &common).await;
        match result {
            Ok(values) => {
                for v in values {
                    self.push_output(out, v)?;
                }
                Ok(())
            }
            Err(e) if e.fatal || e.terminating => {
                let mut e = e.at(c.span);
                if e.command.is_none() {
                    e.command = Some(name.clone());
                }
                Err(e)
            }
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
