//! HTTP handlers, one module per group of routes.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod generation;
pub mod messages;
pub mod meta;
pub mod responses;
pub mod tokenize;
