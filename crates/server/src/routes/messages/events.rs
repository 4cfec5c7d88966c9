//! One answer's pieces as Anthropic's message: the blocks it builds and the stream events that build
//! it, from the same calls, so a streamed message and a whole one cannot differ.

use hearth_protocol::messages::{ContentBlock, Message, MessagesUsage};
use hearth_protocol::FinishReason;
use serde_json::{json, Value};

use crate::answer::{BodyWriter, ChatPiece};
use crate::stream::Piece;

/// A named stream event and its data.
pub type Event = (&'static str, Value);

/// The block being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
    /// A `tool_use` block; its arguments' JSON text collects in `arguments`.
    ToolUse,
}

impl BodyWriter for MessageWriter {
    type Events = Vec<Event>;
    type Body = Message;

    fn piece(&mut self, piece: ChatPiece) -> Vec<Event> {
        self.add(piece)
    }

    fn finished(self) -> Option<Message> {
        self.done.then_some(self.message)
    }
}

/// Builds one message from its pieces, returning each piece's events.
#[derive(Debug)]
pub struct MessageWriter {
    message: Message,
    open: Option<Open>,
    arguments: String,
    done: bool,
}

impl MessageWriter {
    /// A message of `model` whose prompt holds `prompt_tokens`.
    pub fn new(model: &str, prompt_tokens: u32) -> Self {
        Self::with_id(format!("msg_{}", crate::app::random_id()), model, prompt_tokens)
    }

    fn with_id(id: String, model: &str, prompt_tokens: u32) -> Self {
        let message = Message {
            id,
            kind: "message".into(),
            role: "assistant".into(),
            content: Vec::new(),
            model: model.to_string(),
            stop_reason: None,
            stop_sequence: None,
            usage: MessagesUsage { input_tokens: prompt_tokens, ..MessagesUsage::default() },
        };
        Self { message, open: None, arguments: String::new(), done: false }
    }

    /// The stream's first events: the empty message, then a ping.
    pub fn start(&self) -> Vec<Event> {
        vec![
            ("message_start", json!({"type": "message_start", "message": self.message})),
            ("ping", json!({"type": "ping"})),
        ]
    }

    /// Adds one piece; returns its events.
    fn add(&mut self, piece: ChatPiece) -> Vec<Event> {
        let mut events = Vec::new();
        match piece {
            ChatPiece::Reasoning { text, .. } => {
                self.open_block(
                    Open::Thinking,
                    ContentBlock::Thinking { thinking: String::new(), signature: String::new() },
                    &mut events,
                );
                if let Some(ContentBlock::Thinking { thinking, .. }) = self.message.content.last_mut() {
                    thinking.push_str(&text);
                }
                events.push(self.delta(json!({"type": "thinking_delta", "thinking": text})));
            }
            ChatPiece::Piece(Piece::Text { text, .. }) if !text.is_empty() => {
                self.open_block(Open::Text, ContentBlock::Text { text: String::new() }, &mut events);
                if let Some(ContentBlock::Text { text: block }) = self.message.content.last_mut() {
                    block.push_str(&text);
                }
                events.push(self.delta(json!({"type": "text_delta", "text": text})));
            }
            ChatPiece::Piece(Piece::Text { .. }) => {}
            ChatPiece::Call { id, name, .. } => {
                self.close_block(&mut events);
                let id = format!("toolu_{}", id.strip_prefix("call_").unwrap_or(&id));
                let block = ContentBlock::ToolUse { id, name, input: json!({}) };
                self.open_block(Open::ToolUse, block, &mut events);
            }
            ChatPiece::Arguments { text, .. } => {
                self.arguments.push_str(&text);
                events.push(self.delta(json!({"type": "input_json_delta", "partial_json": text})));
            }
            ChatPiece::Piece(Piece::Finish { reason, stop, .. }) => {
                self.close_block(&mut events);
                let reason = match (reason, &stop) {
                    (FinishReason::Stop, Some(_)) => "stop_sequence",
                    (FinishReason::Stop, None) => "end_turn",
                    (FinishReason::Length, _) => "max_tokens",
                    (FinishReason::ToolCalls, _) => "tool_use",
                };
                self.message.stop_reason = Some(reason.into());
                self.message.stop_sequence = stop;
            }
            ChatPiece::Piece(Piece::Done { usage }) => {
                let cached = usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens);
                self.message.usage = MessagesUsage {
                    input_tokens: usage.prompt_tokens - cached,
                    output_tokens: usage.completion_tokens,
                    cache_read_input_tokens: cached,
                    cache_creation_input_tokens: 0,
                };
                self.done = true;
                events.push((
                    "message_delta",
                    json!({
                        "type": "message_delta",
                        "delta": {"stop_reason": self.message.stop_reason, "stop_sequence": self.message.stop_sequence},
                        "usage": self.message.usage,
                    }),
                ));
                events.push(("message_stop", json!({"type": "message_stop"})));
            }
        }
        events
    }

    /// Makes `kind` the open block, closing another first.
    fn open_block(&mut self, kind: Open, block: ContentBlock, events: &mut Vec<Event>) {
        if self.open == Some(kind) && kind != Open::ToolUse {
            return;
        }
        self.close_block(events);
        let index = self.message.content.len();
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        self.message.content.push(block);
        self.open = Some(kind);
    }

    fn close_block(&mut self, events: &mut Vec<Event>) {
        let Some(open) = self.open.take() else { return };
        let index = self.message.content.len() - 1;
        if open == Open::ToolUse {
            let arguments = std::mem::take(&mut self.arguments);
            if let Some(ContentBlock::ToolUse { input, .. }) = self.message.content.last_mut() {
                // Arguments cut short by `max_tokens` are no JSON; the block keeps an empty input.
                *input = serde_json::from_str(&arguments).unwrap_or_else(|_| json!({}));
            }
        }
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": index})));
    }

    fn delta(&self, delta: Value) -> Event {
        let index = self.message.content.len() - 1;
        ("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": delta}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_protocol::{PromptTokensDetails, Usage};

    fn text(text: &str) -> ChatPiece {
        ChatPiece::Piece(Piece::Text { choice: 0, text: text.into(), tokens: Vec::new() })
    }

    fn finish(reason: FinishReason, stop: Option<&str>) -> ChatPiece {
        ChatPiece::Piece(Piece::Finish { choice: 0, reason, stop: stop.map(str::to_string) })
    }

    fn done(prompt: u32, completion: u32, cached: u32) -> ChatPiece {
        let usage = Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: cached }),
        };
        ChatPiece::Piece(Piece::Done { usage })
    }

    /// Every event of `pieces`, and the folded message.
    fn run(pieces: Vec<ChatPiece>) -> (Vec<Event>, Message) {
        let mut writer = MessageWriter::with_id("msg_1".into(), "m", 12);
        let mut events = writer.start();
        for piece in pieces {
            events.extend(writer.piece(piece));
        }
        (events, writer.finished().expect("done"))
    }

    /// The stream of Anthropic's documentation example ("Hello!"), event for event.
    #[test]
    fn a_text_answer_streams_as_anthropic_documents() {
        let (events, message) = run(vec![text("Hello"), text("!"), finish(FinishReason::Stop, None), done(12, 3, 0)]);
        let start = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "content": [], "model": "m", "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}}});
        let expected: Vec<Event> = vec![
            ("message_start", start),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}),
            ),
            ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"input_tokens": 12, "output_tokens": 3, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        assert_eq!(events, expected);
        assert_eq!(message.content, vec![ContentBlock::Text { text: "Hello!".into() }]);
        assert_eq!(message.stop_reason.as_deref(), Some("end_turn"));
    }

    #[test]
    fn thinking_then_a_tool_call_are_two_blocks() {
        let call = ChatPiece::Call { choice: 0, index: 0, id: "call_abc".into(), name: "get_weather".into() };
        let args = |t: &str| ChatPiece::Arguments { choice: 0, index: 0, text: t.into() };
        let reasoning = ChatPiece::Reasoning { choice: 0, text: "Need weather.".into() };
        let pieces = vec![
            reasoning,
            call,
            args("{\"city\": "),
            args("\"Paris\"}"),
            finish(FinishReason::ToolCalls, None),
            done(20, 9, 16),
        ];
        let (events, message) = run(pieces);
        let names: Vec<&str> = events.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            events[5].1["content_block"],
            json!({"type": "tool_use", "id": "toolu_abc", "name": "get_weather", "input": {}})
        );
        assert_eq!(events[6].1["delta"], json!({"type": "input_json_delta", "partial_json": "{\"city\": "}));
        assert_eq!(events[3].1["delta"], json!({"type": "thinking_delta", "thinking": "Need weather."}));
        assert_eq!(
            message.content,
            vec![
                ContentBlock::Thinking { thinking: "Need weather.".into(), signature: String::new() },
                ContentBlock::ToolUse {
                    id: "toolu_abc".into(),
                    name: "get_weather".into(),
                    input: json!({"city": "Paris"})
                },
            ]
        );
        assert_eq!(message.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!((message.usage.input_tokens, message.usage.cache_read_input_tokens), (4, 16));
    }

    #[test]
    fn a_stop_sequence_is_reported() {
        let (_, message) = run(vec![text("one two"), finish(FinishReason::Stop, Some("three")), done(5, 3, 0)]);
        assert_eq!(message.stop_reason.as_deref(), Some("stop_sequence"));
        assert_eq!(message.stop_sequence.as_deref(), Some("three"));
        let (_, message) = run(vec![text("one"), finish(FinishReason::Length, None), done(5, 1, 0)]);
        assert_eq!(message.stop_reason.as_deref(), Some("max_tokens"));
    }
}
