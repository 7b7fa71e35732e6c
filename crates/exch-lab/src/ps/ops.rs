//! Conversions and operators of the subset: `[int]` and the other casts, comparisons, member
//! access, the few methods, indexing.

use super::ast::BinOp;
use super::eval::{collapse, EResult, PsError};
use super::value::Value;

/// Converts to an integer as `[int]` does.
pub(crate) fn to_int(v: &Value) -> EResult<i64> {
    match v {
        Value::Null => Ok(0),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Int(n) => Ok(*n),
        Value::Enum(e) => Ok(e.value),
        Value::UInt(n) => i64::try_from(*n).map_err(|_| {
            PsError::new(
                format!("Cannot convert value \"{n}\" to type \"System.Int32\". Error: \"Value was either too large or too small for an Int32.\""),
                "InvalidArgument",
                "InvalidCastIConvertible",
            )
            .exception("PSInvalidCastException")
        }),
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

/// A number as a wide integer, for comparisons across `Int` and `UInt`.
fn to_wide(v: &Value) -> Option<i128> {
    match v {
        Value::UInt(n) => Some(i128::from(*n)),
        Value::Str(s) => s
            .trim()
            .parse::<i128>()
            .ok()
            .or_else(|| to_int(v).ok().map(i128::from)),
        other => to_int(other).ok().map(i128::from),
    }
}

pub(super) fn compare(op: BinOp, l: &Value, r: &Value) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (l, r) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Int(a), r) => to_wide(r).map(|b| i128::from(*a).cmp(&b)),
        (Value::UInt(a), r) => to_wide(r).map(|b| i128::from(*a).cmp(&b)),
        // An enum compares with a string by name, with a number by value.
        (Value::Enum(a), Value::Str(b)) => Some(a.name.to_lowercase().cmp(&b.to_lowercase())),
        (Value::Enum(a), r) => to_wide(r).map(|b| i128::from(a.value).cmp(&b)),
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

pub(super) fn cast(ty: &str, v: Value) -> EResult<Value> {
    let t = ty.to_ascii_lowercase();
    let t = t.strip_prefix("system.").unwrap_or(&t);
    match t {
        "int" | "int32" | "long" | "int64" | "uint32" => Ok(Value::Int(to_int(&v)?)),
        "uint64" | "ulong" => {
            let exact = match &v {
                Value::UInt(n) => Some(*n),
                Value::Str(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            if let Some(n) = exact {
                return Ok(Value::UInt(n));
            }
            let n = to_int(&v)?;
            u64::try_from(n).map(Value::UInt).map_err(|_| {
                PsError::new(
                    format!("Cannot convert value \"{n}\" to type \"System.UInt64\". Error: \"Value was either too large or too small for a UInt64.\""),
                    "InvalidArgument",
                    "InvalidCastIConvertible",
                )
                .exception("PSInvalidCastException")
            })
        }
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

pub(super) fn member(v: &Value, name: &str) -> Value {
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

pub(super) fn method(v: &Value, name: &str, args: &[Value]) -> EResult<Value> {
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

pub(super) fn index_value(v: &Value, i: &Value) -> EResult<Value> {
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
