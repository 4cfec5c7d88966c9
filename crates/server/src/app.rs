//! The application as a value: state, router, and the serving loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::util::option_layer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tracing::Instrument;

use crate::auth::{self, ApiKeys};
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::playground;
use crate::prepare::PreparePool;
use crate::registry::Registry;
use crate::response_store::ResponseStore;
use crate::routes::{chat, completions, embeddings, messages, meta, responses, tokenize};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What every handler can reach; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The servable models and the loaded ones.
    pub models: Arc<Registry>,
    /// API keys (auth is off when empty).
    pub keys: Arc<ApiKeys>,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
    /// Draining state at shutdown.
    pub lifecycle: Arc<Lifecycle>,
    /// HTTP settings.
    pub config: Arc<ServerConfig>,
    /// The bounded workers that template and tokenize requests.
    pub preparation: PreparePool,
    /// Stored Responses-API responses.
    pub responses: Arc<ResponseStore>,
}

impl AppState {
    /// Whether a request that runs a model may start: a 503 while draining for shutdown.
    pub fn accept_request(&self) -> Result<(), ApiError> {
        match self.lifecycle.is_draining() {
            true => Err(ApiError::Unavailable("the server is shutting down".into())),
            false => Ok(()),
        }
    }
}

/// The router with every route (and the playground unless it is off), in OpenAI's error shape even for
/// unknown paths and handler panics.
pub fn app(state: AppState) -> Router {
    let routes = match state.config.playground {
        true => routes().merge(playground::routes()),
        false => routes(),
    };
    layered(routes, state)
}

/// Every route of the API, before the layers.
fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(chat::create))
        .route("/v1/completions", post(completions::create))
        .route("/v1/responses", post(responses::create))
        .route("/v1/responses/{id}", get(responses::retrieve).delete(responses::delete))
        .route("/v1/messages", post(messages::create))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/embeddings", post(embeddings::create))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route("/v1/models", get(meta::list))
        .route("/v1/models/{id}", get(meta::retrieve))
        .route("/models", get(meta::list))
        .route("/models/load", post(meta::load))
        .route("/models/unload", post(meta::unload))
        .route("/health", get(meta::health))
        .route("/ready", get(meta::ready))
        .route("/metrics", get(meta::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// Wraps `routes` in what every request passes through, outermost first: the request span, CORS (only
/// for configured origins), Anthropic's error shape under `/v1/messages`, panic containment, the body
/// limit, and API-key auth.
pub fn layered(routes: Router<AppState>, state: AppState) -> Router {
    let cors = (!state.config.cors_allow_origins.is_empty()).then(|| {
        let origins = state.config.cors_allow_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok());
        CorsLayer::new().allow_origin(AllowOrigin::list(origins)).allow_methods(Any).allow_headers(Any)
    });
    routes
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_key))
        .layer(middleware::from_fn_with_state(state.clone(), count_responses))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(messages::error_shape))
        .layer(option_layer(cors))
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// Counts each response under its route, so `/metrics` shows traffic and errors per endpoint.
async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let response = next.run(request).await;
    state.metrics.response(route, response.status().as_u16());
    response
}

/// Opens the request's span (id from `x-request-id`, or a new one) and echoes the id back.
async fn request_span(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(random_id, str::to_string);
    let span = tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path());
    request.extensions_mut().insert(RequestId(id.clone()));
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64, "response")
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The id of a request (a request extension), as logged and echoed in `x-request-id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const REQUEST_ID: &str = "x-request-id";

/// A handler panic becomes a 500 error object; the server and the engine keep serving.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail =
        panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
    tracing::error!(panic = detail.as_deref().unwrap_or("unknown"), "handler panicked");
    ApiError::Internal("internal error while handling the request".into()).into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("method not allowed for {}", uri.path()))
}

/// How `serve` treats each accepted connection.
#[derive(Clone)]
pub struct ServeOptions {
    /// Time a client has to send a request's headers, and before that to finish its TLS handshake.
    pub header_timeout: Duration,
    /// Wraps every connection in TLS when set; plain HTTP when `None`.
    pub tls: Option<TlsAcceptor>,
}

impl ServeOptions {
    /// Plain HTTP with `header_timeout`.
    pub fn plain(header_timeout: Duration) -> Self {
        Self { header_timeout, tls: None }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish.
///
/// A client must finish its TLS handshake (when `options.tls` is set) and then send a request's headers,
/// each within `options.header_timeout`, or its connection is closed, so slow or idle clients cannot
/// hold sockets (and file descriptors) forever.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let ServeOptions { header_timeout, tls } = options;
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Taken before the handshake, so shutdown also waits for a connection still shaking hands.
        let watcher = graceful.watcher();
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(stream, app, watcher, header_timeout).await;
            };
            match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, app, watcher, header_timeout).await,
                Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Serves HTTP/1.1 on one connection (plain or already TLS) until it closes or shutdown drains it.
async fn serve_connection<S>(stream: S, app: Router, watcher: Watcher, header_timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// 24 random alphanumerics, for response ids.
pub fn random_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 24)
}
