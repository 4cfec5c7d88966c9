//! Logits to a token: bias, penalties, temperature, filters, a seeded draw, and log-probabilities.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use hearth_models::ops::{exp, log_sum_exp};

use crate::{SamplingParams, TokenConstraint};

/// A bias at or below this bans the token outright, as OpenAI's `logit_bias` of -100 does.
const BAN: f32 = -100.0;

/// One sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The token id.
    pub id: u32,
    /// Natural-log probability the model gave it, before bias, penalties, temperature and filters.
    pub logprob: f32,
    /// The most likely tokens under the same distribution, most likely first.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// Picks tokens for one sequence; owns that sequence's random stream and token counts, so a seeded
/// request samples the same tokens whatever else shares its batch.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Times each token was generated so far, for the presence, frequency and repetition penalties.
    generated: HashMap<u32, u32>,
    /// The prompt's distinct tokens; filled only when a repetition penalty applies.
    prompt: HashSet<u32>,
    /// Reused buffer for adjusted logits.
    scratch: Vec<f32>,
}

impl Sampler {
    /// A sampler for choice `choice` of a request with `prompt`; choices of a seeded request get
    /// distinct but reproducible streams.
    pub fn new(params: SamplingParams, prompt: &[u32], choice: usize) -> Self {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed.wrapping_add((choice as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))),
            None => StdRng::from_os_rng(),
        };
        let prompt = if params.repetition_penalty != 1.0 { prompt.iter().copied().collect() } else { HashSet::new() };
        Self { params, rng, generated: HashMap::new(), prompt, scratch: Vec::new() }
    }

    /// Picks the next token and records it for the penalties.
    pub fn sample(&mut self, logits: &[f32]) -> Sampled {
        self.sample_within(logits, None).expect("no constraint, no mask error")
    }

    /// [`Sampler::sample`] among the tokens `constraint` allows with `remaining` tokens left, and the time
    /// the mask took; fails when the constraint cannot say.
    pub fn sample_constrained(
        &mut self,
        logits: &[f32],
        constraint: &mut dyn TokenConstraint,
        remaining: usize,
    ) -> Result<(Sampled, Duration), String> {
        let mut masked = Duration::ZERO;
        let sampled = self.sample_within(logits, Some((constraint, remaining, &mut masked)))?;
        Ok((sampled, masked))
    }

    fn sample_within(
        &mut self,
        logits: &[f32],
        constraint: Option<(&mut dyn TokenConstraint, usize, &mut Duration)>,
    ) -> Result<Sampled, String> {
        let log_total = log_sum_exp(logits);
        let top_logprobs =
            top_n(logits, self.params.top_logprobs).into_iter().map(|i| (i as u32, logits[i] - log_total)).collect();
        let mut adjusted = std::mem::take(&mut self.scratch);
        let mut changed = self.adjust(logits, &mut adjusted);
        if let Some((constraint, remaining, masked)) = constraint {
            let started = Instant::now();
            if !changed {
                adjusted.clear();
                adjusted.extend_from_slice(logits);
                changed = true;
            }
            let result = constraint.mask(&mut adjusted, remaining);
            *masked = started.elapsed();
            if let Err(e) = result {
                self.scratch = adjusted;
                return Err(e);
            }
        }
        let scores = if changed { adjusted.as_slice() } else { logits };
        let id = if self.params.temperature <= 0.0 || self.params.top_k == 1 {
            argmax(scores)
        } else {
            draw(scores, &self.params, &mut self.rng)
        };
        self.scratch = adjusted;
        *self.generated.entry(id as u32).or_default() += 1;
        Ok(Sampled { id: id as u32, logprob: logits[id] - log_total, top_logprobs })
    }

    /// Writes the biased and penalised logits into `out`; returns false (leaving `out` alone) when
    /// nothing applies.
    fn adjust(&self, logits: &[f32], out: &mut Vec<f32>) -> bool {
        let p = &self.params;
        let seen_any = !self.generated.is_empty() || !self.prompt.is_empty();
        let penalised = (seen_any && p.repetition_penalty != 1.0)
            || (!self.generated.is_empty() && (p.presence_penalty != 0.0 || p.frequency_penalty != 0.0));
        if p.logit_bias.is_empty() && !penalised {
            return false;
        }
        out.clear();
        out.extend_from_slice(logits);
        for &(id, bias) in &p.logit_bias {
            if let Some(l) = out.get_mut(id as usize) {
                *l = if bias <= BAN { f32::NEG_INFINITY } else { *l + bias };
            }
        }
        if p.repetition_penalty != 1.0 {
            let seen = self.prompt.iter().chain(self.generated.keys().filter(|t| !self.prompt.contains(t)));
            for &id in seen {
                if let Some(l) = out.get_mut(id as usize) {
                    *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
                }
            }
        }
        for (&id, &count) in &self.generated {
            if let Some(l) = out.get_mut(id as usize) {
                *l -= p.presence_penalty + p.frequency_penalty * count as f32;
            }
        }
        true
    }
}

/// Draws from `softmax(scores / temperature)` restricted by `top_k`, then `top_p`, then `min_p`.
fn draw(scores: &[f32], params: &SamplingParams, rng: &mut StdRng) -> usize {
    let mut candidates: Vec<(usize, f32)> =
        scores.iter().enumerate().filter(|(_, s)| s.is_finite()).map(|(i, &s)| (i, s)).collect();
    if candidates.is_empty() {
        return argmax(scores);
    }
    let by_score = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if params.top_k > 0 && params.top_k < candidates.len() {
        candidates.select_nth_unstable_by(params.top_k - 1, by_score);
        candidates.truncate(params.top_k);
    }
    let max = candidates.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0 / params.temperature;
    for c in &mut candidates {
        let x = (c.1 - max) * inv_t;
        c.1 = if x < -87.0 { 0.0 } else { exp(x) };
    }
    let mut mass: f32 = candidates.iter().map(|c| c.1).sum();
    if params.top_p < 1.0 {
        candidates.sort_unstable_by(by_score);
        let target = params.top_p * mass;
        let mut kept = 0.0;
        let n = candidates
            .iter()
            .take_while(|c| {
                let before = kept;
                kept += c.1;
                before < target
            })
            .count();
        candidates.truncate(n.max(1));
    }
    if params.min_p > 0.0 {
        // The most likely token has weight exp(0) = 1, so the threshold is `min_p` itself.
        candidates.retain(|c| c.1 >= params.min_p);
    }
    mass = candidates.iter().map(|c| c.1).sum();
    let mut threshold = rng.random::<f32>() * mass;
    for &(i, p) in &candidates {
        if threshold < p {
            return i;
        }
        threshold -= p;
    }
    candidates.last().map_or(0, |c| c.0)
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

/// Indices of the `n` largest values, largest first, lowest index first on ties.
fn top_n(values: &[f32], n: usize) -> Vec<usize> {
    let mut best: Vec<usize> = Vec::with_capacity(n + 1);
    if n == 0 {
        return best;
    }
    for (i, &v) in values.iter().enumerate() {
        if best.len() == n && v <= values[best[n - 1]] {
            continue;
        }
        let at = best.partition_point(|&j| values[j] >= v);
        best.insert(at, i);
        best.truncate(n);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_p: f32, seed: u64) -> SamplingParams {
        SamplingParams { temperature, top_p, seed: Some(seed), ..SamplingParams::default() }
    }

    fn sampler(params: SamplingParams) -> Sampler {
        Sampler::new(params, &[], 0)
    }

    fn draws(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
        (0..n).map(|_| s.sample(logits).id).collect()
    }

    #[test]
    fn greedy_takes_the_largest_logit_with_its_logprob() {
        let sampled = sampler(SamplingParams::GREEDY).sample(&[0.0, 2.0, 1.0]);
        assert_eq!(sampled.id, 1);
        let expected = 2.0 - (1.0f32 + 2.0f32.exp() + 1.0f32.exp()).ln();
        assert!((sampled.logprob - expected).abs() < 1e-6);
    }

    #[test]
    fn top_logprobs_are_sorted_and_start_with_the_greedy_token() {
        let logits = [0.5, 3.0, -1.0, 3.0, 2.0];
        let sampled = sampler(SamplingParams { top_logprobs: 3, ..SamplingParams::GREEDY }).sample(&logits);
        let ids: Vec<u32> = sampled.top_logprobs.iter().map(|t| t.0).collect();
        assert_eq!(ids, [1, 3, 4]);
        assert_eq!(sampled.id, 1);
        assert_eq!(sampled.top_logprobs[0].1, sampled.logprob);
        let total: f32 = logits.iter().map(|l| l.exp()).sum();
        assert!((sampled.top_logprobs[2].1 - (2.0 - total.ln())).abs() < 1e-5);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |seed| draws(&mut sampler(params(1.0, 1.0, seed)), &logits, 20);
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn choices_of_one_seeded_request_differ() {
        let logits = [0.0f32; 64];
        let choice = |c| draws(&mut Sampler::new(params(1.0, 1.0, 3), &[], c), &logits, 10);
        assert_eq!(choice(1), choice(1));
        assert_ne!(choice(0), choice(1));
    }

    #[test]
    fn tiny_top_p_keeps_only_the_most_likely_token() {
        let mut s = sampler(params(1.5, 0.01, 3));
        assert!(draws(&mut s, &[1.0, 3.0, 2.9, 0.0], 50).iter().all(|&id| id == 1));
    }

    #[test]
    fn top_k_keeps_only_the_k_most_likely_tokens() {
        let mut s = sampler(SamplingParams { top_k: 2, ..params(2.0, 1.0, 4) });
        let seen: HashSet<u32> = draws(&mut s, &[1.0, 3.0, 2.9, 0.0, 2.8], 300).into_iter().collect();
        assert_eq!(seen, HashSet::from([1, 2]));
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let logits = [0.0, 5.0, 4.5, 1.0];
        let mut s = sampler(SamplingParams { min_p: 0.1, ..params(1.0, 1.0, 5) });
        let seen: HashSet<u32> = draws(&mut s, &logits, 300).into_iter().collect();
        assert_eq!(seen, HashSet::from([1, 2]));
    }

    #[test]
    fn a_ban_removes_the_token_and_a_bias_promotes_one() {
        let logits = [1.0, 5.0, 4.0];
        let banned = SamplingParams { logit_bias: vec![(1, -100.0)], ..SamplingParams::GREEDY };
        assert_eq!(sampler(banned.clone()).sample(&logits).id, 2);
        let mut s = sampler(SamplingParams { temperature: 2.0, seed: Some(1), ..banned });
        assert!(!draws(&mut s, &logits, 200).contains(&1));
        let promoted = SamplingParams { logit_bias: vec![(0, 10.0)], ..SamplingParams::GREEDY };
        assert_eq!(sampler(promoted).sample(&logits).id, 0);
    }

    #[test]
    fn frequency_penalty_grows_with_each_repeat() {
        let logits = [2.0, 1.5, 0.0];
        let mut s = sampler(SamplingParams { frequency_penalty: 0.3, ..SamplingParams::GREEDY });
        // Token 0 leads by 0.5: it wins twice (penalty 0.3, then 0.6 > 0.5), then token 1 takes over.
        assert_eq!(draws(&mut s, &logits, 3), [0, 0, 1]);
    }

    #[test]
    fn presence_penalty_applies_once_per_token() {
        let logits = [2.0, 1.5, 0.0];
        let mut s = sampler(SamplingParams { presence_penalty: 0.4, ..SamplingParams::GREEDY });
        assert_eq!(draws(&mut s, &logits, 4), [0, 0, 0, 0]);
        let mut s = sampler(SamplingParams { presence_penalty: 0.6, ..SamplingParams::GREEDY });
        assert_eq!(draws(&mut s, &logits, 3), [0, 1, 0]);
    }

    #[test]
    fn repetition_penalty_covers_prompt_tokens() {
        let logits = [2.0, 1.5, -1.0];
        let p = SamplingParams { repetition_penalty: 2.0, ..SamplingParams::GREEDY };
        assert_eq!(Sampler::new(p.clone(), &[0], 0).sample(&logits).id, 1);
        assert_eq!(Sampler::new(p, &[2], 0).sample(&logits).id, 0);
    }

    #[test]
    fn logprobs_ignore_bias_and_penalties() {
        let logits = [1.0, 2.0];
        let plain = sampler(SamplingParams { top_logprobs: 2, ..SamplingParams::GREEDY }).sample(&logits);
        let biased = sampler(SamplingParams { logit_bias: vec![(0, 5.0)], top_logprobs: 2, ..SamplingParams::GREEDY })
            .sample(&logits);
        assert_eq!(biased.id, 0);
        assert_eq!(plain.top_logprobs, biased.top_logprobs);
    }

    #[test]
    fn temperature_sampling_follows_the_distribution() {
        let mut s = sampler(params(1.0, 1.0, 11));
        let logits = [0.0, (3.0f32).ln()];
        let ones = draws(&mut s, &logits, 4000).iter().filter(|&&id| id == 1).count();
        assert!((2800..3200).contains(&ones), "expected ~75% of draws, got {ones}/4000");
    }
}
