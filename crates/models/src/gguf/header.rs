//! A parsed GGUF header: every key, string, array and tensor name end to end in one buffer (the arena),
//! with one small record per metadata entry and per tensor, each sorted for binary search.

use std::io::{Read, Seek};

use super::read::{self, Entry, Refusal, TensorEntry};
use super::types::TensorType;
use super::value::{kind, Value};
use crate::ModelError;

/// A GGUF file's metadata and tensor directory, as parsed by [`Header::read`].
pub struct Header {
    arena: Vec<u8>,
    /// Sorted by key.
    entries: Vec<Entry>,
    /// Sorted by name.
    tensors: Vec<TensorEntry>,
    data_start: u64,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header").field("keys", &self.entries.len()).field("tensors", &self.tensors.len()).finish()
    }
}

/// Where one tensor lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorInfo<'a> {
    /// The tensor's name.
    pub name: &'a str,
    /// Its element type.
    pub dtype: TensorType,
    dims: [usize; 4],
    rank: usize,
    /// Bytes from the start of the data section.
    pub(super) offset: u64,
    /// Bytes of data.
    pub(super) size: u64,
}

impl TensorInfo<'_> {
    /// Row-major shape, outermost first (a `[out, in]` weight is `[rows, cols]`).
    pub fn shape(&self) -> &[usize] {
        &self.dims[..self.rank]
    }
}

impl Header {
    /// Parses the GGUF header at the start of `reader` (read twice; the tensor data is never read). A
    /// malformed or hostile header is an error saying why; parsing allocates at most the header's size.
    pub fn read(reader: impl Read + Seek) -> Result<Self, ModelError> {
        read::header(reader).map_err(ModelError::Invalid)
    }

    /// The parsed parts: text must be UTF-8 (string arrays excepted) and keys and names unique.
    pub(super) fn new(
        arena: Vec<u8>,
        mut entries: Vec<Entry>,
        mut tensors: Vec<TensorEntry>,
        data_start: u64,
    ) -> Result<Self, Refusal> {
        let (key, name, value) =
            (|e: &Entry| e.key(&arena), |t: &TensorEntry| t.name(&arena), |e: &Entry| e.value(&arena));
        let shown = |bytes: &[u8]| String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
        for e in &entries {
            if std::str::from_utf8(key(e)).is_err() {
                return Err(format!("metadata key `{}` is not UTF-8", shown(key(e))));
            }
            if e.kind == kind::STRING && std::str::from_utf8(value(e)).is_err() {
                return Err(format!("the string `{}` is not UTF-8", shown(key(e))));
            }
        }
        if let Some(t) = tensors.iter().find(|t| std::str::from_utf8(name(t)).is_err()) {
            return Err(format!("tensor name `{}` is not UTF-8", shown(name(t))));
        }
        // In place: sorting allocates nothing.
        entries.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        tensors.sort_unstable_by(|a, b| name(a).cmp(name(b)));
        if let Some(pair) = entries.windows(2).find(|p| key(&p[0]) == key(&p[1])) {
            return Err(format!("metadata key `{}` appears twice", shown(key(&pair[0]))));
        }
        if let Some(pair) = tensors.windows(2).find(|p| name(&p[0]) == name(&p[1])) {
            return Err(format!("tensor `{}` appears twice", shown(name(&pair[0]))));
        }
        Ok(Self { arena, entries, tensors, data_start })
    }

    /// Where tensor data begins, in bytes from the start of the file.
    pub(super) fn data_start(&self) -> u64 {
        self.data_start
    }

    /// The value of metadata `key`.
    pub fn value(&self, key: &str) -> Option<Value<'_>> {
        let i = self.entries.binary_search_by(|e| e.key(&self.arena).cmp(key.as_bytes())).ok()?;
        let e = &self.entries[i];
        Value::decode(e.kind, e.value(&self.arena))
    }

    /// Where tensor `name` lies, its type and shape.
    pub fn tensor_info(&self, name: &str) -> Option<TensorInfo<'_>> {
        let i = self.tensors.binary_search_by(|t| t.name(&self.arena).cmp(name.as_bytes())).ok()?;
        Some(self.info(&self.tensors[i]))
    }

    /// Every tensor, by name.
    pub fn tensor_infos(&self) -> impl Iterator<Item = TensorInfo<'_>> {
        self.tensors.iter().map(|t| self.info(t))
    }

    fn info(&self, t: &TensorEntry) -> TensorInfo<'_> {
        let ne = &self.arena[t.at as usize + usize::from(t.name_len)..][..8 * usize::from(t.dims)];
        let mut dims = [0; 4];
        // GGUF lists the innermost dimension first; shapes here are row-major, outermost first.
        for (d, bytes) in dims.iter_mut().zip(ne.rchunks_exact(8)) {
            *d = u64::from_le_bytes(bytes.try_into().unwrap_or_default()) as usize;
        }
        let name = std::str::from_utf8(t.name(&self.arena)).unwrap_or_default();
        TensorInfo { name, dtype: t.dtype, dims, rank: t.dims.into(), offset: t.offset, size: t.size }
    }
}
