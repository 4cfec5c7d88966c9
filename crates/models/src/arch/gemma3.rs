//! Gemma 3: embeddings scaled by √dim; per-head Q/K norms; norms both before and after attention and
//! the feed-forward network; a GELU (tanh) gated feed-forward network; sliding-window layers (window
//! `attention.sliding_window`, RoPE base 10 000) interleaved with full-attention ones (every sixth, base
//! `rope.freq_base`). llama.cpp's converter stores Gemma's `1 + w` norm weights already summed.
//!
//! Gemma Team, "Gemma 3 Technical Report" (2025), arXiv:2503.19786.
//! Reference: Hugging Face `transformers/models/gemma3/modeling_gemma3.py`; llama.cpp `src/models/gemma3.cpp`.

use crate::gguf::{GgufFile, Value, WeightFormat};
use crate::ops::{RopeSpec, RopeStyle};
use crate::transformer::{Activation, AttentionParts, Loader, SlidingWindow, Transformer};
use crate::ModelError;

/// Layers per full-attention layer when the file does not say.
const PATTERN: usize = 6;

/// Loads a `gemma3` GGUF.
pub(crate) fn load(file: &GgufFile, format: WeightFormat) -> Result<Transformer, ModelError> {
    let loader = Loader::new(file, format)?;
    let mut config = loader.config(RopeStyle::Halves)?;
    config.embedding_scale = Some((config.dim as f32).sqrt());
    config.activation = Activation::GeluTanh;
    if let Some(size) = loader.optional_uint("attention.sliding_window").filter(|&w| w > 0) {
        let layers = windowed_layers(&loader, loader.layers()?)?;
        let rope = RopeSpec {
            theta: loader.float_or("rope.freq_base_swa", 10_000.0),
            freq_scale: 1.0,
            factors: None,
            ..config.rope.clone()
        };
        config.window = Some(SlidingWindow { size, layers, rope });
    }
    loader.build(config, AttentionParts { qk_norms: true, post_norm: true, ..AttentionParts::default() })
}

/// Which layers use the window: `attention.sliding_window_pattern` as one flag per layer, or as a period
/// whose last layer is full attention (default 6, llama.cpp's).
fn windowed_layers(loader: &Loader<'_>, layers: usize) -> Result<Vec<bool>, ModelError> {
    let key = loader.key("attention.sliding_window_pattern");
    match loader.file().value(&key) {
        Ok(Value::Array(flags)) => match flags.to_bools() {
            Some(flags) if flags.len() == layers => Ok(flags),
            _ => Err(ModelError::Invalid(format!("`{key}` does not have one flag per layer"))),
        },
        _ => {
            let period = loader.optional_uint("attention.sliding_window_pattern").unwrap_or(PATTERN);
            Ok((0..layers).map(|i| period == 0 || i % period < period - 1).collect())
        }
    }
}
