//! OpenAI's Responses API: `/v1/responses` and its stored responses.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/responses` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ResponsesRequest {
    /// The model id, as listed by `/v1/models`.
    pub model: String,
    /// The new input: text (one user message) or a list of items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    /// A system (developer) message placed before everything else; not carried to follow-ups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Continue the conversation of this stored response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// Upper bound on generated tokens, reasoning included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<i64>,
    /// Sampling temperature (0–2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<FunctionTool>>,
    /// `none`, `auto`, `required`, or `{"type": "function", "name": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Whether the model may call several functions in one answer (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", …}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    /// `{"effort": …}`; `none` or `minimal` turns a thinking model's reasoning off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningConfig>,
    /// Up to 16 string pairs, echoed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Keep the response for `GET`, `DELETE` and `previous_response_id` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Stream the response as typed server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

/// `input`: text, or a list of items.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message.
    Text(String),
    /// Messages, function calls, their outputs and reasoning.
    Items(Vec<InputItem>),
}

/// One input item. Every kind is one flat object, so that a response's own output items are valid input.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct InputItem {
    /// `message` (the default when `role` is given), `function_call`, `function_call_output` or
    /// `reasoning`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A message's `user`, `assistant`, `system` or `developer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A message's text, or its `input_text` / `output_text` parts; a reasoning item's `reasoning_text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ItemContent>,
    /// The call a `function_call` makes or a `function_call_output` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// A `function_call`'s function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A `function_call`'s arguments, a JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// A `function_call_output`'s result: text, or text parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ItemContent>,
}

/// Text, or typed parts with text.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ItemContent {
    /// Plain text.
    Text(String),
    /// Typed parts.
    Parts(Vec<ContentPart>),
}

/// One typed part of an item's content.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ContentPart {
    /// `input_text`, `output_text`, `reasoning_text`, `refusal`, `input_image`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The text of a `refusal` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// A function tool in the Responses shape (flat, not nested under `function`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FunctionTool {
    /// `function`; other (hosted) tool types are not served.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the function does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema of its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether the arguments must follow the schema exactly; they always do here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `text`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TextConfig {
    /// The output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
}

/// `text.format`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TextFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The format's name (`json_schema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the format is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema the output must validate against (`json_schema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Whether the schema must be followed exactly; it always is here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `reasoning`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ReasoningConfig {
    /// `none`, `minimal`, `low`, `medium` or `high`.
    #[serde(default)]
    pub effort: Option<String>,
    /// Reasoning summaries are not produced; accepted and echoed.
    #[serde(default)]
    pub summary: Option<String>,
}

/// The response object, as returned, streamed in events and stored.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Response {
    /// `resp_…`.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Unix seconds.
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub status: String,
    /// What failed, when `status` is `failed`.
    pub error: Option<ResponseError>,
    /// Why the response is incomplete.
    pub incomplete_details: Option<IncompleteDetails>,
    /// The request's `instructions`.
    pub instructions: Option<String>,
    /// The request's `max_output_tokens`.
    pub max_output_tokens: Option<i64>,
    /// The model id that served the request.
    pub model: String,
    /// Reasoning, messages and function calls, in the order the model wrote them.
    pub output: Vec<OutputItem>,
    /// The request's `parallel_tool_calls`.
    pub parallel_tool_calls: bool,
    /// The response this one continues.
    pub previous_response_id: Option<String>,
    /// The request's `reasoning`.
    pub reasoning: ReasoningConfig,
    /// Whether the response is stored.
    pub store: bool,
    /// The request's temperature.
    pub temperature: Option<f64>,
    /// The request's `text`.
    pub text: TextConfig,
    /// The request's `tool_choice`.
    pub tool_choice: Value,
    /// The request's `tools`.
    pub tools: Vec<FunctionTool>,
    /// The request's `top_p`.
    pub top_p: Option<f64>,
    /// Always `disabled`: input is never truncated.
    pub truncation: String,
    /// Token counts, once the response is done.
    pub usage: Option<ResponseUsage>,
    /// The request's `metadata`.
    pub metadata: Map<String, Value>,
}

/// `error` of a failed response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ResponseError {
    /// A machine-readable code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// `incomplete_details`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens`.
    pub reason: String,
}

/// One item of `output`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// The answer's text.
    Message {
        /// `msg_…`.
        id: String,
        /// `in_progress`, `completed` or `incomplete`.
        status: String,
        /// Always `assistant`.
        role: String,
        /// `output_text` parts.
        content: Vec<OutputText>,
    },
    /// A function call.
    FunctionCall {
        /// `fc_…`.
        id: String,
        /// `call_…`; a `function_call_output` answers it by this id.
        call_id: String,
        /// The function's name.
        name: String,
        /// The arguments, as a JSON text.
        arguments: String,
        /// `in_progress`, `completed` or `incomplete`.
        status: String,
    },
    /// A thinking model's reasoning.
    Reasoning {
        /// `rs_…`.
        id: String,
        /// Summaries are not produced: always empty.
        summary: Vec<Value>,
        /// One `reasoning_text` part.
        content: Vec<ReasoningText>,
    },
}

/// An `output_text` part.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct OutputText {
    /// Always `output_text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    pub text: String,
    /// Always empty.
    pub annotations: Vec<Value>,
}

/// A `reasoning_text` part.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ReasoningText {
    /// Always `reasoning_text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The reasoning.
    pub text: String,
}

/// `usage` of a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ResponseUsage {
    /// Tokens in the prompt, the conversation so far included.
    pub input_tokens: u32,
    /// How the input tokens were served.
    pub input_tokens_details: InputTokensDetails,
    /// Tokens generated.
    pub output_tokens: u32,
    /// What the output tokens were.
    pub output_tokens_details: OutputTokensDetails,
    /// `input_tokens + output_tokens`.
    pub total_tokens: u32,
}

/// `usage.input_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct InputTokensDetails {
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: u32,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct OutputTokensDetails {
    /// Output tokens of the reasoning (its text re-tokenized, with its tags).
    pub reasoning_tokens: u32,
}

/// `DELETE /v1/responses/{id}` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DeletedResponse {
    /// The deleted response's id.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Always true.
    pub deleted: bool,
}
