//! The structures under test, all holding the same pre-filled `u64 → u64` map.
//!
//! - **ldnr**: LD-NR over [`U64Map`], with one of three replica policies ([`Policy`]),
//!   under the run's affinity manager ([`Placement::manager`]);
//! - **nrN**: node-replication 0.1.1 over the same map with `N` static replicas; thread
//!   `t` uses the replica of its node's index (modulo `N`), as NR expects threads to register
//!   with a local replica; it needs a running thread on every replica (otherwise its log
//!   fills and it stalls), so it starts at `N` threads;
//! - **std**: `std::sync::RwLock<HashMap>`; **dashmap**, **papaya**, **scc**, **flurry**:
//!   concurrent maps, each with its default hasher.
//!
//! Every response goes through [`std::hint::black_box`], so no lookup is optimized away.
//! papaya and flurry take one epoch guard per batch of operations, not per operation.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex, RwLock};

use ldnr::{NodeId, NodeReplicated, ReplicaId};

use super::runner::{System, Worker};
use crate::nr::NrMap;
use ldnr_hashmap::{MapRead, MapWrite, U64Map};
use ldnr_testkit::nodes::Placement;

/// node-replication's log size: 1 MiB, which it rounds to 32,768 entries of 40 bytes.
pub const NR_LOG_BYTES: usize = 1 << 20;
/// LD-NR's log: the same number of entries as node-replication's (32 bytes each here).
pub const LOG_ENTRIES: usize = 1 << 15;

/// How LD-NR's replica set changes during a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// One replica per node that has workers: starts with one on node 0 and adds one
    /// (with `add_replica`, under load) when a node gets its first worker.
    Dynamic,
    /// A fixed number of replicas, on the placement's nodes in turn (the first, the
    /// second, …, wrapping around).
    Static(usize),
    /// Replica count per phase: at each phase start, replicas are removed (the newest
    /// first) or added (on the lowest node without one) until the count matches.
    Schedule(Vec<usize>),
}

/// A structure under test, before it is built.
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

    /// The label in tables, charts and the CSV.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_bench::systems::{Kind, Policy};
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
    pub fn build(&self, keys: u64, placement: &Placement, max_threads: usize) -> Box<dyn System> {
        match self {
            Kind::Ldnr(policy) => Box::new(Ldnr::new(keys, placement, max_threads, policy.clone())),
            Kind::Nr(n) => Box::new(Nr::new(keys, *n)),
            Kind::Std => Box::new(StdMap(RwLock::new(U64Map::with_keys(keys).0))),
            Kind::DashMap => {
                let m = dashmap::DashMap::with_capacity(keys as usize);
                (0..keys).for_each(|k| {
                    m.insert(k, k);
                });
                Box::new(DashMap(m))
            }
            Kind::Papaya => {
                let m = papaya::HashMap::with_capacity(keys as usize);
                {
                    let pinned = m.pin();
                    (0..keys).for_each(|k| {
                        pinned.insert(k, k);
                    });
                }
                Box::new(Papaya(m))
            }
            Kind::Scc => {
                let m = scc::HashMap::with_capacity(keys as usize);
                (0..keys).for_each(|k| {
                    let _ = m.insert_sync(k, k);
                });
                Box::new(Scc(m))
            }
            Kind::Flurry => {
                let m = flurry::HashMap::with_capacity(keys as usize);
                {
                    let guard = m.guard();
                    (0..keys).for_each(|k| {
                        m.insert(k, k, &guard);
                    });
                }
                Box::new(Flurry(m))
            }
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
    fn new(keys: u64, placement: &Placement, max_threads: usize, policy: Policy) -> Self {
        let nodes = placement.nodes().to_vec();
        let initial = match &policy {
            Policy::Dynamic => 1,
            Policy::Static(r) => *r,
            Policy::Schedule(counts) => counts.first().copied().unwrap_or(1),
        };
        let at: Vec<NodeId> = (0..initial.max(1))
            .map(|i| nodes[i % nodes.len()])
            .collect();
        let map = NodeReplicated::builder(U64Map::with_keys(keys))
            .replicas(&at)
            .log_capacity(LOG_ENTRIES)
            .max_threads(max_threads.max(1))
            .affinity(placement.manager())
            .build()
            .expect("a valid LD-NR configuration");
        let live = map.replicas().iter().map(|r| (r.id, r.node)).collect();
        Self {
            map,
            policy,
            nodes,
            live: Mutex::new(live),
        }
    }

    fn add(&self, live: &mut Vec<(ReplicaId, NodeId)>, node: NodeId) {
        let id = self.map.add_replica(node).expect("room for a replica");
        live.push((id, node));
    }
}

impl System for Ldnr {
    fn name(&self) -> String {
        Kind::Ldnr(self.policy.clone()).label()
    }

    fn replicas(&self) -> usize {
        self.live.lock().expect("not poisoned").len()
    }

    fn begin_phase(&self, phase: usize, active: &[NodeId]) {
        let mut live = self.live.lock().expect("not poisoned");
        match &self.policy {
            Policy::Static(_) => {}
            Policy::Dynamic => {
                for &node in active {
                    if !live.iter().any(|&(_, n)| n == node) {
                        self.add(&mut live, node);
                    }
                }
            }
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

    fn work(&self, w: &Worker<'_>) {
        let tkn = self.map.register().expect("below the thread limit");
        w.ready();
        w.run(|ops| {
            for op in ops {
                if op.write {
                    black_box(
                        self.map
                            .execute_mut(MapWrite::Insert(op.key, op.value), tkn),
                    );
                } else {
                    black_box(self.map.execute(MapRead::Get(op.key), tkn));
                }
            }
        });
    }
}

/// node-replication 0.1.1 with static replicas sharing one log.
struct Nr {
    replicas: Vec<Arc<node_replication::Replica<'static, NrMap>>>,
}

impl Nr {
    fn new(keys: u64, n: usize) -> Self {
        let log = Arc::new(node_replication::Log::<MapWrite>::new(NR_LOG_BYTES));
        let map = NrMap(U64Map::with_keys(keys));
        let replicas = (0..n.max(1))
            .map(|_| node_replication::Replica::with_data(&log, map.clone()))
            .collect();
        Self { replicas }
    }
}

impl System for Nr {
    fn name(&self) -> String {
        Kind::Nr(self.replicas.len()).label()
    }

    fn replicas(&self) -> usize {
        self.replicas.len()
    }

    fn min_threads(&self) -> usize {
        self.replicas.len()
    }

    fn work(&self, w: &Worker<'_>) {
        let replica = &self.replicas[w.node_index % self.replicas.len()];
        let tkn = replica.register().expect("below NR's thread limit");
        w.ready();
        w.run(|ops| {
            for op in ops {
                if op.write {
                    black_box(replica.execute_mut(MapWrite::Insert(op.key, op.value), tkn));
                } else {
                    black_box(replica.execute(MapRead::Get(op.key), tkn));
                }
            }
        });
    }
}

struct StdMap(RwLock<HashMap<u64, u64>>);

impl System for StdMap {
    fn name(&self) -> String {
        Kind::Std.label()
    }

    fn work(&self, w: &Worker<'_>) {
        w.ready();
        w.run(|ops| {
            for op in ops {
                if op.write {
                    black_box(
                        self.0
                            .write()
                            .expect("not poisoned")
                            .insert(op.key, op.value),
                    );
                } else {
                    black_box(self.0.read().expect("not poisoned").get(&op.key).copied());
                }
            }
        });
    }
}

struct DashMap(dashmap::DashMap<u64, u64>);

impl System for DashMap {
    fn name(&self) -> String {
        Kind::DashMap.label()
    }

    fn work(&self, w: &Worker<'_>) {
        w.ready();
        w.run(|ops| {
            for op in ops {
                if op.write {
                    black_box(self.0.insert(op.key, op.value));
                } else {
                    black_box(self.0.get(&op.key).map(|v| *v));
                }
            }
        });
    }
}

struct Papaya(papaya::HashMap<u64, u64>);

impl System for Papaya {
    fn name(&self) -> String {
        Kind::Papaya.label()
    }

    fn work(&self, w: &Worker<'_>) {
        w.ready();
        w.run(|ops| {
            let pinned = self.0.pin();
            for op in ops {
                if op.write {
                    black_box(pinned.insert(op.key, op.value).copied());
                } else {
                    black_box(pinned.get(&op.key).copied());
                }
            }
        });
    }
}

struct Scc(scc::HashMap<u64, u64>);

impl System for Scc {
    fn name(&self) -> String {
        Kind::Scc.label()
    }

    fn work(&self, w: &Worker<'_>) {
        w.ready();
        w.run(|ops| {
            for op in ops {
                if op.write {
                    black_box(self.0.upsert_sync(op.key, op.value));
                } else {
                    black_box(self.0.read_sync(&op.key, |_, v| *v));
                }
            }
        });
    }
}

struct Flurry(flurry::HashMap<u64, u64>);

impl System for Flurry {
    fn name(&self) -> String {
        Kind::Flurry.label()
    }

    fn work(&self, w: &Worker<'_>) {
        w.ready();
        w.run(|ops| {
            let guard = self.0.guard();
            for op in ops {
                if op.write {
                    black_box(self.0.insert(op.key, op.value, &guard).copied());
                } else {
                    black_box(self.0.get(&op.key, &guard).copied());
                }
            }
        });
    }
}
