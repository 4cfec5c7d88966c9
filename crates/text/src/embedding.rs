//! The tokenizer of an embedding model, read from its `tokenizer.json`.
//!
//! BERT's pre-tokenizer splits at every whitespace and ASCII punctuation character, and its normalizer
//! works character by character, so a long text is encoded in chunks cut after such characters and the
//! encoding stops once the tokens pass the caller's limit. Other pre-tokenizers get the whole text at once.

use std::path::Path;

use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::Encoding;

use crate::tokenizer::TokenizerError;

/// About how much text is encoded at once.
const CHUNK_BYTES: usize = 8 * 1024;
/// The longest chunk encoded at all: a text that cannot be cut into chunks this short is refused.
const MAX_CHUNK_BYTES: usize = 64 * 1024;

/// Text to token ids for an encoder model such as BERT: special tokens (`[CLS]`, `[SEP]`) added,
/// never truncated or padded (length limits are the caller's to enforce, batching pads itself).
#[derive(Clone)]
pub struct EmbeddingTokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for EmbeddingTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingTokenizer").field("vocab_size", &self.vocab_size()).finish()
    }
}

impl EmbeddingTokenizer {
    /// Reads `tokenizer.json`, dropping any truncation and padding it configures.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::Invalid(format!("{}: {e}", path.display())))?;
        inner.with_truncation(None).map_err(|e| TokenizerError::Library(e.to_string()))?;
        inner.with_padding(None);
        Ok(Self { inner })
    }

    /// The ids of `text`, special tokens included.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_within(text, usize::MAX)
    }

    /// [`Self::encode`], or [`TokenizerError::TooLong`] as soon as the text proves to have more than
    /// `limit` tokens. With BERT's pre-tokenizer, a text with a stretch that cannot be cut into chunks of
    /// [`MAX_CHUNK_BYTES`] (no whitespace or ASCII punctuation) is [`TokenizerError::Uncut`].
    pub fn encode_within(&self, text: &str, limit: usize) -> Result<Vec<u32>, TokenizerError> {
        let library = |e: tokenizers::Error| TokenizerError::Library(e.to_string());
        if !matches!(self.inner.get_pre_tokenizer(), Some(PreTokenizerWrapper::BertPreTokenizer(_))) {
            return Ok(self.inner.encode_fast(text, true).map_err(library)?.get_ids().to_vec());
        }
        let (mut chunks, mut tokens, mut start) = (Vec::new(), 0, 0);
        while start < text.len() {
            let end = cut(text, start + CHUNK_BYTES).unwrap_or(text.len());
            if end - start > MAX_CHUNK_BYTES {
                return Err(TokenizerError::Uncut { max: MAX_CHUNK_BYTES });
            }
            let chunk = self.inner.encode_fast(&text[start..end], false).map_err(library)?;
            tokens += chunk.len();
            if tokens > limit {
                return Err(TokenizerError::TooLong { limit, at_least: tokens });
            }
            chunks.push(chunk);
            start = end;
        }
        let merged = Encoding::merge(chunks, true);
        Ok(self.inner.post_process(merged, None, true).map_err(library)?.get_ids().to_vec())
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// The first place at or after byte `from` where BERT's pre-tokenizer splits anyway: right after whitespace
/// or ASCII punctuation (the one dropped, the other a word of its own), before the end of `text`.
fn cut(text: &str, from: usize) -> Option<usize> {
    let from = (from..text.len()).find(|&i| text.is_char_boundary(i))?;
    text[from..]
        .char_indices()
        .map(|(i, c)| (from + i + c.len_utf8(), c))
        .find_map(|(end, c)| ((c.is_whitespace() || c.is_ascii_punctuation()) && end < text.len()).then_some(end))
}
