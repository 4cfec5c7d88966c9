//! The AVX-512 VNNI kernel for Q4_K, Q5_K and Q6_K, over tiles of [`COLS`] output columns (`kpack`).
//!
//! In a tile every field of the sixteen columns' super-blocks comes in 4-byte chunks side by side, so a
//! 64-byte line of quants holds four consecutive quants of each column. Each tile super-block is decoded
//! once per pass of up to eight activation rows into [`Decoded`]: 64 `vpdpbusd` operands (quants as
//! unsigned bytes, value group `j` holding values `4j..4j + 4`) and each scale group's sixteen scales as
//! 32-bit lanes. Then, per row and scale group, `vpdpbusd` multiplies the group's operands by broadcast
//! dwords of the row and sums them in 32 bits, and one `vpmulld` applies the sixteen columns' scales: a
//! Q4_K super-block costs 64 `vpdpbusd` and 8 `vpmulld` per row for 16 × 256 weights. The minimum (or
//! centre) term comes from the row's group sums through `vpdpwssd`; the super-block's and the row's
//! scales are applied in `f32`.
//!
//! **Batch invariance:** every row takes the same operations in the same order whichever rows share its
//! pass.

use std::arch::x86_64::*;

use super::COLS;
use crate::quant::activations::SuperRows;
use crate::quant::{in_passes, pass_of, prefetch, SUPER};

/// How many super-blocks ahead the kernel prefetches weights.
const AHEAD: usize = 2;
/// Value groups of four (one `vpdpbusd` operand each) in a super-block.
const GROUPS: usize = SUPER / 4;

/// How the tile kernel reads one K-quant format.
pub(crate) trait TileFormat {
    /// Bytes of one column's super-block.
    const BLOCK: usize;
    /// Value groups per scale group: 8 for a scale per 32 values, 4 for one per 16.
    const PER_SCALE: usize;
    /// What a decoded super-block needs besides its quants to finish a row's sum.
    type Terms: Copy;
    /// Decodes the tile super-block at `p` into `decoded`.
    unsafe fn decode(p: *const u8, decoded: &mut Decoded) -> Self::Terms;
    /// Adds to `acc` a row's result for this super-block from its scaled integer sums `dots` and its
    /// activation super-block `ab` (scale and group sums).
    unsafe fn finish(terms: &Self::Terms, dots: __m512i, acts: &SuperRows, ab: usize, acc: __m512) -> __m512;
}

/// Q4_K tiles, or Q5_K with `FIVE`.
pub(crate) struct Q45Tiles<const FIVE: bool>;
/// Q6_K tiles.
pub(crate) struct Q6Tiles;

/// A tile super-block's quants, `q[j]` holding values `4j..4j + 4` of each column (one dword per column),
/// and the sixteen columns' scales of each scale group as 32-bit lanes.
#[repr(C, align(64))]
pub(crate) struct Decoded {
    q: [__m512i; GROUPS],
    scale: [__m512i; 16],
}

/// `rows` (at most `T`) activation rows against the sixteen columns whose super-blocks start at `tile`.
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI; `tile` points at a whole tile of format `F` for the activations'
/// width.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn k_tile<F: TileFormat, const T: usize>(
    tile: *const u8,
    acts: &SuperRows,
    rows: std::ops::Range<usize>,
) -> [[f32; COLS]; T] {
    // SAFETY: forwarded from the caller; a row's 16 sums fill its 16 floats.
    unsafe {
        in_passes(
            rows,
            |start, left| pass_of!(left, pass::<F>(tile, acts, start)),
            |out: &mut [f32; COLS], sums| _mm512_storeu_ps(out.as_mut_ptr(), sums),
        )
    }
}

/// One pass of `R` rows from `first` over every super-block of a tile.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn pass<F: TileFormat, const R: usize>(tile: *const u8, acts: &SuperRows, first: usize) -> [__m512; R] {
    let blocks = acts.blocks_per_row;
    let bytes = COLS * F::BLOCK;
    // SAFETY: every load below stays inside the tile's super-block `b` or an activation super-block of
    // rows `first..first + R`.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); R];
        let mut decoded = Decoded { q: [_mm512_setzero_si512(); GROUPS], scale: [_mm512_setzero_si512(); 16] };
        for b in 0..blocks {
            let p = tile.add(b * bytes);
            prefetch(p.wrapping_add(AHEAD * bytes), bytes);
            let terms = F::decode(p, &mut decoded);
            let a: [*const i8; R] = std::array::from_fn(|r| acts.qs.as_ptr().add(((first + r) * blocks + b) * SUPER));
            let dots = dot_groups::<R>(&decoded, a, F::PER_SCALE);
            for (r, (acc, dots)) in acc.iter_mut().zip(dots).enumerate() {
                *acc = F::finish(&terms, dots, acts, (first + r) * blocks + b, *acc);
            }
        }
        acc
    }
}

/// `R` activation rows (super-blocks at `a`) against a decoded tile super-block: per row, the sixteen
/// columns' sums of scale × products.
#[inline(always)]
unsafe fn dot_groups<const R: usize>(decoded: &Decoded, a: [*const i8; R], per_scale: usize) -> [__m512i; R] {
    // SAFETY: each `a` points at a whole activation super-block; AVX-512 VNNI is enabled in every caller.
    unsafe {
        let mut dots = [_mm512_setzero_si512(); R];
        for g in 0..GROUPS / per_scale {
            let q = &decoded.q[g * per_scale..(g + 1) * per_scale];
            for (dot, a) in dots.iter_mut().zip(a) {
                let mut sum = _mm512_setzero_si512();
                for (j, &q) in q.iter().enumerate() {
                    let word = a.add(4 * (g * per_scale + j)).cast::<i32>().read_unaligned();
                    sum = _mm512_dpbusd_epi32(sum, q, _mm512_set1_epi32(word));
                }
                *dot = _mm512_add_epi32(*dot, _mm512_mullo_epi32(sum, decoded.scale[g]));
            }
        }
        dots
    }
}

/// A `pshufb` mask that builds each dword from bytes `pick` of the same dword (`-1`: a zero byte).
const fn spread(pick: [i8; 4]) -> [i8; 64] {
    let mut mask = [-128i8; 64];
    let mut i = 0;
    while i < 64 {
        let p = pick[i % 4];
        if p >= 0 {
            mask[i] = (i % 16 / 4 * 4) as i8 + p;
        }
        i += 1;
    }
    mask
}

/// Byte `t` of each dword, zero-extended.
const BYTE: [[i8; 64]; 4] =
    [spread([0, -1, -1, -1]), spread([1, -1, -1, -1]), spread([2, -1, -1, -1]), spread([3, -1, -1, -1])];
/// Bytes `(0, 1)` or `(2, 3)` of each dword as two zero-extended 16-bit values.
const PAIR: [[i8; 64]; 2] = [spread([0, -1, 1, -1]), spread([2, -1, 3, -1])];
/// Byte `t` of each dword in its top byte (an arithmetic shift then sign-extends it).
const TOP: [[i8; 64]; 4] =
    [spread([-1, -1, -1, 0]), spread([-1, -1, -1, 1]), spread([-1, -1, -1, 2]), spread([-1, -1, -1, 3])];
/// Bytes `(0, 1)` or `(2, 3)` of each dword in the high bytes of its two 16-bit halves.
const HIGH_PAIR: [[i8; 64]; 2] = [spread([-1, 0, -1, 1]), spread([-1, 2, -1, 3])];

#[inline(always)]
unsafe fn shuffle(v: __m512i, mask: &[i8; 64]) -> __m512i {
    // SAFETY: AVX-512 BW is enabled in every caller; `mask` is 64 bytes.
    unsafe { _mm512_shuffle_epi8(v, _mm512_loadu_si512(mask.as_ptr().cast())) }
}

#[inline(always)]
unsafe fn line(p: *const u8, at: usize) -> __m512i {
    // SAFETY: the caller passes a whole tile super-block at `p`.
    unsafe { _mm512_loadu_si512(p.add(at).cast()) }
}

/// The scales of a Q4_K/Q5_K tile super-block: each column's `d` and `dmin`, and its eight minimums as
/// four 16-bit pairs (slices `2k, 2k + 1` in dword lanes), for `vpdpwssd` with a row's slice sums.
#[derive(Clone, Copy)]
pub(crate) struct Q45Terms {
    d: __m512,
    dmin: __m512,
    mins: [__m512i; 4],
}

/// Decodes a Q4_K tile super-block, or a Q5_K one with `FIVE`.
#[inline(always)]
unsafe fn q45_decode<const FIVE: bool>(p: *const u8, decoded: &mut Decoded) -> Q45Terms {
    let (qh_at, qs_at) = (256, if FIVE { 768 } else { 256 });
    // SAFETY: the caller passes a whole tile super-block; AVX-512 F and BW are enabled in every caller.
    unsafe {
        let dm = line(p, 0);
        let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
        let dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(dm)));
        // GGML's 12 bytes of 6-bit scales and minimums, as three dwords per column.
        let (w0, w1, w2) = (line(p, 64), line(p, 128), line(p, 192));
        let (m6, m4, m2) = (_mm512_set1_epi8(0x3F), _mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x03));
        let high_bits = |w| _mm512_slli_epi32::<4>(_mm512_and_si512(_mm512_srli_epi32::<6>(w), m2));
        let scales = [_mm512_and_si512(w0, m6), _mm512_or_si512(_mm512_and_si512(w2, m4), high_bits(w0))];
        let mins = [
            _mm512_and_si512(w1, m6),
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32::<4>(w2), m4), high_bits(w1)),
        ];
        for (s, scale) in decoded.scale[..8].iter_mut().enumerate() {
            *scale = shuffle(scales[s / 4], &BYTE[s % 4]);
        }
        let mins = std::array::from_fn(|k| shuffle(mins[k / 2], &PAIR[k % 2]));
        let low = _mm512_set1_epi8(0x0F);
        for l in 0..32 {
            // Line `l` holds bytes `4i..4i + 4` of the nibbles' 32-byte chunk `j` of every column: values
            // `64j + 4i..` (group `16j + i`) low, `64j + 32 + 4i..` (group `16j + 8 + i`) high.
            let (j, i) = (l / 8, l % 8);
            let bytes = line(p, qs_at + 64 * l);
            let mut halves = [_mm512_and_si512(bytes, low), _mm512_and_si512(_mm512_srli_epi16::<4>(bytes), low)];
            if FIVE {
                // Bit `s` of the fifth-bit bytes `4i..4i + 4` belongs to slice `s`.
                let high = line(p, qh_at + 64 * i);
                for (half, v) in halves.iter_mut().enumerate() {
                    let bit = _mm512_test_epi8_mask(high, _mm512_set1_epi8((1u8 << (2 * j + half)) as i8));
                    *v = _mm512_mask_add_epi8(*v, bit, *v, _mm512_set1_epi8(0x10));
                }
            }
            decoded.q[16 * j + i] = halves[0];
            decoded.q[16 * j + 8 + i] = halves[1];
        }
        Q45Terms { d, dmin, mins }
    }
}

impl<const FIVE: bool> TileFormat for Q45Tiles<FIVE> {
    const BLOCK: usize = if FIVE { 176 } else { 144 };
    const PER_SCALE: usize = 8;
    type Terms = Q45Terms;

    #[inline(always)]
    unsafe fn decode(p: *const u8, decoded: &mut Decoded) -> Q45Terms {
        // SAFETY: forwarded from the caller.
        unsafe { q45_decode::<FIVE>(p, decoded) }
    }

    /// `d·da·dots − dmin·da·Σ mins × slice sums`.
    #[inline(always)]
    unsafe fn finish(terms: &Q45Terms, dots: __m512i, acts: &SuperRows, ab: usize, acc: __m512) -> __m512 {
        // SAFETY: `ab` is an activation super-block; AVX-512 F and VNNI are enabled in every caller.
        unsafe {
            let da = _mm512_set1_ps(*acts.d.get_unchecked(ab));
            let acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), _mm512_mul_ps(terms.d, da), acc);
            let sums = acts.slice_sums.as_ptr().add(ab * 8).cast::<i32>();
            let mut min = _mm512_setzero_si512();
            for (k, &mins) in terms.mins.iter().enumerate() {
                min = _mm512_dpwssd_epi32(min, mins, _mm512_set1_epi32(sums.add(k).read_unaligned()));
            }
            _mm512_fnmadd_ps(_mm512_cvtepi32_ps(min), _mm512_mul_ps(terms.dmin, da), acc)
        }
    }
}

/// The scales of a Q6_K tile super-block: each column's `d`, and its sixteen signed group scales as
/// eight 16-bit pairs (groups `2k, 2k + 1`), for the centre term.
#[derive(Clone, Copy)]
pub(crate) struct Q6Terms {
    d: __m512,
    pairs: [__m512i; 8],
}

/// Q6_K: 6-bit quants stored as unsigned (`q + 32`), a signed 8-bit scale per group of 16, and the centre
/// taken off in integers through the row's group sums.
impl TileFormat for Q6Tiles {
    const BLOCK: usize = 210;
    const PER_SCALE: usize = 4;
    type Terms = Q6Terms;

    #[inline(always)]
    unsafe fn decode(p: *const u8, decoded: &mut Decoded) -> Q6Terms {
        let (ql_at, qh_at, sc_at, d_at) = (0, 2048, 3072, 3328);
        // SAFETY: the caller passes a whole tile super-block; AVX-512 F and BW are enabled in every caller.
        unsafe {
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(d_at).cast()));
            let scales: [__m512i; 4] = std::array::from_fn(|t| line(p, sc_at + 64 * t));
            for (g, scale) in decoded.scale.iter_mut().enumerate() {
                *scale = _mm512_srai_epi32::<24>(shuffle(scales[g / 4], &TOP[g % 4]));
            }
            let pairs = std::array::from_fn(|k| _mm512_srai_epi16::<8>(shuffle(scales[k / 2], &HIGH_PAIR[k % 2])));
            let (low, bits45) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
            for (j, q) in decoded.q.iter_mut().enumerate() {
                // Value `128n + 32k + 4i..` takes nibble `k / 2` of low-bit line `16n + 8(k % 2) + i` and
                // bits `2k..2k + 2` of high-bit line `8n + i`.
                let (n, k, i) = (j / 32, j % 32 / 8, j % 8);
                let nibbles = line(p, ql_at + 64 * (16 * n + 8 * (k % 2) + i));
                let high = line(p, qh_at + 64 * (8 * n + i));
                let (nibble, pair) = match k {
                    0 => (nibbles, _mm512_slli_epi16::<4>(high)),
                    1 => (nibbles, _mm512_slli_epi16::<2>(high)),
                    2 => (_mm512_srli_epi16::<4>(nibbles), high),
                    _ => (_mm512_srli_epi16::<4>(nibbles), _mm512_srli_epi16::<2>(high)),
                };
                *q = _mm512_or_si512(_mm512_and_si512(nibble, low), _mm512_and_si512(pair, bits45));
            }
            Q6Terms { d, pairs }
        }
    }

    /// `d·da·(dots − 32 · Σ scale × group sums)`.
    #[inline(always)]
    unsafe fn finish(terms: &Q6Terms, dots: __m512i, acts: &SuperRows, ab: usize, acc: __m512) -> __m512 {
        // SAFETY: `ab` is an activation super-block; AVX-512 F and VNNI are enabled in every caller.
        unsafe {
            let sums = acts.sums.as_ptr().add(ab * 16).cast::<i32>();
            let mut centre = _mm512_setzero_si512();
            for (k, &pair) in terms.pairs.iter().enumerate() {
                centre = _mm512_dpwssd_epi32(centre, pair, _mm512_set1_epi32(sums.add(k).read_unaligned()));
            }
            let centred = _mm512_sub_epi32(dots, _mm512_slli_epi32::<5>(centre));
            let da = _mm512_set1_ps(*acts.d.get_unchecked(ab));
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(centred), _mm512_mul_ps(terms.d, da), acc)
        }
    }
}
