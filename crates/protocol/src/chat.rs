//! `/v1/chat/completions`: request, response and stream chunk.

use serde::{Deserialize, Serialize};

use crate::sampling::SamplingOptions;

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatCompletionRequest {
    /// The model id, as listed by `/v1/models`.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Deprecated alias of `max_completion_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// Upper bound on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<i64>,
    /// Sampling, penalties and stop conditions, shared with `/v1/completions`.
    #[serde(flatten)]
    pub sampling: SamplingOptions,
    /// Return the log-probability of each generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// With `logprobs`, how many most likely alternatives to return per token (0–20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i64>,
    /// Number of choices to generate (1–16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Options that only apply when `stream` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Output format: `text`, `json_object` or `json_schema`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Whether and which function the model must call: `none`, `auto`, `required` or a named function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several functions in one answer (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Deprecated form of `tools`; not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<serde_json::Value>>,
    /// Extra variables for the chat template (vLLM's extension), e.g. `{"enable_thinking": false}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One entry of `tools`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function the model may call.
    pub function: FunctionDefinition,
}

/// A function the model may call.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FunctionDefinition {
    /// The function's name: letters, digits, `_` and `-`, at most 64.
    pub name: String,
    /// What the function does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema of the function's arguments (an object); none means no arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// Whether the arguments must follow the schema exactly; they always do here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: a mode, or one named function.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(String),
    /// `{"type": "function", "function": {"name": …}}`.
    Named(NamedToolChoice),
}

/// `tool_choice` naming one function.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NamedToolChoice {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function to call.
    pub function: FunctionName,
}

/// A function, by name.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FunctionName {
    /// The function's name.
    pub name: String,
}

/// A function call the assistant made, in a response or in the history.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ToolCall {
    /// `call_…`; a `tool` message answers it by this id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
}

/// The function of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments, as a JSON text.
    pub arguments: String,
}

/// A streamed piece of a tool call: the first carries `id`, `type` and the name, later ones argument text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ToolCallDelta {
    /// Which call of the message this piece belongs to.
    pub index: u32,
    /// `call_…`, on the call's first piece only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, on the call's first piece only.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The name and/or the next part of the arguments.
    pub function: FunctionCallDelta,
}

/// The function part of a [`ToolCallDelta`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct FunctionCallDelta {
    /// The name, on the call's first piece only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The next part of the arguments' JSON text; the parts concatenate to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// `response_format`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The schema, with `type` = `json_schema`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<JsonSchemaFormat>,
}

/// `response_format.json_schema`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct JsonSchemaFormat {
    /// The format's name.
    pub name: String,
    /// What the format is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema the output must validate against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// Whether the schema must be followed exactly; it always is here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `stop`: one string or a list of strings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

impl Stop {
    /// The stop strings as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    /// Send one more chunk, with empty `choices`, carrying the request's `usage`.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// One message of `messages`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text, or a list of content parts.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The calls an `assistant` message made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message of `role` with plain `text`.
    pub fn text(role: &str, text: String) -> Self {
        Self {
            role: role.into(),
            content: Some(MessageContent::Text(text)),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        }
    }
}

/// `content`: a string or a list of typed parts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Typed parts; only `{"type":"text"}` is served.
    Parts(Vec<ContentPart>),
}

/// One typed content part.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ContentPart {
    /// The part type, e.g. `text` or `image_url`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural end: end-of-turn token or a stop string.
    Stop,
    /// The token limit was reached.
    Length,
    /// The message ends with function calls.
    ToolCalls,
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Usage {
    /// Tokens in the rendered prompt.
    pub prompt_tokens: u32,
    /// Tokens generated, summed over choices.
    pub completion_tokens: u32,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: u32,
    /// How the prompt tokens were served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose keys and values came from the prefix cache instead of being computed.
    pub cached_tokens: u32,
}

/// The non-streaming response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id that served the request.
    pub model: String,
    /// One entry per choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
}

/// One choice of a [`ChatCompletion`].
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatChoice {
    /// Position in `choices`.
    pub index: u32,
    /// The generated message.
    pub message: AssistantMessage,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Log-probabilities of the generated tokens, when asked for.
    pub logprobs: Option<ChoiceLogprobs>,
}

/// `choices[].logprobs` of a chat completion or chunk.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ChoiceLogprobs {
    /// One entry per generated token of the message content.
    pub content: Option<Vec<TokenLogprob>>,
}

/// One generated token with its log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TokenLogprob {
    /// The token as text (lossy when it is part of a multi-byte character).
    pub token: String,
    /// Natural log of the probability the model gave the token.
    pub logprob: f64,
    /// The token's UTF-8 bytes.
    pub bytes: Option<Vec<u8>>,
    /// The most likely tokens at this position, most likely first.
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative in [`TokenLogprob::top_logprobs`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TopLogprob {
    /// The token as text.
    pub token: String,
    /// Natural log of its probability.
    pub logprob: f64,
    /// The token's UTF-8 bytes.
    pub bytes: Option<Vec<u8>>,
}

/// The assistant's generated message.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The generated text; null when the message is only function calls.
    pub content: Option<String>,
    /// A thinking model's reasoning before its answer (vLLM's and DeepSeek's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// The same reasoning under vLLM's newer name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// The function calls, when the model made any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// One server-sent event of a streaming response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatCompletionChunk {
    /// The same id on every chunk of a response.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// The same timestamp on every chunk of a response.
    pub created: u64,
    /// The model id that served the request.
    pub model: String,
    /// Empty on the final usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Set only on the final usage chunk, when `stream_options.include_usage` asked for it.
    pub usage: Option<Usage>,
}

/// One choice's increment in a [`ChatCompletionChunk`].
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChunkChoice {
    /// Position in `choices`.
    pub index: u32,
    /// The new part of the message.
    pub delta: Delta,
    /// Set on the choice's last chunk only.
    pub finish_reason: Option<FinishReason>,
    /// Log-probabilities of the tokens in this chunk, when asked for.
    pub logprobs: Option<ChoiceLogprobs>,
}

/// The new part of a streamed message.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Delta {
    /// `assistant`, on the first chunk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// New reasoning text of a thinking model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// The same reasoning text under vLLM's newer name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// New pieces of function calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}
