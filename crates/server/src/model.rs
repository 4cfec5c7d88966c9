//! Loading a model file into what the server serves: the engine's model plus the text side.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Reasoning;
use hearth_engine::{EmbedConfig, EmbedHandle, EngineHandle};
use hearth_models::{BertEmbedder, CausalLm, GgufFile, WeightFormat};
use hearth_structured::reasoning::{self, ThinkTokens};
use hearth_structured::tools::Family;
use hearth_structured::Structured;
use hearth_text::{ChatTemplate, EmbeddingTokenizer, GgufVocab, TokenType, Tokenizer};

/// Everything the HTTP layer knows about the served model.
#[derive(Debug)]
pub struct ServedModel {
    /// The id clients pass as `model`.
    pub id: String,
    /// Unix seconds when it was loaded.
    pub created: u64,
    /// Prompt + generation limit in tokens.
    pub context_length: usize,
    /// Text <-> tokens.
    pub tokenizer: Tokenizer,
    /// The chat template (`--chat-template`, else the GGUF's); `None` for a base model without one, which
    /// serves `/v1/completions` only.
    pub template: Option<ChatTemplate>,
    /// Compiles `response_format` and tool-call constraints for this vocabulary.
    pub structured: Structured,
    /// The call format the chat template renders tools in itself; `None` when it has no tool support we
    /// know, so Hearth's documented format is used.
    pub native_tools: Option<Family>,
    /// The reasoning tags, when answers' reasoning is split from their content.
    pub thinking: Option<ThinkTokens>,
}

/// A loaded chat model: its text side and the engine that runs it. Requests hold it (in an `Arc`) until
/// they end, which is how the registry knows the model is in use.
#[derive(Debug)]
pub struct ChatModel {
    /// Identity and text side.
    pub served: ServedModel,
    /// Its engine.
    pub engine: EngineHandle,
}

impl std::ops::Deref for ChatModel {
    type Target = ServedModel;

    fn deref(&self) -> &ServedModel {
        &self.served
    }
}

/// Reads a GGUF file: returns the model for the engine and the text side for the server. `chat_template`
/// replaces the file's own template.
pub fn load(
    path: &Path,
    id: Option<String>,
    format: WeightFormat,
    chat_template: Option<&Path>,
    reasoning: Reasoning,
) -> anyhow::Result<(ServedModel, Box<dyn CausalLm>)> {
    let file = GgufFile::open(path)?;
    let vocab = vocab(&file)?;
    let tokenizer = Tokenizer::from_gguf(&vocab)?;
    let token = |id: Option<u32>| id.and_then(|i| vocab.tokens.get(i as usize)).cloned().unwrap_or_default();
    let source = match chat_template {
        Some(template) => Some(
            std::fs::read_to_string(template)
                .map_err(|e| anyhow::anyhow!("--chat-template {}: {e}", template.display()))?,
        ),
        None => file.string("tokenizer.chat_template").ok().map(str::to_string),
    };
    let template = source.map(|source| ChatTemplate::new(&source, &token(vocab.bos), &token(vocab.eos))).transpose()?;
    let native_tools = template.as_ref().and_then(|t| Family::of_template(t.source()).filter(|_| t.supports_tools()));
    let thinking = thinking(&vocab, template.as_ref(), reasoning)?;
    let model = hearth_models::load(&file, format)?;
    let eos = vocab.eos.or_else(|| tokenizer.end_of_generation().first().copied()).unwrap_or(0);
    let structured = Structured::new(&tokenizer, eos)?;
    let id = id.unwrap_or_else(|| default_id(path));
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let context_length = model.info().context_length;
    let served = ServedModel { id, created, context_length, tokenizer, template, structured, native_tools, thinking };
    Ok((served, model))
}

/// The reasoning tags to split answers at, as `reasoning` asks: `auto` when the template writes `<think>`.
fn thinking(
    vocab: &GgufVocab,
    template: Option<&ChatTemplate>,
    reasoning: Reasoning,
) -> anyhow::Result<Option<ThinkTokens>> {
    let id = |tag: &str| vocab.tokens.iter().position(|t| t == tag).and_then(|i| u32::try_from(i).ok());
    let tokens = id(reasoning::OPEN).zip(id(reasoning::CLOSE)).map(|(open, close)| ThinkTokens { open, close });
    match reasoning {
        Reasoning::Off => Ok(None),
        Reasoning::Auto => Ok(tokens.filter(|_| template.is_some_and(|t| t.source().contains(reasoning::OPEN)))),
        Reasoning::Think => tokens
            .map(Some)
            .ok_or_else(|| anyhow::anyhow!("--reasoning think: the vocabulary has no `<think>` and `</think>` tokens")),
    }
}

/// The embedding model as the HTTP layer sees it: identity, tokenizer, and its worker.
#[derive(Debug)]
pub struct ServedEmbedder {
    /// The id clients pass as `model`.
    pub id: String,
    /// Unix seconds when it was loaded.
    pub created: u64,
    /// Text -> tokens, special tokens included.
    pub tokenizer: EmbeddingTokenizer,
    /// The embedding worker.
    pub worker: EmbedHandle,
}

/// Loads an embedding model directory (`config.json`, `tokenizer.json`, `model.safetensors`) and starts
/// its worker thread.
pub fn load_embedder(dir: &Path, id: Option<String>) -> anyhow::Result<ServedEmbedder> {
    let tokenizer = EmbeddingTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let model = BertEmbedder::load(dir)?;
    let worker = hearth_engine::spawn_embedder(Box::new(model), EmbedConfig::default())?;
    let id = id.unwrap_or_else(|| default_id(dir));
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(ServedEmbedder { id, created, tokenizer, worker })
}

/// The file name without its `.gguf` extension.
pub fn default_id(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.strip_suffix(".gguf").map(str::to_string).unwrap_or(name)
}

/// The tokenizer metadata of `file`; absent keys stay `None`, so the tokenizer applies llama.cpp's defaults.
pub fn vocab(file: &GgufFile) -> anyhow::Result<GgufVocab> {
    let optional_id = |key: &str| file.uint(key).ok().and_then(|v| u32::try_from(v).ok());
    let flag = |key: &str| file.boolean(key).ok();
    Ok(GgufVocab {
        model: file.string("tokenizer.ggml.model")?.to_string(),
        pre: file.string("tokenizer.ggml.pre").ok().map(str::to_string),
        name: file.string("general.name").ok().map(str::to_string),
        tokens: file.strings("tokenizer.ggml.tokens")?,
        token_types: file
            .ints("tokenizer.ggml.token_type")
            .unwrap_or_default()
            .into_iter()
            .map(|code| TokenType::from_gguf(i32::try_from(code).unwrap_or(0)))
            .collect(),
        scores: file.floats("tokenizer.ggml.scores").unwrap_or_default(),
        merges: file.strings("tokenizer.ggml.merges").unwrap_or_default(),
        bos: optional_id("tokenizer.ggml.bos_token_id"),
        eos: optional_id("tokenizer.ggml.eos_token_id"),
        eot: optional_id("tokenizer.ggml.eot_token_id"),
        eom: optional_id("tokenizer.ggml.eom_token_id"),
        unknown: optional_id("tokenizer.ggml.unknown_token_id"),
        add_bos: flag("tokenizer.ggml.add_bos_token"),
        add_eos: flag("tokenizer.ggml.add_eos_token"),
        add_space_prefix: flag("tokenizer.ggml.add_space_prefix"),
    })
}
