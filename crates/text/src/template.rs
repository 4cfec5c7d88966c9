//! The model's chat template (Jinja, from `tokenizer.chat_template`), rendered with minijinja the way
//! Hugging Face renders it: `trim_blocks` + `lstrip_blocks`, Python string methods, `raise_exception`,
//! `strftime_now` (in UTC).
//!
//! Message content is rendered as a unique marker first and spliced in afterwards, so the result knows
//! exactly which byte ranges came from users. [`crate::Tokenizer::encode_prompt`] uses those ranges to keep
//! control tokens out of content. A template that transforms content (e.g. `| trim`) sees the marker,
//! so such transforms do not apply to content.

use std::hash::{BuildHasher, Hasher};
use std::ops::Range;

use minijinja::syntax::SyntaxConfig;
use minijinja::{context, Environment, ErrorKind};
use serde::Serialize;

const TEMPLATE_NAME: &str = "chat";

/// One message as the template sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The message text.
    pub content: String,
    /// The calls an assistant message made, in Hugging Face's shape
    /// (`{"id", "type": "function", "function": {"name", "arguments"}}`); only templates with tool support see them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<serde_json::Value>,
    /// The call a `tool` message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl PromptMessage {
    /// A message of plain text.
    pub fn text(role: &str, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }
}

/// A rendered prompt and where its message content lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    /// The whole prompt text.
    pub text: String,
    /// Byte ranges of `text` that are message content, in order.
    pub content_spans: Vec<Range<usize>>,
}

/// Why a template could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template source does not compile.
    #[error("chat template does not compile: {0}")]
    Compile(String),
    /// The template rejected the conversation (its `raise_exception`, or a runtime error).
    #[error("chat template rejected the messages: {0}")]
    Render(String),
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are exposed to it as variables.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let compile = |e: minijinja::Error| TemplateError::Compile(e.to_string());
        let mut env = Environment::new();
        env.set_syntax(SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().map_err(compile)?);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_function("strftime_now", |format: String| crate::strftime::strftime_now(&format));
        env.add_template_owned(TEMPLATE_NAME, source.to_string()).map_err(compile)?;
        Ok(Self { env, source: source.to_string(), bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// The variables Hearth sets for every render.
    pub const VARIABLES: [&str; 5] = ["messages", "tools", "add_generation_prompt", "bos_token", "eos_token"];

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template renders function definitions itself (it reads a `tools` variable).
    pub fn supports_tools(&self) -> bool {
        self.env
            .get_template(TEMPLATE_NAME)
            .is_ok_and(|template| template.undeclared_variables(false).contains("tools"))
    }

    /// Renders `messages`, ending with the assistant's turn header when `add_generation_prompt`. `tools`
    /// (function definitions, `{"type": "function", "function": {…}}`) reach the template as its `tools`
    /// variable when there are any; `kwargs` become further variables (e.g. Qwen3's `enable_thinking`), except
    /// that they cannot replace [`ChatTemplate::VARIABLES`].
    pub fn render(
        &self,
        messages: &[PromptMessage],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<RenderedPrompt, TemplateError> {
        let nonce = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let prefix = format!("\u{E000}{nonce:016x}:");
        let marker = |i: usize| format!("{prefix}{i}\u{E001}");
        // Content never reaches the template, nor is it copied for it: only `splice` writes it, once.
        let masked: Vec<PromptMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| PromptMessage {
                role: m.role.clone(),
                content: if m.content.is_empty() { String::new() } else { marker(i) },
                tool_calls: m.tool_calls.clone(),
                tool_call_id: m.tool_call_id.clone(),
            })
            .collect();
        let template = self.env.get_template(TEMPLATE_NAME).map_err(|e| TemplateError::Compile(e.to_string()))?;
        let tools = (!tools.is_empty()).then(|| minijinja::Value::from(minijinja::value::Serde(tools)));
        let skeleton = template
            .render(context! {
                messages => minijinja::Value::from(minijinja::value::Serde(&masked)),
                tools => tools,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
                ..minijinja::Value::from(minijinja::value::Serde(kwargs))
            })
            .map_err(|e| TemplateError::Render(e.to_string()))?;
        Ok(splice(&skeleton, messages, &prefix))
    }
}

/// Replaces every marker in `skeleton` (`prefix`, a message index, U+E001) with its message's content,
/// recording where each landed.
fn splice(skeleton: &str, messages: &[PromptMessage], prefix: &str) -> RenderedPrompt {
    let mut text = String::with_capacity(skeleton.len() + messages.iter().map(|m| m.content.len()).sum::<usize>());
    let mut content_spans = Vec::new();
    let mut rest = skeleton;
    while let Some(start) = rest.find(prefix) {
        let after = &rest[start + prefix.len()..];
        let marked = after.split_once('\u{E001}').and_then(|(digits, tail)| {
            let index = digits.parse::<usize>().ok().filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))?;
            Some((messages.get(index)?, tail))
        });
        let Some((message, tail)) = marked else {
            text.push_str(&rest[..start + prefix.len()]);
            rest = after;
            continue;
        };
        text.push_str(&rest[..start]);
        content_spans.push(text.len()..text.len() + message.content.len());
        text.push_str(&message.content);
        rest = tail;
    }
    text.push_str(rest);
    RenderedPrompt { text, content_spans }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn none() -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    fn msg(role: &str, content: &str) -> PromptMessage {
        PromptMessage::text(role, content)
    }

    // The tool part of Qwen2.5's template, abridged.
    const WITH_TOOLS: &str = "{% if tools %}<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools>{% endif %}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% for call in m.tool_calls %}<tool_call>{{ call.function | tojson }}</tool_call>{% endfor %}{% endfor %}";

    #[test]
    fn tools_reach_templates_that_read_them() {
        let t = ChatTemplate::new(WITH_TOOLS, "", "").unwrap();
        assert!(t.supports_tools());
        assert!(!ChatTemplate::new(CHATML, "", "").unwrap().supports_tools());
        let tool = serde_json::json!({"type": "function", "function": {"name": "f", "description": "<|im_start|>"}});
        let mut call = msg("assistant", "");
        call.tool_calls =
            vec![serde_json::json!({"type": "function", "function": {"name": "f", "arguments": {"a": 1}}})];
        let p = t.render(&[msg("user", "hi"), call], &[tool], false, &none()).unwrap();
        // `tojson` escapes `<` and `>`, so a definition cannot spell a control token.
        assert_eq!(
            p.text,
            r#"<tools>{"function": {"description": "\u003c|im_start|\u003e", "name": "f"}, "type": "function"}</tools>[user]hi[assistant]<tool_call>{"arguments": {"a": 1}, "name": "f"}</tool_call>"#
        );
        assert_eq!(t.render(&[msg("user", "hi")], &[], false, &none()).unwrap().text, "[user]hi");
    }

    #[test]
    fn renders_chatml_and_marks_content() {
        let t = ChatTemplate::new(CHATML, "<s>", "</s>").unwrap();
        let p = t.render(&[msg("system", "Be brief."), msg("user", "Hi <|im_end|>")], &[], true, &none()).unwrap();
        assert_eq!(
            p.text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi <|im_end|><|im_end|>\n<|im_start|>assistant\n"
        );
        let spans: Vec<&str> = p.content_spans.iter().map(|r| &p.text[r.clone()]).collect();
        assert_eq!(spans, ["Be brief.", "Hi <|im_end|>"]);
    }

    #[test]
    fn trims_blocks_like_hugging_face() {
        let t = ChatTemplate::new("{% for m in messages %}\n  {{ m.content }}\n{% endfor %}", "", "").unwrap();
        assert_eq!(t.render(&[msg("user", "a"), msg("user", "b")], &[], false, &none()).unwrap().text, "  a\n  b\n");
    }

    #[test]
    fn raise_exception_is_a_render_error() {
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        let err = t.render(&[msg("user", "a")], &[], false, &none()).unwrap_err();
        assert!(err.to_string().contains("roles must alternate"), "{err}");
    }

    #[test]
    fn kwargs_are_variables_but_cannot_replace_hearths() {
        let t = ChatTemplate::new("{{ enable_thinking }}/{{ messages | length }}", "", "").unwrap();
        let kwargs = serde_json::json!({"enable_thinking": false, "messages": []});
        let kwargs = kwargs.as_object().unwrap();
        assert_eq!(t.render(&[msg("user", "a")], &[], false, kwargs).unwrap().text, "False/1");
    }

    #[test]
    fn python_string_methods_work() {
        let t = ChatTemplate::new("{{ messages[0].role.upper() }}", "", "").unwrap();
        assert_eq!(t.render(&[msg("user", "a")], &[], false, &none()).unwrap().text, "USER");
    }
}
