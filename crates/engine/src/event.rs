//! What the engine sends back for one request.

/// One message on a request's event stream. The stream ends after `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generated token (end-of-sequence tokens are not sent; they only finish the request).
    Token {
        /// The token id.
        id: u32,
        /// Natural-log probability the model gave it, before temperature and top-p.
        logprob: f32,
    },
    /// Generation ended normally.
    Finished {
        /// Why it ended.
        reason: FinishReason,
        /// Token counts.
        usage: Usage,
    },
    /// Generation failed; nothing more follows.
    Failed(EngineError),
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token was sampled.
    Stop,
    /// `max_tokens` tokens were generated.
    Length,
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Sampled tokens, the end-of-sequence token included.
    pub completion_tokens: u32,
}

/// Why the engine could not finish a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The model failed during a forward step.
    #[error("model error: {0}")]
    Model(String),
    /// The engine thread has stopped.
    #[error("the inference engine has stopped")]
    Stopped,
}
