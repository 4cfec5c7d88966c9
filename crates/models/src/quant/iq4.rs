//! IQ4_NL and IQ4_XS: 4-bit indices into a fixed table of 16 signed 8-bit values. The table values are
//! exact `i8`s and every block's scale an exact `f32`, so both become Q8_0 losslessly.

use super::legacy::{q8_0_exact, LegacyMatrix};
use super::BLOCK;
use crate::cpu::f16_to_f32;

/// GGML's `kvalues_iq4nl`.
const VALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// 16 bytes of indices: value `j` in the low nibble of byte `j`, value `16 + j` in its high nibble.
fn push_indices(packed: &[u8], quants: &mut Vec<i8>) {
    quants.extend(packed.iter().map(|&b| VALUES[usize::from(b & 0x0F)]));
    quants.extend(packed.iter().map(|&b| VALUES[usize::from(b >> 4)]));
}

/// IQ4_NL blocks (`d: f16`, 16 bytes of indices per 32 values) as Q8_0.
pub(super) fn nl_to_q8_0(raw: &[u8], rows: usize, cols: usize) -> LegacyMatrix {
    assert_eq!(raw.len(), rows * cols / BLOCK * 18, "IQ4_NL blocks do not match the shape {rows}x{cols}");
    let mut quants = Vec::with_capacity(rows * cols);
    let mut scales = Vec::with_capacity(rows * cols / BLOCK);
    for block in raw.chunks_exact(18) {
        scales.push(f16_at(block, 0));
        push_indices(&block[2..], &mut quants);
    }
    q8_0_exact(quants, scales, rows, cols)
}

/// IQ4_XS super-blocks (`d: f16`, `scales_h: u16`, `scales_l: [u8; 4]`, 128 bytes of indices per 256
/// values; slice `i` of 32 values has the 6-bit scale `low nibble i of scales_l | bits 2i..2i+2 of
/// scales_h << 4`, minus 32) as Q8_0.
pub(super) fn xs_to_q8_0(raw: &[u8], rows: usize, cols: usize) -> LegacyMatrix {
    assert_eq!(raw.len(), rows * cols / 256 * 136, "IQ4_XS blocks do not match the shape {rows}x{cols}");
    let mut quants = Vec::with_capacity(rows * cols);
    let mut scales = Vec::with_capacity(rows * cols / BLOCK);
    for block in raw.chunks_exact(136) {
        let d = f16_at(block, 0);
        let high = u16::from_le_bytes([block[2], block[3]]);
        for (i, packed) in block[8..].chunks_exact(16).enumerate() {
            let low = (block[4 + i / 2] >> (4 * (i % 2))) & 0x0F;
            let scale = i32::from(low) | ((i32::from(high >> (2 * i)) & 3) << 4);
            scales.push(d * (scale - 32) as f32);
            push_indices(packed, &mut quants);
        }
    }
    q8_0_exact(quants, scales, rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iq4_nl_becomes_q8_0_with_the_same_values() {
        // d = 0.5; indices 0..16 then 15..0 in the low nibbles, 3 in every high nibble.
        let mut block = vec![0x00, 0x38];
        block.extend((0..16u8).map(|j| j | 0x30));
        let m = nl_to_q8_0(&block, 1, 32);
        let row = m.dequantize_row(0);
        for j in 0..16 {
            assert_eq!(row[j], 0.5 * f32::from(VALUES[j]));
            assert_eq!(row[16 + j], 0.5 * f32::from(VALUES[3]));
        }
    }

    #[test]
    fn iq4_xs_scales_come_from_both_scale_fields() {
        // d = 1; slice 0: low nibble 5, high bits 1 → 6-bit 21 → scale -11; slice 1: low 0xA, high 2 →
        // 42 → 10; other slices 0 → -32. Every index 8 (value 1).
        let mut block = vec![0x00, 0x3C];
        block.extend_from_slice(&(0b1001u16).to_le_bytes());
        block.extend_from_slice(&[0xA5, 0, 0, 0]);
        block.extend(std::iter::repeat_n(0x88, 128));
        let row = xs_to_q8_0(&block, 1, 256).dequantize_row(0);
        assert!(row[..32].iter().all(|&v| v == -11.0), "{:?}", &row[..32]);
        assert!(row[32..64].iter().all(|&v| v == 10.0));
        assert!(row[64..].iter().all(|&v| v == -32.0));
    }
}
