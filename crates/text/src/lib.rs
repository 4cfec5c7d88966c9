//! Text <-> tokens: everything Hearth does with text before the engine and after it.
//!
//! No HTTP and no candle here: the server hands in plain strings and token ids.
//!
//! # Layout
//! - [`tokenizer`] — [`Tokenizer`], built from GGUF vocabulary metadata ([`GgufVocab`]); encodes a rendered
//!   chat prompt so that message content can never produce control tokens.
//! - `special` — cuts text at control and user-defined tokens before the vocabulary's algorithm runs.
//! - `spm` — SentencePiece (`llama` vocabularies): merges by score, byte fallback.
//! - `bpe` — byte-level BPE (`gpt2` vocabularies) with the pre-tokenizer splits llama.cpp uses.
//! - [`template`] — [`ChatTemplate`], the model's Jinja chat template rendered with minijinja.
//! - [`decode`] — [`IncrementalDecoder`], token ids to UTF-8-safe text deltas.
//! - [`stop`] — [`StopMatcher`], holds back text that may become a stop string.
//! - [`embedding`] — [`EmbeddingTokenizer`], an encoder model's `tokenizer.json`.
#![warn(missing_docs)]

mod bpe;
pub mod decode;
pub mod embedding;
mod special;
mod spm;
pub mod stop;
mod strftime;
pub mod template;
pub mod tokenizer;

pub use decode::IncrementalDecoder;
pub use embedding::EmbeddingTokenizer;
pub use stop::{StopMatcher, StopOutcome};
pub use template::{ChatTemplate, PromptMessage, RenderedPrompt, TemplateError};
pub use tokenizer::{GgufVocab, TokenType, Tokenizer, TokenizerError};
