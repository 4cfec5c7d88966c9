//! Thinking models write their reasoning between `<think>` and `</think>` before the answer. This module
//! splits their text into reasoning and answer ([`ReasoningParser`]), and holds a structured-output or
//! tool-call constraint back until the reasoning has ended ([`after_reasoning`]), so the grammar shapes
//! the answer and never the thinking.

use std::sync::Arc;

use hearth_engine::{Constraint, ConstraintSpec, TokenConstraint};
use hearth_text::stop::partial_suffix;

/// The tag that opens reasoning.
pub const OPEN: &str = "<think>";
/// The tag that closes it.
pub const CLOSE: &str = "</think>";

/// Where an answer starts relative to its reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningStart {
    /// The prompt already opened `<think>` (DeepSeek-R1 style): the output begins as reasoning.
    Inside,
    /// The output may open with `<think>` (after whitespace) or go straight to the answer.
    MayOpen,
}

/// A piece of a thinking model's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasoningEvent {
    /// Reasoning text.
    Reasoning(String),
    /// Answer text.
    Content(String),
}

/// Where the parser is in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before anything but whitespace: `<think>` may still open.
    Opening,
    /// Inside the reasoning, before its first non-whitespace character.
    ReasoningStart,
    /// Inside the reasoning.
    Reasoning,
    /// After `</think>`, before the answer's first non-whitespace character.
    AnswerStart,
    /// The answer.
    Answer,
}

/// Splits one answer's streamed text at the `<think>` tags. Reasoning and answer are each trimmed of
/// surrounding whitespace; a tag split across pieces is held back until it is whole.
#[derive(Debug, Clone)]
pub struct ReasoningParser {
    phase: Phase,
    /// Text not yet released: a possible tag prefix, or whitespace that may turn out to be trailing.
    held: String,
}

impl ReasoningParser {
    /// A parser for an answer that starts as `start` says.
    pub fn new(start: ReasoningStart) -> Self {
        let phase = match start {
            ReasoningStart::Inside => Phase::ReasoningStart,
            ReasoningStart::MayOpen => Phase::Opening,
        };
        Self { phase, held: String::new() }
    }

    /// The events for the next piece of text.
    pub fn push(&mut self, text: &str) -> Vec<ReasoningEvent> {
        self.held.push_str(text);
        let mut out = Vec::new();
        loop {
            let before = (self.phase, self.held.len());
            self.step(&mut out);
            if (self.phase, self.held.len()) == before {
                return out;
            }
        }
    }

    /// The events for what is still held at the end of the text.
    pub fn finish(&mut self) -> Vec<ReasoningEvent> {
        let held = std::mem::take(&mut self.held);
        let (reasoning, text) = match self.phase {
            Phase::Opening | Phase::AnswerStart => (false, held.trim()),
            Phase::Answer => (false, held.as_str()),
            Phase::ReasoningStart => (true, held.trim()),
            Phase::Reasoning => (true, held.trim_end()),
        };
        match (text.is_empty(), reasoning) {
            (true, _) => Vec::new(),
            (false, true) => vec![ReasoningEvent::Reasoning(text.to_string())],
            (false, false) => vec![ReasoningEvent::Content(text.to_string())],
        }
    }

    /// Moves past whatever of `held` can be decided now.
    fn step(&mut self, out: &mut Vec<ReasoningEvent>) {
        match self.phase {
            Phase::Opening => {
                let rest = self.held.trim_start();
                if let Some(after) = rest.strip_prefix(OPEN) {
                    self.held = after.to_string();
                    self.phase = Phase::ReasoningStart;
                } else if !rest.is_empty() && !OPEN.starts_with(rest) {
                    self.held = rest.to_string();
                    self.phase = Phase::Answer;
                }
            }
            Phase::ReasoningStart | Phase::AnswerStart => {
                let rest = self.held.trim_start();
                if !rest.is_empty() {
                    self.held = rest.to_string();
                    self.phase = if self.phase == Phase::ReasoningStart { Phase::Reasoning } else { Phase::Answer };
                }
            }
            Phase::Reasoning => {
                if let Some(at) = self.held.find(CLOSE) {
                    let reasoning = self.held[..at].trim_end();
                    if !reasoning.is_empty() {
                        out.push(ReasoningEvent::Reasoning(reasoning.to_string()));
                    }
                    self.held = self.held[at + CLOSE.len()..].to_string();
                    self.phase = Phase::AnswerStart;
                } else {
                    // Release all but a possible start of `</think>` and the whitespace before it.
                    let keep = partial_suffix(&self.held, CLOSE);
                    let release = self.held[..self.held.len() - keep].trim_end().len();
                    if release > 0 {
                        out.push(ReasoningEvent::Reasoning(self.held[..release].to_string()));
                        self.held.drain(..release);
                    }
                }
            }
            Phase::Answer => {
                if !self.held.is_empty() {
                    out.push(ReasoningEvent::Content(std::mem::take(&mut self.held)));
                }
            }
        }
    }
}

/// The reasoning tags as single tokens of one vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkTokens {
    /// `<think>`.
    pub open: u32,
    /// `</think>`.
    pub close: u32,
}

/// `inner`, applied only once the reasoning has ended: output that starts as `start` runs free until
/// the `</think>` token. While the output may still open with `<think>`, its first token is either
/// `<think>` or one `inner` allows.
pub fn after_reasoning(inner: Constraint, tokens: ThinkTokens, start: ReasoningStart) -> Constraint {
    Arc::new(AfterReasoning { inner, tokens, start })
}

#[derive(Debug)]
struct AfterReasoning {
    inner: Constraint,
    tokens: ThinkTokens,
    start: ReasoningStart,
}

impl ConstraintSpec for AfterReasoning {
    fn start(&self) -> Box<dyn TokenConstraint> {
        let phase = match self.start {
            ReasoningStart::Inside => Gate::Thinking,
            ReasoningStart::MayOpen => Gate::First,
        };
        Box::new(Gated { phase, tokens: self.tokens, inner: self.inner.start() })
    }
}

/// Where one sequence is relative to its reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// The first token: `<think>` or the answer's first.
    First,
    /// Inside the reasoning: unconstrained.
    Thinking,
    /// The answer: constrained.
    Answer,
}

struct Gated {
    phase: Gate,
    tokens: ThinkTokens,
    inner: Box<dyn TokenConstraint>,
}

impl TokenConstraint for Gated {
    fn mask(&mut self, logits: &mut [f32], remaining: usize) -> Result<(), String> {
        match self.phase {
            Gate::Thinking => Ok(()),
            Gate::Answer => self.inner.mask(logits, remaining),
            Gate::First => {
                let open = self.tokens.open as usize;
                let kept = logits.get(open).copied();
                self.inner.mask(logits, remaining)?;
                if let Some(logit) = kept {
                    logits[open] = logit;
                }
                Ok(())
            }
        }
    }

    fn commit(&mut self, token: u32) -> Result<bool, String> {
        match self.phase {
            Gate::First if token == self.tokens.open => {
                self.phase = Gate::Thinking;
                Ok(false)
            }
            Gate::Thinking => {
                if token == self.tokens.close {
                    self.phase = Gate::Answer;
                }
                Ok(false)
            }
            Gate::First | Gate::Answer => {
                self.phase = Gate::Answer;
                self.inner.commit(token)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` and returns the joined reasoning and answer.
    fn split(start: ReasoningStart, pieces: &[&str]) -> (String, String) {
        let mut parser = ReasoningParser::new(start);
        let mut events: Vec<ReasoningEvent> = pieces.iter().flat_map(|p| parser.push(p)).collect();
        events.extend(parser.finish());
        let (mut reasoning, mut answer) = (String::new(), String::new());
        for event in events {
            match event {
                ReasoningEvent::Reasoning(text) => reasoning.push_str(&text),
                ReasoningEvent::Content(text) => answer.push_str(&text),
            }
        }
        (reasoning, answer)
    }

    /// Every way of cutting `text` into two pieces gives the same split as the whole.
    fn same_split_when_cut(start: ReasoningStart, text: &str) -> (String, String) {
        let whole = split(start, &[text]);
        for cut in (1..text.len()).filter(|&i| text.is_char_boundary(i)) {
            assert_eq!(split(start, &[&text[..cut], &text[cut..]]), whole, "cut at {cut} of {text:?}");
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(split(start, &refs), whole, "char by char: {text:?}");
        whole
    }

    #[test]
    fn qwen3_output_separates_reasoning_from_answer() {
        // Qwen3's shape with thinking enabled (written by hand: no Qwen3 model ships here): the model
        // opens the tag itself.
        let text = "<think>\nOkay, the user asks for 2+2. That is 4.\n</think>\n\nThe answer is **4**.";
        let (reasoning, answer) = same_split_when_cut(ReasoningStart::MayOpen, text);
        assert_eq!(reasoning, "Okay, the user asks for 2+2. That is 4.");
        assert_eq!(answer, "The answer is **4**.");
    }

    #[test]
    fn r1_output_starts_inside_the_reasoning() {
        // DeepSeek-R1 distills: the template's generation prompt ends with `<think>\n`.
        let text = "Let me think: é means e-acute.\n</think>\n\nIt is **é**.";
        let (reasoning, answer) = same_split_when_cut(ReasoningStart::Inside, text);
        assert_eq!(reasoning, "Let me think: é means e-acute.");
        assert_eq!(answer, "It is **é**.");
    }

    #[test]
    fn an_answer_without_tags_is_all_answer() {
        let (reasoning, answer) = same_split_when_cut(ReasoningStart::MayOpen, "  <thin is not a tag");
        assert_eq!((reasoning.as_str(), answer.as_str()), ("", "<thin is not a tag"));
        // Qwen3 with thinking disabled: the template closed an empty reasoning already.
        let (reasoning, answer) = same_split_when_cut(ReasoningStart::MayOpen, "Hello!");
        assert_eq!((reasoning.as_str(), answer.as_str()), ("", "Hello!"));
    }

    #[test]
    fn unfinished_reasoning_is_reasoning_and_a_partial_tag_is_text() {
        let (reasoning, answer) = same_split_when_cut(ReasoningStart::Inside, "still going </thi");
        assert_eq!((reasoning.as_str(), answer.as_str()), ("still going </thi", ""));
        let (reasoning, answer) = same_split_when_cut(ReasoningStart::MayOpen, "<think>");
        assert_eq!((reasoning.as_str(), answer.as_str()), ("", ""));
    }

    #[test]
    fn whitespace_inside_the_reasoning_is_kept() {
        let (reasoning, answer) = same_split_when_cut(ReasoningStart::Inside, "a\n\nb  c\n</think>{\"x\": 1}");
        assert_eq!(reasoning, "a\n\nb  c");
        assert_eq!(answer, "{\"x\": 1}");
    }

    /// A constraint that allows only token 7 and is complete after it.
    #[derive(Debug)]
    struct OnlySeven;
    struct Seven;
    impl ConstraintSpec for OnlySeven {
        fn start(&self) -> Box<dyn TokenConstraint> {
            Box::new(Seven)
        }
    }
    impl TokenConstraint for Seven {
        fn mask(&mut self, logits: &mut [f32], _: usize) -> Result<(), String> {
            logits.iter_mut().enumerate().filter(|(i, _)| *i != 7).for_each(|(_, l)| *l = f32::NEG_INFINITY);
            Ok(())
        }
        fn commit(&mut self, token: u32) -> Result<bool, String> {
            if token == 7 {
                Ok(true)
            } else {
                Err(format!("token {token} is not allowed"))
            }
        }
    }

    fn allowed(constraint: &mut dyn TokenConstraint) -> Vec<usize> {
        let mut logits = vec![0.0f32; 10];
        constraint.mask(&mut logits, 100).unwrap();
        logits.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, _)| i).collect()
    }

    const TAGS: ThinkTokens = ThinkTokens { open: 1, close: 2 };

    #[test]
    fn the_constraint_waits_for_the_end_of_the_reasoning() {
        let mut gated = after_reasoning(Arc::new(OnlySeven), TAGS, ReasoningStart::Inside).start();
        assert_eq!(allowed(gated.as_mut()).len(), 10, "reasoning is free");
        assert_eq!(gated.commit(5), Ok(false));
        assert_eq!(gated.commit(2), Ok(false), "`</think>` ends the reasoning");
        assert_eq!(allowed(gated.as_mut()), vec![7]);
        assert_eq!(gated.commit(7), Ok(true));
    }

    #[test]
    fn a_model_that_may_think_may_open_or_answer_at_once() {
        let constraint = after_reasoning(Arc::new(OnlySeven), TAGS, ReasoningStart::MayOpen);
        let mut opens = constraint.start();
        assert_eq!(allowed(opens.as_mut()), vec![1, 7]);
        assert_eq!(opens.commit(1), Ok(false));
        assert_eq!(allowed(opens.as_mut()).len(), 10);
        let mut answers = constraint.start();
        assert_eq!(answers.commit(7), Ok(true), "the answer's first token goes to the inner constraint");
    }
}
