//! `/v1/models`.

use serde::{Deserialize, Serialize};

/// `GET /v1/models` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The served models.
    pub data: Vec<Model>,
}

/// One served model, also the `GET /v1/models/{id}` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Model {
    /// The id clients pass as `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds when the model was loaded.
    pub created: u64,
    /// Who serves it.
    pub owned_by: String,
    /// Extension (vLLM): the context window in tokens.
    pub max_model_len: u32,
    /// Extension (Hearth): the APIs the model serves, so a client can tell chat models from the rest.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Extension (Hearth): other ids that name this model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Extension (Hearth, as llama-server's router mode): whether the model is in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ModelStatus>,
}

/// Where a servable model stands.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ModelStatus {
    /// The state.
    pub value: ModelState,
    /// Why loading failed (`failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Memory it holds (`loaded`) or will take (otherwise, when known): weights plus its KV cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Whether it is never unloaded once loaded.
    #[serde(default)]
    pub pinned: bool,
}

/// Whether a model is in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    /// In memory and serving.
    Loaded,
    /// Being loaded; requests for it wait.
    Loading,
    /// Servable: the next request for it loads it.
    Available,
    /// Its file cannot be served (the reason says why); a changed file is tried again.
    Failed,
}

/// `POST /models/load` and `POST /models/unload` request (llama-server's router API).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelAction {
    /// The model's id.
    pub model: String,
}

/// `POST /models/load` and `POST /models/unload` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelActionResult {
    /// Always `true`: failures are error objects.
    pub success: bool,
}

/// An API a served model answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// `/v1/chat/completions`, `/v1/responses` and `/v1/messages`: the model has a chat template.
    Chat,
    /// `/v1/completions`: any generative model.
    Completions,
    /// `/v1/embeddings`: an embedding model.
    Embeddings,
}
