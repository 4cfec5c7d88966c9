//! Draining on shutdown: stop taking work, let in-flight requests finish for a grace period, then end
//! the stragglers with an error event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// Shared between the shutdown signal, the probes and every running stream.
#[derive(Debug)]
pub struct Lifecycle {
    draining: AtomicBool,
    aborted: watch::Sender<bool>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self { draining: AtomicBool::new(false), aborted: watch::channel(false).0 }
    }
}

impl Lifecycle {
    /// Whether shutdown has begun (readiness turns 503, new generations are refused).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Begins draining; after `grace`, streams still running are ended with an error.
    pub fn drain(&self, grace: Duration) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.draining.store(true, Ordering::Relaxed);
        let aborted = self.aborted.clone();
        async move {
            tokio::time::sleep(grace).await;
            aborted.send_replace(true);
        }
    }

    /// Resolves once the grace period is over.
    pub fn aborted(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.aborted.subscribe();
        async move {
            if receiver.wait_for(|aborted| *aborted).await.is_err() {
                // The lifecycle is gone, so no shutdown can come: never abort.
                std::future::pending::<()>().await;
            }
        }
    }
}
