//! The AVX-512 VNNI kernel for Q4_K, Q5_K and Q6_K, over tiles of [`COLS`] output columns (`kpack`).
//!
//! In a tile every field of the sixteen columns' super-blocks comes in 4-byte chunks side by side, so a
//! 64-byte line of quants holds four consecutive quants of each column. A pass of up to eight activation
//! rows walks a tile super-block one value group at a time: the group's `vpdpbusd` operand (quants as
//! unsigned bytes, value group `j` holding values `4j..4j + 4`) is decoded from its lines into a register
//! and multiplied at once by a broadcast dword of every row, so nothing decoded goes back to memory (a
//! decoded scratch cost more than the bandwidth a single row has to spare). After each scale group one
//! `vpmulld` per row applies the sixteen columns' scales: a Q4_K super-block costs 64 `vpdpbusd` and 8
//! `vpmulld` per row for 16 × 256 weights. The minimum (or centre) term comes from the row's group sums
//! through `vpdpwssd`; the super-block's and the row's scales are applied in `f32`.
//!
//! **Batch invariance:** every row takes the same operations in the same order whichever rows share its
//! pass.

use std::arch::x86_64::*;

use super::COLS;
use crate::quant::activations::SuperRows;
use crate::quant::{in_passes, pass_of, prefetch, SUPER};

/// How many super-blocks ahead the kernel prefetches weights into L2 (into L1, the prefetches of a tile's
/// many lines left too few misses in flight for the stream: 1B Q4_K_M's output head read at 6 instead of
/// 10 GB/s on one Zen 4 core).
const AHEAD: usize = 8;
/// Value groups of four (one `vpdpbusd` operand each) in a super-block.
const GROUPS: usize = SUPER / 4;

/// How the tile kernel reads one K-quant format.
pub(crate) trait TileFormat {
    /// Bytes of one column's super-block.
    const BLOCK: usize;
    /// Value groups per scale group: 8 for a scale per 32 values, 4 for one per 16.
    const PER_SCALE: usize;
    /// How a one-row pass gets the tile's lines from memory in time.
    const ONE_ROW: Streaming;
    /// What a super-block needs besides its quants and group scales to finish a row's sum.
    type Terms: Copy;
    /// Reads the scales of the tile super-block at `p`: each scale group's sixteen column scales as 32-bit
    /// lanes into `scale`, and the rest as terms.
    unsafe fn scales(p: *const u8, scale: &mut [__m512i; 16]) -> Self::Terms;
    /// Value group `j` of the tile super-block at `p`: values `4j..4j + 4` of each column, one dword each.
    unsafe fn quants(p: *const u8, j: usize) -> __m512i;
    /// Adds to `acc` a row's result for this super-block from its scaled integer sums `dots` and its
    /// activation super-block `ab` (scale and group sums).
    unsafe fn finish(terms: &Self::Terms, dots: __m512i, acts: &SuperRows, ab: usize, acc: __m512) -> __m512;
}

/// Q4_K tiles, or Q5_K with `FIVE`.
pub(crate) struct Q45Tiles<const FIVE: bool>;
/// Q6_K tiles.
pub(crate) struct Q6Tiles;

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
        let mut scale = [_mm512_setzero_si512(); 16];
        for b in 0..blocks {
            let p = tile.add(b * bytes);
            if R > 1 || matches!(F::ONE_ROW, Streaming::Prefetched) {
                prefetch::<_MM_HINT_T1>(p.wrapping_add(AHEAD * bytes), bytes);
            }
            let terms = F::scales(p, &mut scale);
            let a: [*const i8; R] = std::array::from_fn(|r| acts.qs.as_ptr().add(((first + r) * blocks + b) * SUPER));
            let dots = dot_groups::<F, R>(p, &scale, a);
            for (r, (acc, dots)) in acc.iter_mut().zip(dots).enumerate() {
                *acc = F::finish(&terms, dots, acts, (first + r) * blocks + b, *acc);
            }
        }
        acc
    }
}

/// Runs `body` once for each listed value of `index` that meets `condition`, written out in sequence.
macro_rules! unrolled {
    ($index:ident in [$($value:literal),*] if $condition:expr => $body:block) => {
        $({
            let $index: usize = $value;
            if $condition $body
        })*
    };
}

/// `R` activation rows (super-blocks at `a`) against the tile super-block at `p` with group scales
/// `scale`: per row, the sixteen columns' sums of scale × products.
#[inline(always)]
unsafe fn dot_groups<F: TileFormat, const R: usize>(
    p: *const u8,
    scale: &[__m512i; 16],
    a: [*const i8; R],
) -> [__m512i; R] {
    // SAFETY: `p` is a whole tile super-block and each `a` a whole activation super-block; AVX-512 VNNI is
    // enabled in every caller.
    unsafe {
        let mut dots = [_mm512_setzero_si512(); R];
        // Each scale group's code is written out with its index a constant, so the quants' shifts and
        // line offsets are immediates.
        unrolled!(g in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] if g < GROUPS / F::PER_SCALE => {
            if let Streaming::InOrder(run) = F::ONE_ROW {
                if R == 1 && (g * F::PER_SCALE).is_multiple_of(run) {
                    loads_stay_on_this_side();
                }
            }
            let mut sums = [_mm512_setzero_si512(); R];
            for j in g * F::PER_SCALE..(g + 1) * F::PER_SCALE {
                let q = F::quants(p, j);
                for (sum, a) in sums.iter_mut().zip(a) {
                    let word = a.add(4 * j).cast::<i32>().read_unaligned();
                    *sum = _mm512_dpbusd_epi32(*sum, q, _mm512_set1_epi32(word));
                }
            }
            for (dot, sum) in dots.iter_mut().zip(sums) {
                *dot = _mm512_add_epi32(*dot, _mm512_mullo_epi32(sum, scale[g]));
            }
        });
        dots
    }
}

/// How a one-row pass (decode) streams a format's tiles from memory, the rate that bounds it.
///
/// The hardware prefetcher follows a tile's lines only when they are read in address order; left free, the
/// compiler schedules a super-block's loads in scattered runs, and the prefetcher then fetched 8 GB/s per
/// Zen 4 core. Software prefetches of every line into L2 lift that to 14-17 GB/s, but they hold the core's
/// miss buffers: with the loads kept in order and no software prefetch, 1B Q4_K_M decode went from 39-40 to
/// 50-53 tok/s (llama.cpp 47-50 in the same minutes, three alternating rounds). Passes of more rows are
/// bound by their multiplies; they keep the prefetch and let the compiler schedule freely (a fence per run
/// slowed a Q4_K prefill matrix by up to half).
#[derive(Clone, Copy)]
pub(crate) enum Streaming {
    /// Reads the lines in address order, runs of this many value groups at a time (the lines a run reads
    /// again stay in L1), for the hardware prefetcher to follow.
    InOrder(usize),
    /// Prefetches every line [`AHEAD`] super-blocks ahead: Q5_K, whose fifth-bit lines every run reads
    /// again, streamed at 16 GB/s in order against 21-26 prefetched.
    Prefetched,
}

/// Keeps the compiler from moving memory accesses across this point.
#[inline(always)]
fn loads_stay_on_this_side() {
    // SAFETY: an empty instruction; without `nomem` the compiler must assume it touches memory.
    unsafe { std::arch::asm!("", options(nostack, preserves_flags)) };
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

/// Where a Q4_K or Q5_K tile super-block keeps its low four bits of quants; Q5_K's fifth bits come first.
const fn q45_quants_at(five: bool) -> usize {
    if five {
        768
    } else {
        256
    }
}

impl<const FIVE: bool> TileFormat for Q45Tiles<FIVE> {
    const BLOCK: usize = if FIVE { 176 } else { 144 };
    const PER_SCALE: usize = 8;
    /// Q4_K: a 64-value chunk's nibble lines at a time.
    const ONE_ROW: Streaming = if FIVE { Streaming::Prefetched } else { Streaming::InOrder(16) };
    type Terms = Q45Terms;

    #[inline(always)]
    unsafe fn scales(p: *const u8, scale: &mut [__m512i; 16]) -> Q45Terms {
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
            for (s, scale) in scale[..8].iter_mut().enumerate() {
                *scale = shuffle(scales[s / 4], &BYTE[s % 4]);
            }
            let mins = std::array::from_fn(|k| shuffle(mins[k / 2], &PAIR[k % 2]));
            Q45Terms { d, dmin, mins }
        }
    }

    #[inline(always)]
    unsafe fn quants(p: *const u8, j: usize) -> __m512i {
        // Line `8c + i` holds bytes `4i..4i + 4` of the nibbles' 32-byte chunk `c` of every column: values
        // `64c + 4i..` (group `16c + i`) low, `64c + 32 + 4i..` (group `16c + 8 + i`) high.
        let (chunk, half, i) = (j / 16, j % 16 / 8, j % 8);
        // SAFETY: the caller passes a whole tile super-block; AVX-512 F and BW are enabled in every caller.
        unsafe {
            let bytes = line(p, q45_quants_at(FIVE) + 64 * (8 * chunk + i));
            let nibbles = if half == 0 { bytes } else { _mm512_srli_epi16::<4>(bytes) };
            let q = _mm512_and_si512(nibbles, _mm512_set1_epi8(0x0F));
            if !FIVE {
                return q;
            }
            // Bit `s` of the fifth-bit bytes `4i..4i + 4` belongs to slice `s`.
            let fifth =
                _mm512_test_epi8_mask(line(p, 256 + 64 * i), _mm512_set1_epi8((1u8 << (2 * chunk + half)) as i8));
            _mm512_mask_add_epi8(q, fifth, q, _mm512_set1_epi8(0x10))
        }
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

/// The scales of a Q6_K tile super-block: where the columns' `d` lie (read when a row finishes, after the
/// quants), and each column's sixteen signed group scales as eight 16-bit pairs (groups `2k, 2k + 1`), for
/// the centre term.
#[derive(Clone, Copy)]
pub(crate) struct Q6Terms {
    d_at: *const u8,
    pairs: [__m512i; 8],
}

/// Where a Q6_K tile super-block keeps its group scales, each half's high bits (its low nibbles follow
/// them) and its `d`.
const Q6_SCALES_AT: usize = 0;
const Q6_HALF_AT: [usize; 2] = [256, 1792];
const Q6_NIBBLES_AFTER: usize = 512;
const Q6_D_AT: usize = 3328;

/// Q6_K: 6-bit quants stored as unsigned (`q + 32`), a signed 8-bit scale per group of 16, and the centre
/// taken off in integers through the row's group sums.
impl TileFormat for Q6Tiles {
    const BLOCK: usize = 210;
    const PER_SCALE: usize = 4;
    /// A 32-value slice's high-bit and nibble lines at a time; `d`, at the super-block's end, is read last.
    const ONE_ROW: Streaming = Streaming::InOrder(8);
    type Terms = Q6Terms;

    #[inline(always)]
    unsafe fn scales(p: *const u8, scale: &mut [__m512i; 16]) -> Q6Terms {
        // SAFETY: the caller passes a whole tile super-block; AVX-512 F and BW are enabled in every caller.
        unsafe {
            let d_at = p.add(Q6_D_AT);
            let scales: [__m512i; 4] = std::array::from_fn(|t| line(p, Q6_SCALES_AT + 64 * t));
            for (g, scale) in scale.iter_mut().enumerate() {
                *scale = _mm512_srai_epi32::<24>(shuffle(scales[g / 4], &TOP[g % 4]));
            }
            let pairs = std::array::from_fn(|k| _mm512_srai_epi16::<8>(shuffle(scales[k / 2], &HIGH_PAIR[k % 2])));
            Q6Terms { d_at, pairs }
        }
    }

    #[inline(always)]
    unsafe fn quants(p: *const u8, j: usize) -> __m512i {
        // Value `128n + 32k + 4i..` takes nibble `k / 2` of half `n`'s low-bit line `8(k % 2) + i` and bits
        // `2k..2k + 2` of its high-bit line `i`.
        let (n, k, i) = (j / 32, j % 32 / 8, j % 8);
        // SAFETY: the caller passes a whole tile super-block; AVX-512 F and BW are enabled in every caller.
        unsafe {
            let nibbles = line(p, Q6_HALF_AT[n] + Q6_NIBBLES_AFTER + 64 * (8 * (k % 2) + i));
            let high = line(p, Q6_HALF_AT[n] + 64 * i);
            let nibble = if k < 2 { nibbles } else { _mm512_srli_epi16::<4>(nibbles) };
            let pair = match k {
                0 => _mm512_slli_epi16::<4>(high),
                1 => _mm512_slli_epi16::<2>(high),
                2 => high,
                _ => _mm512_srli_epi16::<2>(high),
            };
            _mm512_or_si512(
                _mm512_and_si512(nibble, _mm512_set1_epi8(0x0F)),
                _mm512_and_si512(pair, _mm512_set1_epi8(0x30)),
            )
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
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(terms.d_at.cast()));
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(centred), _mm512_mul_ps(d, da), acc)
        }
    }
}
