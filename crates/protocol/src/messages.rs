//! Anthropic's Messages API: `/v1/messages` and `/v1/messages/count_tokens`.

use serde::{Deserialize, Serialize};

/// `POST /v1/messages` body; `POST /v1/messages/count_tokens` takes the same without `max_tokens`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MessagesRequest {
    /// The model id, as listed by `/v1/models`.
    pub model: String,
    /// The conversation: alternating `user` and `assistant` turns.
    pub messages: Vec<InputMessage>,
    /// Upper bound on generated tokens; required by `/v1/messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// The system prompt: text, or text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    /// Strings that end the answer where they appear; the one that did is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Sampling temperature (0–1 in Anthropic's range; up to 2 is served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Sample from the `top_k` most likely tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Tools the model may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolDefinition>>,
    /// Whether and which tool the model must use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Extended thinking: `{"type": "enabled", "budget_tokens": N}` or `{"type": "disabled"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingConfig>,
    /// Caller's metadata (`user_id`); accepted and not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// One turn of `messages`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct InputMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// Text, or content blocks.
    pub content: Content,
}

/// Text, or a list of content blocks.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed blocks.
    Blocks(Vec<ContentBlock>),
}

/// A content block, in a request or a response.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool call the assistant made.
    ToolUse {
        /// `toolu_…`; a `tool_result` answers it by this id.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments, a JSON object.
        input: serde_json::Value,
    },
    /// The result of a tool call, in a `user` turn.
    ToolResult {
        /// The `tool_use` block this answers.
        tool_use_id: String,
        /// The result: text or text blocks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Content>,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// The model's reasoning before its answer.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// Anthropic's integrity signature; empty here.
        #[serde(default)]
        signature: String,
    },
    /// Any other block type (images, documents, server tools): not served.
    #[serde(other)]
    Unsupported,
}

/// One entry of `tools`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ToolDefinition {
    /// The tool's name.
    pub name: String,
    /// What the tool does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema of the tool's input (an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
    /// Absent or `custom` for a client tool; Anthropic's server tools name a versioned type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `tool_choice`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ToolChoice {
    /// `auto`, `any`, `tool` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tool to use, with `type` = `tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// At most one tool call per answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

/// `thinking`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ThinkingConfig {
    /// `enabled` or `disabled`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Tokens the reasoning may use; accepted, bounded by `max_tokens` here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<i64>,
}

/// The non-streaming response, and the `message` of the stream's `message_start`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Message {
    /// `msg_…`.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `assistant`.
    pub role: String,
    /// `thinking`, `text` and `tool_use` blocks, in the order the model wrote them.
    pub content: Vec<ContentBlock>,
    /// The model id that served the request.
    pub model: String,
    /// `end_turn`, `max_tokens`, `stop_sequence` or `tool_use`; null until the end of a stream.
    pub stop_reason: Option<String>,
    /// The stop sequence that ended the answer, when one did.
    pub stop_sequence: Option<String>,
    /// Token counts.
    pub usage: MessagesUsage,
}

/// `usage` of a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct MessagesUsage {
    /// Prompt tokens computed for this request.
    pub input_tokens: u32,
    /// Tokens generated.
    pub output_tokens: u32,
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cache_read_input_tokens: u32,
    /// Prompt tokens written to a cache on request; never, here.
    pub cache_creation_input_tokens: u32,
}

/// `POST /v1/messages/count_tokens` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenCount {
    /// Tokens the request's prompt holds.
    pub input_tokens: u32,
}

/// Anthropic's error body: `{"type":"error","error":{"type","message"}}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ErrorResponse {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` of an [`ErrorResponse`].
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `not_found_error`, `rate_limit_error`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// What is wrong.
    pub message: String,
}
