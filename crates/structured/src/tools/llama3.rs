//! The Llama 3.1/3.2 JSON format: the answer is a bare JSON object naming the function and its
//! `parameters`,
//!
//! ```text
//! {"name": "get_weather", "parameters": {"city": "Paris"}}
//! ```
//!
//! several calls separated by `; `. Reference: Meta's Llama 3.1 model card, "JSON based tool calling".

use super::Family;

/// The Llama 3 JSON family.
pub const LLAMA3_JSON: Family =
    Family { open: "", close: "", separator: "; ", arguments_key: "parameters", system_prompt };

/// The system-prompt block that lists `tools` (each a JSON text) when the template has no tool support.
fn system_prompt(tools: &[String]) -> String {
    format!(
        "You can call functions to help answer the user. The functions, as JSON schemas:\n{}\n\
         To call a function, answer with only a JSON object in the format \
         {{\"name\": <function name>, \"parameters\": <arguments as a JSON object>}}; separate several calls with \"; \".",
        tools.join("\n")
    )
}
