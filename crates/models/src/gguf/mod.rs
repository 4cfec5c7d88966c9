//! A GGUF file: its metadata and tensor directory, parsed once at start-up by our own reader, and its
//! tensors read on demand.
//!
//! # Layout
//! - `read` — the header parser, which treats every count and offset in the file as hostile.
//! - `header` — [`Header`], what it parses: keys, strings and names in one buffer, small sorted records.
//! - [`types`] — [`TensorType`], GGML's tensor types and their block sizes.
//! - [`value`] — [`Value`] and [`Array`], metadata values.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::ModelError;

mod header;
mod read;
pub mod types;
pub mod value;

pub use header::{Header, TensorInfo};
pub use types::TensorType;
pub use value::{Array, Value};

/// How quantized weights are held in memory for the CPU matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// As stored in the file (formats without a kernel of their own are converted losslessly, see
    /// [`crate::quant::Matrix::from_tensor`]).
    #[default]
    AsStored,
    /// Quantized formats below 8 bits are requantized to Q8_0 at load: about 1.7-1.9x the memory of
    /// the 4-bit formats, numerically near-lossless.
    Q8_0,
}

/// One tensor's bytes as stored, with its type and shape.
#[derive(Debug, Clone)]
pub struct Tensor {
    /// The tensor's name.
    pub name: String,
    /// Its element type.
    pub dtype: TensorType,
    /// Row-major shape, outermost first.
    pub shape: Vec<usize>,
    /// The blocks, exactly as in the file.
    pub bytes: Vec<u8>,
}

impl Tensor {
    /// `(rows, cols)` of a matrix; a vector is one row.
    pub fn dims2(&self) -> Result<(usize, usize), ModelError> {
        match self.shape[..] {
            [cols] => Ok((1, cols)),
            [rows, cols] => Ok((rows, cols)),
            _ => Err(ModelError::Invalid(format!(
                "tensor `{}` has shape {:?}, expected a matrix",
                self.name, self.shape
            ))),
        }
    }
}

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    header: Header,
    file: Mutex<File>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Opens `path` and reads its header; a malformed or hostile header is an error saying why.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let file = File::open(path).map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
        let header = Header::read(BufReader::new(&file)).map_err(|e| match e {
            ModelError::Invalid(why) => ModelError::Invalid(format!("{}: {why}", path.display())),
            other => other,
        })?;
        Ok(Self { path: path.to_path_buf(), header, file: Mutex::new(file) })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, ModelError> {
        self.string("general.architecture")
    }

    /// A metadata value of any type.
    pub fn value(&self, key: &str) -> Result<Value<'_>, ModelError> {
        self.header.value(key).ok_or_else(|| ModelError::Invalid(format!("missing metadata `{key}`")))
    }

    fn wrong(key: &str, expected: &str, value: Value<'_>) -> ModelError {
        ModelError::Invalid(format!("metadata `{key}` is a {}, expected {expected}", value.type_name()))
    }

    /// A string value.
    pub fn string(&self, key: &str) -> Result<&str, ModelError> {
        match self.value(key)? {
            Value::String(s) => Ok(s),
            other => Err(Self::wrong(key, "a string", other)),
        }
    }

    /// A non-negative integer value of any width, as `u64`.
    pub fn uint(&self, key: &str) -> Result<u64, ModelError> {
        let value = self.value(key)?;
        value.as_u64().ok_or_else(|| Self::wrong(key, "a non-negative integer", value))
    }

    /// A numeric value, as `f32`.
    pub fn float(&self, key: &str) -> Result<f32, ModelError> {
        let value = self.value(key)?;
        value.as_f32().ok_or_else(|| Self::wrong(key, "a number", value))
    }

    /// A boolean value.
    pub fn boolean(&self, key: &str) -> Result<bool, ModelError> {
        match self.value(key)? {
            Value::Bool(b) => Ok(b),
            other => Err(Self::wrong(key, "a bool", other)),
        }
    }

    fn array(&self, key: &str) -> Result<Array<'_>, ModelError> {
        match self.value(key)? {
            Value::Array(a) => Ok(a),
            other => Err(Self::wrong(key, "an array", other)),
        }
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, ModelError> {
        let strings = self.array(key)?.strings().map(|s| s.map(String::from).collect());
        strings.ok_or_else(|| ModelError::Invalid(format!("metadata `{key}` is not an array of strings")))
    }

    /// An array of integers, as `i64`.
    pub fn ints(&self, key: &str) -> Result<Vec<i64>, ModelError> {
        self.array(key)?
            .to_i64s()
            .ok_or_else(|| ModelError::Invalid(format!("metadata `{key}` is not an array of integers")))
    }

    /// An array of numbers, as `f32`.
    pub fn floats(&self, key: &str) -> Result<Vec<f32>, ModelError> {
        self.array(key)?
            .to_f32s()
            .ok_or_else(|| ModelError::Invalid(format!("metadata `{key}` is not an array of numbers")))
    }

    /// Whether a tensor exists.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.header.tensor_info(name).is_some()
    }

    /// Where a tensor lies, its type and shape.
    pub fn tensor_info(&self, name: &str) -> Result<TensorInfo<'_>, ModelError> {
        self.header.tensor_info(name).ok_or_else(|| ModelError::Invalid(format!("missing tensor `{name}`")))
    }

    /// Reads one tensor's bytes.
    pub fn tensor(&self, name: &str) -> Result<Tensor, ModelError> {
        let info = self.tensor_info(name)?;
        let bytes = self.read(&info, 0, info.size)?;
        Ok(Tensor { name: name.to_string(), dtype: info.dtype, shape: info.shape().to_vec(), bytes })
    }

    /// Reads rows `rows` of a matrix tensor (`[rows, cols]`), as a tensor of just those rows.
    pub fn tensor_rows(&self, name: &str, rows: std::ops::Range<usize>) -> Result<Tensor, ModelError> {
        let info = self.tensor_info(name)?;
        let &[height, _] = info.shape() else {
            return Err(ModelError::Invalid(format!(
                "tensor `{name}` has shape {:?}, expected a matrix",
                info.shape()
            )));
        };
        if rows.start > rows.end || rows.end > height {
            return Err(ModelError::Invalid(format!("rows {rows:?} of tensor `{name}`, which has {height}")));
        }
        let row_bytes = info.size / height.max(1) as u64;
        let bytes = self.read(&info, rows.start as u64 * row_bytes, rows.len() as u64 * row_bytes)?;
        let mut shape = info.shape().to_vec();
        shape[0] = rows.len();
        Ok(Tensor { name: name.to_string(), dtype: info.dtype, shape, bytes })
    }

    /// `len` bytes from `at` into the data of the tensor `info`.
    fn read(&self, info: &TensorInfo<'_>, at: u64, len: u64) -> Result<Vec<u8>, ModelError> {
        let io = |source| ModelError::Io { path: self.path.display().to_string(), source };
        let mut bytes = Vec::with_capacity(len as usize);
        {
            let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            file.seek(SeekFrom::Start(self.header.data_start() + info.offset + at)).map_err(io)?;
            (&mut *file).take(len).read_to_end(&mut bytes).map_err(io)?;
        }
        if bytes.len() as u64 != len {
            return Err(ModelError::Invalid(format!("{}: tensor `{}` is cut short", self.path.display(), info.name)));
        }
        Ok(bytes)
    }

    /// Starts reading the tensor data once through the system's page cache on a background thread, for a
    /// loader about to read all of it slice by slice: on a cold cache, that loader's reads from two
    /// threads defeat the kernel's readahead (an 8B Q4_K_M file ready in 11-14 s instead of 9).
    /// Skipped (`None`) when the cached file and the weights made from it would not both fit in available
    /// memory; the thread's result is the bytes it read.
    pub fn read_ahead(&self) -> Option<std::thread::JoinHandle<u64>> {
        let data = std::fs::metadata(&self.path).ok()?.len().saturating_sub(self.header.data_start());
        if crate::available_memory().is_none_or(|available| data.saturating_mul(2) > available) {
            return None;
        }
        let mut file = File::open(&self.path).ok()?;
        file.seek(SeekFrom::Start(self.header.data_start())).ok()?;
        let reader = std::thread::Builder::new().name("gguf-read-ahead".into()).spawn(move || {
            let mut chunk = vec![0; 1 << 20];
            let mut read = 0;
            while let Ok(n @ 1..) = file.read(&mut chunk) {
                read += n as u64;
            }
            read
        });
        reader.ok()
    }

    /// Reads one tensor as `f32` values (norm weights, biases, small tables).
    pub fn dense(&self, name: &str) -> Result<Vec<f32>, ModelError> {
        crate::quant::dequantize(self.tensor(name)?)
    }
}

#[cfg(test)]
mod tests;
