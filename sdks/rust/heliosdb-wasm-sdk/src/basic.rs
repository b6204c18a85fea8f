//! The Basic ABI backend (docs/abi.md): raw `heliosdb` imports, the value
//! and rows encodings, and the allocator exports the host needs.

use std::alloc::{GlobalAlloc, Layout, System};

use crate::http::{Request, Response};
use crate::types::{Error, Rows, Value};

#[link(wasm_import_module = "heliosdb")]
unsafe extern "C" {
    fn heliosdb_query(sql: *const u8, sql_len: usize, p: *const u8, p_len: usize, out: *mut u32) -> i32;
    fn heliosdb_execute(sql: *const u8, sql_len: usize, p: *const u8, p_len: usize, out: *mut u32) -> i32;
    fn heliosdb_get_param(index: u32, out: *mut u32) -> i32;
    fn heliosdb_return(tag: i32, ptr: *const u8, len: usize);
    fn heliosdb_log(level: i32, ptr: *const u8, len: usize);
    fn heliosdb_begin_tx() -> i32;
    fn heliosdb_commit_tx() -> i32;
    fn heliosdb_rollback_tx() -> i32;
    fn heliosdb_now() -> i64;
    fn heliosdb_error(code: *const u8, code_len: usize, msg: *const u8, msg_len: usize);
    fn heliosdb_last_error(out: *mut u32) -> i32;
    fn heliosdb_http_fetch(req: *const u8, req_len: usize, out: *mut u32) -> i32;
    fn heliosdb_digest(alg: *const u8, alg_len: usize, data: *const u8, data_len: usize, out: *mut u32) -> i32;
    fn heliosdb_hmac(
        alg: *const u8,
        alg_len: usize,
        key: *const u8,
        key_len: usize,
        data: *const u8,
        data_len: usize,
        out: *mut u32,
    ) -> i32;
}

// docs/plugins.md §3 names this import without the `heliosdb_` prefix.
#[cfg(feature = "plugin")]
#[link(wasm_import_module = "heliosdb")]
unsafe extern "C" {
    #[link_name = "count_in_window"]
    fn heliosdb_count_in_window(key: *const u8, key_len: usize, window_ms: i64) -> i64;
}

pub(crate) const TAG_NULL: i32 = 0;
const TAG_INTEGER: u8 = 1;
const TAG_REAL: u8 = 2;
pub(crate) const TAG_TEXT: i32 = 3;
pub(crate) const TAG_BLOB: i32 = 4;
const TAG_BOOLEAN: u8 = 5;
pub(crate) const TAG_ROWS: i32 = 6;

#[unsafe(no_mangle)]
pub extern "C" fn heliosdb_abi_version() -> i32 {
    1
}

/// Buffers the host hands over are owned by the guest from then on; the
/// SDK turns them into `Vec`s and `String`s, which free them with this
/// same layout (size, align 1). `System` directly, not the reporting global
/// allocator (oom.rs): a failure here is reported by the host, and a module
/// that never allocates otherwise keeps its import list empty.
#[unsafe(no_mangle)]
pub extern "C" fn heliosdb_alloc(size: usize, align: usize) -> *mut u8 {
    match Layout::from_size_align(size.max(1), align.max(1)) {
        Ok(layout) => unsafe { System.alloc(layout) },
        Err(_) => std::ptr::null_mut(),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn heliosdb_free(ptr: *mut u8, size: usize, align: usize) {
    if let Ok(layout) = Layout::from_size_align(size.max(1), align.max(1)) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Takes ownership of a host-written buffer.
pub(crate) unsafe fn take(ptr: u32, len: u32) -> Vec<u8> {
    if len == 0 {
        return Vec::new();
    }
    unsafe { Vec::from_raw_parts(ptr as *mut u8, len as usize, len as usize) }
}

fn last_error(status: i32) -> Error {
    let mut out = [0u32; 2];
    let _ = unsafe { heliosdb_last_error(out.as_mut_ptr()) };
    let bytes = unsafe { take(out[0], out[1]) };
    Error::from_status(status, String::from_utf8_lossy(&bytes).into_owned())
}

fn status(code: i32) -> Result<(), Error> {
    if code == 0 { Ok(()) } else { Err(last_error(code)) }
}

// -- encodings -----------------------------------------------------------------

fn encode_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(TAG_NULL as u8),
        Value::Integer(i) => {
            out.push(TAG_INTEGER);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Real(f) => {
            out.push(TAG_REAL);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Text(s) => {
            out.push(TAG_TEXT as u8);
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Blob(b) => {
            out.push(TAG_BLOB as u8);
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        Value::Boolean(b) => {
            out.push(TAG_BOOLEAN);
            out.push(*b as u8);
        }
    }
}

fn encode_params(params: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + params.len() * 9);
    out.extend_from_slice(&(params.len() as u32).to_le_bytes());
    for p in params {
        encode_value(&mut out, p);
    }
    out
}

pub(crate) fn encode_rows(columns: &[&str], rows: impl Iterator<Item = Vec<Value>>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(columns.len() as u32).to_le_bytes());
    for c in columns {
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(c.as_bytes());
    }
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut count = 0u32;
    for row in rows {
        for v in &row {
            encode_value(&mut out, v);
        }
        count += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    out
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], Error> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len());
        let end = end.ok_or_else(|| Error::InvalidArgument("truncated rows from the host".into()))?;
        let slice = &self.data[self.at..end];
        self.at = end;
        Ok(slice)
    }
    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().unwrap()))
    }
    fn text(&mut self) -> Result<String, Error> {
        let n = self.u32()? as usize;
        Ok(String::from_utf8_lossy(self.bytes(n)?).into_owned())
    }
    fn value(&mut self) -> Result<Value, Error> {
        let tag = self.bytes(1)?[0];
        Ok(match tag {
            0 => Value::Null,
            1 => Value::Integer(i64::from_le_bytes(self.bytes(8)?.try_into().unwrap())),
            2 => Value::Real(f64::from_le_bytes(self.bytes(8)?.try_into().unwrap())),
            3 => Value::Text(self.text()?),
            4 => {
                let n = self.u32()? as usize;
                Value::Blob(self.bytes(n)?.to_vec())
            }
            5 => Value::Boolean(self.bytes(1)?[0] != 0),
            t => return Err(Error::InvalidArgument(format!("unknown value tag {t} from the host"))),
        })
    }
}

fn decode_rows(data: &[u8]) -> Result<Rows, Error> {
    let mut r = Reader { data, at: 0 };
    let ncols = r.u32()? as usize;
    let columns = (0..ncols).map(|_| r.text()).collect::<Result<Vec<_>, _>>()?;
    let nrows = r.u32()? as usize;
    let mut values = Vec::with_capacity(nrows.min(1 << 16));
    for _ in 0..nrows {
        values.push((0..ncols).map(|_| r.value()).collect::<Result<Vec<_>, _>>()?);
    }
    Ok(Rows { columns, values })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// `request := method: str, url: str, u32 nheaders, nheaders × (name: str,
/// value: str), body: bytes` (§4).
fn encode_request(req: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + req.method.len() + req.url.len() + req.body.len());
    put_bytes(&mut out, req.method.as_bytes());
    put_bytes(&mut out, req.url.as_bytes());
    out.extend_from_slice(&(req.headers.len() as u32).to_le_bytes());
    for (name, value) in &req.headers {
        put_bytes(&mut out, name.as_bytes());
        put_bytes(&mut out, value.as_bytes());
    }
    put_bytes(&mut out, &req.body);
    out
}

/// `response := u32 status, u32 nheaders, nheaders × (name: str, value: str),
/// body: bytes` (§4).
fn decode_response(data: &[u8]) -> Result<Response, Error> {
    let mut r = Reader { data, at: 0 };
    let status = r.u32()? as u16;
    let nheaders = r.u32()? as usize;
    let mut headers = Vec::with_capacity(nheaders.min(1 << 10));
    for _ in 0..nheaders {
        let name = r.text()?;
        headers.push((name, r.text()?));
    }
    let n = r.u32()? as usize;
    let body = r.bytes(n)?.to_vec();
    Ok(Response { status, headers, body })
}

// -- the host API --------------------------------------------------------------

pub(crate) fn query(sql: &str, params: &[Value]) -> Result<Rows, Error> {
    let p = encode_params(params);
    let mut out = [0u32; 2];
    status(unsafe { heliosdb_query(sql.as_ptr(), sql.len(), p.as_ptr(), p.len(), out.as_mut_ptr()) })?;
    decode_rows(&unsafe { take(out[0], out[1]) })
}

pub(crate) fn execute(sql: &str, params: &[Value]) -> Result<u64, Error> {
    let p = encode_params(params);
    let mut out = [0u64; 1];
    let code = unsafe {
        heliosdb_execute(sql.as_ptr(), sql.len(), p.as_ptr(), p.len(), out.as_mut_ptr() as *mut u32)
    };
    status(code)?;
    Ok(out[0])
}

pub(crate) fn log(level: i32, message: &str) {
    unsafe { heliosdb_log(level, message.as_ptr(), message.len()) }
}

pub(crate) fn begin_tx() -> Result<(), Error> {
    status(unsafe { heliosdb_begin_tx() })
}

pub(crate) fn commit_tx() -> Result<(), Error> {
    status(unsafe { heliosdb_commit_tx() })
}

pub(crate) fn rollback_tx() -> Result<(), Error> {
    status(unsafe { heliosdb_rollback_tx() })
}

pub(crate) fn now() -> i64 {
    unsafe { heliosdb_now() }
}

pub(crate) fn http_fetch(req: &Request) -> Result<Response, Error> {
    let encoded = encode_request(req);
    let mut out = [0u32; 2];
    status(unsafe { heliosdb_http_fetch(encoded.as_ptr(), encoded.len(), out.as_mut_ptr()) })?;
    decode_response(&unsafe { take(out[0], out[1]) })
}

pub(crate) fn digest(algorithm: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = [0u32; 2];
    let code = unsafe {
        heliosdb_digest(algorithm.as_ptr(), algorithm.len(), data.as_ptr(), data.len(), out.as_mut_ptr())
    };
    status(code)?;
    Ok(unsafe { take(out[0], out[1]) })
}

pub(crate) fn hmac(algorithm: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = [0u32; 2];
    let code = unsafe {
        heliosdb_hmac(
            algorithm.as_ptr(),
            algorithm.len(),
            key.as_ptr(),
            key.len(),
            data.as_ptr(),
            data.len(),
            out.as_mut_ptr(),
        )
    };
    status(code)?;
    Ok(unsafe { take(out[0], out[1]) })
}

#[cfg(feature = "plugin")]
pub(crate) fn count_in_window(key: &str, window_ms: u64) -> u64 {
    let window = i64::try_from(window_ms).unwrap_or(i64::MAX);
    unsafe { heliosdb_count_in_window(key.as_ptr(), key.len(), window) as u64 }
}

// -- used by the generated exports ------------------------------------------------

/// Whether argument `index` is NULL (CALLED ON NULL INPUT procedures).
pub(crate) fn is_null(index: u32) -> bool {
    let mut out = [0u32; 2];
    let tag = unsafe { heliosdb_get_param(index, out.as_mut_ptr()) };
    if tag == TAG_TEXT || tag == TAG_BLOB {
        drop(unsafe { take(out[0], out[1]) }); // a copy we do not need
    }
    tag == TAG_NULL
}

pub(crate) fn return_buffer(tag: i32, data: &[u8]) {
    unsafe { heliosdb_return(tag, data.as_ptr(), data.len()) }
}

/// Fails the call. WIT case names pass host errors on unchanged (§4).
pub(crate) fn fail(err: &Error) {
    let code = match err {
        Error::User { code, .. } => code.as_str(),
        other => other.case(),
    };
    let message = err.message();
    unsafe { heliosdb_error(code.as_ptr(), code.len(), message.as_ptr(), message.len()) }
}
