//! The churn harness of `ldnr`'s dynamic-replica tests: a controller that keeps the
//! replica set changing ([`Churn`]), paced by the workers' progress ([`Pace`]), and map
//! workers whose every response is known in advance ([`map_worker`],
//! [`map_workers_under`]), checked against every live replica at the end
//! ([`assert_every_replica_holds`]).
//!
//! The assertions depend only on what the protocol guarantees, never on timing: the
//! controller paces itself by the workers' operations, not by the clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Barrier;

use ldnr::{
    Dispatch, Error, NodeId, NodeReplicated, ReplicaId, ReplicaInfo, ThreadToken, MAX_REPLICAS,
};

use crate::counters::{Counters, Get, Inc};
use crate::map::{MapRead, MapWrite, TestMap};
use crate::replicas::{ids, thread_sum, tokens_on_every_replica};
use crate::rng::Rng;
use crate::{watchdog, LIMIT};

/// Why an `expect` cannot fail: an instance always has a live replica.
const LIVE: &str = "an instance always has at least one live replica";

/// How the controller picks the replica to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
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

/// Every [`Victim`] rule, in the order [`Churn::step`] takes turns with them.
pub const VICTIMS: [Victim; 6] = [
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
pub struct Churn {
    /// The controller's random choices. A test may draw from it too, so that one seed
    /// decides a whole run.
    pub rng: Rng,
    max_live: usize,
    /// Live ids, oldest first.
    pub order: Vec<ReplicaId>,
    /// Replicas added.
    pub adds: usize,
    /// Replicas removed.
    pub removes: usize,
    /// Removals per [`VICTIMS`] rule (by [`Churn::step`]).
    pub by_victim: [usize; VICTIMS.len()],
}

impl Churn {
    /// A controller of `nr` keeping `1..=max_live` replicas live, its choices seeded
    /// with `seed`.
    pub fn new<D>(nr: &NodeReplicated<D>, seed: u64, max_live: usize) -> Self
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

    /// Replica changes made so far.
    pub fn changes(&self) -> usize {
        self.adds + self.removes
    }

    /// The replica `how` picks among `infos`.
    fn pick(&mut self, infos: &[ReplicaInfo], how: Victim) -> ReplicaId {
        match how {
            Victim::MostThreads => infos.iter().max_by_key(|r| r.threads).expect(LIVE).id,
            Victim::MostAdvanced => infos.iter().max_by_key(|r| r.applied).expect(LIVE).id,
            Victim::LeastAdvanced => infos.iter().min_by_key(|r| r.applied).expect(LIVE).id,
            Victim::Newest => *self.order.last().expect(LIVE),
            Victim::Oldest => self.order[0],
            Victim::Random => infos[self.rng.below(infos.len() as u64) as usize].id,
        }
    }

    /// Adds a replica on node 0 and checks the result.
    ///
    /// # Panics
    ///
    /// If `add_replica` fails, or `replicas()` reports anything but one more replica
    /// with no thread, every other unchanged and `registered` threads in all.
    pub fn add<D>(&mut self, nr: &NodeReplicated<D>, registered: usize) -> ReplicaId
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
    ///
    /// # Panics
    ///
    /// If `remove_replica` fails, or `replicas()` reports anything but `victim` gone and
    /// `registered` threads in all.
    pub fn remove<D>(&mut self, nr: &NodeReplicated<D>, victim: ReplicaId, registered: usize)
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
    ///
    /// # Panics
    ///
    /// As [`Churn::add`] and [`Churn::remove`], or if `replicas()` lists other replicas
    /// than the controller made.
    pub fn step<D>(&mut self, nr: &NodeReplicated<D>, registered: usize)
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
pub struct Pace {
    workers: usize,
    finished: AtomicUsize,
    ops: AtomicUsize,
    changes: AtomicUsize,
}

impl Pace {
    /// The pace of `workers` workers.
    pub fn new(workers: usize) -> Self {
        Pace {
            workers,
            finished: AtomicUsize::new(0),
            ops: AtomicUsize::new(0),
            changes: AtomicUsize::new(0),
        }
    }

    /// For a worker that has run `i` operations: go on?
    pub fn go_on(&self, i: usize, min_ops: usize, min_changes: usize) -> bool {
        i < min_ops || self.changes.load(SeqCst) < min_changes
    }

    /// A worker completed an operation.
    pub fn op(&self) {
        self.ops.fetch_add(1, SeqCst);
    }

    /// A worker is done.
    pub fn finish(&self) {
        self.finished.fetch_add(1, SeqCst);
    }

    /// Whether every worker is done.
    pub fn done(&self) -> bool {
        self.finished.load(SeqCst) == self.workers
    }

    /// For the controller: waits until the workers completed `per_change` operations
    /// since the last call, or are all done.
    pub fn wait_ops(&self, last: &mut usize, per_change: usize) {
        wait_until(|| self.done() || self.ops.load(SeqCst) >= *last + per_change);
        *last = self.ops.load(SeqCst);
    }

    /// The controller has made `total` changes so far.
    pub fn changed(&self, total: usize) {
        self.changes.store(total, SeqCst);
    }

    /// The changes the controller has reported.
    pub fn changes(&self) -> usize {
        self.changes.load(SeqCst)
    }
}

/// Spins (yielding) until `cond` holds: waits for a state the test can observe.
pub fn wait_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        std::thread::yield_now();
    }
}

/// A per-thread model for map workers: thread `t` writes only keys `t * 1000 + 0..37`,
/// so the response of each of its writes, and the final value of each of its keys, is
/// known without looking at other threads.
pub fn map_worker<F: FnMut() -> bool>(
    nr: &NodeReplicated<TestMap>,
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
pub fn assert_every_replica_holds(
    nr: &NodeReplicated<TestMap>,
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

/// Runs `workers` map workers (each at least `n` writes, and on until `min_changes`)
/// against `nr` while `control` reconfigures, then checks every replica against the
/// merged model. Returns the changes `control` reported.
pub fn map_workers_under<C>(
    nr: &NodeReplicated<TestMap>,
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

/// `workers` threads increment their own counters (each response must be the previous
/// one + 1) while `control` reconfigures; afterwards every live replica must hold
/// exactly the final counts. Returns the number of replica changes.
///
/// # Panics
///
/// On a wrong response or final count, or after [`LIMIT`].
pub fn counters_under<C>(
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
