//! The raw system calls, each behind a safe function. The only file with `unsafe` code
//! besides the `hwloc` module.
//!
//! Everything here is Linux-only; elsewhere each function fails with [`ENOSYS`], which
//! the managers treat as "no NUMA here" and degrade to one node.
//!
//! glibc offers no wrappers for `get_mempolicy`, `set_mempolicy` and `move_pages` (they
//! live in libnuma), so they are issued with `syscall(2)`. Node masks are arrays of
//! `u64` words, node `n` in bit `n % 64` of word `n / 64` — the kernel's layout on
//! 64-bit targets (`unsigned long`).

/// "Function not implemented": what every call returns where the system has no NUMA API.
pub(crate) const ENOSYS: i32 = 38;

/// How many nodes a mask holds: 1024, the kernel's `MAX_NUMNODES` at its largest
/// x86-64 configuration (`NODES_SHIFT=10`, Debian's and most distributions' setting).
pub(crate) const MASK_BITS: usize = 1024;

/// A node mask the kernel can read and write.
pub(crate) type RawMask = [u64; MASK_BITS / 64];

#[cfg(target_os = "linux")]
mod imp {
    use super::{RawMask, MASK_BITS};
    use core::ffi::{c_int, c_long, c_uint, c_ulong, c_void};
    use core::ptr;

    /// `get_mempolicy` flag: return the node of `addr` instead of a policy.
    const MPOL_F_NODE: c_ulong = 1;
    /// `get_mempolicy` flag: look at the policy (or node) of the page at `addr`.
    const MPOL_F_ADDR: c_ulong = 2;

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

    pub(crate) fn get_mempolicy(mask: &mut RawMask) -> Result<i32, i32> {
        let mut mode: c_int = 0;
        // SAFETY: the kernel writes one `int` to `mode` and at most
        // `ALIGN(maxnode - 1, 64) / 8` = 128 bytes to `mask`, which is exactly the size
        // of `RawMask`; `addr` is unused without `MPOL_F_ADDR`.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_get_mempolicy,
                &mut mode as *mut c_int,
                mask.as_mut_ptr(),
                MASK_BITS as c_ulong,
                ptr::null_mut::<c_void>(),
                0 as c_ulong,
            )
        };
        check(ret)?;
        Ok(mode)
    }

    pub(crate) fn set_mempolicy(mode: i32, mask: &RawMask) -> Result<(), i32> {
        // SAFETY: the kernel reads `maxnode - 1` = `MASK_BITS` bits (it subtracts one for
        // historical reasons, as libnuma's callers account for) from `mask`, which holds
        // exactly that many.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_set_mempolicy,
                mode as c_int,
                mask.as_ptr(),
                (MASK_BITS + 1) as c_ulong,
            )
        };
        check(ret)
    }

    pub(crate) fn node_of_address(addr: usize) -> Result<usize, i32> {
        let mut node: c_int = 0;
        // SAFETY: with `MPOL_F_NODE | MPOL_F_ADDR` the kernel writes the node of the page
        // at `addr` to `node` (a live local) and needs no mask; `addr` is only looked up
        // in the page tables, never dereferenced, so any value is safe (an unmapped one
        // gives EFAULT).
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
        // SAFETY: the kernel reads `len` bytes from `mask`, which holds exactly that many;
        // pid 0 is the calling thread.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_sched_setaffinity,
                0 as c_int,
                core::mem::size_of_val(mask) as c_ulong,
                mask.as_ptr(),
            )
        };
        check(ret)
    }

    pub(crate) fn get_affinity(mask: &mut [u64]) -> Result<(), i32> {
        // SAFETY: the kernel writes at most `len` bytes to `mask`, which holds exactly
        // that many; pid 0 is the calling thread.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_sched_getaffinity,
                0 as c_int,
                core::mem::size_of_val(mask) as c_ulong,
                mask.as_mut_ptr(),
            )
        };
        check(ret)
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
    pub(crate) fn set_mempolicy(_mode: i32, _mask: &RawMask) -> Result<(), i32> {
        Err(ENOSYS)
    }
    pub(crate) fn node_of_address(_addr: usize) -> Result<usize, i32> {
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
}

pub(crate) use imp::*;
