//! Reading a model's needs from its header (cheap, before any weight) and loading it (blocking).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use hearth_engine::{EngineConfig, StepGate};
use hearth_models::GgufFile;

use super::catalog::{Entry, Kind};
use crate::model::{self, ChatModel, ServedEmbedder};

/// What a model will take once loaded, and what its listing can say before then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Bytes of weights (the file's size; a load that expands formats reports more).
    pub weights: u64,
    /// Bytes of the KV pool it gets.
    pub kv_cache: u64,
    /// The context length the file declares (a family or the pool may serve less).
    pub context_length: usize,
    /// Whether it has a chat template (chat models), so serves chat as well as completions.
    pub chat: bool,
}

impl Probe {
    /// Weights and KV pool together.
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache
    }
}

/// How each loaded model's KV pool is sized.
#[derive(Debug, Clone, Copy)]
pub struct KvSizing {
    /// `--kv-cache-memory`: every chat model's pool, exactly.
    pub fixed: Option<u64>,
    /// Otherwise room for this many full contexts…
    pub sequences: usize,
    /// …but at most this many bytes.
    pub cap: u64,
}

/// The memory a loaded model holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Weights as held in memory.
    pub weights: u64,
    /// The KV pool.
    pub kv_cache: u64,
}

impl Memory {
    /// Both together.
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache
    }
}

/// A loaded model, as requests hold it: while a request holds a clone, the model is in use.
#[derive(Debug, Clone)]
pub enum Loaded {
    /// A chat model and its engine.
    Chat(Arc<ChatModel>),
    /// An embedding model and its worker.
    Embedding(Arc<ServedEmbedder>),
}

impl Loaded {
    /// Whether a request holds it (the registry's own reference aside).
    pub fn in_use(&self) -> bool {
        match self {
            Self::Chat(m) => Arc::strong_count(m) > 1,
            Self::Embedding(m) => Arc::strong_count(m) > 1,
        }
    }
}

/// Reads what loading `entry` will take, without loading a weight; the error is why it cannot be served.
pub fn probe(entry: &Entry, kv: KvSizing) -> Result<Probe, String> {
    probe_file(entry, kv).map_err(|reason| without_directory(entry, reason))
}

/// A reason clients may read: file names relative to the models directory, never the server's paths.
fn without_directory(entry: &Entry, reason: String) -> String {
    match entry.path.parent().map(|dir| dir.display().to_string()).filter(|dir| !dir.is_empty()) {
        Some(dir) => reason.replace(&format!("{dir}/"), ""),
        None => reason,
    }
}

fn probe_file(entry: &Entry, kv: KvSizing) -> Result<Probe, String> {
    let weights =
        std::fs::metadata(entry.weights_file()).map_err(|e| format!("{}: {e}", entry.weights_file().display()))?.len();
    match entry.kind {
        Kind::Chat => {
            let file = GgufFile::open(&entry.path).map_err(|e| e.to_string())?;
            let arch = file.architecture().map_err(|e| e.to_string())?;
            if !hearth_models::ARCHITECTURES.contains(&arch) {
                return Err(format!(
                    "unsupported model: architecture `{arch}` (supported: {})",
                    hearth_models::ARCHITECTURES.join(", ")
                ));
            }
            let needs = hearth_models::kv_needs(&file).map_err(|e| e.to_string())?;
            let wanted = (needs.bytes_per_token as u64)
                .saturating_mul(needs.context_length as u64)
                .saturating_mul(kv.sequences as u64);
            let kv_cache = kv.fixed.unwrap_or(wanted.min(kv.cap));
            let chat = entry.chat_template.is_some() || file.string("tokenizer.chat_template").is_ok();
            Ok(Probe { weights, kv_cache, context_length: needs.context_length, chat })
        }
        Kind::Embedding => {
            let config = std::fs::read(entry.path.join("config.json"))
                .map_err(|e| format!("{}: {e}", entry.path.join("config.json").display()))?;
            let config: serde_json::Value =
                serde_json::from_slice(&config).map_err(|e| format!("config.json is not JSON: {e}"))?;
            let context_length = config["max_position_embeddings"].as_u64().unwrap_or(0) as usize;
            Ok(Probe { weights, kv_cache: 0, context_length, chat: false })
        }
    }
}

/// Loads `entry` and starts its worker; blocking (seconds for a large model). A panic while loading is
/// an error like any other.
pub fn load(entry: &Entry, probe: Probe, limits: EngineConfig, gate: StepGate) -> Result<(Loaded, Memory), String> {
    let loading = std::panic::catch_unwind(AssertUnwindSafe(|| load_unguarded(entry, probe, limits, gate)));
    let loaded = loading.unwrap_or_else(|panic| {
        let detail =
            panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
        Err(format!("loading panicked: {}", detail.unwrap_or_default()))
    });
    // Loading and repacking leave freed buffers in the allocator (135 MiB for a 1B Q6_K model).
    hearth_models::release_free_memory();
    loaded.map_err(|reason| without_directory(entry, reason))
}

fn load_unguarded(
    entry: &Entry,
    probe: Probe,
    limits: EngineConfig,
    gate: StepGate,
) -> Result<(Loaded, Memory), String> {
    match entry.kind {
        Kind::Chat => {
            let (mut served, lm) = model::load(
                &entry.path,
                Some(entry.id.clone()),
                entry.weights,
                entry.chat_template.as_deref(),
                entry.reasoning,
            )
            .map_err(|e| e.to_string())?;
            let weights = probe.weights.max(lm.weight_bytes() as u64);
            let bytes_per_token = lm.kv_bytes_per_token() as u64;
            let config = EngineConfig { kv_cache_bytes: probe.kv_cache as usize, ..limits };
            let engine = hearth_engine::spawn_sharing(lm, config, gate).map_err(|e| e.to_string())?;
            // A sequence can never outgrow the pool, so the pool bounds the context too.
            served.context_length = served.context_length.min(engine.kv_capacity_tokens());
            let kv_cache = engine.kv_capacity_tokens() as u64 * bytes_per_token;
            Ok((Loaded::Chat(Arc::new(ChatModel { served, engine })), Memory { weights, kv_cache }))
        }
        Kind::Embedding => {
            let served = model::load_embedder(&entry.path, Some(entry.id.clone())).map_err(|e| e.to_string())?;
            Ok((Loaded::Embedding(Arc::new(served)), Memory { weights: probe.weights, kv_cache: 0 }))
        }
    }
}
