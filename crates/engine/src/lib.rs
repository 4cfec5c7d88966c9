//! The model worker: one OS thread owns the model and every sequence's KV cache and runs continuous
//! batching at the iteration level. Everything else talks to it through an [`EngineHandle`].
//!
//! **Invariant:** the engine knows nothing about HTTP, JSON or OpenAI. Text is already tokens when it
//! arrives, and it answers with token events; stop strings and detokenization belong to the caller.
//!
//! # Layout
//! - [`request`] — [`GenerateRequest`] and [`SamplingParams`], the validated input.
//! - [`event`] — [`Event`], the closed set of things a request hears back.
//! - [`handle`] — [`EngineHandle::submit`], bounded admission, and [`EventStream`].
//! - [`gate`] — [`StepGate`]: engines sharing the cores take turns, one forward step each.
//! - [`scheduler`] — the pure policy that picks each step's tokens, preemptions and admissions.
//! - [`blocks`] — [`blocks::BlockManager`]: KV block allocation, reference counts, the prefix cache.
//! - [`sampling`] — [`Sampler`], logits to a token, seeded.
//! - [`constraint`] — [`ConstraintSpec`] and [`TokenConstraint`]: structured-output masks, implemented outside.
//! - `worker`: the loop on the `engine` thread.
//! - [`embed`] — [`spawn_embedder`] and [`EmbedHandle`]: the embedding model's own worker thread, batching
//!   queued embedding requests.
#![warn(missing_docs)]

pub mod blocks;
pub mod constraint;
pub mod embed;
pub mod event;
pub mod gate;
pub mod handle;
pub mod request;
pub mod sampling;
pub mod scheduler;
mod worker;

pub use constraint::{Constraint, ConstraintSpec, TokenConstraint};
pub use embed::{spawn_embedder, EmbedConfig, EmbedError, EmbedHandle};
pub use event::{EngineError, Event, FinishReason, Usage};
pub use gate::StepGate;
pub use handle::{
    spawn, spawn_sharing, EngineConfig, EngineHandle, EngineStats, EngineWatch, EventStream, SubmitError,
};
pub use request::{GenerateRequest, SamplingParams};
pub use sampling::Sampler;
