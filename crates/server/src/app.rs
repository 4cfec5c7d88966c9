//! The application as a value: state, router, and the serving loop.

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::routing::{get, post};
use axum::Router;
use hearth_engine::EngineHandle;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::model::ServedModel;
use crate::routes::{chat, meta};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What every handler can reach; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The model worker.
    pub engine: EngineHandle,
    /// The served model's identity and text side.
    pub model: Arc<ServedModel>,
}

/// The router with every route, in OpenAI's error shape even for unknown paths.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::create))
        .route("/v1/models", get(meta::list))
        .route("/v1/models/{id}", get(meta::retrieve))
        .route("/health", get(meta::health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("method not allowed for {}", uri.path()))
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// 24 random alphanumerics, for response ids.
pub fn random_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 24)
}
