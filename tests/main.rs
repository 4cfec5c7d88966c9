//! Hearth's end-to-end tests, one binary (ripgrep style).
//!
//! - `agents`: reasoning split from answers (and constraints held until it ends), the Responses and
//!   Messages routes' auth, errors and stored responses, and rejections as error objects, on tiny models.
//! - `families`: every model family (Llama, Qwen2, Qwen3, Gemma 3, Phi-3) as a tiny random-weight GGUF
//!   written by `tests/fixtures/family_models.py`, against llama.cpp's log-probabilities in
//!   `tests/fixtures/family-reference.json`.
//! - `fuzz`: mutated JSON into every endpoint's extractor and preparation: no panic, no 5xx.
//! - `gemma`: the real Gemma 3 270M (a base model) against llama.cpp's continuations in
//!   `tests/fixtures/gemma3-reference.json`, and over HTTP.
//! - `http`: the real router on a tiny random-weight model, through `tower::ServiceExt::oneshot`.
//! - `kv`: the paged KV cache through HTTP on the tiny model: preemption, prefix hits, pool limits.
//! - `memory`: the real `hearth` binary on the real default model under bursts of 3.85 MB requests: all
//!   refused, resident memory bounded and given back (issue 17).
//! - `models_dir`: one server, many models: a models directory loaded on demand, unloads under the model
//!   count and the memory budget, idle unloading, pinning, the admin routes, hostile files beside good
//!   ones; tiny models, then the real SmolLM2, Gemma 3 and MiniLM against single-model servers.
//! - `model_files`: damaged GGUF files (bit flips, extreme sizes, truncation) are load errors, never crashes.
//! - `playground`: the web page at `/` (its files, headers and auth on the tiny model), and the page in a
//!   real headless Chromium through WebDriver (`tests/playground/*.py`) on the real default model.
//! - `operations`: auth, limits, overload, metrics, logs and shutdown on the tiny model.
//! - `reference`: the real default model against llama.cpp's answers in `tests/fixtures/`.
//! - `tools`: function calling on the tiny model: constrained calls streamed and folded, bad requests.
//! - `sdk`: the real server on 127.0.0.1 with the real default model, driven by the official OpenAI and
//!   Anthropic Python SDKs and LangChain (`tests/sdk/*.py`).
//! - `signals`: the real `hearth` binary on the real default model, drained by a real SIGTERM.
//! - `tls`: HTTPS in the real accept loop with self-signed certificates, on the tiny model.
//! - `templates`: the chat templates the families ship, rendered as Hugging Face's jinja2 renders them
//!   (`tests/fixtures/chat-template-reference.json`).
//! - `tokenizers`: GGUF tokenizers (SentencePiece, byte-level BPE) against llama.cpp's ids and text in
//!   `tests/fixtures/tokenizer-reference.json`, on the real SmolLM2 and Gemma 3 vocabularies.

mod agents;
mod families;
mod fuzz;
mod gemma;
mod http;
mod kv;
mod memory;
mod model_files;
mod models_dir;
mod operations;
mod playground;
mod reference;
mod sdk;
mod signals;
mod templates;
mod tls;
mod tokenizers;
mod tools;
mod util;
