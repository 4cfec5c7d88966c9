//! Reading a transformer's parts from GGUF, shared by every family: metadata under the architecture's
//! prefix (`llama.block_count`, `qwen2.attention.head_count`, …) and llama.cpp's tensor names
//! (`blk.N.attn_q.weight`, …).

use std::sync::Arc;

use super::{Activation, Attention, Block, Config, FeedForward, Transformer};
use crate::gguf::{GgufFile, WeightFormat};
use crate::linear::{Linear, Projections};
use crate::ops::{HeadLayout, RmsNorm, RopeSpec, RopeStyle};
use crate::quant::Matrix;
use crate::ModelError;

/// Which optional attention parts a family has.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttentionParts {
    /// `attn_q.bias`, `attn_k.bias`, `attn_v.bias`.
    pub biases: bool,
    /// `attn_q_norm`, `attn_k_norm` (per head).
    pub qk_norms: bool,
    /// `post_attention_norm`.
    pub post_norm: bool,
}

/// Reads one GGUF file's transformer parts.
pub(crate) struct Loader<'a> {
    file: &'a GgufFile,
    format: WeightFormat,
    arch: String,
}

impl<'a> Loader<'a> {
    /// A loader for `file`, its weights in `format`.
    pub fn new(file: &'a GgufFile, format: WeightFormat) -> Result<Self, ModelError> {
        Ok(Self { file, format, arch: file.architecture()?.to_string() })
    }

    /// The file.
    pub fn file(&self) -> &GgufFile {
        self.file
    }

    /// A metadata key under the architecture's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.arch)
    }

    /// A required integer under the architecture's prefix.
    pub fn uint(&self, name: &str) -> Result<usize, ModelError> {
        Ok(self.file.uint(&self.key(name))? as usize)
    }

    /// An optional integer under the architecture's prefix.
    pub fn optional_uint(&self, name: &str) -> Option<usize> {
        self.file.uint(&self.key(name)).ok().map(|v| v as usize)
    }

    /// An optional number under the architecture's prefix, or `default`.
    pub fn float_or(&self, name: &str, default: f32) -> f32 {
        self.file.float(&self.key(name)).unwrap_or(default)
    }

    /// Transformer blocks (each has tensors of its own, so never more than the file's tensors).
    pub fn layers(&self) -> Result<usize, ModelError> {
        let layers = self.uint("block_count")?;
        if layers > self.file.header().tensor_infos().count() {
            return Err(ModelError::Invalid(format!("{} block count {layers} exceeds the file's tensors", self.arch)));
        }
        Ok(layers)
    }

    /// Embedding width.
    pub fn dim(&self) -> Result<usize, ModelError> {
        self.uint("embedding_length")
    }

    /// The attention head layout; keys and values must share a head width.
    pub fn heads(&self) -> Result<HeadLayout, ModelError> {
        let n_heads = self.uint("attention.head_count")?;
        let n_kv_heads = self.optional_uint("attention.head_count_kv").unwrap_or(n_heads);
        let head_dim = self.optional_uint("attention.key_length").unwrap_or(self.dim()? / n_heads.max(1));
        let value_dim = self.optional_uint("attention.value_length").unwrap_or(head_dim);
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 || head_dim == 0 || value_dim != head_dim {
            return Err(ModelError::Unsupported(format!(
                "{} head layout: {n_heads} heads, {n_kv_heads} kv heads, key width {head_dim}, value width {value_dim}",
                self.arch
            )));
        }
        Ok(HeadLayout { n_heads, n_kv_heads, head_dim })
    }

    /// The RMS norms' epsilon.
    pub fn eps(&self) -> f32 {
        self.float_or("attention.layer_norm_rms_epsilon", 1e-5)
    }

    /// The model's context length (at most 2^24 positions: the RoPE table is built for all of them).
    pub fn context_length(&self) -> Result<usize, ModelError> {
        const LONGEST: usize = 1 << 24;
        match self.uint("context_length")? {
            0 => Err(ModelError::Invalid(format!("{} context length is 0", self.arch))),
            n if n > LONGEST => Err(ModelError::Unsupported(format!(
                "{} context length {n} (Hearth serves at most {LONGEST} positions)",
                self.arch
            ))),
            n => Ok(n),
        }
    }

    /// Rotary embedding as the metadata describes it: base, rotated dimensions, linear scaling, the
    /// attention factor, and Llama 3's per-pair frequency divisors (`rope_freqs.weight`).
    pub fn rope(&self, style: RopeStyle, head_dim: usize) -> Result<RopeSpec, ModelError> {
        let rotary_dim = self.optional_uint("rope.dimension_count").unwrap_or(head_dim);
        if rotary_dim != head_dim {
            return Err(ModelError::Unsupported(format!(
                "{} rotates {rotary_dim} of {head_dim} head dimensions",
                self.arch
            )));
        }
        let scaling = self.file.string(&self.key("rope.scaling.type")).unwrap_or("none");
        if !matches!(scaling, "none" | "linear" | "longrope") {
            return Err(ModelError::Unsupported(format!(
                "{} rope scaling `{scaling}` (supported: none, linear)",
                self.arch
            )));
        }
        let factor = self.float_or("rope.scaling.factor", 0.0);
        let factors =
            if self.file.has_tensor("rope_freqs.weight") { Some(self.vector("rope_freqs.weight")?) } else { None };
        Ok(RopeSpec {
            style,
            theta: self.float_or("rope.freq_base", 10_000.0),
            rotary_dim,
            factors,
            freq_scale: if factor == 0.0 { 1.0 } else { 1.0 / factor },
            attn_factor: self.float_or("rope.scaling.attn_factor", 1.0),
        })
    }

    /// The config every family starts from: no sliding window, no embedding scale, SiLU gates.
    pub fn config(&self, style: RopeStyle) -> Result<Config, ModelError> {
        let heads = self.heads()?;
        Ok(Config {
            dim: self.dim()?,
            heads,
            context_length: self.context_length()?,
            rope: self.rope(style, heads.head_dim)?,
            window: None,
            embedding_scale: None,
            activation: Activation::Silu,
        })
    }

    /// The whole model: every block with the family's attention `parts` (and, with `parts.post_norm`,
    /// a norm after the feed-forward network too), the embeddings, the final norm and the head.
    pub fn build(&self, config: Config, parts: AttentionParts) -> Result<Transformer, ModelError> {
        let block = |i: usize| -> Result<Block, ModelError> {
            let attention = self.attention(i, parts, config.heads)?;
            Ok(Block { attention, ffn: self.feed_forward(i, parts.post_norm)? })
        };
        // The reader runs on by itself; loading never waits for it.
        drop(self.file.read_ahead());
        let blocks = in_parallel(self.layers()?, block)?;
        Transformer::new(config, self.embedding_and_head()?, blocks, self.norm("output_norm.weight")?)
    }

    /// A matrix in the configured in-memory format.
    pub fn matrix(&self, name: &str) -> Result<Matrix, ModelError> {
        Matrix::from_tensor(self.file.tensor(name)?, self.format)
    }

    /// A projection.
    pub fn linear(&self, name: &str) -> Result<Linear, ModelError> {
        Matrix::read(self.file, name, self.format).map(Linear::new)
    }

    /// A tensor as `f32` values.
    pub fn vector(&self, name: &str) -> Result<Vec<f32>, ModelError> {
        self.file.dense(name)
    }

    /// An RMS norm with the model's epsilon.
    pub fn norm(&self, name: &str) -> Result<RmsNorm, ModelError> {
        Ok(RmsNorm::new(self.vector(name)?, self.eps()))
    }

    /// The token embeddings, and the output head (the same matrix when the file has no `output.weight`).
    pub fn embedding_and_head(&self) -> Result<(Arc<Matrix>, Linear), ModelError> {
        if self.file.has_tensor("output.weight") {
            // Lookups dequantize single rows; the table stays in its stored format.
            let table = Matrix::from_tensor(self.file.tensor("token_embd.weight")?, WeightFormat::AsStored)?;
            return Ok((Arc::new(table), self.linear("output.weight")?));
        }
        let head = Linear::new(Matrix::read(self.file, "token_embd.weight", WeightFormat::AsStored)?);
        Ok((head.weight().clone(), head))
    }

    /// Block `i`'s self-attention: Q/K/V as separate tensors or one fused `attn_qkv`.
    pub fn attention(&self, i: usize, parts: AttentionParts, heads: HeadLayout) -> Result<Attention, ModelError> {
        let t = |n: &str| format!("blk.{i}.{n}.weight");
        let qkv = if self.file.has_tensor(&t("attn_qkv")) {
            Projections::fused(self.matrix(&t("attn_qkv"))?, vec![heads.q_dim(), heads.kv_dim(), heads.kv_dim()])?
        } else {
            Projections::new(
                [t("attn_q"), t("attn_k"), t("attn_v")].iter().map(|n| self.matrix(n)).collect::<Result<_, _>>()?,
            )
        };
        let biases = if parts.biases {
            let b = |n: &str| self.vector(&format!("blk.{i}.{n}.bias"));
            Some([b("attn_q")?, b("attn_k")?, b("attn_v")?])
        } else {
            None
        };
        let qk_norms =
            if parts.qk_norms { Some([self.norm(&t("attn_q_norm"))?, self.norm(&t("attn_k_norm"))?]) } else { None };
        Ok(Attention {
            norm: self.norm(&t("attn_norm"))?,
            qkv,
            biases,
            qk_norms,
            output: self.linear(&t("attn_output"))?,
            post_norm: if parts.post_norm { Some(self.norm(&t("post_attention_norm"))?) } else { None },
        })
    }

    /// Block `i`'s feed-forward network: gate and up as separate tensors, or one `ffn_up` of twice the
    /// width with the gate first (Phi-3); with `post_norm`, Gemma's `post_ffw_norm`.
    pub fn feed_forward(&self, i: usize, post_norm: bool) -> Result<FeedForward, ModelError> {
        let t = |n: &str| format!("blk.{i}.{n}.weight");
        let gate_up = if self.file.has_tensor(&t("ffn_gate")) {
            Projections::new(vec![self.matrix(&t("ffn_gate"))?, self.matrix(&t("ffn_up"))?])
        } else {
            let fused = self.matrix(&t("ffn_up"))?;
            let half = fused.rows() / 2;
            Projections::fused(fused, vec![half, half])?
        };
        Ok(FeedForward {
            norm: self.norm(&t("ffn_norm"))?,
            gate_up,
            down: self.linear(&t("ffn_down"))?,
            post_norm: if post_norm { Some(self.norm(&t("post_ffw_norm"))?) } else { None },
        })
    }
}

/// `load(0..count)`, spread over one thread per inference thread (reading is serial, but converting and
/// repacking blocks is not), in order; a thread stops at its first error, and the first error by index
/// wins.
fn in_parallel<T: Send>(
    count: usize,
    load: impl Fn(usize) -> Result<T, ModelError> + Sync,
) -> Result<Vec<T>, ModelError> {
    let threads = crate::parallel::inference_threads().clamp(1, count.max(1));
    let mut loaded: Vec<(usize, Result<T, ModelError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let load = &load;
                scope.spawn(move || {
                    let mut loaded = Vec::new();
                    for i in (t..count).step_by(threads) {
                        let part = load(i);
                        // Repacking frees a copy of each tensor; give it back before the next block grows
                        // the peak.
                        crate::memory::release_free_memory();
                        let failed = part.is_err();
                        loaded.push((i, part));
                        if failed {
                            break;
                        }
                    }
                    loaded
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    loaded.sort_by_key(|(i, _)| *i);
    loaded.into_iter().map(|(_, block)| block).collect()
}
