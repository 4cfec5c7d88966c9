//! `POST /v1/chat/completions`: prepare, submit, then stream as SSE or fold into one JSON body.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use futures::{Stream, StreamExt};
use hearth_protocol::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChoiceLogprobs,
    ChunkChoice, Delta, FinishReason, FunctionCall, FunctionCallDelta, TokenLogprob, ToolCall, ToolCallDelta,
    TopLogprob, Usage,
};

use crate::answer::{chat_pieces, ChatPiece};
use crate::app::AppState;
use crate::auth::KeyName;
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::model::{ChatModel, ServedModel};
use crate::prepare::{self, OutputOptions};
use crate::routes::generation::{
    done_event, json_event, prepare_blocking, sse_response, submit, token_text, Origin, ResponseMeta,
};
use crate::stream::{Piece, TokenInfo};

/// The handler.
pub async fn create(
    State(state): State<AppState>,
    key: Option<Extension<KeyName>>,
    AppJson(req): AppJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    state.accept_request()?;
    if state.config.log_content {
        tracing::info!(messages = ?req.messages, "chat request");
    }
    let model = state.models.chat(Some(&req.model)).await?;
    let max_tokens_limit = state.config.max_tokens_limit;
    let preparing = model.clone();
    let prepared = prepare_blocking(&state, move || prepare::chat(&req, &preparing, max_tokens_limit)).await?;
    let output = prepared.output;
    let key = key.map(|Extension(KeyName(name))| name);
    let events = submit(&state, &model, Origin { key, arrived }, prepared.generate, &output)?;
    let pieces = chat_pieces(events, prepared.answer, output.n);
    let meta = ResponseMeta::new("chatcmpl", &model.id);
    if output.stream {
        Ok(sse_response(sse_events(model, pieces, meta, &output)))
    } else {
        Ok(Json(fold(&model, pieces, meta, &output).await?).into_response())
    }
}

/// The chat shape of the tokens' log-probabilities.
fn logprobs_of(model: &ServedModel, tokens: &[TokenInfo]) -> Vec<TokenLogprob> {
    tokens
        .iter()
        .map(|t| {
            let (token, bytes) = token_text(model, t.id);
            let top_logprobs = t
                .top_logprobs
                .iter()
                .map(|&(id, logprob)| {
                    let (token, bytes) = token_text(model, id);
                    TopLogprob { token, logprob: f64::from(logprob), bytes: Some(bytes) }
                })
                .collect();
            TokenLogprob { token, logprob: f64::from(t.logprob), bytes: Some(bytes), top_logprobs }
        })
        .collect()
}

/// One choice's message while its pieces are folded.
#[derive(Default)]
struct Folded {
    content: String,
    reasoning: Option<String>,
    calls: Vec<ToolCall>,
    tokens: Vec<TokenLogprob>,
    reason: Option<FinishReason>,
}

impl Folded {
    /// The message: `content` is null when the message is only calls.
    fn into_choice(self, index: usize, logprobs: bool) -> ChatChoice {
        let content = (!self.content.is_empty() || self.calls.is_empty()).then_some(self.content);
        let tool_calls = (!self.calls.is_empty()).then_some(self.calls);
        ChatChoice {
            index: index as u32,
            message: AssistantMessage {
                role: "assistant".into(),
                content,
                reasoning_content: self.reasoning.clone(),
                reasoning: self.reasoning,
                tool_calls,
            },
            finish_reason: self.reason.unwrap_or(FinishReason::Stop),
            logprobs: logprobs.then_some(ChoiceLogprobs { content: Some(self.tokens) }),
        }
    }
}

/// The non-streaming body: every piece, folded.
async fn fold(
    model: &ServedModel,
    pieces: impl Stream<Item = Result<ChatPiece, ApiError>>,
    meta: ResponseMeta,
    output: &OutputOptions,
) -> Result<ChatCompletion, ApiError> {
    let (n, logprobs) = (output.n, output.logprobs.is_some());
    let mut choices: Vec<Folded> = (0..n).map(|_| Folded::default()).collect();
    let mut pieces = std::pin::pin!(pieces);
    while let Some(piece) = pieces.next().await {
        match piece? {
            ChatPiece::Piece(Piece::Text { choice, text, tokens }) => {
                choices[choice].content.push_str(&text);
                choices[choice].tokens.extend(logprobs_of(model, &tokens));
            }
            ChatPiece::Reasoning { choice, text } => {
                choices[choice].reasoning.get_or_insert_with(String::new).push_str(&text);
            }
            ChatPiece::Call { choice, id, name, .. } => choices[choice].calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall { name, arguments: String::new() },
            }),
            ChatPiece::Arguments { choice, index, text } => {
                choices[choice].calls[index].function.arguments.push_str(&text);
            }
            ChatPiece::Piece(Piece::Finish { choice, reason, .. }) => choices[choice].reason = Some(reason),
            ChatPiece::Piece(Piece::Done { usage }) => {
                let choices = choices
                    .into_iter()
                    .enumerate()
                    .map(|(index, folded)| folded.into_choice(index, logprobs))
                    .collect();
                return Ok(ChatCompletion {
                    id: meta.id,
                    object: "chat.completion".into(),
                    created: meta.created,
                    model: meta.model,
                    choices,
                    usage,
                });
            }
        }
    }
    Err(ApiError::Internal("generation ended without a finish reason".into()))
}

/// The streaming body: a role chunk per choice, text chunks, a finish chunk per choice, maybe a usage
/// chunk, then `[DONE]`.
fn sse_events(
    model: Arc<ChatModel>,
    pieces: impl Stream<Item = Result<ChatPiece, ApiError>> + Send + 'static,
    meta: ResponseMeta,
    output: &OutputOptions,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let (n, logprobs, include_usage) = (output.n, output.logprobs.is_some(), output.include_usage);
    let chunk = move |index: usize, delta: Delta, finish_reason: Option<FinishReason>, lp: Option<ChoiceLogprobs>| {
        ChatCompletionChunk {
            id: meta.id.clone(),
            object: "chat.completion.chunk".into(),
            created: meta.created,
            model: meta.model.clone(),
            choices: vec![ChunkChoice { index: index as u32, delta, finish_reason, logprobs: lp }],
            usage: None,
        }
    };
    let role = Delta { role: Some("assistant".into()), content: Some(String::new()), ..Delta::default() };
    let first: Vec<SseEvent> = (0..n).map(|i| json_event(&chunk(i, role.clone(), None, None))).collect();
    let call = |delta: ToolCallDelta| Delta { tool_calls: Some(vec![delta]), ..Delta::default() };
    let body = pieces.flat_map(move |piece| {
        let events: Vec<SseEvent> = match piece {
            Ok(ChatPiece::Piece(Piece::Text { choice, text, tokens })) => {
                let lp = logprobs.then(|| ChoiceLogprobs { content: Some(logprobs_of(&model, &tokens)) });
                vec![json_event(&chunk(choice, Delta { content: Some(text), ..Delta::default() }, None, lp))]
            }
            Ok(ChatPiece::Reasoning { choice, text }) => {
                let delta = Delta { reasoning_content: Some(text.clone()), reasoning: Some(text), ..Delta::default() };
                vec![json_event(&chunk(choice, delta, None, None))]
            }
            Ok(ChatPiece::Call { choice, index, id, name }) => {
                let function = FunctionCallDelta { name: Some(name), arguments: Some(String::new()) };
                let delta =
                    ToolCallDelta { index: index as u32, id: Some(id), kind: Some("function".into()), function };
                vec![json_event(&chunk(choice, call(delta), None, None))]
            }
            Ok(ChatPiece::Arguments { choice, index, text }) => {
                let function = FunctionCallDelta { name: None, arguments: Some(text) };
                let delta = ToolCallDelta { index: index as u32, id: None, kind: None, function };
                vec![json_event(&chunk(choice, call(delta), None, None))]
            }
            Ok(ChatPiece::Piece(Piece::Finish { choice, reason, .. })) => {
                vec![json_event(&chunk(choice, Delta::default(), Some(reason), None))]
            }
            Ok(ChatPiece::Piece(Piece::Done { usage })) => {
                let mut events = Vec::new();
                if include_usage {
                    events.push(json_event(&usage_chunk(&chunk(0, Delta::default(), None, None), usage)));
                }
                events.push(done_event());
                events
            }
            Err(error) => vec![error.sse_event(), done_event()],
        };
        futures::stream::iter(events)
    });
    futures::stream::iter(first).chain(body).map(Ok)
}

fn usage_chunk(template: &ChatCompletionChunk, usage: Usage) -> ChatCompletionChunk {
    ChatCompletionChunk { choices: Vec::new(), usage: Some(usage), ..template.clone() }
}
