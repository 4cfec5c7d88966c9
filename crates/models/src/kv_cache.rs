//! The paged KV cache: one preallocated pool of fixed-size blocks that every sequence's keys and values
//! live in, addressed through per-sequence block tables.

use crate::SeqStep;

/// Keys and values of every layer for `num_blocks` blocks of `block_size` positions. Row `r` of block `b`
/// in layer `l` holds the `n_kv_heads × head_dim` values of one position; a sequence's position `p` lives
/// in block `table[p / block_size]` at row `p % block_size`. Allocated once: nothing on the decode path
/// allocates KV memory.
#[derive(Debug)]
pub struct KvPool {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    row: usize,
    block_size: usize,
    num_blocks: usize,
}

impl KvPool {
    /// A pool for `layers` layers of `row` values per position. Its memory is zeroed lazily by the OS, so
    /// pages count toward resident memory only once a block is first written.
    pub fn new(layers: usize, row: usize, block_size: usize, num_blocks: usize) -> Self {
        let len = row * block_size * num_blocks;
        let zeroed = || (0..layers).map(|_| vec![0.0; len]).collect();
        Self { keys: zeroed(), values: zeroed(), row, block_size, num_blocks }
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
        2 * self.keys.len() * self.row * self.block_size * 4
    }

    /// Writes the key and value rows of `step`'s new positions in one layer. `keys` and `values` hold whole
    /// rows, one per token of the step.
    pub(crate) fn write(&mut self, layer: usize, step: &SeqStep<'_>, keys: &[f32], values: &[f32]) {
        let row = self.row;
        for (i, (k, v)) in keys.chunks_exact(row).zip(values.chunks_exact(row)).enumerate() {
            let at = self.slot(step.blocks, step.start + i) * row;
            self.keys[layer][at..at + row].copy_from_slice(k);
            self.values[layer][at..at + row].copy_from_slice(v);
        }
    }

    /// All keys and values of one layer, every block.
    pub(crate) fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Copies the first `rows` positions of block `from` into block `to`, in every layer.
    pub fn copy_block(&mut self, from: u32, to: u32, rows: usize) {
        let len = rows * self.row;
        let (from, to) = (from as usize * self.block_size * self.row, to as usize * self.block_size * self.row);
        for layer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            layer.copy_within(from..from + len, to);
        }
    }

    /// The pool row of a sequence's position.
    fn slot(&self, blocks: &[u32], position: usize) -> usize {
        blocks[position / self.block_size] as usize * self.block_size + position % self.block_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_land_in_their_tables_blocks() {
        let mut pool = KvPool::new(1, 2, 2, 4);
        // Positions 0..3 of a sequence whose table is [3, 1]: 0,1 → block 3; 2 → block 1.
        let step = SeqStep { tokens: &[7, 7, 7], start: 0, blocks: &[3, 1], want_logits: false };
        pool.write(0, &step, &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0], &[-1.0, -1.0, -2.0, -2.0, -3.0, -3.0]);
        let (keys, values) = pool.layer(0);
        assert_eq!(&keys[12..16], [1.0, 1.0, 2.0, 2.0]);
        assert_eq!(&keys[4..6], [3.0, 3.0]);
        assert_eq!(&values[4..6], [-3.0, -3.0]);
        pool.copy_block(3, 0, 2);
        assert_eq!(&pool.layer(0).0[0..4], [1.0, 1.0, 2.0, 2.0]);
        assert_eq!(pool.block_bytes(), 2 * 2 * 2 * 4);
    }
}
