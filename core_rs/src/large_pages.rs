//! An allocator for big, long-lived arrays that asks Linux to back them with transparent huge pages.
//!
//! A fresh deduper for a million keys first touches tens of megabytes; with 4 KiB pages that is one page fault
//! per 4 KiB (about 12,600 per million keys), a large share of the first batch's time. With
//! `MADV_HUGEPAGE` one fault maps 2 MiB, and random table probes need far fewer TLB entries. Linux applies
//! the advice when `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or `madvise`; elsewhere (or on
//! other systems) the allocation is an ordinary one.
//!
//! Blocks of at least [`HUGE_PAGE`] bytes are rounded up to a whole number of huge pages and aligned to one,
//! so every 2 MiB of the block can be a huge page; smaller blocks are passed to the global allocator as is.

use std::alloc::Layout;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Global};

pub(crate) const HUGE_PAGE: usize = 2 << 20;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LargePages;

/// The layout actually requested from the global allocator for `layout` (the same for any size between
/// the one requested and the one returned, as `deallocate` may be given either).
fn backing_layout(layout: Layout) -> Layout {
    if layout.size() < HUGE_PAGE {
        return layout;
    }
    let size = layout.size().div_ceil(HUGE_PAGE).saturating_mul(HUGE_PAGE);
    Layout::from_size_align(size, layout.align().max(HUGE_PAGE)).unwrap_or(layout)
}

// SAFETY: every block comes from `Global` with `backing_layout(layout)`, which is at least as large and as
// aligned as `layout`, and goes back to `Global` with the same `backing_layout` (it maps every size between the
// requested and the returned one to the same layout). `advise_huge_pages` changes no byte and no mapping.
unsafe impl Allocator for LargePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = Global.allocate(backing_layout(layout))?;
        if block.len() >= HUGE_PAGE {
            advise_huge_pages(block);
        }
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` was allocated by `allocate` above with this same backing layout.
        unsafe { Global.deallocate(ptr, backing_layout(layout)) }
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(block: NonNull<[u8]>) {
    // SAFETY: the range is exactly a block we own, 2 MiB-aligned and a multiple of 2 MiB long (so also
    // page-aligned, as madvise requires). MADV_HUGEPAGE only marks the range as eligible for huge pages; it
    // never changes contents or invalidates pointers. A failure (e.g. THP disabled) leaves ordinary pages.
    unsafe {
        libc::madvise(block.as_ptr().cast(), block.len(), libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_block: NonNull<[u8]>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_whole_aligned_huge_pages() {
        let layout = Layout::from_size_align(HUGE_PAGE + 24, 8).unwrap();
        let block = LargePages.allocate(layout).unwrap();
        assert_eq!(block.len(), 2 * HUGE_PAGE);
        assert_eq!(block.cast::<u8>().as_ptr() as usize % HUGE_PAGE, 0);
        unsafe { LargePages.deallocate(block.cast(), layout) };
    }

    #[test]
    fn vectors_grow_across_the_threshold_and_keep_their_items() {
        let mut items = allocator_api2::vec::Vec::new_in(LargePages);
        items.extend(0..HUGE_PAGE as u64);
        assert!((0..HUGE_PAGE as u64).eq(items.iter().copied()));
    }
}
