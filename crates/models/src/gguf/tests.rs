//! The reader against candle's GGUF writer, and against hostile headers.

use candle_core::quantized::gguf_file::{self, Value as CandleValue};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor as CandleTensor};

use super::*;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("hearth-gguf-{}-{name}", std::process::id()))
}

#[test]
fn reads_what_candle_writes() {
    let values: Vec<f32> = (0..2 * 256).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
    let dense = CandleTensor::from_vec(values.clone(), (2, 256), &Device::Cpu).unwrap();
    let q4k = QTensor::quantize(&dense, GgmlDType::Q4K).unwrap();
    let f32s = QTensor::quantize(&dense, GgmlDType::F32).unwrap();
    let path = temp("roundtrip.gguf");
    let metadata = [
        ("general.architecture", CandleValue::String("llama".into())),
        ("a.count", CandleValue::U32(7)),
        ("a.eps", CandleValue::F32(1e-5)),
        ("a.flag", CandleValue::Bool(true)),
        (
            "a.words",
            CandleValue::Array(vec![
                CandleValue::String("x".into()),
                CandleValue::String("".into()),
                CandleValue::String("héllo".into()),
            ]),
        ),
        ("a.ids", CandleValue::Array(vec![CandleValue::I32(-1), CandleValue::I32(5)])),
        ("a.flags", CandleValue::Array(vec![CandleValue::Bool(true), CandleValue::Bool(false)])),
    ];
    let metadata: Vec<(&str, &CandleValue)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let mut out = std::fs::File::create(&path).unwrap();
    gguf_file::write(&mut out, &metadata, &[("w.q4k", &q4k), ("w.f32", &f32s)]).unwrap();
    drop(out);

    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.architecture().unwrap(), "llama");
    assert_eq!(file.uint("a.count").unwrap(), 7);
    assert_eq!(file.float("a.eps").unwrap(), 1e-5);
    assert!(file.boolean("a.flag").unwrap());
    assert_eq!(file.strings("a.words").unwrap(), ["x", "", "héllo"]);
    assert_eq!(file.ints("a.ids").unwrap(), [-1, 5]);
    let Value::Array(flags) = file.value("a.flags").unwrap() else { panic!("not an array") };
    assert_eq!(flags.to_bools(), Some(vec![true, false]));
    assert!(file.uint("a.eps").is_err() && file.string("a.count").is_err() && file.uint("missing").is_err());

    let tensor = file.tensor("w.q4k").unwrap();
    assert_eq!((tensor.dtype, tensor.shape.clone()), (TensorType::Q4_K, vec![2, 256]));
    assert_eq!(tensor.bytes, q4k.data().unwrap().to_vec());
    let second = file.tensor_rows("w.q4k", 1..2).unwrap();
    assert_eq!((second.shape.clone(), &second.bytes[..]), (vec![1, 256], &tensor.bytes[144..]));
    assert!(file.tensor_rows("w.q4k", 0..0).unwrap().bytes.is_empty());
    assert!(file.tensor_rows("w.q4k", 1..3).unwrap_err().to_string().contains("which has 2"));
    assert_eq!(file.dense("w.f32").unwrap(), values);
    let candle = q4k.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(file.dense("w.q4k").unwrap(), candle, "Q4_K dequantizes as GGML does");

    // Reading ahead goes once through the tensor data, header excluded, where memory allows it.
    let data = std::fs::metadata(&path).unwrap().len() - file.header().data_start();
    match file.read_ahead() {
        Some(reader) => assert_eq!(reader.join().unwrap(), data),
        None => assert!(crate::available_memory().is_none_or(|available| 2 * data > available)),
    }
    std::fs::remove_file(path).unwrap();
}

/// Builds GGUF headers byte by byte, so tests can write ones no writer would.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn u32(mut self, v: u32) -> Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn string(self, s: &str) -> Self {
        let mut b = self.u64(s.len() as u64);
        b.0.extend(s.as_bytes());
        b
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend(bytes);
        self
    }
    /// Magic, version 3, and the two counts.
    fn header(tensors: u64, keys: u64) -> Self {
        Bytes::default().raw(b"GGUF").u32(3).u64(tensors).u64(keys)
    }
    /// One tensor entry.
    fn tensor(self, name: &str, dims: &[u64], dtype: u32, offset: u64) -> Self {
        let mut b = self.string(name).u32(dims.len() as u32);
        for &d in dims {
            b = b.u64(d);
        }
        b.u32(dtype).u64(offset)
    }
}

fn refusal(bytes: &[u8]) -> String {
    let path = temp(&format!("hostile-{:x}.gguf", bytes.len() * 31 + bytes.iter().map(|&b| b as usize).sum::<usize>()));
    std::fs::write(&path, bytes).unwrap();
    let result = GgufFile::open(&path);
    std::fs::remove_file(&path).unwrap();
    match result {
        Ok(_) => panic!("a hostile header was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn hostile_headers_are_refused_with_a_reason() {
    let cases: Vec<(&str, Bytes)> = vec![
        ("not a GGUF file", Bytes::default().raw(b"GGML").u32(3)),
        ("version 1", Bytes::default().raw(b"GGUF").u32(1).u64(0).u64(0)),
        ("truncated", Bytes::default().raw(b"GGUF").u32(3).u64(0)),
        ("more than any model", Bytes::header(u64::MAX, 1)),
        ("more than the", Bytes::header(0, 60_000)),
        // A key whose length claims a petabyte.
        ("more than the", Bytes::header(0, 1).u64(1 << 50).raw(b"abc")),
        // A string value claiming more than the file holds.
        ("more than the", Bytes::header(0, 1).string("k").u32(8).u64(1 << 40).raw(&[0; 16])),
        // An array of 2^61 u64s.
        ("more than the", Bytes::header(0, 1).string("k").u32(9).u32(10).u64(1 << 61).raw(&[0; 16])),
        // An array of strings claiming 2^60 entries.
        ("more than the", Bytes::header(0, 1).string("k").u32(9).u32(8).u64(1 << 60).raw(&[0; 16])),
        ("unknown value type", Bytes::header(0, 1).string("k").u32(99).raw(&[0; 16])),
        ("array of arrays", Bytes::header(0, 1).string("k").u32(9).u32(9).u64(1).raw(&[0; 16])),
        ("appears twice", Bytes::header(0, 2).string("k").u32(4).u32(1).string("k").u32(4).u32(2).raw(&[0; 16])),
        ("not a power of two", Bytes::header(0, 1).string("general.alignment").u32(4).u32(24).raw(&[0; 16])),
        ("dimensions", Bytes::header(1, 0).tensor("t", &[1, 1, 1, 1, 1], 0, 0).raw(&[0; 64])),
        ("unknown type id", Bytes::header(1, 0).tensor("t", &[4], 77, 0).raw(&[0; 64])),
        ("overflows", Bytes::header(1, 0).tensor("t", &[1 << 32, 1 << 32], 0, 0).raw(&[0; 64])),
        ("empty or overflows", Bytes::header(1, 0).tensor("t", &[4, 0], 0, 0).raw(&[0; 64])),
        ("whole blocks", Bytes::header(1, 0).tensor("t", &[100], 12, 0).raw(&[0; 64])),
        ("not aligned", Bytes::header(1, 0).tensor("t", &[4], 0, 3).raw(&[0; 64])),
        ("past the end", Bytes::header(1, 0).tensor("t", &[1024], 0, 0).raw(&[0; 64])),
        ("past the end", Bytes::header(1, 0).tensor("t", &[4], 0, u64::MAX - 31).raw(&[0; 64])),
        ("appears twice", Bytes::header(2, 0).tensor("t", &[4], 0, 0).tensor("t", &[4], 0, 32).raw(&[0; 128])),
        ("name of", Bytes::header(1, 0).u64(1 << 40).raw(&[0; 64])),
    ];
    for (expected, bytes) in cases {
        let why = refusal(&bytes.0);
        assert!(why.contains(expected), "expected `{expected}` in: {why}");
    }
}

#[test]
fn a_tensor_type_without_a_kernel_is_a_clear_error() {
    // One IQ2_XXS tensor (id 16): 256 values in 66 bytes; the header pads to 32 bytes.
    let bytes = Bytes::header(1, 0).tensor("blk.0.attn_q.weight", &[256, 1], 16, 0);
    let padding = bytes.0.len().div_ceil(32) * 32 - bytes.0.len();
    let bytes = bytes.raw(&vec![0; padding + 66]);
    let path = temp("iq2.gguf");
    std::fs::write(&path, &bytes.0).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let err = crate::quant::Matrix::from_tensor(file.tensor("blk.0.attn_q.weight").unwrap(), WeightFormat::AsStored)
        .unwrap_err()
        .to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(err.contains("`blk.0.attn_q.weight` is IQ2_XXS"), "{err}");
}
