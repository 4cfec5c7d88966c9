//! Unquantized weights (f32, f16, bf16) times `f32` activations: each weight row is widened to `f32` once
//! and applied to every activation row.

use half::slice::HalfFloatSliceExt;

use super::Isa;
use crate::gguf::TensorType;
use crate::ops::dot;
use crate::parallel::{for_chunks, DisjointWrites};

/// A `rows × cols` matrix of f32, f16 or bf16 values, as stored (little-endian).
#[derive(Debug, Clone)]
pub struct DenseMatrix {
    pub(super) dtype: TensorType,
    pub(super) rows: usize,
    pub(super) cols: usize,
    data: Vec<u8>,
}

impl DenseMatrix {
    /// Takes `rows × cols` values of `dtype` (F32, F16 or BF16).
    pub fn from_bytes(dtype: TensorType, rows: usize, cols: usize, data: Vec<u8>) -> Self {
        let width = match dtype {
            TensorType::F32 => 4,
            TensorType::F16 | TensorType::BF16 => 2,
            other => panic!("{other} is not a dense type"),
        };
        assert_eq!(data.len(), rows * cols * width, "{dtype} data does not match the shape {rows}x{cols}");
        Self { dtype, rows, cols, data }
    }

    /// Stacks matrices of the same type and width into one; `None` otherwise.
    pub fn stack(parts: &[&DenseMatrix]) -> Option<Self> {
        let first = parts.first()?;
        if parts.iter().any(|p| p.dtype != first.dtype || p.cols != first.cols) {
            return None;
        }
        let data = parts.iter().map(|p| p.data.as_slice()).collect::<Vec<_>>().concat();
        Some(Self { dtype: first.dtype, rows: parts.iter().map(|p| p.rows).sum(), cols: first.cols, data })
    }

    /// Output width (weight rows).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Writes row `n` as `f32` values into `out` (`cols` long).
    #[inline(always)]
    fn row_into(&self, n: usize, out: &mut [f32]) {
        match self.dtype {
            TensorType::F32 => {
                let bytes = &self.data[n * self.cols * 4..][..self.cols * 4];
                for (v, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            TensorType::F16 => {
                let bytes = &self.data[n * self.cols * 2..][..self.cols * 2];
                let halves: Vec<half::f16> =
                    bytes.chunks_exact(2).map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]]))).collect();
                halves.convert_to_f32_slice(out);
            }
            _ => {
                let bytes = &self.data[n * self.cols * 2..][..self.cols * 2];
                for (v, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *v = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
                }
            }
        }
    }

    /// Row `row` as `f32` values.
    pub fn dequantize_row(&self, row: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.cols];
        self.row_into(row, &mut out);
        out
    }

    /// `x` (`m × cols`, row-major) times this matrix transposed: `m × rows`.
    pub fn matmul(&self, x: &[f32]) -> Vec<f32> {
        let m = x.len() / self.cols;
        let mut out = vec![0.0f32; m * self.rows];
        let cells = DisjointWrites::new(&mut out);
        let isa = Isa::detect();
        for_chunks(self.rows, |columns| {
            let mut row = vec![0.0f32; self.cols];
            for n in columns {
                #[cfg(target_arch = "x86_64")]
                if isa.avx2() {
                    // SAFETY: the CPU has AVX2 and FMA; only this thread writes column `n`.
                    unsafe { self.column_avx2(n, x, &mut row, &cells) };
                    continue;
                }
                let _ = isa;
                // SAFETY: only this thread writes column `n`.
                unsafe { self.column(n, x, &mut row, &cells) };
            }
        });
        out
    }

    /// [`Self::column`] compiled for AVX2, where its loops vectorise 8 wide.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn column_avx2(&self, n: usize, x: &[f32], row: &mut [f32], cells: &DisjointWrites<'_>) {
        // SAFETY: forwarded from the caller.
        unsafe { self.column(n, x, row, cells) }
    }

    /// Output column `n` for every activation row of `x`.
    ///
    /// # Safety
    /// No other thread writes column `n` of `cells`.
    #[inline(always)]
    unsafe fn column(&self, n: usize, x: &[f32], row: &mut [f32], cells: &DisjointWrites<'_>) {
        self.row_into(n, row);
        for (r, activations) in x.chunks_exact(self.cols).enumerate() {
            let cell = r * self.rows + n;
            // SAFETY: forwarded from the caller.
            unsafe { cells.slice(cell..cell + 1)[0] = dot(activations, row) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(dtype: TensorType, values: &[f32], rows: usize, cols: usize) -> DenseMatrix {
        let data = match dtype {
            TensorType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            TensorType::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes()).collect(),
            _ => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes()).collect(),
        };
        DenseMatrix::from_bytes(dtype, rows, cols, data)
    }

    #[test]
    fn dense_weights_multiply_as_their_widened_values() {
        let (rows, cols, m) = (5, 37, 3);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1001) as f32 / 500.0 - 1.0).collect();
        let x: Vec<f32> = (0..m * cols).map(|i| ((i * 104_729) % 999) as f32 / 333.0 - 1.5).collect();
        for dtype in [TensorType::F32, TensorType::F16, TensorType::BF16] {
            let matrix = matrix(dtype, &w, rows, cols);
            let got = matrix.matmul(&x);
            for n in 0..rows {
                let row = matrix.dequantize_row(n);
                for (a, b) in row.iter().zip(&w[n * cols..]) {
                    assert!((a - b).abs() <= b.abs() / 128.0, "{dtype} widens {b} to {a}");
                }
                for r in 0..m {
                    let exact: f32 = row.iter().zip(&x[r * cols..]).map(|(a, b)| a * b).sum();
                    let err = (got[r * rows + n] - exact).abs();
                    assert!(err <= 1e-4 * exact.abs().max(1.0), "{dtype} [{r},{n}]: {} vs {exact}", got[r * rows + n]);
                }
                let alone = matrix.matmul(&x[..cols]);
                assert_eq!(alone[n], got[n], "{dtype}: a row gives the same bits alone");
            }
        }
    }
}
