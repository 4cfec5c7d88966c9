//! The async-facing side of the engine: bounded admission and per-request event streams.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hearth_models::CausalLm;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::gate::StepGate;
use crate::worker::Worker;
use crate::{Event, GenerateRequest};

/// Engine limits, resolved from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most sequences decoding together in one step.
    pub max_running: usize,
    /// Most requests admitted but not yet running; beyond it `submit` answers `Overloaded`.
    pub max_waiting: usize,
    /// Most tokens (decodes + prompt chunks) in one forward step; at least `max_running`.
    pub max_batch_tokens: usize,
    /// Most prompt tokens in requests not yet running; beyond it `submit` answers `Overloaded`.
    pub max_waiting_prompt_tokens: usize,
    /// Bytes of the KV pool, allocated once at start.
    pub kv_cache_bytes: usize,
    /// Positions per KV block.
    pub block_size: usize,
    /// Keep full blocks for reuse by later requests with the same prefix.
    pub prefix_caching: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_running: 16,
            max_waiting: 64,
            max_batch_tokens: 256,
            max_waiting_prompt_tokens: 65_536,
            kv_cache_bytes: 1 << 30,
            block_size: 16,
            prefix_caching: true,
        }
    }
}

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Every running and waiting slot is taken, or too many prompt tokens wait; retry later.
    #[error("the server is at capacity ({0}); retry later")]
    Overloaded(String),
    /// The engine thread has stopped.
    #[error("the inference engine has stopped")]
    Stopped,
    /// Prompt + `max_tokens` can never fit the KV pool, even alone.
    #[error("{0}")]
    TooLarge(String),
}

/// A snapshot of the engine's load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Sequences in the running batch.
    pub running: usize,
    /// Requests admitted but not yet running.
    pub waiting: usize,
    /// Tokens sampled since start, over all requests.
    pub generated_tokens: u64,
    /// Forward steps run since start.
    pub steps: u64,
    /// Tokens (prompt chunks and decodes) processed by forward steps since start.
    pub batch_tokens: u64,
    /// Bytes of KV blocks in use.
    pub kv_cache_bytes: u64,
    /// KV blocks in use.
    pub kv_blocks_used: u64,
    /// KV blocks in the pool.
    pub kv_blocks_total: u64,
    /// Sequences preempted (their blocks freed, recomputed later) since start.
    pub preemptions: u64,
    /// Prompt tokens of admitted requests since start.
    pub prompt_tokens_queried: u64,
    /// Of those, tokens the prefix cache supplied.
    pub prompt_tokens_cached: u64,
    /// Tokens sampled under a structured-output constraint since start.
    pub constrained_tokens: u64,
    /// Time spent in their constraints (computing and applying masks, advancing past the sampled token), in nanoseconds.
    pub constraint_nanos: u64,
}

/// Counters the worker publishes and handles read.
#[derive(Debug, Default)]
pub(crate) struct SharedStats {
    pub(crate) running: AtomicUsize,
    pub(crate) waiting: AtomicUsize,
    pub(crate) generated_tokens: AtomicU64,
    /// Prompt tokens of submitted requests that are not running yet.
    pub(crate) waiting_prompt_tokens: AtomicUsize,
    pub(crate) steps: AtomicU64,
    pub(crate) batch_tokens: AtomicU64,
    pub(crate) kv_cache_bytes: AtomicU64,
    pub(crate) kv_blocks_used: AtomicU64,
    pub(crate) preemptions: AtomicU64,
    pub(crate) prompt_tokens_queried: AtomicU64,
    pub(crate) prompt_tokens_cached: AtomicU64,
    pub(crate) constraint_nanos: AtomicU64,
    pub(crate) constraint_masks: AtomicU64,
    pub(crate) alive: AtomicBool,
    /// Set once the worker thread has ended and dropped the model and the KV pool.
    pub(crate) released: AtomicBool,
}

/// A request on its way to the worker.
pub(crate) struct Submission {
    pub(crate) request: GenerateRequest,
    /// Unbounded on purpose: `max_tokens` bounds it, and a bounded channel would let one slow client
    /// block the engine thread, and with it every other sequence in the batch.
    pub(crate) events: mpsc::UnboundedSender<Event>,
    /// One flag per choice, set when the caller no longer wants that choice's tokens.
    pub(crate) cancelled: Arc<[AtomicBool]>,
    /// Held until the request finishes; frees its admission slot when dropped.
    pub(crate) _slot: OwnedSemaphorePermit,
}

impl Submission {
    /// Whether the caller dropped the stream or gave up on this choice.
    pub(crate) fn is_cancelled(&self, choice: usize) -> bool {
        self.events.is_closed() || self.cancelled[choice].load(Ordering::Relaxed)
    }
}

/// Cheap to clone; every clone talks to the same worker.
#[derive(Clone)]
pub struct EngineHandle {
    inbox: mpsc::UnboundedSender<Submission>,
    slots: Arc<Semaphore>,
    config: EngineConfig,
    /// Blocks in the KV pool.
    kv_blocks: usize,
    stats: Arc<SharedStats>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl EngineHandle {
    /// Queues a request; fails at once, without waiting, when the engine is full or gone.
    pub fn submit(&self, request: GenerateRequest) -> Result<EventStream, SubmitError> {
        if !self.is_alive() {
            return Err(SubmitError::Stopped);
        }
        let needed = request.prompt.len() + request.max_tokens;
        if needed > self.kv_capacity_tokens() {
            return Err(SubmitError::TooLarge(format!(
                "the prompt plus max_tokens ({needed} tokens) can never fit the KV cache of {} tokens",
                self.kv_capacity_tokens()
            )));
        }
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| {
            let in_flight = self.config.max_running + self.config.max_waiting;
            SubmitError::Overloaded(format!("{in_flight} requests in flight"))
        })?;
        let prompt = request.prompt.len();
        let waiting = self.stats.waiting_prompt_tokens.fetch_add(prompt, Ordering::Relaxed) + prompt;
        if waiting > self.config.max_waiting_prompt_tokens && waiting > prompt {
            self.stats.waiting_prompt_tokens.fetch_sub(prompt, Ordering::Relaxed);
            return Err(SubmitError::Overloaded(format!("{} prompt tokens waiting", waiting - prompt)));
        }
        let (events, receiver) = mpsc::unbounded_channel();
        let cancelled: Arc<[AtomicBool]> = (0..request.n.max(1)).map(|_| AtomicBool::new(false)).collect();
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let submission = Submission { request, events, cancelled: cancelled.clone(), _slot: slot };
        self.inbox.send(submission).map_err(|_| {
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            self.stats.waiting_prompt_tokens.fetch_sub(prompt, Ordering::Relaxed);
            SubmitError::Stopped
        })?;
        Ok(EventStream { receiver, cancelled })
    }

    /// The engine's current load.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            running: self.stats.running.load(Ordering::Relaxed),
            waiting: self.stats.waiting.load(Ordering::Relaxed),
            generated_tokens: self.stats.generated_tokens.load(Ordering::Relaxed),
            steps: self.stats.steps.load(Ordering::Relaxed),
            batch_tokens: self.stats.batch_tokens.load(Ordering::Relaxed),
            kv_cache_bytes: self.stats.kv_cache_bytes.load(Ordering::Relaxed),
            kv_blocks_used: self.stats.kv_blocks_used.load(Ordering::Relaxed),
            kv_blocks_total: self.kv_blocks as u64,
            preemptions: self.stats.preemptions.load(Ordering::Relaxed),
            prompt_tokens_queried: self.stats.prompt_tokens_queried.load(Ordering::Relaxed),
            prompt_tokens_cached: self.stats.prompt_tokens_cached.load(Ordering::Relaxed),
            constrained_tokens: self.stats.constraint_masks.load(Ordering::Relaxed),
            constraint_nanos: self.stats.constraint_nanos.load(Ordering::Relaxed),
        }
    }

    /// Tokens the KV pool holds: the longest prompt + generation one sequence can reach.
    pub fn kv_capacity_tokens(&self) -> usize {
        self.kv_blocks * self.config.block_size
    }

    /// Whether the worker thread is still serving.
    pub fn is_alive(&self) -> bool {
        self.stats.alive.load(Ordering::Relaxed)
    }

    /// A watch on this engine that outlives its handles: once every handle is dropped and the running
    /// requests end, the worker stops and frees its memory.
    pub fn watch(&self) -> EngineWatch {
        EngineWatch(self.stats.clone())
    }
}

/// Whether an engine has let go of its model, without keeping it running.
#[derive(Debug, Clone)]
pub struct EngineWatch(Arc<SharedStats>);

impl EngineWatch {
    /// Whether the worker thread has ended and dropped the model and the KV pool.
    pub fn released(&self) -> bool {
        self.0.released.load(Ordering::Acquire)
    }
}

/// Marks the engine's memory released when the worker thread ends, after `Worker::run` has dropped it.
struct Released(Arc<SharedStats>);

impl Drop for Released {
    fn drop(&mut self) {
        self.0.released.store(true, Ordering::Release);
    }
}

/// The events of one request. Dropping it cancels the request: the worker notices on its next step
/// and frees the sequence's KV cache.
#[derive(Debug)]
pub struct EventStream {
    receiver: mpsc::UnboundedReceiver<Event>,
    cancelled: Arc<[AtomicBool]>,
}

impl EventStream {
    /// The next event; `None` once the request is over (or the engine died: callers treat a stream
    /// that ends without `Finished` or `Failed` as [`crate::EngineError::Stopped`]).
    pub async fn recv(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }

    /// Stops generating one choice (its stop string matched) while the others go on; the worker
    /// frees it on its next step and sends nothing more for it.
    pub fn cancel(&self, choice: usize) {
        if let Some(flag) = self.cancelled.get(choice) {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Starts the worker thread (named `engine`) that owns `model` from now on, with the inference threads
/// to itself. Allocates the KV pool (`kv_cache_bytes` rounded down to whole blocks, at least one).
pub fn spawn(model: Box<dyn CausalLm>, config: EngineConfig) -> std::io::Result<EngineHandle> {
    spawn_sharing(model, config, StepGate::default())
}

/// [`spawn`] for one of several engines on the same cores: its forward steps take turns through `gate`.
pub fn spawn_sharing(model: Box<dyn CausalLm>, config: EngineConfig, gate: StepGate) -> std::io::Result<EngineHandle> {
    let block_size = config.block_size.max(1);
    let config =
        EngineConfig { max_batch_tokens: config.max_batch_tokens.max(config.max_running), block_size, ..config };
    let block_bytes = block_size * model.kv_bytes_per_token().max(1);
    let kv_blocks = (config.kv_cache_bytes / block_bytes).max(1);
    let pool = model.new_pool(block_size, kv_blocks);
    tracing::info!(
        mib = (kv_blocks * block_bytes) >> 20,
        prefix_caching = config.prefix_caching,
        "KV cache: {kv_blocks} blocks = {} tokens",
        kv_blocks * block_size
    );
    let (inbox, receiver) = mpsc::unbounded_channel();
    let stats = Arc::new(SharedStats::default());
    stats.alive.store(true, Ordering::Relaxed);
    let worker = Worker::new(model, pool, config, receiver, stats.clone()).taking_turns(gate);
    let released = Released(stats.clone());
    std::thread::Builder::new().name("engine".into()).spawn(move || {
        let _released = released;
        worker.run();
    })?;
    let capacity = config.max_running + config.max_waiting;
    Ok(EngineHandle { inbox, slots: Arc::new(Semaphore::new(capacity)), config, kv_blocks, stats })
}
