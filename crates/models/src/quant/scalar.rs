//! The portable kernels: plain Rust for any CPU, and the reference the SIMD kernels are tested against.

use super::activations::{QuantizedRows, SuperRows};
use super::kblock::{KBlock, Unpacked};
use super::kquant::{KQuantMatrix, KTILE};
use super::legacy::{LegacyFormat, LegacyMatrix, TILE};
use super::SUPER;

/// Legacy blocks: integer dot products per block, then one multiply by both scales (plus the offset term).
pub(super) fn legacy_tile(
    w: &LegacyMatrix,
    acts: &QuantizedRows,
    n: usize,
    rows: std::ops::Range<usize>,
) -> [f32; TILE] {
    let blocks = acts.blocks_per_row;
    let mut sums = [0.0; TILE];
    for (sum, row) in sums.iter_mut().zip(rows) {
        let mut total = 0.0f32;
        for b in 0..blocks {
            let (wb, ab) = (n * blocks + b, row * blocks + b);
            let a = &acts.qs[ab * 32..][..32];
            let dw = w.d[wb];
            let d = dw * acts.d[ab];
            match w.format {
                LegacyFormat::Q8_0 => {
                    let q = &w.qs[wb * 32..][..32];
                    let dot: i32 = q.iter().zip(a).map(|(&q, &a)| i32::from(q as i8) * i32::from(a)).sum();
                    total += d * dot as f32;
                }
                _ => {
                    let q = w.unsigned_quants(wb);
                    let dot: i32 = q.iter().zip(a).map(|(&q, &a)| i32::from(q) * i32::from(a)).sum();
                    total += d * dot as f32 + w.offset(wb, dw) * acts.s[ab];
                }
            }
        }
        *sum = total;
    }
    sums
}

/// K-quant super-blocks: each is unpacked once for the tile, then per row one integer sum of
/// `scale × (q·a)` per group and one of `min × Σa`, scaled by the super-block's and the row's scales.
pub(super) fn kquant_tile<F: KBlock>(
    w: &KQuantMatrix,
    acts: &SuperRows,
    n: usize,
    rows: std::ops::Range<usize>,
) -> [f32; KTILE] {
    let blocks = acts.blocks_per_row;
    let mut u = Unpacked::default();
    let mut sums = [0.0f32; KTILE];
    for b in 0..blocks {
        F::unpack(w.block(n, b), &mut u);
        for (sum, row) in sums.iter_mut().zip(rows.clone()) {
            let ab = row * blocks + b;
            let a = &acts.qs[ab * SUPER..][..SUPER];
            let mut dot = 0i32;
            for (g, (q, a)) in u.q.chunks_exact(16).zip(a.chunks_exact(16)).enumerate() {
                let group: i32 = if F::FORMAT.signed() {
                    q.iter().zip(a).map(|(&q, &a)| i32::from(q as i8) * i32::from(a)).sum()
                } else {
                    q.iter().zip(a).map(|(&q, &a)| i32::from(q) * i32::from(a)).sum()
                };
                dot += i32::from(u.scales[g]) * group;
            }
            let da = acts.d[ab];
            *sum += (u.d * da) * dot as f32;
            if !F::FORMAT.signed() {
                let group_sums = &acts.sums[ab * 16..][..16];
                let min: i32 = u.mins.iter().zip(group_sums).map(|(&m, &s)| i32::from(m) * i32::from(s)).sum();
                *sum -= (u.dmin * da) * min as f32;
            }
        }
    }
    sums
}
