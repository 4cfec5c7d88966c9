//! Handing out a loaded model: waiting for a load in progress, starting one (after making room under
//! the model count and the memory budget), and recording how it ended.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::catalog::{Entry, FileStamp, Kind};
use super::{load, probe_cached, unix_now, wait_released, Inner, Loaded, Memory, Registry, Slot, State};
use crate::error::ApiError;

/// How long a request waits for another model's requests to finish before a load that needs their
/// memory gives up with a 503: long enough for a response that is just ending.
const BUSY_WAIT: Duration = Duration::from_secs(3);

impl Registry {
    /// The loaded model `id` names, loading it first when it is not; `kind` must match.
    pub(super) async fn acquire(self: &Arc<Self>, requested: &str, kind: Kind) -> Result<Loaded, ApiError> {
        let mut waiting: Option<Waiting> = None;
        let busy_until = Instant::now() + BUSY_WAIT;
        loop {
            let step = self.acquire_step(requested, kind, &mut waiting);
            let mut done = match step {
                Ok(Step::Ready(model)) => return Ok(model),
                Ok(Step::Wait(done)) => done,
                Ok(Step::Probe(entry)) => {
                    self.probe_unlocked(entry).await;
                    continue;
                }
                Err(ApiError::ModelBusy(_)) if Instant::now() < busy_until => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let _ = done.wait_for(|finished| *finished).await;
        }
    }

    fn acquire_step(
        self: &Arc<Self>,
        requested: &str,
        kind: Kind,
        waiting: &mut Option<Waiting>,
    ) -> Result<Step, ApiError> {
        let mut inner = self.lock();
        let entry = inner.find(&self.catalog, requested)?;
        if entry.kind != kind {
            return Err(wrong_kind(&entry));
        }
        let id = entry.id.clone();
        let stamp = entry.stamp();
        let slot = inner.slots.get_mut(&id);
        match slot.map(|s| (&mut s.last_used, &s.state)) {
            Some((last_used, State::Loaded { model, .. })) => {
                let dead = matches!(model, Loaded::Chat(m) if !m.engine.is_alive());
                if !dead {
                    *last_used = Instant::now();
                    return Ok(Step::Ready(model.clone()));
                }
                tracing::error!(model = %id, "the model's engine has stopped; loading it again");
                inner.unload(&id, "stopped");
            }
            Some((_, State::Failed { reason, stamp: failed })) if *failed == stamp => {
                return Err(ApiError::ModelFailed(format!("model `{id}` cannot be loaded: {reason}")));
            }
            Some((_, State::Loading { done, waiting: count, .. })) => {
                if waiting.is_none() {
                    let cap = self.limits.max_running + self.limits.max_waiting;
                    if count.load(Ordering::Relaxed) >= cap {
                        return Err(ApiError::Overloaded(format!("{cap} requests are waiting for `{id}` to load")));
                    }
                    *waiting = Some(Waiting::new(count.clone()));
                }
                return Ok(Step::Wait(done.clone()));
            }
            _ => {}
        }
        if !inner.probed(&entry) {
            return Ok(Step::Probe(entry));
        }
        self.begin_load(&mut inner, entry, stamp).map(Step::Wait)
    }

    /// Reads `entry`'s header on a blocking thread, so the registry's lock is never held over file reads.
    async fn probe_unlocked(&self, entry: Entry) {
        let kv = self.kv;
        let read = tokio::task::spawn_blocking(move || {
            let (stamp, probe) = (entry.stamp(), load::probe(&entry, kv));
            (entry, stamp, probe)
        })
        .await;
        if let Ok((entry, Some(stamp), probe)) = read {
            self.lock().probes.insert(entry.path, (stamp, probe));
        }
    }

    /// Reserves memory for `entry` (unloading idle models as needed) and starts loading it.
    fn begin_load(
        self: &Arc<Self>,
        inner: &mut Inner,
        entry: Entry,
        stamp: Option<FileStamp>,
    ) -> Result<watch::Receiver<bool>, ApiError> {
        let id = entry.id.clone();
        let failed = |inner: &mut Inner, reason: String| {
            tracing::warn!(model = %id, %reason, "model cannot be loaded");
            inner.counters.entry(id.clone()).or_default().failures += 1;
            inner.slots.insert(
                id.clone(),
                Slot { state: State::Failed { reason: reason.clone(), stamp }, last_used: Instant::now() },
            );
            ApiError::ModelFailed(format!("model `{id}` cannot be loaded: {reason}"))
        };
        let probe = match probe_cached(&mut inner.probes, &entry, self.kv) {
            Ok(probe) => probe,
            Err(reason) => return Err(failed(inner, reason)),
        };
        if probe.total() > self.budget {
            let reason = format!(
                "it needs {} MiB (weights {} MiB, KV cache {} MiB), more than the whole models memory budget of {} MiB (--models-memory)",
                probe.total() >> 20,
                probe.weights >> 20,
                probe.kv_cache >> 20,
                self.budget >> 20
            );
            return Err(failed(inner, reason));
        }
        self.make_room(inner, &id, probe.total())?;
        let (finished, done) = watch::channel(false);
        let state = State::Loading { done: done.clone(), waiting: Arc::default(), reserved: probe.total() };
        inner.slots.insert(id.clone(), Slot { state, last_used: Instant::now() });
        inner.releasing.retain(|engine| !engine.released());
        let releasing = inner.releasing.clone();
        let (registry, limits, gate) = (self.clone(), self.limits, self.gate.clone());
        tracing::info!(model = %id, path = %entry.path.display(), needs_mib = probe.total() >> 20, "loading model");
        tokio::spawn(async move {
            let started = Instant::now();
            let loading = entry.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                wait_released(&releasing);
                load::load(&loading, probe, limits, gate)
            })
            .await
            .unwrap_or_else(|e| Err(format!("the loading thread failed: {e}")));
            registry.finish_load(&entry, outcome, stamp, started);
            let _ = finished.send(true);
        });
        Ok(done)
    }

    /// Records how a load ended.
    fn finish_load(
        &self,
        entry: &Entry,
        outcome: Result<(Loaded, Memory), String>,
        stamp: Option<FileStamp>,
        started: Instant,
    ) {
        let mut inner = self.lock();
        let counters = inner.counters.entry(entry.id.clone()).or_default();
        let state = match outcome {
            Ok((model, memory)) => {
                counters.loads += 1;
                self.log_loaded(entry, &memory, started);
                State::Loaded { model, memory, created: unix_now() }
            }
            Err(reason) => {
                counters.failures += 1;
                tracing::warn!(model = %entry.id, %reason, "model failed to load");
                State::Failed { reason, stamp }
            }
        };
        inner.slots.insert(entry.id.clone(), Slot { state, last_used: Instant::now() });
    }

    /// Unloads least recently used idle models until one more model of `need` bytes fits the count and
    /// the budget; a 503 when the models holding the memory are serving requests or pinned.
    fn make_room(&self, inner: &mut Inner, id: &str, need: u64) -> Result<(), ApiError> {
        loop {
            let held: u64 = inner.slots.values().map(|s| s.state.held()).sum();
            let count = inner.slots.values().filter(|s| !matches!(s.state, State::Failed { .. })).count();
            let too_many = self.max_loaded.is_some_and(|max| count + 1 > max);
            if !too_many && held + need <= self.budget {
                return Ok(());
            }
            let victim = inner
                .slots
                .iter()
                .filter(|(victim, slot)| {
                    matches!(&slot.state, State::Loaded { model, .. } if !model.in_use())
                        && !self.pinned.contains(*victim)
                })
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(victim, _)| victim.clone());
            match victim {
                Some(victim) => inner.unload(&victim, if too_many { "count" } else { "memory" }),
                None => {
                    let why = match too_many {
                        true => format!("{count} models are loaded (--max-loaded-models)"),
                        false => format!(
                            "it needs {} MiB and {} of the {} MiB budget are held",
                            need >> 20,
                            held >> 20,
                            self.budget >> 20
                        ),
                    };
                    return Err(ApiError::ModelBusy(format!(
                        "model `{id}` cannot be loaded now: {why} by models that are serving requests, loading or pinned; retry shortly"
                    )));
                }
            }
        }
    }
}

/// What one look-up found.
enum Step {
    Ready(Loaded),
    Wait(watch::Receiver<bool>),
    /// The file's header has to be read first.
    Probe(Entry),
}

/// A request counted among those waiting for a load, until it stops waiting.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A 400 for a request that names a model of the other kind.
fn wrong_kind(entry: &Entry) -> ApiError {
    let id = &entry.id;
    match entry.kind {
        Kind::Embedding => ApiError::invalid(
            "model",
            format!("`{id}` is an embedding model and cannot generate text; use a chat model or /v1/embeddings"),
        ),
        Kind::Chat => ApiError::invalid(
            "model",
            format!("`{id}` is a chat model and cannot create embeddings; use an embedding model"),
        ),
    }
}
