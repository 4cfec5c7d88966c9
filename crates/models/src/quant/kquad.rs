//! K-quant super-blocks of four output columns ("quads") interleaved for the AVX2 kernel.
//!
//! A quad holds, for each super-block index, the four columns' GGUF blocks with every field split into
//! chunks and the chunks of the four columns placed side by side: `[chunk][column][bytes]`. One 32-byte
//! load of a quant field then gives 8 values of each of the four columns, so one `maddubs` against an
//! activation row's 8 values broadcast four times works on all four columns, and the products of a
//! scale group sum in 16 bits before one `madd` applies the group's scales: fewer multiplies per weight
//! than one column at a time. The bytes are the file's bytes, moved: a quad takes exactly the memory of
//! its four blocks, and [`block_of`] gives any column's block back.

use super::kquant::KFormat;
use super::QUAD;

/// One field of a GGUF super-block: `len` bytes at `at`, split into chunks of `chunk` bytes; in a quad,
/// the chunks of the four columns follow each other in the column order `order`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub at: usize,
    pub len: usize,
    pub chunk: usize,
    pub order: [usize; QUAD],
}

const IN_ORDER: [usize; QUAD] = [0, 1, 2, 3];

const fn field(at: usize, len: usize, chunk: usize) -> Field {
    Field { at, len, chunk, order: IN_ORDER }
}

/// Q4_K: `d, dmin` per column, the 12 scale bytes as three 32-bit words, the nibbles in 8-byte chunks.
const Q4K: [Field; 3] = [field(0, 4, 4), field(4, 12, 4), field(16, 128, 8)];
/// Q5_K: as Q4_K, with the fifth bits (`qh`) in 8-byte chunks before the nibbles.
const Q5K: [Field; 4] = [field(0, 4, 4), field(4, 12, 4), field(16, 32, 8), field(48, 128, 8)];
/// Q6_K: low nibbles and high bit pairs in 8-byte chunks, the 16 scales of columns 0, 2, 1, 3 (so one
/// byte unpack pairs columns 0/1 and 2/3), then the four `d`.
const Q6K: [Field; 4] =
    [field(0, 128, 8), field(128, 64, 8), Field { at: 192, len: 16, chunk: 16, order: [0, 2, 1, 3] }, field(208, 2, 2)];

/// The quad layout of a format, if the AVX2 kernel has one for it.
pub(super) fn fields(format: KFormat) -> Option<&'static [Field]> {
    match format {
        KFormat::Q4K => Some(&Q4K),
        KFormat::Q5K => Some(&Q5K),
        KFormat::Q6K => Some(&Q6K),
        KFormat::Q2K | KFormat::Q3K => None,
    }
}

/// Interleaves `rows × superblocks` GGUF blocks (row-major, `rows` a multiple of [`QUAD`]) into quads:
/// quad `q`, super-block `b` at `(q × superblocks + b) × QUAD × size`.
pub(super) fn interleave(format: KFormat, fields: &[Field], superblocks: usize, blocks: &[u8]) -> Vec<u8> {
    let size = format.block_bytes();
    let mut out = Vec::with_capacity(blocks.len());
    for columns in blocks.chunks_exact(QUAD * superblocks * size) {
        for b in 0..superblocks {
            for f in fields {
                for k in 0..f.len / f.chunk {
                    for &g in &f.order {
                        let at = (g * superblocks + b) * size + f.at + k * f.chunk;
                        out.extend_from_slice(&columns[at..at + f.chunk]);
                    }
                }
            }
        }
    }
    out
}

/// The GGUF block of column `n`, super-block `b`, from quads made by [`interleave`], into `block`.
pub(super) fn block_of(format: KFormat, superblocks: usize, quads: &[u8], (n, b): (usize, usize), block: &mut [u8]) {
    let (fields, size) = (fields(format).expect("a format with quads"), format.block_bytes());
    let base = &quads[((n / QUAD) * superblocks + b) * QUAD * size..][..QUAD * size];
    let position = |f: &Field| f.order.iter().position(|&g| g == n % QUAD).expect("every column has a position");
    let mut start = 0;
    for f in fields {
        let slot = position(f);
        for k in 0..f.len / f.chunk {
            let at = start + (k * QUAD + slot) * f.chunk;
            block[f.at + k * f.chunk..][..f.chunk].copy_from_slice(&base[at..at + f.chunk]);
        }
        start += f.len * QUAD;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a field starts inside one quad super-block (`QUAD` blocks' worth of bytes).
    fn offset(fields: &[Field], index: usize) -> usize {
        fields[..index].iter().map(|f| f.len * QUAD).sum()
    }

    #[test]
    fn the_kernels_offsets_are_the_layouts() {
        // `avx2::kquad` reads Q4_K scales at 16 and nibbles at 64, Q5_K fifth bits at 64 and nibbles at 192,
        // Q6_K high bits at 512, scales at 768 and `d` at 832.
        assert_eq!([offset(&Q4K, 1), offset(&Q4K, 2)], [16, 64]);
        assert_eq!([offset(&Q5K, 2), offset(&Q5K, 3)], [64, 192]);
        assert_eq!([offset(&Q6K, 1), offset(&Q6K, 2), offset(&Q6K, 3)], [512, 768, 832]);
    }

    #[test]
    fn quads_hold_the_blocks_bytes_and_give_them_back() {
        for format in [KFormat::Q4K, KFormat::Q5K, KFormat::Q6K] {
            let fields = fields(format).unwrap();
            let size = format.block_bytes();
            assert_eq!(fields.iter().map(|f| f.len).sum::<usize>(), size, "{format:?} fields cover the block");
            let (rows, superblocks) = (8, 3);
            let blocks: Vec<u8> = (0..rows * superblocks * size).map(|i| (i * 7 + i / 251) as u8).collect();
            let quads = interleave(format, fields, superblocks, &blocks);
            assert_eq!(quads.len(), blocks.len());
            let mut block = vec![0; size];
            for n in 0..rows {
                for b in 0..superblocks {
                    block_of(format, superblocks, &quads, (n, b), &mut block);
                    assert_eq!(
                        block,
                        blocks[(n * superblocks + b) * size..][..size],
                        "{format:?} column {n} block {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_quant_chunk_holds_eight_bytes_of_each_column_side_by_side() {
        let (format, superblocks) = (KFormat::Q4K, 1);
        let size = format.block_bytes();
        let blocks: Vec<u8> = (0..QUAD * size).map(|i| (i / size * 64 + i % size % 64) as u8).collect();
        let quads = interleave(format, &Q4K, superblocks, &blocks);
        let nibbles = &quads[offset(&Q4K, 2)..][..32];
        for g in 0..QUAD {
            let expected: Vec<u8> = (16..24).map(|i| (g * 64 + i % 64) as u8).collect();
            assert_eq!(nibbles[8 * g..8 * g + 8], expected[..], "column {g}");
        }
    }
}
