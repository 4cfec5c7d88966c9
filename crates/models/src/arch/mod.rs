//! The model families: each file says only how its GGUF differs from Llama's, and builds a
//! [`crate::transformer::Transformer`].

pub(crate) mod gemma3;
pub(crate) mod llama;
pub(crate) mod phi3;
pub(crate) mod qwen2;
pub(crate) mod qwen3;
