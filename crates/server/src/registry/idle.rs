//! Unloading models nobody uses: a thread that looks every so often.

use std::sync::Weak;
use std::time::{Duration, Instant};

use super::{Registry, State};

impl Registry {
    /// Unloads every model idle for `idle` (not pinned, no request in flight).
    fn unload_idle(&self, idle: Duration) {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut idle_ids = Vec::new();
        for (id, slot) in &mut inner.slots {
            if let State::Loaded { model, .. } = &slot.state {
                if model.in_use() {
                    slot.last_used = now;
                } else if now.duration_since(slot.last_used) >= idle && !self.pinned.contains(id) {
                    idle_ids.push(id.clone());
                }
            }
        }
        for id in idle_ids {
            inner.unload(&id, "idle");
        }
    }
}

/// Unloads idle models every so often, for as long as the registry lives.
pub(super) fn spawn_reaper(registry: Weak<Registry>, idle: Duration) {
    let period = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let spawned = std::thread::Builder::new().name("model-reaper".into()).spawn(move || loop {
        std::thread::sleep(period);
        let Some(registry) = registry.upgrade() else { return };
        registry.unload_idle(idle);
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the idle-model thread; idle models stay loaded");
    }
}
