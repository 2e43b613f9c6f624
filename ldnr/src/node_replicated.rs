//! The public handle: [`NodeReplicated`] and its [`Builder`].
//!
//! A thin layer: it checks what the caller passes (tokens, builder settings) and hands
//! every operation to the instance's shared state ([`Shared`]), where flat combining
//! (`replica::combiner`), registration (`dispatcher`) and reconfiguration
//! (`reconfigure`) live.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use crate::affinity::{self, AffinityManager, Memory, NoAffinity, NodeId};
use crate::dispatch::Dispatch;
use crate::dispatcher::{Dispatcher, ThreadToken, DEFAULT_MAX_THREADS, MAX_THREADS};
use crate::error::Error;
use crate::log::{Log, DEFAULT_LOG_CAPACITY, MAX_LOG_CAPACITY, MAX_REPLICAS, MIN_LOG_CAPACITY};
use crate::poison::Poison;
use crate::policy::{Policy, PolicyState};
use crate::replica::{ReplicaId, ReplicaInfo, ReplicaSet};
use crate::shared::Shared;

/// Configures and builds a [`NodeReplicated`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use ldnr::{AffinityManager, NoAffinity, NodeReplicated};
///
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
/// // One node, nothing to steer; `ldnr-affinity` has the managers of real machines.
/// let manager = Arc::new(NoAffinity);
/// let nr = NodeReplicated::builder(Register::default())
///     .replicas(&manager.nodes()) // one replica per node (default: one replica)
///     .log_capacity(1 << 12)
///     .max_threads(64)
///     .affinity(manager)
///     .build()?;
/// assert_eq!(nr.replicas().len(), 1);
/// # Ok::<(), ldnr::Error>(())
/// ```
pub struct Builder<D> {
    initial: D,
    nodes: Option<Vec<NodeId>>,
    log_capacity: usize,
    max_threads: usize,
    affinity: Arc<dyn AffinityManager>,
    policy: Policy,
    membarrier: bool,
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
            .field("policy", &self.policy)
            .field("membarrier", &self.membarrier)
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

    /// Who places the replicas after `build`: [`Policy::manual`] (the default: the
    /// application, with [`add_replica`](NodeReplicated::add_replica) and
    /// [`remove_replica`](NodeReplicated::remove_replica)) or
    /// [`Policy::follow_threads`] (a replica on every node where threads are; see
    /// [`Policy`]). The initial replicas are those of [`replicas`](Self::replicas) either
    /// way; `follow_threads` changes them from the first registration on.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether a thread that writes to a replica no other thread reads may skip the write
    /// lock's fence (default: `true`, where it is available).
    ///
    /// A write batch takes its replica's write lock, whose fence makes sure no reader is
    /// inside. With this on, a writer that finds no other thread in its replica's reader
    /// set skips that fence (the set is what the writer waits for: the threads that have
    /// read the replica and not moved on), and instead a thread's first read of a replica
    /// (after it registers, after it moves to another replica, and on either side of a
    /// clone of its replica, which it reads through on another one) issues Linux's
    /// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`. That call makes every CPU that runs
    /// a thread of the process execute a barrier, an interrupt to each: about 0.1 µs
    /// with no other thread running, 8–10 µs on a 2-vCPU VM with one. Turn it off for
    /// processes that must not interrupt other CPUs (real-time threads), or whose
    /// threads come and go faster than they read.
    ///
    /// What it saves: one locked instruction per write batch whose replica no other
    /// thread reads (with several replicas a combiner that also reads its own replica
    /// counts itself). Where other threads are in the replica's reader set (they have read
    /// it and not moved on), or a thread index past 63 (31 on 32-bit targets) is
    /// registered, every batch fences as before.
    ///
    /// Only with the `std` feature on Linux (not under Miri). The first instance built
    /// with it registers the process with the kernel, for good (a process cannot
    /// unregister; in a process that already runs several threads the kernel may make
    /// the call wait, not measured here). Elsewhere, or where the kernel refuses the registration (before
    /// 4.14, or a sandbox that filters the call), every write batch keeps its fence
    /// whatever this says. If the kernel refuses a barrier after the registration (a
    /// seccomp filter installed later that returns an error, a process restored from a
    /// checkpoint without its registration), the instances built before then order their
    /// joins through the replica's combiner lock instead, waiting for its holder, and
    /// those built after fence every batch; a filter that kills the process on the call
    /// kills it at the next join.
    pub fn membarrier(mut self, on: bool) -> Self {
        self.membarrier = on;
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
    /// does not list, and [`Error::Affinity`] if setting a memory policy failed;
    /// [`Error::InstancesExhausted`] once the process has built `usize::MAX - 1`
    /// instances (instance numbers are never reused).
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
        let manager = self.affinity;
        let nodes = match self.nodes {
            Some(nodes) => nodes,
            None => alloc::vec![manager.current_node()],
        };
        if nodes.is_empty() {
            return Err(Error::NoReplicas);
        }
        if nodes.len() > MAX_REPLICAS {
            return Err(Error::TooManyReplicas {
                limit: MAX_REPLICAS,
            });
        }
        let known = manager.nodes();
        if let Some(&bad) = nodes.iter().find(|n| !known.contains(n)) {
            return Err(Error::UnknownNode(bad));
        }

        let memory = Memory::new(manager, known.len());
        let shared = Shared {
            log: Log::starting_at(cap, self.log_start),
            replicas: ReplicaSet::new(self.max_threads),
            threads: Dispatcher::with_barrier(self.max_threads, self.membarrier)?,
            poison: Poison::new(memory.steers()),
            memory,
            policy: PolicyState::new(self.policy),
        };
        for &node in &nodes {
            let data = affinity::on_node(shared.memory.manager(), node, || self.initial.clone())?;
            shared.replicas.found(node, data, &shared.log);
        }
        Ok(NodeReplicated { shared })
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
    shared: Shared<D>,
}

impl<D: Dispatch> fmt::Debug for NodeReplicated<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeReplicated")
            .field("shared", &self.shared)
            .finish()
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
    /// assert_eq!(nr.replicas().len(), 1);
    /// ```
    pub fn builder(initial: D) -> Builder<D> {
        Builder {
            initial,
            nodes: None,
            log_capacity: DEFAULT_LOG_CAPACITY,
            max_threads: DEFAULT_MAX_THREADS,
            affinity: Arc::new(NoAffinity),
            policy: Policy::manual(),
            membarrier: true,
            log_start: 0,
        }
    }

    /// Registers the calling thread and matches it to a replica (see the
    /// [dispatcher rules](crate#the-dispatcher)).
    ///
    /// A thread may register more than once; each token is a separate participant with
    /// its own operation slot, and counts against the thread limit.
    ///
    /// The registration lasts until [`deregister`](Self::deregister), even past the end
    /// of its thread. A thread that ends without giving it back keeps its index, its
    /// count on its replica and, once it has read, its place in that replica's reader
    /// set, whose every member each write there checks: threads that come and go should
    /// deregister before they end, or use [`thread_token`](Self::thread_token), whose
    /// registration is given back when its thread exits.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyThreads`] past the thread limit ([`Builder::max_threads`]).
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
    /// let nr = ldnr::NodeReplicated::builder(Register::default()).max_threads(1).build().unwrap();
    /// let _tkn = nr.register().unwrap();
    /// assert!(matches!(nr.register(), Err(ldnr::Error::TooManyThreads { limit: 1 })));
    /// ```
    #[track_caller]
    pub fn register(&self) -> Result<ThreadToken, Error> {
        self.shared.register()
    }

    /// Gives the registration of `tkn` back: the thread leaves its replica (its thread
    /// count drops) and its slot is reused by a later registration. The token, and every
    /// copy of it, is refused from then on.
    ///
    /// Call it from the thread that registered (tokens are `!Send`), between operations.
    /// A thread that uses [`thread_token`](Self::thread_token) does not need it: its
    /// registration is given back when it exits.
    ///
    /// # Errors
    ///
    /// [`Error::StaleToken`] if `tkn` was already deregistered.
    ///
    /// # Panics
    ///
    /// If `tkn` belongs to another instance, or on a call from inside user code this
    /// instance runs on the calling thread (see the crate docs' misuse table).
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
    /// let nr = ldnr::NodeReplicated::builder(Register::default()).max_threads(1).build()?;
    /// for _ in 0..3 {
    ///     // One slot, used over and over.
    ///     let tkn = nr.register()?;
    ///     nr.execute_mut(1, tkn);
    ///     nr.deregister(tkn)?;
    ///     assert_eq!(nr.deregister(tkn), Err(ldnr::Error::StaleToken));
    /// }
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn deregister(&self, tkn: ThreadToken) -> Result<(), Error> {
        self.shared.deregister(tkn)
    }

    /// The calling thread's token for this instance: registered on the first call, the
    /// same token on every later call, given back when the thread exits. For thread
    /// pools, per-request threads and any code that cannot carry a token around. Cheap
    /// enough to call per operation (a thread-local lookup).
    ///
    /// If the instance is dropped before the thread exits, the thread's exit does nothing.
    /// If the token is deregistered by hand, the next call registers again.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyThreads`] past the thread limit (counting only threads that are
    /// registered now); [`Error::ThreadExiting`] from a thread-local's destructor.
    ///
    /// # Examples
    ///
    /// ```
    /// // A counter: reads return it, writes add to it and return the sum.
    /// #[derive(Clone, Default)]
    /// struct Counter(u64);
    ///
    /// impl ldnr::Dispatch for Counter {
    ///     type ReadOperation = ();
    ///     type WriteOperation = u64;
    ///     type Response = u64;
    ///     fn dispatch(&self, _: ()) -> u64 { self.0 }
    ///     fn dispatch_mut(&mut self, by: u64) -> u64 { self.0 += by; self.0 }
    /// }
    ///
    /// let nr = ldnr::NodeReplicated::builder(Counter::default()).max_threads(4).build()?;
    /// // A hundred short-lived threads through four slots: each gives its slot back
    /// // when it exits (`join` waits for that).
    /// for _ in 0..100 {
    ///     std::thread::scope(|s| {
    ///         s.spawn(|| {
    ///             let tkn = nr.thread_token().unwrap();
    ///             nr.execute_mut(1, tkn);
    ///             assert_eq!(nr.thread_token().unwrap().index(), tkn.index());
    ///         })
    ///         .join()
    ///         .unwrap();
    ///     });
    /// }
    /// assert_eq!(nr.execute((), nr.thread_token()?), 100);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[cfg(feature = "std")]
    #[inline]
    #[track_caller]
    pub fn thread_token(&self) -> Result<ThreadToken, Error> {
        self.shared.thread_token()
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
    /// let nr = ldnr::NodeReplicated::builder(Register(7)).build().unwrap();
    /// let tkn = nr.register().unwrap();
    /// assert_eq!(nr.execute((), tkn), 7);
    /// ```
    // Always inlined: the common case is a few dozen instructions, every other case is
    // a call (`read_slow`), and a call here costs a read 5% (`read_in`).
    #[inline(always)]
    #[track_caller]
    pub fn execute(&self, op: D::ReadOperation, tkn: ThreadToken) -> D::Response {
        let (tid, ctx, entered) = self.shared.enter(tkn);
        self.shared.read_in(tid, ctx, entered, |d| d.dispatch(op))
    }

    /// Runs `f` on the calling thread's replica and returns what it returns: a read that
    /// is a closure instead of a [`ReadOperation`](Dispatch::ReadOperation).
    ///
    /// Linearizable like [`execute`](Self::execute): `f` sees every write that completed
    /// before `read` was called, and runs at most once (exactly once unless `read`
    /// panics before it, see below), under the replica's read lock, in parallel with
    /// other readers of that replica (never with its writes). It may borrow from the
    /// caller (a `&str` key for a `String`-keyed map) and return anything, borrowed data
    /// excepted: copy out what you need. Nothing is appended to the log.
    ///
    /// Each call sees one state: two `read`s may see different ones (writes in between),
    /// so compute whatever must agree inside one closure.
    ///
    /// Keep `f` short and never block in it: the writers of its replica wait for it, and
    /// since every replica applies every write, so do the writers of every other replica
    /// once the log is full. It must not call this instance (`read`, `execute`,
    /// `execute_mut`, `register`, …) on the calling thread. Reading *another* instance
    /// from `f` is allowed, but, as with nested locks, two threads nesting two instances
    /// in opposite orders can deadlock while both have writers: nest in one order.
    ///
    /// # Panics
    ///
    /// If `f` panics: the panic unwinds out of `read` only (the read lock is released; the
    /// instance is not poisoned). If the read had to bring its replica up to date and the
    /// `Drop` of an operation it displaced from the log panicked, that panic is resumed
    /// and `f` does not run (crate docs, "Panics"). Also as for
    /// [`execute`](Self::execute): a token of another instance or a deregistered one, a
    /// call from inside `f`, `dispatch` or `dispatch_mut` on the same thread, and a
    /// poisoned instance.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use ldnr::{Dispatch, NodeReplicated};
    ///
    /// #[derive(Clone, Default)]
    /// struct Index(BTreeMap<String, u64>);
    /// impl Dispatch for Index {
    ///     type ReadOperation = std::convert::Infallible; // every read is a closure
    ///     type WriteOperation = (String, u64);
    ///     type Response = Option<u64>;
    ///     fn dispatch(&self, op: Self::ReadOperation) -> Option<u64> { match op {} }
    ///     fn dispatch_mut(&mut self, (k, v): (String, u64)) -> Option<u64> { self.0.insert(k, v) }
    /// }
    ///
    /// let nr = NodeReplicated::builder(Index::default()).build()?;
    /// let tkn = nr.register()?;
    /// nr.execute_mut(("b".to_string(), 2), tkn);
    /// nr.execute_mut(("a".to_string(), 1), tkn);
    /// // Borrow the key, return anything: no allocation, no operation enum.
    /// assert_eq!(nr.read(tkn, |i| i.0.get("a").copied()), Some(1));
    /// let keys: Vec<String> = nr.read(tkn, |i| i.0.keys().cloned().collect());
    /// assert_eq!(keys, ["a", "b"]);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    // Always inlined, as `execute`.
    #[inline(always)]
    #[track_caller]
    pub fn read<R>(&self, tkn: ThreadToken, f: impl FnOnce(&D) -> R) -> R {
        let (tid, ctx, entered) = self.shared.enter(tkn);
        self.shared.read_in(tid, ctx, entered, f)
    }

    /// Executes a mutating operation: it is appended to the shared log, applied to every
    /// replica, and its response (from the calling thread's replica) returned. (With one
    /// replica it is applied to it directly: crate docs, "Reads and writes".)
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
    /// let nr = ldnr::NodeReplicated::builder(Register(7)).build().unwrap();
    /// let tkn = nr.register().unwrap();
    /// assert_eq!(nr.execute_mut(9, tkn), 7);
    /// assert_eq!(nr.execute((), tkn), 9);
    /// ```
    #[inline]
    #[track_caller]
    pub fn execute_mut(&self, op: D::WriteOperation, tkn: ThreadToken) -> D::Response {
        let (tid, ctx, entered) = self.shared.enter(tkn);
        self.shared.write_op(tid, ctx, entered, op)
    }

    /// Adds a replica on `node` while operations run, and returns its id.
    ///
    /// The new replica is a clone of the replica that has applied the most of the log,
    /// made with the calling thread's memory coming from `node`. Only that source replica
    /// is frozen during the clone; its threads are served by the nearest other replica
    /// meanwhile, every other replica goes on, and threads may still register.
    ///
    /// While the clone is made, the log's garbage collection cannot pass the source's
    /// position (the new replica replays everything after it), so the other replicas can
    /// append up to about one log capacity of writes before they wait for the clone to
    /// finish. Size the log for the write rate times the clone time.
    /// Threads registered on `node` that were served by a replica on another node move to
    /// the new replica; other threads stay where they are.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownNode`] if the affinity manager does not list `node`,
    /// [`Error::TooManyReplicas`] at [`MAX_REPLICAS`], [`Error::Affinity`] if the memory
    /// policy could not be set. Nothing changes on error.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    ///
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
    /// let nr = ldnr::NodeReplicated::builder(Register(0)).build()?;
    /// let tkn = nr.register()?;
    /// nr.execute_mut(5, tkn);
    /// // `NoAffinity` knows one node; on a NUMA machine, name another one.
    /// let id = nr.add_replica(NodeId(0))?;
    /// assert_eq!(nr.replicas().len(), 2);
    /// nr.remove_replica(id)?;
    /// assert_eq!(nr.execute((), tkn), 5);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn add_replica(&self, node: NodeId) -> Result<ReplicaId, Error> {
        self.shared.add_replica(node)
    }

    /// Removes replica `id` while operations run.
    ///
    /// Its threads move to the nearest remaining replica (the fewest threads on ties);
    /// an operation they were waiting on is executed exactly once, on the old replica if
    /// its combiner had taken it, otherwise on the new one. The replica's data is freed
    /// before this returns.
    ///
    /// # Errors
    ///
    /// [`Error::LastReplica`] for the only replica, [`Error::UnknownReplica`] for an id
    /// that is not live (never existed, or already removed). Nothing changes on error.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{Error, NodeId};
    ///
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
    /// // Two replicas (`NoAffinity` knows one node, so both are on node 0).
    /// let nr = ldnr::NodeReplicated::builder(Register::default())
    ///     .replicas(&[NodeId(0), NodeId(0)])
    ///     .build()?;
    /// let ids: Vec<_> = nr.replicas().iter().map(|r| r.id).collect();
    /// nr.remove_replica(ids[0])?;
    /// assert_eq!(nr.remove_replica(ids[0]), Err(Error::UnknownReplica(ids[0])));
    /// assert_eq!(nr.remove_replica(ids[1]), Err(Error::LastReplica));
    /// # Ok::<(), Error>(())
    /// ```
    #[track_caller]
    pub fn remove_replica(&self, id: ReplicaId) -> Result<(), Error> {
        self.shared.remove_replica(id)
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
    ///
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
    /// // Two replicas (`NoAffinity` knows one node, so both are on node 0).
    /// let nr = ldnr::NodeReplicated::builder(Register::default())
    ///     .replicas(&[NodeId(0), NodeId(0)])
    ///     .build()
    ///     .unwrap();
    /// let tkn = nr.register().unwrap();
    /// nr.execute_mut(1, tkn);
    /// let infos = nr.replicas();
    /// assert_eq!(infos.len(), 2);
    /// assert_eq!(infos.iter().map(|r| r.threads).sum::<usize>(), 1);
    /// assert!(infos.iter().any(|r| r.applied == 1));
    /// ```
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        self.shared.snapshot()
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
    /// let only = nr.replicas()[0].id;
    /// assert_eq!(nr.replica_of(tkn), Some(only));
    /// ```
    #[track_caller]
    pub fn replica_of(&self, tkn: ThreadToken) -> Option<ReplicaId> {
        self.shared.replica_of(self.shared.threads.check(tkn))
    }

    /// What the instance did: operations started, threads found on another node by a
    /// migration check, replicas the policy added and removed, and per replica what its
    /// combiners did. Read without locks:
    /// exact while no thread registers or leaves.
    ///
    /// # Examples
    ///
    /// ```
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
    /// let nr = ldnr::NodeReplicated::builder(Register::default()).build()?;
    /// let tkn = nr.register()?;
    /// for v in 0..10 {
    ///     nr.execute_mut(v, tkn);
    /// }
    /// nr.deregister(tkn)?;
    /// assert_eq!(nr.stats().operations, 10, "kept after the thread left");
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn stats(&self) -> crate::Stats {
        self.shared.stats()
    }

    /// Runs the replication policy now and returns when the run is done: with
    /// [`Policy::follow_threads`](crate::Policy::follow_threads) and its idle rule, this
    /// is the check an application may call on its own schedule (operating threads check
    /// on their own; see [the idle rule](crate::Policy#the-idle-rule)). Does nothing
    /// under [`Policy::manual`](crate::Policy::manual).
    ///
    /// # Panics
    ///
    /// When called from inside user code that this instance runs on the calling thread
    /// (it would wait for itself).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use ldnr::{NodeReplicated, Policy};
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
    /// let nr = NodeReplicated::builder(Register::default())
    ///     .policy(Policy::follow_threads().idle_after(Duration::from_secs(1)))
    ///     .build()?;
    /// let tkn = nr.register()?;
    /// nr.execute_mut(1, tkn);
    /// nr.maintain();
    /// // One node here: its replica stays, idle or not.
    /// assert_eq!(nr.replicas().len(), 1);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn maintain(&self) {
        self.shared.check_callbacks();
        self.shared.threads_changed(false);
        self.shared.run_policy_now();
    }

    /// The log capacity in entries.
    pub fn log_capacity(&self) -> usize {
        self.shared.log.capacity()
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
    /// reordering a write, with two replicas (a thread on each), on logs small enough to
    /// wrap the ring many times (L8). With one replica the writes skip the log (L9): the
    /// same checks hold and the tail stays where it started.
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
            if replicas == 1 {
                assert_eq!(nr.shared.log.tail(), start, "one replica appends nothing");
            } else {
                assert!(
                    nr.shared.log.tail() < start,
                    "the indices wrapped: tail {}",
                    nr.shared.log.tail()
                );
            }
        }
    }
}
