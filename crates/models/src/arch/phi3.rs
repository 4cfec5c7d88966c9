//! Phi-3: Llama's block with Q, K and V in one fused `attn_qkv` tensor and gate and up in one `ffn_up`
//! (gate first), rotary pairs half a head apart, and for long-context variants LongRoPE's per-pair
//! frequency divisors (`rope_factors_short` / `rope_factors_long`).
//!
//! Abdin et al., "Phi-3 Technical Report" (2024), arXiv:2404.14219.
//! Reference: Hugging Face `transformers/models/phi3/modeling_phi3.py`; llama.cpp `src/models/phi3.cpp`.

use crate::gguf::{GgufFile, WeightFormat};
use crate::ops::RopeStyle;
use crate::transformer::{AttentionParts, Loader, Transformer};
use crate::ModelError;

/// Loads a `phi3` GGUF. With LongRoPE factors, Hearth uses the short ones, as llama.cpp does for contexts
/// up to the original training length, and serves at most that length (`rope.scaling.original_context_length`).
pub(crate) fn load(file: &GgufFile, format: WeightFormat) -> Result<Transformer, ModelError> {
    let loader = Loader::new(file, format)?;
    let mut config = loader.config(RopeStyle::Halves)?;
    if file.has_tensor("rope_factors_short.weight") {
        config.rope.factors = Some(loader.vector("rope_factors_short.weight")?);
        if let Some(original) = loader.optional_uint("rope.scaling.original_context_length") {
            config.context_length = config.context_length.min(original);
        }
    }
    loader.build(config, AttentionParts::default())
}
