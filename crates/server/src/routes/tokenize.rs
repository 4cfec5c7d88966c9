//! `POST /tokenize` and `POST /detokenize` (vLLM's names): text or a conversation to token ids and back.

use axum::extract::State;
use axum::Json;
use hearth_protocol::{DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::prepare;
use crate::routes::generation::prepare_blocking;

/// Text or messages to token ids, with the count and the model's context length.
pub async fn tokenize(
    State(state): State<AppState>,
    AppJson(req): AppJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    let model = state.models.chat(req.model.as_deref()).await?;
    let max_model_len = model.context_length;
    let tokens = prepare_blocking(&state, move || prepare::tokenize(&req, &model)).await?;
    Ok(Json(TokenizeResponse { count: tokens.len(), max_model_len, tokens }))
}

/// Token ids back to text.
pub async fn detokenize(
    State(state): State<AppState>,
    AppJson(req): AppJson<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    let model = state.models.chat(req.model.as_deref()).await?;
    let prompt = prepare_blocking(&state, move || prepare::detokenize(&req, &model)).await?;
    Ok(Json(DetokenizeResponse { prompt }))
}
