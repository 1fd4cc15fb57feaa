//! Test support for "no allocation over a bound": a global allocator that counts the
//! allocations and bytes each thread asks for, and [`measure`] to read what one closure cost.
//!
//! A test binary installs it once:
//!
//! ```
//! #[global_allocator]
//! static METER: alloc_meter::Meter = alloc_meter::Meter;
//!
//! fn main() {
//!     let (text, used) = alloc_meter::measure(|| "a".repeat(100));
//!     assert_eq!(text.len(), 100);
//!     assert_eq!(used.allocations, 1);
//!     assert!(used.bytes >= 100);
//! }
//! ```
//!
//! Counts are per thread so that other tests running at the same time do not leak into a
//! measurement; without the allocator installed, [`measure`] reports zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator: [`System`] underneath.
pub struct Meter;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // `try_with`: the allocator can run while a thread's locals are being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    let _ = BYTES.try_with(|c| c.set(c.get() + bytes as u64));
}

// SAFETY: every call goes to `System` unchanged; the counting touches only const-initialised
// thread locals, which never allocate.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What a closure asked the allocator for on its thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Calls to `alloc`, `alloc_zeroed` and `realloc`.
    pub allocations: u64,
    /// Bytes requested by those calls (a `realloc` counts its new size).
    pub bytes: u64,
}

/// Runs `f` and returns its result with what it allocated on this thread.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    let before = (ALLOCATIONS.with(Cell::get), BYTES.with(Cell::get));
    let result = f();
    let used = Usage {
        allocations: ALLOCATIONS.with(Cell::get) - before.0,
        bytes: BYTES.with(Cell::get) - before.1,
    };
    (result, used)
}
