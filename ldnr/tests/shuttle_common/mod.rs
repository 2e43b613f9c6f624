//! The scenario runner and history checker behind `tests/shuttle.rs`.
//!
//! A scenario is a replicated [`Seq`] (the data records the order in which a replica
//! applied the writes), some worker threads with fixed scripts of reads and writes, and
//! optionally a churner thread that adds and removes replicas between operations of its
//! own. Every operation is recorded with the logical times of its invocation and its
//! return (a shuttle atomic counter, so each is also a scheduling point). After all
//! threads joined, the main thread registers fresh threads until it has read every live
//! replica, and checks:
//!
//! 1. **Replica agreement**: every replica holds the same sequence `F`, and has applied
//!    exactly `|F|` log entries.
//! 2. **Exactly once**: `F` holds every written id exactly once (no write lost or
//!    applied twice); all write responses are distinct.
//! 3. **Linearizability**: each write's response is its index in `F`; each read returns
//!    a prefix of `F` (its length, or the whole prefix); and whenever an operation
//!    returned before another was invoked, its place in `F` comes first. Placing a write
//!    of index `i` at `2i + 1` and a read of length `l` at `2l`, these conditions are
//!    exactly "sorting the operations by place is a legal serial order that respects
//!    real time", so the check is complete for this object.
//! 4. **Consistent snapshots**: a `replicas()` taken by the churner while the others run
//!    lists exactly the replicas it has not removed; the final one has the expected
//!    replica count and its thread counts add up to the registered threads.
//! 5. **Clones one at a time** (scenarios with [`Scenario::probe_clones`]): no two
//!    threads ever clone the same logged write at once (log L4, and L6 for the
//!    sole-replica path that skips the clone lock). Each write then carries a [`Probe`]
//!    whose `Clone` raises a flag, yields to the scheduler and lowers it again; finding
//!    the flag already raised records the write and panics.
//!
//! 6. **Reads exclude writes** (scenarios with [`Scenario::probe_reads`]): no write is
//!    applied to a replica while a read is inside it. Each replica counts the probed
//!    reads inside it ([`Read::Probed`], which yields to the scheduler in the middle),
//!    and a write that finds one records it; shuttle does not check data races, so this
//!    is what shows a writer that did not wait for a reader (rwlock R1, R2).
//!
//! Scripts may also give their registration back and register again
//! ([`Step::Reregister`]: indices are reused, by the thread itself or by another one) or
//! switch to `thread_token()` ([`Step::ThreadToken`]: the index is given back after the
//! thread exits); check 4 then counts only the registrations still held.
//!
//! Deadlocks (every thread blocked) and livelocks (a run past the step bound, e.g.
//! threads spinning on a full log that nobody drains) fail the run too.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{
    AtomicBool as StdAtomicBool, AtomicUsize as StdAtomicUsize, Ordering as StdOrdering,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldnr::{
    AffinityError, AffinityManager, Dispatch, NodeId, NodeReplicated, ReplicaId, SavedPolicy,
};
use shuttle::scheduler::{
    PctScheduler, RandomScheduler, ReplayScheduler, Schedule, Scheduler, Task, TaskId,
};
use shuttle::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use shuttle::{Config, MaxSteps, Runner};

/// A sequence of write ids: each replica records the order in which it applied writes.
/// With `reading` (scenarios with [`Scenario::probe_reads`]), each replica also counts the
/// probed reads inside it now, and a write that finds one there records it (check 6).
#[derive(Debug, Default)]
pub struct Seq {
    ids: Vec<u32>,
    reading: Option<Arc<AtomicUsize>>,
}

impl Clone for Seq {
    /// A new replica: the same ids, its own count of reads inside.
    fn clone(&self) -> Self {
        Seq {
            ids: self.ids.clone(),
            reading: self.reading.as_ref().map(|_| Arc::new(AtomicUsize::new(0))),
        }
    }
}

/// Set when a write was applied to a replica while a probed read was inside it (check
/// 6); reset at the start of each execution (the tests of a process run one at a time).
static READ_OVERLAP: StdAtomicBool = StdAtomicBool::new(false);

/// Read operations of [`Seq`].
#[derive(Debug, Clone, Copy)]
pub enum Read {
    /// How many writes the replica has applied.
    Len,
    /// The whole sequence.
    All,
    /// `Len`, counted as inside the replica while it yields to the scheduler in the
    /// middle: its read lock must keep every writer out meanwhile (rwlock R1, and R2: the
    /// reader is in the replica's reader set before it announces itself), and a write
    /// applied to the replica then records the overlap. Answers `Resp::Len`.
    Probed,
}

/// A response of [`Seq`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// A write's index: the number of writes applied before it (a counter's
    /// pre-increment value).
    Index(usize),
    /// The answer to [`Read::Len`].
    Len(usize),
    /// The answer to [`Read::All`].
    All(Vec<u32>),
}

/// A write of [`Seq`]: appends `id`. With a probe, its `Clone` checks that no other thread
/// clones the same write at the same time.
#[derive(Debug)]
pub struct Op {
    id: u32,
    probe: Option<Arc<Probe>>,
}

/// What one write's clones share: whether one is under way, and where an overlap is
/// recorded (shared by all the writes of one execution).
#[derive(Debug)]
pub struct Probe {
    /// Raised while a thread clones the write. A shuttle atomic, so that raising and
    /// lowering it are scheduling points.
    cloning: AtomicBool,
    /// `0`, or `1 +` the id of the first write that two threads cloned at once.
    overlap: Arc<StdAtomicUsize>,
}

impl Clone for Op {
    /// Asserts that it runs alone: the log hands a thread a `&Op` to clone only while no
    /// other thread clones the same entry (log L4, L6), which is what lets a
    /// `WriteOperation` be `Send` without `Sync`. The yield lets another thread run in
    /// the middle of the clone (and, under PCT, lowers this thread's priority), so a
    /// second clone of the same entry, if the protocol allows one, lands inside the
    /// first.
    fn clone(&self) -> Self {
        if let Some(probe) = &self.probe {
            if probe.cloning.swap(true, Ordering::SeqCst) {
                // Recorded as well as raised: this panic happens inside a combiner, which
                // catches it (panic isolation) and may hand it to no one.
                let _ = probe.overlap.compare_exchange(
                    0,
                    self.id as usize + 1,
                    StdOrdering::Relaxed,
                    StdOrdering::Relaxed,
                );
                panic!("two threads clone write {} at the same time", self.id);
            }
            shuttle::thread::yield_now();
            probe.cloning.store(false, Ordering::SeqCst);
        }
        Op {
            id: self.id,
            probe: self.probe.clone(),
        }
    }
}

impl Dispatch for Seq {
    type ReadOperation = Read;
    type WriteOperation = Op;
    type Response = Resp;

    fn dispatch(&self, op: Read) -> Resp {
        match op {
            Read::Len => Resp::Len(self.ids.len()),
            Read::All => Resp::All(self.ids.clone()),
            Read::Probed => {
                if let Some(reading) = &self.reading {
                    reading.fetch_add(1, Ordering::SeqCst);
                    shuttle::thread::yield_now();
                    reading.fetch_sub(1, Ordering::SeqCst);
                }
                Resp::Len(self.ids.len())
            }
        }
    }

    fn dispatch_mut(&mut self, op: Op) -> Resp {
        if let Some(reading) = &self.reading {
            if reading.load(Ordering::SeqCst) != 0 {
                READ_OVERLAP.store(true, StdOrdering::Relaxed);
                panic!("write {} applied while a read is inside the replica", op.id);
            }
        }
        self.ids.push(op.id);
        Resp::Index(self.ids.len() - 1)
    }
}

/// A simulated machine with `nodes` NUMA nodes: successive registrations are placed on
/// nodes 0, 1, .., so which thread lands on which node depends on the schedule (a
/// plain std counter: shuttle runs one thread at a time, and the order of calls is
/// fixed by the schedule, so replays are deterministic).
#[derive(Debug)]
pub struct SimNodes {
    nodes: usize,
    next: StdAtomicUsize,
}

impl AffinityManager for SimNodes {
    fn current_node(&self) -> NodeId {
        NodeId(self.next.fetch_add(1, StdOrdering::Relaxed) % self.nodes)
    }

    fn nodes(&self) -> Vec<NodeId> {
        (0..self.nodes).map(NodeId).collect()
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if node.0 < self.nodes {
            Ok(SavedPolicy::UNCHANGED)
        } else {
            Err(AffinityError::UnknownNode(node))
        }
    }

    fn restore_memory_policy(&self, _saved: SavedPolicy) -> Result<(), AffinityError> {
        Ok(())
    }
}

/// One operation of a thread's script.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Write a fresh id.
    Write,
    /// `Read::Len`.
    Len,
    /// `Read::All`.
    All,
    /// `add_replica` on this node (churner only).
    Add(usize),
    /// `remove_replica` of the k-th initial replica (churner only).
    RemoveInitial(usize),
    /// `remove_replica` of the k-th replica this churner added (churner only).
    RemoveAdded(usize),
    /// Take a `replicas()` snapshot and check it (churner only).
    Snapshot,
    /// Deregister, then register again: the index goes back to the free list and the new
    /// registration takes the most recently given-back index (this thread's own, or
    /// another's that deregistered meanwhile) and is matched afresh (dispatcher D1). The
    /// thread's later operations read through whatever reader set the index was left in.
    Reregister,
    /// Deregister, and from then on use `thread_token()`: registered on its first use,
    /// given back after the thread exits by the next admin path of another thread
    /// (registration or a snapshot), which takes the index out of its reader set.
    ThreadToken,
}

/// A configuration to explore.
#[derive(Debug)]
pub struct Scenario {
    /// Simulated NUMA nodes.
    pub nodes: usize,
    /// The nodes of the initial replicas.
    pub replicas: &'static [usize],
    /// Log capacity in entries.
    pub log: usize,
    /// One script per worker thread (reads and writes).
    pub workers: &'static [&'static [Step]],
    /// The churner's script; empty for no churner thread.
    pub churn: &'static [Step],
    /// Whether every write carries a [`Probe`] that checks its clones do not overlap
    /// (check 5). It adds three scheduling points to each clone, so it changes the
    /// schedules a seed explores; the scenarios written before it leave it off.
    pub probe_clones: bool,
    /// Whether every [`Step::Len`] is a [`Read::Probed`] (check 6). It adds a scheduling
    /// point inside each such read; the scenarios written before it leave it off.
    pub probe_reads: bool,
}

/// A recorded operation.
#[derive(Debug, Clone)]
enum Done {
    Write { id: u32, index: usize },
    Len(usize),
    All(Vec<u32>),
}

#[derive(Debug, Clone)]
struct Event {
    thread: usize,
    op: Done,
    invoke: usize,
    ret: usize,
}

impl Event {
    /// The operation's place in the sequence of writes: a write of index `i` at
    /// `2i + 1`, a read that saw `l` writes at `2l`.
    fn place(&self) -> usize {
        match &self.op {
            Done::Write { index, .. } => 2 * index + 1,
            Done::Len(l) => 2 * l,
            Done::All(s) => 2 * s.len(),
        }
    }
}

fn write_id(thread: usize, k: usize) -> u32 {
    (thread * 1000 + k) as u32
}

/// Runs one thread's script (registering first); returns its recorded operations.
/// Reconfigurations are not recorded: they have no place in the sequence.
fn run_thread(
    nr: &NodeReplicated<Seq>,
    clock: &AtomicUsize,
    thread: usize,
    script: &[Step],
    initial: &[ReplicaId],
    overlap: Option<&Arc<StdAtomicUsize>>,
    probe_reads: bool,
) -> Vec<Event> {
    let mut tkn = nr.register().expect("below the thread limit");
    let mut added = Vec::new();
    // The replicas that must be live: only this thread reconfigures, and
    // reconfigurations are complete when they return.
    let mut live = initial.to_vec();
    let mut events = Vec::new();
    let mut writes = 0;
    for &step in script {
        let invoke = clock.fetch_add(1, Ordering::SeqCst);
        let op = match step {
            Step::Write => {
                let id = write_id(thread, writes);
                writes += 1;
                let probe = overlap.map(|overlap| {
                    Arc::new(Probe {
                        cloning: AtomicBool::new(false),
                        overlap: overlap.clone(),
                    })
                });
                match nr.execute_mut(Op { id, probe }, tkn) {
                    Resp::Index(index) => Done::Write { id, index },
                    other => panic!("thread {thread}: a write answered {other:?}"),
                }
            }
            Step::Len => {
                match nr.execute(if probe_reads { Read::Probed } else { Read::Len }, tkn) {
                    Resp::Len(l) => Done::Len(l),
                    other => panic!("thread {thread}: Len answered {other:?}"),
                }
            }
            Step::All => match nr.execute(Read::All, tkn) {
                Resp::All(s) => Done::All(s),
                other => panic!("thread {thread}: All answered {other:?}"),
            },
            Step::Add(node) => {
                let id = nr.add_replica(NodeId(node)).expect("add_replica");
                added.push(id);
                live.push(id);
                continue;
            }
            Step::RemoveInitial(_) | Step::RemoveAdded(_) => {
                let id = match step {
                    Step::RemoveInitial(k) => initial[k],
                    Step::RemoveAdded(k) => added[k],
                    _ => unreachable!(),
                };
                nr.remove_replica(id).expect("remove_replica");
                live.retain(|&r| r != id);
                continue;
            }
            Step::Snapshot => {
                check_snapshot(nr, &live);
                continue;
            }
            Step::Reregister => {
                nr.deregister(tkn).expect("a registered token");
                // Lets the others run while the index is free (PCT lowers the priority of
                // a thread that yields), so that another thread's registration takes it.
                shuttle::thread::yield_now();
                tkn = nr.register().expect("below the thread limit");
                continue;
            }
            Step::ThreadToken => {
                nr.deregister(tkn).expect("a registered token");
                tkn = nr.thread_token().expect("below the thread limit");
                assert_eq!(nr.thread_token().map(|t| t.index()), Ok(tkn.index()));
                continue;
            }
        };
        let ret = clock.fetch_add(1, Ordering::SeqCst);
        events.push(Event {
            thread,
            op,
            invoke,
            ret,
        });
    }
    events
}

/// A `replicas()` snapshot taken while other threads operate and register lists exactly
/// the `live` replicas, each once, and counts at least the calling thread.
fn check_snapshot(nr: &NodeReplicated<Seq>, live: &[ReplicaId]) {
    let infos = nr.replicas();
    assert_eq!(infos.len(), live.len(), "{infos:?}, expected {live:?}");
    assert!(
        live.iter().all(|id| infos.iter().any(|r| r.id == *id)),
        "{infos:?}, expected {live:?}"
    );
    let threads: usize = infos.iter().map(|r| r.threads).sum();
    assert!(
        (1..=MAX_THREADS).contains(&threads),
        "thread counts {infos:?}"
    );
}

/// One execution of `scenario`, with all checks.
pub fn execute(scenario: &'static Scenario) {
    let manager = Arc::new(SimNodes {
        nodes: scenario.nodes,
        next: StdAtomicUsize::new(0),
    });
    let nodes: Vec<NodeId> = scenario.replicas.iter().map(|&n| NodeId(n)).collect();
    let nr = Arc::new(
        NodeReplicated::builder(Seq {
            ids: Vec::new(),
            reading: scenario.probe_reads.then(|| Arc::new(AtomicUsize::new(0))),
        })
        .replicas(&nodes)
        .log_capacity(scenario.log)
        .max_threads(MAX_THREADS)
        .affinity(manager)
        .build()
        .expect("a valid configuration"),
    );
    // Read before any thread runs, so the churner's script does not depend on the schedule.
    let initial: Arc<[ReplicaId]> = nr.replicas().into_iter().map(|r| r.id).collect();
    assert_eq!(initial.len(), scenario.replicas.len());
    let clock = Arc::new(AtomicUsize::new(0));
    READ_OVERLAP.store(false, StdOrdering::Relaxed);
    let overlap = scenario
        .probe_clones
        .then(|| Arc::new(StdAtomicUsize::new(0)));

    let churner = (!scenario.churn.is_empty()).then_some(scenario.churn);
    let handles: Vec<_> = scenario
        .workers
        .iter()
        .copied()
        .chain(churner)
        .enumerate()
        .map(|(t, script)| {
            let (nr, clock, initial) = (nr.clone(), clock.clone(), initial.clone());
            let overlap = overlap.clone();
            shuttle::thread::spawn(move || {
                run_thread(
                    &nr,
                    &clock,
                    t,
                    script,
                    &initial,
                    overlap.as_ref(),
                    scenario.probe_reads,
                )
            })
        })
        .collect();
    let threads = handles.len();
    let joined: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
    // Before the threads' results: an overlapping clone can make a write's owner panic
    // (with the clone's panic, or a response from a lost write) and the replicas diverge,
    // and this names the cause.
    if let Some(overlap) = &overlap {
        let id = overlap.load(StdOrdering::Relaxed);
        assert!(
            id == 0,
            "two threads cloned write {} at the same time (log L4/L6)",
            id - 1
        );
    }
    // Likewise: the overlapping write panicked inside a combiner (its owner gets the
    // panic, or nobody if another replica's combiner answers it).
    assert!(
        !READ_OVERLAP.load(StdOrdering::Relaxed),
        "a write was applied to a replica while a probed read was inside it (rwlock R1/R2)"
    );
    let events: Vec<Event> = joined
        .into_iter()
        .flat_map(|r| r.expect("a thread panicked"))
        .collect();

    let expected: Vec<u32> = scenario
        .workers
        .iter()
        .copied()
        .chain(churner)
        .enumerate()
        .flat_map(|(t, script)| {
            let writes = script.iter().filter(|s| matches!(s, Step::Write)).count();
            (0..writes).map(move |k| write_id(t, k))
        })
        .collect();
    let count = |f: fn(&Step) -> bool| scenario.churn.iter().filter(|s| f(s)).count();
    let adds = count(|s| matches!(s, Step::Add(_)));
    let removes = count(|s| matches!(s, Step::RemoveInitial(_) | Step::RemoveAdded(_)));
    let live = scenario.replicas.len() + adds - removes;
    // Threads that ended on a `thread_token` gave their registration back as they
    // exited (the final check's first registration processes the exits).
    let exited = scenario
        .workers
        .iter()
        .copied()
        .chain(churner)
        .filter(|script| script.iter().any(|s| matches!(s, Step::ThreadToken)))
        .count();
    let seq = check_replicas(&nr, live, threads - exited, expected.len());
    check_history(&events, &seq, expected);
}

/// The thread limit of every scenario: the workers, the churner and the readers of the
/// final check.
const MAX_THREADS: usize = 64;

/// Reads every live replica through a freshly registered thread (registration matches
/// a thread to the nearest replica with the fewest threads, so registering until each
/// replica served a read reaches them all, idle ones included); checks that they all
/// hold the same sequence of `writes` writes and have applied exactly those entries,
/// and that the final snapshot has `live` replicas serving every registered thread
/// (`threads` of the scenario, still registered, and the fresh ones). Returns the
/// sequence.
fn check_replicas(
    nr: &NodeReplicated<Seq>,
    live: usize,
    threads: usize,
    writes: usize,
) -> Vec<u32> {
    let ids: Vec<ReplicaId> = nr.replicas().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), live, "replica count after the churn");
    let mut states: HashMap<ReplicaId, Vec<u32>> = HashMap::new();
    let mut registered = threads;
    while states.len() < ids.len() {
        let tkn = nr
            .register()
            .expect("the thread limit is enough to reach every replica");
        registered += 1;
        let id = nr.replica_of(tkn).expect("matched to a live replica");
        let Resp::All(state) = nr.execute(Read::All, tkn) else {
            panic!("All answered something else");
        };
        states.insert(id, state);
    }
    let mut all = states.iter();
    let (first_id, first) = all.next().expect("at least one replica");
    for (id, state) in all {
        assert_eq!(
            state, first,
            "replicas {id:?} and {first_id:?} applied different sequences"
        );
    }
    assert_eq!(first.len(), writes, "applied writes: {first:?}");
    let infos = nr.replicas();
    assert_eq!(infos.len(), live, "{infos:?}");
    assert_eq!(
        infos.iter().map(|r| r.threads).sum::<usize>(),
        registered,
        "thread counts do not add up to the registered threads: {infos:?}"
    );
    assert!(
        infos.iter().all(|r| r.applied == writes),
        "a replica's log position differs from the writes it applied: {infos:?}"
    );
    first.clone()
}

/// Checks exactly-once and linearizability of the recorded operations against the final
/// sequence `seq` (see the module docs). `expected` lists every id written.
fn check_history(events: &[Event], seq: &[u32], mut expected: Vec<u32>) {
    let mut applied = seq.to_vec();
    applied.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        applied, expected,
        "a write was lost or applied twice: final sequence {seq:?}"
    );
    let mut indices = Vec::new();
    for e in events {
        match &e.op {
            Done::Write { id, index } => {
                assert_eq!(
                    seq.get(*index),
                    Some(id),
                    "thread {}: write {id} answered index {index}, final sequence {seq:?}",
                    e.thread
                );
                indices.push(*index);
            }
            Done::Len(l) => assert!(
                *l <= seq.len(),
                "thread {}: read length {l} of {seq:?}",
                e.thread
            ),
            Done::All(s) => assert!(
                seq.starts_with(s),
                "thread {}: read {s:?}, not a prefix of the final sequence {seq:?}",
                e.thread
            ),
        }
    }
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(
        indices.len(),
        seq.len(),
        "two writes answered the same index"
    );
    for a in events {
        for b in events {
            if a.ret < b.invoke {
                assert!(
                    a.place() <= b.place(),
                    "real-time order violated: {a:?} returned before {b:?} was invoked, \
                     but comes after it in the sequence {seq:?}"
                );
            }
        }
    }
}

/// The scheduler of one exploration.
#[derive(Debug, Clone, Copy)]
pub enum Sched {
    /// Shuttle's random scheduler.
    Random,
    /// Probabilistic concurrency testing with this many priority change points plus one.
    Pct(usize),
}

/// Schedules explored by the tests of this process so far.
static TOTAL: StdAtomicUsize = StdAtomicUsize::new(0);

/// Explores `iterations` schedules of `scenario` (`LDNR_SHUTTLE_ITERS` overrides the
/// count) with `sched`, seeded with `seed` (`LDNR_SHUTTLE_SEED` overrides it; shuttle's
/// own `SHUTTLE_RANDOM_SEED` overrides both). With `LDNR_SHUTTLE_REPLAY` set to a
/// schedule that a failure printed, replays that schedule instead (run the one test
/// that failed). Prints and asserts the number of schedules run.
pub fn explore(
    name: &str,
    scenario: &'static Scenario,
    sched: Sched,
    iterations: usize,
    seed: u64,
) {
    let iterations = env_number("LDNR_SHUTTLE_ITERS").map_or(iterations, |n| n as usize);
    let seed = env_number("LDNR_SHUTTLE_SEED").unwrap_or(seed);
    let mut config = Config::new();
    // Shuttle warns that it treats every ordering as `SeqCst`; loom covers orderings.
    config.silence_warnings = true;
    // Room for the library's frames plus the checks in the main thread.
    config.stack_size = 1 << 18;
    // A run is a few thousand steps; far more means threads spin without progress.
    config.max_steps = MaxSteps::FailAfter(MAX_STEPS);
    let test = move || execute(scenario);
    let start = Instant::now();
    if let Ok(schedule) = std::env::var("LDNR_SHUTTLE_REPLAY") {
        // A schedule can be too long for an environment variable: take a file too.
        let schedule = std::fs::read_to_string(&schedule).unwrap_or(schedule);
        // Shuttle prints the schedule wrapped over lines and quoted; take it as printed.
        let schedule: String = schedule.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        Runner::new(ReplayScheduler::new_from_encoded(&schedule), config).run(test);
        eprintln!("shuttle {name}: replayed the given schedule without failure");
        return;
    }
    let stats = Arc::new(Stats::default());
    let inner: Box<dyn Scheduler + Send> = match sched {
        Sched::Random => Box::new(RandomScheduler::new_from_seed(seed, iterations)),
        Sched::Pct(depth) => Box::new(PctScheduler::new_from_seed(seed, depth, iterations)),
    };
    let counting = Counting {
        inner,
        stats: stats.clone(),
    };
    let failed = Failed {
        name,
        sched,
        seed,
        stats: &stats,
    };
    let runs = Runner::new(counting, config).run(test);
    std::mem::forget(failed);
    report(name, sched, seed, runs, &stats, start.elapsed());
    assert_eq!(runs, iterations, "shuttle ran fewer schedules than asked");
}

/// Says which schedule failed when an exploration unwinds (the schedule itself is
/// printed by shuttle).
struct Failed<'a> {
    name: &'a str,
    sched: Sched,
    seed: u64,
    stats: &'a Stats,
}

impl Drop for Failed<'_> {
    fn drop(&mut self) {
        eprintln!(
            "shuttle {}: failed in schedule {} ({:?}, seed {})",
            self.name,
            self.stats.schedules.load(StdOrdering::Relaxed),
            self.sched,
            self.seed
        );
    }
}

/// Scheduling decisions and thread switches over all schedules of one exploration.
#[derive(Debug, Default)]
struct Stats {
    /// Schedules started.
    schedules: StdAtomicUsize,
    steps: StdAtomicUsize,
    switches: StdAtomicUsize,
    max_steps: StdAtomicUsize,
    current: StdAtomicUsize,
}

/// A scheduler that counts the decisions of another, to show how much each schedule
/// interleaves.
struct Counting {
    inner: Box<dyn Scheduler + Send>,
    stats: Arc<Stats>,
}

impl Scheduler for Counting {
    fn new_execution(&mut self) -> Option<Schedule> {
        self.stats.current.store(0, StdOrdering::Relaxed);
        let schedule = self.inner.new_execution();
        if schedule.is_some() {
            self.stats.schedules.fetch_add(1, StdOrdering::Relaxed);
        }
        schedule
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        let next = self.inner.next_task(runnable, current, is_yielding);
        let s = &self.stats;
        s.steps.fetch_add(1, StdOrdering::Relaxed);
        if current.is_some() && next != current {
            s.switches.fetch_add(1, StdOrdering::Relaxed);
        }
        let now = s.current.fetch_add(1, StdOrdering::Relaxed) + 1;
        s.max_steps.fetch_max(now, StdOrdering::Relaxed);
        next
    }

    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
}

/// A run past this many scheduling steps fails as a livelock (the longest runs of the
/// scenarios take about 6,000).
const MAX_STEPS: usize = 50_000;

fn report(name: &str, sched: Sched, seed: u64, runs: usize, stats: &Stats, time: Duration) {
    let total = TOTAL.fetch_add(runs, StdOrdering::Relaxed) + runs;
    let per_run = |n: &StdAtomicUsize| n.load(StdOrdering::Relaxed) / runs.max(1);
    eprintln!(
        "shuttle {name}: {runs} schedules ({sched:?}, seed {seed}) in {time:.1?}, \
         {} steps and {} thread switches per schedule (at most {} steps); \
         {total} schedules in this process so far",
        per_run(&stats.steps),
        per_run(&stats.switches),
        stats.max_steps.load(StdOrdering::Relaxed),
    );
}

fn env_number(var: &str) -> Option<u64> {
    let value = std::env::var(var).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{var}={value:?} is not a number: {e}")),
    )
}
