//! Every error path of the builder and of `register`, the error type's `Display` and
//! `source`, the panic on a token of another instance, and the dispatcher's matching of
//! threads to replicas through the public API with a custom affinity manager.

use std::cell::Cell;
use std::error::Error as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use ldnr::{
    AffinityError, AffinityManager, Error, NodeId, NodeReplicated, SavedPolicy, MAX_LOG_CAPACITY,
    MAX_REPLICAS, MAX_THREADS, MIN_LOG_CAPACITY,
};
use ldnr_testkit::map::{MapRead, MapWrite, TestMap};
use ldnr_testkit::{watchdog, LIMIT};

thread_local! {
    /// The node the test affinity manager reports for the calling thread.
    static NODE: Cell<usize> = const { Cell::new(0) };
}

fn on_node(n: usize) {
    NODE.with(|c| c.set(n));
}

/// A test affinity manager: nodes `0..nodes`, the current node from [`NODE`], a distance
/// table where node 2 is closer to node 1 (15) than to node 0 (30), and switches that
/// make `set_memory_node` or `restore_memory_policy` fail as the operating system would.
#[derive(Debug, Default)]
struct TestAffinity {
    nodes: usize,
    fail: AtomicBool,
    fail_restore: AtomicBool,
    sets: AtomicUsize,
    restores: AtomicUsize,
}

impl TestAffinity {
    fn new(nodes: usize) -> Arc<Self> {
        Arc::new(TestAffinity {
            nodes,
            ..TestAffinity::default()
        })
    }
}

const EPERM: i32 = 1;
const EINVAL: i32 = 22;

impl AffinityManager for TestAffinity {
    fn current_node(&self) -> NodeId {
        NodeId(NODE.with(Cell::get))
    }

    fn nodes(&self) -> Vec<NodeId> {
        (0..self.nodes).map(NodeId).collect()
    }

    fn distance(&self, a: NodeId, b: NodeId) -> u32 {
        let (a, b) = (a.0.min(b.0), a.0.max(b.0));
        match (a, b) {
            _ if a == b => 10,
            (1, 2) => 15,
            (0, 2) => 30,
            _ => 20,
        }
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if self.fail.load(SeqCst) {
            return Err(AffinityError::Os(EPERM));
        }
        if node.0 >= self.nodes {
            return Err(AffinityError::UnknownNode(node));
        }
        self.sets.fetch_add(1, SeqCst);
        // A policy that must be restored (not `UNCHANGED`).
        Ok(SavedPolicy(node.0 as u64))
    }

    fn restore_memory_policy(&self, saved: SavedPolicy) -> Result<(), AffinityError> {
        assert!(!saved.is_unchanged());
        self.restores.fetch_add(1, SeqCst);
        if self.fail_restore.load(SeqCst) {
            return Err(AffinityError::Os(EINVAL));
        }
        Ok(())
    }
}

fn map() -> ldnr::Builder<TestMap> {
    NodeReplicated::builder(TestMap::default())
}

fn capacity_error(cap: usize) {
    let err = map().log_capacity(cap).build().unwrap_err();
    assert_eq!(
        err,
        Error::InvalidLogCapacity {
            requested: cap,
            min: MIN_LOG_CAPACITY,
            max: MAX_LOG_CAPACITY,
        },
        "capacity {cap}"
    );
}

#[test]
fn invalid_log_capacities_are_rejected() {
    capacity_error(0);
    capacity_error(1000); // not a power of two
    capacity_error(MIN_LOG_CAPACITY - 1);
    capacity_error(MIN_LOG_CAPACITY / 2); // a power of two, but below the minimum
    capacity_error(MAX_LOG_CAPACITY * 2); // a power of two, but above the maximum
    capacity_error(MAX_LOG_CAPACITY + 1);
    capacity_error(usize::MAX);
}

#[test]
fn boundary_log_capacities_are_accepted() {
    for cap in [MIN_LOG_CAPACITY, MIN_LOG_CAPACITY * 2] {
        let nr = map().log_capacity(cap).build().expect("a valid capacity");
        assert_eq!(nr.log_capacity(), cap);
    }
    // MAX_LOG_CAPACITY itself would allocate hundreds of MiB; its neighbours above are
    // rejected (see `invalid_log_capacities_are_rejected`).
}

#[test]
fn invalid_thread_limits_are_rejected() {
    for n in [0, MAX_THREADS + 1, usize::MAX] {
        assert_eq!(
            map().max_threads(n).build().unwrap_err(),
            Error::InvalidThreadLimit { requested: n }
        );
    }
    assert!(map().max_threads(1).build().is_ok());
}

#[test]
fn replica_lists_are_checked() {
    assert_eq!(map().replicas(&[]).build().unwrap_err(), Error::NoReplicas);
    assert_eq!(
        map()
            .replicas(&vec![NodeId(0); MAX_REPLICAS + 1])
            .build()
            .unwrap_err(),
        Error::TooManyReplicas {
            limit: MAX_REPLICAS
        }
    );
    let nr = map()
        .replicas(&vec![NodeId(0); MAX_REPLICAS])
        .log_capacity(MIN_LOG_CAPACITY)
        .build()
        .expect("MAX_REPLICAS replicas are allowed");
    assert_eq!(nr.replicas().len(), MAX_REPLICAS);
}

#[test]
fn unknown_nodes_are_rejected() {
    // The default manager knows node 0 only.
    assert_eq!(
        map().replicas(&[NodeId(0), NodeId(1)]).build().unwrap_err(),
        Error::UnknownNode(NodeId(1))
    );
    // A manager with nodes 0..2.
    let aff = TestAffinity::new(2);
    assert_eq!(
        map()
            .replicas(&[NodeId(1), NodeId(0), NodeId(2)])
            .affinity(aff.clone())
            .build()
            .unwrap_err(),
        Error::UnknownNode(NodeId(2))
    );
    let nr = map()
        .replicas(&[NodeId(1), NodeId(0)])
        .affinity(aff)
        .build()
        .expect("both nodes are known");
    let nodes: Vec<NodeId> = nr.replicas().iter().map(|r| r.node).collect();
    assert_eq!(nodes, [NodeId(1), NodeId(0)]);
}

#[test]
fn default_replica_is_on_the_builders_node() {
    let aff = TestAffinity::new(3);
    on_node(2);
    let nr = map().affinity(aff).build().expect("node 2 is known");
    on_node(0);
    let infos = nr.replicas();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].node, NodeId(2));
}

#[test]
fn failing_memory_policy_fails_the_build() {
    let aff = TestAffinity::new(2);
    aff.fail.store(true, SeqCst);
    let err = map()
        .replicas(&[NodeId(0), NodeId(1)])
        .affinity(aff)
        .build()
        .unwrap_err();
    assert_eq!(err, Error::Affinity(AffinityError::Os(EPERM)));
    let source = err.source().expect("an affinity error has a source");
    assert_eq!(
        source.downcast_ref::<AffinityError>(),
        Some(&AffinityError::Os(EPERM))
    );
}

#[test]
fn memory_policies_are_restored_and_failures_after_build_do_not_fail_operations() {
    watchdog("memory policies", LIMIT, || {
        let aff = TestAffinity::new(2);
        let nr = map()
            .replicas(&[NodeId(0), NodeId(1)])
            .log_capacity(8)
            .affinity(aff.clone())
            .build()
            .expect("a valid configuration");
        on_node(1);
        let tkn = nr.register().expect("below the thread limit");
        for k in 0..50 {
            nr.execute_mut(MapWrite::Insert(k, k), tkn);
        }
        assert!(
            aff.sets.load(SeqCst) >= 2,
            "each replica was made under its node"
        );
        assert_eq!(
            aff.sets.load(SeqCst),
            aff.restores.load(SeqCst),
            "every policy that was set was restored"
        );
        // Setting a policy is best effort once the instance exists.
        aff.fail.store(true, SeqCst);
        for k in 50..100 {
            assert_eq!(nr.execute_mut(MapWrite::Insert(k, k), tkn), None);
        }
        assert_eq!(nr.execute(MapRead::Len, tkn), Some(100));
        assert_eq!(aff.sets.load(SeqCst), aff.restores.load(SeqCst));
    });
}

/// A previous policy the manager cannot restore (say, its nodes left the cpuset): `build`
/// and `add_replica` report it and change nothing (the clone is dropped); around a batch
/// the operations, which are done, succeed anyway.
#[test]
fn failing_restores_fail_build_and_add_replica_but_not_operations() {
    watchdog("failing restores", LIMIT, || {
        let aff = TestAffinity::new(3);
        aff.fail_restore.store(true, SeqCst);
        let err = map()
            .replicas(&[NodeId(0), NodeId(1)])
            .affinity(aff.clone())
            .build()
            .unwrap_err();
        assert_eq!(err, Error::Affinity(AffinityError::Os(EINVAL)));
        assert_eq!(
            aff.sets.load(SeqCst),
            1,
            "build stopped at the first replica"
        );
        assert_eq!(aff.restores.load(SeqCst), 1);

        aff.fail_restore.store(false, SeqCst);
        let nr = map()
            .replicas(&[NodeId(0), NodeId(1)])
            .affinity(aff.clone())
            .build()
            .expect("restores work again");
        on_node(0);
        let tkn = nr.register().expect("below the thread limit");
        nr.execute_mut(MapWrite::Insert(1, 1), tkn);
        let before: Vec<_> = nr.replicas().iter().map(|r| (r.id, r.node)).collect();

        aff.fail_restore.store(true, SeqCst);
        assert_eq!(
            nr.add_replica(NodeId(2)),
            Err(Error::Affinity(AffinityError::Os(EINVAL)))
        );
        let after: Vec<_> = nr.replicas().iter().map(|r| (r.id, r.node)).collect();
        assert_eq!(before, after, "add_replica changed nothing");
        let restores = aff.restores.load(SeqCst);
        for k in 2..50 {
            assert_eq!(nr.execute_mut(MapWrite::Insert(k, k), tkn), None);
        }
        assert!(
            aff.restores.load(SeqCst) > restores,
            "batches tried to restore"
        );
        assert_eq!(nr.execute(MapRead::Len, tkn), Some(49));
        assert_eq!(aff.sets.load(SeqCst), aff.restores.load(SeqCst));
    });
}

#[test]
fn register_past_the_thread_limit_fails_and_existing_tokens_keep_working() {
    watchdog("thread limit", LIMIT, || {
        let nr = map()
            .replicas(&[NodeId(0), NodeId(0)])
            .max_threads(3)
            .build()
            .expect("a valid configuration");
        let tkns: Vec<_> = (0..3)
            .map(|_| nr.register().expect("below the thread limit"))
            .collect();
        let idx: Vec<usize> = tkns.iter().map(|t| t.index()).collect();
        assert_eq!(idx, [0, 1, 2]);
        for _ in 0..2 {
            assert_eq!(
                nr.register().unwrap_err(),
                Error::TooManyThreads { limit: 3 }
            );
        }
        // A failed registration changes nothing.
        assert_eq!(nr.replicas().iter().map(|r| r.threads).sum::<usize>(), 3);
        for (i, &tkn) in tkns.iter().enumerate() {
            assert_eq!(nr.execute_mut(MapWrite::Insert(i as u64, 7), tkn), None);
        }
        for &tkn in &tkns {
            assert_eq!(nr.execute(MapRead::Len, tkn), Some(3));
            assert_eq!(nr.execute(MapRead::Get(2), tkn), Some(7));
        }
        // From another thread too.
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(
                    nr.register().unwrap_err(),
                    Error::TooManyThreads { limit: 3 }
                );
            });
        });
    });
}

#[test]
fn every_error_displays_a_message_and_only_affinity_has_a_source() {
    let nr = map().build().expect("defaults are valid");
    let replica = nr.replicas()[0].id;
    let errors = [
        Error::TooManyThreads { limit: 3 },
        Error::TooManyReplicas {
            limit: MAX_REPLICAS,
        },
        Error::NoReplicas,
        Error::UnknownNode(NodeId(5)),
        Error::UnknownReplica(replica),
        Error::LastReplica,
        Error::InvalidLogCapacity {
            requested: 3,
            min: MIN_LOG_CAPACITY,
            max: MAX_LOG_CAPACITY,
        },
        Error::InvalidThreadLimit { requested: 0 },
        Error::InstancesExhausted,
        Error::Affinity(AffinityError::Os(EPERM)),
        Error::Affinity(AffinityError::UnknownNode(NodeId(4))),
        Error::Affinity(AffinityError::NoUsableCpus(NodeId(4))),
        Error::Affinity(AffinityError::StalePolicy),
    ];
    let mut messages = std::collections::HashSet::new();
    for e in &errors {
        let msg = e.to_string();
        assert!(!msg.trim().is_empty(), "{e:?} displays nothing");
        assert!(
            messages.insert(msg.clone()),
            "{e:?}: duplicate message {msg:?}"
        );
        match e {
            Error::Affinity(inner) => {
                let src = e.source().expect("Affinity has a source");
                assert_eq!(src.downcast_ref::<AffinityError>(), Some(inner));
                assert!(!src.to_string().is_empty());
            }
            _ => assert!(e.source().is_none(), "{e:?} has an unexpected source"),
        }
    }
    assert!(Error::InvalidThreadLimit { requested: 0 }
        .to_string()
        .contains(&MAX_THREADS.to_string()));
}

#[test]
#[should_panic(expected = "another NodeReplicated instance")]
fn token_of_another_instance_panics_on_execute() {
    watchdog("foreign token, execute", LIMIT, || {
        let a = map().build().expect("defaults are valid");
        let b = map().build().expect("defaults are valid");
        let _ = a.register().expect("below the thread limit");
        let tb = b.register().expect("below the thread limit");
        a.execute(MapRead::Len, tb);
    });
}

#[test]
#[should_panic(expected = "another NodeReplicated instance")]
fn token_of_another_instance_panics_on_execute_mut() {
    watchdog("foreign token, execute_mut", LIMIT, || {
        let a = map().build().expect("defaults are valid");
        let b = map().build().expect("defaults are valid");
        let _ = a.register().expect("below the thread limit");
        let tb = b.register().expect("below the thread limit");
        a.execute_mut(MapWrite::Insert(1, 1), tb);
    });
}

#[test]
fn a_token_of_a_dropped_instance_is_not_accepted_by_a_later_one() {
    // Instance ids are unique in the process: an instance built after another was
    // dropped (possibly at the same address) does not accept the dropped one's tokens.
    let stale = {
        let a = map().build().expect("defaults are valid");
        a.register().expect("below the thread limit")
    };
    let b = map().build().expect("defaults are valid");
    let own = b.register().expect("below the thread limit");
    assert_eq!(own.index(), stale.index());
    assert_eq!(b.execute(MapRead::Len, own), Some(0));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.execute(MapRead::Len, stale);
    }));
    assert!(
        outcome.is_err(),
        "a token of a dropped instance was accepted"
    );
}

/// Registers the calling thread as if it ran on `node` and returns the thread counts of
/// the replicas afterwards.
fn register_on(nr: &NodeReplicated<TestMap>, node: usize) -> Vec<usize> {
    on_node(node);
    nr.register().expect("below the thread limit");
    nr.replicas().iter().map(|r| r.threads).collect()
}

#[test]
fn dispatcher_matches_threads_to_local_then_nearest_replicas() {
    watchdog("dispatcher matching", LIMIT, || {
        let nr = map()
            .replicas(&[NodeId(0), NodeId(1), NodeId(1)])
            .affinity(TestAffinity::new(3))
            .build()
            .expect("nodes 0 and 1 are known");
        let nodes: Vec<NodeId> = nr.replicas().iter().map(|r| r.node).collect();
        assert_eq!(nodes, [NodeId(0), NodeId(1), NodeId(1)]);

        // Two threads on node 1: one on each node-1 replica, none on node 0.
        let after_one = register_on(&nr, 1);
        assert_eq!(after_one[0], 0);
        assert_eq!(after_one[1] + after_one[2], 1);
        assert_eq!(register_on(&nr, 1), [0, 1, 1], "balanced over node 1");

        // Node 2 has no replica; node 1 (distance 15) is nearer than node 0 (30), even
        // though node 0's replica serves no thread.
        let after_remote = register_on(&nr, 2);
        assert_eq!(after_remote[0], 0, "node 2 went to the farther node 0");
        assert_eq!(after_remote[1] + after_remote[2], 3);

        // A thread on node 0 goes to the node-0 replica, though it is the only one there.
        let after_local = register_on(&nr, 0);
        assert_eq!(after_local[0], 1);
        assert_eq!(after_local[1] + after_local[2], 3);

        // One more on node 1 goes to the less loaded node-1 replica.
        assert_eq!(register_on(&nr, 1), [1, 2, 2], "balanced over node 1");

        // The matched replicas serve the registered threads correctly.
        on_node(2);
        let tkn = nr.register().expect("below the thread limit");
        nr.execute_mut(MapWrite::Insert(1, 2), tkn);
        on_node(0);
        let t0 = nr.register().expect("below the thread limit");
        assert_eq!(nr.execute(MapRead::Get(1), t0), Some(2));
        on_node(0);
    });
}

#[test]
fn dispatcher_uses_every_local_replica_before_sharing() {
    watchdog("dispatcher balance", LIMIT, || {
        let nr = map()
            .replicas(&[NodeId(0); 3])
            .build()
            .expect("a valid configuration");
        let mut counts = Vec::new();
        for _ in 0..6 {
            nr.register().expect("below the thread limit");
            counts = nr.replicas().iter().map(|r| r.threads).collect::<Vec<_>>();
            let (min, max) = (counts.iter().min(), counts.iter().max());
            assert!(
                max.zip(min).is_some_and(|(a, b)| a - b <= 1),
                "unbalanced: {counts:?}"
            );
        }
        assert_eq!(counts, [2, 2, 2]);
    });
}
