//! Affinity managers for LD-NR: where threads run, which NUMA node they are on, and
//! where replica memory comes from.
//!
//! [`ldnr`] asks its [`AffinityManager`] which node a registering thread is on (to
//! match it to a replica on that node), how far nodes are apart (to pick the nearest
//! replica otherwise), and sets the thread's memory policy to a replica's node around
//! every action that may allocate replica memory (cloning it, applying log entries to
//! it). This crate provides the managers:
//!
//! | manager | nodes and distances | thread's node | memory steering | needs |
//! |---|---|---|---|---|
//! | [`LinuxAffinity`] | `/sys/devices/system/node` | `getcpu` | `set_mempolicy`, restored exactly | nothing (raw syscalls) |
//! | `HwlocAffinity` (feature `hwloc`) | hwloc, real or synthetic | `hwloc_get_last_cpu_location` | `hwloc_set_membind` | `libhwloc-dev libudev-dev` |
//! | [`SimulatedAffinity`] | `n` pretend nodes (or a [`Topology`]'s) | set per thread, or round-robin | none ([`NodeAlloc`]'s arenas with `with_node_alloc`) | nothing |
//! | [`ldnr::NoAffinity`] | one node | node 0 | none | nothing (`no_std`) |
//!
//! # Choosing a manager
//!
//! - On Linux, use [`LinuxAffinity::new`]. It works with what the process may use
//!   (cpuset, affinity mask, `numactl` settings) and runs as one node (no memory
//!   policies) where the kernel, a container or a seccomp filter offers no NUMA, so it
//!   is also a safe default everywhere else: [`LinuxAffinity::degraded`] says why. The
//!   workspace README's deployment table says what it does in each setting.
//! - Use `HwlocAffinity` (feature `hwloc`) if you already use hwloc for thread placement, or to test
//!   matching decisions against a described machine (`"pack:4 numa:1 core:24 pu:1"`).
//! - Use [`SimulatedAffinity`] in tests and benchmarks that should exercise several
//!   replicas and the dispatcher's matching on a one-node machine.
//!
//! Pin threads ([`pin_to_cpu`], [`LinuxAffinity::pin_to_node`]) when a stable match
//! matters: an unpinned thread is matched to the node it happens to run on when it
//! registers.
//!
//! Memory-only nodes (CXL, persistent memory, HBM: memory, no CPUs) are reported apart
//! ([`LinuxAffinity::memory_only_nodes`], [`Topology::memory_only_nodes`]): no manager
//! lists them in `nodes()` or says a thread is on one.
//!
//! # Placement
//!
//! A memory policy places a page when it is *first touched*, so steering the policy is
//! not enough: the allocator must hand out pages that have not been touched yet, and
//! must not hand memory that served one node to another. What holds depends on the
//! global allocator.
//!
//! ## With [`NodeAlloc`]
//!
//! Opt in with one line in the program's binary crate:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: ldnr_affinity::NodeAlloc = ldnr_affinity::NodeAlloc::new();
//! ```
//!
//! [`LinuxAffinity`] (and [`SimulatedAffinity::with_node_alloc`], or an
//! [`AllocNodeGuard`] by hand) sets the thread's allocation node to the replica's node
//! around every clone and every applied batch, and puts the previous one back with the
//! memory policy. Meanwhile every allocation comes from that node's arena: 2 MiB chunks
//! whose range policy (`mbind`, `MPOL_PREFERRED`) names the node before any page of them
//! exists, and blocks that are only ever reused for the same node (see
//! [`node_alloc`] for the design, and why it has no thread caches). Guaranteed: every
//! block allocated during replica work lies in such a range of the replica's node, and in
//! no memory that served another node; the kernel places its pages there while the node
//! has free memory. Measured in the VM test: every replica of the 68 MiB `HashMap` and of the
//! 1M-entry `BTreeMap`, in every phase, in the 2+1- and 4-node guests, had 100.00% of its
//! pages on its node (635,183 pages), the `BTreeMap` replica added right after a copy
//! was freed included (0.06–0.12% with malloc). It makes
//! [`LinuxAffinity::fix_mmap_threshold`] and [`placement::release_free_memory`]
//! unnecessary for replica memory. Outside replica work, on one-node machines, where
//! memory policies are refused (the manager runs as one node), and for programs that do
//! not opt in, nothing changes: the system allocator serves every call.
//!
//! ## With the system allocator
//!
//! What follows is measured in the multi-node VM test (`scripts/numa-vm-test.sh`: glibc,
//! nodes with free memory); nothing here is guaranteed beyond it.
//!
//! **Large allocations** (a hash table's bucket array, a vector's buffer) land on the
//! replica's node when malloc maps them fresh. glibc does that for a request of at least
//! its mmap threshold (128 KiB at start) that its free heap memory cannot serve, but it
//! raises the threshold after each large free, and then serves the next such request
//! from reused heap pages: an 8 MiB buffer allocated for node 1 right after one for node
//! 0 was freed had 0 of 2048 pages on node 1. [`LinuxAffinity::fix_mmap_threshold`]
//! (opt-in: it changes malloc for the whole program, and every large allocation then
//! costs an `mmap`, page faults and a `munmap`, see
//! [`placement::fresh_pages_for_large_allocations`]) turns the raising off: with it, that
//! buffer had 2048 of 2048 pages on node 1. Blocks above 32 MiB (the ceiling of the
//! raised threshold on 64-bit glibc) were mapped fresh either way: the VM test's 68 MiB
//! `HashMap` tables were 100% on their replica's node after construction, after
//! `add_replica`, and after a write phase that resized them, with and without the
//! opt-in. Even so, a large request that malloc can carve from freed, coalesced heap
//! memory (say, after many small blocks were freed) reuses those pages wherever they
//! are; [`placement::release_free_memory`] gives such memory back first.
//!
//! **Small allocations** (a `BTreeMap`, a linked structure, boxed values) come from
//! malloc's arenas, which reuse freed blocks, and a freed block keeps the node it was
//! first touched on. A clone made on fresh arena pages lands right (≥ 99.9% in the VM
//! test), but in the same test a `BTreeMap` replica added with `add_replica` right after
//! the thread freed another copy of the tree landed 0% on its node: malloc handed the
//! freed blocks straight back. Calling [`placement::release_free_memory`] (glibc
//! `malloc_trim(0)`) before `build` and `add_replica` gives whole free pages back to the
//! kernel, so they are placed afresh: that brought the same replica to 99.7%, and every
//! `BTreeMap` replica to ≥ 95% (99.3% overall) after a write phase with removals. Blocks
//! that share a page with live data, and blocks freed and reused during writes, still
//! keep their old node. A structure that needs placement to hold should keep its bulk
//! in large allocations (arrays, arenas, slabs of nodes), or use [`NodeAlloc`].
//!
//! With [`Binding::Preferred`] (the default) a full node spills to other nodes rather
//! than fail; [`Binding::Bind`] never spills (the kernel reclaims or kills instead).
//! [`placement::PageCensus`] tells where pages actually are.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use ldnr::{AffinityManager, Dispatch, NodeReplicated};
//! use ldnr_affinity::LinuxAffinity;
//!
//! #[derive(Clone, Default)]
//! struct Counter(u64);
//! impl Dispatch for Counter {
//!     type ReadOperation = ();
//!     type WriteOperation = u64;
//!     type Response = u64;
//!     fn dispatch(&self, _: ()) -> u64 { self.0 }
//!     fn dispatch_mut(&mut self, by: u64) -> u64 { self.0 += by; self.0 }
//! }
//!
//! let linux = Arc::new(LinuxAffinity::new());
//! // One replica per node of this machine.
//! let nr = NodeReplicated::builder(Counter::default())
//!     .replicas(&linux.nodes())
//!     .affinity(linux.clone())
//!     .build()?;
//! std::thread::scope(|s| {
//!     for node in linux.nodes() {
//!         let (nr, linux) = (&nr, &linux);
//!         s.spawn(move || {
//!             // Run on the node, so the thread is matched to the node's replica.
//!             let _ = linux.pin_to_node(node);
//!             let tkn = nr.register().unwrap();
//!             nr.execute_mut(1, tkn);
//!         });
//!     }
//! });
//! let tkn = nr.register()?;
//! assert_eq!(nr.execute((), tkn), linux.nodes().len() as u64);
//! # Ok::<(), ldnr::Error>(())
//! ```

mod cpulist;
#[cfg(feature = "hwloc")]
mod hwloc;
mod linux;
pub mod node_alloc;
mod pin;
pub mod placement;
mod policy;
mod process;
mod saved;
mod simulated;
mod sys;
mod sysfs;
mod topology;

pub use cpulist::{parse_cpulist, ListParseError};
#[cfg(feature = "hwloc")]
pub use hwloc::{HwlocAffinity, HwlocError};
pub use ldnr::{AffinityError, AffinityManager, NodeId, SavedPolicy};
pub use linux::{Binding, LinuxAffinity};
pub use node_alloc::{alloc_node, set_alloc_node, AllocNodeGuard, NodeAlloc};
pub use pin::{allowed_cpus, current_cpu, pin_to_cpu, pin_to_cpus};
pub use policy::{
    MemoryPolicy, PolicyMode, MPOL_F_NUMA_BALANCING, MPOL_F_RELATIVE_NODES, MPOL_F_STATIC_NODES,
};
pub use process::allowed_memory_nodes;
pub use simulated::SimulatedAffinity;
pub use topology::{NodeInfo, Topology, TopologyError, SYSFS_NODE_DIR};

/// The README's code blocks, compiled and run by `cargo test` so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
