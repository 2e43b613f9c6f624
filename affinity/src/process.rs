//! What this process may use: the memory nodes of its cpuset (the CPUs of its affinity
//! mask are [`allowed_cpus`](crate::allowed_cpus)).

use std::fs;

use ldnr::{AffinityError, NodeId};

use crate::cpulist::parse_cpulist;
use crate::sys::{self, MASK_BITS};

/// The memory nodes the calling thread may allocate from (its cpuset's `Mems_allowed`),
/// ascending.
///
/// Asked with `get_mempolicy(MPOL_F_MEMS_ALLOWED)`, and where that is refused (a seccomp
/// filter) read from `/proc/thread-self/status`.
///
/// # Errors
///
/// [`AffinityError::Os`] with the system call's error number if neither can say (`ENOSYS`
/// off Linux).
///
/// # Examples
///
/// ```
/// if let Ok(nodes) = ldnr_affinity::allowed_memory_nodes() {
///     assert!(!nodes.is_empty());
/// }
/// ```
pub fn allowed_memory_nodes() -> Result<Vec<NodeId>, AffinityError> {
    let mut mask = [0; MASK_BITS / 64];
    match sys::mems_allowed(&mut mask) {
        Ok(()) => Ok((0..MASK_BITS)
            .filter(|&n| mask[n / 64] & (1 << (n % 64)) != 0)
            .map(NodeId)
            .collect()),
        Err(e) => from_status().ok_or(AffinityError::Os(e)),
    }
}

/// `Mems_allowed_list` from the thread's (or, on kernels before 3.17, the process's)
/// status file.
fn from_status() -> Option<Vec<NodeId>> {
    let text = fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| fs::read_to_string("/proc/self/status"))
        .ok()?;
    let list = text
        .lines()
        .find_map(|l| l.strip_prefix("Mems_allowed_list:"))?;
    let nodes = parse_cpulist(list).ok()?;
    (!nodes.is_empty()).then(|| nodes.into_iter().map(NodeId).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_call_and_the_status_file_agree() {
        let mut mask = [0; MASK_BITS / 64];
        if sys::mems_allowed(&mut mask).is_err() {
            return; // no NUMA API here: nothing to compare
        }
        assert_eq!(allowed_memory_nodes().ok(), from_status());
    }
}
