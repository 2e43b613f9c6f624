//! The dispatcher: thread registration and thread→replica matching.
//!
//! Threads never name a replica. `register` records the calling thread's node (asked of
//! the affinity manager) and matches it to a replica:
//!
//! 1. a replica on the thread's own node, the one serving the fewest threads;
//! 2. otherwise the nearest replica by NUMA distance, again the fewest threads on ties.
//!
//! Several replicas may share a node, so a one-node machine can run any number of
//! replicas (threads then spread over them by load).
//!
//! The dispatcher also owns every thread's [`Context`] (operation/response slot and
//! reader slot), one per registered thread, allocated once for the thread limit. They
//! live here rather than in each replica so that a replica's memory does not grow with
//! the thread limit and so that a thread keeps its context when it moves to another
//! replica.
//!
//! Invariants:
//!
//! - **D1** Thread indices are handed out once, in order, below the thread limit;
//!   `registered` counts them and only grows.
//! - **D2** Changes to the matching (registration, and the matching phases of adding
//!   and removing replicas) are serialized by the admin lock; whole reconfigurations
//!   are serialized with each other by the reconfiguration lock, which registration
//!   does not take. The operation paths take neither.
//! - **D3** Changes to the matching (thread counts, replica identities) happen inside an
//!   odd `epoch` (a sequence lock), so a snapshot (`replicas()`) can be consistent
//!   without taking the admin lock — which an `add_replica` holds while it clones.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::affinity::NodeId;
use crate::dispatch::Dispatch;
use crate::error::Error;
use crate::replica::context::Context;
use crate::replica::rwlock::ReaderSlot;
use crate::shared::Shared;
use crate::sync::{
    fence, next_instance_id, AtomicBool, AtomicUsize, Backoff, CachePadded, Ordering,
};

/// The largest thread limit an instance accepts.
pub const MAX_THREADS: usize = 1 << 16;
/// The default thread limit.
pub const DEFAULT_MAX_THREADS: usize = 256;

/// Proof that the calling thread registered with one [`NodeReplicated`](crate::NodeReplicated) instance.
///
/// A token is `Copy` (pass it by value to every call) and `!Send`: it names the thread's
/// operation slot and reader slot, which must not be used by two threads at once.
///
/// ```compile_fail
/// # #[derive(Clone, Default)] struct Nop;
/// # impl ldnr::Dispatch for Nop {
/// #     type ReadOperation = (); type WriteOperation = (); type Response = ();
/// #     fn dispatch(&self, _: ()) {} fn dispatch_mut(&mut self, _: ()) {}
/// # }
/// let nr = ldnr::NodeReplicated::builder(Nop).build().unwrap();
/// let tkn = nr.register().unwrap();
/// std::thread::spawn(move || drop(tkn)); // error: `ThreadToken` cannot be sent between threads
/// ```
///
/// Each token remembers the instance that issued it. Passing it to another instance is
/// a programmer error and panics (see [`NodeReplicated::execute`](crate::NodeReplicated::execute)).
#[derive(Clone, Copy)]
pub struct ThreadToken {
    tid: usize,
    instance: usize,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl core::fmt::Debug for ThreadToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ThreadToken")
            .field("thread", &self.tid)
            .field("instance", &self.instance)
            .finish()
    }
}

impl ThreadToken {
    /// The thread's index in its instance (0 for the first registered thread).
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
    /// assert_eq!(nr.register().unwrap().index(), 0);
    /// assert_eq!(nr.register().unwrap().index(), 1);
    /// ```
    pub fn index(self) -> usize {
        self.tid
    }
}

/// A candidate replica for matching: its slot, node and thread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) slot: usize,
    pub(crate) node: NodeId,
    pub(crate) threads: usize,
}

/// Picks the replica for a thread on `node`: nearest first (the own node has the smallest
/// distance), then fewest threads, then the lowest slot so the choice is deterministic.
pub(crate) fn choose(
    node: NodeId,
    candidates: impl Iterator<Item = Candidate>,
    distance: impl Fn(NodeId, NodeId) -> u32,
) -> Option<usize> {
    candidates
        .min_by_key(|c| (distance(node, c.node), c.threads, c.slot))
        .map(|c| c.slot)
}

pub(crate) struct Dispatcher<W, R> {
    /// A process-wide unique number of the instance, which its tokens carry.
    instance: usize,
    contexts: Box<[CachePadded<Context<W, R>>]>,
    registered: CachePadded<AtomicUsize>,
    admin: AtomicBool,
    reconfig: AtomicBool,
    /// Odd while the admin lock holder changes the matching (D3).
    epoch: AtomicUsize,
}

impl<W, R> core::fmt::Debug for Dispatcher<W, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("limit", &self.contexts.len())
            .field("registered", &self.registered())
            .finish_non_exhaustive()
    }
}

/// An ongoing change to the matching; ends on drop.
#[derive(Debug)]
pub(crate) struct ChangeGuard<'a>(&'a AtomicUsize);

impl Drop for ChangeGuard<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire in `Dispatcher::consistent`.
        self.0
            .store(self.0.load(Ordering::Relaxed) + 1, Ordering::Release);
    }
}

/// An admin-path lock (the admin or the reconfiguration lock); released on drop.
#[derive(Debug)]
pub(crate) struct AdminGuard<'a>(&'a AtomicBool);

impl Drop for AdminGuard<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire in `Dispatcher::admin`.
        self.0.store(false, Ordering::Release);
    }
}

/// Takes a spin lock for an admin path (never on the operation paths).
fn lock(flag: &AtomicBool) -> AdminGuard<'_> {
    let mut backoff = Backoff::new();
    // Acquire: pairs with the Release in `AdminGuard::drop`.
    while flag
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        backoff.snooze();
    }
    AdminGuard(flag)
}

impl<W, R> Dispatcher<W, R> {
    pub(crate) fn new(limit: usize) -> Self {
        let contexts: Vec<_> = (0..limit).map(|_| CachePadded(Context::new())).collect();
        Self {
            instance: next_instance_id(),
            contexts: contexts.into_boxed_slice(),
            registered: CachePadded(AtomicUsize::new(0)),
            admin: AtomicBool::new(false),
            reconfig: AtomicBool::new(false),
            epoch: AtomicUsize::new(0),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.contexts.len()
    }

    /// The instance's process-wide unique number.
    #[inline]
    pub(crate) fn instance(&self) -> usize {
        self.instance
    }

    /// The thread index of `tkn`.
    ///
    /// # Panics
    ///
    /// If `tkn` was issued by another instance (a programmer error).
    #[inline]
    pub(crate) fn check(&self, tkn: ThreadToken) -> usize {
        assert!(
            tkn.instance == self.instance,
            "ldnr: a ThreadToken of another NodeReplicated instance was used"
        );
        tkn.tid
    }

    pub(crate) fn contexts(&self) -> &[CachePadded<Context<W, R>>] {
        &self.contexts
    }

    pub(crate) fn context(&self, tid: usize) -> &Context<W, R> {
        &self.contexts[tid]
    }

    pub(crate) fn registered(&self) -> usize {
        // Acquire: pairs with the Release in `next_thread`; the new context is set up.
        self.registered.load(Ordering::Acquire)
    }

    /// The reader slots of every registered thread. Called by a writer after it raised
    /// its flag (see `rwlock`, R1).
    pub(crate) fn readers(&self) -> impl Iterator<Item = &ReaderSlot> {
        self.contexts[..self.registered()].iter().map(|c| &c.reader)
    }

    /// The admin lock: serializes changes to the matching (registration, and the short
    /// matching phases of reconfigurations) (D2).
    pub(crate) fn admin(&self) -> AdminGuard<'_> {
        lock(&self.admin)
    }

    /// Serializes reconfigurations with each other for their whole length, clones
    /// included; registration does not take it, so a thread can register during a long
    /// `add_replica` (D2).
    pub(crate) fn reconfig(&self) -> AdminGuard<'_> {
        lock(&self.reconfig)
    }

    /// Marks the start of a change to the matching (thread counts, replica identities);
    /// the change ends when the returned guard drops (D3).
    pub(crate) fn changing<'a>(&'a self, _admin: &AdminGuard<'a>) -> ChangeGuard<'a> {
        self.epoch
            .store(self.epoch.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        // Release: the odd epoch is visible before any of the change's stores.
        fence(Ordering::Release);
        ChangeGuard(&self.epoch)
    }

    /// Reads a consistent view of the matching with `f`: retries while a change is in
    /// progress or if one happened during the read (D3).
    pub(crate) fn consistent<T>(&self, mut f: impl FnMut() -> T) -> T {
        let mut backoff = Backoff::new();
        loop {
            // Acquire: pairs with the Release in `ChangeGuard::drop`.
            let before = self.epoch.load(Ordering::Acquire);
            if before % 2 == 0 {
                let view = f();
                // Acquire: the reads in `f` happen before the second epoch load.
                fence(Ordering::Acquire);
                if self.epoch.load(Ordering::Relaxed) == before {
                    return view;
                }
            }
            backoff.snooze();
        }
    }

    /// Hands out the next thread index matched to replica `slot`, or `None` at the limit.
    /// The caller holds the admin lock, so indices are handed out one at a time (D1).
    pub(crate) fn next_thread(
        &self,
        _admin: &AdminGuard<'_>,
        slot: usize,
        node: NodeId,
    ) -> Option<usize> {
        let tid = self.registered.load(Ordering::Relaxed);
        if tid >= self.contexts.len() {
            return None;
        }
        self.contexts[tid].replica.store(slot, Ordering::Relaxed);
        self.contexts[tid].node.store(node.0, Ordering::Relaxed);
        // Release: pairs with the Acquire in `registered`. SeqCst is not needed for the
        // reader-writer lock: the new thread reads only after this returns, and its
        // reader-slot store is ordered by the lock's fences (R1).
        self.registered.store(tid + 1, Ordering::Release);
        Some(tid)
    }
}

impl<D> Shared<D>
where
    D: Dispatch + Clone + Send + Sync,
{
    /// Registers the calling thread and matches it to a replica (see the crate docs'
    /// dispatcher rules).
    pub(crate) fn register(&self) -> Result<ThreadToken, Error> {
        self.check_callbacks();
        // The affinity manager runs under the mark, so that it cannot call back in while
        // the admin lock is held. It is asked before anything changes: a panic in it
        // changes nothing.
        let _inside = self.callbacks();
        let manager = self.memory.manager();
        let node = manager.current_node();
        let admin = self.threads.admin();
        let _change = self.threads.changing(&admin);
        let slot = choose(node, self.replicas.candidates(None), |a, b| {
            manager.distance(a, b)
        })
        .expect("an instance always has a live replica");
        let tid = self
            .threads
            .next_thread(&admin, slot, node)
            .ok_or(Error::TooManyThreads {
                limit: self.threads.limit(),
            })?;
        self.replicas
            .shell(slot)
            .threads
            .fetch_add(1, Ordering::Relaxed);
        Ok(ThreadToken {
            tid,
            instance: self.threads.instance(),
            _not_send: core::marker::PhantomData,
        })
    }
}

#[cfg(all(test, not(ldnr_loom)))]
mod tests {
    use super::*;

    fn c(slot: usize, node: usize, threads: usize) -> Candidate {
        Candidate {
            slot,
            node: NodeId(node),
            threads,
        }
    }

    fn numa(a: NodeId, b: NodeId) -> u32 {
        if a == b {
            10
        } else {
            10 + 10 * a.0.abs_diff(b.0) as u32
        }
    }

    #[test]
    fn local_replica_wins_over_a_less_loaded_remote_one() {
        let cands = [c(0, 0, 0), c(1, 1, 5)];
        assert_eq!(choose(NodeId(1), cands.into_iter(), numa), Some(1));
    }

    #[test]
    fn fewest_threads_among_local_replicas() {
        let cands = [c(0, 1, 3), c(1, 1, 2), c(2, 1, 2)];
        assert_eq!(choose(NodeId(1), cands.into_iter(), numa), Some(1));
    }

    #[test]
    fn nearest_remote_replica_when_none_is_local() {
        let cands = [c(0, 0, 0), c(1, 3, 0), c(2, 2, 9)];
        assert_eq!(choose(NodeId(4), cands.into_iter(), numa), Some(1));
    }

    #[test]
    fn no_candidates_no_choice() {
        assert_eq!(choose(NodeId(0), core::iter::empty(), numa), None);
    }

    #[test]
    fn thread_limit_is_enforced() {
        let d: Dispatcher<u64, u64> = Dispatcher::new(2);
        let admin = d.admin();
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), Some(0));
        assert_eq!(d.next_thread(&admin, 0, NodeId(1)), Some(1));
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), None);
        assert_eq!(d.registered(), 2);
    }
}
