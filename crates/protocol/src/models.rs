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
