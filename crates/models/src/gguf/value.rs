//! GGUF metadata values, borrowed from the parsed header: scalars are copied out, strings and arrays are
//! views of the header's bytes and are decoded on access, so a parsed header holds each value only once.

use std::borrow::Cow;

/// GGUF's value type ids.
pub(super) mod kind {
    pub const U8: u8 = 0;
    pub const I8: u8 = 1;
    pub const U16: u8 = 2;
    pub const I16: u8 = 3;
    pub const U32: u8 = 4;
    pub const I32: u8 = 5;
    pub const F32: u8 = 6;
    pub const BOOL: u8 = 7;
    pub const STRING: u8 = 8;
    pub const ARRAY: u8 = 9;
    pub const U64: u8 = 10;
    pub const I64: u8 = 11;
    pub const F64: u8 = 12;
}

/// Bytes of one value of a fixed-size type; `None` for strings, arrays and unknown ids.
pub(super) fn width(kind: u8) -> Option<u64> {
    match kind {
        kind::U8 | kind::I8 | kind::BOOL => Some(1),
        kind::U16 | kind::I16 => Some(2),
        kind::U32 | kind::I32 | kind::F32 => Some(4),
        kind::U64 | kind::I64 | kind::F64 => Some(8),
        _ => None,
    }
}

/// One metadata value.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(&'a str),
    Array(Array<'a>),
}

/// A metadata array of one element type, as stored: fixed-size elements little-endian end to end, or
/// strings each after its `u32` length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Array<'a> {
    element: u8,
    len: usize,
    bytes: &'a [u8],
}

/// `N` little-endian bytes.
fn le<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    bytes.try_into().ok()
}

impl<'a> Value<'a> {
    /// The value of type `kind` stored in `bytes` by the header parser; `None` if they do not hold one.
    pub(super) fn decode(kind: u8, bytes: &'a [u8]) -> Option<Self> {
        Some(match kind {
            kind::U8 => Self::U8(u8::from_le_bytes(le(bytes)?)),
            kind::I8 => Self::I8(i8::from_le_bytes(le(bytes)?)),
            kind::U16 => Self::U16(u16::from_le_bytes(le(bytes)?)),
            kind::I16 => Self::I16(i16::from_le_bytes(le(bytes)?)),
            kind::U32 => Self::U32(u32::from_le_bytes(le(bytes)?)),
            kind::I32 => Self::I32(i32::from_le_bytes(le(bytes)?)),
            kind::F32 => Self::F32(f32::from_le_bytes(le(bytes)?)),
            kind::BOOL => Self::Bool(u8::from_le_bytes(le(bytes)?) != 0),
            kind::U64 => Self::U64(u64::from_le_bytes(le(bytes)?)),
            kind::I64 => Self::I64(i64::from_le_bytes(le(bytes)?)),
            kind::F64 => Self::F64(f64::from_le_bytes(le(bytes)?)),
            kind::STRING => Self::String(std::str::from_utf8(bytes).ok()?),
            kind::ARRAY => {
                let (head, elements) = bytes.split_at_checked(5)?;
                let len = u32::from_le_bytes(le(&head[1..])?) as usize;
                Self::Array(Array { element: head[0], len, bytes: elements })
            }
            _ => return None,
        })
    }

    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(x) => Some(x.into()),
            Self::U16(x) => Some(x.into()),
            Self::U32(x) => Some(x.into()),
            Self::U64(x) => Some(x),
            Self::I8(x) => u64::try_from(x).ok(),
            Self::I16(x) => u64::try_from(x).ok(),
            Self::I32(x) => u64::try_from(x).ok(),
            Self::I64(x) => u64::try_from(x).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Self::F32(x) => Some(x),
            Self::F64(x) => Some(x as f32),
            _ => self.as_u64().map(|x| x as f32),
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) | Self::I8(_) | Self::U16(_) | Self::I16(_) => "small integer",
            Self::U32(_) | Self::I32(_) | Self::U64(_) | Self::I64(_) => "integer",
            Self::F32(_) | Self::F64(_) => "float",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
        }
    }
}

impl<'a> Array<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements as values, if they have a fixed size (not strings).
    fn scalars(&self) -> Option<impl Iterator<Item = Value<'a>> + 'a> {
        let (element, width) = (self.element, width(self.element)? as usize);
        Some(self.bytes.chunks_exact(width).filter_map(move |b| Value::decode(element, b)))
    }

    /// Integer elements as `i64`; `None` for arrays of other types (or u64 values past `i64::MAX`).
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        let integer = |v: Value<'_>| match v {
            Value::U8(x) => Some(x.into()),
            Value::I8(x) => Some(x.into()),
            Value::U16(x) => Some(x.into()),
            Value::I16(x) => Some(x.into()),
            Value::U32(x) => Some(x.into()),
            Value::I32(x) => Some(x.into()),
            Value::I64(x) => Some(x),
            Value::U64(x) => i64::try_from(x).ok(),
            _ => None,
        };
        self.scalars()?.map(integer).collect()
    }

    /// Numeric elements as `f32`.
    pub fn to_f32s(&self) -> Option<Vec<f32>> {
        match self.element {
            kind::F32 | kind::F64 => self.scalars()?.map(|v| v.as_f32()).collect(),
            _ => self.to_i64s().map(|v| v.into_iter().map(|x| x as f32).collect()),
        }
    }

    /// Boolean elements; `None` for arrays of other types.
    pub fn to_bools(&self) -> Option<Vec<bool>> {
        if self.element != kind::BOOL {
            return None;
        }
        Some(self.bytes.iter().map(|&b| b != 0).collect())
    }

    /// String elements, in order (invalid UTF-8 replaced, as llama.cpp's tools print it); `None` for
    /// arrays of other types.
    pub fn strings(&self) -> Option<impl Iterator<Item = Cow<'a, str>> + 'a> {
        if self.element != kind::STRING {
            return None;
        }
        let mut rest = self.bytes;
        Some(std::iter::from_fn(move || {
            let (len, tail) = rest.split_at_checked(4)?;
            let (text, tail) = tail.split_at_checked(u32::from_le_bytes(le(len)?) as usize)?;
            rest = tail;
            Some(String::from_utf8_lossy(text))
        }))
    }
}
