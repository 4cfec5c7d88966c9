//! What a caller asks the engine for: tokens in, sampling settings, limits.

/// A validated generation request. The caller has already checked that
/// `prompt.len() + max_tokens` fits the model's context.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The prompt's token ids (never empty).
    pub prompt: Vec<u32>,
    /// Most tokens to generate per choice (at least 1).
    pub max_tokens: usize,
    /// Independent completions of the one prompt (at least 1); the prompt is prefilled once for all.
    pub n: usize,
    /// How to pick each token.
    pub sampling: SamplingParams,
    /// Tokens that end generation with [`crate::FinishReason::Stop`]; empty to ignore end-of-sequence.
    pub stop_tokens: Vec<u32>,
    /// What the output must match (structured output); `None` leaves it free.
    pub constraint: Option<crate::Constraint>,
}

/// How to turn logits into a token. Bias and penalties apply first, then temperature, then the
/// `top_k`, `top_p` and `min_p` filters.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 picks the most likely token; higher flattens the distribution.
    pub temperature: f32,
    /// Sample only from the smallest set of tokens whose probability reaches this mass (1 = all).
    pub top_p: f32,
    /// Sample only from the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Drop tokens less likely than `min_p` times the most likely one (0 = none).
    pub min_p: f32,
    /// Divides positive logits (multiplies negative ones) of tokens seen in the prompt or output (1 = off).
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of every token already generated.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per time it was already generated.
    pub frequency_penalty: f32,
    /// Added to the logits of the given token ids.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed for the request's own random stream; `None` draws one.
    pub seed: Option<u64>,
    /// How many of the most likely alternatives to report with each token's log-probability.
    pub top_logprobs: usize,
}

impl SamplingParams {
    /// Always the most likely token.
    pub const GREEDY: Self = Self {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        min_p: 0.0,
        repetition_penalty: 1.0,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
        logit_bias: Vec::new(),
        seed: None,
        top_logprobs: 0,
    };
}

impl Default for SamplingParams {
    /// OpenAI's defaults: temperature 1, no filters, no penalties.
    fn default() -> Self {
        Self { temperature: 1.0, ..Self::GREEDY }
    }
}
