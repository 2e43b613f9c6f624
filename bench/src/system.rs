//! The systems under test, all holding the same pre-filled `u64 → u64` map, behind one
//! harness that every measurement shares: the driver's phased runs (`runner`),
//! the inactivity experiment (`inactivity`) and the criterion benches
//! (`benches/throughput.rs`).
//!
//! - **ldnr**: LD-NR over [`U64Map`], with one of three replica policies ([`Policy`]),
//!   under the run's affinity manager ([`Placement::manager`]);
//! - **nrN**: node-replication 0.1.1 over the same map ([`NrMap`]) with `N` static
//!   replicas; a worker uses the replica its [`Seat::home`] names (modulo `N`), as NR
//!   expects threads to register with a local replica; it needs a running thread on
//!   every replica (otherwise its log fills and it stalls), so it starts at `N` threads;
//! - **std**: `std::sync::RwLock<HashMap>`; **dashmap**, **papaya**, **scc**, **flurry**:
//!   concurrent maps, each with its default hasher.
//!
//! # How a harness drives a system
//!
//! A [`Kind`] names a system; [`Kind::build`] makes the [`System`]. A worker thread
//! calls [`System::work`] with its [`Seat`] and a [`Body`]: the system registers the
//! thread (LD-NR and NR hand out per-thread tokens) and runs the body with the thread's
//! [`Handle`]. The body is the harness's loop, generic over the handle, so it is
//! compiled once per system and its operations are direct calls: the only dynamic
//! choice is the one `match` in [`System::work`], once per thread.
//!
//! Every response goes through [`std::hint::black_box`] ([`Handle::run`]), so no lookup
//! is optimized away. papaya and flurry take one epoch guard per batch of operations,
//! not per operation.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex, RwLock};

use ldnr::{NodeId, NodeReplicated, ReplicaId, ThreadToken};
use ldnr_hashmap::{MapRead, MapWrite, U64Map};
use ldnr_testkit::nodes::Placement;

use crate::nr::NrMap;
use crate::workload::Op;

/// node-replication's log size: 1 MiB, which it rounds to 32,768 entries of 40 bytes.
pub const NR_LOG_BYTES: usize = 1 << 20;
/// LD-NR's log: the same number of entries as node-replication's (32 bytes each here).
pub const LOG_ENTRIES: usize = 1 << 15;

/// How LD-NR's replica set changes during a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// One replica per node that has workers: the core's `Policy::follow_threads` (it
    /// starts with one replica on node 0; a worker that registers on a node without a
    /// replica adds one, under load, and pays for the clone).
    Dynamic,
    /// A fixed number of replicas, on the placement's nodes in turn (the first, the
    /// second, …, wrapping around).
    Static(usize),
    /// Replica count per phase: at each phase start, replicas are removed (the newest
    /// first) or added (on the lowest node without one) until the count matches.
    Schedule(Vec<usize>),
}

/// A system under test, before it is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// LD-NR with a replica policy.
    Ldnr(Policy),
    /// node-replication 0.1.1 with this many static replicas.
    Nr(usize),
    /// `RwLock<HashMap>`.
    Std,
    /// dashmap 6.
    DashMap,
    /// papaya 0.2.
    Papaya,
    /// scc 3.
    Scc,
    /// flurry 0.5.
    Flurry,
}

impl Kind {
    /// The concurrent maps LD-NR is compared against.
    pub const MAPS: [Kind; 5] = [
        Kind::Std,
        Kind::DashMap,
        Kind::Papaya,
        Kind::Scc,
        Kind::Flurry,
    ];

    /// The label in tables, charts, the CSV and criterion's benchmark ids.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_bench::system::{Kind, Policy};
    /// assert_eq!(Kind::Ldnr(Policy::Dynamic).label(), "ldnr");
    /// assert_eq!(Kind::Ldnr(Policy::Static(2)).label(), "ldnr2");
    /// assert_eq!(Kind::Nr(1).label(), "nr1");
    /// ```
    pub fn label(&self) -> String {
        match self {
            Kind::Ldnr(Policy::Static(r)) => format!("ldnr{r}"),
            Kind::Ldnr(_) => "ldnr".into(),
            Kind::Nr(n) => format!("nr{n}"),
            Kind::Std => "std".into(),
            Kind::DashMap => "dashmap".into(),
            Kind::Papaya => "papaya".into(),
            Kind::Scc => "scc".into(),
            Kind::Flurry => "flurry".into(),
        }
    }

    /// Builds it, pre-filled with `k → k` for every `k < keys`, for up to `max_threads`
    /// workers spread over the nodes of `placement` (LD-NR runs under its manager).
    ///
    /// # Panics
    ///
    /// If LD-NR refuses the configuration (`max_threads` above its limit).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_bench::system::{Kind, Policy};
    /// use ldnr_testkit::nodes::{Affinity, Placement};
    ///
    /// let placement = Placement::new(Affinity::Simulated, 2, false);
    /// let system = Kind::Ldnr(Policy::Static(2)).build(100, &placement, 4);
    /// assert_eq!((system.name(), system.replicas()), ("ldnr2".to_string(), 2));
    /// ```
    pub fn build(&self, keys: u64, placement: &Placement, max_threads: usize) -> System {
        let map = match self {
            Kind::Ldnr(policy) => Map::Ldnr(Ldnr::new(keys, placement, max_threads, policy)),
            Kind::Nr(n) => Map::Nr(Nr::new(keys, *n)),
            Kind::Std => Map::Std(RwLock::new(U64Map::with_keys(keys).0)),
            Kind::DashMap => {
                let m = dashmap::DashMap::with_capacity(keys as usize);
                (0..keys).for_each(|k| {
                    m.insert(k, k);
                });
                Map::DashMap(m)
            }
            Kind::Papaya => {
                let m = papaya::HashMap::with_capacity(keys as usize);
                {
                    let pinned = m.pin();
                    (0..keys).for_each(|k| {
                        pinned.insert(k, k);
                    });
                }
                Map::Papaya(m)
            }
            Kind::Scc => {
                let m = scc::HashMap::with_capacity(keys as usize);
                (0..keys).for_each(|k| {
                    let _ = m.insert_sync(k, k);
                });
                Map::Scc(m)
            }
            Kind::Flurry => {
                let m = flurry::HashMap::with_capacity(keys as usize);
                {
                    let guard = m.guard();
                    (0..keys).for_each(|k| {
                        m.insert(k, k, &guard);
                    });
                }
                Map::Flurry(m)
            }
        };
        System {
            kind: self.clone(),
            map,
        }
    }
}

/// Which worker a thread is: its index, and which of a static-replica system's replicas
/// is its home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seat {
    /// The worker's index (0-based, in start order).
    pub index: usize,
    /// NR registers the worker with replica `home % replicas`. The driver's runner
    /// passes the position of the worker's node among the placement's nodes (the
    /// workers of a node share its replica), the inactivity experiment `index % 2` (its
    /// two halves), the throughput bench the worker's index. LD-NR matches workers to
    /// replicas itself, by their node, and ignores it.
    pub home: usize,
}

/// One thread's access to a system: what a [`Body`] runs operations through.
pub trait Handle {
    /// The value of `key`.
    fn get(&mut self, key: u64) -> Option<u64>;

    /// Stores `value` at `key`; returns the previous value.
    fn put(&mut self, key: u64, value: u64) -> Option<u64>;

    /// Runs every operation of `ops` (a `put` for a write, a `get` otherwise), each
    /// response through [`black_box`]. papaya and flurry take one epoch guard for the
    /// whole batch.
    #[inline]
    fn run(&mut self, ops: impl Iterator<Item = Op>) {
        for op in ops {
            if op.write {
                black_box(self.put(op.key, op.value));
            } else {
                black_box(self.get(op.key));
            }
        }
    }

    /// Called in a loop while this worker waits for others to finish a measurement;
    /// `writes`: whether the measurement has writes. Spins by default. NR keeps its
    /// replica live instead (see [`System::may_stall`]).
    fn idle(&mut self, _writes: bool) {
        std::hint::spin_loop();
    }
}

/// What a worker thread runs once it is registered: a harness's loop over its handle.
pub trait Body {
    /// What the loop returns.
    type Out;

    /// Runs the loop with the worker's `handle`.
    fn run<H: Handle>(self, handle: H) -> Self::Out;
}

/// A built system under test.
#[derive(Debug)]
pub struct System {
    kind: Kind,
    map: Map,
}

/// The structure of a [`System`].
// One per run, built once and never moved on a measured path: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Map {
    Ldnr(Ldnr),
    Nr(Nr),
    Std(RwLock<HashMap<u64, u64>>),
    DashMap(dashmap::DashMap<u64, u64>),
    Papaya(papaya::HashMap<u64, u64>),
    Scc(scc::HashMap<u64, u64>),
    Flurry(flurry::HashMap<u64, u64>),
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The maps hold up to millions of entries: name the structure only.
        f.write_str(match self {
            Map::Ldnr(_) => "Ldnr",
            Map::Nr(_) => "Nr",
            Map::Std(_) => "Std",
            Map::DashMap(_) => "DashMap",
            Map::Papaya(_) => "Papaya",
            Map::Scc(_) => "Scc",
            Map::Flurry(_) => "Flurry",
        })
    }
}

impl System {
    /// The label in tables, charts, the CSV and criterion's benchmark ids
    /// ([`Kind::label`]).
    pub fn name(&self) -> String {
        self.kind.label()
    }

    /// The replicas it has now (0 for a structure that does not replicate).
    pub fn replicas(&self) -> usize {
        match &self.map {
            // The core's policy changes the set on its own: ask the instance.
            Map::Ldnr(l) if l.policy == Policy::Dynamic => l.map.replicas().len(),
            Map::Ldnr(l) => l.live().len(),
            Map::Nr(n) => n.replicas.len(),
            _ => 0,
        }
    }

    /// The fewest threads it can run with (node-replication needs one per replica).
    pub fn min_threads(&self) -> usize {
        match &self.map {
            Map::Nr(n) => n.replicas.len(),
            _ => 1,
        }
    }

    /// Whether it can stall by design: node-replication 0.1.1, where a replica no
    /// thread drives fills the log, and a thread waiting for its write re-checks only
    /// every 2^29 spins. A harness reports a stall of such a system instead of failing.
    pub fn may_stall(&self) -> bool {
        matches!(self.map, Map::Nr(_))
    }

    /// Called at the start of phase `phase`, while the workers of the previous phase keep
    /// running: with [`Policy::Schedule`], LD-NR adds or removes replicas here (with
    /// [`Policy::Dynamic`] the core's policy follows the workers as they register).
    pub fn begin_phase(&self, phase: usize) {
        if let Map::Ldnr(l) = &self.map {
            l.begin_phase(phase);
        }
    }

    /// Checks, once the workers have registered, that LD-NR matched at least one of them
    /// to every replica (registration goes to the replica serving the fewest threads).
    ///
    /// # Panics
    ///
    /// If an LD-NR replica serves no worker.
    pub fn check_placement(&self) {
        if let Map::Ldnr(l) = &self.map {
            let infos = l.map.replicas();
            assert!(
                infos.iter().all(|r| r.threads >= 1),
                "a replica serves no worker: {infos:?}"
            );
        }
    }

    /// Registers the calling thread as worker `seat` and runs `body` with its handle.
    ///
    /// # Panics
    ///
    /// If the thread cannot register (more threads than the system was built for).
    pub fn work<B: Body>(&self, seat: Seat, body: B) -> B::Out {
        match &self.map {
            Map::Ldnr(l) => {
                let tkn = l.map.register().expect("below the thread limit");
                let out = body.run(LdnrHandle { map: &l.map, tkn });
                // A thread that ends gives its registration back, as LD-NR asks of one
                // (`deregister`, or `thread_token`). One that did not would stay in its
                // replica's reader set, and every later write there would wait-check its
                // slot: with fresh workers every round, a write at 10% writes paid for
                // every earlier round's worker (one thread at 64K keys: 0.80x the
                // `RwLock` in 40 rounds, where the pure cases ran at 0.94x and 0.89x).
                l.map.deregister(tkn).expect("registered above, once");
                out
            }
            Map::Nr(n) => {
                let replica = &n.replicas[seat.home % n.replicas.len()];
                let tkn = n.take_token(seat, replica);
                let out = body.run(NrHandle { replica, tkn });
                n.put_token(seat, tkn);
                out
            }
            Map::Std(m) => body.run(StdHandle(m)),
            Map::DashMap(m) => body.run(DashHandle(m)),
            Map::Papaya(m) => body.run(PapayaHandle(m)),
            Map::Scc(m) => body.run(SccHandle(m)),
            Map::Flurry(m) => body.run(FlurryHandle(m)),
        }
    }
}

/// LD-NR with a replica policy.
struct Ldnr {
    map: NodeReplicated<U64Map>,
    policy: Policy,
    /// The placement's nodes, ascending.
    nodes: Vec<NodeId>,
    /// The live replicas, oldest first.
    live: Mutex<Vec<(ReplicaId, NodeId)>>,
}

impl Ldnr {
    fn new(keys: u64, placement: &Placement, max_threads: usize, policy: &Policy) -> Self {
        let nodes = placement.nodes().to_vec();
        let initial = match policy {
            Policy::Dynamic => 1,
            Policy::Static(r) => *r,
            Policy::Schedule(counts) => counts.first().copied().unwrap_or(1),
        };
        let at: Vec<NodeId> = (0..initial.max(1))
            .map(|i| nodes[i % nodes.len()])
            .collect();
        let follow = match policy {
            Policy::Dynamic => ldnr::Policy::follow_threads(),
            Policy::Static(_) | Policy::Schedule(_) => ldnr::Policy::manual(),
        };
        let map = NodeReplicated::builder(U64Map::with_keys(keys))
            .replicas(&at)
            .policy(follow)
            .log_capacity(LOG_ENTRIES)
            .max_threads(max_threads.max(1))
            .affinity(placement.manager())
            .build()
            .expect("a valid LD-NR configuration");
        let live = map.replicas().iter().map(|r| (r.id, r.node)).collect();
        Self {
            map,
            policy: policy.clone(),
            nodes,
            live: Mutex::new(live),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Vec<(ReplicaId, NodeId)>> {
        self.live.lock().expect("no reconfiguration panicked")
    }

    fn add(&self, live: &mut Vec<(ReplicaId, NodeId)>, node: NodeId) {
        let id = self.map.add_replica(node).expect("room for a replica");
        live.push((id, node));
    }

    fn begin_phase(&self, phase: usize) {
        let mut live = self.live();
        match &self.policy {
            // The core's policy follows the workers as they register.
            Policy::Static(_) | Policy::Dynamic => {}
            Policy::Schedule(counts) => {
                let target = counts.get(phase).copied().unwrap_or(live.len()).max(1);
                while live.len() > target {
                    let (id, _) = live.pop().expect("more than one replica");
                    self.map
                        .remove_replica(id)
                        .expect("a live replica, not the last");
                }
                while live.len() < target {
                    let node = self
                        .nodes
                        .iter()
                        .copied()
                        .find(|n| !live.iter().any(|&(_, m)| m == *n))
                        .unwrap_or(self.nodes[live.len() % self.nodes.len()]);
                    self.add(&mut live, node);
                }
            }
        }
    }
}

/// node-replication 0.1.1 with static replicas sharing one log.
struct Nr {
    replicas: Vec<Arc<node_replication::Replica<'static, NrMap>>>,
    /// Per worker index, the replica and token of its registration. NR cannot give a
    /// registration back, and its combiner scans every registered context, so the
    /// worker that takes a seat again (a fresh thread each paired round) reuses the
    /// seat's registration, as if its thread had lived on; LD-NR's workers deregister
    /// instead. Both systems then hold as many registrations as workers run.
    seats: Mutex<Vec<Option<(usize, node_replication::ReplicaToken)>>>,
}

impl Nr {
    fn new(keys: u64, n: usize) -> Self {
        let log = Arc::new(node_replication::Log::<MapWrite>::new(NR_LOG_BYTES));
        let map = NrMap(U64Map::with_keys(keys));
        let replicas = (0..n.max(1))
            .map(|_| node_replication::Replica::with_data(&log, map.clone()))
            .collect();
        Self {
            replicas,
            seats: Mutex::new(Vec::new()),
        }
    }

    /// The registration of worker `seat` with `replica`, taken out of the seat while the
    /// worker runs: the seat's earlier one if it had one there, else a new one. (A second
    /// worker on a seat while one runs, which no harness starts, would register its own,
    /// never share one.)
    fn take_token(
        &self,
        seat: Seat,
        replica: &node_replication::Replica<'static, NrMap>,
    ) -> node_replication::ReplicaToken {
        let at = seat.home % self.replicas.len();
        let kept = self
            .seats
            .lock()
            .expect("no worker panicked registering")
            .get_mut(seat.index)
            .and_then(Option::take);
        match kept {
            Some((r, tkn)) if r == at => tkn,
            _ => replica.register().expect("below NR's thread limit"),
        }
    }

    /// Puts worker `seat`'s registration back for the seat's next worker.
    fn put_token(&self, seat: Seat, tkn: node_replication::ReplicaToken) {
        let at = seat.home % self.replicas.len();
        let mut seats = self.seats.lock().expect("no worker panicked registering");
        if seats.len() <= seat.index {
            seats.resize(seat.index + 1, None);
        }
        seats[seat.index] = Some((at, tkn));
    }
}

/// A registered LD-NR thread.
struct LdnrHandle<'a> {
    map: &'a NodeReplicated<U64Map>,
    tkn: ThreadToken,
}

impl Handle for LdnrHandle<'_> {
    #[inline]
    fn get(&mut self, key: u64) -> Option<u64> {
        self.map.execute(MapRead::Get(key), self.tkn)
    }

    #[inline]
    fn put(&mut self, key: u64, value: u64) -> Option<u64> {
        self.map.execute_mut(MapWrite::Insert(key, value), self.tkn)
    }
}

/// A thread registered with one NR replica.
struct NrHandle<'a> {
    replica: &'a node_replication::Replica<'static, NrMap>,
    tkn: node_replication::ReplicaToken,
}

impl Handle for NrHandle<'_> {
    #[inline]
    fn get(&mut self, key: u64) -> Option<u64> {
        self.replica.execute(MapRead::Get(key), self.tkn)
    }

    #[inline]
    fn put(&mut self, key: u64, value: u64) -> Option<u64> {
        self.replica
            .execute_mut(MapWrite::Insert(key, value), self.tkn)
    }

    fn idle(&mut self, writes: bool) {
        // A thread waiting for its write re-checks only every 2^29 spins, and a replica
        // no thread drives fills the log: combine for a thread that may be waiting, or
        // at least keep this replica applying the log. Key 0 already maps to 0.
        if writes {
            black_box(self.put(0, 0));
        } else {
            self.replica.sync(self.tkn);
        }
    }
}

/// `RwLock<HashMap>`.
struct StdHandle<'a>(&'a RwLock<HashMap<u64, u64>>);

impl Handle for StdHandle<'_> {
    #[inline]
    fn get(&mut self, key: u64) -> Option<u64> {
        let map = self.0.read().expect("no worker panicked holding the lock");
        map.get(&key).copied()
    }

    #[inline]
    fn put(&mut self, key: u64, value: u64) -> Option<u64> {
        let mut map = self.0.write().expect("no worker panicked holding the lock");
        map.insert(key, value)
    }
}

/// dashmap.
struct DashHandle<'a>(&'a dashmap::DashMap<u64, u64>);

impl Handle for DashHandle<'_> {
    #[inline]
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.get(&key).map(|v| *v)
    }

    #[inline]
    fn put(&mut self, key: u64, value: u64) -> Option<u64> {
        self.0.insert(key, value)
    }
}

/// papaya: one epoch guard per batch ([`Handle::run`]).
struct PapayaHandle<'a>(&'a papaya::HashMap<u64, u64>);

impl Handle for PapayaHandle<'_> {
    #[inline]
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.pin().get(&key).copied()
    }

    #[inline]
    fn put(&mut self, key: u64, value: u64) -> Option<u64> {
        self.0.pin().insert(key, value).copied()
    }

    #[inline]
    fn run(&mut self, ops: impl Iterator<Item = Op>) {
        let pinned = self.0.pin();
        for op in ops {
            if op.write {
                black_box(pinned.insert(op.key, op.value).copied());
            } else {
                black_box(pinned.get(&op.key).copied());
            }
        }
    }
}

/// scc.
struct SccHandle<'a>(&'a scc::HashMap<u64, u64>);

impl Handle for SccHandle<'_> {
    #[inline]
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.read_sync(&key, |_, v| *v)
    }

    #[inline]
    fn put(&mut self, key: u64, value: u64) -> Option<u64> {
        self.0.upsert_sync(key, value)
    }
}

/// flurry: one epoch guard per batch ([`Handle::run`]).
struct FlurryHandle<'a>(&'a flurry::HashMap<u64, u64>);

impl Handle for FlurryHandle<'_> {
    #[inline]
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.get(&key, &self.0.guard()).copied()
    }

    #[inline]
    fn put(&mut self, key: u64, value: u64) -> Option<u64> {
        self.0.insert(key, value, &self.0.guard()).copied()
    }

    #[inline]
    fn run(&mut self, ops: impl Iterator<Item = Op>) {
        let guard = self.0.guard();
        for op in ops {
            if op.write {
                black_box(self.0.insert(op.key, op.value, &guard).copied());
            } else {
                black_box(self.0.get(&op.key, &guard).copied());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldnr_testkit::nodes::Affinity;

    /// One write, then the worker ends.
    struct OneWrite;

    impl Body for OneWrite {
        type Out = ();

        fn run<H: Handle>(self, mut handle: H) {
            handle.put(1, 1);
        }
    }

    #[test]
    fn workers_that_take_a_seat_again_hold_one_registration_between_them() {
        ldnr_testkit::watchdog("three workers on one seat", ldnr_testkit::LIMIT, || {
            three_workers_on_one_seat()
        });
    }

    fn three_workers_on_one_seat() {
        let placement = Placement::new(Affinity::Simulated, 1, false);
        // Built for one worker: each round's registers only if the one before gave its
        // registration back.
        let ldnr = Kind::Ldnr(Policy::Static(1)).build(16, &placement, 1);
        let nr = Kind::Nr(1).build(16, &placement, 1);
        let mut tokens = Vec::new();
        for _round in 0..3 {
            for system in [&ldnr, &nr] {
                std::thread::scope(|s| {
                    s.spawn(|| system.work(Seat { index: 0, home: 0 }, OneWrite))
                        .join()
                        .expect("the worker registered and wrote");
                });
            }
            let Map::Nr(n) = &nr.map else { unreachable!() };
            tokens.push(n.seats.lock().unwrap().clone());
        }
        let Map::Ldnr(l) = &ldnr.map else {
            unreachable!()
        };
        assert_eq!(l.map.replicas()[0].threads, 0, "the workers deregistered");
        assert_eq!(l.map.stats().operations, 3);
        // NR: seat 0's one registration, the same in every round.
        assert_eq!(tokens[0].len(), 1);
        assert!(tokens[0][0].is_some());
        assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    }
}
