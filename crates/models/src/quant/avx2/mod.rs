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

/// Activation rows that share one decoding of a weight block in the quad kernels: eight accumulators stay
/// in registers beside the four quant registers of a chunk.
const GROUP: usize = 8;

/// Calls `$pass::<$format, R>($quad, $acts, start)` with `R` the rows left from `start` (at most
/// [`GROUP`]), a pass specialised to its row count, padded to [`GROUP`] results.
macro_rules! pass_of {
    ($left:expr, $pass:ident::<$format:ty>($quad:expr, $acts:expr, $start:expr)) => {
        match $left {
            1 => pad($pass::<$format, 1>($quad, $acts, $start)),
            2 => pad($pass::<$format, 2>($quad, $acts, $start)),
            3 => pad($pass::<$format, 3>($quad, $acts, $start)),
            4 => pad($pass::<$format, 4>($quad, $acts, $start)),
            5 => pad($pass::<$format, 5>($quad, $acts, $start)),
            6 => pad($pass::<$format, 6>($quad, $acts, $start)),
            7 => pad($pass::<$format, 7>($quad, $acts, $start)),
            _ => $pass::<$format, { super::GROUP }>($quad, $acts, $start),
        }
    };
}
use pass_of;

/// The four column sums of each of `rows` (at most `T`), computed in passes of at most [`GROUP`] rows by
/// `pass(start, left)`.
#[inline(always)]
fn in_passes<const T: usize>(
    rows: std::ops::Range<usize>,
    pass: impl Fn(usize, usize) -> [__m128; GROUP],
) -> [[f32; 4]; T] {
    let mut out = [[0.0; 4]; T];
    let mut start = rows.start;
    while start < rows.end {
        let sums = pass(start, rows.end - start);
        for (r, sum) in sums.iter().enumerate().take((rows.end - start).min(GROUP)) {
            // SAFETY: SSE is part of x86-64.
            unsafe { _mm_storeu_ps(out[start - rows.start + r].as_mut_ptr(), *sum) };
        }
        start += GROUP;
    }
    out
}

/// A pass's row results, padded with zeros to [`GROUP`].
#[inline(always)]
fn pad<const R: usize>(sums: [__m128; R]) -> [__m128; GROUP] {
    // SAFETY: SSE is part of x86-64.
    std::array::from_fn(|r| if r < R { sums[r] } else { unsafe { _mm_setzero_ps() } })
}

/// Prefetches the `bytes` at `p` into L1 (a hint: it never faults, even past the matrix's end).
#[inline(always)]
unsafe fn prefetch(p: *const u8, bytes: usize) {
    for line in (0..bytes).step_by(64) {
        // SAFETY: a prefetch is only a hint and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line).cast()) };
    }
}

/// `_mm256_set1_epi64x` of the 8 bytes at `at`: one 8-value chunk of an activation row for all four
/// columns.
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
