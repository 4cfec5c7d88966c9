//! `GET /v1/models`, `GET /v1/models/{id}`, the model admin routes (`POST /models/load`, `/models/unload`),
//! `/health`, `/ready` and `/metrics`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_protocol::{Capability, Model, ModelAction, ModelActionResult, ModelList, ModelStatus};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath};
use crate::registry::catalog::Kind;
use crate::registry::Listing;

/// Every servable model, loaded or not: the models named at start first, then each models directory's.
async fn entries(state: &AppState) -> Vec<Model> {
    listings(state).await.into_iter().map(listed).collect()
}

/// The registry's listing, read on a blocking thread (it may read new files' headers).
async fn listings(state: &AppState) -> Vec<Listing> {
    let models = state.models.clone();
    tokio::task::spawn_blocking(move || models.list()).await.unwrap_or_default()
}

/// One listing in OpenAI's shape, with the APIs it answers and where it stands.
fn listed(listing: Listing) -> Model {
    let capabilities = match (listing.entry.kind, listing.chat) {
        (Kind::Embedding, _) => vec![Capability::Embeddings],
        (Kind::Chat, true) => vec![Capability::Chat, Capability::Completions],
        (Kind::Chat, false) => vec![Capability::Completions],
    };
    Model {
        id: listing.entry.id,
        object: "model".into(),
        created: listing.created,
        owned_by: "hearth".into(),
        max_model_len: u32::try_from(listing.context_length).unwrap_or(u32::MAX),
        capabilities,
        aliases: listing.aliases,
        status: Some(ModelStatus {
            value: listing.state,
            reason: listing.reason,
            memory_bytes: listing.memory,
            pinned: listing.pinned,
        }),
    }
}

/// Lists the servable models.
pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList { object: "list".into(), data: entries(&state).await })
}

/// One servable model (by id or alias), or 404.
pub async fn retrieve(State(state): State<AppState>, AppPath(id): AppPath<String>) -> Result<Json<Model>, ApiError> {
    entries(&state)
        .await
        .into_iter()
        .find(|m| m.id == id || m.aliases.contains(&id))
        .map(Json)
        .ok_or(ApiError::ModelNotFound(id))
}

/// `POST /models/load`: loads a model and answers once it is in memory.
pub async fn load(
    State(state): State<AppState>,
    AppJson(req): AppJson<ModelAction>,
) -> Result<Json<ModelActionResult>, ApiError> {
    state.models.load(&req.model).await?;
    Ok(Json(ModelActionResult { success: true }))
}

/// `POST /models/unload`: unloads an idle, unpinned model now.
pub async fn unload(
    State(state): State<AppState>,
    AppJson(req): AppJson<ModelAction>,
) -> Result<Json<ModelActionResult>, ApiError> {
    state.models.unload(&req.model)?;
    Ok(Json(ModelActionResult { success: true }))
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
    let body = state.metrics.render(&listings(&state).await, state.models.budget());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Liveness: 200 while the engine serves, 503 once it has stopped.
pub async fn health(State(state): State<AppState>) -> Response {
    if state.models.engines_alive() {
        (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response()
    } else {
        ApiError::Unavailable("the inference engine has stopped".into()).into_response()
    }
}
