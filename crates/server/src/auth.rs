//! API keys: when any is configured, every route but the probes and the playground's files needs
//! `Authorization: Bearer <key>` (or Anthropic's `x-api-key: <key>`).
//!
//! Keys are compared in constant time (every byte of every key is read whatever matches), and are never
//! logged: logs and metrics see only the key's name.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::playground;

/// Anthropic's key header.
const X_API_KEY: &str = "x-api-key";

/// Routes that answer without a key: liveness and readiness probes reveal nothing else (nor do the
/// playground's files, which `playground::serves` names).
const OPEN_ROUTES: [&str; 2] = ["/health", "/ready"];

/// The configured keys, each with a name for logs and metrics.
#[derive(Debug, Default, Clone)]
pub struct ApiKeys {
    keys: Vec<(String, String)>,
}

/// The name of the key a request authenticated with (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(pub String);

impl ApiKeys {
    /// Keys from flags, environment or config (named `key-1`, `key-2`, … by position) and from a key file
    /// (one key per line, optionally `NAME KEY`; blank lines and `#` comments skipped).
    pub fn load(plain: &[String], file: Option<&Path>) -> anyhow::Result<Self> {
        let mut keys: Vec<(String, String)> =
            plain.iter().enumerate().map(|(i, k)| (format!("key-{}", i + 1), k.trim().to_string())).collect();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading API key file {}: {e}", path.display()))?;
            for (i, line) in text.lines().map(str::trim).enumerate() {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match line.split_once(char::is_whitespace) {
                    Some((name, key)) => keys.push((name.to_string(), key.trim().to_string())),
                    None => keys.push((format!("file-line-{}", i + 1), line.to_string())),
                }
            }
        }
        if keys.iter().any(|(_, k)| k.is_empty()) {
            anyhow::bail!("an API key is empty");
        }
        Ok(Self { keys })
    }

    /// Whether any key is configured (auth is on).
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The name of the key `presented` matches, checking every key in constant time.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let mut found = None;
        for (name, key) in &self.keys {
            if constant_time_eq(key.as_bytes(), presented.as_bytes()) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Equality that reads every byte of both inputs, so timing reveals at most their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// Middleware: rejects unauthenticated requests with OpenAI's 401, tags the rest with their key's name.
pub async fn require_key(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !state.keys.enabled() || OPEN_ROUTES.contains(&path) || (state.config.playground && playground::serves(path)) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let bearer = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let presented = bearer.or_else(|| headers.get(X_API_KEY).and_then(|v| v.to_str().ok())).map(str::trim);
    let Some(bearer) = presented else {
        return ApiError::Unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer KEY` or `x-api-key: KEY`.".into(),
        )
        .into_response();
    };
    match state.keys.check(bearer) {
        Some(name) => {
            request.extensions_mut().insert(KeyName(name.to_string()));
            next.run(request).await
        }
        None => ApiError::Unauthorized("Incorrect API key provided.".into()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_exactly_and_report_their_name() {
        let dir = std::env::temp_dir().join(format!("hearth-keys-{}", std::process::id()));
        std::fs::write(&dir, "# ops\nbilling sk-billing\n\nsk-anon\n").unwrap();
        let keys = ApiKeys::load(&["sk-one".into()], Some(&dir)).unwrap();
        assert_eq!(keys.check("sk-one"), Some("key-1"));
        assert_eq!(keys.check("sk-billing"), Some("billing"));
        assert_eq!(keys.check("sk-anon"), Some("file-line-4"));
        for wrong in ["sk-on", "sk-one2", "SK-ONE", "", "sk-billing "] {
            assert_eq!(keys.check(wrong), None, "{wrong:?}");
        }
        assert!(!ApiKeys::default().enabled());
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
