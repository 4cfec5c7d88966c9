//! Model implementations over candle: weights are immutable, per-sequence state is passed in.
//!
//! A model never owns a KV cache. The engine keeps one [`KvCache`] per sequence and hands a ragged batch
//! of them to [`CausalLm::forward`], so sequences at different positions share one forward step.
//!
//! # Layout
//! - [`gguf`] — [`GgufFile`], a GGUF file's metadata and tensors, read once.
//! - [`layers`] — RMSNorm, RoPE, grouped-query attention over a [`KvCache`], SwiGLU: written once, shared by
//!   every architecture.
//! - [`embedding`] — [`Embedder`] and [`BertEmbedder`], sentence embeddings from a BERT encoder.
//! - [`kv_cache`] — [`KvCache`], one sequence's keys and values for every layer.
//! - [`llama`] — the Llama architecture (Llama 2/3, SmolLM, Mistral-style GGUFs).
//! - `parallel` — the inference thread pool (shared with candle) and its size.
//! - `tiny` (feature `test-util`): tiny seeded random-weight GGUF files for tests.
#![warn(missing_docs)]

pub mod embedding;
pub mod gguf;
pub mod kv_cache;
pub mod layers;
pub mod llama;
mod parallel;
pub mod quant;
#[cfg(feature = "test-util")]
pub mod tiny;

pub use embedding::{BertEmbedder, Embedder, EmbedderInfo};
pub use gguf::{GgufFile, WeightFormat};
pub use kv_cache::KvCache;
pub use llama::Llama;
pub use parallel::{inference_threads, set_inference_threads};

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a model we can load.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// A metadata key or tensor is missing or malformed.
    #[error("invalid model file: {0}")]
    Invalid(String),
    /// candle failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Facts about a loaded model that the engine and server need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Rows of the output head.
    pub vocab_size: usize,
    /// The longest sequence (prompt + generation) the model serves.
    pub context_length: usize,
}

/// One sequence's share of a forward step.
pub struct SeqStep<'a> {
    /// Tokens to append at the cache's current end (a prompt chunk or one decoded token).
    pub tokens: &'a [u32],
    /// The sequence's keys and values; grows by `tokens.len()`.
    pub cache: &'a mut KvCache,
    /// Whether the caller needs next-token logits after the last of `tokens`.
    pub want_logits: bool,
}

/// A decoder-only language model that runs ragged batches.
pub trait CausalLm: Send {
    /// What the engine needs to know about the model.
    fn info(&self) -> &ModelInfo;

    /// An empty cache for one sequence, with room for `capacity` tokens before it must grow.
    fn new_cache(&self, capacity: usize) -> KvCache;

    /// Bytes of weights one decode step reads (every matmul weight and norm, plus one embedding row).
    fn weight_bytes(&self) -> usize;

    /// Runs one step for every entry of `batch` together. Returns one row of logits per entry
    /// (empty for entries that did not ask for logits).
    fn forward(&self, batch: &mut [SeqStep<'_>]) -> Result<Vec<Vec<f32>>, ModelError>;
}

/// Loads the model in a GGUF file, choosing the implementation by `general.architecture`.
pub fn load(file: &GgufFile, format: WeightFormat) -> Result<Box<dyn CausalLm>, ModelError> {
    match file.architecture()? {
        "llama" => Ok(Box::new(Llama::from_gguf(file, format)?)),
        other => Err(ModelError::Unsupported(format!("architecture `{other}` (supported: llama)"))),
    }
}
