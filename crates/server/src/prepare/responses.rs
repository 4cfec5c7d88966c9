//! Responses-API requests as the chat requests they mean, then [`super::chat`]: one path for templates,
//! tools, constraints and limits, with errors named in the Responses API's own fields.

use hearth_protocol::responses::{
    FunctionTool, Input, InputItem, ItemContent, OutputItem, ResponsesRequest, TextFormat,
};
use hearth_protocol::{
    ChatCompletionRequest, ChatMessage, FunctionCall, FunctionDefinition, FunctionName, JsonSchemaFormat,
    NamedToolChoice, ResponseFormat, SamplingOptions, Tool, ToolCall, ToolChoice,
};
use serde_json::Value;

use super::PreparedChat;
use crate::error::ApiError;
use crate::model::ServedModel;

/// OpenAI's bounds on `metadata`: pairs, key length, value length.
const METADATA_PAIRS: usize = 16;
const METADATA_KEY: usize = 64;
const METADATA_VALUE: usize = 512;

/// Checks and prepares a `/v1/responses` request that continues `history` (empty for a new
/// conversation); returns it with the conversation a follow-up would continue from (without its answer).
pub fn responses(
    req: &ResponsesRequest,
    history: &[ChatMessage],
    model: &ServedModel,
    max_tokens_limit: Option<usize>,
) -> Result<(PreparedChat, Vec<ChatMessage>), ApiError> {
    check_metadata(req)?;
    let mut conversation = history.to_vec();
    conversation.extend(input_messages(req.input.as_ref(), history.is_empty())?);
    let chat = to_chat(req, &conversation).map_err(in_responses_terms)?;
    let prepared = super::chat(&chat, model, max_tokens_limit).map_err(in_responses_terms)?;
    Ok((prepared, conversation))
}

/// Errors from the chat path, named in the Responses API's own fields.
fn in_responses_terms(error: ApiError) -> ApiError {
    const RENAMES: [(&str, &str); 3] =
        [("max_completion_tokens", "max_output_tokens"), ("response_format", "text.format"), ("messages", "input")];
    match error {
        ApiError::Invalid { mut message, param, code } => {
            for (chat, ours) in RENAMES {
                message = message.replace(&format!("`{chat}`"), &format!("`{ours}`"));
            }
            let param = param.map(|p| match RENAMES.iter().find(|(chat, _)| p.starts_with(chat)) {
                Some((_, ours)) => ours.to_string(),
                None => p,
            });
            ApiError::Invalid { message, param, code }
        }
        other => other,
    }
}

fn check_metadata(req: &ResponsesRequest) -> Result<(), ApiError> {
    let Some(metadata) = &req.metadata else { return Ok(()) };
    let fits = |(key, value): (&String, &Value)| {
        key.chars().count() <= METADATA_KEY && value.as_str().is_some_and(|v| v.chars().count() <= METADATA_VALUE)
    };
    if metadata.len() > METADATA_PAIRS || !metadata.iter().all(fits) {
        return Err(ApiError::invalid(
            "metadata",
            format!(
                "`metadata` holds at most {METADATA_PAIRS} pairs of string keys up to {METADATA_KEY} characters and \
                 string values up to {METADATA_VALUE}"
            ),
        ));
    }
    Ok(())
}

/// The chat request: `instructions` first, then the conversation.
fn to_chat(req: &ResponsesRequest, conversation: &[ChatMessage]) -> Result<ChatCompletionRequest, ApiError> {
    let mut messages = Vec::with_capacity(conversation.len() + 1);
    if let Some(instructions) = &req.instructions {
        messages.push(ChatMessage::text("system", instructions.clone()));
    }
    messages.extend_from_slice(conversation);
    let tools = req.tools.as_deref().map(tools).transpose()?;
    let chat_template_kwargs = req.reasoning.as_ref().and_then(|r| r.effort.as_deref()).map(|effort| {
        let enabled = !matches!(effort, "none" | "minimal");
        serde_json::Map::from_iter([("enable_thinking".to_string(), Value::Bool(enabled))])
    });
    Ok(ChatCompletionRequest {
        model: req.model.clone(),
        messages,
        max_tokens: None,
        max_completion_tokens: req.max_output_tokens,
        sampling: SamplingOptions { temperature: req.temperature, top_p: req.top_p, ..SamplingOptions::default() },
        logprobs: None,
        top_logprobs: None,
        n: None,
        stream: req.stream,
        stream_options: None,
        response_format: req.text.as_ref().and_then(|t| t.format.as_ref()).map(response_format),
        tools,
        tool_choice: req.tool_choice.as_ref().map(tool_choice).transpose()?,
        parallel_tool_calls: req.parallel_tool_calls,
        functions: None,
        chat_template_kwargs,
    })
}

fn response_format(format: &TextFormat) -> ResponseFormat {
    let json_schema = (format.kind == "json_schema").then(|| JsonSchemaFormat {
        name: format.name.clone().unwrap_or_default(),
        description: format.description.clone(),
        schema: format.schema.clone(),
        strict: format.strict,
    });
    ResponseFormat { kind: format.kind.clone(), json_schema }
}

/// The tools in chat's shape; chat's checks name what is wrong (`tools[i].type` for hosted tools).
fn tools(tools: &[FunctionTool]) -> Result<Vec<Tool>, ApiError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let name = match (&tool.name, tool.kind.as_str()) {
                (Some(name), _) => name.clone(),
                (None, "function") => {
                    return Err(ApiError::invalid(format!("tools[{i}].name"), "a function tool needs `name`"))
                }
                (None, _) => String::new(),
            };
            let function = FunctionDefinition {
                name,
                description: tool.description.clone(),
                parameters: tool.parameters.clone(),
                strict: tool.strict,
            };
            Ok(Tool { kind: tool.kind.clone(), function })
        })
        .collect()
}

fn tool_choice(choice: &Value) -> Result<ToolChoice, ApiError> {
    match choice {
        Value::String(mode) => Ok(ToolChoice::Mode(mode.clone())),
        Value::Object(object) if object.get("type").and_then(Value::as_str) == Some("function") => {
            let name = object.get("name").and_then(Value::as_str).unwrap_or_default();
            Ok(ToolChoice::Named(NamedToolChoice {
                kind: "function".into(),
                function: FunctionName { name: name.into() },
            }))
        }
        _ => Err(ApiError::invalid(
            "tool_choice",
            "`tool_choice` must be none, auto, required or {\"type\": \"function\", \"name\": …}",
        )),
    }
}

/// The new input as chat messages. Consecutive `function_call` items join the assistant message before
/// them; reasoning items are dropped (templates drop earlier reasoning anyway).
fn input_messages(input: Option<&Input>, required: bool) -> Result<Vec<ChatMessage>, ApiError> {
    let items = match input {
        None if required => return Err(ApiError::invalid("input", "`input` is required")),
        None => return Ok(Vec::new()),
        Some(Input::Text(text)) => return Ok(vec![ChatMessage::text("user", text.clone())]),
        Some(Input::Items(items)) => items,
    };
    if items.is_empty() && required {
        return Err(ApiError::invalid("input", "`input` must not be an empty list"));
    }
    let mut messages: Vec<ChatMessage> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        match item.kind.as_deref() {
            None | Some("message") => {
                let role = item.role.clone().ok_or_else(|| ApiError::invalid(&param, format!("{param} needs `role`")))?;
                if !matches!(role.as_str(), "user" | "assistant" | "system" | "developer") {
                    return Err(ApiError::invalid(format!("{param}.role"), format!("unknown role `{role}`")));
                }
                messages.push(ChatMessage::text(&role, text_of(item.content.as_ref(), &format!("{param}.content"))?));
            }
            Some("function_call") => {
                let (Some(call_id), Some(name)) = (&item.call_id, &item.name) else {
                    return Err(ApiError::invalid(&param, format!("{param}: a `function_call` needs `call_id` and `name`")));
                };
                let call = ToolCall {
                    id: call_id.clone(),
                    kind: "function".into(),
                    function: FunctionCall { name: name.clone(), arguments: item.arguments.clone().unwrap_or_default() },
                };
                match messages.last_mut().filter(|m| m.role == "assistant") {
                    Some(assistant) => assistant.tool_calls.get_or_insert_with(Vec::new).push(call),
                    None => messages.push(ChatMessage { tool_calls: Some(vec![call]), ..ChatMessage::text("assistant", String::new()) }),
                }
            }
            Some("function_call_output") => {
                let Some(call_id) = &item.call_id else {
                    return Err(ApiError::invalid(&param, format!("{param}: a `function_call_output` needs `call_id`")));
                };
                let output = text_of(item.output.as_ref(), &format!("{param}.output"))?;
                messages.push(ChatMessage { tool_call_id: Some(call_id.clone()), ..ChatMessage::text("tool", output) });
            }
            Some("reasoning") => {}
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("{param}.type"),
                    format!("input items of type `{other}` are not served; use message, function_call, function_call_output or reasoning"),
                ))
            }
        }
    }
    Ok(messages)
}

/// A response's output as the assistant message a follow-up continues from.
pub fn responses_output(output: &[OutputItem]) -> Vec<ChatMessage> {
    let items: Vec<InputItem> = output
        .iter()
        .filter_map(|item| match item {
            OutputItem::Message { content, .. } => Some(InputItem {
                role: Some("assistant".into()),
                content: Some(ItemContent::Text(content.iter().map(|c| c.text.as_str()).collect())),
                ..InputItem::default()
            }),
            OutputItem::FunctionCall { call_id, name, arguments, .. } => Some(InputItem {
                kind: Some("function_call".into()),
                call_id: Some(call_id.clone()),
                name: Some(name.clone()),
                arguments: Some(arguments.clone()),
                ..InputItem::default()
            }),
            OutputItem::Reasoning { .. } => None,
        })
        .collect();
    input_messages(Some(&Input::Items(items)), false).unwrap_or_default()
}

/// The text of a message's content or a call's output: a string, or its text parts joined.
fn text_of(content: Option<&ItemContent>, param: &str) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(ItemContent::Text(text)) => Ok(text.clone()),
        Some(ItemContent::Parts(parts)) => parts
            .iter()
            .map(|part| match (part.kind.as_str(), &part.text, &part.refusal) {
                ("input_text" | "output_text" | "text", Some(text), _) => Ok(text.as_str()),
                ("refusal", _, Some(refusal)) => Ok(refusal.as_str()),
                (kind, ..) => {
                    Err(ApiError::invalid(param, format!("{param}: content parts of type `{kind}` are not served")))
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("\n")),
    }
}
