//! Hearth's end-to-end tests, one binary (ripgrep style).
//!
//! - `http`: the real router on a tiny random-weight model, through `tower::ServiceExt::oneshot`.
//! - `kv`: the paged KV cache through HTTP on the tiny model: preemption, prefix hits, pool limits.
//! - `operations`: auth, limits, overload, metrics, logs and shutdown on the tiny model.
//! - `reference`: the real default model against llama.cpp's answers in `tests/fixtures/`.
//! - `tools`: function calling on the tiny model: constrained calls streamed and folded, bad requests.
//! - `sdk`: the real server on 127.0.0.1 with the real default model, driven by the official OpenAI
//!   Python SDK (`tests/sdk/*.py`).
//! - `signals`: the real `hearth` binary on the real default model, drained by a real SIGTERM.
//! - `tls`: HTTPS in the real accept loop with self-signed certificates, on the tiny model.
//! - `tokenizers`: GGUF tokenizers (SentencePiece, byte-level BPE) against llama.cpp's ids and text in
//!   `tests/fixtures/tokenizer-reference.json`, on the real SmolLM2 and Gemma 3 vocabularies.

mod http;
mod kv;
mod operations;
mod reference;
mod sdk;
mod signals;
mod tls;
mod tokenizers;
mod tools;
mod util;
