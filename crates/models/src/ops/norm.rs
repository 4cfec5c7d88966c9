//! Root-mean-square normalisation.

use super::dot;

/// Root-mean-square normalisation with a learned scale.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    /// A norm with this scale vector and epsilon.
    pub fn new(weight: Vec<f32>, eps: f32) -> Self {
        Self { weight, eps }
    }

    /// Width of the rows it normalises.
    pub fn width(&self) -> usize {
        self.weight.len()
    }

    /// Bytes of weight data.
    pub fn bytes(&self) -> usize {
        self.weight.len() * 4
    }

    /// Normalises each row of `x` (rows of the scale's width).
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let dim = self.weight.len();
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(dim) {
            let mean_square = dot(row, row) / dim as f32;
            let scale = 1.0 / (mean_square + self.eps).sqrt();
            out.extend(row.iter().zip(&self.weight).map(|(v, w)| v * scale * w));
        }
        out
    }
}
