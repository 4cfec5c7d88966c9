//! The AVX2 kernel over legacy quads (`crate::quant::lquad`): four output columns at once, up to eight
//! activation rows per pass over a block.
//!
//! Each quad block is decoded once per pass: four registers of 8 quants of each of the four columns (one
//! per 8-value chunk of the block). Per row, each is multiplied (`maddubs`) by the row's 8 activations of
//! that chunk broadcast to all four columns. For the 4- and 5-bit formats the 16-bit products of the block
//! are summed before one `madd`; Q8_0's signed products can reach 32,258, so each goes through its own
//! `madd`. The block's scales are applied in `f32`, and the offset (or centre) comes from the row's sum.
//!
//! **Batch invariance:** every row takes the same operations in the same order whichever rows share its
//! pass.

use std::arch::x86_64::*;

use super::{chunk, column_sums, store_quad};
use crate::quant::activations::QuantizedRows;
use crate::quant::legacy::LegacyFormat;
use crate::quant::lquad::layout;
use crate::quant::QUAD;
use crate::quant::{in_passes, pass_of, prefetch};

/// How many blocks ahead the kernel prefetches weights.
const AHEAD: usize = 4;

/// A decoded quad block: unsigned quants (Q8_0: their magnitudes) by chunk, Q8_0's signed quants, each
/// column's scale in its two accumulator lanes, and its offset in the first of them.
pub(crate) struct Decoded {
    q: [__m256i; 4],
    signs: [__m256i; 4],
    d: __m256,
    offset: __m256,
}

/// How the legacy quad kernel reads one format.
pub(crate) trait LegacyQuad {
    /// The format.
    const FORMAT: LegacyFormat;
    /// Decodes the quad block at `p`.
    unsafe fn decode(p: *const u8) -> Decoded;
    /// Adds a row's result for a decoded block to `acc`: its 32 quantized activations at `a`, their scale
    /// `da` and `s = da · Σ a`.
    unsafe fn row(decoded: &Decoded, a: *const i8, da: f32, s: f32, acc: __m256) -> __m256;
}

/// Q8_0: signed quants.
pub(crate) struct Signed;
/// 4-bit quants, 5-bit with `HIGH`: `d · (q − centre)` (Q4_0, Q5_0), or `d · q + m` with `OFFSET` (Q4_1,
/// Q5_1).
pub(crate) struct Unsigned<const HIGH: bool, const OFFSET: bool>;

/// `rows` (at most `T`) activation rows against the four columns whose blocks start at `quad`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `quad` points at a whole quad of format `F` and the activations' width.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn legacy_quad_tile<F: LegacyQuad, const T: usize>(
    quad: *const u8,
    acts: &QuantizedRows,
    rows: std::ops::Range<usize>,
) -> [[f32; QUAD]; T] {
    // SAFETY: forwarded from the caller.
    unsafe { in_passes(rows, |start, left| pass_of!(left, pass::<F>(quad, acts, start)), store_quad) }
}

/// One pass of `R` rows from `first` over every block of a quad.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pass<F: LegacyQuad, const R: usize>(quad: *const u8, acts: &QuantizedRows, first: usize) -> [__m128; R] {
    let blocks = acts.blocks_per_row;
    let bytes = layout(F::FORMAT).bytes;
    // SAFETY: every load below stays inside the quad's block `b` or an activation block of rows
    // `first..first + R`.
    unsafe {
        // Lanes `(2g, 2g + 1)` of every accumulator belong to column `g`.
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..blocks {
            let p = quad.add(b * bytes);
            prefetch::<_MM_HINT_T0>(p.wrapping_add(AHEAD * bytes), bytes);
            let decoded = F::decode(p);
            for (r, acc) in acc.iter_mut().enumerate() {
                let ab = (first + r) * blocks + b;
                let a = acts.qs.as_ptr().add(ab * 32);
                *acc = F::row(&decoded, a, *acts.d.get_unchecked(ab), *acts.s.get_unchecked(ab), *acc);
            }
        }
        std::array::from_fn(|r| column_sums(acc[r]))
    }
}

/// The four columns' f16 values at `p` as `f32`, each in its two accumulator lanes.
#[inline(always)]
unsafe fn pairs(p: *const u8) -> __m256 {
    // SAFETY: the caller passes 8 readable bytes; AVX2 and F16C are enabled in every caller.
    unsafe {
        let values = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_loadl_epi64(p.cast())));
        _mm256_permutevar8x32_ps(values, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3))
    }
}

/// `v` in the first lane of each column's pair, zero in the second.
#[inline(always)]
unsafe fn first_lanes(v: __m256) -> __m256 {
    // SAFETY: AVX is enabled in every caller.
    unsafe { _mm256_blend_ps::<0b1010_1010>(v, _mm256_setzero_ps()) }
}

/// The 4- or 5-bit quants of a quad block at `p`: low nibbles of bytes 0–7 and 8–15, then high nibbles,
/// with the fifth bits from the `qh` words at `high` when `HIGH`.
#[inline(always)]
unsafe fn nibbles<const HIGH: bool>(p: *const u8, quants: usize, high: usize) -> [__m256i; 4] {
    // SAFETY: the caller passes a whole quad block; AVX2 is enabled in every caller.
    unsafe {
        let low = _mm256_set1_epi8(0x0F);
        let (first, second) = (_mm256_loadu_si256(p.add(quants).cast()), _mm256_loadu_si256(p.add(quants + 32).cast()));
        let mut q = [
            _mm256_and_si256(first, low),
            _mm256_and_si256(second, low),
            _mm256_and_si256(_mm256_srli_epi16::<4>(first), low),
            _mm256_and_si256(_mm256_srli_epi16::<4>(second), low),
        ];
        if HIGH {
            // Value 8c + j of column g has the fifth bit j of byte c of g's word: spread that byte over
            // the column's 8 lanes of chunk c, then test bit j in lane j.
            let words = _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(high).cast()));
            let select = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
            for (c, q) in q.iter_mut().enumerate() {
                let c = c as i8;
                let (g0, g1, g2, g3) = (c, 4 + c, 8 + c, 12 + c);
                let spread = _mm256_setr_epi8(
                    g0, g0, g0, g0, g0, g0, g0, g0, g1, g1, g1, g1, g1, g1, g1, g1, g2, g2, g2, g2, g2, g2, g2, g2, g3,
                    g3, g3, g3, g3, g3, g3, g3,
                );
                let bits = _mm256_and_si256(_mm256_shuffle_epi8(words, spread), select);
                let set = _mm256_cmpeq_epi8(bits, select);
                *q = _mm256_or_si256(*q, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
            }
        }
        q
    }
}

impl LegacyQuad for Signed {
    const FORMAT: LegacyFormat = LegacyFormat::Q8_0;

    #[inline(always)]
    unsafe fn decode(p: *const u8) -> Decoded {
        let quants = layout(Self::FORMAT).quants;
        // SAFETY: the caller passes a whole quad block; AVX2 is enabled in every caller.
        unsafe {
            let signs: [__m256i; 4] = std::array::from_fn(|c| _mm256_loadu_si256(p.add(quants + 32 * c).cast()));
            Decoded { q: signs.map(|w| _mm256_sign_epi8(w, w)), signs, d: pairs(p), offset: _mm256_setzero_ps() }
        }
    }

    #[inline(always)]
    unsafe fn row(decoded: &Decoded, a: *const i8, da: f32, _s: f32, acc: __m256) -> __m256 {
        // SAFETY: `a` points at a whole activation block; AVX2 and FMA are enabled in every caller.
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let product = |c: usize| {
                let signed = _mm256_sign_epi8(chunk(a.add(8 * c)), decoded.signs[c]);
                _mm256_madd_epi16(_mm256_maddubs_epi16(decoded.q[c], signed), ones)
            };
            let dot =
                _mm256_add_epi32(_mm256_add_epi32(product(0), product(1)), _mm256_add_epi32(product(2), product(3)));
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(decoded.d, _mm256_set1_ps(da)), acc)
        }
    }
}

impl<const HIGH: bool, const OFFSET: bool> LegacyQuad for Unsigned<HIGH, OFFSET> {
    const FORMAT: LegacyFormat = match (HIGH, OFFSET) {
        (false, false) => LegacyFormat::Q4_0,
        (true, false) => LegacyFormat::Q5_0,
        (false, true) => LegacyFormat::Q4_1,
        (true, true) => LegacyFormat::Q5_1,
    };

    #[inline(always)]
    unsafe fn decode(p: *const u8) -> Decoded {
        let layout = layout(Self::FORMAT);
        // SAFETY: the caller passes a whole quad block; AVX2 is enabled in every caller.
        unsafe {
            let d = pairs(p);
            let offset = match layout.offsets {
                Some(at) => pairs(p.add(at)),
                None => _mm256_mul_ps(_mm256_set1_ps(-Self::FORMAT.center()), d),
            };
            Decoded {
                q: nibbles::<HIGH>(p, layout.quants, layout.high_bits.unwrap_or(0)),
                signs: [_mm256_setzero_si256(); 4],
                d,
                offset: first_lanes(offset),
            }
        }
    }

    /// The block's products summed in 16 bits (at most 8 × 31 × 127), then `d · da · dot + offset · s`.
    #[inline(always)]
    unsafe fn row(decoded: &Decoded, a: *const i8, da: f32, s: f32, acc: __m256) -> __m256 {
        // SAFETY: `a` points at a whole activation block; AVX2 and FMA are enabled in every caller.
        unsafe {
            let product = |c: usize| _mm256_maddubs_epi16(decoded.q[c], chunk(a.add(8 * c)));
            let sum =
                _mm256_add_epi16(_mm256_add_epi16(product(0), product(1)), _mm256_add_epi16(product(2), product(3)));
            let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(sum, _mm256_set1_epi16(1)));
            let acc = _mm256_fmadd_ps(dot, _mm256_mul_ps(decoded.d, _mm256_set1_ps(da)), acc);
            _mm256_fmadd_ps(decoded.offset, _mm256_set1_ps(s), acc)
        }
    }
}
