//! HTTP handlers, one module per group of routes.

pub mod chat;
pub mod meta;
