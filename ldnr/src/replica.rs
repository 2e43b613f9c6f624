//! One replica: a copy of the data structure and what guards it.
//!
//! A replica has a **combiner lock** (one combiner at a time appends and applies on its
//! behalf), a **reader-writer lock** (readers run in parallel between batches), a
//! **pending stack** of operations waiting for its combiner, and the data itself.
//! Its position in the log lives in the log (`Log::position`), in the replica's slot.
//!
//! Invariants:
//!
//! - **P1** The data is mutated only by the holder of the combiner lock, and only while
//!   it also holds the write lock.
//! - **P2** The data is read (by `dispatch`) only under the read lock.
//! - **P3** The batch buffer is touched only by the holder of the combiner lock.

use alloc::vec::Vec;
use core::fmt;

use crate::affinity::NodeId;
use crate::context::PendingStack;
use crate::rwlock::RwLock;
use crate::sync::{AtomicBool, AtomicUsize, CachePadded, Ordering, UnsafeCell};

/// Identifies a replica of one `NodeReplicated` instance. Ids are never reused, so a
/// stale id of a removed replica is recognised as unknown.
///
/// # Examples
///
/// ```
/// # #[derive(Clone, Default)] struct Nop;
/// # impl ldnr::Dispatch for Nop {
/// #     type ReadOperation = (); type WriteOperation = (); type Response = ();
/// #     fn dispatch(&self, _: ()) {} fn dispatch_mut(&mut self, _: ()) {}
/// # }
/// let nr = ldnr::NodeReplicated::builder(Nop).build().unwrap();
/// let info = nr.replicas();
/// let id: ldnr::ReplicaId = info[0].id;
/// assert_eq!(id, info[0].id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicaId(pub(crate) usize);

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicaId({})", self.0)
    }
}

/// A snapshot of one replica, as [`NodeReplicated::replicas`](crate::NodeReplicated::replicas)
/// reports it.
///
/// # Examples
///
/// ```
/// # #[derive(Clone, Default)] struct Nop;
/// # impl ldnr::Dispatch for Nop {
/// #     type ReadOperation = (); type WriteOperation = (); type Response = ();
/// #     fn dispatch(&self, _: ()) {} fn dispatch_mut(&mut self, _: ()) {}
/// # }
/// let nr = ldnr::NodeReplicated::builder(Nop).build().unwrap();
/// let _t = nr.register().unwrap();
/// let info = &nr.replicas()[0];
/// assert_eq!(info.node, ldnr::NodeId(0));
/// assert_eq!(info.threads, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaInfo {
    /// The replica's id.
    pub id: ReplicaId,
    /// The node its memory is on.
    pub node: NodeId,
    /// How many registered threads it serves.
    pub threads: usize,
    /// How many log entries it has applied.
    pub applied: usize,
}

pub(crate) struct Replica<D> {
    pub(crate) id: ReplicaId,
    pub(crate) node: NodeId,
    combiner: CachePadded<AtomicBool>,
    pub(crate) rw: RwLock,
    pub(crate) pending: CachePadded<PendingStack>,
    /// Threads matched to this replica.
    pub(crate) threads: AtomicUsize,
    /// The thread indices of the batch being combined (P3).
    batch: UnsafeCell<Vec<usize>>,
    data: UnsafeCell<D>,
}

impl<D> fmt::Debug for Replica<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("node", &self.node)
            .field("threads", &self.threads.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Proof that the calling thread holds a replica's combiner lock; releases it on drop.
#[derive(Debug)]
pub(crate) struct CombinerGuard<'a, D> {
    replica: &'a Replica<D>,
}

impl<D> Replica<D> {
    pub(crate) fn new(id: ReplicaId, node: NodeId, data: D) -> Self {
        Self {
            id,
            node,
            combiner: CachePadded(AtomicBool::new(false)),
            rw: RwLock::new(),
            pending: CachePadded(PendingStack::new()),
            threads: AtomicUsize::new(0),
            batch: UnsafeCell::new(Vec::new()),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the combiner lock if it is free; never waits.
    #[inline]
    pub(crate) fn try_combine(&self) -> Option<CombinerGuard<'_, D>> {
        // Test first, so waiters do not bounce the line while a combiner works.
        if self.combiner.load(Ordering::Relaxed) {
            return None;
        }
        // Acquire: pairs with the Release in `CombinerGuard::drop`; the previous
        // combiner's writes to the data and batch buffer happen before ours.
        self.combiner
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| CombinerGuard { replica: self })
    }

    /// Runs `f` on the data under the read lock the caller holds.
    ///
    /// # Safety
    ///
    /// The caller holds this replica's read lock (P2).
    pub(crate) unsafe fn read<R>(&self, f: impl FnOnce(&D) -> R) -> R {
        // SAFETY: the read lock excludes the only mutator (P1, P2).
        self.data.with(|d| f(unsafe { &*d }))
    }
}

impl<'a, D> CombinerGuard<'a, D> {
    pub(crate) fn replica(&self) -> &'a Replica<D> {
        self.replica
    }

    /// The batch buffer.
    pub(crate) fn batch(&mut self) -> &mut Vec<usize> {
        // SAFETY: the combiner lock is held for this guard's lifetime (P3), and the `&mut
        // self` borrow keeps this the only reference.
        self.replica.batch.with_mut(|b| unsafe { &mut *b })
    }

    /// Runs `f` on the data mutably.
    ///
    /// # Safety
    ///
    /// The caller holds this replica's write lock (P1).
    pub(crate) unsafe fn mutate<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        // SAFETY: the combiner lock (this guard) and the write lock make this the only
        // access to the data (P1).
        self.replica.data.with_mut(|d| f(unsafe { &mut *d }))
    }
}

impl<D> Drop for CombinerGuard<'_, D> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire CAS in `try_combine`.
        self.replica.combiner.store(false, Ordering::Release);
    }
}
