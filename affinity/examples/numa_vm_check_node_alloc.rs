//! `numa_vm_check` (see `numa_vm_check/main.rs`) in a binary whose global allocator is
//! `NodeAlloc`: the same checks, with replica memory from per-node arenas. Run by
//! `scripts/numa-vm-test.sh` in the same guests, after the system-allocator run.

use std::process::ExitCode;

use ldnr_affinity::NodeAlloc;

#[global_allocator]
static ALLOC: NodeAlloc = NodeAlloc::new();

#[path = "numa_vm_check/main.rs"]
mod check;

fn main() -> ExitCode {
    // Set once, before anything reads it.
    let _ = check::NODE_ALLOC.set(&ALLOC);
    check::main()
}
