//! `Numeric.canonical`: a function of a SingleStore Canonical-ABI module
//! (wit-bindgen 0.2) run whole in the core, of any WIT types — the SQL
//! arguments made WIT values (`canonical/values.rs`), lowered into guest
//! memory through the guest's `canonical_abi_realloc` (outer buffers first,
//! more than 16 flat values as one tuple), the export called, its result
//! lifted strictly from the flat value or the return area, every buffer it
//! owns handed back to `canonical_abi_free` (nested ones before the list
//! holding them), and the value made SQL's — all on one budget, exactly as
//! wit-bindgen's host bindings of the time did (`singlestore/__init__.py`
//! says how; `singlestore/wit.py` owns the layout).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use wasmtime::{Memory, ValRaw};

use super::logs::{LogTarget, Logged};
use super::numeric::{
    failure_exception, hook_error, slot_args, within_arg_bytes, Answer, Failure, Kind, Param,
    TallyInner, Target,
};
use super::pinned::{Pinned, Pool};
use super::with_gil;
use crate::basic::{self, Arg};
use crate::canonical::values::{self, Sql};
use crate::canonical::{Case, Field, Flat, Form, Int, Shape, Ty, Val};
use crate::error::CallError;
use crate::pool::Instances;
use crate::typed::{Export, NumType};

const REALLOC: &str = "canonical_abi_realloc";
// The core slots of a call: wit-bindgen 0.2's MAX_FLAT_PARAMS.
const MAX_SLOTS: usize = 16;

/// A few values, kept on the stack: a call's arguments, flat values and
/// owned buffers are almost always that.
type Small<T> = smallvec::SmallVec<[T; 8]>;
const FREE: &str = "canonical_abi_free";

// =============================================================================
// The types, as singlestore/wit.py hands them over
// =============================================================================

fn flats(obj: &Bound<'_, PyAny>) -> PyResult<Box<[Flat]>> {
    let names: Vec<String> = obj.extract()?;
    names
        .iter()
        .map(|n| {
            Ok(match n.as_str() {
                "i32" => Flat::I32,
                "i64" => Flat::I64,
                "f32" => Flat::F32,
                "f64" => Flat::F64,
                other => {
                    return Err(pyo3::exceptions::PyValueError::new_err(format!(
                        "no core type {other:?}"
                    )))
                }
            })
        })
        .collect()
}

/// A type from its `WitType.core` tuple: `(kind, render, size, align,
/// extent, flat, *details)`.
fn ty_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Ty> {
    let item = |i: usize| obj.get_item(i);
    let kind: String = item(0)?.extract()?;
    let shape = match kind.as_str() {
        "list" => Shape::List(Box::new(ty_from_py(&item(6)?)?)),
        "tuple" => Shape::Tuple(
            item(6)?
                .try_iter()?
                .map(|pair| {
                    let pair = pair?;
                    Ok((
                        ty_from_py(&pair.get_item(0)?)?,
                        pair.get_item(1)?.extract()?,
                    ))
                })
                .collect::<PyResult<_>>()?,
        ),
        "record" => Shape::Record(
            item(6)?
                .try_iter()?
                .map(|field| {
                    let field = field?;
                    Ok(Field {
                        name: field.get_item(0)?.extract::<String>()?.into(),
                        ty: ty_from_py(&field.get_item(1)?)?,
                        offset: field.get_item(2)?.extract()?,
                    })
                })
                .collect::<PyResult<_>>()?,
        ),
        "flags" => Shape::Flags {
            names: item(6)?
                .extract::<Vec<String>>()?
                .into_iter()
                .map(Into::into)
                .collect(),
            words: item(7)?.extract()?,
        },
        "option" | "expected" | "variant" | "union" | "enum" => Shape::Cases {
            form: match kind.as_str() {
                "option" => Form::Option,
                "expected" => Form::Expected,
                "variant" => Form::Variant,
                "union" => Form::Union,
                _ => Form::Enum,
            },
            cases: item(6)?
                .try_iter()?
                .map(|case| {
                    let case = case?;
                    Ok(Case {
                        name: case.get_item(0)?.extract::<String>()?.into(),
                        ty: ty_from_py(&case.get_item(1)?)?,
                    })
                })
                .collect::<PyResult<_>>()?,
            tag_size: item(7)?.extract()?,
            payload_offset: item(8)?.extract()?,
            joined: flats(&item(9)?)?,
        },
        other => Shape::primitive(other).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!("no WIT type {other:?}"))
        })?,
    };
    Ok(Ty {
        shape,
        render: item(1)?.extract::<String>()?.into(),
        size: item(2)?.extract()?,
        align: item(3)?.extract()?,
        extent: item(4)?.extract()?,
        flat: flats(&item(5)?)?,
    })
}

/// One WIT function, from `WitFunction.core`.
pub struct Function {
    name: Box<str>,
    /// Each parameter's SQL name and type.
    params: Box<[(Box<str>, Ty)]>,
    // How messages name each argument (`argument x`), the result and each
    // table column: made once, not at every call.
    arguments: Box<[String]>,
    result_what: String,
    columns: Box<[String]>,
    result: Ty,
    /// The parameters as one tuple, when they travel through memory.
    indirect: Option<Ty>,
    /// Whether the result comes back through the return area.
    retptr: bool,
}

impl Function {
    pub fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut function = Self {
            name: obj.get_item(0)?.extract::<String>()?.into(),
            arguments: Box::default(),
            result_what: String::new(),
            columns: Box::default(),
            params: obj
                .get_item(1)?
                .try_iter()?
                .map(|param| {
                    let param = param?;
                    Ok((
                        param.get_item(0)?.extract::<String>()?.into(),
                        ty_from_py(&param.get_item(1)?)?,
                    ))
                })
                .collect::<PyResult<_>>()?,
            result: ty_from_py(&obj.get_item(2)?)?,
            indirect: {
                let tuple = obj.get_item(3)?;
                if tuple.is_none() {
                    None
                } else {
                    Some(ty_from_py(&tuple)?)
                }
            },
            retptr: obj.get_item(4)?.extract()?,
        };
        let name = &function.name;
        function.arguments = function
            .params
            .iter()
            .map(|(param, _)| format!("argument {param}"))
            .collect();
        function.result_what = format!("{name} result");
        function.columns = function
            .table()
            .unwrap_or_default()
            .iter()
            .map(|f| format!("{name} column {}", f.name))
            .collect();
        Ok(function)
    }

    /// The export's core signature (wit-bindgen 0.2's flattening).
    fn core_signature(&self) -> (Vec<NumType>, Vec<NumType>) {
        let num = |f: &Flat| match f {
            Flat::I32 => NumType::I32,
            Flat::I64 => NumType::I64,
            Flat::F32 => NumType::F32,
            Flat::F64 => NumType::F64,
        };
        let params = if self.indirect.is_some() {
            vec![NumType::I32]
        } else {
            self.params
                .iter()
                .flat_map(|(_, t)| t.flat.iter().map(num))
                .collect()
        };
        let results = if self.retptr {
            vec![NumType::I32]
        } else {
            self.result.flat.iter().map(num).collect()
        };
        (params, results)
    }

    /// The record a table result's rows are (under an `expected`'s ok and
    /// an option), if the result is a table.
    fn table(&self) -> Option<&[Field]> {
        let mut ty = &self.result;
        if let Shape::Cases {
            form: Form::Expected,
            cases,
            ..
        } = &ty.shape
        {
            ty = &cases[0].ty;
        }
        if let Some(payload) = ty.option_payload() {
            ty = payload;
        }
        match &ty.shape {
            Shape::List(element) => match &element.shape {
                Shape::Record(fields) => Some(fields),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Whether a value of `ty` holds a buffer (a string or a list).
fn has_buffers(ty: &Ty) -> bool {
    match &ty.shape {
        Shape::String | Shape::List(_) => true,
        Shape::Tuple(items) => items.iter().any(|(t, _)| has_buffers(t)),
        Shape::Record(fields) => fields.iter().any(|f| has_buffers(&f.ty)),
        Shape::Cases { cases, .. } => cases.iter().any(|c| has_buffers(&c.ty)),
        _ => false,
    }
}

// =============================================================================
// Guest memory: lowering and lifting, as singlestore/abi.py did
// =============================================================================

/// A flat core value on its way in or out: integers by the value they
/// stand for (an i32 slot may carry a u32), cast to the slot's width when
/// it becomes a raw value.
#[derive(Clone, Copy)]
enum FlatVal {
    Int(i128),
    F32(f32),
    F64(f64),
}

impl FlatVal {
    #[allow(clippy::cast_possible_truncation)] // a slot keeps its low bits
    fn raw(self, slot: Flat) -> ValRaw {
        match (self, slot) {
            (Self::Int(x), Flat::I32) => ValRaw::i32(x as i32),
            (Self::Int(x), _) => ValRaw::i64(x as i64),
            (Self::F32(x), _) => ValRaw::f32(x.to_bits()),
            (Self::F64(x), _) => ValRaw::f64(x.to_bits()),
        }
    }

    fn from_raw(raw: ValRaw, slot: Flat) -> Self {
        match slot {
            Flat::I32 => Self::Int(i128::from(raw.get_i32())),
            Flat::I64 => Self::Int(i128::from(raw.get_i64())),
            Flat::F32 => Self::F32(f32::from_bits(raw.get_f32())),
            Flat::F64 => Self::F64(f64::from_bits(raw.get_f64())),
        }
    }

    fn int(self) -> i128 {
        match self {
            Self::Int(x) => x,
            // Never for a well-typed slot; as a number it is harmless.
            Self::F32(x) => i128::from(x.to_bits()),
            Self::F64(x) => i128::from(x.to_bits()),
        }
    }
}

/// A case's flat value in its joined slot (abi.rs `cast`, lowering).
#[allow(clippy::cast_possible_wrap)] // bit casts
fn widen(value: FlatVal, actual: Flat, joined: Flat) -> FlatVal {
    if actual == joined {
        return value;
    }
    match (value, joined) {
        (FlatVal::F32(x), Flat::I32) => FlatVal::Int(i128::from(x.to_bits() as i32)),
        (FlatVal::F32(x), _) => FlatVal::Int(i128::from(x.to_bits())),
        (FlatVal::F64(x), _) => FlatVal::Int(i128::from(x.to_bits() as i64)),
        (int, _) => int, // i32 to i64: the same number
    }
}

/// A joined slot's value as the case's own flat type (lifting).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // bit casts
fn narrow(value: FlatVal, joined: Flat, actual: Flat) -> FlatVal {
    if actual == joined {
        return value;
    }
    let bits = value.int();
    match actual {
        Flat::I32 => FlatVal::Int(i128::from(bits as i32)),
        Flat::F32 => FlatVal::F32(f32::from_bits(bits as u32)),
        Flat::F64 => FlatVal::F64(f64::from_bits(bits as u64)),
        Flat::I64 => value,
    }
}

/// The bytes storing `value` touches from its start (at least its size).
fn used_extent(ty: &Ty, value: &Val) -> usize {
    if ty.extent == ty.size {
        return ty.size;
    }
    match (&ty.shape, value) {
        (Shape::Tuple(items), Val::Tuple(values)) => items
            .iter()
            .zip(values)
            .map(|((t, o), v)| o + used_extent(t, v))
            .fold(ty.size, usize::max),
        (Shape::Record(fields), Val::Tuple(values)) => fields
            .iter()
            .zip(values)
            .map(|(f, v)| f.offset + used_extent(&f.ty, v))
            .fold(ty.size, usize::max),
        (
            Shape::Cases {
                cases,
                payload_offset,
                ..
            },
            Val::Case(index, payload),
        ) => ty
            .size
            .max(payload_offset + used_extent(&cases[*index as usize].ty, payload)),
        _ => ty.size,
    }
}

/// The bytes `count` elements touch: the last one may reach its extent.
fn span_of(element: &Ty, count: usize) -> usize {
    if count == 0 {
        0
    } else {
        (count - 1) * element.size + element.extent
    }
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // in range: checked
fn put_int(buf: &mut [u8], off: usize, size: usize, value: i128) {
    let bytes = (value as u64).to_le_bytes();
    put(buf, off, &bytes[..size]);
}

fn tag(data: &[u8], off: usize, size: usize) -> u32 {
    let mut word = [0u8; 4];
    word[..size].copy_from_slice(&data[off..off + size]);
    u32::from_le_bytes(word)
}

/// Why a run failed before the guest's own failure is classified.
enum Fail {
    Call(CallError),
    /// As singlestore/abi.py raised it: `kind` "abi" or "memory", with
    /// the message.
    Worded(&'static str, String),
    /// More than `max_result_bytes` read back.
    ResultLimit,
    /// A returned string that is not UTF-8 (Python's decoder says why).
    NotUtf8(Vec<u8>),
}

impl From<CallError> for Fail {
    fn from(error: CallError) -> Self {
        Self::Call(error)
    }
}

fn abi(message: String) -> Fail {
    Fail::Worded("abi", message)
}

/// What a buffer is, as messages name it: formatted only when one does.
#[derive(Clone, Copy)]
enum What<'a> {
    Named(&'static str),
    /// `a list<...>`.
    List(&'a Ty),
    /// `a returned list<...>`.
    Returned(&'a Ty),
    /// The parameters of a function, as one tuple.
    Params(&'a str),
}

impl std::fmt::Display for What<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(text) => f.write_str(text),
            Self::List(ty) => write!(f, "a {}", ty.render),
            Self::Returned(ty) => write!(f, "a returned {}", ty.render),
            Self::Params(name) => write!(f, "the parameters of {name}"),
        }
    }
}

/// One call's run on an instance: the allocations, the export, the frees.
struct Run<'a> {
    canonical: &'a Canonical,
    instance: &'a mut Pinned,
    memory: Option<Memory>,
}

impl Run<'_> {
    fn memory(&self) -> Result<Memory, Fail> {
        self.memory
            .ok_or_else(|| abi("the module exports no memory".into()))
    }

    fn memory_bytes(&self) -> Result<usize, Fail> {
        Ok(self.instance.memory_size(self.memory()?))
    }

    fn raw(&mut self, export: &Export, slots: &mut [ValRaw]) -> Result<(), Fail> {
        Ok(self.instance.call_armed(export, slots)?)
    }

    /// `canonical_abi_realloc(0, 0, align, size)`, called for every buffer
    /// (even an empty one, as the hosts of the time did): the pointer.
    fn alloc(&mut self, align: usize, size: usize, what: What<'_>) -> Result<usize, Fail> {
        let realloc = self
            .canonical
            .realloc
            .as_ref()
            .ok_or_else(|| abi(format!("the module must export {REALLOC}")))?;
        let (Ok(align32), Ok(size32)) = (u32::try_from(align), u32::try_from(size)) else {
            return Err(abi(format!("{what} of {size} bytes")));
        };
        let mut slots = [
            ValRaw::i32(0),
            ValRaw::i32(0),
            ValRaw::u32(align32),
            ValRaw::u32(size32),
        ];
        self.raw(realloc, &mut slots)?;
        let ptr = slots[0].get_u32() as usize;
        if size > 0 && ptr == 0 {
            return Err(Fail::Worded(
                "memory",
                format!(
                    "{REALLOC} returned 0 for {what} ({size} bytes): the guest is out of memory"
                ),
            ));
        }
        let memory = self.memory_bytes()?;
        if ptr + size > memory {
            return Err(abi(format!(
                "{REALLOC} returned {ptr:#x} for {what} ({size} bytes), outside linear \
                 memory ({memory} bytes)"
            )));
        }
        Ok(ptr)
    }

    /// Fills a buffer `alloc` returned earlier (other allocations since may
    /// have grown memory), checked again: with the variant quirk the data
    /// may run past the allocation, as the generated stores did.
    fn write(&mut self, ptr: usize, data: &[u8], what: What<'_>) -> Result<(), Fail> {
        if data.is_empty() {
            return Ok(());
        }
        let memory = self.memory()?;
        let size = self.instance.memory_size(memory);
        if ptr + data.len() > size || !self.instance.write(memory, ptr, data) {
            return Err(abi(format!(
                "{what}: {} bytes at {ptr:#x} are outside linear memory ({size} bytes)",
                data.len()
            )));
        }
        Ok(())
    }

    fn lower_bytes(
        &mut self,
        data: &[u8],
        align: usize,
        what: What<'_>,
    ) -> Result<[usize; 2], Fail> {
        let ptr = self.alloc(align, data.len(), what)?;
        self.write(ptr, data, what)?;
        Ok([ptr, data.len()])
    }

    fn lower_list(&mut self, ty: &Ty, element: &Ty, value: &Val) -> Result<[usize; 2], Fail> {
        let items = match value {
            Val::Bytes(data) => return self.lower_bytes(data, 1, What::Named("a list<u8>")),
            Val::List(items) => items,
            _ => return Err(abi(format!("a value that is not a {}", ty.render))),
        };
        let count = items.len();
        let what = What::List(ty);
        // The element array first, then what its elements point to.
        let ptr = self.alloc(element.align, count * element.size, what)?;
        let mut buf = vec![0u8; span_of(element, count)];
        for (i, item) in items.iter().enumerate() {
            self.store(element, item, &mut buf, i * element.size)?;
        }
        if let Some(last) = items.last() {
            // Only what the stores covered: past the allocation (the
            // variant quirk) the generated code wrote the last element's
            // payload and nothing more.
            buf.truncate((count - 1) * element.size + used_extent(element, last));
        }
        self.write(ptr, &buf, what)?;
        Ok([ptr, count])
    }

    fn lower_params(&mut self, args: &[Val]) -> Result<Small<FlatVal>, Fail> {
        let function = &self.canonical.function;
        let mut flat = Small::new();
        if let Some(layout) = &function.indirect {
            // More than 16 flat values: one tuple in guest memory, which
            // the guest frees.
            let what = What::Params(&function.name);
            let ptr = self.alloc(layout.align, layout.size, what)?;
            let mut buf = vec![0u8; layout.extent];
            let Shape::Tuple(items) = &layout.shape else {
                return Err(abi(format!("{what}: not a tuple")));
            };
            for ((ty, offset), value) in items.iter().zip(args) {
                self.store(ty, value, &mut buf, *offset)?;
            }
            let values = Val::Tuple(args.to_vec());
            buf.truncate(used_extent(layout, &values));
            self.write(ptr, &buf, what)?;
            flat.push(FlatVal::Int(ptr as i128));
            return Ok(flat);
        }
        for ((_, ty), value) in function.params.iter().zip(args) {
            self.lower_flat(ty, value, &mut flat)?;
        }
        Ok(flat)
    }

    fn lower_flat(&mut self, ty: &Ty, value: &Val, out: &mut Small<FlatVal>) -> Result<(), Fail> {
        match (&ty.shape, value) {
            (Shape::Unit, _) => {}
            (Shape::String, Val::String(s)) => {
                let [ptr, len] = self.lower_bytes(s.as_bytes(), 1, What::Named("a string"))?;
                out.extend([FlatVal::Int(ptr as i128), FlatVal::Int(len as i128)]);
            }
            (Shape::Char, Val::Char(c)) => out.push(FlatVal::Int(i128::from(u32::from(*c)))),
            (Shape::Bool, Val::Bool(b)) => out.push(FlatVal::Int(i128::from(*b))),
            (Shape::Int(_), Val::Int(x)) => out.push(FlatVal::Int(*x)),
            (Shape::F32, Val::F32(x)) => out.push(FlatVal::F32(*x)),
            (Shape::F64, Val::F64(x)) => out.push(FlatVal::F64(*x)),
            (Shape::List(element), _) => {
                let [ptr, count] = self.lower_list(ty, element, value)?;
                out.extend([FlatVal::Int(ptr as i128), FlatVal::Int(count as i128)]);
            }
            (Shape::Tuple(items), Val::Tuple(values)) => {
                for ((t, _), v) in items.iter().zip(values) {
                    self.lower_flat(t, v, out)?;
                }
            }
            (Shape::Record(fields), Val::Tuple(values)) => {
                for (f, v) in fields.iter().zip(values) {
                    self.lower_flat(&f.ty, v, out)?;
                }
            }
            (Shape::Flags { .. }, Val::Flags(words)) => {
                out.extend(words.iter().map(|w| FlatVal::Int(i128::from(*w))));
            }
            (Shape::Cases { cases, joined, .. }, Val::Case(index, payload)) => {
                out.push(FlatVal::Int(i128::from(*index)));
                let case = &cases[*index as usize].ty;
                let mut part = Small::new();
                self.lower_flat(case, payload, &mut part)?;
                // Each slot of the case in the joined type, then zeros for
                // the slots this case does not use.
                for ((v, actual), slot) in part.iter().zip(case.flat.iter()).zip(joined.iter()) {
                    out.push(widen(*v, *actual, *slot));
                }
                out.extend(
                    joined[part.len().min(joined.len())..]
                        .iter()
                        .map(|j| match j {
                            Flat::F32 => FlatVal::F32(0.0),
                            Flat::F64 => FlatVal::F64(0.0),
                            _ => FlatVal::Int(0),
                        }),
                );
            }
            _ => return Err(abi(format!("a value that is not a {}", ty.render))),
        }
        Ok(())
    }

    /// `value` at `off` of `buf` (a guest buffer being built), allocating
    /// what it points to (write_to_memory in abi.rs).
    fn store(&mut self, ty: &Ty, value: &Val, buf: &mut [u8], off: usize) -> Result<(), Fail> {
        #[allow(clippy::cast_possible_truncation)] // pointers of a 32-bit memory
        let pair = |buf: &mut [u8], [a, b]: [usize; 2]| {
            put(buf, off, &(a as u32).to_le_bytes());
            put(buf, off + 4, &(b as u32).to_le_bytes());
        };
        match (&ty.shape, value) {
            (Shape::Unit, _) => {}
            (Shape::String, Val::String(s)) => {
                let cell = self.lower_bytes(s.as_bytes(), 1, What::Named("a string"))?;
                pair(buf, cell);
            }
            (Shape::Char, Val::Char(c)) => put(buf, off, &u32::from(*c).to_le_bytes()),
            (Shape::Bool, Val::Bool(b)) => put(buf, off, &[u8::from(*b)]),
            (Shape::Int(_), Val::Int(x)) => put_int(buf, off, ty.size, *x),
            (Shape::F32, Val::F32(x)) => put(buf, off, &x.to_le_bytes()),
            (Shape::F64, Val::F64(x)) => put(buf, off, &x.to_le_bytes()),
            (Shape::List(element), _) => {
                let cell = self.lower_list(ty, element, value)?;
                pair(buf, cell);
            }
            (Shape::Tuple(items), Val::Tuple(values)) => {
                for ((t, o), v) in items.iter().zip(values) {
                    self.store(t, v, buf, off + o)?;
                }
            }
            (Shape::Record(fields), Val::Tuple(values)) => {
                for (f, v) in fields.iter().zip(values) {
                    self.store(&f.ty, v, buf, off + f.offset)?;
                }
            }
            (Shape::Flags { words, .. }, Val::Flags(bits)) => {
                if *words == 1 {
                    put_int(buf, off, ty.size, i128::from(bits[0]));
                } else {
                    for (i, w) in bits.iter().enumerate() {
                        put(buf, off + 4 * i, &w.to_le_bytes());
                    }
                }
            }
            (
                Shape::Cases {
                    cases,
                    tag_size,
                    payload_offset,
                    ..
                },
                Val::Case(index, payload),
            ) => {
                put_int(buf, off, *tag_size, i128::from(*index));
                self.store(
                    &cases[*index as usize].ty,
                    payload,
                    buf,
                    off + payload_offset,
                )?;
            }
            _ => return Err(abi(format!("a value that is not a {}", ty.render))),
        }
        Ok(())
    }
}

/// Reads one call's result out of guest memory and collects the buffers it
/// owns, in the order wit-bindgen's host code freed them.
///
/// Nothing runs in the guest while it reads, so memory cannot move; every
/// pointer and length is checked against it, and the bytes read are capped
/// at `max_result_bytes` (a hostile list of a million pointers to one big
/// string must not make the host copy terabytes).
struct Lifter<'a> {
    name: &'a str,
    instance: &'a Pinned,
    memory: Option<Memory>,
    size: usize,
    budget: usize,
    owned: Small<[usize; 3]>,
}

impl Lifter<'_> {
    fn error(&self, message: &str) -> Fail {
        abi(format!("{}: {message}", self.name))
    }

    fn charge(&mut self, amount: usize) -> Result<(), Fail> {
        self.budget = self.budget.checked_sub(amount).ok_or(Fail::ResultLimit)?;
        Ok(())
    }

    fn read(&mut self, ptr: usize, len: usize, what: What<'_>) -> Result<Vec<u8>, Fail> {
        // As copy_slice did: even an empty buffer may not start past the
        // end (Rust's empty buffers point at their alignment, well inside).
        let outside = |this: &Self| {
            this.error(&format!(
                "{what} at {ptr:#x} of {len} bytes is outside linear memory ({} bytes)",
                this.size
            ))
        };
        if ptr.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(outside(self));
        }
        self.charge(len)?;
        let memory = self.memory.ok_or_else(|| outside(self))?;
        self.instance
            .read(memory, ptr, len)
            .ok_or_else(|| outside(self))
    }

    fn string(&mut self, ptr: usize, len: usize) -> Result<Val, Fail> {
        let data = self.read(ptr, len, What::Named("a returned string"))?;
        self.owned.push([ptr, len, 1]);
        String::from_utf8(data)
            .map(Val::String)
            .map_err(|e| Fail::NotUtf8(e.into_bytes()))
    }

    fn list(&mut self, ty: &Ty, element: &Ty, ptr: usize, count: usize) -> Result<Val, Fail> {
        if element.size == 0 {
            // Zero-sized elements cost a byte each: a count of four billion
            // is refused rather than looped over.
            self.charge(count)?;
        }
        let data = self.read(ptr, span_of(element, count), What::Returned(ty))?;
        let value = if ty.is_bytes() {
            Val::Bytes(data)
        } else {
            Val::List(
                (0..count)
                    .map(|i| self.load(element, &data, i * element.size))
                    .collect::<Result<_, _>>()?,
            )
        };
        // The list after what its elements own (ListLift: elements, then free).
        self.owned.push([ptr, count * element.size, element.align]);
        Ok(value)
    }

    fn check_bool(&self, value: i128) -> Result<Val, Fail> {
        match value {
            0 | 1 => Ok(Val::Bool(value == 1)),
            _ => Err(self.error(&format!("invalid bool {value} (must be 0 or 1)"))),
        }
    }

    fn check_char(&self, value: i128) -> Result<Val, Fail> {
        u32::try_from(value)
            .ok()
            .and_then(char::from_u32)
            .map(Val::Char)
            .ok_or_else(|| self.error(&format!("invalid char {value:#x}")))
    }

    fn check_int(&self, int: Int, value: i128) -> Result<Val, Fail> {
        let (lo, hi) = int.range();
        if (lo..=hi).contains(&value) {
            Ok(Val::Int(value))
        } else {
            Err(self.error(&format!("{value} is out of range for {}", int.name())))
        }
    }

    fn case(&self, ty: &Ty, count: usize, index: u32) -> Result<u32, Fail> {
        if (index as usize) < count {
            Ok(index)
        } else {
            Err(self.error(&format!("invalid discriminant {index} for {}", ty.render)))
        }
    }

    fn flags(&self, ty: &Ty, names: usize, words: Vec<u32>) -> Result<Val, Fail> {
        let beyond = words.iter().enumerate().any(|(i, w)| {
            let first = i * 32;
            let allowed = names.saturating_sub(first).min(32);
            allowed < 32 && (w >> allowed) != 0
        });
        if beyond {
            return Err(self.error(&format!(
                "flags {} has bits set beyond its {names} flags",
                ty.render
            )));
        }
        Ok(Val::Flags(words))
    }

    /// The result: from the return area, or from the flat value.
    fn result(&mut self, function: &Function, raw: Option<ValRaw>) -> Result<Val, Fail> {
        let ty = &function.result;
        if function.retptr {
            let ptr = raw.map_or(0, |r| r.get_u32() as usize);
            let data = self.read(ptr, ty.extent, What::Named("the return area"))?;
            return self.load(ty, &data, 0);
        }
        let mut values = raw
            .into_iter()
            .zip(ty.flat.iter())
            .map(|(r, f)| FlatVal::from_raw(r, *f));
        self.lift_flat(ty, &mut values)
    }

    #[allow(clippy::cast_sign_loss)] // masks of the raw bits, as abi.py's
    fn lift_flat(
        &mut self,
        ty: &Ty,
        values: &mut dyn Iterator<Item = FlatVal>,
    ) -> Result<Val, Fail> {
        let mut next = || values.next().unwrap_or(FlatVal::Int(0));
        let u32_of = |v: FlatVal| (v.int() & 0xFFFF_FFFF) as usize;
        Ok(match &ty.shape {
            Shape::Unit => Val::Unit,
            Shape::String => {
                let (ptr, len) = (u32_of(next()), u32_of(next()));
                self.string(ptr, len)?
            }
            Shape::List(element) => {
                let (ptr, count) = (u32_of(next()), u32_of(next()));
                self.list(ty, element, ptr, count)?
            }
            Shape::F32 => match next() {
                FlatVal::F32(x) => Val::F32(x),
                other => Val::F32(f32::from_bits(u32_of(other) as u32)),
            },
            Shape::F64 => match next() {
                FlatVal::F64(x) => Val::F64(x),
                other => Val::F64(f64::from_bits(other.int() as u64)),
            },
            Shape::Int(int @ (Int::S32 | Int::S64)) => {
                let raw = next().int();
                self.check_int(*int, raw)?
            }
            Shape::Int(Int::U32) => Val::Int(next().int() & 0xFFFF_FFFF),
            Shape::Int(Int::U64) => Val::Int(next().int() & 0xFFFF_FFFF_FFFF_FFFF),
            // u8, s8, u16, s16: out of range is an error, as the generated
            // host code's try_from was.
            Shape::Int(int) => {
                let raw = next().int();
                self.check_int(*int, raw)?
            }
            Shape::Char => {
                let raw = next().int() & 0xFFFF_FFFF;
                self.check_char(raw)?
            }
            Shape::Bool => {
                let raw = next().int();
                self.check_bool(raw)?
            }
            Shape::Tuple(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (t, _) in items.iter() {
                    out.push(self.lift_flat(t, values)?);
                }
                Val::Tuple(out)
            }
            Shape::Record(fields) => {
                let mut out = Vec::with_capacity(fields.len());
                for f in fields.iter() {
                    out.push(self.lift_flat(&f.ty, values)?);
                }
                Val::Tuple(out)
            }
            Shape::Flags { names, words } => {
                let words = (0..*words).map(|_| u32_of(next()) as u32).collect();
                self.flags(ty, names.len(), words)?
            }
            Shape::Cases {
                form,
                cases,
                joined,
                ..
            } => {
                let index = self.case(ty, cases.len(), u32_of(next()) as u32)?;
                let slots: Vec<FlatVal> = joined.iter().map(|_| next()).collect();
                if *form == Form::Enum {
                    return Ok(Val::Case(index, Box::new(Val::Unit)));
                }
                let payload_ty = &cases[index as usize].ty;
                let mut narrowed = slots
                    .iter()
                    .zip(joined.iter())
                    .zip(payload_ty.flat.iter())
                    .map(|((v, j), a)| narrow(*v, *j, *a));
                let payload = self.lift_flat(payload_ty, &mut narrowed)?;
                Val::Case(index, Box::new(payload))
            }
        })
    }

    /// A value stored at `off` of `data` (read_from_memory in abi.rs).
    fn load(&mut self, ty: &Ty, data: &[u8], off: usize) -> Result<Val, Fail> {
        let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
        let le = |n: usize| {
            let mut bytes = [0u8; 8];
            bytes[..n].copy_from_slice(&data[off..off + n]);
            u64::from_le_bytes(bytes)
        };
        #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)] // sign casts
        Ok(match &ty.shape {
            Shape::Unit => Val::Unit,
            Shape::String => self.string(word(off) as usize, word(off + 4) as usize)?,
            Shape::List(element) => {
                self.list(ty, element, word(off) as usize, word(off + 4) as usize)?
            }
            Shape::Bool => self.check_bool(i128::from(data[off]))?,
            Shape::Char => self.check_char(i128::from(word(off)))?,
            Shape::F32 => Val::F32(f32::from_bits(word(off))),
            Shape::F64 => Val::F64(f64::from_bits(le(8))),
            Shape::Int(int) => Val::Int(match int {
                Int::U8 | Int::U16 | Int::U32 | Int::U64 => i128::from(le(ty.size)),
                Int::S8 => i128::from(data[off] as i8),
                Int::S16 => i128::from(le(2) as u16 as i16),
                Int::S32 => i128::from(word(off) as i32),
                Int::S64 => i128::from(le(8) as i64),
            }),
            Shape::Tuple(items) => Val::Tuple(
                items
                    .iter()
                    .map(|(t, o)| self.load(t, data, off + o))
                    .collect::<Result<_, _>>()?,
            ),
            Shape::Record(fields) => Val::Tuple(
                fields
                    .iter()
                    .map(|f| self.load(&f.ty, data, off + f.offset))
                    .collect::<Result<_, _>>()?,
            ),
            Shape::Flags { names, words } => {
                let words = if *words == 1 {
                    vec![le(ty.size) as u32]
                } else {
                    (0..*words).map(|i| word(off + 4 * i)).collect()
                };
                self.flags(ty, names.len(), words)?
            }
            Shape::Cases {
                form,
                cases,
                tag_size,
                payload_offset,
                ..
            } => {
                let index = self.case(ty, cases.len(), tag(data, off, *tag_size))?;
                if *form == Form::Enum {
                    return Ok(Val::Case(index, Box::new(Val::Unit)));
                }
                let payload = self.load(&cases[index as usize].ty, data, off + payload_offset)?;
                Val::Case(index, Box::new(payload))
            }
        })
    }
}

// =============================================================================
// The function as a Numeric's target
// =============================================================================

/// What a finished run's value is for SQL, or why it is none.
enum Sqlified {
    Scalar(Sql),
    Rows(Vec<Vec<Sql>>),
}

/// Why a finished run's value fails the call (the instance is fine: every
/// buffer was freed).
enum Refused {
    /// An `err` result: the guest's own error (code, message).
    User(String, String),
    /// A value SQL cannot hold.
    Abi(String),
    /// Over `max_result_bytes` (its size).
    Held(usize),
}

/// One function, its exports prepared against the module.
pub struct Canonical {
    pool: Pool,
    function: Function,
    export: Export,
    // The flat types the export takes.
    core_params: Box<[Flat]>,
    has_result: bool,
    // Whether a call touches guest memory (buffers, the return area).
    uses_memory: bool,
    realloc: Option<Export>,
    free: Option<Export>,
    specs: Box<[Param]>,
    // The number kinds of the parameters; empty when some are buffers.
    params: Box<[Kind]>,
    // The declared result's kind, if it is a number.
    result: Option<Kind>,
    // The declared signature is not the WIT's (TEXT for JSON or the other
    // way round): results go through `hooks.canonical_result`.
    convert: bool,
    max_arg_bytes: usize,
    max_result_bytes: usize,
    tally: Arc<TallyInner>,
    fault: Py<PyAny>,
    // too_many_arg_bytes(size), invalid(message, seconds),
    // canonical_error(kind, message, seconds), not_utf8(name, data,
    // seconds), user_error(code, message, seconds),
    // canonical_result(value): see invoke.HostedHooks
    hooks: Py<PyAny>,
    // Where a WASI guest granted `stdout` logs what it writes.
    log: Option<Arc<LogTarget>>,
}

impl Canonical {
    /// `function` (a `WitFunction.core`) of `pool`'s module, taking
    /// `specs` from SQL and giving a `result` kind (None: not a number),
    /// its core signature checked here.
    ///
    /// # Errors
    ///
    /// The export, the allocator or the free function the types need is
    /// missing or of another type.
    #[allow(clippy::too_many_arguments)] // one function's whole setup
    pub fn new(
        pool: Pool,
        function: Function,
        specs: Box<[Param]>,
        result: Option<Kind>,
        convert: bool,
        max_arg_bytes: usize,
        max_result_bytes: usize,
        tally: Arc<TallyInner>,
        fault: Py<PyAny>,
        hooks: Py<PyAny>,
        log: Option<Arc<LogTarget>>,
    ) -> Result<Self, CallError> {
        let module = pool.module().clone();
        let (params, results) = function.core_signature();
        let export = Export::new(&module, &function.name, &params, &results)?;
        let buffers_in =
            function.indirect.is_some() || function.params.iter().any(|(_, t)| has_buffers(t));
        let buffers_out = has_buffers(&function.result);
        let i32s = |n: usize| vec![NumType::I32; n];
        let realloc = buffers_in
            .then(|| Export::new(&module, REALLOC, &i32s(4), &i32s(1)))
            .transpose()?;
        let free = buffers_out
            .then(|| Export::new(&module, FREE, &i32s(3), &[]))
            .transpose()?;
        let core_params = match &function.indirect {
            Some(_) => Box::new([Flat::I32]) as Box<[Flat]>,
            None => function
                .params
                .iter()
                .flat_map(|(_, t)| t.flat.iter().copied())
                .collect(),
        };
        Ok(Self {
            pool,
            core_params,
            has_result: !results.is_empty(),
            uses_memory: buffers_in || buffers_out || function.retptr,
            function,
            export,
            realloc,
            free,
            params: Param::kinds(&specs).unwrap_or_default(),
            specs,
            result,
            convert,
            max_arg_bytes,
            max_result_bytes,
            tally,
            fault,
            hooks,
            log,
        })
    }

    /// The guest's lines into the procedure's log; false if they were more
    /// than `max_log_bytes`.
    fn logged(&self, lines: VecDeque<(&'static str, String)>) -> bool {
        let Some(log) = &self.log else {
            return true;
        };
        let mut bytes = 0;
        lines
            .into_iter()
            .all(|(level, line)| !matches!(log.log(&mut bytes, level, &line), Logged::OverLimit))
    }

    /// The SQL arguments as the WIT's values, every one checked before the
    /// guest is touched (a bad one leaves the instance as it was): the
    /// `InvalidArgument` message of the first that is not.
    fn arguments(&self, args: Vec<Arg>) -> Result<Small<Val>, String> {
        let params = &self.function.params;
        if args.len() != params.len() {
            return Err(format!(
                "{} takes {} argument(s), got {}",
                self.function.name,
                params.len(),
                args.len()
            ));
        }
        params
            .iter()
            .zip(args)
            .zip(self.function.arguments.iter())
            .map(|(((_, ty), arg), what)| {
                // A string or a byte list moves into the value, uncopied.
                let arg = match (&ty.shape, arg) {
                    (Shape::String, Arg::Text(bytes)) => match String::from_utf8(bytes) {
                        Ok(text) => return Ok(Val::String(text)),
                        Err(e) => Arg::Text(e.into_bytes()),
                    },
                    (_, Arg::Blob(bytes)) if ty.is_bytes() => return Ok(Val::Bytes(bytes)),
                    (_, arg) => arg,
                };
                if arg == Arg::Null && !ty.is_option() {
                    return Err(format!("{what} may not be NULL"));
                }
                values::from_sql(ty, &arg, what)
            })
            .collect()
    }

    /// The whole run on `instance`: buffers in, the export, the result
    /// lifted and the buffers it owns freed.
    fn body(&self, instance: &mut Pinned, args: &[Val]) -> Result<Val, Fail> {
        // Looked up by name once a call, not at every access; not at all for
        // a function of numbers alone.
        let memory = if self.uses_memory {
            instance.memory()
        } else {
            None
        };
        let flat = Run {
            canonical: self,
            instance: &mut *instance,
            memory,
        }
        .lower_params(args)?;
        // At most 16 flat parameters (more travel as one pointer) and one
        // flat result: the slots fit on the stack.
        let mut slots = [ValRaw::i64(0); MAX_SLOTS];
        for ((slot, v), f) in slots.iter_mut().zip(&flat).zip(self.core_params.iter()) {
            *slot = v.raw(*f);
        }
        let slots = &mut slots[..self.export.slots().clamp(1, MAX_SLOTS)];
        instance.call_armed(&self.export, slots)?;
        let raw = self.has_result.then(|| slots[0]);
        let mut lifter = Lifter {
            name: &self.function.name,
            instance: &*instance,
            memory,
            size: memory.map_or(0, |m| instance.memory_size(m)),
            budget: self.max_result_bytes,
            owned: Small::new(),
        };
        let value = lifter.result(&self.function, raw)?;
        let owned = std::mem::take(&mut lifter.owned);
        if !owned.is_empty() {
            let free = self
                .free
                .as_ref()
                .ok_or_else(|| abi(format!("the module must export {FREE}")))?;
            #[allow(clippy::cast_possible_truncation)] // all from u32 words
            for [ptr, size, align] in owned {
                let mut slots = [
                    ValRaw::u32(ptr as u32),
                    ValRaw::u32(size as u32),
                    ValRaw::u32(align as u32),
                ];
                instance.call_armed(free, &mut slots)?;
            }
        }
        Ok(value)
    }

    /// The lifted result as SQL's: an `err` fails the call, a table's rows
    /// each a row, held to `max_result_bytes` as `invoke.held` holds it.
    fn sqlify(&self, value: Val) -> Result<Sqlified, Refused> {
        let name = &self.function.name;
        let mut ty = &self.function.result;
        let mut value = value;
        if let Shape::Cases {
            form: Form::Expected,
            cases,
            ..
        } = &ty.shape
        {
            let Val::Case(index, payload) = value else {
                return Err(Refused::Abi(format!("{name}: not an expected")));
            };
            if index == 1 {
                let (code, message) = values::guest_error(&cases[1].ty, &payload);
                return Err(Refused::User(code, message));
            }
            ty = &cases[0].ty;
            value = *payload;
        }
        let sqlified = if let Some(fields) = self.function.table() {
            let rows = match value {
                Val::List(rows) => rows,
                _ => Vec::new(), // an option's none: no rows
            };
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let Val::Tuple(cells) = row else {
                    return Err(Refused::Abi(format!("{name}: a row is not a record")));
                };
                out.push(
                    fields
                        .iter()
                        .zip(cells)
                        .zip(self.function.columns.iter())
                        .map(|((f, cell), what)| values::to_sql(&f.ty, cell, what))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(Refused::Abi)?,
                );
            }
            Sqlified::Rows(out)
        } else {
            Sqlified::Scalar(
                values::to_sql(ty, value, &self.function.result_what).map_err(Refused::Abi)?,
            )
        };
        let size = match &sqlified {
            Sqlified::Scalar(sql) => sql_bytes(sql),
            Sqlified::Rows(rows) => rows.iter().flatten().map(sql_bytes).sum(),
        };
        if size > self.max_result_bytes {
            return Err(Refused::Held(size));
        }
        Ok(sqlified)
    }

    /// The answer SQLite or Python takes.
    fn answer(&self, sqlified: Sqlified, out: &mut [ValRaw]) -> PyResult<Answer> {
        if self.convert {
            return with_gil(|py| {
                let value = self.py_value(py, sqlified)?;
                let converted = self
                    .hooks
                    .bind(py)
                    .call_method1(pyo3::intern!(py, "canonical_result"), (value,))?;
                Ok(Answer::Value(converted.unbind()))
            });
        }
        let sql = match sqlified {
            Sqlified::Scalar(sql) => sql,
            rows @ Sqlified::Rows(_) => {
                return with_gil(|py| Ok(Answer::Value(self.py_value(py, rows)?)))
            }
        };
        Ok(match (sql, self.result) {
            (Sql::Null, _) => Answer::Null,
            (Sql::Boolean(b), Some(Kind::Bool)) => {
                out[0] = ValRaw::i32(i32::from(b));
                Answer::Slot
            }
            (Sql::Integer(x), Some(Kind::I64)) => {
                out[0] = ValRaw::i64(x);
                Answer::Slot
            }
            (Sql::Integer(x), Some(Kind::I32)) => match i32::try_from(x) {
                Ok(x) => {
                    out[0] = ValRaw::i32(x);
                    Answer::Slot
                }
                Err(_) => with_gil(|py| Answer::Value(sql_to_py(py, Sql::Integer(x)))),
            },
            (Sql::Real(x), Some(Kind::F64)) => {
                out[0] = ValRaw::f64(x.to_bits());
                Answer::Slot
            }
            #[allow(clippy::cast_possible_truncation)] // an f32's value, widened by to_sql
            (Sql::Real(x), Some(Kind::F32)) => {
                out[0] = ValRaw::f32((x as f32).to_bits());
                Answer::Slot
            }
            (Sql::Text(text), _) => Answer::Text(text),
            (Sql::Blob(bytes), _) => Answer::Bytes(bytes),
            (other, _) => with_gil(|py| Answer::Value(sql_to_py(py, other))),
        })
    }

    /// A scalar as Python's value, rows as `(columns, rows)` when they are
    /// to be converted and as the rows themselves otherwise.
    fn py_value(&self, py: Python<'_>, sqlified: Sqlified) -> PyResult<Py<PyAny>> {
        Ok(match sqlified {
            Sqlified::Scalar(sql) => sql_to_py(py, sql),
            Sqlified::Rows(rows) => {
                let tuples = rows
                    .into_iter()
                    .map(|row| PyTuple::new(py, row.into_iter().map(|c| sql_to_py(py, c))))
                    .collect::<PyResult<Vec<_>>>()?;
                let rows = PyList::new(py, tuples)?;
                if !self.convert {
                    return Ok(rows.into_any().unbind());
                }
                let columns = self
                    .function
                    .table()
                    .unwrap_or_default()
                    .iter()
                    .map(|f| PyString::new(py, &f.name));
                let columns = PyList::new(py, columns)?;
                PyTuple::new(py, [columns.into_any(), rows.into_any()])?
                    .into_any()
                    .unbind()
            }
        })
    }

    /// An instance for several calls (an aggregate group's, whose state
    /// may point into it): [`call_on`](Self::call_on), then
    /// [`release`](Self::release). Any function of the module may be
    /// called on it: they share the module's pool.
    ///
    /// # Errors
    ///
    /// Instantiating failed.
    pub fn hold(&self) -> Result<Pinned, CallError> {
        self.pool.acquire()
    }

    /// `instance` back to the pool, unless a failed call poisoned it.
    pub fn release(&self, instance: Pinned) {
        if !instance.is_poisoned() {
            self.pool.release(instance);
        }
    }

    /// One call on `instance`, `started` when it was asked for; a number
    /// result into `out[0]`. A failed run poisons the instance (it may
    /// hold half a call); arguments refused before it and results refused
    /// after it (every buffer freed by then) do not. Called without the GIL.
    ///
    /// # Errors
    ///
    /// Why the call failed.
    pub fn call_on(
        &self,
        instance: &mut Pinned,
        args: Vec<Arg>,
        out: &mut [ValRaw],
        started: Instant,
    ) -> Result<Answer, Failure> {
        within_arg_bytes(&args, self.max_arg_bytes, &self.hooks)?;
        let values = self.arguments(args).map_err(|message| {
            let seconds = started.elapsed().as_secs_f64();
            hook_error(&self.hooks, "invalid", (message, seconds))
        })?;
        // One budget for the allocations, the export and the frees.
        instance.begin();
        instance.arm();
        let mut outcome = self.body(instance, &values);
        let (lines, out_of_memory) = instance.finish();
        if !self.logged(lines) && outcome.is_ok() {
            outcome = Err(Fail::Worded("log", String::new()));
        }
        let value = outcome.map_err(|fail| {
            instance.poison();
            let fail = match fail {
                Fail::Call(error) => Fail::Call(basic::out_of_memory_trap(error, out_of_memory)),
                other => other,
            };
            self.failure(fail, started.elapsed())
        })?;
        let sqlified = self
            .sqlify(value)
            .map_err(|refused| self.refused(refused, started.elapsed()))?;
        let answer = self.answer(sqlified, out).map_err(Failure::Raised)?;
        let elapsed = self.tally.time_next().then(|| started.elapsed());
        self.tally.count_call(elapsed);
        Ok(answer)
    }

    /// A run's failure as the call's: the guest's own through `fault`, the
    /// ABI's worded as singlestore/abi.py worded it.
    fn failure(&self, fail: Fail, elapsed: Duration) -> Failure {
        let seconds = elapsed.as_secs_f64();
        match fail {
            Fail::Call(error) => Failure::Call { error, elapsed },
            Fail::Worded(kind, message) => {
                hook_error(&self.hooks, "canonical_error", (kind, message, seconds))
            }
            Fail::ResultLimit => hook_error(
                &self.hooks,
                "canonical_error",
                ("result", self.function.name.to_string(), seconds),
            ),
            Fail::NotUtf8(data) => with_gil(|py| {
                hook_error(
                    &self.hooks,
                    "not_utf8",
                    (
                        self.function.name.to_string(),
                        PyBytes::new(py, &data).unbind(),
                        seconds,
                    ),
                )
            }),
        }
    }

    fn refused(&self, refused: Refused, elapsed: Duration) -> Failure {
        let seconds = elapsed.as_secs_f64();
        match refused {
            Refused::User(code, message) => {
                hook_error(&self.hooks, "user_error", (code, message, seconds))
            }
            Refused::Abi(message) => {
                hook_error(&self.hooks, "canonical_error", ("abi", message, seconds))
            }
            Refused::Held(size) => hook_error(
                &self.hooks,
                "canonical_error",
                ("held", size.to_string(), seconds),
            ),
        }
    }
}

/// What a value counts against `max_result_bytes`, as `invoke.held`
/// counts it: text and blobs their length, a number 8, NULL nothing.
fn sql_bytes(sql: &Sql) -> usize {
    match sql {
        Sql::Null => 0,
        Sql::Text(text) => text.len(),
        Sql::Blob(bytes) => bytes.len(),
        Sql::Boolean(_) | Sql::Integer(_) | Sql::Real(_) => 8,
    }
}

fn sql_to_py(py: Python<'_>, sql: Sql) -> Py<PyAny> {
    match sql {
        Sql::Null => py.None(),
        Sql::Boolean(b) => pyo3::types::PyBool::new(py, b)
            .to_owned()
            .into_any()
            .unbind(),
        Sql::Integer(x) => x.into_pyobject(py).expect("an int").into_any().unbind(),
        Sql::Real(x) => x.into_pyobject(py).expect("a float").into_any().unbind(),
        Sql::Text(text) => PyString::new(py, &text).into_any().unbind(),
        Sql::Blob(bytes) => PyBytes::new(py, &bytes).into_any().unbind(),
    }
}

impl Target for Canonical {
    fn params(&self) -> &[Kind] {
        &self.params
    }

    fn result(&self) -> Option<Kind> {
        self.result
    }

    fn slots(&self) -> usize {
        self.specs.len().max(1)
    }

    fn zeros_for_nulls(&self) -> bool {
        false
    }

    fn call_slots(&self, slots: &mut [ValRaw]) -> Result<Answer, Failure> {
        self.call_args(slot_args(&self.params, slots), slots)
    }

    fn specs(&self) -> Box<[Param]> {
        self.specs.clone()
    }

    fn call_args(&self, args: Vec<Arg>, out: &mut [ValRaw]) -> Result<Answer, Failure> {
        let started = Instant::now();
        let mut instance = self.pool.acquire().map_err(|error| Failure::Call {
            error,
            elapsed: started.elapsed(),
        })?;
        let answer = self.call_on(&mut instance, args, out, started);
        self.release(instance);
        answer
    }

    fn canonical(&self) -> Option<&Canonical> {
        Some(self)
    }

    fn exception(&self, py: Python<'_>, failure: Failure, row: Option<usize>) -> PyErr {
        failure_exception(py, &self.fault, failure, row)
    }

    fn idle_count(&self) -> usize {
        self.pool.idle_count()
    }

    fn prewarm(&self, n: usize) -> Result<(), CallError> {
        self.pool.prewarm(n)
    }

    fn instantiated_count(&self) -> usize {
        self.pool.instantiated_count()
    }
}

/// An instance a caller holds for several calls of the module's functions
/// (`Numeric.hold`): a SingleStore aggregate group's, which the state of
/// its roles may point into.
#[pyclass(module = "heliosdb_wasm._core", frozen)]
pub struct Held {
    pub instance: std::sync::Mutex<Option<Pinned>>,
}

#[pymethods]
impl Held {
    /// Whether a failed call left the instance unfit for more (it is gone).
    #[getter]
    fn poisoned(&self) -> bool {
        self.instance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_none_or(Pinned::is_poisoned)
    }
}

/// `value` (an SQL value) as an argument of WIT type `ty` (its
/// `WitType.core`) takes it, back as the SQL value it stands for: what an
/// aggregate's row is checked with before the core runs it (`what` names
/// the argument). A `ValueError` carries the `InvalidArgument` message.
#[pyfunction]
pub fn canonical_argument(
    py: Python<'_>,
    ty: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    what: &str,
) -> PyResult<Py<PyAny>> {
    let ty = ty_from_py(ty)?;
    let arg = if value.is_none() {
        Arg::Null
    } else if let Ok(b) = value.cast::<pyo3::types::PyBool>() {
        Arg::Boolean(b.is_true())
    } else if let Ok(x) = value.extract::<i64>() {
        Arg::Integer(x)
    } else if let Ok(x) = value.cast::<pyo3::types::PyFloat>() {
        Arg::Real(x.value())
    } else if let Ok(text) = value.cast::<PyString>() {
        Arg::Text(text.to_str()?.as_bytes().to_vec())
    } else if let Ok(bytes) = value.cast::<PyBytes>() {
        Arg::Blob(bytes.as_bytes().to_vec())
    } else {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{what}: an SQL value cannot be a {}",
            value.get_type().name()?
        )));
    };
    let val = values::from_sql(&ty, &arg, what).map_err(pyo3::exceptions::PyValueError::new_err)?;
    let sql = values::to_sql(&ty, val, what).map_err(pyo3::exceptions::PyValueError::new_err)?;
    Ok(sql_to_py(py, sql))
}
