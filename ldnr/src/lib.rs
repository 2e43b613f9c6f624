//! LD-NR: live, dynamically replicated, NUMA-aware concurrent data structures.
//!
//! LD-NR turns any sequential data structure that implements [`Dispatch`] into a
//! linearizable concurrent one, replicated once per NUMA node (or as you choose):
//!
//! - reads run in parallel on the calling thread's local replica;
//! - writes go through one shared **operation log** that every replica applies in order;
//! - per replica, one thread at a time (the **combiner**) appends the pending writes of
//!   all threads served by that replica as one batch (flat combining).
//!
//! # Trade-offs
//!
//! - Reads scale with cores and stay NUMA-local; they never append to the log.
//! - Writes are serialized through the log: write-heavy workloads scale by batching, not
//!   by parallel mutation. A bare concurrent map may beat LD-NR at low thread counts with
//!   many writes; LD-NR wins with read-mostly work on large machines.
//! - Memory: one full copy of the structure per replica, plus the log
//!   (`log_capacity × size_of::<WriteOperation>()` and a word per entry).
//! - Every write is applied once per replica, so `dispatch_mut` must be deterministic.
//!
//! # How it works
//!
//! ```text
//!   thread ──register──> dispatcher ──matches──> replica (on the thread's node)
//!   execute_mut(op):  put op in own context ─> try combiner lock
//!       got it:  collect pending ops ─> reserve log range ─> write ops
//!                ─> take write lock ─> apply log up to batch end ─> publish position, ctail
//!                ─> hand out responses
//!       missed:  publish op on the replica's pending stack; wait for DONE,
//!                retrying the combiner lock whenever it is free
//!   execute(op):      wait until own replica's position ≥ ctail (or combine to get there)
//!                ─> take own reader slot ─> dispatch
//! ```
//!
//! When the log is full because a replica lags (no thread drives it), the combiner that
//! needs space applies the log to that replica itself if it can take its combiner lock
//! without waiting (cross-combining), under that replica's memory policy. An idle replica
//! therefore never stalls the others.
//!
//! Module docs (`log`, `replica`, `rwlock`, `context`, `dispatcher`) describe each
//! algorithm with the numbered invariants that the `SAFETY` comments cite:
//!
//! - log **L1–L5**: exclusive reservation, GC never passes an active replica, liveness by
//!   logical index, the clone lock, drop-exactly-once;
//! - replica **P1–P3**: who may touch the data and the batch buffer;
//! - reader-writer lock **R1**: the Dekker pair of SeqCst fences;
//! - contexts **C1–C2**: the operation slot state machine and the pending stack;
//! - dispatcher **D1–D3**: registration order, serialized reconfiguration, the
//!   matching epoch behind consistent snapshots;
//! - replica shells **P4–P5** (in `replica`): data installed and taken only under both
//!   locks; reconfigurations cannot be starved of a combiner lock.
//!
//! The log's invariants **L6** (the only live replica skips the atomic read-modify-writes
//! of the append path) and **L7** (a garbage collection that overlapped a replica joining
//! is redone) are what make dynamic replicas cheap and safe.
//!
//! # The dispatcher
//!
//! [`NodeReplicated::register`] asks the [`AffinityManager`] for the calling thread's node
//! and matches the thread to a replica on that node (the one serving the fewest threads);
//! with no replica there, to the nearest one by NUMA distance, again the fewest threads.
//!
//! # Changing the replica set
//!
//! [`NodeReplicated::add_replica`] clones the most advanced replica onto a node while
//! operations go on (only the clone source pauses its writes) and moves the threads of that
//! node to it; [`NodeReplicated::remove_replica`] moves a replica's threads to the nearest
//! remaining one, runs every operation they were waiting on exactly once, and frees the
//! replica's data. Both take `&self` and may be called from any thread; they serialize
//! among themselves. See the `reconfigure` module docs for the protocol.
//!
//! Replica *slots* (a few hundred bytes of locks and queues each, up to [`MAX_REPLICAS`])
//! live as long as the instance and are reused, so that a thread still holding a reference
//! from before a removal never touches freed memory; the data, the big part, is freed at
//! once.
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//! use ldnr::{Dispatch, NodeId, NodeReplicated};
//!
//! #[derive(Clone, Default)]
//! struct Map(HashMap<u64, u64>);
//!
//! enum Read { Get(u64) }
//! #[derive(Clone)]
//! enum Write { Put(u64, u64) }
//!
//! impl Dispatch for Map {
//!     type ReadOperation = Read;
//!     type WriteOperation = Write;
//!     type Response = Option<u64>;
//!
//!     fn dispatch(&self, op: Read) -> Option<u64> {
//!         match op { Read::Get(k) => self.0.get(&k).copied() }
//!     }
//!     fn dispatch_mut(&mut self, op: Write) -> Option<u64> {
//!         match op { Write::Put(k, v) => self.0.insert(k, v) }
//!     }
//! }
//!
//! // Two replicas (both on node 0 here; use `ldnr-affinity` for real NUMA nodes).
//! let map = NodeReplicated::builder(Map::default())
//!     .replicas(&[NodeId(0), NodeId(0)])
//!     .build()?;
//!
//! std::thread::scope(|s| {
//!     for t in 0..4u64 {
//!         let map = &map;
//!         s.spawn(move || {
//!             let tkn = map.register().unwrap();
//!             for k in 0..100 {
//!                 map.execute_mut(Write::Put(t * 1000 + k, k), tkn);
//!             }
//!             assert_eq!(map.execute(Read::Get(t * 1000 + 7), tkn), Some(7));
//!         });
//!     }
//! });
//! assert_eq!(map.replicas().iter().map(|r| r.threads).sum::<usize>(), 4);
//! # Ok::<(), ldnr::Error>(())
//! ```
//!
//! # `no_std`
//!
//! The crate is `#![no_std]` with `alloc`. The default `std` feature adds
//! `std::error::Error` impls and lets waiting threads yield their CPU after a short spin;
//! without it they only spin.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod affinity;
mod context;
mod dispatch;
mod dispatcher;
mod error;
mod log;
mod node_replicated;
mod reconfigure;
mod replica;
mod rwlock;
mod sync;

#[cfg(all(test, ldnr_loom))]
mod loom_models;

pub use affinity::{
    AffinityError, AffinityGuard, AffinityManager, NoAffinity, NodeId, SavedPolicy,
};
pub use dispatch::Dispatch;
pub use dispatcher::{DEFAULT_MAX_THREADS, MAX_THREADS};
pub use error::Error;
pub use log::{DEFAULT_LOG_CAPACITY, MAX_LOG_CAPACITY, MAX_REPLICAS, MIN_LOG_CAPACITY};
pub use node_replicated::{Builder, NodeReplicated, ThreadToken};
pub use replica::{ReplicaId, ReplicaInfo};
