//! The Basic ABI's value encodings (docs/abi.md §5 and §6): parameter lists
//! a guest hands the host, and the rows the host writes back.
//!
//! Decoding is bounds-checked and allocation-free (text and blobs borrow
//! the guest's buffer); every malformed buffer is an [`EncodingError`] that
//! says where, in the words Python's `values._Reader` uses. Rows are
//! written straight from SQLite's column values, with no value type in
//! between.

use std::fmt;

pub const TAG_NULL: u8 = 0;
pub const TAG_INTEGER: u8 = 1;
pub const TAG_REAL: u8 = 2;
pub const TAG_TEXT: u8 = 3;
pub const TAG_BLOB: u8 = 4;
pub const TAG_BOOLEAN: u8 = 5;

/// One value of a parameter list, borrowing the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
    Boolean(bool),
}

/// A malformed buffer: what it was (`what`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodingError {
    pub what: &'static str,
    pub problem: String,
}

impl fmt::Display for EncodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.problem)
    }
}

impl std::error::Error for EncodingError {}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, problem: String) -> Result<T, EncodingError> {
        Err(EncodingError {
            what: self.what,
            problem,
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EncodingError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.data.len() => {
                let chunk = &self.data[self.pos..end];
                self.pos = end;
                Ok(chunk)
            }
            _ => self.fail(format!(
                "truncated at byte {} (wanted {n} more of {})",
                self.pos,
                self.data.len()
            )),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EncodingError> {
        let bytes = self.take(N)?;
        Ok(bytes.try_into().expect("take returned N bytes"))
    }

    fn u32(&mut self) -> Result<usize, EncodingError> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn text(&mut self) -> Result<&'a str, EncodingError> {
        let n = self.u32()?;
        let raw = self.take(n)?;
        match std::str::from_utf8(raw) {
            Ok(text) => Ok(text),
            Err(err) => self.fail(format!("invalid UTF-8 ({})", utf8_reason(raw, &err))),
        }
    }

    fn value(&mut self) -> Result<Param<'a>, EncodingError> {
        let tag = self.take(1)?[0];
        Ok(match tag {
            TAG_NULL => Param::Null,
            TAG_INTEGER => Param::Integer(i64::from_le_bytes(self.array()?)),
            TAG_REAL => Param::Real(f64::from_le_bytes(self.array()?)),
            TAG_TEXT => Param::Text(self.text()?),
            TAG_BLOB => {
                let n = self.u32()?;
                Param::Blob(self.take(n)?)
            }
            TAG_BOOLEAN => Param::Boolean(self.take(1)?[0] != 0),
            other => {
                return self.fail(format!(
                    "unknown value tag {other} at byte {}",
                    self.pos - 1
                ))
            }
        })
    }
}

/// Why `raw` is not UTF-8, in the words of Python's decoder (its
/// `UnicodeDecodeError.reason`), so both engines say the same.
pub(crate) fn utf8_reason(raw: &[u8], err: &std::str::Utf8Error) -> &'static str {
    match err.error_len() {
        None => "unexpected end of data",
        Some(_) => match raw[err.valid_up_to()] {
            0x80..=0xC1 | 0xF5..=0xFF => "invalid start byte",
            _ => "invalid continuation byte",
        },
    }
}

/// A parameter list: `u32 count`, then `count` values (an empty buffer is
/// an empty list, as a guest with no parameters passes `(0, 0)`).
///
/// # Errors
///
/// A truncated buffer, a count the buffer cannot hold, an unknown tag,
/// invalid UTF-8 or bytes after the last value.
pub fn decode_params(data: &[u8]) -> Result<Vec<Param<'_>>, EncodingError> {
    decode_params_into(data)
}

/// [`decode_params`] into any collection (a host statement's few
/// parameters go on the stack).
///
/// # Errors
///
/// As [`decode_params`].
pub fn decode_params_into<'a, C: Default + Extend<Param<'a>>>(
    data: &'a [u8],
) -> Result<C, EncodingError> {
    let mut values = C::default();
    if data.is_empty() {
        return Ok(values);
    }
    let mut r = Reader {
        data,
        pos: 0,
        what: "parameter list",
    };
    let count = r.u32()?;
    // Every value takes at least its tag byte: a larger count is a lie, and
    // refusing it early keeps a hostile buffer from making the host loop.
    if count > data.len() - r.pos {
        return r.fail(format!("count {count} exceeds the buffer"));
    }
    for _ in 0..count {
        values.extend(std::iter::once(r.value()?));
    }
    if r.pos != data.len() {
        return r.fail(format!("{} trailing bytes", data.len() - r.pos));
    }
    Ok(values)
}

/// A parameter list as a guest encodes it (the inverse of
/// [`decode_params`]): how a component's `list<value>` reaches the same
/// statement path as a core module's.
#[must_use]
pub fn encode_params(values: &[Param<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 9 * values.len());
    out.extend_from_slice(&len32(values.len()).to_le_bytes());
    for value in values {
        write_value(&mut out, value);
    }
    out
}

fn write_value(out: &mut Vec<u8>, value: &Param<'_>) {
    match *value {
        Param::Null => out.push(TAG_NULL),
        Param::Integer(x) => {
            out.push(TAG_INTEGER);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Param::Real(x) => {
            out.push(TAG_REAL);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Param::Boolean(b) => out.extend_from_slice(&[TAG_BOOLEAN, u8::from(b)]),
        Param::Text(text) => sized(out, TAG_TEXT, text.as_bytes()),
        Param::Blob(bytes) => sized(out, TAG_BLOB, bytes),
    }
}

fn sized(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&len32(bytes.len()).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Rows as [`RowsWriter`] encodes them: the column names and each row's
/// values, borrowing the buffer.
///
/// # Errors
///
/// A malformed buffer (the host wrote it, so only a bug).
#[allow(clippy::type_complexity)] // columns and rows, as the encoding has them
pub fn decode_rows(data: &[u8]) -> Result<(Vec<&str>, Vec<Vec<Param<'_>>>), EncodingError> {
    let mut r = Reader {
        data,
        pos: 0,
        what: "rows",
    };
    let ncols = r.u32()?;
    let mut columns = Vec::with_capacity(ncols.min(data.len()));
    for _ in 0..ncols {
        columns.push(r.text()?);
    }
    let nrows = r.u32()?;
    let mut rows = Vec::with_capacity(nrows.min(data.len()));
    for _ in 0..nrows {
        rows.push((0..ncols).map(|_| r.value()).collect::<Result<_, _>>()?);
    }
    if r.pos != data.len() {
        return r.fail(format!("{} bytes after the last row", data.len() - r.pos));
    }
    Ok((columns, rows))
}

/// An HTTP request as docs/abi.md §4 encodes it for `heliosdb_http_fetch`.
#[must_use]
pub fn encode_http_request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + url.len() + body.len());
    let text = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&len32(s.len()).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    text(&mut out, method);
    text(&mut out, url);
    out.extend_from_slice(&len32(headers.len()).to_le_bytes());
    for (name, value) in headers {
        text(&mut out, name);
        text(&mut out, value);
    }
    out.extend_from_slice(&len32(body.len()).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// A response to `heliosdb_http_fetch`: status, headers, body.
pub type HttpResponse<'a> = (u32, Vec<(&'a str, &'a str)>, &'a [u8]);

/// The response `heliosdb_http_fetch` hands the guest, decoded.
///
/// # Errors
///
/// A malformed buffer (the host wrote it, so only a bug).
pub fn decode_http_response(data: &[u8]) -> Result<HttpResponse<'_>, EncodingError> {
    let mut r = Reader {
        data,
        pos: 0,
        what: "http response",
    };
    let status = u32::try_from(r.u32()?).unwrap_or(u32::MAX);
    let n = r.u32()?;
    let mut headers = Vec::with_capacity(n.min(data.len()));
    for _ in 0..n {
        headers.push((r.text()?, r.text()?));
    }
    let len = r.u32()?;
    let body = r.take(len)?;
    Ok((status, headers, body))
}

/// Where a statement's rows go, cell by cell.
pub trait RowSink {
    fn columns(&mut self, names: &mut dyn ExactSizeIterator<Item = &[u8]>);
    fn null(&mut self);
    fn integer(&mut self, x: i64);
    fn real(&mut self, x: f64);
    fn text(&mut self, utf8: &[u8]);
    fn blob(&mut self, bytes: &[u8]);
    fn end_row(&mut self);
}

/// Rows as docs/abi.md §6 lays them out, written cell by cell: the column
/// names first, then each row's values, each row closed by
/// [`end_row`](Self::end_row); the row count is filled in by
/// [`finish`](Self::finish).
pub struct RowsWriter {
    out: Vec<u8>,
    count_at: usize,
    columns: usize,
    cells: usize,
    rows: usize,
}

impl RowsWriter {
    /// A result with these column names (UTF-8).
    pub fn new<'a>(columns: impl ExactSizeIterator<Item = &'a [u8]>) -> Self {
        Self::with_buffer(Vec::with_capacity(64), columns)
    }

    /// [`new`](Self::new), written into `out` (emptied).
    fn with_buffer<'a>(mut out: Vec<u8>, columns: impl ExactSizeIterator<Item = &'a [u8]>) -> Self {
        out.clear();
        let n = columns.len();
        out.extend_from_slice(&len32(n).to_le_bytes());
        for name in columns {
            out.extend_from_slice(&len32(name.len()).to_le_bytes());
            out.extend_from_slice(name);
        }
        let count_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        Self {
            out,
            count_at,
            columns: n,
            cells: 0,
            rows: 0,
        }
    }

    /// Closes a row (a statement without columns still has rows).
    ///
    /// # Panics
    ///
    /// If the row does not have one cell per column.
    pub fn end_row(&mut self) {
        self.rows += 1;
        assert_eq!(
            self.cells,
            self.rows * self.columns,
            "a row of the wrong width"
        );
    }

    /// Bytes written so far (what counts against `max_result_bytes`).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn null(&mut self) {
        self.cell(TAG_NULL, &[]);
    }

    pub fn integer(&mut self, x: i64) {
        self.cell(TAG_INTEGER, &x.to_le_bytes());
    }

    pub fn real(&mut self, x: f64) {
        self.cell(TAG_REAL, &x.to_le_bytes());
    }

    pub fn boolean(&mut self, x: bool) {
        self.cell(TAG_BOOLEAN, &[u8::from(x)]);
    }

    pub fn text(&mut self, utf8: &[u8]) {
        self.sized(TAG_TEXT, utf8);
    }

    pub fn blob(&mut self, bytes: &[u8]) {
        self.sized(TAG_BLOB, bytes);
    }

    fn cell(&mut self, tag: u8, payload: &[u8]) {
        self.out.push(tag);
        self.out.extend_from_slice(payload);
        self.cells += 1;
    }

    fn sized(&mut self, tag: u8, payload: &[u8]) {
        self.out.push(tag);
        self.out
            .extend_from_slice(&len32(payload.len()).to_le_bytes());
        self.out.extend_from_slice(payload);
        self.cells += 1;
    }

    /// The encoded rows.
    ///
    /// # Panics
    ///
    /// If cells were written after the last [`end_row`](Self::end_row).
    pub fn finish(mut self) -> Vec<u8> {
        assert_eq!(
            self.cells,
            self.rows * self.columns,
            "a row was left half-written"
        );
        let rows = len32(self.rows).to_le_bytes();
        self.out[self.count_at..self.count_at + 4].copy_from_slice(&rows);
        self.out
    }
}

impl RowSink for RowsWriter {
    fn columns(&mut self, names: &mut dyn ExactSizeIterator<Item = &[u8]>) {
        // The buffer is reused: a statement's rows cost no allocation of
        // their own when it is large enough.
        *self = Self::with_buffer(std::mem::take(&mut self.out), names);
    }
    fn null(&mut self) {
        Self::null(self);
    }
    fn integer(&mut self, x: i64) {
        Self::integer(self, x);
    }
    fn real(&mut self, x: f64) {
        Self::real(self, x);
    }
    fn text(&mut self, utf8: &[u8]) {
        Self::text(self, utf8);
    }
    fn blob(&mut self, bytes: &[u8]) {
        Self::blob(self, bytes);
    }
    fn end_row(&mut self) {
        Self::end_row(self);
    }
}

/// A length as the encodings carry it. Every buffer the host writes into
/// guest memory is far below 4 GiB (the guest's limits, SQLite's length
/// limit); a longer one is a bug, not an input.
fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("an encoded length fits in 32 bits")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(bytes: &[u8]) -> Result<Vec<Param<'_>>, String> {
        decode_params(bytes).map_err(|e| e.to_string())
    }

    #[test]
    fn every_tag_round_trips_from_the_documented_bytes() {
        let mut buf = 6u32.to_le_bytes().to_vec();
        buf.push(TAG_NULL);
        buf.push(TAG_INTEGER);
        buf.extend_from_slice(&(-42i64).to_le_bytes());
        buf.push(TAG_REAL);
        buf.extend_from_slice(&1.5f64.to_le_bytes());
        buf.push(TAG_TEXT);
        buf.extend_from_slice(&3u32.to_le_bytes());
        buf.extend_from_slice("hé".as_bytes());
        buf.push(TAG_BLOB);
        buf.extend_from_slice(&2u32.to_le_bytes());
        buf.extend_from_slice(&[0, 255]);
        buf.push(TAG_BOOLEAN);
        buf.push(7);
        assert_eq!(
            params(&buf).unwrap(),
            [
                Param::Null,
                Param::Integer(-42),
                Param::Real(1.5),
                Param::Text("hé"),
                Param::Blob(&[0, 255]),
                Param::Boolean(true),
            ]
        );
        assert_eq!(params(&[]).unwrap(), []);
    }

    #[test]
    fn malformed_lists_say_what_is_wrong() {
        assert_eq!(
            params(&[1, 0, 0]).unwrap_err(),
            "parameter list: truncated at byte 0 (wanted 4 more of 3)"
        );
        assert_eq!(
            params(&[9, 0, 0, 0, 0]).unwrap_err(),
            "parameter list: count 9 exceeds the buffer"
        );
        assert_eq!(
            params(&[1, 0, 0, 0, 9]).unwrap_err(),
            "parameter list: unknown value tag 9 at byte 4"
        );
        assert_eq!(
            params(&[1, 0, 0, 0, TAG_INTEGER, 1, 2]).unwrap_err(),
            "parameter list: truncated at byte 5 (wanted 8 more of 7)"
        );
        assert_eq!(
            params(&[1, 0, 0, 0, TAG_NULL, 0]).unwrap_err(),
            "parameter list: 1 trailing bytes"
        );
        let mut text = vec![1, 0, 0, 0, TAG_TEXT];
        text.extend_from_slice(&1u32.to_le_bytes());
        text.push(0xff);
        assert_eq!(
            params(&text).unwrap_err(),
            "parameter list: invalid UTF-8 (invalid start byte)"
        );
        for (bytes, reason) in [
            (&[0xe2, 0x82][..], "unexpected end of data"),
            (&[0xe2, 0x28, 0xa1][..], "invalid continuation byte"),
            (&[0xed, 0xa0, 0x80][..], "invalid continuation byte"), // a surrogate
            (&[0xc0, 0xaf][..], "invalid start byte"),              // overlong
        ] {
            let err = std::str::from_utf8(bytes).unwrap_err();
            assert_eq!(utf8_reason(bytes, &err), reason, "{bytes:x?}");
        }
        let mut huge = vec![1, 0, 0, 0, TAG_BLOB];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(params(&huge).unwrap_err().contains("truncated at byte 9"));
    }

    #[test]
    fn params_and_rows_round_trip_for_components() {
        let values = [
            Param::Null,
            Param::Integer(-5),
            Param::Real(1.5),
            Param::Text("é"),
            Param::Blob(&[0, 1]),
            Param::Boolean(true),
        ];
        assert_eq!(decode_params(&encode_params(&values)).unwrap(), values);
        let mut w = RowsWriter::new([&b"a"[..], &b"b"[..]].into_iter());
        w.integer(1);
        w.text(b"x");
        w.end_row();
        let rows = w.finish();
        let (columns, decoded) = decode_rows(&rows).unwrap();
        assert_eq!(columns, ["a", "b"]);
        assert_eq!(decoded, [vec![Param::Integer(1), Param::Text("x")]]);
        let headers = vec![("k".to_owned(), "v".to_owned())];
        let request = encode_http_request("GET", "http://h/", &headers, b"body");
        assert_eq!(&request[..4], &3u32.to_le_bytes());
        let mut response = 200u32.to_le_bytes().to_vec();
        response.extend_from_slice(&1u32.to_le_bytes());
        for s in ["k", "v"] {
            response.extend_from_slice(&1u32.to_le_bytes());
            response.extend_from_slice(s.as_bytes());
        }
        response.extend_from_slice(&2u32.to_le_bytes());
        response.extend_from_slice(b"ok");
        assert_eq!(
            decode_http_response(&response).unwrap(),
            (200, vec![("k", "v")], &b"ok"[..])
        );
    }

    #[test]
    fn rows_are_laid_out_as_documented() {
        let mut w = RowsWriter::new([&b"id"[..], &b"name"[..]].into_iter());
        w.integer(1);
        w.text(b"ann");
        w.end_row();
        w.null();
        w.blob(&[7]);
        w.end_row();
        let out = w.finish();
        let mut want = 2u32.to_le_bytes().to_vec();
        for name in [&b"id"[..], b"name"] {
            want.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
            want.extend_from_slice(name);
        }
        want.extend_from_slice(&2u32.to_le_bytes());
        want.push(TAG_INTEGER);
        want.extend_from_slice(&1i64.to_le_bytes());
        want.push(TAG_TEXT);
        want.extend_from_slice(&3u32.to_le_bytes());
        want.extend_from_slice(b"ann");
        want.push(TAG_NULL);
        want.push(TAG_BLOB);
        want.extend_from_slice(&1u32.to_le_bytes());
        want.push(7);
        assert_eq!(out, want);
        let empty = RowsWriter::new(std::iter::empty()).finish();
        assert_eq!(empty, [0, 0, 0, 0, 0, 0, 0, 0]);
        let mut no_columns = RowsWriter::new(std::iter::empty());
        no_columns.end_row();
        assert_eq!(no_columns.finish(), [0, 0, 0, 0, 1, 0, 0, 0]);
    }
}
