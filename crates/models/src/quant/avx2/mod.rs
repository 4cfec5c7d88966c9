//! The AVX2 + FMA kernels, by block format.

mod kquad;
mod kquant;
mod legacy;

pub(super) use kquad::{q4k_q5k, q6k};
pub(super) use kquant::kquant_tile;
pub(super) use legacy::legacy_tile;
