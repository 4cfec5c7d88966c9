//! Engine events to text pieces: the one generation path that streaming and non-streaming share.
//!
//! Decoding and stop strings happen here, per request. When a stop string matches, the engine's event
//! stream is dropped, which cancels the sequence on the worker's next step.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use hearth_engine::{EngineError, Event, EventStream};
use hearth_protocol::{FinishReason, Usage};
use hearth_text::{IncrementalDecoder, StopMatcher, StopOutcome};

use crate::error::ApiError;
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

struct State {
    events: Option<EventStream>,
    model: Arc<ServedModel>,
    decoder: IncrementalDecoder,
    stop: StopMatcher,
    prompt_tokens: u32,
    generated: u32,
    ready: VecDeque<Result<Piece, ApiError>>,
}

impl State {
    fn text(&mut self, text: String) {
        if !text.is_empty() {
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
        self.ready.push_back(Ok(Piece::Done { reason, usage }));
    }

    fn fail(&mut self, error: ApiError) {
        self.events = None;
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

/// The text pieces of one request, ending with `Done` or an error.
pub fn pieces(
    events: EventStream,
    model: Arc<ServedModel>,
    stop: Vec<String>,
    prompt_tokens: usize,
) -> impl Stream<Item = Result<Piece, ApiError>> + Send {
    let state = State {
        events: Some(events),
        model,
        decoder: IncrementalDecoder::new(),
        stop: StopMatcher::new(stop),
        prompt_tokens: prompt_tokens as u32,
        generated: 0,
        ready: VecDeque::new(),
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(piece) = state.ready.pop_front() {
                return Some((piece, state));
            }
            let event = state.events.as_mut()?.recv().await;
            state.on_event(event);
        }
    })
}
