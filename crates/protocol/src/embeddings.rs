//! `/v1/embeddings`: request and response.

use serde::{Deserialize, Serialize};

use crate::completions::Prompt;

/// `POST /v1/embeddings` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EmbeddingRequest {
    /// The embedding model's id, as listed by `/v1/models`.
    pub model: String,
    /// What to embed: text, several texts, token ids, or several lists of token ids.
    pub input: Prompt,
    /// `float` (default) or `base64` (little-endian f32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// Requested embedding length; only the model's own length is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<i64>,
    /// End-user id; accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `POST /v1/embeddings` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EmbeddingList {
    /// Always `list`.
    pub object: String,
    /// One entry per input, in input order.
    pub data: Vec<Embedding>,
    /// The model id that served the request.
    pub model: String,
    /// Token counts.
    pub usage: EmbeddingUsage,
}

/// One input's embedding.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    /// Position of the input.
    pub index: u32,
    /// The vector, as numbers or as base64.
    pub embedding: EmbeddingVector,
}

/// An embedding in the requested encoding.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`: the little-endian f32 bytes, base64-encoded.
    Base64(String),
}

/// Token counts of an embedding request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct EmbeddingUsage {
    /// Tokens in all inputs.
    pub prompt_tokens: u32,
    /// Equal to `prompt_tokens`.
    pub total_tokens: u32,
}
