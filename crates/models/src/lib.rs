//! Model implementations over candle: weights are immutable, per-sequence state is passed in.
//!
//! A model never owns a KV cache. The engine owns one [`KvPool`] of fixed-size blocks and hands a ragged
//! batch of sequences, each with its block table, to [`CausalLm::forward`], so sequences at different
//! positions share one forward step and share cached prefix blocks.
//!
//! # Layout
//! - [`gguf`] — [`GgufFile`], our own reader of a GGUF file's metadata and tensors (hostile files are refused).
//! - [`quant`] — [`quant::Matrix`], every weight format's in-memory layout and kernels (by format and
//!   instruction set).
//! - [`linear`] — [`linear::Linear`] and [`linear::Projections`], weights applied to activations.
//! - [`ops`] — attention through a block table, RMSNorm, RoPE, SwiGLU: written once, shared by every
//!   architecture.
//! - [`embedding`] — [`Embedder`] and [`BertEmbedder`], sentence embeddings from a BERT encoder.
//! - [`kv_cache`] — [`KvPool`], the paged keys and values of every sequence and layer.
//! - [`transformer`] — [`Transformer`], the decoder every family is, and the GGUF reading they share.
//! - `arch` — one short file per family (`llama`, `qwen2`, `qwen3`, `gemma3`, `phi3`): what differs.
//! - `memory` — [`release_free_memory`], freed memory back to the kernel after loading and bursts, and
//!   [`available_memory`].
//! - `parallel` — the inference thread pool (shared with candle) and its size.
//! - `cpu` — which instruction set the kernels use here, and their shared AVX2 helpers.
//! - `tiny` (feature `test-util`): tiny seeded random-weight GGUF files for tests.
#![warn(missing_docs)]

mod arch;
mod cpu;
pub mod embedding;
pub mod gguf;
pub mod kv_cache;
pub mod linear;
mod memory;
pub mod ops;
mod parallel;
pub mod quant;
#[cfg(any(test, feature = "test-util"))]
pub mod tiny;
pub mod transformer;

pub use embedding::{BertEmbedder, Embedder, EmbedderInfo};
pub use gguf::{GgufFile, WeightFormat};
pub use kv_cache::KvPool;
pub use memory::{available_memory, release_free_memory};
pub use parallel::{inference_threads, set_inference_threads};
pub use transformer::Transformer;

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
    /// candle failed (the BERT embedder).
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
#[derive(Debug, Clone, Copy)]
pub struct SeqStep<'a> {
    /// Tokens at positions `start..start + tokens.len()` (a prompt chunk or one decoded token).
    pub tokens: &'a [u32],
    /// Positions `0..start` are already in the pool.
    pub start: usize,
    /// The sequence's block table; it covers every position up to `start + tokens.len()`.
    pub blocks: &'a [u32],
    /// Whether the caller needs next-token logits after the last of `tokens`.
    pub want_logits: bool,
}

/// A decoder-only language model that runs ragged batches.
pub trait CausalLm: Send {
    /// What the engine needs to know about the model.
    fn info(&self) -> &ModelInfo;

    /// A KV pool of `num_blocks` blocks of `block_size` positions for this model's layers.
    fn new_pool(&self, block_size: usize, num_blocks: usize) -> KvPool;

    /// Bytes of KV cache one position takes over all layers.
    fn kv_bytes_per_token(&self) -> usize;

    /// Bytes of weights one decode step reads (every matmul weight and norm, plus one embedding row).
    fn weight_bytes(&self) -> usize;

    /// Runs one step for every entry of `batch` together, writing the new positions' keys and values
    /// into `pool`. Returns one row of logits per entry (empty for entries that did not ask for logits).
    /// Entries must not write to the same block.
    fn forward(&self, pool: &mut KvPool, batch: &[SeqStep<'_>]) -> Result<Vec<Vec<f32>>, ModelError>;
}

/// What a model file's KV cache needs, read from its header without loading any weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvNeeds {
    /// Bytes of KV cache one position takes over all layers.
    pub bytes_per_token: usize,
    /// The longest sequence the file declares (a family may serve less).
    pub context_length: usize,
}

/// The KV cache needs of `file`, so a server can budget memory before it loads the weights.
pub fn kv_needs(file: &GgufFile) -> Result<KvNeeds, ModelError> {
    let loader = transformer::Loader::new(file, WeightFormat::AsStored)?;
    let heads = loader.heads()?;
    Ok(KvNeeds {
        bytes_per_token: KvPool::bytes_per_position(loader.layers()?, heads.n_kv_heads, heads.head_dim),
        context_length: loader.context_length()?,
    })
}

/// The `general.architecture` values Hearth runs.
pub const ARCHITECTURES: [&str; 5] = ["llama", "qwen2", "qwen3", "gemma3", "phi3"];

/// Loads the model in a GGUF file, choosing the family by `general.architecture`.
pub fn load(file: &GgufFile, format: WeightFormat) -> Result<Box<dyn CausalLm>, ModelError> {
    let model = match file.architecture()? {
        "llama" => arch::llama::load(file, format)?,
        "qwen2" => arch::qwen2::load(file, format)?,
        "qwen3" => arch::qwen3::load(file, format)?,
        "gemma3" => arch::gemma3::load(file, format)?,
        "phi3" => arch::phi3::load(file, format)?,
        other => {
            return Err(ModelError::Unsupported(format!(
                "architecture `{other}` (supported: {})",
                ARCHITECTURES.join(", ")
            )))
        }
    };
    Ok(Box::new(model))
}
