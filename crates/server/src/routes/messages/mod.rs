//! Anthropic's Messages API, `POST /v1/messages` and `POST /v1/messages/count_tokens`: the request runs
//! the one chat path ([`prepare::messages`] → engine → [`chat_pieces`]), and its pieces are written as
//! Anthropic's message or event stream by [`events::MessageWriter`].

pub mod events;

use std::convert::Infallible;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use hearth_protocol::messages::{ErrorDetail, ErrorResponse, MessagesRequest, TokenCount};
use hearth_protocol::ErrorBody;

use crate::answer::{chat_pieces, fold_body, BodyWriter, ChatPiece};
use crate::app::AppState;
use crate::auth::KeyName;
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::prepare;
use crate::routes::generation::{prepare_blocking, sse_response, submit, Origin};
use events::MessageWriter;

/// `POST /v1/messages`.
pub async fn create(
    State(state): State<AppState>,
    key: Option<Extension<KeyName>>,
    AppJson(req): AppJson<MessagesRequest>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    state.accept_request()?;
    if state.config.log_content {
        tracing::info!(messages = ?req.messages, system = ?req.system, "messages request");
    }
    let model = state.models.chat(Some(&req.model)).await?;
    let max_tokens_limit = state.config.max_tokens_limit;
    let preparing = model.clone();
    let prepared = prepare_blocking(&state, move || prepare::messages(&req, &preparing, max_tokens_limit)).await?;
    let output = prepared.output;
    let prompt_tokens = prepared.generate.prompt.len() as u32;
    let key = key.map(|Extension(KeyName(name))| name);
    let pieces =
        chat_pieces(submit(&state, &model, Origin { key, arrived }, prepared.generate, &output)?, prepared.answer, 1);
    let writer = MessageWriter::new(&model.id, prompt_tokens);
    if output.stream {
        Ok(sse_response(sse_events(writer, pieces)))
    } else {
        Ok(Json(fold_body(writer, pieces).await?).into_response())
    }
}

/// `POST /v1/messages/count_tokens`: the prompt `/v1/messages` would run, counted.
pub async fn count_tokens(
    State(state): State<AppState>,
    AppJson(req): AppJson<MessagesRequest>,
) -> Result<Json<TokenCount>, ApiError> {
    let model = state.models.chat(Some(&req.model)).await?;
    let max_tokens_limit = state.config.max_tokens_limit;
    let tokens = prepare_blocking(&state, move || prepare::count_tokens(&req, &model, max_tokens_limit)).await?;
    Ok(Json(TokenCount { input_tokens: tokens as u32 }))
}

/// The event stream: `message_start`, a `ping`, the blocks' events, `message_delta`, `message_stop`; a
/// failure after the start is an `error` event.
fn sse_events(
    mut writer: MessageWriter,
    pieces: impl Stream<Item = Result<ChatPiece, ApiError>> + Send + 'static,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let first: Vec<SseEvent> = writer.start().into_iter().map(|(name, data)| sse(name, &data)).collect();
    let body = pieces.flat_map(move |piece| {
        let events: Vec<SseEvent> = match piece {
            Ok(piece) => writer.piece(piece).into_iter().map(|(name, data)| sse(name, &data)).collect(),
            Err(error) => vec![sse("error", &anthropic_error(error.status(), error.to_string()))],
        };
        futures::stream::iter(events)
    });
    futures::stream::iter(first).chain(body).map(Ok)
}

/// One named event; Anthropic's SDKs dispatch on the `event:` line.
fn sse(name: &str, data: &impl serde::Serialize) -> SseEvent {
    SseEvent::default().event(name).json_data(data).expect("events serialize")
}

/// Anthropic's error body for a status.
fn anthropic_error(status: StatusCode, message: String) -> ErrorResponse {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    };
    ErrorResponse { kind: "error".into(), error: ErrorDetail { kind: kind.into(), message } }
}

/// Middleware: every error under `/v1/messages` (auth, body limit, malformed JSON, validation, engine)
/// leaves in Anthropic's shape with the same status.
pub async fn error_shape(request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/v1/messages") {
        return next.run(request).await;
    }
    let response = next.run(request).await;
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let message = match axum::body::to_bytes(body, crate::app::MAX_BODY_BYTES).await {
        Ok(bytes) => serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned()),
        Err(_) => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let body = serde_json::to_vec(&anthropic_error(status, message)).expect("errors serialize");
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
