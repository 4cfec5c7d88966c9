//! Hearth's HTTP layer: the OpenAI API over the engine, and the `hearth` binary's composition root.
//!
//! **Invariant:** only this crate knows the wire. It turns `hearth-protocol` requests into
//! `hearth-engine` requests (in [`prepare`]) and engine events back into OpenAI responses (in [`stream`]
//! and the routes). Every failure leaves through [`error::ApiError`].
//!
//! # Layout
//! - [`bench_model`] — `hearth bench-model`, raw forward-pass speed and its bandwidth bound.
//! - [`config`] — `Cli`, the config file, and `Config::resolve`.
//! - [`model`] — loading a GGUF into the engine's model and the text side ([`model::ServedModel`]).
//! - [`registry`] — the servable models (named at start, found in models directories) and the loaded ones:
//!   loading on demand, unloading under the memory budget and the model count, idle unloading.
//! - [`app`] — `AppState`, `app(state) -> Router`, `serve` and its `ServeOptions`.
//! - [`tls`] — HTTPS without a proxy: the PEM certificate and key into a rustls `TlsAcceptor`.
//! - [`playground`] — the chat page at `/`, its files compiled in, with a strict Content-Security-Policy.
//! - [`auth`] — API keys: the bearer-token middleware, constant-time comparison.
//! - [`lifecycle`] — draining at shutdown: readiness off, a grace period, then an error event.
//! - [`metrics`] — Prometheus metrics and the per-request observer that records them.
//! - [`extract`] — the JSON extractor whose rejection is an `ApiError`.
//! - [`prepare`] — wire request → validated `GenerateRequest` (template, tokenize, limits).
//! - [`stream`] — engine events → text pieces (incremental decode, stop strings).
//! - [`answer`] — a chat answer's pieces: reasoning split off, function calls parsed out.
//! - [`routes`] — the handlers: OpenAI's chat, completions, Responses and embeddings, Anthropic's Messages.
//! - [`response_store`] — the Responses API's bounded in-memory store.
//! - [`error`] — `ApiError`, the one status/body/SSE mapping.
#![warn(missing_docs)]

pub mod answer;
pub mod app;
pub mod auth;
pub mod bench_model;
pub mod config;
pub mod error;
pub mod extract;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod playground;
pub mod prepare;
pub mod registry;
pub mod response_store;
pub mod routes;
pub mod stream;
pub mod tls;

use std::sync::Arc;

pub use app::{app, serve, AppState, ServeOptions};
pub use config::Config;

/// Loads the models named at start (each with its engine thread) and builds the application state.
pub fn start(config: &Config) -> anyhow::Result<AppState> {
    let models = registry::Registry::start(config)?;
    let keys = auth::ApiKeys::load(&config.server.api_keys, config.server.api_key_file.as_deref())?;
    if keys.enabled() {
        tracing::info!("API keys required on every route but /health, /ready and the playground's page");
    }
    Ok(AppState {
        models,
        keys: Arc::new(keys),
        metrics: Arc::default(),
        lifecycle: Arc::default(),
        config: Arc::new(config.server.clone()),
        preparation: prepare::PreparePool::per_core(config.engine.limits.max_waiting),
        responses: Arc::new(response_store::ResponseStore::new(config.server.responses_store)),
    })
}
