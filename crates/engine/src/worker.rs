//! The loop on the `engine` thread: admit, plan, forward, sample, send, evict.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hearth_models::{CausalLm, KvCache, SeqStep};
use tokio::sync::mpsc;

use crate::handle::{SharedStats, Submission};
use crate::scheduler::{self, SeqLoad};
use crate::{EngineConfig, EngineError, Event, FinishReason, Sampler, Usage};

/// One running choice of a request.
struct Sequence {
    /// Shared by the request's `n` choices.
    submission: Arc<Submission>,
    choice: usize,
    /// Prompt followed by generated tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    cache: KvCache,
    sampler: Sampler,
    /// Whether the other choices still have to be forked off this one once its prompt is prefilled.
    forks_pending: bool,
}

impl Sequence {
    fn load(&self) -> SeqLoad {
        SeqLoad { pending: self.tokens.len() - self.cache.len(), decoding: self.cache.len() >= self.prompt_len }
    }

    fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.prompt_len as u32, completion_tokens: self.generated() as u32 }
    }

    fn capacity(&self) -> usize {
        self.prompt_len + self.submission.request.max_tokens
    }

    /// Choice `choice` of the same request, sharing this sequence's prefilled prompt.
    fn fork(&self, choice: usize) -> Sequence {
        let request = &self.submission.request;
        Sequence {
            submission: self.submission.clone(),
            choice,
            tokens: self.tokens[..self.prompt_len].to_vec(),
            prompt_len: self.prompt_len,
            cache: self.cache.fork(self.capacity()),
            sampler: Sampler::new(request.sampling.clone(), &request.prompt, choice),
            forks_pending: false,
        }
    }

    /// Samples the next token from `logits` and tells the caller; returns whether the choice is over.
    fn advance(&mut self, logits: &[f32], stats: &SharedStats) -> bool {
        let sampled = self.sampler.sample(logits);
        let id = sampled.id;
        self.tokens.push(id);
        stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
        let request = &self.submission.request;
        let reason = if request.stop_tokens.contains(&id) {
            Some(FinishReason::Stop)
        } else if self.generated() >= request.max_tokens {
            Some(FinishReason::Length)
        } else {
            None
        };
        let events = &self.submission.events;
        let choice = self.choice;
        if reason != Some(FinishReason::Stop) {
            let token = Event::Token { choice, id, logprob: sampled.logprob, top_logprobs: sampled.top_logprobs };
            if events.send(token).is_err() {
                return true;
            }
        }
        if let Some(reason) = reason {
            let _ = events.send(Event::Finished { choice, reason, usage: self.usage() });
        }
        reason.is_some()
    }
}

/// Owns the model and all sequence state; plain fields, no locks: only this thread touches them.
pub(crate) struct Worker {
    model: Box<dyn CausalLm>,
    config: EngineConfig,
    inbox: mpsc::UnboundedReceiver<Submission>,
    waiting: VecDeque<Submission>,
    running: Vec<Sequence>,
    stats: Arc<SharedStats>,
}

impl Worker {
    pub(crate) fn new(
        model: Box<dyn CausalLm>,
        config: EngineConfig,
        inbox: mpsc::UnboundedReceiver<Submission>,
        stats: Arc<SharedStats>,
    ) -> Self {
        Self { model, config, inbox, waiting: VecDeque::new(), running: Vec::new(), stats }
    }

    pub(crate) fn run(mut self) {
        // Marks the engine dead however this thread ends, a panic included, so `/health` reports it
        // and `submit` fails fast instead of queueing into a dead inbox.
        struct Alive(Arc<SharedStats>);
        impl Drop for Alive {
            fn drop(&mut self) {
                self.0.alive.store(false, Ordering::Relaxed);
            }
        }
        let _alive = Alive(self.stats.clone());
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                match self.inbox.blocking_recv() {
                    Some(submission) => self.waiting.push_back(submission),
                    None => break,
                }
            }
            while let Ok(submission) = self.inbox.try_recv() {
                self.waiting.push_back(submission);
            }
            self.evict_cancelled();
            self.admit();
            self.publish_stats();
            self.step();
            self.publish_stats();
        }
    }

    /// Drops sequences whose client went away, freeing their caches now.
    fn evict_cancelled(&mut self) {
        self.running.retain(|s| !s.submission.is_cancelled(s.choice));
        let stats = &self.stats;
        self.waiting.retain(|s| {
            let open = !s.events.is_closed();
            if !open {
                stats.waiting_prompt_tokens.fetch_sub(s.request.prompt.len(), Ordering::Relaxed);
            }
            open
        });
    }

    /// Moves waiting requests into the batch, in arrival order, while their choices fit `max_running`.
    fn admit(&mut self) {
        while let Some(next) = self.waiting.front() {
            let n = next.request.n.max(1);
            if !self.running.is_empty() && self.running.len() + n > self.config.max_running {
                break;
            }
            let Some(submission) = self.waiting.pop_front() else { break };
            let request = &submission.request;
            self.stats.waiting_prompt_tokens.fetch_sub(request.prompt.len(), Ordering::Relaxed);
            let cache = self.model.new_cache(request.prompt.len() + request.max_tokens);
            let sampler = Sampler::new(request.sampling.clone(), &request.prompt, 0);
            let tokens = request.prompt.clone();
            let prompt_len = tokens.len();
            let submission = Arc::new(submission);
            self.running.push(Sequence {
                submission,
                choice: 0,
                tokens,
                prompt_len,
                cache,
                sampler,
                forks_pending: n > 1,
            });
        }
    }

    fn publish_stats(&self) {
        let kv_bytes: usize = self.running.iter().map(|s| s.cache.bytes()).sum();
        self.stats.kv_cache_bytes.store(kv_bytes as u64, Ordering::Relaxed);
        self.stats.running.store(self.running.len(), Ordering::Relaxed);
        self.stats.waiting.store(self.waiting.len() + self.inbox.len(), Ordering::Relaxed);
    }

    /// One forward step over every scheduled sequence, then one sampled token for each that needs one.
    fn step(&mut self) {
        let loads: Vec<SeqLoad> = self.running.iter().map(Sequence::load).collect();
        let take = scheduler::plan(&loads, self.config.max_batch_tokens);
        let mut batch: Vec<SeqStep<'_>> = Vec::new();
        let mut scheduled = Vec::new();
        for (i, (seq, &n)) in self.running.iter_mut().zip(&take).enumerate() {
            if n == 0 {
                continue;
            }
            let start = seq.cache.len();
            let want_logits = start + n == seq.tokens.len();
            batch.push(SeqStep { tokens: &seq.tokens[start..start + n], cache: &mut seq.cache, want_logits });
            scheduled.push(i);
        }
        if batch.is_empty() {
            return;
        }
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        self.stats.batch_tokens.fetch_add(take.iter().sum::<usize>() as u64, Ordering::Relaxed);
        let model = &self.model;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| model.forward(&mut batch)));
        drop(batch);
        let logits = match outcome {
            Ok(Ok(logits)) => logits,
            Ok(Err(e)) => return self.fail(&scheduled, EngineError::Model(e.to_string())),
            Err(panic) => return self.fail(&scheduled, EngineError::Model(panic_message(&*panic))),
        };

        let mut finished = Vec::new();
        for (&i, row) in scheduled.iter().zip(&logits) {
            if row.is_empty() {
                continue;
            }
            if std::mem::take(&mut self.running[i].forks_pending) {
                // The prompt is prefilled: every other choice starts from a copy of its cache and
                // samples its first token from the same logits.
                for choice in 1..self.running[i].submission.request.n {
                    let mut fork = self.running[i].fork(choice);
                    if !fork.advance(row, &self.stats) {
                        self.running.push(fork);
                    }
                }
            }
            if self.running[i].advance(row, &self.stats) {
                finished.push(i);
            }
        }
        self.remove(finished);
    }

    /// Fails the given sequences: their caches may be half-written.
    fn fail(&mut self, indices: &[usize], error: EngineError) {
        tracing::error!(%error, sequences = indices.len(), "forward step failed");
        for &i in indices {
            let _ = self.running[i].submission.events.send(Event::Failed(error.clone()));
        }
        self.remove(indices.to_vec());
    }

    fn remove(&mut self, mut indices: Vec<usize>) {
        indices.sort_unstable();
        for i in indices.into_iter().rev() {
            self.running.remove(i);
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
    format!("panic in the model: {}", text.unwrap_or_else(|| "unknown".into()))
}
