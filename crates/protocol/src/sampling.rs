//! Sampling controls shared by `/v1/chat/completions` and `/v1/completions`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::chat::Stop;

/// How tokens are picked and when generation stops. Every field is optional; ranges are checked by
/// the server so that errors can name the field.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SamplingOptions {
    /// Sampling temperature in [0, 2]; 0 is greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Extension (vLLM, llama.cpp): sample from the `top_k` most likely tokens only; 0 or -1 disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// Extension (vLLM, llama.cpp): drop tokens less likely than `min_p` times the most likely one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f64>,
    /// Extension (vLLM, llama.cpp): > 1 discourages tokens already in the prompt or output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
    /// In [-2, 2]: positive values penalise tokens that already appeared in the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// In [-2, 2]: positive values penalise tokens by how often they already appeared in the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Token id (as a string key) → bias in [-100, 100] added to its logit; -100 bans the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<BTreeMap<String, f64>>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Up to 4 strings that end generation; never part of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Extension (vLLM, llama.cpp): keep generating past end-of-sequence tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
}
