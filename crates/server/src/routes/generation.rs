//! What the two generation endpoints share: submitting to the engine, the abort conditions, response
//! ids, and turning token ids into log-probability text.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use hearth_engine::{GenerateRequest, SubmitError};

use crate::app::AppState;
use crate::error::ApiError;
use crate::metrics::RequestObserver;
use crate::model::{ChatModel, ServedModel};
use crate::prepare::OutputOptions;
use crate::stream::{pieces, GenerationRequest, Piece};

/// The pieces of one engine request.
pub type PieceStream = Pin<Box<dyn Stream<Item = Result<Piece, ApiError>> + Send>>;

/// What every chunk or body of one response shares.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id that served the request.
    pub model: String,
}

impl ResponseMeta {
    /// A fresh id with `prefix`, stamped now.
    pub fn new(prefix: &str, model: &str) -> Self {
        Self {
            id: format!("{prefix}-{}", crate::app::random_id()),
            created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            model: model.to_string(),
        }
    }
}

/// Who sent a request and when it arrived, for its metrics and its deadline.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The API key's name, when auth is on.
    pub key: Option<String>,
    /// When the request arrived.
    pub arrived: Instant,
}

/// Queues `generate` on `model`'s engine and returns its pieces, which end early with an error when
/// the server shuts down or the request's deadline passes.
pub fn submit(
    state: &AppState,
    model: &Arc<ChatModel>,
    origin: Origin,
    generate: GenerateRequest,
    output: &OutputOptions,
) -> Result<PieceStream, ApiError> {
    let Origin { key, arrived } = origin;
    let (stop, logprobs) = (output.stop.clone(), output.logprobs.is_some());
    let prompt_tokens = generate.prompt.len();
    let n = generate.n;
    let events = model.engine.submit(generate).inspect_err(|e| {
        if matches!(e, SubmitError::Overloaded(_)) {
            state.metrics.rejected();
        }
    })?;
    let observer = RequestObserver::new(state.metrics.clone(), &model.id, key, arrived);
    let request = GenerationRequest { model: model.clone(), stop, prompt_tokens, n, logprobs, observer };
    let shutdown = state.lifecycle.aborted();
    let deadline = state.config.request_timeout;
    let abort = async move {
        tokio::select! {
            () = shutdown => ApiError::Unavailable("the server shut down before the request finished".into()),
            () = sleep_until_deadline(arrived, deadline) => ApiError::DeadlineExceeded(deadline.unwrap_or_default()),
        }
    };
    Ok(Box::pin(pieces(events, request, abort, state.config.log_content)))
}

/// Resolves when `deadline` has passed since `arrived`; never when there is no deadline.
async fn sleep_until_deadline(arrived: Instant, deadline: Option<Duration>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until((arrived + deadline).into()).await,
        None => std::future::pending().await,
    }
}

/// Runs CPU-heavy request preparation (templating, tokenizing, compiling constraints) on the bounded
/// [`crate::prepare::PreparePool`]; a full pool is a 429, counted as a rejection.
pub async fn prepare_blocking<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    state.preparation.run(work).await.inspect_err(|e| {
        if matches!(e, ApiError::Overloaded(_)) {
            state.metrics.rejected();
        }
    })
}

/// A server-sent-event response with keep-alive comments.
pub fn sse_response(events: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static) -> Response {
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// One JSON chunk as an event.
pub fn json_event(chunk: &impl serde::Serialize) -> SseEvent {
    SseEvent::default().json_data(chunk).expect("chunks serialize")
}

/// The `[DONE]` sentinel that ends every stream.
pub fn done_event() -> SseEvent {
    SseEvent::default().data("[DONE]")
}

/// A token's text (lossy inside a multi-byte character) and its bytes.
pub fn token_text(model: &ServedModel, id: u32) -> (String, Vec<u8>) {
    let bytes = model.tokenizer.token_bytes(id);
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}
