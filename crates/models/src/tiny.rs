//! Tiny Llama GGUF files with seeded random weights, so tests run the real loader in milliseconds.
//!
//! The vocabulary is byte-level BPE over all 256 bytes plus ChatML control tokens, with a ChatML chat
//! template, so the whole text pipeline works on it; the outputs are of course gibberish.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::ModelError;

/// Id of `<|im_start|>` (BOS) in the tiny vocabulary.
pub const BOS: u32 = 257;
/// Id of `<|im_end|>` (EOS) in the tiny vocabulary.
pub const EOS: u32 = 258;
/// Tokens in the tiny vocabulary: 256 bytes, the merge `he`, three control tokens.
pub const VOCAB: usize = 260;
/// Id of `<think>` in a thinking tiny vocabulary ([`TinySpec::thinking`]); `</think>` follows it.
pub const THINK: u32 = 260;
/// Context window of the tiny model.
pub const CONTEXT: usize = 1024;

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// ChatML whose generation prompt opens `<think>` (as DeepSeek-R1's does), or closes an empty one when
/// `enable_thinking` is false (as Qwen3's does).
const CHATML_THINKING: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}{% if enable_thinking is defined and not enable_thinking %}{{ '\n</think>\n\n' }}{% endif %}{% endif %}";

/// GPT-2's printable stand-in for a byte in byte-level BPE vocabularies.
fn byte_char(b: u8) -> char {
    let printable = |x: u8| (b'!'..=b'~').contains(&x) || (0xA1..=0xAC).contains(&x) || (0xAE..=0xFF).contains(&x);
    if printable(b) {
        char::from(b)
    } else {
        char::from_u32(256 + (0..b).filter(|&x| !printable(x)).count() as u32).expect("valid char")
    }
}

/// The shape and weight format of a tiny model.
#[derive(Debug, Clone, Copy)]
pub struct TinySpec {
    /// Embedding width (a multiple of 256 for K-quant weights).
    pub dim: usize,
    /// Feed-forward width.
    pub ffn: usize,
    /// The type every matrix is quantized to.
    pub weights: GgmlDType,
    /// Store the quantized values dequantized, as F32: the same model, run by the dense kernel.
    pub dequantized: bool,
    /// Range of a separate output head's weights (larger makes the next-token distribution more peaked);
    /// `None` ties the head to the embedding.
    pub head_scale: Option<f32>,
    /// A thinking model: `<think>` and `</think>` as tokens [`THINK`] and `THINK + 1`, and a template
    /// that opens the reasoning.
    pub thinking: bool,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self { dim: 64, ffn: 128, weights: GgmlDType::Q8_0, dequantized: false, head_scale: None, thinking: false }
    }
}

/// Writes `tiny-llama.gguf` into `dir` with weights drawn from `seed`; returns its path.
pub fn write_llama(dir: &Path, seed: u64) -> Result<PathBuf, ModelError> {
    write_llama_with(dir, seed, TinySpec::default(), "tiny-llama.gguf")
}

/// Writes a tiny Llama of shape and format `spec` into `dir/name`; returns its path.
pub fn write_llama_with(dir: &Path, seed: u64, spec: TinySpec, name: &str) -> Result<PathBuf, ModelError> {
    let (dim, ffn, layers) = (spec.dim, spec.ffn, 2usize);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut random = |rows: usize, cols: usize, scale: f32| -> Result<QTensor, ModelError> {
        let data: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-scale..scale)).collect();
        let quantized = QTensor::quantize(&Tensor::from_vec(data, (rows, cols), &Device::Cpu)?, spec.weights)?;
        if spec.dequantized {
            return Ok(QTensor::quantize(&quantized.dequantize(&Device::Cpu)?, GgmlDType::F32)?);
        }
        Ok(quantized)
    };
    let ones = |n: usize| QTensor::quantize(&Tensor::ones(n, candle_core::DType::F32, &Device::Cpu)?, GgmlDType::F32);

    let vocab = if spec.thinking { VOCAB + 2 } else { VOCAB };
    let mut tensors: Vec<(String, QTensor)> =
        vec![("token_embd.weight".into(), random(vocab, dim, 1.0)?), ("output_norm.weight".into(), ones(dim)?)];
    // Hidden weights in ±0.3 at the default width, narrower as the input widens, so every layer keeps
    // activations at the same scale whatever the shape.
    let (w, w_down) = (0.3 * (64.0 / dim as f32).sqrt(), 0.3 * (64.0 / ffn as f32).sqrt() * 2f32.sqrt());
    for i in 0..layers {
        let t = |n: &str| format!("blk.{i}.{n}.weight");
        tensors.push((t("attn_norm"), ones(dim)?));
        tensors.push((t("attn_q"), random(dim, dim, w)?));
        tensors.push((t("attn_k"), random(dim / 2, dim, w)?));
        tensors.push((t("attn_v"), random(dim / 2, dim, w)?));
        tensors.push((t("attn_output"), random(dim, dim, w)?));
        tensors.push((t("ffn_norm"), ones(dim)?));
        tensors.push((t("ffn_gate"), random(ffn, dim, w)?));
        tensors.push((t("ffn_up"), random(ffn, dim, w)?));
        tensors.push((t("ffn_down"), random(dim, ffn, w_down)?));
    }

    if let Some(scale) = spec.head_scale {
        tensors.push(("output.weight".into(), random(vocab, dim, scale)?));
    }

    let mut tokens: Vec<Value> = (0..=255u8).map(|b| Value::String(byte_char(b).to_string())).collect();
    tokens.extend(["he", "<|im_start|>", "<|im_end|>", "<|endoftext|>"].map(|t| Value::String(t.into())));
    // The reasoning tags are user-defined tokens, as in Qwen3's and DeepSeek-R1's GGUFs: text, not control.
    if spec.thinking {
        tokens.extend(["<think>", "</think>"].map(|t| Value::String(t.into())));
    }
    let token_type = |i: usize| match i {
        i if i < BOS as usize => 1,
        i if i >= VOCAB => 4,
        _ => 3,
    };
    let token_types: Vec<Value> = (0..vocab).map(|i| Value::I32(token_type(i))).collect();
    let template = if spec.thinking { CHATML_THINKING } else { CHATML };
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("tiny-llama".into())),
        ("llama.block_count", Value::U32(layers as u32)),
        ("llama.embedding_length", Value::U32(dim as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
        ("llama.context_length", Value::U32(CONTEXT as u32)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("smollm".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(token_types)),
        ("tokenizer.ggml.merges", Value::Array(vec![Value::String("h e".into())])),
        ("tokenizer.ggml.bos_token_id", Value::U32(BOS)),
        ("tokenizer.ggml.eos_token_id", Value::U32(EOS)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.chat_template", Value::String(template.into())),
    ];

    let path = dir.join(name);
    let io = |source| ModelError::Io { path: path.display().to_string(), source };
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &metadata, &tensors)?;
    std::io::Write::flush(&mut file).map_err(io)?;
    Ok(path)
}
