//! Qwen3 (dense): Llama's block with an RMS norm over each head of Q and K before RoPE, rotary pairs half
//! a head apart, and a head width of its own (`attention.key_length`).
//!
//! Qwen Team, "Qwen3 Technical Report" (2025), arXiv:2505.09388.
//! Reference: Hugging Face `transformers/models/qwen3/modeling_qwen3.py`.

use crate::gguf::{GgufFile, WeightFormat};
use crate::ops::RopeStyle;
use crate::transformer::{AttentionParts, Loader, Transformer};
use crate::ModelError;

/// Loads a `qwen3` GGUF.
pub(crate) fn load(file: &GgufFile, format: WeightFormat) -> Result<Transformer, ModelError> {
    let loader = Loader::new(file, format)?;
    loader.build(loader.config(RopeStyle::Halves)?, AttentionParts { qk_norms: true, ..AttentionParts::default() })
}
