//! The public handle: [`NodeReplicated`], its [`Builder`] and [`ThreadToken`].
//!
//! This module ties the pieces together: the flat-combining write path, the read path
//! with the `ctail` rule, and the wait for log space that helps lagging replicas
//! (cross-combining) instead of waiting for them.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;

use crate::affinity::{self, AffinityGuard, AffinityManager, NoAffinity, NodeId};
use crate::context::{into_response, ok, outcome, Context, Outcome, DONE, REROUTE};
use crate::dispatch::Dispatch;
use crate::dispatcher::{self, Dispatcher, DEFAULT_MAX_THREADS, MAX_THREADS};
use crate::error::Error;
use crate::log::{Log, DEFAULT_LOG_CAPACITY, MAX_LOG_CAPACITY, MAX_REPLICAS, MIN_LOG_CAPACITY};
use crate::replica::{CombinerGuard, Replica, ReplicaId, ReplicaInfo};
use crate::sync::{
    next_instance_id, AtomicBool, AtomicUsize, Backoff, CachePadded, Callbacks, Ordering,
};

type Ctx<D> = Context<<D as Dispatch>::WriteOperation, <D as Dispatch>::Response>;

/// Proof that the calling thread registered with one [`NodeReplicated`] instance.
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
/// a programmer error and panics (see [`NodeReplicated::execute`]).
#[derive(Clone, Copy)]
pub struct ThreadToken {
    tid: usize,
    instance: usize,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for ThreadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// Configures and builds a [`NodeReplicated`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use ldnr::{NoAffinity, NodeId, NodeReplicated};
/// # #[derive(Clone, Default)] struct Nop;
/// # impl ldnr::Dispatch for Nop {
/// #     type ReadOperation = (); type WriteOperation = (); type Response = ();
/// #     fn dispatch(&self, _: ()) {} fn dispatch_mut(&mut self, _: ()) {}
/// # }
/// let nr = NodeReplicated::builder(Nop)
///     .replicas(&[NodeId(0), NodeId(0)]) // two replicas; a one-node machine may share a node
///     .log_capacity(1 << 12)
///     .max_threads(64)
///     .affinity(Arc::new(NoAffinity))
///     .build()?;
/// assert_eq!(nr.replicas().len(), 2);
/// # Ok::<(), ldnr::Error>(())
/// ```
pub struct Builder<D> {
    initial: D,
    nodes: Option<Vec<NodeId>>,
    log_capacity: usize,
    max_threads: usize,
    affinity: Arc<dyn AffinityManager>,
    /// The log's first index: 0, or just below the wrap point in tests (log L8).
    log_start: usize,
}

impl<D> fmt::Debug for Builder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("nodes", &self.nodes)
            .field("log_capacity", &self.log_capacity)
            .field("max_threads", &self.max_threads)
            .field("affinity", &self.affinity)
            .finish_non_exhaustive()
    }
}

impl<D> Builder<D>
where
    D: Dispatch + Clone + Send + Sync,
{
    /// The nodes of the initial replicas, one replica per entry (a node may repeat).
    /// Default: one replica on the node of the thread that calls `build`.
    pub fn replicas(mut self, nodes: &[NodeId]) -> Self {
        self.nodes = Some(nodes.to_vec());
        self
    }

    /// The log capacity in entries: a power of two from [`MIN_LOG_CAPACITY`] to
    /// [`MAX_LOG_CAPACITY`]. Default: [`DEFAULT_LOG_CAPACITY`]. One batch takes at most
    /// half the log; a larger log lets replicas drift further apart before one of them
    /// has to help the slowest.
    pub fn log_capacity(mut self, entries: usize) -> Self {
        self.log_capacity = entries;
        self
    }

    /// The most threads that may [`register`](NodeReplicated::register), from 1 to
    /// [`MAX_THREADS`]. Default: [`DEFAULT_MAX_THREADS`]. Each costs one cache-line-sized
    /// context plus room for one operation and one response, allocated once.
    pub fn max_threads(mut self, threads: usize) -> Self {
        self.max_threads = threads;
        self
    }

    /// The affinity manager. Default: [`NoAffinity`] (one node).
    pub fn affinity(mut self, manager: Arc<dyn AffinityManager>) -> Self {
        self.affinity = manager;
        self
    }

    /// Starts the log at index `start` instead of 0 (tests cross the wrap point, log L8).
    #[cfg(test)]
    #[cfg_attr(any(not(feature = "std"), ldnr_loom), allow(dead_code))]
    pub(crate) fn log_start(mut self, start: usize) -> Self {
        self.log_start = start;
        self
    }

    /// Builds the replicas: each is a clone of the initial value made while the calling
    /// thread's memory comes from the replica's node.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLogCapacity`], [`Error::InvalidThreadLimit`], [`Error::NoReplicas`],
    /// [`Error::TooManyReplicas`], [`Error::UnknownNode`] for a node the affinity manager
    /// does not list, and [`Error::Affinity`] if setting a memory policy failed.
    pub fn build(self) -> Result<NodeReplicated<D>, Error> {
        let cap = self.log_capacity;
        if !cap.is_power_of_two() || !(MIN_LOG_CAPACITY..=MAX_LOG_CAPACITY).contains(&cap) {
            return Err(Error::InvalidLogCapacity {
                requested: cap,
                min: MIN_LOG_CAPACITY,
                max: MAX_LOG_CAPACITY,
            });
        }
        if !(1..=MAX_THREADS).contains(&self.max_threads) {
            return Err(Error::InvalidThreadLimit {
                requested: self.max_threads,
            });
        }
        let affinity = self.affinity;
        let nodes = match self.nodes {
            Some(nodes) => nodes,
            None => alloc::vec![affinity.current_node()],
        };
        if nodes.is_empty() {
            return Err(Error::NoReplicas);
        }
        if nodes.len() > MAX_REPLICAS {
            return Err(Error::TooManyReplicas {
                limit: MAX_REPLICAS,
            });
        }
        let known = affinity.nodes();
        if let Some(&bad) = nodes.iter().find(|n| !known.contains(n)) {
            return Err(Error::UnknownNode(bad));
        }

        let nr = NodeReplicated {
            instance: next_instance_id(),
            log: Log::starting_at(cap, self.log_start),
            replicas: (0..MAX_REPLICAS).map(|_| Replica::shell()).collect(),
            dispatcher: Dispatcher::new(self.max_threads),
            steer_memory: known.len() > 1,
            affinity,
            next_id: AtomicUsize::new(nodes.len()),
            live: AtomicUsize::new(0),
            stand_in: AtomicUsize::new(NO_STAND_IN),
            poisoned: AtomicBool::new(false),
        };
        for (slot, &node) in nodes.iter().enumerate() {
            let data = affinity::on_node(&*nr.affinity, node, || self.initial.clone())?;
            nr.install(slot, node, data, nr.log.origin());
            nr.replicas[slot].set_identity(Some(ReplicaId(slot)));
        }
        Ok(nr)
    }
}

/// A linearizable, concurrent, NUMA-replicated version of a sequential structure `D`.
///
/// See the [crate documentation](crate) for how it works and a full example.
///
/// # Examples
///
/// ```
/// use ldnr::{Dispatch, NodeReplicated};
///
/// #[derive(Clone, Default)]
/// struct Counter(u64);
/// impl Dispatch for Counter {
///     type ReadOperation = ();
///     type WriteOperation = u64;
///     type Response = u64;
///     fn dispatch(&self, _: ()) -> u64 { self.0 }
///     fn dispatch_mut(&mut self, by: u64) -> u64 { self.0 += by; self.0 }
/// }
///
/// let nr = NodeReplicated::builder(Counter::default()).build()?;
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             let tkn = nr.register().unwrap();
///             for _ in 0..100 {
///                 nr.execute_mut(1, tkn);
///             }
///         });
///     }
/// });
/// let tkn = nr.register()?;
/// assert_eq!(nr.execute((), tkn), 400);
/// # Ok::<(), ldnr::Error>(())
/// ```
pub struct NodeReplicated<D: Dispatch> {
    instance: usize,
    pub(crate) log: Log<D::WriteOperation>,
    /// Replica shells; a shell's index is also its position slot in the log.
    pub(crate) replicas: Box<[Replica<D>]>,
    pub(crate) dispatcher: Dispatcher<D::WriteOperation, D::Response>,
    pub(crate) affinity: Arc<dyn AffinityManager>,
    /// The next replica id to hand out (ids are never reused).
    pub(crate) next_id: AtomicUsize,
    /// How many replicas are live. Changed only by reconfigurations, while they hold the
    /// combiner lock of a replica that keeps it from dropping to or rising from one
    /// unseen (log L6).
    pub(crate) live: AtomicUsize,
    /// Whether the affinity manager knows more than one node; with one node, all memory
    /// comes from it anyway, and the combiner skips the policy calls around each batch.
    steer_memory: bool,
    /// The slot that serves the threads of the replica frozen as a clone source (replica
    /// P6), or [`NO_STAND_IN`]. Chosen by `add_replica` before it freezes the source (the
    /// only place that asks the affinity manager for distances while operations run), and
    /// read only by threads that saw the source frozen (Acquire/Release on `frozen`). A
    /// hint: any slot is safe to try, since correctness rests on the locks.
    pub(crate) stand_in: AtomicUsize,
    /// Set when a panic unwound out of `apply` (possible only without `std`, or from the
    /// affinity manager): a replica may be half-way through a batch, so no replica may
    /// apply the log again. Every later operation panics with [`POISONED`].
    pub(crate) poisoned: AtomicBool,
}

/// No stand-in: the frozen source is the only live replica, so its threads wait.
pub(crate) const NO_STAND_IN: usize = usize::MAX;

/// The message of the panic (and of [`Error::Poisoned`]) on a poisoned instance.
pub(crate) const POISONED: &str = "ldnr: this instance is poisoned: a panic escaped while a \
    replica applied the log (without the `std` feature, or from the affinity manager), so \
    replicas may have diverged";

#[cold]
#[inline(never)]
fn reentered() -> ! {
    panic!(
        "ldnr: re-entrant call: `execute` or `execute_mut` was called from inside \
         `dispatch`/`dispatch_mut` of the same instance with the calling thread's token"
    )
}

#[cold]
#[inline(never)]
fn poisoned() -> ! {
    panic!("{}", POISONED)
}

/// While a combiner appends its batch: if a panic unwinds (the instance is then
/// poisoned, by `apply` or `check_poison`), the operations of `batch[next..]`, claimed but
/// not yet in the log, are marked `PENDING` again, so that dropping the instance drops
/// them (context `Drop`); no combiner takes them any more, and their owners, waiting,
/// see the poison.
struct Unappended<'a, W, R> {
    contexts: &'a [CachePadded<Context<W, R>>],
    batch: &'a [usize],
    next: usize,
}

impl<W, R> Drop for Unappended<'_, W, R> {
    fn drop(&mut self) {
        for &tid in &self.batch[self.next..] {
            self.contexts[tid].abandon();
        }
    }
}

/// Marks the instance poisoned when dropped without [`disarm`](Self::disarm), that is
/// when a panic unwinds through the code it guards.
struct PoisonOnUnwind<'a>(&'a AtomicBool);

impl PoisonOnUnwind<'_> {
    fn disarm(self) {
        core::mem::forget(self);
    }
}

impl Drop for PoisonOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

// SAFETY: `NodeReplicated` owns the replicas (`D`), the log (`WriteOperation`) and the
// response slots (`Response`), and hands them between threads: `D: Send` because combiners
// on any thread mutate a replica; `WriteOperation: Send` (the trait bound) because
// operations move into the log and are cloned and dropped by other threads, one at a time
// (log L4); `Response: Send` (the trait bound) because responses are produced by the
// combiner and taken by the owner. Nothing here is tied to the creating thread.
unsafe impl<D: Dispatch + Send + Sync> Send for NodeReplicated<D> {}
// SAFETY: shared access is what the protocol is for: `D: Sync` because readers on many
// threads share `&D` under the read lock (replica P2) while `D: Send` covers the combiner's
// `&mut D` (P1); operations and responses are handed over through contexts with one owner
// at a time (context C1) and through the log's clone lock, so they need only `Send`.
unsafe impl<D: Dispatch + Send + Sync> Sync for NodeReplicated<D> {}

impl<D: Dispatch> fmt::Debug for NodeReplicated<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeReplicated")
            .field("instance", &self.instance)
            .field("log", &self.log)
            .field("dispatcher", &self.dispatcher)
            .finish_non_exhaustive()
    }
}

impl<D> NodeReplicated<D>
where
    D: Dispatch + Clone + Send + Sync,
{
    /// Starts building an instance whose replicas begin as clones of `initial`.
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
    /// assert_eq!(nr.replicas().len(), 1);
    /// ```
    pub fn builder(initial: D) -> Builder<D> {
        Builder {
            initial,
            nodes: None,
            log_capacity: DEFAULT_LOG_CAPACITY,
            max_threads: DEFAULT_MAX_THREADS,
            affinity: Arc::new(NoAffinity),
            log_start: 0,
        }
    }

    /// Registers the calling thread and matches it to a replica (see the
    /// [dispatcher rules](crate#the-dispatcher)).
    ///
    /// A thread may register more than once; each token is a separate participant with
    /// its own operation slot, and counts against the thread limit.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyThreads`] past the thread limit ([`Builder::max_threads`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default)] struct Nop;
    /// # impl ldnr::Dispatch for Nop {
    /// #     type ReadOperation = (); type WriteOperation = (); type Response = ();
    /// #     fn dispatch(&self, _: ()) {} fn dispatch_mut(&mut self, _: ()) {}
    /// # }
    /// let nr = ldnr::NodeReplicated::builder(Nop).max_threads(1).build().unwrap();
    /// let _tkn = nr.register().unwrap();
    /// assert!(matches!(nr.register(), Err(ldnr::Error::TooManyThreads { limit: 1 })));
    /// ```
    pub fn register(&self) -> Result<ThreadToken, Error> {
        self.check_callbacks();
        // The affinity manager runs under the mark, so that it cannot call back in while
        // the admin lock is held.
        let _inside = Callbacks::enter(self.instance);
        let node = self.affinity.current_node();
        let admin = self.dispatcher.admin();
        let _change = self.dispatcher.changing(&admin);
        let slot = self
            .match_thread(node, None)
            .expect("an instance always has a live replica");
        let tid = self
            .dispatcher
            .next_thread(&admin, slot, node)
            .ok_or(Error::TooManyThreads {
                limit: self.dispatcher.limit(),
            })?;
        self.replicas[slot].threads.fetch_add(1, Ordering::Relaxed);
        Ok(ThreadToken {
            tid,
            instance: self.instance,
            _not_send: PhantomData,
        })
    }

    /// The replica a thread on `node` should use, not counting slot `except`. The caller
    /// holds the admin lock.
    pub(crate) fn match_thread(&self, node: NodeId, except: Option<usize>) -> Option<usize> {
        dispatcher::choose(node, self.live_candidates(except), |a, b| {
            self.affinity.distance(a, b)
        })
    }

    /// Executes a read-only operation on the calling thread's replica.
    ///
    /// The read sees every write that completed before it started (it waits, or helps,
    /// until its replica has applied the log up to the `ctail` it saw on entry). It
    /// never appends to the log.
    ///
    /// # Panics
    ///
    /// If `tkn` was issued by another instance (a programmer error: a token is checked
    /// against the instance that issued it, by a number unique in the process); if
    /// `dispatch` panics (the panic unwinds from here, the read lock released); on a
    /// re-entrant call from inside `dispatch`/`dispatch_mut` with this thread's token; on
    /// a poisoned instance. See the crate docs' "Panics" and "Misuse" sections.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default)] struct Cell(u64);
    /// # impl ldnr::Dispatch for Cell {
    /// #     type ReadOperation = (); type WriteOperation = u64; type Response = u64;
    /// #     fn dispatch(&self, _: ()) -> u64 { self.0 }
    /// #     fn dispatch_mut(&mut self, v: u64) -> u64 { std::mem::replace(&mut self.0, v) }
    /// # }
    /// let nr = ldnr::NodeReplicated::builder(Cell(7)).build().unwrap();
    /// let tkn = nr.register().unwrap();
    /// assert_eq!(nr.execute((), tkn), 7);
    /// ```
    #[inline]
    pub fn execute(&self, op: D::ReadOperation, tkn: ThreadToken) -> D::Response {
        let tid = self.check(tkn);
        self.check_poison();
        let ctx = self.dispatcher.context(tid);
        self.check_reentry(ctx);
        let ctail = self.log.ctail();
        // Acquire: pairs with the Release stores of the dispatcher and reconfigurations,
        // so the shell's installation happens before our use of it.
        let mut slot = ctx.replica.load(Ordering::Acquire);
        loop {
            let replica = &self.replicas[slot];
            {
                let _read = replica.rw.read(&ctx.reader, slot);
                // The position is checked under the read lock: it changes only under the
                // write lock, together with the data it describes.
                if self.log.reached(self.log.position(slot), ctail) {
                    // SAFETY: the read lock is held for this block.
                    if unsafe { replica.is_live_read() } {
                        let response = {
                            let _inside = Callbacks::enter(self.instance);
                            // SAFETY: as above; the replica is live (checked just now, and
                            // it cannot be removed while the read lock is held, P4).
                            unsafe { replica.read(|d| d.dispatch(op)) }
                                .expect("checked live under the same read lock")
                        };
                        drop(_read);
                        return self.finish(ctx, response);
                    }
                    // Removed under us: the dispatcher has matched us elsewhere.
                    slot = ctx.replica.load(Ordering::Acquire);
                    continue;
                }
            }
            if replica.is_frozen() {
                // Behind, and frozen as a clone source: read from another replica rather
                // than wait for the clone (any replica at `ctail` gives a linearizable read).
                if let Some(stand_in) = self.stand_in(slot) {
                    slot = stand_in;
                    continue;
                }
            }
            self.catch_up(tid, slot, ctail);
            slot = ctx.replica.load(Ordering::Acquire);
        }
    }

    /// Executes a mutating operation: it is appended to the shared log, applied to every
    /// replica, and its response (from the calling thread's replica) returned.
    ///
    /// The calling thread either combines (appends and applies its own and other pending
    /// operations of its replica) or waits while another thread combines for it, taking
    /// over as soon as it sees the combiner lock free.
    ///
    /// # Panics
    ///
    /// If `dispatch_mut` panicked for *this* operation: its panic is resumed here, in the
    /// submitting thread, with the original payload (whichever thread applied it), and
    /// the instance goes on working (crate docs, "Panics"). Also if `tkn` was issued by
    /// another instance, on a re-entrant call from inside `dispatch`/`dispatch_mut` with
    /// this thread's token, and on a poisoned instance.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default)] struct Cell(u64);
    /// # impl ldnr::Dispatch for Cell {
    /// #     type ReadOperation = (); type WriteOperation = u64; type Response = u64;
    /// #     fn dispatch(&self, _: ()) -> u64 { self.0 }
    /// #     fn dispatch_mut(&mut self, v: u64) -> u64 { std::mem::replace(&mut self.0, v) }
    /// # }
    /// let nr = ldnr::NodeReplicated::builder(Cell(7)).build().unwrap();
    /// let tkn = nr.register().unwrap();
    /// assert_eq!(nr.execute_mut(9, tkn), 7);
    /// assert_eq!(nr.execute((), tkn), 9);
    /// ```
    #[inline]
    pub fn execute_mut(&self, op: D::WriteOperation, tkn: ThreadToken) -> D::Response {
        let tid = self.check(tkn);
        self.check_poison();
        let ctx = self.dispatcher.context(tid);
        self.check_reentry(ctx);
        // SAFETY: the token is `!Send` and proves this thread owns context `tid`; a context
        // is `EMPTY` between operations (C1; `put_op` checks it). Inlined, so the caller
        // builds the operation right in the context instead of copying it through the stack.
        unsafe { ctx.put_op(op) };
        self.execute_stored(tid)
    }

    /// `execute_mut` once the operation is in the caller's context.
    fn execute_stored(&self, tid: usize) -> D::Response {
        let ctx = self.dispatcher.context(tid);
        loop {
            // Acquire: as in `execute`.
            let mut slot = ctx.replica.load(Ordering::Acquire);
            if self.replicas[slot].is_frozen() {
                // Our replica is a clone source: combine on another one meanwhile. Any
                // replica's combiner may append our operation; the response comes from
                // that replica's state at the operation's place in the log.
                slot = self.stand_in(slot).unwrap_or(slot);
            }
            let replica = &self.replicas[slot];
            if let Some(combiner) = replica.try_combine() {
                // Fast path: combine our own operation without publishing it.
                let applying = ctx.applying();
                let live = self.combine(slot, combiner, tid, true);
                drop(applying);
                if live {
                    // SAFETY: `combine` stored the outcome of our own operation.
                    let outcome = unsafe { ctx.take_response() };
                    // Resumes the operation's panic, if it raised one, here, after the
                    // combiner lock is released.
                    return self.respond(ctx, outcome);
                }
                // The replica was removed: our operation is still ours; go again.
                continue;
            }
            ctx.publish(tid, &replica.pending);
            // From here until the operation is decided, a combiner may take it: a panic
            // that escaped now would leave the context `PENDING` (its next operation
            // would overwrite one a combiner still takes), so any unwind poisons. Only a
            // poisoned instance or an affinity manager's panic inside `combine` unwinds
            // here; user panics are caught below it, and drop panics deferred.
            let waiting = PoisonOnUnwind(&self.poisoned);
            let mut backoff = Backoff::new();
            loop {
                match ctx.owner_state() {
                    DONE => {
                        waiting.disarm();
                        // SAFETY: `DONE` means the claiming combiner stored the response (C1).
                        let outcome = unsafe { ctx.take_response() };
                        ctx.reset();
                        // The operation's own panic, if any, resumes in its owner's thread.
                        return self.respond(ctx, outcome);
                    }
                    // The replica was removed before anyone took the operation; it is
                    // still in our context, unexecuted.
                    REROUTE => {
                        waiting.disarm();
                        ctx.reset();
                        break;
                    }
                    _ => {}
                }
                self.check_poison();
                if replica.is_frozen() && self.stand_in(slot).is_some() {
                    // Frozen as a clone source: hand every waiting operation back to its
                    // owner (ours included), who then uses a stand-in (replica P6). Any
                    // thread may pop the whole stack; each popped context is decided once.
                    // With no other replica to stand in, we wait for the clone instead.
                    self.hand_back(replica);
                    backoff.snooze();
                } else if let Some(combiner) = replica.try_combine() {
                    let _applying = ctx.applying();
                    self.combine(slot, combiner, tid, false);
                    backoff = Backoff::new();
                } else {
                    backoff.snooze();
                }
            }
        }
    }

    /// The response of the caller's write, or its panic resumed; then (with `std`) the
    /// panic of a displaced operation's `Drop` that the caller's combining caught, if any.
    #[inline(always)]
    fn respond(&self, ctx: &Ctx<D>, outcome: Outcome<D::Response>) -> D::Response {
        #[cfg(feature = "std")]
        if core::mem::needs_drop::<D::WriteOperation>() {
            // SAFETY: `ctx` is the calling thread's own context.
            let deferred = unsafe { ctx.take_deferred() };
            // The operation's own panic wins; a deferred one is dropped with it.
            let response = into_response(outcome);
            if let Some(payload) = deferred {
                drop(response);
                std::panic::resume_unwind(payload);
            }
            return response;
        }
        // Without drop glue an operation is never displaced, so nothing is deferred.
        let _ = ctx;
        into_response(outcome)
    }

    /// Returns `response`, or (with `std`) drops it and resumes the panic of a displaced
    /// operation's `Drop` that the caller's combining caught.
    #[inline(always)]
    fn finish<T>(&self, ctx: &Ctx<D>, response: T) -> T {
        #[cfg(feature = "std")]
        if core::mem::needs_drop::<D::WriteOperation>() {
            // SAFETY: `ctx` is the calling thread's own context.
            if let Some(payload) = unsafe { ctx.take_deferred() } {
                drop(response);
                std::panic::resume_unwind(payload);
            }
        }
        let _ = ctx;
        response
    }

    /// Hands every operation waiting on `replica`'s pending stack back to its owner,
    /// unexecuted (`REROUTE`). Any thread may do this; each popped context is decided once.
    pub(crate) fn hand_back(&self, replica: &Replica<D>) {
        let contexts = self.dispatcher.contexts();
        replica.pending.take(contexts, |tid| {
            contexts[tid].reroute();
        });
    }

    /// A snapshot of the replicas: id, node, threads served and log position.
    ///
    /// The ids, nodes and thread counts are consistent with each other (taken between
    /// reconfigurations: the thread counts add up to the registered threads); the log
    /// positions are read as they are at that moment.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// # #[derive(Clone, Default)] struct Nop;
    /// # impl ldnr::Dispatch for Nop {
    /// #     type ReadOperation = (); type WriteOperation = (); type Response = ();
    /// #     fn dispatch(&self, _: ()) {} fn dispatch_mut(&mut self, _: ()) {}
    /// # }
    /// let nr = ldnr::NodeReplicated::builder(Nop).replicas(&[NodeId(0), NodeId(0)]).build().unwrap();
    /// let tkn = nr.register().unwrap();
    /// nr.execute_mut((), tkn);
    /// let infos = nr.replicas();
    /// assert_eq!(infos.len(), 2);
    /// assert_eq!(infos.iter().map(|r| r.threads).sum::<usize>(), 1);
    /// assert!(infos.iter().any(|r| r.applied == 1));
    /// ```
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        self.dispatcher.consistent(|| {
            self.replicas
                .iter()
                .enumerate()
                .filter_map(|(slot, r)| {
                    r.id().map(|id| ReplicaInfo {
                        id,
                        node: r.node(),
                        threads: r.threads.load(Ordering::Relaxed),
                        applied: self.log.applied(slot),
                    })
                })
                .collect()
        })
    }

    /// The replica the thread of `tkn` is matched to now (its operations run there unless
    /// that replica is being cloned or removed at this moment). `None` only while the
    /// thread's replica is being removed and the thread not yet re-matched.
    ///
    /// # Panics
    ///
    /// If `tkn` belongs to another instance.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// # #[derive(Clone, Default)] struct Nop;
    /// # impl ldnr::Dispatch for Nop {
    /// #     type ReadOperation = (); type WriteOperation = (); type Response = ();
    /// #     fn dispatch(&self, _: ()) {} fn dispatch_mut(&mut self, _: ()) {}
    /// # }
    /// let nr = ldnr::NodeReplicated::builder(Nop).build().unwrap();
    /// let tkn = nr.register().unwrap();
    /// let only = nr.replicas()[0].id;
    /// assert_eq!(nr.replica_of(tkn), Some(only));
    /// ```
    pub fn replica_of(&self, tkn: ThreadToken) -> Option<ReplicaId> {
        let tid = self.check(tkn);
        let slot = self.dispatcher.context(tid).replica.load(Ordering::Acquire);
        self.replicas[slot].id()
    }

    /// The log capacity in entries.
    pub fn log_capacity(&self) -> usize {
        self.log.capacity()
    }

    /// Panics with [`POISONED`] if a panic escaped `apply` earlier.
    #[inline]
    pub(crate) fn check_poison(&self) {
        if self.poisoned.load(Ordering::Relaxed) {
            poisoned();
        }
    }

    /// Panics on a call made from inside user code that this instance runs on the calling
    /// thread (it would wait for itself: deadlock, or for a nested read, drop the outer
    /// read's lock early). With `std` any such call is seen; without it, only one made
    /// with the token of the thread running `dispatch`/`dispatch_mut`.
    #[inline]
    fn check_reentry(&self, ctx: &Ctx<D>) {
        if ctx.busy() {
            reentered();
        }
        self.check_callbacks();
    }

    /// The part of [`check_reentry`](Self::check_reentry) that needs no token (`register`
    /// and the reconfigurations call it).
    #[inline]
    pub(crate) fn check_callbacks(&self) {
        if Callbacks::running(self.instance) {
            reentered();
        }
    }

    #[inline]
    fn check(&self, tkn: ThreadToken) -> usize {
        assert!(
            tkn.instance == self.instance,
            "ldnr: a ThreadToken of another NodeReplicated instance was used"
        );
        tkn.tid
    }

    /// Marks the calling thread as running this instance's user code until the returned
    /// guard drops.
    pub(crate) fn callbacks(&self) -> Callbacks {
        Callbacks::enter(self.instance)
    }

    /// The replica that serves, for one operation, a thread whose replica `slot` is
    /// frozen as a clone source (replica P6): the one `add_replica` chose before freezing
    /// it, if any. The caller saw `slot` frozen (Acquire), which makes the choice visible.
    #[inline]
    fn stand_in(&self, slot: usize) -> Option<usize> {
        let stand_in = self.stand_in.load(Ordering::Relaxed);
        (stand_in != NO_STAND_IN && stand_in != slot).then_some(stand_in)
    }

    /// Installs `data` as the replica in shell `slot` on `node`, joining the log at
    /// `position`, and counts it live; the caller then names it (`set_identity`). The one
    /// place that makes a replica live (for `build` and `add_replica`). The order matters:
    ///
    /// 1. the node, before any thread can apply the replica: a helper that applies it
    ///    sets its memory policy from it, and must not use the shell's previous life's;
    /// 2. both locks, so that no combiner and no reader is inside (P4);
    /// 3. the log position, under the write lock with the data (a reader checks the
    ///    position under its read lock); the caller keeps `head` at or below `position`
    ///    while this runs (L7: for a clone, the source is frozen there and active);
    /// 4. the data;
    /// 5. the live count, before the locks are released (L6): a combiner that takes this
    ///    shell's lock afterwards, or the source's once it unfreezes, reads two or more
    ///    live replicas. (A thread left on this shell by the removal that freed it may
    ///    take its lock the moment it is released.)
    pub(crate) fn install(&self, slot: usize, node: NodeId, data: D, position: usize) {
        let shell = &self.replicas[slot];
        shell.set_node(node);
        // A thread that still holds a reference from the shell's previous life may hold
        // its locks for a moment (to hand back operations); wait for it.
        let combiner = shell.combine_blocking();
        let _write = shell.rw.write(slot, || self.dispatcher.readers());
        self.log.activate(slot, position);
        // SAFETY: the write lock is held.
        let old = unsafe { combiner.replace(Some(data)) };
        debug_assert!(old.is_none(), "a free shell holds no data");
        // Release: pairs with the Acquire loads under combiner locks (`reserve`, `apply`).
        self.live.fetch_add(1, Ordering::Release);
    }

    /// Brings replica `slot` up to `target` for a reader (thread `tid`): combine if the
    /// lock is free, otherwise wait for the current combiner. Returns early if the replica
    /// is removed, or frozen with a stand-in to read from.
    fn catch_up(&self, tid: usize, slot: usize, target: usize) {
        let ctx = self.dispatcher.context(tid);
        let replica = &self.replicas[slot];
        let mut backoff = Backoff::new();
        while !self.log.reached(self.log.position(slot), target) {
            self.check_poison();
            if replica.is_frozen() && self.stand_in(slot).is_some() {
                // A clone holds the lock; the caller reads elsewhere meanwhile.
                return;
            }
            if let Some(combiner) = replica.try_combine() {
                // A combiner applies at least up to the tail it saw, which is at least
                // `target`; on a removed replica we go elsewhere.
                let _applying = ctx.applying();
                if !self.combine(slot, combiner, tid, false) {
                    return;
                }
            } else {
                backoff.snooze();
            }
        }
    }

    /// One round of flat combining on replica `slot` by thread `me`: collect pending
    /// operations (and `me`'s own, if `own`), append them, apply the log, hand back
    /// responses (`me`'s own stays in its context). Then, with the combiner lock
    /// released, drop the operations that the batch's writes displaced from the log (log
    /// L5): a panicking `Drop` can no longer leave anything half-done. With `std` such a
    /// panic is kept for `me` to resume when its own operation has finished (`respond`,
    /// `finish`); without `std` it poisons.
    ///
    /// Returns `false` if the shell holds no replica (it was removed): then every
    /// operation waiting on it was handed back to its owner, and `me`'s own operation is
    /// still in its context.
    pub(crate) fn combine(
        &self,
        slot: usize,
        mut combiner: CombinerGuard<'_, D>,
        me: usize,
        own: bool,
    ) -> bool {
        let replica = combiner.replica();
        let contexts = self.dispatcher.contexts();
        if !combiner.is_live() {
            self.hand_back(replica);
            return false;
        }
        let mut batch = core::mem::take(combiner.batch());
        batch.clear();
        if own {
            batch.push(me);
        }
        replica.pending.take(contexts, |tid| {
            if contexts[tid].claim() {
                batch.push(tid);
            }
        });

        if batch.is_empty() {
            // Nothing to append: just catch up with what others appended.
            let tail = self.log.tail();
            self.apply(&combiner, slot, tail, 0, &[]);
        } else {
            let mut unappended = Unappended {
                contexts,
                batch: &batch,
                next: 0,
            };
            for chunk in batch.chunks(self.log.max_batch()) {
                let start = self.reserve(&combiner, slot, chunk.len());
                // No user code runs from the reservation until every reserved index is
                // written (L5): the replicas would wait for an unwritten index for ever.
                for (k, &tid) in chunk.iter().enumerate() {
                    // SAFETY: `tid` is our own context (`own`, stored by us) or one we
                    // claimed above; each is taken exactly once (C1).
                    let op = unsafe { contexts[tid].take_op() };
                    if let Some(displaced) = self.log.write(start.wrapping_add(k), op) {
                        // SAFETY: `me` is the calling thread's own context.
                        unsafe { contexts[me].bury(displaced) };
                    }
                }
                unappended.next += chunk.len();
                self.apply(
                    &combiner,
                    slot,
                    start.wrapping_add(chunk.len()),
                    start,
                    chunk,
                );
            }
            core::mem::forget(unappended);
            let claimed = if own { &batch[1..] } else { &batch[..] };
            for &tid in claimed {
                contexts[tid].complete();
            }
        }
        *combiner.batch() = batch;
        drop(combiner);
        // Operations without drop glue are never displaced (`Log::write`).
        if core::mem::needs_drop::<D::WriteOperation>() {
            let _inside = self.callbacks();
            #[cfg(not(feature = "std"))]
            let poison = PoisonOnUnwind(&self.poisoned);
            // SAFETY: `me` is the calling thread's own context.
            unsafe { contexts[me].drop_displaced() };
            #[cfg(not(feature = "std"))]
            poison.disarm();
        }
        true
    }

    /// Reserves `n` log entries for the combiner of `slot`, making room if needed: the
    /// combiner applies its own replica, helps the most lagging replica whose combiner
    /// lock is free (cross-combining), and retries. It never holds a write lock while
    /// waiting.
    pub(crate) fn reserve(&self, combiner: &CombinerGuard<'_, D>, slot: usize, n: usize) -> usize {
        // Act early: once the log is more than half full, help the slowest replica before
        // it can fill the log, rather than after failing to reserve.
        if self.log.used() > self.log.capacity() / 2 {
            // `used` is measured against the cached head; refresh it first (a scan of
            // the replica positions, so only when the cache says the log is half full).
            let head = self.log.collect();
            // Read after `collect`, so at or past the head it returned.
            let tail = self.log.tail();
            if tail.wrapping_sub(head) > self.log.capacity() / 2 {
                self.help_laggard(slot, tail);
            }
        }
        // L6: read under our combiner lock, stable until we release it.
        let sole = self.live.load(Ordering::Acquire) == 1;
        let mut backoff = Backoff::new();
        loop {
            if let Some(start) = self.log.try_reserve(n, sole) {
                return start;
            }
            self.check_poison();
            let tail = self.log.tail();
            self.apply(combiner, slot, tail, 0, &[]);
            self.help_laggard(slot, tail);
            backoff.snooze();
        }
    }

    /// Applies the log to the most lagging replica other than `own` if its combiner lock
    /// is free, under that replica's memory policy.
    fn help_laggard(&self, own: usize, tail: usize) {
        let Some(lag) = self.log.laggard(tail) else {
            return;
        };
        if lag == own {
            return;
        }
        if let Some(helper) = self.replicas[lag].try_combine() {
            // `apply` does nothing if the replica was removed in the meantime.
            self.apply(&helper, lag, tail, 0, &[]);
        }
    }

    /// Applies log entries to the combiner's replica (`slot`) up to `target`, under the
    /// replica's write lock and memory policy; then publishes its position and `ctail`.
    /// Responses of indices `start..start + batch.len()` go to the contexts in `batch`.
    pub(crate) fn apply(
        &self,
        combiner: &CombinerGuard<'_, D>,
        slot: usize,
        target: usize,
        start: usize,
        batch: &[usize],
    ) {
        let from = self.log.position(slot);
        if self.log.reached(from, target) || !combiner.is_live() {
            return;
        }
        self.check_poison();
        // Covers every call into user code below (affinity manager, `clone`,
        // `dispatch_mut`, `Drop` of responses): a panic that escapes it leaves this replica
        // part-way through the batch, and the claimed operations' owners waiting.
        let poison = PoisonOnUnwind(&self.poisoned);
        let _inside = self.callbacks();
        let replica = combiner.replica();
        let contexts: &[CachePadded<Ctx<D>>] = self.dispatcher.contexts();
        // Best effort: the node was valid when the replica was made, and failing to set a
        // policy must not fail an operation; the memory then comes from the default policy.
        let policy = if self.steer_memory {
            AffinityGuard::new(&*self.affinity, replica.node()).ok()
        } else {
            None
        };
        let write = replica.rw.write(slot, || self.dispatcher.readers());
        // L6: the count only drops to one or rises from one while this replica's combiner
        // lock (held by us) is held by the reconfiguration, so it is stable for this batch.
        let sole = self.live.load(Ordering::Acquire) == 1;
        // Where an entry's outcome goes: to its owner if this combiner appended it (`batch`
        // is the owners of `start..`), else nowhere (another replica's combiner answers it).
        let deliver = |idx: usize, o: Outcome<D::Response>| {
            if let Some(&tid) = batch.get(idx.wrapping_sub(start)) {
                // SAFETY: `tid` is in this combiner's batch, whose operation sits at
                // `idx`; it gets exactly one outcome (`idx` advances past it right after),
                // read by its owner only after `DONE` or after `combine` returns (C1).
                unsafe { contexts[tid].put_response(o) };
            }
        };
        // Panic isolation (crate docs, "Panics"): an entry whose clone or `dispatch_mut`
        // panics keeps whatever partial effect it had — the same on every replica, by
        // determinism — and its owner gets the panic; the entries after it are applied
        // as usual. One `catch_unwind` per run of entries that do not panic, so the
        // common path pays nothing per entry. `from` is before `target` (checked above),
        // so `idx` meets `target` (L8).
        let mut idx = from;
        while idx != target {
            // SAFETY: the write lock is held until it is dropped below (P1).
            let run = unsafe {
                combiner.mutate(|d| {
                    outcome(|| {
                        while idx != target {
                            let op = self.log.read(idx, sole);
                            deliver(idx, ok(d.dispatch_mut(op)));
                            idx = idx.wrapping_add(1);
                        }
                    })
                })
            };
            match run {
                // Cannot happen: `is_live` was checked under our combiner lock, and data
                // is only taken out under it (P4). Never loop on it regardless.
                None => break,
                #[cfg(feature = "std")]
                Some(Err(payload)) => {
                    deliver(idx, Err(payload));
                    idx = idx.wrapping_add(1);
                }
                Some(_) => {}
            }
        }
        self.log.publish(slot, target, sole);
        drop(write);
        drop(policy);
        poison.disarm();
    }
}

#[cfg(all(test, not(ldnr_loom), feature = "std"))]
mod tests {
    use super::*;
    use std::thread;

    /// The order in which a replica applied the writes: `(thread, k)` for the k-th write
    /// of each thread.
    #[derive(Clone, Default)]
    struct Trace(Vec<(u32, u32)>);

    impl Dispatch for Trace {
        type ReadOperation = ();
        type WriteOperation = (u32, u32);
        type Response = (usize, Vec<(u32, u32)>);
        fn dispatch(&self, _: ()) -> Self::Response {
            (self.0.len(), self.0.clone())
        }
        fn dispatch_mut(&mut self, w: (u32, u32)) -> Self::Response {
            self.0.push(w);
            (self.0.len() - 1, Vec::new())
        }
    }

    /// A log that starts just below the point where its indices wrap around `usize`
    /// (2^64 here, 2^32 on 32-bit targets) crosses it without losing, repeating or
    /// reordering a write, with one replica (the sole-replica path, L6) and with two (a
    /// thread on each), on logs small enough to wrap the ring many times (L8).
    #[test]
    fn the_log_crosses_the_index_wrap_point() {
        const THREADS: u32 = 3;
        const WRITES: u32 = 300;
        for (replicas, capacity) in [(1, 4), (2, 4), (2, 8)] {
            let start = usize::MAX - 16;
            let nr = NodeReplicated::builder(Trace::default())
                .replicas(&alloc::vec![NodeId(0); replicas])
                .log_capacity(capacity)
                .log_start(start)
                .build()
                .unwrap();
            let placed: Vec<Vec<usize>> = thread::scope(|s| {
                let workers: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let nr = &nr;
                        s.spawn(move || {
                            let tkn = nr.register().unwrap();
                            (0..WRITES)
                                .map(|k| nr.execute_mut((t, k), tkn).0)
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap()).collect()
            });
            let total = (THREADS * WRITES) as usize;
            // Every write's place in the order is unique and the places are 0..total.
            let mut order = alloc::vec![None; total];
            for (t, places) in placed.iter().enumerate() {
                for (k, &at) in places.iter().enumerate() {
                    assert!(order[at].is_none(), "two writes at place {at}");
                    order[at] = Some((t as u32, k as u32));
                    if k > 0 {
                        assert!(places[k - 1] < at, "thread {t}: program order broken");
                    }
                }
            }
            let expected: Vec<(u32, u32)> = order.into_iter().map(Option::unwrap).collect();
            // Every replica applied exactly that order (read through a thread on each).
            let mut read = Vec::new();
            for _ in 0..8 {
                let tkn = nr.register().unwrap();
                let (len, all) = nr.execute((), tkn);
                assert_eq!(len, total, "{replicas} replicas, log {capacity}");
                assert_eq!(all, expected, "{replicas} replicas, log {capacity}");
                read.push(nr.replica_of(tkn).unwrap());
            }
            read.sort_by_key(|id| id.get());
            read.dedup();
            assert_eq!(read.len(), replicas, "a reader on every replica");
            let infos = nr.replicas();
            assert!(infos.iter().all(|r| r.applied == total), "{infos:?}");
            assert!(
                nr.log.tail() < start,
                "the indices wrapped: tail {}",
                nr.log.tail()
            );
        }
    }
}
