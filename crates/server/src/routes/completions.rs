//! `POST /v1/completions`: the legacy text completions, one engine request per prompt, choices
//! indexed `prompt × n + choice`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use futures::{Stream, StreamExt};
use hearth_protocol::{
    Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, FinishReason, TopLogprobs, Usage,
};

use crate::app::AppState;
use crate::auth::KeyName;
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::model::ChatModel;
use crate::prepare;
use crate::routes::generation::{
    done_event, json_event, prepare_blocking, sse_response, submit, token_text, Origin, PieceStream, ResponseMeta,
};
use crate::stream::{Piece, TokenInfo};

/// The handler.
pub async fn create(
    State(state): State<AppState>,
    key: Option<Extension<KeyName>>,
    AppJson(req): AppJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    state.accept_request()?;
    if state.config.log_content {
        tracing::info!(prompt = ?req.prompt, "completion request");
    }
    let model = state.models.chat(Some(&req.model)).await?;
    let max_tokens_limit = state.config.max_tokens_limit;
    let preparing = model.clone();
    let prepared = prepare_blocking(&state, move || prepare::completion(&req, &preparing, max_tokens_limit)).await?;
    let output = prepared.output;
    let key = key.map(|Extension(KeyName(name))| name);
    let n = output.n;
    let mut streams = Vec::new();
    let mut echoes = Vec::new();
    for (i, (generate, echo)) in prepared.prompts.into_iter().enumerate() {
        let pieces = submit(&state, &model, Origin { key: key.clone(), arrived }, generate, &output)?;
        streams.push(pieces.map(move |piece| offset(piece, i * n)).boxed());
        echoes.extend(std::iter::repeat_n(echo, n));
    }
    let pieces = merge(streams);
    let meta = ResponseMeta::new("cmpl", &model.id);
    let writer = Writer { model, meta, logprobs: output.logprobs.is_some(), offsets: vec![0; echoes.len()] };
    if output.stream {
        Ok(sse_response(sse_events(writer, pieces, echoes, output.include_usage)))
    } else {
        Ok(Json(fold(writer, pieces, echoes).await?).into_response())
    }
}

/// Shifts one prompt's choice indices to their place in the response.
fn offset(piece: Result<Piece, ApiError>, by: usize) -> Result<Piece, ApiError> {
    piece.map(|piece| match piece {
        Piece::Text { choice, text, tokens } => Piece::Text { choice: choice + by, text, tokens },
        Piece::Finish { choice, reason, stop } => Piece::Finish { choice: choice + by, reason, stop },
        done => done,
    })
}

/// The pieces of every prompt as one stream, with a single `Done` carrying the summed usage once all
/// prompts are done (without `prompt_tokens_details`, which the legacy shape lacks). The first error ends it.
fn merge(streams: Vec<PieceStream>) -> PieceStream {
    let mut left = streams.len();
    let mut total = Usage::default();
    futures::stream::select_all(streams)
        .filter_map(move |piece| {
            let out = match piece {
                Ok(Piece::Done { usage }) => {
                    left -= 1;
                    total.prompt_tokens += usage.prompt_tokens;
                    total.completion_tokens += usage.completion_tokens;
                    total.total_tokens += usage.total_tokens;
                    (left == 0).then_some(Ok(Piece::Done { usage: total }))
                }
                other => Some(other),
            };
            futures::future::ready(out)
        })
        .scan(false, |failed, piece| {
            let out = (!*failed).then(|| {
                *failed = piece.is_err();
                piece
            });
            futures::future::ready(out)
        })
        .boxed()
}

/// Turns pieces into choices' text and legacy log-probabilities, tracking each choice's text offset.
struct Writer {
    model: Arc<ChatModel>,
    meta: ResponseMeta,
    logprobs: bool,
    /// Characters written so far, per choice.
    offsets: Vec<usize>,
}

impl Writer {
    fn logprobs(&mut self, choice: usize, tokens: &[TokenInfo]) -> Option<CompletionLogprobs> {
        if !self.logprobs {
            return None;
        }
        let mut out = CompletionLogprobs::default();
        for t in tokens {
            let (text, _) = token_text(&self.model, t.id);
            out.text_offset.push(self.offsets[choice] as u32);
            self.offsets[choice] += text.chars().count();
            out.tokens.push(text);
            out.token_logprobs.push(Some(f64::from(t.logprob)));
            let top = t.top_logprobs.iter().map(|&(id, lp)| (token_text(&self.model, id).0, f64::from(lp))).collect();
            out.top_logprobs.push(Some(TopLogprobs(top)));
        }
        Some(out)
    }

    fn echo(&mut self, choice: usize, echo: &Option<String>) -> String {
        let text = echo.clone().unwrap_or_default();
        self.offsets[choice] += text.chars().count();
        text
    }

    fn body(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> Completion {
        Completion {
            id: self.meta.id.clone(),
            object: "text_completion".into(),
            created: self.meta.created,
            model: self.meta.model.clone(),
            choices,
            usage,
        }
    }
}

/// The non-streaming body: every piece, folded.
async fn fold(
    mut writer: Writer,
    mut pieces: PieceStream,
    echoes: Vec<Option<String>>,
) -> Result<Completion, ApiError> {
    let mut choices: Vec<CompletionChoice> = echoes
        .iter()
        .enumerate()
        .map(|(index, echo)| CompletionChoice {
            index: index as u32,
            text: writer.echo(index, echo),
            logprobs: writer.logprobs.then(CompletionLogprobs::default),
            finish_reason: None,
        })
        .collect();
    while let Some(piece) = pieces.next().await {
        match piece? {
            Piece::Text { choice, text, tokens } => {
                let c = &mut choices[choice];
                c.text.push_str(&text);
                if let (Some(all), Some(new)) = (&mut c.logprobs, writer.logprobs(choice, &tokens)) {
                    all.tokens.extend(new.tokens);
                    all.token_logprobs.extend(new.token_logprobs);
                    all.top_logprobs.extend(new.top_logprobs);
                    all.text_offset.extend(new.text_offset);
                }
            }
            Piece::Finish { choice, reason, .. } => choices[choice].finish_reason = Some(reason),
            Piece::Done { usage } => {
                for c in &mut choices {
                    c.finish_reason.get_or_insert(FinishReason::Stop);
                }
                return Ok(writer.body(choices, Some(usage)));
            }
        }
    }
    Err(ApiError::Internal("generation ended without a finish reason".into()))
}

/// The streaming body: each choice's echo (if any), text chunks, a finish chunk per choice, maybe a
/// usage chunk, then `[DONE]`.
fn sse_events(
    mut writer: Writer,
    pieces: PieceStream,
    echoes: Vec<Option<String>>,
    include_usage: bool,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let choice = |index: usize, text: String, logprobs, finish_reason| CompletionChoice {
        index: index as u32,
        text,
        logprobs,
        finish_reason,
    };
    let first: Vec<SseEvent> = echoes
        .iter()
        .enumerate()
        .filter(|(_, echo)| echo.as_deref().is_some_and(|e| !e.is_empty()))
        .map(|(index, echo)| {
            let text = writer.echo(index, echo);
            json_event(&writer.body(vec![choice(index, text, None, None)], None))
        })
        .collect();
    let body = pieces.flat_map(move |piece| {
        let events: Vec<SseEvent> = match piece {
            Ok(Piece::Text { choice: index, text, tokens }) => {
                let logprobs = writer.logprobs(index, &tokens);
                vec![json_event(&writer.body(vec![choice(index, text, logprobs, None)], None))]
            }
            Ok(Piece::Finish { choice: index, reason, .. }) => {
                let logprobs = writer.logprobs.then(CompletionLogprobs::default);
                vec![json_event(&writer.body(vec![choice(index, String::new(), logprobs, Some(reason))], None))]
            }
            Ok(Piece::Done { usage }) => {
                let mut events = Vec::new();
                if include_usage {
                    events.push(json_event(&writer.body(Vec::new(), Some(usage))));
                }
                events.push(done_event());
                events
            }
            Err(error) => vec![error.sse_event(), done_event()],
        };
        futures::stream::iter(events)
    });
    futures::stream::iter(first).chain(body).map(Ok)
}
