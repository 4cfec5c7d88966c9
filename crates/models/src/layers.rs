//! Building blocks shared by every architecture, over plain row-major `f32` slices.
//!
//! Only the large matmuls go through candle ([`Linear`], quantized). Everything else is a short loop here,
//! which avoids a tensor allocation per op and lets attention read the [`crate::KvPool`] in place: no `cat`,
//! and grouped-query heads index their shared key/value head instead of copying it.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Module, Tensor};
use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::parallel::{for_chunks, DisjointWrites};
use crate::quant::QuantMatrix;
use crate::ModelError;

/// A weight matrix `[out, in]` applied to rows of activations: our own kernels for the formats they
/// cover ([`QuantMatrix`]), candle's quantized matmul for the rest.
#[derive(Debug)]
pub enum Linear {
    /// Q8_0 or Q4_1 blocks, run by [`crate::quant`]; shared with a tied embedding.
    Native(Arc<QuantMatrix>),
    /// Any other GGUF type, run by candle.
    Candle {
        /// The weight.
        weight: QMatMul,
        /// Input width.
        in_dim: usize,
        /// Output width.
        out_dim: usize,
    },
}

impl Linear {
    /// Wraps a GGUF weight of shape `[out, in]`.
    pub fn new(weight: QTensor) -> Result<Self, ModelError> {
        if let Some(native) = QuantMatrix::from_qtensor(&weight) {
            return Ok(Self::Native(Arc::new(native.repack())));
        }
        let (out_dim, in_dim) = weight.shape().dims2()?;
        Ok(Self::Candle { weight: QMatMul::from_qtensor(weight)?, in_dim, out_dim })
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        match self {
            Self::Native(w) => w.rows(),
            Self::Candle { out_dim, .. } => *out_dim,
        }
    }

    /// Bytes of weight data.
    pub fn bytes(&self) -> usize {
        match self {
            Self::Native(w) => w.bytes(),
            Self::Candle { weight: QMatMul::QTensor(t), .. } => t.storage_size_in_bytes(),
            Self::Candle { weight: QMatMul::Tensor(t) | QMatMul::TensorF16(t), .. } => {
                t.elem_count() * t.dtype().size_in_bytes()
            }
        }
    }

    /// `rows × in` → `rows × out`.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>, ModelError> {
        match self {
            Self::Native(w) => Ok(w.matmul(x)),
            Self::Candle { weight, in_dim, .. } => {
                let input = Tensor::from_slice(x, (x.len() / in_dim, *in_dim), &candle_core::Device::Cpu)?;
                Ok(weight.forward(&input)?.flatten_all()?.to_vec1::<f32>()?)
            }
        }
    }
}

/// Several projections of the same input (Q/K/V, or gate/up), computed by one matmul when their weights
/// stack: the activations are quantized once and the threads synchronise once.
#[derive(Debug)]
pub enum Projections {
    /// One matrix whose rows are the parts' rows, in order.
    Stacked {
        /// The stacked weights.
        matrix: QuantMatrix,
        /// Output width of each part.
        widths: Vec<usize>,
    },
    /// Parts whose formats do not stack, run one by one.
    Separate(Vec<Linear>),
}

impl Projections {
    /// Stacks the weights when they share a native format and input width.
    pub fn new(weights: Vec<QTensor>) -> Result<Self, ModelError> {
        let native: Option<Vec<QuantMatrix>> = weights.iter().map(QuantMatrix::from_qtensor).collect();
        if let Some(native) = native {
            let refs: Vec<&QuantMatrix> = native.iter().collect();
            if let Some(matrix) = QuantMatrix::stack(&refs) {
                let widths = native.iter().map(QuantMatrix::rows).collect();
                return Ok(Self::Stacked { matrix: matrix.repack(), widths });
            }
        }
        Ok(Self::Separate(weights.into_iter().map(Linear::new).collect::<Result<_, _>>()?))
    }

    /// Bytes of weight data.
    pub fn bytes(&self) -> usize {
        match self {
            Self::Stacked { matrix, .. } => matrix.bytes(),
            Self::Separate(parts) => parts.iter().map(Linear::bytes).sum(),
        }
    }

    /// One `rows × width` output per part.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Self::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
            Self::Stacked { matrix, widths } => {
                let all = matrix.matmul(x);
                let total = matrix.rows();
                let rows = all.len() / total;
                let mut outputs: Vec<Vec<f32>> = widths.iter().map(|w| Vec::with_capacity(rows * w)).collect();
                for row in all.chunks_exact(total) {
                    let mut start = 0;
                    for (out, &w) in outputs.iter_mut().zip(widths) {
                        out.extend_from_slice(&row[start..start + w]);
                        start += w;
                    }
                }
                Ok(outputs)
            }
        }
    }
}

/// Root-mean-square normalisation with a learned scale.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    /// A norm with this scale vector and epsilon.
    pub fn new(weight: Vec<f32>, eps: f32) -> Self {
        Self { weight, eps }
    }

    /// Bytes of weight data.
    pub fn bytes(&self) -> usize {
        self.weight.len() * 4
    }

    /// Normalises each row of `x` (rows of the scale's width).
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let dim = self.weight.len();
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(dim) {
            let mean_square = dot(row, row) / dim as f32;
            let scale = 1.0 / (mean_square + self.eps).sqrt();
            out.extend(row.iter().zip(&self.weight).map(|(v, w)| v * scale * w));
        }
        out
    }
}

/// Rotary position embedding on adjacent pairs (GGUF's llama layout), with a table for every position.
#[derive(Debug)]
pub struct Rope {
    /// `[position][pair]` cosines, then sines.
    cos: Vec<f32>,
    sin: Vec<f32>,
    pairs: usize,
}

impl Rope {
    /// A table for `positions` positions of a `rotary_dim`-wide head with base `theta`.
    pub fn new(rotary_dim: usize, theta: f32, positions: usize) -> Self {
        let pairs = rotary_dim / 2;
        let mut cos = Vec::with_capacity(positions * pairs);
        let mut sin = Vec::with_capacity(positions * pairs);
        for p in 0..positions {
            for i in 0..pairs {
                let freq = 1.0 / (theta as f64).powf(2.0 * i as f64 / rotary_dim as f64);
                let angle = p as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self { cos, sin, pairs }
    }

    /// Positions the table covers.
    pub fn positions(&self) -> usize {
        self.cos.len() / self.pairs.max(1)
    }

    /// Rotates every head of one token's row `x` (heads of `head_dim`) to position `pos`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        let cos = &self.cos[pos * self.pairs..(pos + 1) * self.pairs];
        let sin = &self.sin[pos * self.pairs..(pos + 1) * self.pairs];
        for head in x.chunks_exact_mut(head_dim) {
            for i in 0..self.pairs {
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * cos[i] - b * sin[i];
                head[2 * i + 1] = a * sin[i] + b * cos[i];
            }
        }
    }
}

/// Head layout of grouped-query attention.
#[derive(Debug, Clone, Copy)]
pub struct HeadLayout {
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads; each serves `n_heads / n_kv_heads` query heads.
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl HeadLayout {
    /// Width of a query row.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of a key or value row.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// One sequence's keys and values in one layer of a [`crate::KvPool`], read through its block table.
#[derive(Debug, Clone, Copy)]
pub struct SeqKv<'a> {
    /// The layer's keys, every block of the pool, in the pool's head-by-head layout.
    pub keys: &'a [f16],
    /// The layer's values, laid out as the keys.
    pub values: &'a [f16],
    /// The sequence's block table.
    pub blocks: &'a [u32],
    /// Positions per block.
    pub block_size: usize,
}

impl SeqKv<'_> {
    /// The sequence's first `visible` key (or value) rows of head `head`, as one contiguous slice of
    /// `rows × head_dim` values per block.
    fn rows<'b>(
        &'b self,
        of: &'b [f16],
        visible: usize,
        head: usize,
        heads: HeadLayout,
    ) -> impl Iterator<Item = &'b [f16]> + 'b {
        let d = heads.head_dim;
        let (stride, offset) = (self.block_size * heads.kv_dim(), head * self.block_size * d);
        self.blocks.iter().enumerate().map_while(move |(i, &block)| {
            let first = i * self.block_size;
            let rows = visible.checked_sub(first).filter(|&r| r > 0)?.min(self.block_size);
            let at = block as usize * stride + offset;
            Some(&of[at..at + rows * d])
        })
    }
}

/// One sequence's share of a batched [`attention`] call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionSeq<'a> {
    /// The sequence's keys and values, which already hold this step's tokens.
    pub kv: SeqKv<'a>,
    /// Position of the sequence's first token in this step.
    pub first: usize,
    /// Tokens of the sequence in this step.
    pub tokens: usize,
}

/// Causal attention for a whole batch: `q` holds every sequence's query rows in `seqs` order
/// (`tokens × q_dim` each, the tokens at positions `first..first + tokens`), and each token attends over its
/// own sequence's positions `0..=position`. Returns the rows in the same order.
///
/// Work items are (token, key/value head) pairs of the whole batch, run in parallel in one pass; each item
/// serves every query head of its group, so a grouped key or value row is read once for all of them, in
/// place in the pool. An item's result depends only on its own token and sequence.
pub fn attention(q: &[f32], seqs: &[AttentionSeq<'_>], heads: HeadLayout) -> Vec<f32> {
    let q_dim = heads.q_dim();
    let span = q_dim / heads.n_kv_heads;
    // Which sequence each token belongs to, and how many positions it sees.
    let owners: Vec<(usize, usize)> =
        seqs.iter().enumerate().flat_map(|(i, s)| (0..s.tokens).map(move |t| (i, s.first + t + 1))).collect();
    assert_eq!(owners.len() * q_dim, q.len(), "one query row per token of the batch");
    let mut out = vec![0.0; q.len()];
    let cells = DisjointWrites::new(&mut out);
    for_chunks(owners.len() * heads.n_kv_heads, |items| {
        let mut scores = Vec::new();
        for item in items {
            let (t, kv_head) = (item / heads.n_kv_heads, item % heads.n_kv_heads);
            let (seq, visible) = owners[t];
            let at = t * q_dim + kv_head * span;
            // SAFETY: each (token, kv head) item owns the output cells of its group's query heads, and
            // items are split between threads.
            let out = unsafe { cells.slice(at..at + span) };
            let item = AttentionItem { queries: &q[at..at + span], kv: seqs[seq].kv, visible, kv_head, heads };
            item.run(&mut scores, out);
        }
    });
    out
}

/// One (token, key/value head) work item of [`attention`].
struct AttentionItem<'a> {
    queries: &'a [f32],
    kv: SeqKv<'a>,
    visible: usize,
    kv_head: usize,
    heads: HeadLayout,
}

impl AttentionItem<'_> {
    fn run(&self, scores: &mut Vec<f32>, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if simd::avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { simd::run_avx2(self, scores, out) };
        }
        self.body(scores, out);
    }

    /// The portable body; inlined into a copy compiled for AVX2, where its loops vectorise 8 wide.
    #[inline(always)]
    fn body(&self, scores: &mut Vec<f32>, out: &mut [f32]) {
        let (d, visible) = (self.heads.head_dim, self.visible);
        let scale = 1.0 / (d as f32).sqrt();
        scores.clear();
        scores.resize(self.queries.len() / d * visible, 0.0);
        let mut row = vec![0.0; d];
        let keys =
            self.kv.rows(self.kv.keys, visible, self.kv_head, self.heads).flat_map(|block| block.chunks_exact(d));
        for (p, key) in keys.enumerate() {
            key.convert_to_f32_slice(&mut row);
            for (g, query) in self.queries.chunks_exact(d).enumerate() {
                scores[g * visible + p] = dot(query, &row) * scale;
            }
        }
        for row in scores.chunks_exact_mut(visible) {
            softmax_in_place(row);
        }
        let values =
            self.kv.rows(self.kv.values, visible, self.kv_head, self.heads).flat_map(|block| block.chunks_exact(d));
        for (p, value) in values.enumerate() {
            value.convert_to_f32_slice(&mut row);
            for (g, out) in out.chunks_exact_mut(d).enumerate() {
                axpy(scores[g * visible + p], &row, out);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use half::f16;

    use super::AttentionItem;

    /// Query heads whose scores and outputs are computed together, sharing each key and value load.
    const GROUP: usize = 3;
    /// Floats of a value row accumulated at once: four registers per query head, so a group's
    /// accumulators fit AVX2's sixteen.
    const SLAB: usize = 32;

    /// Whether this CPU has AVX2, FMA and F16C (checked once).
    pub(super) fn avx2() -> bool {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX2.get_or_init(|| {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
        })
    }

    /// [`AttentionItem::body`] with AVX2 + FMA: each key row is loaded once for up to [`GROUP`] query
    /// heads, the value rows once per [`SLAB`] with the heads' outputs held in registers. Head sizes that
    /// are not a multiple of [`SLAB`] take the portable body, compiled for AVX2.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn run_avx2(item: &AttentionItem<'_>, scores: &mut Vec<f32>, out: &mut [f32]) {
        let (d, visible) = (item.heads.head_dim, item.visible);
        if !d.is_multiple_of(SLAB) {
            return item.body(scores, out);
        }
        let heads = item.queries.len() / d;
        let scale = 1.0 / (d as f32).sqrt();
        scores.clear();
        scores.resize(heads * visible, 0.0);
        // SAFETY: every pointer below stays inside `item.queries`, one head's key or value row (`d` values),
        // `scores` (`heads × visible`) or `out` (`heads × d`).
        unsafe {
            let rows =
                item.kv.rows(item.kv.keys, visible, item.kv_head, item.heads).flat_map(|block| block.chunks_exact(d));
            for (p, key) in rows.enumerate() {
                let key = key.as_ptr();
                for first in (0..heads).step_by(GROUP) {
                    let q = item.queries.as_ptr().add(first * d);
                    let dots = match heads - first {
                        1 => dots::<1>(q, key, d),
                        2 => dots::<2>(q, key, d),
                        _ => dots::<GROUP>(q, key, d),
                    };
                    for (g, dot) in dots.iter().take(heads - first).enumerate() {
                        scores[(first + g) * visible + p] = dot * scale;
                    }
                }
            }
            for row in scores.chunks_exact_mut(visible) {
                softmax(row);
            }
            for first in (0..heads).step_by(GROUP) {
                for slab in (0..d).step_by(SLAB) {
                    match heads - first {
                        1 => weigh_values::<1>(item, scores, out, first, slab),
                        2 => weigh_values::<2>(item, scores, out, first, slab),
                        _ => weigh_values::<GROUP>(item, scores, out, first, slab),
                    }
                }
            }
        }
    }

    /// [`super::softmax_in_place`] eight lanes at a time, with [`super::exp`]'s reduction and series.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn softmax(x: &mut [f32]) {
        let n = x.len();
        let whole = n / 8 * 8;
        let p = x.as_mut_ptr();
        // SAFETY: every access is below `n`: 8-wide ones below `whole`, the tail one by one.
        unsafe {
            let mut top = _mm256_set1_ps(f32::NEG_INFINITY);
            for i in (0..whole).step_by(8) {
                top = _mm256_max_ps(top, _mm256_loadu_ps(p.add(i)));
            }
            let mut max = hmax(top);
            for i in whole..n {
                max = max.max(*p.add(i));
            }
            let shift = _mm256_set1_ps(max);
            let mut total = _mm256_setzero_ps();
            for i in (0..whole).step_by(8) {
                let shifted = _mm256_sub_ps(_mm256_loadu_ps(p.add(i)), shift);
                let e = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(shifted, _mm256_set1_ps(-80.0)), exp8(shifted));
                _mm256_storeu_ps(p.add(i), e);
                total = _mm256_add_ps(total, e);
            }
            let mut sum = hsum(total);
            for i in whole..n {
                let shifted = *p.add(i) - max;
                *p.add(i) = if shifted < -80.0 { 0.0 } else { super::exp(shifted) };
                sum += *p.add(i);
            }
            let inverse = _mm256_set1_ps(1.0 / sum);
            for i in (0..whole).step_by(8) {
                _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inverse));
            }
            for i in whole..n {
                *p.add(i) /= sum;
            }
        }
    }

    /// [`super::log_sum_exp`] eight lanes at a time.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn log_sum_exp(x: &[f32]) -> f32 {
        let (eights, tail) = x.split_at(x.len() / 8 * 8);
        let p = eights.as_ptr();
        // SAFETY: the 8-wide loads stay below `eights.len()`.
        unsafe {
            let mut top = _mm256_set1_ps(f32::NEG_INFINITY);
            for i in (0..eights.len()).step_by(8) {
                top = _mm256_max_ps(top, _mm256_loadu_ps(p.add(i)));
            }
            let max = tail.iter().fold(hmax(top), |a, &v| a.max(v));
            let shift = _mm256_set1_ps(max);
            let mut total = _mm256_setzero_ps();
            for i in (0..eights.len()).step_by(8) {
                total = _mm256_add_ps(total, exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), shift)));
            }
            let sum = tail.iter().fold(hsum(total), |a, &v| a + super::exp((v - max).max(-87.0)));
            max + sum.ln()
        }
    }

    /// `silu(gate) * up` into `gate`, eight lanes at a time; the same bits as [`super::swiglu_body`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn swiglu(gate: &mut [f32], up: &[f32]) {
        let n = gate.len().min(up.len());
        let whole = n / 8 * 8;
        let (g, u) = (gate.as_mut_ptr(), up.as_ptr());
        // SAFETY: the 8-wide accesses stay below `whole <= n`.
        unsafe {
            let one = _mm256_set1_ps(1.0);
            for i in (0..whole).step_by(8) {
                let x = _mm256_loadu_ps(g.add(i));
                let silu = _mm256_div_ps(x, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
                _mm256_storeu_ps(g.add(i), _mm256_mul_ps(silu, _mm256_loadu_ps(u.add(i))));
            }
        }
        super::swiglu_body(&mut gate[whole..n], &up[whole..n]);
    }

    /// [`super::exp`] of eight lanes: the same clamp, reduction and series, so the same bits.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        let c = _mm256_set1_ps;
        let x = _mm256_min_ps(_mm256_max_ps(x, c(-87.0)), c(88.0));
        let k = _mm256_floor_ps(_mm256_add_ps(_mm256_mul_ps(x, c(std::f32::consts::LOG2_E)), c(0.5)));
        let f = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(k, c(LN2_HI))), _mm256_mul_ps(k, c(LN2_LO)));
        let mut poly = c(1.0 / 720.0);
        for coefficient in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            poly = _mm256_add_ps(c(coefficient), _mm256_mul_ps(f, poly));
        }
        let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvttps_epi32(k), _mm256_set1_epi32(127)));
        _mm256_mul_ps(_mm256_castsi256_ps(scale), poly)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hmax(v: __m256) -> f32 {
        let quad = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_max_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_max_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }

    /// The dot products of `G` consecutive query rows of length `d` (from `q`) with one key row, in the
    /// first `G` lanes of the result.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dots<const G: usize>(q: *const f32, key: *const f16, d: usize) -> [f32; 4] {
        // SAFETY: the caller passes `G` query rows of `d` floats and one key row of `d` halves.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); 4];
            for i in (0..d).step_by(8) {
                let k = _mm256_cvtph_ps(_mm_loadu_si128(key.add(i).cast()));
                for (g, acc) in acc.iter_mut().take(G).enumerate() {
                    *acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(g * d + i)), k, *acc);
                }
            }
            // Four horizontal sums at once: lane g of `sums` is the sum of `acc[g]`.
            let pairs = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
            let sums = _mm_add_ps(_mm256_castps256_ps128(pairs), _mm256_extractf128_ps(pairs, 1));
            let mut out = [0.0; 4];
            _mm_storeu_ps(out.as_mut_ptr(), sums);
            out
        }
    }

    /// `out[g][slab..slab + SLAB] = Σ_p scores[g][p] · value_p[slab..slab + SLAB]` (within the item's head)
    /// for the `G` query heads from `first`, accumulated in registers over every visible position.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weigh_values<const G: usize>(
        item: &AttentionItem<'_>,
        scores: &[f32],
        out: &mut [f32],
        first: usize,
        slab: usize,
    ) {
        let (d, visible) = (item.heads.head_dim, item.visible);
        // SAFETY: `slab + SLAB <= d` within each value row, and `out` holds `heads × d` floats.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); SLAB / 8]; G];
            let rows =
                item.kv.rows(item.kv.values, visible, item.kv_head, item.heads).flat_map(|block| block.chunks_exact(d));
            for (p, value) in rows.enumerate() {
                let value = value.as_ptr().add(slab);
                let lanes: [__m256; SLAB / 8] =
                    std::array::from_fn(|j| _mm256_cvtph_ps(_mm_loadu_si128(value.add(8 * j).cast())));
                for (g, acc) in acc.iter_mut().enumerate() {
                    let weight = _mm256_set1_ps(scores[(first + g) * visible + p]);
                    for (acc, &lane) in acc.iter_mut().zip(&lanes) {
                        *acc = _mm256_fmadd_ps(weight, lane, *acc);
                    }
                }
            }
            for (g, acc) in acc.iter().enumerate() {
                let target = out.as_mut_ptr().add((first + g) * d + slab);
                for (j, acc) in acc.iter().enumerate() {
                    _mm256_storeu_ps(target.add(8 * j), *acc);
                }
            }
        }
    }
}

/// `silu(gate) * up`, elementwise, into `gate`; split over the inference threads when large.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    /// Values per work item: enough to outweigh a thread hand-off.
    const CHUNK: usize = 4096;
    let n = gate.len().min(up.len());
    let cells = DisjointWrites::new(gate);
    for_chunks(n.div_ceil(CHUNK), |chunks| {
        let values = chunks.start * CHUNK..(chunks.end * CHUNK).min(n);
        // SAFETY: chunks are split between threads, so only this one writes `values`.
        let gate = unsafe { cells.slice(values.clone()) };
        let up = &up[values];
        #[cfg(target_arch = "x86_64")]
        if simd::avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { simd::swiglu(gate, up) };
        }
        swiglu_body(gate, up);
    });
}

#[inline(always)]
fn swiglu_body(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

/// `x += y`, elementwise.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Numerically stable softmax. Weights below e^-80 (about 1e-35) become exactly 0: they cannot move
/// the result, and left alone they would underflow into subnormal floats, which cost x86 cores
/// ~100 cycles per operation in the weighted sum that follows.
#[inline(always)]
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        let shifted = *v - max;
        *v = if shifted < -80.0 { 0.0 } else { exp(shifted) };
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// `ln Σ e^x` over `x`, computed stably (the log-normaliser of a softmax).
pub fn log_sum_exp(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd::avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { simd::log_sum_exp(x) };
    }
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = x.iter().map(|v| exp((v - max).max(-87.0))).sum();
    max + sum.ln()
}

/// `e^x` for `x` in [-87, 88] (clamped to it) without a libm call, so loops over it vectorise:
/// `x = k ln 2 + f` with `k` an integer (built in the exponent bits) and `|f| <= ln 2 / 2` (ln 2 split in
/// two parts so the reduction is exact enough), then a degree-6 Taylor series for `e^f`. Relative error
/// below 5e-7 for `x <= 0`, 2e-6 above.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let f = (x - k * LN2_HI) - k * LN2_LO;
    let poly = 1.0 + f * (1.0 + f * (0.5 + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    f32::from_bits(((k as i32 + 127) as u32) << 23) * poly
}

/// Dot product with eight independent accumulators, so the compiler can vectorise it.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `y += a * x`.
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let rope = Rope::new(8, 10000.0, 16);
        let mut x: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.5).collect();
        let original = x.clone();
        rope.apply(&mut x, 8, 0);
        assert_eq!(x, original);
        rope.apply(&mut x, 8, 7);
        assert!((dot(&x, &x) - dot(&original, &original)).abs() < 1e-4);
        assert_ne!(x, original);
    }

    fn seq<'a>(keys: &'a [f16], values: &'a [f16], blocks: &'a [u32], block_size: usize) -> SeqKv<'a> {
        SeqKv { keys, values, blocks, block_size }
    }

    fn halves(x: &[f32]) -> Vec<f16> {
        x.iter().map(|&v| f16::from_f32(v)).collect()
    }

    fn one(kv: SeqKv<'_>, first: usize, tokens: usize) -> AttentionSeq<'_> {
        AttentionSeq { kv, first, tokens }
    }

    #[test]
    fn a_batch_attends_each_token_to_its_own_sequence() {
        // Two sequences in one pool: blocks of 1 position; A at block 0 (value 1), B at blocks 1, 2 (3, 5).
        let heads = HeadLayout { n_heads: 1, n_kv_heads: 1, head_dim: 2 };
        let (keys, values) = (halves(&[0.0; 6]), halves(&[1.0, 1.0, 3.0, 3.0, 5.0, 5.0]));
        let (a, b) = (seq(&keys, &values, &[0], 1), seq(&keys, &values, &[1, 2], 1));
        let out = attention(&[1.0; 6], &[one(a, 0, 1), one(b, 0, 2)], heads);
        assert_eq!(out, [1.0, 1.0, 3.0, 3.0, 4.0, 4.0], "A sees 1; B's tokens see 3, then (3 + 5) / 2");
    }

    #[test]
    fn attention_over_one_position_returns_its_value() {
        let heads = HeadLayout { n_heads: 2, n_kv_heads: 1, head_dim: 4 };
        let (keys, values) = (halves(&[1.0, 0.0, 0.0, 0.0]), halves(&[0.5, -1.0, 2.0, 3.0]));
        let out = attention(&[1.0; 8], &[one(seq(&keys, &values, &[0], 1), 0, 1)], heads);
        assert_eq!(out, [0.5, -1.0, 2.0, 3.0, 0.5, -1.0, 2.0, 3.0]);
    }

    #[test]
    fn attention_is_causal_within_a_chunk() {
        let heads = HeadLayout { n_heads: 1, n_kv_heads: 1, head_dim: 2 };
        let (keys, values) = (halves(&[0.0, 0.0, 0.0, 0.0]), halves(&[1.0, 1.0, 3.0, 3.0]));
        let out = attention(&[1.0, 1.0, 1.0, 1.0], &[one(seq(&keys, &values, &[0], 2), 0, 2)], heads);
        assert_eq!(out[..2], [1.0, 1.0], "the first token sees only itself");
        assert_eq!(out[2..], [2.0, 2.0], "the second averages both (equal scores)");
    }

    #[test]
    fn attention_follows_the_block_table() {
        // Blocks of 2 positions; the sequence's table is [2, 0]: positions 0,1 in block 2, position 2 in
        // block 0. Block 1 holds garbage that must never be read.
        let heads = HeadLayout { n_heads: 1, n_kv_heads: 1, head_dim: 2 };
        let keys = halves(&[0.0; 12]);
        let values = halves(&[5.0, 5.0, 0.0, 0.0, 99.0, 99.0, 99.0, 99.0, 1.0, 1.0, 3.0, 3.0]);
        let out = attention(&[1.0, 1.0], &[one(seq(&keys, &values, &[2, 0], 2), 2, 1)], heads);
        assert_eq!(out, [3.0, 3.0], "equal scores average positions 0..3: (1 + 3 + 5) / 3");
    }

    #[test]
    fn the_simd_attention_matches_the_portable_body() {
        // 9 query heads over 3 key/value heads of 64, as in the default model; 5 blocks of 16 positions.
        let heads = HeadLayout { n_heads: 9, n_kv_heads: 3, head_dim: 64 };
        let kv_dim = heads.kv_dim();
        let noise = |n: usize, seed: usize| -> Vec<f32> {
            (0..n).map(|i| (((i * 7919 + seed) % 1000) as f32 / 500.0) - 1.0).collect()
        };
        let (keys, values) = (halves(&noise(6 * 16 * kv_dim, 1)), halves(&noise(6 * 16 * kv_dim, 2)));
        let blocks = [4u32, 0, 5, 2, 1];
        let kv = seq(&keys, &values, &blocks, 16);
        let queries = noise(heads.q_dim(), 3);
        let span = heads.q_dim() / heads.n_kv_heads;
        for visible in [1, 15, 16, 17, 70, 80] {
            for kv_head in 0..heads.n_kv_heads {
                let at = kv_head * span;
                let item = AttentionItem { queries: &queries[at..at + span], kv, visible, kv_head, heads };
                let (mut portable, mut fast) = (vec![0.0; span], vec![0.0; span]);
                item.body(&mut Vec::new(), &mut portable);
                item.run(&mut Vec::new(), &mut fast);
                for (a, b) in portable.iter().zip(&fast) {
                    assert!((a - b).abs() <= 1e-5, "visible {visible}, head {kv_head}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn log_sum_exp_matches_f64_for_odd_lengths() {
        for n in [1, 7, 8, 9, 100, 49_152] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2000) as f32 / 40.0 - 30.0).collect();
            let max = x.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
            let exact = max + x.iter().map(|&v| (f64::from(v) - max).exp()).sum::<f64>().ln();
            let ours = f64::from(log_sum_exp(&x));
            assert!((ours - exact).abs() <= 1e-5 * exact.abs().max(1.0), "n={n}: {ours} vs {exact}");
        }
    }

    #[test]
    fn exp_is_accurate_where_softmax_and_silu_use_it() {
        for i in 0..=8700 {
            let x = -(i as f32) / 100.0;
            let (ours, exact) = (exp(x), x.exp());
            assert!((ours - exact).abs() <= 5e-7 * exact, "exp({x}) = {ours}, expected {exact}");
        }
        for i in 0..=8800 {
            let x = i as f32 / 100.0;
            let (ours, exact) = (f64::from(exp(x)), f64::from(x).exp());
            assert!((ours - exact).abs() <= 2e-6 * exact, "exp({x}) = {ours}, expected {exact}");
        }
        assert!(exp(200.0).is_finite() && exp(-200.0) >= 0.0);
    }

    #[test]
    fn swiglu_matches_libm() {
        let gate: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) / 4.0).collect();
        let up: Vec<f32> = (0..203).map(|i| 1.0 + (i % 7) as f32).collect();
        let mut ours = gate.clone();
        swiglu(&mut ours, &up);
        let mut portable = gate.clone();
        swiglu_body(&mut portable, &up);
        assert_eq!(ours, portable, "the SIMD and portable bodies agree bit for bit");
        for ((g, u), o) in gate.iter().zip(&up).zip(&ours) {
            let exact = g / (1.0 + (-g).exp()) * u;
            assert!((o - exact).abs() <= 1e-5 * exact.abs().max(1e-3), "silu({g}) * {u} = {o}, expected {exact}");
        }
    }

    #[test]
    fn dot_matches_a_plain_sum_for_odd_lengths() {
        let a: Vec<f32> = (0..13).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), a.iter().map(|x| x * x).sum::<f32>());
    }
}
