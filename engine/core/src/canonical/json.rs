//! JSON as Python's `json` module reads and writes it, and Python's `repr()`
//! of what it reads: `singlestore/values.py` parsed arguments with
//! `json.loads`, wrote results with `json.dumps` and quoted bad values with
//! `{value!r}`, and its messages (and the tests that check them) carry
//! those texts verbatim.
//!
//! - [`parse`] is `json.loads` of CPython 3.11's C scanner: integers of any
//!   size, `NaN`/`Infinity`/`-Infinity`, lone surrogates from `\uD800`
//!   escapes, duplicate keys as a dict keeps them, and as its error the text
//!   of the `JSONDecodeError` (or `ValueError`, `RecursionError`) it raises.
//! - [`py_repr`] and [`float_repr`] are `repr()`; [`write_str`] and
//!   [`float_repr`] are what `json.dumps(ensure_ascii=False)` writes.

use std::collections::hash_map::{Entry, HashMap};
use std::fmt::{self, Write as _};

/// How deeply arrays and objects may nest. CPython has no limit of its
/// own: its scanner recurses until the interpreter's recursion limit (1000
/// frames, minus those of its callers) raises `RecursionError`.
pub const MAX_DEPTH: usize = 1000;

/// `sys.get_int_max_str_digits()`'s default: a longer integer literal is a
/// `ValueError` (CVE-2020-10735).
const MAX_INT_DIGITS: usize = 4300;

/// A parsed JSON document, as the Python objects `json.loads` makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(JsonInt),
    Float(f64),
    Str(JsonStr),
    Array(Vec<Json>),
    /// A dict: each key once, where it was first given, with the last value
    /// given for it.
    Object(Vec<(JsonStr, Json)>),
}

/// A Python `int`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonInt {
    /// Every WIT integer type's values fit.
    Small(i128),
    /// Its decimal digits (and sign): beyond every WIT integer type, kept
    /// for messages and for `float()`.
    Big(Box<str>),
}

impl JsonInt {
    /// `float(n)`, correctly rounded; `None` where Python raises
    /// `OverflowError` (the rounded value is beyond `f64::MAX`).
    pub fn to_f64(&self) -> Option<f64> {
        let x = match self {
            #[allow(clippy::cast_precision_loss)] // round to nearest, as Python
            Self::Small(n) => *n as f64,
            Self::Big(digits) => digits.parse().ok()?,
        };
        x.is_finite().then_some(x)
    }
}

impl fmt::Display for JsonInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Small(n) => write!(f, "{n}"),
            Self::Big(digits) => f.write_str(digits),
        }
    }
}

/// A Python `str`. Unlike a Rust string it may hold lone surrogates, which
/// `\uD800` escapes make and `values.py` refuses in its own words.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JsonStr {
    Text(String),
    /// Its code points, at least one of them a surrogate (U+D800..U+DFFF),
    /// so that the two forms never hold the same string.
    Lone(Vec<u32>),
}

impl JsonStr {
    /// The text, if it has no lone surrogate.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            Self::Lone(_) => None,
        }
    }

    /// The string Python holds for text whose bytes may not be UTF-8: a
    /// surrogate encoded as UTF-8 (as `"surrogatepass"` writes one, and so
    /// the core hands a Python lone surrogate to SQLite) is that surrogate,
    /// any other byte that is not UTF-8 becomes U+DC80..U+DCFF (as
    /// `"surrogateescape"` decodes it).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut s = Self::Text(String::new());
        s.push_bytes(bytes);
        s
    }

    /// Its code points, in order.
    pub fn code_points(&self) -> impl Iterator<Item = u32> + '_ {
        let (text, lone) = match self {
            Self::Text(t) => (Some(t.chars().map(u32::from)), None),
            Self::Lone(v) => (None, Some(v.iter().copied())),
        };
        text.into_iter().flatten().chain(lone.into_iter().flatten())
    }

    /// Python's `repr()` of it.
    pub fn repr(&self) -> String {
        let mut out = String::new();
        self.repr_into(&mut out);
        out
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        decode(bytes, |piece| match piece {
            Piece::Text(text) => self.push_str(text),
            Piece::Lone(c) => self.push(c),
        });
    }

    fn push_str(&mut self, text: &str) {
        match self {
            Self::Text(t) => t.push_str(text),
            Self::Lone(v) => v.extend(text.chars().map(u32::from)),
        }
    }

    fn push(&mut self, c: u32) {
        match (self, char::from_u32(c)) {
            (Self::Text(t), Some(ch)) => t.push(ch),
            (Self::Lone(v), _) => v.push(c),
            (this @ Self::Text(_), None) => {
                let mut v: Vec<u32> = this.code_points().collect();
                v.push(c);
                *this = Self::Lone(v);
            }
        }
    }

    /// `unicode_repr` of CPython: the quote it picks, its escapes.
    fn repr_into(&self, out: &mut String) {
        let has = |q: char| self.code_points().any(|c| c == u32::from(q));
        let quote = if has('\'') && !has('"') { '"' } else { '\'' };
        out.push(quote);
        for c in self.code_points() {
            match char::from_u32(c) {
                Some(ch) if ch == quote || ch == '\\' => {
                    out.push('\\');
                    out.push(ch);
                }
                Some('\t') => out.push_str("\\t"),
                Some('\n') => out.push_str("\\n"),
                Some('\r') => out.push_str("\\r"),
                Some(ch) if ch.is_ascii_control() => push_hex(out, 'x', c, 2),
                Some(ch) if ch.is_ascii() || printable(c) => out.push(ch),
                _ if c <= 0xFF => push_hex(out, 'x', c, 2),
                _ if c <= 0xFFFF => push_hex(out, 'u', c, 4),
                _ => push_hex(out, 'U', c, 8),
            }
        }
        out.push(quote);
    }
}

/// Python's `repr()` of a `str`.
pub fn str_repr(text: &str) -> String {
    JsonStr::Text(text.to_owned()).repr()
}

fn push_hex(out: &mut String, kind: char, c: u32, width: usize) {
    let _ = write!(out, "\\{kind}{c:0width$x}"); // a String takes every write
}

/// The non-ASCII code points `str.isprintable()` of Python 3.11 (Unicode
/// 14.0) refuses, other than unassigned ones: separators (Zs, Zl, Zp),
/// controls (Cc), formats (Cf), surrogates (Cs) and private use (Co).
/// Of the unassigned code points (Cn), which Python also escapes, only the
/// noncharacters are (U+FDD0..U+FDEF and the last two of each plane): the
/// others change with every Unicode version, and print as they are here.
const NON_PRINTABLE: [(u32, u32); 27] = [
    (0x0080, 0x00A0),
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x1680, 0x1680),
    (0x180E, 0x180E),
    (0x2000, 0x200F),
    (0x2028, 0x202F),
    (0x205F, 0x2064),
    (0x2066, 0x206F),
    (0x3000, 0x3000),
    (0xD800, 0xF8FF),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    (0xF0000, 0xFFFFD),
    (0x100000, 0x10FFFD),
];

fn printable(c: u32) -> bool {
    if c & 0xFFFE == 0xFFFE || (0xFDD0..=0xFDEF).contains(&c) {
        return false;
    }
    let i = NON_PRINTABLE.partition_point(|&(_, hi)| hi < c);
    NON_PRINTABLE.get(i).is_none_or(|&(lo, _)| c < lo)
}

/// Python's `repr()` of a parsed value (`None`, `True`, `[1, 'a']`,
/// `{'k': 1.5}`).
pub fn py_repr(value: &Json) -> String {
    let mut out = String::new();
    repr_into(&mut out, value);
    out
}

fn repr_into(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("None"),
        Json::Bool(true) => out.push_str("True"),
        Json::Bool(false) => out.push_str("False"),
        Json::Int(n) => out.push_str(&n.to_string()),
        Json::Float(x) => out.push_str(&float_repr(*x)),
        Json::Str(s) => s.repr_into(out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr_into(out, item);
            }
            out.push(']');
        }
        Json::Object(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                key.repr_into(out);
                out.push_str(": ");
                repr_into(out, item);
            }
            out.push('}');
        }
    }
}

/// `float.__repr__`, which `json.dumps` writes too: the shortest digits
/// that read back as `x`, in fixed notation for decimal exponents -4..16
/// (`0.0001`, `1e+16`, `1.5e-05`, `1.0`), and `nan`, `inf`, `-inf`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // Rust's `{:e}` has as few digits as Python's, but where `x` is halfway
    // between two such strings it may not take the even one, as Python
    // does: that is the correctly rounded one of the length, if it reads
    // back as `x`.
    let shortest = format!("{x:e}");
    let length = shortest
        .split('e')
        .next()
        .map_or(1, |m| m.bytes().filter(u8::is_ascii_digit).count());
    let rounded = format!("{x:.prec$e}", prec = length - 1);
    let reads_back = rounded
        .parse::<f64>()
        .is_ok_and(|y| y.to_bits() == x.to_bits());
    let sci = if reads_back { rounded } else { shortest };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits = mantissa.replace('.', "");
    let mut out = sign.to_owned();
    if (-4..16).contains(&exp) {
        match usize::try_from(exp + 1) {
            Err(_) | Ok(0) => {
                out.push_str("0.");
                out.push_str(&"0".repeat(exp.unsigned_abs() as usize - 1));
                out.push_str(&digits);
            }
            Ok(point) if point >= digits.len() => {
                out.push_str(&digits);
                out.push_str(&"0".repeat(point - digits.len()));
                out.push_str(".0");
            }
            Ok(point) => {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let exp_sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{exp_sign}{:02}", exp.unsigned_abs());
    }
    out
}

/// `text` as `json.dumps(ensure_ascii=False)` writes a string: quoted, with
/// `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f` and `\u00XX` for the other
/// controls below U+0020; everything else as it is.
pub fn write_str(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ch if ch < ' ' => push_hex(out, 'u', u32::from(ch), 4),
            ch => out.push(ch),
        }
    }
    out.push('"');
}

/// A part of [`JsonStr::from_bytes`]'s string.
enum Piece<'a> {
    Text(&'a str),
    /// A surrogate, for bytes that are not UTF-8.
    Lone(u32),
}

/// `bytes` as the pieces of [`JsonStr::from_bytes`]'s string, in order.
fn decode(mut bytes: &[u8], mut f: impl FnMut(Piece<'_>)) {
    loop {
        if let [0xED, b @ 0xA0..=0xBF, c @ 0x80..=0xBF, rest @ ..] = bytes {
            f(Piece::Lone(
                0xD000 | u32::from(b & 0x3F) << 6 | u32::from(c & 0x3F),
            ));
            bytes = rest;
            continue;
        }
        let Some(chunk) = bytes.utf8_chunks().next() else {
            return;
        };
        let valid = chunk.valid();
        if valid.is_empty() {
            // One byte at a time: the next may start an encoded surrogate.
            f(Piece::Lone(0xDC00 | u32::from(bytes[0])));
            bytes = &bytes[1..];
        } else {
            f(Piece::Text(valid));
            bytes = &bytes[valid.len()..];
        }
    }
}

/// How many code points Python's str of `bytes` has.
fn py_len(bytes: &[u8]) -> usize {
    let mut n = 0;
    decode(bytes, |piece| {
        n += match piece {
            Piece::Text(text) => text.chars().count(),
            Piece::Lone(_) => 1,
        }
    });
    n
}

/// `json.loads(text)`; the error is `str()` of the exception Python raises.
///
/// # Errors
///
/// `JSONDecodeError`'s `"{msg}: line {l} column {c} (char {pos})"` (in code
/// points), the `ValueError` of an integer of over 4300 digits, or the
/// `RecursionError` of nesting deeper than [`MAX_DEPTH`].
pub fn parse(text: &str) -> Result<Json, String> {
    parse_bytes(text.as_bytes())
}

/// [`parse`] of text whose bytes may not be UTF-8, read as
/// [`JsonStr::from_bytes`] reads them.
///
/// # Errors
///
/// As [`parse`].
pub fn parse_bytes(text: &[u8]) -> Result<Json, String> {
    let mut p = Parser { s: text, i: 0 };
    if text.starts_with("\u{feff}".as_bytes()) {
        return Err(p.error("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0));
    }
    p.skip_ws();
    let value = p.value()?;
    p.skip_ws();
    if p.i < text.len() {
        return Err(p.error("Extra data", p.i));
    }
    Ok(value)
}

/// A container being read, with what it has so far.
enum Frame {
    Array(Vec<Json>),
    /// Its entries and the key whose value comes next.
    Object(Vec<(JsonStr, Json)>, JsonStr),
}

/// The scanner, on bytes: every position it stops at (and reports) is
/// between code points, as everything it matches outside strings is ASCII.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// `JSONDecodeError(msg, doc, at)`'s text, `at` a byte offset.
    fn error(&self, msg: &str, at: usize) -> String {
        let before = &self.s[..at];
        let pos = py_len(before);
        let (mut lineno, mut line_start) = (1, 0);
        for (i, &b) in before.iter().enumerate() {
            if b == b'\n' {
                lineno += 1;
                line_start = i + 1;
            }
        }
        let colno = py_len(&before[line_start..]) + 1;
        format!("{msg}: line {lineno} column {colno} (char {pos})")
    }

    /// `scan_once` at `self.i`, without recursing: the containers being
    /// read are on `stack`.
    fn value(&mut self) -> Result<Json, String> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            let mut value = match self.peek() {
                Some(b'"') => Json::Str(self.string()?),
                Some(open @ (b'[' | b'{')) => {
                    if stack.len() == MAX_DEPTH {
                        let what = if open == b'[' { "array" } else { "object" };
                        return Err(format!(
                            "maximum recursion depth exceeded while decoding a JSON {what} \
                             from a unicode string"
                        ));
                    }
                    self.i += 1;
                    self.skip_ws();
                    if open == b'[' {
                        if self.peek() != Some(b']') {
                            stack.push(Frame::Array(Vec::new()));
                            continue;
                        }
                        self.i += 1;
                        Json::Array(Vec::new())
                    } else {
                        if self.peek() != Some(b'}') {
                            let key = self.key()?;
                            stack.push(Frame::Object(Vec::new(), key));
                            continue;
                        }
                        self.i += 1;
                        Json::Object(Vec::new())
                    }
                }
                _ => self.scalar()?,
            };
            // The value ends the containers it closes; the first that goes
            // on waits for its next value.
            loop {
                let Some(frame) = stack.pop() else {
                    return Ok(value);
                };
                self.skip_ws();
                match frame {
                    Frame::Array(mut items) => {
                        items.push(value);
                        match self.peek() {
                            Some(b']') => {
                                self.i += 1;
                                value = Json::Array(items);
                            }
                            Some(b',') => {
                                self.i += 1;
                                self.skip_ws();
                                stack.push(Frame::Array(items));
                                break;
                            }
                            _ => return Err(self.error("Expecting ',' delimiter", self.i)),
                        }
                    }
                    Frame::Object(mut entries, key) => {
                        entries.push((key, value));
                        match self.peek() {
                            Some(b'}') => {
                                self.i += 1;
                                value = Json::Object(dict(entries));
                            }
                            Some(b',') => {
                                self.i += 1;
                                self.skip_ws();
                                let key = self.key()?;
                                stack.push(Frame::Object(entries, key));
                                break;
                            }
                            _ => return Err(self.error("Expecting ',' delimiter", self.i)),
                        }
                    }
                }
            }
        }
    }

    /// An object's key, its `:` and the whitespace up to its value.
    fn key(&mut self) -> Result<JsonStr, String> {
        if self.peek() != Some(b'"') {
            return Err(self.error("Expecting property name enclosed in double quotes", self.i));
        }
        let key = self.string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.error("Expecting ':' delimiter", self.i));
        }
        self.i += 1;
        self.skip_ws();
        Ok(key)
    }

    /// A named constant or a number (`_match_number_unicode`).
    fn scalar(&mut self) -> Result<Json, String> {
        const WORDS: [(&str, Json); 3] = [
            ("null", Json::Null),
            ("true", Json::Bool(true)),
            ("false", Json::Bool(false)),
        ];
        const NON_FINITE: [(&str, f64); 3] = [
            ("NaN", f64::NAN),
            ("Infinity", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
        ];
        let rest = &self.s[self.i..];
        for (word, value) in WORDS {
            if rest.starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(value);
            }
        }
        for (word, value) in NON_FINITE {
            if rest.starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(Json::Float(value));
            }
        }
        let s = self.s;
        let digit = |i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
        let start = self.i;
        let mut i = start + usize::from(s.get(start) == Some(&b'-'));
        match s.get(i) {
            Some(b'1'..=b'9') => {
                i += 1;
                while digit(i) {
                    i += 1;
                }
            }
            Some(b'0') => i += 1,
            _ => return Err(self.error("Expecting value", start)),
        }
        let mut float = false;
        if s.get(i) == Some(&b'.') && digit(i + 1) {
            float = true;
            i += 2;
            while digit(i) {
                i += 1;
            }
        }
        // An exponent needs a character after the `e` (and after its sign)
        // and a digit last; otherwise the number ends before the `e`.
        if matches!(s.get(i), Some(b'e' | b'E')) && i + 1 < s.len() {
            let e = i;
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) && i + 1 < s.len() {
                i += 1;
            }
            while digit(i) {
                i += 1;
            }
            if digit(i - 1) {
                float = true;
            } else {
                i = e;
            }
        }
        let literal = String::from_utf8_lossy(&s[start..i]); // ASCII
        self.i = i;
        if float {
            // Rust reads every literal of this grammar, correctly rounded
            // as Python's float() does (1e400 is inf).
            return literal
                .parse()
                .map(Json::Float)
                .map_err(|_| self.error("Expecting value", start));
        }
        let digits = literal.trim_start_matches('-').len();
        if digits > MAX_INT_DIGITS {
            return Err(format!(
                "Exceeds the limit ({MAX_INT_DIGITS} digits) for integer string conversion: \
                 value has {digits} digits; use sys.set_int_max_str_digits() to increase the limit"
            ));
        }
        Ok(Json::Int(match literal.parse() {
            Ok(n) => JsonInt::Small(n),
            Err(_) => JsonInt::Big(literal.into()),
        }))
    }

    /// `scanstring_unicode` of the string whose quote is at `self.i`.
    fn string(&mut self) -> Result<JsonStr, String> {
        let s = self.s;
        let begin = self.i;
        let unterminated = |p: &Self| p.error("Unterminated string starting at", begin);
        let mut out = JsonStr::Text(String::new());
        let mut end = begin + 1;
        loop {
            let mut next = end;
            while let Some(&b) = s.get(next) {
                if b == b'"' || b == b'\\' {
                    break;
                }
                if b < 0x20 {
                    return Err(self.error("Invalid control character at", next));
                }
                next += 1;
            }
            let Some(&stop) = s.get(next) else {
                return Err(unterminated(self));
            };
            out.push_bytes(&s[end..next]);
            next += 1;
            if stop == b'"' {
                self.i = next;
                return Ok(out);
            }
            let Some(&escape) = s.get(next) else {
                return Err(unterminated(self));
            };
            if escape != b'u' {
                end = next + 1;
                out.push(u32::from(match escape {
                    b'"' | b'\\' | b'/' => escape,
                    b'b' => 0x08,
                    b'f' => 0x0C,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    _ => return Err(self.error("Invalid \\escape", next - 1)),
                }));
                continue;
            }
            next += 1;
            end = next + 4;
            // CPython wants a character after the four digits (the closing
            // quote, at least) before it reads them.
            let Some(mut c) = hex4(s, next).filter(|_| end < s.len()) else {
                return Err(self.error("Invalid \\uXXXX escape", next - 1));
            };
            if (0xD800..0xDC00).contains(&c)
                && end + 6 < s.len()
                && s[end] == b'\\'
                && s[end + 1] == b'u'
            {
                let Some(low) = hex4(s, end + 2) else {
                    return Err(self.error("Invalid \\uXXXX escape", end + 1));
                };
                // Anything else after a high surrogate is read on its own.
                if (0xDC00..0xE000).contains(&low) {
                    c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
                    end += 6;
                }
            }
            out.push(c);
        }
    }
}

fn hex4(s: &[u8], at: usize) -> Option<u32> {
    s.get(at..at + 4)?
        .iter()
        .try_fold(0, |n, &b| Some(n << 4 | char::from(b).to_digit(16)?))
}

/// An object's entries as a dict keeps them: a repeated key stays where it
/// first was, with its last value.
fn dict(entries: Vec<(JsonStr, Json)>) -> Vec<(JsonStr, Json)> {
    if entries.len() < 2 {
        return entries;
    }
    let mut first: HashMap<&JsonStr, usize> = HashMap::with_capacity(entries.len());
    let repeats: Vec<Option<usize>> = entries
        .iter()
        .enumerate()
        .map(|(i, (key, _))| match first.entry(key) {
            Entry::Occupied(e) => Some(*e.get()),
            Entry::Vacant(e) => {
                e.insert(i);
                None
            }
        })
        .collect();
    if repeats.iter().all(Option::is_none) {
        return entries;
    }
    let mut kept: Vec<(JsonStr, Json)> = Vec::with_capacity(entries.len());
    let mut slot = vec![0; entries.len()];
    for (i, (entry, repeat)) in entries.into_iter().zip(repeats).enumerate() {
        if let Some(j) = repeat {
            kept[slot[j]].1 = entry.1;
        } else {
            slot[i] = kept.len();
            kept.push(entry);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(n: i128) -> Json {
        Json::Int(JsonInt::Small(n))
    }

    fn text(t: &str) -> Json {
        Json::Str(JsonStr::Text(t.to_owned()))
    }

    /// `str(exc)` of `json.loads(input)` in CPython 3.11.7.
    const BAD: &[(&str, &str)] = &[
        ("", "Expecting value: line 1 column 1 (char 0)"),
        (" ", "Expecting value: line 1 column 2 (char 1)"),
        ("\n\n  ", "Expecting value: line 3 column 3 (char 4)"),
        ("x", "Expecting value: line 1 column 1 (char 0)"),
        ("-", "Expecting value: line 1 column 1 (char 0)"),
        ("-a", "Expecting value: line 1 column 1 (char 0)"),
        ("--1", "Expecting value: line 1 column 1 (char 0)"),
        ("+1", "Expecting value: line 1 column 1 (char 0)"),
        (".5", "Expecting value: line 1 column 1 (char 0)"),
        ("01", "Extra data: line 1 column 2 (char 1)"),
        ("1.", "Extra data: line 1 column 2 (char 1)"),
        ("1.e5", "Extra data: line 1 column 2 (char 1)"),
        ("1e", "Extra data: line 1 column 2 (char 1)"),
        ("1e+", "Extra data: line 1 column 2 (char 1)"),
        ("1E-", "Extra data: line 1 column 2 (char 1)"),
        ("1ex", "Extra data: line 1 column 2 (char 1)"),
        ("1.5.5", "Extra data: line 1 column 4 (char 3)"),
        ("[", "Expecting value: line 1 column 2 (char 1)"),
        ("[1", "Expecting ',' delimiter: line 1 column 3 (char 2)"),
        ("[1,", "Expecting value: line 1 column 4 (char 3)"),
        ("[1,]", "Expecting value: line 1 column 4 (char 3)"),
        ("[,]", "Expecting value: line 1 column 2 (char 1)"),
        ("[1 2]", "Expecting ',' delimiter: line 1 column 4 (char 3)"),
        ("]", "Expecting value: line 1 column 1 (char 0)"),
        (
            "{",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (
            "{\"a\"",
            "Expecting ':' delimiter: line 1 column 5 (char 4)",
        ),
        ("{\"a\":", "Expecting value: line 1 column 6 (char 5)"),
        (
            "{\"a\":1",
            "Expecting ',' delimiter: line 1 column 7 (char 6)",
        ),
        (
            "{\"a\":1,",
            "Expecting property name enclosed in double quotes: line 1 column 8 (char 7)",
        ),
        (
            "{\"a\":1,}",
            "Expecting property name enclosed in double quotes: line 1 column 8 (char 7)",
        ),
        (
            "{a:1}",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (
            "{'a':1}",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (
            "{\"a\" 1}",
            "Expecting ':' delimiter: line 1 column 6 (char 5)",
        ),
        (
            "{\"a\":1 \"b\":2}",
            "Expecting ',' delimiter: line 1 column 8 (char 7)",
        ),
        ("}", "Expecting value: line 1 column 1 (char 0)"),
        ("{\"a\":}", "Expecting value: line 1 column 6 (char 5)"),
        (
            "\"",
            "Unterminated string starting at: line 1 column 1 (char 0)",
        ),
        (
            "\"abc",
            "Unterminated string starting at: line 1 column 1 (char 0)",
        ),
        (
            "\"abc\\",
            "Unterminated string starting at: line 1 column 1 (char 0)",
        ),
        (
            "\"a\nb\"",
            "Invalid control character at: line 1 column 3 (char 2)",
        ),
        (
            "\"a\tb\"",
            "Invalid control character at: line 1 column 3 (char 2)",
        ),
        (
            "\"\u{1f}\"",
            "Invalid control character at: line 1 column 2 (char 1)",
        ),
        (
            "\"\0\"",
            "Invalid control character at: line 1 column 2 (char 1)",
        ),
        ("\"\\x\"", "Invalid \\escape: line 1 column 2 (char 1)"),
        (
            "\"\\u\"",
            "Invalid \\uXXXX escape: line 1 column 3 (char 2)",
        ),
        (
            "\"\\u12\"",
            "Invalid \\uXXXX escape: line 1 column 3 (char 2)",
        ),
        (
            "\"\\u123\"",
            "Invalid \\uXXXX escape: line 1 column 3 (char 2)",
        ),
        (
            "\"\\u1234",
            "Invalid \\uXXXX escape: line 1 column 3 (char 2)",
        ),
        (
            "\"\\u00",
            "Invalid \\uXXXX escape: line 1 column 3 (char 2)",
        ),
        (
            "\"\\u12g4\"",
            "Invalid \\uXXXX escape: line 1 column 3 (char 2)",
        ),
        (
            "\"\\ud800\\u12\"",
            "Invalid \\uXXXX escape: line 1 column 9 (char 8)",
        ),
        (
            "\"\\ud800\\uzzzz\"",
            "Invalid \\uXXXX escape: line 1 column 9 (char 8)",
        ),
        (
            "\"\\",
            "Unterminated string starting at: line 1 column 1 (char 0)",
        ),
        ("nul", "Expecting value: line 1 column 1 (char 0)"),
        ("nulll", "Extra data: line 1 column 5 (char 4)"),
        ("tru", "Expecting value: line 1 column 1 (char 0)"),
        ("True", "Expecting value: line 1 column 1 (char 0)"),
        ("fals", "Expecting value: line 1 column 1 (char 0)"),
        ("none", "Expecting value: line 1 column 1 (char 0)"),
        ("NaN1", "Extra data: line 1 column 4 (char 3)"),
        ("nan", "Expecting value: line 1 column 1 (char 0)"),
        ("Inf", "Expecting value: line 1 column 1 (char 0)"),
        ("-Inf", "Expecting value: line 1 column 1 (char 0)"),
        ("infinity", "Expecting value: line 1 column 1 (char 0)"),
        ("-Infinit", "Expecting value: line 1 column 1 (char 0)"),
        ("1 2", "Extra data: line 1 column 3 (char 2)"),
        ("[] []", "Extra data: line 1 column 4 (char 3)"),
        ("{}x", "Extra data: line 1 column 3 (char 2)"),
        ("\"a\" \"b\"", "Extra data: line 1 column 5 (char 4)"),
        (
            "\u{feff}1",
            "Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)",
        ),
        ("é", "Expecting value: line 1 column 1 (char 0)"),
        ("[é]", "Expecting value: line 1 column 2 (char 1)"),
        (
            "\"é\u{1}\"",
            "Invalid control character at: line 1 column 3 (char 2)",
        ),
        ("[1,\n 2,\n x]", "Expecting value: line 3 column 2 (char 9)"),
        (
            "\n\n\n\"\\q\"",
            "Invalid \\escape: line 4 column 2 (char 4)",
        ),
        ("[1]\n\n  ]", "Extra data: line 3 column 3 (char 7)"),
        ("\"😀\"x", "Extra data: line 1 column 4 (char 3)"),
        (
            "[\"é\",\n \"😀\" x]",
            "Expecting ',' delimiter: line 2 column 6 (char 11)",
        ),
        (
            "{\"a\":[1,{\"b\":tru}]}",
            "Expecting value: line 1 column 14 (char 13)",
        ),
        ("\r\n\t[", "Expecting value: line 2 column 3 (char 4)"),
        ("1\0", "Extra data: line 1 column 2 (char 1)"),
        ("\"\u{7f}\"x", "Extra data: line 1 column 4 (char 3)"),
        ("[-]", "Expecting value: line 1 column 2 (char 1)"),
        ("[00]", "Expecting ',' delimiter: line 1 column 3 (char 2)"),
        ("0x10", "Extra data: line 1 column 2 (char 1)"),
        ("١", "Expecting value: line 1 column 1 (char 0)"),
        (
            "[true false]",
            "Expecting ',' delimiter: line 1 column 7 (char 6)",
        ),
        (
            "{\"a\" : 1 , }",
            "Expecting property name enclosed in double quotes: line 1 column 12 (char 11)",
        ),
        ("{\"\\ud800\":1}x", "Extra data: line 1 column 13 (char 12)"),
    ];

    #[test]
    fn errors_are_worded_and_placed_as_pythons() {
        for (input, expected) in BAD {
            assert_eq!(parse(input).err().as_deref(), Some(*expected), "{input:?}");
        }
    }

    #[test]
    fn long_integers_are_refused_as_python_refuses_them() {
        let limit = |n: usize| {
            format!(
                "Exceeds the limit (4300 digits) for integer string conversion: value has {n} \
                 digits; use sys.set_int_max_str_digits() to increase the limit"
            )
        };
        let ones = |n: usize| "1".repeat(n);
        assert!(matches!(parse(&ones(4300)), Ok(Json::Int(JsonInt::Big(_)))));
        assert_eq!(parse(&ones(4301)), Err(limit(4301)));
        assert_eq!(parse(&format!("-{}", ones(4301))), Err(limit(4301)));
        // Read as it is scanned: before the error after it.
        assert_eq!(parse(&format!("[{}, x", ones(5000))), Err(limit(5000)));
        assert!(parse(&format!("{}.5", ones(4301))).is_ok());
        assert!(parse(&format!("{}e5", ones(4301))).is_ok());
    }

    #[test]
    fn nesting_stops_at_the_depth_limit_without_recursing() {
        let array =
            "maximum recursion depth exceeded while decoding a JSON array from a unicode string";
        let object =
            "maximum recursion depth exceeded while decoding a JSON object from a unicode string";
        assert_eq!(parse(&"[".repeat(100_000)), Err(array.to_owned()));
        assert_eq!(parse(&"{\"a\":".repeat(100_000)), Err(object.to_owned()));
        let deepest = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&deepest).is_ok());
        let deeper = format!("[{deepest}]");
        assert_eq!(parse(&deeper), Err(array.to_owned()));
        let mixed = format!("{}{{\"a\":{{}}}}", "[".repeat(MAX_DEPTH - 1));
        assert_eq!(parse(&mixed), Err(object.to_owned()));
        // An error before the limit is met first.
        assert_eq!(
            parse(&format!("[1 {}", "[".repeat(2000))),
            Err("Expecting ',' delimiter: line 1 column 4 (char 3)".to_owned())
        );
    }

    #[test]
    fn values_are_pythons() {
        let v = parse(
            " [1e400, -1e400, 1E5, -0.0, 0.1, 123456789012345678901234567890123456789012, \
             NaN, Infinity, -Infinity, -0, true, false, null, \"\\/\\b\\f\\n\\r\\t\\\"\\\\\"] ",
        )
        .unwrap();
        let Json::Array(items) = &v else {
            panic!("{v:?}")
        };
        assert_eq!(items[0], Json::Float(f64::INFINITY));
        assert_eq!(items[1], Json::Float(f64::NEG_INFINITY));
        assert_eq!(items[2], Json::Float(100_000.0));
        assert!(matches!(items[3], Json::Float(x) if x == 0.0 && x.is_sign_negative()));
        assert_eq!(
            items[5],
            Json::Int(JsonInt::Big(
                "123456789012345678901234567890123456789012".into()
            ))
        );
        assert!(matches!(items[6], Json::Float(x) if x.is_nan()));
        assert_eq!(items[9], int(0));
        assert_eq!(items[13], text("/\u{8}\u{c}\n\r\t\"\\"));
        assert_eq!(
            py_repr(&v),
            "[inf, -inf, 100000.0, -0.0, 0.1, 123456789012345678901234567890123456789012, \
             nan, inf, -inf, 0, True, False, None, '/\\x08\\x0c\\n\\r\\t\"\\\\']"
        );
        assert_eq!(
            parse("170141183460469231731687303715884105727"),
            Ok(int(i128::MAX))
        );
        assert_eq!(
            parse("-170141183460469231731687303715884105729"),
            Ok(Json::Int(JsonInt::Big(
                "-170141183460469231731687303715884105729".into()
            )))
        );
    }

    #[test]
    fn repeated_keys_keep_their_first_place_and_last_value() {
        let v = parse(r#"{"a":1,"b":2,"a":3,"c":4,"b":5}"#).unwrap();
        assert_eq!(py_repr(&v), "{'a': 3, 'b': 5, 'c': 4}");
        assert_eq!(py_repr(&parse(r#"{"a":1,"a":2}"#).unwrap()), "{'a': 2}");
        let nested = parse(r#"[{"k":[{"x":1,"x":{"y":1,"y":2}}]}]"#).unwrap();
        assert_eq!(py_repr(&nested), "[{'k': [{'x': {'y': 2}}]}]");
    }

    #[test]
    fn surrogate_escapes_make_what_python_makes() {
        // json.loads('"\\ud83d\\ude00\\ud800\\udbff\\udfff\\u0041\\ud800\\u0041x"')
        let v = parse(r#""\ud83d\ude00\ud800\udbff\udfff\u0041\ud800\u0041x""#).unwrap();
        let Json::Str(s) = &v else { panic!("{v:?}") };
        assert_eq!(
            s.code_points().collect::<Vec<_>>(),
            [0x1F600, 0xD800, 0x10FFFF, 0x41, 0xD800, 0x41, 0x78]
        );
        assert_eq!(s.as_str(), None);
        assert_eq!(py_repr(&v), "'😀\\ud800\\U0010ffffA\\ud800Ax'");
        // A lone low surrogate, and one before a non-surrogate escape.
        let v = parse(r#"["\udc00", "\ud800\u1234"]"#).unwrap();
        assert_eq!(py_repr(&v), "['\\udc00', '\\ud800ሴ']");
        // A surrogate pair needs a character after it for CPython to join.
        assert_eq!(
            parse(r#""\ud800\udc00"#),
            Err("Invalid \\uXXXX escape: line 1 column 9 (char 8)".to_owned())
        );
        assert_eq!(
            parse(r#""\ud800\u12345""#).map(|v| py_repr(&v)),
            Ok("'\\ud800ሴ5'".to_owned())
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_read_as_python_strs() {
        // b'"a\xff\xed\xa0\x80b"': a stray byte escaped, an encoded
        // surrogate as itself.
        let v = parse_bytes(b"\"a\xff\xed\xa0\x80\xe2\x82b\"").unwrap();
        assert_eq!(py_repr(&v), "'a\\udcff\\ud800\\udce2\\udc82b'");
        assert_eq!(
            JsonStr::from_bytes(b"\xc3\xa9\xf0\x9f\x98"),
            JsonStr::Lone(vec![0xE9, 0xDCF0, 0xDC9F, 0xDC98])
        );
        assert_eq!(
            JsonStr::from_bytes("é".as_bytes()),
            JsonStr::Text("é".to_owned())
        );
        // Each byte that is not UTF-8 counts as one character.
        assert_eq!(
            parse_bytes(b"[\"\xff\xfe\", \xff]"),
            Err("Expecting value: line 1 column 8 (char 7)".to_owned())
        );
    }

    #[test]
    fn reprs_are_pythons() {
        let cases: &[(&str, &str)] = &[
            ("", "''"),
            ("it's", "\"it's\""),
            ("say \"hi\"", "'say \"hi\"'"),
            ("both ' and \"", "'both \\' and \"'"),
            ("back\\slash", "'back\\\\slash'"),
            ("\u{0}\u{7}\u{1b}\u{7f}", "'\\x00\\x07\\x1b\\x7f'"),
            ("\u{80}\u{9f}\u{a0}\u{ad}é", "'\\x80\\x9f\\xa0\\xadé'"),
            (
                "\u{2028}\u{200b}\u{3000}\u{feff}",
                "'\\u2028\\u200b\\u3000\\ufeff'",
            ),
            ("\u{e000}\u{f8ff}\u{f900}", "'\\ue000\\uf8ff\u{f900}'"),
            (
                "\u{fdd0}\u{fffe}\u{1ffff}\u{10fffd}",
                "'\\ufdd0\\ufffe\\U0001ffff\\U0010fffd'",
            ),
            ("\u{f0000}\u{e0001}😀", "'\\U000f0000\\U000e0001😀'"),
            ("日本語 ok", "'日本語 ok'"),
        ];
        for (input, expected) in cases {
            assert_eq!(str_repr(input), *expected, "{input:?}");
        }
        let v = parse(r#"{"k": [1, "a", 1.5, {}, []], "e": {"x": null}}"#).unwrap();
        assert_eq!(
            py_repr(&v),
            "{'k': [1, 'a', 1.5, {}, []], 'e': {'x': None}}"
        );
    }

    #[test]
    fn floats_print_as_python_prints_them() {
        // repr() of each in CPython 3.11.7.
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (f64::from(0.1f32), "0.10000000149011612"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123_456_789_012_345_680.0, "1.2345678901234568e+17"),
            (9_999_999_999_999_998.0, "9999999999999998.0"),
            (0.0001, "0.0001"),
            (0.000_123, "0.000123"),
            (0.000_015, "1.5e-05"),
            (1e-5, "1e-05"),
            (1e100, "1e+100"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (123.456, "123.456"),
            (1.0 / 3.0, "0.3333333333333333"),
            (2f64.powi(70), "1.1805916207174113e+21"),
            // Halfway between two shortest candidates: the even one.
            (-13_476_193.0 / 16_384.0, "-822.5215454101562"),
            (6_435_531_714_575_641.0 / 4.0, "1608882928643910.2"),
            (f64::from(717.660_95_f32), "717.6609497070312"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (x, expected) in cases {
            assert_eq!(float_repr(*x), *expected, "{x:e}");
        }
    }

    #[test]
    fn strings_are_written_as_json_dumps_writes_them() {
        // json.dumps("\"\\/\b\f\n\r\t\x00\x1f\x7fé😀\u2028", ensure_ascii=False)
        let mut out = String::new();
        write_str(
            &mut out,
            "\"\\/\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}é😀\u{2028}",
        );
        assert_eq!(
            out,
            "\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}é😀\u{2028}\""
        );
    }

    #[test]
    fn big_integers_convert_to_float_as_python_converts_them() {
        assert_eq!(JsonInt::Small(1 << 100).to_f64(), Some(2f64.powi(100)));
        let big = |d: &str| JsonInt::Big(d.into());
        assert_eq!(big(&format!("1{}", "0".repeat(308))).to_f64(), Some(1e308));
        assert_eq!(
            big(&format!("-1{}", "0".repeat(308))).to_f64(),
            Some(-1e308)
        );
        assert_eq!(big(&format!("1{}", "0".repeat(309))).to_f64(), None);
        // 2**1024 - 2**970 rounds up to 2**1024: OverflowError in Python;
        // one less rounds down to f64::MAX.
        let halfway = "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";
        let below = "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791";
        assert_eq!(big(halfway).to_f64(), None);
        assert_eq!(big(below).to_f64(), Some(f64::MAX));
    }
}
