//! A WIT type of wit-bindgen 0.2's dialect and a value of one.
//!
//! The layout (sizes, alignments, extents, offsets, joined flat slots) is
//! not computed here: `singlestore/wit.py` owns wit-parser's `SizeAlign`
//! rules of the time, quirks included, and hands each type over with its
//! numbers (`WitType.core()`), so the two can never disagree.

/// A core wasm value type, as a flat slot holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flat {
    I32,
    I64,
    F32,
    F64,
}

/// An integer type of the WIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int {
    U8,
    S8,
    U16,
    S16,
    U32,
    S32,
    U64,
    S64,
}

impl Int {
    /// Its WIT name (`u8` .. `s64`).
    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "u8",
            Self::S8 => "s8",
            Self::U16 => "u16",
            Self::S16 => "s16",
            Self::U32 => "u32",
            Self::S32 => "s32",
            Self::U64 => "u64",
            Self::S64 => "s64",
        }
    }

    /// The smallest and largest value it holds.
    pub fn range(self) -> (i128, i128) {
        match self {
            Self::U8 => (0, i128::from(u8::MAX)),
            Self::S8 => (i128::from(i8::MIN), i128::from(i8::MAX)),
            Self::U16 => (0, i128::from(u16::MAX)),
            Self::S16 => (i128::from(i16::MIN), i128::from(i16::MAX)),
            Self::U32 => (0, i128::from(u32::MAX)),
            Self::S32 => (i128::from(i32::MIN), i128::from(i32::MAX)),
            Self::U64 => (0, i128::from(u64::MAX)),
            Self::S64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
        }
    }

    /// The type of a WIT name, if it is an integer's.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "u8" => Self::U8,
            "s8" => Self::S8,
            "u16" => Self::U16,
            "s16" => Self::S16,
            "u32" => Self::U32,
            "s32" => Self::S32,
            "u64" => Self::U64,
            "s64" => Self::S64,
            _ => return None,
        })
    }
}

/// Which of the types with cases (`_Cases` in wit.py) a [`Shape::Cases`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `option<T>`: cases `none` (no payload) and `some`.
    Option,
    /// `expected<T, E>`: cases `ok` and `err`.
    Expected,
    Variant,
    /// Cases named by their index (`"0"`, `"1"`, ...).
    Union,
    /// Cases without payloads (each a unit).
    Enum,
}

/// A record's field.
#[derive(Debug, Clone)]
pub struct Field {
    /// Its SQL spelling (hyphens as underscores), as JSON keys and table
    /// columns give it.
    pub name: Box<str>,
    pub ty: Ty,
    /// From the record's start.
    pub offset: usize,
}

/// A case of a variant, union, option, expected or enum.
#[derive(Debug, Clone)]
pub struct Case {
    /// `case_name(i)` of wit.py: its SQL spelling (`none`/`some`, `ok`/`err`,
    /// the index of a union's case).
    pub name: Box<str>,
    /// Its payload (`unit` for none).
    pub ty: Ty,
}

/// What a type is.
#[derive(Debug, Clone)]
pub enum Shape {
    Unit,
    Bool,
    Int(Int),
    F32,
    F64,
    Char,
    String,
    List(Box<Ty>),
    /// Each item with its offset.
    Tuple(Box<[(Ty, usize)]>),
    Record(Box<[Field]>),
    Flags {
        /// Each flag's SQL spelling, bit 0 first.
        names: Box<[Box<str>]>,
        /// Flat i32 slots; in memory one u8/u16 (up to 16 flags) or as many
        /// u32 words.
        words: usize,
    },
    Cases {
        form: Form,
        cases: Box<[Case]>,
        /// The discriminant's bytes in memory (1, 2 or 4).
        tag_size: usize,
        /// Where every case's payload sits.
        payload_offset: usize,
        /// The payload slots the cases share when flat.
        joined: Box<[Flat]>,
    },
}

impl Shape {
    /// A primitive type by its WIT name (`unit`, `bool`, `u8`..`s64`,
    /// `float32`, `float64`, `char`, `string`).
    pub fn primitive(name: &str) -> Option<Self> {
        Some(match name {
            "unit" => Self::Unit,
            "bool" => Self::Bool,
            "float32" => Self::F32,
            "float64" => Self::F64,
            "char" => Self::Char,
            "string" => Self::String,
            other => Self::Int(Int::parse(other)?),
        })
    }
}

/// A WIT type with its layout.
#[derive(Debug, Clone)]
pub struct Ty {
    pub shape: Shape,
    /// `render()` of wit.py: `option<s32>`, a record's or variant's name.
    pub render: Box<str>,
    pub size: usize,
    pub align: usize,
    /// The bytes from its start a stored value may touch (the variant
    /// quirk may put a payload past `size`).
    pub extent: usize,
    /// Its flat core values.
    pub flat: Box<[Flat]>,
}

impl Ty {
    /// Whether it is `list<u8>` (a BLOB in SQL, bytes in guest memory).
    pub fn is_bytes(&self) -> bool {
        matches!(&self.shape, Shape::List(e) if matches!(e.shape, Shape::Int(Int::U8)))
    }

    /// Whether it is `option<T>`.
    pub fn is_option(&self) -> bool {
        matches!(
            self.shape,
            Shape::Cases {
                form: Form::Option,
                ..
            }
        )
    }

    /// The payload of an `option<T>`.
    pub fn option_payload(&self) -> Option<&Ty> {
        match &self.shape {
            Shape::Cases {
                form: Form::Option,
                cases,
                ..
            } => Some(&cases[1].ty),
            _ => None,
        }
    }
}

/// A WIT value, of the [`Ty`] it was made for or lifted as.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// `unit`, a payload-less case's payload.
    Unit,
    Bool(bool),
    /// Any integer type's, inside its range.
    Int(i128),
    F32(f32),
    F64(f64),
    Char(char),
    String(String),
    /// A `list<u8>`.
    Bytes(Vec<u8>),
    List(Vec<Val>),
    /// A tuple's items or a record's fields, in order.
    Tuple(Vec<Val>),
    /// The flag bits, 32 to a word, word 0 holding flags 0..32.
    Flags(Vec<u32>),
    /// A case (an option's none is case 0 with `Unit`, an enum's case
    /// carries `Unit`).
    Case(u32, Box<Val>),
}
