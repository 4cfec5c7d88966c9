//! The model's tokenizer, rebuilt from GGUF metadata (`tokenizer.ggml.*`) the way llama.cpp reads it.
//!
//! Encoding runs in two stages. [`Specials`] first cuts the text at special tokens (control tokens where
//! the caller allows them, user-defined tokens always); each piece of text between them then goes to the
//! vocabulary's own algorithm: SentencePiece ([`crate::spm`], `llama`) or byte-level BPE
//! ([`crate::bpe`], `gpt2`). Decoding concatenates each token's bytes ([`Tokenizer::token_bytes`]),
//! skipping control tokens, which is what llama-server sends for generated tokens.
//!
//! Work stays in proportion to what a caller can use: the `*_within` encoders take a token limit, refuse a
//! text whose length in bytes already proves it longer (no token stands for more than the vocabulary's
//! longest entry), and otherwise encode in chunks of about [`CHUNK_BYTES`], cut where the algorithm
//! would split anyway, stopping as soon as the tokens pass the limit.

use std::collections::HashMap;
use std::sync::Arc;

use crate::bpe::{self, ByteLevelBpe, PreTokenizer};
use crate::special::{Control, Piece, Special, Specials};
use crate::spm::Spm;
use crate::template::RenderedPrompt;

/// About how much text is encoded at once; a chunk ends at the first cut that keeps the tokens after this.
const CHUNK_BYTES: usize = 8 * 1024;

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

/// The tokenizer part of a GGUF file's metadata. `None` means the key is absent, and then the
/// tokenizer uses llama.cpp's default for the model kind.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `llama` (SentencePiece) or `gpt2` (byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`, the BPE pre-tokenizer name, e.g. `llama-bpe`.
    pub pre: Option<String>,
    /// `general.name`; llama.cpp strips whitespace after Phi-3's special tokens by this name.
    pub name: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, indexed by id (empty means all normal).
    pub token_types: Vec<TokenType>,
    /// `tokenizer.ggml.scores`, indexed by id: SentencePiece's merge priorities (empty means all 0).
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.merges`, as `"left right"`, by rank.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.eot_token_id` (end of turn).
    pub eot: Option<u32>,
    /// `tokenizer.ggml.eom_token_id` (end of message, Llama 3.1's `<|eom_id|>`).
    pub eom: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unknown: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece: a space before text that follows a special
    /// token or starts the input).
    pub add_space_prefix: Option<bool>,
}

/// Why a tokenizer could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The GGUF names a tokenizer model we do not build.
    #[error("unsupported tokenizer model `{0}` (supported: llama, gpt2)")]
    UnsupportedModel(String),
    /// The GGUF names a BPE pre-tokenizer whose split we do not know.
    #[error("unsupported tokenizer.ggml.pre `{0}` (supported: {list})", list = bpe::SUPPORTED_PRE.join(", "))]
    UnsupportedPre(String),
    /// The metadata is inconsistent.
    #[error("invalid tokenizer metadata: {0}")]
    Invalid(String),
    /// The `tokenizers` library failed.
    #[error("tokenizer: {0}")]
    Library(String),
    /// The text has more tokens than the caller's limit; encoding stopped there.
    #[error("the text has at least {at_least} tokens, more than the limit of {limit}")]
    TooLong {
        /// The caller's limit.
        limit: usize,
        /// How many tokens the text has at least.
        at_least: usize,
    },
    /// The text has a stretch longer than `max` bytes that cannot be cut where the tokenizer splits.
    #[error("the text has more than {max} bytes without a place to split it (whitespace or punctuation)")]
    Uncut {
        /// The longest stretch encoded at once.
        max: usize,
    },
}

/// Token texts that end generation, and that llama.cpp therefore treats as control tokens whatever
/// their GGUF type says (Gemma 3's user-defined `</s>` among them).
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<｜end▁of▁sentence｜>",
];

/// Text <-> token ids for one model; cheap to clone.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

struct Inner {
    model: Model,
    /// Each token's type, with end-of-generation texts made control tokens.
    types: Vec<TokenType>,
    specials: Specials,
    /// Every token's bytes, back to back: token `i` is `bytes[offsets[i]..offsets[i + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    end_of_generation: Vec<u32>,
    /// The most bytes of text one token stands for.
    longest: usize,
    /// Whether every byte of text ends up in some token, so that `len / longest` bounds the count from
    /// below; not when a special token strips the whitespace around it.
    bytes_bound_tokens: bool,
}

/// The vocabulary's own algorithm, run on text between special tokens.
enum Model {
    Spm { spm: Spm, ids: HashMap<String, u32>, add_space_prefix: bool },
    Bpe(ByteLevelBpe),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner.model {
            Model::Spm { .. } => "llama",
            Model::Bpe(_) => "gpt2",
        };
        f.debug_struct("Tokenizer")
            .field("model", &kind)
            .field("vocab_size", &self.vocab_size())
            .field("eos", &self.inner.eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer that the GGUF metadata describes.
    pub fn from_gguf(vocab: &GgufVocab) -> Result<Self, TokenizerError> {
        if vocab.tokens.is_empty() {
            return Err(TokenizerError::Invalid("no tokens".into()));
        }
        let n = vocab.tokens.len();
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let mut types: Vec<TokenType> =
            (0..n).map(|i| vocab.token_types.get(i).copied().unwrap_or(TokenType::Normal)).collect();
        for (id, text) in vocab.tokens.iter().enumerate() {
            if END_OF_GENERATION.contains(&text.as_str()) {
                types[id] = TokenType::Control;
            }
        }
        let (model, add_bos, bos, eos) = match vocab.model.as_str() {
            "llama" => {
                let ids = text_to_id(&vocab.tokens);
                let unknown = in_range(vocab.unknown.or(Some(0)));
                let spm = Spm::new(&ids, vocab.scores.clone(), unknown);
                let add_space_prefix = vocab.add_space_prefix.unwrap_or(true);
                // llama.cpp's SentencePiece defaults: BOS 1, EOS 2, and BOS added.
                let (bos, eos) = (in_range(vocab.bos.or(Some(1))), in_range(vocab.eos.or(Some(2))));
                (Model::Spm { spm, ids, add_space_prefix }, vocab.add_bos.unwrap_or(true), bos, eos)
            }
            "gpt2" => {
                let pre = PreTokenizer::from_name(vocab.pre.as_deref())?;
                let bpe = ByteLevelBpe::new(&vocab.tokens, &vocab.merges, pre)?;
                let add_bos = vocab.add_bos.unwrap_or(pre.default_add_bos);
                (Model::Bpe(bpe), add_bos, in_range(vocab.bos), in_range(vocab.eos))
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let add_eos = vocab.add_eos.unwrap_or(false);
        if add_bos && bos.is_none() {
            return Err(TokenizerError::Invalid("add_bos_token is set but there is no BOS token".into()));
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::Invalid("add_eos_token is set but there is no EOS token".into()));
        }

        let specials_list = specials(vocab, &types);
        let bytes_bound_tokens = !specials_list.iter().any(|s| s.lstrip || s.rstrip);
        let specials = Specials::new(specials_list);
        let (bytes, offsets) = token_bytes(&vocab.tokens, &types, &model);
        let longest = longest_token(&vocab.tokens, &offsets, &model);
        let mut end_of_generation: Vec<u32> = Vec::new();
        let mut add = |id: Option<u32>| {
            if let Some(id) = id.filter(|id| !end_of_generation.contains(id)) {
                end_of_generation.push(id);
            }
        };
        [eos, in_range(vocab.eot), in_range(vocab.eom)].into_iter().for_each(&mut add);
        for text in END_OF_GENERATION {
            add(vocab.tokens.iter().position(|t| t == text).map(|id| id as u32));
        }
        let inner = Inner {
            model,
            types,
            specials,
            bytes,
            offsets,
            bos,
            eos,
            add_bos,
            add_eos,
            end_of_generation,
            longest,
            bytes_bound_tokens,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Encodes user text: control-token text inside it stays plain text.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode(text, Control::Never, false, usize::MAX)
    }

    /// Encodes trusted text in which control-token text becomes control tokens.
    pub fn encode_with_control(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with_control_within(text, usize::MAX)
    }

    /// [`Self::encode_with_control`], or [`TokenizerError::TooLong`] as soon as the text proves to
    /// have more than `limit` tokens.
    pub fn encode_with_control_within(&self, text: &str, limit: usize) -> Result<Vec<u32>, TokenizerError> {
        self.encode(text, Control::Always, false, limit)
    }

    /// Encodes a raw completion prompt, which its author controls whole: BOS first and EOS last when
    /// the model wants them, and control-token text becomes control tokens.
    pub fn encode_completion_prompt(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_completion_prompt_within(text, usize::MAX)
    }

    /// [`Self::encode_completion_prompt`], or [`TokenizerError::TooLong`] as soon as the text proves to
    /// have more than `limit` tokens.
    pub fn encode_completion_prompt_within(&self, text: &str, limit: usize) -> Result<Vec<u32>, TokenizerError> {
        self.encode(text, Control::Always, true, limit)
    }

    /// Encodes a rendered chat prompt: control tokens are recognised only in the template's own text,
    /// never inside message content, so content cannot forge a turn. BOS and EOS are added as for a
    /// completion prompt unless the template already wrote them (llama.cpp strips them then).
    pub fn encode_prompt(&self, prompt: &RenderedPrompt) -> Result<Vec<u32>, TokenizerError> {
        self.encode_prompt_within(prompt, usize::MAX)
    }

    /// [`Self::encode_prompt`], or [`TokenizerError::TooLong`] as soon as the prompt proves to have
    /// more than `limit` tokens.
    pub fn encode_prompt_within(&self, prompt: &RenderedPrompt, limit: usize) -> Result<Vec<u32>, TokenizerError> {
        let inner = &self.inner;
        let mut ids = self.encode(&prompt.text, Control::Outside(&prompt.content_spans), false, limit)?;
        let starts = |id: Option<u32>| id.is_some() && ids.first() == id.as_ref() && self.written(prompt, id, 0);
        if inner.add_bos && !starts(inner.bos) {
            ids.splice(0..0, inner.bos);
        }
        let end = prompt.text.len().saturating_sub(inner.eos.map_or(0, |id| self.token_bytes(id).len()));
        if inner.add_eos && !(ids.last() == inner.eos.as_ref() && self.written(prompt, inner.eos, end)) {
            ids.extend(inner.eos);
        }
        Ok(ids)
    }

    /// Whether the template text at byte `at` is token `id`'s text.
    fn written(&self, prompt: &RenderedPrompt, id: Option<u32>, at: usize) -> bool {
        id.is_some_and(|id| prompt.text.as_bytes()[at..].starts_with(&self.token_bytes(id)))
    }

    /// The one encoder: special tokens first, then the vocabulary's algorithm between them; stops with
    /// [`TokenizerError::TooLong`] once the text proves longer than `limit` tokens.
    fn encode(
        &self,
        text: &str,
        control: Control<'_>,
        add_special: bool,
        limit: usize,
    ) -> Result<Vec<u32>, TokenizerError> {
        let inner = &self.inner;
        let at_least = text.len().div_ceil(inner.longest);
        if inner.bytes_bound_tokens && at_least > limit {
            return Err(TokenizerError::TooLong { limit, at_least });
        }
        let mut ids = Vec::new();
        if add_special && inner.add_bos {
            ids.extend(inner.bos);
        }
        let mut after_special = true;
        for piece in inner.specials.split(text, control) {
            match piece {
                Piece::Token(id) => {
                    ids.push(id);
                    after_special = true;
                }
                Piece::Text(range) => {
                    self.encode_piece(&text[range], after_special, &mut ids, limit)?;
                    after_special = false;
                }
            }
            if ids.len() > limit {
                return Err(TokenizerError::TooLong { limit, at_least: ids.len() });
            }
        }
        if add_special && inner.add_eos {
            ids.extend(inner.eos);
        }
        Ok(ids)
    }

    /// Encodes text between special tokens chunk by chunk, stopping once `ids` passes `limit`.
    fn encode_piece(
        &self,
        text: &str,
        after_special: bool,
        ids: &mut Vec<u32>,
        limit: usize,
    ) -> Result<(), TokenizerError> {
        let mut start = 0;
        while start < text.len() {
            let end = self.cut(text, start + CHUNK_BYTES).unwrap_or(text.len());
            let chunk = &text[start..end];
            match &self.inner.model {
                Model::Spm { spm, ids: vocab, add_space_prefix } => {
                    let prefix = if *add_space_prefix && after_special && start == 0 { "\u{2581}" } else { "" };
                    let escaped = format!("{prefix}{}", chunk.replace(' ', "\u{2581}"));
                    spm.encode(vocab, &escaped, ids);
                }
                Model::Bpe(bpe) => bpe.encode(chunk, ids)?,
            }
            if ids.len() > limit {
                return Err(TokenizerError::TooLong { limit, at_least: ids.len() });
            }
            start = end;
        }
        Ok(())
    }

    /// The first place at or after byte `from` where the vocabulary's algorithm can split `text` and
    /// still give the tokens of the whole.
    fn cut(&self, text: &str, from: usize) -> Option<usize> {
        match &self.inner.model {
            Model::Spm { spm, .. } => spm.cut(text, from),
            Model::Bpe(_) => bpe::cut(text, from),
        }
    }

    /// Whether `id` is a control token (end of turn, role markers, …), never plain text.
    pub fn is_control(&self, id: u32) -> bool {
        matches!(self.inner.types.get(id as usize), Some(TokenType::Control | TokenType::Unknown))
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.inner.bos
    }

    /// The bytes one token stands for (empty for an unknown id); a token may end inside a character.
    /// Control tokens stand for their text; SentencePiece's "▁" is a space and `<0x0A>` is byte 0x0A.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.bytes_of(id).to_vec()
    }

    fn bytes_of(&self, id: u32) -> &[u8] {
        let inner = &self.inner;
        let id = id as usize;
        match (inner.offsets.get(id), inner.offsets.get(id + 1)) {
            (Some(&start), Some(&end)) => &inner.bytes[start..end],
            _ => &[],
        }
    }

    /// Decodes ids to text, dropping control tokens; bytes that are no valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        for &id in ids.iter().filter(|&&id| !self.is_control(id)) {
            bytes.extend_from_slice(self.bytes_of(id));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Tokens that end generation: EOS, EOT, EOM, and the other end-of-turn tokens llama.cpp knows.
    pub fn end_of_generation(&self) -> &[u32] {
        &self.inner.end_of_generation
    }

    /// Number of ids.
    pub fn vocab_size(&self) -> usize {
        self.inner.types.len()
    }
}

/// Text -> id over every token, later ids winning on duplicate text (llama.cpp's `token_to_id`).
fn text_to_id(tokens: &[String]) -> HashMap<String, u32> {
    tokens.iter().enumerate().filter(|(_, t)| !t.is_empty()).map(|(id, t)| (t.clone(), id as u32)).collect()
}

/// The tokens matched as whole pieces: control, unknown and user-defined ones.
fn specials(vocab: &GgufVocab, types: &[TokenType]) -> Vec<Special> {
    // llama.cpp strips whitespace after every special token of a model named Phi-3, except these.
    let name = vocab.name.as_deref().unwrap_or_default().to_lowercase();
    let phi3 = name.contains("phi-3") || name.contains("phi3");
    let keeps_whitespace = |text: &str| matches!(text, "<unk>" | "<s>" | "<|endoftext|>");
    let mut out = Vec::new();
    for (id, text) in vocab.tokens.iter().enumerate() {
        let control = match types[id] {
            TokenType::Control | TokenType::Unknown => true,
            TokenType::UserDefined => false,
            _ => continue,
        };
        let rstrip = phi3 && !keeps_whitespace(text);
        out.push(Special { id: id as u32, text: text.clone(), control, lstrip: false, rstrip });
    }
    out
}

/// Every token's bytes, back to back, with the offsets where each starts (plus the end).
fn token_bytes(tokens: &[String], types: &[TokenType], model: &Model) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    let mut offsets = Vec::with_capacity(tokens.len() + 1);
    for (text, kind) in tokens.iter().zip(types) {
        offsets.push(bytes.len());
        match kind {
            TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
                bytes.extend_from_slice(text.as_bytes())
            }
            TokenType::Unused => {}
            TokenType::Byte => bytes.extend(byte_token(text)),
            TokenType::Normal => match model {
                Model::Spm { .. } => bytes.extend_from_slice(text.replace('\u{2581}', " ").as_bytes()),
                Model::Bpe(_) => bytes.extend(bpe::token_bytes(text)),
            },
        }
    }
    offsets.push(bytes.len());
    (bytes, offsets)
}

/// The most bytes of text any one token can stand for: its bytes, or for a token the algorithm may form
/// from text whatever its type, the text it matches (SentencePiece's "▁" is one space).
fn longest_token(tokens: &[String], offsets: &[usize], model: &Model) -> usize {
    let matched = |text: &str| match model {
        Model::Spm { .. } => text.len() - 2 * text.matches('\u{2581}').count(),
        Model::Bpe(_) => bpe::token_bytes(text).len(),
    };
    let own = |id: usize| offsets[id + 1] - offsets[id];
    tokens.iter().enumerate().map(|(id, text)| own(id).max(matched(text))).max().unwrap_or(1).max(1)
}

/// The byte of a `<0xNN>` token.
fn byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
#[path = "tokenizer_tests.rs"]
mod tests;
