//! Logits to a token.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use hearth_models::layers::exp;

use crate::SamplingParams;

/// Picks tokens for one sequence; owns that sequence's random stream, so a seeded request samples the
/// same tokens whatever else shares its batch.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded from `params.seed`, or from entropy when it is `None`.
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self { params, rng }
    }

    /// Picks the next token; returns it with its log-probability under the unmodified logits.
    pub fn sample(&mut self, logits: &[f32]) -> (u32, f32) {
        let id = if self.params.temperature <= 0.0 { argmax(logits) } else { self.draw(logits) };
        (id as u32, log_softmax_at(logits, id))
    }

    fn draw(&mut self, logits: &[f32]) -> usize {
        let inv_t = 1.0 / self.params.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(usize, f32)> =
            logits.iter().enumerate().map(|(i, &l)| (i, exp(((l - max) * inv_t).max(-87.0)))).collect();
        let total: f32 = probs.iter().map(|p| p.1).sum();
        let mut mass = total;
        if self.params.top_p < 1.0 {
            probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let target = self.params.top_p * total;
            let mut kept = 0.0;
            let keep = probs.iter().take_while(|p| {
                let before = kept;
                kept += p.1;
                before < target
            });
            let n = keep.count().max(1);
            probs.truncate(n);
            mass = probs.iter().map(|p| p.1).sum();
        }
        let mut threshold = self.rng.random::<f32>() * mass;
        for &(i, p) in &probs {
            if threshold < p {
                return i;
            }
            threshold -= p;
        }
        probs.last().map_or(0, |p| p.0)
    }
}

/// Index of the largest value; the lowest index on ties.
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// `log softmax(logits)[id]`.
fn log_softmax_at(logits: &[f32], id: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| exp((l - max).max(-87.0))).sum();
    logits[id] - max - sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_p: f32, seed: u64) -> SamplingParams {
        SamplingParams { temperature, top_p, seed: Some(seed) }
    }

    #[test]
    fn greedy_takes_the_largest_logit_with_its_logprob() {
        let (id, logprob) = Sampler::new(SamplingParams::GREEDY).sample(&[0.0, 2.0, 1.0]);
        assert_eq!(id, 1);
        let expected = 2.0 - (1.0f32 + 2.0f32.exp() + 1.0f32.exp()).ln();
        assert!((logprob - expected).abs() < 1e-6);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(params(1.0, 1.0, seed));
            (0..20).map(|_| s.sample(&logits).0).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn tiny_top_p_keeps_only_the_most_likely_token() {
        let mut s = Sampler::new(params(1.5, 0.01, 3));
        assert!((0..50).all(|_| s.sample(&[1.0, 3.0, 2.9, 0.0]).0 == 1));
    }

    #[test]
    fn temperature_sampling_follows_the_distribution() {
        let mut s = Sampler::new(params(1.0, 1.0, 11));
        let logits = [0.0, (3.0f32).ln()];
        let ones = (0..4000).filter(|_| s.sample(&logits).0 == 1).count();
        assert!((2800..3200).contains(&ones), "expected ~75% of draws, got {ones}/4000");
    }
}
