//! Llama: a pre-norm decoder with RMSNorm, rotary positions, grouped-query attention and SwiGLU. Llama 2
//! and 3.x, Mistral, SmolLM and other `llama` GGUFs; Llama 3.x's long-context frequency divisors come
//! from `rope_freqs.weight`.
//!
//! Touvron et al., "Llama 2: Open Foundation and Fine-Tuned Chat Models" (2023), arXiv:2307.09288.
//! Reference: Hugging Face `transformers/models/llama/modeling_llama.py`; tensor names and the
//! adjacent-pair RoPE layout follow llama.cpp's GGUF conversion (`blk.N.attn_q.weight`, …).

use crate::gguf::{GgufFile, WeightFormat};
use crate::ops::RopeStyle;
use crate::transformer::{AttentionParts, Loader, Transformer};
use crate::ModelError;

/// Loads a `llama` GGUF.
pub(crate) fn load(file: &GgufFile, format: WeightFormat) -> Result<Transformer, ModelError> {
    let loader = Loader::new(file, format)?;
    loader.build(loader.config(RopeStyle::Adjacent)?, AttentionParts::default())
}
