//! A chat answer's text pieces, with the reasoning split off and the function calls parsed out: the
//! stream that every chat-shaped writer (chat completions, Responses, Messages) consumes, so streamed and
//! whole answers carry the same reasoning and calls.

use futures::{Stream, StreamExt};
use hearth_protocol::FinishReason;
use hearth_structured::reasoning::{ReasoningEvent, ReasoningParser, ReasoningStart};
use hearth_structured::tools::{CallParser, Family, ToolEvent};

use crate::error::ApiError;
use crate::routes::generation::PieceStream;
use crate::stream::{Piece, TokenInfo};

/// One piece of a chat answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatPiece {
    /// Content, a choice's end, or the end of the answer, as [`Piece`] has them.
    Piece(Piece),
    /// Reasoning text of a choice, before its answer.
    Reasoning {
        /// Which choice.
        choice: usize,
        /// The new reasoning text.
        text: String,
    },
    /// A choice begins call `index`.
    Call {
        /// Which choice.
        choice: usize,
        /// The call's position in the choice's message.
        index: usize,
        /// `call_…`.
        id: String,
        /// The function's name.
        name: String,
    },
    /// The next part of a call's arguments.
    Arguments {
        /// Which choice.
        choice: usize,
        /// The call's position in the choice's message.
        index: usize,
        /// The new JSON text.
        text: String,
    },
}

/// How the answers of one request are parsed.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerFormat {
    /// The format calls are written in, when the request offers functions.
    pub calls: Option<Family>,
    /// Where reasoning starts, for a model that thinks.
    pub reasoning: Option<ReasoningStart>,
}

/// One choice's parsers.
struct Answer {
    reasoning: Option<ReasoningParser>,
    calls: Option<CallParser>,
}

impl Answer {
    fn new(format: AnswerFormat) -> Self {
        Self { reasoning: format.reasoning.map(ReasoningParser::new), calls: format.calls.map(|f| f.parser()) }
    }

    /// The pieces for the next text; the tokens behind it ride on the first content piece, or on an empty
    /// one when there is none.
    fn push(&mut self, choice: usize, text: &str, tokens: Vec<TokenInfo>) -> Vec<Result<ChatPiece, ApiError>> {
        let parts = match &mut self.reasoning {
            Some(parser) => parser.push(text),
            None => vec![ReasoningEvent::Content(text.to_string())],
        };
        self.pieces(choice, parts, tokens, false)
    }

    /// The pieces for what the parsers still hold, then the choice's end: a choice that made calls and
    /// stopped on its own ends with `tool_calls`.
    fn finish(
        &mut self,
        choice: usize,
        reason: FinishReason,
        stop: Option<String>,
    ) -> Vec<Result<ChatPiece, ApiError>> {
        let parts = self.reasoning.as_mut().map(ReasoningParser::finish).unwrap_or_default();
        let mut out = self.pieces(choice, parts, Vec::new(), true);
        let reason = match reason {
            FinishReason::Stop if self.calls.as_ref().is_some_and(|p| p.calls() > 0) => FinishReason::ToolCalls,
            other => other,
        };
        out.push(Ok(ChatPiece::Piece(Piece::Finish { choice, reason, stop })));
        out
    }

    fn pieces(
        &mut self,
        choice: usize,
        parts: Vec<ReasoningEvent>,
        mut tokens: Vec<TokenInfo>,
        last: bool,
    ) -> Vec<Result<ChatPiece, ApiError>> {
        let mut events = Vec::new();
        let mut out = Vec::new();
        for part in parts {
            match part {
                ReasoningEvent::Reasoning(text) => out.push(Ok(ChatPiece::Reasoning { choice, text })),
                ReasoningEvent::Content(text) => match &mut self.calls {
                    Some(parser) => events.extend(parser.push(&text)),
                    None => events.push(ToolEvent::Content(text)),
                },
            }
        }
        if last {
            events.extend(self.calls.as_mut().map(CallParser::finish).unwrap_or_default());
        }
        for event in events {
            out.push(Ok(match event {
                ToolEvent::Content(text) => {
                    ChatPiece::Piece(Piece::Text { choice, text, tokens: std::mem::take(&mut tokens) })
                }
                ToolEvent::Call { index, name } => {
                    ChatPiece::Call { choice, index, id: format!("call_{}", crate::app::random_id()), name }
                }
                ToolEvent::Arguments { index, text } => ChatPiece::Arguments { choice, index, text },
            }));
        }
        if !tokens.is_empty() {
            out.push(Ok(ChatPiece::Piece(Piece::Text { choice, text: String::new(), tokens })));
        }
        out
    }
}

/// The pieces of `n` answers written as `format` says.
pub fn chat_pieces(
    pieces: PieceStream,
    format: AnswerFormat,
    n: usize,
) -> impl Stream<Item = Result<ChatPiece, ApiError>> + Send {
    let plain = format.calls.is_none() && format.reasoning.is_none();
    let mut answers: Vec<Answer> = (0..n).map(|_| Answer::new(format)).collect();
    pieces.flat_map(move |piece| {
        let out: Vec<Result<ChatPiece, ApiError>> = match piece {
            Ok(Piece::Text { choice, text, tokens }) if !plain => answers[choice].push(choice, &text, tokens),
            Ok(Piece::Finish { choice, reason, stop }) if !plain => answers[choice].finish(choice, reason, stop),
            piece => vec![piece.map(ChatPiece::Piece)],
        };
        futures::stream::iter(out)
    })
}

/// Builds one wire body (a Responses response, an Anthropic message) from an answer's pieces, returning
/// each piece's stream events as it goes, so a streamed and a whole answer come from the same calls.
pub trait BodyWriter {
    /// What one piece adds to the stream.
    type Events;
    /// The whole body.
    type Body;
    /// Adds one piece; returns its events.
    fn piece(&mut self, piece: ChatPiece) -> Self::Events;
    /// The whole body, once the pieces have ended.
    fn finished(self) -> Option<Self::Body>;
}

/// The whole body: every piece through `writer`, its events dropped.
pub async fn fold_body<W: BodyWriter>(
    mut writer: W,
    pieces: impl Stream<Item = Result<ChatPiece, ApiError>>,
) -> Result<W::Body, ApiError> {
    let mut pieces = std::pin::pin!(pieces);
    while let Some(piece) = pieces.next().await {
        writer.piece(piece?);
    }
    writer.finished().ok_or_else(|| ApiError::Internal("generation ended without a finish reason".into()))
}
