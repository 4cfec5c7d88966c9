//! A GGUF file: its metadata and tensor directory, parsed once at start-up by our own reader, and its
//! tensors read on demand.
//!
//! # Layout
//! - `read` — the header parser, which treats every count and offset in the file as hostile.
//! - [`types`] — [`TensorType`], GGML's tensor types and their block sizes.
//! - [`value`] — [`Value`] and [`Array`], metadata values.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::ModelError;

mod read;
pub mod types;
pub mod value;

pub use types::TensorType;
pub use value::{Array, Strings, Value};

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

/// Where one tensor lies in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Its element type.
    pub dtype: TensorType,
    /// Row-major shape, outermost first (a `[out, in]` weight is `[rows, cols]`).
    pub shape: Vec<usize>,
    /// Bytes from the start of the data section.
    offset: u64,
    /// Bytes of data.
    size: u64,
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
    metadata: HashMap<String, Value>,
    tensors: HashMap<String, TensorInfo>,
    data_start: u64,
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
        let io = |source| ModelError::Io { path: path.display().to_string(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let header = read::header(BufReader::new(&file), len)
            .map_err(|why| ModelError::Invalid(format!("{}: {why}", path.display())))?;
        let tensors = header.tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
        Ok(Self {
            path: path.to_path_buf(),
            metadata: header.metadata,
            tensors,
            data_start: header.data_start,
            file: Mutex::new(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All metadata.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.metadata
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, ModelError> {
        self.string("general.architecture")
    }

    fn get(&self, key: &str) -> Result<&Value, ModelError> {
        self.metadata.get(key).ok_or_else(|| ModelError::Invalid(format!("missing metadata `{key}`")))
    }

    fn wrong(key: &str, expected: &str, value: &Value) -> ModelError {
        ModelError::Invalid(format!("metadata `{key}` is a {}, expected {expected}", value.type_name()))
    }

    /// A string value.
    pub fn string(&self, key: &str) -> Result<&str, ModelError> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            other => Err(Self::wrong(key, "a string", other)),
        }
    }

    /// A non-negative integer value of any width, as `u64`.
    pub fn uint(&self, key: &str) -> Result<u64, ModelError> {
        let value = self.get(key)?;
        value.as_u64().ok_or_else(|| Self::wrong(key, "a non-negative integer", value))
    }

    /// A numeric value, as `f32`.
    pub fn float(&self, key: &str) -> Result<f32, ModelError> {
        let value = self.get(key)?;
        value.as_f32().ok_or_else(|| Self::wrong(key, "a number", value))
    }

    /// A boolean value.
    pub fn boolean(&self, key: &str) -> Result<bool, ModelError> {
        match self.get(key)? {
            Value::Bool(b) => Ok(*b),
            other => Err(Self::wrong(key, "a bool", other)),
        }
    }

    fn array(&self, key: &str) -> Result<&Array, ModelError> {
        match self.get(key)? {
            Value::Array(a) => Ok(a),
            other => Err(Self::wrong(key, "an array", other)),
        }
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, ModelError> {
        match self.array(key)? {
            Array::String(s) => Ok(s.iter().map(str::to_string).collect()),
            _ => Err(ModelError::Invalid(format!("metadata `{key}` is not an array of strings"))),
        }
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
        self.tensors.contains_key(name)
    }

    /// Where a tensor lies, its type and shape.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo, ModelError> {
        self.tensors.get(name).ok_or_else(|| ModelError::Invalid(format!("missing tensor `{name}`")))
    }

    /// Every tensor in the file.
    pub fn tensor_infos(&self) -> impl Iterator<Item = &TensorInfo> {
        self.tensors.values()
    }

    /// Reads one tensor's bytes.
    pub fn tensor(&self, name: &str) -> Result<Tensor, ModelError> {
        let info = self.tensor_info(name)?;
        let io = |source| ModelError::Io { path: self.path.display().to_string(), source };
        let mut bytes = Vec::with_capacity(info.size as usize);
        {
            let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            file.seek(SeekFrom::Start(self.data_start + info.offset)).map_err(io)?;
            (&mut *file).take(info.size).read_to_end(&mut bytes).map_err(io)?;
        }
        if bytes.len() as u64 != info.size {
            return Err(ModelError::Invalid(format!("{}: tensor `{name}` is cut short", self.path.display())));
        }
        Ok(Tensor { name: name.to_string(), dtype: info.dtype, shape: info.shape.clone(), bytes })
    }

    /// Reads one tensor as `f32` values (norm weights, biases, small tables).
    pub fn dense(&self, name: &str) -> Result<Vec<f32>, ModelError> {
        crate::quant::dequantize(self.tensor(name)?)
    }
}

#[cfg(test)]
mod tests;
