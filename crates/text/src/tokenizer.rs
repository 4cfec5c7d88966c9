//! A `tokenizers` tokenizer rebuilt from GGUF metadata (`tokenizer.ggml.*`).
//!
//! candle's own GGUF tokenizer adds a prefix space for pre-tokenizer names it does not know (SmolLM's
//! `smollm` among them), so we build the pipeline ourselves, the way llama.cpp reads the same keys.

use std::collections::HashSet;
use std::ops::Range;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::AddedToken;

use crate::template::RenderedPrompt;

/// GGUF `tokenizer.ggml.token_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// An ordinary vocabulary entry.
    Normal,
    /// Unknown-token placeholder.
    Unknown,
    /// A control token such as `<|im_start|>`: never produced from message text.
    Control,
    /// A user-defined token, matched in text like an ordinary word.
    UserDefined,
    /// A padding entry.
    Unused,
    /// A raw byte token (`<0x0A>`).
    Byte,
}

impl TokenType {
    /// Maps GGUF's integer code.
    pub fn from_gguf(code: i32) -> Self {
        match code {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// The tokenizer part of a GGUF file's metadata.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`, e.g. `gpt2` (byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`, the pre-tokenizer name, e.g. `smollm`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, indexed by id (empty means all normal).
    pub token_types: Vec<TokenType>,
    /// `tokenizer.ggml.merges`, as `"left right"`.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
}

/// Why a tokenizer could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The GGUF names a tokenizer model we do not build.
    #[error("unsupported tokenizer model `{0}` (supported: gpt2)")]
    UnsupportedModel(String),
    /// The metadata is inconsistent.
    #[error("invalid tokenizer metadata: {0}")]
    Invalid(String),
    /// The `tokenizers` library failed.
    #[error("tokenizer: {0}")]
    Library(String),
}

fn library(e: tokenizers::Error) -> TokenizerError {
    TokenizerError::Library(e.to_string())
}

/// Text <-> token ids for one model.
#[derive(Clone)]
pub struct Tokenizer {
    /// Matches control tokens in its input; used only on template text.
    with_control: tokenizers::Tokenizer,
    /// Treats every byte of its input as text; used on anything a user wrote.
    plain: tokenizers::Tokenizer,
    /// Control tokens by their text, longest first.
    control: Vec<(String, u32)>,
    /// Control and user-defined tokens: their vocabulary text is literal, not byte-level encoded.
    added: HashSet<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    end_of_generation: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer that the GGUF metadata describes.
    pub fn from_gguf(vocab: &GgufVocab) -> Result<Self, TokenizerError> {
        if vocab.model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(vocab.model.clone()));
        }
        if vocab.tokens.is_empty() {
            return Err(TokenizerError::Invalid("no tokens".into()));
        }
        let ids: tokenizers::models::bpe::Vocab =
            vocab.tokens.iter().enumerate().map(|(id, t)| (t.clone(), id as u32)).collect();
        let merges = vocab
            .merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| TokenizerError::Invalid(format!("merge without a space: {m:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder().vocab_and_merges(ids, merges).build().map_err(library)?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(vocab.pre.as_deref())));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let type_of = |id: usize| vocab.token_types.get(id).copied().unwrap_or(TokenType::Normal);
        let mut control = Vec::new();
        let mut user_defined = Vec::new();
        let mut added = HashSet::new();
        for (id, text) in vocab.tokens.iter().enumerate() {
            match type_of(id) {
                TokenType::Control => control.push((text.clone(), id as u32)),
                TokenType::UserDefined => user_defined.push(AddedToken::from(text.clone(), false)),
                _ => continue,
            }
            added.insert(id as u32);
        }
        let specials: Vec<AddedToken> = control.iter().map(|(t, _)| AddedToken::from(t.clone(), true)).collect();
        inner.add_special_tokens(specials).map_err(library)?;
        inner.add_tokens(user_defined).map_err(library)?;
        control.sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));

        let mut plain = inner.clone();
        plain.set_encode_special_tokens(true);

        // Generation ends on EOS and on the other end-of-text control tokens llama.cpp also treats as EOG.
        let mut end_of_generation: Vec<u32> = vocab.eos.into_iter().collect();
        for (text, id) in &control {
            let eog = matches!(
                text.as_str(),
                "<|endoftext|>" | "<|im_end|>" | "<|eot_id|>" | "<|end|>" | "<end_of_turn>" | "<|eom_id|>"
            );
            if eog && !end_of_generation.contains(id) {
                end_of_generation.push(*id);
            }
        }

        Ok(Self {
            with_control: inner,
            plain,
            control,
            added,
            bos: vocab.bos,
            eos: vocab.eos,
            add_bos: vocab.add_bos,
            end_of_generation,
        })
    }

    /// Encodes user text: control-token text inside it stays plain text.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        Ok(self.plain.encode_fast(text, false).map_err(library)?.get_ids().to_vec())
    }

    /// Encodes trusted text in which control-token text becomes control tokens.
    pub fn encode_with_control(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        Ok(self.with_control.encode_fast(text, false).map_err(library)?.get_ids().to_vec())
    }

    /// Encodes a raw completion prompt, which its author controls whole: BOS first when the model
    /// wants one, and control-token text becomes control tokens.
    pub fn encode_completion_prompt(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids: Vec<u32> = if self.add_bos { self.bos.into_iter().collect() } else { Vec::new() };
        ids.extend(self.encode_with_control(text)?);
        Ok(ids)
    }

    /// Whether `id` is a control token (end of turn, role markers, …), never plain text.
    pub fn is_control(&self, id: u32) -> bool {
        self.control.iter().any(|&(_, c)| c == id)
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The bytes one token stands for (empty for an unknown id); a token may end inside a character.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(text) = self.with_control.id_to_token(id) else { return Vec::new() };
        if self.added.contains(&id) {
            return text.into_bytes();
        }
        let mut bytes = Vec::with_capacity(text.len());
        for c in text.chars() {
            match byte_of_char(c) {
                Some(b) => bytes.push(b),
                None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        bytes
    }

    /// Encodes a rendered chat prompt: control tokens are recognised only in the template's own text,
    /// never inside message content, so content cannot forge a turn.
    pub fn encode_prompt(&self, prompt: &RenderedPrompt) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        if self.add_bos {
            ids.extend(self.bos);
        }
        let mut start = 0;
        for (range, id) in self.control_matches(&prompt.text, &prompt.content_spans) {
            ids.extend(self.encode_text(&prompt.text[start..range.start])?);
            ids.push(id);
            start = range.end;
        }
        ids.extend(self.encode_text(&prompt.text[start..])?);
        Ok(ids)
    }

    /// Control-token occurrences outside `content`, in order and non-overlapping (longest wins).
    fn control_matches(&self, text: &str, content: &[Range<usize>]) -> Vec<(Range<usize>, u32)> {
        let mut found = Vec::new();
        let mut pos = 0;
        while pos < text.len() {
            if let Some(span) = content.iter().find(|r| r.contains(&pos)) {
                pos = span.end;
                continue;
            }
            let rest = &text[pos..];
            let hit = self.control.iter().find(|(t, _)| {
                rest.starts_with(t.as_str()) && !content.iter().any(|r| r.start < pos + t.len() && r.start > pos)
            });
            match hit {
                Some((t, id)) => {
                    found.push((pos..pos + t.len(), *id));
                    pos += t.len();
                }
                None => pos += rest.chars().next().map_or(1, char::len_utf8),
            }
        }
        found
    }

    /// Decodes ids to text, dropping control tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.with_control.decode(ids, true).map_err(library)
    }

    /// Tokens that end generation (EOS and other end-of-turn control tokens).
    pub fn end_of_generation(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.with_control.get_vocab_size(true)
    }
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

/// The pre-tokenizer for a GGUF `tokenizer.ggml.pre` name (the GPT-2 split when unknown).
fn pre_tokenizer(pre: Option<&str>) -> PreTokenizerWrapper {
    let byte_level = ByteLevel::new(false, true, true);
    match pre {
        // `smollm`: each digit on its own, then the GPT-2 regex.
        Some("smollm") => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
        _ => byte_level.into(),
    }
}
