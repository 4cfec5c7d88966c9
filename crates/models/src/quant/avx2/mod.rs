//! The AVX2 + FMA kernels, by block format.

mod kquad;
mod kquant;
mod legacy;

pub(super) use kquad::{quad_tile, Q4Quads, Q5Quads, Q6Quads};
pub(super) use kquant::kquant_tile;
pub(super) use legacy::legacy_tile;
