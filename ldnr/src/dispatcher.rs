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
//! - **D1** A thread index belongs to at most one registration at a time. Indices are
//!   handed out below the thread limit, the lowest given-back one first (deregistration,
//!   thread exit), so they stay below the most threads registered at once; `registered`
//!   is 1 + the highest index registered now: raised (Release) by the registering thread
//!   before its first read, lowered (Release) only after the thread at the top left its
//!   reader set, so a writer that loads it (Acquire) and skips the indices above either
//!   synchronizes with that departure or sees the thread's bit (rwlock R2).
//!   Each give-back bumps the context's generation, which tokens carry: a stale token is
//!   refused, never taken for its index's next owner. Generations never wrap: an index
//!   given back 2^48 times is retired ([`RETIRED`]) and never handed out again.
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
use crate::error::Error;
use crate::replica::context::Context;
#[cfg(feature = "std")]
use crate::sync::AtomicU64;
use crate::sync::{
    fence, next_instance_id, AtomicBool, AtomicUsize, Backoff, CachePadded, Ordering, UnsafeCell,
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
/// ```compile_fail,E0277
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
/// let tkn = nr.register().unwrap();
/// // error[E0277]: `*const ()` cannot be sent between threads safely
/// std::thread::spawn(move || drop(tkn));
/// ```
///
/// Each token remembers the instance that issued it. Passing it to another instance is
/// a programmer error and panics (see [`NodeReplicated::execute`](crate::NodeReplicated::execute)).
#[derive(Clone, Copy)]
pub struct ThreadToken {
    /// The issuing instance's number (never 0).
    instance: core::num::NonZeroUsize,
    /// The thread index (the low [`TID_BITS`] bits) and the registration's generation
    /// (the rest, 48 bits, on every target). Generations never
    /// wrap: an index whose generations ran out is retired ([`RETIRED`]).
    slot: u64,
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Bits of a token's `slot` that hold the thread index.
const TID_BITS: u32 = 16;
const _: () = assert!(MAX_THREADS <= 1 << TID_BITS);

/// The last generation a registration can have: the largest a token holds (48 bits).
/// Generations are 64-bit counters on every target, so that a 32-bit target retires an
/// index no sooner than a 64-bit one (a 32-bit counter would retire one after about 50
/// minutes of registering and deregistering it on i686).
const LAST_GENERATION: u64 = u64::MAX >> TID_BITS;

/// The generation of an index retired for good, once its generations ran out (after
/// 2^48 registrations of the index, about six years of nothing but registering and
/// deregistering it): past a token's 48 bits, so no token carries it, and the index is
/// never handed out again. Counting on instead would wrap, and a token kept from 2^48
/// registrations ago would pass for the index's next owner: two threads on one context.
pub(crate) const RETIRED: u64 = u64::MAX;

/// The generation after `generation`, [`RETIRED`] after the last (and after `RETIRED`).
/// Generations stay within the bits a token has for them, so that
/// [`ThreadToken::is_generation`] compares without a mask, and never wrap.
#[inline]
pub(crate) fn next_generation(generation: u64) -> u64 {
    if generation >= LAST_GENERATION {
        RETIRED
    } else {
        generation + 1
    }
}

impl core::fmt::Debug for ThreadToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ThreadToken")
            .field("thread", &self.tid())
            .field("instance", &self.instance)
            .finish()
    }
}

impl ThreadToken {
    /// Two words with a niche (the instance is never 0), so that an `Option` or a small
    /// result of one travels in registers and is copied whole.
    fn new(tid: usize, generation: u64, instance: usize) -> Self {
        debug_assert!(tid < MAX_THREADS);
        debug_assert!(generation <= LAST_GENERATION);
        Self {
            instance: core::num::NonZeroUsize::new(instance).expect("instance numbers start at 1"),
            slot: generation << TID_BITS | tid as u64,
            _not_send: core::marker::PhantomData,
        }
    }

    /// The token's two words, and back (for a thread-local cache of it).
    #[cfg(feature = "std")]
    #[inline(always)]
    pub(crate) fn parts(self) -> (core::num::NonZeroUsize, u64) {
        (self.instance, self.slot)
    }

    #[cfg(feature = "std")]
    #[inline(always)]
    pub(crate) fn from_parts((instance, slot): (core::num::NonZeroUsize, u64)) -> Self {
        Self {
            instance,
            slot,
            _not_send: core::marker::PhantomData,
        }
    }

    #[inline(always)]
    pub(crate) fn tid(self) -> usize {
        (self.slot & ((1 << TID_BITS) - 1)) as usize
    }

    /// Whether the token was issued for a context now in `generation` (at most
    /// `LAST_GENERATION`, which a token holds whole, or [`RETIRED`], which no token holds:
    /// [`next_generation`], so the compare needs no mask).
    #[inline(always)]
    pub(crate) fn is_generation(self, generation: u64) -> bool {
        debug_assert!(generation <= LAST_GENERATION || generation == RETIRED);
        self.slot >> TID_BITS == generation
    }

    #[inline(always)]
    pub(crate) fn instance(self) -> usize {
        self.instance.get()
    }

    /// The thread's index in its instance (0 for the first registered thread).
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
    /// assert_eq!(nr.register().unwrap().index(), 0);
    /// assert_eq!(nr.register().unwrap().index(), 1);
    /// ```
    pub fn index(self) -> usize {
        self.tid()
    }
}

/// `Context::replica` of a thread index that is not registered now.
pub(crate) const FREE: usize = usize::MAX;

/// A registered thread asks the affinity manager on which node it runs once every this
/// many of its operations (when the manager knows more than one node), and is matched
/// again if it moved. A power of two near 1,000: the call (a `getcpu` on Linux, tens of
/// nanoseconds) then costs well under 0.1 ns per operation, and a moved thread reaches
/// its new node's replica within about a thousand operations.
pub(crate) const MIGRATION_CHECK_EVERY: usize = 1024;

#[cold]
#[inline(never)]
#[track_caller]
fn other_instance() -> ! {
    panic!("ldnr: a ThreadToken of another NodeReplicated instance was used")
}

#[cold]
#[inline(never)]
#[track_caller]
fn stale_token() -> ! {
    panic!(
        "ldnr: a ThreadToken that was deregistered was used (its thread index may belong \
         to another thread now); register again"
    )
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
    /// Whether threads joining a reader set issue the heavy barrier, so that a writer
    /// alone in its replica's set writes without a fence (rwlock R5). Fixed at build.
    asymmetric: bool,
    contexts: Box<[CachePadded<Context<W, R>>]>,
    /// 1 + the highest thread index registered now (D1).
    registered: CachePadded<AtomicUsize>,
    /// Indices given back, highest first, to be handed out again lowest first, and the
    /// next never-used index (D1). Admin lock only.
    free: UnsafeCell<(Vec<usize>, usize)>,
    /// Threads that exited while holding a token of `thread_token`, to be given back.
    #[cfg(feature = "std")]
    pub(crate) exits: alloc::sync::Arc<Exits>,
    admin: AtomicBool,
    reconfig: AtomicBool,
    /// Odd while the admin lock holder changes the matching (D3).
    epoch: AtomicUsize,
    /// Operations of registrations given back (statistics). Admin lock only.
    pub(crate) retired_ops: AtomicUsize,
    /// Threads a migration check found on another node (statistics). Admin lock only.
    pub(crate) migrations: AtomicUsize,
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
    /// A dispatcher for at most `limit` threads, with a new instance number;
    /// [`Error::InstancesExhausted`] if none is left.
    #[cfg(test)]
    pub(crate) fn new(limit: usize) -> Result<Self, Error> {
        Self::with_barrier(limit, true)
    }

    /// [`new`](Self::new), with the lone writer's asymmetric barrier (rwlock R5) if
    /// `asymmetric` and the process has it.
    pub(crate) fn with_barrier(limit: usize, asymmetric: bool) -> Result<Self, Error> {
        let instance = next_instance_id().ok_or(Error::InstancesExhausted)?;
        let contexts: Vec<_> = (0..limit).map(|_| CachePadded(Context::new())).collect();
        Ok(Self {
            instance,
            asymmetric: asymmetric && crate::sync::asymmetric_available(),
            contexts: contexts.into_boxed_slice(),
            registered: CachePadded(AtomicUsize::new(0)),
            free: UnsafeCell::new((Vec::new(), 0)),
            #[cfg(feature = "std")]
            exits: alloc::sync::Arc::new(Exits::new()),
            admin: AtomicBool::new(false),
            reconfig: AtomicBool::new(false),
            epoch: AtomicUsize::new(0),
            retired_ops: AtomicUsize::new(0),
            migrations: AtomicUsize::new(0),
        })
    }

    pub(crate) fn limit(&self) -> usize {
        self.contexts.len()
    }

    /// The instance's process-wide unique number.
    #[inline]
    pub(crate) fn instance(&self) -> usize {
        self.instance
    }

    /// Whether joins issue the heavy barrier and lone writers skip the fence (rwlock R5).
    #[inline(always)]
    pub(crate) fn asymmetric(&self) -> bool {
        self.asymmetric
    }

    /// The thread index of `tkn`.
    ///
    /// # Panics
    ///
    /// If `tkn` was issued by another instance, or was deregistered (programmer errors).
    #[inline]
    #[track_caller]
    pub(crate) fn check(&self, tkn: ThreadToken) -> usize {
        self.check_context(tkn).0
    }

    /// The thread index of `tkn` and its context, looked up once for an operation.
    ///
    /// # Panics
    ///
    /// As [`check`](Self::check).
    #[inline]
    #[track_caller]
    pub(crate) fn check_context(&self, tkn: ThreadToken) -> (usize, &Context<W, R>) {
        match self.validate(tkn) {
            Ok(found) => found,
            Err(_) => stale_token(),
        }
    }

    /// The thread index of `tkn` and its context, or [`Error::StaleToken`] if it was
    /// deregistered.
    ///
    /// # Panics
    ///
    /// If `tkn` was issued by another instance.
    #[inline]
    #[track_caller]
    pub(crate) fn validate(&self, tkn: ThreadToken) -> Result<(usize, &Context<W, R>), Error> {
        if tkn.instance() != self.instance {
            other_instance();
        }
        // Relaxed: only the token's own thread (tokens are `!Send`) can hold it, and the
        // give-back that bumps the generation is its own deregistration, or, after it
        // exited, nobody's business.
        let tid = tkn.tid();
        debug_assert!(tid < self.contexts.len());
        // SAFETY: the token was issued by this instance (instance numbers are never
        // reused, `next_instance_id`), which issues tokens (`token`) only for indices of
        // its contexts, allocated once for its lifetime. The bounds check was a load, a
        // compare and a branch on every operation.
        let ctx = unsafe { &**self.contexts.get_unchecked(tid) };
        if !tkn.is_generation(ctx.generation.load(Ordering::Relaxed)) {
            return Err(Error::StaleToken);
        }
        Ok((tid, ctx))
    }

    /// The token for thread `tid`'s current registration.
    pub(crate) fn token(&self, tid: usize) -> ThreadToken {
        ThreadToken::new(
            tid,
            self.contexts[tid].generation.load(Ordering::Relaxed),
            self.instance,
        )
    }

    pub(crate) fn contexts(&self) -> &[CachePadded<Context<W, R>>] {
        &self.contexts
    }

    pub(crate) fn context(&self, tid: usize) -> &Context<W, R> {
        &self.contexts[tid]
    }

    /// 1 + the highest thread index registered now: no thread at or above it can read
    /// a replica (D1, rwlock R2).
    #[inline]
    pub(crate) fn registered(&self) -> usize {
        // Acquire: pairs with the Release stores in `next_thread` and `release` (D1).
        self.registered.load(Ordering::Acquire)
    }

    /// The contexts of the registered threads, with their indices (the admin lock keeps
    /// the set still).
    pub(crate) fn registrations<'a>(
        &'a self,
        _admin: &AdminGuard<'a>,
    ) -> impl Iterator<Item = (usize, &'a Context<W, R>)> {
        self.contexts[..self.registered()]
            .iter()
            .enumerate()
            .filter(|(_, c)| c.replica.load(Ordering::Relaxed) != FREE)
            .map(|(tid, c)| (tid, &**c))
    }

    /// The admin lock: serializes changes to the matching (registration, and the short
    /// matching phases of reconfigurations) (D2).
    pub(crate) fn admin(&self) -> AdminGuard<'_> {
        lock(&self.admin)
    }

    /// The admin lock if it is free now (for work that may be skipped).
    pub(crate) fn try_admin(&self) -> Option<AdminGuard<'_>> {
        // Acquire: as in `lock`.
        self.admin
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| AdminGuard(&self.admin))
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

    /// Hands out a thread index matched to replica `slot` (a given-back one first), or
    /// `None` at the limit. The caller holds the admin lock, so indices are handed out
    /// one at a time (D1).
    pub(crate) fn next_thread(
        &self,
        _admin: &AdminGuard<'_>,
        slot: usize,
        node: NodeId,
    ) -> Option<usize> {
        let limit = self.contexts.len();
        // SAFETY: the admin lock is held (the caller's guard).
        let tid = self.free.with_mut(|f| unsafe {
            let (given_back, fresh) = &mut *f;
            match given_back.pop() {
                Some(tid) => Some(tid),
                None if *fresh < limit => {
                    *fresh += 1;
                    Some(*fresh - 1)
                }
                None => None,
            }
        })?;
        let ctx = &self.contexts[tid];
        ctx.node.store(node.0, Ordering::Relaxed);
        ctx.parked.store(false, Ordering::Relaxed);
        // Release: pairs with the Acquire loads of the owner (the new thread, which uses
        // the context only after this returns) and of other admin paths.
        ctx.replica.store(slot, Ordering::Release);
        // The context has no owner yet; the admin lock orders this before the new
        // owner's first operation.
        ctx.restart_count(MIGRATION_CHECK_EVERY);
        if tid >= self.registered.load(Ordering::Relaxed) {
            // Release: pairs with the Acquire in `registered`. The new thread (the caller)
            // inserts itself in a reader set only after this, before its fence F1, so a
            // writer whose F2 follows that fence sees this (R2).
            self.registered.store(tid + 1, Ordering::Release);
        }
        Some(tid)
    }

    /// Gives thread index `tid` back (deregistration, thread exit): a new generation, so
    /// that its tokens are refused, and the index is handed out again (D1), unless its
    /// generations ran out ([`RETIRED`]: the index is never used again). The caller
    /// holds the admin lock and has taken the thread out of its replica.
    pub(crate) fn release(&self, _admin: &AdminGuard<'_>, tid: usize) {
        let ctx = &self.contexts[tid];
        // The owner is the caller or gone: its operation count moves to the total.
        bump(&self.retired_ops, ctx.ops.load(Ordering::Relaxed));
        ctx.ops.store(0, Ordering::Relaxed);
        let generation = next_generation(ctx.generation.load(Ordering::Relaxed));
        ctx.generation.store(generation, Ordering::Relaxed);
        ctx.replica.store(FREE, Ordering::Relaxed);
        if generation != RETIRED {
            // SAFETY: the admin lock is held (the caller's guard).
            self.free.with_mut(|f| unsafe {
                let given_back = &mut (*f).0;
                // Highest first, so that `pop` hands out the lowest (D1).
                let at = given_back.partition_point(|&t| t > tid);
                given_back.insert(at, tid);
            });
        }
        let top = self.registered.load(Ordering::Relaxed);
        if tid + 1 == top {
            // The thread at the top left (its reader sets too): lower the mark to the
            // next registered index below. Release: a writer that reads the lower mark
            // and so skips this index synchronizes with the departure (D1, R2).
            let below = self.contexts[..tid]
                .iter()
                .rposition(|c| c.replica.load(Ordering::Relaxed) != FREE)
                .map_or(0, |t| t + 1);
            self.registered.store(below, Ordering::Release);
        }
    }
}

/// Threads that exited holding a token of `thread_token`: their thread-local destructors
/// queue `(index, generation)` here, and the instance gives the indices back on its next
/// admin path (registration, deregistration, a snapshot, a reconfiguration). Shared
/// (`Arc`) with the thread-locals, so that a thread that outlives the instance finds it
/// closed and does nothing.
#[cfg(feature = "std")]
#[derive(Debug)]
pub(crate) struct Exits {
    alive: AtomicBool,
    /// Whether `queue` may be non-empty: a hint combiners read once per batch.
    pending: AtomicBool,
    lock: AtomicBool,
    queue: UnsafeCell<Vec<(usize, u64)>>,
}

// SAFETY: `queue` is accessed only under `lock`.
#[cfg(feature = "std")]
unsafe impl Send for Exits {}
// SAFETY: as above.
#[cfg(feature = "std")]
unsafe impl Sync for Exits {}

#[cfg(feature = "std")]
impl Exits {
    fn new() -> Self {
        Self {
            alive: AtomicBool::new(true),
            pending: AtomicBool::new(false),
            lock: AtomicBool::new(false),
            queue: UnsafeCell::new(Vec::new()),
        }
    }

    /// The exiting thread `tid` retires its registration `generation` and queues it to
    /// be given back, unless the instance is gone or the registration was already given
    /// back (deregistered by hand; the index may be another thread's now). `counter` is
    /// the context's generation counter.
    ///
    /// The generation is bumped by the owner itself, before any other thread can give
    /// the index back: a copy of the token that a later thread-local destructor of the
    /// same thread still uses is then refused as stale, instead of sharing a context
    /// with the index's next owner.
    pub(crate) fn retire(&self, tid: usize, generation: u64, counter: *const AtomicU64) {
        let _lock = lock(&self.lock);
        if self.alive.load(Ordering::Relaxed) {
            // SAFETY: `alive` is read under `lock`, and the instance clears it under the
            // same lock (`close`, the first thing its dispatcher's drop does) before its
            // contexts are freed; so the context `counter` points into is still there.
            let counter = unsafe { &*counter };
            if counter.load(Ordering::Relaxed) == generation {
                let retired = next_generation(generation);
                // Release: a give-back that reads the queued generation (under `lock`)
                // happens after; Relaxed would do for this thread's own later checks.
                counter.store(retired, Ordering::Release);
                // SAFETY: under `lock`.
                self.queue
                    .with_mut(|q| unsafe { (*q).push((tid, retired)) });
                self.pending.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Whether exits may be queued (a hint: the queue is read under its lock).
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Takes the queued exits.
    pub(crate) fn take(&self) -> Vec<(usize, u64)> {
        let _lock = lock(&self.lock);
        self.pending.store(false, Ordering::Relaxed);
        // SAFETY: under `lock`.
        self.queue.with_mut(|q| core::mem::take(unsafe { &mut *q }))
    }

    /// Whether the instance is still there.
    pub(crate) fn alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// The instance is being dropped: later exits are ignored.
    fn close(&self) {
        let _lock = lock(&self.lock);
        self.alive.store(false, Ordering::Relaxed);
        // SAFETY: under `lock`.
        self.queue.with_mut(|q| unsafe { (*q).clear() });
    }
}

#[cfg(feature = "std")]
impl<W, R> Drop for Dispatcher<W, R> {
    fn drop(&mut self) {
        self.exits.close();
    }
}

/// Adds `by` to a counter that only the admin lock holder writes.
pub(crate) fn bump(counter: &AtomicUsize, by: usize) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
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
        let d: Dispatcher<u64, u64> = Dispatcher::new(2).unwrap();
        let admin = d.admin();
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), Some(0));
        assert_eq!(d.next_thread(&admin, 0, NodeId(1)), Some(1));
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), None);
        // A given-back index is handed out again, with a new generation.
        let before = d.token(0);
        d.release(&admin, 0);
        assert_eq!(d.validate(before).err(), Some(Error::StaleToken));
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), Some(0));
        assert_eq!(d.validate(d.token(0)).map(|(tid, _)| tid), Ok(0));
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), None);
        assert_eq!(d.registered(), 2);
    }

    #[test]
    fn generations_never_wrap_an_index_whose_generations_ran_out_is_retired() {
        let last = LAST_GENERATION;
        assert_eq!(next_generation(0), 1);
        assert_eq!(next_generation(last - 1), last);
        assert_eq!(next_generation(last), RETIRED, "no wrap to 0");
        assert_eq!(next_generation(RETIRED), RETIRED);
        for generation in [0, 1, last - 1, last] {
            let tkn = ThreadToken::new(MAX_THREADS - 1, generation, 1);
            assert_eq!(tkn.tid(), MAX_THREADS - 1);
            assert!(tkn.is_generation(generation), "{generation}");
            assert!(
                !tkn.is_generation(next_generation(generation)),
                "{generation}"
            );
            assert!(!tkn.is_generation(RETIRED), "{generation}");
        }
        // Index 0 at its last generation: given back, it refuses every token it ever
        // issued (the first one included) and is never handed out again.
        let d: Dispatcher<u64, u64> = Dispatcher::new(2).unwrap();
        let admin = d.admin();
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), Some(0));
        let first = d.token(0);
        d.release(&admin, 0);
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), Some(0));
        d.contexts[0].generation.store(last, Ordering::Relaxed);
        let kept = d.token(0);
        assert!(d.validate(kept).is_ok());
        d.release(&admin, 0);
        assert_eq!(d.contexts[0].generation.load(Ordering::Relaxed), RETIRED);
        assert_eq!(d.validate(kept).err(), Some(Error::StaleToken));
        assert_eq!(d.validate(first).err(), Some(Error::StaleToken));
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), Some(1), "0 is retired");
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), None, "and stays so");
        assert_eq!(d.validate(kept).err(), Some(Error::StaleToken));
        assert_eq!(d.validate(first).err(), Some(Error::StaleToken));
        d.release(&admin, 1);
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), Some(1));
    }

    #[test]
    fn the_lowest_index_is_reused_and_the_mark_follows_the_top() {
        let d: Dispatcher<u64, u64> = Dispatcher::new(4).unwrap();
        let admin = d.admin();
        for t in 0..4 {
            assert_eq!(d.next_thread(&admin, 0, NodeId(0)), Some(t));
        }
        d.release(&admin, 1);
        assert_eq!(d.registered(), 4, "index 3 is still registered");
        d.release(&admin, 3);
        assert_eq!(d.registered(), 3, "down to the next registered index");
        d.release(&admin, 2);
        assert_eq!(d.registered(), 1, "past the given-back 1 as well");
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), Some(1), "lowest first");
        assert_eq!(d.registered(), 2);
        assert_eq!(d.next_thread(&admin, 0, NodeId(0)), Some(2));
        assert_eq!(
            d.registrations(&admin).map(|(t, _)| t).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }
}
