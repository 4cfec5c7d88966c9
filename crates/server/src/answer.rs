//! A chat answer's text pieces, with the function calls in them parsed out: the stream that both the SSE
//! writer and the JSON fold consume, so streamed and whole answers carry the same calls.

use futures::{Stream, StreamExt};
use hearth_protocol::FinishReason;
use hearth_structured::tools::{CallParser, Family, ToolEvent};

use crate::error::ApiError;
use crate::routes::generation::PieceStream;
use crate::stream::Piece;

/// One piece of a chat answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatPiece {
    /// Content, a choice's end, or the end of the answer, as [`Piece`] has them.
    Piece(Piece),
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

/// The pieces of an answer whose calls are written in `family` (plain pieces when `None`). A choice that
/// made calls and stopped on its own ends with `finish_reason: tool_calls`.
pub fn chat_pieces(
    pieces: PieceStream,
    family: Option<Family>,
    n: usize,
) -> impl Stream<Item = Result<ChatPiece, ApiError>> + Send {
    let mut parsers: Option<Vec<CallParser>> = family.map(|f| (0..n).map(|_| f.parser()).collect());
    pieces.flat_map(move |piece| {
        let out: Vec<Result<ChatPiece, ApiError>> = match (piece, parsers.as_mut()) {
            (Ok(Piece::Text { choice, text, tokens }), Some(parsers)) => {
                let events = parsers[choice].push(&text);
                with_tokens(choice, events, tokens)
            }
            (Ok(Piece::Finish { choice, reason }), Some(parsers)) => {
                let parser = &mut parsers[choice];
                let mut out = with_tokens(choice, parser.finish(), Vec::new());
                let reason = match reason {
                    FinishReason::Stop if parser.calls() > 0 => FinishReason::ToolCalls,
                    other => other,
                };
                out.push(Ok(ChatPiece::Piece(Piece::Finish { choice, reason })));
                out
            }
            (piece, _) => vec![piece.map(ChatPiece::Piece)],
        };
        futures::stream::iter(out)
    })
}

/// The pieces for one choice's parser events; the tokens behind them ride on the first content piece, or
/// on an empty one when there is none.
fn with_tokens(
    choice: usize,
    events: Vec<ToolEvent>,
    mut tokens: Vec<crate::stream::TokenInfo>,
) -> Vec<Result<ChatPiece, ApiError>> {
    let mut out: Vec<Result<ChatPiece, ApiError>> = events
        .into_iter()
        .map(|event| {
            Ok(match event {
                ToolEvent::Content(text) => {
                    ChatPiece::Piece(Piece::Text { choice, text, tokens: std::mem::take(&mut tokens) })
                }
                ToolEvent::Call { index, name } => {
                    ChatPiece::Call { choice, index, id: format!("call_{}", crate::app::random_id()), name }
                }
                ToolEvent::Arguments { index, text } => ChatPiece::Arguments { choice, index, text },
            })
        })
        .collect();
    if !tokens.is_empty() {
        out.push(Ok(ChatPiece::Piece(Piece::Text { choice, text: String::new(), tokens })));
    }
    out
}
