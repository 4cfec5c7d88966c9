//! Rotary position embeddings.

/// Which dimensions of a head rotate together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(2i, 2i + 1)`: GGUF's llama layout (the converter permutes Q and K to it).
    Adjacent,
    /// Pairs `(i, i + d/2)`: GPT-NeoX's layout, used as stored by Qwen, Gemma and Phi-3.
    Halves,
}

/// How a family rotates positions.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeSpec {
    /// Which dimensions rotate together.
    pub style: RopeStyle,
    /// The frequency base.
    pub theta: f32,
    /// Leading dimensions of each head that rotate (the rest pass through).
    pub rotary_dim: usize,
    /// Per-pair divisors of the frequencies (Llama 3.1's `rope_freqs`, Phi-3's long/short factors).
    pub factors: Option<Vec<f32>>,
    /// Linear position scaling: frequencies times this (1 = none).
    pub freq_scale: f32,
    /// Cosines and sines times this (LongRoPE's attention factor; 1 = none).
    pub attn_factor: f32,
}

impl RopeSpec {
    /// Plain rotary embeddings of `rotary_dim` dimensions with base `theta`.
    pub fn plain(style: RopeStyle, theta: f32, rotary_dim: usize) -> Self {
        Self { style, theta, rotary_dim, factors: None, freq_scale: 1.0, attn_factor: 1.0 }
    }
}

/// Rotary position embedding with a table for every position, as GGML computes it (no YaRN
/// extrapolation): pair `i` at position `p` turns by `freq_scale · p · θ^(-2i/d) / factor_i`.
#[derive(Debug)]
pub struct Rope {
    /// `[position][pair]` cosines, then sines.
    cos: Vec<f32>,
    sin: Vec<f32>,
    pairs: usize,
    style: RopeStyle,
}

impl Rope {
    /// A table for `positions` positions.
    pub fn new(spec: &RopeSpec, positions: usize) -> Self {
        let pairs = spec.rotary_dim / 2;
        let mut cos = Vec::with_capacity(positions * pairs);
        let mut sin = Vec::with_capacity(positions * pairs);
        let freqs: Vec<f64> = (0..pairs)
            .map(|i| {
                let factor = spec.factors.as_ref().and_then(|f| f.get(i)).map_or(1.0, |&f| f64::from(f));
                f64::from(spec.freq_scale)
                    / (f64::from(spec.theta)).powf(2.0 * i as f64 / spec.rotary_dim as f64)
                    / factor
            })
            .collect();
        let scale = f64::from(spec.attn_factor);
        for p in 0..positions {
            for freq in &freqs {
                let angle = p as f64 * freq;
                cos.push((angle.cos() * scale) as f32);
                sin.push((angle.sin() * scale) as f32);
            }
        }
        Self { cos, sin, pairs, style: spec.style }
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
                let (ia, ib) = match self.style {
                    RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                    RopeStyle::Halves => (i, i + self.pairs),
                };
                let (a, b) = (head[ia], head[ib]);
                head[ia] = a * cos[i] - b * sin[i];
                head[ib] = a * sin[i] + b * cos[i];
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
        let rope = Rope::new(&RopeSpec::plain(RopeStyle::Adjacent, 10000.0, 8), 16);
        let mut x: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.5).collect();
        let original = x.clone();
        rope.apply(&mut x, 8, 0);
        assert_eq!(x, original);
        rope.apply(&mut x, 8, 7);
        assert!((dot(&x, &x) - dot(&original, &original)).abs() < 1e-4);
        assert_ne!(x, original);
    }

    #[test]
    fn halves_rotate_the_pairs_a_half_head_apart() {
        let spec = RopeSpec { factors: Some(vec![1.0, 2.0]), ..RopeSpec::plain(RopeStyle::Halves, 100.0, 4) };
        let rope = Rope::new(&spec, 4);
        let mut x = [1.0, 0.0, 0.0, 0.0];
        rope.apply(&mut x, 4, 3);
        // Pair (0, 2) turns by 3 radians; pair (1, 3) by 3 / 100^(1/2) / 2.
        assert!((x[0] - 3f32.cos()).abs() < 1e-6 && (x[2] - 3f32.sin()).abs() < 1e-6, "{x:?}");
        let mut y = [0.0, 1.0, 0.0, 0.0];
        rope.apply(&mut y, 4, 3);
        let angle = 3.0f32 / 10.0 / 2.0;
        assert!((y[1] - angle.cos()).abs() < 1e-6 && (y[3] - angle.sin()).abs() < 1e-6, "{y:?}");
    }
}
