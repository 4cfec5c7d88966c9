//! Engine events to text pieces: the one generation path that streaming and non-streaming share.
//!
//! Decoding and stop strings happen here, per request. When a stop string matches, the engine's event
//! stream is dropped, which cancels the sequence on the worker's next step.

use std::collections::VecDeque;
use std::sync::Arc;

use std::future::Future;

use futures::{FutureExt, Stream};
use hearth_engine::{EngineError, Event, EventStream};
use hearth_protocol::{FinishReason, Usage};
use hearth_text::{IncrementalDecoder, StopMatcher, StopOutcome};

use crate::error::ApiError;
use crate::metrics::RequestObserver;
use crate::model::ServedModel;

/// One piece of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// New text (never empty).
    Text(String),
    /// The end; nothing follows.
    Done {
        /// Why generation ended.
        reason: FinishReason,
        /// Token counts.
        usage: Usage,
    },
}

/// What the piece stream needs to know about its request.
#[derive(Debug)]
pub struct GenerationRequest {
    /// The model, for detokenization.
    pub model: Arc<ServedModel>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Records the request's latencies and usage.
    pub observer: RequestObserver,
}

struct State {
    events: Option<EventStream>,
    model: Arc<ServedModel>,
    decoder: IncrementalDecoder,
    stop: StopMatcher,
    prompt_tokens: u32,
    generated: u32,
    ready: VecDeque<Result<Piece, ApiError>>,
    observer: RequestObserver,
    /// The completion so far, kept only when content logging is on.
    logged: Option<String>,
}

impl State {
    fn text(&mut self, text: String) {
        if !text.is_empty() {
            if let Some(logged) = &mut self.logged {
                logged.push_str(&text);
            }
            self.ready.push_back(Ok(Piece::Text(text)));
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.generated,
            total_tokens: self.prompt_tokens + self.generated,
        }
    }

    /// Ends the response; dropping the event stream cancels any generation still running.
    fn done(&mut self, reason: FinishReason) {
        self.events = None;
        let usage = self.usage();
        self.observer.finished(reason, usage);
        if let Some(text) = &self.logged {
            tracing::info!(completion = %text, ?reason, "chat completion");
        }
        self.ready.push_back(Ok(Piece::Done { reason, usage }));
    }

    fn fail(&mut self, error: ApiError) {
        self.events = None;
        self.observer.failed();
        tracing::warn!(%error, "generation failed");
        self.ready.push_back(Err(error));
    }

    /// Runs decoded text through the stop matcher; returns whether a stop string ended the response.
    fn emit(&mut self, text: &str) -> bool {
        match self.stop.push(text) {
            StopOutcome::Continue(t) => {
                self.text(t);
                false
            }
            StopOutcome::Stop(t) => {
                self.text(t);
                self.done(FinishReason::Stop);
                true
            }
        }
    }

    fn on_event(&mut self, event: Option<Event>) {
        let decode_error = |e: hearth_text::TokenizerError| ApiError::Internal(format!("detokenization failed: {e}"));
        match event {
            Some(Event::Token { id, .. }) => {
                self.generated += 1;
                self.observer.token();
                match self.decoder.push(&self.model.tokenizer, id) {
                    Ok(Some(text)) => {
                        self.emit(&text);
                    }
                    Ok(None) => {}
                    Err(e) => self.fail(decode_error(e)),
                }
            }
            Some(Event::Finished { reason, usage }) => {
                self.generated = usage.completion_tokens;
                match self.decoder.finish(&self.model.tokenizer) {
                    Ok(rest) => {
                        if self.emit(&rest.unwrap_or_default()) {
                            return;
                        }
                    }
                    Err(e) => return self.fail(decode_error(e)),
                }
                let held = self.stop.finish();
                self.text(held);
                self.done(match reason {
                    hearth_engine::FinishReason::Stop => FinishReason::Stop,
                    hearth_engine::FinishReason::Length => FinishReason::Length,
                });
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
    let state = State {
        events: Some(events),
        model: request.model,
        decoder: IncrementalDecoder::new(),
        stop: StopMatcher::new(request.stop),
        prompt_tokens: request.prompt_tokens as u32,
        generated: 0,
        ready: VecDeque::new(),
        observer: request.observer,
        logged: log_content.then(String::new),
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
