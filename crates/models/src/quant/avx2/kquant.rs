//! The AVX2 + FMA kernels for the K-quants: one column at a time over the blocks as stored (every
//! format), and four columns at a time over quads (`kquad`: Q4_K, Q5_K, Q6_K).

use std::arch::x86_64::*;

use crate::cpu::x86::hsum;
use crate::quant::activations::SuperRows;
use crate::quant::kblock::{KBlock, Unpacked};
use crate::quant::kquant::{KQuantMatrix, KTILE};
use crate::quant::SUPER;

/// K-quant super-blocks against up to [`KTILE`] activation rows: each super-block is unpacked once (the
/// format's portable unpacking, vectorised here), then per row and 32 values one `maddubs` of quants by
/// activations and one `madd` by the two groups' scales, summed in integers over the super-block.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn kquant_tile<F: KBlock>(
    w: &KQuantMatrix,
    acts: &SuperRows,
    n: usize,
    rows: std::ops::Range<usize>,
) -> [f32; KTILE] {
    // SAFETY: the caller checked AVX2, FMA and F16C and passes a weight row and activation rows that
    // exist; every load below stays inside one unpacked super-block or one activation super-block.
    unsafe {
        let blocks = acts.blocks_per_row;
        let signed = F::FORMAT.signed();
        let mut u = Unpacked::default();
        let mut acc = [_mm256_setzero_ps(); KTILE];
        // Lane j of the scales vector holds groups 2j and 2j + 1; `spread` copies the first to the low
        // 128 bits (values 0..16 of 32-value slice j) and the second to the high 128 bits.
        let pick: [__m256i; 8] = std::array::from_fn(|j| _mm256_set1_epi32(j as i32));
        let spread = _mm256_setr_epi8(
            0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
        );
        for b in 0..blocks {
            F::unpack(w.block(n, b), &mut u);
            let scales = _mm256_load_si256(u.scales.as_ptr().cast());
            let slice_scales: [__m256i; 8] =
                std::array::from_fn(|j| _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(scales, pick[j]), spread));
            let mins = _mm256_load_si256(u.mins.as_ptr().cast());
            for (r, acc) in acc.iter_mut().enumerate().take(rows.len()) {
                let ab = (rows.start + r) * blocks + b;
                let a = acts.qs.as_ptr().add(ab * SUPER);
                let mut dot = _mm256_setzero_si256();
                for (j, &scale) in slice_scales.iter().enumerate() {
                    let q = _mm256_load_si256(u.q.as_ptr().add(32 * j).cast());
                    let x = _mm256_loadu_si256(a.add(32 * j).cast());
                    let products = if signed {
                        _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q))
                    } else {
                        _mm256_maddubs_epi16(q, x)
                    };
                    dot = _mm256_add_epi32(dot, _mm256_madd_epi16(products, scale));
                }
                let da = *acts.d.get_unchecked(ab);
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(u.d * da), *acc);
                if !signed {
                    let sums = _mm256_loadu_si256(acts.sums.as_ptr().add(ab * 16).cast());
                    let min = _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, sums));
                    *acc = _mm256_fnmadd_ps(min, _mm256_set1_ps(u.dmin * da), *acc);
                }
            }
        }
        let mut sums = [0.0; KTILE];
        for (sum, acc) in sums.iter_mut().zip(&acc) {
            *sum = hsum(*acc);
        }
        sums
    }
}
