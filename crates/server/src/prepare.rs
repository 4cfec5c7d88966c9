//! Parse, don't validate: the only way from a wire request to an engine request.

use hearth_engine::{GenerateRequest, SamplingParams};
use hearth_protocol::{ChatCompletionRequest, ChatMessage, MessageContent};
use hearth_text::PromptMessage;

use crate::error::ApiError;
use crate::model::ServedModel;

/// OpenAI's limit on stop strings.
const MAX_STOP: usize = 4;

/// A validated chat request, ready for the engine and the response writer.
#[derive(Debug, Clone)]
pub struct PreparedChat {
    /// What the engine runs.
    pub generate: GenerateRequest,
    /// Stop strings, matched on the decoded text.
    pub stop: Vec<String>,
    /// Answer as server-sent events.
    pub stream: bool,
    /// Send a final usage chunk when streaming.
    pub include_usage: bool,
}

/// Checks every field, renders the chat template and tokenizes; names the field at fault on error.
/// `max_tokens_limit` is the operator's cap on generated tokens per request, if any.
pub fn chat(
    req: &ChatCompletionRequest,
    model: &ServedModel,
    max_tokens_limit: Option<usize>,
) -> Result<PreparedChat, ApiError> {
    if req.model != model.id {
        return Err(ApiError::ModelNotFound(req.model.clone()));
    }
    let stream = req.stream.unwrap_or(false);
    if req.stream_options.is_some() && !stream {
        return Err(ApiError::invalid("stream_options", "`stream_options` is only allowed when `stream` is true"));
    }
    if let Some(n) = req.n.filter(|&n| n != 1) {
        return Err(ApiError::invalid("n", format!("only `n` = 1 is supported, got {n}")));
    }
    let temperature = range("temperature", req.temperature, 0.0, 2.0)?.unwrap_or(1.0);
    let top_p = range("top_p", req.top_p, 0.0, 1.0)?.unwrap_or(1.0);
    let max_tokens = match (req.max_completion_tokens, req.max_tokens) {
        (Some(v), _) => Some(("max_completion_tokens", v)),
        (None, Some(v)) => Some(("max_tokens", v)),
        (None, None) => None,
    };
    if let Some((param, v)) = max_tokens.filter(|(_, v)| *v < 1) {
        return Err(ApiError::invalid(param, format!("`{param}` must be at least 1, got {v}")));
    }
    let stop = req.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > MAX_STOP {
        return Err(ApiError::invalid(
            "stop",
            format!("at most {MAX_STOP} stop sequences are allowed, got {}", stop.len()),
        ));
    }

    let messages = prompt_messages(&req.messages)?;
    let rendered = model.template.render(&messages, true).map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    let prompt = model.tokenizer.encode_prompt(&rendered).map_err(|e| ApiError::Internal(e.to_string()))?;

    let context = model.context_length;
    let (param, requested) = match max_tokens {
        Some((param, v)) => (param, usize::try_from(v).unwrap_or(usize::MAX)),
        None => ("messages", context.saturating_sub(prompt.len()).min(max_tokens_limit.unwrap_or(usize::MAX))),
    };
    if let Some(limit) = max_tokens_limit.filter(|&limit| requested > limit) {
        return Err(ApiError::invalid(
            param,
            format!("`{param}` must be at most {limit} on this server, got {requested}"),
        ));
    }
    if requested == 0 || prompt.len().saturating_add(requested) > context {
        return Err(ApiError::Invalid {
            message: format!(
                "This model's maximum context length is {context} tokens. However, you requested {} tokens ({} in the messages, {requested} in the completion). Please reduce the length of the messages or completion.",
                prompt.len().saturating_add(requested),
                prompt.len(),
            ),
            param: Some(param.into()),
            code: Some("context_length_exceeded"),
        });
    }

    let stop_tokens =
        if req.ignore_eos == Some(true) { Vec::new() } else { model.tokenizer.end_of_generation().to_vec() };
    Ok(PreparedChat {
        generate: GenerateRequest {
            prompt,
            max_tokens: requested,
            sampling: SamplingParams {
                temperature: temperature as f32,
                top_p: top_p as f32,
                seed: req.seed.map(|s| s as u64),
            },
            stop_tokens,
        },
        stop,
        stream,
        include_usage: req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
    })
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

/// The conversation as the template sees it.
fn prompt_messages(messages: &[ChatMessage]) -> Result<Vec<PromptMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` must contain at least one message"));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                "tool" | "function" => {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].role"),
                        format!("role `{}` is not supported yet", m.role),
                    ))
                }
                other => {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].role"),
                        format!("unknown role `{other}`; expected one of system, developer, user, assistant"),
                    ))
                }
            };
            Ok(PromptMessage { role: role.into(), content: content_text(i, m)? })
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
