//! The Hermes format, also used by Qwen 2.5/3 and SmolLM templates, and Hearth's documented format for
//! templates without tool support: each call is a JSON object inside `<tool_call>` tags,
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Paris"}}
//! </tool_call>
//! ```
//!
//! one per line, and the function definitions are listed in the system prompt inside `<tools>` tags.
//! Reference: NousResearch's Hermes-Function-Calling prompt format.

use super::Family;

/// The Hermes family.
pub const HERMES: Family = Family {
    open: "<tool_call>\n",
    close: "\n</tool_call>",
    separator: "\n",
    arguments_key: "arguments",
    system_prompt,
};

/// The system-prompt block that lists `tools` (each a JSON text) when the template has no tool support.
fn system_prompt(tools: &[String]) -> String {
    format!(
        "You can call functions to help answer the user. The functions, as JSON schemas:\n<tools>\n{}\n</tools>\n\
         To call a function, answer with only a JSON object holding its name and arguments, inside \
         <tool_call></tool_call> tags, one call per line:\n\
         <tool_call>\n{{\"name\": <function name>, \"arguments\": <arguments as a JSON object>}}\n</tool_call>",
        tools.join("\n")
    )
}

/// A tool's result as a user turn, for templates without tool support.
pub fn tool_response(content: &str) -> String {
    format!("<tool_response>\n{content}\n</tool_response>")
}
