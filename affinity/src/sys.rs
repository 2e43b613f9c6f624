//! The raw system calls, each behind a safe function. The only file with `unsafe` code
//! besides the `hwloc` module.
//!
//! Everything here is Linux-only; elsewhere each function fails with [`ENOSYS`], which
//! the managers treat as "no NUMA here" and degrade to one node.
//!
//! glibc offers no wrappers for `get_mempolicy`, `set_mempolicy` and `move_pages` (they
//! live in libnuma), so they are issued with `syscall(2)`.
//!
//! # Masks
//!
//! The rest of the crate keeps node and CPU masks as `u64` words, bit `n % 64` of word
//! `n / 64`. The kernel reads and writes arrays of `unsigned long`, which is 32 bits wide
//! on 32-bit targets: there, one `u64` is two kernel words, and on a big-endian target
//! its bytes are not the two words in the kernel's order. So every mask crosses the
//! system-call boundary through [`to_words`] and [`from_words`], which move *values*
//! (bit `n` is `1 << (n % W)` of word `n / W`), never bytes, and so are right for either
//! width and either byte order.

/// "Function not implemented": what every call returns where the system has no NUMA API.
pub(crate) const ENOSYS: i32 = 38;
/// "Invalid argument".
pub(crate) const EINVAL: i32 = 22;

/// How many nodes a mask holds: 1024, the kernel's `MAX_NUMNODES` at its largest
/// x86-64 configuration (`NODES_SHIFT=10`, Debian's and most distributions' setting).
pub(crate) const MASK_BITS: usize = 1024;

/// A node mask in this crate's layout (see the module docs).
pub(crate) type RawMask = [u64; MASK_BITS / 64];

/// `mask` as words of `word_bits` (32 or 64) bits each, lowest first: word `i` holds
/// bits `i * word_bits ..`. The values fit in `word_bits`.
pub(crate) fn to_words(mask: &[u64], word_bits: usize) -> impl Iterator<Item = u64> + '_ {
    debug_assert!(word_bits == 32 || word_bits == 64);
    let per = 64 / word_bits;
    (0..mask.len() * per).map(move |i| {
        let bit = i * word_bits;
        let word = mask[bit / 64] >> (bit % 64);
        if word_bits == 64 {
            word
        } else {
            word & ((1 << word_bits) - 1)
        }
    })
}

/// The inverse of [`to_words`]: ORs words of `word_bits` bits into `mask`.
pub(crate) fn from_words(words: impl IntoIterator<Item = u64>, word_bits: usize, mask: &mut [u64]) {
    for (i, word) in words.into_iter().enumerate() {
        let bit = i * word_bits;
        if let Some(slot) = mask.get_mut(bit / 64) {
            *slot |= word << (bit % 64);
        }
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{from_words, to_words, RawMask, MASK_BITS};
    use core::ffi::{c_int, c_long, c_uchar, c_uint, c_ulong, c_void};
    use core::ptr;

    /// `get_mempolicy` flag: return the node of `addr` instead of a policy.
    const MPOL_F_NODE: c_ulong = 1;
    /// `get_mempolicy` flag: look at the policy (or node) of the page at `addr`.
    const MPOL_F_ADDR: c_ulong = 2;
    /// `get_mempolicy` flag: return the nodes the calling thread's cpuset allows.
    const MPOL_F_MEMS_ALLOWED: c_ulong = 4;

    /// Bits in the kernel's mask word (`unsigned long`).
    const WORD_BITS: usize = c_ulong::BITS as usize;
    /// A node mask as the kernel reads and writes it.
    type KernelMask = [c_ulong; MASK_BITS / WORD_BITS];

    fn to_kernel(mask: &RawMask) -> KernelMask {
        let mut out = [0; MASK_BITS / WORD_BITS];
        for (slot, word) in out.iter_mut().zip(to_words(mask, WORD_BITS)) {
            // Lossless: `to_words` gives values of `WORD_BITS` bits.
            *slot = word as c_ulong;
        }
        out
    }

    // `c_ulong` is `u64` on 64-bit targets and `u32` on 32-bit ones: the conversion is
    // needed on the latter.
    #[allow(clippy::useless_conversion)]
    fn from_kernel(words: &[c_ulong], mask: &mut [u64]) {
        mask.fill(0);
        from_words(words.iter().map(|&w| u64::from(w)), WORD_BITS, mask);
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(super::ENOSYS)
    }

    fn check(ret: c_long) -> Result<(), i32> {
        if ret < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }

    pub(crate) fn getcpu() -> Result<(usize, usize), i32> {
        let mut cpu: c_uint = 0;
        let mut node: c_uint = 0;
        // SAFETY: `getcpu(unsigned *cpu, unsigned *node, void *tcache)` writes one
        // `unsigned` through each of the two pointers, which point to live locals; the
        // third argument has been unused since Linux 2.6.24 and may be null.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_getcpu,
                &mut cpu as *mut c_uint,
                &mut node as *mut c_uint,
                ptr::null_mut::<c_void>(),
            )
        };
        check(ret)?;
        Ok((cpu as usize, node as usize))
    }

    /// `get_mempolicy` without an address: the calling thread's policy (`flags` 0) or
    /// its cpuset's nodes (`MPOL_F_MEMS_ALLOWED`).
    fn get_mempolicy_mask(mask: &mut RawMask, flags: c_ulong) -> Result<i32, i32> {
        let mut mode: c_int = 0;
        let mut words: KernelMask = [0; MASK_BITS / WORD_BITS];
        // SAFETY: the kernel writes one `int` to `mode` and at most
        // `ALIGN(maxnode - 1, 64) / 8` = 128 bytes to `words`, which is exactly the size
        // of `KernelMask`; `addr` is unused without `MPOL_F_ADDR`.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_get_mempolicy,
                &mut mode as *mut c_int,
                words.as_mut_ptr(),
                MASK_BITS as c_ulong,
                ptr::null_mut::<c_void>(),
                flags,
            )
        };
        check(ret)?;
        from_kernel(&words, mask);
        Ok(mode)
    }

    pub(crate) fn get_mempolicy(mask: &mut RawMask) -> Result<i32, i32> {
        get_mempolicy_mask(mask, 0)
    }

    pub(crate) fn mems_allowed(mask: &mut RawMask) -> Result<(), i32> {
        get_mempolicy_mask(mask, MPOL_F_MEMS_ALLOWED).map(drop)
    }

    pub(crate) fn set_mempolicy(mode: i32, mask: &RawMask) -> Result<(), i32> {
        let words = to_kernel(mask);
        // SAFETY: the kernel reads `maxnode - 1` = `MASK_BITS` bits (it subtracts one for
        // historical reasons, as libnuma's callers account for) from `words`, which holds
        // exactly that many.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_set_mempolicy,
                mode as c_int,
                words.as_ptr(),
                (MASK_BITS + 1) as c_ulong,
            )
        };
        check(ret)
    }

    pub(crate) fn node_of_address(addr: usize) -> Result<usize, i32> {
        let mut node: c_int = 0;
        // SAFETY: with `MPOL_F_NODE | MPOL_F_ADDR` the kernel writes the node of the page
        // at `addr` to `node` (a live local) and needs no mask; `addr` is only looked up
        // in the page tables, never dereferenced by us, so any value is safe (an unmapped
        // one gives EFAULT). The kernel faults the page in if it is not present.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_get_mempolicy,
                &mut node as *mut c_int,
                ptr::null_mut::<c_ulong>(),
                0 as c_ulong,
                addr as *mut c_void,
                MPOL_F_NODE | MPOL_F_ADDR,
            )
        };
        check(ret)?;
        Ok(node as usize)
    }

    pub(crate) fn page_resident(page: usize) -> Result<bool, i32> {
        let mut vec: c_uchar = 0;
        // SAFETY: `mincore` writes one byte per page of `[page, page + 1)` (one page) to
        // `vec`, a live local; `page` is page-aligned (the caller's contract) and is only
        // looked up in the page tables, never dereferenced or faulted in (an unmapped
        // address gives ENOMEM).
        let ret = unsafe { libc::mincore(page as *mut c_void, 1, &mut vec) };
        check(ret.into())?;
        Ok(vec & 1 != 0)
    }

    pub(crate) fn move_pages_query(pages: &[usize], status: &mut [i32]) -> Result<(), i32> {
        assert_eq!(pages.len(), status.len());
        // SAFETY: with a null `nodes` array `move_pages` moves nothing: it reads
        // `pages.len()` pointers from `pages` and writes as many `int`s to `status` (the
        // node of each page, or a negative errno), both slices of that length. The page
        // addresses are only looked up, never dereferenced. `usize` and `void *` have the
        // same layout.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_move_pages,
                0 as c_int,
                pages.len() as c_ulong,
                pages.as_ptr(),
                ptr::null::<c_int>(),
                status.as_mut_ptr(),
                0 as c_int,
            )
        };
        check(ret)
    }

    pub(crate) fn set_affinity(mask: &[u64]) -> Result<(), i32> {
        let words: Vec<c_ulong> = to_words(mask, WORD_BITS).map(|w| w as c_ulong).collect();
        // SAFETY: the kernel reads `len` bytes from `words`, which holds exactly that
        // many; pid 0 is the calling thread.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_sched_setaffinity,
                0 as c_int,
                core::mem::size_of_val(words.as_slice()) as c_ulong,
                words.as_ptr(),
            )
        };
        check(ret)
    }

    pub(crate) fn get_affinity(mask: &mut [u64]) -> Result<(), i32> {
        let mut words: Vec<c_ulong> = vec![0; mask.len() * (64 / WORD_BITS)];
        // SAFETY: the kernel writes at most `len` bytes to `words`, which holds exactly
        // that many; pid 0 is the calling thread.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_sched_getaffinity,
                0 as c_int,
                core::mem::size_of_val(words.as_slice()) as c_ulong,
                words.as_mut_ptr(),
            )
        };
        check(ret)?;
        from_kernel(&words, mask);
        Ok(())
    }

    pub(crate) fn page_size() -> usize {
        // SAFETY: `sysconf` has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|&s| s > 0)
            .unwrap_or(4096)
    }

    #[cfg(target_env = "gnu")]
    pub(crate) fn set_mmap_threshold(bytes: usize) -> bool {
        let Ok(value) = c_int::try_from(bytes) else {
            return false;
        };
        // SAFETY: `mallopt` has no preconditions; glibc takes its arena lock and only
        // changes tuning parameters read by later allocations.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, value) == 1 }
    }

    #[cfg(not(target_env = "gnu"))]
    pub(crate) fn set_mmap_threshold(_bytes: usize) -> bool {
        false
    }

    #[cfg(target_env = "gnu")]
    pub(crate) fn trim_free_memory() -> bool {
        // SAFETY: `malloc_trim` has no preconditions; it takes each arena's lock while it
        // returns that arena's free pages to the kernel.
        unsafe { libc::malloc_trim(0) == 1 }
    }

    #[cfg(not(target_env = "gnu"))]
    pub(crate) fn trim_free_memory() -> bool {
        false
    }
    /// Reserves `len` bytes of address space (no access, no memory, no commit charge).
    pub(crate) fn reserve(len: usize) -> Option<usize> {
        // SAFETY: an anonymous mapping at an address of the kernel's choosing touches no
        // existing memory; the result is checked for failure.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        (addr != libc::MAP_FAILED).then_some(addr as usize)
    }

    /// Makes `[addr, addr + len)` of a range from [`reserve`] readable and writable.
    pub(crate) fn commit(addr: usize, len: usize) -> bool {
        // SAFETY: the caller passes part of a reservation of its own that holds no data
        // yet; changing its protection affects no other memory.
        unsafe { libc::mprotect(addr as *mut c_void, len, libc::PROT_READ | libc::PROT_WRITE) == 0 }
    }

    /// Sets the memory policy of the range `[addr, addr + len)` (no pages yet) to `mode`
    /// for `node`: pages faulted in later follow it, whichever thread touches them.
    pub(crate) fn bind_range(addr: usize, len: usize, mode: i32, node: usize) -> Result<(), i32> {
        // Two words: enough for the nodes the allocator serves (fewer than 64), and the
        // kernel reads `maxnode - 1` = 64 bits of it.
        let mut words: [c_ulong; 2] = [0; 2];
        let (w, b) = (node / WORD_BITS, node % WORD_BITS);
        match words.get_mut(w) {
            Some(word) => *word = 1 << b,
            None => return Err(super::EINVAL),
        }
        // SAFETY: `mbind` reads `maxnode - 1` = 64 bits from `words` (two words of at
        // least 32 bits) and changes only the policy of the given range, which the caller
        // owns.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                addr as *mut c_void,
                len as c_ulong,
                mode as c_int,
                words.as_ptr(),
                65 as c_ulong,
                0 as c_uint,
            )
        };
        check(ret)
    }

    /// Gives the pages of `[addr, addr + len)` back to the kernel; the range stays
    /// mapped (with its memory policy) and reads zero when touched again.
    pub(crate) fn discard(addr: usize, len: usize) {
        // SAFETY: the caller owns the range and holds no data in it any more.
        unsafe {
            libc::madvise(addr as *mut c_void, len, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{RawMask, ENOSYS};

    pub(crate) fn getcpu() -> Result<(usize, usize), i32> {
        Err(ENOSYS)
    }
    pub(crate) fn get_mempolicy(_mask: &mut RawMask) -> Result<i32, i32> {
        Err(ENOSYS)
    }
    pub(crate) fn mems_allowed(_mask: &mut RawMask) -> Result<(), i32> {
        Err(ENOSYS)
    }
    pub(crate) fn set_mempolicy(_mode: i32, _mask: &RawMask) -> Result<(), i32> {
        Err(ENOSYS)
    }
    pub(crate) fn node_of_address(_addr: usize) -> Result<usize, i32> {
        Err(ENOSYS)
    }
    pub(crate) fn page_resident(_page: usize) -> Result<bool, i32> {
        Err(ENOSYS)
    }
    pub(crate) fn move_pages_query(_pages: &[usize], _status: &mut [i32]) -> Result<(), i32> {
        Err(ENOSYS)
    }
    pub(crate) fn set_affinity(_mask: &[u64]) -> Result<(), i32> {
        Err(ENOSYS)
    }
    pub(crate) fn get_affinity(_mask: &mut [u64]) -> Result<(), i32> {
        Err(ENOSYS)
    }
    pub(crate) fn page_size() -> usize {
        4096
    }
    pub(crate) fn set_mmap_threshold(_bytes: usize) -> bool {
        false
    }
    pub(crate) fn trim_free_memory() -> bool {
        false
    }
    pub(crate) fn reserve(_len: usize) -> Option<usize> {
        None
    }
    pub(crate) fn commit(_addr: usize, _len: usize) -> bool {
        false
    }
    pub(crate) fn bind_range(
        _addr: usize,
        _len: usize,
        _mode: i32,
        _node: usize,
    ) -> Result<(), i32> {
        Err(ENOSYS)
    }
    pub(crate) fn discard(_addr: usize, _len: usize) {}
}

pub(crate) use imp::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// Node `n` must be bit `n % W` of word `n / W` for either kernel word width, by
    /// value (so the byte order of the target does not matter).
    #[test]
    fn masks_cross_as_kernel_words_of_either_width() {
        let mut mask = [0u64; 2];
        for n in [0, 1, 31, 32, 33, 63, 64, 100] {
            mask[n / 64] |= 1 << (n % 64);
        }
        let w32: Vec<u64> = to_words(&mask, 32).collect();
        assert_eq!(w32.len(), 4);
        assert_eq!(w32[0], 1 | 1 << 1 | 1 << 31);
        assert_eq!(w32[1], 1 | 1 << 1 | 1 << 31);
        assert_eq!(w32[2], 1);
        assert_eq!(w32[3], 1 << (100 - 96));
        let w64: Vec<u64> = to_words(&mask, 64).collect();
        assert_eq!(w64, mask);
        for (words, bits) in [(w32, 32), (w64, 64)] {
            let mut back = [0u64; 2];
            from_words(words, bits, &mut back);
            assert_eq!(back, mask, "{bits}-bit words");
        }
    }
}
