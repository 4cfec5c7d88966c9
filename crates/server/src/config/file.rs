//! The TOML config file's shape: every key optional, unknown keys rejected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{LogFormat, Reasoning, Weights};

/// The config file; every key optional, unknown keys rejected (a typo must not pass silently).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub(super) server: Option<FileServer>,
    pub(super) model: Option<FileModel>,
    pub(super) embedding_model: Option<FileEmbeddingModel>,
    pub(super) models: Option<FileModels>,
    pub(super) engine: Option<FileEngine>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) api_keys: Option<Vec<String>>,
    pub(super) api_key_file: Option<PathBuf>,
    pub(super) cors_allow_origins: Option<Vec<String>>,
    pub(super) header_timeout_seconds: Option<u64>,
    pub(super) request_timeout_seconds: Option<f64>,
    pub(super) max_tokens_limit: Option<usize>,
    pub(super) shutdown_grace_seconds: Option<u64>,
    pub(super) responses_store_entries: Option<usize>,
    pub(super) responses_store_memory: Option<String>,
    pub(super) responses_store_ttl_seconds: Option<u64>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) log_format: Option<LogFormat>,
    pub(super) log_content: Option<bool>,
    pub(super) playground: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileModel {
    pub(super) path: Option<PathBuf>,
    pub(super) served_model_name: Option<String>,
    pub(super) weights: Option<Weights>,
    pub(super) chat_template: Option<PathBuf>,
    pub(super) reasoning: Option<Reasoning>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileEmbeddingModel {
    pub(super) path: Option<PathBuf>,
    pub(super) served_model_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileModels {
    pub(super) dirs: Option<Vec<PathBuf>>,
    pub(super) max_loaded: Option<usize>,
    pub(super) memory: Option<String>,
    pub(super) idle_unload_seconds: Option<u64>,
    pub(super) pinned: Option<Vec<String>>,
    pub(super) aliases: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileEngine {
    pub(super) threads: Option<usize>,
    pub(super) max_num_seqs: Option<usize>,
    pub(super) max_waiting: Option<usize>,
    pub(super) max_batch_tokens: Option<usize>,
    pub(super) max_waiting_prompt_tokens: Option<usize>,
    pub(super) kv_cache_memory: Option<String>,
    pub(super) prefix_caching: Option<bool>,
}

/// Parses a config file.
pub fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading config {}: {e}", path.display()))?;
    parse_file(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}

/// Parses config file text.
pub fn parse_file(text: &str) -> Result<FileConfig, toml::de::Error> {
    toml::from_str(text)
}
