//! `POST /v1/chat/completions`: prepare, submit, then stream as SSE or fold into one JSON body.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use std::time::Instant;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use futures::{Stream, StreamExt};
use hearth_engine::SubmitError;
use hearth_protocol::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChunkChoice, Delta,
    FinishReason, Usage,
};

use crate::app::AppState;
use crate::auth::KeyName;
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::metrics::RequestObserver;
use crate::prepare::{self, PreparedChat};
use crate::stream::{pieces, GenerationRequest, Piece};

/// What every chunk or body of one response shares.
#[derive(Debug, Clone)]
struct ResponseMeta {
    id: String,
    created: u64,
    model: String,
}

/// The handler.
pub async fn create(
    State(state): State<AppState>,
    key: Option<Extension<KeyName>>,
    AppJson(req): AppJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    if state.lifecycle.is_draining() {
        return Err(ApiError::Unavailable("the server is shutting down".into()));
    }
    if state.config.log_content {
        tracing::info!(messages = ?req.messages, "chat request");
    }
    let model = state.model.clone();
    // Templating and tokenizing a long prompt is CPU work: keep it off the async workers.
    let max_tokens_limit = state.config.max_tokens_limit;
    let prepared: PreparedChat = tokio::task::spawn_blocking(move || prepare::chat(&req, &model, max_tokens_limit))
        .await
        .map_err(|e| ApiError::Internal(format!("request preparation failed: {e}")))??;
    let prompt_tokens = prepared.generate.prompt.len();
    let events = state.engine.submit(prepared.generate).inspect_err(|e| {
        if matches!(e, SubmitError::Overloaded(_)) {
            state.metrics.rejected();
        }
    })?;
    let observer = RequestObserver::new(state.metrics.clone(), key.map(|Extension(KeyName(name))| name), arrived);
    let meta = ResponseMeta {
        id: format!("chatcmpl-{}", crate::app::random_id()),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        model: state.model.id.clone(),
    };
    let request = GenerationRequest { model: state.model.clone(), stop: prepared.stop, prompt_tokens, observer };
    let shutdown = state.lifecycle.aborted();
    let deadline = state.config.request_timeout;
    let abort = async move {
        tokio::select! {
            () = shutdown => ApiError::Unavailable("the server shut down before the request finished".into()),
            () = sleep_until_deadline(arrived, deadline) => ApiError::DeadlineExceeded(deadline.unwrap_or_default()),
        }
    };
    let pieces = pieces(events, request, abort, state.config.log_content);
    if prepared.stream {
        Ok(Sse::new(sse_events(pieces, meta, prepared.include_usage)).keep_alive(KeepAlive::default()).into_response())
    } else {
        Ok(Json(fold(pieces, meta).await?).into_response())
    }
}

/// Resolves when `deadline` has passed since `arrived`; never when there is no deadline.
async fn sleep_until_deadline(arrived: Instant, deadline: Option<std::time::Duration>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until((arrived + deadline).into()).await,
        None => std::future::pending().await,
    }
}

/// The non-streaming body: every piece, folded.
async fn fold(
    pieces: impl Stream<Item = Result<Piece, ApiError>>,
    meta: ResponseMeta,
) -> Result<ChatCompletion, ApiError> {
    let mut pieces = std::pin::pin!(pieces);
    let mut content = String::new();
    while let Some(piece) = pieces.next().await {
        match piece? {
            Piece::Text(text) => content.push_str(&text),
            Piece::Done { reason, usage } => {
                return Ok(ChatCompletion {
                    id: meta.id,
                    object: "chat.completion".into(),
                    created: meta.created,
                    model: meta.model,
                    choices: vec![ChatChoice {
                        index: 0,
                        message: AssistantMessage { role: "assistant".into(), content: Some(content) },
                        finish_reason: reason,
                        logprobs: None,
                    }],
                    usage,
                });
            }
        }
    }
    Err(ApiError::Internal("generation ended without a finish reason".into()))
}

/// The streaming body: a role chunk, text chunks, a finish chunk, maybe a usage chunk, then `[DONE]`.
fn sse_events(
    pieces: impl Stream<Item = Result<Piece, ApiError>> + Send + 'static,
    meta: ResponseMeta,
    include_usage: bool,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let chunk = move |delta: Delta, finish_reason: Option<FinishReason>| ChatCompletionChunk {
        id: meta.id.clone(),
        object: "chat.completion.chunk".into(),
        created: meta.created,
        model: meta.model.clone(),
        choices: vec![ChunkChoice { index: 0, delta, finish_reason, logprobs: None }],
        usage: None,
    };
    let first = chunk(Delta { role: Some("assistant".into()), content: Some(String::new()) }, None);
    let body = pieces.flat_map(move |piece| {
        let events: Vec<SseEvent> = match piece {
            Ok(Piece::Text(text)) => vec![json_event(&chunk(Delta { role: None, content: Some(text) }, None))],
            Ok(Piece::Done { reason, usage }) => {
                let last = chunk(Delta::default(), Some(reason));
                let mut events = vec![json_event(&last)];
                if include_usage {
                    events.push(json_event(&usage_chunk(&last, usage)));
                }
                events.push(done());
                events
            }
            Err(error) => vec![error.sse_event(), done()],
        };
        futures::stream::iter(events)
    });
    futures::stream::once(async move { json_event(&first) }).chain(body).map(Ok)
}

fn usage_chunk(template: &ChatCompletionChunk, usage: Usage) -> ChatCompletionChunk {
    ChatCompletionChunk { choices: Vec::new(), usage: Some(usage), ..template.clone() }
}

fn json_event(chunk: &ChatCompletionChunk) -> SseEvent {
    SseEvent::default().json_data(chunk).expect("chunks serialize")
}

fn done() -> SseEvent {
    SseEvent::default().data("[DONE]")
}
