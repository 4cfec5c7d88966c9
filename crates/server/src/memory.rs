//! Giving freed memory back to the kernel at the moments the server knows a burst of allocation ended.

/// Returns the allocator's free pages to the kernel (glibc's `malloc_trim`; elsewhere nothing).
///
/// Measured on issue 17's burst: 258 MiB at start, +155 to +184 MiB kept after it without this, +71 MiB
/// with it. After loading a 1B Q6_K model it gives back 135 MiB that loading and repacking left free.
/// glibc set at start to two arenas, a fixed 256 KiB mmap threshold and a 1 MiB trim threshold kept less,
/// but made every forward pass fault its buffers in again: prefill 9-14 % slower.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases memory malloc holds free; it is safe from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
