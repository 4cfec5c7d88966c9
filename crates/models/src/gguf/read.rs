//! Parsing a GGUF header (metadata and tensor directory) from an untrusted file.
//!
//! Every count and length in the file is checked against the bytes that remain before anything is
//! allocated for it, so a hostile header costs at most its own size in memory (plus the fixed caps on
//! key and tensor counts below) and is refused with the reason, never a panic or an abort.

use std::collections::HashMap;
use std::io::Read;

use super::types::TensorType;
use super::value::{Array, Strings, Value};
use super::TensorInfo;

/// Most metadata keys a file may have (real models have a few dozen).
const MAX_KEYS: u64 = 1 << 16;
/// Most tensors a file may have (real models have at most a few thousand).
const MAX_TENSORS: u64 = 1 << 16;
/// Most dimensions a tensor may have (GGML's limit).
const MAX_DIMS: u32 = 4;
/// Longest tensor name accepted.
const MAX_NAME: u64 = 256;

/// Why a header was refused.
pub(super) type Refusal = String;

/// A parsed header.
pub(super) struct Header {
    pub metadata: HashMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    /// Where tensor data begins, in bytes from the start of the file.
    pub data_start: u64,
}

/// A reader that knows how many bytes remain.
struct Source<R> {
    inner: R,
    at: u64,
    len: u64,
}

impl<R: Read> Source<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.at)
    }

    fn exact<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Refusal> {
        let mut buf = [0; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| format!("truncated while reading {what} at byte {}: {e}", self.at))?;
        self.at += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32, Refusal> {
        self.exact::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, Refusal> {
        self.exact::<8>(what).map(u64::from_le_bytes)
    }

    /// `count` items of at least `min_bytes` each must fit in what remains.
    fn check_fits(&self, count: u64, min_bytes: u64, what: &str) -> Result<(), Refusal> {
        match count.checked_mul(min_bytes) {
            Some(bytes) if bytes <= self.remaining() => Ok(()),
            _ => Err(format!("{what} claims {count} items, more than the {} bytes left in the file", self.remaining())),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, Refusal> {
        let len = self.u64(what)?;
        self.text(len, what)
    }

    /// `len` bytes of text (invalid UTF-8 replaced, as llama.cpp's tools print it).
    fn text(&mut self, len: u64, what: &str) -> Result<String, Refusal> {
        self.check_fits(len, 1, what)?;
        let mut bytes = Vec::with_capacity(len as usize);
        (&mut self.inner).take(len).read_to_end(&mut bytes).map_err(|e| format!("reading {what}: {e}"))?;
        if bytes.len() as u64 != len {
            return Err(format!("truncated while reading {what}"));
        }
        self.at += len;
        Ok(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    fn value(&mut self, kind: u32, what: &str) -> Result<Value, Refusal> {
        Ok(match kind {
            0 => Value::U8(self.exact::<1>(what)?[0]),
            1 => Value::I8(self.exact::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.exact(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.exact(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.exact(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.exact(what)?)),
            7 => Value::Bool(self.exact::<1>(what)?[0] != 0),
            8 => Value::String(self.string(what)?),
            9 => Value::Array(self.array(what)?),
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.exact(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.exact(what)?)),
            other => return Err(format!("{what} has unknown value type {other}")),
        })
    }

    fn array(&mut self, what: &str) -> Result<Array, Refusal> {
        let kind = self.u32(what)?;
        let count = self.u64(what)?;
        /// Reads `count` fixed-size elements into a vector of their type.
        macro_rules! numbers {
            ($variant:ident, $ty:ty, $n:literal) => {{
                self.check_fits(count, $n, what)?;
                let mut v = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    v.push(<$ty>::from_le_bytes(self.exact::<$n>(what)?));
                }
                Array::$variant(v)
            }};
        }
        Ok(match kind {
            0 => numbers!(U8, u8, 1),
            1 => numbers!(I8, i8, 1),
            2 => numbers!(U16, u16, 2),
            3 => numbers!(I16, i16, 2),
            4 => numbers!(U32, u32, 4),
            5 => numbers!(I32, i32, 4),
            6 => numbers!(F32, f32, 4),
            7 => {
                self.check_fits(count, 1, what)?;
                let mut v = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    v.push(self.exact::<1>(what)?[0] != 0);
                }
                Array::Bool(v)
            }
            8 => {
                // Each string has at least its 8-byte length.
                self.check_fits(count, 8, what)?;
                let mut strings = Strings::default();
                strings.reserve(count as usize);
                for _ in 0..count {
                    let s = self.string(what)?;
                    if !strings.push(&s) {
                        return Err(format!("{what}: strings past 4 GiB"));
                    }
                }
                Array::String(strings)
            }
            10 => numbers!(U64, u64, 8),
            11 => numbers!(I64, i64, 8),
            12 => numbers!(F64, f64, 8),
            9 => return Err(format!("{what} is an array of arrays, which no model uses")),
            other => return Err(format!("{what} has unknown element type {other}")),
        })
    }
}

/// Parses the header of a GGUF file of `len` bytes.
pub(super) fn header(reader: impl Read, len: u64) -> Result<Header, Refusal> {
    let mut src = Source { inner: reader, at: 0, len };
    let magic = src.exact::<4>("the magic number")?;
    if &magic != b"GGUF" {
        return Err(format!("not a GGUF file (starts with {magic:02x?})"));
    }
    let version = src.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(format!("GGUF version {version} is not supported (2 and 3 are)"));
    }
    let tensor_count = src.u64("the tensor count")?;
    let key_count = src.u64("the metadata count")?;
    if tensor_count > MAX_TENSORS || key_count > MAX_KEYS {
        return Err(format!("{tensor_count} tensors and {key_count} metadata keys: more than any model has"));
    }
    // A key takes at least 8 (length) + 4 (type) + 1 bytes; a tensor entry 8 + 4 + 8 + 4 + 8.
    src.check_fits(key_count, 13, "the metadata count")?;
    src.check_fits(tensor_count, 32, "the tensor count")?;

    let mut metadata = HashMap::with_capacity(key_count as usize);
    for i in 0..key_count {
        let key = src.string(&format!("metadata key {i}"))?;
        let kind = src.u32(&format!("the type of `{key}`"))?;
        let value = src.value(kind, &format!("`{key}`"))?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(format!("metadata key `{key}` appears twice"));
        }
    }
    let alignment = match metadata.get("general.alignment") {
        None => 32,
        Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(other) => return Err(format!("general.alignment {other:?} is not a power of two")),
    };

    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut names = std::collections::HashSet::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let what = format!("tensor {i}");
        let name_len = src.u64(&what)?;
        if name_len > MAX_NAME {
            return Err(format!("{what} has a name of {name_len} bytes"));
        }
        let name = src.text(name_len, &what)?;
        let dims = src.u32(&format!("`{name}`'s dimension count"))?;
        if !(1..=MAX_DIMS).contains(&dims) {
            return Err(format!("tensor `{name}` has {dims} dimensions (1 to {MAX_DIMS} allowed)"));
        }
        let mut ne = Vec::with_capacity(dims as usize);
        for _ in 0..dims {
            ne.push(src.u64(&format!("`{name}`'s shape"))?);
        }
        let type_id = src.u32(&format!("`{name}`'s type"))?;
        let dtype =
            TensorType::from_id(type_id).ok_or_else(|| format!("tensor `{name}` has unknown type id {type_id}"))?;
        let offset = src.u64(&format!("`{name}`'s offset"))?;
        let values = ne.iter().try_fold(1u64, |acc, &d| if d == 0 { None } else { acc.checked_mul(d) });
        let Some(values) = values.filter(|&v| v <= i64::MAX as u64) else {
            return Err(format!("tensor `{name}` has shape {ne:?}, which is empty or overflows"));
        };
        if !ne[0].is_multiple_of(dtype.block().0 as u64) {
            return Err(format!(
                "tensor `{name}` ({dtype}) has rows of {}, not whole blocks of {}",
                ne[0],
                dtype.block().0
            ));
        }
        let size =
            dtype.bytes_for(values).ok_or_else(|| format!("tensor `{name}` has shape {ne:?}, which overflows"))?;
        if !offset.is_multiple_of(alignment) {
            return Err(format!("tensor `{name}` starts at offset {offset}, not aligned to {alignment}"));
        }
        if !names.insert(name.clone()) {
            return Err(format!("tensor `{name}` appears twice"));
        }
        // GGUF lists the innermost dimension first; shapes here are row-major, outermost first.
        let shape = ne.iter().rev().map(|&d| d as usize).collect();
        tensors.push(TensorInfo { name, dtype, shape, offset, size });
    }

    let data_start = src.at.div_ceil(alignment) * alignment;
    let data_len = len.saturating_sub(data_start);
    for t in &tensors {
        if t.offset.checked_add(t.size).is_none_or(|end| end > data_len) {
            return Err(format!(
                "tensor `{}` ({} bytes at offset {}) runs past the end of the file ({data_len} bytes of data)",
                t.name, t.size, t.offset
            ));
        }
    }
    Ok(Header { metadata, tensors, data_start })
}
