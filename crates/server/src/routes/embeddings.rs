//! `POST /v1/embeddings`: tokenize, embed on the embedding worker, encode as floats or base64.

use axum::extract::State;
use axum::Json;
use hearth_protocol::{Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage, EmbeddingVector};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::prepare;
use crate::routes::generation::prepare_blocking;

/// The handler.
pub async fn create(
    State(state): State<AppState>,
    AppJson(req): AppJson<EmbeddingRequest>,
) -> Result<Json<EmbeddingList>, ApiError> {
    state.accept_request()?;
    let model = state.models.embedder(&req.model).await?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("`encoding_format` must be `float` or `base64`, got `{other}`"),
            ));
        }
    };
    let dimensions = model.worker.info().dimensions;
    if let Some(requested) = req.dimensions.filter(|&d| d != dimensions as i64) {
        return Err(ApiError::invalid(
            "dimensions",
            format!("`{}` makes {dimensions}-dimensional embeddings and cannot shorten them; got `dimensions` = {requested}", model.id),
        ));
    }
    let tokenizing = model.clone();
    let inputs = prepare_blocking(&state, move || prepare::embedding_inputs(&req.input, &tokenizing)).await?;
    let prompt_tokens = inputs.iter().map(Vec::len).sum::<usize>() as u32;
    let vectors = model.worker.embed(inputs).await?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| Embedding {
            object: "embedding".into(),
            index: index as u32,
            embedding: if base64 {
                EmbeddingVector::Base64(encode_base64(&vector))
            } else {
                EmbeddingVector::Float(vector)
            },
        })
        .collect();
    Ok(Json(EmbeddingList {
        object: "list".into(),
        data,
        model: model.id.clone(),
        usage: EmbeddingUsage { prompt_tokens, total_tokens: prompt_tokens },
    }))
}

/// The vector's little-endian f32 bytes in standard base64 with padding, as OpenAI encodes them.
fn encode_base64(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(word >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_encoding() {
        // 1.0f32 = 00 00 80 3F; 1.0, -2.0 = 00 00 80 3F 00 00 00 C0.
        assert_eq!(encode_base64(&[1.0]), "AACAPw==");
        assert_eq!(encode_base64(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(encode_base64(&[]), "");
    }
}
