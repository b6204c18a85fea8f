//! The global allocator: the system one, plus a log line when it fails.
//!
//! A failed allocation aborts a Rust guest with a bare `unreachable` trap.
//! Saying "out of memory" in the procedure log first lets the engine report
//! the trap as the memory limit it is (wasmtime-py cannot observe the
//! refused memory.grow itself).

use std::alloc::{GlobalAlloc, Layout, System};

struct ReportingAllocator;

fn report() {
    // No formatting here: it would allocate.
    crate::backend::log(4, "out of memory: an allocation failed at the memory limit");
}

unsafe impl GlobalAlloc for ReportingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if ptr.is_null() {
            report();
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if ptr.is_null() {
            report();
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if new.is_null() {
            report();
        }
        new
    }
}

#[global_allocator]
static GLOBAL: ReportingAllocator = ReportingAllocator;
