//! `tools`, `tool_choice` and tool history: what a chat request's functions mean for its prompt and its
//! output.
//!
//! Templates that render function definitions themselves, in a call format we parse, get them as their
//! `tools` variable and the history in Hugging Face's shape. Every other template gets Hearth's documented
//! format ([`hermes`]): the definitions in the system prompt, earlier calls written as the model writes
//! them, and tool results as `<tool_response>` user turns.

use hearth_engine::Constraint;
use hearth_protocol::{ChatCompletionRequest, ChatMessage, ToolCall, ToolChoice};
use hearth_structured::tools::{hermes, CallChoice, Family, FunctionSpec};
use hearth_text::PromptMessage;

use crate::error::ApiError;
use crate::model::ServedModel;

/// OpenAI's limit on a function name's length.
const MAX_NAME: usize = 64;

/// How the model is told about functions and writes its calls.
#[derive(Debug, Clone, Copy)]
pub struct ToolStyle {
    /// The call format.
    pub family: Family,
    /// Whether the template renders definitions and history itself.
    pub native: bool,
}

impl ToolStyle {
    /// The style of `model`'s chat template.
    pub fn of(model: &ServedModel) -> Self {
        match model.native_tools {
            Some(family) => Self { family, native: true },
            None => Self { family: hermes::HERMES, native: false },
        }
    }
}

/// The functions a request offers, and how its answer must use them.
#[derive(Debug, Clone)]
pub struct ToolUse {
    /// The format the answer's calls are parsed in.
    pub family: Family,
    /// What the engine enforces.
    pub constraint: Constraint,
    /// The definitions, as the template or the system prompt shows them.
    pub functions: Vec<FunctionSpec>,
}

/// Checks `tools`, `tool_choice` and `parallel_tool_calls`; `None` when the answer is plain text (no
/// tools, or `tool_choice: none`).
pub fn tool_use(req: &ChatCompletionRequest, model: &ServedModel) -> Result<Option<ToolUse>, ApiError> {
    if req.functions.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(ApiError::invalid("functions", "`functions` is deprecated and not served; use `tools`"));
    }
    let tools = req.tools.as_deref().unwrap_or_default();
    let functions = tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool.kind != "function" {
                return Err(ApiError::invalid(
                    format!("tools[{i}].type"),
                    format!("tool type `{}` is not supported; expected `function`", tool.kind),
                ));
            }
            let f = &tool.function;
            check_name(&f.name, &format!("tools[{i}].function.name"))?;
            let parameters = match &f.parameters {
                None => serde_json::json!({"type": "object", "properties": {}, "additionalProperties": false}),
                Some(schema) if schema.is_object() => schema.clone(),
                Some(_) => {
                    return Err(ApiError::invalid(
                        format!("tools[{i}].function.parameters"),
                        "`parameters` must be a JSON schema object",
                    ))
                }
            };
            Ok(FunctionSpec { name: f.name.clone(), description: f.description.clone(), parameters })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(dup) = functions.iter().enumerate().find(|(i, f)| functions[..*i].iter().any(|g| g.name == f.name)) {
        return Err(ApiError::invalid("tools", format!("two tools are named `{}`", dup.1.name)));
    }

    let choice = match &req.tool_choice {
        None if functions.is_empty() => return Ok(None),
        None => CallChoice::Auto,
        Some(ToolChoice::Mode(mode)) if mode == "none" => return Ok(None),
        Some(_) if functions.is_empty() => {
            return Err(ApiError::invalid("tool_choice", "`tool_choice` is only allowed when `tools` are given"));
        }
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => CallChoice::Auto,
            "required" => CallChoice::Required,
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("unknown `tool_choice` `{other}`; expected none, auto, required or a named function"),
                ))
            }
        },
        Some(ToolChoice::Named(named)) => {
            let name = &named.function.name;
            if named.kind != "function" || !functions.iter().any(|f| &f.name == name) {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("`tool_choice` names the function `{name}`, which is not in `tools`"),
                ));
            }
            CallChoice::Function(name.clone())
        }
    };
    if req.response_format.as_ref().is_some_and(|f| f.kind != "text") {
        return Err(ApiError::invalid(
            "response_format",
            "`response_format` other than `text` cannot be combined with `tools` on this server",
        ));
    }
    let family = ToolStyle::of(model).family;
    let parallel = req.parallel_tool_calls.unwrap_or(true);
    let constraint = model
        .structured
        .compile_calls(&family, &functions, &choice, parallel)
        .map_err(|e| ApiError::invalid("tools", format!("`tools` cannot be served: {e}")))?;
    Ok(Some(ToolUse { family, constraint, functions }))
}

/// A function name as OpenAI allows it: 1 to 64 letters, digits, `_` or `-`.
fn check_name(name: &str, param: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            param,
            format!("function names are 1 to {MAX_NAME} of a-z, A-Z, 0-9, _ and -, got {name:?}"),
        ))
    }
}

/// Adds the function definitions to the system prompt, for templates that cannot render them.
pub fn announce(messages: &mut Vec<PromptMessage>, style: ToolStyle, functions: &[FunctionSpec]) {
    let block = style.family.system_prompt(functions);
    match messages.first_mut().filter(|m| m.role == "system") {
        Some(system) if system.content.is_empty() => system.content = block,
        Some(system) => system.content = format!("{}\n\n{block}", system.content),
        None => messages.insert(0, PromptMessage::text("system", block)),
    }
}

/// An assistant message's calls, for the template: in Hugging Face's shape when it renders them, else
/// appended to the content as the model writes them.
pub fn assistant_calls(
    i: usize,
    m: &ChatMessage,
    content: String,
    style: ToolStyle,
) -> Result<PromptMessage, ApiError> {
    let calls = m.tool_calls.as_deref().unwrap_or_default();
    let mut parsed = Vec::with_capacity(calls.len());
    for (j, ToolCall { id, kind, function }) in calls.iter().enumerate() {
        if kind != "function" {
            return Err(ApiError::invalid(
                format!("messages[{i}].tool_calls[{j}].type"),
                format!("tool call type `{kind}` is not supported; expected `function`"),
            ));
        }
        check_name(&function.name, &format!("messages[{i}].tool_calls[{j}].function.name"))?;
        // Arguments are a JSON text; one that does not parse is passed on as the string it is.
        let arguments = serde_json::from_str(&function.arguments).unwrap_or_else(|_| function.arguments.clone().into());
        parsed.push((id, &function.name, arguments));
    }
    let mut message = PromptMessage::text("assistant", content);
    if style.native {
        message.tool_calls = parsed
            .into_iter()
            .map(|(id, name, arguments)| {
                serde_json::json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
            })
            .collect();
    } else if !parsed.is_empty() {
        let written: Vec<String> =
            parsed.iter().map(|(_, name, arguments)| style.family.render_call(name, arguments)).collect();
        let separator = style.family.separator;
        message.content = [message.content.as_str(), &written.join(separator)]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
    }
    Ok(message)
}

/// A `tool` message: the result of the call `tool_call_id` names.
pub fn tool_result(i: usize, m: &ChatMessage, content: String, style: ToolStyle) -> Result<PromptMessage, ApiError> {
    let Some(id) = m.tool_call_id.clone() else {
        return Err(ApiError::invalid(format!("messages[{i}].tool_call_id"), "a `tool` message needs `tool_call_id`"));
    };
    Ok(if style.native {
        PromptMessage { tool_call_id: Some(id), ..PromptMessage::text("tool", content) }
    } else {
        PromptMessage::text("user", hermes::tool_response(&content))
    })
}
