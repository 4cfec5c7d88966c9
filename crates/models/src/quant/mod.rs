//! Weight matrices times activations on the CPU, for every GGUF block format Hearth runs.
//!
//! [`Matrix`] holds one weight matrix in the layout of its kernel and multiplies rows of activations by it:
//! - [`LegacyMatrix`] (`legacy`): GGML's 32-value blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) against activations
//!   quantized per 32 values ([`QuantizedRows`]); on CPUs with AVX-512 VNNI, Q4_0/Q4_1/Q8_0 are repacked
//!   at load into tiles of 16 output columns (`vnni`), and with AVX2 every format into quads of four
//!   columns (`lquad`).
//! - [`KQuantMatrix`] (`kquant`): the K-quants' 256-value super-blocks (Q2_K to Q6_K), against
//!   activations quantized per 256 values ([`SuperRows`]); Q4_K, Q5_K and Q6_K blocks keep their bytes
//!   but move at load into tiles of 16 output columns on CPUs with AVX-512 VNNI, else into quads of four
//!   with AVX2 (`kpack`).
//! - [`DenseMatrix`] (`dense`): f32, f16 and bf16 weights against `f32` activations.
//!
//! IQ4_NL and IQ4_XS have no kernel of their own: their 4-bit codebook values are exact 8-bit integers,
//! so they become Q8_0 at load, losslessly, at 1.9x their size.
//!
//! Every kernel decodes a weight block once for a tile of activation rows, so a batch reads each weight
//! once; threads split the output columns. Kernels live by format (`legacy` and `lquad`; `kblock`, `kquant`
//! and `kpack`; `dense`) and by instruction set (`scalar`, the portable reference; `avx2`; `vnni`).
//!
//! **Batch invariance:** each activation row has its own accumulators and visits the blocks in the same
//! order whatever the tile or batch size, so a row's result never depends on its batch mates.

pub(crate) use crate::cpu::Isa;
use crate::gguf::{GgufFile, Tensor, TensorType, WeightFormat};
use crate::ModelError;

mod activations;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod dense;
mod iq4;
mod kblock;
mod kpack;
mod kquant;
mod legacy;
#[cfg(target_arch = "x86_64")]
mod lquad;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod vnni;

pub use activations::{QuantizedRows, SuperRows};
pub use dense::DenseMatrix;
pub use kblock::KFormat;
pub use kquant::KQuantMatrix;
pub use legacy::{LegacyFormat, LegacyMatrix};

/// Values per block of the legacy formats and of [`QuantizedRows`].
pub const BLOCK: usize = 32;
/// Values per K-quant super-block and per block of [`SuperRows`].
pub const SUPER: usize = 256;
/// Output columns interleaved in one quad of the AVX2 kernels (`kpack`, `lquad`).
const QUAD: usize = 4;
/// Output columns per tile of the AVX-512 VNNI kernels: one 512-bit register of `f32` sums.
const TILE: usize = 16;
/// Activation rows per tile of the AVX2 quad kernels.
#[cfg(target_arch = "x86_64")]
const QUAD_TILE: usize = 16;
/// Rows that fill whole groups of every packing (quads of four, tiles of sixteen): a matrix packed in slices
/// of a multiple of them is the matrix packed whole.
const GROUP_ROWS: usize = 64;
/// About how many bytes of a large matrix [`Matrix::read`] reads and packs at a time.
pub const SLICE_BYTES: usize = 4 << 20;

/// Activation rows that share one decoding of a weight block in the multi-column kernels (AVX2 quads,
/// VNNI tiles): their accumulators stay in registers beside the decoded weights.
#[cfg(target_arch = "x86_64")]
const PASS: usize = 8;

/// Calls `$pass::<$format, R>($weights, $acts, start)` with `R` the rows left from `start` (at most
/// [`PASS`]), a pass specialised to its row count, its results padded to [`PASS`].
#[cfg(target_arch = "x86_64")]
macro_rules! pass_of {
    ($left:expr, $pass:ident::<$format:ty>($weights:expr, $acts:expr, $start:expr)) => {{
        use $crate::quant::pad;
        match $left {
            1 => pad($pass::<$format, 1>($weights, $acts, $start)),
            2 => pad($pass::<$format, 2>($weights, $acts, $start)),
            3 => pad($pass::<$format, 3>($weights, $acts, $start)),
            4 => pad($pass::<$format, 4>($weights, $acts, $start)),
            5 => pad($pass::<$format, 5>($weights, $acts, $start)),
            6 => pad($pass::<$format, 6>($weights, $acts, $start)),
            7 => pad($pass::<$format, 7>($weights, $acts, $start)),
            _ => $pass::<$format, { $crate::quant::PASS }>($weights, $acts, $start),
        }
    }};
}
#[cfg(target_arch = "x86_64")]
use pass_of;

/// A pass's `R` row results padded to [`PASS`] (by repeating the last; padding is never stored).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn pad<V: Copy, const R: usize>(sums: [V; R]) -> [V; PASS] {
    std::array::from_fn(|r| sums[r.min(R - 1)])
}

/// The `C` column sums of each of `rows` (at most `T`), computed in passes of at most [`PASS`] rows by
/// `pass(start, left)` and written out by `store`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn in_passes<V: Copy, const C: usize, const T: usize>(
    rows: std::ops::Range<usize>,
    pass: impl Fn(usize, usize) -> [V; PASS],
    store: impl Fn(&mut [f32; C], V),
) -> [[f32; C]; T] {
    let mut out = [[0.0; C]; T];
    let mut start = rows.start;
    while start < rows.end {
        let sums = pass(start, rows.end - start);
        for (r, &sum) in sums.iter().enumerate().take((rows.end - start).min(PASS)) {
            store(&mut out[start - rows.start + r], sum);
        }
        start += PASS;
    }
    out
}

/// Prefetches the `bytes` at `p` to the cache level `HINT` names (`_MM_HINT_T0`: L1, `_MM_HINT_T1`: L2; a
/// hint: it never faults, even past the matrix's end).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch<const HINT: i32>(p: *const u8, bytes: usize) {
    for line in (0..bytes).step_by(64) {
        // SAFETY: a prefetch is only a hint and never faults.
        unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(p.wrapping_add(line).cast()) };
    }
}

/// A `rows × cols` weight matrix (`rows` outputs of `cols` inputs) in the layout of its kernel.
#[derive(Debug, Clone)]
pub enum Matrix {
    /// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (and IQ4 converted to Q8_0).
    Legacy(LegacyMatrix),
    /// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
    KQuant(KQuantMatrix),
    /// f32, f16, bf16.
    Dense(DenseMatrix),
}

impl Matrix {
    /// Takes a GGUF weight of shape `[rows, cols]` into the layout of its kernel. With
    /// [`WeightFormat::Q8_0`], quantized formats below 8 bits are requantized to Q8_0. A type Hearth
    /// cannot run is an error naming the tensor and its type.
    pub fn from_tensor(tensor: Tensor, format: WeightFormat) -> Result<Self, ModelError> {
        let (rows, cols) = tensor.dims2()?;
        let dtype = tensor.dtype;
        let below_8_bits = !matches!(dtype, TensorType::Q8_0 | TensorType::F32 | TensorType::F16 | TensorType::BF16);
        if format == WeightFormat::Q8_0 && below_8_bits {
            let values = Self::from_tensor(tensor, WeightFormat::AsStored)?.dequantize_all();
            return Ok(Self::Legacy(legacy::q8_0(&values, rows, cols)));
        }
        if let Some(legacy) = LegacyFormat::of(dtype) {
            return Ok(Self::Legacy(LegacyMatrix::from_blocks(legacy, rows, cols, &tensor.bytes)));
        }
        if let Some(k) = KFormat::of(dtype) {
            return Ok(Self::KQuant(KQuantMatrix::from_blocks(k, rows, cols, tensor.bytes)));
        }
        match dtype {
            TensorType::F32 | TensorType::F16 | TensorType::BF16 => {
                Ok(Self::Dense(DenseMatrix::from_bytes(dtype, rows, cols, tensor.bytes)))
            }
            TensorType::IQ4_NL => Ok(Self::Legacy(iq4::nl_to_q8_0(&tensor.bytes, rows, cols))),
            TensorType::IQ4_XS => Ok(Self::Legacy(iq4::xs_to_q8_0(&tensor.bytes, rows, cols))),
            other => Err(ModelError::Unsupported(format!(
                "tensor `{}` is {other}, a type Hearth cannot run (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, \
                 Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)",
                tensor.name
            ))),
        }
    }

    /// Reads the matrix tensor `name` from `file` and moves it into the layout of its kernel
    /// ([`Matrix::from_tensor`], then [`Matrix::repack`]). A large quantized matrix is read and moved
    /// [`SLICE_BYTES`] at a time into its final buffer, so the file's copy of the whole tensor never sits
    /// beside the packed one.
    pub fn read(file: &GgufFile, name: &str, format: WeightFormat) -> Result<Self, ModelError> {
        let info = file.tensor_info(name)?;
        let dense = matches!(info.dtype, TensorType::F32 | TensorType::F16 | TensorType::BF16);
        let whole = || Ok(Self::from_tensor(file.tensor(name)?, format)?.repack());
        let &[rows, cols] = info.shape() else { return whole() };
        let row_bytes = info.dtype.bytes_for(cols as u64).unwrap_or(0) as usize;
        let slice = (SLICE_BYTES / row_bytes.max(1)) / GROUP_ROWS * GROUP_ROWS;
        if dense || row_bytes == 0 || slice == 0 || rows <= slice || !rows.is_multiple_of(GROUP_ROWS) {
            return whole();
        }
        Self::in_slices(rows, slice, |rows| Ok(Self::from_tensor(file.tensor_rows(name, rows)?, format)?.repack()))
    }

    /// A matrix of `rows` rows built from `part` of each `slice` of them in turn (`slice` a multiple of
    /// [`GROUP_ROWS`]), the whole allocated once the first is made.
    fn in_slices(
        rows: usize,
        slice: usize,
        part: impl Fn(std::ops::Range<usize>) -> Result<Self, ModelError>,
    ) -> Result<Self, ModelError> {
        let mut matrix = part(0..slice.min(rows))?;
        matrix.reserve_rows(rows.saturating_sub(slice));
        for start in (slice..rows).step_by(slice) {
            matrix.append_rows(part(start..(start + slice).min(rows))?);
        }
        Ok(matrix)
    }

    /// Room for `rows` more rows in this matrix's layout, allocated now.
    fn reserve_rows(&mut self, rows: usize) {
        match self {
            Self::Legacy(m) => m.reserve_rows(rows),
            Self::KQuant(m) => m.reserve_rows(rows),
            Self::Dense(_) => {}
        }
    }

    /// Appends `below`'s rows, read and repacked as `self`'s were (whole groups of [`GROUP_ROWS`]).
    fn append_rows(&mut self, below: Matrix) {
        match (self, below) {
            (Self::Legacy(m), Self::Legacy(more)) => m.append_rows(more),
            (Self::KQuant(m), Self::KQuant(more)) => m.append_rows(more),
            _ => panic!("appending rows of another kind of matrix"),
        }
    }

    /// Moves the weights into the layout of the fastest kernel this CPU has for their format (the AVX-512
    /// VNNI tiles for Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K, else the AVX2 quads for those and Q5_0,
    /// Q5_1); other matrices are returned as they are.
    pub fn repack(self) -> Self {
        match self {
            Self::Legacy(m) => Self::Legacy(m.repack()),
            Self::KQuant(m) => Self::KQuant(m.repack()),
            other => other,
        }
    }

    /// Stacks matrices of the same format and width into one (e.g. Q, K and V), so one call computes all
    /// of them; `None` when formats or widths differ, or a part is already repacked.
    pub fn stack(parts: &[&Matrix]) -> Option<Self> {
        let first = parts.first()?;
        if !parts.iter().all(|p| first.stacks_with(p)) {
            return None;
        }
        match first {
            Self::Legacy(_) => {
                let parts: Option<Vec<&LegacyMatrix>> =
                    parts.iter().map(|p| if let Self::Legacy(m) = p { Some(m) } else { None }).collect();
                LegacyMatrix::stack(&parts?).map(Self::Legacy)
            }
            Self::KQuant(_) => {
                let parts: Option<Vec<&KQuantMatrix>> =
                    parts.iter().map(|p| if let Self::KQuant(m) = p { Some(m) } else { None }).collect();
                KQuantMatrix::stack(&parts?).map(Self::KQuant)
            }
            Self::Dense(_) => {
                let parts: Option<Vec<&DenseMatrix>> =
                    parts.iter().map(|p| if let Self::Dense(m) = p { Some(m) } else { None }).collect();
                DenseMatrix::stack(&parts?).map(Self::Dense)
            }
        }
    }

    /// Whether [`Matrix::stack`] can stack `self` and `other`.
    pub fn stacks_with(&self, other: &Matrix) -> bool {
        match (self, other) {
            (Self::Legacy(a), Self::Legacy(b)) => {
                a.format == b.format && a.cols == b.cols && a.in_blocks() && b.in_blocks()
            }
            (Self::KQuant(a), Self::KQuant(b)) => {
                a.format == b.format && a.cols == b.cols && a.packing().is_none() && b.packing().is_none()
            }
            (Self::Dense(a), Self::Dense(b)) => a.dtype == b.dtype && a.cols == b.cols,
            _ => false,
        }
    }

    /// Output width (weight rows).
    pub fn rows(&self) -> usize {
        match self {
            Self::Legacy(m) => m.rows(),
            Self::KQuant(m) => m.rows(),
            Self::Dense(m) => m.rows(),
        }
    }

    /// Input width.
    pub fn cols(&self) -> usize {
        match self {
            Self::Legacy(m) => m.cols,
            Self::KQuant(m) => m.cols,
            Self::Dense(m) => m.cols,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            Self::Legacy(m) => m.bytes(),
            Self::KQuant(m) => m.bytes(),
            Self::Dense(m) => m.bytes(),
        }
    }

    /// Row `row` as `f32` values (an embedding lookup).
    pub fn dequantize_row(&self, row: usize) -> Vec<f32> {
        match self {
            Self::Legacy(m) => m.dequantize_row(row),
            Self::KQuant(m) => m.dequantize_row(row),
            Self::Dense(m) => m.dequantize_row(row),
        }
    }

    /// Every row, end to end.
    fn dequantize_all(&self) -> Vec<f32> {
        (0..self.rows()).flat_map(|r| self.dequantize_row(r)).collect()
    }

    /// `x` (`m × cols`, row-major) times this matrix transposed: `m × rows`.
    pub fn matmul(&self, x: &[f32]) -> Vec<f32> {
        match self {
            Self::Legacy(m) => m.matmul(x),
            Self::KQuant(m) => m.matmul(x),
            Self::Dense(m) => m.matmul(x),
        }
    }
}

/// Bytes of weights a block of output columns may span: a row tile of activations (in L1) passes over
/// the whole block while its weights stay in L2, instead of every column streaming every activation row
/// from L2.
const COLUMN_BLOCK_BYTES: usize = 96 << 10;

/// Fills `out` (`m × width`, row-major) with `tile(first, rows)`: the dot products of `C` consecutive weight
/// rows (output columns `first..first + C`) with activation `rows` (at most `T` of them), for every group
/// of columns (`width` is a multiple of `C`) and tile of `m` rows. Threads split the column groups; within
/// its columns, a thread takes blocks of about [`COLUMN_BLOCK_BYTES`] of weights (`column_bytes` per
/// column) and runs every row tile over a block before the next. Each cell's value comes from one `tile`
/// call whose rows are fixed by `m` and `T` alone, so the blocking never changes a result.
pub(super) fn for_each_tile<const C: usize, const T: usize>(
    out: &mut [f32],
    width: usize,
    column_bytes: usize,
    tile: impl Fn(usize, std::ops::Range<usize>) -> [[f32; C]; T] + Sync,
) {
    let m = out.len() / width.max(1);
    let cells = crate::parallel::DisjointWrites::new(out);
    let block = (COLUMN_BLOCK_BYTES / (C * column_bytes).max(1)).max(1);
    crate::parallel::for_chunks(width / C, |groups| {
        for first in groups.clone().step_by(block) {
            let last = (first + block).min(groups.end);
            let mut start = 0;
            while start < m {
                let rows = start..(start + T).min(m);
                for group in first..last {
                    let sums = tile(group * C, rows.clone());
                    for (r, sums) in sums[..rows.len()].iter().enumerate() {
                        let cell = (start + r) * width + group * C;
                        // SAFETY: column groups are split between threads, so only this one writes them.
                        unsafe { cells.slice(cell..cell + C).copy_from_slice(sums) };
                    }
                }
                start = rows.end;
            }
        }
    });
}

/// A tensor's values as `f32` (norm weights, biases, small tables), whatever its runnable type.
pub fn dequantize(tensor: Tensor) -> Result<Vec<f32>, ModelError> {
    if tensor.dtype == TensorType::F32 {
        return Ok(tensor.bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect());
    }
    let values: usize = tensor.shape.iter().product();
    let width = *tensor.shape.last().unwrap_or(&values);
    let flat = Tensor { shape: vec![values / width.max(1), width], ..tensor };
    Ok(Matrix::from_tensor(flat, WeightFormat::AsStored)?.dequantize_all())
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A `rows × cols` tensor of seeded random values, quantized by candle to `dtype`.
    fn tensor(dtype: (GgmlDType, TensorType), rows: usize, cols: usize, seed: u64) -> Tensor {
        let mut rng = StdRng::seed_from_u64(seed);
        let values: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let dense = candle_core::Tensor::from_vec(values, (rows, cols), &candle_core::Device::Cpu).unwrap();
        let bytes = QTensor::quantize(&dense, dtype.0).unwrap().data().unwrap().to_vec();
        Tensor { name: "w".into(), dtype: dtype.1, shape: vec![rows, cols], bytes }
    }

    #[test]
    fn a_matrix_built_in_slices_is_the_matrix_built_whole() {
        let dtypes = [
            (GgmlDType::Q8_0, TensorType::Q8_0),
            (GgmlDType::Q4_1, TensorType::Q4_1),
            (GgmlDType::Q5_0, TensorType::Q5_0),
            (GgmlDType::Q4K, TensorType::Q4_K),
            (GgmlDType::Q6K, TensorType::Q6_K),
        ];
        let (rows, cols) = (160, 512);
        let x: Vec<f32> = (0..3 * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        for (i, dtype) in dtypes.into_iter().enumerate() {
            let whole = tensor(dtype, rows, cols, i as u64);
            let row_bytes = whole.bytes.len() / rows;
            let slice = |range: std::ops::Range<usize>| Tensor {
                shape: vec![range.len(), cols],
                bytes: whole.bytes[range.start * row_bytes..range.end * row_bytes].to_vec(),
                ..whole.clone()
            };
            for repack in [false, true] {
                let build = |t: Tensor| {
                    let m = Matrix::from_tensor(t, WeightFormat::AsStored)?;
                    Ok(if repack { m.repack() } else { m })
                };
                let sliced = Matrix::in_slices(rows, GROUP_ROWS, |range| build(slice(range))).unwrap();
                let expected = build(whole.clone()).unwrap();
                let what = format!("{:?}, repacked {repack}", dtype.1);
                assert_eq!(sliced.rows(), rows, "{what}");
                assert_eq!(sliced.bytes(), expected.bytes(), "{what}");
                assert_eq!(sliced.matmul(&x), expected.matmul(&x), "{what}");
                for n in [0, 63, 64, 150, rows - 1] {
                    assert_eq!(sliced.dequantize_row(n), expected.dequantize_row(n), "{what}, row {n}");
                }
            }
        }
    }
}
