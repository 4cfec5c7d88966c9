//! The AVX2 kernels over K-quant quads (`crate::quant::kquad`): four output columns at once, up to eight
//! activation rows per pass over a super-block.
//!
//! A pass of several rows decodes each quad super-block once into [`Decoded`]: 32 registers' worth of
//! quants (for each 32-value slice, four registers of 8 quants of each of the four columns), beside each
//! scale group's scales spread over the matching 16-bit lanes. Then, per row and slice, each register is
//! multiplied (`maddubs`) by the row's 8 activations of that chunk broadcast to all four columns; the 16-bit
//! products of one scale group are summed before a single `madd` applies the four columns' scales of that
//! group. A Q4_K slice of 4 × 32 weights thus costs four `maddubs` and one `madd` per row, with the
//! decoding shared by the whole pass. A one-row pass (decode) multiplies each register as it is decoded
//! instead. Integer sums run over a super-block; the super-block's and the row's scales are applied in
//! `f32`, and the minimum (or centre) term comes from the row's group sums.
//!
//! **Batch invariance:** a row's integer sums come out the same in either kind of pass (its products are
//! the same, and integer additions in any order give the same sum), and every row takes the same
//! floating-point operations in the same order whichever rows share its pass.

use std::arch::x86_64::*;

use super::{chunk, column_sums, store_quad};
use crate::quant::activations::SuperRows;
use crate::quant::QUAD;
use crate::quant::SUPER;
use crate::quant::{in_passes, pass_of, prefetch};

/// How many super-blocks ahead the kernels prefetch weights: they stream from memory faster than the
/// hardware prefetcher alone fetches them, and on a Zen 1 VM faster from 8 ahead than from 2.
const AHEAD: usize = 8;

/// How the quad kernel reads one K-quant format.
pub(crate) trait QuadFormat {
    /// Bytes of one column's super-block.
    const BLOCK: usize;
    /// Whether a 32-value slice has a scale per 16 values (two groups) rather than one.
    const HALF_SLICES: bool;
    /// What a super-block's rows need besides their integer sums to finish (its scales).
    type Terms: Copy;
    /// Reads the quad super-block at `p`'s scales: each scale group's spread over the 16-bit lanes of its
    /// `maddubs` products into `scale` (`scale[s]` per slice, or `scale[2s]` and `scale[2s + 1]` per half
    /// slice), and the rest into the terms.
    unsafe fn scales(p: *const u8, scale: &mut [__m256i; 16]) -> Self::Terms;
    /// 8-value chunk `c` of slice `s` of the four columns, as unsigned bytes.
    unsafe fn quants(p: *const u8, s: usize, c: usize) -> __m256i;
    /// Adds to `acc` a row's result for this super-block from its integer sums `dots` and its
    /// activation super-block `ab` (scale and group sums).
    unsafe fn finish(terms: &Self::Terms, dots: __m256i, acts: &SuperRows, ab: usize, acc: __m256) -> __m256;
}

/// Q4_K quads, or Q5_K with `FIVE`.
pub(crate) struct Q45Quads<const FIVE: bool>;
/// Q6_K quads.
pub(crate) struct Q6Quads;

/// A quad super-block's quants, `q[4s + c]` holding 8-value chunk `c` of slice `s` for the four columns.
#[repr(C, align(32))]
pub(crate) struct Decoded {
    q: [__m256i; 32],
}

/// `rows` (at most `T`) activation rows against the four columns whose super-blocks start at `quad`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `quad` points at a whole quad of format `F` and the activations' width.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quad_tile<F: QuadFormat, const T: usize>(
    quad: *const u8,
    acts: &SuperRows,
    rows: std::ops::Range<usize>,
) -> [[f32; QUAD]; T] {
    // SAFETY: forwarded from the caller.
    unsafe { in_passes(rows, |start, left| pass_of!(left, pass::<F>(quad, acts, start)), store_quad) }
}

/// One pass of `R` rows from `first` over every super-block of a quad.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pass<F: QuadFormat, const R: usize>(quad: *const u8, acts: &SuperRows, first: usize) -> [__m128; R] {
    let blocks = acts.blocks_per_row;
    let bytes = QUAD * F::BLOCK;
    // SAFETY: every load below stays inside the quad's super-block `b` or an activation super-block of
    // rows `first..first + R`.
    unsafe {
        // Lanes `(2g, 2g + 1)` of every accumulator belong to column `g`.
        let mut acc = [_mm256_setzero_ps(); R];
        let mut scale = [_mm256_setzero_si256(); 16];
        let mut decoded = Decoded { q: [_mm256_setzero_si256(); 32] };
        for b in 0..blocks {
            let p = quad.add(b * bytes);
            prefetch::<_MM_HINT_T0>(p.wrapping_add(AHEAD * bytes), bytes);
            let terms = F::scales(p, &mut scale);
            let a: [*const i8; R] = std::array::from_fn(|r| acts.qs.as_ptr().add(((first + r) * blocks + b) * SUPER));
            let dots = if R == 1 {
                [dot_one_row::<F>(p, &scale, a[0]); R]
            } else {
                // Slices in pairs: Q4_K and Q5_K hold a pair's quants in the same bytes.
                for s in (0..8).step_by(2) {
                    for c in 0..4 {
                        let (even, odd) = (F::quants(p, s, c), F::quants(p, s + 1, c));
                        (decoded.q[4 * s + c], decoded.q[4 * s + 4 + c]) = (even, odd);
                    }
                }
                dot_decoded::<R>(&decoded, &scale, a, F::HALF_SLICES)
            };
            for (r, (acc, dots)) in acc.iter_mut().zip(dots).enumerate() {
                let ab = (first + r) * blocks + b;
                *acc = F::finish(&terms, dots, acts, ab, *acc);
            }
        }
        std::array::from_fn(|r| column_sums(acc[r]))
    }
}

/// Adds a slice's (or half slice's) 16-bit products, scaled by `scale` and widened by `madd`, to `dot`.
#[inline(always)]
unsafe fn add_scaled(dot: __m256i, products: __m256i, scale: __m256i) -> __m256i {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe { _mm256_add_epi32(dot, _mm256_madd_epi16(products, scale)) }
}

/// One activation row (super-block at `a`) against the quad super-block at `p`, each chunk of quants
/// multiplied as it is decoded, with no scratch: the integer sums of scale × products, lanes `(2g, 2g + 1)`
/// for column `g`, the same as [`dot_decoded`]'s. Decode's one-row pass is bound by the core's vector work
/// on a Zen 1 VM (one thread streamed Q4_K at half a plain read's rate); skipping the scratch's stores and
/// loads there raised the Q6_K file's decode from 12.0 to 13.0 tok/s and the Q5_K_M file's from 14.3 to
/// 15.6 (medians of three alternating runs), and left the Q4_K_M file's where it was.
#[inline(always)]
unsafe fn dot_one_row<F: QuadFormat>(p: *const u8, scale: &[__m256i; 16], a: *const i8) -> __m256i {
    // SAFETY: `p` is a whole quad super-block and `a` a whole activation super-block; AVX2 is enabled in
    // every caller.
    unsafe {
        let dot = slice_pair::<F, 0>(p, scale, a, _mm256_setzero_si256());
        let dot = slice_pair::<F, 2>(p, scale, a, dot);
        let dot = slice_pair::<F, 4>(p, scale, a, dot);
        slice_pair::<F, 6>(p, scale, a, dot)
    }
}

/// Slices `S` and `S + 1` of [`dot_one_row`], their products summed in two independent chains.
#[inline(always)]
unsafe fn slice_pair<F: QuadFormat, const S: usize>(
    p: *const u8,
    scale: &[__m256i; 16],
    a: *const i8,
    mut dot: __m256i,
) -> __m256i {
    // SAFETY: as in `dot_one_row`.
    unsafe {
        let product = |s: usize, c: usize| _mm256_maddubs_epi16(F::quants(p, s, c), chunk(a.add(32 * s + 8 * c)));
        let (mut even, mut odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for c in 0..4 {
            even = _mm256_add_epi16(even, product(S, c));
            odd = _mm256_add_epi16(odd, product(S + 1, c));
            if F::HALF_SLICES && c % 2 == 1 {
                dot = add_scaled(dot, even, scale[2 * S + c / 2]);
                dot = add_scaled(dot, odd, scale[2 * S + 2 + c / 2]);
                (even, odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            }
        }
        if !F::HALF_SLICES {
            dot = add_scaled(add_scaled(dot, even, scale[S]), odd, scale[S + 1]);
        }
        dot
    }
}

/// `R` activation rows (super-blocks at `a`) against a decoded quad super-block: per row, the integer
/// sums of scale × products, lanes `(2g, 2g + 1)` for column `g`.
#[inline(always)]
unsafe fn dot_decoded<const R: usize>(
    decoded: &Decoded,
    scale: &[__m256i; 16],
    a: [*const i8; R],
    half_slices: bool,
) -> [__m256i; R] {
    // SAFETY: each `a` points at a whole activation super-block; AVX2 is enabled in every caller.
    unsafe {
        let mut dots = [_mm256_setzero_si256(); R];
        for s in 0..8 {
            let q = &decoded.q[4 * s..4 * s + 4];
            for (dot, a) in dots.iter_mut().zip(a) {
                let a = a.add(32 * s);
                let product = |c: usize| _mm256_maddubs_epi16(q[c], chunk(a.add(8 * c)));
                let (low, high) = (_mm256_add_epi16(product(0), product(1)), _mm256_add_epi16(product(2), product(3)));
                *dot = if half_slices {
                    add_scaled(add_scaled(*dot, low, scale[2 * s]), high, scale[2 * s + 1])
                } else {
                    add_scaled(*dot, _mm256_add_epi16(low, high), scale[s])
                };
            }
        }
        dots
    }
}

/// `pshufb` masks that spread the scale of slice `t` (byte `4g + t` of the scale words, `t < 4`) over
/// the four 16-bit product lanes of each column `g`.
const SPREAD45: [[i8; 32]; 4] = {
    let mut masks = [[-128i8; 32]; 4];
    let mut t = 0;
    while t < 4 {
        let mut lane = 0;
        while lane < 16 {
            masks[t][2 * lane] = (4 * (lane / 4) + t) as i8;
            lane += 1;
        }
        t += 1;
    }
    masks
};

/// `pshufb` masks that spread 16-bit scale pair `t` of a pair-interleaved, sign-extended Q6_K scale
/// vector (words `2t` and `2t + 1`: columns 0 and 1 in the low half, 2 and 3 in the high half) over the four
/// 16-bit product lanes of each column.
const SPREAD6: [[i8; 32]; 4] = {
    let mut masks = [[0i8; 32]; 4];
    let mut t = 0;
    while t < 4 {
        let mut lane = 0;
        while lane < 16 {
            let word = 2 * t + (lane / 4) % 2;
            masks[t][2 * lane] = (2 * word) as i8;
            masks[t][2 * lane + 1] = (2 * word + 1) as i8;
            lane += 1;
        }
        t += 1;
    }
    masks
};

/// The scales of a Q4_K/Q5_K quad super-block: `d` and `dmin` of each column in its two accumulator lanes,
/// and the minimums (see [`q45_scales`]).
#[derive(Clone, Copy)]
pub(crate) struct Q45Terms {
    d: __m256,
    dmin: __m256,
    mins: [__m256i; 2],
}

/// Where a Q5_K quad super-block's fifth bits start (after the scales).
const Q5_FIFTH_BITS_AT: usize = 64;

/// Where a Q4_K quad super-block's quants start, or a Q5_K one's with `five` (after its fifth bits).
const fn q45_quants_at(five: bool) -> usize {
    if five {
        Q5_FIFTH_BITS_AT + QUAD * 32
    } else {
        64
    }
}

/// A Q4_K/Q5_K quad super-block's terms, with its slice scales spread into `scale`.
#[inline(always)]
unsafe fn q45_head(p: *const u8, scale: &mut [__m256i; 16]) -> Q45Terms {
    // SAFETY: the caller passes a whole quad super-block; AVX2 and F16C are enabled in every caller.
    unsafe {
        let dm = _mm256_cvtph_ps(_mm_loadu_si128(p.cast()));
        let d = _mm256_permutevar8x32_ps(dm, _mm256_setr_epi32(0, 0, 2, 2, 4, 4, 6, 6));
        let dmin = _mm256_permutevar8x32_ps(dm, _mm256_setr_epi32(1, 1, 3, 3, 5, 5, 7, 7));
        let (scales, mins) = q45_scales(p);
        for (s, scale) in scale.iter_mut().enumerate().take(8) {
            let spread = _mm256_loadu_si256(SPREAD45[s % 4].as_ptr().cast());
            *scale = _mm256_shuffle_epi8(scales[s / 4], spread);
        }
        Q45Terms { d, dmin, mins }
    }
}

/// Chunk `c` of slice `s` of a Q4_K quad super-block, or a Q5_K one's with `FIVE`: the low nibbles of the
/// slice pair's 32 bytes for an even slice, the high for an odd one, and with `FIVE` bit `s` of the
/// chunk's fifth-bit bytes as bit 4.
#[inline(always)]
unsafe fn q45_quants<const FIVE: bool>(p: *const u8, s: usize, c: usize) -> __m256i {
    // SAFETY: the caller passes a whole quad super-block; AVX2 is enabled in every caller.
    unsafe {
        let low = _mm256_set1_epi8(0x0F);
        let bytes = _mm256_loadu_si256(p.add(q45_quants_at(FIVE) + (4 * (s / 2) + c) * 32).cast());
        let nibbles = if s.is_multiple_of(2) {
            _mm256_and_si256(bytes, low)
        } else {
            _mm256_and_si256(_mm256_srli_epi16::<4>(bytes), low)
        };
        if !FIVE {
            return nibbles;
        }
        // Shifts stay within bytes once masked.
        let h = _mm256_loadu_si256(p.add(Q5_FIFTH_BITS_AT + c * 32).cast());
        let moved = if s >= 4 {
            _mm256_srl_epi16(h, _mm_cvtsi32_si128(s as i32 - 4))
        } else {
            _mm256_sll_epi16(h, _mm_cvtsi32_si128(4 - s as i32))
        };
        _mm256_or_si256(nibbles, _mm256_and_si256(moved, _mm256_set1_epi8(0x10)))
    }
}

/// A row's Q4_K/Q5_K result for one super-block: `d·da·dots − dmin·da·Σ mins × slice sums`.
#[inline(always)]
unsafe fn q45_finish(terms: &Q45Terms, dots: __m256i, acts: &SuperRows, ab: usize, acc: __m256) -> __m256 {
    // SAFETY: `ab` is an activation super-block; AVX2 and FMA are enabled in every caller.
    unsafe {
        let da = _mm256_set1_ps(*acts.d.get_unchecked(ab));
        let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), _mm256_mul_ps(terms.d, da), acc);
        let sums = acts.slice_sums.as_ptr().add(ab * 8);
        let (low, high) = (chunk(sums.cast()), chunk(sums.add(4).cast()));
        let min = _mm256_add_epi32(_mm256_madd_epi16(terms.mins[0], low), _mm256_madd_epi16(terms.mins[1], high));
        _mm256_fnmadd_ps(_mm256_cvtepi32_ps(min), _mm256_mul_ps(terms.dmin, da), acc)
    }
}

impl<const FIVE: bool> QuadFormat for Q45Quads<FIVE> {
    const BLOCK: usize = if FIVE { 176 } else { 144 };
    const HALF_SLICES: bool = false;
    type Terms = Q45Terms;

    #[inline(always)]
    unsafe fn scales(p: *const u8, scale: &mut [__m256i; 16]) -> Q45Terms {
        // SAFETY: forwarded from the caller.
        unsafe { q45_head(p, scale) }
    }

    #[inline(always)]
    unsafe fn quants(p: *const u8, s: usize, c: usize) -> __m256i {
        // SAFETY: forwarded from the caller.
        unsafe { q45_quants::<FIVE>(p, s, c) }
    }

    #[inline(always)]
    unsafe fn finish(terms: &Q45Terms, dots: __m256i, acts: &SuperRows, ab: usize, acc: __m256) -> __m256 {
        // SAFETY: forwarded from the caller.
        unsafe { q45_finish(terms, dots, acts, ab, acc) }
    }
}

/// A Q4_K/Q5_K quad super-block's six-bit scales and minimums (GGML's packing, one 32-bit lane per
/// column): the scales as bytes, slices 0–3 then 4–7 (byte `4g + s % 4` for column `g`, in both 128-bit
/// halves), and the minimums as 16-bit values, slices 0–3 then 4–7 (lanes `4g..4g + 4` for column `g`), so
/// a `madd` of each with the row's matching four slice sums leaves each column's minimum term, in halves,
/// in its two accumulator lanes.
#[inline(always)]
unsafe fn q45_scales(p: *const u8) -> ([__m256i; 2], [__m256i; 2]) {
    // SAFETY: the caller passes a whole quad super-block; AVX2 is enabled in every caller.
    unsafe {
        let (w0, w1, w2) =
            (_mm_loadu_si128(p.add(16).cast()), _mm_loadu_si128(p.add(32).cast()), _mm_loadu_si128(p.add(48).cast()));
        let (m6, m4, m2) = (_mm_set1_epi8(0x3F), _mm_set1_epi8(0x0F), _mm_set1_epi8(0x03));
        let sc_low = _mm_and_si128(w0, m6);
        let mn_low = _mm_and_si128(w1, m6);
        let sc_high =
            _mm_or_si128(_mm_and_si128(w2, m4), _mm_slli_epi32::<4>(_mm_and_si128(_mm_srli_epi32::<6>(w0), m2)));
        let mn_high = _mm_or_si128(
            _mm_and_si128(_mm_srli_epi32::<4>(w2), m4),
            _mm_slli_epi32::<4>(_mm_and_si128(_mm_srli_epi32::<6>(w1), m2)),
        );
        (
            [_mm256_broadcastsi128_si256(sc_low), _mm256_broadcastsi128_si256(sc_high)],
            [_mm256_cvtepu8_epi16(mn_low), _mm256_cvtepu8_epi16(mn_high)],
        )
    }
}

/// The scales of a Q6_K quad super-block: `d` of each column in its two accumulator lanes, and each
/// column's 16 signed group scales as 16-bit values (for the centre term).
#[derive(Clone, Copy)]
pub(crate) struct Q6Terms {
    d: __m256,
    wide: [__m256i; QUAD],
}

/// Q6_K: 6-bit quants stored as unsigned (`q + 32`), a signed 8-bit scale per group of 16, and the centre
/// taken off in integers through the row's group sums.
impl QuadFormat for Q6Quads {
    const BLOCK: usize = 210;
    const HALF_SLICES: bool = true;
    type Terms = Q6Terms;

    #[inline(always)]
    unsafe fn scales(p: *const u8, scale: &mut [__m256i; 16]) -> Q6Terms {
        let (sc_at, d_at) = (768, 832);
        // SAFETY: the caller passes a whole quad super-block; AVX2 and F16C are enabled in every caller.
        unsafe {
            let d = _mm_cvtph_ps(_mm_loadl_epi64(p.add(d_at).cast()));
            let d = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d), _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
            // Scales of columns 0, 2, 1, 3 in that order: pairing bytes gives (0, 1) low and (2, 3) high.
            let (even, odd) = (_mm256_loadu_si256(p.add(sc_at).cast()), _mm256_loadu_si256(p.add(sc_at + 32).cast()));
            let (low, high) = (_mm256_unpacklo_epi8(even, odd), _mm256_unpackhi_epi8(even, odd));
            // Groups 4j to 4j + 3 of each column pair (`words[j]`), sign-extended to 16 bits.
            let zero = _mm256_setzero_si256();
            let (low_signs, high_signs) = (_mm256_cmpgt_epi8(zero, low), _mm256_cmpgt_epi8(zero, high));
            let words = [
                _mm256_unpacklo_epi8(low, low_signs),
                _mm256_unpackhi_epi8(low, low_signs),
                _mm256_unpacklo_epi8(high, high_signs),
                _mm256_unpackhi_epi8(high, high_signs),
            ];
            for (g, scale) in scale.iter_mut().enumerate() {
                let spread = _mm256_loadu_si256(SPREAD6[g % 4].as_ptr().cast());
                *scale = _mm256_shuffle_epi8(words[g / 4], spread);
            }
            let mut wide = [_mm256_setzero_si256(); QUAD];
            for (w, at) in wide.iter_mut().zip([0, 32, 16, 48]) {
                *w = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(sc_at + at).cast()));
            }
            Q6Terms { d, wide }
        }
    }

    /// Quarter `k = s % 4` of half `s / 4`: nibbles low (`k` 0, 1) or high (2, 3) of the half's `ql` lines,
    /// and bit pair `k` of its `qh` line as bits 4–5.
    #[inline(always)]
    unsafe fn quants(p: *const u8, s: usize, c: usize) -> __m256i {
        let (ql_at, qh_at) = (0, 512);
        // SAFETY: the caller passes a whole quad super-block; AVX2 is enabled in every caller.
        unsafe {
            let (low, bits01, bits45) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x03), _mm256_set1_epi8(0x30));
            let (n, k) = (s / 4, s % 4);
            let nibbles = _mm256_loadu_si256(p.add(ql_at + (8 * n + 4 * (k % 2) + c) * 32).cast());
            let high = _mm256_loadu_si256(p.add(qh_at + (4 * n + c) * 32).cast());
            let (nibble, pair) = match k {
                0 => (nibbles, _mm256_slli_epi16::<4>(_mm256_and_si256(high, bits01))),
                1 => (nibbles, _mm256_and_si256(_mm256_slli_epi16::<2>(high), bits45)),
                2 => (_mm256_srli_epi16::<4>(nibbles), _mm256_and_si256(high, bits45)),
                _ => (_mm256_srli_epi16::<4>(nibbles), _mm256_and_si256(_mm256_srli_epi16::<2>(high), bits45)),
            };
            _mm256_or_si256(_mm256_and_si256(nibble, low), pair)
        }
    }

    /// `d·da·(dots − 32 · Σ scale × group sums)`.
    #[inline(always)]
    unsafe fn finish(terms: &Q6Terms, dots: __m256i, acts: &SuperRows, ab: usize, acc: __m256) -> __m256 {
        // SAFETY: `ab` is an activation super-block; AVX2 and FMA are enabled in every caller.
        unsafe {
            let sums = _mm256_loadu_si256(acts.sums.as_ptr().add(ab * 16).cast());
            let m: [__m256i; QUAD] = std::array::from_fn(|c| _mm256_madd_epi16(terms.wide[c], sums));
            // Halves of columns 0, 1 then 2, 3; the two 128-bit halves of each add up to a column's sum.
            let (x, y) = (_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
            let centre =
                _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(x, y), _mm256_permute2x128_si256::<0x31>(x, y));
            let centred = _mm256_sub_epi32(dots, _mm256_slli_epi32::<5>(centre));
            let da = _mm256_set1_ps(*acts.d.get_unchecked(ab));
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(centred), _mm256_mul_ps(terms.d, da), acc)
        }
    }
}
