//! A process address space replicated with LD-NR on the NUMA nodes where the process's
//! threads run.
//!
//! # The use case: DiNOS
//!
//! DiNOS, the rack-scale operating system of the LD-NR thesis (§6.4), keeps each
//! process's virtual-memory state — the mappings of its address space and the hardware
//! page tables, which the thesis calls LDNR-vMem — in an LD-NR instance. Its ancestor
//! NrOS replicates that state with NR on every NUMA node, for every process, whether the
//! process runs there or not. DiNOS replicates it per process and on demand: only on the
//! nodes whose cores the scheduler gave the process, because only actions of the
//! process's own threads use it (such as the `map` and `unmap` calls the process makes,
//! itself or through its libraries). A process that was given memory on a second host but
//! runs on one host's cores has one replica; a process scheduled on two hosts has two.
//!
//! The scheduler moves threads, so the replica set has to move with them: a node gets a
//! replica when the process starts running there, and gives its memory back when the
//! last of the process's threads leaves. In the thesis's experiment (§6.7.2.2) replicas
//! of memcached's address space were dropped and added by hand while it ran; throughput
//! dipped only briefly while a replica was frozen for a clone, and each dropped replica
//! gave back a large amount of memory, since that address space was big. This crate
//! makes the replica set follow by itself: [`AddressSpace::replicated`] builds the
//! instance with [`Policy::follow_threads`](ldnr::Policy::follow_threads), which keeps a
//! replica on each node where a registered thread is, driven by the thread
//! registrations, exits and migrations the dispatcher sees anyway.
//!
//! # Trade-offs
//!
//! - [`translate`](SpaceReads::translate) is a read on the calling thread's replica, in
//!   its node's memory: no lock shared with other nodes, no log. Translations scale with
//!   the threads, as page walks must.
//! - [`map`](SpaceWrites::map), [`unmap`](SpaceWrites::unmap) and
//!   [`protect`](SpaceWrites::protect) go through one shared log and are applied by every
//!   replica: they are serialized, as a process's `mmap` calls are under one lock in most
//!   kernels, and cost one application per replica.
//! - Memory: one copy of the mappings per node the process runs on, and none elsewhere.
//!   Moving a process's last thread off a node frees that node's copy; moving a thread
//!   onto a new node costs the moving thread a clone of the address space.
//!
//! # How it works
//!
//! [`AddressSpace`] is a plain sequential structure: a `BTreeMap` from each mapping's
//! first address to the [`Mapping`] (its length, physical address and [`Prot`]), split
//! where a partial `unmap` or `protect` cuts a mapping and merged again where neighbours
//! continue each other, so its form is canonical (see its invariants S1–S3). Its three
//! writes are `&mut self` methods made into log operations by
//! [`ldnr::operations!`]: [`SpaceWrites`] is implemented for
//! `NodeReplicated<AddressSpace>`. [`SpaceReads::translate`] is a closure read
//! (`nr.read(tkn, |space| space.translate(va))`).
//!
//! # Example
//!
//! Four pretend NUMA nodes (`ldnr_affinity::SimulatedAffinity`); a process's thread runs
//! on node 1 and then moves to node 3, and its address space's only replica moves with
//! it.
//!
//! ```
//! use std::sync::Arc;
//! use ldnr::NodeId;
//! use ldnr_affinity::SimulatedAffinity;
//! use ldnr_vspace::{AddressSpace, Prot, SpaceReads, SpaceWrites, PAGE_SIZE};
//!
//! let nodes = Arc::new(SimulatedAffinity::new(4));
//! nodes.enter(NodeId(0))?;
//! let space = AddressSpace::new().replicated().affinity(nodes.clone()).build()?;
//! let replica_nodes = || space.replicas().iter().map(|r| r.node.0).collect::<Vec<_>>();
//! assert_eq!(replica_nodes(), [0], "built on node 0, no thread yet");
//!
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         nodes.enter(NodeId(1)).unwrap();
//!         // Registering on node 1 puts a replica there; node 0 has no thread left.
//!         let tkn = space.register().unwrap();
//!         assert_eq!(replica_nodes(), [1]);
//!
//!         let stack = 0x7fff_0000_0000;
//!         let pa = space.map(tkn, stack, 16 * PAGE_SIZE, Prot::READ | Prot::WRITE).unwrap();
//!         assert_eq!(space.translate(tkn, stack + 8), Some((pa + 8, Prot::READ | Prot::WRITE)));
//!
//!         // The scheduler moves the thread to node 3. The library looks at a thread's
//!         // node every 1,024 of its operations; the replica follows then.
//!         nodes.enter(NodeId(3)).unwrap();
//!         let mut reads = 0;
//!         while replica_nodes() != [3] {
//!             assert_eq!(space.translate(tkn, stack), Some((pa, Prot::READ | Prot::WRITE)));
//!             reads += 1;
//!         }
//!         assert!(reads <= 1024);
//!         space.deregister(tkn).unwrap();
//!     });
//! });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod space;

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use space::{
    AddressSpace, MapError, Mapping, Prot, SpaceWrite, SpaceWrites, PAGE_SIZE, PA_END, VA_END,
};

use ldnr::{Builder, NodeReplicated, Policy, ThreadToken};

impl AddressSpace {
    /// A builder for this address space replicated with
    /// [`Policy::follow_threads`]: a replica on every node where a registered thread is.
    /// Give it the machine's affinity manager
    /// ([`Builder::affinity`]); other settings as for any LD-NR instance.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_vspace::{AddressSpace, Prot, SpaceReads, SpaceWrites, PAGE_SIZE};
    ///
    /// // Without an affinity manager there is one node, so one replica.
    /// let space = AddressSpace::new().replicated().max_threads(64).build()?;
    /// let tkn = space.thread_token()?;
    /// space.map(tkn, 0, PAGE_SIZE, Prot::READ).unwrap();
    /// assert!(space.translate(tkn, 0).is_some());
    /// assert_eq!(space.replicas().len(), 1);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn replicated(self) -> Builder<AddressSpace> {
        NodeReplicated::builder(self).policy(Policy::follow_threads())
    }
}

/// The reads of a replicated [`AddressSpace`], run on the calling thread's replica.
///
/// Any other read is a closure: `space.read(tkn, |s| s.mapped_bytes())`.
///
/// # Examples
///
/// ```
/// use ldnr_vspace::{AddressSpace, Prot, SpaceReads, SpaceWrites, PAGE_SIZE};
///
/// let space = AddressSpace::new().replicated().build()?;
/// let tkn = space.thread_token()?;
/// let pa = space.map(tkn, PAGE_SIZE, PAGE_SIZE, Prot::EXEC).unwrap();
/// assert_eq!(space.translate(tkn, PAGE_SIZE + 1), Some((pa + 1, Prot::EXEC)));
/// assert_eq!(space.read(tkn, |s| s.mapped_bytes()), PAGE_SIZE);
/// # Ok::<(), ldnr::Error>(())
/// ```
pub trait SpaceReads {
    /// [`AddressSpace::translate`] on the calling thread's replica: the physical address
    /// and protection of `va`, or `None` if its page is not mapped. Sees every write
    /// that completed before it started.
    ///
    /// # Panics
    ///
    /// As [`NodeReplicated::read`]: if `tkn` belongs to another instance.
    fn translate(&self, tkn: ThreadToken, va: u64) -> Option<(u64, Prot)>;
}

impl SpaceReads for NodeReplicated<AddressSpace> {
    #[inline]
    fn translate(&self, tkn: ThreadToken, va: u64) -> Option<(u64, Prot)> {
        self.read(tkn, |space| space.translate(va))
    }
}
