//! The gateway's heap: mimalloc, asked for plain blocks wherever a plain block will do.
//!
//! The `mimalloc` crate's allocator passes every request to `mi_malloc_aligned`, whatever its
//! alignment. mimalloc 3 takes its fast path there only while the size class's current page has a
//! free block (and never above 1 KiB); otherwise, for a size that is not a power of two, it
//! over-allocates: `size + align - 1` bytes, from a larger size class, aligned within them. A
//! uprobe on that path counted 13.1 calls per proxied request at 64 connections (hyper's read
//! buffers and the boxed request futures among them). Every mimalloc block is at least
//! word-aligned (its size classes are multiples of the word), so a request for at most that
//! alignment, nearly every one Rust makes, is served by `mi_malloc`, and only wider alignments
//! take the aligned path (1.9 calls per request).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment of every block mimalloc hands out: its smallest size class is one word, and all
/// of them are multiples of it.
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc (see the module's documentation).
pub struct Mimalloc;

// SAFETY: every block comes from mimalloc and goes back to it (`mi_free` and `mi_realloc*` take
// blocks from either entry point); a block from `mi_malloc` is aligned to `BLOCK_ALIGN`, so it is
// only used for layouts that ask no more, and the others keep their alignment through
// `mi_*_aligned`.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions take any size and a power-of-two alignment.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, so by mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is a mimalloc block of `layout`; the new block keeps its alignment.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates, writes, grows and frees blocks aligned to `align`, of a spread of sizes (below,
    /// at and above mimalloc's 1 KiB small-block limit), checking every pointer's alignment, that
    /// the contents survive the growth and that zeroed blocks are zero.
    fn round_trip(align: usize) {
        for size in [1, 7, 8, 24, 1_000, 1_025, 3_000, 8_199, 70_000] {
            let layout = Layout::from_size_align(size, align).expect("layout");
            // SAFETY: non-zero sizes; each block is freed once, with its layout.
            unsafe {
                let block = Mimalloc.alloc(layout);
                assert!(!block.is_null() && (block as usize).is_multiple_of(align), "{size} bytes at {align}");
                block.write_bytes(0xA5, size);
                let grown = Mimalloc.realloc(block, layout, size * 3);
                assert!(!grown.is_null() && (grown as usize).is_multiple_of(align), "{size} bytes grown at {align}");
                assert!((0..size).all(|at| *grown.add(at) == 0xA5), "{size} bytes kept at {align}");
                Mimalloc.dealloc(grown, Layout::from_size_align(size * 3, align).expect("layout"));
                let zeroed = Mimalloc.alloc_zeroed(layout);
                assert!(!zeroed.is_null() && (zeroed as usize).is_multiple_of(align));
                assert!((0..size).all(|at| *zeroed.add(at) == 0), "{size} zeroed bytes at {align}");
                Mimalloc.dealloc(zeroed, layout);
            }
        }
    }

    #[test]
    fn blocks_keep_every_alignment_asked_for_through_growth() {
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4_096] {
            round_trip(align);
        }
    }
}
