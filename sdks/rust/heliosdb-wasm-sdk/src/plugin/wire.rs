//! SQL values in the JSON form of docs/plugins.md §3, including the reals
//! JSON has no numbers for.
//!
//! SQLite has infinite REALs, and the engine writes them as Python's `json`
//! does: the bare tokens `Infinity` and `-Infinity`, which serde_json
//! refuses. A request has them quoted before parsing ([`quote_non_finite`])
//! and a verdict has them unquoted after serializing
//! ([`unquote_non_finite`]). NaN, which SQLite does not have (it is NULL
//! there), leaves as `"null"`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::types::Value;

// Serialized in place of an infinite real, then replaced by the bare token.
// Only `{"real":"<marker>"}` is replaced, which a text value cannot produce:
// its quotes would be escaped.
const POSITIVE: &str = "\u{0}+Infinity";
const NEGATIVE: &str = "\u{0}-Infinity";
const POSITIVE_JSON: &str = r#"{"real":"\u0000+Infinity"}"#;
const NEGATIVE_JSON: &str = r#"{"real":"\u0000-Infinity"}"#;

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit_variant("value", 0, "null"),
            Value::Integer(i) => s.serialize_newtype_variant("value", 1, "integer", i),
            Value::Real(f) if f.is_nan() => s.serialize_unit_variant("value", 0, "null"),
            Value::Real(f) if f.is_infinite() => {
                let marker = if *f > 0.0 { POSITIVE } else { NEGATIVE };
                s.serialize_newtype_variant("value", 2, "real", marker)
            }
            Value::Real(f) => s.serialize_newtype_variant("value", 2, "real", f),
            Value::Text(t) => s.serialize_newtype_variant("value", 3, "text", t),
            Value::Blob(b) => s.serialize_newtype_variant("value", 4, "blob", b),
            Value::Boolean(b) => s.serialize_newtype_variant("value", 5, "boolean", b),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case")]
        enum Wire {
            Null,
            Integer(i64),
            Real(Real),
            Text(String),
            Blob(Vec<u8>),
            Boolean(bool),
        }
        Ok(match Wire::deserialize(d)? {
            Wire::Null => Value::Null,
            Wire::Integer(i) => Value::Integer(i),
            Wire::Real(Real(f)) => Value::Real(f),
            Wire::Text(t) => Value::Text(t),
            Wire::Blob(b) => Value::Blob(b),
            Wire::Boolean(b) => Value::Boolean(b),
        })
    }
}

/// A real: a JSON number, or the name of a non-finite one.
struct Real(f64);

impl<'de> Deserialize<'de> for Real {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RealVisitor;
        impl Visitor<'_> for RealVisitor {
            type Value = Real;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, Infinity, -Infinity or NaN")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Real, E> {
                Ok(Real(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Real, E> {
                Ok(Real(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Real, E> {
                Ok(Real(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Real, E> {
                match v {
                    "Infinity" => Ok(Real(f64::INFINITY)),
                    "-Infinity" => Ok(Real(f64::NEG_INFINITY)),
                    "NaN" => Ok(Real(f64::NAN)),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
        }
        d.deserialize_any(RealVisitor)
    }
}

/// `text` with the bare tokens `Infinity`, `-Infinity` and `NaN` outside
/// strings quoted, so that serde_json accepts it.
pub(crate) fn quote_non_finite(text: &str) -> Cow<'_, str> {
    if !text.contains("Infinity") && !text.contains("NaN") {
        return Cow::Borrowed(text);
    }
    // Byte-wise is safe: every byte of a multi-byte UTF-8 character is
    // >= 0x80, so none is mistaken for a quote, backslash or token.
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 8);
    let (mut in_string, mut escaped) = (false, false);
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let token =
            ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| bytes[i..].starts_with(t.as_bytes()));
        match token {
            Some(token) => {
                out.push_str(&text[start..i]);
                out.push('"');
                out.push_str(token);
                out.push('"');
                i += token.len();
                start = i;
            }
            None => i += 1,
        }
    }
    out.push_str(&text[start..]);
    Cow::Owned(out)
}

/// Serialized JSON with the infinite-real markers turned back into the bare
/// tokens the engine reads.
pub(crate) fn unquote_non_finite(json: String) -> String {
    if !json.contains(r"\u0000") {
        return json;
    }
    json.replace(POSITIVE_JSON, r#"{"real":Infinity}"#).replace(NEGATIVE_JSON, r#"{"real":-Infinity}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_tokens_are_quoted_outside_strings_only() {
        let text = r#"[{"real":Infinity},{"real":-Infinity},{"real":NaN},{"text":"Infinity \"NaN\" é"}]"#;
        assert_eq!(
            quote_non_finite(text),
            r#"[{"real":"Infinity"},{"real":"-Infinity"},{"real":"NaN"},{"text":"Infinity \"NaN\" é"}]"#
        );
        assert!(matches!(quote_non_finite(r#"{"real":1.5}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn values_round_trip_through_the_engines_json() {
        let text = r#"["null",{"integer":-9223372036854775808},{"real":Infinity},{"real":-Infinity},{"real":1e-300},{"text":"a\u0000b"},{"blob":[0,255]},{"boolean":true}]"#;
        let values: Vec<Value> = serde_json::from_str(&quote_non_finite(text)).unwrap();
        assert_eq!(values[1], Value::Integer(i64::MIN));
        assert_eq!(values[2], Value::Real(f64::INFINITY));
        assert_eq!(values[3], Value::Real(f64::NEG_INFINITY));
        assert_eq!(values[5], Value::Text("a\0b".into()));
        assert_eq!(unquote_non_finite(serde_json::to_string(&values).unwrap()), text);
        let text_that_looks_like_a_marker = vec![Value::Text(POSITIVE.into())];
        let json = unquote_non_finite(serde_json::to_string(&text_that_looks_like_a_marker).unwrap());
        assert_eq!(json, r#"[{"text":"\u0000+Infinity"}]"#);
        assert_eq!(serde_json::to_string(&Value::Real(f64::NAN)).unwrap(), r#""null""#);
    }
}
