//! Weight matrices applied to rows of activations: one projection ([`Linear`]), or several of the same
//! input computed together ([`Projections`]).

use std::sync::Arc;

use crate::quant::Matrix;

/// A weight matrix `[out, in]` applied to rows of activations, in the layout of its kernel.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Shared with a tied embedding table.
    weight: Arc<Matrix>,
}

impl Linear {
    /// Wraps a weight, moved into the fastest layout this CPU has for it.
    pub fn new(weight: Matrix) -> Self {
        Self { weight: Arc::new(weight.repack()) }
    }

    /// The weight, to share (a tied embedding looks its rows up here).
    pub fn weight(&self) -> &Arc<Matrix> {
        &self.weight
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight.rows()
    }

    /// Width of an input row.
    pub fn in_dim(&self) -> usize {
        self.weight.cols()
    }

    /// Bytes of weight data.
    pub fn bytes(&self) -> usize {
        self.weight.bytes()
    }

    /// `rows × in` → `rows × out`.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        self.weight.matmul(x)
    }
}

/// Several projections of the same input (Q/K/V, or gate/up). Consecutive parts whose weights stack (same
/// format and input width) run as one matmul, so the activations are quantized once and the threads
/// synchronise once; a Q4_K_M file's Q and K stack while its Q6_K V runs on its own.
#[derive(Debug)]
pub struct Projections {
    /// Stacked runs of parts, each with the output width of its parts.
    runs: Vec<(Matrix, Vec<usize>)>,
}

impl Projections {
    /// Groups `parts` into runs that stack.
    pub fn new(parts: Vec<Matrix>) -> Self {
        let mut runs: Vec<Vec<Matrix>> = Vec::new();
        for part in parts {
            match runs.last_mut() {
                Some(run) if run[0].stacks_with(&part) => run.push(part),
                _ => runs.push(vec![part]),
            }
        }
        let runs = runs
            .into_iter()
            .map(|mut run| {
                let widths = run.iter().map(Matrix::rows).collect();
                let stacked = match run.len() {
                    1 => run.remove(0),
                    _ => Matrix::stack(&run.iter().collect::<Vec<_>>()).expect("parts that stack"),
                };
                (stacked.repack(), widths)
            })
            .collect();
        Self { runs }
    }

    /// One matrix whose output rows are the parts, of widths `widths` in order (a fused `attn_qkv`).
    pub fn fused(matrix: Matrix, widths: Vec<usize>) -> Result<Self, crate::ModelError> {
        if widths.iter().sum::<usize>() != matrix.rows() {
            return Err(crate::ModelError::Invalid(format!(
                "a fused projection of {} rows does not split into {widths:?}",
                matrix.rows()
            )));
        }
        Ok(Self { runs: vec![(matrix.repack(), widths)] })
    }

    /// The output width of each part, in order.
    pub fn widths(&self) -> Vec<usize> {
        self.runs.iter().flat_map(|(_, widths)| widths.iter().copied()).collect()
    }

    /// The input widths of the parts' matrices, one per stacked run.
    pub fn in_dims(&self) -> Vec<usize> {
        self.runs.iter().map(|(m, _)| m.cols()).collect()
    }

    /// Bytes of weight data.
    pub fn bytes(&self) -> usize {
        self.runs.iter().map(|(m, _)| m.bytes()).sum()
    }

    /// One `rows × width` output per part, in order.
    pub fn forward(&self, x: &[f32]) -> Vec<Vec<f32>> {
        let mut outputs = Vec::new();
        for (matrix, widths) in &self.runs {
            let all = matrix.matmul(x);
            if widths.len() == 1 {
                outputs.push(all);
                continue;
            }
            let total = matrix.rows();
            let rows = all.len() / total;
            let first = outputs.len();
            outputs.extend(widths.iter().map(|w| Vec::with_capacity(rows * w)));
            for row in all.chunks_exact(total) {
                let mut start = 0;
                for (out, &w) in outputs[first..].iter_mut().zip(widths) {
                    out.extend_from_slice(&row[start..start + w]);
                    start += w;
                }
            }
        }
        outputs
    }
}
