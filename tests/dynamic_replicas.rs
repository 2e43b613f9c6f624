//! Dynamic replicas: `add_replica` and `remove_replica` while operations run.
//!
//! - churn + linearizability: workers run recorded map operations while a controller
//!   keeps adding and removing replicas; every round's history passes the WGL checker;
//! - exactly-once counters under the same churn, and every live replica ends with the
//!   exact counts;
//! - removing the replica threads wait on (hammered writes), plus deterministic
//!   single-thread removals between two operations;
//! - removing the source of a clone right after the clone;
//! - adding while a tiny log wraps; adding and removing next to idle replicas;
//! - the error cases of both calls, with nothing changed on error;
//! - thread matching on a four-node test topology when replicas come and go.
//!
//! Every concurrent body runs under `common::watchdog`, so a deadlock fails fast. The
//! assertions depend only on what the protocol guarantees, never on timing; iteration
//! counts are bounded (and smaller in debug builds).

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier};

use common::counters::{Counters, Get, Inc};
use common::lincheck::{check_map_by_key, Clock, MapEvent};
use common::map::{negative_control, recorded_map_ops, write_count};
use common::replicas::{ids, thread_sum, tokens_on_every_replica};
use common::rng::Rng;
use common::{watchdog, LIMIT};
use ldnr::{
    AffinityError, AffinityManager, Dispatch, Error, NodeId, NodeReplicated, ReplicaId,
    ReplicaInfo, SavedPolicy, ThreadToken, MAX_REPLICAS,
};
use ldnr_hashmap::{MapRead, MapWrite, U64Map};

/// Debug builds are roughly 10x slower: scale the operation counts (never the number of
/// replica changes the brief asks for).
const DEBUG: bool = cfg!(debug_assertions);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// How the controller picks the replica to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// The replica serving the most threads (they all have to move).
    MostThreads,
    /// The replica that has applied the most of the log (the next clone's source).
    MostAdvanced,
    /// The replica that has applied the least (probably idle, holding GC back).
    LeastAdvanced,
    /// The replica added last (maybe still catching up from its clone position).
    Newest,
    /// The oldest live replica.
    Oldest,
    /// Any live replica.
    Random,
}

const VICTIMS: [Victim; 6] = [
    Victim::MostThreads,
    Victim::MostAdvanced,
    Victim::LeastAdvanced,
    Victim::Newest,
    Victim::Oldest,
    Victim::Random,
];

/// A controller that keeps the replica set changing: each step adds or removes one
/// replica, keeping `1..=max_live` live, and checks what `replicas()` reports. It must
/// be the only thread that reconfigures or registers while it runs.
#[derive(Debug)]
struct Churn {
    rng: Rng,
    max_live: usize,
    /// Live ids, oldest first.
    order: Vec<ReplicaId>,
    adds: usize,
    removes: usize,
    by_victim: [usize; VICTIMS.len()],
}

impl Churn {
    fn new<D>(nr: &NodeReplicated<D>, seed: u64, max_live: usize) -> Self
    where
        D: Dispatch + Clone + Send + Sync,
    {
        Churn {
            rng: Rng::new(seed),
            max_live,
            order: ids(&nr.replicas()),
            adds: 0,
            removes: 0,
            by_victim: [0; VICTIMS.len()],
        }
    }

    fn changes(&self) -> usize {
        self.adds + self.removes
    }

    fn pick(&mut self, infos: &[ReplicaInfo], how: Victim) -> ReplicaId {
        match how {
            Victim::MostThreads => infos.iter().max_by_key(|r| r.threads).unwrap().id,
            Victim::MostAdvanced => infos.iter().max_by_key(|r| r.applied).unwrap().id,
            Victim::LeastAdvanced => infos.iter().min_by_key(|r| r.applied).unwrap().id,
            Victim::Newest => *self.order.last().unwrap(),
            Victim::Oldest => self.order[0],
            Victim::Random => infos[self.rng.below(infos.len() as u64) as usize].id,
        }
    }

    /// Adds a replica on node 0 and checks the result.
    fn add<D>(&mut self, nr: &NodeReplicated<D>, registered: usize) -> ReplicaId
    where
        D: Dispatch + Clone + Send + Sync,
    {
        let before = nr.replicas();
        let id = nr.add_replica(NodeId(0)).expect("below the replica limit");
        let after = nr.replicas();
        assert_eq!(after.len(), before.len() + 1, "{before:?} -> {after:?}");
        let new = after
            .iter()
            .find(|r| r.id == id)
            .expect("the new replica is listed");
        // Every replica is on node 0, so no thread moves to the new one.
        assert_eq!(new.threads, 0, "{after:?}");
        assert!(
            before.iter().all(|b| after.iter().any(|a| a.id == b.id)),
            "adding removed nothing: {before:?} -> {after:?}"
        );
        assert_eq!(thread_sum(&after), registered, "{after:?}");
        self.order.push(id);
        self.adds += 1;
        id
    }

    /// Removes `victim` and checks the result.
    fn remove<D>(&mut self, nr: &NodeReplicated<D>, victim: ReplicaId, registered: usize)
    where
        D: Dispatch + Clone + Send + Sync,
    {
        let before = nr.replicas();
        nr.remove_replica(victim)
            .expect("a live replica, not the last");
        let after = nr.replicas();
        assert_eq!(after.len() + 1, before.len(), "{before:?} -> {after:?}");
        assert!(after.iter().all(|r| r.id != victim), "{after:?}");
        // The victim's threads moved; nobody is lost or counted twice.
        assert_eq!(thread_sum(&after), registered, "{before:?} -> {after:?}");
        self.order.retain(|&id| id != victim);
        self.removes += 1;
        if self.removes % 16 == 0 {
            assert_eq!(
                nr.remove_replica(victim),
                Err(Error::UnknownReplica(victim))
            );
        }
    }

    /// One change: add when at one replica, remove when at `max_live`, else either.
    fn step<D>(&mut self, nr: &NodeReplicated<D>, registered: usize)
    where
        D: Dispatch + Clone + Send + Sync,
    {
        let infos = nr.replicas();
        assert_eq!(ids(&infos).len(), self.order.len());
        assert!(
            infos.iter().all(|r| self.order.contains(&r.id)),
            "{infos:?}"
        );
        let live = infos.len();
        if live == 1 || (live < self.max_live && self.rng.below(2) == 0) {
            self.add(nr, registered);
        } else {
            let k = self.removes % VICTIMS.len();
            let victim = self.pick(&infos, VICTIMS[k]);
            self.by_victim[k] += 1;
            self.remove(nr, victim, registered);
        }
    }
}

/// Progress shared by the workers and the controller of a churn test. The controller
/// paces itself by the workers' progress (one change per so many of their operations),
/// never by time; the workers go on until the controller has made its minimum number
/// of changes. So the ratio of changes to operations stays bounded on any machine.
#[derive(Debug)]
struct Pace {
    workers: usize,
    finished: AtomicUsize,
    ops: AtomicUsize,
    changes: AtomicUsize,
}

impl Pace {
    fn new(workers: usize) -> Self {
        Pace {
            workers,
            finished: AtomicUsize::new(0),
            ops: AtomicUsize::new(0),
            changes: AtomicUsize::new(0),
        }
    }

    /// For a worker that has run `i` operations: go on?
    fn go_on(&self, i: usize, min_ops: usize, min_changes: usize) -> bool {
        i < min_ops || self.changes.load(SeqCst) < min_changes
    }

    /// A worker completed an operation.
    fn op(&self) {
        self.ops.fetch_add(1, SeqCst);
    }

    /// A worker is done.
    fn finish(&self) {
        self.finished.fetch_add(1, SeqCst);
    }

    /// Whether every worker is done.
    fn done(&self) -> bool {
        self.finished.load(SeqCst) == self.workers
    }

    /// For the controller: waits until the workers completed `per_change` operations
    /// since the last call, or are all done.
    fn wait_ops(&self, last: &mut usize, per_change: usize) {
        wait_until(|| self.done() || self.ops.load(SeqCst) >= *last + per_change);
        *last = self.ops.load(SeqCst);
    }

    /// The controller has made `total` changes so far.
    fn changed(&self, total: usize) {
        self.changes.store(total, SeqCst);
    }

    fn changes(&self) -> usize {
        self.changes.load(SeqCst)
    }
}

/// Spins (yielding) until `cond` holds: waits for a state the test can observe.
fn wait_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        std::thread::yield_now();
    }
}

/// A per-thread model for map workers: thread `t` writes only keys `t * 1000 + 0..37`,
/// so the response of each of its writes, and the final value of each of its keys, is
/// known without looking at other threads.
fn map_worker<F: FnMut() -> bool>(
    nr: &NodeReplicated<U64Map>,
    tkn: ThreadToken,
    t: u64,
    seed: u64,
    mut go_on: F,
) -> BTreeMap<u64, u64> {
    let mut rng = Rng::new(seed);
    let mut model = BTreeMap::new();
    let mut i = 0u64;
    while go_on() {
        let key = t * 1000 + rng.below(37);
        if rng.below(4) == 0 {
            let got = nr.execute_mut(MapWrite::Remove(key), tkn);
            assert_eq!(got, model.remove(&key), "thread {t}: remove #{i} of {key}");
        } else {
            let v = (t << 32) | i;
            let got = nr.execute_mut(MapWrite::Insert(key, v), tkn);
            assert_eq!(
                got,
                model.insert(key, v),
                "thread {t}: insert #{i} of {key}"
            );
        }
        if i % 8 == 0 {
            let key = t * 1000 + rng.below(37);
            let got = nr.execute(MapRead::Get(key), tkn);
            assert_eq!(got, model.get(&key).copied(), "thread {t}: read after #{i}");
        }
        if i % 64 == 63 {
            // Not synchronization: lets threads interleave on few cores.
            std::thread::yield_now();
        }
        i += 1;
    }
    model
}

/// Every live replica holds exactly `model` (keys of threads `0..threads`), and has
/// applied exactly `writes` log entries.
fn assert_every_replica_holds(
    nr: &NodeReplicated<U64Map>,
    model: &BTreeMap<u64, u64>,
    threads: u64,
    writes: usize,
    what: &str,
) {
    for (id, tkn) in tokens_on_every_replica(nr) {
        let len = nr.execute(MapRead::Len, tkn);
        assert_eq!(
            len,
            Some(model.len() as u64),
            "{what}: Len of replica {id:?}"
        );
        for t in 0..threads {
            for k in t * 1000..t * 1000 + 37 {
                let v = nr.execute(MapRead::Get(k), tkn);
                assert_eq!(
                    v,
                    model.get(&k).copied(),
                    "{what}: key {k} on replica {id:?}"
                );
            }
        }
    }
    for info in nr.replicas() {
        assert_eq!(
            info.applied, writes,
            "{what}: every write applied once: {info:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 1. Churn + linearizability
// ---------------------------------------------------------------------------------------

/// Runs one round on a fresh map with a controller churning replicas; returns the
/// history and the number of replica changes.
fn churn_round(
    round: u64,
    ops: usize,
    min_changes: usize,
    ops_per_change: usize,
) -> (Vec<MapEvent>, Churn) {
    const WORKERS: usize = 4;
    const KEYS: u64 = 6;
    let nr = NodeReplicated::builder(U64Map::default())
        .replicas(&[NodeId(0), NodeId(0)])
        .log_capacity(32)
        .max_threads(64)
        .build()
        .expect("a valid configuration");
    let clock = Clock::new();
    let barrier = Barrier::new(WORKERS + 1);
    let pace = Pace::new(WORKERS);
    let mut history = Vec::new();
    let churn = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|t| {
                let (nr, clock, barrier, pace) = (&nr, &clock, &barrier, &pace);
                s.spawn(move || {
                    let tkn = nr.register().expect("below the thread limit");
                    barrier.wait();
                    let events = recorded_map_ops(
                        nr,
                        tkn,
                        clock,
                        t,
                        round * 1_000 + t as u64 + 1,
                        KEYS,
                        |i| {
                            if i > 0 {
                                pace.op();
                            }
                            pace.go_on(i, ops, min_changes)
                        },
                    );
                    pace.finish();
                    events
                })
            })
            .collect();
        let controller = {
            let (nr, barrier, pace) = (&nr, &barrier, &pace);
            s.spawn(move || {
                let mut churn = Churn::new(nr, round + 77, 4);
                let mut last = 0;
                barrier.wait();
                while !pace.done() || churn.changes() < min_changes {
                    pace.wait_ops(&mut last, ops_per_change);
                    churn.step(nr, WORKERS);
                    pace.changed(churn.changes());
                }
                churn
            })
        };
        for w in workers {
            history.extend(w.join().expect("a worker panicked"));
        }
        controller.join().expect("the controller panicked")
    });

    // All replicas agree on every key, and each applied exactly the writes.
    let writes = write_count(&history);
    let readers = tokens_on_every_replica(&nr);
    let first: Vec<_> = (0..KEYS)
        .map(|k| nr.execute(MapRead::Get(k), readers[0].1))
        .collect();
    for (id, tkn) in &readers {
        let here: Vec<_> = (0..KEYS)
            .map(|k| nr.execute(MapRead::Get(k), *tkn))
            .collect();
        assert_eq!(here, first, "round {round}: replica {id:?} disagrees");
    }
    for info in nr.replicas() {
        assert_eq!(info.applied, writes, "round {round}: {info:?}");
    }
    (history, churn)
}

#[test]
fn churn_keeps_map_linearizable() {
    let (rounds, ops, min_changes) = if DEBUG {
        (30, 2_000, 32)
    } else {
        (60, 4_000, 32)
    };
    let (changes, checked, victims, events) =
        watchdog("churn + linearizability", LIMIT, move || {
            let mut changes = 0;
            let mut victims = [0usize; VICTIMS.len()];
            let mut events = 0;
            for round in 0..rounds {
                let (history, churn) = churn_round(round, ops, min_changes, 8);
                if let Err(v) = check_map_by_key(&history) {
                    panic!("round {round} ({} replica changes): {v}", churn.changes());
                }
                if round == 0 {
                    // Negative control: a corrupted read must be rejected.
                    negative_control(&history);
                }
                changes += churn.changes();
                events += history.len();
                for (v, n) in victims.iter_mut().zip(churn.by_victim) {
                    *v += n;
                }
            }
            (changes, rounds, victims, events)
        });
    eprintln!(
        "churn + linearizability: {changes} replica changes, {checked} histories \
         ({events} events) checked, removals by victim {:?} = {victims:?}",
        VICTIMS
    );
    assert!(changes >= 300, "{changes} changes");
    assert!(
        victims.iter().all(|&n| n > 0),
        "every victim rule used: {victims:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Exactly-once counters under churn
// ---------------------------------------------------------------------------------------

/// `workers` threads increment their own counters (each response must be the previous
/// one + 1) while `control` reconfigures; afterwards every live replica must hold
/// exactly the final counts. Returns the number of replica changes.
fn counters_under<C>(
    what: &'static str,
    workers: usize,
    replicas: usize,
    log: usize,
    n: u64,
    min_changes: usize,
    control: C,
) -> usize
where
    C: FnOnce(&NodeReplicated<Counters>, &Pace) + Send + 'static,
{
    watchdog(what, LIMIT, move || {
        let nr = NodeReplicated::builder(Counters(vec![0; workers]))
            .replicas(&vec![NodeId(0); replicas])
            .log_capacity(log)
            .max_threads(workers + 4 * MAX_REPLICAS)
            .build()
            .expect("a valid configuration");
        let barrier = Barrier::new(workers + 1);
        let pace = Pace::new(workers);
        let counts: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..workers)
                .map(|t| {
                    let (nr, barrier, pace) = (&nr, &barrier, &pace);
                    s.spawn(move || {
                        let tkn = nr.register().expect("below the thread limit");
                        barrier.wait();
                        let mut i = 0u64;
                        while pace.go_on(i as usize, n as usize, min_changes) {
                            let r = nr.execute_mut(Inc(t), tkn);
                            assert_eq!(r, i + 1, "{what}: thread {t}, increment #{i}");
                            pace.op();
                            i += 1;
                            if i % 8 == 0 {
                                assert_eq!(nr.execute(Get(t), tkn), i, "{what}: thread {t} read");
                            }
                            if i % 64 == 0 {
                                // Not synchronization: interleave on few cores.
                                std::thread::yield_now();
                            }
                        }
                        pace.finish();
                        i
                    })
                })
                .collect();
            barrier.wait();
            control(&nr, &pace);
            hs.into_iter()
                .map(|h| h.join().expect("a worker panicked"))
                .collect()
        });
        let total: u64 = counts.iter().sum();
        assert_eq!(thread_sum(&nr.replicas()), workers);
        let readers = tokens_on_every_replica(&nr);
        assert_eq!(readers.len(), nr.replicas().len());
        for (id, tkn) in &readers {
            for (t, &c) in counts.iter().enumerate() {
                let v = nr.execute(Get(t), *tkn);
                assert_eq!(
                    v, c,
                    "{what}: replica {id:?} holds {v} for thread {t}, not {c}"
                );
            }
        }
        for info in nr.replicas() {
            assert_eq!(info.applied as u64, total, "{what}: {info:?}");
        }
        pace.changes()
    })
}

#[test]
fn churn_counters_exactly_once() {
    let n = if DEBUG { 100_000 } else { 300_000 };
    let changes = counters_under("exactly once under churn", 4, 2, 32, n, 320, |nr, pace| {
        let mut churn = Churn::new(nr, 5, 4);
        let mut last = 0;
        while !pace.done() || churn.changes() < 320 {
            pace.wait_ops(&mut last, 32);
            churn.step(nr, 4);
            pace.changed(churn.changes());
        }
        eprintln!("exactly once under churn: {churn:?}");
        assert!(churn.by_victim.iter().all(|&n| n > 0), "{churn:?}");
    });
    assert!(changes >= 320);
}

// ---------------------------------------------------------------------------------------
// 3. Removing the replica threads are waiting on
// ---------------------------------------------------------------------------------------

#[test]
fn remove_the_replica_threads_wait_on() {
    const WORKERS: usize = 8;
    let n = if DEBUG { 20_000 } else { 100_000 };
    let changes = counters_under(
        "remove the busiest replica",
        WORKERS,
        2,
        32,
        n,
        2_000,
        |nr, pace| {
            let mut churn = Churn::new(nr, 9, 3);
            let mut last = 0;
            while !pace.done() || churn.changes() < 2_000 {
                pace.wait_ops(&mut last, 16);
                // Add one back first, so that the busiest replica's threads spread over
                // the two that remain: the writers keep hammering two replicas.
                churn.add(nr, WORKERS);
                let infos = nr.replicas();
                let busiest = infos.iter().max_by_key(|r| r.threads).unwrap();
                assert_eq!(infos.len(), 3);
                assert!(busiest.threads > 0, "{infos:?}");
                let moved = busiest.threads;
                let victim = busiest.id;
                churn.remove(nr, victim, WORKERS);
                let after = nr.replicas();
                // The victim's threads go one by one to the one of the two others with
                // fewer threads; as the victim had the most, the two end up balanced.
                let (lo, hi) = {
                    let mut t: Vec<_> = after.iter().map(|r| r.threads).collect();
                    t.sort_unstable();
                    (t[0], t[1])
                };
                assert_eq!(lo + hi, WORKERS, "{after:?}");
                assert!(hi - lo <= 1, "moved {moved}: {infos:?} -> {after:?}");
                pace.changed(churn.changes());
            }
        },
    );
    assert!(changes >= 2_000);
}

#[test]
fn removal_between_two_operations_of_a_thread() {
    watchdog("removal between two operations", LIMIT, || {
        let nr = NodeReplicated::builder(U64Map::default())
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(16)
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        let infos = nr.replicas();
        let (mine, other) = (infos[0].id, infos[1].id);
        assert_eq!((infos[0].threads, infos[1].threads), (1, 0), "{infos:?}");
        assert_eq!(nr.execute_mut(MapWrite::Insert(1, 10), tkn), None);

        // Removed by the thread itself, between two operations.
        nr.remove_replica(mine).unwrap();
        let infos = nr.replicas();
        assert_eq!(ids(&infos), vec![other]);
        assert_eq!(infos[0].threads, 1);
        assert_eq!(nr.execute(MapRead::Get(1), tkn), Some(10));
        assert_eq!(nr.execute_mut(MapWrite::Insert(2, 20), tkn), None);

        // A new replica reuses the freed shell; the thread stays where it is.
        let third = nr.add_replica(NodeId(0)).unwrap();
        assert_eq!(nr.replicas()[0].id, third, "the freed shell is reused");
        assert_eq!(nr.execute_mut(MapWrite::Insert(3, 30), tkn), None);

        // Removed by another thread, between two operations: the thread moves to the
        // replica that reuses its first shell, which must hold everything.
        std::thread::scope(|s| {
            s.spawn(|| nr.remove_replica(other).unwrap())
                .join()
                .unwrap();
        });
        let infos = nr.replicas();
        assert_eq!(ids(&infos), vec![third]);
        assert_eq!(infos[0].threads, 1);
        for k in 1..=3 {
            assert_eq!(nr.execute(MapRead::Get(k), tkn), Some(k * 10), "key {k}");
        }
        assert_eq!(nr.execute_mut(MapWrite::Remove(2), tkn), Some(20));
        assert_eq!(nr.execute(MapRead::Len, tkn), Some(2));
    });
}

#[test]
fn removal_moves_a_thread_to_a_lagging_replica() {
    watchdog("removal to a lagging replica", LIMIT, || {
        // A large log: nothing forces the idle replica to catch up before the removal.
        let nr = NodeReplicated::builder(U64Map::default())
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(1024)
            .build()
            .unwrap();
        let a = nr.register().unwrap();
        let b = nr.register().unwrap();
        let infos = nr.replicas();
        assert_eq!((infos[0].threads, infos[1].threads), (1, 1));
        for k in 0..100 {
            assert_eq!(nr.execute_mut(MapWrite::Insert(k, k + 1), b), None);
        }
        let infos = nr.replicas();
        assert_eq!(infos[0].applied, 0, "the replica of `a` is idle: {infos:?}");
        assert_eq!(infos[1].applied, 100, "{infos:?}");
        // Remove `b`'s replica: `b` moves to the lagging one and must see its writes.
        nr.remove_replica(infos[1].id).unwrap();
        assert_eq!(nr.replicas()[0].threads, 2);
        for k in 0..100 {
            assert_eq!(nr.execute(MapRead::Get(k), b), Some(k + 1), "key {k}");
        }
        assert_eq!(nr.execute(MapRead::Len, a), Some(100));
        assert_eq!(nr.execute_mut(MapWrite::Remove(5), a), Some(6));
        assert_eq!(nr.execute(MapRead::Get(5), b), None);
    });
}

/// A gate a write operation can wait at, inside `dispatch_mut`: the first replica that
/// applies the gate operation holds its combiner (and write) lock until the test opens
/// it. Every other application passes straight through, and the result does not depend
/// on the gate, so `dispatch_mut` stays deterministic.
#[derive(Debug, Default)]
struct Gate {
    armed: AtomicBool,
    entered: AtomicBool,
    open: AtomicBool,
}

/// Counters with a gated write: counter 0 counts the gate operations.
#[derive(Debug, Clone)]
struct Gated(Vec<u64>);

#[derive(Debug, Clone)]
enum GatedOp {
    Inc(usize),
    Gate(Arc<Gate>),
}

/// Reads of [`Gated`]: a counter, or a counter read that first waits at a gate (while
/// holding the replica's read lock).
#[derive(Debug)]
enum GatedRead {
    Get(usize),
    Gate(Arc<Gate>, usize),
}

impl Gate {
    fn armed() -> Arc<Gate> {
        Arc::new(Gate {
            armed: AtomicBool::new(true),
            ..Gate::default()
        })
    }

    /// Waits here if this is the first pass.
    fn pass(&self) {
        if self.armed.swap(false, SeqCst) {
            self.entered.store(true, SeqCst);
            while !self.open.load(SeqCst) {
                std::thread::yield_now();
            }
        }
    }
}

impl Dispatch for Gated {
    type ReadOperation = GatedRead;
    type WriteOperation = GatedOp;
    type Response = u64;

    fn dispatch(&self, op: GatedRead) -> u64 {
        match op {
            GatedRead::Get(t) => self.0[t],
            GatedRead::Gate(gate, t) => {
                gate.pass();
                self.0[t]
            }
        }
    }

    fn dispatch_mut(&mut self, op: GatedOp) -> u64 {
        let t = match op {
            GatedOp::Inc(t) => t,
            GatedOp::Gate(gate) => {
                gate.pass();
                0
            }
        };
        self.0[t] += 1;
        self.0[t]
    }
}

/// The removal hand-back, made likely: a thread holds replica A's combiner lock inside
/// a gated write; `k` waiters publish their increments on A's pending stack; a remover
/// starts removing A (observed through `replicas()`), and only then does the gate open.
/// The remover and the waiters then race for A's combiner lock: if the remover wins,
/// the waiters' operations are handed back and re-run on B; otherwise a waiter combines
/// them on A. Either way each must be applied exactly once.
#[test]
fn remove_the_replica_with_operations_on_its_pending_stack() {
    let iterations = if DEBUG { 300 } else { 1_000 };
    watchdog("removal with pending operations", LIMIT, move || {
        for it in 0..iterations {
            let k = 1 + it % 3;
            let nr = NodeReplicated::builder(Gated(vec![0; 1 + k]))
                .replicas(&[NodeId(0), NodeId(0)])
                .log_capacity(64)
                .build()
                .unwrap();
            let gate = Gate::armed();
            let started = AtomicUsize::new(0);
            let go = Barrier::new(k + 1);
            let infos = nr.replicas();
            let (a, b) = (infos[0].id, infos[1].id);
            std::thread::scope(|s| {
                let (nr, gate, started, go) = (&nr, &gate, &started, &go);
                let (registered_tx, registered) = mpsc::channel();
                // The gate holder, on A.
                let tx = registered_tx.clone();
                let holder = s.spawn(move || {
                    let tkn = nr.register().unwrap();
                    tx.send(()).unwrap();
                    let r = nr.execute_mut(GatedOp::Gate(gate.clone()), tkn);
                    assert_eq!(r, 1, "iteration {it}: the gate op");
                });
                registered.recv().unwrap();
                // The waiters, on A too: pad B with idle tokens so that each waiter
                // finds A and B tied and takes A, the lower slot.
                let mut idle = Vec::new();
                let mut waiters = Vec::new();
                for w in 1..=k {
                    loop {
                        let infos = nr.replicas();
                        if infos[1].threads >= infos[0].threads {
                            break;
                        }
                        idle.push(nr.register().unwrap());
                    }
                    let tx = registered_tx.clone();
                    waiters.push(s.spawn(move || {
                        let tkn = nr.register().unwrap();
                        tx.send(()).unwrap();
                        go.wait();
                        started.fetch_add(1, SeqCst);
                        let r = nr.execute_mut(GatedOp::Inc(w), tkn);
                        assert_eq!(r, 1, "iteration {it}: waiter {w}");
                        assert_eq!(nr.execute(GatedRead::Get(w), tkn), 1);
                        assert_eq!(nr.execute(GatedRead::Get(0), tkn), 1, "gate op visible");
                        assert_eq!(nr.execute_mut(GatedOp::Inc(w), tkn), 2);
                    }));
                    registered.recv().unwrap();
                }
                let infos = nr.replicas();
                assert_eq!(infos[0].threads, 1 + k, "{infos:?}");

                wait_until(|| gate.entered.load(SeqCst));
                go.wait();
                wait_until(|| started.load(SeqCst) == k);
                let remover = s.spawn(move || nr.remove_replica(a).unwrap());
                // A leaves the list before the remover waits for A's combiner lock.
                wait_until(|| nr.replicas().iter().all(|r| r.id != a));
                gate.open.store(true, SeqCst);
                remover.join().unwrap();
                holder.join().unwrap();
                for w in waiters {
                    w.join().unwrap();
                }
                let infos = nr.replicas();
                assert_eq!(ids(&infos), vec![b]);
                assert_eq!(infos[0].threads, 1 + k + idle.len());
                let tkn = idle
                    .first()
                    .copied()
                    .unwrap_or_else(|| nr.register().unwrap());
                assert_eq!(nr.execute(GatedRead::Get(0), tkn), 1);
                for w in 1..=k {
                    assert_eq!(
                        nr.execute(GatedRead::Get(w), tkn),
                        2,
                        "iteration {it}: counter {w}"
                    );
                }
                // B catches up lazily: after the reads above it has applied the log,
                // which holds each write exactly once.
                assert_eq!(nr.replicas()[0].applied, 1 + 2 * k, "each write once");
            });
        }
    });
}

/// A reader inside the replica being removed: the removal waits for it (the data is
/// freed before `remove_replica` returns, so it cannot go while someone reads it), the
/// read completes with the right value, and writes on the other replica go on
/// meanwhile.
#[test]
fn removal_waits_for_a_reader_inside_and_others_go_on() {
    watchdog("removal waits for a reader", LIMIT, || {
        let nr = NodeReplicated::builder(Gated(vec![0; 3]))
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(64)
            .build()
            .unwrap();
        let gate = Gate::armed();
        let a = nr.replicas()[0].id;
        std::thread::scope(|s| {
            let (nr, gate) = (&nr, &gate);
            let (registered_tx, registered) = mpsc::channel();
            let reader = s.spawn(move || {
                let tkn = nr.register().unwrap();
                registered_tx.send(()).unwrap();
                assert_eq!(nr.execute_mut(GatedOp::Inc(1), tkn), 1);
                // Waits at the gate inside replica A, holding A's read lock.
                assert_eq!(nr.execute(GatedRead::Gate(gate.clone(), 1), tkn), 1);
                // Now matched to B.
                assert_eq!(nr.execute_mut(GatedOp::Inc(1), tkn), 2);
                assert_eq!(nr.execute(GatedRead::Get(2), tkn), 5);
            });
            registered.recv().unwrap();
            let main = nr.register().unwrap();
            assert_eq!(nr.replicas()[1].threads, 1, "this thread is on B");
            wait_until(|| gate.entered.load(SeqCst));
            let remover = s.spawn(move || nr.remove_replica(a).unwrap());
            wait_until(|| nr.replicas().iter().all(|r| r.id != a));
            // B's writes and reads do not wait for the removal.
            for i in 1..=5 {
                assert_eq!(nr.execute_mut(GatedOp::Inc(2), main), i);
            }
            assert_eq!(nr.execute(GatedRead::Get(1), main), 1);
            assert!(
                !remover.is_finished(),
                "remove_replica returned while a reader was inside the replica"
            );
            gate.open.store(true, SeqCst);
            remover.join().unwrap();
            reader.join().unwrap();
            let infos = nr.replicas();
            assert_eq!(infos.len(), 1);
            assert_eq!(infos[0].threads, 2);
            assert_eq!(nr.execute(GatedRead::Get(1), main), 2);
        });
    });
}

/// A reader inside the clone source: `add_replica` freezes only the source's writes,
/// so it completes while the reader is still inside, and the new replica starts at the
/// source's position.
#[test]
fn add_replica_does_not_wait_for_readers_of_the_source() {
    watchdog("add while a reader is inside the source", LIMIT, || {
        let nr = NodeReplicated::builder(Gated(vec![0; 2]))
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(64)
            .build()
            .unwrap();
        let gate = Gate::armed();
        std::thread::scope(|s| {
            let (nr, gate) = (&nr, &gate);
            let reader = s.spawn(move || {
                let tkn = nr.register().unwrap();
                for i in 1..=3 {
                    assert_eq!(nr.execute_mut(GatedOp::Inc(1), tkn), i);
                }
                // Inside A (the most advanced replica: B applied nothing yet).
                assert_eq!(nr.execute(GatedRead::Gate(gate.clone(), 1), tkn), 3);
            });
            wait_until(|| gate.entered.load(SeqCst));
            let infos = nr.replicas();
            assert_eq!((infos[0].applied, infos[1].applied), (3, 0), "{infos:?}");
            let new = nr.add_replica(NodeId(0)).unwrap();
            let infos = nr.replicas();
            let added = infos.iter().find(|r| r.id == new).unwrap();
            assert_eq!(
                added.applied, 3,
                "cloned at the source's position: {infos:?}"
            );
            assert!(!reader.is_finished(), "the reader is still inside");
            gate.open.store(true, SeqCst);
            reader.join().unwrap();
            // A token on each replica (B, then the new one) reads 3.
            for (id, tkn) in tokens_on_every_replica(nr) {
                assert_eq!(nr.execute(GatedRead::Get(1), tkn), 3, "replica {id:?}");
            }
        });
    });
}

// ---------------------------------------------------------------------------------------
// 4. Removing the source of a clone right after the clone
// ---------------------------------------------------------------------------------------

/// Runs `workers` map workers (each at least `n` writes, and on until `min_changes`)
/// against `nr` while `control` reconfigures, then checks every replica against the
/// merged model. Returns the changes `control` reported.
fn map_workers_under<C>(
    nr: &NodeReplicated<U64Map>,
    what: &str,
    workers: u64,
    n: u64,
    min_changes: usize,
    control: C,
) -> usize
where
    C: FnOnce(&Pace),
{
    let barrier = Barrier::new(workers as usize + 1);
    let pace = Pace::new(workers as usize);
    let writes = AtomicUsize::new(0);
    let model = std::thread::scope(|s| {
        let hs: Vec<_> = (0..workers)
            .map(|t| {
                let (barrier, pace, writes) = (&barrier, &pace, &writes);
                s.spawn(move || {
                    let tkn = nr.register().expect("below the thread limit");
                    barrier.wait();
                    let mut i = 0;
                    let model = map_worker(nr, tkn, t, t + 11, || {
                        if i > 0 {
                            pace.op();
                        }
                        i += 1;
                        pace.go_on(i - 1, n as usize, min_changes)
                    });
                    writes.fetch_add(i - 1, SeqCst);
                    pace.finish();
                    model
                })
            })
            .collect();
        barrier.wait();
        control(&pace);
        let mut all = BTreeMap::new();
        for h in hs {
            all.extend(h.join().expect("a worker panicked"));
        }
        all
    });
    assert_every_replica_holds(nr, &model, workers, writes.load(SeqCst), what);
    pace.changes()
}

#[test]
fn remove_the_source_right_after_the_clone() {
    let n = if DEBUG { 50_000 } else { 200_000 };
    let changes = watchdog("remove the clone's source", LIMIT, move || {
        let nr = NodeReplicated::builder(U64Map::default())
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(32)
            .build()
            .unwrap();
        let nr = &nr;
        map_workers_under(nr, "remove the clone's source", 3, n, 400, |pace| {
            let mut churn = Churn::new(nr, 3, 4);
            let mut last = 0;
            while !pace.done() || churn.changes() < 400 {
                pace.wait_ops(&mut last, 32);
                let infos = nr.replicas();
                // The source `add_replica` picks: the most advanced (the last on ties,
                // like the library). Positions move, so this is the likely source.
                let source = infos.iter().max_by_key(|r| r.applied).unwrap().id;
                let new = churn.add(nr, 3);
                churn.remove(nr, source, 3);
                assert!(nr.replicas().iter().any(|r| r.id == new));
                pace.changed(churn.changes());
            }
        })
    });
    assert!(changes >= 400);
}

// ---------------------------------------------------------------------------------------
// 5. Adding while a tiny log wraps
// ---------------------------------------------------------------------------------------

fn add_while_the_log_wraps(log: usize) {
    let n = if DEBUG { 20_000 } else { 100_000 };
    let what = format!("add while a log of {log} wraps");
    let adds = watchdog(&what.clone(), LIMIT, move || {
        let nr = NodeReplicated::builder(U64Map::default())
            .replicas(&[NodeId(0)])
            .log_capacity(log)
            .build()
            .unwrap();
        let nr = &nr;
        map_workers_under(nr, &what, 2, n, 200, |pace| {
            let mut churn = Churn::new(nr, log as u64, 6);
            let mut last = 0;
            while !pace.done() || churn.adds < 200 {
                pace.wait_ops(&mut last, 32);
                if nr.replicas().len() == 6 {
                    // Keep the set bounded: drop the oldest, so that the replicas left
                    // are (mostly) ones added while the log wrapped.
                    let oldest = churn.order[0];
                    churn.remove(nr, oldest, 2);
                }
                churn.add(nr, 2);
                pace.changed(churn.adds);
            }
        })
    });
    assert!(adds >= 200);
}

#[test]
fn add_while_a_log_of_4_wraps() {
    add_while_the_log_wraps(4);
}

#[test]
fn add_while_a_log_of_8_wraps() {
    add_while_the_log_wraps(8);
}

// ---------------------------------------------------------------------------------------
// 6. Tiny log and idle replicas
// ---------------------------------------------------------------------------------------

/// What the idle thread is told to do.
enum Idle {
    /// Read every counter and increment its own; reply with what it read.
    Work,
    Stop,
}

#[test]
fn tiny_log_idle_replicas_add_and_remove() {
    watchdog("tiny log, idle replicas", LIMIT, || {
        const CAP: usize = 4;
        let nr = NodeReplicated::builder(Counters(vec![0; 2]))
            .replicas(&[NodeId(0), NodeId(0), NodeId(0)])
            .log_capacity(CAP)
            .build()
            .unwrap();
        let (to_idle, commands) = mpsc::channel::<Idle>();
        let (replies, from_idle) = mpsc::channel::<Vec<u64>>();
        std::thread::scope(|s| {
            let active = nr.register().unwrap();
            let idle = {
                let nr = &nr;
                s.spawn(move || {
                    let tkn = nr.register().unwrap();
                    replies.send(vec![]).unwrap();
                    while let Ok(Idle::Work) = commands.recv() {
                        let seen = vec![nr.execute(Get(0), tkn), nr.execute(Get(1), tkn)];
                        let mine = nr.execute_mut(Inc(1), tkn);
                        assert_eq!(mine, seen[1] + 1);
                        replies.send(seen).unwrap();
                    }
                })
            };
            from_idle.recv().unwrap();
            let infos = nr.replicas();
            let threads: Vec<_> = infos.iter().map(|r| r.threads).collect();
            assert_eq!(threads, vec![1, 1, 0], "{infos:?}");
            let (r_active, r_idle, r_empty) = (infos[0].id, infos[1].id, infos[2].id);

            let mut writes = 0u64;
            let mut write = |k: u64| {
                for _ in 0..k {
                    writes += 1;
                    assert_eq!(nr.execute_mut(Inc(0), active), writes);
                }
                writes
            };
            // The log laps 25 times; both idle replicas are carried along by the writer.
            let total = write(100) as usize;
            for info in nr.replicas() {
                assert!(
                    info.applied + CAP >= total,
                    "GC never passes a replica: {info:?}"
                );
            }

            // Remove the replica whose thread is idle: that thread moves (to the replica
            // without threads) and keeps working.
            nr.remove_replica(r_idle).unwrap();
            let infos = nr.replicas();
            assert_eq!(ids(&infos), vec![r_active, r_empty]);
            assert_eq!(
                infos.iter().map(|r| r.threads).collect::<Vec<_>>(),
                vec![1, 1]
            );

            // Add into the freed shell, next to the idle replica; write on.
            let added = nr.add_replica(NodeId(0)).unwrap();
            assert_eq!(ids(&nr.replicas()), vec![r_active, added, r_empty]);
            let total = write(100) as usize;
            for info in nr.replicas() {
                assert!(info.applied + CAP >= total, "{info:?}");
            }
            to_idle.send(Idle::Work).unwrap();
            assert_eq!(from_idle.recv().unwrap(), vec![200, 0]);

            // Remove the only active replica: every replica left is idle and lagging.
            // Then add one: its source is a lagging idle replica.
            nr.remove_replica(r_active).unwrap();
            let infos = nr.replicas();
            assert_eq!(ids(&infos), vec![added, r_empty]);
            assert_eq!(thread_sum(&infos), 2);
            let on_top = nr.add_replica(NodeId(0)).unwrap();
            assert_eq!(ids(&nr.replicas()), vec![on_top, added, r_empty]);
            write(100);
            to_idle.send(Idle::Work).unwrap();
            assert_eq!(from_idle.recv().unwrap(), vec![300, 1]);
            to_idle.send(Idle::Stop).unwrap();
            idle.join().unwrap();

            // Every replica holds the same counts.
            for (id, tkn) in tokens_on_every_replica(&nr) {
                assert_eq!(nr.execute(Get(0), tkn), 300, "replica {id:?}");
                assert_eq!(nr.execute(Get(1), tkn), 2, "replica {id:?}");
            }
            for info in nr.replicas() {
                assert_eq!(info.applied, 302, "{info:?}");
            }
        });
    });
}

#[test]
fn tiny_log_idle_replicas_change_under_a_writer() {
    let n = if DEBUG { 50_000 } else { 200_000 };
    watchdog(
        "tiny log, idle replicas, concurrent writer",
        LIMIT,
        move || {
            let nr = NodeReplicated::builder(Counters(vec![0; 2]))
                .replicas(&[NodeId(0), NodeId(0)])
                .log_capacity(4)
                .build()
                .unwrap();
            // An idle participant (this thread, which is also the controller): registered
            // on the first replica, it operates only at the end.
            let idle = nr.register().unwrap();
            let barrier = Barrier::new(2);
            let pace = Pace::new(1);
            std::thread::scope(|s| {
                let (nr, barrier, pace) = (&nr, &barrier, &pace);
                let writer = s.spawn(move || {
                    let tkn = nr.register().unwrap();
                    barrier.wait();
                    let mut i = 0;
                    while pace.go_on(i as usize, n, 100) {
                        i += 1;
                        assert_eq!(nr.execute_mut(Inc(1), tkn), i);
                        pace.op();
                        if i % 64 == 0 {
                            // Not synchronization: lets the controller in on few cores.
                            std::thread::yield_now();
                        }
                    }
                    pace.finish();
                    i
                });
                barrier.wait();
                let infos = nr.replicas();
                assert_eq!(
                    infos.iter().map(|r| r.threads).collect::<Vec<_>>(),
                    vec![1, 1]
                );
                // The writer's replica stays; every other one is idle (no thread of it
                // operates), including the one the idle participant is matched to.
                let busy = infos[1].id;
                let mut churn = Churn::new(nr, 21, 4);
                // First the idle participant's replica goes: it moves to the new, emptier one.
                churn.add(nr, 2);
                churn.remove(nr, infos[0].id, 2);
                let mut removed_with_threads = 1;
                let mut last = 0;
                while !pace.done() || churn.changes() < 100 {
                    pace.wait_ops(&mut last, 64);
                    let infos = nr.replicas();
                    let idle: Vec<_> = infos.iter().filter(|r| r.id != busy).collect();
                    if infos.len() < 4 && (idle.is_empty() || churn.rng.below(2) == 0) {
                        churn.add(nr, 2);
                    } else {
                        let victim = idle[churn.rng.below(idle.len() as u64) as usize];
                        removed_with_threads += victim.threads;
                        churn.remove(nr, victim.id, 2);
                    }
                    pace.changed(churn.changes());
                }
                let writes = writer.join().unwrap();
                assert_eq!(nr.execute(Get(1), idle), writes);
                assert_eq!(nr.execute_mut(Inc(0), idle), 1);
                for (id, tkn) in tokens_on_every_replica(nr) {
                    assert_eq!(nr.execute(Get(1), tkn), writes, "replica {id:?}");
                    assert_eq!(nr.execute(Get(0), tkn), 1, "replica {id:?}");
                }
                eprintln!(
                "idle replicas under a writer: {} changes, {writes} writes, {removed_with_threads} \
                 removals of the idle participant's replica",
                churn.changes()
            );
                assert!(removed_with_threads > 0, "the idle participant was moved");
            });
        },
    );
}

// ---------------------------------------------------------------------------------------
// 7. Errors
// ---------------------------------------------------------------------------------------

#[test]
fn add_and_remove_errors_change_nothing() {
    watchdog("errors", LIMIT, || {
        let nr = NodeReplicated::builder(Counters(vec![0]))
            .log_capacity(8)
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        assert_eq!(nr.execute_mut(Inc(0), tkn), 1);

        // Unknown node (NoAffinity knows node 0 only).
        let before = nr.replicas();
        assert_eq!(
            nr.add_replica(NodeId(1)),
            Err(Error::UnknownNode(NodeId(1)))
        );
        assert_eq!(nr.replicas(), before);

        // The last replica cannot go.
        let only = before[0].id;
        assert_eq!(nr.remove_replica(only), Err(Error::LastReplica));
        assert_eq!(nr.replicas(), before);

        // Up to the replica limit, then no more.
        let mut added = Vec::new();
        for _ in 1..MAX_REPLICAS {
            added.push(nr.add_replica(NodeId(0)).unwrap());
        }
        let full = nr.replicas();
        assert_eq!(full.len(), MAX_REPLICAS);
        assert_eq!(
            nr.add_replica(NodeId(0)),
            Err(Error::TooManyReplicas {
                limit: MAX_REPLICAS
            })
        );
        assert_eq!(nr.replicas(), full);
        // Writes still work with 63 idle replicas on a log of 8.
        for i in 2..=20 {
            assert_eq!(nr.execute_mut(Inc(0), tkn), i);
        }

        // Unknown ids: one that never existed here (a bigger instance hands out higher
        // ids), and one that was removed.
        let other = NodeReplicated::builder(Counters(vec![0]))
            .replicas(&[NodeId(0); 3])
            .build()
            .unwrap();
        let stranger = other.replicas()[2].id;
        let before = nr.replicas();
        other.remove_replica(stranger).unwrap();
        let stranger = {
            // Ids are never reused: add to `other` until its ids pass ours.
            let mut id = stranger;
            for _ in 0..80 {
                id = other.add_replica(NodeId(0)).unwrap();
                other.remove_replica(id).unwrap();
            }
            id
        };
        assert!(nr.replicas().iter().all(|r| r.id != stranger));
        assert_eq!(
            nr.remove_replica(stranger),
            Err(Error::UnknownReplica(stranger))
        );
        assert_eq!(nr.replicas(), before);

        let victim = added[10];
        nr.remove_replica(victim).unwrap();
        let before = nr.replicas();
        assert_eq!(
            nr.remove_replica(victim),
            Err(Error::UnknownReplica(victim))
        );
        assert_eq!(nr.replicas(), before);

        // Down to the last replica, then no further.
        for info in nr.replicas().into_iter().skip(1) {
            nr.remove_replica(info.id).unwrap();
        }
        let last = nr.replicas();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].threads, 1);
        assert_eq!(nr.remove_replica(last[0].id), Err(Error::LastReplica));
        assert_eq!(nr.replicas(), last);
        assert_eq!(nr.execute(Get(0), tkn), 20);
        assert_eq!(nr.execute_mut(Inc(0), tkn), 21);

        // A freed slot is reusable after TooManyReplicas.
        let id = nr.add_replica(NodeId(0)).unwrap();
        assert!(!added.contains(&id), "ids are never reused");
    });
}

#[test]
fn add_replica_affinity_failure_changes_nothing() {
    let nodes = Arc::new(TestNodes { fail: Some(3) });
    let nr = NodeReplicated::builder(Counters(vec![0]))
        .replicas(&[NodeId(0)])
        .affinity(nodes)
        .build()
        .unwrap();
    let before = nr.replicas();
    assert_eq!(
        nr.add_replica(NodeId(3)),
        Err(Error::Affinity(AffinityError::Os(12)))
    );
    assert_eq!(nr.replicas(), before);
    assert_eq!(
        nr.add_replica(NodeId(4)),
        Err(Error::UnknownNode(NodeId(4)))
    );
    assert_eq!(nr.replicas(), before);
    // And the instance still works, including adding elsewhere.
    let tkn = nr.register().unwrap();
    assert_eq!(nr.execute_mut(Inc(0), tkn), 1);
    nr.add_replica(NodeId(2)).unwrap();
    assert_eq!(nr.replicas().len(), 2);
}

// ---------------------------------------------------------------------------------------
// 8. Matching with a four-node topology
// ---------------------------------------------------------------------------------------

thread_local! {
    /// The node the test pretends the calling thread runs on.
    static NODE: Cell<usize> = const { Cell::new(0) };
}

/// Four nodes; the calling thread's node is the thread-local `NODE`. Distances (SLIT
/// style): node 2 is equally near to 0 and 1 (so ties go to the fewest threads), node 3
/// is nearer to 1 and 2 than to 0.
#[derive(Debug)]
struct TestNodes {
    /// A node whose memory policy cannot be set (for the error test).
    fail: Option<usize>,
}

const DISTANCE: [[u32; 4]; 4] = [
    [10, 20, 20, 30],
    [20, 10, 20, 20],
    [20, 20, 10, 20],
    [30, 20, 20, 10],
];

impl AffinityManager for TestNodes {
    fn current_node(&self) -> NodeId {
        NodeId(NODE.with(Cell::get))
    }

    fn nodes(&self) -> Vec<NodeId> {
        (0..4).map(NodeId).collect()
    }

    fn distance(&self, a: NodeId, b: NodeId) -> u32 {
        DISTANCE[a.0][b.0]
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if Some(node.0) == self.fail {
            Err(AffinityError::Os(12))
        } else if node.0 < 4 {
            Ok(SavedPolicy::UNCHANGED)
        } else {
            Err(AffinityError::UnknownNode(node))
        }
    }

    fn restore_memory_policy(&self, _saved: SavedPolicy) {}
}

/// What the workers of the matching test do between checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Work,
    Stop,
}

#[test]
fn matching_follows_nodes_when_replicas_change() {
    // The nodes the threads register on, in registration order.
    const NODES: [usize; 10] = [0, 2, 1, 3, 2, 1, 0, 2, 3, 1];
    const THREADS: usize = NODES.len();
    let ops = if DEBUG { 5_000 } else { 20_000 };
    watchdog("matching on four nodes", LIMIT, move || {
        let nr = NodeReplicated::builder(Counters(vec![0; THREADS]))
            .replicas(&[NodeId(0), NodeId(1)])
            .affinity(Arc::new(TestNodes { fail: None }))
            .log_capacity(64)
            .build()
            .unwrap();
        let go = Barrier::new(THREADS + 1);
        let phase = std::sync::Mutex::new(Phase::Work);
        let nr = &nr;
        std::thread::scope(|s| {
            let (registered_tx, registered) = mpsc::channel();
            let mut workers = Vec::new();
            for (t, &node) in NODES.iter().enumerate() {
                let (go, phase, registered_tx) = (&go, &phase, registered_tx.clone());
                workers.push(s.spawn(move || {
                    NODE.with(|n| n.set(node));
                    let tkn = nr.register().unwrap();
                    assert_eq!(tkn.index(), t);
                    registered_tx.send(()).unwrap();
                    let mut count = 0;
                    loop {
                        go.wait();
                        if *phase.lock().unwrap() == Phase::Stop {
                            return count;
                        }
                        for _ in 0..ops {
                            count += 1;
                            assert_eq!(nr.execute_mut(Inc(t), tkn), count, "thread {t}");
                        }
                        assert_eq!(nr.execute(Get(t), tkn), count);
                        go.wait();
                    }
                }));
                // One at a time: the matching depends on the registration order.
                registered.recv().unwrap();
            }

            let counts = |expect: &[(usize, usize)]| {
                let infos = nr.replicas();
                assert_eq!(thread_sum(&infos), THREADS, "{infos:?}");
                let got: Vec<_> = infos.iter().map(|r| (r.node.0, r.threads)).collect();
                assert_eq!(got, expect, "(node, threads) per replica: {infos:?}");
                infos
            };
            // Node 2 threads tie between nodes 0 and 1 and go to the fewest; node 3
            // threads go to the nearer node 1.
            // A: t0 t4 t6 t7; B: t1 t2 t3 t5 t8 t9.
            let infos = counts(&[(0, 4), (1, 6)]);
            let (a, b) = (infos[0].id, infos[1].id);

            // Each change happens while every thread runs operations; the counts are
            // sampled once the change returned.
            let during = |change: &mut dyn FnMut(), expect: &[(usize, usize)]| {
                go.wait();
                change();
                counts(expect);
                go.wait();
                counts(expect);
            };
            let mut c = None;
            // Node 2's threads (t1 from B, t4, t7 from A) move to the new replica; no one else.
            during(
                &mut || c = Some(nr.add_replica(NodeId(2)).unwrap()),
                &[(0, 2), (1, 5), (2, 3)],
            );
            let c = c.unwrap();
            // B's threads: node 1 (t2 t5 t9) tie between A and C and go to the fewest,
            // in order: A(2)->3, A(3)->4 after t3 went to C(4), A(4)->5 vs C(5);
            // node 3 (t3 t8) go to the nearer C.
            during(&mut || nr.remove_replica(b).unwrap(), &[(0, 5), (2, 5)]);
            // A new node-1 replica takes node 1's threads (t2 t5 t9) back from A; it
            // reuses B's shell (slot 1).
            let mut d = None;
            during(
                &mut || d = Some(nr.add_replica(NodeId(1)).unwrap()),
                &[(0, 2), (1, 3), (2, 5)],
            );
            // A node-3 replica takes t3 and t8 from C.
            during(
                &mut || {
                    nr.add_replica(NodeId(3)).unwrap();
                },
                &[(0, 2), (1, 3), (2, 3), (3, 2)],
            );
            // Removing A: t0 and t6 (node 0) tie between D (node 1) and C (node 2) at
            // distance 20: t0 -> D (3 vs 3, lower slot), t6 -> C (4 vs 3).
            during(
                &mut || nr.remove_replica(a).unwrap(),
                &[(1, 4), (2, 4), (3, 2)],
            );
            assert_eq!(nr.replicas()[0].id, d.unwrap());
            assert_eq!(nr.replicas()[1].id, c);

            // A thread registered on node 0 now, with no replica there, goes to the
            // nearest, fewest: D and C tie at 20 and 4 threads, D has the lower slot.
            NODE.with(|n| n.set(0));
            let late = nr.register().unwrap();
            let infos = nr.replicas();
            assert_eq!(
                infos.iter().map(|r| r.threads).collect::<Vec<_>>(),
                vec![5, 4, 2]
            );
            assert_eq!(nr.execute_mut(Inc(0), late), (ops as u64) * 5 + 1);

            *phase.lock().unwrap() = Phase::Stop;
            go.wait();
            for (t, w) in workers.into_iter().enumerate() {
                assert_eq!(w.join().unwrap(), (ops as u64) * 5, "thread {t}");
            }
        });
    });
}

/// `replicas()` sampled *while* a removal runs: the victim leaves the list before its
/// threads are counted on the replicas they move to, so the thread counts sum to less
/// than the registered threads for a moment (and during `add_replica`'s moves, one
/// less). The matching test above samples between changes, where the sums are exact.
/// `replicas()` is a consistent snapshot: sampled concurrently with add/remove, the
/// thread counts always add up to the registered threads.
#[test]
fn replicas_snapshot_sums_during_changes() {
    watchdog("replicas() during changes", LIMIT, || {
        let nr = NodeReplicated::builder(Counters(vec![0]))
            .replicas(&[NodeId(0), NodeId(0)])
            .build()
            .unwrap();
        let _tokens: Vec<_> = (0..8).map(|_| nr.register().unwrap()).collect();
        let stop = AtomicBool::new(false);
        let (bad, samples, min) = std::thread::scope(|s| {
            let sampler = s.spawn(|| {
                let (mut bad, mut samples, mut min) = (0, 0, usize::MAX);
                while !stop.load(SeqCst) {
                    let sum = thread_sum(&nr.replicas());
                    samples += 1;
                    if sum != 8 {
                        bad += 1;
                        min = min.min(sum);
                    }
                }
                (bad, samples, min)
            });
            for _ in 0..2_000 {
                let infos = nr.replicas();
                let busiest = infos.iter().max_by_key(|r| r.threads).unwrap().id;
                nr.add_replica(NodeId(0)).unwrap();
                nr.remove_replica(busiest).unwrap();
            }
            stop.store(true, SeqCst);
            sampler.join().unwrap()
        });
        assert_eq!(
            bad, 0,
            "{bad} of {samples} concurrent samples did not sum to 8 threads (lowest {min})"
        );
    });
}
