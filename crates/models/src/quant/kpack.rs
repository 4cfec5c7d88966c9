//! K-quant super-blocks interleaved across output columns for the multi-column kernels: quads of four
//! columns for the AVX2 kernel (`avx2::kquad`), tiles of sixteen for the AVX-512 VNNI kernel
//! (`vnni::kquant`).
//!
//! A packed group of columns holds, for each super-block index, the columns' GGUF blocks with every field
//! split into chunks and the chunks of the group's columns placed side by side: `[chunk][column][bytes]`.
//! - In a quad, quants come in 8-byte chunks: one 32-byte load gives 8 values of each of the four
//!   columns, for one `maddubs` against an activation row's 8 values broadcast four times.
//! - In a tile, every field comes in 4-byte chunks: one 64-byte load gives four consecutive quants of
//!   each of the sixteen columns, one `vpdpbusd` operand against a broadcast dword of activations.
//!
//! The bytes are the file's bytes, moved: a packed group takes exactly the memory of its blocks, and
//! [`block_of`] gives any column's block back.

use super::kblock::KFormat;
use super::{QUAD, TILE};

/// One field of a GGUF super-block: `len` bytes at `at`, split into chunks of `chunk` bytes; in a packed
/// group, the chunks of the group's columns follow each other in the column order `order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Field {
    pub at: usize,
    pub len: usize,
    pub chunk: usize,
    pub order: &'static [usize],
}

/// How one format's super-blocks are packed for one kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub format: KFormat,
    /// Columns per packed group.
    pub columns: usize,
    pub fields: &'static [Field],
}

const QUAD_ORDER: &[usize] = &[0, 1, 2, 3];
const TILE_ORDER: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

const fn quad_field(at: usize, len: usize, chunk: usize) -> Field {
    Field { at, len, chunk, order: QUAD_ORDER }
}

const fn tile_field(at: usize, len: usize) -> Field {
    Field { at, len, chunk: 4, order: TILE_ORDER }
}

/// Q4_K quads: `d, dmin` per column, the 12 scale bytes as three 32-bit words, the nibbles in 8-byte chunks.
const Q4K_QUADS: [Field; 3] = [quad_field(0, 4, 4), quad_field(4, 12, 4), quad_field(16, 128, 8)];
/// Q5_K quads: as Q4_K, with the fifth bits (`qh`) in 8-byte chunks before the nibbles.
const Q5K_QUADS: [Field; 4] =
    [quad_field(0, 4, 4), quad_field(4, 12, 4), quad_field(16, 32, 8), quad_field(48, 128, 8)];
/// Q6_K quads: low nibbles and high bit pairs in 8-byte chunks, the 16 scales of columns 0, 2, 1, 3 (so
/// one byte unpack pairs columns 0/1 and 2/3), then the four `d`.
const Q6K_QUADS: [Field; 4] = [
    quad_field(0, 128, 8),
    quad_field(128, 64, 8),
    Field { at: 192, len: 16, chunk: 16, order: &[0, 2, 1, 3] },
    quad_field(208, 2, 2),
];

/// Q4_K tiles: `d, dmin` (one line), the scale bytes (three lines), the nibbles (32 lines).
const Q4K_TILES: [Field; 3] = [tile_field(0, 4), tile_field(4, 12), tile_field(16, 128)];
/// Q5_K tiles: as Q4_K, with the fifth bits (8 lines) before the nibbles.
const Q5K_TILES: [Field; 4] = [tile_field(0, 4), tile_field(4, 12), tile_field(16, 32), tile_field(48, 128)];
/// Q6_K tiles: scales (4 lines), then for each half of the values its high bit pairs (8 lines) and low
/// nibbles (16 lines), then the sixteen `d` side by side in 2-byte chunks: the lines each half of the
/// kernel's walk reads lie together, after the scales it reads first.
const Q6K_TILES: [Field; 6] = [
    tile_field(192, 16),
    tile_field(128, 32),
    tile_field(0, 64),
    tile_field(160, 32),
    tile_field(64, 64),
    Field { at: 208, len: 2, chunk: 2, order: TILE_ORDER },
];

/// The quad layout of a format, if the AVX2 kernel has one for it.
pub(super) fn quads(format: KFormat) -> Option<Layout> {
    layout(format, QUAD, [&Q4K_QUADS, &Q5K_QUADS, &Q6K_QUADS])
}

/// The tile layout of a format, if the VNNI kernel has one for it.
pub(super) fn tiles(format: KFormat) -> Option<Layout> {
    layout(format, TILE, [&Q4K_TILES, &Q5K_TILES, &Q6K_TILES])
}

/// The layout in groups of `columns` whose fields for Q4_K, Q5_K and Q6_K are `fields`.
fn layout(format: KFormat, columns: usize, [q4k, q5k, q6k]: [&'static [Field]; 3]) -> Option<Layout> {
    let fields = match format {
        KFormat::Q4K => q4k,
        KFormat::Q5K => q5k,
        KFormat::Q6K => q6k,
        KFormat::Q2K | KFormat::Q3K => return None,
    };
    Some(Layout { format, columns, fields })
}

impl Layout {
    /// Interleaves `rows × superblocks` GGUF blocks (row-major, `rows` a multiple of `columns`) into
    /// packed groups: group `q`, super-block `b` at `(q × superblocks + b) × columns × size`.
    pub(super) fn interleave(&self, superblocks: usize, blocks: &[u8]) -> LineAligned {
        let size = self.format.block_bytes();
        let mut out = LineAligned::zeroed(blocks.len());
        let mut at = 0;
        for columns in blocks.chunks_exact(self.columns * superblocks * size) {
            for b in 0..superblocks {
                for f in self.fields {
                    for k in 0..f.len / f.chunk {
                        for &g in f.order {
                            let from = (g * superblocks + b) * size + f.at + k * f.chunk;
                            out[at..at + f.chunk].copy_from_slice(&columns[from..from + f.chunk]);
                            at += f.chunk;
                        }
                    }
                }
            }
        }
        out
    }

    /// The GGUF block of column `n`, super-block `b`, from groups made by [`Layout::interleave`], into
    /// `block`.
    pub(super) fn block_of(&self, superblocks: usize, packed: &[u8], (n, b): (usize, usize), block: &mut [u8]) {
        let size = self.format.block_bytes();
        let base = &packed[((n / self.columns) * superblocks + b) * self.columns * size..][..self.columns * size];
        let mut start = 0;
        for f in self.fields {
            let slot = f.order.iter().position(|&g| g == n % self.columns).expect("every column has a position");
            for k in 0..f.len / f.chunk {
                let at = start + (k * self.columns + slot) * f.chunk;
                block[f.at + k * f.chunk..][..f.chunk].copy_from_slice(&base[at..at + f.chunk]);
            }
            start += f.len * self.columns;
        }
    }

    /// Where field `index` starts inside one packed super-block.
    #[cfg(test)]
    fn offset(&self, index: usize) -> usize {
        self.fields[..index].iter().map(|f| f.len * self.columns).sum()
    }
}

/// One cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Bytes that start on a cache line, so a packed group's 32- and 64-byte loads straddle no more lines
/// than their offsets make them.
#[derive(Debug, Clone)]
pub(super) struct LineAligned {
    lines: Vec<Line>,
    len: usize,
}

impl LineAligned {
    /// `len` zero bytes (at a cache line's alignment the allocator writes the zeros itself, touching every page).
    fn zeroed(len: usize) -> Self {
        let count = len.div_ceil(64);
        if count == 0 {
            return Self { lines: Vec::new(), len };
        }
        let layout = std::alloc::Layout::array::<Line>(count).expect("a buffer the size of a tensor");
        // SAFETY: `layout` has a non-zero size; all-zero bytes are a valid `Line`, and the vector takes
        // the allocation with the layout `Vec<Line>` itself uses for `count` lines.
        let lines = unsafe {
            let p = std::alloc::alloc_zeroed(layout).cast::<Line>();
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Vec::from_raw_parts(p, count, count)
        };
        Self { lines, len }
    }

    /// Room for `additional` more bytes, allocated now.
    pub(super) fn reserve(&mut self, additional: usize) {
        self.lines.reserve_exact((self.len + additional).div_ceil(64).saturating_sub(self.lines.len()));
    }

    /// Appends `bytes` (the bytes so far fill whole lines).
    pub(super) fn extend_from_slice(&mut self, bytes: &[u8]) {
        assert!(self.len.is_multiple_of(64), "appending after a partial line");
        let start = self.lines.len();
        self.lines.resize(start + bytes.len().div_ceil(64), Line([0; 64]));
        self.len += bytes.len();
        self[start * 64..].copy_from_slice(bytes);
    }
}

impl std::ops::Deref for LineAligned {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the lines are `len.div_ceil(64)` plain 64-byte arrays, contiguous.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }
}

impl std::ops::DerefMut for LineAligned {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: [KFormat; 3] = [KFormat::Q4K, KFormat::Q5K, KFormat::Q6K];

    #[test]
    fn the_kernels_offsets_are_the_layouts() {
        // `avx2::kquad` reads Q4_K scales at 16 and nibbles at 64, Q5_K fifth bits at 64 and nibbles at 192,
        // Q6_K high bits at 512, scales at 768 and `d` at 832.
        let quad = |f| quads(f).unwrap();
        assert_eq!([quad(KFormat::Q4K).offset(1), quad(KFormat::Q4K).offset(2)], [16, 64]);
        assert_eq!([quad(KFormat::Q5K).offset(2), quad(KFormat::Q5K).offset(3)], [64, 192]);
        assert_eq!(
            [quad(KFormat::Q6K).offset(1), quad(KFormat::Q6K).offset(2), quad(KFormat::Q6K).offset(3)],
            [512, 768, 832]
        );
        // `vnni::kquant` reads Q4_K scales at 64 and nibbles at 256, Q5_K fifth bits at 256 and nibbles at
        // 768, Q6_K scales at 0, each half's high bits at 256 and 1792 (its nibbles 512 after) and `d` at
        // 3328.
        let tile = |f| tiles(f).unwrap();
        assert_eq!([tile(KFormat::Q4K).offset(1), tile(KFormat::Q4K).offset(2)], [64, 256]);
        assert_eq!([tile(KFormat::Q5K).offset(2), tile(KFormat::Q5K).offset(3)], [256, 768]);
        assert_eq!([1, 2, 3, 4, 5].map(|f| tile(KFormat::Q6K).offset(f)), [256, 768, 1792, 2304, 3328]);
    }

    #[test]
    fn packed_groups_hold_the_blocks_bytes_and_give_them_back() {
        for layout in FORMATS.into_iter().flat_map(|f| [quads(f).unwrap(), tiles(f).unwrap()]) {
            let size = layout.format.block_bytes();
            let name = format!("{:?} in groups of {}", layout.format, layout.columns);
            assert_eq!(layout.fields.iter().map(|f| f.len).sum::<usize>(), size, "{name}: fields cover the block");
            let (rows, superblocks) = (2 * layout.columns, 3);
            let blocks: Vec<u8> = (0..rows * superblocks * size).map(|i| (i * 7 + i / 251) as u8).collect();
            let packed = layout.interleave(superblocks, &blocks);
            assert_eq!(packed.len(), blocks.len());
            assert_eq!(packed.as_ptr() as usize % 64, 0, "{name}: packed bytes start on a cache line");
            let mut block = vec![0; size];
            for n in 0..rows {
                for b in 0..superblocks {
                    layout.block_of(superblocks, &packed, (n, b), &mut block);
                    assert_eq!(block, blocks[(n * superblocks + b) * size..][..size], "{name}: column {n} block {b}");
                }
            }
        }
    }

    #[test]
    fn a_quant_chunk_holds_the_bytes_of_each_column_side_by_side() {
        for (layout, chunk) in [(quads(KFormat::Q4K).unwrap(), 8), (tiles(KFormat::Q4K).unwrap(), 4)] {
            let size = KFormat::Q4K.block_bytes();
            let blocks: Vec<u8> = (0..layout.columns * size).map(|i| (i / size * 13 + i % size % 64) as u8).collect();
            let packed = layout.interleave(1, &blocks);
            // The second chunk of nibbles: bytes `chunk..2 * chunk` of each column's `qs` (block bytes 16..).
            let line = &packed[layout.offset(2) + layout.columns * chunk..][..layout.columns * chunk];
            for g in 0..layout.columns {
                let expected: Vec<u8> = (16 + chunk..16 + 2 * chunk).map(|i| (g * 13 + i % 64) as u8).collect();
                assert_eq!(line[chunk * g..chunk * (g + 1)], expected[..], "groups of {}: column {g}", layout.columns);
            }
        }
    }
}
