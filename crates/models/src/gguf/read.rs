//! Parsing a GGUF header (metadata and tensor directory) from an untrusted file.
//!
//! Every count and length in the file is checked against the bytes that remain before anything is
//! allocated for it. The header is walked twice: the first walk checks it and measures what it keeps,
//! allocating nothing; the second fills buffers of exactly that size. What is kept is never larger than
//! the header it came from (each record is no larger than the length and type fields it replaces, see
//! [`Entry`] and [`TensorEntry`]), so parsing a hostile file costs at most its own size in memory, and it
//! is refused with the reason, never a panic or an abort.

use std::fmt;
use std::io::{Read, Seek, SeekFrom};

use super::header::Header;
use super::types::TensorType;
use super::value::{kind, width};

/// Most metadata keys a file may have (real models have a few dozen).
const MAX_KEYS: u64 = 1 << 16;
/// Most tensors a file may have (real models have at most a few thousand).
const MAX_TENSORS: u64 = 1 << 16;
/// Most dimensions a tensor may have (GGML's limit).
const MAX_DIMS: u32 = 4;
/// Longest tensor name accepted.
const MAX_NAME: u64 = 256;
/// Longest metadata key accepted (real keys are under 100 bytes).
const MAX_KEY: u64 = u16::MAX as u64;

/// Why a header was refused.
pub(super) type Refusal = String;

/// One metadata entry: `key_len` bytes of key at `at` in the arena, then `len` bytes of value of type
/// `kind` as [`super::Value::decode`] reads it. Its 12 bytes stand for the key's 8-byte length and the
/// 4-byte type; a string value keeps its bytes (its length is `len`), an array its element type and a
/// `u32` count (for 12 bytes in the file) and its elements, each string after a `u32` length (for 8).
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub at: u32,
    pub key_len: u16,
    pub kind: u8,
    pub len: u32,
}

/// One tensor: `name_len` bytes of name at `at` in the arena, then its `dims` GGUF dimensions (innermost
/// first) as little-endian `u64`s. Its 24 bytes stand for the name's length, the dimension count, the
/// type and the offset (8 + 4 + 4 + 8 bytes in the file).
#[derive(Debug, Clone, Copy)]
pub(super) struct TensorEntry {
    pub offset: u64,
    pub size: u64,
    pub at: u32,
    pub name_len: u16,
    pub dtype: TensorType,
    pub dims: u8,
}

const _: () = assert!(size_of::<Entry>() <= 12 && size_of::<TensorEntry>() <= 24);

impl Entry {
    /// The key's bytes in `arena`.
    pub fn key<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        &arena[self.at as usize..][..self.key_len.into()]
    }

    /// The value's bytes in `arena`.
    pub fn value<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        &arena[self.at as usize + usize::from(self.key_len)..][..self.len as usize]
    }
}

impl TensorEntry {
    /// The name's bytes in `arena`.
    pub fn name<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        &arena[self.at as usize..][..self.name_len.into()]
    }
}

/// Parses the header that `reader` holds (it is read from the start, twice).
pub(super) fn header<R: Read + Seek>(mut reader: R) -> Result<Header, Refusal> {
    let io = |e: std::io::Error| format!("reading the file: {e}");
    let len = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut measure = Measure(0);
    let counts = walk(&mut Source { inner: &mut reader, at: 0, len }, &mut measure)?;
    let Ok(arena) = u32::try_from(measure.0) else {
        return Err(format!("the header keeps {} bytes, more than the 4 GiB it may", measure.0));
    };
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut fill = Fill {
        arena: Vec::with_capacity(arena as usize),
        entries: Vec::with_capacity(counts.keys as usize),
        tensors: Vec::with_capacity(counts.tensors as usize),
    };
    let again = walk(&mut Source { inner: &mut reader, at: 0, len }, &mut fill)?;
    if again != counts || fill.arena.len() != arena as usize {
        return Err(CHANGED.into());
    }
    Header::new(fill.arena, fill.entries, fill.tensors, counts.data_start)
}

const CHANGED: &str = "the file changed while it was being read";

/// What a walk found; the second must find what the first did.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    keys: u64,
    tensors: u64,
    data_start: u64,
}

/// Where a walk keeps what it reads: the first walk only counts the bytes, the second stores them.
trait Keep {
    /// Bytes kept so far.
    fn at(&self) -> u64;
    /// Keeps `bytes`.
    fn put(&mut self, bytes: &[u8]) -> Result<(), Refusal>;
    /// Keeps the next `n` bytes of `src`.
    fn copy<R: Read>(&mut self, src: &mut Source<R>, n: u64, what: What<'_>) -> Result<(), Refusal>;
    /// Keeps a metadata entry.
    fn entry(&mut self, entry: Entry) -> Result<(), Refusal>;
    /// Keeps a tensor.
    fn tensor(&mut self, tensor: TensorEntry) -> Result<(), Refusal>;
}

/// The first walk: counts what the second will keep.
struct Measure(u64);

impl Keep for Measure {
    fn at(&self) -> u64 {
        self.0
    }
    fn put(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        self.0 += bytes.len() as u64;
        Ok(())
    }
    fn copy<R: Read>(&mut self, src: &mut Source<R>, n: u64, what: What<'_>) -> Result<(), Refusal> {
        src.skip(n, what)?;
        self.0 += n;
        Ok(())
    }
    fn entry(&mut self, _: Entry) -> Result<(), Refusal> {
        Ok(())
    }
    fn tensor(&mut self, _: TensorEntry) -> Result<(), Refusal> {
        Ok(())
    }
}

/// The second walk: stores into buffers sized by the first, which never grow (a file that changed in
/// between is refused).
struct Fill {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    tensors: Vec<TensorEntry>,
}

impl Keep for Fill {
    fn at(&self) -> u64 {
        self.arena.len() as u64
    }
    fn put(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        if self.arena.capacity() - self.arena.len() < bytes.len() {
            return Err(CHANGED.into());
        }
        self.arena.extend_from_slice(bytes);
        Ok(())
    }
    fn copy<R: Read>(&mut self, src: &mut Source<R>, n: u64, what: What<'_>) -> Result<(), Refusal> {
        let start = self.arena.len();
        if ((self.arena.capacity() - start) as u64) < n {
            return Err(CHANGED.into());
        }
        self.arena.resize(start + n as usize, 0);
        src.fill(&mut self.arena[start..], what)
    }
    fn entry(&mut self, entry: Entry) -> Result<(), Refusal> {
        if self.entries.len() == self.entries.capacity() {
            return Err(CHANGED.into());
        }
        self.entries.push(entry);
        Ok(())
    }
    fn tensor(&mut self, tensor: TensorEntry) -> Result<(), Refusal> {
        if self.tensors.len() == self.tensors.capacity() {
            return Err(CHANGED.into());
        }
        self.tensors.push(tensor);
        Ok(())
    }
}

/// The first bytes of a key or tensor name, to name it in messages without keeping it.
#[derive(Clone, Copy)]
struct Label {
    bytes: [u8; 64],
    len: usize,
    cut: bool,
}

impl Label {
    fn is(&self, text: &str) -> bool {
        !self.cut && &self.bytes[..self.len] == text.as_bytes()
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", String::from_utf8_lossy(&self.bytes[..self.len]), if self.cut { "…" } else { "" })
    }
}

/// What is being read, for messages (formatted only when one is needed).
#[derive(Clone, Copy)]
enum What<'a> {
    Magic,
    Version,
    TensorCount,
    KeyCount,
    Key(u64),
    TypeOf(&'a Label),
    Value(&'a Label),
    Tensor(u64),
    Dims(&'a Label),
    Shape(&'a Label),
    Type(&'a Label),
    Offset(&'a Label),
}

impl fmt::Display for What<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Magic => write!(f, "the magic number"),
            Self::Version => write!(f, "the version"),
            Self::TensorCount => write!(f, "the tensor count"),
            Self::KeyCount => write!(f, "the metadata count"),
            Self::Key(i) => write!(f, "metadata key {i}"),
            Self::TypeOf(key) => write!(f, "the type of `{key}`"),
            Self::Value(key) => write!(f, "`{key}`"),
            Self::Tensor(i) => write!(f, "tensor {i}"),
            Self::Dims(name) => write!(f, "`{name}`'s dimension count"),
            Self::Shape(name) => write!(f, "`{name}`'s shape"),
            Self::Type(name) => write!(f, "`{name}`'s type"),
            Self::Offset(name) => write!(f, "`{name}`'s offset"),
        }
    }
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

    fn fill(&mut self, buf: &mut [u8], what: What<'_>) -> Result<(), Refusal> {
        self.inner.read_exact(buf).map_err(|e| format!("truncated while reading {what} at byte {}: {e}", self.at))?;
        self.at += buf.len() as u64;
        Ok(())
    }

    fn exact<const N: usize>(&mut self, what: What<'_>) -> Result<[u8; N], Refusal> {
        let mut buf = [0; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn u32(&mut self, what: What<'_>) -> Result<u32, Refusal> {
        self.exact::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: What<'_>) -> Result<u64, Refusal> {
        self.exact::<8>(what).map(u64::from_le_bytes)
    }

    /// Reads past `n` bytes.
    fn skip(&mut self, mut n: u64, what: What<'_>) -> Result<(), Refusal> {
        let mut buf = [0; 1024];
        while n > 0 {
            let step = n.min(buf.len() as u64) as usize;
            self.fill(&mut buf[..step], what)?;
            n -= step as u64;
        }
        Ok(())
    }

    /// `count` items of at least `min_bytes` each must fit in what remains.
    fn check_fits(&self, count: u64, min_bytes: u64, what: What<'_>) -> Result<(), Refusal> {
        match count.checked_mul(min_bytes) {
            Some(bytes) if bytes <= self.remaining() => Ok(()),
            _ => Err(format!("{what} claims {count} items, more than the {} bytes left in the file", self.remaining())),
        }
    }

    /// `len` bytes must fit in what remains.
    fn check_len(&self, len: u64, what: What<'_>) -> Result<(), Refusal> {
        if len > self.remaining() {
            return Err(format!("{what} claims {len} bytes, more than the {} left in the file", self.remaining()));
        }
        Ok(())
    }

    /// Keeps `len` bytes of text; returns their first bytes, to name them in messages.
    fn text(&mut self, keep: &mut impl Keep, len: u64, what: What<'_>) -> Result<Label, Refusal> {
        self.check_len(len, what)?;
        let mut label = Label { bytes: [0; 64], len: len.min(64) as usize, cut: len > 64 };
        self.fill(&mut label.bytes[..label.len], what)?;
        keep.put(&label.bytes[..label.len])?;
        keep.copy(self, len - label.len as u64, what)?;
        Ok(label)
    }

    /// Keeps a value of GGUF type `kind`.
    fn value(&mut self, keep: &mut impl Keep, kind: u32, what: What<'_>) -> Result<(), Refusal> {
        match u8::try_from(kind) {
            Ok(kind::STRING) => {
                let len = self.u64(what)?;
                self.check_len(len, what)?;
                keep.copy(self, len, what)
            }
            Ok(kind::ARRAY) => self.array(keep, what),
            Ok(fixed) => match width(fixed) {
                Some(n) => keep.copy(self, n, what),
                None => Err(format!("{what} has unknown value type {kind}")),
            },
            Err(_) => Err(format!("{what} has unknown value type {kind}")),
        }
    }

    /// Keeps an array: its element type, its count as a `u32`, and its elements.
    fn array(&mut self, keep: &mut impl Keep, what: What<'_>) -> Result<(), Refusal> {
        let element = self.u32(what)?;
        let count = self.u64(what)?;
        let element = match u8::try_from(element) {
            Ok(kind::ARRAY) => return Err(format!("{what} is an array of arrays, which no model uses")),
            Ok(e) if e == kind::STRING || width(e).is_some() => e,
            _ => return Err(format!("{what} has unknown element type {element}")),
        };
        // Each string has at least its 8-byte length.
        let size = width(element).unwrap_or(8);
        self.check_fits(count, size, what)?;
        keep.put(&[element])?;
        keep.put(&(count as u32).to_le_bytes())?;
        if element != kind::STRING {
            return keep.copy(self, count * size, what);
        }
        for _ in 0..count {
            let len = self.u64(what)?;
            self.check_len(len, what)?;
            keep.put(&(len as u32).to_le_bytes())?;
            keep.copy(self, len, what)?;
        }
        Ok(())
    }
}

/// Walks the whole header, keeping what a [`Header`] holds.
fn walk<R: Read>(src: &mut Source<R>, keep: &mut impl Keep) -> Result<Counts, Refusal> {
    let magic = src.exact::<4>(What::Magic)?;
    if &magic != b"GGUF" {
        return Err(format!("not a GGUF file (starts with {magic:02x?})"));
    }
    let version = src.u32(What::Version)?;
    if !(2..=3).contains(&version) {
        return Err(format!("GGUF version {version} is not supported (2 and 3 are)"));
    }
    let tensor_count = src.u64(What::TensorCount)?;
    let key_count = src.u64(What::KeyCount)?;
    if tensor_count > MAX_TENSORS || key_count > MAX_KEYS {
        return Err(format!("{tensor_count} tensors and {key_count} metadata keys: more than any model has"));
    }
    // A key takes at least 8 (length) + 4 (type) + 1 bytes; a tensor entry 8 + 4 + 8 + 4 + 8.
    src.check_fits(key_count, 13, What::KeyCount)?;
    src.check_fits(tensor_count, 32, What::TensorCount)?;

    let mut alignment = 32;
    for i in 0..key_count {
        let key_len = src.u64(What::Key(i))?;
        src.check_len(key_len, What::Key(i))?;
        if key_len > MAX_KEY {
            return Err(format!("metadata key {i} has a name of {key_len} bytes"));
        }
        let at = keep.at();
        let key = src.text(keep, key_len, What::Key(i))?;
        let kind = src.u32(What::TypeOf(&key))?;
        let value_at = keep.at();
        if key.is("general.alignment") {
            if kind != u32::from(kind::U32) {
                return Err(format!("general.alignment has value type {kind}, not a u32 power of two"));
            }
            let a = src.u32(What::Value(&key))?;
            if !a.is_power_of_two() {
                return Err(format!("general.alignment {a} is not a power of two"));
            }
            keep.put(&a.to_le_bytes())?;
            alignment = u64::from(a);
        } else {
            src.value(keep, kind, What::Value(&key))?;
        }
        let len = (keep.at() - value_at) as u32;
        keep.entry(Entry { at: at as u32, key_len: key_len as u16, kind: kind as u8, len })?;
    }

    // The end, name, size and offset of the tensor reaching furthest into the data, which must hold it.
    let mut furthest: Option<(u64, Label, u64, u64)> = None;
    for i in 0..tensor_count {
        let name_len = src.u64(What::Tensor(i))?;
        if name_len > MAX_NAME {
            return Err(format!("tensor {i} has a name of {name_len} bytes"));
        }
        let at = keep.at();
        let name = src.text(keep, name_len, What::Tensor(i))?;
        let dims = src.u32(What::Dims(&name))?;
        if !(1..=MAX_DIMS).contains(&dims) {
            return Err(format!("tensor `{name}` has {dims} dimensions (1 to {MAX_DIMS} allowed)"));
        }
        let mut ne = [0u64; MAX_DIMS as usize];
        let ne = &mut ne[..dims as usize];
        for d in ne.iter_mut() {
            *d = src.u64(What::Shape(&name))?;
            keep.put(&d.to_le_bytes())?;
        }
        let type_id = src.u32(What::Type(&name))?;
        let dtype =
            TensorType::from_id(type_id).ok_or_else(|| format!("tensor `{name}` has unknown type id {type_id}"))?;
        let offset = src.u64(What::Offset(&name))?;
        let values = ne.iter().try_fold(1u64, |acc, &d| if d == 0 { None } else { acc.checked_mul(d) });
        let Some(values) = values.filter(|&v| v <= i64::MAX as u64) else {
            return Err(format!("tensor `{name}` has shape {ne:?}, which is empty or overflows"));
        };
        let block = dtype.block().0 as u64;
        if !ne[0].is_multiple_of(block) {
            return Err(format!("tensor `{name}` ({dtype}) has rows of {}, not whole blocks of {block}", ne[0]));
        }
        let size =
            dtype.bytes_for(values).ok_or_else(|| format!("tensor `{name}` has shape {ne:?}, which overflows"))?;
        if !offset.is_multiple_of(alignment) {
            return Err(format!("tensor `{name}` starts at offset {offset}, not aligned to {alignment}"));
        }
        let end = offset.saturating_add(size);
        if furthest.is_none_or(|f| end > f.0) {
            furthest = Some((end, name, size, offset));
        }
        let entry = TensorEntry { offset, size, at: at as u32, name_len: name_len as u16, dtype, dims: dims as u8 };
        keep.tensor(entry)?;
    }

    let data_start = src.at.div_ceil(alignment) * alignment;
    let data_len = src.len.saturating_sub(data_start);
    if let Some((_, name, size, offset)) = furthest.filter(|f| f.0 > data_len) {
        return Err(format!(
            "tensor `{name}` ({size} bytes at offset {offset}) runs past the end of the file ({data_len} bytes of data)"
        ));
    }
    Ok(Counts { keys: key_count, tensors: tensor_count, data_start })
}
