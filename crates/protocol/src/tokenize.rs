//! `POST /tokenize` and `POST /detokenize`, as vLLM names and shapes them.

use serde::{Deserialize, Serialize};

use crate::chat::ChatMessage;

/// `POST /tokenize` body: either `prompt` (raw text) or `messages` (rendered with the chat template).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenizeRequest {
    /// The model id; the only chat model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Raw text, tokenized as `/v1/completions` would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A conversation, tokenized as `/v1/chat/completions` would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    /// With `prompt`: start with BOS when the model uses one (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_special_tokens: Option<bool>,
    /// With `messages`: end with the assistant turn's opening (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_generation_prompt: Option<bool>,
    /// With `messages`: extra variables for the chat template, as for chat completions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /tokenize` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenizeResponse {
    /// Number of tokens.
    pub count: usize,
    /// The model's context length in tokens.
    pub max_model_len: usize,
    /// The token ids.
    pub tokens: Vec<u32>,
}

/// `POST /detokenize` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DetokenizeRequest {
    /// The model id; the only chat model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Token ids to turn back into text.
    pub tokens: Vec<i64>,
}

/// `POST /detokenize` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DetokenizeResponse {
    /// The decoded text (control tokens dropped).
    pub prompt: String,
}
