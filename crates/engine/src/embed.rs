//! The embedding worker: one thread owns an embedding model and runs queued requests in batches.
//!
//! Every input waiting when the worker wakes joins the next round; inputs are sorted by length and cut
//! into forward passes of at most `max_batch_tokens` padded tokens, which bounds how long one pass
//! holds the CPU away from chat generation.

use std::sync::Arc;

use hearth_models::{Embedder, EmbedderInfo};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::{EngineError, SubmitError};

/// Embedding worker limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedConfig {
    /// Most padded tokens (inputs × longest input) in one forward pass.
    pub max_batch_tokens: usize,
    /// Most requests queued or running; beyond it `embed` answers `Overloaded`.
    pub max_requests: usize,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self { max_batch_tokens: 4096, max_requests: 64 }
    }
}

struct Job {
    inputs: Vec<Vec<u32>>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, EngineError>>,
    _slot: OwnedSemaphorePermit,
}

/// Cheap to clone; every clone talks to the same embedding worker.
#[derive(Clone)]
pub struct EmbedHandle {
    inbox: mpsc::UnboundedSender<Job>,
    slots: Arc<Semaphore>,
    info: EmbedderInfo,
}

impl std::fmt::Debug for EmbedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedHandle").field("info", &self.info).finish_non_exhaustive()
    }
}

impl EmbedHandle {
    /// Embeds `inputs` (each non-empty and within `max_tokens`), one vector per input, in order.
    pub async fn embed(&self, inputs: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| SubmitError::Overloaded("embedding requests in flight".into()))?;
        let (reply, answer) = oneshot::channel();
        self.inbox.send(Job { inputs, reply, _slot: slot }).map_err(|_| SubmitError::Stopped)?;
        Ok(answer.await.map_err(|_| EngineError::Stopped)??)
    }

    /// The model's embedding length and input limit.
    pub fn info(&self) -> &EmbedderInfo {
        &self.info
    }
}

/// Why an embedding request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    /// It was not accepted.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The model failed or the worker stopped.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Starts the worker thread (named `embedder`) that owns `model` from now on.
pub fn spawn_embedder(model: Box<dyn Embedder>, config: EmbedConfig) -> std::io::Result<EmbedHandle> {
    let (inbox, mut jobs) = mpsc::unbounded_channel::<Job>();
    let info = model.info().clone();
    std::thread::Builder::new().name("embedder".into()).spawn(move || {
        while let Some(job) = jobs.blocking_recv() {
            let mut round = vec![job];
            while let Ok(job) = jobs.try_recv() {
                round.push(job);
            }
            round.retain(|job| !job.reply.is_closed());
            run_round(&*model, round, config.max_batch_tokens);
        }
    })?;
    Ok(EmbedHandle { inbox, slots: Arc::new(Semaphore::new(config.max_requests.max(1))), info })
}

/// Embeds every input of every job in length-sorted passes, then answers each job.
fn run_round(model: &dyn Embedder, jobs: Vec<Job>, max_batch_tokens: usize) {
    let mut order: Vec<(usize, usize)> =
        jobs.iter().enumerate().flat_map(|(j, job)| (0..job.inputs.len()).map(move |i| (j, i))).collect();
    order.sort_by_key(|&(j, i)| jobs[j].inputs[i].len());
    let mut results: Vec<Vec<Vec<f32>>> = jobs.iter().map(|job| vec![Vec::new(); job.inputs.len()]).collect();
    let mut failed: Option<EngineError> = None;
    for pass in passes(order.iter().map(|&(j, i)| jobs[j].inputs[i].len()), max_batch_tokens) {
        let members = &order[pass];
        let batch: Vec<Vec<u32>> = members.iter().map(|&(j, i)| jobs[j].inputs[i].clone()).collect();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.embed(&batch)));
        match outcome {
            Ok(Ok(vectors)) => {
                for (&(j, i), vector) in members.iter().zip(vectors) {
                    results[j][i] = vector;
                }
            }
            Ok(Err(e)) => failed = Some(EngineError::Model(e.to_string())),
            Err(_) => failed = Some(EngineError::Model("panic in the embedding model".into())),
        }
        if failed.is_some() {
            break;
        }
    }
    if let Some(error) = &failed {
        tracing::error!(%error, "embedding pass failed");
    }
    for (job, vectors) in jobs.into_iter().zip(results) {
        let _ = job.reply.send(match &failed {
            Some(error) => Err(error.clone()),
            None => Ok(vectors),
        });
    }
}

/// Cuts length-sorted inputs into consecutive ranges whose padded size (count × longest) stays within
/// `max_tokens`; an input longer than the budget gets a pass of its own.
fn passes(lengths: impl Iterator<Item = usize>, max_tokens: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (i, len) in lengths.enumerate() {
        // Sorted ascending, so `len` is the longest of the pass it joins.
        if i > start && (i + 1 - start) * len > max_tokens {
            out.push(start..i);
            start = i;
        }
        end = i + 1;
    }
    if end > start {
        out.push(start..end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_stay_within_the_padded_budget() {
        assert_eq!(passes([2, 3, 3, 5, 9].into_iter(), 10), [0..3, 3..4, 4..5]);
        assert_eq!(passes([2, 3, 3, 5, 5].into_iter(), 10), [0..3, 3..5]);
        assert_eq!(passes([4, 4, 40].into_iter(), 10), [0..2, 2..3], "an oversized input runs alone");
        assert_eq!(passes(std::iter::empty(), 10), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(passes([1; 8].into_iter(), 100), vec![std::ops::Range { start: 0, end: 8 }]);
    }
}
