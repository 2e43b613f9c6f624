//! Making replica memory land on its node, and checking where it landed.
//!
//! A memory policy decides where a page goes when it is *first touched*. Memory that
//! the allocator hands out again — pages it already has, touched before under some
//! other policy — stays where it is. glibc's malloc serves a request from its free
//! chunks and the top of its heap first, and maps fresh pages (`mmap`) only for a
//! request at or above its mmap threshold that those cannot serve; and it *raises* the
//! threshold (up to 32 MiB) each time a large mapped block is freed, so after a replica
//! is dropped or a table is resized, the next table of that size may come from the
//! heap, on the old node.
//!
//! [`fresh_pages_for_large_allocations`] (opt-in, process-wide) fixes the threshold,
//! which turns off the raising: large allocations that the heap cannot serve are then
//! fresh mappings again. It does not make *every* large allocation fresh: a large block
//! can still come from freed memory that malloc coalesced (for example a 4 MiB block
//! right after many small boxes were freed). [`release_free_memory`] gives such memory
//! back to the kernel first.
//!
//! [`PageCensus`] asks the kernel where pages are (`move_pages` with no target nodes,
//! a query that moves nothing), so tests can prove placement instead of assuming it.

use std::collections::BTreeMap;

use ldnr::{AffinityError, NodeId};

use crate::sys;

/// The threshold [`LinuxAffinity::fix_mmap_threshold`](crate::LinuxAffinity::fix_mmap_threshold)
/// sets: 128 KiB, glibc's own starting value, so small-object behaviour is unchanged and
/// only the dynamic raising is turned off.
pub const DEFAULT_FRESH_PAGES_THRESHOLD: usize = 128 * 1024;

/// Fixes glibc's mmap threshold at `threshold` for the whole process
/// (`mallopt(M_MMAP_THRESHOLD, threshold)`), so that allocations of that size or more
/// that the heap's free memory cannot serve are fresh mappings, placed by the memory
/// policy in force when they are first written, and unmapped when freed.
///
/// Returns whether the setting was made: `false` off glibc (musl, other systems), for a
/// threshold glibc rejects (above `HEAP_MAX/2`, 32 MiB on 64-bit), and where
/// `GLIBC_TUNABLES` sets `glibc.malloc.mmap_threshold` (the operator's setting is left
/// alone).
///
/// What it does not do: a large request that glibc can serve from freed, coalesced heap
/// memory still gets those pages, wherever they are (see the module docs).
///
/// The cost, for the whole program: every allocation at or above the threshold is an
/// `mmap` plus a page fault per page touched, every free a `munmap`. Measured on this
/// project's machine (`cargo run --release -p ldnr-affinity --example alloc_cost`):
/// allocating, touching and freeing 1 MiB 20,000 times took 0.23 s and 512 minor page
/// faults without it, 10.5 s and 5.1 million with it. With a custom global allocator (jemalloc,
/// mimalloc) it has no effect; configure that allocator instead.
///
/// # Examples
///
/// ```
/// use ldnr_affinity::placement::{fresh_pages_for_large_allocations, DEFAULT_FRESH_PAGES_THRESHOLD};
/// let took = fresh_pages_for_large_allocations(DEFAULT_FRESH_PAGES_THRESHOLD);
/// let operator_set = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"));
/// assert_eq!(took, cfg!(all(target_os = "linux", target_env = "gnu")) && !operator_set);
/// ```
pub fn fresh_pages_for_large_allocations(threshold: usize) -> bool {
    let operator_set =
        std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.mmap_threshold"));
    !operator_set && sys::set_mmap_threshold(threshold)
}

/// Gives the whole free pages inside malloc's heaps back to the kernel (glibc:
/// `malloc_trim(0)`, all arenas), so that the memory they held is fresh — placed by the
/// policy in force — when it is allocated and touched again.
///
/// This is what helps structures of many small allocations: freed blocks keep the node
/// they were first touched on, and malloc hands them out again, to any replica. After a
/// trim, only blocks sharing a page with live data (and the few in per-thread caches)
/// keep an old placement. It walks every arena's free lists under the arena's lock, so
/// it is meant for reconfiguration — call it right before
/// [`add_replica`](ldnr::NodeReplicated::add_replica) — not for every operation.
///
/// Returns whether memory was given back (`false` off glibc, or if there was none).
///
/// # Examples
///
/// ```
/// let freed = {
///     let v: Vec<Box<[u8; 512]>> = (0..10_000).map(|_| Box::new([1; 512])).collect();
///     drop(v);
///     ldnr_affinity::placement::release_free_memory()
/// };
/// if !cfg!(all(target_os = "linux", target_env = "gnu")) {
///     assert!(!freed);
/// }
/// ```
pub fn release_free_memory() -> bool {
    sys::trim_free_memory()
}

/// The size of a memory page (4096 where the system cannot say).
///
/// # Examples
///
/// ```
/// assert!(ldnr_affinity::placement::page_size().is_power_of_two());
/// ```
pub fn page_size() -> usize {
    sys::page_size()
}

/// The node of the page that holds `addr`, or `None` if the page is not present (never
/// touched, swapped out), not mapped, or the kernel cannot say. It never faults a page in:
/// it asks whether the page is resident (`mincore`) before it asks where it is
/// (`get_mempolicy`).
///
/// Two system calls per address; for many pages use [`PageCensus`].
///
/// # Examples
///
/// ```
/// let v = vec![1u8; 4096];
/// if let Some(node) = ldnr_affinity::placement::node_of_address(v.as_ptr() as usize) {
///     println!("on {node}");
/// }
/// ```
pub fn node_of_address(addr: usize) -> Option<NodeId> {
    let page = addr & !(page_size() - 1);
    if !sys::page_resident(page).ok()? {
        return None;
    }
    sys::node_of_address(page).ok().map(NodeId)
}

/// Where a set of pages is: how many on each node.
///
/// # Examples
///
/// ```
/// use ldnr_affinity::placement::{page_size, PageCensus};
///
/// let v = vec![7u64; 1 << 16]; // 512 KiB, touched
/// let pages = PageCensus::distinct_pages(v.iter().map(|x| x as *const u64 as usize));
/// assert_eq!(pages.len(), (512 * 1024 / page_size()) + usize::from(v.as_ptr() as usize % page_size() != 0));
/// match PageCensus::of_pages(&pages) {
///     Ok(census) => {
///         assert_eq!(census.pages(), pages.len());
///         println!("{census}");
///     }
///     Err(e) => println!("the kernel cannot tell page locations here: {e}"),
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageCensus {
    per_node: BTreeMap<NodeId, usize>,
    not_present: usize,
}

impl PageCensus {
    /// The distinct page addresses (page-aligned, ascending) that hold the given
    /// addresses.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_affinity::placement::{page_size, PageCensus};
    /// let p = page_size();
    /// assert_eq!(PageCensus::distinct_pages([p + 1, 3 * p, p + 8]), [p, 3 * p]);
    /// ```
    pub fn distinct_pages(addresses: impl IntoIterator<Item = usize>) -> Vec<usize> {
        let mask = !(page_size() - 1);
        let mut pages: Vec<usize> = addresses.into_iter().map(|a| a & mask).collect();
        pages.sort_unstable();
        pages.dedup();
        pages
    }

    /// Asks the kernel where each page is (`move_pages(2)` with no target nodes, in
    /// batches). A page not present (never touched) counts as not present.
    ///
    /// # Errors
    ///
    /// [`AffinityError::Os`] if the kernel cannot answer (`ENOSYS`: no NUMA support or
    /// not Linux; `EPERM` in some sandboxes).
    ///
    /// # Examples
    ///
    /// ```
    /// let census = ldnr_affinity::placement::PageCensus::of_pages(&[]);
    /// assert!(census.map_or(true, |c| c.pages() == 0));
    /// ```
    pub fn of_pages(pages: &[usize]) -> Result<Self, AffinityError> {
        Self::query(pages, false)
    }

    /// [`of_pages`](Self::of_pages) for pages the caller knows are touched (they hold
    /// live data): a page that `move_pages` reports absent is asked again on its own with
    /// [`node_of_address`]. Some kernels report pages of a transparent huge page as absent
    /// (seen in the VM test: ~97% of a freshly built 64 MiB table at once). A page that
    /// really is absent stays absent (the second query faults nothing in).
    ///
    /// # Errors
    ///
    /// As [`of_pages`](Self::of_pages).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_affinity::placement::PageCensus;
    ///
    /// let v = vec![7u64; 1 << 16];
    /// let pages = PageCensus::distinct_pages(v.iter().map(|x| x as *const u64 as usize));
    /// if let Ok(census) = PageCensus::of_touched_pages(&pages) {
    ///     assert_eq!(census.pages(), pages.len());
    /// }
    /// ```
    pub fn of_touched_pages(pages: &[usize]) -> Result<Self, AffinityError> {
        Self::query(pages, true)
    }

    fn query(pages: &[usize], ask_absent_again: bool) -> Result<Self, AffinityError> {
        const BATCH: usize = 4096;
        let mut census = Self::default();
        let mut status = vec![0i32; BATCH.min(pages.len())];
        for chunk in pages.chunks(BATCH) {
            let status = &mut status[..chunk.len()];
            sys::move_pages_query(chunk, status).map_err(AffinityError::Os)?;
            for (&page, &s) in chunk.iter().zip(status.iter()) {
                // A negative status: not present (or see `of_touched_pages`).
                let node = usize::try_from(s)
                    .ok()
                    .map(NodeId)
                    .or_else(|| ask_absent_again.then(|| node_of_address(page)).flatten());
                match node {
                    Some(node) => *census.per_node.entry(node).or_default() += 1,
                    None => census.not_present += 1,
                }
            }
        }
        Ok(census)
    }

    /// How many pages were counted.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr_affinity::placement::PageCensus::default().pages(), 0);
    /// ```
    pub fn pages(&self) -> usize {
        self.per_node.values().sum::<usize>() + self.not_present
    }

    /// How many pages are on `node`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// assert_eq!(ldnr_affinity::placement::PageCensus::default().on(NodeId(0)), 0);
    /// ```
    pub fn on(&self, node: NodeId) -> usize {
        self.per_node.get(&node).copied().unwrap_or(0)
    }

    /// How many pages were not present (or not locatable).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr_affinity::placement::PageCensus::default().not_present(), 0);
    /// ```
    pub fn not_present(&self) -> usize {
        self.not_present
    }

    /// Pages per node, for the nodes that have any.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(ldnr_affinity::placement::PageCensus::default().per_node().is_empty());
    /// ```
    pub fn per_node(&self) -> &BTreeMap<NodeId, usize> {
        &self.per_node
    }

    /// The share of the pages on `node`, from 0.0 to 1.0 (1.0 for no pages).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// assert_eq!(ldnr_affinity::placement::PageCensus::default().share_on(NodeId(0)), 1.0);
    /// ```
    pub fn share_on(&self, node: NodeId) -> f64 {
        match self.pages() {
            0 => 1.0,
            total => self.on(node) as f64 / total as f64,
        }
    }
}

impl std::fmt::Display for PageCensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} pages:", self.pages())?;
        for (node, n) in &self.per_node {
            write!(f, " {n} on {node};")?;
        }
        write!(f, " {} not present", self.not_present)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touched_buffer_is_on_a_node_and_an_untouched_one_is_not_present() {
        let Ok(none) = PageCensus::of_pages(&[]) else {
            return; // no page queries here
        };
        assert_eq!(none.pages(), 0);
        let touched = vec![1u8; 64 * page_size()];
        let pages = PageCensus::distinct_pages(touched.iter().map(|b| b as *const u8 as usize));
        let Ok(census) = PageCensus::of_pages(&pages) else {
            return;
        };
        assert_eq!(census.pages(), pages.len());
        assert_eq!(census.not_present(), 0, "{census}");
        let on_some_node: usize = census.per_node().values().sum();
        assert_eq!(on_some_node, pages.len());
        if let Some((&node, _)) = census.per_node().iter().next() {
            assert!(node_of_address(touched.as_ptr() as usize).is_some());
            assert!(census.share_on(node) > 0.0);
        }
        // A fresh, never-touched mapping of our own (not `vec![0; n]`: glibc's dynamic
        // mmap threshold, raised by frees elsewhere in this process, may serve that from
        // heap pages that are already present).
        let len = 256 * page_size();
        let Some(untouched) = sys::reserve(len).filter(|&a| sys::commit(a, len)) else {
            return; // no anonymous mappings here
        };
        let pages =
            PageCensus::distinct_pages((0..len).step_by(page_size()).map(|i| untouched + i));
        let census = PageCensus::of_pages(&pages).unwrap();
        assert_eq!(census.not_present(), pages.len(), "{census}");
        // The address space is given back when the test process exits (1 MiB, reserved
        // with MAP_NORESERVE, never touched).
    }
}
