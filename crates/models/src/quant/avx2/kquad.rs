//! The AVX2 kernels over K-quant quads (`crate::quant::kquad`): four output columns at once, up to four
//! activation rows per pass over a super-block.
//!
//! For each 32-value slice of a super-block, four 32-byte registers hold 8 quants of each of the four
//! columns (one register per 8-value chunk); each is multiplied (`maddubs`) by the row's 8 activations of
//! that chunk broadcast to all four columns. The 16-bit products of one scale group are summed before a
//! single `madd` applies the four columns' scales of that group, so a Q4_K slice of 4 × 32 weights costs
//! four `maddubs` and one `madd` per row. Integer sums run over a super-block; the super-block's and the
//! row's scales are applied in `f32`, and the minimum (or centre) term comes from the row's group sums.
//!
//! **Batch invariance:** every row takes the same operations in the same order whichever rows share its
//! pass.

use std::arch::x86_64::*;

use crate::quant::activations::SuperRows;
use crate::quant::kquad::QUAD;
use crate::quant::SUPER;

/// Activation rows that share one decoding of a super-block's quants.
const GROUP: usize = 4;
/// How many super-blocks ahead the kernels prefetch weights: they stream from memory faster than the
/// hardware prefetcher alone fetches them.
const AHEAD: usize = 2;

/// Prefetches the quad super-block `AHEAD` super-blocks after `p` (`bytes` long; a prefetch past the
/// matrix's end never faults).
#[inline(always)]
unsafe fn prefetch_ahead(p: *const u8, bytes: usize) {
    let next = p.wrapping_add(AHEAD * bytes);
    for line in (0..bytes).step_by(64) {
        // SAFETY: a prefetch is only a hint and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(line).cast()) };
    }
}

/// `rows` (at most `T`) activation rows against the four columns whose super-blocks start at `quad`
/// (`superblocks` of `quad_bytes` each): Q4_K, or Q5_K with `FIVE`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `quad` points at a whole quad of the activations' width.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q4k_q5k<const FIVE: bool, const T: usize>(
    quad: *const u8,
    acts: &SuperRows,
    rows: std::ops::Range<usize>,
) -> [[f32; QUAD]; T] {
    let mut out = [[0.0; QUAD]; T];
    let mut start = rows.start;
    // SAFETY: forwarded from the caller.
    unsafe {
        while start < rows.end {
            let sums: [__m128; GROUP] = match rows.end - start {
                1 => pad(q45_group::<1, FIVE>(quad, acts, start)),
                2 => pad(q45_group::<2, FIVE>(quad, acts, start)),
                3 => pad(q45_group::<3, FIVE>(quad, acts, start)),
                _ => q45_group::<GROUP, FIVE>(quad, acts, start),
            };
            for (r, sum) in sums.iter().enumerate().take((rows.end - start).min(GROUP)) {
                _mm_storeu_ps(out[start - rows.start + r].as_mut_ptr(), *sum);
            }
            start += GROUP;
        }
    }
    out
}

/// As [`q4k_q5k`], for Q6_K.
///
/// # Safety
/// As [`q4k_q5k`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q6k<const T: usize>(
    quad: *const u8,
    acts: &SuperRows,
    rows: std::ops::Range<usize>,
) -> [[f32; QUAD]; T] {
    let mut out = [[0.0; QUAD]; T];
    let mut start = rows.start;
    // SAFETY: forwarded from the caller.
    unsafe {
        while start < rows.end {
            let sums: [__m128; GROUP] = match rows.end - start {
                1 => pad(q6_group::<1>(quad, acts, start)),
                2 => pad(q6_group::<2>(quad, acts, start)),
                3 => pad(q6_group::<3>(quad, acts, start)),
                _ => q6_group::<GROUP>(quad, acts, start),
            };
            for (r, sum) in sums.iter().enumerate().take((rows.end - start).min(GROUP)) {
                _mm_storeu_ps(out[start - rows.start + r].as_mut_ptr(), *sum);
            }
            start += GROUP;
        }
    }
    out
}

#[inline(always)]
fn pad<const R: usize>(sums: [__m128; R]) -> [__m128; GROUP] {
    // SAFETY: SSE is part of x86-64.
    std::array::from_fn(|r| if r < R { sums[r] } else { unsafe { _mm_setzero_ps() } })
}

/// `_mm256_set1_epi64x` of the 8 bytes at `at`: one 8-value chunk of an activation row for all four
/// columns.
#[inline(always)]
unsafe fn chunk(at: *const i8) -> __m256i {
    // SAFETY: the caller passes 8 readable bytes.
    unsafe { _mm256_set1_epi64x(at.cast::<i64>().read_unaligned()) }
}

/// `Σ_c maddubs(q[c], row chunk c)` for chunks `CHUNKS`: 16-bit sums of one scale group's products.
#[inline(always)]
unsafe fn products(q: &[__m256i; 4], a: *const i8, chunks: std::ops::Range<usize>) -> __m256i {
    // SAFETY: `a` points at 32 readable activation bytes.
    unsafe {
        let mut sum = _mm256_setzero_si256();
        for c in chunks {
            sum = _mm256_add_epi16(sum, _mm256_maddubs_epi16(q[c], chunk(a.add(8 * c))));
        }
        sum
    }
}

/// The row's 16 group sums as per-32 sums, `[S0..S7 | S0..S7]`.
#[inline(always)]
unsafe fn slice_sums(sums: __m256i) -> __m256i {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe { _mm256_permute4x64_epi64::<0b10_00_10_00>(_mm256_hadd_epi16(sums, sums)) }
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

/// One pass of `R` rows from `first` over every super-block of a Q4_K or Q5_K quad.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q45_group<const R: usize, const FIVE: bool>(quad: *const u8, acts: &SuperRows, first: usize) -> [__m128; R] {
    let size = if FIVE { 176 } else { 144 };
    let (qh_at, qs_at) = (64, if FIVE { 192 } else { 64 });
    let blocks = acts.blocks_per_row;
    // SAFETY: every load below stays inside the quad's super-block `b` or an activation super-block of
    // rows `first..first + R`.
    unsafe {
        let low = _mm256_set1_epi8(0x0F);
        let fifth = _mm256_set1_epi8(0x10);
        // Scale of slice s for column g is byte 4g + s % 4 of the (broadcast) scale words; as a 16-bit lane
        // it fills the four lanes of column g's products.
        let spread: [__m256i; 4] = std::array::from_fn(|t| {
            let t = t as i8;
            let (a, b, c, d) = (t, 4 + t, 8 + t, 12 + t);
            let m = -128i8;
            _mm256_setr_epi8(
                a, m, a, m, a, m, a, m, b, m, b, m, b, m, b, m, c, m, c, m, c, m, c, m, d, m, d, m, d, m, d, m,
            )
        });
        let mut facc = [_mm256_setzero_ps(); R];
        let mut macc = [_mm_setzero_ps(); R];
        for b in 0..blocks {
            let p = quad.add(b * QUAD * size);
            prefetch_ahead(p, QUAD * size);
            let dm = _mm256_cvtph_ps(_mm_loadu_si128(p.cast()));
            let d_pairs = _mm256_permutevar8x32_ps(dm, _mm256_setr_epi32(0, 0, 2, 2, 4, 4, 6, 6));
            let dmin = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(dm, _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7)));
            // GGML's six-bit scales, four columns at a time (one 32-bit lane each).
            let (w0, w1, w2) = (
                _mm_loadu_si128(p.add(16).cast()),
                _mm_loadu_si128(p.add(32).cast()),
                _mm_loadu_si128(p.add(48).cast()),
            );
            let (m6, m4, m2) = (_mm_set1_epi8(0x3F), _mm_set1_epi8(0x0F), _mm_set1_epi8(0x03));
            let sc_low = _mm_and_si128(w0, m6);
            let mn_low = _mm_and_si128(w1, m6);
            let sc_high =
                _mm_or_si128(_mm_and_si128(w2, m4), _mm_slli_epi32::<4>(_mm_and_si128(_mm_srli_epi32::<6>(w0), m2)));
            let mn_high = _mm_or_si128(
                _mm_and_si128(_mm_srli_epi32::<4>(w2), m4),
                _mm_slli_epi32::<4>(_mm_and_si128(_mm_srli_epi32::<6>(w1), m2)),
            );
            let scales = [_mm256_broadcastsi128_si256(sc_low), _mm256_broadcastsi128_si256(sc_high)];
            let mins01 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi32(mn_low, mn_high));
            let mins23 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi32(mn_low, mn_high));

            let mut iacc = [_mm256_setzero_si256(); R];
            for s in 0..8 {
                let scale = _mm256_shuffle_epi8(scales[s / 4], spread[s % 4]);
                let mut q = [_mm256_setzero_si256(); 4];
                for (c, q) in q.iter_mut().enumerate() {
                    let bytes = _mm256_loadu_si256(p.add(qs_at + (4 * (s / 2) + c) * 32).cast());
                    let nibbles = if s % 2 == 0 { bytes } else { _mm256_srli_epi16::<4>(bytes) };
                    let mut v = _mm256_and_si256(nibbles, low);
                    if FIVE {
                        // Bit s of each qh byte becomes bit 4 (shifts stay within bytes once masked).
                        let h = _mm256_loadu_si256(p.add(qh_at + c * 32).cast());
                        let count = _mm_cvtsi32_si128(s as i32 - 4);
                        let moved = if s >= 4 {
                            _mm256_srl_epi16(h, count)
                        } else {
                            _mm256_sll_epi16(h, _mm_cvtsi32_si128(4 - s as i32))
                        };
                        v = _mm256_or_si256(v, _mm256_and_si256(moved, fifth));
                    }
                    *q = v;
                }
                for (r, iacc) in iacc.iter_mut().enumerate() {
                    let a = acts.qs.as_ptr().add(((first + r) * blocks + b) * SUPER + 32 * s);
                    *iacc = _mm256_add_epi32(*iacc, _mm256_madd_epi16(products(&q, a, 0..4), scale));
                }
            }
            for r in 0..R {
                let ab = (first + r) * blocks + b;
                let da = _mm256_set1_ps(*acts.d.get_unchecked(ab));
                facc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[r]), _mm256_mul_ps(d_pairs, da), facc[r]);
                let sums = slice_sums(_mm256_loadu_si256(acts.sums.as_ptr().add(ab * 16).cast()));
                let pairs = _mm256_hadd_epi32(_mm256_madd_epi16(mins01, sums), _mm256_madd_epi16(mins23, sums));
                let total = _mm256_hadd_epi32(pairs, pairs);
                let mins = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
                    total,
                    _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5),
                ));
                macc[r] = _mm_fmadd_ps(_mm_cvtepi32_ps(mins), _mm_mul_ps(dmin, _mm256_castps256_ps128(da)), macc[r]);
            }
        }
        std::array::from_fn(|r| _mm_sub_ps(column_sums(facc[r]), macc[r]))
    }
}

/// One pass of `R` rows from `first` over every super-block of a Q6_K quad: 6-bit quants stored as
/// unsigned (`q + 32`), a signed 8-bit scale per group of 16, and the centre taken off through the row's
/// group sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_group<const R: usize>(quad: *const u8, acts: &SuperRows, first: usize) -> [__m128; R] {
    const SIZE: usize = 210;
    let (ql_at, qh_at, sc_at, d_at) = (0, 512, 768, 832);
    let blocks = acts.blocks_per_row;
    // SAFETY: as in `q45_group`.
    unsafe {
        let low = _mm256_set1_epi8(0x0F);
        let (bits01, bits45) = (_mm256_set1_epi8(0x03), _mm256_set1_epi8(0x30));
        // Group scale t of a pair-interleaved scale vector (columns 0/1 in the low half, 2/3 in the high
        // half) into the high byte of each 16-bit lane; an arithmetic shift then sign-extends it.
        let spread: [__m256i; 8] = std::array::from_fn(|t| {
            let (a, b, m) = (2 * t as i8, 2 * t as i8 + 1, -128i8);
            _mm256_setr_epi8(
                m, a, m, a, m, a, m, a, m, b, m, b, m, b, m, b, m, a, m, a, m, a, m, a, m, b, m, b, m, b, m, b,
            )
        });
        let mut facc = [_mm256_setzero_ps(); R];
        let mut macc = [_mm_setzero_ps(); R];
        for b in 0..blocks {
            let p = quad.add(b * QUAD * SIZE);
            prefetch_ahead(p, QUAD * SIZE);
            let d = _mm_cvtph_ps(_mm_loadl_epi64(p.add(d_at).cast()));
            let d_pairs =
                _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d), _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
            let centre = _mm_mul_ps(d, _mm_set1_ps(32.0));
            // Scales of columns 0, 2, 1, 3 in that order: pairing bytes gives (0, 1) low and (2, 3) high.
            let (even, odd) = (_mm256_loadu_si256(p.add(sc_at).cast()), _mm256_loadu_si256(p.add(sc_at + 32).cast()));
            let paired = [_mm256_unpacklo_epi8(even, odd), _mm256_unpackhi_epi8(even, odd)];
            let mut wide = [_mm256_setzero_si256(); QUAD];
            for (w, at) in wide.iter_mut().zip([0, 32, 16, 48]) {
                *w = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(sc_at + at).cast()));
            }

            let mut iacc = [_mm256_setzero_si256(); R];
            for s in 0..8 {
                let (n, k) = (s / 4, s % 4);
                let (ga, gb) = (2 * s, 2 * s + 1);
                let scale_a = _mm256_srai_epi16::<8>(_mm256_shuffle_epi8(paired[ga / 8], spread[ga % 8]));
                let scale_b = _mm256_srai_epi16::<8>(_mm256_shuffle_epi8(paired[gb / 8], spread[gb % 8]));
                let mut q = [_mm256_setzero_si256(); 4];
                for (c, q) in q.iter_mut().enumerate() {
                    let nibbles = _mm256_loadu_si256(p.add(ql_at + (8 * n + 4 * (k % 2) + c) * 32).cast());
                    let high = _mm256_loadu_si256(p.add(qh_at + (4 * n + c) * 32).cast());
                    let (nibble, pair) = match k {
                        0 => (nibbles, _mm256_slli_epi16::<4>(_mm256_and_si256(high, bits01))),
                        1 => (nibbles, _mm256_and_si256(_mm256_slli_epi16::<2>(high), bits45)),
                        2 => (_mm256_srli_epi16::<4>(nibbles), _mm256_and_si256(high, bits45)),
                        _ => (_mm256_srli_epi16::<4>(nibbles), _mm256_and_si256(_mm256_srli_epi16::<2>(high), bits45)),
                    };
                    *q = _mm256_or_si256(_mm256_and_si256(nibble, low), pair);
                }
                for (r, iacc) in iacc.iter_mut().enumerate() {
                    let a = acts.qs.as_ptr().add(((first + r) * blocks + b) * SUPER + 32 * s);
                    let first_half = _mm256_madd_epi16(products(&q, a, 0..2), scale_a);
                    let second_half = _mm256_madd_epi16(products(&q, a, 2..4), scale_b);
                    *iacc = _mm256_add_epi32(*iacc, _mm256_add_epi32(first_half, second_half));
                }
            }
            for r in 0..R {
                let ab = (first + r) * blocks + b;
                let da = _mm256_set1_ps(*acts.d.get_unchecked(ab));
                facc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[r]), _mm256_mul_ps(d_pairs, da), facc[r]);
                let sums = _mm256_loadu_si256(acts.sums.as_ptr().add(ab * 16).cast());
                let (m0, m1) = (_mm256_madd_epi16(wide[0], sums), _mm256_madd_epi16(wide[1], sums));
                let (m2, m3) = (_mm256_madd_epi16(wide[2], sums), _mm256_madd_epi16(wide[3], sums));
                let total = _mm256_hadd_epi32(_mm256_hadd_epi32(m0, m1), _mm256_hadd_epi32(m2, m3));
                let centred = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256::<1>(total));
                macc[r] =
                    _mm_fmadd_ps(_mm_cvtepi32_ps(centred), _mm_mul_ps(centre, _mm256_castps256_ps128(da)), macc[r]);
            }
        }
        std::array::from_fn(|r| _mm_sub_ps(column_sums(facc[r]), macc[r]))
    }
}
