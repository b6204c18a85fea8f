//! SQL and JSON values to and from WIT values, as `singlestore/values.py`
//! converted them and in its words: the messages are the `InvalidArgument`,
//! `AbiError` and `UserError` texts Python raised, so that nothing a caller
//! sees changed when the conversions moved here.
//!
//! The mapping is the package docstring's (`singlestore/__init__.py`): a WIT
//! value is an SQL value of the type `sql_type` gives it, the compound ones
//! JSON text. Python's values stand here as [`Val`]s (an option's none is
//! case 0 with `Unit`), and the Python objects `json.loads` made as
//! [`Json`]s, whose `repr()` the messages quote.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use super::json::{self, Json, JsonInt, JsonStr};
use super::types::{Case, Field, Form, Int, Shape, Ty, Val};
use crate::basic::Arg;

/// An SQL result value.
#[derive(Debug, Clone, PartialEq)]
pub enum Sql {
    Null,
    Boolean(bool),
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A WIT type `_prim_from` converts: the primitives with an SQL type of
/// their own (unit has none: it is JSON).
#[derive(Debug, Clone, Copy)]
enum Prim {
    Int(Int),
    F32,
    F64,
    Bool,
    Char,
    String,
}

impl Prim {
    fn of(shape: &Shape) -> Option<Self> {
        Some(match shape {
            Shape::Int(kind) => Self::Int(*kind),
            Shape::F32 => Self::F32,
            Shape::F64 => Self::F64,
            Shape::Bool => Self::Bool,
            Shape::Char => Self::Char,
            Shape::String => Self::String,
            _ => return None,
        })
    }

    /// What `_prim_from` says it expected, when the value is of another type.
    fn expected(self) -> Cow<'static, str> {
        match self {
            Self::Int(kind) => format!("an integer ({})", kind.name()).into(),
            Self::F32 => "a number (float32)".into(),
            Self::F64 => "a number (float64)".into(),
            Self::Bool => "a boolean".into(),
            Self::Char => "text (char)".into(),
            Self::String => "text (string)".into(),
        }
    }
}

fn none() -> Val {
    Val::Case(0, Box::new(Val::Unit))
}

fn some(value: Val) -> Val {
    Val::Case(1, Box::new(value))
}

fn case(index: usize, payload: Val) -> Val {
    #[allow(clippy::cast_possible_truncation)] // a discriminant has at most 4 bytes
    Val::Case(index as u32, Box::new(payload))
}

fn case_at(cases: &[Case], index: u32) -> &Case {
    &cases[index as usize]
}

/// `sql_name(key) == name`, `name` being an SQL spelling already.
fn sql_eq(key: &JsonStr, name: &str) -> bool {
    key.as_str().is_some_and(|key| {
        key.len() == name.len()
            && key
                .bytes()
                .map(|b| if b == b'-' { b'_' } else { b })
                .eq(name.bytes())
    })
}

fn sql_name(key: &JsonStr) -> JsonStr {
    let hyphen = u32::from('-');
    match key {
        JsonStr::Text(t) => JsonStr::Text(t.replace('-', "_")),
        JsonStr::Lone(v) => JsonStr::Lone(
            v.iter()
                .map(|&c| if c == hyphen { u32::from('_') } else { c })
                .collect(),
        ),
    }
}

/// `_case_index`: the case `name` (either spelling) names, and the name.
fn case_index<'a>(cases: &[Case], name: &'a JsonStr) -> Option<(usize, &'a str)> {
    let text = name.as_str()?;
    let index = cases.iter().position(|c| sql_eq(name, &c.name))?;
    Some((index, text))
}

fn case_names(cases: &[Case]) -> String {
    let names: Vec<&str> = cases.iter().map(|c| &*c.name).collect();
    names.join(", ")
}

/// Where a value sits in an argument, as messages name it (`argument
/// x[2].name`): written out only when one is.
#[derive(Debug, Clone, Copy)]
enum Path<'a> {
    Root(&'a str),
    Index(&'a Path<'a>, usize),
    Field(&'a Path<'a>, &'a str),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root(what) => f.write_str(what),
            Self::Index(outer, i) => write!(f, "{outer}[{i}]"),
            Self::Field(outer, name) => write!(f, "{outer}.{name}"),
        }
    }
}

/// `_from_sql`: an SQL argument (already coerced to the parameter's SQL
/// type) as a WIT value of `ty`.
///
/// # Errors
///
/// The `InvalidArgument` message, `what` (`argument x`) first.
pub fn from_sql(ty: &Ty, value: &Arg, what: &str) -> Result<Val, String> {
    sql_value(ty, value, &Path::Root(what))
}

fn sql_value(ty: &Ty, value: &Arg, what: &Path<'_>) -> Result<Val, String> {
    if let Some(payload) = ty.option_payload() {
        return Ok(match value {
            Arg::Null => none(),
            _ => some(sql_value(payload, value, what)?),
        });
    }
    if *value == Arg::Null {
        return Err(format!(
            "{what} may not be NULL (its WIT type {} is no option)",
            ty.render
        ));
    }
    let text = match value {
        Arg::Text(text) => Some(text.as_slice()),
        _ => None,
    };
    match &ty.shape {
        Shape::Cases {
            form: Form::Enum,
            cases,
            ..
        } => {
            let Some(text) = text else {
                return Err(format!("{what}: expected a case name of {}", ty.render));
            };
            enum_from(ty, cases, &JsonStr::from_bytes(text), what)
        }
        _ if ty.is_bytes() => {
            if let Arg::Blob(bytes) = value {
                Ok(Val::Bytes(bytes.clone()))
            } else {
                Err(format!("{what}: expected a BLOB"))
            }
        }
        shape => {
            if let Some(prim) = Prim::of(shape) {
                return prim_from_sql(prim, value, what);
            }
            let Some(text) = text else {
                return Err(format!("{what}: expected JSON text for {}", ty.render));
            };
            let data =
                json::parse_bytes(text).map_err(|exc| format!("{what}: not valid JSON ({exc})"))?;
            json_value(ty, &data, what)
        }
    }
}

/// `_prim_from` of an SQL argument: the Python value it was.
fn prim_from_sql(prim: Prim, value: &Arg, what: &Path<'_>) -> Result<Val, String> {
    // What every call of a function of these types meets, taken as
    // `prim_from` would take it without making the Python value first.
    match (prim, value) {
        (Prim::String, Arg::Text(text)) => {
            if let Ok(text) = std::str::from_utf8(text) {
                return Ok(Val::String(text.to_owned()));
            }
        }
        (Prim::Int(kind), Arg::Integer(n)) => {
            let (lo, hi) = kind.range();
            if (lo..=hi).contains(&i128::from(*n)) {
                return Ok(Val::Int(i128::from(*n)));
            }
        }
        (Prim::F64, Arg::Real(x)) => return Ok(Val::F64(*x)),
        _ => {}
    }
    let value = match value {
        Arg::Null => Json::Null, // refused by the caller
        Arg::Boolean(b) => Json::Bool(*b),
        Arg::Integer(n) => Json::Int(JsonInt::Small(i128::from(*n))),
        Arg::Real(x) => Json::Float(*x),
        Arg::Text(text) => Json::Str(JsonStr::from_bytes(text)),
        Arg::Blob(bytes) => {
            return Err(format!(
                "{what}: expected {}, got {}",
                prim.expected(),
                bytes_repr(bytes)
            ))
        }
    };
    prim_from(prim, Cow::Owned(value), what, false)
}

fn enum_from(ty: &Ty, cases: &[Case], value: &JsonStr, what: &Path<'_>) -> Result<Val, String> {
    match case_index(cases, value) {
        Some((index, _)) => Ok(case(index, Val::Unit)),
        None => Err(format!(
            "{what}: {} is not a case of {} ({})",
            value.repr(),
            ty.render,
            case_names(cases)
        )),
    }
}

/// `_prim_from`. Owned where the caller made the value, so a string is
/// not copied twice.
fn prim_from(
    prim: Prim,
    value: Cow<'_, Json>,
    what: &Path<'_>,
    from_json: bool,
) -> Result<Val, String> {
    let refused = |value: &Json| {
        format!(
            "{what}: expected {}, got {}",
            prim.expected(),
            json::py_repr(value)
        )
    };
    match prim {
        Prim::Int(kind) => integer(kind, &value, what, from_json).map(Val::Int),
        Prim::F32 | Prim::F64 => {
            let number = match &*value {
                Json::Str(s) if from_json => match s.as_str() {
                    Some("NaN") => f64::NAN,
                    Some("Infinity") => f64::INFINITY,
                    Some("-Infinity") => f64::NEG_INFINITY,
                    _ => return Err(refused(&value)),
                },
                Json::Float(x) => *x,
                Json::Int(n) => n.to_f64().ok_or_else(|| {
                    let kind = if matches!(prim, Prim::F32) {
                        "float32"
                    } else {
                        "float64"
                    };
                    format!("{what}: {n} is too large for {kind}")
                })?,
                other => return Err(refused(other)),
            };
            Ok(match prim {
                // Rounded as the guest will see it: beyond f32's range, ±inf.
                #[allow(clippy::cast_possible_truncation)]
                Prim::F32 => Val::F32(number as f32),
                _ => Val::F64(number),
            })
        }
        Prim::Bool => match &*value {
            Json::Bool(b) => Ok(Val::Bool(*b)),
            Json::Int(n) if !from_json => Ok(Val::Bool(*n != JsonInt::Small(0))),
            other => Err(refused(other)),
        },
        Prim::Char | Prim::String => {
            let Json::Str(s) = &*value else {
                return Err(refused(&value));
            };
            if matches!(prim, Prim::Char) {
                let mut points = s.code_points();
                return match (points.next().and_then(char::from_u32), points.next()) {
                    (Some(c), None) => Ok(Val::Char(c)),
                    _ => Err(format!(
                        "{what}: a char is exactly one Unicode scalar value, got {}",
                        s.repr()
                    )),
                };
            }
            match value.into_owned() {
                Json::Str(JsonStr::Text(text)) => Ok(Val::String(text)),
                _ => Err(format!("{what}: text with a lone surrogate is not UTF-8")),
            }
        }
    }
}

/// `_prim_from` of an integer type.
fn integer(kind: Int, value: &Json, what: &Path<'_>, from_json: bool) -> Result<i128, String> {
    let n = match value {
        Json::Float(x) if from_json && is_integer(*x) => int_of_float(*x),
        Json::Int(n) => n.clone(),
        _ => {
            return Err(format!(
                "{what}: expected {}, got {}",
                Prim::Int(kind).expected(),
                json::py_repr(value)
            ))
        }
    };
    let (lo, hi) = kind.range();
    match n {
        JsonInt::Small(n) if (lo..=hi).contains(&n) => Ok(n),
        n => Err(format!(
            "{what}: {n} is out of range for {} ({lo}..{hi})",
            kind.name()
        )),
    }
}

/// `float.is_integer()`.
fn is_integer(x: f64) -> bool {
    x.is_finite() && x.fract() == 0.0
}

/// `int(x)` of an integral `x`, exactly (1e300 has 301 digits).
fn int_of_float(x: f64) -> JsonInt {
    const BASE: u64 = 1_000_000_000;
    const I128_BOUND: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0; // 2**127
    if x.abs() < I128_BOUND {
        #[allow(clippy::cast_possible_truncation)] // integral and in range: exact
        return JsonInt::Small(x as i128);
    }
    // x = mantissa * 2**shift, the mantissa below 2**53 (halving is exact).
    let mut mantissa = x.abs();
    let mut shift = 0u32;
    while mantissa >= 9_007_199_254_740_992.0 {
        mantissa /= 2.0;
        shift += 1;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // integral, below 2**53
    let mantissa = mantissa as u64;
    // Base 10**9 limbs, least significant first.
    let mut limbs = vec![mantissa % BASE, mantissa / BASE];
    while shift > 0 {
        let step = shift.min(32);
        shift -= step;
        let mut carry = 0;
        for limb in &mut limbs {
            let n = (*limb << step) + carry;
            *limb = n % BASE;
            carry = n / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
    }
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    let mut digits = String::from(if x < 0.0 { "-" } else { "" });
    for (i, limb) in limbs.iter().rev().enumerate() {
        // A String takes every write.
        let _ = if i == 0 {
            write!(digits, "{limb}")
        } else {
            write!(digits, "{limb:09}")
        };
    }
    JsonInt::Big(digits.into())
}

/// Python's `repr()` of `bytes`.
fn bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::from("b");
    out.push(char::from(quote));
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if b == quote => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7E => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}"); // a String takes every write
            }
        }
    }
    out.push(char::from(quote));
    out
}

/// `_from_json`: a parsed JSON value as a WIT value of `ty` (the JSON form
/// of the package docstring).
///
/// # Errors
///
/// The `InvalidArgument` message, `what` first, with the path to the part
/// refused (`argument x[2].name`).
pub fn from_json(ty: &Ty, data: &Json, what: &str) -> Result<Val, String> {
    json_value(ty, data, &Path::Root(what))
}

fn json_value(ty: &Ty, data: &Json, what: &Path<'_>) -> Result<Val, String> {
    let prim = |prim| prim_from(prim, Cow::Borrowed(data), what, true);
    match &ty.shape {
        Shape::Cases {
            form: Form::Option,
            cases,
            ..
        } => Ok(match data {
            Json::Null => none(),
            _ => some(json_value(&cases[1].ty, data, what)?),
        }),
        Shape::Unit => match data {
            Json::Null => Ok(Val::Unit),
            _ => Err(format!(
                "{what}: expected null (no value), got {}",
                json::py_repr(data)
            )),
        },
        Shape::List(element) => {
            let Json::Array(items) = data else {
                return Err(format!("{what}: expected an array for {}", ty.render));
            };
            let path = |i| Path::Index(what, i);
            if ty.is_bytes() {
                items
                    .iter()
                    .enumerate()
                    // In u8's range, so its low byte is the number.
                    .map(|(i, x)| Ok(integer(Int::U8, x, &path(i), true)?.to_le_bytes()[0]))
                    .collect::<Result<_, _>>()
                    .map(Val::Bytes)
            } else {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| json_value(element, x, &path(i)))
                    .collect::<Result<_, _>>()
                    .map(Val::List)
            }
        }
        Shape::Tuple(items) => match data {
            Json::Array(data) if data.len() == items.len() => items
                .iter()
                .zip(data)
                .enumerate()
                .map(|(i, ((t, _), x))| json_value(t, x, &Path::Index(what, i)))
                .collect::<Result<_, _>>()
                .map(Val::Tuple),
            _ => Err(format!(
                "{what}: expected an array of {} for {}",
                items.len(),
                ty.render
            )),
        },
        Shape::Record(fields) => record_from(ty, fields, data, what),
        Shape::Flags { names, words } => {
            let refused = || format!("{what}: expected an array of flag names for {}", ty.render);
            let Json::Array(items) = data else {
                return Err(refused());
            };
            let flags = items
                .iter()
                .map(|x| match x {
                    Json::Str(s) => Some(s),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(refused)?;
            let mut bits = vec![0u32; *words];
            for flag in flags {
                let Some(i) = names.iter().position(|n| sql_eq(flag, n)) else {
                    let names: Vec<&str> = names.iter().map(|n| &**n).collect();
                    return Err(format!(
                        "{what}: {} is not a flag of {} ({})",
                        flag.repr(),
                        ty.render,
                        names.join(", ")
                    ));
                };
                bits[i / 32] |= 1 << (i % 32);
            }
            Ok(Val::Flags(bits))
        }
        Shape::Cases {
            form: Form::Enum,
            cases,
            ..
        } => match data {
            Json::Str(s) => enum_from(ty, cases, s, what),
            _ => Err(format!("{what}: expected a case name of {}", ty.render)),
        },
        Shape::Cases { form, cases, .. } => case_from(ty, *form, cases, data, what),
        Shape::Int(kind) => prim(Prim::Int(*kind)),
        Shape::F32 => prim(Prim::F32),
        Shape::F64 => prim(Prim::F64),
        Shape::Bool => prim(Prim::Bool),
        Shape::Char => prim(Prim::Char),
        Shape::String => prim(Prim::String),
    }
}

/// A variant's, union's or expected's value: `{"case": payload}`, or a
/// variant's case by its bare name (a payload of null).
fn case_from(
    ty: &Ty,
    form: Form,
    cases: &[Case],
    data: &Json,
    what: &Path<'_>,
) -> Result<Val, String> {
    let (name, payload) = match data {
        Json::Str(s) if !matches!(form, Form::Expected | Form::Union) => (s, &Json::Null),
        Json::Object(entries) if entries.len() == 1 => (&entries[0].0, &entries[0].1),
        _ => {
            return Err(format!(
                "{what}: expected {{\"case\": payload}} for {} ({})",
                ty.render,
                case_names(cases)
            ))
        }
    };
    let Some((index, name)) = case_index(cases, name) else {
        return Err(format!(
            "{what}: {} is not a case of {} ({})",
            name.repr(),
            ty.render,
            case_names(cases)
        ));
    };
    let payload = json_value(&cases[index].ty, payload, &Path::Field(what, name))?;
    Ok(case(index, payload))
}

fn record_from(ty: &Ty, fields: &[Field], data: &Json, what: &Path<'_>) -> Result<Val, String> {
    let Json::Object(entries) = data else {
        return Err(format!(
            "{what}: expected an object for record {}",
            ty.render
        ));
    };
    let known = |key: &JsonStr| fields.iter().any(|f| sql_eq(key, &f.name));
    // sorted(unknown)[0]: the least in code point order.
    let unknown = entries
        .iter()
        .filter(|(key, _)| !known(key))
        .map(|(key, _)| sql_name(key))
        .min_by(|a, b| a.code_points().cmp(b.code_points()));
    if let Some(key) = unknown {
        let names: Vec<&str> = fields.iter().map(|f| &*f.name).collect();
        return Err(format!(
            "{what}: record {} has no field {} (fields: {})",
            ty.render,
            key.repr(),
            names.join(", ")
        ));
    }
    fields
        .iter()
        .map(|f| {
            // Of the keys both spellings of a name make, Python's dict of
            // them keeps the last.
            match entries.iter().rev().find(|(key, _)| sql_eq(key, &f.name)) {
                Some((_, value)) => json_value(&f.ty, value, &Path::Field(what, &f.name)),
                None if f.ty.is_option() => Ok(none()),
                None => Err(format!(
                    "{what}: record {} needs field {}",
                    ty.render,
                    json::str_repr(&f.name)
                )),
            }
        })
        .collect::<Result<_, _>>()
        .map(Val::Tuple)
}

/// A value that is not of the type it was lifted as: a bug of the caller.
fn mismatch(ty: &Ty, value: &Val) -> ! {
    panic!("{value:?} is not a value of {}", ty.render)
}

/// `_json_text`: `json.dumps(_to_json(ty, value), ensure_ascii=False,
/// allow_nan=False, separators=(",", ":"))`.
///
/// # Panics
///
/// If `value` is not a value of `ty`.
pub fn json_text(ty: &Ty, value: &Val) -> String {
    let mut out = String::new();
    write_json(&mut out, ty, value);
    out
}

fn write_json(out: &mut String, ty: &Ty, value: &Val) {
    match (&ty.shape, value) {
        (
            Shape::Cases {
                form: Form::Option,
                cases,
                ..
            },
            Val::Case(index, payload),
        ) => match index {
            0 => out.push_str("null"),
            _ => write_json(out, &cases[1].ty, payload),
        },
        (Shape::Unit, Val::Unit) => out.push_str("null"),
        (Shape::Bool, Val::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
        (Shape::Int(_), Val::Int(n)) => {
            let _ = write!(out, "{n}"); // a String takes every write
        }
        // A float32 is the float64 Python widened it to.
        (Shape::F32, Val::F32(x)) => write_float(out, f64::from(*x)),
        (Shape::F64, Val::F64(x)) => write_float(out, *x),
        (Shape::Char, Val::Char(c)) => json::write_str(out, c.encode_utf8(&mut [0; 4])),
        (Shape::String, Val::String(s)) => json::write_str(out, s),
        (Shape::List(_), Val::Bytes(bytes)) => {
            out.push('[');
            for (i, b) in bytes.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{b}");
            }
            out.push(']');
        }
        (Shape::List(element), Val::List(items)) => {
            write_array(out, items.iter().map(|item| (&**element, item)));
        }
        (Shape::Tuple(types), Val::Tuple(items)) if types.len() == items.len() => {
            write_array(out, types.iter().map(|(t, _)| t).zip(items));
        }
        (Shape::Record(fields), Val::Tuple(items)) if fields.len() == items.len() => {
            out.push('{');
            let mut first = true;
            for (i, f) in fields.iter().enumerate() {
                // A dict of the fields: two whose SQL names are one are one
                // key, where the first was, with the last's value.
                if fields[..i].iter().any(|g| g.name == f.name) {
                    continue;
                }
                let last = fields.iter().rposition(|g| g.name == f.name).unwrap_or(i);
                if !first {
                    out.push(',');
                }
                first = false;
                json::write_str(out, &f.name);
                out.push(':');
                write_json(out, &fields[last].ty, &items[last]);
            }
            out.push('}');
        }
        (Shape::Flags { names, .. }, Val::Flags(words)) => {
            out.push('[');
            let set = names.iter().enumerate().filter(|(i, _)| {
                words
                    .get(i / 32)
                    .is_some_and(|word| word >> (i % 32) & 1 == 1)
            });
            for (n, (_, name)) in set.enumerate() {
                if n > 0 {
                    out.push(',');
                }
                json::write_str(out, name);
            }
            out.push(']');
        }
        (
            Shape::Cases {
                form: Form::Enum,
                cases,
                ..
            },
            Val::Case(index, _),
        ) => json::write_str(out, &case_at(cases, *index).name),
        (Shape::Cases { cases, .. }, Val::Case(index, payload)) => {
            let case = case_at(cases, *index);
            out.push('{');
            json::write_str(out, &case.name);
            out.push(':');
            write_json(out, &case.ty, payload);
            out.push('}');
        }
        _ => mismatch(ty, value),
    }
}

fn write_array<'a>(out: &mut String, items: impl Iterator<Item = (&'a Ty, &'a Val)>) {
    out.push('[');
    for (i, (ty, item)) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json(out, ty, item);
    }
    out.push(']');
}

/// `_to_json` makes a non-finite float a string; `json.dumps` writes the
/// rest as `float.__repr__` does.
fn write_float(out: &mut String, x: f64) {
    if x.is_finite() {
        out.push_str(&json::float_repr(x));
    } else if x.is_nan() {
        out.push_str("\"NaN\"");
    } else if x > 0.0 {
        out.push_str("\"Infinity\"");
    } else {
        out.push_str("\"-Infinity\"");
    }
}

/// `_to_sql`: a lifted WIT value as the SQL value of its SQL type.
///
/// # Errors
///
/// The `AbiError` message of a u64 beyond BIGINT.
///
/// # Panics
///
/// If `value` is not a value of `ty`.
pub fn to_sql(ty: &Ty, value: Val, what: &str) -> Result<Sql, String> {
    Ok(match (&ty.shape, value) {
        (
            Shape::Cases {
                form: Form::Option,
                cases,
                ..
            },
            Val::Case(index, payload),
        ) => match index {
            0 => Sql::Null,
            _ => return to_sql(&cases[1].ty, *payload, what),
        },
        (Shape::Unit, _) => Sql::Null,
        (
            Shape::Cases {
                form: Form::Enum,
                cases,
                ..
            },
            Val::Case(index, _),
        ) => Sql::Text(case_at(cases, index).name.to_string()),
        (Shape::Bool, Val::Bool(b)) => Sql::Boolean(b),
        // Only a u64 can be beyond BIGINT.
        (Shape::Int(_), Val::Int(n)) => match i64::try_from(n) {
            Ok(n) => Sql::Integer(n),
            Err(_) => return Err(format!("{what}: the u64 value {n} does not fit in BIGINT")),
        },
        (Shape::F32, Val::F32(x)) => Sql::Real(f64::from(x)),
        (Shape::F64, Val::F64(x)) => Sql::Real(x),
        (Shape::Char, Val::Char(c)) => Sql::Text(c.to_string()),
        (Shape::String, Val::String(s)) => Sql::Text(s),
        (_, Val::Bytes(bytes)) if ty.is_bytes() => Sql::Blob(bytes),
        (_, value) => Sql::Text(json_text(ty, &value)),
    })
}

/// `_guest_error`: the code and message of the `UserError` for an `err`
/// whose payload, of type `ty`, is `payload`: the case as the code where
/// the type names one, the payload (its text, or JSON) as the message.
///
/// # Panics
///
/// If `payload` is not a value of `ty`.
pub fn guest_error(ty: &Ty, payload: &Val) -> (String, String) {
    let error = || "error".to_owned();
    match (&ty.shape, payload) {
        (
            Shape::Cases {
                form: Form::Enum,
                cases,
                ..
            },
            Val::Case(index, _),
        ) => {
            let name = case_at(cases, *index).name.to_string();
            (name.clone(), name)
        }
        (
            Shape::Cases {
                form: Form::Variant,
                cases,
                ..
            },
            Val::Case(index, value),
        ) => {
            let case = case_at(cases, *index);
            let name = case.name.to_string();
            if matches!(case.ty.shape, Shape::Unit) {
                return (name.clone(), name);
            }
            let text = py_text(&case.ty, value).unwrap_or_else(|| json_text(&case.ty, value));
            (name, text)
        }
        (Shape::Unit, _) => (error(), "the function returned an error".to_owned()),
        (Shape::String, Val::String(s)) => (error(), s.clone()),
        (Shape::Char, Val::Char(c)) => (error(), c.to_string()),
        _ => (error(), json_text(ty, payload)),
    }
}

/// The text of a value Python held as a `str`: a string, a char, or either
/// in an option's some (an option is its payload or None there).
fn py_text(ty: &Ty, value: &Val) -> Option<String> {
    match (&ty.shape, value) {
        (Shape::String, Val::String(s)) => Some(s.clone()),
        (Shape::Char, Val::Char(c)) => Some(c.to_string()),
        (
            Shape::Cases {
                form: Form::Option,
                cases,
                ..
            },
            Val::Case(1, payload),
        ) => py_text(&cases[1].ty, payload),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::types::Flat;

    // Sizes and offsets play no part in these conversions.
    fn ty(shape: Shape, render: &str) -> Ty {
        Ty {
            shape,
            render: render.into(),
            size: 4,
            align: 4,
            extent: 4,
            flat: Box::new([Flat::I32]),
        }
    }

    fn prim(name: &str) -> Ty {
        ty(Shape::primitive(name).expect("a primitive"), name)
    }

    fn cases(form: Form, render: &str, cases: Vec<(&str, Ty)>) -> Ty {
        let cases = cases
            .into_iter()
            .map(|(name, ty)| Case {
                name: name.into(),
                ty,
            })
            .collect();
        let shape = Shape::Cases {
            form,
            cases,
            tag_size: 1,
            payload_offset: 4,
            joined: Box::new([Flat::I32]),
        };
        ty(shape, render)
    }

    fn option(payload: Ty) -> Ty {
        let render = format!("option<{}>", payload.render);
        cases(
            Form::Option,
            &render,
            vec![("none", prim("unit")), ("some", payload)],
        )
    }

    fn list(element: Ty) -> Ty {
        let render = format!("list<{}>", element.render);
        ty(Shape::List(Box::new(element)), &render)
    }

    fn tuple(items: Vec<Ty>) -> Ty {
        let names: Vec<&str> = items.iter().map(|t| &*t.render).collect();
        let render = format!("tuple<{}>", names.join(", "));
        ty(
            Shape::Tuple(items.into_iter().map(|t| (t, 0)).collect()),
            &render,
        )
    }

    fn record(name: &str, fields: Vec<(&str, Ty)>) -> Ty {
        let fields = fields
            .into_iter()
            .map(|(name, ty)| Field {
                name: name.into(),
                ty,
                offset: 0,
            })
            .collect();
        ty(Shape::Record(fields), name)
    }

    fn flags(name: &str, names: &[&str]) -> Ty {
        let shape = Shape::Flags {
            names: names.iter().map(|&n| n.into()).collect(),
            words: if names.len() <= 16 {
                1
            } else {
                names.len().div_ceil(32)
            },
        };
        ty(shape, name)
    }

    /// The types of the table below, as wit.py would build them (names in
    /// their SQL spelling).
    fn named(key: &str) -> Ty {
        let s32 = || prim("s32");
        let string = || prim("string");
        match key {
            "option<s32>" => option(s32()),
            "option<string>" => option(string()),
            "option<u64>" => option(prim("u64")),
            "option<list<s32>>" => option(list(s32())),
            "list<u8>" => list(prim("u8")),
            "list<s32>" => list(s32()),
            "list<string>" => list(string()),
            "tuple<s32, string>" => tuple(vec![s32(), string()]),
            "point" => record(
                "point",
                vec![
                    ("x", s32()),
                    ("y_coord", prim("float64")),
                    ("label", option(string())),
                ],
            ),
            "perms" => flags("perms", &["read", "write", "exec_it"]),
            "wide" => {
                let names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                flags("wide", &names)
            }
            "color" => {
                let unit = || prim("unit");
                cases(
                    Form::Enum,
                    "color",
                    vec![("red", unit()), ("dark_green", unit()), ("blue", unit())],
                )
            }
            "shape" => cases(
                Form::Variant,
                "shape",
                vec![
                    ("circle", prim("float64")),
                    ("none_at_all", prim("unit")),
                    ("named", string()),
                    ("pair", tuple(vec![s32(), s32()])),
                    ("opt", option(string())),
                    ("ch", prim("char")),
                    ("f", prim("float32")),
                ],
            ),
            "num" => cases(Form::Union, "num", vec![("0", s32()), ("1", string())]),
            "expected<s32, string>" => cases(
                Form::Expected,
                "expected<s32, string>",
                vec![("ok", s32()), ("err", string())],
            ),
            "expected<unit, string>" => cases(
                Form::Expected,
                "expected<unit, string>",
                vec![("ok", prim("unit")), ("err", string())],
            ),
            "outer" => record(
                "outer",
                vec![
                    ("items", list(named("shape"))),
                    ("tags", option(named("perms"))),
                ],
            ),
            // Two WIT fields, a-b and a_b, with one SQL name.
            "twins" => record("twins", vec![("a_b", s32()), ("a_b", prim("float64"))]),
            _ => prim(key),
        }
    }

    fn text(s: &str) -> Val {
        Val::String(s.to_owned())
    }

    /// `_from_json` of `json.loads(input)` in Python, as `_json_text` of
    /// the value or as the message.
    const FROM_JSON: &[(&str, &str, Result<&str, &str>)] = &[
        ("u8", "255", Ok("255")),
        ("u8", "256", Err("arg: 256 is out of range for u8 (0..255)")),
        ("u8", "-1", Err("arg: -1 is out of range for u8 (0..255)")),
        ("u8", "1.0", Ok("1")),
        ("u8", "1.5", Err("arg: expected an integer (u8), got 1.5")),
        ("u8", "true", Err("arg: expected an integer (u8), got True")),
        ("u8", "\"5\"", Err("arg: expected an integer (u8), got '5'")),
        ("u8", "null", Err("arg: expected an integer (u8), got None")),
        ("u8", "[1]", Err("arg: expected an integer (u8), got [1]")),
        ("u8", "NaN", Err("arg: expected an integer (u8), got nan")),
        ("u8", "Infinity", Err("arg: expected an integer (u8), got inf")),
        ("u8", "1e2", Ok("100")),
        ("u8", "-0.0", Ok("0")),
        ("u8", "123456789012345678901234567890123456789012", Err("arg: 123456789012345678901234567890123456789012 is out of range for u8 (0..255)")),
        ("s64", "9223372036854775807", Ok("9223372036854775807")),
        ("s64", "9223372036854775808", Err("arg: 9223372036854775808 is out of range for s64 (-9223372036854775808..9223372036854775807)")),
        ("s64", "-9223372036854775809", Err("arg: -9223372036854775809 is out of range for s64 (-9223372036854775808..9223372036854775807)")),
        ("s64", "1e19", Err("arg: 10000000000000000000 is out of range for s64 (-9223372036854775808..9223372036854775807)")),
        ("s64", "170141183460469231731687303715884105728", Err("arg: 170141183460469231731687303715884105728 is out of range for s64 (-9223372036854775808..9223372036854775807)")),
        ("s64", "-170141183460469231731687303715884105728", Err("arg: -170141183460469231731687303715884105728 is out of range for s64 (-9223372036854775808..9223372036854775807)")),
        ("s64", "1.7014118346046923e38", Err("arg: 170141183460469231731687303715884105728 is out of range for s64 (-9223372036854775808..9223372036854775807)")),
        ("s64", "-1.7014118346046923e38", Err("arg: -170141183460469231731687303715884105728 is out of range for s64 (-9223372036854775808..9223372036854775807)")),
        ("u64", "18446744073709551615", Ok("18446744073709551615")),
        ("u64", "18446744073709551616", Err("arg: 18446744073709551616 is out of range for u64 (0..18446744073709551615)")),
        ("u64", "1.8446744073709552e19", Err("arg: 18446744073709551616 is out of range for u64 (0..18446744073709551615)")),
        ("s8", "-128", Ok("-128")),
        ("s8", "128", Err("arg: 128 is out of range for s8 (-128..127)")),
        ("s16", "-32769", Err("arg: -32769 is out of range for s16 (-32768..32767)")),
        ("u16", "65536", Err("arg: 65536 is out of range for u16 (0..65535)")),
        ("u32", "4294967296", Err("arg: 4294967296 is out of range for u32 (0..4294967295)")),
        ("s32", "-2147483649", Err("arg: -2147483649 is out of range for s32 (-2147483648..2147483647)")),
        ("s32", "2147483647", Ok("2147483647")),
        ("float32", "0.1", Ok("0.10000000149011612")),
        ("float32", "1e39", Ok("\"Infinity\"")),
        ("float32", "-1e39", Ok("\"-Infinity\"")),
        ("float32", "3.4028235e38", Ok("3.4028234663852886e+38")),
        ("float32", "3.4028235677973366e38", Ok("\"Infinity\"")),
        ("float32", "\"NaN\"", Ok("\"NaN\"")),
        ("float32", "\"Infinity\"", Ok("\"Infinity\"")),
        ("float32", "\"-Infinity\"", Ok("\"-Infinity\"")),
        ("float32", "\"nan\"", Err("arg: expected a number (float32), got 'nan'")),
        ("float32", "true", Err("arg: expected a number (float32), got True")),
        ("float32", "1", Ok("1.0")),
        ("float32", "16777217", Ok("16777216.0")),
        ("float32", "1e400", Ok("\"Infinity\"")),
        ("float32", "null", Err("arg: expected a number (float32), got None")),
        ("float32", "[1.5]", Err("arg: expected a number (float32), got [1.5]")),
        ("float32", "-0.0", Ok("-0.0")),
        ("float64", "0.1", Ok("0.1")),
        ("float64", "1e308", Ok("1e+308")),
        ("float64", "1e400", Ok("\"Infinity\"")),
        ("float64", "NaN", Ok("\"NaN\"")),
        ("float64", "-Infinity", Ok("\"-Infinity\"")),
        ("float64", "\"x\"", Err("arg: expected a number (float64), got 'x'")),
        ("float64", "false", Err("arg: expected a number (float64), got False")),
        ("float64", "123456789012345678901", Ok("1.2345678901234568e+20")),
        ("float64", "5e-324", Ok("5e-324")),
        ("bool", "true", Ok("true")),
        ("bool", "false", Ok("false")),
        ("bool", "1", Err("arg: expected a boolean, got 1")),
        ("bool", "0", Err("arg: expected a boolean, got 0")),
        ("bool", "null", Err("arg: expected a boolean, got None")),
        ("bool", "\"true\"", Err("arg: expected a boolean, got 'true'")),
        ("char", "\"a\"", Ok("\"a\"")),
        ("char", "\"ab\"", Err("arg: a char is exactly one Unicode scalar value, got 'ab'")),
        ("char", "\"\"", Err("arg: a char is exactly one Unicode scalar value, got ''")),
        ("char", "\"😀\"", Ok("\"😀\"")),
        ("char", "\"\\ud800\"", Err("arg: a char is exactly one Unicode scalar value, got '\\ud800'")),
        ("char", "\"\\ud83d\\ude00\"", Ok("\"😀\"")),
        ("char", "1", Err("arg: expected text (char), got 1")),
        ("char", "null", Err("arg: expected text (char), got None")),
        ("char", "\"\\n\"", Ok("\"\\n\"")),
        ("char", "\"'\"", Ok("\"'\"")),
        ("string", "\"hi\"", Ok("\"hi\"")),
        ("string", "\"\\ud800x\"", Err("arg: text with a lone surrogate is not UTF-8")),
        ("string", "\"é\\n\\u0001\\\"\\\\/\"", Ok("\"é\\n\\u0001\\\"\\\\/\"")),
        ("string", "5", Err("arg: expected text (string), got 5")),
        ("string", "[\"a\"]", Err("arg: expected text (string), got ['a']")),
        ("string", "{\"a\": 1}", Err("arg: expected text (string), got {'a': 1}")),
        ("string", "\"\\udfff\"", Err("arg: text with a lone surrogate is not UTF-8")),
        ("unit", "null", Ok("null")),
        ("unit", "0", Err("arg: expected null (no value), got 0")),
        ("unit", "{}", Err("arg: expected null (no value), got {}")),
        ("unit", "\"\"", Err("arg: expected null (no value), got ''")),
        ("unit", "[null]", Err("arg: expected null (no value), got [None]")),
        ("option<s32>", "null", Ok("null")),
        ("option<s32>", "5", Ok("5")),
        ("option<s32>", "\"x\"", Err("arg: expected an integer (s32), got 'x'")),
        ("option<string>", "null", Ok("null")),
        ("option<string>", "\"a\"", Ok("\"a\"")),
        ("option<list<s32>>", "null", Ok("null")),
        ("option<list<s32>>", "[1]", Ok("[1]")),
        ("option<list<s32>>", "[null]", Err("arg[0]: expected an integer (s32), got None")),
        ("list<u8>", "[1,2,255]", Ok("[1,2,255]")),
        ("list<u8>", "[1,256]", Err("arg[1]: 256 is out of range for u8 (0..255)")),
        ("list<u8>", "[]", Ok("[]")),
        ("list<u8>", "\"abc\"", Err("arg: expected an array for list<u8>")),
        ("list<u8>", "[1.0, 2]", Ok("[1,2]")),
        ("list<u8>", "[true]", Err("arg[0]: expected an integer (u8), got True")),
        ("list<u8>", "{}", Err("arg: expected an array for list<u8>")),
        ("list<u8>", "[0, -1]", Err("arg[1]: -1 is out of range for u8 (0..255)")),
        ("list<s32>", "[1,2,3]", Ok("[1,2,3]")),
        ("list<s32>", "[1,\"x\"]", Err("arg[1]: expected an integer (s32), got 'x'")),
        ("list<s32>", "null", Err("arg: expected an array for list<s32>")),
        ("list<string>", "[\"a\",\"b\"]", Ok("[\"a\",\"b\"]")),
        ("list<string>", "[1]", Err("arg[0]: expected text (string), got 1")),
        ("tuple<s32, string>", "[1,\"a\"]", Ok("[1,\"a\"]")),
        ("tuple<s32, string>", "[1]", Err("arg: expected an array of 2 for tuple<s32, string>")),
        ("tuple<s32, string>", "[1,\"a\",2]", Err("arg: expected an array of 2 for tuple<s32, string>")),
        ("tuple<s32, string>", "{}", Err("arg: expected an array of 2 for tuple<s32, string>")),
        ("tuple<s32, string>", "[\"a\",1]", Err("arg[0]: expected an integer (s32), got 'a'")),
        ("point", "{\"x\":1,\"y-coord\":2.5}", Ok("{\"x\":1,\"y_coord\":2.5,\"label\":null}")),
        ("point", "{\"x\":1,\"y_coord\":2,\"label\":\"l\"}", Ok("{\"x\":1,\"y_coord\":2.0,\"label\":\"l\"}")),
        ("point", "{\"x\":1}", Err("arg: record point needs field 'y_coord'")),
        ("point", "{\"y_coord\":1}", Err("arg: record point needs field 'x'")),
        ("point", "{\"x\":1,\"y_coord\":1,\"z\":1,\"a-b\":2}", Err("arg: record point has no field 'a_b' (fields: x, y_coord, label)")),
        ("point", "[]", Err("arg: expected an object for record point")),
        ("point", "{\"x\":1,\"y_coord\":1,\"label\":null}", Ok("{\"x\":1,\"y_coord\":1.0,\"label\":null}")),
        ("point", "{\"x\":\"1\",\"y_coord\":1}", Err("arg.x: expected an integer (s32), got '1'")),
        ("point", "{\"x\":1,\"y-coord\":1,\"y_coord\":\"s\"}", Err("arg.y_coord: expected a number (float64), got 's'")),
        ("point", "{\"y_coord\":\"s\",\"x\":1,\"y-coord\":1}", Ok("{\"x\":1,\"y_coord\":1.0,\"label\":null}")),
        ("point", "{\"zz\":1,\"Z\":1,\"é\":1,\"x\":1,\"y_coord\":1}", Err("arg: record point has no field 'Z' (fields: x, y_coord, label)")),
        ("point", "{\"\\ud800\":1,\"x\":1,\"y_coord\":1, \"\\ud7fb\": 2}", Err("arg: record point has no field '\u{d7fb}' (fields: x, y_coord, label)")),
        ("point", "{\"\\ud800\":1,\"x\":1,\"y_coord\":1, \"\\ue000\": 2}", Err("arg: record point has no field '\\ud800' (fields: x, y_coord, label)")),
        ("point", "{\"x\":1,\"y_coord\":1,\"label\":5}", Err("arg.label: expected text (string), got 5")),
        ("point", "{\"x\":1,\"y_coord\":1,\"x\":300}", Ok("{\"x\":300,\"y_coord\":1.0,\"label\":null}")),
        ("point", "{\"x-\":1}", Err("arg: record point has no field 'x_' (fields: x, y_coord, label)")),
        ("point", "{\"LABEL\":1}", Err("arg: record point has no field 'LABEL' (fields: x, y_coord, label)")),
        ("perms", "[\"read\",\"exec-it\"]", Ok("[\"read\",\"exec_it\"]")),
        ("perms", "[\"exec_it\"]", Ok("[\"exec_it\"]")),
        ("perms", "[]", Ok("[]")),
        ("perms", "[\"nope\"]", Err("arg: 'nope' is not a flag of perms (read, write, exec_it)")),
        ("perms", "\"read\"", Err("arg: expected an array of flag names for perms")),
        ("perms", "[1]", Err("arg: expected an array of flag names for perms")),
        ("perms", "[\"read\", 1]", Err("arg: expected an array of flag names for perms")),
        ("perms", "[\"read\",\"read\"]", Ok("[\"read\"]")),
        ("perms", "[\"\\ud800\"]", Err("arg: '\\ud800' is not a flag of perms (read, write, exec_it)")),
        ("perms", "[\"write\", \"nope\", 1]", Err("arg: expected an array of flag names for perms")),
        ("perms", "null", Err("arg: expected an array of flag names for perms")),
        ("wide", "[\"f0\",\"f31\",\"f32\",\"f39\"]", Ok("[\"f0\",\"f31\",\"f32\",\"f39\"]")),
        ("wide", "[\"f40\"]", Err("arg: 'f40' is not a flag of wide (f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31, f32, f33, f34, f35, f36, f37, f38, f39)")),
        ("color", "\"red\"", Ok("\"red\"")),
        ("color", "\"dark-green\"", Ok("\"dark_green\"")),
        ("color", "\"dark_green\"", Ok("\"dark_green\"")),
        ("color", "\"Red\"", Err("arg: 'Red' is not a case of color (red, dark_green, blue)")),
        ("color", "1", Err("arg: expected a case name of color")),
        ("color", "null", Err("arg: expected a case name of color")),
        ("color", "{\"red\":null}", Err("arg: expected a case name of color")),
        ("color", "\"\\ud800\"", Err("arg: '\\ud800' is not a case of color (red, dark_green, blue)")),
        ("shape", "{\"circle\": 1.5}", Ok("{\"circle\":1.5}")),
        ("shape", "\"none-at-all\"", Ok("{\"none_at_all\":null}")),
        ("shape", "\"none_at_all\"", Ok("{\"none_at_all\":null}")),
        ("shape", "{\"none_at_all\": null}", Ok("{\"none_at_all\":null}")),
        ("shape", "{\"none_at_all\": 1}", Err("arg.none_at_all: expected null (no value), got 1")),
        ("shape", "\"circle\"", Err("arg.circle: expected a number (float64), got None")),
        ("shape", "{\"named\":\"n\"}", Ok("{\"named\":\"n\"}")),
        ("shape", "{\"pair\":[1,2]}", Ok("{\"pair\":[1,2]}")),
        ("shape", "{\"pair\":[1]}", Err("arg.pair: expected an array of 2 for tuple<s32, s32>")),
        ("shape", "{\"opt\": null}", Ok("{\"opt\":null}")),
        ("shape", "{\"opt\":\"s\"}", Ok("{\"opt\":\"s\"}")),
        ("shape", "\"opt\"", Ok("{\"opt\":null}")),
        ("shape", "{\"bad\":1}", Err("arg: 'bad' is not a case of shape (circle, none_at_all, named, pair, opt, ch, f)")),
        ("shape", "{\"circle\":1,\"named\":\"x\"}", Err("arg: expected {\"case\": payload} for shape (circle, none_at_all, named, pair, opt, ch, f)")),
        ("shape", "{}", Err("arg: expected {\"case\": payload} for shape (circle, none_at_all, named, pair, opt, ch, f)")),
        ("shape", "5", Err("arg: expected {\"case\": payload} for shape (circle, none_at_all, named, pair, opt, ch, f)")),
        ("shape", "null", Err("arg: expected {\"case\": payload} for shape (circle, none_at_all, named, pair, opt, ch, f)")),
        ("shape", "[]", Err("arg: expected {\"case\": payload} for shape (circle, none_at_all, named, pair, opt, ch, f)")),
        ("shape", "{\"ch\": \"x\"}", Ok("{\"ch\":\"x\"}")),
        ("shape", "{\"circle\": \"NaN\"}", Ok("{\"circle\":\"NaN\"}")),
        ("shape", "{\"circle\": \"-Infinity\"}", Ok("{\"circle\":\"-Infinity\"}")),
        ("shape", "{\"dark-green\": 1}", Err("arg: 'dark-green' is not a case of shape (circle, none_at_all, named, pair, opt, ch, f)")),
        ("shape", "{\"named\": \"\\ud800\"}", Err("arg.named: text with a lone surrogate is not UTF-8")),
        ("shape", "{\"f\": 0.1}", Ok("{\"f\":0.10000000149011612}")),
        ("shape", "{\"f\": 1e39}", Ok("{\"f\":\"Infinity\"}")),
        ("shape", "{\"circle\": 1e400}", Ok("{\"circle\":\"Infinity\"}")),
        ("shape", "{\"circle\":1,\"circle\":2}", Ok("{\"circle\":2.0}")),
        ("shape", "\"\\ud800\"", Err("arg: '\\ud800' is not a case of shape (circle, none_at_all, named, pair, opt, ch, f)")),
        ("shape", "{\"Circle\": 1}", Err("arg: 'Circle' is not a case of shape (circle, none_at_all, named, pair, opt, ch, f)")),
        ("num", "{\"0\": 5}", Ok("{\"0\":5}")),
        ("num", "{\"1\": \"s\"}", Ok("{\"1\":\"s\"}")),
        ("num", "\"0\"", Err("arg: expected {\"case\": payload} for num (0, 1)")),
        ("num", "{\"2\": 1}", Err("arg: '2' is not a case of num (0, 1)")),
        ("num", "{\"0\": \"x\"}", Err("arg.0: expected an integer (s32), got 'x'")),
        ("num", "{\"01\": 1}", Err("arg: '01' is not a case of num (0, 1)")),
        ("expected<s32, string>", "{\"ok\": 1}", Ok("{\"ok\":1}")),
        ("expected<s32, string>", "{\"err\": \"e\"}", Ok("{\"err\":\"e\"}")),
        ("expected<s32, string>", "\"ok\"", Err("arg: expected {\"case\": payload} for expected<s32, string> (ok, err)")),
        ("expected<s32, string>", "{\"Ok\": 1}", Err("arg: 'Ok' is not a case of expected<s32, string> (ok, err)")),
        ("expected<s32, string>", "{\"ok\": \"x\"}", Err("arg.ok: expected an integer (s32), got 'x'")),
        ("expected<s32, string>", "{\"err\": null}", Err("arg.err: expected text (string), got None")),
        ("expected<unit, string>", "{\"ok\": null}", Ok("{\"ok\":null}")),
        ("expected<unit, string>", "{\"ok\": 1}", Err("arg.ok: expected null (no value), got 1")),
        ("expected<unit, string>", "\"ok\"", Err("arg: expected {\"case\": payload} for expected<unit, string> (ok, err)")),
        ("outer", "{\"items\":[{\"circle\":1},{\"pair\":[1,\"x\"]}]}", Err("arg.items[1].pair[1]: expected an integer (s32), got 'x'")),
        ("outer", "{\"items\":[{\"circle\":1},\"none_at_all\",{\"opt\":\"z\"}],\"tags\":[\"write\"]}", Ok("{\"items\":[{\"circle\":1.0},{\"none_at_all\":null},{\"opt\":\"z\"}],\"tags\":[\"write\"]}")),
        ("outer", "{\"items\":[{\"pair\":[1, 2]}], \"tags\": [\"read\", \"nope\"]}", Err("arg.tags: 'nope' is not a flag of perms (read, write, exec_it)")),
        ("outer", "{\"tags\":[]}", Err("arg: record outer needs field 'items'")),
        ("outer", "{\"items\":[{\"opt\":{\"x\":1}}]}", Err("arg.items[0].opt: expected text (string), got {'x': 1}")),
        ("twins", "{\"a_b\":1}", Ok("{\"a_b\":1.0}")),
        ("twins", "{\"a-b\":1,\"a_b\":2}", Ok("{\"a_b\":2.0}")),
        ("twins", "{\"a_b\":1.5}", Err("arg.a_b: expected an integer (s32), got 1.5")),
    ];

    fn from_sql_cases() -> Vec<(&'static str, Arg, Result<Sql, &'static str>)> {
        vec![
        ("option<s32>", Arg::Null, Ok(Sql::Null)),
        ("option<s32>", Arg::Integer(5), Ok(Sql::Integer(5))),
        ("s32", Arg::Null, Err("argument a may not be NULL (its WIT type s32 is no option)")),
        ("s32", Arg::Integer(5), Ok(Sql::Integer(5))),
        ("s32", Arg::Integer(2147483648), Err("argument a: 2147483648 is out of range for s32 (-2147483648..2147483647)")),
        ("s32", Arg::Integer(-2147483648), Ok(Sql::Integer(-2147483648))),
        ("s32", Arg::Boolean(true), Err("argument a: expected an integer (s32), got True")),
        ("s32", Arg::Real(1.0), Err("argument a: expected an integer (s32), got 1.0")),
        ("s32", Arg::Text("5".into()), Err("argument a: expected an integer (s32), got '5'")),
        ("s32", Arg::Blob(vec![0, 39]), Err("argument a: expected an integer (s32), got b\"\\x00'\"")),
        ("s32", Arg::Blob(vec![97, 39, 34, 92, 9, 10, 13, 127, 128]), Err("argument a: expected an integer (s32), got b'a\\'\"\\\\\\t\\n\\r\\x7f\\x80'")),
        ("s32", Arg::Blob(vec![105, 116, 39, 115]), Err("argument a: expected an integer (s32), got b\"it's\"")),
        ("u64", Arg::Integer(-1), Err("argument a: -1 is out of range for u64 (0..18446744073709551615)")),
        ("u64", Arg::Integer(9223372036854775807), Ok(Sql::Integer(9223372036854775807))),
        ("u8", Arg::Integer(256), Err("argument a: 256 is out of range for u8 (0..255)")),
        ("u8", Arg::Integer(0), Ok(Sql::Integer(0))),
        ("float32", Arg::Real(0.1), Ok(Sql::Real(0.10000000149011612))),
        ("float32", Arg::Integer(5), Ok(Sql::Real(5.0))),
        ("float32", Arg::Real(1e+39), Ok(Sql::Real(f64::INFINITY))),
        ("float32", Arg::Real(-1e+39), Ok(Sql::Real(f64::NEG_INFINITY))),
        ("float32", Arg::Boolean(true), Err("argument a: expected a number (float32), got True")),
        ("float32", Arg::Text("NaN".into()), Err("argument a: expected a number (float32), got 'NaN'")),
        ("float32", Arg::Blob(vec![1]), Err("argument a: expected a number (float32), got b'\\x01'")),
        ("float32", Arg::Integer(9223372036854775807), Ok(Sql::Real(9.223372036854776e+18))),
        ("float64", Arg::Integer(9007199254740993), Ok(Sql::Real(9007199254740992.0))),
        ("float64", Arg::Real(0.1), Ok(Sql::Real(0.1))),
        ("float64", Arg::Boolean(false), Err("argument a: expected a number (float64), got False")),
        ("float64", Arg::Text("1.5".into()), Err("argument a: expected a number (float64), got '1.5'")),
        ("bool", Arg::Boolean(true), Ok(Sql::Boolean(true))),
        ("bool", Arg::Boolean(false), Ok(Sql::Boolean(false))),
        ("bool", Arg::Integer(0), Ok(Sql::Boolean(false))),
        ("bool", Arg::Integer(7), Ok(Sql::Boolean(true))),
        ("bool", Arg::Real(1.0), Err("argument a: expected a boolean, got 1.0")),
        ("bool", Arg::Text("x".into()), Err("argument a: expected a boolean, got 'x'")),
        ("bool", Arg::Blob(vec![]), Err("argument a: expected a boolean, got b''")),
        ("char", Arg::Text("a".into()), Ok(Sql::Text("a".to_owned()))),
        ("char", Arg::Text("ab".into()), Err("argument a: a char is exactly one Unicode scalar value, got 'ab'")),
        ("char", Arg::Text("".into()), Err("argument a: a char is exactly one Unicode scalar value, got ''")),
        ("char", Arg::Text("😀".into()), Ok(Sql::Text("😀".to_owned()))),
        ("char", Arg::Integer(5), Err("argument a: expected text (char), got 5")),
        ("char", Arg::Null, Err("argument a may not be NULL (its WIT type char is no option)")),
        ("char", Arg::Blob(vec![99]), Err("argument a: expected text (char), got b'c'")),
        ("string", Arg::Text("hi".into()), Ok(Sql::Text("hi".to_owned()))),
        ("string", Arg::Text("".into()), Ok(Sql::Text(String::new()))),
        ("string", Arg::Real(1.5), Err("argument a: expected text (string), got 1.5")),
        ("string", Arg::Blob(vec![120]), Err("argument a: expected text (string), got b'x'")),
        ("string", Arg::Boolean(true), Err("argument a: expected text (string), got True")),
        ("color", Arg::Text("red".into()), Ok(Sql::Text("red".to_owned()))),
        ("color", Arg::Text("dark-green".into()), Ok(Sql::Text("dark_green".to_owned()))),
        ("color", Arg::Text("dark_green".into()), Ok(Sql::Text("dark_green".to_owned()))),
        ("color", Arg::Text("Dark".into()), Err("argument a: 'Dark' is not a case of color (red, dark_green, blue)")),
        ("color", Arg::Integer(5), Err("argument a: expected a case name of color")),
        ("color", Arg::Null, Err("argument a may not be NULL (its WIT type color is no option)")),
        ("color", Arg::Blob(vec![114, 101, 100]), Err("argument a: expected a case name of color")),
        ("list<u8>", Arg::Blob(vec![1, 2]), Ok(Sql::Blob(vec![1, 2]))),
        ("list<u8>", Arg::Blob(vec![]), Ok(Sql::Blob(vec![]))),
        ("list<u8>", Arg::Text("x".into()), Err("argument a: expected a BLOB")),
        ("list<u8>", Arg::Integer(1), Err("argument a: expected a BLOB")),
        ("point", Arg::Text("{\"x\":1,\"y_coord\":2}".into()), Ok(Sql::Text("{\"x\":1,\"y_coord\":2.0,\"label\":null}".to_owned()))),
        ("point", Arg::Integer(5), Err("argument a: expected JSON text for point")),
        ("point", Arg::Text("{\"x\":".into()), Err("argument a: not valid JSON (Expecting value: line 1 column 6 (char 5))")),
        ("point", Arg::Text("{\"x\":1,\"y_coord\":2".into()), Err("argument a: not valid JSON (Expecting ',' delimiter: line 1 column 19 (char 18))")),
        ("point", Arg::Text("\"\\q\"".into()), Err("argument a: not valid JSON (Invalid \\escape: line 1 column 2 (char 1))")),
        ("point", Arg::Text("{\"x\":1,\"y_coord\":2}x".into()), Err("argument a: not valid JSON (Extra data: line 1 column 20 (char 19))")),
        ("point", Arg::Blob(vec![123, 125]), Err("argument a: expected JSON text for point")),
        ("point", Arg::Text("{\"x\":1}".into()), Err("argument a: record point needs field 'y_coord'")),
        ("point", Arg::Text("\u{feff}{}".into()), Err("argument a: not valid JSON (Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0))")),
        ("unit", Arg::Text("null".into()), Ok(Sql::Null)),
        ("unit", Arg::Text("1".into()), Err("argument a: expected null (no value), got 1")),
        ("unit", Arg::Text("".into()), Err("argument a: not valid JSON (Expecting value: line 1 column 1 (char 0))")),
        ("unit", Arg::Integer(5), Err("argument a: expected JSON text for unit")),
        ("list<s32>", Arg::Text("[1,2]".into()), Ok(Sql::Text("[1,2]".to_owned()))),
        ("list<s32>", Arg::Text("[1, 2.0]".into()), Ok(Sql::Text("[1,2]".to_owned()))),
        ("list<s32>", Arg::Text("{}".into()), Err("argument a: expected an array for list<s32>")),
        ("shape", Arg::Text("\"none-at-all\"".into()), Ok(Sql::Text("{\"none_at_all\":null}".to_owned()))),
        ("shape", Arg::Text("{\"f\": 3.4028235677973366e38}".into()), Ok(Sql::Text("{\"f\":\"Infinity\"}".to_owned()))),
        ("shape", Arg::Text("{\"circle\": \"Infinity\"}".into()), Ok(Sql::Text("{\"circle\":\"Infinity\"}".to_owned()))),
        ("option<list<s32>>", Arg::Null, Ok(Sql::Null)),
        ("option<list<s32>>", Arg::Text("[]".into()), Ok(Sql::Text("[]".to_owned()))),
        ("perms", Arg::Text("[\"read\", \"exec-it\", \"read\"]".into()), Ok(Sql::Text("[\"read\",\"exec_it\"]".to_owned()))),
        ]
    }

    #[test]
    fn json_values_convert_as_in_python() {
        for (key, input, expected) in FROM_JSON {
            let t = named(key);
            let data = json::parse(input).expect("valid JSON");
            let got = from_json(&t, &data, "arg").map(|v| json_text(&t, &v));
            assert_eq!(
                got.as_deref().map_err(String::as_str),
                *expected,
                "{key} {input}"
            );
        }
    }

    #[test]
    fn sql_values_convert_as_in_python() {
        for (key, arg, expected) in from_sql_cases() {
            let t = named(key);
            let got =
                from_sql(&t, &arg, "argument a").map(|v| to_sql(&t, v, "r").expect("in range"));
            assert_eq!(
                got.as_ref().map_err(String::as_str),
                expected.as_ref().map_err(|e| *e),
                "{key} {arg:?}"
            );
        }
    }

    #[test]
    fn numbers_beyond_every_type_are_worded_as_in_python() {
        let googol4 = format!("1{}", "0".repeat(400));
        for (key, input, kind) in [
            ("float32", googol4.clone(), "float32"),
            ("float64", googol4.clone(), "float64"),
            ("float64", format!("-{googol4}"), "float64"),
        ] {
            let data = json::parse(&input).expect("valid JSON");
            assert_eq!(
                from_json(&named(key), &data, "arg"),
                Err(format!("arg: {input} is too large for {kind}"))
            );
        }
        // int(1e300): the float's exact value.
        let e300 = "1000000000000000052504760255204420248704468581108159154915854115511802457988908195786371375080447864043704443832883878176942523235360430575644792184786706982848387200926575803737830233794788090059368953234970799945081119038967640880074652742780142494579258788820056842838115669472196386865459400540160";
        for (input, digits) in [("1e300", e300.to_owned()), ("-1e300", format!("-{e300}"))] {
            let data = json::parse(input).expect("valid JSON");
            assert_eq!(
                from_json(&named("u8"), &data, "arg"),
                Err(format!("arg: {digits} is out of range for u8 (0..255)"))
            );
        }
        let data = json::parse("1.7976931348623157e308").expect("valid JSON");
        let Err(message) = from_json(&named("s64"), &data, "arg") else {
            panic!("in range");
        };
        assert!(message.starts_with("arg: 179769313486231570814527423731704356798070567525844996598917476803157260780028538760589558632766878171540458953514382464234321326889464182768467546703537516986049910576551282076245490090389328944075868508455133942304583236903222948165808559332123348274797826204144723168738177180919299881250404026184124858368 is out of range"), "{message}");
        let ones = "1".repeat(4301);
        assert_eq!(
            from_sql(&named("point"), &Arg::Text(ones.into()), "argument a"),
            Err(
                "argument a: not valid JSON (Exceeds the limit (4300 digits) for integer string \
                 conversion: value has 4301 digits; use sys.set_int_max_str_digits() to increase \
                 the limit)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn json_nested_too_deeply_is_worded_as_python_words_its_recursion_error() {
        let deep = |open: &str| Arg::Text(open.repeat(2000).into());
        assert_eq!(
            from_sql(&named("point"), &deep("["), "argument a"),
            Err(
                "argument a: not valid JSON (maximum recursion depth exceeded while decoding a \
                 JSON array from a unicode string)"
                    .to_owned()
            )
        );
        assert_eq!(
            from_sql(&named("point"), &deep("{\"x\":"), "argument a"),
            Err(
                "argument a: not valid JSON (maximum recursion depth exceeded while decoding a \
                 JSON object from a unicode string)"
                    .to_owned()
            )
        );
    }

    /// Text that is not UTF-8 is the str with lone surrogates Python
    /// would have had (`"\ud800"` from its surrogatepass bytes, `"\udcff"`
    /// for a stray 0xFF).
    #[test]
    fn text_that_is_not_utf8_is_refused_as_a_lone_surrogate() {
        let cases: &[(&str, &[u8], &str)] = &[
            (
                "string",
                b"\xed\xa0\x80",
                "argument a: text with a lone surrogate is not UTF-8",
            ),
            (
                "string",
                b"a\xff",
                "argument a: text with a lone surrogate is not UTF-8",
            ),
            (
                "char",
                b"\xed\xa0\x80",
                "argument a: a char is exactly one Unicode scalar value, got '\\ud800'",
            ),
            (
                "char",
                b"a\xff",
                "argument a: a char is exactly one Unicode scalar value, got 'a\\udcff'",
            ),
            (
                "char",
                b"\xff",
                "argument a: a char is exactly one Unicode scalar value, got '\\udcff'",
            ),
            (
                "color",
                b"\xed\xa0\x80",
                "argument a: '\\ud800' is not a case of color (red, dark_green, blue)",
            ),
            (
                "color",
                b"a\xff",
                "argument a: 'a\\udcff' is not a case of color (red, dark_green, blue)",
            ),
            (
                "point",
                b"{\"x\":1,\"y_coord\":1,\"label\":\"\xff\"}",
                "argument a.label: text with a lone surrogate is not UTF-8",
            ),
            (
                "point",
                b"{\"x\":1,\"y_coord\":1,\"\xff\":\"a\"}",
                "argument a: record point has no field '\\udcff' (fields: x, y_coord, label)",
            ),
            (
                "point",
                b"\xff",
                "argument a: not valid JSON (Expecting value: line 1 column 1 (char 0))",
            ),
        ];
        for (key, bytes, expected) in cases {
            let got = from_sql(&named(key), &Arg::Text(bytes.to_vec()), "argument a");
            assert_eq!(got, Err((*expected).to_owned()), "{key} {bytes:?}");
        }
    }

    #[test]
    fn values_have_the_documented_form() {
        let parse = |key: &str, input: &str| {
            from_json(&named(key), &json::parse(input).expect("valid JSON"), "arg")
        };
        let unit = || Box::new(Val::Unit);
        assert_eq!(parse("option<s32>", "null"), Ok(Val::Case(0, unit())));
        assert_eq!(
            parse("option<s32>", "7"),
            Ok(Val::Case(1, Box::new(Val::Int(7))))
        );
        assert_eq!(parse("color", "\"blue\""), Ok(Val::Case(2, unit())));
        assert_eq!(parse("shape", "\"none-at-all\""), Ok(Val::Case(1, unit())));
        assert_eq!(
            parse("shape", "{\"named\": \"n\"}"),
            Ok(Val::Case(2, Box::new(text("n"))))
        );
        assert_eq!(
            parse("shape", "{\"f\": 0.1}"),
            Ok(Val::Case(6, Box::new(Val::F32(0.1))))
        );
        assert_eq!(parse("list<u8>", "[1, 2.0]"), Ok(Val::Bytes(vec![1, 2])));
        assert_eq!(
            parse("list<s32>", "[1, -2]"),
            Ok(Val::List(vec![Val::Int(1), Val::Int(-2)]))
        );
        assert_eq!(
            parse("point", "{\"y-coord\": 1, \"x\": 2}"),
            Ok(Val::Tuple(vec![
                Val::Int(2),
                Val::F64(1.0),
                Val::Case(0, unit())
            ]))
        );
        assert_eq!(
            parse("perms", "[\"exec-it\", \"read\"]"),
            Ok(Val::Flags(vec![0b101]))
        );
        assert_eq!(
            parse("wide", "[\"f0\", \"f31\", \"f32\", \"f39\"]"),
            Ok(Val::Flags(vec![0x8000_0001, 0x81]))
        );
        assert_eq!(parse("wide", "[]"), Ok(Val::Flags(vec![0, 0])));
        assert_eq!(parse("unit", "null"), Ok(Val::Unit));
        assert_eq!(parse("char", "\"é\""), Ok(Val::Char('é')));
        assert_eq!(
            from_sql(&named("list<u8>"), &Arg::Blob(vec![0, 255]), "a"),
            Ok(Val::Bytes(vec![0, 255]))
        );
        assert_eq!(
            from_sql(&named("float32"), &Arg::Real(0.1), "a"),
            Ok(Val::F32(0.1))
        );
        assert_eq!(
            from_sql(&named("float64"), &Arg::Integer(3), "a"),
            Ok(Val::F64(3.0))
        );
        assert_eq!(
            from_sql(&named("color"), &Arg::Text(b"blue".to_vec()), "a"),
            Ok(Val::Case(2, unit()))
        );
    }

    fn some(v: Val) -> Val {
        Val::Case(1, Box::new(v))
    }

    fn none() -> Val {
        Val::Case(0, Box::new(Val::Unit))
    }

    fn case(i: u32, v: Val) -> Val {
        Val::Case(i, Box::new(v))
    }

    #[test]
    fn results_convert_as_in_python() {
        let t = |s: &str| Ok(Sql::Text(s.to_owned()));
        let u64_max = i128::from(u64::MAX);
        let cases: Vec<(&str, Val, Result<Sql, &str>)> = vec![
            (
                "u64",
                Val::Int(u64_max),
                Err("f result: the u64 value 18446744073709551615 does not fit in BIGINT"),
            ),
            (
                "u64",
                Val::Int(1 << 63),
                Err("f result: the u64 value 9223372036854775808 does not fit in BIGINT"),
            ),
            ("u64", Val::Int((1 << 63) - 1), Ok(Sql::Integer(i64::MAX))),
            (
                "option<u64>",
                some(Val::Int(u64_max)),
                Err("f result: the u64 value 18446744073709551615 does not fit in BIGINT"),
            ),
            ("option<u64>", none(), Ok(Sql::Null)),
            ("color", case(1, Val::Unit), t("dark_green")),
            ("unit", Val::Unit, Ok(Sql::Null)),
            ("float32", Val::F32(0.1), Ok(Sql::Real(0.100_000_001_490_116_12))),
            ("string", text("s"), t("s")),
            ("char", Val::Char('c'), t("c")),
            ("list<u8>", Val::Bytes(vec![0, 255]), Ok(Sql::Blob(vec![0, 255]))),
            (
                "point",
                Val::Tuple(vec![Val::Int(1), Val::F64(2.0), none()]),
                t("{\"x\":1,\"y_coord\":2.0,\"label\":null}"),
            ),
            (
                "point",
                Val::Tuple(vec![
                    Val::Int(-5),
                    Val::F64(f64::NAN),
                    some(text("q\"\n\u{1}\u{1f}\u{7f}é😀\u{2028}")),
                ]),
                t("{\"x\":-5,\"y_coord\":\"NaN\",\"label\":\"q\\\"\\n\\u0001\\u001f\u{7f}é😀\u{2028}\"}"),
            ),
            ("shape", case(0, Val::F64(f64::INFINITY)), t("{\"circle\":\"Infinity\"}")),
            ("shape", case(0, Val::F64(f64::NEG_INFINITY)), t("{\"circle\":\"-Infinity\"}")),
            ("shape", case(1, Val::Unit), t("{\"none_at_all\":null}")),
            ("shape", case(4, none()), t("{\"opt\":null}")),
            ("shape", case(4, some(text("s"))), t("{\"opt\":\"s\"}")),
            ("shape", case(6, Val::F32(0.1)), t("{\"f\":0.10000000149011612}")),
            ("perms", Val::Flags(vec![0b101]), t("[\"read\",\"exec_it\"]")),
            (
                "wide",
                Val::Flags(vec![0x8000_0001, 0x81]),
                t("[\"f0\",\"f31\",\"f32\",\"f39\"]"),
            ),
            ("num", case(1, text("x")), t("{\"1\":\"x\"}")),
            ("expected<s32, string>", case(1, text("e")), t("{\"err\":\"e\"}")),
            ("expected<unit, string>", case(0, Val::Unit), t("{\"ok\":null}")),
            ("tuple<s32, string>", Val::Tuple(vec![Val::Int(1), text("a")]), t("[1,\"a\"]")),
            ("list<string>", Val::List(vec![text("a"), text("b\\")]), t("[\"a\",\"b\\\\\"]")),
            ("twins", Val::Tuple(vec![Val::Int(1), Val::F64(2.5)]), t("{\"a_b\":2.5}")),
            ("option<list<s32>>", some(Val::List(vec![Val::Int(1), Val::Int(2)])), t("[1,2]")),
            ("float64", Val::F64(1e16), Ok(Sql::Real(1e16))),
            ("bool", Val::Bool(true), Ok(Sql::Boolean(true))),
        ];
        for (key, value, expected) in cases {
            let got = to_sql(&named(key), value.clone(), "f result");
            assert_eq!(
                got.as_ref().map_err(String::as_str),
                expected.as_ref().map_err(|e| *e),
                "{key} {value:?}"
            );
        }
    }

    #[test]
    fn guest_errors_are_pythons() {
        let cases: Vec<(&str, Val, (&str, &str))> = vec![
            ("color", case(1, Val::Unit), ("dark_green", "dark_green")),
            ("shape", case(1, Val::Unit), ("none_at_all", "none_at_all")),
            ("shape", case(2, text("boom")), ("named", "boom")),
            ("shape", case(0, Val::F64(1.5)), ("circle", "1.5")),
            ("shape", case(4, some(text("x"))), ("opt", "x")),
            ("shape", case(4, none()), ("opt", "null")),
            ("shape", case(5, Val::Char('c')), ("ch", "c")),
            (
                "shape",
                case(3, Val::Tuple(vec![Val::Int(1), Val::Int(2)])),
                ("pair", "[1,2]"),
            ),
            ("shape", case(0, Val::F64(f64::NAN)), ("circle", "\"NaN\"")),
            (
                "unit",
                Val::Unit,
                ("error", "the function returned an error"),
            ),
            ("string", text("bad"), ("error", "bad")),
            ("char", Val::Char('c'), ("error", "c")),
            ("s32", Val::Int(5), ("error", "5")),
            ("option<string>", some(text("x")), ("error", "\"x\"")),
            ("option<string>", none(), ("error", "null")),
            (
                "point",
                Val::Tuple(vec![Val::Int(1), Val::F64(0.5), some(text("l"))]),
                ("error", "{\"x\":1,\"y_coord\":0.5,\"label\":\"l\"}"),
            ),
            ("num", case(1, text("x")), ("error", "{\"1\":\"x\"}")),
            (
                "expected<s32, string>",
                case(1, text("e")),
                ("error", "{\"err\":\"e\"}"),
            ),
            ("list<u8>", Val::Bytes(vec![1]), ("error", "[1]")),
        ];
        for (key, payload, (code, message)) in cases {
            let got = guest_error(&named(key), &payload);
            assert_eq!(
                (got.0.as_str(), got.1.as_str()),
                (code, message),
                "{key} {payload:?}"
            );
        }
    }

    #[test]
    fn byte_reprs_are_pythons() {
        // repr() of each in Python.
        assert_eq!(bytes_repr(b""), "b''");
        assert_eq!(bytes_repr(b"it's"), "b\"it's\"");
        assert_eq!(bytes_repr(b"'\""), "b'\\'\"'");
        assert_eq!(
            bytes_repr(b"\x00\x1f\x7f\x80\xff\\"),
            "b'\\x00\\x1f\\x7f\\x80\\xff\\\\'"
        );
    }
}
