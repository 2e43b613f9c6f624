//! The soak: many threads, mixed operations and continuous replica changes on one
//! replicated map for minutes, checked all along.
//!
//! `ldnr-demo soak` runs it for as long as asked, and `ldnr/tests/soak.rs` (an
//! `#[ignore]` test that CI runs with a budget) for a few minutes. [`run`] never hangs and never
//! panics on a finding: it returns a [`Summary`] whose `failures` say what went wrong.
//!
//! # What runs
//!
//! One [`NodeReplicated`] [`TestMap`] (its [`MapWrite::Increment`](crate::map::MapWrite::Increment) is the counter) on
//! [`Config::nodes`] NUMA nodes, pretend ones or the machine's ([`Config::affinity`],
//! through a [`Placement`] whose manager the map is built with), and these threads:
//!
//! - **workers** (more than the cores: oversubscription is the point), worker `t` on
//!   the `t % nodes`-th node (declared, or pinned to the node's CPUs), each running rounds of [`Config::ops_per_round`] random
//!   operations on four kinds of keys:
//!
//!   | keys | operations | checked |
//!   |---|---|---|
//!   | cold: `0..keys` | increment, get | each worker's own increments are a lower bound; at the end every replica holds exactly the increments issued per key |
//!   | hot: a few shared counters | increment, get | per round, the values the increments returned are exactly `start..start + n`: no gap, no duplicate (exactly once) |
//!   | own: one counter per worker | increment, get | each response is known in advance |
//!   | scratch: a few per worker | insert, remove, get | against the worker's own model |
//!   | register: a few shared keys | insert, remove, get | recorded with a shared clock; each round's history goes to the WGL checker ([`crate::lincheck`]) |
//!
//! - a **coordinator**, which ends every round at a barrier: with the workers quiescent it
//!   checks the hot counters, empties the register keys (so that the next round's history
//!   starts from empty registers) and hands the round's history to the checker;
//! - a **checker**, which checks the histories while the next rounds run;
//! - a **churner**, which keeps adding (on random nodes) and removing (random,
//!   least advanced or busiest) replicas, `1..=replicas_max` live, one change per
//!   [`Config::ops_per_change`] operations, and samples the live heap with the replica
//!   count at most once per [`Config::sample_every`];
//! - the caller's thread, the **monitor**: it stops the run at the deadline, and calls a
//!   stall when no operation completes (and no history is checked) for
//!   [`Config::stall`], or when one replica change takes that long; the failure then
//!   carries a dump of every thread's progress and current operation.
//!
//! At the end, with the replica set still, a token on every replica reads every key and
//! compares it with what the workers issued, and every replica must have applied exactly
//! the writes issued.
//!
//! # Memory
//!
//! With a counting allocator installed ([`heap::CountingAlloc`]), the live heap is
//! sampled right after a replica change, so each sample has an exact replica count.
//! Everything else the soak allocates is bounded (round buffers, at most two histories
//! queued), so noise only adds bytes: per replica count the *lowest* sample is the
//! baseline. "Flat" means that, for every replica count sampled at least three times
//! both in the first and in the last third of the run, the baseline did not grow by more
//! than half a replica (at least 4 MiB). Sampling starts with the third round, once the
//! round buffers have reached their size.
//!
//! The run ends once the deadline has passed *and* [`Config::min_rounds`] rounds and
//! [`Config::min_changes`] replica changes are done, so that a slow machine makes it
//! longer, never emptier.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ldnr::NodeReplicated;

use crate::heap;
use crate::lincheck::{Clock, MapEvent};
use crate::map::TestMap;
use crate::nodes::{Affinity, Placement};

mod report;
mod threads;

use report::memory;
pub use report::{HeapAt, Memory, Summary};
use threads::{
    checker_main, churner_main, coordinator_main, final_check, worker_main, CoordinatorEnd,
    WorkerEnd,
};

// Key ranges, told apart by their high bits (cold keys are `0..keys`, keys < 2^40).
/// Worker `t`'s own counter: `OWN + t`.
const OWN: u64 = 1 << 40;
/// Shared counters whose every increment is checked: `HOT + h`.
const HOT: u64 = 2 << 40;
/// Worker `t`'s scratch keys: `SCRATCH + t * SCRATCH_PER_WORKER + s`.
const SCRATCH: u64 = 3 << 40;
/// The recorded keys: `REGISTER + k`.
const REGISTER: u64 = 4 << 40;
/// Scratch keys per worker.
const SCRATCH_PER_WORKER: u64 = 16;
/// The most failure messages kept (the first ones; later ones are only counted).
const MAX_FAILURES: usize = 16;

/// What to run.
///
/// # Examples
///
/// ```
/// let c = ldnr_testkit::soak::Config::default();
/// assert!(c.threads > 2 && c.replicas_max > 1);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// How long to run (see [`Config::min_rounds`] and [`Config::min_changes`]).
    pub duration: Duration,
    /// Worker threads.
    pub threads: usize,
    /// The most live replicas (at least 1; the churner keeps `1..=replicas_max`).
    pub replicas_max: usize,
    /// Cold counters, pre-filled: the map's size, so one replica's size.
    pub keys: u64,
    /// NUMA nodes: pretend ones, or at most this many of the machine's under
    /// [`Affinity::Linux`].
    pub nodes: usize,
    /// The affinity manager: [`Affinity::Simulated`] (workers declare their node) or
    /// [`Affinity::Linux`] (workers are pinned to their node's CPUs).
    pub affinity: Affinity,
    /// The seed of every random choice (the schedule is the machine's).
    pub seed: u64,
    /// Log capacity in entries (small: the log wraps and lagging replicas are
    /// cross-combined all the time).
    pub log_capacity: usize,
    /// Shared counters whose every increment is checked.
    pub hot_keys: u64,
    /// Keys whose operations are recorded and checked for linearizability.
    pub register_keys: u64,
    /// Operations per worker per round.
    pub ops_per_round: usize,
    /// Worker operations between two replica changes.
    pub ops_per_change: u64,
    /// How long without progress makes a stall.
    pub stall: Duration,
    /// The least time between two heap samples.
    pub sample_every: Duration,
    /// Print a progress line to stderr this often.
    pub progress_every: Option<Duration>,
    /// The least number of rounds, whatever the duration.
    pub min_rounds: u64,
    /// The least number of replica changes, whatever the duration.
    pub min_changes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            duration: Duration::from_secs(120),
            threads: 8,
            replicas_max: 4,
            keys: 1 << 16,
            nodes: 4,
            affinity: Affinity::Simulated,
            seed: 1,
            log_capacity: 1024,
            hot_keys: 8,
            register_keys: 8,
            ops_per_round: 4096,
            ops_per_change: 4096,
            stall: Duration::from_secs(60),
            sample_every: Duration::from_secs(1),
            progress_every: None,
            min_rounds: 2,
            min_changes: 4,
        }
    }
}

impl Config {
    /// The map every replica starts as: cold, own and hot counters at 0, with room for
    /// twice as many keys as it will hold, so that removals never make it grow.
    fn initial_map(&self) -> TestMap {
        let held = self.keys
            + self.threads as u64 * (1 + SCRATCH_PER_WORKER)
            + self.hot_keys
            + self.register_keys;
        let mut m = std::collections::HashMap::with_capacity(2 * held as usize);
        m.extend((0..self.keys).map(|k| (k, 0)));
        m.extend((0..self.threads as u64).map(|t| (OWN + t, 0)));
        m.extend((0..self.hot_keys).map(|h| (HOT + h, 0)));
        TestMap(m)
    }

    /// The number of tokens registered while the replica set changes: the workers and
    /// the coordinator.
    fn participants(&self) -> usize {
        self.threads + 1
    }
}

/// Runs a soak (see the [module docs](self)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ldnr_testkit::soak::{run, Config};
///
/// let s = run(&Config {
///     duration: Duration::ZERO,
///     threads: 3,
///     keys: 256,
///     ops_per_round: 256,
///     ops_per_change: 64,
///     ..Config::default()
/// });
/// assert!(s.passed(), "{s}");
/// assert!(s.rounds >= 2 && s.adds + s.removes >= 4 && s.histories >= 2);
/// ```
pub fn run(config: &Config) -> Summary {
    let mut config = config.clone();
    config.threads = config.threads.max(1);
    config.replicas_max = config.replicas_max.clamp(1, ldnr::MAX_REPLICAS);
    config.nodes = config.nodes.max(1);
    config.keys = config.keys.clamp(1, OWN);
    config.hot_keys = config.hot_keys.max(1);
    config.register_keys = config.register_keys.max(1);
    let counting = heap::installed();
    let replica_bytes = counting.then(|| {
        let map = config.initial_map();
        let before = heap::live_bytes();
        let copy = map.clone();
        let bytes = heap::live_bytes() - before;
        drop(copy);
        bytes
    });
    // Workers are not pinned to single CPUs: the soak oversubscribes on purpose.
    let placement = Placement::new(config.affinity, config.nodes, false);
    config.nodes = placement.nodes().len();
    // Registrations: the participants, then at the final check at most
    // `(replicas - 1) * (participants + 1) + replicas` in all (see
    // `tokens_on_every_replica`).
    let (p, r) = (config.participants(), config.replicas_max);
    let max_threads = p + (r - 1) * (p + 1) + r;
    let nr = NodeReplicated::builder(config.initial_map())
        .replicas(&[placement.node_of(0)])
        .log_capacity(config.log_capacity)
        .max_threads(max_threads)
        .affinity(placement.manager())
        .build();
    let nr = match nr {
        Ok(nr) => nr,
        Err(e) => {
            return Summary {
                failures: vec![format!("could not build the map: {e}")],
                failure_count: 1,
                config: Some(config),
                ..Summary::default()
            }
        }
    };
    let sh = Arc::new(Shared::new(nr, placement, config));
    let mut summary = monitor(&sh);
    summary.memory = replica_bytes.map(|b| memory(&sh, b, summary.elapsed));
    if let Some(m) = &summary.memory {
        for (r, at) in &m.by_replicas {
            if let (Some((first, n)), Some((last, k))) = (at.first_third, at.last_third) {
                // Noise only adds bytes, and rarely: a few samples give the baseline.
                if n >= 3 && k >= 3 && last - first > m.tolerance {
                    sh.fail(format!(
                        "memory: with {r} replica(s) the live heap's low point grew from \
                         {first} B (first third) to {last} B (last third), more than {} B",
                        m.tolerance
                    ));
                }
            }
        }
    }
    let failures = sh.failures.lock().unwrap_or_else(|p| p.into_inner());
    summary.failures = failures.0.clone();
    summary.failure_count = failures.1;
    summary.config = Some(sh.config.clone());
    summary
}

/// State every thread of a soak shares.
struct Shared {
    nr: NodeReplicated<TestMap>,
    /// The nodes, and the manager `nr` was built with.
    placement: Placement,
    config: Config,
    start: Instant,
    /// The round barrier: the workers and the coordinator.
    barrier: Barrier,
    /// Set by the monitor: finish after the current round.
    stop: AtomicBool,
    /// Set by the coordinator before a round starts: leave instead of running it.
    last_round: AtomicBool,
    /// Set by the coordinator once every participant has registered.
    ready: AtomicBool,
    clock: Clock,
    workers: Vec<WorkerProbe>,
    /// What each worker hands the coordinator at the end of a round.
    slots: Vec<Mutex<RoundOut>>,
    rounds: AtomicU64,
    /// The coordinator's phase (a [`COORDINATOR_PHASES`] index).
    coordinator: AtomicU64,
    histories: AtomicU64,
    events: AtomicU64,
    adds: AtomicU64,
    removes: AtomicU64,
    /// The change the churner is making, and since when.
    churning: Mutex<Option<(String, Duration)>>,
    samples: Mutex<Vec<Sample>>,
    failed: AtomicBool,
    /// The first failure messages, and how many there were.
    failures: Mutex<(Vec<String>, usize)>,
}

impl Shared {
    fn new(nr: NodeReplicated<TestMap>, placement: Placement, config: Config) -> Self {
        let samples = (config.duration.as_secs() as usize + 64).min(1 << 16);
        Shared {
            nr,
            placement,
            start: Instant::now(),
            barrier: Barrier::new(config.threads + 1),
            stop: AtomicBool::new(false),
            last_round: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            clock: Clock::new(),
            workers: (0..config.threads)
                .map(|_| WorkerProbe::default())
                .collect(),
            slots: (0..config.threads)
                .map(|_| Mutex::new(RoundOut::default()))
                .collect(),
            rounds: AtomicU64::new(0),
            coordinator: AtomicU64::new(0),
            histories: AtomicU64::new(0),
            events: AtomicU64::new(0),
            adds: AtomicU64::new(0),
            removes: AtomicU64::new(0),
            churning: Mutex::new(None),
            samples: Mutex::new(Vec::with_capacity(samples)),
            failed: AtomicBool::new(false),
            failures: Mutex::new((Vec::new(), 0)),
            config,
        }
    }

    /// Records a failure; the monitor then stops the run.
    fn fail(&self, what: String) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.0.len() < MAX_FAILURES {
            f.0.push(what);
        }
        f.1 += 1;
        self.failed.store(true, SeqCst);
    }

    fn ops(&self) -> u64 {
        self.workers.iter().map(|w| w.ops.load(Relaxed)).sum()
    }

    fn churning(&self) -> MutexGuard<'_, Option<(String, Duration)>> {
        self.churning.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, t: usize) -> MutexGuard<'_, RoundOut> {
        self.slots[t].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every thread's progress and current operation, for a stall report.
    fn dump(self: &Arc<Self>) -> String {
        let mut s = String::from("thread dump:\n");
        for (t, w) in self.workers.iter().enumerate() {
            let (kind, key) = Kind::decode(w.doing.load(Relaxed));
            s += &format!(
                "  worker {t}: {} ops, now {kind:?} key {key:#x}\n",
                w.ops.load(Relaxed)
            );
        }
        s += &format!(
            "  coordinator: {} rounds, now {}\n",
            self.rounds.load(Relaxed),
            COORDINATOR_PHASES[self.coordinator.load(Relaxed) as usize]
        );
        let churning = match &*self.churning() {
            Some((what, since)) => format!("{what} since {since:?}"),
            None => "between changes".to_string(),
        };
        s += &format!(
            "  churner: {} adds, {} removes, now {churning}\n",
            self.adds.load(Relaxed),
            self.removes.load(Relaxed),
        );
        s += &format!(
            "  checker: {} histories checked\n",
            self.histories.load(Relaxed)
        );
        // `replicas()` may be what hangs: ask from another thread, for a while.
        let (tx, rx) = mpsc::channel();
        let sh = Arc::clone(self);
        let _ = std::thread::Builder::new().spawn(move || {
            let _ = tx.send(sh.nr.replicas());
        });
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(infos) => s += &format!("  replicas: {infos:?}\n"),
            Err(_) => s += "  replicas(): no answer within 2 s\n",
        }
        s
    }
}

/// One worker's progress, on its own cache lines (the workers update it on every
/// operation).
#[derive(Debug, Default)]
#[repr(align(128))]
struct WorkerProbe {
    ops: AtomicU64,
    /// The operation under way ([`Kind::encode`]).
    doing: AtomicU64,
}

/// What a worker hands the coordinator at the end of a round.
#[derive(Debug, Default)]
struct RoundOut {
    events: Vec<MapEvent>,
    /// `(hot key index, value before the increment)` for every hot increment.
    hot: Vec<(u64, u64)>,
}

/// A heap sample, taken right after a replica change.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    replicas: usize,
    live: isize,
}

/// What a worker is doing, for the stall dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    AtBarrier,
    RegisterGet,
    RegisterInsert,
    RegisterRemove,
    HotIncrement,
    HotGet,
    OwnIncrement,
    OwnGet,
    ColdIncrement,
    ColdGet,
    ScratchInsert,
    ScratchRemove,
    ScratchGet,
}

impl Kind {
    const ALL: [Kind; 13] = [
        Kind::AtBarrier,
        Kind::RegisterGet,
        Kind::RegisterInsert,
        Kind::RegisterRemove,
        Kind::HotIncrement,
        Kind::HotGet,
        Kind::OwnIncrement,
        Kind::OwnGet,
        Kind::ColdIncrement,
        Kind::ColdGet,
        Kind::ScratchInsert,
        Kind::ScratchRemove,
        Kind::ScratchGet,
    ];

    fn encode(self, key: u64) -> u64 {
        (self as u64) << 56 | key
    }

    fn decode(code: u64) -> (Kind, u64) {
        (Kind::ALL[(code >> 56) as usize], code & ((1 << 56) - 1))
    }
}

/// The coordinator's phases, for the stall dump.
const COORDINATOR_PHASES: [&str; 5] = [
    "registering",
    "waiting for the round to start",
    "waiting for the round to end",
    "checking counters and emptying the registers",
    "handing the history to the checker",
];

/// What a soak thread leaves behind.
enum Ended {
    Worker(WorkerEnd),
    Coordinator(CoordinatorEnd),
    Other,
}

/// A soak thread's body.
type Body = Box<dyn FnOnce(&Shared) -> Ended + Send>;

/// Starts every thread, watches them until they are done or stuck, and runs the final
/// check.
fn monitor(sh: &Arc<Shared>) -> Summary {
    let c = &sh.config;
    let (tx, rx) = mpsc::sync_channel(2);
    let mut bodies: Vec<(String, Body)> = (0..c.threads)
        .map(|t| {
            let body: Body = Box::new(move |sh| Ended::Worker(worker_main(sh, t)));
            (format!("soak worker {t}"), body)
        })
        .collect();
    bodies.push((
        "soak coordinator".into(),
        Box::new(move |sh| Ended::Coordinator(coordinator_main(sh, tx))),
    ));
    bodies.push((
        "soak checker".into(),
        Box::new(move |sh| {
            checker_main(sh, rx);
            Ended::Other
        }),
    ));
    bodies.push((
        "soak churner".into(),
        Box::new(|sh| {
            churner_main(sh);
            Ended::Other
        }),
    ));
    let mut running: Vec<Option<(String, JoinHandle<Ended>)>> = bodies
        .into_iter()
        .map(|(name, body)| {
            let sh = Arc::clone(sh);
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || body(&sh))
                .expect("spawn a soak thread");
            Some((name, handle))
        })
        .collect();

    let deadline = sh.start + c.duration;
    let mut workers: Vec<WorkerEnd> = Vec::new();
    let mut coordinator = None;
    let mut progress = (u64::MAX, Instant::now());
    let mut next_report = c.progress_every.map(|p| (sh.start + p, p));
    while running.iter().any(Option::is_some) {
        for entry in &mut running {
            if entry.as_ref().is_some_and(|(_, h)| h.is_finished()) {
                let (name, handle) = entry.take().expect("checked above");
                match handle.join() {
                    Ok(Ended::Worker(w)) => workers.push(w),
                    Ok(Ended::Coordinator(e)) => coordinator = Some(e),
                    Ok(Ended::Other) => {}
                    Err(panic) => {
                        let msg = panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("(not a string)");
                        // The others may wait for it at the barrier forever: report now.
                        sh.fail(format!("{name} panicked: {msg}\n{}", sh.dump()));
                        sh.stop.store(true, SeqCst);
                        return totals(sh, &workers, coordinator.as_ref());
                    }
                }
            }
        }
        let now = Instant::now();
        let changes = sh.adds.load(SeqCst) + sh.removes.load(SeqCst);
        if sh.failed.load(SeqCst)
            || (now >= deadline
                && sh.rounds.load(SeqCst) >= c.min_rounds
                && changes >= c.min_changes)
        {
            sh.stop.store(true, SeqCst);
        }
        let done = sh.ops() + sh.histories.load(SeqCst);
        if done != progress.0 {
            progress = (done, now);
        } else if workers.len() < c.threads && now - progress.1 >= c.stall {
            sh.fail(format!(
                "stall: no operation completed and no history was checked for {:?} \
                 (seed {})\n{}",
                c.stall,
                c.seed,
                sh.dump()
            ));
            return totals(sh, &workers, coordinator.as_ref());
        }
        let stuck = sh
            .churning()
            .clone()
            .filter(|(_, since)| sh.start.elapsed().saturating_sub(*since) >= c.stall);
        if let Some((what, _)) = stuck {
            sh.fail(format!(
                "stall: {what} has not returned for {:?} (seed {})\n{}",
                c.stall,
                c.seed,
                sh.dump()
            ));
            return totals(sh, &workers, coordinator.as_ref());
        }
        if let Some((at, every)) = &mut next_report {
            if now >= *at {
                *at += *every;
                eprintln!("{}", progress_line(sh));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut summary = totals(sh, &workers, coordinator.as_ref());
    if let Some(coordinator) = &coordinator {
        if workers.len() == c.threads {
            // On a thread of its own: it enters each replica's node, which under
            // `Affinity::Linux` pins the thread, and the caller's thread should not stay
            // pinned.
            std::thread::scope(|s| {
                s.spawn(|| final_check(sh, &workers, coordinator));
            });
        }
    }
    summary.elapsed = sh.start.elapsed();
    summary
}

/// One line of progress.
fn progress_line(sh: &Shared) -> String {
    let secs = sh.start.elapsed().as_secs_f64();
    let ops = sh.ops();
    let live = if heap::installed() {
        format!(
            ", live heap {:.1} MiB",
            heap::live_bytes() as f64 / (1 << 20) as f64
        )
    } else {
        String::new()
    };
    format!(
        "soak [{secs:>6.0} s] {ops} ops ({:.0}/s), {} replica(s), {} adds, {} removes, \
         {} rounds, {} histories checked{live}",
        ops as f64 / secs.max(1e-9),
        sh.nr.replicas().len(),
        sh.adds.load(Relaxed),
        sh.removes.load(Relaxed),
        sh.rounds.load(Relaxed),
        sh.histories.load(Relaxed),
    )
}

/// The counts so far (failures and memory are filled in by [`run`]).
fn totals(sh: &Shared, workers: &[WorkerEnd], coordinator: Option<&CoordinatorEnd>) -> Summary {
    Summary {
        elapsed: sh.start.elapsed(),
        ops: sh.ops(),
        writes: workers.iter().map(|w| w.writes).sum(),
        rounds: sh.rounds.load(SeqCst),
        adds: sh.adds.load(SeqCst),
        removes: sh.removes.load(SeqCst),
        increments_checked: coordinator.map_or(0, |c| c.hot.iter().sum()),
        histories: sh.histories.load(SeqCst),
        events: sh.events.load(SeqCst),
        ..Summary::default()
    }
}
