//! The AVX-512 VNNI kernels, over weights repacked at load into tiles of [`COLS`] output columns: GGML's
//! legacy Q4_0, Q4_1 and Q8_0 (`legacy`), and the K-quants Q4_K, Q5_K and Q6_K (`kquant`).

mod kquant;
mod legacy;

pub(super) use kquant::{k_tile, Q45Tiles, Q6Tiles};
pub(super) use legacy::Packed;

/// Output columns per tile: one 512-bit register of f32 sums.
const COLS: usize = super::TILE;
/// Activation rows that share one decoded weight block.
const ROWS: usize = super::PASS;

/// Whether this CPU runs the kernels: AVX-512 F and BW, and VNNI.
pub(super) fn available() -> bool {
    static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VNNI.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    })
}
