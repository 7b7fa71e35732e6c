//! Run-time values of the PowerShell subset, their string forms and PS 5.1-style JSON.

use chrono::{DateTime, Utc};
use std::fmt::Write;

/// A PowerShell value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `$null`.
    Null,
    /// `$true` / `$false`.
    Bool(bool),
    /// An integer (`[int]`, `[long]`).
    Int(i64),
    /// An unsigned 64-bit integer (`[ulong]`, e.g. an inbox rule's `RuleIdentity`, which
    /// Exchange draws from the whole `UInt64` range).
    UInt(u64),
    /// A .NET enum value: `[string]` gives its name, PS 5.1's `ConvertTo-Json` its number.
    Enum(EnumValue),
    /// A string.
    Str(String),
    /// A `[DateTime]` (always UTC in the lab).
    Date(DateTime<Utc>),
    /// An array (`object[]`).
    Array(Vec<Value>),
    /// An object with ordered, case-insensitively named properties.
    Object(Obj),
}

/// A .NET enum value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnumValue {
    /// The enum's .NET type name, for messages.
    pub(crate) type_name: &'static str,
    /// The member's name (`Allowed`).
    pub(crate) name: String,
    /// The member's number (`1`).
    pub(crate) value: i64,
}

/// A property bag (`[pscustomobject]`, hashtable, pool item, process, error record, …).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Obj {
    /// .NET-ish type name, for messages.
    pub(crate) type_name: String,
    /// Properties in order.
    pub(crate) props: Vec<(String, Value)>,
    /// `true` for a hashtable (string form `System.Collections.Hashtable`).
    pub(crate) hashtable: bool,
    /// The object's `ToString()` when it is a .NET object that overrides it (an Exchange
    /// `ADObjectId` gives its canonical name, an `SmtpAddress` the address): what `[string]`
    /// and a truncated `ConvertTo-Json` print instead of `@{…}`.
    pub(crate) text: Option<String>,
}

impl Obj {
    /// A new object of the given type name.
    pub(crate) fn new(type_name: &str) -> Self {
        Obj {
            type_name: type_name.to_string(),
            props: Vec::new(),
            hashtable: false,
            text: None,
        }
    }

    /// Sets the `ToString()` form (builder style).
    pub(crate) fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Adds a property (builder style).
    pub(crate) fn with(mut self, name: &str, value: Value) -> Self {
        self.props.push((name.to_string(), value));
        self
    }

    /// Case-insensitive property lookup.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

impl Value {
    /// PowerShell's type name, for error messages.
    pub(crate) fn type_name(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Bool(_) => "System.Boolean".into(),
            Value::Int(_) => "System.Int32".into(),
            Value::UInt(_) => "System.UInt64".into(),
            Value::Enum(e) => e.type_name.into(),
            Value::Str(_) => "System.String".into(),
            Value::Date(_) => "System.DateTime".into(),
            Value::Array(_) => "System.Object[]".into(),
            Value::Object(o) => o.type_name.clone(),
        }
    }

    /// PowerShell truthiness.
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(n) => *n != 0,
            Value::UInt(n) => *n != 0,
            Value::Enum(e) => e.value != 0,
            Value::Str(s) => !s.is_empty(),
            Value::Date(_) | Value::Object(_) => true,
            Value::Array(items) => match items.as_slice() {
                [] => false,
                [one] => one.truthy(),
                _ => true,
            },
        }
    }

    /// The items this value contributes to a pipeline / `foreach` (arrays are unrolled).
    pub(crate) fn into_items(self) -> Vec<Value> {
        match self {
            Value::Array(items) => items,
            other => vec![other],
        }
    }

    /// String conversion as `[string]` does it (arrays joined with spaces).
    pub(crate) fn to_ps_string(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Int(n) => n.to_string(),
            Value::UInt(n) => n.to_string(),
            Value::Enum(e) => e.name.clone(),
            Value::Str(s) => s.clone(),
            Value::Date(d) => d.format("%-m/%-d/%Y %-I:%M:%S %p").to_string(),
            Value::Array(items) => items
                .iter()
                .map(Value::to_ps_string)
                .collect::<Vec<_>>()
                .join(" "),
            Value::Object(o) if o.hashtable => "System.Collections.Hashtable".into(),
            Value::Object(Obj {
                text: Some(text), ..
            }) => text.clone(),
            Value::Object(o) => {
                let mut s = String::from("@{");
                for (i, (k, v)) in o.props.iter().enumerate() {
                    if i > 0 {
                        s.push_str("; ");
                    }
                    let _ = write!(s, "{k}={}", v.to_ps_string());
                }
                s.push('}');
                s
            }
        }
    }
}

/// Options of `ConvertTo-Json`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonOptions {
    /// `-Depth` (default 2).
    pub(crate) depth: usize,
    /// `-Compress`.
    pub(crate) compress: bool,
}

/// Writes `s` as a JSON string the way Windows PowerShell 5.1 does (it also escapes `<`, `>`,
/// `&` and `'` as `\u00XX`).
pub(crate) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\'' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Serializes a value PS 5.1-style.
pub(crate) fn to_json(v: &Value, opts: JsonOptions) -> String {
    let mut out = String::new();
    write_json(&mut out, v, 0, opts);
    out
}

fn newline(out: &mut String, level: usize, opts: JsonOptions) {
    if !opts.compress {
        out.push_str("\r\n");
        for _ in 0..level {
            out.push_str("    ");
        }
    }
}

fn write_json(out: &mut String, v: &Value, depth: usize, opts: JsonOptions) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        // PS 5.1 writes an enum as its number (`-EnumsAsStrings` is PowerShell 6+).
        Value::Enum(e) => {
            let _ = write!(out, "{}", e.value);
        }
        Value::Str(s) => json_string(out, s),
        Value::Date(d) => {
            json_string(out, &format!("/Date({})/", d.timestamp_millis()));
        }
        Value::Array(_) | Value::Object(_) if depth > opts.depth => {
            json_string(out, &v.to_ps_string());
        }
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1, opts);
                write_json(out, item, depth + 1, opts);
            }
            newline(out, depth, opts);
            out.push(']');
        }
        Value::Object(o) => {
            if o.props.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, item)) in o.props.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1, opts);
                json_string(out, k);
                out.push(':');
                if !opts.compress {
                    out.push_str("  ");
                }
                write_json(out, item, depth + 1, opts);
            }
            newline(out, depth, opts);
            out.push('}');
        }
    }
}

/// Approximate in-memory size of a value, for the interpreter's memory guard.
pub(crate) fn approx_size(v: &Value) -> usize {
    match v {
        Value::Str(s) => s.len() + 16,
        Value::Array(items) => 16 + items.iter().map(approx_size).sum::<usize>(),
        Value::Object(o) => {
            16 + o
                .props
                .iter()
                .map(|(k, v)| k.len() + approx_size(v))
                .sum::<usize>()
        }
        _ => 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_like_ps51() {
        let mut s = String::new();
        json_string(&mut s, "a'b<c>&\"\\\n\u{1}é");
        assert_eq!(s, r#""a\u0027b\u003cc\u003e\u0026\"\\\n\u0001é""#);
    }

    #[test]
    fn json_depth_truncates_to_string() {
        let inner = Value::Object(Obj::new("PSCustomObject").with("x", Value::Int(1)));
        let outer = Value::Object(Obj::new("PSCustomObject").with("a", inner));
        let compress = JsonOptions {
            depth: 0,
            compress: true,
        };
        assert_eq!(to_json(&outer, compress), r#"{"a":"@{x=1}"}"#);
    }

    #[test]
    fn json_pretty_uses_two_spaces_after_colon() {
        let v = Value::Object(Obj::new("PSCustomObject").with("a", Value::Int(1)));
        let opts = JsonOptions {
            depth: 2,
            compress: false,
        };
        assert_eq!(to_json(&v, opts), "{\r\n    \"a\":  1\r\n}");
    }
}
