//! `ApiError`: the one place where failures become HTTP statuses, JSON bodies and SSE error events.

use axum::http::{header, StatusCode};
use axum::response::{sse, IntoResponse, Response};
use axum::Json;
use hearth_protocol::{ErrorBody, ErrorObject};

/// Everything a request can fail with, as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or out of range (400).
    #[error("{message}")]
    Invalid {
        /// What is wrong, naming the field.
        message: String,
        /// The field at fault.
        param: Option<String>,
        /// A machine-readable code, e.g. `context_length_exceeded`.
        code: Option<&'static str>,
    },
    /// No or a wrong API key (401).
    #[error("{0}")]
    Unauthorized(String),
    /// No model has this id (404).
    #[error("The model `{0}` does not exist")]
    ModelNotFound(String),
    /// No such route (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body is over the size limit (413).
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Admission is full (429, with `Retry-After`).
    #[error("{0}")]
    Overloaded(String),
    /// The request ran past its deadline (504).
    #[error("the request did not finish within its deadline of {0:?}")]
    DeadlineExceeded(std::time::Duration),
    /// The engine failed while generating (500).
    #[error("{0}")]
    Internal(String),
    /// The engine is not serving (503).
    #[error("{0}")]
    Unavailable(String),
    /// A model cannot be loaded now: the memory it needs is held by models serving requests (503, with
    /// `Retry-After`).
    #[error("{0}")]
    ModelBusy(String),
    /// A model's file cannot be served (500); the reason names what is wrong with it.
    #[error("{0}")]
    ModelFailed(String),
}

impl ApiError {
    /// A 400 naming the field at fault.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { message: message.into(), param: Some(param.into()), code: None }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::ModelNotFound(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_) | Self::ModelBusy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::ModelFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI-shaped body.
    pub fn body(&self) -> ErrorBody {
        let (kind, param, code) = match self {
            Self::Invalid { param, code, .. } => ("invalid_request_error", param.clone(), code.map(str::to_string)),
            Self::Unauthorized(_) => ("authentication_error", None, Some("invalid_api_key".into())),
            Self::ModelNotFound(_) => ("invalid_request_error", Some("model".into()), Some("model_not_found".into())),
            Self::NotFound(_) => ("invalid_request_error", None, Some("not_found".into())),
            Self::MethodNotAllowed(_) => ("invalid_request_error", None, Some("method_not_allowed".into())),
            Self::PayloadTooLarge(_) => ("invalid_request_error", None, Some("payload_too_large".into())),
            Self::Overloaded(_) => ("rate_limit_error", None, Some("rate_limit_exceeded".into())),
            Self::Internal(_) => ("server_error", None, None),
            Self::DeadlineExceeded(_) => ("server_error", None, Some("timeout".into())),
            Self::Unavailable(_) => ("server_error", None, Some("engine_unavailable".into())),
            Self::ModelBusy(_) => ("server_error", Some("model".into()), Some("model_busy".into())),
            Self::ModelFailed(_) => ("server_error", Some("model".into()), Some("model_load_failed".into())),
        };
        ErrorBody { error: ErrorObject { message: self.to_string(), kind: kind.into(), param, code } }
    }

    /// The same error as a server-sent event, for failures after a stream has started.
    pub fn sse_event(&self) -> sse::Event {
        sse::Event::default().json_data(self.body()).expect("ErrorBody serializes")
    }
}

/// `Retry-After` of a [`ApiError::ModelBusy`]: about one short request's time.
const MODEL_BUSY_RETRY_SECONDS: &str = "5";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        let retry_after = match self {
            Self::Overloaded(_) => Some("1"),
            Self::ModelBusy(_) => Some(MODEL_BUSY_RETRY_SECONDS),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(seconds));
        }
        response
    }
}

impl From<hearth_engine::SubmitError> for ApiError {
    fn from(e: hearth_engine::SubmitError) -> Self {
        match e {
            hearth_engine::SubmitError::Overloaded(_) => Self::Overloaded(e.to_string()),
            hearth_engine::SubmitError::Stopped => Self::Unavailable(e.to_string()),
            hearth_engine::SubmitError::TooLarge(message) => {
                Self::Invalid { message, param: Some("max_tokens".into()), code: Some("context_length_exceeded") }
            }
        }
    }
}

impl From<hearth_engine::EngineError> for ApiError {
    fn from(e: hearth_engine::EngineError) -> Self {
        match e {
            hearth_engine::EngineError::Model(_) => Self::Internal(e.to_string()),
            hearth_engine::EngineError::Stopped => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<hearth_engine::EmbedError> for ApiError {
    fn from(e: hearth_engine::EmbedError) -> Self {
        match e {
            hearth_engine::EmbedError::Submit(e) => e.into(),
            hearth_engine::EmbedError::Engine(e) => e.into(),
        }
    }
}
