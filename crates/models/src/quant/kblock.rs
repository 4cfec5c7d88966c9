//! GGML's K-quant super-blocks (`block_q2_K` to `block_q6_K`): 256 values with one f16 scale (and an f16
//! minimum scale) and small integer scales per group of 16 or 32 values.
//!
//! Each format's only code is how to unpack one super-block into [`Unpacked`], the form the one-column
//! kernels consume:
//! - unsigned formats (Q2_K, Q4_K, Q5_K): `x_i = d · scales[i/16] · q_i − dmin · mins[i/16]`;
//! - signed formats (Q3_K, Q6_K): `x_i = d · scales[i/16] · q_i`, with `q_i` an i8.
//!
//! The unpacking is plain Rust that the compiler vectorises inside each instruction set's kernel.

use super::SUPER;
use crate::cpu::f16_to_f32;
use crate::gguf::TensorType;

/// The K-quant formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KFormat {
    /// 2-bit quants, 4-bit scales and minimums per 16 values.
    Q2K,
    /// 3-bit signed quants, 6-bit scales per 16 values.
    Q3K,
    /// 4-bit quants, 6-bit scales and minimums per 32 values.
    Q4K,
    /// 5-bit quants, 6-bit scales and minimums per 32 values.
    Q5K,
    /// 6-bit signed quants, 8-bit scales per 16 values.
    Q6K,
}

impl KFormat {
    /// The K-quant format of a GGUF tensor type, if it is one (Q8_K, an activation format, is not).
    pub fn of(dtype: TensorType) -> Option<Self> {
        Some(match dtype {
            TensorType::Q2_K => Self::Q2K,
            TensorType::Q3_K => Self::Q3K,
            TensorType::Q4_K => Self::Q4K,
            TensorType::Q5_K => Self::Q5K,
            TensorType::Q6_K => Self::Q6K,
            _ => return None,
        })
    }

    /// Bytes of one super-block.
    pub(super) fn block_bytes(self) -> usize {
        match self {
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Whether the unpacked quants are signed (no minimum term).
    pub(super) fn signed(self) -> bool {
        matches!(self, Self::Q3K | Self::Q6K)
    }
}

/// One super-block unpacked: quants one per byte, an integer scale and minimum per group of 16.
#[derive(Debug, Clone)]
#[repr(C, align(32))]
pub(super) struct Unpacked {
    /// Unsigned quants, or i8 bits for the signed formats.
    pub q: [u8; SUPER],
    pub scales: [i16; 16],
    pub mins: [i16; 16],
    pub d: f32,
    pub dmin: f32,
}

impl Default for Unpacked {
    fn default() -> Self {
        Self { q: [0; SUPER], scales: [0; 16], mins: [0; 16], d: 0.0, dmin: 0.0 }
    }
}

#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Q4_K and Q5_K pack eight 6-bit scales and eight 6-bit minimums into 12 bytes.
#[inline(always)]
fn six_bit_scales(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0; 8], [0; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, mn)
}

/// Per-32 scales and minimums spread to the 16 groups of 16.
#[inline(always)]
fn per_32(u: &mut Unpacked, sc: [u8; 8], mn: [u8; 8]) {
    for j in 0..8 {
        u.scales[2 * j] = i16::from(sc[j]);
        u.scales[2 * j + 1] = i16::from(sc[j]);
        u.mins[2 * j] = i16::from(mn[j]);
        u.mins[2 * j + 1] = i16::from(mn[j]);
    }
}

/// A K-quant format's super-block layout (GGML's `block_qN_K`).
pub(super) trait KBlock {
    /// The format.
    const FORMAT: KFormat;
    /// Unpacks one super-block (`FORMAT.block_bytes()` bytes).
    fn unpack(block: &[u8], u: &mut Unpacked);
}

/// `d, dmin: f16; scales: [u8; 12]; qs: [u8; 128]`: value `64j + l` is the low nibble of `qs[32j + l]`,
/// value `64j + 32 + l` its high nibble, in groups of 32 with scale and minimum `j`.
pub(super) struct Q4K;
impl KBlock for Q4K {
    const FORMAT: KFormat = KFormat::Q4K;
    #[inline(always)]
    fn unpack(b: &[u8], u: &mut Unpacked) {
        let b: &[u8; 144] = b.try_into().expect("a Q4_K block");
        (u.d, u.dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, mn) = six_bit_scales(&b[4..16]);
        per_32(u, sc, mn);
        for (j, qs) in b[16..].chunks_exact(32).enumerate() {
            for (l, &byte) in qs.iter().enumerate() {
                u.q[64 * j + l] = byte & 0x0F;
                u.q[64 * j + 32 + l] = byte >> 4;
            }
        }
    }
}

/// As Q4_K, with `qh: [u8; 32]` before the nibbles: bit `2j` of `qh[l]` is the fifth bit of value
/// `64j + l`, bit `2j + 1` that of value `64j + 32 + l`.
pub(super) struct Q5K;
impl KBlock for Q5K {
    const FORMAT: KFormat = KFormat::Q5K;
    #[inline(always)]
    fn unpack(b: &[u8], u: &mut Unpacked) {
        let b: &[u8; 176] = b.try_into().expect("a Q5_K block");
        (u.d, u.dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, mn) = six_bit_scales(&b[4..16]);
        per_32(u, sc, mn);
        let qh = &b[16..48];
        for (j, qs) in b[48..].chunks_exact(32).enumerate() {
            for (l, (&byte, &high)) in qs.iter().zip(qh).enumerate() {
                u.q[64 * j + l] = (byte & 0x0F) | (((high >> (2 * j)) & 1) << 4);
                u.q[64 * j + 32 + l] = (byte >> 4) | (((high >> (2 * j + 1)) & 1) << 4);
            }
        }
    }
}

/// `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`; in half `n` (128 values), value
/// `32k + l` takes nibble `k / 2` of `ql[64n + 32(k % 2) + l]` and bits `2k..2k + 2` of `qh[32n + l]`,
/// minus 32.
pub(super) struct Q6K;
impl KBlock for Q6K {
    const FORMAT: KFormat = KFormat::Q6K;
    #[inline(always)]
    fn unpack(b: &[u8], u: &mut Unpacked) {
        let b: &[u8; 210] = b.try_into().expect("a Q6_K block");
        for n in 0..2 {
            let (ql, qh) = (&b[64 * n..64 * n + 64], &b[128 + 32 * n..160 + 32 * n]);
            let q = &mut u.q[128 * n..128 * n + 128];
            for l in 0..32 {
                let high = qh[l];
                q[l] = ((ql[l] & 0x0F) | ((high & 3) << 4)).wrapping_sub(32);
                q[l + 32] = ((ql[l + 32] & 0x0F) | (((high >> 2) & 3) << 4)).wrapping_sub(32);
                q[l + 64] = ((ql[l] >> 4) | (((high >> 4) & 3) << 4)).wrapping_sub(32);
                q[l + 96] = ((ql[l + 32] >> 4) | (((high >> 6) & 3) << 4)).wrapping_sub(32);
            }
        }
        for (scale, &s) in u.scales.iter_mut().zip(&b[192..208]) {
            *scale = i16::from(s as i8);
        }
        (u.d, u.dmin) = (f16_at(b, 208), 0.0);
    }
}

/// `hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: f16`; value `128n + 32j + l` takes bits
/// `2j..2j + 2` of `qs[32n + l]` and, as its third bit, bit `4n + j` of `hmask[l]`, minus 4; sixteen
/// 6-bit scales minus 32.
pub(super) struct Q3K;
impl KBlock for Q3K {
    const FORMAT: KFormat = KFormat::Q3K;
    #[inline(always)]
    fn unpack(b: &[u8], u: &mut Unpacked) {
        let b: &[u8; 110] = b.try_into().expect("a Q3_K block");
        let (hmask, qs, s) = (&b[0..32], &b[32..96], &b[96..108]);
        for n in 0..2 {
            for j in 0..4 {
                for l in 0..32 {
                    let low = (qs[32 * n + l] >> (2 * j)) & 3;
                    let high = (hmask[l] >> (4 * n + j)) & 1;
                    u.q[128 * n + 32 * j + l] = (low | (high << 2)).wrapping_sub(4);
                }
            }
        }
        // Scale g: low 4 bits from s[g % 8] (nibble g / 8), high 2 bits from s[8 + g % 4] (pair g / 4).
        for g in 0..16 {
            let low = (s[g % 8] >> (4 * (g / 8))) & 0x0F;
            let high = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
            u.scales[g] = i16::from(low | (high << 4)) - 32;
        }
        (u.d, u.dmin) = (f16_at(b, 108), 0.0);
    }
}

/// `scales: [u8; 16], qs: [u8; 64], d, dmin: f16`; value `128n + 32j + l` is bits `2j..2j + 2` of
/// `qs[32n + l]`; group `g` has scale `scales[g] & 15` and minimum `scales[g] >> 4`.
pub(super) struct Q2K;
impl KBlock for Q2K {
    const FORMAT: KFormat = KFormat::Q2K;
    #[inline(always)]
    fn unpack(b: &[u8], u: &mut Unpacked) {
        let b: &[u8; 84] = b.try_into().expect("a Q2_K block");
        let qs = &b[16..80];
        for n in 0..2 {
            for j in 0..4 {
                for l in 0..32 {
                    u.q[128 * n + 32 * j + l] = (qs[32 * n + l] >> (2 * j)) & 3;
                }
            }
        }
        for (g, &s) in b[..16].iter().enumerate() {
            u.scales[g] = i16::from(s & 0x0F);
            u.mins[g] = i16::from(s >> 4);
        }
        (u.d, u.dmin) = (f16_at(b, 80), f16_at(b, 82));
    }
}

/// Runs `$body` with `$F` bound to the [`KBlock`] type of `$format`.
macro_rules! with_block {
    ($format:expr, $F:ident => $body:expr) => {
        match $format {
            KFormat::Q2K => {
                type $F = Q2K;
                $body
            }
            KFormat::Q3K => {
                type $F = Q3K;
                $body
            }
            KFormat::Q4K => {
                type $F = Q4K;
                $body
            }
            KFormat::Q5K => {
                type $F = Q5K;
                $body
            }
            KFormat::Q6K => {
                type $F = Q6K;
                $body
            }
        }
    };
}
pub(super) use with_block;
