//! The one error shape of the API.

use serde::{Deserialize, Serialize};

/// `{"error": {...}}`, the body of every error response and error stream event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorObject,
}

/// The fields OpenAI's SDKs read from an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorObject {
    /// Human-readable explanation.
    pub message: String,
    /// Error class, e.g. `invalid_request_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// Machine-readable code, e.g. `context_length_exceeded`.
    pub code: Option<String>,
}
