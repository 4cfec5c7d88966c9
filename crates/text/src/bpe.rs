//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): GPT-2, Llama 3, Qwen 2/2.5/3, SmolLM.
//!
//! Text is first split into words by the regexes of its pre-tokenizer (`tokenizer.ggml.pre`), each
//! applied to the pieces the previous one left (matches and the text between them both become pieces),
//! then every word's bytes are written as GPT-2's printable characters and merged by rank. The regexes
//! are the ones llama.cpp runs for each name; an unknown name is an error rather than a guess, because a
//! wrong split silently changes every prompt.
//!
//! A long text is encoded in chunks ([`cut`]) so that the `tokenizers` library's bookkeeping, many bytes
//! per byte of text, stays small, and so that a caller can stop once it has seen enough tokens.

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use crate::tokenizer::TokenizerError;

/// GPT-2's split: contractions, letters, numbers and other runs, each with one optional leading space.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's split: contractions in any case, words with one leading non-letter, numbers in up to three
/// digits, punctuation runs with their newlines, and newline and space runs.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2's split: Llama 3's with every digit on its own.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split llama.cpp uses when a file names no pre-tokenizer (or `default`).
const DEFAULT: [&str; 4] = [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];

/// One family of pre-tokenizer names that split text the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PreTokenizer {
    /// The split regexes, applied in order.
    regexes: &'static [&'static str],
    /// A word that is a vocabulary entry as a whole is taken as is, merges or not (llama.cpp's
    /// `ignore_merges`, set for the Llama 3 names).
    pub ignore_merges: bool,
    /// Whether BOS is added when the file does not say (`tokenizer.ggml.add_bos_token` absent).
    pub default_add_bos: bool,
}

/// The `tokenizer.ggml.pre` names we split exactly as llama.cpp does.
pub const SUPPORTED_PRE: &[&str] = &[
    "default",
    "gpt-2",
    "phi-2",
    "mpt",
    "olmo",
    "exaone4",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "dbrx",
    "smaug-bpe",
    "qwen2",
    "deepseek-r1-qwen",
    "megrez",
    "stablelm2",
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
];

impl PreTokenizer {
    /// The pre-tokenizer that llama.cpp maps `name` to (`None`: the file names none).
    pub fn from_name(name: Option<&str>) -> Result<Self, TokenizerError> {
        let split = |regexes, ignore_merges, default_add_bos| Self { regexes, ignore_merges, default_add_bos };
        Ok(match name.unwrap_or("default") {
            "default" => split(&DEFAULT, false, false),
            "gpt-2" | "phi-2" | "mpt" | "olmo" | "exaone4" => split(&[GPT2], false, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => split(&[LLAMA3], true, true),
            "dbrx" | "smaug-bpe" => split(&[LLAMA3], false, false),
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" => split(&[QWEN2], false, false),
            // Each digit on its own first, then GPT-2's split.
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" => {
                split(&[r"\p{N}", GPT2], false, false)
            }
            other => return Err(TokenizerError::UnsupportedPre(other.to_string())),
        })
    }

    /// The `tokenizers` pre-tokenizer: the splits, then GPT-2's byte-to-character mapping.
    fn build(&self) -> Result<PreTokenizerWrapper, TokenizerError> {
        let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
        for regex in self.regexes {
            let split = Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
                .map_err(library)?;
            steps.push(split.into());
        }
        steps.push(ByteLevel::new(false, false, false).into());
        Ok(Sequence::new(steps).into())
    }
}

/// Byte-level BPE over one vocabulary.
#[derive(Clone)]
pub(crate) struct ByteLevelBpe {
    /// Boxed: a `tokenizers::Tokenizer` is over a kilobyte, and [`crate::tokenizer`] keeps one beside the
    /// much smaller SentencePiece state in an enum.
    inner: Box<tokenizers::Tokenizer>,
}

impl ByteLevelBpe {
    /// Builds the merges of `tokens` (indexed by id) and `merges` (`"left right"`, by rank).
    pub fn new(tokens: &[String], merges: &[String], pre: PreTokenizer) -> Result<Self, TokenizerError> {
        let ids: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(id, t)| (t.clone(), id as u32)).collect();
        let merges = merges
            .iter()
            .map(|m| {
                // llama.cpp splits at the first space after the first character.
                let cut = m.char_indices().skip(1).find(|&(_, c)| c == ' ').map(|(i, _)| i);
                cut.map(|i| (m[..i].to_string(), m[i + 1..].to_string()))
                    .ok_or_else(|| TokenizerError::Invalid(format!("merge without a space: {m:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe =
            BPE::builder().vocab_and_merges(ids, merges).ignore_merges(pre.ignore_merges).build().map_err(library)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre.build()?));
        Ok(Self { inner: Box::new(inner) })
    }

    /// Appends the ids of `text` to `out`.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        out.extend_from_slice(self.inner.encode_fast(text, false).map_err(library)?.get_ids());
        Ok(())
    }
}

/// The first place at or after byte `from` where `text` can be cut without changing its tokens: between an
/// ASCII letter and a space; `None` if there is none.
///
/// Every supported split puts a word boundary there: no pattern matches a letter followed by a space (a
/// space only leads a word, and whitespace runs hold no letters), the patterns look ahead at most one
/// character and never behind, and a space is always the start of the next match. So the matches on
/// either side are the matches of the whole text, and BPE never merges across a match.
pub(crate) fn cut(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    (from.max(1)..bytes.len()).find(|&i| bytes[i] == b' ' && bytes[i - 1].is_ascii_alphabetic())
}

fn library(e: tokenizers::Error) -> TokenizerError {
    TokenizerError::Library(e.to_string())
}

/// Whether byte-level BPE shows byte `b` as the character with the same code.
fn printable(b: u8) -> bool {
    (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
}

/// The byte that byte-level BPE (GPT-2) writes as `c`: printable bytes as themselves, the others as
/// U+0100 onwards in byte order.
fn byte_of_char(c: char) -> Option<u8> {
    let code = c as u32;
    if code < 256 {
        return printable(code as u8).then_some(code as u8);
    }
    let rank = code.checked_sub(256)? as usize;
    (0..=255u8).filter(|&b| !printable(b)).nth(rank)
}

/// The bytes an ordinary byte-level token stands for (a character outside the mapping stands for itself).
pub(crate) fn token_bytes(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len());
    for c in text.chars() {
        match byte_of_char(c) {
            Some(b) => bytes.push(b),
            None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_name_builds_and_unknown_names_are_errors() {
        for name in SUPPORTED_PRE {
            PreTokenizer::from_name(Some(name)).unwrap().build().unwrap();
        }
        assert_eq!(PreTokenizer::from_name(None).unwrap(), PreTokenizer::from_name(Some("default")).unwrap());
        let err = PreTokenizer::from_name(Some("tekken")).unwrap_err();
        assert!(err.to_string().contains("`tekken`"), "{err}");
    }

    #[test]
    fn the_llama3_names_ignore_merges_and_want_bos() {
        let llama3 = PreTokenizer::from_name(Some("llama-bpe")).unwrap();
        assert!(llama3.ignore_merges && llama3.default_add_bos);
        let qwen2 = PreTokenizer::from_name(Some("qwen2")).unwrap();
        assert!(!qwen2.ignore_merges && !qwen2.default_add_bos);
    }

    /// A vocabulary of the 256 byte characters and a few merges, split by `pre`.
    fn tiny(pre: &str) -> ByteLevelBpe {
        let mut tokens: Vec<String> = (0..=255u8).map(|b| to_char(b).to_string()).collect();
        tokens.extend(["Ġa", "Ġab", "ab"].map(String::from));
        let merges = ["Ġ a", "Ġa b", "a b"].map(String::from);
        ByteLevelBpe::new(&tokens, &merges, PreTokenizer::from_name(Some(pre)).unwrap()).unwrap()
    }

    fn to_char(b: u8) -> char {
        if printable(b) {
            return char::from(b);
        }
        char::from_u32(256 + (0..b).filter(|&x| !printable(x)).count() as u32).unwrap()
    }

    #[test]
    fn cutting_between_a_letter_and_a_space_keeps_every_token() {
        let text = "ab ab  ab\n ab's 123 ab, ab\t\tab!! x  \n\n y zz'll 9 ab\r\nab   ";
        assert_eq!(cut(text, 0), Some(2));
        assert_eq!(cut("a", 0), None);
        for pre in SUPPORTED_PRE {
            let bpe = tiny(pre);
            let mut whole = Vec::new();
            bpe.encode(text, &mut whole).unwrap();
            let (mut pieces, mut start) = (Vec::new(), 0);
            while let Some(end) = cut(text, start + 1) {
                bpe.encode(&text[start..end], &mut pieces).unwrap();
                start = end;
            }
            bpe.encode(&text[start..], &mut pieces).unwrap();
            assert_eq!(pieces, whole, "{pre}");
        }
    }

    #[test]
    fn byte_mapping_round_trips() {
        assert_eq!(token_bytes("Ġhello"), b" hello");
        assert_eq!(token_bytes("Ċ"), b"\n");
        assert_eq!(token_bytes("Ã©"), "é".as_bytes());
    }
}
