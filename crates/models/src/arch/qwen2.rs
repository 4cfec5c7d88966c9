//! Qwen2 and Qwen2.5: Llama's block with biases on Q, K and V, and rotary pairs half a head apart.
//!
//! Yang et al., "Qwen2 Technical Report" (2024), arXiv:2407.10671.
//! Reference: Hugging Face `transformers/models/qwen2/modeling_qwen2.py`.

use crate::gguf::{GgufFile, WeightFormat};
use crate::ops::RopeStyle;
use crate::transformer::{AttentionParts, Loader, Transformer};
use crate::ModelError;

/// Loads a `qwen2` GGUF.
pub(crate) fn load(file: &GgufFile, format: WeightFormat) -> Result<Transformer, ModelError> {
    let loader = Loader::new(file, format)?;
    loader.build(loader.config(RopeStyle::Halves)?, AttentionParts { biases: true, ..AttentionParts::default() })
}
