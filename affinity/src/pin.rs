//! Pinning the calling thread to CPUs, for benchmarks and tests that need a thread to
//! stay on one node.
//!
//! The CPU mask is sized to the CPUs asked for, so machines with more than 1024 CPUs
//! (glibc's `cpu_set_t`) work too.

use ldnr::AffinityError;

use crate::sys;

/// Pins the calling thread to one CPU.
///
/// # Errors
///
/// [`AffinityError::Os`] with the kernel's error number: `EINVAL` for a CPU that does
/// not exist or is outside the process's cpuset; `ENOSYS` off Linux.
///
/// # Examples
///
/// ```
/// std::thread::spawn(|| {
///     if ldnr_affinity::pin_to_cpu(0).is_ok() {
///         assert_eq!(ldnr_affinity::current_cpu(), Some(0));
///     }
/// }).join().unwrap();
/// ```
pub fn pin_to_cpu(cpu: usize) -> Result<(), AffinityError> {
    pin_to_cpus(&[cpu])
}

/// Pins the calling thread to a set of CPUs (it may run on any of them).
///
/// # Errors
///
/// [`AffinityError::Os`] as for [`pin_to_cpu`]; `EINVAL` also for an empty set and for
/// a CPU number of 2^22 or more (no kernel has that many; the mask would be huge).
///
/// # Examples
///
/// ```
/// std::thread::spawn(|| {
///     let all = ldnr_affinity::allowed_cpus().unwrap_or_default();
///     if !all.is_empty() {
///         ldnr_affinity::pin_to_cpus(&all).unwrap();
///         assert_eq!(ldnr_affinity::allowed_cpus().unwrap(), all);
///     }
/// }).join().unwrap();
/// ```
pub fn pin_to_cpus(cpus: &[usize]) -> Result<(), AffinityError> {
    /// Kernels have at most 8192 CPUs (`NR_CPUS`).
    const MAX_CPU: usize = 1 << 22;
    let Some(&max) = cpus.iter().max().filter(|&&m| m < MAX_CPU) else {
        // EINVAL: what the kernel says for an empty mask too.
        return Err(AffinityError::Os(sys::EINVAL));
    };
    let mut mask = vec![0u64; max / 64 + 1];
    for &c in cpus {
        mask[c / 64] |= 1 << (c % 64);
    }
    sys::set_affinity(&mask).map_err(AffinityError::Os)
}

/// The CPUs the calling thread may run on, ascending.
///
/// # Errors
///
/// [`AffinityError::Os`] if the kernel cannot say (`ENOSYS` off Linux).
///
/// # Examples
///
/// ```
/// if let Ok(cpus) = ldnr_affinity::allowed_cpus() {
///     assert!(!cpus.is_empty());
/// }
/// ```
pub fn allowed_cpus() -> Result<Vec<usize>, AffinityError> {
    /// EINVAL from `sched_getaffinity`: the mask is smaller than the kernel's.
    const EINVAL: i32 = 22;
    let mut words = 16; // 1024 CPUs, doubled until the kernel's mask fits
    loop {
        let mut mask = vec![0u64; words];
        match sys::get_affinity(&mut mask) {
            Ok(()) => {
                return Ok((0..words * 64)
                    .filter(|&c| mask[c / 64] & (1 << (c % 64)) != 0)
                    .collect())
            }
            Err(EINVAL) if words < 1 << 16 => words *= 2,
            Err(e) => return Err(AffinityError::Os(e)),
        }
    }
}

/// The CPU the calling thread runs on now (`None` where the kernel cannot say).
///
/// # Examples
///
/// ```
/// if let Some(cpu) = ldnr_affinity::current_cpu() {
///     assert!(cpu < 1 << 20);
/// }
/// ```
pub fn current_cpu() -> Option<usize> {
    sys::getcpu().ok().map(|(cpu, _)| cpu)
}
