//! One sequence's keys and values.

/// Keys and values of every layer for one sequence, position-major: row `p` of layer `l` holds the
/// `n_kv_heads × head_dim` values of position `p`. Rows are appended in place; reserving the capacity
/// up front (prompt + `max_tokens`) keeps reallocation off the decode path.
#[derive(Debug, Clone)]
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    row: usize,
    len: usize,
}

impl KvCache {
    /// An empty cache for `layers` layers of `row` values per position, with room for `capacity` positions.
    pub fn new(layers: usize, row: usize, capacity: usize) -> Self {
        let empty = || (0..layers).map(|_| Vec::with_capacity(row * capacity)).collect();
        Self { keys: empty(), values: empty(), row, len: 0 }
    }

    /// Positions stored (equal in every layer once a step is done).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends rows to one layer; `keys` and `values` hold whole rows.
    pub(crate) fn append(&mut self, layer: usize, keys: &[f32], values: &[f32]) {
        self.keys[layer].extend_from_slice(keys);
        self.values[layer].extend_from_slice(values);
    }

    /// All keys and values of one layer.
    pub(crate) fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Marks `n` more positions as stored, once every layer has appended them.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self.keys.iter().all(|k| k.len() == self.len * self.row));
    }

    /// A copy of this cache with room for `capacity` positions, for a sequence that shares this prefix.
    pub fn fork(&self, capacity: usize) -> Self {
        let copy = |layers: &[Vec<f32>]| {
            layers
                .iter()
                .map(|l| {
                    let mut v = Vec::with_capacity(self.row * capacity.max(self.len));
                    v.extend_from_slice(l);
                    v
                })
                .collect()
        };
        Self { keys: copy(&self.keys), values: copy(&self.values), row: self.row, len: self.len }
    }

    /// Bytes held, capacity included.
    pub fn bytes(&self) -> usize {
        self.keys.iter().chain(&self.values).map(|v| v.capacity() * 4).sum()
    }
}
