//! GGUF bytes written field by field, so tests can write files no real writer would.

/// GGUF's value type ids.
pub mod kind {
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

/// Bytes of one value of a fixed-size type.
pub fn width(kind: u8) -> Option<usize> {
    match kind {
        kind::U8 | kind::I8 | kind::BOOL => Some(1),
        kind::U16 | kind::I16 => Some(2),
        kind::U32 | kind::I32 | kind::F32 => Some(4),
        kind::U64 | kind::I64 | kind::F64 => Some(8),
        _ => None,
    }
}

/// A GGML tensor type: its GGUF id, and the values and bytes of one block.
#[derive(Debug, Clone, Copy)]
pub struct Dtype {
    pub id: u32,
    pub block: u64,
    pub bytes: u64,
}

pub const F32: Dtype = Dtype { id: 0, block: 1, bytes: 4 };
pub const F16: Dtype = Dtype { id: 1, block: 1, bytes: 2 };
pub const Q4_0: Dtype = Dtype { id: 2, block: 32, bytes: 18 };
pub const Q8_0: Dtype = Dtype { id: 8, block: 32, bytes: 34 };
pub const Q4_K: Dtype = Dtype { id: 12, block: 256, bytes: 144 };
pub const IQ2_XXS: Dtype = Dtype { id: 16, block: 256, bytes: 66 };

/// A tensor of a [`file`]: name, GGUF shape (innermost first), type.
pub type Tensor<'a> = (&'a str, &'a [u64], Dtype);

/// A metadata value as a test writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// A fixed-size value of GGUF type `kind`: the low bytes of `bits`, little-endian.
    Scalar(u8, u64),
    /// A string (any bytes).
    Str(Vec<u8>),
    /// An array of elements of GGUF type `element`.
    Array(u8, Vec<Val>),
}

impl Val {
    /// A string value.
    pub fn str(s: &str) -> Self {
        Self::Str(s.as_bytes().to_vec())
    }

    /// A `u32` value.
    pub fn u32(v: u32) -> Self {
        Self::Scalar(kind::U32, v.into())
    }

    /// An array of strings.
    pub fn strs(items: &[&str]) -> Self {
        Self::Array(kind::STRING, items.iter().map(|s| Self::str(s)).collect())
    }

    /// The GGUF type id of the value.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Scalar(kind, _) => *kind,
            Self::Str(_) => kind::STRING,
            Self::Array(..) => kind::ARRAY,
        }
    }
}

/// A GGUF file under construction.
#[derive(Debug, Default, Clone)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// Magic, version 3 and the two counts.
    pub fn header(tensors: u64, keys: u64) -> Self {
        let mut w = Self::default();
        w.raw(b"GGUF").u32(3).u64(tensors).u64(keys);
        w
    }

    /// Raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// A string: its `u64` length, then its bytes.
    pub fn string(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64).raw(s)
    }

    /// A key and its value type (the value follows).
    pub fn key(&mut self, key: &str, kind: u8) -> &mut Self {
        self.string(key.as_bytes()).u32(kind.into())
    }

    /// A value without its type.
    pub fn value(&mut self, value: &Val) -> &mut Self {
        match value {
            Val::Scalar(kind, bits) => {
                let n = width(*kind).expect("a fixed-size kind");
                self.raw(&bits.to_le_bytes()[..n])
            }
            Val::Str(s) => self.string(s),
            Val::Array(element, items) => {
                self.u32((*element).into()).u64(items.len() as u64);
                items.iter().fold(self, |w, item| w.value(item))
            }
        }
    }

    /// A key with its type and value.
    pub fn entry(&mut self, key: &[u8], value: &Val) -> &mut Self {
        self.string(key).u32(value.kind().into()).value(value)
    }

    /// One tensor's directory entry; `ne` is GGUF's order, innermost first.
    pub fn tensor(&mut self, name: &str, ne: &[u64], dtype: u32, offset: u64) -> &mut Self {
        self.string(name.as_bytes()).u32(ne.len() as u32);
        ne.iter().fold(self, |w, &d| w.u64(d)).u32(dtype).u64(offset)
    }

    /// Zeros up to the next multiple of `alignment`.
    pub fn align(&mut self, alignment: usize) -> &mut Self {
        let padding = self.0.len().next_multiple_of(alignment) - self.0.len();
        self.raw(&vec![0; padding])
    }

    /// The bytes.
    pub fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Bytes of a tensor of GGUF shape `ne` and type `dtype`.
pub fn tensor_bytes(ne: &[u64], dtype: Dtype) -> u64 {
    ne.iter().product::<u64>() / dtype.block * dtype.bytes
}

/// A whole, well-formed file: `keys`, then `tensors` (name, GGUF shape, type) at aligned offsets, then
/// zeroed data for each.
pub fn file(keys: &[(&str, Val)], tensors: &[Tensor<'_>]) -> Vec<u8> {
    let mut w = Writer::header(tensors.len() as u64, keys.len() as u64);
    for (key, value) in keys {
        w.entry(key.as_bytes(), value);
    }
    let mut offset = 0;
    for (name, ne, dtype) in tensors {
        w.tensor(name, ne, dtype.id, offset);
        offset = (offset + tensor_bytes(ne, *dtype)).next_multiple_of(32);
    }
    w.align(32).raw(&vec![0; offset as usize]).done()
}
