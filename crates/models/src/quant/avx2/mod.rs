//! The AVX2 + FMA kernels, by block format.

use std::arch::x86_64::*;

mod kquad;
mod kquant;
mod legacy;
mod lquad;

pub(super) use kquad::{quad_tile, Q45Quads, Q6Quads};
pub(super) use kquant::kquant_tile;
pub(super) use legacy::legacy_tile;
pub(super) use lquad::{legacy_quad_tile, Signed, Unsigned};

/// Stores a quad's four column sums.
#[inline(always)]
fn store_quad(out: &mut [f32; 4], sums: __m128) {
    // SAFETY: SSE is part of x86-64, and `out` holds four floats.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), sums) }
}

/// `_mm256_set1_epi64x` of the 8 bytes at `at`: one 8-value chunk of an activation row (or four of its
/// 16-bit slice sums) for each of the four columns.
#[inline(always)]
unsafe fn chunk(at: *const i8) -> __m256i {
    // SAFETY: the caller passes 8 readable bytes.
    unsafe { _mm256_set1_epi64x(at.cast::<i64>().read_unaligned()) }
}

/// Lanes `(2g, 2g + 1)` of `v` summed for each column `g`, in one 128-bit vector.
#[inline(always)]
unsafe fn column_sums(v: __m256) -> __m128 {
    // SAFETY: AVX is enabled in every caller.
    unsafe {
        let pairs = _mm256_hadd_ps(v, v);
        let (low, high) = (_mm256_castps256_ps128(pairs), _mm256_extractf128_ps::<1>(pairs));
        _mm_castpd_ps(_mm_unpacklo_pd(_mm_castps_pd(low), _mm_castps_pd(high)))
    }
}
