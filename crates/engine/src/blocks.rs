//! KV block accounting: allocation, reference counts, and the prefix cache.
//!
//! Every block of the model's [`hearth_models::KvPool`] is free, in use (one or more sequences hold it),
//! or cached-and-idle: a full block whose tokens are known, kept for reuse until its space is needed, then
//! evicted least recently used first. A full block's key is a hash of its tokens chained with the key of
//! the block before it, so a key names a whole prefix, and a hit is verified token for token.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// A full block's identity: the hash of its tokens and of every block before it.
pub type BlockKey = u64;

/// The keys of the full blocks of `tokens`, in order.
pub fn block_keys(tokens: &[u32], block_size: usize) -> Vec<BlockKey> {
    let mut keys = Vec::with_capacity(tokens.len() / block_size);
    let mut previous = 0;
    for block in tokens.chunks_exact(block_size) {
        previous = chain(previous, block);
        keys.push(previous);
    }
    keys
}

/// The key of a block of `tokens` that follows the block keyed `previous` (0 for the first block).
pub fn chain(previous: BlockKey, tokens: &[u32]) -> BlockKey {
    let mut hasher = DefaultHasher::new();
    previous.hash(&mut hasher);
    tokens.hash(&mut hasher);
    hasher.finish()
}

/// The cached blocks a new sequence can start from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixHit {
    /// Cached blocks holding the sequence's first `blocks.len() × block_size` tokens, in order.
    pub blocks: Vec<u32>,
    /// How many of them are idle now, so that taking them uses up allocatable space.
    pub idle: usize,
}

/// What a cached block holds.
#[derive(Debug, Clone)]
struct Cached {
    key: BlockKey,
    tokens: Box<[u32]>,
}

/// Owns the state of every block; the worker's single source of truth about KV memory.
#[derive(Debug)]
pub struct BlockManager {
    block_size: usize,
    prefix_caching: bool,
    refs: Vec<u32>,
    /// Blocks holding nothing reusable.
    free: Vec<u32>,
    /// What each block caches, if anything.
    contents: Vec<Option<Cached>>,
    /// Cached blocks by key.
    by_key: HashMap<BlockKey, u32>,
    /// Cached blocks nobody holds, by when they were last released: the eviction order.
    idle: BTreeMap<u64, u32>,
    /// When each block was last released (its key in `idle`).
    released_at: Vec<u64>,
    clock: u64,
}

impl BlockManager {
    /// `num_blocks` free blocks of `block_size` positions; `prefix_caching` keeps full blocks for reuse.
    pub fn new(num_blocks: usize, block_size: usize, prefix_caching: bool) -> Self {
        Self {
            block_size,
            prefix_caching,
            refs: vec![0; num_blocks],
            free: (0..num_blocks as u32).rev().collect(),
            contents: vec![None; num_blocks],
            by_key: HashMap::new(),
            idle: BTreeMap::new(),
            released_at: vec![0; num_blocks],
            clock: 0,
        }
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks in the pool.
    pub fn total(&self) -> usize {
        self.refs.len()
    }

    /// Blocks that `allocate` can still hand out: free ones and idle cached ones.
    pub fn available(&self) -> usize {
        self.free.len() + self.idle.len()
    }

    /// Blocks some sequence holds.
    pub fn in_use(&self) -> usize {
        self.total() - self.available()
    }

    /// How many sequences hold `block`.
    pub fn refs(&self, block: u32) -> u32 {
        self.refs[block as usize]
    }

    /// A block for one sequence alone: a free one, else the least recently used idle cached one.
    pub fn allocate(&mut self) -> Option<u32> {
        let block = match self.free.pop() {
            Some(block) => block,
            None => {
                let (_, block) = self.idle.pop_first()?;
                if let Some(cached) = self.contents[block as usize].take() {
                    self.by_key.remove(&cached.key);
                }
                block
            }
        };
        self.refs[block as usize] = 1;
        Some(block)
    }

    /// One more holder for each of `blocks` (a prefix hit, or a fork sharing full blocks).
    pub fn acquire(&mut self, blocks: &[u32]) {
        for &block in blocks {
            if self.refs[block as usize] == 0 {
                self.idle.remove(&self.released_at[block as usize]);
            }
            self.refs[block as usize] += 1;
        }
    }

    /// One holder fewer for each of `blocks`; a block nobody holds becomes idle (if cached) or free.
    pub fn release(&mut self, blocks: &[u32]) {
        for &block in blocks {
            let refs = &mut self.refs[block as usize];
            debug_assert!(*refs > 0, "block {block} released more often than held");
            *refs = refs.saturating_sub(1);
            if *refs > 0 {
                continue;
            }
            if self.contents[block as usize].is_some() {
                self.clock += 1;
                self.released_at[block as usize] = self.clock;
                self.idle.insert(self.clock, block);
            } else {
                self.free.push(block);
            }
        }
    }

    /// Records that `block`, now full, holds `tokens` under `key`, so later sequences can reuse it. A key
    /// already cached in another block keeps that block; this one stays private.
    pub fn register(&mut self, block: u32, key: BlockKey, tokens: &[u32]) {
        if !self.prefix_caching || self.by_key.contains_key(&key) || self.contents[block as usize].is_some() {
            return;
        }
        self.by_key.insert(key, block);
        self.contents[block as usize] = Some(Cached { key, tokens: tokens.into() });
    }

    /// The longest run of cached blocks matching the first full blocks of `tokens` (keys from
    /// [`block_keys`]); changes nothing.
    pub fn lookup(&self, keys: &[BlockKey], tokens: &[u32]) -> PrefixHit {
        let mut hit = PrefixHit::default();
        if !self.prefix_caching {
            return hit;
        }
        for (i, key) in keys.iter().enumerate() {
            let Some(&block) = self.by_key.get(key) else { break };
            let expected = &tokens[i * self.block_size..(i + 1) * self.block_size];
            if self.contents[block as usize].as_ref().is_none_or(|c| &*c.tokens != expected) {
                break;
            }
            hit.idle += usize::from(self.refs[block as usize] == 0);
            hit.blocks.push(block);
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: usize = 4;

    /// Fills `blocks` with `tokens` and registers them, as the worker does once blocks are full.
    fn fill(m: &mut BlockManager, blocks: &[u32], tokens: &[u32]) {
        for ((block, key), chunk) in blocks.iter().zip(block_keys(tokens, B)).zip(tokens.chunks_exact(B)) {
            m.register(*block, key, chunk);
        }
    }

    #[test]
    fn allocate_until_empty_then_release_makes_room() {
        let mut m = BlockManager::new(3, B, true);
        let held: Vec<u32> = (0..3).map(|_| m.allocate().unwrap()).collect();
        assert_eq!((m.available(), m.in_use()), (0, 3));
        assert_eq!(m.allocate(), None);
        m.release(&held[..1]);
        assert_eq!(m.allocate(), Some(held[0]));
    }

    #[test]
    fn a_cached_prefix_is_found_shared_and_counted() {
        let mut m = BlockManager::new(8, B, true);
        let tokens: Vec<u32> = (0..10).collect();
        let a: Vec<u32> = (0..3).map(|_| m.allocate().unwrap()).collect();
        fill(&mut m, &a[..2], &tokens[..8]);
        let keys = block_keys(&tokens, B);
        let hit = m.lookup(&keys, &tokens);
        assert_eq!((hit.blocks.as_slice(), hit.idle), (&a[..2], 0), "held by its writer: shared, not idle");
        m.acquire(&hit.blocks);
        assert_eq!(m.refs(a[0]), 2);
        m.release(&a);
        m.release(&hit.blocks);
        assert_eq!(m.available(), 8, "idle cached blocks still count as available");
        let again = m.lookup(&keys, &tokens);
        assert_eq!((again.blocks.len(), again.idle), (2, 2));
    }

    #[test]
    fn keys_chain_so_only_a_whole_prefix_matches() {
        let mut m = BlockManager::new(8, B, true);
        let tokens: Vec<u32> = (0..8).collect();
        let blocks: Vec<u32> = (0..2).map(|_| m.allocate().unwrap()).collect();
        fill(&mut m, &blocks, &tokens);
        // Same second block, different first block: no hit at all.
        let other: Vec<u32> = [99, 1, 2, 3, 4, 5, 6, 7].to_vec();
        assert!(m.lookup(&block_keys(&other, B), &other).blocks.is_empty());
        // Same first block, different second: a one-block hit.
        let branch: Vec<u32> = [0, 1, 2, 3, 9, 9, 9, 9].to_vec();
        assert_eq!(m.lookup(&block_keys(&branch, B), &branch).blocks, [blocks[0]]);
    }

    #[test]
    fn idle_blocks_are_evicted_least_recently_used_first() {
        let mut m = BlockManager::new(2, B, true);
        let (x, y): (Vec<u32>, Vec<u32>) = ((0..4).collect(), (10..14).collect());
        let bx = m.allocate().unwrap();
        let by = m.allocate().unwrap();
        fill(&mut m, &[bx], &x);
        fill(&mut m, &[by], &y);
        m.release(&[bx]);
        m.release(&[by]);
        // Touch x again: y becomes the least recently used.
        let hit = m.lookup(&block_keys(&x, B), &x);
        m.acquire(&hit.blocks);
        m.release(&hit.blocks);
        let fresh = m.allocate().unwrap();
        assert_eq!(fresh, by, "the least recently used idle block is evicted");
        assert!(m.lookup(&block_keys(&y, B), &y).blocks.is_empty(), "an evicted block is no longer a hit");
        assert_eq!(m.lookup(&block_keys(&x, B), &x).blocks, [bx]);
    }

    #[test]
    fn without_prefix_caching_nothing_is_kept() {
        let mut m = BlockManager::new(2, B, false);
        let tokens: Vec<u32> = (0..4).collect();
        let b = m.allocate().unwrap();
        fill(&mut m, &[b], &tokens);
        m.release(&[b]);
        assert!(m.lookup(&block_keys(&tokens, B), &tokens).blocks.is_empty());
        assert_eq!(m.available(), 2);
    }

    #[test]
    fn a_hash_collision_is_not_a_hit() {
        let mut m = BlockManager::new(2, B, true);
        let tokens: Vec<u32> = (0..4).collect();
        let b = m.allocate().unwrap();
        m.register(b, 42, &tokens);
        let other: Vec<u32> = (4..8).collect();
        assert!(m.lookup(&[42], &other).blocks.is_empty());
    }
}
