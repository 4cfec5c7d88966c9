//! What the engine sends back for one request.

/// One message on a request's event stream. The stream ends after every choice's `Finished`, or after
/// one `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The request was admitted to the batch; sent once, before any token.
    Admitted {
        /// Prompt tokens the prefix cache supplied.
        cached_tokens: u32,
    },
    /// A generated token (end-of-sequence tokens are not sent; they only finish the choice).
    Token {
        /// Which of the request's `n` choices it extends.
        choice: usize,
        /// The token id.
        id: u32,
        /// Natural-log probability the model gave it, before any bias, penalty or filter.
        logprob: f32,
        /// The `top_logprobs` most likely tokens at this position with their log-probabilities.
        top_logprobs: Vec<(u32, f32)>,
    },
    /// One choice ended normally.
    Finished {
        /// Which choice.
        choice: usize,
        /// Why it ended.
        reason: FinishReason,
        /// Token counts of this choice.
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
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: u32,
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
