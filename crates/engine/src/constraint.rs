//! Constrained decoding: what a request may say next, decided outside the engine.

use std::sync::Arc;

/// A compiled constraint (e.g. "a JSON object matching this schema"); starts one [`TokenConstraint`] per
/// sequence, so each of `n` choices follows it on its own.
pub trait ConstraintSpec: Send + Sync + std::fmt::Debug {
    /// A fresh constraint state at the start of the output.
    fn start(&self) -> Box<dyn TokenConstraint>;
}

/// One sequence's position within a constraint.
pub trait TokenConstraint: Send {
    /// Sets the logits of every token that may not come next to negative infinity. `remaining` is how many
    /// more tokens the sequence may generate, so a constraint can steer toward completing in time.
    fn mask(&mut self, logits: &mut [f32], remaining: usize) -> Result<(), String>;

    /// Records the sampled token; returns whether the constraint is complete, so generation must stop.
    fn commit(&mut self, token: u32) -> Result<bool, String>;
}

/// A shared, compiled constraint.
pub type Constraint = Arc<dyn ConstraintSpec>;
