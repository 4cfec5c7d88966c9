//! What can be served: the models named at start and every model in the models directories, found by
//! reading the directories again on each look-up that needs it, so files come and go without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hearth_models::WeightFormat;

use crate::config::{Config, Reasoning};
use crate::model::default_id;

/// The kind of model a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A GGUF chat or base model: generation endpoints.
    Chat,
    /// A BERT directory: `/v1/embeddings`.
    Embedding,
}

/// One servable model: its id, where it is, and how to load it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The id clients pass as `model`.
    pub id: String,
    /// Chat or embedding.
    pub kind: Kind,
    /// The GGUF file or the embedding model directory.
    pub path: PathBuf,
    /// How its weights are held.
    pub weights: WeightFormat,
    /// A chat template replacing the file's own (models named at start only).
    pub chat_template: Option<PathBuf>,
    /// Whether reasoning is split from answers.
    pub reasoning: Reasoning,
}

impl Entry {
    /// The file whose size and modification time say whether the model changed on disk.
    pub fn weights_file(&self) -> PathBuf {
        match self.kind {
            Kind::Chat => self.path.clone(),
            Kind::Embedding => self.path.join("model.safetensors"),
        }
    }

    /// The weights file's size and modification time now; `None` when it is gone.
    pub fn stamp(&self) -> Option<FileStamp> {
        let meta = std::fs::metadata(self.weights_file()).ok()?;
        Some(FileStamp { len: meta.len(), modified: meta.modified().ok() })
    }
}

/// A file's size and modification time: when either changes, what was learnt about the file is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Bytes.
    pub len: u64,
    /// Last modification, where the filesystem records it.
    pub modified: Option<SystemTime>,
}

/// The models named at start and the directories scanned for more.
#[derive(Debug, Clone)]
pub struct Catalog {
    fixed: Vec<Entry>,
    dirs: Vec<PathBuf>,
    aliases: BTreeMap<String, String>,
    weights: WeightFormat,
}

impl Catalog {
    /// The catalog `config` describes; the optional default embedding model joins only when present.
    pub fn new(config: &Config) -> Self {
        let model = &config.model;
        let mut fixed = Vec::new();
        if let Some(path) = &model.path {
            fixed.push(Entry {
                id: model.served_model_name.clone().unwrap_or_else(|| default_id(path)),
                kind: Kind::Chat,
                path: path.clone(),
                weights: model.weights,
                chat_template: model.chat_template.clone(),
                reasoning: model.reasoning,
            });
        }
        match &model.embedding {
            Some(embedding) if embedding.optional && !embedding.path.exists() => {
                tracing::info!(path = %embedding.path.display(), "no embedding model (fetch it with scripts/fetch-models.sh)");
            }
            Some(embedding) => fixed.push(Entry {
                id: embedding.served_model_name.clone().unwrap_or_else(|| default_id(&embedding.path)),
                kind: Kind::Embedding,
                path: embedding.path.clone(),
                weights: model.weights,
                chat_template: None,
                reasoning: Reasoning::Auto,
            }),
            None => {}
        }
        Self { fixed, dirs: config.models.dirs.clone(), aliases: config.models.aliases.clone(), weights: model.weights }
    }

    /// The models named at start, in order.
    pub fn fixed(&self) -> &[Entry] {
        &self.fixed
    }

    /// Whether models directories are served (then an unknown id never falls back to a default model).
    pub fn has_dirs(&self) -> bool {
        !self.dirs.is_empty()
    }

    /// Every servable model now: those named at start, then each directory's in name order. When two
    /// share an id, the first wins.
    pub fn scan(&self) -> Vec<Entry> {
        let mut entries = self.fixed.clone();
        for dir in &self.dirs {
            for entry in self.scan_dir(dir) {
                if entries.iter().any(|e| e.id == entry.id) {
                    tracing::debug!(id = %entry.id, path = %entry.path.display(), "id already taken; not served");
                } else {
                    entries.push(entry);
                }
            }
        }
        entries
    }

    fn scan_dir(&self, dir: &Path) -> Vec<Entry> {
        let Ok(read) = std::fs::read_dir(dir) else {
            tracing::warn!(dir = %dir.display(), "cannot read the models directory");
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        paths
            .into_iter()
            .filter(|path| !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .filter_map(|path| {
                let kind = if path.is_dir() && path.join("config.json").is_file() {
                    Kind::Embedding
                } else if path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
                    Kind::Chat
                } else {
                    return None;
                };
                let id = default_id(&path);
                Some(Entry { id, kind, path, weights: self.weights, chat_template: None, reasoning: Reasoning::Auto })
            })
            .collect()
    }

    /// The id `name` stands for: itself, or what the config file's aliases map it to.
    pub fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }

    /// The aliases of `id`.
    pub fn aliases_of(&self, id: &str) -> Vec<String> {
        self.aliases.iter().filter(|(_, target)| *target == id).map(|(alias, _)| alias.clone()).collect()
    }
}
