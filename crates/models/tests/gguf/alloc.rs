//! A global allocator that counts each thread's live heap bytes, so a test can measure the peak of one
//! call on its own thread while other tests run on theirs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::io::Write as _;

/// Heap bytes a parse may use beyond the length of the file it parses: `GgufFile::open` reads through an
/// 8 KiB `BufReader` and keeps the file's path, and a refusal's message names at most the first 64 bytes
/// of a key or tensor name; the parsed header itself is never larger than the file.
pub const SLACK: usize = 16 << 10;

/// One allocation this large while measuring is a bug worth naming before the allocation aborts.
const HUGE: usize = 1 << 30;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// The fuzz input being measured, named if it asks for [`HUGE`] bytes.
    static INPUT: Cell<Option<u64>> = const { Cell::new(None) };
}

fn grow(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + bytes as isize);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
    if bytes >= HUGE {
        if let Ok(Some(input)) = INPUT.try_with(Cell::take) {
            report(input, bytes);
        }
    }
}

fn shrink(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get() - bytes as isize));
}

/// Writes to stderr from inside the allocator, through a buffer on the stack.
fn report(input: u64, bytes: usize) {
    struct Line([u8; 160], usize);
    impl std::fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let n = s.len().min(self.0.len() - self.1);
            self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
            self.1 += n;
            Ok(())
        }
    }
    let mut line = Line([0; 160], 0);
    let _ = writeln!(line, "gguf fuzz: input {input} asks for one allocation of {bytes} bytes");
    let _ = std::io::stderr().write_all(&line.0[..line.1]);
}

// SAFETY: every call is passed to `System` unchanged; the counters are plain thread-locals without
// destructors, so touching them never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    /// Counted as a new block before the old one is freed: a moving reallocation holds both.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grow(new_size);
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        shrink(if moved.is_null() { new_size } else { layout.size() });
        moved
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Runs `f`, returning its result and the most heap bytes this thread held at once during the call beyond
/// what it held before (the result counts, if it is still held when `f` returns). `input` names a fuzz
/// input in the report of a huge allocation.
pub fn peak_while<T>(input: Option<u64>, f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    INPUT.with(|i| i.set(input));
    let result = f();
    INPUT.with(|i| i.set(None));
    (result, (PEAK.with(Cell::get) - base) as usize)
}
