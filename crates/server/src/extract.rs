//! Extractors whose every failure is an [`ApiError`] in OpenAI's shape: the JSON body and path segments.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Like `axum::Json`, but lenient about `Content-Type` (curl's `-d` sends a form type) and strict about
/// the error shape: malformed JSON, a missing field or a wrong type all answer 400 with an error object.
#[derive(Debug, Clone)]
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(crate::app::MAX_BODY_BYTES)
            } else {
                ApiError::Invalid { message: rejection.body_text(), param: None, code: None }
            }
        })?;
        serde_json::from_slice(&bytes).map(AppJson).map_err(|e| json_error(&e))
    }
}

/// Names the field serde complained about, when its message says which.
fn json_error(e: &serde_json::Error) -> ApiError {
    let message = e.to_string();
    let param =
        message.split_once("field `").and_then(|(_, rest)| rest.split_once('`')).map(|(field, _)| field.to_string());
    let prefix = if e.is_syntax() || e.is_eof() {
        "We could not parse the JSON body of your request"
    } else {
        "Invalid request body"
    };
    ApiError::Invalid { message: format!("{prefix}: {message}"), param, code: None }
}

/// Like `axum::extract::Path`, but a segment that cannot be read (not UTF-8 once decoded, or not the
/// expected type) is a 400 error object naming the path, never axum's plain-text rejection.
#[derive(Debug, Clone)]
pub struct AppPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for AppPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| AppPath(p.0)).map_err(|rejection| {
            ApiError::Invalid { message: format!("Invalid path: {}", rejection.body_text()), param: None, code: None }
        })
    }
}
