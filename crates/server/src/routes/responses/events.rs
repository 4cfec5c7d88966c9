//! One answer's pieces as a Responses-API response: the output items it builds and the typed events that
//! build it, from the same calls, so a streamed response and a whole one cannot differ.

use hearth_protocol::responses::{
    IncompleteDetails, InputTokensDetails, OutputItem, OutputText, OutputTokensDetails, ReasoningText, Response,
    ResponseError, ResponseUsage, ResponsesRequest,
};
use hearth_protocol::FinishReason;
use serde_json::{json, Value};

use crate::answer::{BodyWriter, ChatPiece};
use crate::error::ApiError;
use crate::stream::Piece;

/// Counts the tokens of a text (for `reasoning_tokens`).
type Counter = Box<dyn Fn(&str) -> u32 + Send>;

/// The kind of the item being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Reasoning,
    Message,
    FunctionCall,
}

impl BodyWriter for ResponseWriter {
    type Events = Vec<Value>;
    type Body = Response;

    fn piece(&mut self, piece: ChatPiece) -> Vec<Value> {
        self.add(piece)
    }

    fn finished(self) -> Option<Response> {
        self.ended.then_some(self.response)
    }
}

/// Builds one response from its pieces, returning each piece's events.
pub struct ResponseWriter {
    response: Response,
    open: Option<Open>,
    /// The end of the answer, once known: items still open close `incomplete` after `max_output_tokens`.
    reason: Option<FinishReason>,
    sequence: u64,
    count_tokens: Counter,
    ended: bool,
}

impl std::fmt::Debug for ResponseWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseWriter").field("response", &self.response.id).finish_non_exhaustive()
    }
}

impl ResponseWriter {
    /// The response to `req`, served by `model`; `count_tokens` counts reasoning tokens.
    pub fn new(req: &ResponsesRequest, model: &str, count_tokens: impl Fn(&str) -> u32 + Send + 'static) -> Self {
        let id = format!("resp_{}", crate::app::random_id());
        let created_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let response = Response {
            id,
            object: "response".into(),
            created_at,
            status: "in_progress".into(),
            error: None,
            incomplete_details: None,
            instructions: req.instructions.clone(),
            max_output_tokens: req.max_output_tokens,
            model: model.to_string(),
            output: Vec::new(),
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            previous_response_id: req.previous_response_id.clone(),
            reasoning: req.reasoning.clone().unwrap_or_default(),
            store: req.store.unwrap_or(true),
            temperature: req.temperature,
            text: req
                .text
                .clone()
                .unwrap_or_else(|| serde_json::from_value(json!({"format": {"type": "text"}})).expect("a text format")),
            tool_choice: req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            tools: req.tools.clone().unwrap_or_default(),
            top_p: req.top_p,
            truncation: "disabled".into(),
            usage: None,
            metadata: req.metadata.clone().unwrap_or_default(),
        };
        Self { response, open: None, reason: None, sequence: 0, count_tokens: Box::new(count_tokens), ended: false }
    }

    /// The stream's first events: `response.created` and `response.in_progress`.
    pub fn start(&mut self) -> Vec<Value> {
        let response = json!(self.response);
        vec![
            self.event("response.created", json!({"response": response})),
            self.event("response.in_progress", json!({"response": response})),
        ]
    }

    /// Adds one piece; returns its events.
    fn add(&mut self, piece: ChatPiece) -> Vec<Value> {
        let mut events = Vec::new();
        match piece {
            ChatPiece::Reasoning { text, .. } => {
                self.open_item(Open::Reasoning, &mut events);
                if let Some(OutputItem::Reasoning { content, .. }) = self.response.output.last_mut() {
                    content[0].text.push_str(&text);
                }
                let fields = self.part_fields(json!({"delta": text}));
                events.push(self.event("response.reasoning_text.delta", fields));
            }
            ChatPiece::Piece(Piece::Text { text, .. }) if !text.is_empty() => {
                self.open_item(Open::Message, &mut events);
                if let Some(OutputItem::Message { content, .. }) = self.response.output.last_mut() {
                    content[0].text.push_str(&text);
                }
                let fields = self.part_fields(json!({"delta": text, "logprobs": []}));
                events.push(self.event("response.output_text.delta", fields));
            }
            ChatPiece::Piece(Piece::Text { .. }) => {}
            ChatPiece::Call { id, name, .. } => {
                self.close_item(&mut events);
                let suffix = id.strip_prefix("call_").unwrap_or(&id).to_string();
                let item = OutputItem::FunctionCall {
                    id: format!("fc_{suffix}"),
                    call_id: id,
                    name,
                    arguments: String::new(),
                    status: "in_progress".into(),
                };
                self.add_item(Open::FunctionCall, item, &mut events);
            }
            ChatPiece::Arguments { text, .. } => {
                if let Some(OutputItem::FunctionCall { arguments, .. }) = self.response.output.last_mut() {
                    arguments.push_str(&text);
                }
                let fields = self.item_fields(json!({"delta": text}));
                events.push(self.event("response.function_call_arguments.delta", fields));
            }
            ChatPiece::Piece(Piece::Finish { reason, .. }) => {
                self.reason = Some(reason);
                self.close_item(&mut events);
            }
            ChatPiece::Piece(Piece::Done { usage }) => {
                let reasoning_tokens = self
                    .response
                    .output
                    .iter()
                    .filter_map(|item| match item {
                        OutputItem::Reasoning { content, .. } => Some((self.count_tokens)(&content[0].text) + 2),
                        _ => None,
                    })
                    .sum();
                self.response.usage = Some(ResponseUsage {
                    input_tokens: usage.prompt_tokens,
                    input_tokens_details: InputTokensDetails {
                        cached_tokens: usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
                    },
                    output_tokens: usage.completion_tokens,
                    output_tokens_details: OutputTokensDetails { reasoning_tokens },
                    total_tokens: usage.total_tokens,
                });
                let name = if self.reason == Some(FinishReason::Length) {
                    self.response.status = "incomplete".into();
                    self.response.incomplete_details = Some(IncompleteDetails { reason: "max_output_tokens".into() });
                    "response.incomplete"
                } else {
                    self.response.status = "completed".into();
                    "response.completed"
                };
                self.ended = true;
                let response = json!(self.response);
                events.push(self.event(name, json!({"response": response})));
            }
        }
        events
    }

    /// The events of a failure after the start: `response.failed`.
    pub fn failed(&mut self, error: &ApiError) -> Vec<Value> {
        let code = error.body().error.code.unwrap_or_else(|| "server_error".into());
        self.response.status = "failed".into();
        self.response.error = Some(ResponseError { code, message: error.to_string() });
        self.ended = true;
        let response = json!(self.response);
        vec![self.event("response.failed", json!({"response": response}))]
    }

    /// The response, once it has ended.
    pub fn result(&self) -> Option<&Response> {
        self.ended.then_some(&self.response)
    }

    /// Makes `kind` the open item, closing another first.
    fn open_item(&mut self, kind: Open, events: &mut Vec<Value>) {
        if self.open == Some(kind) {
            return;
        }
        self.close_item(events);
        let suffix = crate::app::random_id();
        let item = match kind {
            Open::Reasoning => {
                OutputItem::Reasoning { id: format!("rs_{suffix}"), summary: Vec::new(), content: Vec::new() }
            }
            Open::Message | Open::FunctionCall => OutputItem::Message {
                id: format!("msg_{suffix}"),
                status: "in_progress".into(),
                role: "assistant".into(),
                content: Vec::new(),
            },
        };
        self.add_item(kind, item, events);
        let part = match kind {
            Open::Reasoning => json!(ReasoningText { kind: "reasoning_text".into(), text: String::new() }),
            Open::Message | Open::FunctionCall => {
                json!(OutputText { kind: "output_text".into(), text: String::new(), annotations: Vec::new() })
            }
        };
        match self.response.output.last_mut() {
            Some(OutputItem::Reasoning { content, .. }) => {
                content.push(ReasoningText { kind: "reasoning_text".into(), text: String::new() })
            }
            Some(OutputItem::Message { content, .. }) => {
                content.push(OutputText { kind: "output_text".into(), text: String::new(), annotations: Vec::new() });
            }
            _ => {}
        }
        let fields = self.part_fields(json!({"part": part}));
        events.push(self.event("response.content_part.added", fields));
    }

    fn add_item(&mut self, kind: Open, item: OutputItem, events: &mut Vec<Value>) {
        let output_index = self.response.output.len();
        events.push(self.event("response.output_item.added", json!({"output_index": output_index, "item": item})));
        self.response.output.push(item);
        self.open = Some(kind);
    }

    /// Ends the open item: its text's `done` events, then `response.output_item.done`.
    fn close_item(&mut self, events: &mut Vec<Value>) {
        let Some(open) = self.open.take() else { return };
        let status = if self.reason == Some(FinishReason::Length) { "incomplete" } else { "completed" };
        let last = self.response.output.last_mut().expect("an open item exists");
        match last {
            OutputItem::Message { status: s, .. } | OutputItem::FunctionCall { status: s, .. } => *s = status.into(),
            OutputItem::Reasoning { .. } => {}
        }
        let item = last.clone();
        match (open, &item) {
            (Open::Reasoning, OutputItem::Reasoning { content, .. }) => {
                let fields = self.part_fields(json!({"text": content[0].text}));
                events.push(self.event("response.reasoning_text.done", fields));
                let fields = self.part_fields(json!({"part": content[0]}));
                events.push(self.event("response.content_part.done", fields));
            }
            (Open::Message, OutputItem::Message { content, .. }) => {
                let fields = self.part_fields(json!({"text": content[0].text, "logprobs": []}));
                events.push(self.event("response.output_text.done", fields));
                let fields = self.part_fields(json!({"part": content[0]}));
                events.push(self.event("response.content_part.done", fields));
            }
            (Open::FunctionCall, OutputItem::FunctionCall { name, arguments, .. }) => {
                let fields = self.item_fields(json!({"name": name, "arguments": arguments}));
                events.push(self.event("response.function_call_arguments.done", fields));
            }
            _ => {}
        }
        let output_index = self.response.output.len() - 1;
        events.push(self.event("response.output_item.done", json!({"output_index": output_index, "item": item})));
    }

    /// `fields` with the open item's `item_id` and `output_index`.
    fn item_fields(&self, mut fields: Value) -> Value {
        let output_index = self.response.output.len() - 1;
        let id = match &self.response.output[output_index] {
            OutputItem::Message { id, .. } | OutputItem::FunctionCall { id, .. } | OutputItem::Reasoning { id, .. } => {
                id
            }
        };
        fields["item_id"] = json!(id);
        fields["output_index"] = json!(output_index);
        fields
    }

    /// `fields` with the open item's ids and `content_index` 0 (each item has one part).
    fn part_fields(&self, fields: Value) -> Value {
        let mut fields = self.item_fields(fields);
        fields["content_index"] = json!(0);
        fields
    }

    /// An event: its `type`, the next `sequence_number`, and `fields`.
    fn event(&mut self, kind: &str, fields: Value) -> Value {
        let mut event = json!({"type": kind, "sequence_number": self.sequence});
        self.sequence += 1;
        if let (Some(event), Value::Object(fields)) = (event.as_object_mut(), fields) {
            event.extend(fields);
        }
        event
    }
}

#[cfg(test)]
mod tests;
