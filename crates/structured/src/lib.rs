//! Structured outputs: an output format (any JSON object, or JSON matching a schema) or a set of
//! function calls, compiled by llguidance into a [`hearth_engine::ConstraintSpec`] that masks, token by
//! token, everything that could not continue a valid output.
//!
//! The token trie is built once per model from the tokenizer's own token bytes, so masks and the
//! tokenizer can never disagree about what a token spells.
//!
//! # Layout
//! - this file — [`Structured`], the compiler, and `Following`, one sequence's walk through a grammar.
//! - [`tools`] — model families' call formats, their grammars and the streaming [`tools::CallParser`].
//! - `lazy` — the `auto` tool choice: free text, or calls constrained from their first token on.
//! - [`reasoning`] — `<think>` reasoning: split from the answer, and constraints held until it ends.
#![warn(missing_docs)]

mod lazy;
pub mod reasoning;
pub mod tools;

use std::sync::Arc;

use hearth_engine::{ConstraintSpec, TokenConstraint};
use hearth_text::Tokenizer;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

/// The output formats a request may demand.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON that validates against this JSON schema.
    JsonSchema(serde_json::Value),
}

/// Why a format cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The schema is invalid or uses a feature that is not supported.
    #[error("{0}")]
    Unsupported(String),
}

/// With this many tokens left, a constrained output only takes tokens that close it.
const CLOSING_BUDGET: usize = 48;

/// Compiles output formats for one model's vocabulary.
pub struct Structured {
    factory: ParserFactory,
    closing: Arc<Closing>,
}

/// What the closing phase needs to know about the vocabulary.
struct Closing {
    /// Each token's bytes, to follow whether the output is inside a string.
    words: Vec<Vec<u8>>,
    /// Tokens that end a string: a `"`, then only `"`, `}` or `]`.
    quotes: Vec<bool>,
    /// Tokens made only of `}` and `]`: they close objects and arrays.
    brackets: Vec<bool>,
    /// Tokens made only of `:` or `0`: what a closing object may still need (a key's colon, a value).
    fillers: Vec<bool>,
    /// The token that ends the output.
    eos: u32,
}

impl std::fmt::Debug for Structured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Structured").finish_non_exhaustive()
    }
}

impl Structured {
    /// Builds the token trie of `tokenizer` (`eos` is the token that ends a complete output).
    pub fn new(tokenizer: &Tokenizer, eos: u32) -> Result<Self, FormatError> {
        let vocab = tokenizer.vocab_size();
        let words: Vec<Vec<u8>> = (0..vocab as u32)
            .map(|id| {
                let bytes = tokenizer.token_bytes(id);
                if tokenizer.is_control(id) {
                    // toktrie's convention: special tokens start with a marker byte no text contains.
                    [vec![TokTrie::SPECIAL_TOKEN_MARKER], bytes].concat()
                } else {
                    bytes
                }
            })
            .collect();
        let made_of = |w: &[u8], allowed: &[u8]| !w.is_empty() && w.iter().all(|b| allowed.contains(b));
        let quotes = words.iter().map(|w| w.first() == Some(&b'"') && made_of(w, b"\"}]")).collect();
        let brackets = words.iter().map(|w| made_of(w, b"}]")).collect();
        let fillers = words.iter().map(|w| made_of(w, b":0")).collect();
        let trie = TokTrie::from(&TokRxInfo::new(vocab as u32, eos), &words);
        let closing = Arc::new(Closing { words, quotes, brackets, fillers, eos });
        let env: llguidance::toktrie::TokEnv = Arc::new(Env { trie, tokenizer: tokenizer.clone() });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| FormatError::Unsupported(e.to_string()))?;
        factory.quiet();
        Ok(Self { factory, closing })
    }

    /// Compiles `format`; errors name what in it cannot be served.
    pub fn compile(&self, format: &OutputFormat) -> Result<hearth_engine::Constraint, FormatError> {
        let mut schema = match format {
            OutputFormat::JsonObject => serde_json::json!({"type": "object"}),
            OutputFormat::JsonSchema(schema) => schema.clone(),
        };
        // Compact separators and no free whitespace: a small model cannot pad its output with newlines
        // until `max_tokens` cuts the JSON short. A schema's own `x-guidance` options win.
        if let Some(object) = schema.as_object_mut() {
            object.entry("x-guidance").or_insert_with(
                || serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
            );
        }
        Ok(Arc::new(self.grammar(TopLevelGrammar::from_json_schema(schema))?))
    }

    /// Compiles an answer that calls `functions` as `choice` demands, in `family`'s format; errors name
    /// what in a function's parameters cannot be served.
    pub fn compile_calls(
        &self,
        family: &tools::Family,
        functions: &[tools::FunctionSpec],
        choice: &tools::CallChoice,
        parallel: bool,
    ) -> Result<hearth_engine::Constraint, FormatError> {
        let all: Vec<&tools::FunctionSpec> = functions.iter().collect();
        let lark = |functions: &[&tools::FunctionSpec], parallel, leading_space| {
            TopLevelGrammar::from_lark(family.grammar(functions, parallel, leading_space))
        };
        match choice {
            tools::CallChoice::Required => Ok(Arc::new(self.grammar(lark(&all, parallel, false))?)),
            tools::CallChoice::Function(name) => {
                let named: Vec<&tools::FunctionSpec> = all.into_iter().filter(|f| &f.name == name).collect();
                if named.is_empty() {
                    return Err(FormatError::Unsupported(format!("no function is named `{name}`")));
                }
                Ok(Arc::new(self.grammar(lark(&named, false, false))?))
            }
            tools::CallChoice::Auto => {
                let calls = self.grammar(lark(&all, parallel, true))?;
                Ok(Arc::new(lazy::LazyCalls::new(calls, family.trigger())))
            }
        }
    }

    /// Compiles one grammar.
    fn grammar(&self, grammar: TopLevelGrammar) -> Result<Compiled, FormatError> {
        let parser = self.factory.create_parser(grammar).map_err(|e| FormatError::Unsupported(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(error) = matcher.get_error() {
            return Err(FormatError::Unsupported(error));
        }
        Ok(Compiled { matcher, closing: self.closing.clone() })
    }
}

/// The tokenizer as llguidance sees it.
struct Env {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match std::str::from_utf8(s) {
            Ok(text) => self.tokenizer.encode_text(text).unwrap_or_else(|_| self.trie.greedy_tokenize(s)),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// A compiled format; each sequence follows its own copy of the matcher.
struct Compiled {
    matcher: Matcher,
    closing: Arc<Closing>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").finish_non_exhaustive()
    }
}

impl Compiled {
    /// A sequence at the start of the output.
    fn follow(&self) -> Following {
        Following {
            matcher: self.matcher.deep_clone(),
            closing: self.closing.clone(),
            in_string: false,
            escaped: false,
        }
    }
}

impl ConstraintSpec for Compiled {
    fn start(&self) -> Box<dyn TokenConstraint> {
        Box::new(self.follow())
    }
}

/// One sequence's progress through a compiled format.
struct Following {
    matcher: Matcher,
    closing: Arc<Closing>,
    /// Whether the output so far ends inside a JSON string, and right after a backslash there.
    in_string: bool,
    escaped: bool,
}

impl TokenConstraint for Following {
    /// Near the end of the token budget, only tokens that close the output are allowed: the end itself
    /// where it may come (no further call starts), inside a string its closing quote, outside one a closing
    /// bracket, else a colon or a minimal value, else whatever the grammar forces. No new keys or items
    /// start, so the output completes in time.
    fn mask(&mut self, logits: &mut [f32], remaining: usize) -> Result<(), String> {
        let allowed = self.matcher.compute_mask_or_eos().map_err(|e| e.to_string())?;
        let allowed = |id: usize| id < allowed.len() && allowed.get(id);
        let any = |set: &[bool]| (0..logits.len()).any(|id| allowed(id) && set.get(id) == Some(&true));
        let c = &self.closing;
        let eos = c.eos as usize;
        if remaining <= CLOSING_BUDGET && allowed(eos) {
            for (id, logit) in logits.iter_mut().enumerate() {
                if id != eos {
                    *logit = f32::NEG_INFINITY;
                }
            }
            return Ok(());
        }
        let narrowed: Option<&[bool]> = match remaining <= CLOSING_BUDGET {
            false => None,
            true if self.in_string => any(&c.quotes).then_some(&c.quotes),
            true if any(&c.brackets) => Some(&c.brackets),
            true => any(&c.fillers).then_some(&c.fillers),
        };
        for (id, logit) in logits.iter_mut().enumerate() {
            let keep = allowed(id) && narrowed.is_none_or(|set| set.get(id) == Some(&true));
            if !keep {
                *logit = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn commit(&mut self, token: u32) -> Result<bool, String> {
        self.matcher.consume_token(token).map_err(|e| e.to_string())?;
        for &b in self.closing.words.get(token as usize).map_or(&[][..], Vec::as_slice) {
            match (self.in_string, self.escaped, b) {
                (true, true, _) => self.escaped = false,
                (true, false, b'\\') => self.escaped = true,
                (true, false, b'"') | (false, _, b'"') => self.in_string = !self.in_string,
                _ => {}
            }
        }
        Ok(self.matcher.is_stopped() || (self.matcher.is_accepting().unwrap_or(false) && self.only_end_allowed()))
    }
}

impl Following {
    /// Whether nothing but the end of the output may follow.
    fn only_end_allowed(&mut self) -> bool {
        self.matcher.compute_mask().is_ok_and(|mask| mask.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_text::{GgufVocab, TokenType};

    /// A byte-level vocabulary: one token per printable ASCII byte, plus `{"`, `":`, and an end token.
    fn tokenizer() -> (Tokenizer, u32) {
        let mut tokens: Vec<String> = (0x21u8..=0x7e).map(|b| (b as char).to_string()).collect();
        tokens.push("Ġ".into()); // the byte-level spelling of a space
        tokens.push("Ċ".into()); // newline
        tokens.extend(["{\"".to_string(), "\":".to_string(), "<|end|>".to_string()]);
        let mut token_types = vec![TokenType::Normal; tokens.len()];
        let end = tokens.len() as u32 - 1;
        token_types[end as usize] = TokenType::Control;
        let vocab = GgufVocab {
            model: "gpt2".into(),
            tokens,
            token_types,
            merges: vec![],
            pre: None,
            bos: None,
            eos: Some(end),
            ..GgufVocab::default()
        };
        (Tokenizer::from_gguf(&vocab).unwrap(), end)
    }

    /// Follows the constraint greedily, always taking the lowest allowed id that is not the end token.
    fn follow(structured: &Structured, format: &OutputFormat, steps: usize) -> (String, bool) {
        follow_constraint(&structured.compile(format).unwrap(), steps)
    }

    fn follow_constraint(constraint: &hearth_engine::Constraint, steps: usize) -> (String, bool) {
        let (tokenizer, end) = tokenizer();
        let mut constraint = constraint.start();
        let mut ids = Vec::new();
        for _ in 0..steps {
            let mut logits = vec![0.0; tokenizer.vocab_size()];
            constraint.mask(&mut logits, steps).unwrap();
            let allowed: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize].is_finite()).collect();
            let Some(&next) = allowed.iter().find(|&&i| i != end).or(allowed.first()) else { break };
            if next == end {
                return (tokenizer.decode(&ids).unwrap(), true);
            }
            ids.push(next);
            if constraint.commit(next).unwrap() {
                return (tokenizer.decode(&ids).unwrap(), true);
            }
        }
        (tokenizer.decode(&ids).unwrap(), false)
    }

    fn functions() -> Vec<tools::FunctionSpec> {
        let city = serde_json::json!({
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 4}},
            "required": ["city"],
            "additionalProperties": false
        });
        let now = serde_json::json!({"type": "object", "properties": {}, "additionalProperties": false});
        vec![
            tools::FunctionSpec { name: "weather".into(), description: None, parameters: city },
            tools::FunctionSpec { name: "now".into(), description: Some("The time.".into()), parameters: now },
        ]
    }

    /// The calls in `text`, as the family's parser reads them.
    fn calls(family: tools::Family, text: &str) -> Vec<(String, serde_json::Value)> {
        let mut parser = family.parser();
        let mut events = parser.push(text);
        events.extend(parser.finish());
        let mut calls: Vec<(String, String)> = Vec::new();
        for event in events {
            match event {
                tools::ToolEvent::Call { name, .. } => calls.push((name, String::new())),
                tools::ToolEvent::Arguments { index, text } => calls[index].1.push_str(&text),
                tools::ToolEvent::Content(text) => panic!("content {text:?} in {text:?}"),
            }
        }
        calls.into_iter().map(|(name, args)| (name, serde_json::from_str(&args).unwrap())).collect()
    }

    #[test]
    fn required_calls_parse_and_follow_their_schema() {
        let (tokenizer, end) = tokenizer();
        let structured = Structured::new(&tokenizer, end).unwrap();
        for family in [tools::hermes::HERMES, tools::llama3::LLAMA3_JSON] {
            let constraint =
                structured.compile_calls(&family, &functions(), &tools::CallChoice::Required, false).unwrap();
            let (text, complete) = follow_constraint(&constraint, 200);
            assert!(complete, "{text:?}");
            let calls = calls(family, &text);
            assert_eq!(calls.len(), 1, "{text}");
            match calls[0].0.as_str() {
                "weather" => assert!(calls[0].1["city"].as_str().is_some_and(|c| c.len() <= 4), "{text}"),
                "now" => assert_eq!(calls[0].1, serde_json::json!({}), "{text}"),
                other => panic!("unknown function {other} in {text}"),
            }
        }
    }

    #[test]
    fn a_named_function_is_the_one_called() {
        let (tokenizer, end) = tokenizer();
        let structured = Structured::new(&tokenizer, end).unwrap();
        let choice = tools::CallChoice::Function("weather".into());
        let constraint = structured.compile_calls(&tools::hermes::HERMES, &functions(), &choice, true).unwrap();
        let (text, complete) = follow_constraint(&constraint, 200);
        assert!(complete, "{text:?}");
        assert_eq!(calls(tools::hermes::HERMES, &text)[0].0, "weather", "{text}");
        let unknown = tools::CallChoice::Function("nope".into());
        assert!(structured.compile_calls(&tools::hermes::HERMES, &functions(), &unknown, true).is_err());
    }

    #[test]
    fn auto_leaves_text_free_and_constrains_a_call_once_it_starts() {
        let (tokenizer, end) = tokenizer();
        let structured = Structured::new(&tokenizer, end).unwrap();
        let spec =
            structured.compile_calls(&tools::hermes::HERMES, &functions(), &tools::CallChoice::Auto, true).unwrap();
        let id = |text: &str| tokenizer.encode_text(text).unwrap();
        let free = |constraint: &mut Box<dyn TokenConstraint>| {
            let mut logits = vec![0.0; tokenizer.vocab_size()];
            constraint.mask(&mut logits, 100).unwrap();
            logits.iter().all(|l| l.is_finite())
        };

        let mut text = spec.start();
        for token in id("<tx") {
            assert!(free(&mut text));
            assert!(!text.commit(token).unwrap());
        }
        assert!(free(&mut text), "a text answer is never masked");

        let mut call = spec.start();
        for token in id(" <tool_call>") {
            assert!(free(&mut call), "undecided until the trigger is complete");
            call.commit(token).unwrap();
        }
        let mut logits = vec![0.0; tokenizer.vocab_size()];
        call.mask(&mut logits, 100).unwrap();
        let allowed: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize].is_finite()).collect();
        assert_eq!(tokenizer.decode(&allowed).unwrap(), "\n", "after the trigger the grammar leads");
    }

    #[test]
    fn near_the_budget_no_further_call_starts() {
        let (tokenizer, end) = tokenizer();
        let structured = Structured::new(&tokenizer, end).unwrap();
        let spec =
            structured.compile_calls(&tools::hermes::HERMES, &functions(), &tools::CallChoice::Required, true).unwrap();
        let mut constraint = spec.start();
        for token in tokenizer.encode_text("<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>").unwrap()
        {
            constraint.commit(token).unwrap();
        }
        let mut logits = vec![0.0; tokenizer.vocab_size()];
        constraint.mask(&mut logits, 100).unwrap();
        assert!(logits[end as usize].is_finite() && logits.iter().filter(|l| l.is_finite()).count() > 1);
        constraint.mask(&mut logits, 10).unwrap();
        assert_eq!(logits.iter().filter(|l| l.is_finite()).count(), 1, "only the end is left");
        assert!(logits[end as usize].is_finite());
    }

    #[test]
    fn a_schema_forces_its_shape() {
        let (tokenizer, end) = tokenizer();
        let structured = Structured::new(&tokenizer, end).unwrap();
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}},
            "required": ["a"],
            "additionalProperties": false
        });
        let (text, complete) = follow(&structured, &OutputFormat::JsonSchema(schema), 40);
        assert!(complete, "the output must end once the object is complete: {text:?}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(value["a"].is_u64(), "{text}");
    }

    #[test]
    fn a_free_object_closes_when_the_budget_runs_out() {
        let (tokenizer, end) = tokenizer();
        let structured = Structured::new(&tokenizer, end).unwrap();
        // Within the closing budget from the first token: the object must be closed, not grown.
        let (text, complete) = follow(&structured, &OutputFormat::JsonObject, 20);
        assert!(complete, "{text:?}");
        assert!(serde_json::from_str::<serde_json::Value>(&text).unwrap().is_object(), "{text}");
    }

    #[test]
    fn an_invalid_schema_is_refused() {
        let (tokenizer, end) = tokenizer();
        let structured = Structured::new(&tokenizer, end).unwrap();
        let bad = serde_json::json!({"type": "object", "properties": {"a": {"type": "no-such-type"}}});
        assert!(structured.compile(&OutputFormat::JsonSchema(bad)).is_err());
    }
}
