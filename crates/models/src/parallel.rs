//! Work split over the inference thread pool (candle's, sized by `CANDLE_NUM_THREADS`), shared with
//! candle's own kernels so that the two never oversubscribe the cores.

/// Sets the inference thread count (0 keeps the default: one per physical core). Takes effect only
/// before the first forward pass, when the pool starts.
pub fn set_inference_threads(threads: usize) {
    if threads > 0 {
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

/// The inference thread count in effect.
pub fn inference_threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// Runs `work` over `0..items` in chunks on every inference thread; returns when all are done.
pub(crate) fn for_chunks(items: usize, work: impl Fn(std::ops::Range<usize>) + Sync) {
    candle_core::utils::barrier_pool().execute_chunked(items, work);
}

/// An output buffer that the pool's threads fill in parallel, each writing cells no other thread writes.
pub(crate) struct DisjointWrites<'a> {
    ptr: *mut f32,
    len: usize,
    _buffer: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: callers uphold that no two threads write the same cell, and nobody reads until the pool call
// that shares this value has returned.
unsafe impl Sync for DisjointWrites<'_> {}

impl<'a> DisjointWrites<'a> {
    /// Wraps `buffer` for the duration of one pool call.
    pub(crate) fn new(buffer: &'a mut [f32]) -> Self {
        Self { ptr: buffer.as_mut_ptr(), len: buffer.len(), _buffer: std::marker::PhantomData }
    }

    /// The cells `range`, for the one thread that owns them.
    ///
    /// # Safety
    /// No other thread may access `range` during this pool call.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, range: std::ops::Range<usize>) -> &mut [f32] {
        assert!(range.start <= range.end && range.end <= self.len, "cells out of bounds");
        // SAFETY: in bounds (checked above); exclusive per the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}
