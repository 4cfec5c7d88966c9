//! `/v1/completions` (legacy text completions): request, response and stream chunk.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::chat::{FinishReason, StreamOptions, Usage};
use crate::sampling::SamplingOptions;

/// `POST /v1/completions` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CompletionRequest {
    /// The model id, as listed by `/v1/models`.
    pub model: String,
    /// What to complete: text, several texts, token ids, or several lists of token ids.
    pub prompt: Prompt,
    /// Text after the completion (fill-in-the-middle); not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Upper bound on generated tokens per choice; 16 when absent, as OpenAI does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// Sampling, penalties and stop conditions, shared with `/v1/chat/completions`.
    #[serde(flatten)]
    pub sampling: SamplingOptions,
    /// Choices per prompt (1–16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
    /// Server-side candidates per choice; only `best_of` = `n` is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<i64>,
    /// Prepend the prompt to each choice's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// Return token log-probabilities with this many alternatives per token (0–20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<i64>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Options that only apply when `stream` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
}

/// `prompt`: the four shapes OpenAI accepts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One text.
    Text(String),
    /// Several texts, one choice set each.
    Texts(Vec<String>),
    /// One prompt as token ids.
    Tokens(Vec<i64>),
    /// Several prompts as token ids.
    TokenLists(Vec<Vec<i64>>),
}

/// The non-streaming response, and (with `object` = `text_completion` too) each stream chunk.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Completion {
    /// `cmpl-…`, the same on every chunk of a response.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id that served the request.
    pub model: String,
    /// Choices, indexed `prompt × n + choice`; empty on the final usage chunk.
    pub choices: Vec<CompletionChoice>,
    /// Token counts; on a stream, only on the final usage chunk when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One choice of a [`Completion`], or its increment in a chunk.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CompletionChoice {
    /// Position in `choices`.
    pub index: u32,
    /// The generated text (the increment, when streaming).
    pub text: String,
    /// Log-probabilities, when asked for.
    pub logprobs: Option<CompletionLogprobs>,
    /// Why generation ended; null until the choice's last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// The legacy log-probability shape: parallel lists, one entry per token.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct CompletionLogprobs {
    /// Each token as text.
    pub tokens: Vec<String>,
    /// Natural log of each token's probability.
    pub token_logprobs: Vec<Option<f64>>,
    /// The most likely alternatives at each position, token text → log-probability.
    pub top_logprobs: Vec<Option<TopLogprobs>>,
    /// Where each token starts in the choice's text, in characters.
    pub text_offset: Vec<u32>,
}

/// Token text → log-probability, kept in the order given (most likely first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopLogprobs(pub Vec<(String, f64)>);

impl Serialize for TopLogprobs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (token, logprob) in &self.0 {
            map.serialize_entry(token, logprob)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for TopLogprobs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = TopLogprobs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of token text to log-probability")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLogprobs, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(TopLogprobs(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}
