//! Asking where pages are must not put them anywhere: `node_of_address` and
//! `PageCensus` on memory that was never touched.
#![cfg(target_os = "linux")]

use ldnr::NodeId;
use ldnr_affinity::placement::{node_of_address, page_size, PageCensus};
use ldnr_affinity::MemoryPolicy;

/// An anonymous private mapping of `pages` pages, none of them touched yet.
struct Mapping {
    addr: usize,
    len: usize,
}

impl Mapping {
    fn new(pages: usize) -> Self {
        let len = pages * page_size();
        // SAFETY: a fresh anonymous mapping at an address the kernel picks; nothing else
        // refers to that memory.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED, "mmap");
        Self {
            addr: addr as usize,
            len,
        }
    }

    fn page(&self, i: usize) -> usize {
        self.addr + i * page_size()
    }

    /// Which pages are resident, as `mincore` says (it faults nothing in).
    fn resident(&self) -> Vec<bool> {
        let mut vec = vec![0u8; self.len / page_size()];
        // SAFETY: `vec` has one byte per page of the mapping, which is live and
        // page-aligned.
        let r =
            unsafe { libc::mincore(self.addr as *mut libc::c_void, self.len, vec.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore");
        vec.iter().map(|b| b & 1 != 0).collect()
    }

    fn touch(&self, i: usize) {
        // SAFETY: page `i` is inside the live, writable mapping.
        unsafe { (self.page(i) as *mut u8).write_volatile(1) };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; no reference into it remains.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

#[test]
fn node_of_address_on_untouched_memory_is_none_and_stays_untouched() {
    let m = Mapping::new(8);
    assert_eq!(m.resident(), [false; 8]);
    for i in 0..8 {
        assert_eq!(node_of_address(m.page(i)), None, "page {i}");
        assert_eq!(node_of_address(m.page(i) + 123), None, "inside page {i}");
    }
    assert_eq!(m.resident(), [false; 8], "asking faulted pages in");

    m.touch(2);
    let want = [false, false, true, false, false, false, false, false];
    assert_eq!(m.resident(), want);
    let node = node_of_address(m.page(2) + 5);
    if MemoryPolicy::current().is_ok() {
        assert!(
            matches!(node, Some(NodeId(_))),
            "a touched page is on a node"
        );
    }
    assert_eq!(node_of_address(m.page(3)), None);
    assert_eq!(m.resident(), want);
}

#[test]
fn node_of_address_of_unmapped_memory_is_none() {
    let addr = {
        let m = Mapping::new(1);
        m.touch(0);
        m.page(0)
    };
    assert_eq!(node_of_address(addr), None);
}

/// `of_touched_pages` asks again, page by page, about pages `move_pages` calls absent;
/// a page that really is absent must stay so.
#[test]
fn censuses_of_untouched_pages_fault_nothing_in() {
    let m = Mapping::new(16);
    let pages: Vec<usize> = (0..16).map(|i| m.page(i)).collect();
    for census in [
        PageCensus::of_pages(&pages),
        PageCensus::of_touched_pages(&pages),
    ] {
        let Ok(census) = census else {
            println!("skipped: the kernel cannot tell page locations here");
            return;
        };
        assert_eq!(census.not_present(), 16, "{census}");
    }
    assert_eq!(m.resident(), [false; 16]);
}
