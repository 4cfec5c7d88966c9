//! Llama: a pre-norm decoder with RMSNorm, rotary positions, grouped-query attention and SwiGLU.
//!
//! Touvron et al., "Llama 2: Open Foundation and Fine-Tuned Chat Models" (2023), arXiv:2307.09288.
//! Reference: Hugging Face `transformers/models/llama/modeling_llama.py`; tensor names and the
//! adjacent-pair RoPE layout follow llama.cpp's GGUF conversion (`blk.N.attn_q.weight`, …).

use std::sync::Arc;

use crate::gguf::{GgufFile, WeightFormat};
use crate::layers::{
    add_in_place, attention, swiglu, AttentionSeq, HeadLayout, Linear, Projections, RmsNorm, Rope, SeqKv,
};
use crate::quant::QuantMatrix;
use crate::{CausalLm, KvPool, ModelError, ModelInfo, SeqStep};

/// One transformer block's weights.
#[derive(Debug)]
struct Block {
    attn_norm: RmsNorm,
    /// Q, K and V.
    qkv: Projections,
    o: Linear,
    ffn_norm: RmsNorm,
    /// Gate and up.
    gate_up: Projections,
    down: Linear,
}

/// Where token embeddings come from.
#[derive(Debug)]
enum Embedding {
    /// `vocab × dim` values, dequantized once.
    Dense(Vec<f32>),
    /// Quantized rows (shared with a tied output head), dequantized on lookup.
    Quantized(Arc<QuantMatrix>),
}

impl Embedding {
    fn new(tensor: candle_core::quantized::QTensor) -> Result<Self, ModelError> {
        let dense = tensor.dequantize(&candle_core::Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Self::Dense(dense))
    }
}

/// A Llama-architecture model loaded from GGUF.
#[derive(Debug)]
pub struct Llama {
    info: ModelInfo,
    dim: usize,
    heads: HeadLayout,
    /// Token embeddings, one row per token.
    embedding: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: Linear,
    rope: Rope,
}

impl Llama {
    /// Loads weights and hyper-parameters from `general.architecture = llama` metadata.
    pub fn from_gguf(file: &GgufFile, format: WeightFormat) -> Result<Self, ModelError> {
        let key = |k: &str| format!("llama.{k}");
        let uint = |k: &str| file.uint(&key(k)).map(|v| v as usize);
        let n_layers = uint("block_count")?;
        let dim = uint("embedding_length")?;
        let n_heads = uint("attention.head_count")?;
        let n_kv_heads = uint("attention.head_count_kv").unwrap_or(n_heads);
        let head_dim = uint("attention.key_length").unwrap_or(dim / n_heads.max(1));
        let context_length = uint("context_length")?;
        let eps = file.float(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5);
        let theta = file.float(&key("rope.freq_base")).unwrap_or(10_000.0);
        let rotary_dim = uint("rope.dimension_count").unwrap_or(head_dim);
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 || rotary_dim != head_dim {
            return Err(ModelError::Unsupported(format!(
                "llama head layout: {n_heads} heads, {n_kv_heads} kv heads, rotary dim {rotary_dim} of {head_dim}"
            )));
        }
        let heads = HeadLayout { n_heads, n_kv_heads, head_dim };

        let embedding_tensor = file.tensor("token_embd.weight")?;
        let (vocab_size, embedding_dim) = embedding_tensor.shape().dims2()?;
        if embedding_dim != dim {
            return Err(ModelError::Invalid(format!("token_embd is {embedding_dim} wide, expected {dim}")));
        }
        let (embedding, head) = if file.has_tensor("output.weight") {
            (Embedding::new(embedding_tensor)?, Linear::new(file.weight("output.weight", format)?)?)
        } else {
            // Tied weights: the head's quantized matrix also serves the lookups, so it is held once.
            let head = Linear::new(embedding_tensor)?;
            let embedding = match &head {
                Linear::Native(table) => Embedding::Quantized(table.clone()),
                Linear::Candle { .. } => Embedding::new(file.tensor("token_embd.weight")?)?,
            };
            (embedding, head)
        };
        let norm = |name: &str| file.dense(name).map(|w| RmsNorm::new(w, eps));
        let linear = |name: String| file.weight(&name, format).and_then(Linear::new);
        let projections = |names: &[String]| {
            names.iter().map(|n| file.weight(n, format)).collect::<Result<Vec<_>, _>>().and_then(Projections::new)
        };
        let blocks = (0..n_layers)
            .map(|i| {
                let t = |n: &str| format!("blk.{i}.{n}.weight");
                Ok(Block {
                    attn_norm: norm(&t("attn_norm"))?,
                    qkv: projections(&[t("attn_q"), t("attn_k"), t("attn_v")])?,
                    o: linear(t("attn_output"))?,
                    ffn_norm: norm(&t("ffn_norm"))?,
                    gate_up: projections(&[t("ffn_gate"), t("ffn_up")])?,
                    down: linear(t("ffn_down"))?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let info = ModelInfo { vocab_size: head.out_dim(), context_length };
        if info.vocab_size != vocab_size {
            return Err(ModelError::Invalid(format!("output head has {} rows, vocab {vocab_size}", info.vocab_size)));
        }
        Ok(Self {
            info,
            dim,
            heads,
            embedding,
            blocks,
            norm: norm("output_norm.weight")?,
            head,
            rope: Rope::new(rotary_dim, theta, context_length),
        })
    }

    fn check(&self, pool: &KvPool, batch: &[SeqStep<'_>]) -> Result<(), ModelError> {
        for step in batch {
            if let Some(bad) = step.tokens.iter().find(|&&t| t as usize >= self.info.vocab_size) {
                return Err(ModelError::Invalid(format!("token id {bad} is outside the vocabulary")));
            }
            let end = step.start + step.tokens.len();
            if end > step.blocks.len() * pool.block_size() {
                return Err(ModelError::Invalid(format!("position {end} is past the sequence's blocks")));
            }
            if let Some(bad) = step.blocks.iter().find(|&&b| b as usize >= pool.num_blocks()) {
                return Err(ModelError::Invalid(format!("block {bad} is outside the KV pool")));
            }
            if end > self.rope.positions() {
                return Err(ModelError::Invalid(format!(
                    "position {end} exceeds the context of {}",
                    self.rope.positions()
                )));
            }
        }
        Ok(())
    }
}

impl CausalLm for Llama {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn weight_bytes(&self) -> usize {
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                b.attn_norm.bytes()
                    + b.qkv.bytes()
                    + b.o.bytes()
                    + b.ffn_norm.bytes()
                    + b.gate_up.bytes()
                    + b.down.bytes()
            })
            .sum();
        blocks + self.norm.bytes() + self.head.bytes()
    }

    fn new_pool(&self, block_size: usize, num_blocks: usize) -> KvPool {
        KvPool::new(self.blocks.len(), self.heads.n_kv_heads, self.heads.head_dim, block_size, num_blocks)
    }

    fn kv_bytes_per_token(&self) -> usize {
        KvPool::bytes_per_position(self.blocks.len(), self.heads.n_kv_heads, self.heads.head_dim)
    }

    fn forward(&self, pool: &mut KvPool, batch: &[SeqStep<'_>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.check(pool, batch)?;
        let (dim, q_dim, kv_dim, head_dim) = (self.dim, self.heads.q_dim(), self.heads.kv_dim(), self.heads.head_dim);
        let total: usize = batch.iter().map(|s| s.tokens.len()).sum();
        let mut x = Vec::with_capacity(total * dim);
        for &t in batch.iter().flat_map(|s| s.tokens) {
            match &self.embedding {
                Embedding::Quantized(table) => x.extend(table.dequantize_row(t as usize)),
                Embedding::Dense(table) => x.extend_from_slice(&table[t as usize * dim..][..dim]),
            }
        }

        for (layer, block) in self.blocks.iter().enumerate() {
            let h = block.attn_norm.forward(&x);
            let [mut q, mut k, v]: [Vec<f32>; 3] =
                block.qkv.forward(&h)?.try_into().map_err(|_| ModelError::Invalid("Q/K/V projections".into()))?;
            let mut row = 0;
            for step in batch {
                let (n, start) = (step.tokens.len(), step.start);
                for i in 0..n {
                    self.rope.apply(&mut q[(row + i) * q_dim..][..q_dim], head_dim, start + i);
                    self.rope.apply(&mut k[(row + i) * kv_dim..][..kv_dim], head_dim, start + i);
                }
                let rows = row * kv_dim..(row + n) * kv_dim;
                pool.write(layer, step, &k[rows.clone()], &v[rows]);
                row += n;
            }
            let ((keys, values), block_size) = (pool.layer(layer), pool.block_size());
            let seqs: Vec<AttentionSeq<'_>> = batch
                .iter()
                .map(|step| AttentionSeq {
                    kv: SeqKv { keys, values, blocks: step.blocks, block_size },
                    first: step.start,
                    tokens: step.tokens.len(),
                })
                .collect();
            let mixed = attention(&q, &seqs, self.heads);
            add_in_place(&mut x, &block.o.forward(&mixed)?);

            let h = block.ffn_norm.forward(&x);
            let [mut gate, up]: [Vec<f32>; 2] =
                block.gate_up.forward(&h)?.try_into().map_err(|_| ModelError::Invalid("gate/up projections".into()))?;
            swiglu(&mut gate, &up);
            add_in_place(&mut x, &block.down.forward(&gate)?);
        }

        let mut last_rows = Vec::new();
        let mut row = 0;
        for step in batch {
            row += step.tokens.len();
            if step.want_logits {
                last_rows.extend_from_slice(&x[(row - 1) * dim..row * dim]);
            }
        }
        let logits =
            if last_rows.is_empty() { Vec::new() } else { self.head.forward(&self.norm.forward(&last_rows))? };
        let mut rows = logits.chunks_exact(self.info.vocab_size);
        Ok(batch
            .iter()
            .map(|s| if s.want_logits { rows.next().map(<[f32]>::to_vec).unwrap_or_default() } else { Vec::new() })
            .collect())
    }
}
