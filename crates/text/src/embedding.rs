//! The tokenizer of an embedding model, read from its `tokenizer.json`.

use std::path::Path;

use crate::tokenizer::TokenizerError;

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
        let encoding = self.inner.encode_fast(text, true).map_err(|e| TokenizerError::Library(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
