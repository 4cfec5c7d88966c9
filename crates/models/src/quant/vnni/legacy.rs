//! The AVX-512 VNNI kernel for Q4_0, Q4_1 and Q8_0, over weights repacked at load into tiles of [`COLS`]
//! output columns.
//!
//! For each tile and each block of 32 values, the quants sit in 64-byte lines, one `vpdpbusd` operand
//! each: line `g` holds, for every column `c` of the tile, the four quants `4g..4g + 4` at bytes
//! `4c..4c + 4`. Q8_0 has 8 lines (quants offset by 128, so unsigned); Q4_0 and Q4_1 have 4, with quants
//! `16 + 4g..` in the high nibbles. The tile's 16 scales (and Q4_1 offsets) follow as f16. One block of
//! one activation row is then 8 `vpdpbusd`, each with a broadcast dword of the row, and yields the
//! integer dot products of all 16 columns at once; the block's weights are decoded once for up to
//! [`ROWS`] activation rows.
//!
//! **Batch invariance:** the integer sums are exact, and each row's float accumulator takes the same
//! multiply-adds in the same block order for every row-tile size.

use std::arch::x86_64::*;

use super::{COLS, ROWS};
use crate::parallel::{for_chunks, DisjointWrites};
use crate::quant::activations::QuantizedRows;
use crate::quant::legacy::{LegacyFormat, LegacyMatrix};
use crate::quant::BLOCK;

/// How many blocks ahead the kernel prefetches weights.
const AHEAD: usize = 6;

/// One `vpdpbusd` operand: 16 columns × 4 quants.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A weight matrix in the tile layout described above.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    format: LegacyFormat,
    blocks: usize,
    tiles: usize,
    /// `[tile][block][line]`.
    lines: Vec<Line>,
    /// f16 scale per column, `[tile][block][column]`.
    d: Vec<u16>,
    /// f16 offset per column (Q4_1), laid out as `d`.
    m: Vec<u16>,
}

impl Packed {
    /// Repacks `w`'s blocks; `None` for formats the kernel does not cover.
    pub(crate) fn new(w: &LegacyMatrix) -> Option<Self> {
        let per_block = lines_per_block(w.format)?;
        let blocks = w.cols / BLOCK;
        let tiles = w.rows.div_ceil(COLS);
        let mut packed = Self {
            format: w.format,
            blocks,
            tiles,
            lines: vec![Line([0; 64]); tiles * blocks * per_block],
            d: vec![0; tiles * blocks * COLS],
            m: if w.m.is_empty() { vec![] } else { vec![0; tiles * blocks * COLS] },
        };
        for n in 0..w.rows {
            let (t, c) = (n / COLS, n % COLS);
            for b in 0..blocks {
                let (src, dst) = (n * blocks + b, t * blocks + b);
                let quants: [u8; 32] = match w.format {
                    LegacyFormat::Q8_0 => std::array::from_fn(|k| w.qs[src * 32 + k] ^ 0x80),
                    _ => w.unsigned_quants(src),
                };
                let lines = &mut packed.lines[dst * per_block..][..per_block];
                for (k, &q) in quants.iter().enumerate() {
                    let (line, shift) = if per_block == 8 { (k / 4, 0) } else { ((k % 16) / 4, 4 * (k / 16)) };
                    lines[line].0[4 * c + k % 4] |= q << shift;
                }
                packed.d[dst * COLS + c] = half::f16::from_f32(w.d[src]).to_bits();
                if let Some(&m) = w.m.get(src) {
                    packed.m[dst * COLS + c] = half::f16::from_f32(m).to_bits();
                }
            }
        }
        Some(packed)
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.lines.len() * 64 + 2 * (self.d.len() + self.m.len())
    }

    /// Room for `rows` more rows, allocated now.
    pub(crate) fn reserve_rows(&mut self, rows: usize) {
        let slots = rows.div_ceil(COLS) * self.blocks;
        self.lines.reserve_exact(slots * lines_per_block(self.format).unwrap_or(0));
        self.d.reserve_exact(slots * COLS);
        self.m.reserve_exact(if self.m.is_empty() { 0 } else { slots * COLS });
    }

    /// Appends the tiles of `below`, of the same format and width.
    pub(crate) fn append(&mut self, below: &Packed) {
        assert!(self.format == below.format && self.blocks == below.blocks, "appending another format or width");
        self.lines.extend_from_slice(&below.lines);
        self.d.extend_from_slice(&below.d);
        self.m.extend_from_slice(&below.m);
        self.tiles += below.tiles;
    }

    /// Weight row `n` as `f32` values.
    pub(crate) fn dequantize_row(&self, n: usize) -> Vec<f32> {
        let per_block = lines_per_block(self.format).expect("only covered formats are packed");
        let (t, c) = (n / COLS, n % COLS);
        let center = f32::from(center(self.format) as u8);
        let mut out = Vec::with_capacity(self.blocks * BLOCK);
        for b in 0..self.blocks {
            let at = t * self.blocks + b;
            let lines = &self.lines[at * per_block..][..per_block];
            let d = half::f16::from_bits(self.d[at * COLS + c]).to_f32();
            let offset = self.m.get(at * COLS + c).map_or(-center * d, |&m| half::f16::from_bits(m).to_f32());
            out.extend((0..BLOCK).map(|k| {
                let q = if per_block == 8 {
                    lines[k / 4].0[4 * c + k % 4]
                } else {
                    (lines[(k % 16) / 4].0[4 * c + k % 4] >> (4 * (k / 16))) & 0x0F
                };
                d * f32::from(q) + offset
            }));
        }
        out
    }

    /// `acts` times this matrix transposed, into `out` (`acts.rows × width`, `width` the weight rows).
    pub(crate) fn matmul(&self, acts: &QuantizedRows, out: &mut [f32], width: usize) {
        let cells = DisjointWrites::new(out);
        let kernel = match self.format {
            LegacyFormat::Q4_1 => rows_dispatch::<true, true>,
            LegacyFormat::Q4_0 => rows_dispatch::<true, false>,
            LegacyFormat::Q8_0 => rows_dispatch::<false, false>,
            LegacyFormat::Q5_0 | LegacyFormat::Q5_1 => unreachable!("5-bit formats are never packed"),
        };
        for_chunks(self.tiles, |tiles| {
            for t in tiles {
                let columns = (width - t * COLS).min(COLS);
                let mut start = 0;
                while start < acts.rows {
                    let rows = (acts.rows - start).min(ROWS);
                    // SAFETY: tiles are split between threads, so only this one writes the tile's columns;
                    // `available` was checked when the matrix was packed.
                    unsafe { kernel(self, acts, t, start, rows, &cells, width, columns) };
                    start += rows;
                }
            }
        });
    }
}

/// 64-byte lines per block, for the formats the kernel covers.
fn lines_per_block(format: LegacyFormat) -> Option<usize> {
    match format {
        LegacyFormat::Q8_0 => Some(8),
        LegacyFormat::Q4_0 | LegacyFormat::Q4_1 => Some(4),
        LegacyFormat::Q5_0 | LegacyFormat::Q5_1 => None,
    }
}

/// What the stored unsigned quants are shifted by (`x = d * (q - center)`) in formats without an offset:
/// the format's own centre, or 128 for Q8_0, whose signed quants are stored offset by 128.
fn center(format: LegacyFormat) -> i32 {
    match format {
        LegacyFormat::Q8_0 => 128,
        other => other.center() as i32,
    }
}

/// Picks the kernel specialised for `rows` activation rows (1 to [`ROWS`]).
///
/// # Safety
/// The CPU has AVX-512 F/BW/VNNI, and no other thread writes tile `t`'s columns of `out`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn rows_dispatch<const NIBBLES: bool, const OFFSET: bool>(
    p: &Packed,
    acts: &QuantizedRows,
    t: usize,
    start: usize,
    rows: usize,
    out: &DisjointWrites,
    width: usize,
    columns: usize,
) {
    let stores = |sums: &[__m512]| {
        let mask: __mmask16 = if columns == COLS { !0 } else { (1u16 << columns) - 1 };
        for (r, &sum) in sums.iter().enumerate() {
            let at = (start + r) * width + t * COLS;
            // SAFETY: the caller owns these cells; the mask stores only the tile's real columns.
            unsafe { _mm512_mask_storeu_ps(out.slice(at..at + columns).as_mut_ptr(), mask, sum) };
        }
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        match rows {
            8 => stores(&tile::<8, NIBBLES, OFFSET>(p, acts, t, start)),
            7 => stores(&tile::<7, NIBBLES, OFFSET>(p, acts, t, start)),
            6 => stores(&tile::<6, NIBBLES, OFFSET>(p, acts, t, start)),
            5 => stores(&tile::<5, NIBBLES, OFFSET>(p, acts, t, start)),
            4 => stores(&tile::<4, NIBBLES, OFFSET>(p, acts, t, start)),
            3 => stores(&tile::<3, NIBBLES, OFFSET>(p, acts, t, start)),
            2 => stores(&tile::<2, NIBBLES, OFFSET>(p, acts, t, start)),
            _ => stores(&tile::<1, NIBBLES, OFFSET>(p, acts, t, start)),
        }
    }
}

/// The 16 column sums of tile `t` for `R` activation rows from `start`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile<const R: usize, const NIBBLES: bool, const OFFSET: bool>(
    p: &Packed,
    acts: &QuantizedRows,
    t: usize,
    start: usize,
) -> [__m512; R] {
    // SAFETY: `t < p.tiles` and rows `start..start + R` exist, so every block read below is in bounds.
    unsafe {
        let blocks = p.blocks;
        let per_block = if NIBBLES { 4 } else { 8 };
        let center = center(p.format);
        let low = _mm512_set1_epi8(0x0F);
        let lines = p.lines.as_ptr().add(t * blocks * per_block).cast::<__m512i>();
        let (scales, offsets) = (p.d.as_ptr().add(t * blocks * COLS), p.m.as_ptr());
        let (aq, ad, asum, ascaled) = (acts.qs.as_ptr(), acts.d.as_ptr(), acts.sums.as_ptr(), acts.s.as_ptr());
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..blocks {
            let line = lines.add(b * per_block);
            // The weights stream from memory, faster than the hardware prefetcher fetches them: ask for the
            // block [`AHEAD`] blocks on (past this tile's end, the next tile's, which follows in memory; a
            // prefetch never faults).
            for g in 0..per_block {
                _mm_prefetch::<_MM_HINT_T0>(line.wrapping_add(AHEAD * per_block + g).cast());
            }
            let w: [__m512i; 8] = if NIBBLES {
                let packed = [0, 1, 2, 3].map(|g| _mm512_load_si512(line.add(g)));
                std::array::from_fn(|g| {
                    let bytes = packed[g % 4];
                    _mm512_and_si512(if g < 4 { bytes } else { _mm512_srli_epi16(bytes, 4) }, low)
                })
            } else {
                std::array::from_fn(|g| _mm512_load_si512(line.add(g)))
            };
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(scales.add(b * COLS).cast()));
            let m = if OFFSET {
                _mm512_cvtph_ps(_mm256_loadu_si256(offsets.add((t * blocks + b) * COLS).cast()))
            } else {
                _mm512_setzero_ps()
            };
            for (r, sum) in acc.iter_mut().enumerate() {
                let ab = (start + r) * blocks + b;
                let a = aq.add(ab * BLOCK).cast::<i32>();
                let word = |g: usize| _mm512_set1_epi32(a.add(g).read_unaligned());
                let (mut even, mut odd) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                for g in (0..8).step_by(2) {
                    even = _mm512_dpbusd_epi32(even, w[g], word(g));
                    odd = _mm512_dpbusd_epi32(odd, w[g + 1], word(g + 1));
                }
                let mut dot = _mm512_add_epi32(even, odd);
                if !OFFSET {
                    dot = _mm512_sub_epi32(dot, _mm512_set1_epi32(center * *asum.add(ab)));
                }
                *sum = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, _mm512_set1_ps(*ad.add(ab))), *sum);
                if OFFSET {
                    *sum = _mm512_fmadd_ps(m, _mm512_set1_ps(*ascaled.add(ab)), *sum);
                }
            }
        }
        acc
    }
}
