//! Engine events to text pieces: the one generation path that streaming and non-streaming share.
//!
//! Decoding and stop strings happen here, per request. When a stop string matches, the engine's event
//! stream is dropped, which cancels the sequence on the worker's next step.

use std::collections::VecDeque;
use std::sync::Arc;

use std::future::Future;

use futures::{FutureExt, Stream};
use hearth_engine::{EngineError, Event, EventStream};
use hearth_protocol::{FinishReason, PromptTokensDetails, Usage};
use hearth_text::{IncrementalDecoder, StopMatcher, StopOutcome};

use crate::error::ApiError;
use crate::metrics::RequestObserver;
use crate::model::ChatModel;

/// A generated token with its log-probabilities, as the engine reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    /// The token id.
    pub id: u32,
    /// Natural log of the probability the model gave it.
    pub logprob: f32,
    /// The most likely alternatives, most likely first.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// One piece of a response.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// New text of one choice, with the tokens it came from when log-probabilities were asked for.
    /// Text is empty only when the piece carries tokens whose text a stop string swallowed.
    Text {
        /// Which choice.
        choice: usize,
        /// The new text.
        text: String,
        /// Tokens completed since the last piece of this choice (empty unless logprobs are on).
        tokens: Vec<TokenInfo>,
    },
    /// One choice ended; nothing more follows for it.
    Finish {
        /// Which choice.
        choice: usize,
        /// Why it ended.
        reason: FinishReason,
        /// The stop string that ended it, if one did.
        stop: Option<String>,
    },
    /// Every choice ended; nothing follows.
    Done {
        /// Token counts, summed over choices.
        usage: Usage,
    },
}

/// What the piece stream needs to know about its request.
#[derive(Debug)]
pub struct GenerationRequest {
    /// The model, for detokenization.
    pub model: Arc<ChatModel>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Choices the engine generates.
    pub n: usize,
    /// Whether pieces carry their tokens' log-probabilities.
    pub logprobs: bool,
    /// Records the request's latencies and usage.
    pub observer: RequestObserver,
}

/// Decoding and stop-string state of one choice.
struct Choice {
    decoder: IncrementalDecoder,
    stop: StopMatcher,
    /// Tokens generated, the end-of-sequence token included once the engine reports it.
    generated: u32,
    /// Tokens whose text is not released yet.
    pending: Vec<TokenInfo>,
    finish: Option<FinishReason>,
    /// The completion so far, kept only when content logging is on.
    logged: Option<String>,
}

struct State {
    events: Option<EventStream>,
    model: Arc<ChatModel>,
    choices: Vec<Choice>,
    prompt_tokens: u32,
    /// Prompt tokens the prefix cache supplied.
    cached_tokens: u32,
    logprobs: bool,
    ready: VecDeque<Result<Piece, ApiError>>,
    observer: RequestObserver,
}

impl State {
    /// Releases text (and the tokens behind it) of one choice.
    fn text(&mut self, choice: usize, text: String) {
        let c = &mut self.choices[choice];
        if text.is_empty() {
            return;
        }
        if let Some(logged) = &mut c.logged {
            logged.push_str(&text);
        }
        let tokens = std::mem::take(&mut c.pending);
        self.ready.push_back(Ok(Piece::Text { choice, text, tokens }));
    }

    fn usage(&self) -> Usage {
        let completion_tokens = self.choices.iter().map(|c| c.generated).sum();
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens,
            total_tokens: self.prompt_tokens + completion_tokens,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: self.cached_tokens }),
        }
    }

    /// Ends one choice: its held tokens go out with an empty text, and the engine stops generating it.
    /// Once every choice has ended, the response is done and the event stream is dropped.
    fn finish(&mut self, choice: usize, reason: FinishReason) {
        let c = &mut self.choices[choice];
        c.finish = Some(reason);
        let stop = c.stop.matched().map(str::to_string);
        if let Some(text) = &c.logged {
            tracing::info!(completion = %text, choice, ?reason, "completion");
        }
        let tokens = std::mem::take(&mut c.pending);
        if !tokens.is_empty() {
            self.ready.push_back(Ok(Piece::Text { choice, text: String::new(), tokens }));
        }
        self.ready.push_back(Ok(Piece::Finish { choice, reason, stop }));
        if let Some(events) = &self.events {
            events.cancel(choice);
        }
        if self.choices.iter().all(|c| c.finish.is_some()) {
            self.events = None;
            let usage = self.usage();
            self.observer.finished(self.choices[0].finish.unwrap_or(reason), usage);
            self.ready.push_back(Ok(Piece::Done { usage }));
        }
    }

    fn fail(&mut self, error: ApiError) {
        self.events = None;
        self.observer.failed();
        tracing::warn!(%error, "generation failed");
        self.ready.push_back(Err(error));
    }

    /// Runs decoded text through the choice's stop matcher; returns whether a stop string ended it.
    fn emit(&mut self, choice: usize, text: &str) -> bool {
        match self.choices[choice].stop.push(text) {
            StopOutcome::Continue(t) => {
                self.text(choice, t);
                false
            }
            StopOutcome::Stop(t) => {
                self.text(choice, t);
                self.finish(choice, FinishReason::Stop);
                true
            }
        }
    }

    fn on_event(&mut self, event: Option<Event>) {
        let decode_error = |e: hearth_text::TokenizerError| ApiError::Internal(format!("detokenization failed: {e}"));
        match event {
            Some(Event::Admitted { cached_tokens }) => {
                self.cached_tokens = cached_tokens;
                self.observer.admitted();
            }
            Some(Event::Token { choice, id, logprob, top_logprobs }) => {
                let Some(c) = self.choices.get_mut(choice).filter(|c| c.finish.is_none()) else { return };
                c.generated += 1;
                if self.logprobs {
                    c.pending.push(TokenInfo { id, logprob, top_logprobs });
                }
                self.observer.token();
                match c.decoder.push(&self.model.tokenizer, id) {
                    Ok(Some(text)) => {
                        self.emit(choice, &text);
                    }
                    Ok(None) => {}
                    Err(e) => self.fail(decode_error(e)),
                }
            }
            Some(Event::Finished { choice, reason, usage }) => {
                let Some(c) = self.choices.get_mut(choice).filter(|c| c.finish.is_none()) else { return };
                c.generated = usage.completion_tokens;
                match c.decoder.finish(&self.model.tokenizer) {
                    Ok(rest) => {
                        if self.emit(choice, &rest.unwrap_or_default()) {
                            return;
                        }
                    }
                    Err(e) => return self.fail(decode_error(e)),
                }
                let held = self.choices[choice].stop.finish();
                self.text(choice, held);
                self.finish(
                    choice,
                    match reason {
                        hearth_engine::FinishReason::Stop => FinishReason::Stop,
                        hearth_engine::FinishReason::Length => FinishReason::Length,
                    },
                );
            }
            Some(Event::Failed(e)) => self.fail(e.into()),
            None => self.fail(EngineError::Stopped.into()),
        }
    }
}

/// The text pieces of one request, ending with `Done` or an error. When `abort` resolves (the shutdown
/// grace period is over, or the request's deadline passed) a request still generating ends with the error
/// it resolves to.
pub fn pieces(
    events: EventStream,
    request: GenerationRequest,
    abort: impl Future<Output = ApiError> + Send + 'static,
    log_content: bool,
) -> impl Stream<Item = Result<Piece, ApiError>> + Send {
    let choices = (0..request.n.max(1))
        .map(|_| Choice {
            decoder: IncrementalDecoder::new(),
            stop: StopMatcher::new(request.stop.clone()),
            generated: 0,
            pending: Vec::new(),
            finish: None,
            logged: log_content.then(String::new),
        })
        .collect();
    let state = State {
        events: Some(events),
        model: request.model,
        choices,
        prompt_tokens: request.prompt_tokens as u32,
        cached_tokens: 0,
        logprobs: request.logprobs,
        ready: VecDeque::new(),
        observer: request.observer,
    };
    let abort = abort.boxed().shared();
    futures::stream::unfold((state, abort), |(mut state, abort)| async move {
        loop {
            if let Some(piece) = state.ready.pop_front() {
                return Some((piece, (state, abort)));
            }
            let events = state.events.as_mut()?;
            tokio::select! {
                event = events.recv() => state.on_event(event),
                error = abort.clone() => state.fail(error),
            }
        }
    })
}
