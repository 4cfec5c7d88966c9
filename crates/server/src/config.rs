//! Configuration, resolved once: command-line flags > `HEARTH_*` environment > config file > defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hearth_engine::EngineConfig;
use hearth_models::WeightFormat;
use serde::Deserialize;

use crate::response_store::StoreLimits;
use file::FileModels;
pub use file::{parse_file, read_file, FileConfig};

mod file;

/// The default chat model, as `scripts/fetch-models.sh` saves it.
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The default embedding model directory, as `scripts/fetch-models.sh` saves it; served when present.
pub const DEFAULT_EMBEDDING_MODEL: &str = "models/all-MiniLM-L6-v2";

/// Hearth: a self-hosted, OpenAI-compatible LLM inference server.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `hearth` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a model over the OpenAI API.
    Serve(Box<ServeArgs>),
    /// Load-test any OpenAI-compatible endpoint (this server or a peer) and report throughput and latency.
    Bench(hearth_bench::BenchArgs),
    /// Measure a model's raw prompt-processing and generation speed, without HTTP (llama-bench style).
    BenchModel(crate::bench_model::BenchModelArgs),
}

/// `hearth serve` flags; each also reads a `HEARTH_*` environment variable.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML config file (see config/default.toml); flags and environment override it.
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Model to serve; repeat to serve several: one GGUF file (the chat model) and at most one embedding
    /// model directory (config.json, tokenizer.json, model.safetensors) [default:
    /// models/SmolLM2-135M-Instruct.Q4_1.gguf, plus models/all-MiniLM-L6-v2 when present].
    #[arg(long, env = "HEARTH_MODEL", value_delimiter = ',')]
    pub model: Vec<PathBuf>,
    /// Model id clients pass as `model`, one per `--model` in the same order [default: the file name
    /// without .gguf, or the directory name].
    #[arg(long, env = "HEARTH_SERVED_MODEL_NAME", value_delimiter = ',')]
    pub served_model_name: Vec<String>,
    /// Directory of models to serve by name, loaded on first use: each GGUF file (id: the file name
    /// without .gguf) and each embedding model directory (id: its name); repeat for several. Without
    /// --model, the default model is then not served.
    #[arg(long, env = "HEARTH_MODELS_DIR", value_delimiter = ',')]
    pub models_dir: Vec<PathBuf>,
    /// Most models in memory at once; loading one more unloads the least recently used idle one; 0 means
    /// no limit but the memory budget [default: 0].
    #[arg(long, env = "HEARTH_MAX_LOADED_MODELS")]
    pub max_loaded_models: Option<usize>,
    /// Memory budget of the loaded models' weights and KV caches, e.g. `12GiB` [default: 75% of the memory
    /// available at start].
    #[arg(long, env = "HEARTH_MODELS_MEMORY", value_parser = parse_size)]
    pub models_memory: Option<u64>,
    /// Unload a model nobody used for this many seconds; 0 keeps models loaded [default: 0].
    #[arg(long, env = "HEARTH_IDLE_UNLOAD_SECONDS")]
    pub idle_unload_seconds: Option<u64>,
    /// Id of a model that is never unloaded once loaded; repeat for several.
    #[arg(long = "pin-model", env = "HEARTH_PIN_MODELS", value_delimiter = ',')]
    pub pin_models: Vec<String>,
    /// Address to bind [default: 127.0.0.1].
    #[arg(long, env = "HEARTH_HOST")]
    pub host: Option<String>,
    /// Port to bind [default: 8080].
    #[arg(long, env = "HEARTH_PORT")]
    pub port: Option<u16>,
    /// API key clients must send as `Authorization: Bearer KEY`; repeat for several (env: comma-separated).
    /// With no key configured, the API is open.
    #[arg(long = "api-key", env = "HEARTH_API_KEY", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// File of API keys: one per line, optionally `NAME KEY` (the name appears in logs and metrics).
    #[arg(long, env = "HEARTH_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Browser origin allowed to call the API (CORS); repeat for several. None by default.
    #[arg(long = "cors-allow-origin", env = "HEARTH_CORS_ALLOW_ORIGINS", value_delimiter = ',')]
    pub cors_allow_origins: Vec<String>,
    /// Seconds a client has to send a request's headers before its connection is closed [default: 30].
    #[arg(long, env = "HEARTH_HEADER_TIMEOUT_SECONDS")]
    pub header_timeout_seconds: Option<u64>,
    /// Seconds a chat request may take from arrival to its last token; 0 means no limit [default: 600].
    #[arg(long, env = "HEARTH_REQUEST_TIMEOUT_SECONDS")]
    pub request_timeout_seconds: Option<f64>,
    /// Most tokens one request may generate (`max_tokens` above it is a 400) [default: the context].
    #[arg(long, env = "HEARTH_MAX_TOKENS_LIMIT")]
    pub max_tokens_limit: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT [default: 30].
    #[arg(long, env = "HEARTH_SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: Option<u64>,
    /// Most Responses-API responses kept in memory for retrieval and `previous_response_id`; 0 keeps none
    /// [default: 1000].
    #[arg(long, env = "HEARTH_RESPONSES_STORE_ENTRIES")]
    pub responses_store_entries: Option<usize>,
    /// Most memory the stored responses take, e.g. `64MiB` [default: 64MiB].
    #[arg(long, env = "HEARTH_RESPONSES_STORE_MEMORY", value_parser = parse_size)]
    pub responses_store_memory: Option<u64>,
    /// Seconds a stored response is kept [default: 3600].
    #[arg(long, env = "HEARTH_RESPONSES_STORE_TTL_SECONDS")]
    pub responses_store_ttl_seconds: Option<u64>,
    /// PEM certificate chain (leaf first) to serve HTTPS with; needs --tls-key [default: plain HTTP].
    #[arg(long, env = "HEARTH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1); needs --tls-cert.
    #[arg(long, env = "HEARTH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, env = "HEARTH_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log prompts and completions (off by default: they are private data).
    #[arg(long, env = "HEARTH_LOG_CONTENT")]
    pub log_content: bool,
    /// Do not serve the web playground (a chat page) at `/`.
    #[arg(long, env = "HEARTH_NO_PLAYGROUND")]
    pub no_playground: bool,
    /// Inference threads; 0 means one per physical core [default: 0].
    #[arg(long, env = "HEARTH_THREADS")]
    pub threads: Option<usize>,
    /// How weights are held in memory [default: as-stored].
    #[arg(long, env = "HEARTH_WEIGHTS", value_enum)]
    pub weights: Option<Weights>,
    /// Jinja chat template file for /v1/chat/completions, replacing the GGUF's own (or supplying one to a
    /// base model that has none) [default: the GGUF's `tokenizer.chat_template`].
    #[arg(long, env = "HEARTH_CHAT_TEMPLATE")]
    pub chat_template: Option<PathBuf>,
    /// Whether answers' `<think>` reasoning is split from their content [default: auto].
    #[arg(long, env = "HEARTH_REASONING", value_enum)]
    pub reasoning: Option<Reasoning>,
    /// Most sequences generating at once [default: 16].
    #[arg(long, env = "HEARTH_MAX_NUM_SEQS")]
    pub max_num_seqs: Option<usize>,
    /// Most requests waiting for a slot; more are refused with 429 [default: 64].
    #[arg(long, env = "HEARTH_MAX_WAITING")]
    pub max_waiting: Option<usize>,
    /// Most tokens per forward step; longer prompts are prefilled in chunks [default: 256].
    #[arg(long, env = "HEARTH_MAX_BATCH_TOKENS")]
    pub max_batch_tokens: Option<usize>,
    /// Most prompt tokens waiting for a slot; more are refused with 429 [default: 65536].
    #[arg(long, env = "HEARTH_MAX_WAITING_PROMPT_TOKENS")]
    pub max_waiting_prompt_tokens: Option<usize>,
    /// Each chat model's KV cache pool, e.g. `2GiB` or `512MiB` or bytes [default: enough for max-num-seqs
    /// full contexts, at most a quarter of the models memory budget].
    #[arg(long, env = "HEARTH_KV_CACHE_MEMORY", value_parser = parse_size)]
    pub kv_cache_memory: Option<u64>,
    /// Do not reuse cached KV blocks across requests with a shared prefix.
    #[arg(long, env = "HEARTH_NO_PREFIX_CACHE")]
    pub no_prefix_cache: bool,
}

/// A size in bytes: a number with an optional `K`, `M`, `G` (powers of 1000) or `KiB`, `MiB`, `GiB` suffix.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("`{text}` is not a size like 2GiB or 512MiB"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit `{other}` (use K, M, G, KiB, MiB or GiB)")),
    };
    Ok((number * scale) as u64)
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// In-memory weight format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Weights {
    /// Exactly as stored in the file.
    AsStored,
    /// Requantize 4/5-bit legacy formats to Q8_0 at load: faster on CPU, ~1.7x their memory.
    #[value(name = "q8-0")]
    #[serde(rename = "q8-0")]
    Q80,
}

impl From<Weights> for WeightFormat {
    fn from(w: Weights) -> Self {
        match w {
            Weights::AsStored => WeightFormat::AsStored,
            Weights::Q80 => WeightFormat::Q8_0,
        }
    }
}

/// Whether the model's `<think>…</think>` reasoning is returned apart from the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reasoning {
    /// When the chat template writes `<think>` and the vocabulary has both tags as tokens.
    #[default]
    Auto,
    /// Never: reasoning stays in the content.
    Off,
    /// Always: the vocabulary must have both tags as tokens.
    Think,
}

/// The resolved configuration, one part per layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// HTTP settings.
    pub server: ServerConfig,
    /// What to serve.
    pub model: ModelConfig,
    /// Models directories, and how many models stay loaded.
    pub models: ModelsConfig,
    /// Inference threads and engine limits.
    pub engine: EngineSettings,
}

/// HTTP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind.
    pub port: u16,
    /// API keys given inline; auth is on when these or `api_key_file` name any.
    pub api_keys: Vec<String>,
    /// File of API keys.
    pub api_key_file: Option<PathBuf>,
    /// Origins allowed by CORS; empty turns CORS off.
    pub cors_allow_origins: Vec<String>,
    /// Seconds a client has to send a request's headers.
    pub header_timeout_seconds: u64,
    /// How long a chat request may take; `None` for no limit.
    pub request_timeout: Option<std::time::Duration>,
    /// Most tokens one request may generate; `None` for the context's limit.
    pub max_tokens_limit: Option<usize>,
    /// Seconds in-flight requests get to finish at shutdown.
    pub shutdown_grace_seconds: u64,
    /// The bounds of the Responses API's store.
    pub responses_store: StoreLimits,
    /// The certificate and key HTTPS is served with; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Log format.
    pub log_format: LogFormat,
    /// Whether prompts and completions are logged.
    pub log_content: bool,
    /// Whether `/` serves the web playground.
    pub playground: bool,
}

/// The PEM files HTTPS is served with (both exist at resolution; `tls::acceptor` parses them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// The leaf certificate's private key.
    pub key: PathBuf,
}

/// The models loaded at start.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The GGUF file; `None` when only models directories are served.
    pub path: Option<PathBuf>,
    /// The id clients use; the file name without `.gguf` when `None`.
    pub served_model_name: Option<String>,
    /// In-memory weight format.
    pub weights: WeightFormat,
    /// A chat template file replacing the GGUF's own.
    pub chat_template: Option<PathBuf>,
    /// Whether reasoning is split from the answer.
    pub reasoning: Reasoning,
    /// The embedding model served beside the chat model, if any.
    pub embedding: Option<EmbeddingModelConfig>,
}

/// Models directories, and how many models stay loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelsConfig {
    /// Directories whose GGUF files and embedding model directories are served by name.
    pub dirs: Vec<PathBuf>,
    /// Most models loaded at once; `None` for no limit but memory.
    pub max_loaded: Option<usize>,
    /// Bytes the loaded models' weights and KV caches may take; `None` for 75% of the memory available.
    pub memory: Option<u64>,
    /// Unload a model unused for this long; `None` keeps models loaded.
    pub idle_unload: Option<std::time::Duration>,
    /// Ids never unloaded once loaded.
    pub pinned: Vec<String>,
    /// Other ids for models: alias → id.
    pub aliases: BTreeMap<String, String>,
}

/// An embedding model to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingModelConfig {
    /// The model directory.
    pub path: PathBuf,
    /// The id clients use; the directory name when `None`.
    pub served_model_name: Option<String>,
    /// Whether start-up may skip it when the directory is missing (only the built-in default).
    pub optional: bool,
}

/// Inference threads and engine limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Inference threads; 0 means one per physical core.
    pub threads: usize,
    /// Batching limits (`kv_cache_bytes` is filled in at start when `kv_cache_memory` is `None`).
    pub limits: EngineConfig,
    /// KV pool bytes; `None` sizes it from the model and the available memory.
    pub kv_cache_memory: Option<u64>,
}

impl Config {
    /// Resolves flags and environment (already merged by clap) over the config file over defaults.
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// The configuration with nothing set.
    pub fn default_resolved() -> Self {
        Self::merge(&ServeArgs::default(), FileConfig::default()).expect("the defaults name one chat model")
    }

    fn merge(args: &ServeArgs, file: FileConfig) -> anyhow::Result<Self> {
        let server = file.server.unwrap_or_default();
        let model = file.model.unwrap_or_default();
        let models = models_config(args, file.models.unwrap_or_default())?;
        let engine = file.engine.unwrap_or_default();
        let defaults = EngineConfig::default();
        let weights = args.weights.or(model.weights).unwrap_or(Weights::AsStored).into();
        let chat_template = args.chat_template.clone().or(model.chat_template);
        let reasoning = args.reasoning.or(model.reasoning).unwrap_or_default();
        let mut model = if args.model.is_empty() && !models.dirs.is_empty() {
            let embedding = file.embedding_model.unwrap_or_default();
            ModelConfig {
                path: model.path,
                served_model_name: args.served_model_name.first().cloned().or(model.served_model_name),
                weights,
                chat_template: None,
                reasoning: Reasoning::Auto,
                embedding: embedding.path.map(|path| EmbeddingModelConfig {
                    path,
                    served_model_name: embedding.served_model_name,
                    optional: false,
                }),
            }
        } else if args.model.is_empty() {
            let embedding = file.embedding_model.unwrap_or_default();
            ModelConfig {
                path: Some(model.path.unwrap_or_else(|| DEFAULT_MODEL.into())),
                served_model_name: args.served_model_name.first().cloned().or(model.served_model_name),
                weights,
                chat_template: None,
                reasoning: Reasoning::Auto,
                embedding: Some(EmbeddingModelConfig {
                    optional: embedding.path.is_none(),
                    path: embedding.path.unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.into()),
                    served_model_name: embedding.served_model_name,
                }),
            }
        } else {
            models_from_flags(&args.model, &args.served_model_name, weights)?
        };
        if let Some(path) = chat_template.as_ref().filter(|p| !p.is_file()) {
            anyhow::bail!("--chat-template {}: no such file", path.display());
        }
        model.chat_template = chat_template;
        model.reasoning = reasoning;
        Ok(Self {
            server: ServerConfig {
                host: args.host.clone().or(server.host).unwrap_or_else(|| "127.0.0.1".into()),
                port: args.port.or(server.port).unwrap_or(8080),
                api_keys: non_empty(&args.api_keys).or(server.api_keys).unwrap_or_default(),
                api_key_file: args.api_key_file.clone().or(server.api_key_file),
                cors_allow_origins: non_empty(&args.cors_allow_origins)
                    .or(server.cors_allow_origins)
                    .unwrap_or_default(),
                header_timeout_seconds: args.header_timeout_seconds.or(server.header_timeout_seconds).unwrap_or(30),
                request_timeout: Some(args.request_timeout_seconds.or(server.request_timeout_seconds).unwrap_or(600.0))
                    .filter(|s| *s > 0.0)
                    .map(std::time::Duration::from_secs_f64),
                max_tokens_limit: args.max_tokens_limit.or(server.max_tokens_limit),
                shutdown_grace_seconds: args.shutdown_grace_seconds.or(server.shutdown_grace_seconds).unwrap_or(30),
                responses_store: StoreLimits {
                    entries: args.responses_store_entries.or(server.responses_store_entries).unwrap_or(1000),
                    bytes: match (args.responses_store_memory, &server.responses_store_memory) {
                        (Some(bytes), _) => bytes,
                        (None, Some(text)) => {
                            parse_size(text).map_err(|e| anyhow::anyhow!("responses_store_memory: {e}"))?
                        }
                        (None, None) => 64 << 20,
                    } as usize,
                    ttl: std::time::Duration::from_secs(
                        args.responses_store_ttl_seconds.or(server.responses_store_ttl_seconds).unwrap_or(3600),
                    ),
                },
                tls: tls_files(args.tls_cert.clone().or(server.tls_cert), args.tls_key.clone().or(server.tls_key))?,
                log_format: args.log_format.or(server.log_format).unwrap_or(LogFormat::Text),
                log_content: args.log_content || server.log_content.unwrap_or(false),
                playground: !args.no_playground && server.playground.unwrap_or(true),
            },
            model,
            models,
            engine: EngineSettings {
                threads: args.threads.or(engine.threads).unwrap_or(0),
                kv_cache_memory: match (args.kv_cache_memory, &engine.kv_cache_memory) {
                    (Some(bytes), _) => Some(bytes),
                    (None, Some(text)) => Some(parse_size(text).map_err(|e| anyhow::anyhow!("kv_cache_memory: {e}"))?),
                    (None, None) => None,
                },
                limits: EngineConfig {
                    max_running: args.max_num_seqs.or(engine.max_num_seqs).unwrap_or(defaults.max_running),
                    max_waiting: args.max_waiting.or(engine.max_waiting).unwrap_or(defaults.max_waiting),
                    max_batch_tokens: args
                        .max_batch_tokens
                        .or(engine.max_batch_tokens)
                        .unwrap_or(defaults.max_batch_tokens),
                    max_waiting_prompt_tokens: args
                        .max_waiting_prompt_tokens
                        .or(engine.max_waiting_prompt_tokens)
                        .unwrap_or(defaults.max_waiting_prompt_tokens),
                    prefix_caching: !args.no_prefix_cache && engine.prefix_caching.unwrap_or(true),
                    ..defaults
                },
            },
        })
    }
}

/// The models named by `--model` flags: directories are embedding models, files the chat model; names
/// pair with paths by position.
fn models_from_flags(paths: &[PathBuf], names: &[String], weights: WeightFormat) -> anyhow::Result<ModelConfig> {
    if names.len() > paths.len() {
        anyhow::bail!("{} --served-model-name values for {} --model paths", names.len(), paths.len());
    }
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        anyhow::bail!(
            "--model {}: no such file or directory (scripts/fetch-models.sh fetches the defaults)",
            missing.display()
        );
    }
    let named = paths.iter().enumerate().map(|(i, path)| (path.clone(), names.get(i).cloned()));
    let (directories, files): (Vec<_>, Vec<_>) = named.partition(|(path, _)| path.is_dir());
    let [(path, served_model_name)]: [(PathBuf, Option<String>); 1] = files.try_into().map_err(|files: Vec<_>| {
        anyhow::anyhow!("--model must name exactly one GGUF chat model file, got {}", files.len())
    })?;
    if directories.len() > 1 {
        anyhow::bail!("--model may name at most one embedding model directory, got {}", directories.len());
    }
    let embedding = directories.into_iter().next().map(|(path, served_model_name)| EmbeddingModelConfig {
        path,
        served_model_name,
        optional: false,
    });
    Ok(ModelConfig {
        path: Some(path),
        served_model_name,
        weights,
        chat_template: None,
        reasoning: Reasoning::Auto,
        embedding,
    })
}

/// The models directories and loading limits, flags over the file's `[models]`; every directory exists.
fn models_config(args: &ServeArgs, file: FileModels) -> anyhow::Result<ModelsConfig> {
    let dirs = match args.models_dir.is_empty() {
        true => file.dirs.unwrap_or_default(),
        false => args.models_dir.clone(),
    };
    if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
        anyhow::bail!("--models-dir {}: no such directory", missing.display());
    }
    let memory = match (args.models_memory, file.memory) {
        (Some(bytes), _) => Some(bytes),
        (None, Some(text)) => Some(parse_size(&text).map_err(|e| anyhow::anyhow!("models.memory: {e}"))?),
        (None, None) => None,
    };
    let idle = args.idle_unload_seconds.or(file.idle_unload_seconds).filter(|&s| s > 0);
    Ok(ModelsConfig {
        dirs,
        max_loaded: args.max_loaded_models.or(file.max_loaded).filter(|&n| n > 0),
        memory,
        idle_unload: idle.map(std::time::Duration::from_secs),
        pinned: non_empty(&args.pin_models).or(file.pinned).unwrap_or_default(),
        aliases: file.aliases.unwrap_or_default(),
    })
}

/// Both TLS files or neither, each an existing file.
fn tls_files(cert: Option<PathBuf>, key: Option<PathBuf>) -> anyhow::Result<Option<TlsFiles>> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => anyhow::bail!("--tls-cert is set but --tls-key is missing: HTTPS needs both"),
        (None, Some(_)) => anyhow::bail!("--tls-key is set but --tls-cert is missing: HTTPS needs both"),
    };
    for (flag, path) in [("--tls-cert", &cert), ("--tls-key", &key)] {
        if !path.is_file() {
            anyhow::bail!("{flag} {}: no such file", path.display());
        }
    }
    Ok(Some(TlsFiles { cert, key }))
}

/// `Some` when a repeatable flag was given at least once.
fn non_empty(values: &[String]) -> Option<Vec<String>> {
    (!values.is_empty()).then(|| values.to_vec())
}

#[cfg(test)]
mod tests;
