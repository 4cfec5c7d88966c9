//! The models a server can serve and the ones it holds in memory: loading on first request (one load
//! shared by everyone who asks), unloading the least recently used idle model when memory or the model
//! count runs out, and unloading models left idle.
//!
//! A model is *in use* while a request holds its [`Loaded`] handle (an `Arc`): from the look-up, through
//! preparation, to the end of its response stream. Only the registry hands handles out, under its lock,
//! so a model whose only reference is the registry's can be unloaded without racing a new request.
//!
//! - [`catalog`] — what is servable: the models named at start and each models directory's.
//! - [`load`] — a file's needs read from its header, and the blocking load.
//! - `listing` — [`Listing`], what `/v1/models` and `/metrics` show.
//! - `acquire` — handing out a loaded model: waiting for a load, starting one, making room for it.
//! - `idle` — the `model-reaper` thread that unloads idle models.

mod acquire;
pub mod catalog;
mod idle;
mod listing;
pub mod load;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearth_engine::{EngineConfig, EngineWatch, StepGate};
use tokio::sync::watch;

use crate::config::Config;
use crate::error::ApiError;
use crate::model::{ChatModel, ServedEmbedder};
use catalog::{Catalog, Entry, FileStamp, Kind};
pub use listing::Listing;
use load::KvSizing;
pub use load::{Loaded, Memory, Probe};

/// How long a load waits for unloaded engines to stop and free their memory.
const RELEASE_WAIT: Duration = Duration::from_secs(30);

/// The servable models and the loaded ones.
#[derive(Debug)]
pub struct Registry {
    catalog: Catalog,
    pinned: HashSet<String>,
    max_loaded: Option<usize>,
    budget: u64,
    idle_unload: Option<Duration>,
    kv: KvSizing,
    limits: EngineConfig,
    gate: StepGate,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The last scan of the catalog.
    entries: Vec<Entry>,
    /// Models loading, loaded, or failed; any other entry is available.
    slots: HashMap<String, Slot>,
    /// Probes by file, while the file is unchanged.
    probes: HashMap<PathBuf, (FileStamp, Result<Probe, String>)>,
    /// Engines unloaded whose threads may still be freeing their memory.
    releasing: Vec<EngineWatch>,
    /// Loads and unloads (by reason) per model since start.
    counters: BTreeMap<String, Counters>,
}

#[derive(Debug)]
struct Slot {
    state: State,
    last_used: Instant,
}

#[derive(Debug)]
enum State {
    Loading { done: watch::Receiver<bool>, waiting: Arc<AtomicUsize>, reserved: u64 },
    Loaded { model: Loaded, memory: Memory, created: u64 },
    Failed { reason: String, stamp: Option<FileStamp> },
}

/// Loads and unloads of one model since start.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Loads that succeeded.
    pub loads: u64,
    /// Loads that failed.
    pub failures: u64,
    /// Unloads by reason: `memory`, `count`, `idle`, `admin`, `stopped`.
    pub unloads: BTreeMap<&'static str, u64>,
}

impl Registry {
    /// The registry `config` describes, with the models it names loaded now (an error stops start-up).
    pub fn start(config: &Config) -> anyhow::Result<Arc<Self>> {
        let budget = config.models.memory.unwrap_or_else(|| available_memory() / 4 * 3);
        let registry = Arc::new(Self {
            catalog: Catalog::new(config),
            pinned: config.models.pinned.iter().cloned().collect(),
            max_loaded: config.models.max_loaded,
            budget,
            idle_unload: config.models.idle_unload,
            kv: KvSizing {
                fixed: config.engine.kv_cache_memory,
                sequences: config.engine.limits.max_running,
                cap: budget / 4,
            },
            limits: config.engine.limits,
            gate: StepGate::default(),
            inner: Mutex::default(),
        });
        let fixed = registry.catalog.fixed().to_vec();
        let mut ids = HashSet::new();
        for entry in &fixed {
            if !ids.insert(entry.id.clone()) {
                anyhow::bail!("two models are named `{}`; rename one with --served-model-name", entry.id);
            }
            if !entry.path.exists() {
                anyhow::bail!(
                    "model {} not found; fetch the default model with scripts/fetch-models.sh or pass --model PATH",
                    entry.path.display()
                );
            }
            registry.load_now(entry)?;
        }
        {
            let mut inner = registry.lock();
            inner.rescan(&registry.catalog);
            let entries = inner.entries.len();
            tracing::info!(servable = entries, budget_mib = budget >> 20, max_loaded = ?registry.max_loaded, "models");
        }
        if let Some(idle) = registry.idle_unload {
            idle::spawn_reaper(Arc::downgrade(&registry), idle);
        }
        Ok(registry)
    }

    /// Loads a model named at start, on this thread.
    fn load_now(&self, entry: &Entry) -> anyhow::Result<()> {
        let started = Instant::now();
        let probe = load::probe(entry, self.kv).map_err(|e| anyhow::anyhow!("{}: {e}", entry.path.display()))?;
        let (model, memory) = load::load(entry, probe, self.limits, self.gate.clone())
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", entry.path.display()))?;
        self.log_loaded(entry, &memory, started);
        let mut inner = self.lock();
        inner.counters.entry(entry.id.clone()).or_default().loads += 1;
        let state = State::Loaded { model, memory, created: unix_now() };
        inner.slots.insert(entry.id.clone(), Slot { state, last_used: Instant::now() });
        Ok(())
    }

    fn log_loaded(&self, entry: &Entry, memory: &Memory, started: Instant) {
        tracing::info!(
            model = %entry.id,
            path = %entry.path.display(),
            weights_mib = memory.weights >> 20,
            kv_cache_mib = memory.kv_cache >> 20,
            seconds = started.elapsed().as_secs_f32(),
            "model loaded"
        );
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The chat model `requested` names (the default one when `None`), loading it if needed.
    pub async fn chat(self: &Arc<Self>, requested: Option<&str>) -> Result<Arc<ChatModel>, ApiError> {
        let id = match requested {
            Some(id) => id.to_string(),
            None => self.default_chat()?,
        };
        match self.acquire(&id, Kind::Chat).await? {
            Loaded::Chat(model) => Ok(model),
            Loaded::Embedding(_) => unreachable!("acquire checks the kind"),
        }
    }

    /// The embedding model `requested` names, loading it if needed.
    pub async fn embedder(self: &Arc<Self>, requested: &str) -> Result<Arc<ServedEmbedder>, ApiError> {
        match self.acquire(requested, Kind::Embedding).await? {
            Loaded::Embedding(model) => Ok(model),
            Loaded::Chat(_) => unreachable!("acquire checks the kind"),
        }
    }

    /// The id a request without `model` means: the chat model named at start, else the only one there is.
    fn default_chat(&self) -> Result<String, ApiError> {
        if let Some(entry) = self.catalog.fixed().iter().find(|e| e.kind == Kind::Chat) {
            return Ok(entry.id.clone());
        }
        let mut inner = self.lock();
        inner.rescan(&self.catalog);
        let chats: Vec<&Entry> = inner.entries.iter().filter(|e| e.kind == Kind::Chat).collect();
        match chats.as_slice() {
            [only] => Ok(only.id.clone()),
            _ => {
                Err(ApiError::invalid("model", format!("`model` is required: {} chat models are served", chats.len())))
            }
        }
    }

    /// Loads model `id` (`POST /models/load`), waiting until it is in memory.
    pub async fn load(self: &Arc<Self>, id: &str) -> Result<(), ApiError> {
        let kind = {
            let mut inner = self.lock();
            inner.find(&self.catalog, id)?.kind
        };
        self.acquire(id, kind).await.map(drop)
    }

    /// Unloads model `id` now (`POST /models/unload`): refused while it serves requests, loads or is pinned.
    pub fn unload(&self, id: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        let id = inner.find(&self.catalog, id)?.id;
        let loaded = match inner.slots.get(&id).map(|s| &s.state) {
            Some(State::Loaded { model, .. }) => model.clone(),
            Some(State::Loading { .. }) => {
                return Err(ApiError::ModelBusy(format!("`{id}` is loading; unload it once it has loaded")))
            }
            _ => return Err(ApiError::invalid("model", format!("`{id}` is not loaded"))),
        };
        if self.pinned.contains(&id) {
            return Err(ApiError::invalid("model", format!("`{id}` is pinned (--pin-model) and stays loaded")));
        }
        drop(loaded);
        if inner.in_use(&id) {
            return Err(ApiError::ModelBusy(format!("`{id}` is serving requests; unload it once they finish")));
        }
        inner.unload(&id, "admin");
        Ok(())
    }

    /// Whether every loaded chat model's engine is still running.
    pub fn engines_alive(&self) -> bool {
        self.lock().slots.values().all(|slot| match &slot.state {
            State::Loaded { model: Loaded::Chat(m), .. } => m.engine.is_alive(),
            _ => true,
        })
    }

    /// The memory budget of loaded models, in bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }
}

impl State {
    /// Memory it holds or has reserved.
    fn held(&self) -> u64 {
        match self {
            State::Loading { reserved, .. } => *reserved,
            State::Loaded { memory, .. } => memory.total(),
            State::Failed { .. } => 0,
        }
    }
}

impl Inner {
    /// The entry `requested` names (an id or an alias), reading the directories again when it is unknown.
    fn find(&mut self, catalog: &Catalog, requested: &str) -> Result<Entry, ApiError> {
        let id = catalog.resolve(requested);
        if let Some(entry) = self.entries.iter().find(|e| e.id == id) {
            return Ok(entry.clone());
        }
        self.rescan(catalog);
        self.entries.iter().find(|e| e.id == id).cloned().ok_or_else(|| ApiError::ModelNotFound(requested.to_string()))
    }

    /// Reads the directories again. A model in memory whose file has gone stays (it serves until it is
    /// unloaded); what was learnt about other vanished files is forgotten.
    fn rescan(&mut self, catalog: &Catalog) {
        let previous = std::mem::replace(&mut self.entries, catalog.scan());
        for entry in previous {
            let held = self.slots.get(&entry.id).is_some_and(|s| !matches!(s.state, State::Failed { .. }));
            if held && !self.entries.iter().any(|e| e.id == entry.id) {
                self.entries.push(entry);
            }
        }
        let entries = &self.entries;
        self.slots.retain(|id, _| entries.iter().any(|e| &e.id == id));
        self.probes.retain(|path, _| entries.iter().any(|e| &e.path == path));
    }

    /// Whether `entry`'s file was read since it last changed (or it is gone, which needs no reading).
    fn probed(&self, entry: &Entry) -> bool {
        match entry.stamp() {
            Some(stamp) => self.probes.get(&entry.path).is_some_and(|(read, _)| *read == stamp),
            None => true,
        }
    }

    fn in_use(&self, id: &str) -> bool {
        matches!(self.slots.get(id).map(|s| &s.state), Some(State::Loaded { model, .. }) if model.in_use())
    }

    /// Drops the registry's reference: the engine stops and frees its memory once its requests end.
    fn unload(&mut self, id: &str, reason: &'static str) {
        let Some(slot) = self.slots.remove(id) else { return };
        if let State::Loaded { model, memory, .. } = slot.state {
            let watch = match &model {
                Loaded::Chat(m) => Some(m.engine.watch()),
                Loaded::Embedding(_) => None,
            };
            self.releasing.extend(watch.clone());
            drop(model);
            *self.counters.entry(id.to_string()).or_default().unloads.entry(reason).or_default() += 1;
            tracing::info!(model = %id, reason, freed_mib = memory.total() >> 20, "model unloaded");
            // Once the engine has let go of the model, the allocator's freed pages go back to the system
            // even if no other load follows.
            let released =
                std::thread::Builder::new().name("model-release".into()).spawn(move || wait_released(watch.as_slice()));
            if let Err(error) = released {
                tracing::warn!(%error, "cannot start a thread to return an unloaded model's memory");
            }
        }
    }
}

/// The probe of `entry`, read again only when its file changed.
fn probe_cached(
    probes: &mut HashMap<PathBuf, (FileStamp, Result<Probe, String>)>,
    entry: &Entry,
    kv: KvSizing,
) -> Result<Probe, String> {
    let Some(stamp) = entry.stamp() else {
        return Err(format!("{} is gone", entry.weights_file().display()));
    };
    match probes.get(&entry.path) {
        Some((cached, probe)) if *cached == stamp => probe.clone(),
        _ => {
            let probe = load::probe(entry, kv);
            probes.insert(entry.path.clone(), (stamp, probe.clone()));
            probe
        }
    }
}

/// Waits (bounded) until unloaded engines have freed their memory, then returns it to the system.
fn wait_released(engines: &[EngineWatch]) {
    let deadline = Instant::now() + RELEASE_WAIT;
    while engines.iter().any(|e| !e.released()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    hearth_models::release_free_memory();
}

/// Bytes of memory available now (4 GiB where the system does not say).
fn available_memory() -> u64 {
    hearth_models::available_memory().unwrap_or(4 << 30)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
