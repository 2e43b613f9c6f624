//! One replica: a copy of the data structure and what guards it.
//!
//! A replica has a **combiner lock** (one combiner at a time appends and applies on its
//! behalf), a **reader-writer lock** (readers run in parallel between batches), a
//! **pending stack** of operations waiting for its combiner, and the data itself.
//! Its position in the log lives in the log (`Log::position`), in the replica's slot.
//!
//! The combiner lock, the reader-writer lock's word and the counters that every batch
//! bumps share one cache line ([`CombinerLock`]): a writer takes the first and writes the
//! other two under it, so a write that finds the line in another core's cache moves one
//! line, not two. Readers load the word from that line; it changes with every batch
//! either way.
//!
//! Invariants:
//!
//! - **P1** The data is mutated only by the holder of the combiner lock, and only while
//!   it also holds the write lock.
//! - **P2** The data is read (by `dispatch`) only under the read lock.
//! - **P3** The batch buffer is touched only by the holder of the combiner lock.
//! - **P4** A replica slot (shell) lives as long as its instance. A replica's data is
//!   installed and taken out only by a holder of the combiner lock *and* the write lock,
//!   so no combiner and no reader can be inside it then; anyone who reaches a shell
//!   whose data is gone (a replica removed under it) sees `None` and goes elsewhere.
//! - **P5** A reconfiguration that must freeze a replica announces it (`wanted`); from
//!   then on no other thread takes the combiner lock, so the reconfiguration gets it as
//!   soon as the current combiner finishes its batch.
//! - **P6** While a replica is frozen as a clone source, its threads are served by
//!   another replica (a *stand-in*) instead of waiting: any replica may combine any
//!   thread's operation, and any replica at `ctail` may serve a read. The `frozen` flag
//!   is only a hint for choosing; correctness rests on the locks as always.
//!
//! The submodules are the rest of a replica's machinery: [`rwlock`] (the reader-writer
//! lock, R1), [`context`] (the per-thread operation slots and the pending stack, C1–C2),
//! [`combiner`] (flat combining, helping and poisoning) and `set` (the shells of an
//! instance and the one place that installs a replica).

use alloc::vec::Vec;
use core::fmt;

use crate::affinity::NodeId;
use crate::sync::{AtomicBool, AtomicUsize, Backoff, CachePadded, Ordering, UnsafeCell};

pub(crate) mod combiner;
pub(crate) mod context;
pub(crate) mod rwlock;
mod set;

use context::PendingStack;
use rwlock::{ReaderSet, RwLock};
pub(crate) use set::{ReplicaSet, Start};

/// Identifies a replica of one `NodeReplicated` instance. Ids are never reused, so a
/// stale id of a removed replica is recognised as unknown.
///
/// # Examples
///
/// ```
/// // A register: reads return the number, writes replace it and return the old one.
/// #[derive(Clone, Default)]
/// struct Register(u64);
///
/// impl ldnr::Dispatch for Register {
///     type ReadOperation = ();
///     type WriteOperation = u64;
///     type Response = u64;
///     fn dispatch(&self, _: ()) -> u64 { self.0 }
///     fn dispatch_mut(&mut self, v: u64) -> u64 { std::mem::replace(&mut self.0, v) }
/// }
///
/// let nr = ldnr::NodeReplicated::builder(Register::default()).build().unwrap();
/// let info = nr.replicas();
/// let id: ldnr::ReplicaId = info[0].id;
/// assert_eq!(id, info[0].id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicaId(pub(crate) usize);

impl ReplicaId {
    /// The id's number: unique within its instance and never reused (for logs and
    /// reports; ids of different instances may have equal numbers).
    ///
    /// # Examples
    ///
    /// ```
    /// // A register: reads return the number, writes replace it and return the old one.
    /// #[derive(Clone, Default)]
    /// struct Register(u64);
    ///
    /// impl ldnr::Dispatch for Register {
    ///     type ReadOperation = ();
    ///     type WriteOperation = u64;
    ///     type Response = u64;
    ///     fn dispatch(&self, _: ()) -> u64 { self.0 }
    ///     fn dispatch_mut(&mut self, v: u64) -> u64 { std::mem::replace(&mut self.0, v) }
    /// }
    ///
    /// let nr = ldnr::NodeReplicated::builder(Register::default()).build().unwrap();
    /// let first = nr.replicas()[0].id;
    /// let added = nr.add_replica(ldnr::NodeId(0)).unwrap();
    /// assert_ne!(first.get(), added.get());
    /// ```
    pub fn get(self) -> usize {
        self.0
    }
}

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
/// // A register: reads return the number, writes replace it and return the old one.
/// #[derive(Clone, Default)]
/// struct Register(u64);
///
/// impl ldnr::Dispatch for Register {
///     type ReadOperation = ();
///     type WriteOperation = u64;
///     type Response = u64;
///     fn dispatch(&self, _: ()) -> u64 { self.0 }
///     fn dispatch_mut(&mut self, v: u64) -> u64 { std::mem::replace(&mut self.0, v) }
/// }
///
/// let nr = ldnr::NodeReplicated::builder(Register::default()).build().unwrap();
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
    /// How many writes it has applied: log entries, and, while it was the only replica
    /// (or its clone source was, before the clone), writes applied to it directly
    /// without the log (crate docs, "Reads and writes"). Replicas that hold the same
    /// state report the same count.
    pub applied: usize,
}

/// What the combiners of one replica did, as [`Stats::replicas`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// The replica's id.
    pub id: ReplicaId,
    /// The node its memory is on.
    pub node: NodeId,
    /// Batches its combiners appended and applied (flat combining: one per combining
    /// turn that had operations).
    pub batches: usize,
    /// Write operations those batches combined (`appended / batches` is the mean
    /// batch): appended to the log, or, while this is the only replica, applied to it
    /// directly (crate docs, "Reads and writes").
    pub appended: usize,
    /// Log entries applied to it by combiners of other replicas (cross-combining: it
    /// lagged while the log filled).
    pub helped: usize,
    /// Times it was frozen as the clone source of `add_replica`.
    pub freezes: usize,
    /// How long it was frozen in all (with `std`; zero without).
    pub frozen: core::time::Duration,
}

/// What an instance did, as [`NodeReplicated::stats`](crate::NodeReplicated::stats)
/// reports it.
///
/// Every counter is written by a thread that owns its cache line already (a thread's own
/// context, a replica's combiner-lock line, the admin lock holder), so keeping them costs
/// the operation paths no shared write.
///
/// # Examples
///
/// ```
/// use ldnr::NodeReplicated;
///
/// #[derive(Clone, Default)]
/// struct Register(u64);
/// impl ldnr::Dispatch for Register {
///     type ReadOperation = ();
///     type WriteOperation = u64;
///     type Response = u64;
///     fn dispatch(&self, _: ()) -> u64 { self.0 }
///     fn dispatch_mut(&mut self, v: u64) -> u64 { std::mem::replace(&mut self.0, v) }
/// }
///
/// let nr = NodeReplicated::builder(Register::default()).build()?;
/// let tkn = nr.register()?;
/// nr.execute_mut(1, tkn);
/// nr.execute((), tkn);
/// let stats = nr.stats();
/// assert_eq!(stats.operations, 2);
/// let r = &stats.replicas[0];
/// assert_eq!((r.batches, r.appended), (1, 1));
/// # Ok::<(), ldnr::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Operations started (reads and writes, of every thread that ever registered).
    pub operations: usize,
    /// Threads that a migration check found on another node than before (the operating
    /// system moved them); each was matched again, to a replica of its new node if
    /// there is one (or the [`Policy`](crate::Policy) adds one).
    pub migrations: usize,
    /// Replicas the replication policy added ([`Policy`](crate::Policy)).
    pub policy_added: usize,
    /// Replicas the replication policy removed.
    pub policy_removed: usize,
    /// Changes the replication policy tried and could not make: an `add_replica` that
    /// failed (the node's memory policy refused, the instance full) or a run that panicked
    /// (a panicking affinity manager or `Clone` of `D`; with `std`, caught: the thread
    /// that ran the policy goes on).
    pub policy_failed: usize,
    /// Operations of parked threads that woke the policy (the idle rule of
    /// [`Policy::idle_after`](crate::Policy::idle_after)).
    pub policy_woken: usize,
    /// Per live replica: batches, operations appended, entries applied by other
    /// replicas' combiners, freezes.
    pub replicas: Vec<ReplicaStats>,
}

/// A replica slot ("shell"). Shells are allocated once per instance and reused: a
/// removed replica gives back its data (the big part) at once, while the shell — locks,
/// pending stack, a few words — stays, so a thread that still holds a reference to it
/// from before the removal never touches freed memory (replica P4).
pub(crate) struct Replica<D> {
    /// `0`: no replica lives here; otherwise the live replica's id + 1. Changed only
    /// under the admin lock; read without it for snapshots and matching.
    id: AtomicUsize,
    /// The node of the live replica.
    node: AtomicUsize,
    /// The combiner lock and, on its line, the reader-writer lock's word.
    combiner: CachePadded<CombinerLock>,
    /// The threads that may read this replica (rwlock R2).
    pub(crate) readers: ReaderSet,
    pub(crate) pending: CachePadded<PendingStack>,
    /// Threads matched to this replica. Changed only under the admin lock.
    pub(crate) threads: AtomicUsize,
    /// The thread indices of the batch being combined (P3).
    batch: UnsafeCell<Vec<usize>>,
    /// `None` while the shell holds no replica (P4).
    data: UnsafeCell<Option<D>>,
}

impl<D> fmt::Debug for Replica<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id())
            .field("node", &self.node())
            .field("threads", &self.threads.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A replica's combiner lock, with the flag a waiting reconfiguration raises, the
/// reader-writer lock's word and the counters: the line every write writes (module
/// docs). `repr(C)`: the flags, the word and the counters bumped per write fill the
/// first 64 bytes; only the counters of rarer events (cross-combining, freezes) come
/// after.
#[derive(Debug)]
#[repr(C)]
struct CombinerLock {
    locked: AtomicBool,
    wanted: AtomicBool,
    /// Set while a reconfiguration holds the lock to clone this replica (P6).
    frozen: AtomicBool,
    /// Set while a thread waits for the lock in [`Replica::wait_to_combine`] (one at a
    /// time). A hint: it guards no data.
    waiter: AtomicBool,
    /// The reader-writer lock (one word).
    rw: RwLock,
    /// The replica's statistics, on the line its combiners write anyway.
    counters: Counters,
}

/// What the combiners of one replica did (for [`ReplicaInfo`]). Written only by the
/// holder of the replica's combiner lock, so a relaxed load and store (no read-modify-
/// write) keeps them exact; they sit on the lock's own cache line, which every holder
/// has just written, so counting adds no shared line to the write path. Read (relaxed)
/// by snapshots.
/// Those bumped on every write come first (`repr(C)`, see [`CombinerLock`]).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Counters {
    /// Writes combined alone (`write_alone`: a batch of one, applied directly); counted
    /// in `batches`, `appended` and `direct` when read, so that path bumps one counter.
    alone: AtomicUsize,
    /// Batches combined (appended and applied) by this replica's combiners.
    batches: AtomicUsize,
    /// Write operations those batches combined (appended, or applied directly: log L9).
    appended: AtomicUsize,
    /// Writes its state holds that were applied directly, not through the log (log L9):
    /// by its own combiners while it was the only replica, and by its clone source's
    /// before the clone. With the log position, what [`ReplicaInfo::applied`] counts.
    direct: AtomicUsize,
    /// Log entries applied to this replica by combiners of other replicas
    /// (cross-combining).
    helped: AtomicUsize,
    /// Times this replica was frozen as a clone source.
    freezes: AtomicUsize,
    /// Nanoseconds it spent frozen (with `std`).
    frozen_ns: AtomicUsize,
}

impl Counters {
    fn new() -> Self {
        Self {
            batches: AtomicUsize::new(0),
            appended: AtomicUsize::new(0),
            helped: AtomicUsize::new(0),
            freezes: AtomicUsize::new(0),
            frozen_ns: AtomicUsize::new(0),
            direct: AtomicUsize::new(0),
            alone: AtomicUsize::new(0),
        }
    }

    /// Adds `by` to `counter`. Combiner-lock holder only.
    #[inline]
    fn bump(counter: &AtomicUsize, by: usize) {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(by),
            Ordering::Relaxed,
        );
    }
}

// The flags, the word and the four counters bumped per write fit the line's 64 bytes.
#[cfg(not(any(ldnr_loom, ldnr_shuttle)))]
const _: () = assert!(
    core::mem::offset_of!(CombinerLock, counters) + core::mem::offset_of!(Counters, helped) <= 64
);

/// How many times [`Replica::wait_to_combine`] checks the lock before it gives up.
#[cfg(not(ldnr_loom))]
const WAIT_CHECKS: usize = 16;
/// Spin-loop hints between two of its checks: a check is a load of the lock's line,
/// which takes the line back from its holder in the middle of a batch, so not too often.
/// Two writers on the test VM (`bench/ab/two_threads.rs`, 100% writes, two runs each,
/// every setting 256 hints in all), against 8 hints apart: 2 and 4 were 1.08–1.20×
/// slower, 16 took 0.91–0.95× the time at 64K keys and 0.94× at 1M with the shares
/// still even (0.45); 32 was faster still at 64K keys and gave the waiting thread as
/// little as 0.36 of the operations. (The driver at 1M keys, one run each, gave 16 less
/// than 8 against the `RwLock`: 1.12× against 1.21×; the evidence there is mixed.)
#[cfg(not(ldnr_loom))]
const WAIT_PAUSES: usize = 16;

/// Proof that the calling thread holds a replica's combiner lock; releases it on drop.
#[derive(Debug)]
pub(crate) struct CombinerGuard<'a, D> {
    replica: &'a Replica<D>,
}

impl<D> Replica<D> {
    /// An empty shell for an instance of at most `threads` threads.
    pub(crate) fn shell(threads: usize) -> Self {
        Self {
            id: AtomicUsize::new(0),
            node: AtomicUsize::new(0),
            combiner: CachePadded(CombinerLock {
                locked: AtomicBool::new(false),
                wanted: AtomicBool::new(false),
                frozen: AtomicBool::new(false),
                waiter: AtomicBool::new(false),
                rw: RwLock::new(),
                counters: Counters::new(),
            }),
            readers: ReaderSet::new(threads),
            pending: CachePadded(PendingStack::new()),
            threads: AtomicUsize::new(0),
            batch: UnsafeCell::new(Vec::new()),
            data: UnsafeCell::new(None),
        }
    }

    /// The replica's reader-writer lock (its word on the combiner lock's line).
    #[inline(always)]
    pub(crate) fn rw(&self) -> &RwLock {
        &self.combiner.rw
    }

    /// The id of the live replica in this shell, if any.
    pub(crate) fn id(&self) -> Option<ReplicaId> {
        // Acquire: pairs with the Release in `set_identity`.
        match self.id.load(Ordering::Acquire) {
            0 => None,
            n => Some(ReplicaId(n - 1)),
        }
    }

    /// The replica's statistics: `(batches, appended, helped, freezes, frozen ns)`, read
    /// as they are now.
    pub(crate) fn counters(&self) -> [usize; 5] {
        let c = &self.combiner.counters;
        let alone = c.alone.load(Ordering::Relaxed);
        [
            c.batches.load(Ordering::Relaxed).wrapping_add(alone),
            c.appended.load(Ordering::Relaxed).wrapping_add(alone),
            c.helped.load(Ordering::Relaxed),
            c.freezes.load(Ordering::Relaxed),
            c.frozen_ns.load(Ordering::Relaxed),
        ]
    }

    /// How many writes its state holds that were applied directly (log L9). Exact under
    /// its combiner lock; a snapshot's reading otherwise.
    pub(crate) fn direct(&self) -> usize {
        let c = &self.combiner.counters;
        c.direct
            .load(Ordering::Relaxed)
            .wrapping_add(c.alone.load(Ordering::Relaxed))
    }

    /// The node of the live replica.
    pub(crate) fn node(&self) -> NodeId {
        NodeId(self.node.load(Ordering::Relaxed))
    }

    /// Sets the node of the replica being installed in this shell: before its data, so
    /// that whoever applies the replica (under its combiner lock, which orders this store
    /// before them) uses this node's memory, not the shell's previous life's.
    pub(crate) fn set_node(&self, node: NodeId) {
        self.node.store(node.0, Ordering::Relaxed);
    }

    /// Names (or, with `None`, clears) the replica living in this shell. Admin lock only.
    pub(crate) fn set_identity(&self, id: Option<ReplicaId>) {
        // Release: pairs with the Acquire in `id`; the node is set before.
        self.id
            .store(id.map_or(0, |id| id.0 + 1), Ordering::Release);
    }

    /// Takes the combiner lock if it is free; never waits.
    #[inline]
    pub(crate) fn try_combine(&self) -> Option<CombinerGuard<'_, D>> {
        let lock = &self.combiner;
        // Test first, so waiters do not bounce the line while a combiner works; and step
        // aside while a reconfiguration waits for the lock (P5).
        if lock.locked.load(Ordering::Relaxed) || lock.wanted.load(Ordering::Relaxed) {
            return None;
        }
        // Acquire: pairs with the Release in `CombinerGuard::drop`; the previous
        // combiner's writes to the data and batch buffer happen before ours.
        lock.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| CombinerGuard { replica: self })
    }

    /// [`try_combine`](Self::try_combine) for a thread that found the lock held and would
    /// now publish its operation for the holder to combine: first it waits a little for the
    /// holder to let go, if nobody waits on the pending stack, no other thread waits here,
    /// no reconfiguration wants the lock and the replica is not frozen as a clone source
    /// (the caller waits only while the replica is the only live one). Two threads writing
    /// one replica so take turns with the lock, each applying its own operation, instead of
    /// handing every other operation over through a context (its operation, its state and
    /// its response each move a line between the cores). A third thread finds the first
    /// waiting and publishes; whoever takes the lock next combines it (flat combining, as
    /// before).
    ///
    /// It waits for at most [`WAIT_CHECKS`] checks [`WAIT_PAUSES`] spin-loop hints apart
    /// (3–4 µs on the test VM's Intel Xeon, whose hint takes 11–15 ns), then gives up: a
    /// holder that takes longer (a batch, a clone, a preempted thread) gets the operation
    /// published. A check only loads (the lock's line, the pending stack's head) until it
    /// sees the lock free, and checks are spaced so that the holder, which writes that
    /// line, loses it to the waiter seldom. Under loom it returns `None` at once: waiting
    /// only delays a [`try_combine`](Self::try_combine), which the models explore.
    #[inline]
    pub(crate) fn wait_to_combine(&self) -> Option<CombinerGuard<'_, D>> {
        #[cfg(ldnr_loom)]
        {
            None
        }
        #[cfg(not(ldnr_loom))]
        {
            let lock = &self.combiner;
            // Relaxed: a hint that keeps the waiters to one; it orders nothing.
            if lock.waiter.load(Ordering::Relaxed) || lock.waiter.swap(true, Ordering::Relaxed) {
                return None;
            }
            for _ in 0..WAIT_CHECKS {
                Backoff::pause(WAIT_PAUSES);
                if lock.wanted.load(Ordering::Relaxed)
                    || lock.frozen.load(Ordering::Relaxed)
                    || !self.pending.is_empty()
                {
                    break;
                }
                if !lock.locked.load(Ordering::Relaxed) {
                    // Seen free: the flag goes first, so that the holder, back for its
                    // next write, finds nobody waiting and waits in turn instead of
                    // publishing.
                    lock.waiter.store(false, Ordering::Relaxed);
                    if let Some(combiner) = self.try_combine() {
                        return Some(combiner);
                    }
                    // Another thread took it first: wait on, unless someone else waits now.
                    if lock.waiter.swap(true, Ordering::Relaxed) {
                        return None;
                    }
                }
            }
            lock.waiter.store(false, Ordering::Relaxed);
            None
        }
    }

    /// Takes the combiner lock, waiting for the current holder (reconfigurations only;
    /// they are serialized, so there is at most one such waiter per replica). While it
    /// waits, `try_combine` fails for everyone else, so a busy replica cannot starve it
    /// (P5).
    pub(crate) fn combine_blocking(&self) -> CombinerGuard<'_, D> {
        let lock = &self.combiner;
        lock.wanted.store(true, Ordering::Relaxed);
        let mut backoff = Backoff::new();
        loop {
            // Acquire: as in `try_combine`.
            if lock
                .locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                lock.wanted.store(false, Ordering::Relaxed);
                return CombinerGuard { replica: self };
            }
            backoff.snooze();
        }
    }

    /// Orders a thread that just joined this replica's reader set with its writers when
    /// the heavy barrier of rwlock R5 was refused (the kernel's, after registration): it
    /// takes the combiner lock, which every writer holds, and lets it go. Its acquire
    /// reads the release of the writer that holds the lock now (a lone writer's write
    /// happens before the thread's reads), and every later writer's acquire reads this
    /// release or a later one (the insert happens before its look at the set): what the
    /// barrier would have given. Waits for the holder with
    /// [`try_combine`](Self::try_combine), so a reconfiguration that wants the lock goes
    /// first (P5): a batch, which may itself wait for log space (a lagging or frozen
    /// replica), or a clone where the replica has no stand-in. Gives up, `false`, as soon
    /// as `elsewhere` says the thread may read another replica (this one frozen, with a
    /// stand-in). Only after a refused barrier; the caller holds no lock.
    #[cold]
    #[inline(never)]
    pub(crate) fn order_join(&self, elsewhere: impl Fn() -> bool) -> bool {
        let mut backoff = Backoff::new();
        loop {
            if self.try_combine().is_some() {
                return true;
            }
            if elsewhere() {
                return false;
            }
            backoff.snooze();
        }
    }

    /// Whether a reconfiguration holds this replica frozen as a clone source (P6).
    #[inline]
    pub(crate) fn is_frozen(&self) -> bool {
        // Acquire: pairs with the Release in `freeze`; the stand-in chosen for this
        // freeze is visible.
        self.combiner.frozen.load(Ordering::Acquire)
    }

    /// Takes the combiner lock for a clone and marks the replica frozen until the
    /// returned guard drops (P6).
    pub(crate) fn freeze(&self) -> FreezeGuard<'_, D> {
        let combiner = self.combine_blocking();
        // Release: pairs with the Acquire in `is_frozen`.
        self.combiner.frozen.store(true, Ordering::Release);
        Counters::bump(&self.combiner.counters.freezes, 1);
        FreezeGuard {
            combiner,
            #[cfg(feature = "std")]
            since: std::time::Instant::now(),
        }
    }

    /// Runs `f` on the data under the read lock the caller holds; `None` if the shell
    /// holds no replica.
    ///
    /// # Safety
    ///
    /// The caller holds this replica's read lock (P2).
    #[inline]
    pub(crate) unsafe fn read<R>(&self, f: impl FnOnce(&D) -> R) -> Option<R> {
        // SAFETY: the read lock excludes the only mutator (P1, P2, P4).
        self.data.with(|d| unsafe { (*d).as_ref() }.map(f))
    }

    /// Whether the shell holds a live replica, read under the caller's read lock.
    ///
    /// # Safety
    ///
    /// The caller holds this replica's read lock (P2).
    #[inline]
    pub(crate) unsafe fn is_live_read(&self) -> bool {
        // SAFETY: as in `read`.
        self.data.with(|d| unsafe { (*d).is_some() })
    }
}

impl<'a, D> CombinerGuard<'a, D> {
    pub(crate) fn replica(&self) -> &'a Replica<D> {
        self.replica
    }

    /// Counts a batch of `ops` write operations this combiner appended and applied.
    #[inline]
    pub(crate) fn count_batch(&self, ops: usize) {
        let c = &self.replica.combiner.counters;
        Counters::bump(&c.batches, 1);
        Counters::bump(&c.appended, ops);
    }

    /// Counts `entries` log entries applied to this replica by a combiner of another.
    #[inline]
    pub(crate) fn count_helped(&self, entries: usize) {
        Counters::bump(&self.replica.combiner.counters.helped, entries);
    }

    /// Starts the counters of a new replica in this shell from zero, but for the writes
    /// its initial state holds that were applied directly (`direct`: its clone source's).
    pub(crate) fn reset_counters(&self, direct: usize) {
        let c = &self.replica.combiner.counters;
        for counter in [
            &c.batches,
            &c.appended,
            &c.helped,
            &c.freezes,
            &c.frozen_ns,
            &c.alone,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        c.direct.store(direct, Ordering::Relaxed);
    }

    /// Counts one write combined alone and applied directly (log L9).
    #[inline]
    pub(crate) fn count_alone(&self) {
        Counters::bump(&self.replica.combiner.counters.alone, 1);
    }

    /// Counts a batch of `ops` writes applied directly (log L9).
    #[inline]
    pub(crate) fn count_direct(&self, ops: usize) {
        Counters::bump(&self.replica.combiner.counters.direct, ops);
    }

    /// The batch buffer.
    pub(crate) fn batch(&mut self) -> &mut Vec<usize> {
        // SAFETY: the combiner lock is held for this guard's lifetime (P3), and the `&mut
        // self` borrow keeps this the only reference.
        self.replica.batch.with_mut(|b| unsafe { &mut *b })
    }

    /// Whether the shell holds a live replica. Stable while the guard is held: the data
    /// is installed and taken only under the combiner lock (P4).
    pub(crate) fn is_live(&self) -> bool {
        // SAFETY: only combiner-lock holders change `data` (P1, P4); readers only read.
        self.replica.data.with(|d| unsafe { (*d).is_some() })
    }

    /// Runs `f` on the data mutably; `None` if the shell holds no replica.
    ///
    /// # Safety
    ///
    /// The caller holds this replica's write lock (P1).
    #[inline]
    pub(crate) unsafe fn mutate<R>(&self, f: impl FnOnce(&mut D) -> R) -> Option<R> {
        // SAFETY: the combiner lock (this guard) and the write lock make this the only
        // access to the data (P1).
        self.replica
            .data
            .with_mut(|d| unsafe { (*d).as_mut() }.map(f))
    }

    /// Replaces the data (installing a replica into a shell, or taking it out).
    ///
    /// # Safety
    ///
    /// The caller holds this replica's write lock (P1, P4).
    pub(crate) unsafe fn replace(&self, data: Option<D>) -> Option<D> {
        // SAFETY: as in `mutate`.
        self.replica
            .data
            .with_mut(|d| core::mem::replace(unsafe { &mut *d }, data))
    }

    /// Runs `f` on the data, shared, while holding the combiner lock only: the data
    /// cannot change (P1), though readers may read it at the same time (`D: Sync`).
    pub(crate) fn frozen<R>(&self, f: impl FnOnce(&D) -> R) -> Option<R> {
        // SAFETY: mutation needs the combiner lock (P1), which this guard holds; readers
        // only take `&D` too.
        self.replica.data.with(|d| unsafe { (*d).as_ref() }.map(f))
    }
}

/// A replica frozen as a clone source: its combiner lock, held by a reconfiguration.
/// Unfreezes, then unlocks, on drop.
#[derive(Debug)]
pub(crate) struct FreezeGuard<'a, D> {
    combiner: CombinerGuard<'a, D>,
    /// When the freeze began (its length goes to the replica's counters).
    #[cfg(feature = "std")]
    since: std::time::Instant,
}

impl<'a, D> core::ops::Deref for FreezeGuard<'a, D> {
    type Target = CombinerGuard<'a, D>;
    fn deref(&self) -> &Self::Target {
        &self.combiner
    }
}

impl<D> Drop for FreezeGuard<'_, D> {
    fn drop(&mut self) {
        // Still under the combiner lock (released by the field drop after this).
        #[cfg(feature = "std")]
        Counters::bump(
            &self.combiner.replica.combiner.counters.frozen_ns,
            usize::try_from(self.since.elapsed().as_nanos()).unwrap_or(usize::MAX),
        );
        // Relaxed: a hint only; correctness rests on the combiner lock, which the field
        // drop releases right after.
        self.combiner
            .replica
            .combiner
            .frozen
            .store(false, Ordering::Relaxed);
    }
}

impl<D> Drop for CombinerGuard<'_, D> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire CAS in `try_combine`.
        self.replica.combiner.locked.store(false, Ordering::Release);
    }
}

#[cfg(all(test, not(ldnr_loom)))]
mod tests {
    use super::context::Context;
    use super::*;

    #[test]
    fn the_wait_for_the_combiner_lock_gives_up_and_clears_its_flag() {
        let replica = Replica::<u64>::shell(2);
        let waiter = || replica.combiner.waiter.load(Ordering::Relaxed);
        // Free: taken at once.
        let held = replica.wait_to_combine().expect("a free lock is taken");
        assert!(!waiter());
        // Held throughout (a batch, a clone, a preempted holder): it gives up.
        assert!(replica.wait_to_combine().is_none());
        assert!(!waiter(), "the waiter's flag is cleared when it gives up");
        // Another thread waits already: this one does not, and leaves that one's flag.
        replica.combiner.waiter.store(true, Ordering::Relaxed);
        assert!(replica.wait_to_combine().is_none());
        assert!(waiter(), "the other waiter's flag stays");
        replica.combiner.waiter.store(false, Ordering::Relaxed);
        drop(held);

        // Free, but a reconfiguration wants it (P5): it steps aside.
        replica.combiner.wanted.store(true, Ordering::Relaxed);
        assert!(replica.wait_to_combine().is_none());
        assert!(!waiter());
        replica.combiner.wanted.store(false, Ordering::Relaxed);
        // Free, but an operation waits on the pending stack: the caller publishes too,
        // and whoever takes the lock combines both.
        let ctx = Context::<u64, u64>::new();
        // SAFETY: single-threaded test; the context is EMPTY.
        unsafe { ctx.put_op(7) };
        ctx.publish(0, &replica.pending);
        assert!(replica.wait_to_combine().is_none());
        assert!(!waiter());
        let mut taken = 0;
        replica.pending.take(&[&ctx], |_| taken += 1);
        assert_eq!(taken, 1);
        assert!(replica.wait_to_combine().is_some(), "free again, taken");
    }
}
