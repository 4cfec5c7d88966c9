//! Shared set-up: models, state, and the one place tests talk to the router.

use std::path::PathBuf;
use std::sync::{Mutex, Once, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hearth_models::{tiny, WeightFormat};
use hearth_server::config::{Config, EngineSettings, ModelConfig};
use hearth_server::AppState;
use tower::ServiceExt;

/// Everything this test binary logged (one global subscriber: per-test subscribers miss events when
/// tests run in parallel, because tracing caches each call site's interest process-wide).
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The logs captured so far.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// One inference thread (CI has two cores, and tests run side by side) and log capture.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        hearth_models::set_inference_threads(1);
        let subscriber = tracing_subscriber::fmt().with_writer(|| LogWriter).with_ansi(false).finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    });
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The real default model; fetched by `scripts/fetch-models.sh` (the README's test command runs it).
pub fn default_model() -> PathBuf {
    let path = root().join(hearth_server::config::DEFAULT_MODEL);
    assert!(path.exists(), "{} is missing: run scripts/fetch-models.sh (scripts/test.sh does)", path.display());
    path
}

/// The real embedding model directory; fetched by `scripts/fetch-models.sh`.
pub fn default_embedding_model() -> PathBuf {
    let path = root().join(hearth_server::config::DEFAULT_EMBEDDING_MODEL);
    assert!(path.exists(), "{} is missing: run scripts/fetch-models.sh (scripts/test.sh does)", path.display());
    path
}

/// A config serving `path` (and no embedding model) with small engine limits.
pub fn config(path: PathBuf, weights: WeightFormat) -> Config {
    let default = Config::default_resolved();
    Config {
        model: ModelConfig { path, served_model_name: None, weights, embedding: None },
        engine: EngineSettings { threads: 1, ..default.engine },
        ..default
    }
}

/// The tiny random-weight model's file (written once per test binary).
pub fn tiny_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hearth-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        tiny::write_llama(&dir, 7).unwrap()
    })
    .clone()
}

/// A started app on the tiny model, shared by the tests that need no special configuration.
pub fn tiny_state() -> AppState {
    static STATE: OnceLock<AppState> = OnceLock::new();
    STATE.get_or_init(|| tiny_state_with(|_| {})).clone()
}

/// A fresh app on the tiny model, its default configuration changed by `adjust`.
pub fn tiny_state_with(adjust: impl FnOnce(&mut Config)) -> AppState {
    init();
    let mut config = config(tiny_model(), WeightFormat::AsStored);
    adjust(&mut config);
    hearth_server::start(&config).unwrap()
}

/// Sends a request with extra headers; returns the whole response.
pub async fn call_with(state: &AppState, request: Request<Body>) -> axum::response::Response {
    hearth_server::app(state.clone()).oneshot(request).await.unwrap()
}

/// The body of a response as text.
pub async fn body_text(response: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Sends one request to the router; returns the status and the body as text.
pub async fn call(state: &AppState, method: &str, path: &str, body: Option<&str>) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = call_with(state, request).await;
    (response.status(), body_text(response).await)
}
