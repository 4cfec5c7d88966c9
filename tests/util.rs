//! Shared set-up: models, state, and the one place tests talk to the router.

use std::path::PathBuf;
use std::sync::{Once, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hearth_models::{tiny, WeightFormat};
use hearth_server::config::{Config, EngineSettings, ModelConfig};
use hearth_server::AppState;
use tower::ServiceExt;

/// One inference thread: CI has two cores, and tests run side by side.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| hearth_models::set_inference_threads(1));
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

/// A config serving `path` with small engine limits.
pub fn config(path: PathBuf, weights: WeightFormat) -> Config {
    let default = Config::default_resolved();
    Config {
        model: ModelConfig { path, served_model_name: None, weights },
        engine: EngineSettings { threads: 1, ..default.engine },
        ..default
    }
}

/// A started app on the tiny random-weight model (one per test binary).
pub fn tiny_state() -> AppState {
    static STATE: OnceLock<AppState> = OnceLock::new();
    init();
    STATE
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("hearth-e2e-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = tiny::write_llama(&dir, 7).unwrap();
            hearth_server::start(&config(path, WeightFormat::AsStored)).unwrap()
        })
        .clone()
}

/// Sends one request to the router; returns the status and the body as text.
pub async fn call(state: &AppState, method: &str, path: &str, body: Option<&str>) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = hearth_server::app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}
