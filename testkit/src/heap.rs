//! Live heap bytes, counted by a global allocator that the *binary* installs.
//!
//! A library must not choose the process' allocator, so this module only defines
//! [`CountingAlloc`]; the driver (`ldnr-demo`) and the memory tests install it with
//! `#[global_allocator]`. Without it, [`installed`] is `false` and no heap figures are
//! reported.
//!
//! The count is kept in a few cache-line-padded shards, one picked per thread on its
//! first allocation, so that threads allocating concurrently (papaya and flurry allocate
//! on every insert) do not all hammer one counter. A free may land in another thread's
//! shard than its allocation did; only the sum over all shards means anything.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

const SHARDS: usize = 32;

/// One counter on its own cache line pair (adjacent-line prefetch included).
#[repr(align(128))]
struct Shard(AtomicIsize);

static LIVE: [Shard; SHARDS] = [const { Shard(AtomicIsize::new(0)) }; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// What the allocator keeps per thread.
struct Local {
    /// The thread's shard of [`LIVE`], `usize::MAX` until its first allocation.
    shard: Cell<usize>,
    /// Allocations made by the thread ([`allocations`]).
    allocations: Cell<u64>,
}

thread_local! {
    // `const`-initialized `Cell`s need no destructor and no lazy registration, so using
    // them inside the allocator never allocates.
    static LOCAL: Local = const {
        Local {
            shard: Cell::new(usize::MAX),
            allocations: Cell::new(0),
        }
    };
}

/// The calling thread's shard; with `allocated`, also counts one allocation of the
/// thread (one thread-local access for both).
#[inline]
fn shard(allocated: bool) -> &'static AtomicIsize {
    let i = LOCAL
        .try_with(|l| {
            if allocated {
                l.allocations.set(l.allocations.get() + 1);
            }
            let mut i = l.shard.get();
            if i == usize::MAX {
                i = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
                l.shard.set(i);
            }
            i
        })
        .unwrap_or(0);
    &LIVE[i].0
}

/// The system allocator, counting the bytes it has handed out and not taken back, and
/// each thread's allocations.
///
/// Install it in a binary (not in a library):
///
/// ```
/// use ldnr_testkit::heap::{self, CountingAlloc};
///
/// #[global_allocator]
/// static ALLOC: CountingAlloc = CountingAlloc;
///
/// fn main() {
///     assert!(heap::installed());
///     let before = heap::live_bytes();
///     let v = vec![0u8; 1 << 20];
///     assert!(heap::live_bytes() - before >= 1 << 20);
///     drop(v);
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; the counters (relaxed atomics, a const thread-local) never allocate and have
// no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (a non-zero-size layout).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            shard(true).fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            shard(true).fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`,
        // as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        shard(false).fetch_sub(layout.size() as isize, Relaxed);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`
        // and `new_size` is valid for it, as the caller guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shard(true).fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        p
    }
}

/// The live heap bytes of the process: allocated through [`CountingAlloc`] and not freed.
/// Zero when the binary does not install it.
///
/// # Examples
///
/// ```
/// // A doctest binary does not install the counting allocator.
/// assert!(!ldnr_testkit::heap::installed());
/// assert_eq!(ldnr_testkit::heap::live_bytes(), 0);
/// ```
pub fn live_bytes() -> isize {
    LIVE.iter().map(|s| s.0.load(Relaxed)).sum()
}

/// How many allocations (`alloc`, `alloc_zeroed` and `realloc` calls that succeeded) the
/// calling thread has made through [`CountingAlloc`] since it started. Always zero when
/// the binary does not install it.
///
/// Take the difference around the code under test: it counts allocations that were freed
/// again (a temporary `String`), which [`live_bytes`] cannot see, and only the calling
/// thread's, so tests running in parallel do not disturb it.
///
/// # Examples
///
/// ```
/// use ldnr_testkit::heap::{self, CountingAlloc};
///
/// #[global_allocator]
/// static ALLOC: CountingAlloc = CountingAlloc;
///
/// fn main() {
///     let before = heap::allocations();
///     drop(std::hint::black_box(String::from("temporary")));
///     assert_eq!(heap::allocations() - before, 1);
///     let before = heap::allocations();
///     let n = std::hint::black_box(2u64) + 2;
///     assert_eq!((n, heap::allocations() - before), (4, 0));
/// }
/// ```
pub fn allocations() -> u64 {
    LOCAL.try_with(|l| l.allocations.get()).unwrap_or(0)
}

/// Whether the running binary installed [`CountingAlloc`] as its global allocator.
///
/// Probed once, by allocating and watching the count; call it first while the process
/// is still single-threaded (the driver does, at start-up).
///
/// # Examples
///
/// ```
/// assert!(!ldnr_testkit::heap::installed());
/// ```
pub fn installed() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(probe)
}

fn probe() -> bool {
    let before = live_bytes();
    let probe = std::hint::black_box(vec![0u8; 4096]);
    let grew = live_bytes() - before >= 4096;
    drop(probe);
    grew
}
