//! Rotary position embeddings.

/// Rotary position embedding on adjacent pairs (GGUF's llama layout), with a table for every position.
#[derive(Debug)]
pub struct Rope {
    /// `[position][pair]` cosines, then sines.
    cos: Vec<f32>,
    sin: Vec<f32>,
    pairs: usize,
}

impl Rope {
    /// A table for `positions` positions of a `rotary_dim`-wide head with base `theta`.
    pub fn new(rotary_dim: usize, theta: f32, positions: usize) -> Self {
        let pairs = rotary_dim / 2;
        let mut cos = Vec::with_capacity(positions * pairs);
        let mut sin = Vec::with_capacity(positions * pairs);
        for p in 0..positions {
            for i in 0..pairs {
                let freq = 1.0 / (theta as f64).powf(2.0 * i as f64 / rotary_dim as f64);
                let angle = p as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self { cos, sin, pairs }
    }

    /// Positions the table covers.
    pub fn positions(&self) -> usize {
        self.cos.len() / self.pairs.max(1)
    }

    /// Rotates every head of one token's row `x` (heads of `head_dim`) to position `pos`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        let cos = &self.cos[pos * self.pairs..(pos + 1) * self.pairs];
        let sin = &self.sin[pos * self.pairs..(pos + 1) * self.pairs];
        for head in x.chunks_exact_mut(head_dim) {
            for i in 0..self.pairs {
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * cos[i] - b * sin[i];
                head[2 * i + 1] = a * sin[i] + b * cos[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::dot;

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let rope = Rope::new(8, 10000.0, 16);
        let mut x: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.5).collect();
        let original = x.clone();
        rope.apply(&mut x, 8, 0);
        assert_eq!(x, original);
        rope.apply(&mut x, 8, 7);
        assert!((dot(&x, &x) - dot(&original, &original)).abs() < 1e-4);
        assert_ne!(x, original);
    }
}
