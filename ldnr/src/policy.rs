//! Replication policies: who decides where replicas live.
//!
//! With [`Policy::manual`] (the default) the application does, through
//! [`add_replica`](crate::NodeReplicated::add_replica) and
//! [`remove_replica`](crate::NodeReplicated::remove_replica). With
//! [`Policy::follow_threads`] the instance does: a replica on every node where enough
//! registered threads are, none where none are.
//!
//! (How `follow_threads` works is on [`Policy`]: those docs are public.)

use alloc::vec::Vec;

use crate::affinity::NodeId;
use crate::dispatch::Dispatch;
use crate::dispatcher::bump;
use crate::log::MAX_REPLICAS;
use crate::poison::Poison;
use crate::shared::Shared;
#[cfg(feature = "std")]
use crate::sync::UnsafeCell;
use crate::sync::{AtomicBool, AtomicUsize, Backoff, Ordering};

/// Who decides where the replicas of an instance live
/// ([`Builder::policy`](crate::Builder::policy)).
///
/// # How `follow_threads` works
///
/// The policy looks at the threads only when they change: a registration, a
/// deregistration, a thread that exited with a `thread_token` registration, and a thread
/// the dispatcher re-matched after the operating system moved it (see the crate docs on
/// migration). Each such event raises a flag in the instance's attention word, which every
/// operation already loads on entry (the poison flag lives in the same word), so the
/// policy costs an operation nothing until there is something to do.
///
/// The policy then runs in a thread that is outside any operation, lock and callback:
///
/// - the thread that registers, deregisters or was re-matched runs it itself, at the end
///   of that call (`register` and `thread_token` return after the new replica is built;
///   a re-matched thread builds it before its operation); if another thread is running
///   the policy just then, it waits for that run and looks again, so its own event has
///   been acted on when the call returns;
/// - a thread's exit is noticed by whichever thread gives its index back; the policy then
///   runs at the start of the next operation of any thread (only for exits: operations
///   never pay for other threads' registrations or moves), or in
///   [`replicas`](crate::NodeReplicated::replicas).
///
/// So the thread that changes the picture pays for the change (a clone of the structure
/// for a new node), and no other thread waits for it: the clone source is frozen, and its
/// threads are served by a stand-in meanwhile, as for every `add_replica`.
///
/// A run counts the registered threads per node and computes the wanted nodes: every node
/// with at least `min_threads` threads, the `max_replicas` busiest of them (ties: the
/// lower node number), or, if no node has enough, the node of the busiest replica (there
/// is always at least one replica). It then adds a replica on each wanted node that has
/// none (threads of that node move to it), and removes every replica on a node that is not
/// wanted, and every second replica of a node — adds first, so a thread always has a
/// replica to move to. Runs are serialized; an event during a run makes it run again.
///
/// **Hysteresis.** None by time: the policy follows the counts at each event, so the
/// replica set settles as soon as the last event's run returns. On equal counts a node
/// that has a replica keeps it (so with `max_replicas` reached, a thread that comes and
/// goes on another node with as many threads never moves the replica back and forth). A
/// thread that hops between nodes is re-matched at most once per 1,024 of its operations
/// (the migration check's interval), which bounds the clones it can cause; `min_threads`
/// above 1 keeps a lone hopping thread from causing any.
///
/// # The idle rule
///
/// With [`idle_after`](Policy::idle_after) (and `std`), a thread that started no
/// operation for that long does not count for its node. No timer thread is involved;
/// idleness is checked
///
/// - at every run of the policy (the events above);
/// - by every operating thread, once per 1,024 of its operations (its migration check;
///   a clock read there), when a check is due: checks are due a quarter of `idle_after`
///   apart;
/// - in [`maintain`](crate::NodeReplicated::maintain), for an application that wants
///   checks on its own schedule (say, when every thread is quiet).
///
/// A run sees a thread as active when it is inside an operation, or when a run saw its
/// operation count change (or its registration) less than `idle_after` ago. A node whose
/// threads are all idle is not wanted: its replica is removed as for a node without
/// threads (never the last replica), and its threads, now served by the nearest replica,
/// are *parked*, where one of them operating again would bring the replica back (not,
/// say, a lone thread below `min_threads`). A thread inside an operation is active, and
/// keeps its node's replica whatever the node's other threads do. The next operation of a
/// parked thread wakes the policy and waits for the run, like a registration: the replica
/// is back (a clone, which this thread pays for) before the operation runs. (Parking
/// moves the thread's periodic check to its next operation, so operations pay nothing
/// for it; if the thread was counting an operation at that very moment, the move is
/// lost and the wake-up comes with its regular check, at most 1,024 operations later.)
/// So a replica
/// is dropped between `idle_after` and about `1.5 × idle_after` after its node's last
/// operation (a run sees the last change up to a quarter late, and the next check comes
/// up to a quarter later), provided some thread operates (or calls `maintain`) then; a quiet process
/// keeps its replicas until something runs. The rule needs an affinity manager that
/// steers memory (more than one node): with one node there is one replica anyway.
///
/// A removal the policy makes waits, like every removal, for the reads in progress on
/// the replica it removes. A thread inside an operation keeps its node's replica, but a
/// read that starts on it after the run counted the threads, or that runs on a node
/// `max_replicas` leaves out, is waited for: the thread that ran the check (an operating
/// thread at its periodic check, or `maintain`) waits until that read returns. Keep
/// reads that wait for other threads of the instance out of `read` closures.
///
/// **Failures.** An add that fails (the node's memory policy refused) leaves that node
/// served by the nearest replica until the next event; an instance full of replicas gets
/// room from the run's removals first. A run that panics (the affinity manager, `Clone` or
/// `Drop` of `D`) changes nothing it did not finish; with `std` the panic is caught there,
/// so it never reaches the call that happened to run the policy. Both are counted in
/// [`Stats::policy_failed`](crate::Stats::policy_failed).
///
/// **Manual calls** still work under `follow_threads`, and the policy has the last word:
/// a replica added by hand on a node without threads, or one removed by hand on a node
/// with threads, is changed back at the policy's next run (the next thread event).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use ldnr::{NodeReplicated, Policy};
///
/// #[derive(Clone, Default)]
/// struct Register(u64);
/// impl ldnr::Dispatch for Register {
///    type ReadOperation = ();
///    type WriteOperation = u64;
///    type Response = u64;
///    fn dispatch(&self, _: ()) -> u64 { self.0 }
///    fn dispatch_mut(&mut self, v: u64) -> u64 { std::mem::replace(&mut self.0, v) }
/// }
///
/// let nr = NodeReplicated::builder(Register::default())
///    .policy(Policy::follow_threads().min_threads(1).max_replicas(8))
///    .build()?;
/// let tkn = nr.thread_token()?;
/// nr.execute_mut(7, tkn);
/// // One node here (no affinity manager): one replica, on the threads' node.
/// assert_eq!(nr.replicas().len(), 1);
/// # Ok::<(), ldnr::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    kind: Kind,
    min_threads: usize,
    max_replicas: usize,
    /// The idle rule's time (`idle_after`); `None`: off.
    idle: Option<core::time::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Manual,
    FollowThreads,
}

impl Policy {
    /// The application places replicas (`add_replica`, `remove_replica`); the default.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr::Policy::default(), ldnr::Policy::manual());
    /// ```
    pub const fn manual() -> Self {
        Self {
            kind: Kind::Manual,
            min_threads: 1,
            max_replicas: MAX_REPLICAS,
            idle: None,
        }
    }

    /// A replica on every node where at least [`min_threads`](Self::min_threads)
    /// registered threads are (default 1), at most
    /// [`max_replicas`](Self::max_replicas) of them (default: as many as an instance may
    /// have), never fewer than one. See the [type docs](Policy) for when it runs and who
    /// pays.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = ldnr::Policy::follow_threads().min_threads(2).max_replicas(4);
    /// assert!(p.follows_threads());
    /// ```
    pub const fn follow_threads() -> Self {
        Self {
            kind: Kind::FollowThreads,
            min_threads: 1,
            max_replicas: MAX_REPLICAS,
            idle: None,
        }
    }

    /// How many registered threads a node needs for a replica of its own (at least 1).
    pub const fn min_threads(mut self, threads: usize) -> Self {
        self.min_threads = if threads == 0 { 1 } else { threads };
        self
    }

    /// The most replicas the policy keeps (1 to [`MAX_REPLICAS`](crate::MAX_REPLICAS)).
    pub const fn max_replicas(mut self, replicas: usize) -> Self {
        self.max_replicas = if replicas == 0 {
            1
        } else if replicas > MAX_REPLICAS {
            MAX_REPLICAS
        } else {
            replicas
        };
        self
    }

    /// The idle rule (with `std`): a registered thread that started no operation for
    /// `after` stops counting for its node, so a node whose threads are all idle loses
    /// its replica (its threads are served by the nearest one meanwhile); the next
    /// operation of such a thread wakes the policy, which brings the replica back before
    /// that operation runs (with one exception, see the type docs). Off by default. See the [type docs](Policy#the-idle-rule)
    /// for when idleness is checked. `Duration::ZERO` makes every check count the
    /// threads that did nothing since the previous one as idle (for tests). No effect
    /// under [`manual`](Self::manual).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = ldnr::Policy::follow_threads().idle_after(Duration::from_secs(2));
    /// assert_eq!(p.idle(), Some(Duration::from_secs(2)));
    /// assert_eq!(ldnr::Policy::follow_threads().idle(), None);
    /// ```
    #[cfg(feature = "std")]
    pub const fn idle_after(mut self, after: core::time::Duration) -> Self {
        self.idle = Some(after);
        self
    }

    /// The idle rule's time, if it is on ([`idle_after`](Self::idle_after)).
    pub const fn idle(&self) -> Option<core::time::Duration> {
        self.idle
    }

    /// Whether this is [`follow_threads`](Self::follow_threads).
    pub const fn follows_threads(&self) -> bool {
        matches!(self.kind, Kind::FollowThreads)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::manual()
    }
}

/// The policy of one instance and the lock that serializes its runs.
#[derive(Debug)]
pub(crate) struct PolicyState {
    policy: Policy,
    running: AtomicBool,
    /// Replicas the policy added and removed (statistics; written by the running
    /// thread only).
    pub(crate) added: AtomicUsize,
    pub(crate) removed: AtomicUsize,
    /// Adds that failed and rounds that panicked.
    pub(crate) failed: AtomicUsize,
    /// Parked threads' operations that woke the policy.
    pub(crate) woken: AtomicUsize,
    /// The idle rule's state, if it is on.
    #[cfg(feature = "std")]
    idle: Option<Idle>,
}

/// What the idle rule keeps between runs.
#[cfg(feature = "std")]
#[derive(Debug)]
struct Idle {
    after: core::time::Duration,
    /// The origin of `due`.
    epoch: std::time::Instant,
    /// When the next check is due, in milliseconds since `epoch` (wrapping: compared by
    /// difference, so a 32-bit count works for 24 days between checks).
    due: AtomicUsize,
    /// What the runs saw of each thread index. Only the thread running the policy (it
    /// holds `running`) touches it.
    seen: UnsafeCell<Vec<Seen>>,
}

/// One thread index as the idle rule last saw it.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The registration (the context's generation) these counts are of; `None` for an
    /// index not seen yet (every generation, `RETIRED` included, differs from it).
    generation: Option<u64>,
    ops: usize,
    /// When a run last saw `ops` change (or the registration first).
    since: std::time::Instant,
}

impl PolicyState {
    pub(crate) fn new(policy: Policy) -> Self {
        Self {
            policy,
            running: AtomicBool::new(false),
            added: AtomicUsize::new(0),
            removed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            woken: AtomicUsize::new(0),
            #[cfg(feature = "std")]
            idle: policy
                .idle
                .filter(|_| policy.follows_threads())
                .map(|after| Idle {
                    after,
                    epoch: std::time::Instant::now(),
                    due: AtomicUsize::new(0),
                    seen: UnsafeCell::new(Vec::new()),
                }),
        }
    }

    /// Whether an idle check is due (the idle rule is on and a quarter of its time has
    /// passed since the last run). A clock read; called once per 1,024 operations of a
    /// thread and by `maintain`.
    #[cfg(feature = "std")]
    pub(crate) fn idle_check_due(&self) -> bool {
        self.idle.as_ref().is_some_and(|idle| {
            let now = idle.millis(std::time::Instant::now());
            // Wrapping difference: due when `now` is at or past `due`.
            now.wrapping_sub(idle.due.load(Ordering::Relaxed)) <= usize::MAX / 2
        })
    }

    /// Whether thread events concern the policy.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.policy.follows_threads()
    }
}

#[cfg(feature = "std")]
impl Idle {
    fn millis(&self, at: std::time::Instant) -> usize {
        // Truncation is the point: the count wraps (see `due`).
        at.duration_since(self.epoch).as_millis() as usize
    }

    /// Which registrations of `seen` are active at `now` (`regs`: thread index,
    /// generation, operation count, in index order), remembering what it saw; sets the
    /// next check a quarter of `after` ahead.
    ///
    /// # Safety
    ///
    /// The caller holds the policy's `running` flag (one run at a time).
    unsafe fn active(&self, regs: &[(usize, u64, usize)], now: std::time::Instant) -> Vec<bool> {
        // At most 2^30 ms (12 days) ahead, so that the wrapping comparison of `due`
        // holds on 32 bits and no `Instant` overflows (`Duration::MAX` means "never").
        let step = (self.after / 4).min(core::time::Duration::from_millis(1 << 30));
        let next = self.millis(now.checked_add(step).unwrap_or(now));
        self.due.store(next, Ordering::Relaxed);
        // SAFETY: one run at a time, by the caller's contract.
        self.seen.with_mut(|seen| unsafe {
            let seen = &mut *seen;
            regs.iter()
                .map(|&(tid, generation, ops)| {
                    if seen.len() <= tid {
                        seen.resize(
                            tid + 1,
                            Seen {
                                generation: None,
                                ops: 0,
                                since: now,
                            },
                        );
                    }
                    let s = &mut seen[tid];
                    if s.generation != Some(generation) || s.ops != ops {
                        *s = Seen {
                            generation: Some(generation),
                            ops,
                            since: now,
                        };
                    }
                    // Active: it changed at this run, or less than `after` ago.
                    s.since == now || now.duration_since(s.since) < self.after
                })
                .collect()
        })
    }
}

/// The nodes `follow_threads` wants, from `(node, threads)` counts, the nodes that have
/// a replica now (`has`: on equal counts they win, so that a tie never moves a replica)
/// and the node of the busiest live replica (the fallback when no node has enough
/// threads).
fn wanted(
    policy: &Policy,
    mut counts: Vec<(NodeId, usize)>,
    has: &[NodeId],
    fallback: NodeId,
) -> Vec<NodeId> {
    counts.retain(|&(_, n)| n >= policy.min_threads);
    counts.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(has.contains(&b.0).cmp(&has.contains(&a.0)))
            .then(a.0 .0.cmp(&b.0 .0))
    });
    counts.truncate(policy.max_replicas);
    let mut nodes: Vec<NodeId> = counts.into_iter().map(|(node, _)| node).collect();
    if nodes.is_empty() {
        nodes.push(fallback);
    }
    nodes
}

/// Marks every thread of a node with a thread inside an operation active (`nodes`: each
/// thread's node and whether it is busy, in the order of `active`): that node's replica
/// stays as it is, since removing it would wait for the operation.
#[cfg(feature = "std")]
fn keep_busy_nodes(active: &mut [bool], nodes: &[(NodeId, bool)]) {
    let busy: Vec<NodeId> = nodes
        .iter()
        .filter(|&&(_, busy)| busy)
        .map(|&(node, _)| node)
        .collect();
    for (a, (node, _)) in active.iter_mut().zip(nodes) {
        *a = *a || busy.contains(node);
    }
}

/// Counts one more thread on `node` in the `(node, threads)` counts.
fn count_one(counts: &mut Vec<(NodeId, usize)>, node: NodeId) {
    match counts.iter_mut().find(|(n, _)| *n == node) {
        Some((_, c)) => *c += 1,
        None => counts.push((node, 1)),
    }
}

/// The nodes of idle threads (`idle`: index, node) that this run does not want (`want`)
/// but would with one more active thread there (from the active counts `counts`): where
/// one parked thread's wake brings the replica back.
fn worth_waking(
    policy: &Policy,
    counts: &[(NodeId, usize)],
    idle: &[(usize, NodeId)],
    want: &[NodeId],
    has: &[NodeId],
    fallback: NodeId,
) -> Vec<NodeId> {
    let mut would: Vec<NodeId> = Vec::new();
    for &(_, node) in idle {
        if want.contains(&node) || would.contains(&node) {
            continue;
        }
        let mut one = counts.to_vec();
        count_one(&mut one, node);
        if wanted(policy, one, has, fallback).contains(&node) {
            would.push(node);
        }
    }
    would
}

/// Runs `round` while the policy flag of `poison` is raised, in one thread at a time
/// (`running`); see [`Shared::run_policy`] for `wait`.
///
/// No event is lost: an event raises the flag before its thread calls this, and the flag
/// is taken only at the start of a round, so either a round that starts after the raise
/// sees it, or the flag stays raised when every run has returned (for the next
/// operation's entry). The hand-over between a finishing run (`running` cleared, then the
/// flag looked at) and a new event (flag raised, then `running` looked at) is a Dekker
/// pair, hence `SeqCst` on both sides: one of the two sees the other. A round that
/// unwinds clears `running` on the way out (its event is not raised again: the same
/// panic would come back with every operation).
pub(crate) fn run_rounds(
    poison: &Poison,
    running: &AtomicBool,
    wait: bool,
    mut round: impl FnMut(),
) {
    struct Running<'a>(&'a AtomicBool);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            // SeqCst: the first half of the Dekker pair with `request_policy`.
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let mut backoff = Backoff::new();
    loop {
        // Test, then test-and-set: threads that find a run going leave its line alone.
        if running.load(Ordering::Relaxed)
            || running
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
        {
            if !wait {
                // The running thread looks at the flag before it stops.
                return;
            }
            backoff.snooze();
            continue;
        }
        let guard = Running(running);
        while poison.take_policy() {
            if poison.is_set() {
                break;
            }
            round();
        }
        drop(guard);
        // SeqCst: the second half of the Dekker pair (an event raised while we finished
        // is seen here, or its thread sees `running` clear and runs it itself).
        if poison.policy_raised() {
            continue;
        }
        return;
    }
}

impl<D> Shared<D>
where
    D: Dispatch + Clone + Send + Sync,
{
    /// Notes a thread event for the policy: the next operation (or the caller, through
    /// [`run_policy`](Self::run_policy)) runs it.
    #[inline]
    pub(crate) fn threads_changed(&self, orphan: bool) {
        if self.policy.active() {
            self.poison.request_policy(orphan);
        }
    }

    /// Runs the policy while a thread event asks for it. With `wait`, the caller (the
    /// thread whose event it is) waits for a run by another thread to finish and then
    /// looks again, so that its event is acted on when this returns; without (an
    /// operation that saw the flag of another thread's exit), it leaves the event to the
    /// running thread. The caller is outside every operation, lock and callback of this
    /// instance.
    #[cold]
    #[inline(never)]
    pub(crate) fn run_policy(&self, wait: bool) {
        if self.policy.active() {
            run_rounds(&self.poison, &self.policy.running, wait, || {
                // A round that panics (the affinity manager, `D::clone` or `D::drop`)
                // changed nothing it did not finish (I8); with `std` the panic is counted
                // and dropped here, so it never reaches the unrelated call that happened
                // to run the policy.
                #[cfg(feature = "std")]
                if let Err(payload) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.policy_round()))
                {
                    bump(&self.policy.failed, 1);
                    crate::replica::context::discard(payload);
                }
                #[cfg(not(feature = "std"))]
                self.policy_round();
            });
        }
    }

    /// One run of `follow_threads`: adds, then removes.
    fn policy_round(&self) {
        // The idle threads (index, node), if the idle rule is on, and the active threads
        // per node.
        let mut idle: Vec<(usize, NodeId)> = Vec::new();
        let counts_now: Vec<(NodeId, usize)>;
        let (counts, live, fallback) = {
            let admin = self.threads.admin();
            self.give_back_exited(&admin);
            let regs: Vec<(usize, u64, NodeId, usize)> = self
                .threads
                .registrations(&admin)
                .map(|(tid, ctx)| {
                    (
                        tid,
                        ctx.generation.load(Ordering::Relaxed),
                        NodeId(ctx.node.load(Ordering::Relaxed)),
                        ctx.ops.load(Ordering::Relaxed),
                    )
                })
                .collect();
            #[cfg(feature = "std")]
            let active = match &self.policy.idle {
                Some(rule) => {
                    let seen: Vec<_> = regs.iter().map(|&(t, g, _, o)| (t, g, o)).collect();
                    // SAFETY: this is a run of the policy (`run_rounds` holds `running`).
                    let mut active = unsafe { rule.active(&seen, std::time::Instant::now()) };
                    // A thread inside an operation (a long read, say) is not idle: its
                    // count changes only when the next one starts, and removing its
                    // replica would wait for it.
                    // And a busy thread keeps its whole node as it is: its replica
                    // would go as well if the node's other threads were idle (under
                    // `min_threads`, say).
                    let nodes: Vec<(NodeId, bool)> = regs
                        .iter()
                        .map(|&(tid, _, node, _)| (node, self.threads.context(tid).busy()))
                        .collect();
                    keep_busy_nodes(&mut active, &nodes);
                    active
                }
                None => alloc::vec![true; regs.len()],
            };
            #[cfg(not(feature = "std"))]
            let active = alloc::vec![true; regs.len()];
            let mut counts: Vec<(NodeId, usize)> = Vec::new();
            for (&(tid, _, node, _), active) in regs.iter().zip(active) {
                if !active {
                    idle.push((tid, node));
                    continue;
                }
                count_one(&mut counts, node);
            }
            counts_now = counts.clone();
            let live: Vec<(crate::ReplicaId, NodeId, usize)> = self
                .replicas
                .iter()
                .filter_map(|(_, r)| {
                    r.id()
                        .map(|id| (id, r.node(), r.threads.load(Ordering::Relaxed)))
                })
                .collect();
            let fallback = live
                .iter()
                .max_by(|a, b| a.2.cmp(&b.2).then(b.0.get().cmp(&a.0.get())))
                .map(|r| r.1)
                .expect("an instance always has a live replica");
            (counts, live, fallback)
        };
        let has: Vec<NodeId> = live.iter().map(|r| r.1).collect();
        let want = wanted(&self.policy.policy, counts, &has, fallback);
        if !idle.is_empty() {
            // Parked before anything changes, so that a change that fails or panics half
            // way leaves no idle thread without its wake-up. Only where the thread's wake
            // alone would bring its node's replica back (one more active thread there):
            // a thread whose node stays unwanted (`min_threads`, `max_replicas`) is served
            // elsewhere anyway, and its wake would only cost a round.
            let would = worth_waking(
                &self.policy.policy,
                &counts_now,
                &idle,
                &want,
                &has,
                fallback,
            );
            self.park(&idle, &want, &would);
        }
        // Adds first: threads of a wanted node move to its new replica. A failure (the
        // node's memory policy refused) leaves that node served by the nearest replica;
        // the next event tries again. An instance full of replicas gets room from the
        // removals below: those adds are tried again after them.
        let mut full = Vec::new();
        for &node in &want {
            if !has.contains(&node) {
                match self.add_replica(node) {
                    Ok(_) => bump(&self.policy.added, 1),
                    Err(crate::Error::TooManyReplicas { .. }) => full.push(node),
                    Err(_) => bump(&self.policy.failed, 1),
                }
            }
        }
        // Then removals: replicas on nodes not wanted, and second replicas of a node.
        let mut kept: Vec<NodeId> = Vec::new();
        for &(id, node, _) in &live {
            if want.contains(&node) && !kept.contains(&node) {
                kept.push(node);
                continue;
            }
            // `LastReplica` cannot happen (a wanted node has a replica now, or the
            // fallback's replica stays), `UnknownReplica` only if a manual call removed it
            // meanwhile: either way there is nothing to do.
            if self.remove_replica(id).is_ok() {
                bump(&self.policy.removed, 1);
            }
        }
        for node in full {
            match self.add_replica(node) {
                Ok(_) => {
                    bump(&self.policy.added, 1);
                    // Its node's threads moved to it: the removals get another round.
                    self.poison.request_policy(false);
                }
                Err(_) => bump(&self.policy.failed, 1),
            }
        }
    }

    /// Parks the idle threads whose node this run does not want (`want`) but would if
    /// one of them were active (`would`), so that their next operation wakes the policy; unparks
    /// the others. A thread that operated between this run's count and its parking is
    /// parked all the same: its next operation wakes the policy, which then counts it
    /// active (one round too many, no operation lost). Parking pokes the thread's
    /// operation count so that its next operation makes its periodic check; a poke that
    /// races with the thread's own count is lost, and the check then comes at most
    /// `MIGRATION_CHECK_EVERY` operations later.
    fn park(&self, idle: &[(usize, NodeId)], want: &[NodeId], would: &[NodeId]) {
        for &(tid, node) in idle {
            let parked = !want.contains(&node) && would.contains(&node);
            let ctx = self.threads.context(tid);
            if ctx.parked.load(Ordering::Relaxed) != parked {
                ctx.parked.store(parked, Ordering::Relaxed);
                if parked {
                    // Its next operation checks (and so finds itself parked).
                    ctx.poke();
                }
            }
        }
    }

    /// A parked thread's operation: it wakes the policy and waits for the run (which
    /// counts it active and brings its node's replica back) before its operation runs.
    #[cold]
    #[inline(never)]
    pub(crate) fn wake(&self, tid: usize) {
        self.threads
            .context(tid)
            .parked
            .store(false, Ordering::Relaxed);
        bump(&self.policy.woken, 1);
        self.threads_changed(false);
        self.run_policy(true);
    }

    /// Runs the policy if an idle check is due (see [`Policy`]'s idle rule), without
    /// waiting for a run by another thread.
    #[cfg(feature = "std")]
    #[cold]
    #[inline(never)]
    pub(crate) fn check_idle(&self, wait: bool) {
        if self.policy.idle_check_due() {
            self.threads_changed(false);
            self.run_policy(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parked thread's wake makes only that thread active: under `min_threads(2)`,
    /// two idle threads on a node without active ones are not worth waking (one wake
    /// would not bring a replica); with one active thread there, they are.
    #[test]
    fn only_threads_whose_wake_brings_the_replica_back_are_worth_waking() {
        let n = |i| NodeId(i);
        let p = Policy::follow_threads().min_threads(2);
        let idle = [(0, n(1)), (1, n(1))];
        assert!(worth_waking(&p, &[], &idle, &[n(0)], &[n(0)], n(0)).is_empty());
        assert_eq!(
            worth_waking(&p, &[(n(1), 1)], &idle, &[n(0)], &[n(0)], n(0)),
            [n(1)]
        );
        // A wanted node's threads need no wake; `max_replicas(1)` with a busier node
        // elsewhere: none either.
        assert!(worth_waking(&p, &[(n(1), 2)], &idle, &[n(1)], &[n(1)], n(1)).is_empty());
        let one = Policy::follow_threads().max_replicas(1);
        assert!(worth_waking(&one, &[(n(2), 3)], &idle, &[n(2)], &[n(2)], n(2)).is_empty());
        assert_eq!(
            worth_waking(
                &Policy::follow_threads(),
                &[],
                &idle,
                &[n(0)],
                &[n(0)],
                n(0)
            ),
            [n(1)]
        );
    }

    /// A thread inside an operation keeps every thread of its node active.
    #[cfg(feature = "std")]
    #[test]
    fn a_busy_thread_keeps_its_whole_node_active() {
        let n = |i| NodeId(i);
        let mut active = [false, false, true, false];
        keep_busy_nodes(
            &mut active,
            &[(n(1), true), (n(1), false), (n(2), false), (n(2), false)],
        );
        assert_eq!(active, [true, true, true, false]);
    }

    #[test]
    fn wanted_nodes_follow_the_counts() {
        let p = Policy::follow_threads();
        let n = |i| NodeId(i);
        assert_eq!(
            wanted(&p, alloc::vec![(n(2), 1), (n(0), 3)], &[], n(0)),
            [n(0), n(2)]
        );
        assert_eq!(wanted(&p, alloc::vec![], &[], n(1)), [n(1)]);
        let p = Policy::follow_threads().min_threads(2).max_replicas(2);
        let counts = alloc::vec![(n(0), 1), (n(1), 2), (n(2), 5), (n(3), 2)];
        assert_eq!(wanted(&p, counts.clone(), &[], n(0)), [n(2), n(1)]);
        // On a tie, a node that has a replica keeps it.
        assert_eq!(wanted(&p, counts, &[n(3)], n(0)), [n(2), n(3)]);
        assert_eq!(wanted(&p, alloc::vec![(n(3), 1)], &[], n(3)), [n(3)]);
        assert_eq!(Policy::follow_threads().min_threads(0).min_threads, 1);
        assert_eq!(Policy::follow_threads().max_replicas(0).max_replicas, 1);
        assert_eq!(
            Policy::follow_threads()
                .max_replicas(usize::MAX)
                .max_replicas,
            MAX_REPLICAS
        );
    }
}
