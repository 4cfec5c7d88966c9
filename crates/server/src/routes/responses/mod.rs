//! OpenAI's Responses API: `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`. A request
//! (after the stored conversation it continues, if any) runs the one chat path ([`prepare::responses`]
//! → engine → [`chat_pieces`]), and its pieces are written as the response object or its typed events by
//! [`events::ResponseWriter`].

pub mod events;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use hearth_protocol::responses::{DeletedResponse, ResponsesRequest};
use hearth_protocol::ChatMessage;
use serde_json::Value;

use crate::answer::{chat_pieces, fold_body, BodyWriter, ChatPiece};
use crate::app::AppState;
use crate::auth::KeyName;
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath};
use crate::prepare;
use crate::response_store::Stored;
use crate::routes::generation::{prepare_blocking, sse_response, submit, Origin};
use events::ResponseWriter;

/// `POST /v1/responses`.
pub async fn create(
    State(state): State<AppState>,
    key: Option<Extension<KeyName>>,
    AppJson(req): AppJson<ResponsesRequest>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    state.accept_request()?;
    if state.config.log_content {
        tracing::info!(input = ?req.input, instructions = ?req.instructions, "responses request");
    }
    let history = match &req.previous_response_id {
        Some(id) => state.responses.get(id).ok_or_else(|| not_found(id))?.conversation,
        None => Arc::new(Vec::new()),
    };
    let model = state.models.chat(Some(&req.model)).await?;
    // The writer takes what it echoes now, so the request itself moves to preparation, never copied.
    let tokenizer = model.tokenizer.clone();
    let writer =
        ResponseWriter::new(&req, &model.id, move |text| tokenizer.encode_text(text).map_or(0, |ids| ids.len() as u32));
    let store = req.store.unwrap_or(true);
    let max_tokens_limit = state.config.max_tokens_limit;
    let preparing = model.clone();
    let (prepared, conversation) =
        prepare_blocking(&state, move || prepare::responses(&req, &history, &preparing, max_tokens_limit)).await?;
    let output = prepared.output;
    let key = key.map(|Extension(KeyName(name))| name);
    let pieces =
        chat_pieces(submit(&state, &model, Origin { key, arrived }, prepared.generate, &output)?, prepared.answer, 1);
    let keep = Keep { state: state.clone(), conversation, store };
    if output.stream {
        Ok(sse_response(sse_events(writer, pieces, keep)))
    } else {
        let response = fold_body(writer, pieces).await?;
        keep.store(&response);
        Ok(Json(response).into_response())
    }
}

/// `GET /v1/responses/{id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
) -> Result<Json<hearth_protocol::responses::Response>, ApiError> {
    state.responses.get(&id).map(|s| Json(s.response)).ok_or_else(|| not_found(&id))
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
) -> Result<Json<DeletedResponse>, ApiError> {
    match state.responses.delete(&id) {
        true => Ok(Json(DeletedResponse { id, object: "response".into(), deleted: true })),
        false => Err(not_found(&id)),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Response with id '{id}' not found."))
}

/// What storing a finished response needs.
struct Keep {
    state: AppState,
    conversation: Vec<ChatMessage>,
    store: bool,
}

impl Keep {
    /// Stores a finished response with its conversation (its own output appended), when asked to.
    fn store(self, response: &hearth_protocol::responses::Response) {
        if !self.store || response.status == "failed" {
            return;
        }
        let mut conversation = self.conversation;
        conversation.extend(prepare::responses_output(&response.output));
        let stored = Stored { response: response.clone(), conversation: Arc::new(conversation) };
        self.state.responses.insert(stored);
    }
}

/// The typed event stream, stored once it completes.
fn sse_events(
    mut writer: ResponseWriter,
    pieces: impl Stream<Item = Result<ChatPiece, ApiError>> + Send + 'static,
    keep: Keep,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let first: Vec<SseEvent> = writer.start().iter().map(sse).collect();
    let mut keep = Some(keep);
    let body = pieces.flat_map(move |piece| {
        let events = match piece {
            Ok(piece) => writer.piece(piece),
            Err(error) => writer.failed(&error),
        };
        if let (Some(response), true) = (writer.result(), keep.is_some()) {
            keep.take().expect("checked").store(response);
        }
        futures::stream::iter(events.iter().map(sse).collect::<Vec<_>>())
    });
    futures::stream::iter(first).chain(body).map(Ok)
}

/// One event; the `event:` line repeats its `type`.
fn sse(event: &Value) -> SseEvent {
    let name = event["type"].as_str().unwrap_or("message").to_string();
    SseEvent::default().event(name).json_data(event).expect("events serialize")
}
