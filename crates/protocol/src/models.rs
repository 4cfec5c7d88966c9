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
}
