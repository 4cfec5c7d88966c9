//! The bounded pool that runs request preparation: templating, tokenizing, schema and grammar compiling.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::ApiError;

/// At most `workers` preparations run at once on blocking threads, and at most `waiting` more wait for
/// a turn; a request beyond that gets a 429 at once, so a flood costs neither threads nor memory.
#[derive(Debug, Clone)]
pub struct PreparePool {
    /// One permit per preparation allowed to run.
    workers: Arc<Semaphore>,
    /// One permit per preparation running or waiting.
    admitted: Arc<Semaphore>,
    /// Permits `admitted` holds when nothing runs or waits.
    capacity: usize,
}

impl PreparePool {
    /// A pool of `workers` (at least one) with room for `waiting` more.
    pub fn new(workers: usize, waiting: usize) -> Self {
        let workers = workers.max(1);
        let capacity = workers + waiting;
        Self { workers: Arc::new(Semaphore::new(workers)), admitted: Arc::new(Semaphore::new(capacity)), capacity }
    }

    /// One worker per core.
    pub fn per_core(waiting: usize) -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()), waiting)
    }

    /// Runs `work` on a blocking thread once a worker is free; [`ApiError::Overloaded`] when the pool
    /// is full. The permits go with the work, so a client that leaves does not free a worker still busy
    /// with its request. The last preparation of a busy spell hands the memory freed meanwhile back to the
    /// kernel: the allocator would otherwise keep what a burst of large requests made it take.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| {
            ApiError::Overloaded("the server is preparing as many requests as it can hold; retry shortly".into())
        })?;
        let worker = self.workers.clone().acquire_owned().await.expect("the pool's semaphore is never closed");
        let (idle, capacity) = (self.admitted.clone(), self.capacity);
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop((admitted, worker));
            if idle.available_permits() == capacity {
                hearth_models::release_free_memory();
            }
            result
        })
        .await
        .map_err(|e| ApiError::Internal(format!("request preparation failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_and_frees_its_places() {
        let pool = PreparePool::new(1, 1);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let running = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move || Ok(wait.recv().is_ok())).await }
        });
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| Ok(2)).await }
        });
        while pool.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|| Ok(3)).await.unwrap_err();
        assert!(matches!(refused, ApiError::Overloaded(_)), "{refused}");
        release.send(()).unwrap();
        assert!(running.await.unwrap().unwrap());
        assert_eq!(queued.await.unwrap().unwrap(), 2);
        assert_eq!(pool.run(|| Ok(4)).await.unwrap(), 4);
    }
}
