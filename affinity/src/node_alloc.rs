//! [`NodeAlloc`]: a global allocator that keeps replica memory on the replica's node,
//! also for structures made of many small blocks, and also when blocks are freed and
//! reused.
//!
//! # Why an allocator
//!
//! A memory policy places a page when it is first touched. malloc reuses blocks (and the
//! pages under them) that were touched long ago, for whichever thread asks next, so a
//! `BTreeMap` replica cloned right after another copy was freed lands where the freed
//! copy was, whatever the thread's policy says. Only an allocator that keeps memory
//! apart per node can fix that: memory that belongs to node *n* is only ever handed out
//! again for node *n*.
//!
//! # How it works
//!
//! Each thread has an *allocation node* (a `const`-initialised thread-local: reading it
//! never allocates). [`LinuxAffinity`](crate::LinuxAffinity) sets it to the replica's
//! node in `set_memory_node` and puts the previous one back in `restore_memory_policy`
//! (on the same per-thread stack that restores memory policies, so guards dropped in any
//! order leave the right node behind); [`AllocNodeGuard`] sets it by hand. While a
//! thread has none, every call goes to the system allocator ([`System`]) unchanged.
//!
//! While it has node *n*, blocks come from node *n*'s arena:
//!
//! ```text
//!  one reservation (PROT_NONE, no memory), MAX_NODES spans of SPAN bytes each:
//!  | node 0 span            | node 1 span            | ...
//!  | chunk | chunk | ...    |                        |      chunk: 2 MiB, made RW and
//!    | run (64 KiB) of one size class | large block |         mbind(MPOL_PREFERRED, n)
//! ```
//!
//! - **Ownership by address.** A block belongs to the span it lies in, so a free from
//!   any thread finds its node with one subtraction and needs no header; a pointer
//!   outside the reservation came from the system allocator.
//! - **Pages follow the range, not the thread.** Each chunk gets the range policy
//!   `MPOL_PREFERRED` for its node before any of its pages exists, so a page lands on
//!   the node whichever thread touches it first (and spills to the nearest node, never
//!   an OOM kill, when the node is full).
//! - **Small blocks** (up to 32 KiB, alignment up to 4 KiB): 40 size classes per node,
//!   each a free list threaded through the free blocks and a bump run, under one lock
//!   per node and class. A freed block goes back to the list of the node that owns it.
//! - **Large blocks**: page multiples carved from the node's span, reused first-fit
//!   from a per-node free list (split, never merged); blocks of 1 MiB and more give their
//!   pages back to the kernel (`MADV_DONTNEED`) when freed, and get fresh ones on the
//!   node (the range keeps its policy) when reused.
//!
//! There are **no thread caches** on purpose: a per-thread cache hands a block freed
//! while the thread worked for one node to the thread's next allocation, which may be
//! for another node. That is the trap that puts malloc's replicas on the wrong node;
//! per-node lists behind a lock cannot fall into it, and a combiner (one thread per
//! replica at a time) rarely contends for them.
//!
//! Why not jemalloc's or mimalloc's arenas: jemalloc's per-arena extent hooks could bind
//! an arena's pages, but its thread caches (`tcache`) must then be turned off or flushed
//! at every node change, and the crate builds C code the project does not otherwise need;
//! mimalloc's Rust binding exposes no arena-per-node API. A few hundred lines over
//! `mmap` and `mbind` do exactly what is needed and nothing more.
//!
//! # Limits
//!
//! - Nodes `0..MAX_NODES` (64); a thread whose allocation node is higher gets the system
//!   allocator. Each node's span is 64 GiB of address space; past it, the system
//!   allocator serves (and placement is no longer kept).
//! - Small blocks stay with their node's arena after they are freed (reused for the
//!   same node, never returned to the kernel); large blocks return their pages.
//! - Where the address space cannot be reserved, or outside Linux, every call goes to the
//!   system allocator. Where `mbind` is refused (no NUMA in the kernel, a seccomp
//!   filter), chunks are used without a range policy (their pages follow the thread's
//!   policy) and [`NodeAlloc::unbound_chunks`] counts them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ldnr::NodeId;

use crate::sys;

/// Nodes `0..MAX_NODES` have an arena; allocations for higher nodes go to the system
/// allocator.
pub const MAX_NODES: usize = 64;
/// Address space of one node's arena.
#[cfg(target_pointer_width = "64")]
const SPAN: usize = 1 << 36;
/// A 32-bit address space has no room for the arenas: [`NodeAlloc`] never reserves them
/// there (see `reserve`) and passes every allocation to the system allocator.
#[cfg(not(target_pointer_width = "64"))]
const SPAN: usize = CHUNK;
/// The granule a span is made usable (`mprotect`) and bound (`mbind`) in.
const CHUNK: usize = 2 << 20;
/// What a size class takes from its node's span at a time.
const RUN: usize = 64 << 10;
/// The unit of large blocks and of runs (pages are at least this large).
const PAGE: usize = 4096;
/// The largest small block; larger ones are page multiples.
const SMALL_MAX: usize = 32 << 10;
/// Large blocks at least this big give their pages back to the kernel when freed.
const DISCARD_MIN: usize = 1 << 20;
/// `MPOL_PREFERRED`.
const MPOL_PREFERRED: i32 = 1;

/// No allocation node (the thread-local's value outside replica work).
const NO_NODE: usize = usize::MAX;
/// Reservation states below real addresses.
const UNRESERVED: usize = 0;
const RESERVING: usize = 1;
const FAILED: usize = 2;

/// The number of size classes: 16..128 in steps of 16, then four per doubling up to 32 KiB.
const CLASSES: usize = 40;
const SIZES: [usize; CLASSES] = class_sizes();

const fn class_sizes() -> [usize; CLASSES] {
    let mut sizes = [0; CLASSES];
    let mut i = 0;
    while i < 8 {
        sizes[i] = 16 * (i + 1);
        i += 1;
    }
    let mut base = 128;
    while i < CLASSES {
        let mut k = 1;
        while k <= 4 {
            sizes[i] = base + base / 4 * k;
            i += 1;
            k += 1;
        }
        base *= 2;
    }
    sizes
}

/// The size class of a block of `layout`, or `None` for a large block. Alloc, dealloc
/// and realloc all derive the class from the layout alone, so they always agree.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(1);
    if size > SMALL_MAX || layout.align() > PAGE {
        return None;
    }
    let mut i = if size <= 128 {
        size.div_ceil(16) - 1
    } else {
        let log = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
        let base = 1 << log;
        8 + (log - 7) * 4 + (size - base).div_ceil(base / 4) - 1
    };
    // A block of class `c` starts at a page-aligned run plus a multiple of `SIZES[c]`:
    // aligned to `align` if `SIZES[c]` is a multiple of it (4096 is a class).
    while i < CLASSES && SIZES[i] % layout.align() != 0 {
        i += 1;
    }
    (i < CLASSES).then_some(i)
}

/// The bytes a large block of `layout` takes, and its alignment.
fn large_extent(layout: Layout) -> (usize, usize) {
    (
        layout.size().max(1).next_multiple_of(PAGE),
        layout.align().max(PAGE),
    )
}

thread_local! {
    /// The calling thread's allocation node (`NO_NODE` for none). `const` and without a
    /// destructor: reading it never allocates and works until the thread is gone.
    static ALLOC_NODE: Cell<usize> = const { Cell::new(NO_NODE) };
}

/// The calling thread's allocation node: the node [`NodeAlloc`] serves its allocations
/// from, or `None` (the system allocator).
///
/// # Examples
///
/// ```
/// use ldnr::NodeId;
/// use ldnr_affinity::{alloc_node, AllocNodeGuard};
/// assert_eq!(alloc_node(), None);
/// let guard = AllocNodeGuard::new(NodeId(1));
/// assert_eq!(alloc_node(), Some(NodeId(1)));
/// drop(guard);
/// assert_eq!(alloc_node(), None);
/// ```
pub fn alloc_node() -> Option<NodeId> {
    let n = ALLOC_NODE.try_with(Cell::get).unwrap_or(NO_NODE);
    (n != NO_NODE).then_some(NodeId(n))
}

/// Sets the calling thread's allocation node and returns the previous one. Prefer
/// [`AllocNodeGuard`], which puts the previous one back.
///
/// # Examples
///
/// ```
/// use ldnr::NodeId;
/// let before = ldnr_affinity::set_alloc_node(Some(NodeId(0)));
/// assert_eq!(ldnr_affinity::set_alloc_node(before), Some(NodeId(0)));
/// ```
pub fn set_alloc_node(node: Option<NodeId>) -> Option<NodeId> {
    let n = node.map_or(NO_NODE, |n| n.0);
    let old = ALLOC_NODE.try_with(|c| c.replace(n)).unwrap_or(NO_NODE);
    (old != NO_NODE).then_some(NodeId(old))
}

/// Sets the calling thread's allocation node for its lifetime and puts the previous one
/// back when dropped. `!Send`: the node is the thread's own.
///
/// [`LinuxAffinity`](crate::LinuxAffinity) does this by itself around replica work;
/// use the guard for memory a replica should own that is made elsewhere, or with other
/// managers.
///
/// # Examples
///
/// ```
/// use ldnr::NodeId;
/// use ldnr_affinity::{AllocNodeGuard, NodeAlloc};
///
/// static A: NodeAlloc = NodeAlloc::new();
/// let layout = std::alloc::Layout::new::<[u64; 4]>();
/// let _on_node0 = AllocNodeGuard::new(NodeId(0));
/// // SAFETY: a non-zero layout; the block is freed with the same allocator and layout.
/// unsafe {
///     use std::alloc::GlobalAlloc;
///     let p = A.alloc(layout);
///     assert!(!p.is_null());
///     if A.is_active() {
///         assert_eq!(A.node_of(p), Some(NodeId(0)));
///     }
///     A.dealloc(p, layout);
/// }
/// ```
#[derive(Debug)]
pub struct AllocNodeGuard {
    previous: Option<NodeId>,
    _not_send: PhantomData<*const ()>,
}

impl AllocNodeGuard {
    /// Makes `node` the calling thread's allocation node until the guard is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// let _g = ldnr_affinity::AllocNodeGuard::new(ldnr::NodeId(0));
    /// assert_eq!(ldnr_affinity::alloc_node(), Some(ldnr::NodeId(0)));
    /// ```
    pub fn new(node: NodeId) -> Self {
        AllocNodeGuard {
            previous: set_alloc_node(Some(node)),
            _not_send: PhantomData,
        }
    }
}

impl Drop for AllocNodeGuard {
    fn drop(&mut self) {
        set_alloc_node(self.previous);
    }
}

/// A spin lock that yields: the allocator may not use locks that allocate or park.
struct Lock(AtomicBool);

struct Locked<'a>(&'a AtomicBool);

impl Lock {
    const fn new() -> Self {
        Lock(AtomicBool::new(false))
    }

    fn lock(&self) -> Locked<'_> {
        let mut spins = 0u32;
        // Acquire: pairs with the Release in `Locked::drop`, so the holder sees what the
        // previous holder wrote (the fields and the free blocks' links).
        while self.0.swap(true, Ordering::Acquire) {
            while self.0.load(Ordering::Relaxed) {
                if spins < 100 {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        Locked(&self.0)
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire in `Lock::lock`.
        self.0.store(false, Ordering::Release);
    }
}

/// One size class of one node. The fields are atomics only so that the allocator needs
/// no `UnsafeCell`; they are read and written under `lock` (Relaxed suffices).
struct Class {
    lock: Lock,
    /// The first free block (its first word links the next; 0 ends the list).
    free: AtomicUsize,
    /// The bump run: `next..end` has never been handed out.
    next: AtomicUsize,
    end: AtomicUsize,
}

/// One node's arena. `lock` guards `top`, `committed` and `large`.
struct Arena {
    lock: Lock,
    /// Offset in the span of the first byte never carved.
    top: AtomicUsize,
    /// Offset in the span up to which chunks are usable and bound.
    committed: AtomicUsize,
    /// The first free large block (header: next, length; 0 ends the list).
    large: AtomicUsize,
    classes: [Class; CLASSES],
}

impl Arena {
    const fn new() -> Self {
        Arena {
            lock: Lock::new(),
            top: AtomicUsize::new(0),
            committed: AtomicUsize::new(0),
            large: AtomicUsize::new(0),
            classes: [const {
                Class {
                    lock: Lock::new(),
                    free: AtomicUsize::new(0),
                    next: AtomicUsize::new(0),
                    end: AtomicUsize::new(0),
                }
            }; CLASSES],
        }
    }
}

/// A global allocator that serves each thread's allocations from its allocation node's
/// arena while it has one (see the [module docs](self) and the crate's
/// [placement section](crate#placement)), and from the system allocator otherwise.
///
/// Opt in with one line; programs that do not are unchanged:
///
/// ```
/// #[global_allocator]
/// static ALLOC: ldnr_affinity::NodeAlloc = ldnr_affinity::NodeAlloc::new();
///
/// // Anything that allocates; `LinuxAffinity` steers replica work to the arenas.
/// let v: Vec<u64> = (0..1000).collect();
/// assert_eq!(v.len(), 1000);
/// ```
///
/// Any thread may free or grow any block: a block's node is known from its address.
/// `realloc` keeps a block in place only when it stays in the same size class of the
/// node the thread allocates for now; otherwise it moves it there (or to the system
/// allocator). Alignment up to the page size is served from the arenas, larger ones as
/// page-multiple blocks aligned as asked (up to the 2 MiB chunk; beyond it, by the system
/// allocator). A zero-sized layout is served as one byte.
pub struct NodeAlloc {
    /// `UNRESERVED`, `RESERVING`, `FAILED`, or the base address of the reservation
    /// (`MAX_NODES * SPAN` bytes, aligned to `CHUNK`).
    state: AtomicUsize,
    pass_through: AtomicBool,
    unbound: AtomicUsize,
    arenas: [Arena; MAX_NODES],
}

impl fmt::Debug for NodeAlloc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeAlloc")
            .field("active", &self.is_active())
            .field("pass_through", &self.pass_through())
            .field("unbound_chunks", &self.unbound_chunks())
            .finish_non_exhaustive()
    }
}

impl Default for NodeAlloc {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeAlloc {
    /// An allocator that has reserved nothing yet: the address space is reserved at the
    /// first allocation for a node.
    ///
    /// # Examples
    ///
    /// ```
    /// static A: ldnr_affinity::NodeAlloc = ldnr_affinity::NodeAlloc::new();
    /// assert!(!A.pass_through());
    /// ```
    pub const fn new() -> Self {
        NodeAlloc {
            state: AtomicUsize::new(UNRESERVED),
            pass_through: AtomicBool::new(false),
            unbound: AtomicUsize::new(0),
            arenas: [const { Arena::new() }; MAX_NODES],
        }
    }

    /// Makes every *new* allocation go to the system allocator (`true`) or back to the
    /// arenas for threads with an allocation node (`false`). Blocks already in an arena
    /// are still freed there. For comparing both allocators in one process.
    ///
    /// # Examples
    ///
    /// ```
    /// static A: ldnr_affinity::NodeAlloc = ldnr_affinity::NodeAlloc::new();
    /// A.set_pass_through(true);
    /// assert!(A.pass_through());
    /// ```
    pub fn set_pass_through(&self, on: bool) {
        self.pass_through.store(on, Ordering::Relaxed);
    }

    /// Whether new allocations all go to the system allocator
    /// ([`set_pass_through`](Self::set_pass_through)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!ldnr_affinity::NodeAlloc::new().pass_through());
    /// ```
    pub fn pass_through(&self) -> bool {
        self.pass_through.load(Ordering::Relaxed)
    }

    /// Whether the arenas' address space is reserved (after the first allocation for a
    /// node; never where it cannot be, e.g. outside Linux).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!ldnr_affinity::NodeAlloc::new().is_active());
    /// ```
    pub fn is_active(&self) -> bool {
        self.base().is_some()
    }

    /// The node whose arena holds `ptr`, or `None` for memory from elsewhere (the system
    /// allocator, the stack, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// let x = 5;
    /// assert_eq!(ldnr_affinity::NodeAlloc::new().node_of(&x as *const i32 as *const u8), None);
    /// ```
    pub fn node_of(&self, ptr: *const u8) -> Option<NodeId> {
        self.owner(ptr as usize).map(NodeId)
    }

    /// How many 2 MiB chunks are in use without a range policy because the kernel
    /// refused `mbind` (no NUMA, a seccomp filter, a node it does not know).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr_affinity::NodeAlloc::new().unbound_chunks(), 0);
    /// ```
    pub fn unbound_chunks(&self) -> usize {
        self.unbound.load(Ordering::Relaxed)
    }

    fn base(&self) -> Option<usize> {
        // Acquire: pairs with the Release that publishes the reservation.
        let s = self.state.load(Ordering::Acquire);
        (s > FAILED).then_some(s)
    }

    /// The base of the reservation, reserving it on first use.
    fn reserve(&self) -> Option<usize> {
        loop {
            match self.state.compare_exchange(
                UNRESERVED,
                RESERVING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // No arenas without room for them (32-bit targets).
                    let base = cfg!(target_pointer_width = "64")
                        .then(|| sys::reserve(MAX_NODES * SPAN + CHUNK))
                        .flatten()
                        .map(|a| a.next_multiple_of(CHUNK))
                        .filter(|&b| b > FAILED);
                    // Release: pairs with the Acquire in `base` and in this loop.
                    self.state.store(base.unwrap_or(FAILED), Ordering::Release);
                    return base;
                }
                Err(FAILED) => return None,
                // Another thread is reserving: it makes no allocation while it does.
                Err(RESERVING) => std::thread::yield_now(),
                Err(base) => return Some(base),
            }
        }
    }

    /// The arena node for an allocation by the calling thread now, if any.
    fn target(&self) -> Option<(usize, usize)> {
        if self.pass_through.load(Ordering::Relaxed) {
            return None;
        }
        let node = ALLOC_NODE.try_with(Cell::get).unwrap_or(NO_NODE);
        if node >= MAX_NODES {
            return None;
        }
        Some((self.reserve()?, node))
    }

    fn owner(&self, addr: usize) -> Option<usize> {
        let base = self.base()?;
        let offset = addr.wrapping_sub(base);
        (offset < MAX_NODES * SPAN).then_some(offset / SPAN)
    }

    /// Takes `len` bytes aligned to `align` from `node`'s span, making chunks usable and
    /// binding them as needed. Call with the arena's lock held.
    fn carve(&self, base: usize, node: usize, len: usize, align: usize) -> Option<usize> {
        let arena = &self.arenas[node];
        let span = base + node * SPAN;
        let start = (span + arena.top.load(Ordering::Relaxed)).checked_next_multiple_of(align)?;
        let top = start.checked_add(len)? - span;
        if top > SPAN {
            return None;
        }
        let committed = arena.committed.load(Ordering::Relaxed);
        if top > committed {
            let to = top.next_multiple_of(CHUNK).min(SPAN);
            if !sys::commit(span + committed, to - committed) {
                return None;
            }
            if sys::bind_range(span + committed, to - committed, MPOL_PREFERRED, node).is_err() {
                self.unbound
                    .fetch_add((to - committed).div_ceil(CHUNK), Ordering::Relaxed);
            }
            arena.committed.store(to, Ordering::Relaxed);
        }
        arena.top.store(top, Ordering::Relaxed);
        Some(start)
    }

    fn alloc_small(&self, base: usize, node: usize, class: usize) -> Option<usize> {
        let c = &self.arenas[node].classes[class];
        let size = SIZES[class];
        let _held = c.lock.lock();
        let head = c.free.load(Ordering::Relaxed);
        if head != 0 {
            // SAFETY: `head` is a free block of this class (it was pushed by
            // `free_small` under this lock), at least 16 bytes, aligned to 16, and its
            // first word holds the next free block's address.
            let next = unsafe { (head as *const usize).read() };
            c.free.store(next, Ordering::Relaxed);
            return Some(head);
        }
        let mut next = c.next.load(Ordering::Relaxed);
        if next == 0 || next + size > c.end.load(Ordering::Relaxed) {
            let arena = &self.arenas[node];
            let _carving = arena.lock.lock();
            next = self.carve(base, node, RUN, PAGE)?;
            c.end.store(next + RUN, Ordering::Relaxed);
        }
        c.next.store(next + size, Ordering::Relaxed);
        Some(next)
    }

    /// # Safety
    ///
    /// `block` is a live block of class `class` in `node`'s arena that nobody uses any
    /// more.
    unsafe fn free_small(&self, node: usize, class: usize, block: usize) {
        let c = &self.arenas[node].classes[class];
        let _held = c.lock.lock();
        // SAFETY: the caller gives up `block`, which is at least 16 bytes and aligned to
        // 16 (every class is a multiple of 16 from a page-aligned run): its first word
        // becomes the link.
        unsafe { (block as *mut usize).write(c.free.load(Ordering::Relaxed)) };
        c.free.store(block, Ordering::Relaxed);
    }

    fn alloc_large(&self, base: usize, node: usize, layout: Layout) -> Option<usize> {
        let (len, align) = large_extent(layout);
        if align > CHUNK {
            return None;
        }
        let arena = &self.arenas[node];
        let _held = arena.lock.lock();
        // First fit over the free list: (previous block or 0 for the head, block).
        let (mut prev, mut cur) = (0usize, arena.large.load(Ordering::Relaxed));
        while cur != 0 {
            // SAFETY: `cur` is a free large block of this arena (pushed by `free_large`
            // under this lock): its first two words are the next block and its length.
            let [next, have] = unsafe { (cur as *const [usize; 2]).read() };
            if cur % align == 0 && have >= len {
                let mut rest_head = next;
                if have - len >= PAGE {
                    let rest = cur + len;
                    // SAFETY: `rest..cur + have` is the unused, page-aligned tail of the
                    // free block: it becomes a free block of its own.
                    unsafe { (rest as *mut [usize; 2]).write([next, have - len]) };
                    rest_head = rest;
                }
                if prev == 0 {
                    arena.large.store(rest_head, Ordering::Relaxed);
                } else {
                    // SAFETY: `prev` is the free block before `cur` on the list.
                    unsafe { (prev as *mut usize).write(rest_head) };
                }
                return Some(cur);
            }
            (prev, cur) = (cur, next);
        }
        self.carve(base, node, len, align)
    }

    /// # Safety
    ///
    /// `block` is a live large block of `layout` in `node`'s arena that nobody uses any
    /// more.
    unsafe fn free_large(&self, node: usize, block: usize, layout: Layout) {
        let (len, _) = large_extent(layout);
        if len >= DISCARD_MIN {
            // Everything but the page that keeps the list's header.
            let page = sys::page_size().max(PAGE);
            let from = (block + PAGE).next_multiple_of(page);
            let to = block + len;
            if to > from {
                sys::discard(from, to - from);
            }
        }
        let arena = &self.arenas[node];
        let _held = arena.lock.lock();
        // SAFETY: the caller gives up `block`, a page-aligned block of `len` >= 4096
        // bytes: its first two words become the free list's header.
        unsafe { (block as *mut [usize; 2]).write([arena.large.load(Ordering::Relaxed), len]) };
        arena.large.store(block, Ordering::Relaxed);
    }

    fn alloc_on(&self, base: usize, node: usize, layout: Layout) -> Option<usize> {
        match class_of(layout) {
            Some(class) => self.alloc_small(base, node, class),
            None => self.alloc_large(base, node, layout),
        }
    }
}

// SAFETY: (for the impl as a whole) every block handed out is either the system
// allocator's (and goes back to it: its address is outside the reservation) or a block
// of an arena that no other live allocation overlaps: runs and large blocks are carved
// from disjoint parts of a span under the arena's lock, a run's blocks are disjoint
// multiples of their class size, and a block is on a free list only between its
// `dealloc` and the next `alloc` that takes it off (both under the same lock). Blocks
// satisfy the layout's size and alignment (`class_of`, `large_extent`). Nothing here
// allocates, and a panic cannot occur on these paths (no unwrap, no indexing out of
// range: nodes are below `MAX_NODES`, classes below `CLASSES`).
unsafe impl GlobalAlloc for NodeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some((base, node)) = self.target() {
            if let Some(p) = self.alloc_on(base, node, layout) {
                return p as *mut u8;
            }
        }
        // SAFETY: the caller's layout, passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some((base, node)) = self.target() {
            if let Some(p) = self.alloc_on(base, node, layout) {
                // SAFETY: `p` is a fresh block of at least `layout.size()` bytes.
                unsafe { std::ptr::write_bytes(p as *mut u8, 0, layout.size()) };
                return p as *mut u8;
            }
        }
        // SAFETY: the caller's layout, passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.owner(ptr as usize) {
            // SAFETY: the caller frees a block this allocator gave out with `layout`;
            // its address says it came from `node`'s arena, where `class_of(layout)`
            // (or `large_extent(layout)`) chose its kind when it was allocated.
            Some(node) => unsafe {
                match class_of(layout) {
                    Some(class) => self.free_small(node, class, ptr as usize),
                    None => self.free_large(node, ptr as usize, layout),
                }
            },
            // SAFETY: outside the reservation: the system allocator's block.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let owner = self.owner(ptr as usize);
        let target = self.target().map(|(_, node)| node);
        // The caller guarantees that `new_size`, rounded up to `layout.align()`, does
        // not overflow `isize`: this cannot fail.
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        match (owner, target) {
            // SAFETY: the system allocator's block, and the caller's arguments.
            (None, None) => return unsafe { System.realloc(ptr, layout, new_size) },
            (Some(o), Some(t)) if o == t => {
                let same = match (class_of(layout), class_of(new_layout)) {
                    (Some(a), Some(b)) => a == b,
                    (None, None) => large_extent(layout).0 == large_extent(new_layout).0,
                    _ => false,
                };
                if same {
                    return ptr;
                }
            }
            _ => {}
        }
        // Moving: to the thread's node's arena, or to the system allocator.
        // SAFETY: `new_layout` is valid (checked above) and non-zero-sized per the
        // caller's contract (or served as one byte).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and distinct, each at least as long as the
            // bytes copied; then the old one is freed with its own layout.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

// The arenas exist on 64-bit targets only (see `SPAN`).
#[cfg(all(test, target_pointer_width = "64"))]
mod tests;

#[cfg(all(test, not(target_pointer_width = "64")))]
mod tests {
    use super::*;

    /// Without room for arenas, allocations for a node come from the system allocator.
    #[test]
    fn a_32_bit_target_passes_everything_to_the_system_allocator() {
        let a = NodeAlloc::new();
        let previous = set_alloc_node(Some(NodeId(0)));
        let layout = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: a non-zero size; the block is freed below with the same layout.
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        assert_eq!(a.node_of(p), None);
        assert!(!a.is_active());
        // SAFETY: allocated above by `a` with `layout`.
        unsafe { a.dealloc(p, layout) };
        set_alloc_node(previous);
    }
}
