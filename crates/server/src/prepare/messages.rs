//! Anthropic's Messages requests as the chat requests they mean, then [`super::chat`]: one path for
//! templates, tools, constraints and limits.

use hearth_protocol::messages::{Content, ContentBlock, InputMessage, MessagesRequest, ToolChoice};
use hearth_protocol::{
    ChatCompletionRequest, ChatMessage, FunctionCall, FunctionDefinition, FunctionName, NamedToolChoice,
    SamplingOptions, Stop, Tool, ToolCall, ToolChoice as ChatToolChoice,
};

use super::PreparedChat;
use crate::error::ApiError;
use crate::model::ServedModel;

/// Checks and prepares a `/v1/messages` request; `max_tokens` is required, as Anthropic requires it.
pub fn messages(
    req: &MessagesRequest,
    model: &ServedModel,
    max_tokens_limit: Option<usize>,
) -> Result<PreparedChat, ApiError> {
    if req.max_tokens.is_none() {
        return Err(ApiError::invalid("max_tokens", "max_tokens: Field required"));
    }
    super::chat(&to_chat(req)?, model, max_tokens_limit)
}

/// The prompt tokens `/v1/messages` would run for `req` (`max_tokens` optional).
pub fn count_tokens(
    req: &MessagesRequest,
    model: &ServedModel,
    max_tokens_limit: Option<usize>,
) -> Result<usize, ApiError> {
    super::chat(&to_chat(req)?, model, max_tokens_limit).map(|prepared| prepared.generate.prompt.len())
}

/// The chat request a Messages request means.
fn to_chat(req: &MessagesRequest) -> Result<ChatCompletionRequest, ApiError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        messages.push(ChatMessage::text("system", text_of(system, "system")?));
    }
    for (i, message) in req.messages.iter().enumerate() {
        turn(i, message, &mut messages)?;
    }
    let tools = req.tools.as_ref().map(|tools| {
        tools
            .iter()
            .enumerate()
            .map(|(i, tool)| match tool.kind.as_deref() {
                None | Some("custom") => Ok(Tool {
                    kind: "function".into(),
                    function: FunctionDefinition {
                        name: tool.name.clone(),
                        description: tool.description.clone(),
                        parameters: tool.input_schema.clone(),
                        strict: None,
                    },
                }),
                Some(other) => Err(ApiError::invalid(
                    format!("tools[{i}].type"),
                    format!("tools[{i}]: the server tool `{other}` is not available here; define a custom tool"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
    });
    let (tool_choice, parallel_tool_calls) = match &req.tool_choice {
        None => (None, None),
        Some(choice) => tool_choice(choice)?,
    };
    let chat_template_kwargs = req.thinking.as_ref().map(|thinking| {
        let enabled = thinking.kind != "disabled";
        serde_json::Map::from_iter([("enable_thinking".to_string(), serde_json::Value::Bool(enabled))])
    });
    Ok(ChatCompletionRequest {
        model: req.model.clone(),
        messages,
        max_tokens: req.max_tokens,
        max_completion_tokens: None,
        sampling: SamplingOptions {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            stop: req.stop_sequences.clone().map(Stop::Many),
            ..SamplingOptions::default()
        },
        logprobs: None,
        top_logprobs: None,
        n: None,
        stream: req.stream,
        stream_options: None,
        response_format: None,
        tools: tools.transpose()?,
        tool_choice,
        parallel_tool_calls,
        functions: None,
        chat_template_kwargs,
    })
}

/// `tool_choice` as chat's, with whether calls may be parallel.
fn tool_choice(choice: &ToolChoice) -> Result<(Option<ChatToolChoice>, Option<bool>), ApiError> {
    let mode = |m: &str| Some(ChatToolChoice::Mode(m.into()));
    let chat = match (choice.kind.as_str(), &choice.name) {
        ("auto", _) => mode("auto"),
        ("any", _) => mode("required"),
        ("none", _) => mode("none"),
        ("tool", Some(name)) => Some(ChatToolChoice::Named(NamedToolChoice {
            kind: "function".into(),
            function: FunctionName { name: name.clone() },
        })),
        ("tool", None) => return Err(ApiError::invalid("tool_choice.name", "tool_choice.name: Field required")),
        (other, _) => {
            return Err(ApiError::invalid(
                "tool_choice.type",
                format!("tool_choice.type: `{other}` is not one of auto, any, tool, none"),
            ))
        }
    };
    Ok((chat, choice.disable_parallel_tool_use.map(|disable| !disable)))
}

/// One turn as chat messages: a user turn's tool results become `tool` messages before its text; an
/// assistant turn's `tool_use` blocks become its calls; thinking blocks are dropped.
fn turn(i: usize, message: &InputMessage, out: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
    let param = format!("messages[{i}]");
    if message.role != "user" && message.role != "assistant" {
        return Err(ApiError::invalid(
            format!("{param}.role"),
            format!("{param}.role: `{}` is not one of user, assistant", message.role),
        ));
    }
    let blocks = match &message.content {
        Content::Text(text) => {
            out.push(ChatMessage::text(&message.role, text.clone()));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let (mut text, mut calls) = (Vec::new(), Vec::new());
    for (j, block) in blocks.iter().enumerate() {
        match block {
            ContentBlock::Text { text: t } => text.push(t.as_str()),
            ContentBlock::Thinking { .. } => {}
            ContentBlock::ToolUse { id, name, input } if message.role == "assistant" => calls.push(ToolCall {
                id: id.clone(),
                kind: "function".into(),
                function: FunctionCall { name: name.clone(), arguments: input.to_string() },
            }),
            ContentBlock::ToolResult { tool_use_id, content, is_error } if message.role == "user" => {
                let result = match content {
                    Some(content) => text_of(content, &format!("{param}.content[{j}].content"))?,
                    None => String::new(),
                };
                let result = if is_error == &Some(true) { format!("Error: {result}") } else { result };
                out.push(ChatMessage { tool_call_id: Some(tool_use_id.clone()), ..ChatMessage::text("tool", result) });
            }
            ContentBlock::ToolUse { .. } | ContentBlock::ToolResult { .. } | ContentBlock::Unsupported => {
                return Err(ApiError::invalid(
                    format!("{param}.content[{j}]"),
                    format!(
                        "{param}.content[{j}]: only text, thinking and tool_use blocks (assistant) or text and \
                         tool_result blocks (user) are served"
                    ),
                ))
            }
        }
    }
    if !text.is_empty() || !calls.is_empty() {
        let mut chat = ChatMessage::text(&message.role, text.join("\n"));
        chat.tool_calls = (!calls.is_empty()).then_some(calls);
        out.push(chat);
    }
    Ok(())
}

/// The text of a system prompt or tool result: a string, or text blocks joined by newlines.
fn text_of(content: &Content, param: &str) -> Result<String, ApiError> {
    match content {
        Content::Text(text) => Ok(text.clone()),
        Content::Blocks(blocks) => blocks
            .iter()
            .map(|block| match block {
                ContentBlock::Text { text } => Ok(text.as_str()),
                _ => Err(ApiError::invalid(param, format!("{param}: only text blocks are served here"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("\n")),
    }
}
