//! Heap allocations counted, for the benchmark's allocations per request (the
//! `count-allocations` feature; without it nothing is counted and nothing is reported).

#[cfg(feature = "count-allocations")]
mod counting {
    use std::alloc::{GlobalAlloc, Layout};
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::allocator::Mimalloc;

    /// Allocations (and reallocations) made so far.
    pub(super) static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

    /// The gateway's allocator (mimalloc), counting.
    pub struct Counting;

    // SAFETY: every call is passed on to mimalloc unchanged; the count is a side effect only.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the caller's contract for `alloc` is `Mimalloc.alloc`'s.
            unsafe { Mimalloc.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract for `dealloc` is `Mimalloc.dealloc`'s.
            unsafe { Mimalloc.dealloc(ptr, layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: as for `alloc`.
            unsafe { Mimalloc.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the caller's contract for `realloc` is `Mimalloc.realloc`'s.
            unsafe { Mimalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(feature = "count-allocations")]
pub use counting::Counting;

/// Allocations so far, when they are counted (the binary installs [`Counting`]).
pub fn allocations() -> Option<u64> {
    #[cfg(feature = "count-allocations")]
    {
        Some(counting::ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed))
    }
    #[cfg(not(feature = "count-allocations"))]
    {
        None
    }
}
