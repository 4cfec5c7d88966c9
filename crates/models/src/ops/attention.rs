//! Causal grouped-query attention over the paged KV pool, for a whole ragged batch in one pass.

use std::ops::Range;

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::activation::softmax_in_place;
use super::{axpy, dot};
use crate::cpu::Isa;
use crate::parallel::{for_chunks, DisjointWrites};

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
    /// The sequence's key (or value) rows of head `head` at `positions`, as one contiguous slice of
    /// `rows × head_dim` values per block; blocks wholly before the positions are never touched.
    fn rows<'b>(
        &'b self,
        of: &'b [f16],
        positions: Range<usize>,
        head: usize,
        heads: HeadLayout,
    ) -> impl Iterator<Item = &'b [f16]> + 'b {
        let (d, size) = (heads.head_dim, self.block_size);
        let (stride, offset) = (size * heads.kv_dim(), head * size * d);
        let skipped = positions.start / size;
        self.blocks[skipped.min(self.blocks.len())..].iter().enumerate().map_while(move |(i, &block)| {
            let start = (skipped + i) * size;
            let (from, to) = (positions.start.max(start) - start, positions.end.checked_sub(start)?.min(size));
            let at = block as usize * stride + offset;
            (from < to).then(|| &of[at + from * d..at + to * d])
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
/// own sequence's positions `0..=position`, or with a sliding `window` only the last `window` of them
/// (`position + 1 - window..=position`, as GGML's standard sliding window). Returns the rows in the same
/// order.
///
/// Work items are (token, key/value head) pairs of the whole batch, run in parallel in one pass; each item
/// serves every query head of its group, so a grouped key or value row is read once for all of them, in
/// place in the pool. An item's result depends only on its own token and sequence.
pub fn attention(q: &[f32], seqs: &[AttentionSeq<'_>], heads: HeadLayout, window: Option<usize>) -> Vec<f32> {
    let q_dim = heads.q_dim();
    let span = q_dim / heads.n_kv_heads;
    // Which sequence each token belongs to, and which positions it sees.
    let owners: Vec<(usize, Range<usize>)> = seqs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            (0..s.tokens).map(move |t| {
                let end = s.first + t + 1;
                (i, window.map_or(0, |w| end.saturating_sub(w))..end)
            })
        })
        .collect();
    assert_eq!(owners.len() * q_dim, q.len(), "one query row per token of the batch");
    let mut out = vec![0.0; q.len()];
    let cells = DisjointWrites::new(&mut out);
    for_chunks(owners.len() * heads.n_kv_heads, |items| {
        let mut scores = Vec::new();
        for item in items {
            let (t, kv_head) = (item / heads.n_kv_heads, item % heads.n_kv_heads);
            let (seq, visible) = (owners[t].0, owners[t].1.clone());
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
    /// The positions the token sees.
    visible: Range<usize>,
    kv_head: usize,
    heads: HeadLayout,
}

impl AttentionItem<'_> {
    fn run(&self, scores: &mut Vec<f32>, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if Isa::detect().avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { simd::run_avx2(self, scores, out) };
        }
        self.body(scores, out);
    }

    /// The portable body; inlined into a copy compiled for AVX2, where its loops vectorise 8 wide.
    #[inline(always)]
    fn body(&self, scores: &mut Vec<f32>, out: &mut [f32]) {
        let (d, visible) = (self.heads.head_dim, self.visible.len());
        let scale = 1.0 / (d as f32).sqrt();
        scores.clear();
        scores.resize(self.queries.len() / d * visible, 0.0);
        let mut row = vec![0.0; d];
        let keys = self
            .kv
            .rows(self.kv.keys, self.visible.clone(), self.kv_head, self.heads)
            .flat_map(|block| block.chunks_exact(d));
        for (p, key) in keys.enumerate() {
            key.convert_to_f32_slice(&mut row);
            for (g, query) in self.queries.chunks_exact(d).enumerate() {
                scores[g * visible + p] = dot(query, &row) * scale;
            }
        }
        for row in scores.chunks_exact_mut(visible) {
            softmax_in_place(row);
        }
        let values = self
            .kv
            .rows(self.kv.values, self.visible.clone(), self.kv_head, self.heads)
            .flat_map(|block| block.chunks_exact(d));
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
    use crate::cpu::x86::{exp8, hmax, hsum};

    /// Query heads whose scores and outputs are computed together, sharing each key and value load.
    const GROUP: usize = 3;
    /// Floats of a value row accumulated at once: four registers per query head, so a group's
    /// accumulators fit AVX2's sixteen.
    const SLAB: usize = 32;

    /// [`AttentionItem::body`] with AVX2 + FMA: each key row is loaded once for up to [`GROUP`] query
    /// heads, the value rows once per [`SLAB`] with the heads' outputs held in registers. Head sizes that
    /// are not a multiple of [`SLAB`] take the portable body, compiled for AVX2.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn run_avx2(item: &AttentionItem<'_>, scores: &mut Vec<f32>, out: &mut [f32]) {
        let (d, visible) = (item.heads.head_dim, item.visible.len());
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
            let rows = item
                .kv
                .rows(item.kv.keys, item.visible.clone(), item.kv_head, item.heads)
                .flat_map(|block| block.chunks_exact(d));
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

    /// [`softmax_in_place`] eight lanes at a time, with [`crate::ops::exp`]'s reduction and series.
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
                *p.add(i) = if shifted < -80.0 { 0.0 } else { crate::ops::exp(shifted) };
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
        let (d, visible) = (item.heads.head_dim, item.visible.len());
        // SAFETY: `slab + SLAB <= d` within each value row, and `out` holds `heads × d` floats.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); SLAB / 8]; G];
            let rows = item
                .kv
                .rows(item.kv.values, item.visible.clone(), item.kv_head, item.heads)
                .flat_map(|block| block.chunks_exact(d));
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let out = attention(&[1.0; 6], &[one(a, 0, 1), one(b, 0, 2)], heads, None);
        assert_eq!(out, [1.0, 1.0, 3.0, 3.0, 4.0, 4.0], "A sees 1; B's tokens see 3, then (3 + 5) / 2");
    }

    #[test]
    fn attention_over_one_position_returns_its_value() {
        let heads = HeadLayout { n_heads: 2, n_kv_heads: 1, head_dim: 4 };
        let (keys, values) = (halves(&[1.0, 0.0, 0.0, 0.0]), halves(&[0.5, -1.0, 2.0, 3.0]));
        let out = attention(&[1.0; 8], &[one(seq(&keys, &values, &[0], 1), 0, 1)], heads, None);
        assert_eq!(out, [0.5, -1.0, 2.0, 3.0, 0.5, -1.0, 2.0, 3.0]);
    }

    #[test]
    fn attention_is_causal_within_a_chunk() {
        let heads = HeadLayout { n_heads: 1, n_kv_heads: 1, head_dim: 2 };
        let (keys, values) = (halves(&[0.0, 0.0, 0.0, 0.0]), halves(&[1.0, 1.0, 3.0, 3.0]));
        let out = attention(&[1.0, 1.0, 1.0, 1.0], &[one(seq(&keys, &values, &[0], 2), 0, 2)], heads, None);
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
        let out = attention(&[1.0, 1.0], &[one(seq(&keys, &values, &[2, 0], 2), 2, 1)], heads, None);
        assert_eq!(out, [3.0, 3.0], "equal scores average positions 0..3: (1 + 3 + 5) / 3");
    }

    #[test]
    fn a_sliding_window_sees_only_its_last_positions() {
        // Blocks of 2; five positions with values 1..=5 over the table [1, 2, 0] (block 0 is reached last).
        let heads = HeadLayout { n_heads: 1, n_kv_heads: 1, head_dim: 2 };
        let keys = halves(&[0.0; 12]);
        let values = halves(&[5.0, 5.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]);
        let kv = seq(&keys, &values, &[1, 2, 0], 2);
        let out = attention(&[1.0; 10], &[one(kv, 0, 5)], heads, Some(2));
        let expected = [1.0, 1.0, 1.5, 1.5, 2.5, 2.5, 3.5, 3.5, 4.5, 4.5];
        assert_eq!(out, expected, "each position averages itself and the one before");
        let whole = attention(&[1.0; 2], &[one(kv, 4, 1)], heads, Some(9));
        assert_eq!(whole, [3.0, 3.0], "a window wider than the sequence sees all of it");
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
        for visible in [0..1, 0..15, 0..16, 0..17, 0..70, 0..80, 3..17, 16..33, 20..80, 79..80] {
            for kv_head in 0..heads.n_kv_heads {
                let at = kv_head * span;
                let visible = visible.clone();
                let item =
                    AttentionItem { queries: &queries[at..at + span], kv, visible: visible.clone(), kv_head, heads };
                let (mut portable, mut fast) = (vec![0.0; span], vec![0.0; span]);
                item.body(&mut Vec::new(), &mut portable);
                item.run(&mut Vec::new(), &mut fast);
                for (a, b) in portable.iter().zip(&fast) {
                    assert!((a - b).abs() <= 1e-5, "visible {visible:?}, head {kv_head}: {a} vs {b}");
                }
            }
        }
    }
}
