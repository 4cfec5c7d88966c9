//! The decoder-only transformer every supported family is, written once: pre-norm blocks of grouped-query
//! attention with rotary positions and a gated feed-forward network, over the paged KV pool. A family
//! (`crate::arch`) only says how its GGUF names and shapes the parts and which options it takes:
//! biases on Q/K/V, per-head Q/K norms, norms after attention and the feed-forward network, GELU or SiLU,
//! an embedding scale, sliding-window layers with their own RoPE base, fused Q/K/V or gate/up tensors.
//!
//! # Layout
//! - this file — [`Transformer`], its [`Config`] and blocks, and the batched forward pass.
//! - `load` — [`Loader`], the GGUF reading every family shares.

use std::sync::Arc;

use crate::linear::{Linear, Projections};
use crate::ops::{add_in_place, attention, gelu_glu, swiglu, AttentionSeq, HeadLayout, RmsNorm, Rope, RopeSpec, SeqKv};
use crate::quant::Matrix;
use crate::{CausalLm, KvPool, ModelError, ModelInfo, SeqStep};

mod load;

pub(crate) use load::{AttentionParts, Loader};

/// The feed-forward network's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu(gate) · up` (Llama, Qwen, Phi-3).
    Silu,
    /// `gelu_tanh(gate) · up` (Gemma).
    GeluTanh,
}

/// A family's hyper-parameters and options.
#[derive(Debug, Clone)]
pub struct Config {
    /// Embedding width.
    pub dim: usize,
    /// Attention heads.
    pub heads: HeadLayout,
    /// The longest sequence the model serves.
    pub context_length: usize,
    /// Rotary embedding of full-attention layers.
    pub rope: RopeSpec,
    /// Sliding-window attention: the window, which layers use it, and their own rotary embedding.
    pub window: Option<SlidingWindow>,
    /// Embeddings are multiplied by this (Gemma: √dim).
    pub embedding_scale: Option<f32>,
    /// The feed-forward gate activation.
    pub activation: Activation,
}

/// Sliding-window attention layers.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    /// Positions a token sees, itself included.
    pub size: usize,
    /// Per layer, whether it uses the window.
    pub layers: Vec<bool>,
    /// The rotary embedding of window layers.
    pub rope: RopeSpec,
}

/// Self-attention of one block.
#[derive(Debug)]
pub struct Attention {
    /// Norm before the block.
    pub norm: RmsNorm,
    /// Q, K and V (separate tensors or one fused one).
    pub qkv: Projections,
    /// Biases added to Q, K and V (Qwen2).
    pub biases: Option<[Vec<f32>; 3]>,
    /// Per-head norms of Q and K before RoPE (Qwen3, Gemma 3).
    pub qk_norms: Option<[RmsNorm; 2]>,
    /// The output projection.
    pub output: Linear,
    /// Norm of the output before the residual add (Gemma).
    pub post_norm: Option<RmsNorm>,
}

/// The gated feed-forward network of one block.
#[derive(Debug)]
pub struct FeedForward {
    /// Norm before the network.
    pub norm: RmsNorm,
    /// Gate and up (separate tensors or one fused one, gate first).
    pub gate_up: Projections,
    /// The down projection.
    pub down: Linear,
    /// Norm of the output before the residual add (Gemma).
    pub post_norm: Option<RmsNorm>,
}

/// One transformer block.
#[derive(Debug)]
pub struct Block {
    /// Self-attention.
    pub attention: Attention,
    /// The feed-forward network.
    pub ffn: FeedForward,
}

/// A decoder-only model of any supported family.
#[derive(Debug)]
pub struct Transformer {
    info: ModelInfo,
    config: Config,
    /// Token embeddings in their stored format (shared with a tied output head), dequantized on lookup.
    embedding: Arc<Matrix>,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: Linear,
    rope: Rope,
    /// The window layers' table, where their RoPE differs.
    window_rope: Option<Rope>,
}

impl Transformer {
    /// Checks the parts against the config and builds the RoPE tables.
    pub fn new(
        config: Config,
        (embedding, head): (Arc<Matrix>, Linear),
        blocks: Vec<Block>,
        norm: RmsNorm,
    ) -> Result<Self, ModelError> {
        let (vocab_size, width) = (embedding.rows(), embedding.cols());
        if width != config.dim || head.out_dim() != vocab_size {
            return Err(ModelError::Invalid(format!(
                "token_embd is {vocab_size}x{width} and the output head has {} rows; expected width {}",
                head.out_dim(),
                config.dim
            )));
        }
        if let Some(window) = &config.window {
            if window.layers.len() != blocks.len() || window.size == 0 {
                return Err(ModelError::Invalid("sliding-window pattern does not match the layers".into()));
            }
        }
        check_shapes(&config, &blocks, &norm, &head)?;
        let rope = Rope::new(&config.rope, config.context_length);
        let window_rope =
            config.window.as_ref().filter(|w| w.rope != config.rope).map(|w| Rope::new(&w.rope, config.context_length));
        let info = ModelInfo { vocab_size, context_length: config.context_length };
        Ok(Self { info, config, embedding, blocks, norm, head, rope, window_rope })
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
            if end > self.info.context_length {
                return Err(ModelError::Invalid(format!(
                    "position {end} exceeds the context of {}",
                    self.info.context_length
                )));
            }
        }
        Ok(())
    }

    /// One block's attention for the whole batch; returns what it adds to the residual stream.
    fn attend(
        &self,
        layer: usize,
        x: &[f32],
        pool: &mut KvPool,
        batch: &[SeqStep<'_>],
    ) -> Result<Vec<f32>, ModelError> {
        let part = &self.blocks[layer].attention;
        let heads = self.config.heads;
        let (q_dim, kv_dim, head_dim) = (heads.q_dim(), heads.kv_dim(), heads.head_dim);
        let h = part.norm.forward(x);
        let [mut q, mut k, v]: [Vec<f32>; 3] =
            part.qkv.forward(&h).try_into().map_err(|_| ModelError::Invalid("Q/K/V projections".into()))?;
        let mut v = v;
        if let Some([bq, bk, bv]) = &part.biases {
            for (out, bias) in [(&mut q, bq), (&mut k, bk), (&mut v, bv)] {
                for row in out.chunks_exact_mut(bias.len()) {
                    add_in_place(row, bias);
                }
            }
        }
        if let Some([q_norm, k_norm]) = &part.qk_norms {
            (q, k) = (q_norm.forward(&q), k_norm.forward(&k));
        }
        let window = self.config.window.as_ref().filter(|w| w.layers[layer]);
        let rope = window.and(self.window_rope.as_ref()).unwrap_or(&self.rope);
        let mut row = 0;
        for step in batch {
            let (n, start) = (step.tokens.len(), step.start);
            for i in 0..n {
                rope.apply(&mut q[(row + i) * q_dim..][..q_dim], head_dim, start + i);
                rope.apply(&mut k[(row + i) * kv_dim..][..kv_dim], head_dim, start + i);
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
        let mixed = attention(&q, &seqs, heads, window.map(|w| w.size));
        let out = part.output.forward(&mixed);
        Ok(match &part.post_norm {
            Some(norm) => norm.forward(&out),
            None => out,
        })
    }

    /// One block's feed-forward network; returns what it adds to the residual stream.
    fn feed_forward(&self, layer: usize, x: &[f32]) -> Result<Vec<f32>, ModelError> {
        let part = &self.blocks[layer].ffn;
        let h = part.norm.forward(x);
        let [mut gate, up]: [Vec<f32>; 2] =
            part.gate_up.forward(&h).try_into().map_err(|_| ModelError::Invalid("gate/up projections".into()))?;
        match self.config.activation {
            Activation::Silu => swiglu(&mut gate, &up),
            Activation::GeluTanh => gelu_glu(&mut gate, &up),
        }
        let out = part.down.forward(&gate);
        Ok(match &part.post_norm {
            Some(norm) => norm.forward(&out),
            None => out,
        })
    }
}

impl CausalLm for Transformer {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn weight_bytes(&self) -> usize {
        let norm = |n: &Option<RmsNorm>| n.as_ref().map_or(0, RmsNorm::bytes);
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                let (a, f) = (&b.attention, &b.ffn);
                let qk = a.qk_norms.as_ref().map_or(0, |[q, k]| q.bytes() + k.bytes());
                let biases = a.biases.as_ref().map_or(0, |b| 4 * b.iter().map(Vec::len).sum::<usize>());
                a.norm.bytes()
                    + a.qkv.bytes()
                    + biases
                    + qk
                    + a.output.bytes()
                    + norm(&a.post_norm)
                    + f.norm.bytes()
                    + f.gate_up.bytes()
                    + f.down.bytes()
                    + norm(&f.post_norm)
            })
            .sum();
        blocks + self.norm.bytes() + self.head.bytes()
    }

    fn new_pool(&self, block_size: usize, num_blocks: usize) -> KvPool {
        let heads = self.config.heads;
        KvPool::new(self.blocks.len(), heads.n_kv_heads, heads.head_dim, block_size, num_blocks)
    }

    fn kv_bytes_per_token(&self) -> usize {
        KvPool::bytes_per_position(self.blocks.len(), self.config.heads.n_kv_heads, self.config.heads.head_dim)
    }

    fn forward(&self, pool: &mut KvPool, batch: &[SeqStep<'_>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.check(pool, batch)?;
        let dim = self.config.dim;
        let total: usize = batch.iter().map(|s| s.tokens.len()).sum();
        let mut x = Vec::with_capacity(total * dim);
        for &t in batch.iter().flat_map(|s| s.tokens) {
            x.extend(self.embedding.dequantize_row(t as usize));
        }
        if let Some(scale) = self.config.embedding_scale {
            x.iter_mut().for_each(|v| *v *= scale);
        }
        for layer in 0..self.blocks.len() {
            let mixed = self.attend(layer, &x, pool, batch)?;
            add_in_place(&mut x, &mixed);
            let transformed = self.feed_forward(layer, &x)?;
            add_in_place(&mut x, &transformed);
        }

        let mut last_rows = Vec::new();
        let mut row = 0;
        for step in batch {
            row += step.tokens.len();
            if step.want_logits {
                last_rows.extend_from_slice(&x[(row - 1) * dim..row * dim]);
            }
        }
        let logits = if last_rows.is_empty() { Vec::new() } else { self.head.forward(&self.norm.forward(&last_rows)) };
        let mut rows = logits.chunks_exact(self.info.vocab_size);
        Ok(batch
            .iter()
            .map(|s| if s.want_logits { rows.next().map(<[f32]>::to_vec).unwrap_or_default() } else { Vec::new() })
            .collect())
    }
}

/// Every part's shape against the config, so that a file whose metadata and tensors disagree is an error
/// at load rather than an out-of-bounds slice in the first forward pass.
fn check_shapes(config: &Config, blocks: &[Block], norm: &RmsNorm, head: &Linear) -> Result<(), ModelError> {
    let heads = config.heads;
    let (dim, q_dim, kv_dim) = (config.dim, heads.q_dim(), heads.kv_dim());
    let rope_ok = |rope: &RopeSpec| {
        rope.rotary_dim.is_multiple_of(2)
            && rope.rotary_dim <= heads.head_dim
            && rope.factors.as_ref().is_none_or(|f| f.len() >= rope.rotary_dim / 2)
    };
    if !rope_ok(&config.rope) || !config.window.as_ref().is_none_or(|w| rope_ok(&w.rope)) {
        return Err(ModelError::Invalid(format!("rotary embedding does not fit heads of width {}", heads.head_dim)));
    }
    let mismatch = |what: String| Err(ModelError::Invalid(format!("{what} does not match the model's metadata")));
    if norm.width() != dim || head.in_dim() != dim {
        return mismatch("output_norm or the output head".into());
    }
    for (i, block) in blocks.iter().enumerate() {
        let (attention, ffn) = (&block.attention, &block.ffn);
        let norms = [Some(&attention.norm), attention.post_norm.as_ref(), Some(&ffn.norm), ffn.post_norm.as_ref()];
        if norms.iter().flatten().any(|n| n.width() != dim) {
            return mismatch(format!("a norm of block {i}"));
        }
        let dims_are = |dims: Vec<usize>, want: usize| dims.iter().all(|&d| d == want);
        if attention.qkv.widths() != [q_dim, kv_dim, kv_dim] || !dims_are(attention.qkv.in_dims(), dim) {
            return mismatch(format!("Q/K/V of block {i}"));
        }
        let biases_fit = attention
            .biases
            .as_ref()
            .is_none_or(|[q, k, v]| q.len() == q_dim && k.len() == kv_dim && v.len() == kv_dim);
        let qk_norms_fit =
            attention.qk_norms.as_ref().is_none_or(|norms| norms.iter().all(|n| n.width() == heads.head_dim));
        if !biases_fit || !qk_norms_fit || attention.output.in_dim() != q_dim || attention.output.out_dim() != dim {
            return mismatch(format!("the attention biases, Q/K norms or output of block {i}"));
        }
        let widths = ffn.gate_up.widths();
        let hidden = widths.first().copied().unwrap_or(0);
        if widths != [hidden, hidden] || !dims_are(ffn.gate_up.in_dims(), dim) {
            return mismatch(format!("the gate/up projections of block {i}"));
        }
        if ffn.down.in_dim() != hidden || ffn.down.out_dim() != dim {
            return mismatch(format!("the down projection of block {i}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
