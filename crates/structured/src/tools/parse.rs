//! The streaming parser of calls, shared by every family: text in, [`ToolEvent`]s out, so that streamed
//! and whole answers parse alike.
//!
//! An answer is either calls or text, decided by how it starts, as the `auto` constraint decides it:
//! calls when it opens with the family's trigger (after whitespace), text otherwise. A call's name is
//! reported once it is complete and its arguments as they arrive, as slices of the model's own JSON text,
//! so the slices concatenate to exactly the arguments of the non-streamed answer.

use super::Family;

/// What the parser found, in output order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolEvent {
    /// Text of an answer that is not calls.
    Content(String),
    /// Call `index` begins, calling `name`.
    Call {
        /// The call's position in the answer.
        index: usize,
        /// The function's name.
        name: String,
    },
    /// The next part of call `index`'s arguments; the parts join to a JSON text.
    Arguments {
        /// The call's position in the answer.
        index: usize,
        /// The new part.
        text: String,
    },
}

/// Where the parser is in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before a call (the first, or the next after a separator): the text may still become one.
    AwaitCall { first: bool },
    /// The answer is text.
    Content,
    /// After the trigger, before the call's `{`.
    BeforeObject,
    /// Inside the call's JSON object.
    Object,
    /// After the object, inside the closing text.
    Close,
}

/// Parses one answer of one family, as it streams.
#[derive(Debug)]
pub struct CallParser {
    family: Family,
    phase: Phase,
    /// Text held while it may still be the trigger or the closing text.
    held: String,
    calls: usize,
    object: ObjectScanner,
}

impl CallParser {
    /// A parser at the start of an answer.
    pub fn new(family: Family) -> Self {
        Self {
            family,
            phase: Phase::AwaitCall { first: true },
            held: String::new(),
            calls: 0,
            object: ObjectScanner::default(),
        }
    }

    /// How many calls the answer has begun.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Takes the next text of the answer.
    pub fn push(&mut self, text: &str) -> Vec<ToolEvent> {
        let mut out = Vec::new();
        for c in text.chars() {
            self.step(c, &mut out);
        }
        merge(out)
    }

    /// Ends the answer: a start that never became a call is content; the unfinished syntax of a cut-off
    /// call is dropped.
    pub fn finish(&mut self) -> Vec<ToolEvent> {
        let mut out = Vec::new();
        if self.phase == (Phase::AwaitCall { first: true }) && !self.held.trim().is_empty() {
            out.push(ToolEvent::Content(std::mem::take(&mut self.held)));
        }
        if self.phase == Phase::Object {
            self.object.flush(self.calls - 1, true, &mut out);
        }
        merge(out)
    }

    fn step(&mut self, c: char, out: &mut Vec<ToolEvent>) {
        let family = self.family;
        match self.phase {
            Phase::Content => out.push(ToolEvent::Content(c.to_string())),
            Phase::AwaitCall { first } => {
                let separator = family.separator.trim();
                if self.held.trim().is_empty() && (c.is_whitespace() || (!first && separator.contains(c))) {
                    self.held.push(c);
                    return;
                }
                self.held.push(c);
                let candidate =
                    self.held.trim_start_matches(|c: char| c.is_whitespace() || (!first && separator.contains(c)));
                let trigger = family.trigger();
                if candidate == trigger {
                    self.held.clear();
                    self.calls += 1;
                    self.object = ObjectScanner::new(family.arguments_key);
                    self.phase = Phase::BeforeObject;
                    if family.open.is_empty() {
                        self.step('{', out);
                    }
                } else if !trigger.starts_with(candidate) {
                    self.become_content(out);
                }
            }
            Phase::BeforeObject if c.is_whitespace() => {}
            Phase::BeforeObject if c == '{' => {
                self.phase = Phase::Object;
                self.object.feed(c, self.calls - 1, out);
            }
            Phase::BeforeObject => {
                self.held.push(c);
                self.become_content(out);
            }
            Phase::Object => {
                if self.object.feed(c, self.calls - 1, out) {
                    self.phase =
                        if family.close.trim().is_empty() { Phase::AwaitCall { first: false } } else { Phase::Close };
                }
            }
            Phase::Close => {
                if self.held.is_empty() && c.is_whitespace() {
                    return;
                }
                self.held.push(c);
                let close = family.close.trim();
                if self.held == close {
                    self.held.clear();
                    self.phase = Phase::AwaitCall { first: false };
                } else if !close.starts_with(self.held.as_str()) {
                    self.become_content(out);
                }
            }
        }
    }

    /// The rest of the answer, the held text included, is text.
    fn become_content(&mut self, out: &mut Vec<ToolEvent>) {
        out.push(ToolEvent::Content(std::mem::take(&mut self.held)));
        self.phase = Phase::Content;
    }
}

/// Joins neighbouring content events, and neighbouring argument parts of one call.
fn merge(events: Vec<ToolEvent>) -> Vec<ToolEvent> {
    let mut merged: Vec<ToolEvent> = Vec::with_capacity(events.len());
    for event in events {
        match (merged.last_mut(), event) {
            (Some(ToolEvent::Content(text)), ToolEvent::Content(more)) => text.push_str(&more),
            (Some(ToolEvent::Arguments { index, text }), ToolEvent::Arguments { index: i, text: more })
                if *index == i =>
            {
                text.push_str(&more)
            }
            (_, event) => merged.push(event),
        }
    }
    merged
}

/// Where a top-level member of the call object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Slot {
    /// Expecting a key (or the end of the object).
    #[default]
    Key,
    /// Inside a key string that starts at this byte.
    InKey(usize),
    /// After a key, expecting `:`.
    Colon,
    /// After `:`, expecting a value.
    Value,
    /// Inside a value.
    InValue,
}

/// Follows one call's JSON object byte by byte: finds the name and streams the arguments.
#[derive(Debug, Default)]
struct ObjectScanner {
    arguments_key: &'static str,
    raw: String,
    depth: usize,
    in_string: bool,
    escaped: bool,
    slot: Slot,
    key: String,
    value_start: usize,
    /// Where the arguments value starts, once its key was seen, and where it ends, once it did.
    arguments: Option<(usize, Option<usize>)>,
    /// Bytes of the arguments value already reported.
    sent: usize,
    name: Option<String>,
    announced: bool,
}

impl ObjectScanner {
    fn new(arguments_key: &'static str) -> Self {
        Self { arguments_key, ..Self::default() }
    }

    /// Takes the next character; returns whether the object is complete.
    fn feed(&mut self, c: char, index: usize, out: &mut Vec<ToolEvent>) -> bool {
        let at = self.raw.len();
        self.raw.push(c);
        if self.in_string {
            match (self.escaped, c) {
                (true, _) => self.escaped = false,
                (false, '\\') => self.escaped = true,
                (false, '"') => {
                    self.in_string = false;
                    if let Slot::InKey(start) = self.slot {
                        self.key = serde_json::from_str(&self.raw[start..]).unwrap_or_default();
                        self.slot = Slot::Colon;
                    }
                }
                _ => {}
            }
            self.flush(index, false, out);
            return false;
        }
        let top = self.depth == 1;
        match c {
            '"' => {
                self.in_string = true;
                if top && self.slot == Slot::Key {
                    self.slot = Slot::InKey(at);
                } else if top && self.slot == Slot::Value {
                    self.begin_value(at);
                }
            }
            '{' | '[' => {
                if top && self.slot == Slot::Value {
                    self.begin_value(at);
                }
                self.depth += 1;
            }
            '}' | ']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    self.end_value(at);
                    self.flush(index, true, out);
                    return true;
                }
            }
            ',' if top => {
                self.end_value(at);
                self.slot = Slot::Key;
            }
            ':' if top && self.slot == Slot::Colon => self.slot = Slot::Value,
            c if c.is_whitespace() => {}
            _ if top && self.slot == Slot::Value => self.begin_value(at),
            _ => {}
        }
        self.flush(index, false, out);
        false
    }

    fn begin_value(&mut self, at: usize) {
        self.slot = Slot::InValue;
        self.value_start = at;
        if self.key == self.arguments_key {
            self.arguments = Some((at, None));
        }
    }

    fn end_value(&mut self, at: usize) {
        if self.slot != Slot::InValue {
            return;
        }
        let value = self.raw[self.value_start..at].trim_end();
        if self.key == "name" {
            self.name = serde_json::from_str(value).ok();
        }
        if let Some((start, end @ None)) = &mut self.arguments {
            if *start == self.value_start {
                *end = Some(at);
            }
        }
    }

    /// Reports the name once known, then the arguments text that is certain. Trailing whitespace is held
    /// back until the value goes on, unless `complete`.
    fn flush(&mut self, index: usize, complete: bool, out: &mut Vec<ToolEvent>) {
        let Some(name) = &self.name else { return };
        if !self.announced {
            self.announced = true;
            out.push(ToolEvent::Call { index, name: name.clone() });
        }
        let text = match self.arguments {
            Some((start, end)) => {
                let value = &self.raw[start..end.unwrap_or(self.raw.len())];
                if complete {
                    value
                } else {
                    value.trim_end()
                }
            }
            None if complete && self.sent == 0 => {
                self.sent = 2;
                out.push(ToolEvent::Arguments { index, text: "{}".into() });
                return;
            }
            None => return,
        };
        if text.len() > self.sent {
            out.push(ToolEvent::Arguments { index, text: text[self.sent..].to_string() });
            self.sent = text.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::{hermes::HERMES, llama3::LLAMA3_JSON};

    /// The calls and content of `answer`, parsed whole.
    fn parse(family: Family, answer: &str) -> (Vec<(String, String)>, String) {
        let mut parser = family.parser();
        let mut events = parser.push(answer);
        events.extend(parser.finish());
        collect(events)
    }

    fn collect(events: Vec<ToolEvent>) -> (Vec<(String, String)>, String) {
        let (mut calls, mut content) = (Vec::<(String, String)>::new(), String::new());
        for event in events {
            match event {
                ToolEvent::Content(text) => content.push_str(&text),
                ToolEvent::Call { index, name } => {
                    assert_eq!(index, calls.len(), "calls are numbered in order");
                    calls.push((name, String::new()));
                }
                ToolEvent::Arguments { index, text } => calls[index].1.push_str(&text),
            }
        }
        (calls, content)
    }

    /// Every split of `answer` into two pushes, and a push per character, parse as the whole does.
    #[track_caller]
    fn check_streamed(family: Family, answer: &str) {
        let whole = parse(family, answer);
        let mut parser = family.parser();
        let mut events: Vec<ToolEvent> = answer.chars().flat_map(|c| parser.push(&c.to_string())).collect();
        events.extend(parser.finish());
        assert_eq!(collect(events), whole, "char by char: {answer:?}");
        for (cut, _) in answer.char_indices() {
            let mut parser = family.parser();
            let mut events = parser.push(&answer[..cut]);
            events.extend(parser.push(&answer[cut..]));
            events.extend(parser.finish());
            assert_eq!(collect(events), whole, "cut at {cut}: {answer:?}");
        }
    }

    fn call(name: &str, arguments: &str) -> (String, String) {
        (name.to_string(), arguments.to_string())
    }

    // Recorded from SmolLM2-135M-Instruct under Hearth's `required` constraint.
    const SMOLLM_REQUIRED: &str =
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris, France\", \"unit\": \"celsius\"}}\n</tool_call>";
    // Recorded from Qwen2.5-7B-Instruct (two parallel calls, its template's spacing).
    const QWEN_PARALLEL: &str = "<tool_call>\n{\"name\": \"get_current_temperature\", \"arguments\": {\"location\": \"San Francisco, CA, USA\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_temperature_date\", \"arguments\": {\"location\": \"San Francisco, CA, USA\", \"date\": \"2024-10-01\"}}\n</tool_call>";
    // Recorded from Hermes-2-Pro-Llama-3-8B: pretty-printed, arguments before the name.
    const HERMES_PRETTY: &str =
        "<tool_call>\n{\"arguments\": {\"symbol\": \"TSLA\"}, \"name\": \"get_stock_fundamentals\"}\n</tool_call>";
    // Recorded from Llama-3.2-3B-Instruct.
    const LLAMA_TWO: &str = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Tokyo\"}}; {\"name\": \"get_time\", \"parameters\": {\"zone\": \"JST\"}}";

    #[test]
    fn hermes_calls_parse_with_their_arguments_text() {
        assert_eq!(
            parse(HERMES, SMOLLM_REQUIRED),
            (vec![call("get_weather", "{\"city\": \"Paris, France\", \"unit\": \"celsius\"}")], String::new())
        );
        let (calls, content) = parse(HERMES, QWEN_PARALLEL);
        assert_eq!(content, "");
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[1],
            call("get_temperature_date", "{\"location\": \"San Francisco, CA, USA\", \"date\": \"2024-10-01\"}")
        );
        assert_eq!(parse(HERMES, HERMES_PRETTY).0, vec![call("get_stock_fundamentals", "{\"symbol\": \"TSLA\"}")]);
    }

    #[test]
    fn llama3_calls_parse() {
        let (calls, content) = parse(LLAMA3_JSON, LLAMA_TWO);
        assert_eq!(content, "");
        assert_eq!(calls, vec![call("get_weather", "{\"city\": \"Tokyo\"}"), call("get_time", "{\"zone\": \"JST\"}")]);
    }

    #[test]
    fn streamed_input_parses_as_the_whole() {
        for answer in [
            SMOLLM_REQUIRED,
            QWEN_PARALLEL,
            HERMES_PRETTY,
            "  \n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"s\": \"}\\\"{,\"}}\n</tool_call>",
        ] {
            check_streamed(HERMES, answer);
        }
        check_streamed(LLAMA3_JSON, LLAMA_TWO);
        check_streamed(HERMES, "The weather in Paris is sunny.");
    }

    #[test]
    fn text_answers_are_content() {
        assert_eq!(
            parse(HERMES, "Sure! <tool_call> is how I call."),
            (vec![], "Sure! <tool_call> is how I call.".into())
        );
        assert_eq!(parse(HERMES, "<tool"), (vec![], "<tool".into()));
        assert_eq!(parse(HERMES, "<tools>"), (vec![], "<tools>".into()));
        let cut = "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_";
        assert_eq!(parse(HERMES, cut), (vec![call("now", "{}")], String::new()), "a cut-off close is no content");
        assert_eq!(parse(LLAMA3_JSON, "Tokyo is sunny."), (vec![], "Tokyo is sunny.".into()));
    }

    #[test]
    fn arguments_stream_before_the_call_ends() {
        let mut parser = HERMES.parser();
        let events = parser.push("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"city\": \"Pa");
        assert_eq!(
            events,
            vec![
                ToolEvent::Call { index: 0, name: "f".into() },
                ToolEvent::Arguments { index: 0, text: "{\"city\": \"Pa".into() }
            ]
        );
        assert_eq!(parser.calls(), 1);
    }

    #[test]
    fn a_call_without_arguments_gets_an_empty_object() {
        assert_eq!(parse(HERMES, "<tool_call>\n{\"name\": \"now\"}\n</tool_call>").0, vec![call("now", "{}")]);
    }
}
