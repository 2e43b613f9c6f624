//! `LinuxAffinity` changes nothing process-wide unless asked to: glibc's mmap threshold
//! in particular. Each measurement runs in a fresh child process, since the threshold
//! (and what the heap already holds) is the whole process's.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;

use common::{after, finish, is_child, spawn_child};
use ldnr_affinity::LinuxAffinity;

/// `RUSAGE_THREAD` (Linux): the calling thread's usage only.
const RUSAGE_THREAD: libc::c_int = 1;
const ROUNDS: i64 = 200;
/// 256 KiB: above glibc's initial threshold (128 KiB) and below the most it raises it to
/// (512 KiB on 32-bit targets, 32 MiB on 64-bit ones).
const BLOCK: usize = 256 << 10;
/// Pages in one block (4 KiB pages; larger pages only lower the count).
const PAGES: i64 = (BLOCK / 4096) as i64;

// `ru_minflt` is a C `long`: 32 bits on 32-bit targets, where the conversion is needed.
#[allow(clippy::useless_conversion)]
fn minor_faults() -> i64 {
    // SAFETY: `getrusage` writes one `rusage` through the pointer, to a live local.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(RUSAGE_THREAD, &mut usage), 0);
        usage
    };
    i64::from(usage.ru_minflt)
}

/// Allocates, touches and frees a block `ROUNDS` times: the minor page faults that took.
fn churn() -> i64 {
    let before = minor_faults();
    for i in 0..ROUNDS {
        let block = vec![(i as u8) | 1; BLOCK];
        std::hint::black_box(&block);
    }
    minor_faults() - before
}

/// The page faults of `ROUNDS` blocks in a fresh process that made a manager with
/// (`fixed`) or without the opt-in first.
fn faults_in_child(fixed: bool) -> i64 {
    let part = if fixed { "fixed" } else { "default" };
    let test = "the_mmap_threshold_changes_only_when_asked";
    let (status, out) = finish(spawn_child(test, part, &[]));
    assert!(status.success(), "{out}");
    after(&out, "FAULTS ")
        .unwrap_or_else(|| panic!("no count:\n{out}"))
        .parse()
        .unwrap()
}

#[test]
fn the_mmap_threshold_changes_only_when_asked() {
    for (part, fixed) in [("default", false), ("fixed", true)] {
        if is_child(part) {
            let linux = LinuxAffinity::new();
            let linux = if fixed {
                linux.fix_mmap_threshold()
            } else {
                linux
            };
            assert_eq!(linux.mmap_threshold_fixed(), fixed);
            println!("FAULTS {}", churn());
            return;
        }
    }
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold")) {
        println!("skipped: GLIBC_TUNABLES sets the mmap threshold");
        return;
    }
    let (default, fixed) = (faults_in_child(false), faults_in_child(true));
    println!(
        "minor faults for {ROUNDS} x {BLOCK} bytes: new() {default}, fix_mmap_threshold() {fixed}"
    );
    // glibc raises its threshold after the first large free: the heap is reused.
    assert!(
        default < ROUNDS * PAGES / 8,
        "new() changed malloc: {default}"
    );
    // Asked for: every block is a fresh mapping, faulted in page by page.
    assert!(
        fixed >= ROUNDS * PAGES / 2,
        "the opt-in did nothing: {fixed}"
    );
}
