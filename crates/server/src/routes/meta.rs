//! `GET /v1/models`, `GET /v1/models/{id}` and `GET /health`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_protocol::{Capability, Model, ModelList};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::AppPath;

/// Every served model: the chat model first, then the embedding model; each says which APIs it answers.
fn entries(state: &AppState) -> Vec<Model> {
    let entry = |id: &str, created, max_model_len: usize, capabilities| Model {
        id: id.to_string(),
        object: "model".into(),
        created,
        owned_by: "hearth".into(),
        max_model_len: max_model_len as u32,
        capabilities,
    };
    let chat = &state.model;
    let generates = match chat.template {
        Some(_) => vec![Capability::Chat, Capability::Completions],
        None => vec![Capability::Completions],
    };
    let mut models = vec![entry(&chat.id, chat.created, chat.context_length, generates)];
    if let Some(e) = &state.embedding {
        models.push(entry(&e.id, e.created, e.worker.info().max_tokens, vec![Capability::Embeddings]));
    }
    models
}

/// Lists the served models.
pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList { object: "list".into(), data: entries(&state) })
}

/// One served model, or 404.
pub async fn retrieve(State(state): State<AppState>, AppPath(id): AppPath<String>) -> Result<Json<Model>, ApiError> {
    entries(&state).into_iter().find(|m| m.id == id).map(Json).ok_or(ApiError::ModelNotFound(id))
}

/// Readiness: 200 while new requests are welcome; 503 while draining for shutdown or once the engine
/// has stopped, so a load balancer routes elsewhere.
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.lifecycle.is_draining() {
        return ApiError::Unavailable("the server is shutting down".into()).into_response();
    }
    health(State(state)).await
}

/// Prometheus metrics.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(state.engine.stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Liveness: 200 while the engine serves, 503 once it has stopped.
pub async fn health(State(state): State<AppState>) -> Response {
    if state.engine.is_alive() {
        (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response()
    } else {
        ApiError::Unavailable("the inference engine has stopped".into()).into_response()
    }
}
