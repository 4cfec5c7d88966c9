//! A GGUF file: metadata and tensors, read once at start-up.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::ModelError;

/// How quantized weights are held in memory for the CPU matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// As stored in the file.
    #[default]
    AsStored,
    /// 4- and 5-bit legacy formats are requantized to Q8_0 at load: about 1.7x the memory of Q4_1,
    /// numerically near-lossless; trades memory bandwidth for simpler per-block arithmetic.
    Q8_0,
}

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: std::cell::RefCell<BufReader<File>>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let io = |source| ModelError::Io { path: path.display().to_string(), source };
        let mut reader = BufReader::new(File::open(path).map_err(io)?);
        let content = Content::read(&mut reader)
            .map_err(|e| ModelError::Invalid(format!("{}: not a GGUF file ({e})", path.display())))?;
        Ok(Self { path: path.to_path_buf(), content, reader: std::cell::RefCell::new(reader) })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All metadata.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, ModelError> {
        self.string("general.architecture")
    }

    fn get(&self, key: &str) -> Result<&Value, ModelError> {
        self.content.metadata.get(key).ok_or_else(|| ModelError::Invalid(format!("missing metadata `{key}`")))
    }

    fn typed<T>(&self, key: &str, f: impl Fn(&Value) -> candle_core::Result<T>) -> Result<T, ModelError> {
        f(self.get(key)?).map_err(|e| ModelError::Invalid(format!("metadata `{key}`: {e}")))
    }

    /// A string value.
    pub fn string(&self, key: &str) -> Result<&str, ModelError> {
        let value = self.get(key)?;
        value.to_string().map(String::as_str).map_err(|e| ModelError::Invalid(format!("metadata `{key}`: {e}")))
    }

    /// An integer value of any width, as `u64`.
    pub fn uint(&self, key: &str) -> Result<u64, ModelError> {
        self.typed(key, |v| match v {
            Value::U8(x) => Ok(u64::from(*x)),
            Value::U16(x) => Ok(u64::from(*x)),
            Value::U32(x) => Ok(u64::from(*x)),
            Value::U64(x) => Ok(*x),
            Value::I8(x) => u64::try_from(*x).map_err(candle_core::Error::wrap),
            Value::I16(x) => u64::try_from(*x).map_err(candle_core::Error::wrap),
            Value::I32(x) => u64::try_from(*x).map_err(candle_core::Error::wrap),
            Value::I64(x) => u64::try_from(*x).map_err(candle_core::Error::wrap),
            other => candle_core::bail!("not an integer: {other:?}"),
        })
    }

    /// A float value.
    pub fn float(&self, key: &str) -> Result<f32, ModelError> {
        self.typed(key, |v| match v {
            Value::F64(x) => Ok(*x as f32),
            v => v.to_f32(),
        })
    }

    /// A boolean value.
    pub fn boolean(&self, key: &str) -> Result<bool, ModelError> {
        self.typed(key, Value::to_bool)
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, ModelError> {
        self.typed(key, |v| v.to_vec()?.iter().map(|s| s.to_string().cloned()).collect())
    }

    /// An array of integers, as `i32`.
    pub fn ints(&self, key: &str) -> Result<Vec<i32>, ModelError> {
        self.typed(key, |v| {
            v.to_vec()?
                .iter()
                .map(|x| match x {
                    Value::I32(x) => Ok(*x),
                    Value::U32(x) => Ok(*x as i32),
                    Value::I8(x) => Ok(i32::from(*x)),
                    Value::U8(x) => Ok(i32::from(*x)),
                    other => candle_core::bail!("not an integer: {other:?}"),
                })
                .collect()
        })
    }

    /// Whether a tensor exists.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Reads one tensor onto the CPU.
    pub fn tensor(&self, name: &str) -> Result<QTensor, ModelError> {
        if !self.has_tensor(name) {
            return Err(ModelError::Invalid(format!("missing tensor `{name}`")));
        }
        Ok(self.content.tensor(&mut *self.reader.borrow_mut(), name, &Device::Cpu)?)
    }

    /// Reads one matmul weight, converted to the requested in-memory format.
    pub fn weight(&self, name: &str, format: WeightFormat) -> Result<QTensor, ModelError> {
        let tensor = self.tensor(name)?;
        let legacy = matches!(tensor.dtype(), GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1);
        // K-quant super-blocks have no native kernel yet: Q8_0 keeps them on our kernels, near-losslessly,
        // at up to 1.9x their memory.
        let k_quant = matches!(
            tensor.dtype(),
            GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K | GgmlDType::Q8K
        );
        if k_quant || (format == WeightFormat::Q8_0 && legacy) {
            let dense = tensor.dequantize(&Device::Cpu)?;
            return Ok(QTensor::quantize(&dense, GgmlDType::Q8_0)?);
        }
        Ok(tensor)
    }

    /// Reads one tensor as dense `f32` values.
    pub fn dense(&self, name: &str) -> Result<Vec<f32>, ModelError> {
        let t = self.tensor(name)?.dequantize(&Device::Cpu)?;
        Ok(t.flatten_all()?.to_vec1::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file;
    use candle_core::Tensor;

    #[test]
    fn k_quants_load_as_q8_0_with_their_values() {
        let values: Vec<f32> = (0..4 * 256).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let dense = Tensor::from_vec(values, (4, 256), &Device::Cpu).unwrap();
        let q4k = QTensor::quantize(&dense, GgmlDType::Q4K).unwrap();
        let path = std::env::temp_dir().join(format!("hearth-q4k-{}.gguf", std::process::id()));
        let mut out = std::fs::File::create(&path).unwrap();
        gguf_file::write(&mut out, &[], &[("w", &q4k)]).unwrap();
        drop(out);

        let file = GgufFile::open(&path).unwrap();
        let loaded = file.weight("w", WeightFormat::AsStored).unwrap();
        assert_eq!(loaded.dtype(), GgmlDType::Q8_0);
        let exact = q4k.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ours = loaded.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let worst = exact.iter().zip(&ours).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 0.01, "Q8_0 of Q4_K values is off by {worst}");
        std::fs::remove_file(path).unwrap();
    }
}
