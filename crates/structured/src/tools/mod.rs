//! Tool calling: how a model family writes function calls, the grammar that makes its calls valid, and
//! the parser that turns its output back into calls.
//!
//! A family is data ([`Family`]): the text around each call's JSON object, the separator between calls
//! and the key that holds the arguments, plus the system prompt that lists the functions when the chat
//! template cannot. One small file per family:
//!
//! # Layout
//! - [`hermes`] — `<tool_call>{"name", "arguments"}</tool_call>` (Hermes, Qwen, SmolLM; the default).
//! - [`llama3`] — bare `{"name", "parameters"}` objects (Llama 3.1/3.2).
//! - `parse` — [`CallParser`], the streaming parser every family shares.

pub mod hermes;
pub mod llama3;
mod parse;

pub use parse::{CallParser, ToolEvent};

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// The function's name.
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// The JSON schema of its arguments (an object).
    pub parameters: serde_json::Value,
}

impl FunctionSpec {
    /// The definition as templates and prompts show it: `{"type": "function", "function": {…}}`.
    pub fn definition(&self) -> serde_json::Value {
        let mut function = serde_json::json!({"name": self.name, "parameters": self.parameters});
        if let Some(description) = &self.description {
            function["description"] = description.clone().into();
        }
        serde_json::json!({"type": "function", "function": function})
    }
}

/// Which calls an answer must or may make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallChoice {
    /// The model answers in text or with calls, as it chooses; calls it starts are constrained.
    Auto,
    /// The answer is one or more calls.
    Required,
    /// The answer is one call of this function.
    Function(String),
}

/// How one model family writes function calls.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Text before each call's JSON object.
    pub open: &'static str,
    /// Text after each call's JSON object.
    pub close: &'static str,
    /// Text between two calls.
    pub separator: &'static str,
    /// The key of the call object that holds the arguments (the other is `name`).
    pub arguments_key: &'static str,
    system_prompt: fn(&[String]) -> String,
}

impl Family {
    /// The family a chat template writes calls in, when it has tool support and is one we know.
    pub fn of_template(source: &str) -> Option<Family> {
        if source.contains("<tool_call>") {
            Some(hermes::HERMES)
        } else if source.contains("<|python_tag|>") {
            Some(llama3::LLAMA3_JSON)
        } else {
            None
        }
    }

    /// The text that starts an answer made of calls (after optional whitespace).
    pub fn trigger(&self) -> &'static str {
        match self.open.trim_end() {
            "" => "{",
            open => open,
        }
    }

    /// The system-prompt block that lists `functions` for templates without tool support.
    pub fn system_prompt(&self, functions: &[FunctionSpec]) -> String {
        let definitions: Vec<String> = functions.iter().map(|f| spaced(&f.definition())).collect();
        (self.system_prompt)(&definitions)
    }

    /// One call as the model writes it, for assistant turns in the history of templates without tool support.
    pub fn render_call(&self, name: &str, arguments: &serde_json::Value) -> String {
        let (name, arguments) = (spaced(&name), spaced(arguments));
        format!("{}{{\"name\": {name}, \"{}\": {arguments}}}{}", self.open, self.arguments_key, self.close)
    }

    /// A parser for this family's output.
    pub fn parser(&self) -> CallParser {
        CallParser::new(*self)
    }

    /// The Lark grammar of an answer made of calls to `functions`: one, or several when `parallel`, after
    /// optional whitespace when `leading_space` (the start of an answer in `auto`, which was free).
    pub(crate) fn grammar(&self, functions: &[&FunctionSpec], parallel: bool, leading_space: bool) -> String {
        let object = |f: &FunctionSpec| {
            serde_json::json!({
                "type": "object",
                "properties": {"name": {"const": f.name}, self.arguments_key: f.parameters},
                "required": ["name", self.arguments_key],
                "additionalProperties": false,
            })
        };
        let mut schema = match functions {
            [one] => object(one),
            many => serde_json::json!({"anyOf": many.iter().map(|f| object(f)).collect::<Vec<_>>()}),
        };
        // Compact separators and no free whitespace, as for `response_format`.
        schema["x-guidance"] =
            serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "});
        let literal = |text: &str| if text.is_empty() { String::new() } else { serde_json::json!(text).to_string() };
        let start = match (leading_space, parallel) {
            (true, true) => "start: SPACE? call (SEPARATOR call)*",
            (true, false) => "start: SPACE? call",
            (false, true) => "start: call (SEPARATOR call)*",
            (false, false) => "start: call",
        };
        format!(
            "{start}\ncall: {} %json {schema} {}\nSEPARATOR: {}\nSPACE: /[ \\t\\n]+/\n",
            literal(self.open),
            literal(self.close),
            literal(self.separator),
        )
    }
}

/// JSON with the separators the constrained output uses (`", "`, `": "`), as Python's `json.dumps` writes it.
fn spaced(value: &impl serde::Serialize) -> String {
    struct Spaced;
    impl serde_json::ser::Formatter for Spaced {
        fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }
        fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }
        fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
            w.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, Spaced);
    value.serialize(&mut serializer).expect("JSON values serialize");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}
