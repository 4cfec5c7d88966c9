//! What a caller asks the engine for: tokens in, sampling settings, limits.

/// A validated generation request. The caller has already checked that
/// `prompt.len() + max_tokens` fits the model's context.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The prompt's token ids (never empty).
    pub prompt: Vec<u32>,
    /// Most tokens to generate (at least 1).
    pub max_tokens: usize,
    /// How to pick each token.
    pub sampling: SamplingParams,
    /// Tokens that end generation with [`crate::FinishReason::Stop`]; empty to ignore end-of-sequence.
    pub stop_tokens: Vec<u32>,
}

/// How to turn logits into a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 picks the most likely token; higher flattens the distribution.
    pub temperature: f32,
    /// Sample only from the smallest set of tokens whose probability reaches this mass (1 = all).
    pub top_p: f32,
    /// Seed for the request's own random stream; `None` draws one.
    pub seed: Option<u64>,
}

impl SamplingParams {
    /// Always the most likely token.
    pub const GREEDY: Self = Self { temperature: 0.0, top_p: 1.0, seed: None };
}
