//! Parse, don't validate: the only way from a wire request to an engine request.
//!
//! # Layout
//! - this file — every endpoint's checks, templating and tokenizing, and the length limits.
//! - [`limits`] — the bounds on fields whose size drives memory or CPU.
//! - [`pool`] — [`PreparePool`], the bounded workers all of this runs on.
//! - [`tools`] — `tools`, `tool_choice` and tool history.
//! - `embeddings` — `/v1/embeddings` inputs as token ids, within the model's and the request's limits.
//! - `messages`, `responses` — Anthropic's Messages and OpenAI's Responses requests as the chat requests
//!   they mean.
//!
//! Tokenizing stops as soon as a prompt proves longer than the context, so the work a request costs is
//! in proportion to what could be served, however long its text.

mod embeddings;
pub mod limits;
mod messages;
pub mod pool;
mod responses;
mod tools;

pub use embeddings::embedding_inputs;
pub use messages::{count_tokens, messages};
pub use responses::{responses, responses_output};

pub use pool::PreparePool;

use hearth_engine::{GenerateRequest, SamplingParams};
use hearth_protocol::{
    ChatCompletionRequest, ChatMessage, CompletionRequest, DetokenizeRequest, JsonSchemaFormat, MessageContent, Prompt,
    ResponseFormat, SamplingOptions, TokenizeRequest,
};
use hearth_structured::reasoning::{self, ReasoningStart};
use hearth_structured::OutputFormat;
use hearth_text::{ChatTemplate, PromptMessage, RenderedPrompt, TokenizerError};
use tools::ToolStyle;

use crate::answer::AnswerFormat;
use crate::error::ApiError;
use crate::model::ServedModel;

/// Most choices per prompt.
const MAX_N: i64 = 16;
/// Most alternatives per token in log-probabilities.
const MAX_TOP_LOGPROBS: i64 = 20;
/// `max_tokens` of a legacy completion that does not set it, as OpenAI and vLLM do.
const DEFAULT_COMPLETION_TOKENS: usize = 16;

/// A validated chat request, ready for the engine and the response writer.
#[derive(Debug, Clone)]
pub struct PreparedChat {
    /// What the engine runs.
    pub generate: GenerateRequest,
    /// What the response writer needs.
    pub output: OutputOptions,
    /// How the answer's reasoning and function calls are parsed.
    pub answer: AnswerFormat,
}

/// A validated legacy completion request: one engine request per prompt.
#[derive(Debug, Clone)]
pub struct PreparedCompletion {
    /// What the engine runs, one per prompt, with the prompt's text when `echo` asks for it.
    pub prompts: Vec<(GenerateRequest, Option<String>)>,
    /// What the response writer needs.
    pub output: OutputOptions,
}

/// How a response is written, shared by both endpoints.
#[derive(Debug, Clone)]
pub struct OutputOptions {
    /// Choices per prompt.
    pub n: usize,
    /// Stop strings, matched on the decoded text.
    pub stop: Vec<String>,
    /// Answer as server-sent events.
    pub stream: bool,
    /// Send a final usage chunk when streaming.
    pub include_usage: bool,
    /// Report log-probabilities with this many alternatives per token.
    pub logprobs: Option<usize>,
}

/// Checks every field, renders the chat template and tokenizes; names the field at fault on error.
/// `max_tokens_limit` is the operator's cap on generated tokens per request, if any.
pub fn chat(
    req: &ChatCompletionRequest,
    model: &ServedModel,
    max_tokens_limit: Option<usize>,
) -> Result<PreparedChat, ApiError> {
    limits::chat(req)?;
    let tool_use = tools::tool_use(req, model)?;
    let logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (true, top) => Some(int_range("top_logprobs", top, 0, MAX_TOP_LOGPROBS)?.unwrap_or(0)),
        (false, Some(_)) => {
            return Err(ApiError::invalid("top_logprobs", "`top_logprobs` requires `logprobs` to be true"));
        }
        (false, None) => None,
    };
    let output = output_options(req.stream, req.stream_options.as_ref(), req.n, &req.sampling, logprobs)?;
    let sampling = sampling(&req.sampling, model, logprobs)?;
    let max_tokens = match (req.max_completion_tokens, req.max_tokens) {
        (Some(v), _) => Some(("max_completion_tokens", v)),
        (None, Some(v)) => Some(("max_tokens", v)),
        (None, None) => None,
    };

    let style = ToolStyle::of(model);
    let mut messages = prompt_messages(&req.messages, style)?;
    let mut definitions = Vec::new();
    if let Some(tool_use) = &tool_use {
        if style.native {
            definitions = tool_use.functions.iter().map(|f| f.definition()).collect();
        } else {
            tools::announce(&mut messages, style, &tool_use.functions);
        }
    }
    let rendered = render_chat(model, &messages, &definitions, true, req.chat_template_kwargs.as_ref())?;
    let reasoning = model.thinking.map(|_| reasoning_start(&rendered.text));
    let prompt = model
        .tokenizer
        .encode_prompt_within(&rendered, model.context_length)
        .map_err(|e| encode_error(e, "messages", "messages"))?;
    drop(rendered);
    let limits = Limits { context: model.context_length, operator_cap: max_tokens_limit };
    let max_tokens = limits.budget(prompt.len(), max_tokens, "messages", None)?;
    let stop_tokens = stop_tokens(req.sampling.ignore_eos, model);
    let (constraint, calls) = match tool_use {
        Some(tool_use) => (Some(tool_use.constraint), Some(tool_use.family)),
        None => {
            let constraint = output_format(req.response_format.as_ref())?
                .map(|format| model.structured.compile(&format))
                .transpose()
                .map_err(|e| {
                    ApiError::invalid("response_format", format!("`response_format` cannot be served: {e}"))
                })?;
            (constraint, None)
        }
    };
    // A thinking model's reasoning runs free; the constraint shapes the answer after it.
    let constraint = match (constraint, model.thinking, reasoning) {
        (Some(c), Some(tokens), Some(start)) => Some(reasoning::after_reasoning(c, tokens, start)),
        (constraint, ..) => constraint,
    };
    let generate = GenerateRequest { prompt, max_tokens, n: output.n, sampling, stop_tokens, constraint };
    Ok(PreparedChat { generate, output, answer: AnswerFormat { calls, reasoning } })
}

/// Where a thinking model's answer starts: inside its reasoning when the prompt opened `<think>` last
/// (DeepSeek-R1's generation prompt), else free to open it (Qwen3; with thinking off its template closes
/// an empty one).
fn reasoning_start(prompt: &str) -> ReasoningStart {
    match (prompt.rfind(reasoning::OPEN), prompt.rfind(reasoning::CLOSE)) {
        (Some(open), close) if close.is_none_or(|close| close < open) => ReasoningStart::Inside,
        _ => ReasoningStart::MayOpen,
    }
}

/// The structured output a `response_format` demands; `None` for free text.
fn output_format(format: Option<&ResponseFormat>) -> Result<Option<OutputFormat>, ApiError> {
    let Some(format) = format else { return Ok(None) };
    match (format.kind.as_str(), &format.json_schema) {
        ("text", _) => Ok(None),
        ("json_object", _) => Ok(Some(OutputFormat::JsonObject)),
        ("json_schema", Some(JsonSchemaFormat { schema: Some(schema), .. })) => {
            Ok(Some(OutputFormat::JsonSchema(schema.clone())))
        }
        ("json_schema", _) => Err(ApiError::invalid(
            "response_format",
            "`response_format` of type `json_schema` needs `json_schema.schema`",
        )),
        (other, _) => Err(ApiError::invalid(
            "response_format",
            format!("unknown `response_format` type `{other}`; expected text, json_object or json_schema"),
        )),
    }
}

/// Checks a legacy completion request and tokenizes each of its prompts.
pub fn completion(
    req: &CompletionRequest,
    model: &ServedModel,
    max_tokens_limit: Option<usize>,
) -> Result<PreparedCompletion, ApiError> {
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("suffix", "`suffix` (fill-in-the-middle) is not supported by this server"));
    }
    if let Some(best_of) = req.best_of.filter(|&b| b != req.n.unwrap_or(1)) {
        return Err(ApiError::invalid("best_of", format!("only `best_of` equal to `n` is supported, got {best_of}")));
    }
    let echo = req.echo.unwrap_or(false);
    let logprobs = int_range("logprobs", req.logprobs, 0, MAX_TOP_LOGPROBS)?;
    if echo && logprobs.is_some() {
        return Err(ApiError::invalid(
            "logprobs",
            "`logprobs` together with `echo` (log-probabilities of prompt tokens) is not supported",
        ));
    }
    let output = output_options(req.stream, req.stream_options.as_ref(), req.n, &req.sampling, logprobs)?;
    let sampling = sampling(&req.sampling, model, logprobs)?;
    let max_tokens = req.max_tokens.map(|v| ("max_tokens", v));

    let limits = Limits { context: model.context_length, operator_cap: max_tokens_limit };
    let prompts = prompt_token_lists(&req.prompt, model, echo)?;
    prompts
        .into_iter()
        .map(|(prompt, text)| {
            let max_tokens = limits.budget(prompt.len(), max_tokens, "prompt", Some(DEFAULT_COMPLETION_TOKENS))?;
            let stop_tokens = stop_tokens(req.sampling.ignore_eos, model);
            let generate = GenerateRequest {
                prompt,
                max_tokens,
                n: output.n,
                sampling: sampling.clone(),
                stop_tokens,
                constraint: None,
            };
            Ok((generate, text))
        })
        .collect::<Result<_, ApiError>>()
        .map(|prompts| PreparedCompletion { prompts, output })
}

/// A prompt's token ids, with its text when `echo` asks for it.
type PromptTokens = (Vec<u32>, Option<String>);

/// Each prompt of a legacy request as token ids, with its text when `echo` asks for it.
fn prompt_token_lists(prompt: &Prompt, model: &ServedModel, echo: bool) -> Result<Vec<PromptTokens>, ApiError> {
    let tokenizer = &model.tokenizer;
    let from_text = |text: &str| -> Result<PromptTokens, ApiError> {
        let ids = tokenizer
            .encode_completion_prompt_within(text, model.context_length)
            .map_err(|e| encode_error(e, "prompt", "prompt"))?;
        Ok((ids, echo.then(|| text.to_string())))
    };
    let from_ids = |ids: &[i64]| -> Result<PromptTokens, ApiError> {
        if ids.is_empty() {
            return Err(ApiError::invalid("prompt", "a prompt of token ids must hold at least one token"));
        }
        let ids = token_ids("prompt", ids, tokenizer.vocab_size())?;
        let text = echo.then(|| tokenizer.decode(&ids)).transpose().map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((ids, text))
    };
    let prompts = match prompt {
        Prompt::Text(text) => vec![from_text(text)?],
        Prompt::Texts(texts) => texts.iter().map(|t| from_text(t)).collect::<Result<_, _>>()?,
        Prompt::Tokens(ids) => vec![from_ids(ids)?],
        Prompt::TokenLists(lists) => lists.iter().map(|ids| from_ids(ids)).collect::<Result<_, _>>()?,
    };
    if prompts.is_empty() {
        return Err(ApiError::invalid("prompt", "`prompt` must not be an empty list"));
    }
    prompts
        .into_iter()
        .map(|(ids, text)| match (ids.is_empty(), tokenizer.bos()) {
            (false, _) => Ok((ids, text)),
            (true, Some(bos)) => Ok((vec![bos], text)),
            (true, None) => Err(ApiError::invalid("prompt", "a prompt must contain at least one token")),
        })
        .collect()
}

/// The token ids of a `/tokenize` request's prompt or conversation.
pub fn tokenize(req: &TokenizeRequest, model: &ServedModel) -> Result<Vec<u32>, ApiError> {
    let (tokenizer, limit) = (&model.tokenizer, model.context_length);
    let prompt_error = |e| encode_error(e, "prompt", "prompt");
    match (&req.prompt, &req.messages) {
        (Some(prompt), None) if req.add_special_tokens.unwrap_or(true) => {
            tokenizer.encode_completion_prompt_within(prompt, limit).map_err(prompt_error)
        }
        (Some(prompt), None) => tokenizer.encode_with_control_within(prompt, limit).map_err(prompt_error),
        (None, Some(messages)) => {
            limits::messages(messages.len())?;
            let messages = prompt_messages(messages, ToolStyle::of(model))?;
            let generation_prompt = req.add_generation_prompt.unwrap_or(true);
            let rendered = render_chat(model, &messages, &[], generation_prompt, req.chat_template_kwargs.as_ref())?;
            drop(messages);
            tokenizer.encode_prompt_within(&rendered, limit).map_err(|e| encode_error(e, "messages", "messages"))
        }
        _ => Err(ApiError::invalid("prompt", "give exactly one of `prompt` and `messages`")),
    }
}

/// `messages` through the model's chat template, with the request's `chat_template_kwargs`.
fn render_chat(
    model: &ServedModel,
    messages: &[PromptMessage],
    tools: &[serde_json::Value],
    add_generation_prompt: bool,
    kwargs: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<RenderedPrompt, ApiError> {
    let template = chat_template(model)?;
    let empty = serde_json::Map::new();
    let kwargs = kwargs.unwrap_or(&empty);
    if let Some(name) = ChatTemplate::VARIABLES.iter().find(|name| kwargs.contains_key(**name)) {
        return Err(ApiError::invalid(
            "chat_template_kwargs",
            format!("`{name}` is set by the server, not a template argument"),
        ));
    }
    template
        .render(messages, tools, add_generation_prompt, kwargs)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))
}

/// A tokenizer failure as the client sees it: a text longer than the context is a 400
/// `context_length_exceeded` naming `param`; anything else is the server's fault.
fn encode_error(e: TokenizerError, param: &str, what: &str) -> ApiError {
    match e {
        TokenizerError::TooLong { limit, at_least } => ApiError::Invalid {
            message: format!(
                "This model's maximum context length is {limit} tokens. However, you requested at least {at_least} tokens in the {what}. Please reduce the length of the {what}."
            ),
            param: Some(param.into()),
            code: Some("context_length_exceeded"),
        },
        e => ApiError::Internal(e.to_string()),
    }
}

/// The model's chat template, or a 400 saying that a base model takes raw prompts.
fn chat_template(model: &ServedModel) -> Result<&ChatTemplate, ApiError> {
    model.template.as_ref().ok_or_else(|| ApiError::Invalid {
        message: format!(
            "`{}` is a base model without a chat template: send raw text to /v1/completions, or start Hearth \
             with --chat-template FILE to give it one",
            model.id
        ),
        param: Some("messages".into()),
        code: Some("model_not_chat"),
    })
}

/// The text of a `/detokenize` request's tokens.
pub fn detokenize(req: &DetokenizeRequest, model: &ServedModel) -> Result<String, ApiError> {
    let ids = token_ids("tokens", &req.tokens, model.tokenizer.vocab_size())?;
    model.tokenizer.decode(&ids).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Wire token ids as vocabulary ids; a 400 naming `param` for any id outside the vocabulary.
fn token_ids(param: &str, ids: &[i64], vocab: usize) -> Result<Vec<u32>, ApiError> {
    ids.iter()
        .map(|&id| {
            u32::try_from(id).ok().filter(|&id| (id as usize) < vocab).ok_or_else(|| {
                ApiError::invalid(param, format!("token id {id} is outside the vocabulary (0..{vocab})"))
            })
        })
        .collect()
}

/// Checks the fields both endpoints share and that shape the response.
fn output_options(
    stream: Option<bool>,
    stream_options: Option<&hearth_protocol::StreamOptions>,
    n: Option<i64>,
    sampling: &SamplingOptions,
    logprobs: Option<usize>,
) -> Result<OutputOptions, ApiError> {
    let stream = stream.unwrap_or(false);
    if stream_options.is_some() && !stream {
        return Err(ApiError::invalid("stream_options", "`stream_options` is only allowed when `stream` is true"));
    }
    let n = int_range("n", n, 1, MAX_N)?.unwrap_or(1);
    let stop = sampling.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    limits::stop(&stop)?;
    Ok(OutputOptions {
        n,
        stop,
        stream,
        include_usage: stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        logprobs,
    })
}

/// The engine's sampling settings, every range checked.
fn sampling(opts: &SamplingOptions, model: &ServedModel, logprobs: Option<usize>) -> Result<SamplingParams, ApiError> {
    limits::sampling(opts)?;
    let vocab = model.tokenizer.vocab_size();
    let top_k = match opts.top_k {
        None | Some(-1) | Some(0) => 0,
        Some(k) if k > 0 => usize::try_from(k).unwrap_or(usize::MAX).min(vocab),
        Some(k) => return Err(ApiError::invalid("top_k", format!("`top_k` must be -1 (off) or at least 1, got {k}"))),
    };
    let repetition_penalty = opts.repetition_penalty.unwrap_or(1.0);
    if !(repetition_penalty > 0.0 && repetition_penalty.is_finite()) {
        return Err(ApiError::invalid(
            "repetition_penalty",
            format!("`repetition_penalty` must be greater than 0, got {repetition_penalty}"),
        ));
    }
    let top_p = opts.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid("top_p", format!("`top_p` must be greater than 0 and at most 1, got {top_p}")));
    }
    let logit_bias = opts
        .logit_bias
        .iter()
        .flatten()
        .map(|(key, &bias)| {
            let id = key.parse::<u32>().ok().filter(|&id| (id as usize) < vocab).ok_or_else(|| {
                ApiError::invalid("logit_bias", format!("`logit_bias` key {key:?} is not a token id in 0..{vocab}"))
            })?;
            range("logit_bias", Some(bias), -100.0, 100.0)?;
            Ok((id, bias as f32))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(SamplingParams {
        temperature: range("temperature", opts.temperature, 0.0, 2.0)?.unwrap_or(1.0) as f32,
        top_p: top_p as f32,
        top_k,
        min_p: range("min_p", opts.min_p, 0.0, 1.0)?.unwrap_or(0.0) as f32,
        repetition_penalty: repetition_penalty as f32,
        presence_penalty: range("presence_penalty", opts.presence_penalty, -2.0, 2.0)?.unwrap_or(0.0) as f32,
        frequency_penalty: range("frequency_penalty", opts.frequency_penalty, -2.0, 2.0)?.unwrap_or(0.0) as f32,
        logit_bias,
        seed: opts.seed.map(|s| s as u64),
        top_logprobs: logprobs.unwrap_or(0),
    })
}

/// The bounds on a request's length: the model's context and the operator's cap on generated tokens.
struct Limits {
    context: usize,
    operator_cap: Option<usize>,
}

impl Limits {
    /// Tokens one choice may generate: the request's `max_tokens` (named `param`), else `default`, else
    /// what the context leaves; a 400 when it breaks the operator's cap or the context length.
    fn budget(
        &self,
        prompt_len: usize,
        max_tokens: Option<(&'static str, i64)>,
        prompt_param: &'static str,
        default: Option<usize>,
    ) -> Result<usize, ApiError> {
        if let Some((param, v)) = max_tokens.filter(|(_, v)| *v < 1) {
            return Err(ApiError::invalid(param, format!("`{param}` must be at least 1, got {v}")));
        }
        let (context, max_tokens_limit) = (self.context, self.operator_cap);
        let left = context.saturating_sub(prompt_len);
        let (param, requested) = match (max_tokens, default) {
            (Some((param, v)), _) => (param, usize::try_from(v).unwrap_or(usize::MAX)),
            (None, Some(default)) => ("max_tokens", default.min(left.max(1))),
            (None, None) => (prompt_param, left.min(max_tokens_limit.unwrap_or(usize::MAX))),
        };
        if let Some(limit) = max_tokens_limit.filter(|&limit| requested > limit) {
            return Err(ApiError::invalid(
                param,
                format!("`{param}` must be at most {limit} on this server, got {requested}"),
            ));
        }
        if requested == 0 || prompt_len.saturating_add(requested) > context {
            return Err(ApiError::Invalid {
            message: format!(
                "This model's maximum context length is {context} tokens. However, you requested {} tokens ({prompt_len} in the {prompt_param}, {requested} in the completion). Please reduce the length of the {prompt_param} or completion.",
                prompt_len.saturating_add(requested),
            ),
            param: Some(param.into()),
            code: Some("context_length_exceeded"),
        });
        }
        Ok(requested)
    }
}

/// The tokens that end generation: the model's end-of-turn tokens, none with `ignore_eos`.
fn stop_tokens(ignore_eos: Option<bool>, model: &ServedModel) -> Vec<u32> {
    if ignore_eos == Some(true) {
        Vec::new()
    } else {
        model.tokenizer.end_of_generation().to_vec()
    }
}

/// `None` stays `None`; a value outside `[min, max]` (or NaN) is a 400 naming `param`.
fn range(param: &str, value: Option<f64>, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => {
            Err(ApiError::invalid(param, format!("`{param}` must be between {min} and {max}, got {v}")))
        }
        other => Ok(other),
    }
}

/// [`range`] for integers.
fn int_range(param: &str, value: Option<i64>, min: i64, max: i64) -> Result<Option<usize>, ApiError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => {
            Err(ApiError::invalid(param, format!("`{param}` must be between {min} and {max}, got {v}")))
        }
        other => Ok(other.map(|v| v as usize)),
    }
}

/// The conversation as the template sees it, tool calls and results written in `style`.
fn prompt_messages(messages: &[ChatMessage], style: ToolStyle) -> Result<Vec<PromptMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` must contain at least one message"));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let content = content_text(i, m)?;
            match m.role.as_str() {
                "system" | "developer" => Ok(PromptMessage::text("system", content)),
                "user" => Ok(PromptMessage::text("user", content)),
                "assistant" => tools::assistant_calls(i, m, content, style),
                "tool" => tools::tool_result(i, m, content, style),
                "function" => Err(ApiError::invalid(
                    format!("messages[{i}].role"),
                    "role `function` is deprecated and not served; use `tool` messages",
                )),
                other => Err(ApiError::invalid(
                    format!("messages[{i}].role"),
                    format!("unknown role `{other}`; expected one of system, developer, user, assistant, tool"),
                )),
            }
        })
        .collect()
}

/// The text of a message: a string, or its text parts joined by newlines.
fn content_text(i: usize, m: &ChatMessage) -> Result<String, ApiError> {
    let param = || format!("messages[{i}].content");
    match &m.content {
        Some(MessageContent::Text(text)) => Ok(text.clone()),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .map(|p| match (p.kind.as_str(), &p.text) {
                ("text", Some(text)) => Ok(text.as_str()),
                ("text", None) => Err(ApiError::invalid(param(), "a `text` content part needs a `text` field")),
                (other, _) => Err(ApiError::invalid(
                    param(),
                    format!("content parts of type `{other}` are not supported by this model"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("\n")),
        None if m.role == "assistant" => Ok(String::new()),
        None => Err(ApiError::invalid(param(), format!("messages[{i}] needs `content`"))),
    }
}
