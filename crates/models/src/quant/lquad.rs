//! Legacy blocks of four output columns ("quads") interleaved for the AVX2 kernel (`avx2::lquad`).
//!
//! For each block index, a quad holds the four columns' scales (f16, as in the file), their offsets (Q4_1,
//! Q5_1) and fifth bits (Q5_0, Q5_1), then their quants in 8-byte chunks placed side by side,
//! `[chunk][column][8 bytes]`: one 32-byte load gives 8 quants of each of the four columns, so one
//! `maddubs` against an activation row's 8 values broadcast four times serves all four columns. Q8_0 has
//! four chunks of 8 quants; the 4- and 5-bit formats two chunks of 8 packed bytes (bytes 0–7 and 8–15:
//! their low nibbles are values 0–15, their high nibbles values 16–31). A quad takes exactly the memory of
//! its four columns' blocks.

use super::activations::QuantizedRows;
use super::legacy::{unpack_unsigned, LegacyFormat, LegacyMatrix};
use super::{for_each_tile, BLOCK, QUAD, QUAD_TILE};

/// A legacy matrix in quads (rows a multiple of [`QUAD`]).
#[derive(Debug, Clone)]
pub struct Quads {
    format: LegacyFormat,
    cols: usize,
    bytes: Vec<u8>,
}

/// Where the parts of one quad block start, and its length.
#[derive(Debug, Clone, Copy)]
pub(super) struct QuadLayout {
    pub offsets: Option<usize>,
    pub high_bits: Option<usize>,
    pub quants: usize,
    pub bytes: usize,
}

/// The quad block layout of `format`.
pub(super) fn layout(format: LegacyFormat) -> QuadLayout {
    let offset = matches!(format, LegacyFormat::Q4_1 | LegacyFormat::Q5_1);
    let high = matches!(format, LegacyFormat::Q5_0 | LegacyFormat::Q5_1);
    let (halves, words) = (2 * QUAD, 4 * QUAD);
    let offsets = offset.then_some(halves);
    let high_bits = high.then_some(halves * (1 + usize::from(offset)));
    let quants = halves * (1 + usize::from(offset)) + words * usize::from(high);
    let quant_bytes = if format == LegacyFormat::Q8_0 { BLOCK } else { BLOCK / 2 };
    QuadLayout { offsets, high_bits, quants, bytes: quants + QUAD * quant_bytes }
}

impl Quads {
    /// Interleaves `w`'s blocks into quads; `None` when its rows do not come in fours.
    pub(super) fn new(w: &LegacyMatrix) -> Option<Self> {
        if !w.rows.is_multiple_of(QUAD) {
            return None;
        }
        let (blocks, layout) = (w.cols / BLOCK, layout(w.format));
        let quant_bytes = (layout.bytes - layout.quants) / QUAD;
        let mut bytes = Vec::with_capacity(w.rows / QUAD * blocks * layout.bytes);
        for quad in 0..w.rows / QUAD {
            for b in 0..blocks {
                let block = |g: usize| (QUAD * quad + g) * blocks + b;
                // The scales came from f16, so they narrow back exactly.
                let half = |v: f32| half::f16::from_f32(v).to_le_bytes();
                (0..QUAD).for_each(|g| bytes.extend_from_slice(&half(w.d[block(g)])));
                if layout.offsets.is_some() {
                    (0..QUAD).for_each(|g| bytes.extend_from_slice(&half(w.m[block(g)])));
                }
                if layout.high_bits.is_some() {
                    (0..QUAD).for_each(|g| bytes.extend_from_slice(&w.qh[block(g)].to_le_bytes()));
                }
                for chunk in 0..quant_bytes / 8 {
                    for g in 0..QUAD {
                        bytes.extend_from_slice(&w.qs[block(g) * quant_bytes + 8 * chunk..][..8]);
                    }
                }
            }
        }
        Some(Self { format: w.format, cols: w.cols, bytes })
    }

    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Room for `rows` more rows (whole quads), allocated now.
    pub(super) fn reserve_rows(&mut self, rows: usize) {
        self.bytes.reserve_exact(rows / QUAD * (self.cols / BLOCK) * layout(self.format).bytes);
    }

    /// Appends the quads of `below`, of the same format and width.
    pub(super) fn append(&mut self, below: &Quads) {
        assert!(self.format == below.format && self.cols == below.cols, "appending another format or width");
        self.bytes.extend_from_slice(&below.bytes);
    }

    /// Row `row` as `f32` values, as [`LegacyMatrix::dequantize_row`] computes them.
    pub(super) fn dequantize_row(&self, row: usize) -> Vec<f32> {
        let (blocks, layout) = (self.cols / BLOCK, layout(self.format));
        let g = row % QUAD;
        let half = |block: &[u8], at: usize| {
            crate::cpu::f16_to_f32(u16::from_le_bytes([block[at + 2 * g], block[at + 2 * g + 1]]))
        };
        let word = |block: &[u8], at: usize| {
            let at = at + 4 * g;
            [block[at], block[at + 1], block[at + 2], block[at + 3]]
        };
        let mut out = Vec::with_capacity(self.cols);
        for b in 0..blocks {
            let block = &self.bytes[((row / QUAD) * blocks + b) * layout.bytes..][..layout.bytes];
            let d = half(block, 0);
            let quants = &block[layout.quants..];
            if self.format == LegacyFormat::Q8_0 {
                out.extend((0..BLOCK).map(|i| d * f32::from(quants[(i / 8 * QUAD + g) * 8 + i % 8] as i8)));
                continue;
            }
            let offset = match layout.offsets {
                Some(at) => half(block, at),
                None => -self.format.center() * d,
            };
            let high = layout.high_bits.map_or(0, |at| u32::from_le_bytes(word(block, at)));
            let packed = std::array::from_fn(|i| quants[(i / 8 * QUAD + g) * 8 + i % 8]);
            out.extend(unpack_unsigned(packed, high).iter().map(|&q| d * f32::from(q) + offset));
        }
        out
    }

    /// `acts` times this matrix transposed into `out` (`acts.rows × rows`).
    pub(super) fn matmul(&self, acts: &QuantizedRows, out: &mut [f32], rows: usize) {
        let quad_bytes = self.cols / BLOCK * layout(self.format).bytes;
        let quad = |n: usize| self.bytes[n / QUAD * quad_bytes..].as_ptr();
        // SAFETY: quads exist only where `Isa::detect` found AVX2, FMA and F16C, and each quad spans
        // `quad_bytes` for the activations' width.
        let run = |n: usize, tile| unsafe {
            use super::avx2::{legacy_quad_tile as tile_of, Signed, Unsigned};
            match self.format {
                LegacyFormat::Q8_0 => tile_of::<Signed, QUAD_TILE>(quad(n), acts, tile),
                LegacyFormat::Q4_0 => tile_of::<Unsigned<false, false>, QUAD_TILE>(quad(n), acts, tile),
                LegacyFormat::Q5_0 => tile_of::<Unsigned<true, false>, QUAD_TILE>(quad(n), acts, tile),
                LegacyFormat::Q4_1 => tile_of::<Unsigned<false, true>, QUAD_TILE>(quad(n), acts, tile),
                LegacyFormat::Q5_1 => tile_of::<Unsigned<true, true>, QUAD_TILE>(quad(n), acts, tile),
            }
        };
        for_each_tile(out, rows, quad_bytes / QUAD, run);
    }
}
