//! Sentence embeddings: a BERT encoder (candle-transformers), mean-pooled over the attention mask and
//! L2-normalised, as sentence-transformers does.

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

use crate::ModelError;

/// Facts about an embedding model that the server needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedderInfo {
    /// Length of each embedding.
    pub dimensions: usize,
    /// The most tokens one input may have.
    pub max_tokens: usize,
}

/// A model that turns token sequences into fixed-length unit vectors.
pub trait Embedder: Send {
    /// What the server needs to know about the model.
    fn info(&self) -> &EmbedderInfo;

    /// One embedding per input, in order; inputs are never empty and never longer than `max_tokens`.
    fn embed(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError>;
}

/// BERT-family sentence encoder (e.g. all-MiniLM-L6-v2) on the CPU.
pub struct BertEmbedder {
    model: BertModel,
    info: EmbedderInfo,
    pad_id: u32,
    device: Device,
}

impl BertEmbedder {
    /// Loads `config.json` and `model.safetensors` from a model directory.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|source| ModelError::Io { path: config_path.display().to_string(), source })?;
        let config: Config =
            serde_json::from_str(&text).map_err(|e| ModelError::Invalid(format!("{}: {e}", config_path.display())))?;
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(ModelError::Invalid(format!("{} is missing", weights.display())));
        }
        let device = Device::Cpu;
        // SAFETY: the file is memory-mapped read-only; it must not change while the server runs, as for
        // any mapped model file.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &device)? };
        Self::new(vb, &config)
    }

    fn new(vb: VarBuilder, config: &Config) -> Result<Self, ModelError> {
        let model = BertModel::load(vb, config)?;
        let info = EmbedderInfo { dimensions: config.hidden_size, max_tokens: config.max_position_embeddings };
        Ok(Self { model, info, pad_id: config.pad_token_id as u32, device: Device::Cpu })
    }
}

impl Embedder for BertEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn embed(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        let longest = batch.iter().map(Vec::len).max().unwrap_or(0);
        if batch.is_empty() || longest == 0 {
            return Ok(vec![Vec::new(); batch.len()]);
        }
        let mut ids = Vec::with_capacity(batch.len() * longest);
        let mut mask = Vec::with_capacity(batch.len() * longest);
        for input in batch {
            ids.extend_from_slice(input);
            ids.resize(ids.len() + longest - input.len(), self.pad_id);
            mask.extend(std::iter::repeat_n(1u32, input.len()));
            mask.resize(mask.len() + longest - input.len(), 0);
        }
        let shape = (batch.len(), longest);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let hidden = self.model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
        // Mean over the real tokens only, then unit length.
        let weights = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
        let summed = hidden.broadcast_mul(&weights)?.sum(1)?;
        let pooled = summed.broadcast_div(&weights.sum(1)?)?;
        let norms = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        Ok(pooled.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    /// A two-layer BERT with random weights.
    fn tiny() -> BertEmbedder {
        let config: Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 32, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
            "max_position_embeddings": 64, "type_vocab_size": 2, "initializer_range": 0.02,
            "layer_norm_eps": 1e-12, "pad_token_id": 0
        }))
        .unwrap();
        let vars = VarMap::new();
        BertEmbedder::new(VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu), &config).unwrap()
    }

    #[test]
    fn embeddings_are_unit_vectors_of_the_hidden_size() {
        let model = tiny();
        let out = model.embed(&[vec![1, 5, 9, 2], vec![1, 7, 2]]).unwrap();
        assert_eq!(out.len(), 2);
        for e in &out {
            assert_eq!(e.len(), 16);
            let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        }
        assert_ne!(out[0], out[1]);
    }

    #[test]
    fn padding_in_a_batch_does_not_change_an_embedding() {
        let model = tiny();
        let short = vec![1, 7, 2];
        let alone = model.embed(std::slice::from_ref(&short)).unwrap().remove(0);
        let batched = model.embed(&[(1..30).collect(), short]).unwrap().remove(1);
        let gap = alone.iter().zip(&batched).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(gap < 1e-5, "padding changed the embedding by {gap}");
    }
}
