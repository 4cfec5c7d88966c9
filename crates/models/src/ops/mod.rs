//! The operations every architecture shares, over plain row-major `f32` slices: attention through the
//! paged KV pool, normalisation, rotary positions and activations. Each is a short loop (with an AVX2
//! version where it matters), so no op allocates a tensor, and attention reads the [`crate::KvPool`] in
//! place: no `cat`, and grouped-query heads index their shared key/value head instead of copying it.
//!
//! # Layout
//! - [`attention`] — causal grouped-query attention for a ragged batch, through block tables.
//! - [`norm`] — RMSNorm.
//! - [`rope`] — rotary position embeddings.
//! - [`activation`] — SwiGLU, `exp`, softmax and log-sum-exp.

pub mod activation;
pub mod attention;
pub mod norm;
pub mod rope;

pub use activation::{exp, gelu_glu, log_sum_exp, softmax_in_place, swiglu};
pub use attention::{attention, AttentionSeq, HeadLayout, SeqKv};
pub use norm::RmsNorm;
pub use rope::{Rope, RopeSpec, RopeStyle};

/// `x += y`, elementwise.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Dot product with eight independent accumulators, so the compiler can vectorise it.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `y += a * x`.
#[inline(always)]
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum_for_odd_lengths() {
        let a: Vec<f32> = (0..13).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), a.iter().map(|x| x * x).sum::<f32>());
    }
}
