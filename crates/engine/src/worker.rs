//! The loop on the `engine` thread: take in requests, plan, preempt, admit, forward, sample, send, free.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use hearth_models::{CausalLm, KvPool, SeqStep};
use tokio::sync::mpsc;

use crate::blocks::{block_keys, chain, BlockKey, BlockManager};
use crate::gate::StepGate;
use crate::handle::{SharedStats, Submission};
use crate::scheduler::{self, SeqLoad, StepLimits, WaitingLoad};
use crate::{EngineConfig, EngineError, Event, FinishReason, Sampler, TokenConstraint, Usage};

/// One choice of a request, waiting or running.
struct Sequence {
    /// Shared by the request's `n` choices.
    submission: Arc<Submission>,
    choice: usize,
    /// Prompt followed by generated tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Its block table: position `p` lives in `blocks[p / block_size]`.
    blocks: Vec<u32>,
    /// Positions whose keys and values are in the pool.
    computed: usize,
    /// Keys of its leading full blocks, as far as they have been computed (for the prefix cache).
    keys: Vec<BlockKey>,
    /// Prompt tokens the prefix cache supplied at first admission.
    cached_prompt: usize,
    sampler: Sampler,
    /// Whether the other choices still have to be forked off this one once its prompt is prefilled.
    forks_pending: bool,
    /// Whether it has never run (its prompt still counts as waiting tokens).
    fresh: bool,
    /// Where its output stands within the request's constraint, if any.
    constraint: Option<Box<dyn TokenConstraint>>,
}

impl Sequence {
    fn new(submission: Arc<Submission>, choice: usize, forks_pending: bool) -> Self {
        let request = &submission.request;
        Sequence {
            tokens: request.prompt.clone(),
            prompt_len: request.prompt.len(),
            sampler: Sampler::new(request.sampling.clone(), &request.prompt, choice),
            blocks: Vec::new(),
            computed: 0,
            keys: Vec::new(),
            cached_prompt: 0,
            forks_pending,
            fresh: choice == 0,
            constraint: request.constraint.as_ref().map(|c| c.start()),
            choice,
            submission,
        }
    }

    fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_len as u32,
            completion_tokens: self.generated() as u32,
            cached_tokens: self.cached_prompt as u32,
        }
    }

    /// Samples the next token from `logits` and tells the caller; returns whether the choice is over.
    fn advance(&mut self, logits: &[f32], stats: &SharedStats) -> bool {
        let remaining = self.submission.request.max_tokens.saturating_sub(self.generated());
        let sampled = match &mut self.constraint {
            None => Ok(self.sampler.sample(logits)),
            Some(constraint) => {
                self.sampler.sample_constrained(logits, constraint.as_mut(), remaining).map(|(sampled, masked)| {
                    stats.constraint_nanos.fetch_add(masked.as_nanos() as u64, Ordering::Relaxed);
                    stats.constraint_masks.fetch_add(1, Ordering::Relaxed);
                    sampled
                })
            }
        };
        let sampled = match sampled {
            Ok(sampled) => sampled,
            Err(e) => return self.fail(format!("structured output: {e}")),
        };
        let id = sampled.id;
        self.tokens.push(id);
        stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
        let request = &self.submission.request;
        let end_token = request.stop_tokens.contains(&id);
        let complete = match (&mut self.constraint, end_token) {
            (Some(constraint), false) => {
                let started = Instant::now();
                let committed = constraint.commit(id);
                stats.constraint_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                match committed {
                    Ok(complete) => complete,
                    Err(e) => return self.fail(format!("structured output: {e}")),
                }
            }
            _ => false,
        };
        let reason = if end_token || complete {
            Some(FinishReason::Stop)
        } else if self.generated() >= request.max_tokens {
            Some(FinishReason::Length)
        } else {
            None
        };
        let events = &self.submission.events;
        let choice = self.choice;
        if !end_token {
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

    /// Ends the request with `message` (a constraint failure); returns true: the choice is over.
    fn fail(&self, message: String) -> bool {
        let _ = self.submission.events.send(Event::Failed(EngineError::Model(message)));
        true
    }
}

/// Owns the model, the KV pool and all sequence state; plain fields, no locks: only this thread touches them.
pub(crate) struct Worker {
    model: Box<dyn CausalLm>,
    pool: KvPool,
    blocks: BlockManager,
    config: EngineConfig,
    inbox: mpsc::UnboundedReceiver<Submission>,
    /// Requests not running, in arrival order; preempted sequences go back to the front.
    waiting: VecDeque<Sequence>,
    /// Running sequences, oldest admission first.
    running: Vec<Sequence>,
    stats: Arc<SharedStats>,
    /// Turns on the inference threads, shared with the other engines.
    gate: StepGate,
}

impl Worker {
    pub(crate) fn new(
        model: Box<dyn CausalLm>,
        pool: KvPool,
        config: EngineConfig,
        inbox: mpsc::UnboundedReceiver<Submission>,
        stats: Arc<SharedStats>,
    ) -> Self {
        let blocks = BlockManager::new(pool.num_blocks(), pool.block_size(), config.prefix_caching);
        let (waiting, running, gate) = (VecDeque::new(), Vec::new(), StepGate::default());
        Self { model, pool, blocks, config, inbox, waiting, running, stats, gate }
    }

    /// The worker with its forward steps taking turns through `gate`, shared with other engines.
    pub(crate) fn taking_turns(self, gate: StepGate) -> Self {
        Self { gate, ..self }
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
                    Some(submission) => self.arrive(submission),
                    None => break,
                }
            }
            while let Ok(submission) = self.inbox.try_recv() {
                self.arrive(submission);
            }
            self.evict_cancelled();
            self.step();
            self.publish_stats();
        }
    }

    fn arrive(&mut self, submission: Submission) {
        let forks = submission.request.n > 1;
        self.waiting.push_back(Sequence::new(Arc::new(submission), 0, forks));
    }

    /// Drops sequences whose client went away or whose choice was cancelled, freeing their blocks now.
    fn evict_cancelled(&mut self) {
        let (blocks, stats) = (&mut self.blocks, &self.stats);
        let mut keep = |s: &Sequence| {
            let cancelled = s.submission.is_cancelled(s.choice);
            if cancelled {
                blocks.release(&s.blocks);
                if s.fresh {
                    stats.waiting_prompt_tokens.fetch_sub(s.prompt_len, Ordering::Relaxed);
                }
            }
            !cancelled
        };
        self.running.retain(&mut keep);
        self.waiting.retain(&mut keep);
    }

    fn publish_stats(&self) {
        let used = self.blocks.in_use() as u64;
        self.stats.kv_blocks_used.store(used, Ordering::Relaxed);
        self.stats.kv_cache_bytes.store(used * self.pool.block_bytes() as u64, Ordering::Relaxed);
        self.stats.running.store(self.running.len(), Ordering::Relaxed);
        self.stats.waiting.store(self.waiting.len() + self.inbox.len(), Ordering::Relaxed);
    }

    /// What the scheduler sees of a running sequence.
    fn load(&self, seq: &Sequence) -> SeqLoad {
        let block_size = self.blocks.block_size();
        SeqLoad {
            pending: seq.tokens.len() - seq.computed,
            decoding: seq.computed >= seq.tokens.len().saturating_sub(1) && seq.computed >= seq.prompt_len,
            needs_block: seq.computed + 1 > seq.blocks.len() * block_size,
            freeable: seq.blocks.iter().filter(|&&b| self.blocks.refs(b) == 1).count(),
        }
    }

    /// What the scheduler sees of a waiting sequence: its prompt minus the cached prefix. At least one
    /// token is always computed, since that step yields the logits of the next one.
    fn waiting_load(&mut self, index: usize) -> WaitingLoad {
        let block_size = self.blocks.block_size();
        let seq = &mut self.waiting[index];
        let reusable = (seq.tokens.len() - 1) / block_size;
        if seq.keys.len() < reusable {
            seq.keys = block_keys(&seq.tokens[..reusable * block_size], block_size);
        }
        let hit = self.blocks.lookup(&seq.keys[..reusable], &seq.tokens);
        let total = seq.tokens.len().div_ceil(block_size);
        WaitingLoad {
            tokens: seq.tokens.len() - hit.blocks.len() * block_size,
            blocks: total - hit.blocks.len() + hit.idle,
            seqs: if seq.forks_pending { seq.submission.request.n } else { 1 },
        }
    }

    /// One step: plan, preempt, admit, run one forward over every scheduled sequence, sample.
    fn step(&mut self) {
        let loads: Vec<SeqLoad> = self.running.iter().map(|s| self.load(s)).collect();
        // Admission never looks past the first request that cannot start, so a few loads suffice.
        let lookahead = self.waiting.len().min(self.config.max_running);
        let waiting: Vec<WaitingLoad> = (0..lookahead).map(|i| self.waiting_load(i)).collect();
        let limits = StepLimits {
            budget: self.config.max_batch_tokens,
            max_running: self.config.max_running,
            available_blocks: self.blocks.available(),
        };
        let plan = scheduler::plan(&loads, &waiting, limits);

        let mut take = plan.take;
        let mut preempt = plan.preempt;
        preempt.sort_unstable();
        for &i in preempt.iter().rev() {
            take.remove(i);
            let mut seq = self.running.remove(i);
            self.blocks.release(&seq.blocks);
            seq.blocks.clear();
            seq.computed = 0;
            self.waiting.push_front(seq);
            self.stats.preemptions.fetch_add(1, Ordering::Relaxed);
        }
        let block_size = self.blocks.block_size();
        for (seq, &n) in self.running.iter_mut().zip(&take) {
            if n > 0 && seq.computed + n > seq.blocks.len() * block_size {
                seq.blocks.push(self.blocks.allocate().expect("the plan counted this block"));
            }
        }
        for &n in &plan.admit {
            if !self.admit_next() {
                break;
            }
            take.push(n);
        }
        self.forward(&take);
    }

    /// Starts the first waiting sequence: reuses its cached prefix and allocates blocks for the rest of its
    /// tokens. Leaves it waiting, holding nothing, and returns false if the blocks are not there after all (a
    /// decode's allocation this step evicted part of the prefix it planned to reuse).
    fn admit_next(&mut self) -> bool {
        let Some(mut seq) = self.waiting.pop_front() else { return false };
        let block_size = self.blocks.block_size();
        let reusable = (seq.tokens.len() - 1) / block_size;
        let hit = self.blocks.lookup(&seq.keys[..reusable.min(seq.keys.len())], &seq.tokens);
        self.blocks.acquire(&hit.blocks);
        seq.computed = hit.blocks.len() * block_size;
        seq.blocks = hit.blocks;
        while seq.blocks.len() * block_size < seq.tokens.len() {
            match self.blocks.allocate() {
                Some(block) => seq.blocks.push(block),
                None => {
                    self.blocks.release(&seq.blocks);
                    seq.blocks.clear();
                    seq.computed = 0;
                    self.waiting.push_front(seq);
                    return false;
                }
            }
        }
        seq.keys.truncate(seq.computed / block_size);
        if seq.fresh {
            seq.fresh = false;
            seq.cached_prompt = seq.computed;
            let _ = seq.submission.events.send(Event::Admitted { cached_tokens: seq.computed as u32 });
            self.stats.waiting_prompt_tokens.fetch_sub(seq.prompt_len, Ordering::Relaxed);
            self.stats.prompt_tokens_cached.fetch_add(seq.computed as u64, Ordering::Relaxed);
            self.stats.prompt_tokens_queried.fetch_add(seq.prompt_len as u64, Ordering::Relaxed);
        }
        self.running.push(seq);
        true
    }

    /// Runs one forward step over the running sequences with `take[i]` tokens each, then samples a token
    /// for each that reached the end of its known tokens.
    fn forward(&mut self, take: &[usize]) {
        let mut batch: Vec<SeqStep<'_>> = Vec::new();
        let mut scheduled = Vec::new();
        for (i, (seq, &n)) in self.running.iter().zip(take).enumerate() {
            if n == 0 {
                continue;
            }
            let start = seq.computed;
            let want_logits = start + n == seq.tokens.len();
            batch.push(SeqStep { tokens: &seq.tokens[start..start + n], start, blocks: &seq.blocks, want_logits });
            scheduled.push(i);
        }
        if batch.is_empty() {
            return;
        }
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        self.stats.batch_tokens.fetch_add(take.iter().sum::<usize>() as u64, Ordering::Relaxed);
        let (model, pool) = (&self.model, &mut self.pool);
        let outcome = self.gate.run(|| std::panic::catch_unwind(AssertUnwindSafe(|| model.forward(pool, &batch))));
        drop(batch);
        let logits = match outcome {
            Ok(Ok(logits)) => logits,
            Ok(Err(e)) => return self.fail(&scheduled, EngineError::Model(e.to_string())),
            Err(panic) => return self.fail(&scheduled, EngineError::Model(panic_message(&*panic))),
        };

        let mut finished = Vec::new();
        for (&i, row) in scheduled.iter().zip(&logits) {
            self.running[i].computed += take[i];
            self.register_full_blocks(i);
            if row.is_empty() {
                continue;
            }
            if std::mem::take(&mut self.running[i].forks_pending) {
                self.fork(i, row);
            }
            if self.running[i].advance(row, &self.stats) {
                finished.push(i);
            }
        }
        self.remove(finished);
    }

    /// Offers the sequence's newly completed blocks to the prefix cache.
    fn register_full_blocks(&mut self, i: usize) {
        let block_size = self.blocks.block_size();
        let seq = &mut self.running[i];
        while seq.keys.len() < seq.computed / block_size {
            let b = seq.keys.len();
            let tokens = &seq.tokens[b * block_size..(b + 1) * block_size];
            let key = chain(seq.keys.last().copied().unwrap_or(0), tokens);
            self.blocks.register(seq.blocks[b], key, tokens);
            seq.keys.push(key);
        }
    }

    /// Starts choices `1..n` of the request whose prompt sequence `i` just prefilled: each shares its full
    /// blocks, gets a copy of its partial last block, and samples its first token from the same `logits`.
    /// A choice that finds no block for the copy waits and recomputes its prompt instead.
    fn fork(&mut self, i: usize, logits: &[f32]) {
        let block_size = self.blocks.block_size();
        let n = self.running[i].submission.request.n;
        for choice in 1..n {
            let leader = &self.running[i];
            let mut seq = Sequence::new(leader.submission.clone(), choice, false);
            let full = leader.computed / block_size;
            let partial = leader.computed % block_size;
            let copy = if partial > 0 { self.blocks.allocate() } else { None };
            if partial > 0 && copy.is_none() {
                self.waiting.push_front(seq);
                continue;
            }
            let leader = &self.running[i];
            seq.blocks = leader.blocks[..full].to_vec();
            seq.keys = leader.keys[..full.min(leader.keys.len())].to_vec();
            self.blocks.acquire(&seq.blocks);
            if let Some(block) = copy {
                self.pool.copy_block(leader.blocks[full], block, partial);
                seq.blocks.push(block);
            }
            seq.computed = leader.computed;
            seq.cached_prompt = leader.cached_prompt;
            if !seq.advance(logits, &self.stats) {
                self.running.push(seq);
            } else {
                self.blocks.release(&seq.blocks);
            }
        }
    }

    /// Fails the given sequences: their blocks may be half-written.
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
            let seq = self.running.remove(i);
            self.blocks.release(&seq.blocks);
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
    format!("panic in the model: {}", text.unwrap_or_else(|| "unknown".into()))
}
