//! Activations quantized once per matmul to 8 bits, in the two block layouts the kernels consume:
//! [`QuantizedRows`] (a scale per 32 values) for GGML's legacy formats, [`SuperRows`] (a scale per 256
//! values, as GGML's Q8_K) for the K-quants.
//!
//! A row's quants depend only on that row, so batching never changes them.

use super::{Isa, BLOCK, SUPER};

/// 1.5 × 2^23: adding and subtracting it rounds an f32 below 2^22 to the nearest integer.
const ROUNDING: f32 = 12_582_912.0;

/// Activation rows quantized to 8 bits per value with an f32 scale per block.
#[derive(Debug, Clone)]
pub struct QuantizedRows {
    pub(super) rows: usize,
    pub(super) blocks_per_row: usize,
    pub(super) qs: Vec<i8>,
    /// Scale per block.
    pub(super) d: Vec<f32>,
    /// `d * Σ q` per block, for formats with an offset.
    pub(super) s: Vec<f32>,
    /// `Σ q` per block, for integer centering.
    pub(super) sums: Vec<i32>,
}

impl QuantizedRows {
    /// Quantizes `x`, rows of `cols` values (`cols` a multiple of 32).
    pub fn new(x: &[f32], cols: usize) -> Self {
        let blocks = x.len() / BLOCK;
        let mut rows = Self {
            rows: x.len() / cols,
            blocks_per_row: cols / BLOCK,
            qs: vec![0; blocks * BLOCK],
            d: vec![0.0; blocks],
            s: vec![0.0; blocks],
            sums: vec![0; blocks],
        };
        #[cfg(target_arch = "x86_64")]
        if Isa::detect().avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { rows.quantize_avx2(x) };
            return rows;
        }
        rows.quantize(x);
        rows
    }

    /// [`Self::quantize`] with AVX2, four registers per block; the same results (`cvtps2dq` rounds to
    /// nearest even, as the float-add trick does).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn quantize_avx2(&mut self, x: &[f32]) {
        use std::arch::x86_64::*;
        // packs_epi32/packs_epi16 interleave 128-bit lanes; this puts the dwords back in order.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let magnitude = _mm256_set1_ps(f32::from_bits(0x7FFF_FFFF));
        for (b, block) in x.chunks_exact(BLOCK).enumerate() {
            // SAFETY: `block` has 32 floats and `qs` 32 bytes at block `b`.
            unsafe {
                let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(block.as_ptr().add(8 * i)));
                let top = v.iter().fold(_mm256_setzero_ps(), |m, &v| _mm256_max_ps(m, _mm256_and_ps(v, magnitude)));
                let quad = _mm_max_ps(_mm256_castps256_ps128(top), _mm256_extractf128_ps(top, 1));
                let pair = _mm_max_ps(quad, _mm_movehl_ps(quad, quad));
                let amax = _mm_cvtss_f32(_mm_max_ss(pair, _mm_shuffle_ps(pair, pair, 1)));
                let scale = amax / 127.0;
                let inv = _mm256_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
                let q: [__m256i; 4] = std::array::from_fn(|i| _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inv)));
                let words = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
                _mm256_storeu_si256(
                    self.qs.as_mut_ptr().add(b * BLOCK).cast(),
                    _mm256_permutevar8x32_epi32(words, order),
                );
                let sums = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
                let quad = _mm_add_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
                let pair = _mm_add_epi32(quad, _mm_unpackhi_epi64(quad, quad));
                let total = _mm_cvtsi128_si32(_mm_add_epi32(pair, _mm_shuffle_epi32(pair, 1)));
                self.d[b] = scale;
                self.s[b] = scale * total as f32;
                self.sums[b] = total;
            }
        }
    }

    /// Fills the quants, scales and sums from `x`, one block of 32 values at a time.
    #[inline(always)]
    fn quantize(&mut self, x: &[f32]) {
        let per_block =
            self.qs.chunks_exact_mut(BLOCK).zip(self.d.iter_mut().zip(self.s.iter_mut().zip(&mut self.sums)));
        for (block, (qs, (d, (s, sum)))) in x.chunks_exact(BLOCK).zip(per_block) {
            // Lane-wise maxima first, so the reduction vectorises; the maximum is the same in any order.
            let mut lanes = [0.0f32; 8];
            for eight in block.chunks_exact(8) {
                for (lane, v) in lanes.iter_mut().zip(eight) {
                    *lane = lane.max(v.abs());
                }
            }
            let amax = lanes.iter().fold(0.0f32, |a, &v| a.max(v));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let mut total = 0i32;
            for (q, &v) in qs.iter_mut().zip(block) {
                // Round to nearest by the float-add trick (|v * inv| <= 127 < 2^22): no libm call.
                *q = ((v * inv + ROUNDING) - ROUNDING) as i8;
                total += i32::from(*q);
            }
            *d = scale;
            *s = scale * total as f32;
            *sum = total;
        }
    }
}

/// Activation rows quantized for the K-quant kernels: 8 bits per value, one `f32` scale per super-block
/// of [`SUPER`] values, and the sums of every 16 and every 32 quants (for the formats' per-group minimum or
/// centre).
#[derive(Debug, Clone)]
pub struct SuperRows {
    pub(super) rows: usize,
    pub(super) blocks_per_row: usize,
    pub(super) qs: Vec<i8>,
    /// Scale per super-block.
    pub(super) d: Vec<f32>,
    /// Sum of each group of 16 quants, 16 per super-block.
    pub(super) sums: Vec<i16>,
    /// Sum of each slice of 32 quants, 8 per super-block.
    pub(super) slice_sums: Vec<i16>,
}

impl SuperRows {
    /// Quantizes `x`, rows of `cols` values (`cols` a multiple of [`SUPER`]).
    pub fn new(x: &[f32], cols: usize) -> Self {
        let blocks = x.len() / SUPER;
        let mut rows = Self {
            rows: x.len() / cols,
            blocks_per_row: cols / SUPER,
            qs: vec![0; blocks * SUPER],
            d: vec![0.0; blocks],
            sums: vec![0; blocks * 16],
            slice_sums: vec![0; blocks * 8],
        };
        #[cfg(target_arch = "x86_64")]
        if Isa::detect().avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { rows.quantize_avx2(x) };
            return rows;
        }
        rows.quantize(x);
        rows
    }

    /// [`Self::quantize`] compiled for AVX2: the same operations, so the same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn quantize_avx2(&mut self, x: &[f32]) {
        self.quantize(x);
    }

    /// Fills quants, scales and group sums, one super-block at a time.
    #[inline(always)]
    fn quantize(&mut self, x: &[f32]) {
        let per_block = self.qs.chunks_exact_mut(SUPER).zip(self.d.iter_mut().zip(self.sums.chunks_exact_mut(16)));
        let per_block = per_block.zip(self.slice_sums.chunks_exact_mut(8));
        for (block, ((qs, (d, sums)), slice_sums)) in x.chunks_exact(SUPER).zip(per_block) {
            let mut lanes = [0.0f32; 8];
            for eight in block.chunks_exact(8) {
                for (lane, v) in lanes.iter_mut().zip(eight) {
                    *lane = lane.max(v.abs());
                }
            }
            let amax = lanes.iter().fold(0.0f32, |a, &v| a.max(v));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (q, &v) in qs.iter_mut().zip(block) {
                *q = ((v * inv + ROUNDING) - ROUNDING) as i8;
            }
            for (sum, group) in sums.iter_mut().zip(qs.chunks_exact(16)) {
                *sum = group.iter().map(|&q| i16::from(q)).sum();
            }
            for (slice_sum, pair) in slice_sums.iter_mut().zip(sums.chunks_exact(2)) {
                *slice_sum = pair[0] + pair[1];
            }
            *d = scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0) * if i % 37 == 0 { 9.0 } else { 1.0 })
            .collect()
    }

    #[test]
    fn activation_quantization_is_the_same_in_every_kernel() {
        let mut x = noise(7 * 96, 11);
        x[32..64].fill(0.0);
        let fast = QuantizedRows::new(&x, 96);
        let mut portable = fast.clone();
        portable.quantize(&x);
        assert_eq!((&fast.qs, &fast.d, &fast.s, &fast.sums), (&portable.qs, &portable.d, &portable.s, &portable.sums));
        assert_eq!(fast.d[1], 0.0);
    }

    #[test]
    fn super_rows_are_the_same_in_every_kernel_and_sum_their_groups() {
        let mut x = noise(3 * 512, 5);
        x[256..512].fill(0.0);
        let fast = SuperRows::new(&x, 512);
        let mut portable = fast.clone();
        portable.quantize(&x);
        assert_eq!(
            (&fast.qs, &fast.d, &fast.sums, &fast.slice_sums),
            (&portable.qs, &portable.d, &portable.sums, &portable.slice_sums)
        );
        assert_eq!((fast.rows, fast.blocks_per_row, fast.d[1]), (3, 2, 0.0));
        for (g, &sum) in fast.sums.iter().enumerate() {
            assert_eq!(i32::from(sum), fast.qs[16 * g..16 * g + 16].iter().map(|&q| i32::from(q)).sum::<i32>());
        }
        for (s, &sum) in fast.slice_sums.iter().enumerate() {
            assert_eq!(i32::from(sum), fast.qs[32 * s..32 * s + 32].iter().map(|&q| i32::from(q)).sum::<i32>());
        }
        for (block, (qs, d)) in x.chunks(SUPER).zip(fast.qs.chunks(SUPER).zip(&fast.d)) {
            for (v, &q) in block.iter().zip(qs) {
                assert!((v - d * f32::from(q)).abs() <= d / 2.0 + 1e-6, "{v} quantized to {q} × {d}");
            }
        }
    }
}
