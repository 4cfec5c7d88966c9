//! GGML's legacy formats: blocks of 32 values with one f16 scale (Q8_0, Q4_0, Q5_0) and an offset (Q4_1,
//! Q5_1), times activations quantized per 32 values ([`QuantizedRows`]).
//!
//! The kernel walks weight rows (output columns) in parallel chunks and, for each weight block it decodes,
//! applies it to a tile of up to [`TILE`] activation rows, so a batch reads every weight once. On CPUs with
//! AVX-512 VNNI, [`LegacyMatrix::repack`] moves Q8_0, Q4_0 and Q4_1 weights into tiles of 16 output columns
//! (`vnni`); with AVX2, every format moves into quads of four columns (`lquad`).

use super::activations::QuantizedRows;
use super::{for_each_tile, scalar, Isa, BLOCK};
use crate::gguf::TensorType;

#[cfg(target_arch = "x86_64")]
use super::{avx2, lquad, vnni};

/// Activation rows that share one decoded weight block.
pub const TILE: usize = 4;

/// The weight formats with a native kernel (GGML's legacy 32-value blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyFormat {
    /// `x = d * q`, `q` an i8.
    Q8_0,
    /// `x = d * (q - 8)`, `q` a 4-bit nibble.
    Q4_0,
    /// `x = d * q + m`, `q` a 4-bit nibble.
    Q4_1,
    /// `x = d * (q - 16)`, `q` 5 bits: a nibble plus one bit of `qh`.
    Q5_0,
    /// `x = d * q + m`, `q` 5 bits.
    Q5_1,
}

impl LegacyFormat {
    /// The legacy format of a GGUF tensor type, if it is one.
    pub fn of(dtype: TensorType) -> Option<Self> {
        Some(match dtype {
            TensorType::Q8_0 => Self::Q8_0,
            TensorType::Q4_0 => Self::Q4_0,
            TensorType::Q4_1 => Self::Q4_1,
            TensorType::Q5_0 => Self::Q5_0,
            TensorType::Q5_1 => Self::Q5_1,
            _ => return None,
        })
    }

    /// Bytes of one GGUF block, and where its scale, offset, high bits and quants start.
    fn layout(self) -> BlockLayout {
        let (size, m, qh, qs) = match self {
            Self::Q8_0 => (34, None, None, 2),
            Self::Q4_0 => (18, None, None, 2),
            Self::Q4_1 => (20, Some(2), None, 4),
            Self::Q5_0 => (22, None, Some(2), 6),
            Self::Q5_1 => (24, Some(2), Some(4), 8),
        };
        BlockLayout { size, m, qh, qs }
    }

    /// What an unsigned quant is shifted by in formats without an offset (`x = d * (q - c)`).
    pub(super) fn center(self) -> f32 {
        match self {
            Self::Q4_0 => 8.0,
            Self::Q5_0 => 16.0,
            _ => 0.0,
        }
    }
}

/// Byte offsets inside one GGUF block (the f16 scale is always first).
struct BlockLayout {
    size: usize,
    m: Option<usize>,
    qh: Option<usize>,
    qs: usize,
}

/// A `rows × cols` weight matrix in GGUF blocks, split into quants and scales.
#[derive(Debug, Clone)]
pub struct LegacyMatrix {
    pub(super) format: LegacyFormat,
    pub(super) rows: usize,
    pub(super) cols: usize,
    /// Q8_0: 32 i8 per block. Others: 16 bytes per block, element `i` in the low nibble of byte `i` and
    /// element `16 + i` in its high nibble (GGML's layout).
    pub(super) qs: Vec<u8>,
    /// Q5 formats: the fifth bit of element `i` is bit `i` of the block's word.
    pub(super) qh: Vec<u32>,
    /// Scale per block, widened from the file's f16 once at load (saves a conversion per block and row tile).
    pub(super) d: Vec<f32>,
    /// Offset per block (Q4_1 and Q5_1), widened likewise.
    pub(super) m: Vec<f32>,
    /// The weights in the AVX-512 VNNI kernel's layout, once [`LegacyMatrix::repack`] moved them there
    /// (the block vectors above are then empty).
    #[cfg(target_arch = "x86_64")]
    packed: Option<Box<vnni::Packed>>,
    /// The weights in quads for the AVX2 kernel, likewise.
    #[cfg(target_arch = "x86_64")]
    quads: Option<Box<lquad::Quads>>,
}

impl LegacyMatrix {
    /// Splits raw GGUF blocks (`rows * cols / 32` of them, row-major) into quants and scales.
    pub fn from_blocks(format: LegacyFormat, rows: usize, cols: usize, raw: &[u8]) -> Self {
        let layout = format.layout();
        assert!(
            cols.is_multiple_of(BLOCK) && raw.len() == rows * cols / BLOCK * layout.size,
            "{format:?} blocks do not match the shape {rows}x{cols}"
        );
        let half = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let mut matrix = Self { qs: Vec::with_capacity(raw.len()), ..Self::empty(format, rows, cols) };
        for block in raw.chunks_exact(layout.size) {
            matrix.d.push(f16(half(block, 0)));
            if let Some(at) = layout.m {
                matrix.m.push(f16(half(block, at)));
            }
            if let Some(at) = layout.qh {
                matrix.qh.push(u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]));
            }
            matrix.qs.extend_from_slice(&block[layout.qs..]);
        }
        matrix
    }

    fn empty(format: LegacyFormat, rows: usize, cols: usize) -> Self {
        Self {
            format,
            rows,
            cols,
            qs: vec![],
            qh: vec![],
            d: vec![],
            m: vec![],
            #[cfg(target_arch = "x86_64")]
            packed: None,
            #[cfg(target_arch = "x86_64")]
            quads: None,
        }
    }

    /// Moves the weights into the layout of the fastest kernel this CPU runs for their format (the AVX-512
    /// VNNI tiles, else the AVX2 quads, where the rows allow); otherwise returns them as they are.
    pub fn repack(self) -> Self {
        #[cfg(target_arch = "x86_64")]
        if self.in_blocks() {
            let empty = || Self::empty(self.format, self.rows, self.cols);
            if vnni::available() {
                if let Some(packed) = vnni::Packed::new(&self) {
                    return Self { packed: Some(Box::new(packed)), ..empty() };
                }
            }
            if Isa::detect().avx2() {
                if let Some(quads) = lquad::Quads::new(&self) {
                    return Self { quads: Some(Box::new(quads)), ..empty() };
                }
            }
        }
        self
    }

    /// Whether the weights are in their GGUF blocks (not repacked).
    pub(super) fn in_blocks(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self.packed.is_some() || self.quads.is_some() {
            return false;
        }
        true
    }

    /// Stacks matrices of the same format and width into one (e.g. Q, K and V), so one call computes
    /// all of them; `None` when formats or widths differ, or a part is already repacked.
    pub fn stack(parts: &[&LegacyMatrix]) -> Option<Self> {
        let first = parts.first()?;
        if parts.iter().any(|p| p.format != first.format || p.cols != first.cols || !p.in_blocks()) {
            return None;
        }
        let mut stacked = Self::empty(first.format, 0, first.cols);
        for part in parts {
            stacked.rows += part.rows;
            stacked.qs.extend_from_slice(&part.qs);
            stacked.qh.extend_from_slice(&part.qh);
            stacked.d.extend_from_slice(&part.d);
            stacked.m.extend_from_slice(&part.m);
        }
        Some(stacked)
    }

    /// Room for `rows` more rows in this matrix's layout, allocated now.
    pub(super) fn reserve_rows(&mut self, rows: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = &mut self.packed {
            return packed.reserve_rows(rows);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(quads) = &mut self.quads {
            return quads.reserve_rows(rows);
        }
        let blocks = rows * self.cols / BLOCK;
        let quant_bytes = self.qs.len() / self.d.len().max(1);
        self.qs.reserve_exact(blocks * quant_bytes);
        self.d.reserve_exact(blocks);
        self.qh.reserve_exact(if self.qh.is_empty() { 0 } else { blocks });
        self.m.reserve_exact(if self.m.is_empty() { 0 } else { blocks });
    }

    /// Appends `below`'s rows: the same format and width, in the same layout, with this matrix's rows
    /// filling whole tiles or quads.
    pub(super) fn append_rows(&mut self, below: LegacyMatrix) {
        assert!(self.format == below.format && self.cols == below.cols, "appending another format or width");
        #[cfg(target_arch = "x86_64")]
        {
            match (&mut self.packed, &below.packed) {
                (Some(packed), Some(more)) => {
                    assert!(self.rows.is_multiple_of(super::TILE), "appending after a partial tile");
                    packed.append(more);
                }
                (None, None) => {}
                _ => panic!("appending rows packed differently"),
            }
            match (&mut self.quads, &below.quads) {
                (Some(quads), Some(more)) => {
                    assert!(self.rows.is_multiple_of(super::QUAD), "appending after a partial quad");
                    quads.append(more);
                }
                (None, None) => {}
                _ => panic!("appending rows packed differently"),
            }
        }
        self.qs.extend_from_slice(&below.qs);
        self.qh.extend_from_slice(&below.qh);
        self.d.extend_from_slice(&below.d);
        self.m.extend_from_slice(&below.m);
        self.rows += below.rows;
    }

    /// Output width (weight rows).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = &self.packed {
            return packed.bytes();
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(quads) = &self.quads {
            return quads.bytes();
        }
        self.qs.len() + 4 * (self.qh.len() + self.d.len() + self.m.len())
    }

    /// Row `row` as `f32` values (an embedding lookup).
    pub fn dequantize_row(&self, row: usize) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = &self.packed {
            return packed.dequantize_row(row);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(quads) = &self.quads {
            return quads.dequantize_row(row);
        }
        let blocks = self.cols / BLOCK;
        let mut out = Vec::with_capacity(self.cols);
        for b in row * blocks..(row + 1) * blocks {
            let d = self.d[b];
            match self.format {
                LegacyFormat::Q8_0 => out.extend(self.qs[b * 32..][..32].iter().map(|&q| d * f32::from(q as i8))),
                _ => {
                    let offset = self.offset(b, d);
                    out.extend(self.unsigned_quants(b).iter().map(|&q| d * f32::from(q) + offset));
                }
            }
        }
        out
    }

    /// The 32 unsigned quants of block `b` of a 4- or 5-bit format.
    pub(super) fn unsigned_quants(&self, b: usize) -> [u8; 32] {
        let packed = self.qs[b * 16..][..16].try_into().expect("16 packed bytes");
        unpack_unsigned(packed, self.qh.get(b).copied().unwrap_or(0))
    }

    /// The additive term of block `b` with scale `d`: `x = d * q + offset`.
    pub(super) fn offset(&self, b: usize, d: f32) -> f32 {
        match self.m.get(b) {
            Some(&m) => m,
            None => -self.format.center() * d,
        }
    }

    /// `x` (`m × cols`, row-major) times this matrix transposed: `m × rows`.
    pub fn matmul(&self, x: &[f32]) -> Vec<f32> {
        let acts = QuantizedRows::new(x, self.cols);
        let mut out = vec![0.0f32; acts.rows * self.rows];
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = &self.packed {
            packed.matmul(&acts, &mut out, self.rows);
            return out;
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(quads) = &self.quads {
            quads.matmul(&acts, &mut out, self.rows);
            return out;
        }
        let isa = Isa::detect();
        let column_bytes =
            self.qs.len() / self.rows.max(1) + 4 * (self.d.len() + self.m.len() + self.qh.len()) / self.rows.max(1);
        for_each_tile(&mut out, self.rows, column_bytes, |n, rows| tile_of(isa, self, &acts, n, rows).map(|s| [s]));
        out
    }
}

/// Q8_0 blocks of `values` (rows of `cols`, a multiple of 32): the format Hearth requantizes to when asked
/// to, and converts lossless 8-bit formats into. Each block's scale is `amax / 127`, kept as `f32`.
pub(super) fn q8_0(values: &[f32], rows: usize, cols: usize) -> LegacyMatrix {
    let mut matrix =
        LegacyMatrix { qs: Vec::with_capacity(values.len()), ..LegacyMatrix::empty(LegacyFormat::Q8_0, rows, cols) };
    for block in values.chunks_exact(BLOCK) {
        let amax = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        matrix.qs.extend(block.iter().map(|v| (v * inv).round() as i8 as u8));
        matrix.d.push(d);
    }
    matrix
}

/// Q8_0 blocks with the given quants and exact `f32` scales, one scale per 32 quants.
pub(super) fn q8_0_exact(quants: Vec<i8>, scales: Vec<f32>, rows: usize, cols: usize) -> LegacyMatrix {
    assert!(quants.len() == rows * cols && scales.len() * BLOCK == quants.len(), "Q8_0 parts do not match the shape");
    let qs = quants.into_iter().map(|q| q as u8).collect();
    LegacyMatrix { qs, d: scales, ..LegacyMatrix::empty(LegacyFormat::Q8_0, rows, cols) }
}

/// A 4- or 5-bit block's 32 quants from its 16 packed bytes (value `i` in the low nibble of byte `i`, value
/// `16 + i` in the high one) and its fifth bits (bit `i` for value `i`; zero for 4-bit formats).
pub(super) fn unpack_unsigned(packed: [u8; 16], high: u32) -> [u8; 32] {
    std::array::from_fn(|i| {
        let nibble = if i < 16 { packed[i] & 0x0F } else { packed[i - 16] >> 4 };
        nibble | ((((high >> i) & 1) as u8) << 4)
    })
}

fn f16(bits: u16) -> f32 {
    crate::cpu::f16_to_f32(bits)
}

/// Dot products of weight row `n` with activation `rows` (at most [`TILE`]), in the first cells.
fn tile_of(isa: Isa, w: &LegacyMatrix, acts: &QuantizedRows, n: usize, rows: std::ops::Range<usize>) -> [f32; TILE] {
    match isa {
        Isa::Portable => scalar::legacy_tile(w, acts, n, rows),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` checked AVX2, FMA and F16C.
        Isa::Avx2 => unsafe {
            match rows.len() {
                4 => avx2::legacy_tile::<4>(w, acts, n, rows.start),
                3 => avx2::legacy_tile::<3>(w, acts, n, rows.start),
                2 => avx2::legacy_tile::<2>(w, acts, n, rows.start),
                _ => avx2::legacy_tile::<1>(w, acts, n, rows.start),
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0) * if rng.random_bool(0.05) { 8.0 } else { 1.0 }).collect()
    }

    const FORMATS: [LegacyFormat; 5] =
        [LegacyFormat::Q8_0, LegacyFormat::Q4_0, LegacyFormat::Q4_1, LegacyFormat::Q5_0, LegacyFormat::Q5_1];

    fn dtype_of(format: LegacyFormat) -> GgmlDType {
        match format {
            LegacyFormat::Q8_0 => GgmlDType::Q8_0,
            LegacyFormat::Q4_0 => GgmlDType::Q4_0,
            LegacyFormat::Q4_1 => GgmlDType::Q4_1,
            LegacyFormat::Q5_0 => GgmlDType::Q5_0,
            LegacyFormat::Q5_1 => GgmlDType::Q5_1,
        }
    }

    fn quantized(format: LegacyFormat, rows: usize, cols: usize, seed: u64) -> LegacyMatrix {
        let mut rng = StdRng::seed_from_u64(seed);
        let dense =
            candle_core::Tensor::from_vec(random(&mut rng, rows * cols), (rows, cols), &candle_core::Device::Cpu)
                .unwrap();
        let tensor = QTensor::quantize(&dense, dtype_of(format)).unwrap();
        LegacyMatrix::from_blocks(format, rows, cols, &tensor.data().unwrap())
    }

    /// The matrix in its GGUF blocks and, where this CPU has a repacked kernel for it, repacked.
    fn layouts(format: LegacyFormat, rows: usize, cols: usize, seed: u64) -> Vec<LegacyMatrix> {
        let blocks = quantized(format, rows, cols, seed);
        let repacked = blocks.clone().repack();
        if repacked.in_blocks() {
            vec![blocks]
        } else {
            vec![blocks, repacked]
        }
    }

    /// Checks `matmul` against dequantized weights times exact activations. The only approximation is
    /// rounding each activation to its block's 8-bit grid, at most `amax / 254` per value, so the error
    /// of one output is bounded by `Σ_i |w_i| * amax(block of i) / 254` (plus f32 rounding).
    fn check(w: &LegacyMatrix, m: usize) {
        let (format, rows, cols) = (w.format, w.rows, w.cols);
        let x = random(&mut StdRng::seed_from_u64(99), m * cols);
        let got = w.matmul(&x);
        let dense: Vec<Vec<f32>> = (0..rows).map(|n| w.dequantize_row(n)).collect();
        for r in 0..m {
            let xr = &x[r * cols..(r + 1) * cols];
            for (n, wn) in dense.iter().enumerate() {
                let exact: f32 = wn.iter().zip(xr).map(|(a, b)| a * b).sum();
                let bound: f32 = wn
                    .chunks(BLOCK)
                    .zip(xr.chunks(BLOCK))
                    .map(|(wb, xb)| {
                        let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                        wb.iter().map(|v| v.abs()).sum::<f32>() * amax / 254.0
                    })
                    .sum::<f32>()
                    * 1.01
                    + 1e-4;
                let err = (got[r * rows + n] - exact).abs();
                let layout = if w.in_blocks() { "blocks" } else { "repacked" };
                assert!(err <= bound, "{format:?} {layout} m={m} {rows}x{cols} [{r},{n}]: error {err} > bound {bound}");
            }
        }
    }

    #[test]
    fn kernels_match_the_dequantized_reference_for_odd_shapes() {
        for format in FORMATS {
            let shapes = [(1, 1, 32), (1, 37, 64), (3, 5, 96), (4, 8, 576), (5, 33, 160), (17, 19, 384), (9, 12, 96)];
            for (m, rows, cols) in shapes {
                for w in layouts(format, rows, cols, (m * 1000 + rows * 10 + cols) as u64) {
                    check(&w, m);
                }
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_or_in_a_batch() {
        for format in FORMATS {
            let (rows, cols) = (40, 192);
            for w in layouts(format, rows, cols, 3) {
                let x = random(&mut StdRng::seed_from_u64(4), 21 * cols);
                let batch = w.matmul(&x);
                for r in [0, 5, 15, 20] {
                    let alone = w.matmul(&x[r * cols..(r + 1) * cols]);
                    assert_eq!(alone, batch[r * rows..(r + 1) * rows], "{format:?} row {r}");
                }
            }
        }
    }

    #[test]
    fn repacked_weights_hold_the_blocks_values_and_agree_with_them() {
        for format in FORMATS {
            let blocks = quantized(format, 12, 256, 9);
            let repacked = blocks.clone().repack();
            for n in 0..12 {
                assert_eq!(repacked.dequantize_row(n), blocks.dequantize_row(n), "{format:?} row {n}");
            }
            #[cfg(target_arch = "x86_64")]
            if repacked.quads.is_some() {
                let file_bytes = 12 * 256 / BLOCK * format.layout().size;
                assert_eq!(repacked.bytes(), file_bytes, "{format:?} quads hold exactly the file's bytes");
            }
            // 13 rows: a full pass of eight and a pass of five in the quad kernel.
            let x = random(&mut StdRng::seed_from_u64(10), 13 * 256);
            for (a, b) in blocks.matmul(&x).iter().zip(&repacked.matmul(&x)) {
                assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{format:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn scalar_and_simd_kernels_agree() {
        for format in FORMATS {
            let w = quantized(format, 9, 128, 5);
            let acts = QuantizedRows::new(&random(&mut StdRng::seed_from_u64(6), 4 * 128), 128);
            for n in 0..9 {
                let a = tile_of(Isa::Portable, &w, &acts, n, 0..4);
                let b = tile_of(Isa::detect(), &w, &acts, n, 0..4);
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "{format:?} column {n}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn a_stacked_matrix_computes_its_parts() {
        let (a, b) = (quantized(LegacyFormat::Q4_1, 7, 64, 1), quantized(LegacyFormat::Q4_1, 5, 64, 2));
        let stacked = LegacyMatrix::stack(&[&a, &b]).unwrap();
        let x = random(&mut StdRng::seed_from_u64(3), 2 * 64);
        let (whole, top, bottom) = (stacked.matmul(&x), a.matmul(&x), b.matmul(&x));
        for r in 0..2 {
            assert_eq!(whole[r * 12..r * 12 + 7], top[r * 7..(r + 1) * 7]);
            assert_eq!(whole[r * 12 + 7..(r + 1) * 12], bottom[r * 5..(r + 1) * 5]);
        }
        assert!(LegacyMatrix::stack(&[&a, &quantized(LegacyFormat::Q8_0, 5, 64, 2)]).is_none());
    }

    #[test]
    fn dequantized_rows_match_candle() {
        for (format, dtype) in FORMATS.map(|f| (f, dtype_of(f))) {
            let x = random(&mut StdRng::seed_from_u64(8), 3 * 64);
            let dense = candle_core::Tensor::from_vec(x, (3, 64), &candle_core::Device::Cpu).unwrap();
            let tensor = QTensor::quantize(&dense, dtype).unwrap();
            let candle = tensor.dequantize(&candle_core::Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let ours = LegacyMatrix::from_blocks(format, 3, 64, &tensor.data().unwrap());
            for ours in [ours.clone(), ours.repack()] {
                for (n, row) in candle.iter().enumerate() {
                    assert_eq!(&ours.dequantize_row(n), row, "{format:?} row {n}");
                }
            }
        }
    }
}
