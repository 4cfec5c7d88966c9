//! `tool_choice: auto`: the model may answer in text or with calls. The answer runs free while it can
//! still be either; once it opens with the family's trigger (after whitespace), it becomes calls and is
//! constrained from its first token, those already sampled replayed into the grammar. A text answer pays
//! for no mask at all.

use hearth_engine::{ConstraintSpec, TokenConstraint};

use crate::{Compiled, Following};

/// The compiled `auto` constraint: the calls grammar and what starts it.
pub(crate) struct LazyCalls {
    calls: Compiled,
    trigger: &'static str,
}

impl std::fmt::Debug for LazyCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyCalls").field("trigger", &self.trigger).finish_non_exhaustive()
    }
}

impl LazyCalls {
    pub(crate) fn new(calls: Compiled, trigger: &'static str) -> Self {
        Self { calls, trigger }
    }
}

impl ConstraintSpec for LazyCalls {
    fn start(&self) -> Box<dyn TokenConstraint> {
        Box::new(Lazy { state: State::Undecided(Vec::new()), calls: self.calls.follow(), trigger: self.trigger })
    }
}

/// Whether one answer is text or calls.
enum State {
    /// It may still become either; the tokens so far.
    Undecided(Vec<u32>),
    /// Text, to the end.
    Text,
    /// Calls, constrained.
    Calls,
}

/// One sequence's `auto` answer.
struct Lazy {
    state: State,
    calls: Following,
    trigger: &'static str,
}

impl TokenConstraint for Lazy {
    fn mask(&mut self, logits: &mut [f32], remaining: usize) -> Result<(), String> {
        match self.state {
            State::Calls => self.calls.mask(logits, remaining),
            State::Undecided(_) | State::Text => Ok(()),
        }
    }

    fn commit(&mut self, token: u32) -> Result<bool, String> {
        let State::Undecided(tokens) = &mut self.state else {
            return match self.state {
                State::Calls => self.calls.commit(token),
                _ => Ok(false),
            };
        };
        tokens.push(token);
        let words = &self.calls.closing.words;
        let text: Vec<u8> = tokens.iter().flat_map(|&t| words.get(t as usize).cloned().unwrap_or_default()).collect();
        let start = text.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(text.len());
        let (begun, trigger) = (&text[start..], self.trigger.as_bytes());
        if begun.len() < trigger.len() {
            if !trigger.starts_with(begun) {
                self.state = State::Text;
            }
            return Ok(false);
        }
        if !begun.starts_with(trigger) {
            self.state = State::Text;
            return Ok(false);
        }
        let sampled = std::mem::take(tokens);
        self.state = State::Calls;
        let mut complete = false;
        for token in sampled {
            match self.calls.commit(token) {
                Ok(done) => complete = done,
                Err(_) => {
                    // What came with the trigger cannot continue a call (e.g. `<tool_call>x`): it is text.
                    self.state = State::Text;
                    return Ok(false);
                }
            }
        }
        Ok(complete)
    }
}
