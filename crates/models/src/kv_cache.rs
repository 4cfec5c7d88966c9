//! The paged KV cache: one preallocated pool of fixed-size blocks that every sequence's keys and values
//! live in, addressed through per-sequence block tables.

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

use crate::SeqStep;

/// Keys and values of every layer for `num_blocks` blocks of `block_size` positions, as f16 (half the
/// memory and the bandwidth of f32; llama.cpp's default too). A block holds its positions head by head:
/// in layer `l`, block `b`, key/value head `h`, row `r` is one position's `head_dim` values, and the rows of
/// one head are contiguous, so attention streams them. A sequence's position `p` lives in block
/// `table[p / block_size]` at row `p % block_size`. Allocated once: nothing on the decode path allocates KV
/// memory.
#[derive(Debug)]
pub struct KvPool {
    /// f16 bits: a `u16` vector of zeros is allocated zeroed by the OS, untouched, where one of `f16`
    /// would be written out page by page.
    keys: Vec<Vec<u16>>,
    values: Vec<Vec<u16>>,
    heads: usize,
    head_dim: usize,
    block_size: usize,
    num_blocks: usize,
}

impl KvPool {
    /// A pool for `layers` layers of `heads` key/value heads of `head_dim` values. Its memory is zeroed
    /// lazily by the OS, so pages count toward resident memory only once a block is first written.
    pub fn new(layers: usize, heads: usize, head_dim: usize, block_size: usize, num_blocks: usize) -> Self {
        let len = heads * head_dim * block_size * num_blocks;
        let zeroed = || (0..layers).map(|_| vec![0u16; len]).collect();
        Self { keys: zeroed(), values: zeroed(), heads, head_dim, block_size, num_blocks }
    }

    /// Bytes one position takes over all layers, keys and values.
    pub fn bytes_per_position(layers: usize, heads: usize, head_dim: usize) -> usize {
        2 * layers * heads * head_dim * std::mem::size_of::<f16>()
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks in the pool.
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    /// Bytes one block holds over all layers, keys and values.
    pub fn block_bytes(&self) -> usize {
        Self::bytes_per_position(self.keys.len(), self.heads, self.head_dim) * self.block_size
    }

    /// Writes the key and value rows of `step`'s new positions in one layer. `keys` and `values` hold whole
    /// rows (every head), one per token of the step.
    pub(crate) fn write(&mut self, layer: usize, step: &SeqStep<'_>, keys: &[f32], values: &[f32]) {
        let (d, row) = (self.head_dim, self.heads * self.head_dim);
        for (i, (k, v)) in keys.chunks_exact(row).zip(values.chunks_exact(row)).enumerate() {
            let position = step.start + i;
            let block = step.blocks[position / self.block_size] as usize;
            for h in 0..self.heads {
                let at = ((block * self.heads + h) * self.block_size + position % self.block_size) * d;
                self.keys[layer][at..at + d]
                    .reinterpret_cast_mut::<f16>()
                    .convert_from_f32_slice(&k[h * d..(h + 1) * d]);
                self.values[layer][at..at + d]
                    .reinterpret_cast_mut::<f16>()
                    .convert_from_f32_slice(&v[h * d..(h + 1) * d]);
            }
        }
    }

    /// All keys and values of one layer, every block.
    pub(crate) fn layer(&self, layer: usize) -> (&[f16], &[f16]) {
        (self.keys[layer].reinterpret_cast(), self.values[layer].reinterpret_cast())
    }

    /// Copies the first `rows` positions of block `from` into block `to`, in every layer.
    pub fn copy_block(&mut self, from: u32, to: u32, rows: usize) {
        let (d, bs) = (self.head_dim, self.block_size);
        for layer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            for h in 0..self.heads {
                let (from, to) = ((from as usize * self.heads + h) * bs * d, (to as usize * self.heads + h) * bs * d);
                layer.copy_within(from..from + rows * d, to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident memory of this process, from `/proc/self/statm` (pages of 4 KiB).
    #[cfg(target_os = "linux")]
    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 4096
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_new_pool_takes_no_resident_memory_until_written() {
        let before = resident_bytes();
        // 1 GiB: 4 layers × keys and values × 128 MiB.
        let pool = KvPool::new(4, 4, 64, 16, 16384);
        let grown = resident_bytes().saturating_sub(before);
        assert_eq!(pool.block_bytes() * pool.num_blocks(), 1 << 30);
        assert!(grown < 64 << 20, "allocating the pool made {} MiB resident", grown >> 20);
    }

    #[test]
    fn positions_land_in_their_tables_blocks_head_by_head() {
        // 2 heads of 1 value, blocks of 2 positions: a block is [h0 r0, h0 r1, h1 r0, h1 r1].
        let mut pool = KvPool::new(1, 2, 1, 2, 4);
        // Positions 0..3 of a sequence whose table is [3, 1]: 0,1 → block 3; 2 → block 1.
        let step = SeqStep { tokens: &[7, 7, 7], start: 0, blocks: &[3, 1], want_logits: false };
        pool.write(0, &step, &[1.0, 10.0, 2.0, 20.0, 3.0, 30.0], &[-1.0, -10.0, -2.0, -20.0, -3.0, -30.0]);
        let floats = |v: &[f16]| v.iter().map(|x| x.to_f32()).collect::<Vec<_>>();
        let (keys, values) = pool.layer(0);
        assert_eq!(floats(&keys[12..16]), [1.0, 2.0, 10.0, 20.0]);
        assert_eq!(floats(&keys[4..8]), [3.0, 0.0, 30.0, 0.0]);
        assert_eq!(floats(&values[4..8]), [-3.0, 0.0, -30.0, 0.0]);
        pool.copy_block(3, 0, 1);
        assert_eq!(floats(&pool.layer(0).0[0..4]), [1.0, 0.0, 10.0, 0.0], "one row of each head");
        assert_eq!(pool.block_bytes(), 2 * 2 * 2 * 2);
    }
}
