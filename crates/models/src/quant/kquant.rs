//! K-quant weight matrices (Q2_K to Q6_K, super-blocks in `kblock`) times activations quantized per 256
//! values ([`SuperRows`]).
//!
//! A super-block's contribution to one activation row is
//! `d·da · Σ_g scales[g] · (q·a)_g − dmin·da · Σ_g mins[g] · Σa_g`, all sums in integers. The blocks stay as
//! stored for the one-column kernels, or move at load into the packing of a multi-column kernel (`kpack`).

use super::activations::SuperRows;
use super::kblock::{with_block, KBlock, KFormat, Unpacked, Q2K, Q3K, Q4K, Q5K, Q6K};
use super::kpack::{self, Layout, LineAligned};
use super::{for_each_tile, scalar, Isa, SUPER};

#[cfg(target_arch = "x86_64")]
use super::{avx2, vnni, QUAD_TILE};

/// Activation rows that share one unpacked super-block in the one-column kernels.
pub const KTILE: usize = 8;

/// A `rows × cols` weight matrix in K-quant super-blocks, as stored in the file or packed.
#[derive(Debug, Clone)]
pub struct KQuantMatrix {
    pub(super) format: KFormat,
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) blocks: Blocks,
}

/// A K-quant matrix's super-blocks: row-major as stored, or (once [`KQuantMatrix::repack`] moved them)
/// the same bytes packed for a multi-column kernel (`kpack`).
#[derive(Debug, Clone)]
pub(super) enum Blocks {
    Stored(Vec<u8>),
    Packed(Layout, LineAligned),
}

impl std::ops::Deref for Blocks {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Stored(bytes) => bytes,
            Self::Packed(_, bytes) => bytes,
        }
    }
}

impl KQuantMatrix {
    /// Takes `rows * cols / 256` super-blocks, row-major.
    pub fn from_blocks(format: KFormat, rows: usize, cols: usize, blocks: Vec<u8>) -> Self {
        assert!(
            cols.is_multiple_of(SUPER) && blocks.len() == rows * cols / SUPER * format.block_bytes(),
            "{format:?} blocks do not match the shape {rows}x{cols}"
        );
        Self { format, rows, cols, blocks: Blocks::Stored(blocks) }
    }

    /// Moves the blocks into the layout of the fastest multi-column kernel this CPU has for the format
    /// (`kpack`: tiles of sixteen rows for AVX-512 VNNI, else quads of four for AVX2) where the rows fill
    /// its groups; otherwise returns the matrix as it is.
    pub fn repack(self) -> Self {
        if self.packing().is_some() {
            return self;
        }
        #[cfg(target_arch = "x86_64")]
        let tiles = kpack::tiles(self.format).filter(|_| vnni::available());
        #[cfg(not(target_arch = "x86_64"))]
        let tiles = None;
        let quads = kpack::quads(self.format).filter(|_| Isa::detect().avx2());
        match [tiles, quads].into_iter().flatten().find(|layout| self.rows.is_multiple_of(layout.columns)) {
            Some(layout) => self.packed(layout),
            None => self,
        }
    }

    /// The blocks moved into `layout` (rows a multiple of its columns).
    fn packed(self, layout: Layout) -> Self {
        let packed = layout.interleave(self.cols / SUPER, &self.blocks);
        Self { blocks: Blocks::Packed(layout, packed), ..self }
    }

    /// How the blocks are packed, if they are.
    pub(super) fn packing(&self) -> Option<&Layout> {
        match &self.blocks {
            Blocks::Stored(_) => None,
            Blocks::Packed(layout, _) => Some(layout),
        }
    }

    /// Room for `rows` more rows of this matrix's format and packing, allocated now.
    pub(super) fn reserve_rows(&mut self, rows: usize) {
        let bytes = rows * self.cols / SUPER * self.format.block_bytes();
        match &mut self.blocks {
            Blocks::Stored(blocks) => blocks.reserve_exact(bytes),
            Blocks::Packed(_, packed) => packed.reserve(bytes),
        }
    }

    /// Appends `below`'s rows: the same format and width, packed alike, with this matrix's rows filling whole
    /// packed groups.
    pub(super) fn append_rows(&mut self, below: KQuantMatrix) {
        assert!(self.format == below.format && self.cols == below.cols, "appending another format or width");
        match (&mut self.blocks, &below.blocks) {
            (Blocks::Stored(blocks), Blocks::Stored(more)) => blocks.extend_from_slice(more),
            (Blocks::Packed(layout, packed), Blocks::Packed(theirs, more)) if layout == theirs => {
                assert!(self.rows.is_multiple_of(layout.columns), "appending after a partial group");
                packed.extend_from_slice(more);
            }
            _ => panic!("appending rows packed differently"),
        }
        self.rows += below.rows;
    }

    /// Stacks matrices of the same format and width into one; `None` otherwise.
    pub fn stack(parts: &[&KQuantMatrix]) -> Option<Self> {
        let first = parts.first()?;
        if parts.iter().any(|p| p.format != first.format || p.cols != first.cols || p.packing().is_some()) {
            return None;
        }
        let blocks = parts.iter().map(|p| &*p.blocks).collect::<Vec<_>>().concat();
        let rows = parts.iter().map(|p| p.rows).sum();
        Some(Self { format: first.format, rows, cols: first.cols, blocks: Blocks::Stored(blocks) })
    }

    /// Output width (weight rows).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.blocks.len()
    }

    /// Super-block `b` of weight row `n`.
    #[inline(always)]
    pub(super) fn block(&self, n: usize, b: usize) -> &[u8] {
        let size = self.format.block_bytes();
        &self.blocks[(n * self.cols / SUPER + b) * size..][..size]
    }

    /// Row `row` as `f32` values, computed as GGML computes them.
    pub fn dequantize_row(&self, row: usize) -> Vec<f32> {
        with_block!(self.format, F => self.dequantize_row_of::<F>(row))
    }

    fn dequantize_row_of<F: KBlock>(&self, row: usize) -> Vec<f32> {
        let mut u = Unpacked::default();
        let mut out = Vec::with_capacity(self.cols);
        let mut block = vec![0; self.format.block_bytes()];
        for b in 0..self.cols / SUPER {
            if let Some(layout) = self.packing() {
                layout.block_of(self.cols / SUPER, &self.blocks, (row, b), &mut block);
                F::unpack(&block, &mut u);
            } else {
                F::unpack(self.block(row, b), &mut u);
            }
            for (g, q) in u.q.chunks_exact(16).enumerate() {
                let scale = u.d * f32::from(u.scales[g]);
                if F::FORMAT.signed() {
                    out.extend(q.iter().map(|&q| scale * f32::from(q as i8)));
                } else {
                    let min = u.dmin * f32::from(u.mins[g]);
                    out.extend(q.iter().map(|&q| scale * f32::from(q) - min));
                }
            }
        }
        out
    }

    /// `x` (`m × cols`, row-major) times this matrix transposed: `m × rows`.
    pub fn matmul(&self, x: &[f32]) -> Vec<f32> {
        let acts = SuperRows::new(x, self.cols);
        let mut out = vec![0.0f32; acts.rows * self.rows];
        let column_bytes = self.blocks.len() / self.rows.max(1);
        #[cfg(target_arch = "x86_64")]
        if let Some(layout) = self.packing() {
            let group_bytes = layout.columns * column_bytes;
            let group = |n: usize| self.blocks[n / layout.columns * group_bytes..].as_ptr();
            if layout.columns == super::TILE {
                // SAFETY: tiles exist only where `vnni::available` found AVX-512 F, BW and VNNI, and each
                // tile spans `group_bytes` for the activations' width.
                let run = |n: usize, rows| unsafe {
                    match self.format {
                        KFormat::Q4K => vnni::k_tile::<vnni::Q45Tiles<false>, QUAD_TILE>(group(n), &acts, rows),
                        KFormat::Q5K => vnni::k_tile::<vnni::Q45Tiles<true>, QUAD_TILE>(group(n), &acts, rows),
                        _ => vnni::k_tile::<vnni::Q6Tiles, QUAD_TILE>(group(n), &acts, rows),
                    }
                };
                for_each_tile(&mut out, self.rows, column_bytes, run);
            } else {
                // SAFETY: quads exist only where `Isa::detect` found AVX2, FMA and F16C, and each quad spans
                // `group_bytes` for the activations' width.
                let run = |n: usize, rows| unsafe {
                    match self.format {
                        KFormat::Q4K => avx2::quad_tile::<avx2::Q45Quads<false>, QUAD_TILE>(group(n), &acts, rows),
                        KFormat::Q5K => avx2::quad_tile::<avx2::Q45Quads<true>, QUAD_TILE>(group(n), &acts, rows),
                        _ => avx2::quad_tile::<avx2::Q6Quads, QUAD_TILE>(group(n), &acts, rows),
                    }
                };
                for_each_tile(&mut out, self.rows, column_bytes, run);
            }
            return out;
        }
        let isa = Isa::detect();
        for_each_tile(&mut out, self.rows, column_bytes, |n, rows| tile_of(isa, self, &acts, n, rows).map(|s| [s]));
        out
    }
}

/// Dot products of weight row `n` with activation `rows` (at most [`KTILE`]), in the first cells.
fn tile_of(isa: Isa, w: &KQuantMatrix, acts: &SuperRows, n: usize, rows: std::ops::Range<usize>) -> [f32; KTILE] {
    match isa {
        Isa::Portable => with_block!(w.format, F => scalar::kquant_tile::<F>(w, acts, n, rows)),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` checked AVX2, FMA and F16C.
        Isa::Avx2 => unsafe { with_block!(w.format, F => avx2::kquant_tile::<F>(w, acts, n, rows)) },
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const FORMATS: [(KFormat, GgmlDType); 5] = [
        (KFormat::Q2K, GgmlDType::Q2K),
        (KFormat::Q3K, GgmlDType::Q3K),
        (KFormat::Q4K, GgmlDType::Q4K),
        (KFormat::Q5K, GgmlDType::Q5K),
        (KFormat::Q6K, GgmlDType::Q6K),
    ];

    fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0) * if rng.random_bool(0.05) { 8.0 } else { 1.0 }).collect()
    }

    /// Blocks quantized by candle (GGML's reference quantizers) and candle's own dequantization.
    fn quantized(format: (KFormat, GgmlDType), rows: usize, cols: usize, seed: u64) -> (KQuantMatrix, Vec<f32>) {
        let values = random(&mut StdRng::seed_from_u64(seed), rows * cols);
        let dense = candle_core::Tensor::from_vec(values, (rows, cols), &candle_core::Device::Cpu).unwrap();
        let tensor = QTensor::quantize(&dense, format.1).unwrap();
        let reference =
            tensor.dequantize(&candle_core::Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (KQuantMatrix::from_blocks(format.0, rows, cols, tensor.data().unwrap().to_vec()), reference)
    }

    #[test]
    fn dequantized_rows_match_candle_exactly() {
        for format in FORMATS {
            let (w, reference) = quantized(format, 3, 512, 1);
            for n in 0..3 {
                assert_eq!(w.dequantize_row(n), reference[n * 512..(n + 1) * 512], "{:?} row {n}", format.0);
            }
        }
    }

    /// The matrix as stored and in every packing this CPU has a kernel for (where its rows fill the groups).
    fn layouts(w: KQuantMatrix) -> Vec<KQuantMatrix> {
        #[cfg(target_arch = "x86_64")]
        let packings = [
            kpack::quads(w.format).filter(|_| Isa::detect().avx2()),
            kpack::tiles(w.format).filter(|_| vnni::available()),
        ];
        #[cfg(not(target_arch = "x86_64"))]
        let packings: [Option<Layout>; 0] = [];
        let packed = packings.into_iter().flatten().filter(|layout| w.rows.is_multiple_of(layout.columns));
        let packed: Vec<KQuantMatrix> = packed.map(|layout| w.clone().packed(layout)).collect();
        [vec![w], packed].concat()
    }

    fn name(w: &KQuantMatrix) -> String {
        let packing = w.packing().map_or("blocks".to_string(), |l| format!("groups of {}", l.columns));
        format!("{:?} {packing}", w.format)
    }

    /// `matmul` against dequantized weights times exact activations. The only approximation is rounding
    /// each activation to its super-block's 8-bit grid, at most `amax / 254` per value, so one output is
    /// off by at most `Σ_i |w_i| · amax(super-block of i) / 254` (plus f32 rounding).
    fn check(w: &KQuantMatrix, m: usize) {
        let (rows, cols) = (w.rows, w.cols);
        let x = random(&mut StdRng::seed_from_u64(99), m * cols);
        let got = w.matmul(&x);
        let dense: Vec<Vec<f32>> = (0..rows).map(|n| w.dequantize_row(n)).collect();
        for r in 0..m {
            let xr = &x[r * cols..(r + 1) * cols];
            for (n, weights) in dense.iter().enumerate() {
                let exact: f32 = weights.iter().zip(xr).map(|(a, b)| a * b).sum();
                let bound: f32 = weights
                    .chunks(SUPER)
                    .zip(xr.chunks(SUPER))
                    .map(|(wb, xb)| {
                        let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                        wb.iter().map(|v| v.abs()).sum::<f32>() * amax / 254.0
                    })
                    .sum::<f32>()
                    * 1.01
                    + 1e-3;
                let err = (got[r * rows + n] - exact).abs();
                assert!(err <= bound, "{} m={m} {rows}x{cols} [{r},{n}]: error {err} > {bound}", name(w));
            }
        }
    }

    #[test]
    fn every_kernel_matches_the_dequantized_reference_for_odd_shapes() {
        for format in FORMATS {
            let shapes =
                [(1, 1, 256), (3, 7, 512), (9, 8, 768), (17, 12, 256), (5, 4, 1024), (11, 16, 512), (2, 32, 768)];
            for (m, rows, cols) in shapes {
                let (w, reference) = quantized(format, rows, cols, (m * 100 + rows) as u64);
                for w in layouts(w) {
                    for n in 0..rows {
                        assert_eq!(w.dequantize_row(n), reference[n * cols..(n + 1) * cols], "{} row {n}", name(&w));
                    }
                    check(&w, m);
                }
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_or_in_a_batch() {
        for format in FORMATS {
            for w in layouts(quantized(format, 32, 512, 3).0) {
                let x = random(&mut StdRng::seed_from_u64(4), 37 * 512);
                let batch = w.matmul(&x);
                for r in [0, 5, 8, 15, 16, 20, 36] {
                    let alone = w.matmul(&x[r * 512..(r + 1) * 512]);
                    assert_eq!(alone, batch[r * 32..(r + 1) * 32], "{} row {r}", name(&w));
                }
            }
        }
    }

    #[test]
    fn packed_and_stored_blocks_agree() {
        for format in FORMATS {
            let (w, _) = quantized(format, 32, 512, 7);
            let repacked = w.clone().repack();
            #[cfg(target_arch = "x86_64")]
            let expected = match kpack::tiles(format.0) {
                Some(tiles) if vnni::available() => Some(tiles.columns),
                _ => kpack::quads(format.0).filter(|_| Isa::detect().avx2()).map(|quads| quads.columns),
            };
            #[cfg(not(target_arch = "x86_64"))]
            let expected = None;
            assert_eq!(repacked.packing().map(|l| l.columns), expected, "{:?}", format.0);
            // 13 rows: a full pass of eight and a pass of five.
            let x = random(&mut StdRng::seed_from_u64(8), 13 * 512);
            let stored = w.matmul(&x);
            for packed in layouts(w).into_iter().skip(1) {
                for (a, b) in stored.iter().zip(&packed.matmul(&x)) {
                    assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{}: {a} vs {b}", name(&packed));
                }
            }
        }
    }

    #[test]
    fn portable_and_simd_kernels_agree() {
        for format in FORMATS {
            let (w, _) = quantized(format, 9, 512, 5);
            let acts = SuperRows::new(&random(&mut StdRng::seed_from_u64(6), 5 * 512), 512);
            for n in 0..9 {
                let a = tile_of(Isa::Portable, &w, &acts, n, 0..5);
                let b = tile_of(Isa::detect(), &w, &acts, n, 0..5);
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "{:?} column {n}: {x} vs {y}", w.format);
                }
            }
        }
    }

    #[test]
    fn a_stacked_matrix_computes_its_parts() {
        let (a, _) = quantized(FORMATS[2], 7, 256, 1);
        let (b, _) = quantized(FORMATS[2], 5, 256, 2);
        let stacked = KQuantMatrix::stack(&[&a, &b]).unwrap();
        let x = random(&mut StdRng::seed_from_u64(3), 2 * 256);
        let (whole, top, bottom) = (stacked.matmul(&x), a.matmul(&x), b.matmul(&x));
        for r in 0..2 {
            assert_eq!(whole[r * 12..r * 12 + 7], top[r * 7..(r + 1) * 7]);
            assert_eq!(whole[r * 12 + 7..(r + 1) * 12], bottom[r * 5..(r + 1) * 5]);
        }
        assert!(KQuantMatrix::stack(&[&a, &quantized(FORMATS[4], 5, 256, 2).0]).is_none());
    }
}
