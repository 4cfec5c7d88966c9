//! Quantized matrix × activations on the CPU, for the GGUF block formats Hearth runs natively.
//!
//! Weights keep their GGUF quants (blocks of 32; scales widened to f32 at load). Activations are quantized once per call to
//! 8 bits with an f32 scale per block of 32 ([`QuantizedRows`]), so each block product is an integer dot
//! product (AVX2 `maddubs`) times one scale. The kernel walks weight rows (output columns) in parallel
//! chunks and, for each weight block it decodes, applies it to a tile of up to [`TILE`] activation rows:
//! a batch of 16 sequences reads every weight once, not 16 times.
//!
//! On CPUs with AVX-512 VNNI, [`QuantMatrix::repack`] moves Q8_0, Q4_0 and Q4_1 weights into tiles of 16
//! output columns (`vnni`), where one instruction multiplies 4 quants of 16 columns by one activation row.
//!
//! **Batch invariance:** each activation row has its own accumulators and visits the blocks in the same
//! order whatever the tile or batch size, so a row's result never depends on its batch mates.

use candle_core::quantized::{GgmlDType, QTensor};

use crate::parallel::{for_chunks, DisjointWrites};

/// Values per quantization block in every supported format.
pub const BLOCK: usize = 32;
/// Activation rows that share one decoded weight block.
pub const TILE: usize = 4;

/// The weight formats with a native kernel (GGML's legacy 32-value blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
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

impl Format {
    fn of(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q4_0 => Self::Q4_0,
            GgmlDType::Q4_1 => Self::Q4_1,
            GgmlDType::Q5_0 => Self::Q5_0,
            GgmlDType::Q5_1 => Self::Q5_1,
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
    fn center(self) -> f32 {
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
pub struct QuantMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    /// Q8_0: 32 i8 per block. Others: 16 bytes per block, element `i` in the low nibble of byte `i` and
    /// element `16 + i` in its high nibble (GGML's layout).
    qs: Vec<u8>,
    /// Q5 formats: the fifth bit of element `i` is bit `i` of the block's word.
    qh: Vec<u32>,
    /// Scale per block, widened from the file's f16 once at load (saves a conversion per block and row tile).
    d: Vec<f32>,
    /// Offset per block (Q4_1 and Q5_1), widened likewise.
    m: Vec<f32>,
    /// The weights in the AVX-512 VNNI kernel's layout, once [`QuantMatrix::repack`] moved them there
    /// (the block vectors above are then empty).
    #[cfg(target_arch = "x86_64")]
    packed: Option<Box<vnni::Packed>>,
}

impl QuantMatrix {
    /// Takes a GGUF tensor of shape `[rows, cols]` in a supported format; `None` otherwise.
    pub fn from_qtensor(tensor: &QTensor) -> Option<Self> {
        let format = Format::of(tensor.dtype())?;
        let (rows, cols) = tensor.shape().dims2().ok()?;
        let raw = tensor.data().ok()?;
        Some(Self::from_blocks(format, rows, cols, &raw))
    }

    /// Splits raw GGUF blocks (`rows * cols / 32` of them, row-major) into quants and scales.
    pub fn from_blocks(format: Format, rows: usize, cols: usize, raw: &[u8]) -> Self {
        assert!(cols.is_multiple_of(BLOCK), "columns must be a multiple of {BLOCK}");
        let blocks = rows * cols / BLOCK;
        let layout = format.layout();
        assert_eq!(raw.len(), blocks * layout.size, "block data does not match the shape");
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

    fn empty(format: Format, rows: usize, cols: usize) -> Self {
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
        }
    }

    /// Moves the weights into the layout of the fastest kernel this CPU runs for their format (the AVX-512
    /// VNNI tiles where available); otherwise returns them as they are.
    pub fn repack(self) -> Self {
        #[cfg(target_arch = "x86_64")]
        if self.packed.is_none() && vnni::available() {
            if let Some(packed) = vnni::Packed::new(&self) {
                return Self { packed: Some(Box::new(packed)), ..Self::empty(self.format, self.rows, self.cols) };
            }
        }
        self
    }

    /// Whether the weights are in their GGUF blocks (not repacked).
    fn in_blocks(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self.packed.is_some() {
            return false;
        }
        true
    }

    /// Stacks matrices of the same format and width into one (e.g. Q, K and V), so one call computes
    /// all of them; `None` when formats or widths differ, or a part is already repacked.
    pub fn stack(parts: &[&QuantMatrix]) -> Option<Self> {
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
        self.qs.len() + 4 * (self.qh.len() + self.d.len() + self.m.len())
    }

    /// Row `row` as `f32` values (an embedding lookup).
    pub fn dequantize_row(&self, row: usize) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = &self.packed {
            return packed.dequantize_row(row);
        }
        let blocks = self.cols / BLOCK;
        let mut out = Vec::with_capacity(self.cols);
        for b in row * blocks..(row + 1) * blocks {
            let d = self.d[b];
            match self.format {
                Format::Q8_0 => out.extend(self.qs[b * 32..][..32].iter().map(|&q| d * f32::from(q as i8))),
                _ => {
                    let offset = self.offset(b, d);
                    out.extend(self.unsigned_quants(b).iter().map(|&q| d * f32::from(q) + offset));
                }
            }
        }
        out
    }

    /// The 32 unsigned quants of block `b` of a 4- or 5-bit format.
    fn unsigned_quants(&self, b: usize) -> [u8; 32] {
        let packed = &self.qs[b * 16..][..16];
        let high = self.qh.get(b).copied().unwrap_or(0);
        std::array::from_fn(|i| {
            let nibble = if i < 16 { packed[i] & 0x0F } else { packed[i - 16] >> 4 };
            nibble | ((((high >> i) & 1) as u8) << 4)
        })
    }

    /// The additive term of block `b` with scale `d`: `x = d * q + offset`.
    fn offset(&self, b: usize, d: f32) -> f32 {
        match self.m.get(b) {
            Some(&m) => m,
            None => -self.format.center() * d,
        }
    }

    /// `x` (`m × cols`, row-major) times this matrix transposed: `m × rows`.
    pub fn matmul(&self, x: &[f32]) -> Vec<f32> {
        let acts = QuantizedRows::new(x, self.cols);
        let m = acts.rows;
        let mut out = vec![0.0f32; m * self.rows];
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = &self.packed {
            packed.matmul(&acts, &mut out, self.rows);
            return out;
        }
        let cells = DisjointWrites::new(&mut out);
        let kernel = Kernel::detect();
        for_chunks(self.rows, |columns| {
            for n in columns {
                let mut start = 0;
                while start < m {
                    let tile = (m - start).min(TILE);
                    let sums = kernel.tile(self, &acts, n, start..start + tile);
                    for (r, &s) in sums[..tile].iter().enumerate() {
                        let cell = (start + r) * self.rows + n;
                        // SAFETY: columns are split between threads, so only this one writes column `n`.
                        unsafe { cells.slice(cell..cell + 1)[0] = s };
                    }
                    start += tile;
                }
            }
        });
        out
    }
}

/// 1.5 × 2^23: adding and subtracting it rounds an f32 below 2^22 to the nearest integer.
const ROUNDING: f32 = 12_582_912.0;

/// Activation rows quantized to 8 bits per value with an f32 scale per block.
#[derive(Debug, Clone)]
pub struct QuantizedRows {
    rows: usize,
    blocks_per_row: usize,
    qs: Vec<i8>,
    /// Scale per block.
    d: Vec<f32>,
    /// `d * Σ q` per block, for formats with an offset.
    s: Vec<f32>,
    /// `Σ q` per block, for integer centering.
    sums: Vec<i32>,
}

impl QuantizedRows {
    /// Quantizes `x`, rows of `cols` values (`cols` a multiple of 32).
    pub fn new(x: &[f32], cols: usize) -> Self {
        let blocks = x.len() / BLOCK;
        let mut rows = Self {
            rows: x.len() / cols,
            blocks_per_row: cols / BLOCK,
            qs: vec![0; blocks * BLOCK],
            d: vec![0.0; blocks],
            s: vec![0.0; blocks],
            sums: vec![0; blocks],
        };
        #[cfg(target_arch = "x86_64")]
        if Kernel::detect().is_avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { rows.quantize_avx2(x) };
            return rows;
        }
        rows.quantize(x);
        rows
    }

    /// [`Self::quantize`] with AVX2, four registers per block; the same results (`cvtps2dq` rounds to
    /// nearest even, as the float-add trick does).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn quantize_avx2(&mut self, x: &[f32]) {
        use std::arch::x86_64::*;
        // packs_epi32/packs_epi16 interleave 128-bit lanes; this puts the dwords back in order.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let magnitude = _mm256_set1_ps(f32::from_bits(0x7FFF_FFFF));
        for (b, block) in x.chunks_exact(BLOCK).enumerate() {
            // SAFETY: `block` has 32 floats and `qs` 32 bytes at block `b`.
            unsafe {
                let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(block.as_ptr().add(8 * i)));
                let top = v.iter().fold(_mm256_setzero_ps(), |m, &v| _mm256_max_ps(m, _mm256_and_ps(v, magnitude)));
                let quad = _mm_max_ps(_mm256_castps256_ps128(top), _mm256_extractf128_ps(top, 1));
                let pair = _mm_max_ps(quad, _mm_movehl_ps(quad, quad));
                let amax = _mm_cvtss_f32(_mm_max_ss(pair, _mm_shuffle_ps(pair, pair, 1)));
                let scale = amax / 127.0;
                let inv = _mm256_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
                let q: [__m256i; 4] = std::array::from_fn(|i| _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inv)));
                let words = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
                _mm256_storeu_si256(
                    self.qs.as_mut_ptr().add(b * BLOCK).cast(),
                    _mm256_permutevar8x32_epi32(words, order),
                );
                let sums = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
                let quad = _mm_add_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
                let pair = _mm_add_epi32(quad, _mm_unpackhi_epi64(quad, quad));
                let total = _mm_cvtsi128_si32(_mm_add_epi32(pair, _mm_shuffle_epi32(pair, 1)));
                self.d[b] = scale;
                self.s[b] = scale * total as f32;
                self.sums[b] = total;
            }
        }
    }

    /// Fills the quants, scales and sums from `x`, one block of 32 values at a time.
    #[inline(always)]
    fn quantize(&mut self, x: &[f32]) {
        let per_block =
            self.qs.chunks_exact_mut(BLOCK).zip(self.d.iter_mut().zip(self.s.iter_mut().zip(&mut self.sums)));
        for (block, (qs, (d, (s, sum)))) in x.chunks_exact(BLOCK).zip(per_block) {
            // Lane-wise maxima first, so the reduction vectorises; the maximum is the same in any order.
            let mut lanes = [0.0f32; 8];
            for eight in block.chunks_exact(8) {
                for (lane, v) in lanes.iter_mut().zip(eight) {
                    *lane = lane.max(v.abs());
                }
            }
            let amax = lanes.iter().fold(0.0f32, |a, &v| a.max(v));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let mut total = 0i32;
            for (q, &v) in qs.iter_mut().zip(block) {
                // Round to nearest by the float-add trick (|v * inv| <= 127 < 2^22): no libm call.
                *q = ((v * inv + ROUNDING) - ROUNDING) as i8;
                total += i32::from(*q);
            }
            *d = scale;
            *s = scale * total as f32;
            *sum = total;
        }
    }
}

fn f16(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// The best kernel this CPU runs.
#[derive(Debug, Clone, Copy)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    #[cfg(target_arch = "x86_64")]
    fn is_avx2(self) -> bool {
        matches!(self, Self::Avx2)
    }

    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            let avx2 = *AVX2.get_or_init(|| {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
            });
            if avx2 {
                return Self::Avx2;
            }
        }
        Self::Scalar
    }

    /// Dot products of weight row `n` with activation `rows` (at most [`TILE`]), in the first cells.
    fn tile(self, w: &QuantMatrix, acts: &QuantizedRows, n: usize, rows: std::ops::Range<usize>) -> [f32; TILE] {
        match self {
            Self::Scalar => scalar::tile(w, acts, n, rows),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` checked AVX2, FMA and F16C.
            Self::Avx2 => unsafe {
                match rows.len() {
                    4 => avx2::tile::<4>(w, acts, n, rows.start),
                    3 => avx2::tile::<3>(w, acts, n, rows.start),
                    2 => avx2::tile::<2>(w, acts, n, rows.start),
                    _ => avx2::tile::<1>(w, acts, n, rows.start),
                }
            },
        }
    }
}

/// The portable reference kernel.
mod scalar {
    use super::{Format, QuantMatrix, QuantizedRows, TILE};

    /// Integer dot products per block, then one multiply by both scales (plus the offset term).
    pub(super) fn tile(w: &QuantMatrix, acts: &QuantizedRows, n: usize, rows: std::ops::Range<usize>) -> [f32; TILE] {
        let blocks = acts.blocks_per_row;
        let mut sums = [0.0; TILE];
        for (sum, row) in sums.iter_mut().zip(rows) {
            let mut total = 0.0f32;
            for b in 0..blocks {
                let (wb, ab) = (n * blocks + b, row * blocks + b);
                let a = &acts.qs[ab * 32..][..32];
                let dw = w.d[wb];
                let d = dw * acts.d[ab];
                match w.format {
                    Format::Q8_0 => {
                        let q = &w.qs[wb * 32..][..32];
                        let dot: i32 = q.iter().zip(a).map(|(&q, &a)| i32::from(q as i8) * i32::from(a)).sum();
                        total += d * dot as f32;
                    }
                    _ => {
                        let q = w.unsigned_quants(wb);
                        let dot: i32 = q.iter().zip(a).map(|(&q, &a)| i32::from(q) * i32::from(a)).sum();
                        total += d * dot as f32 + w.offset(wb, dw) * acts.s[ab];
                    }
                }
            }
            *sum = total;
        }
        sums
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod vnni;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0) * if rng.random_bool(0.05) { 8.0 } else { 1.0 }).collect()
    }

    const FORMATS: [Format; 5] = [Format::Q8_0, Format::Q4_0, Format::Q4_1, Format::Q5_0, Format::Q5_1];

    fn dtype_of(format: Format) -> GgmlDType {
        match format {
            Format::Q8_0 => GgmlDType::Q8_0,
            Format::Q4_0 => GgmlDType::Q4_0,
            Format::Q4_1 => GgmlDType::Q4_1,
            Format::Q5_0 => GgmlDType::Q5_0,
            Format::Q5_1 => GgmlDType::Q5_1,
        }
    }

    fn quantized(format: Format, rows: usize, cols: usize, seed: u64) -> QuantMatrix {
        let mut rng = StdRng::seed_from_u64(seed);
        let dense =
            candle_core::Tensor::from_vec(random(&mut rng, rows * cols), (rows, cols), &candle_core::Device::Cpu)
                .unwrap();
        let dtype = dtype_of(format);
        QuantMatrix::from_qtensor(&QTensor::quantize(&dense, dtype).unwrap()).unwrap()
    }

    /// The matrix in its GGUF blocks and, where this CPU has a repacked kernel for it, repacked.
    fn layouts(format: Format, rows: usize, cols: usize, seed: u64) -> Vec<QuantMatrix> {
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
    fn check(w: &QuantMatrix, m: usize) {
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
            for (m, rows, cols) in [(1, 1, 32), (1, 37, 64), (3, 5, 96), (4, 8, 576), (5, 33, 160), (17, 19, 1536 / 4)]
            {
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
    fn scalar_and_simd_kernels_agree() {
        for format in FORMATS {
            let w = quantized(format, 9, 128, 5);
            let acts = QuantizedRows::new(&random(&mut StdRng::seed_from_u64(6), 4 * 128), 128);
            for n in 0..9 {
                let a = Kernel::Scalar.tile(&w, &acts, n, 0..4);
                let b = Kernel::detect().tile(&w, &acts, n, 0..4);
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "{format:?} column {n}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn activation_quantization_is_the_same_in_every_kernel() {
        let mut x = random(&mut StdRng::seed_from_u64(11), 7 * 96);
        x[32..64].fill(0.0);
        let fast = QuantizedRows::new(&x, 96);
        let mut portable = fast.clone();
        portable.quantize(&x);
        assert_eq!((&fast.qs, &fast.d, &fast.s, &fast.sums), (&portable.qs, &portable.d, &portable.s, &portable.sums));
        assert_eq!(fast.d[1], 0.0);
    }

    #[test]
    fn a_stacked_matrix_computes_its_parts() {
        let (a, b) = (quantized(Format::Q4_1, 7, 64, 1), quantized(Format::Q4_1, 5, 64, 2));
        let stacked = QuantMatrix::stack(&[&a, &b]).unwrap();
        let x = random(&mut StdRng::seed_from_u64(3), 2 * 64);
        let (whole, top, bottom) = (stacked.matmul(&x), a.matmul(&x), b.matmul(&x));
        for r in 0..2 {
            assert_eq!(whole[r * 12..r * 12 + 7], top[r * 7..(r + 1) * 7]);
            assert_eq!(whole[r * 12 + 7..(r + 1) * 12], bottom[r * 5..(r + 1) * 5]);
        }
        assert!(QuantMatrix::stack(&[&a, &quantized(Format::Q8_0, 5, 64, 2)]).is_none());
    }

    #[test]
    fn dequantized_rows_match_candle() {
        for (format, dtype) in FORMATS.map(|f| (f, dtype_of(f))) {
            let x = random(&mut StdRng::seed_from_u64(8), 3 * 64);
            let dense = candle_core::Tensor::from_vec(x, (3, 64), &candle_core::Device::Cpu).unwrap();
            let tensor = QTensor::quantize(&dense, dtype).unwrap();
            let candle = tensor.dequantize(&candle_core::Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let ours = QuantMatrix::from_qtensor(&tensor).unwrap();
            for ours in [ours.clone(), ours.repack()] {
                for (n, row) in candle.iter().enumerate() {
                    assert_eq!(&ours.dequantize_row(n), row, "{format:?} row {n}");
                }
            }
        }
    }
}
