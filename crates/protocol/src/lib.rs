//! OpenAI's and Anthropic's wire types, mirrored field for field.
//!
//! Field names are the wire names. Unknown request fields are accepted and ignored, because real
//! clients send extras. Numeric request fields are parsed wide (`i64`, `f64`) so that an
//! out-of-range value reaches validation, which can then name the field, instead of failing in serde.
//!
//! # Layout
//! - [`chat`] — `/v1/chat/completions` requests, responses and stream chunks.
//! - [`completions`] — `/v1/completions`, the legacy text completions.
//! - [`embeddings`] — `/v1/embeddings`.
//! - [`responses`] — OpenAI's Responses API: `/v1/responses`, its items and stored responses.
//! - [`messages`] — Anthropic's Messages API: `/v1/messages` and `count_tokens`.
//! - [`sampling`] — [`SamplingOptions`], the sampling fields both share.
//! - [`tokenize`] — vLLM's `/tokenize` and `/detokenize`.
//! - [`models`] — `/v1/models`.
//! - [`error`] — the one error body shape, `{"error":{"message","type","param","code"}}`.
#![warn(missing_docs)]

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod error;
pub mod messages;
pub mod models;
pub mod responses;
pub mod sampling;
pub mod tokenize;

pub use chat::*;
pub use completions::{Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, Prompt, TopLogprobs};
pub use embeddings::{Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage, EmbeddingVector};
pub use error::{ErrorBody, ErrorObject};
pub use models::{Capability, Model, ModelAction, ModelActionResult, ModelList, ModelState, ModelStatus};
pub use sampling::SamplingOptions;
pub use tokenize::{DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse};
