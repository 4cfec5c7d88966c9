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
pub mod response_store;
pub mod routes;
pub mod stream;
pub mod tls;

use std::sync::Arc;

pub use app::{app, serve, AppState, ServeOptions};
pub use config::Config;

/// Loads the configured model and starts the engine thread.
pub fn start(config: &Config) -> anyhow::Result<AppState> {
    let path = &config.model.path;
    if !path.exists() {
        anyhow::bail!(
            "model file {} not found; fetch the default model with scripts/fetch-models.sh or pass --model PATH",
            path.display()
        );
    }
    let started = std::time::Instant::now();
    let (served, model) = model::load(
        path,
        config.model.served_model_name.clone(),
        config.model.weights,
        config.model.chat_template.as_deref(),
        config.model.reasoning,
    )?;
    tracing::info!(
        model = %served.id,
        path = %path.display(),
        context = served.context_length,
        seconds = started.elapsed().as_secs_f32(),
        "model loaded"
    );
    let keys = auth::ApiKeys::load(&config.server.api_keys, config.server.api_key_file.as_deref())?;
    if keys.enabled() {
        tracing::info!("API keys required on every route but /health, /ready and the playground's page");
    }
    let kv_cache_bytes = match config.engine.kv_cache_memory {
        Some(bytes) => bytes as usize,
        None => {
            default_kv_cache_bytes(model.kv_bytes_per_token(), served.context_length, config.engine.limits.max_running)
        }
    };
    let engine = hearth_engine::spawn(model, hearth_engine::EngineConfig { kv_cache_bytes, ..config.engine.limits })?;
    // A sequence can never outgrow the pool, so the pool bounds the context too.
    let mut served = served;
    served.context_length = served.context_length.min(engine.kv_capacity_tokens());
    let embedding = match &config.model.embedding {
        Some(embedding) if embedding.optional && !embedding.path.exists() => {
            tracing::info!(path = %embedding.path.display(), "no embedding model (fetch it with scripts/fetch-models.sh)");
            None
        }
        Some(embedding) => {
            let started = std::time::Instant::now();
            let served = model::load_embedder(&embedding.path, embedding.served_model_name.clone())
                .map_err(|e| anyhow::anyhow!("loading embedding model {}: {e}", embedding.path.display()))?;
            tracing::info!(
                model = %served.id,
                path = %embedding.path.display(),
                dimensions = served.worker.info().dimensions,
                seconds = started.elapsed().as_secs_f32(),
                "embedding model loaded"
            );
            Some(Arc::new(served))
        }
        None => None,
    };
    if embedding.as_ref().is_some_and(|e| e.id == served.id) {
        anyhow::bail!(
            "the chat and embedding models are both named `{}`; rename one with --served-model-name",
            served.id
        );
    }
    // Loading and repacking leave freed buffers in the allocator (135 MiB for a 1B Q6_K model).
    hearth_models::release_free_memory();
    Ok(AppState {
        engine,
        model: Arc::new(served),
        embedding,
        keys: Arc::new(keys),
        metrics: Arc::default(),
        lifecycle: Arc::default(),
        config: Arc::new(config.server.clone()),
        preparation: prepare::PreparePool::per_core(config.engine.limits.max_waiting),
        responses: Arc::new(response_store::ResponseStore::new(config.server.responses_store)),
    })
}

/// Room for `max_running` full contexts, but at most a fifth of the memory available now.
fn default_kv_cache_bytes(bytes_per_token: usize, context: usize, max_running: usize) -> usize {
    let wanted = bytes_per_token.saturating_mul(context).saturating_mul(max_running);
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
            line.split_whitespace().nth(1)?.parse::<usize>().ok()
        })
        .map_or(4 << 30, |kib| kib * 1024);
    wanted.min(available / 5)
}
