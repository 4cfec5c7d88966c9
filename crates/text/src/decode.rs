//! Token ids to text deltas, one request at a time.

use crate::tokenizer::{Tokenizer, TokenizerError};

/// Turns a growing list of token ids into text deltas that never split a UTF-8 character.
///
/// Byte-level BPE tokens can end in the middle of a character, and some tokenizers change how a token
/// reads depending on its left neighbour, so each delta is the difference between decoding a short
/// window of recent ids with and without the newest ones. A delta is released only once it no
/// longer ends in an incomplete character (U+FFFD); concatenated deltas equal decoding all ids at once.
#[derive(Debug, Default, Clone)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    /// Start of the window re-decoded for context.
    prefix_offset: usize,
    /// End of the text already released.
    read_offset: usize,
}

impl IncrementalDecoder {
    /// A decoder with no tokens yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one token; returns the text it completes, if any.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let released = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let window = tokenizer.decode(&self.ids[self.prefix_offset..])?;
        if window.len() <= released.len() || window.ends_with('\u{FFFD}') || !window.starts_with(&released) {
            return Ok(None);
        }
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        Ok(Some(window[released.len()..].to_string()))
    }

    /// Text still held back at the end of generation (an incomplete character decodes as U+FFFD).
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<Option<String>, TokenizerError> {
        if self.read_offset == self.ids.len() {
            return Ok(None);
        }
        let released = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let window = tokenizer.decode(&self.ids[self.prefix_offset..])?;
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        let rest = window.get(released.len()..).unwrap_or_default();
        Ok((!rest.is_empty()).then(|| rest.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{GgufVocab, TokenType};

    /// GPT-2's printable stand-in for each byte, so the vocabulary can be all 256 single bytes.
    fn byte_char(b: u8) -> char {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        if printable {
            char::from(b)
        } else {
            let rank = (0..b)
                .filter(|&x| !((b'!'..=b'~').contains(&x) || (0xA1..=0xAC).contains(&x) || (0xAE..=0xFF).contains(&x)))
                .count();
            char::from_u32(256 + rank as u32).unwrap()
        }
    }

    /// A byte-level tokenizer with one token per byte, plus `he` + `llo` merges and one control token.
    fn byte_tokenizer() -> Tokenizer {
        let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
        tokens.extend(["he".into(), "ll".into(), "llo".into(), "<|end|>".into()]);
        let mut token_types = vec![TokenType::Normal; tokens.len()];
        token_types[259] = TokenType::Control;
        let vocab = GgufVocab {
            model: "gpt2".into(),
            tokens,
            token_types,
            merges: vec!["h e".into(), "l l".into(), "ll o".into()],
            eos: Some(259),
            ..GgufVocab::default()
        };
        Tokenizer::from_gguf(&vocab).unwrap()
    }

    fn deltas(tokenizer: &Tokenizer, ids: &[u32]) -> Vec<String> {
        let mut decoder = IncrementalDecoder::new();
        let mut out: Vec<String> = ids.iter().filter_map(|&id| decoder.push(tokenizer, id).unwrap()).collect();
        out.extend(decoder.finish(tokenizer).unwrap());
        out
    }

    #[test]
    fn token_bytes_undo_the_byte_level_mapping() {
        let t = byte_tokenizer();
        for b in 0..=255u8 {
            assert_eq!(t.token_bytes(b as u32), [b]);
        }
        assert_eq!(t.token_bytes(258), b"llo");
        assert_eq!(t.token_bytes(259), b"<|end|>");
        assert!(t.token_bytes(10_000).is_empty());
    }

    #[test]
    fn multi_byte_characters_are_released_whole() {
        let t = byte_tokenizer();
        let ids = t.encode_text("a🙂é b").unwrap();
        assert_eq!(ids.len(), 1 + 4 + 2 + 2, "one token per byte");
        assert_eq!(deltas(&t, &ids), ["a", "🙂", "é", " ", "b"]);
    }

    #[test]
    fn deltas_concatenate_to_the_full_decode() {
        let t = byte_tokenizer();
        let ids = t.encode_text("hello, wörld — 日本").unwrap();
        assert_eq!(deltas(&t, &ids).concat(), t.decode(&ids).unwrap());
        assert_eq!(t.decode(&ids).unwrap(), "hello, wörld — 日本");
    }

    #[test]
    fn merges_apply_and_control_tokens_are_not_text() {
        let t = byte_tokenizer();
        assert_eq!(t.encode_text("hello").unwrap(), [256, 258]);
        assert_eq!(t.encode_with_control("he<|end|>").unwrap(), [256, 259]);
        assert_eq!(t.encode_text("<|end|>").unwrap().len(), 7, "user text never becomes a control token");
        assert_eq!(deltas(&t, &[256, 259, 258]), ["he", "llo"]);
    }

    #[test]
    fn a_truncated_character_is_flushed_at_the_end() {
        let t = byte_tokenizer();
        let ids = t.encode_text("é").unwrap();
        assert_eq!(deltas(&t, &ids[..1]), ["\u{FFFD}"]);
    }
}
