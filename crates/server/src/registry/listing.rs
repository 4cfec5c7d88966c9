//! What `/v1/models` and `/metrics` show of each servable model.

use hearth_engine::EngineStats;
use hearth_protocol::ModelState;

use super::catalog::Entry;
use super::{load, probe_cached, Counters, Inner, Loaded, Registry, State, UNIX_EPOCH};

/// One servable model as `/v1/models` and `/metrics` show it.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Where it comes from.
    pub entry: Entry,
    /// Other ids for it.
    pub aliases: Vec<String>,
    /// Loaded, loading, available or failed.
    pub state: ModelState,
    /// Why it failed.
    pub reason: Option<String>,
    /// Memory held (loaded) or needed (otherwise, when the header could be read).
    pub memory: Option<u64>,
    /// Never unloaded once loaded.
    pub pinned: bool,
    /// Unix seconds when it was loaded, or its file's modification time.
    pub created: u64,
    /// Context length in tokens, as served (loaded) or as the file declares.
    pub context_length: usize,
    /// Whether it serves chat (a chat model with a template).
    pub chat: bool,
    /// Its engine's counters, while loaded (chat models).
    pub engine: Option<EngineStats>,
    /// Loads and unloads since start.
    pub counters: Counters,
}

impl Registry {
    /// Every servable model, loaded or not, after reading the models directories again.
    /// Blocking: reads the headers of files not read before (outside the registry's lock).
    pub fn list(&self) -> Vec<Listing> {
        let unread: Vec<Entry> = {
            let mut inner = self.lock();
            inner.rescan(&self.catalog);
            inner.entries.iter().filter(|e| !inner.probed(e)).cloned().collect()
        };
        let read: Vec<_> = unread.iter().map(|e| (e, e.stamp(), load::probe(e, self.kv))).collect();
        let mut inner = self.lock();
        for (entry, stamp, probe) in read {
            if let Some(stamp) = stamp {
                inner.probes.insert(entry.path.clone(), (stamp, probe));
            }
        }
        let Inner { entries, slots, probes, counters, .. } = &mut *inner;
        entries
            .iter()
            .map(|entry| {
                let counters = counters.get(&entry.id).cloned().unwrap_or_default();
                let aliases = self.catalog.aliases_of(&entry.id);
                let pinned = self.pinned.contains(&entry.id);
                let base = Listing {
                    entry: entry.clone(),
                    aliases,
                    state: ModelState::Available,
                    reason: None,
                    memory: None,
                    pinned,
                    created: file_time(entry),
                    context_length: 0,
                    chat: false,
                    engine: None,
                    counters,
                };
                match slots.get(&entry.id).map(|s| &s.state) {
                    Some(State::Loaded { model, memory, created }) => {
                        let (context_length, chat, engine) = match model {
                            Loaded::Chat(m) => (m.context_length, m.template.is_some(), Some(m.engine.stats())),
                            Loaded::Embedding(m) => (m.worker.info().max_tokens, false, None),
                        };
                        Listing {
                            state: ModelState::Loaded,
                            memory: Some(memory.total()),
                            created: *created,
                            context_length,
                            chat,
                            engine,
                            ..base
                        }
                    }
                    Some(State::Failed { reason, .. }) => {
                        Listing { state: ModelState::Failed, reason: Some(reason.clone()), ..base }
                    }
                    state => {
                        let loading = matches!(state, Some(State::Loading { .. }));
                        let state = if loading { ModelState::Loading } else { ModelState::Available };
                        match probe_cached(probes, entry, self.kv) {
                            Ok(p) => Listing {
                                state,
                                memory: Some(p.total()),
                                context_length: p.context_length,
                                chat: p.chat,
                                ..base
                            },
                            Err(reason) => Listing { state: ModelState::Failed, reason: Some(reason), ..base },
                        }
                    }
                }
            })
            .collect()
    }
}

/// The weights file's modification time in Unix seconds, 0 when unknown.
fn file_time(entry: &Entry) -> u64 {
    entry.stamp().and_then(|s| s.modified).and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs())
}
