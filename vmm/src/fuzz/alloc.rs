//! The largest single allocation made by the current thread since [`reset`], so that the runner
//! can tell an allocation sized by the input from the targets' own bounded buffers. Tracked only
//! in the library's test build (the global allocator below); elsewhere (a fuzzer binary) the
//! fuzzer bounds memory itself (libFuzzer's `-malloc_limit_mb`) and [`largest`] is `None`.

#[cfg(test)]
use std::alloc::{GlobalAlloc, Layout, System};
#[cfg(test)]
use std::cell::Cell;

#[cfg(test)]
thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

#[cfg(test)]
fn note(size: usize) {
    // `try_with`: allocations during thread teardown are not tracked.
    let _ = LARGEST.try_with(|c| {
        if size > c.get() {
            c.set(size);
        }
    });
}

/// The system allocator, noting the largest request of each thread.
#[cfg(test)]
struct Tracking;

// SAFETY: every call is forwarded unchanged to the system allocator; noting a size touches a
// const-initialised thread-local Cell, which never allocates.
#[cfg(test)]
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Starts tracking anew for this thread.
pub fn reset() {
    #[cfg(test)]
    let _ = LARGEST.try_with(|c| c.set(0));
}

/// The largest allocation of this thread since [`reset`] (`None`: not tracked in this build).
pub fn largest() -> Option<usize> {
    #[cfg(test)]
    return LARGEST.try_with(Cell::get).ok();
    #[cfg(not(test))]
    None
}
