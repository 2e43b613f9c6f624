//! `NodeAlloc` installed as this test binary's global allocator, with LD-NR on pretend
//! nodes (`SimulatedAffinity::with_node_alloc`): every replica's `BTreeMap` lies in its
//! node's arena, also a replica added right after another was freed, and also after
//! writes that allocate and free nodes; memory outside replica work is the system's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ldnr::{AffinityManager, Dispatch, NodeId, NodeReplicated, ReplicaId};
use ldnr_affinity::{NodeAlloc, SimulatedAffinity};

#[global_allocator]
static ALLOC: NodeAlloc = NodeAlloc::new();

#[derive(Clone, Default)]
struct Tree(BTreeMap<u64, Box<u64>>);

impl Dispatch for Tree {
    type ReadOperation = ();
    type WriteOperation = (bool, u64);
    type Response = usize;
    fn dispatch(&self, _: ()) -> usize {
        self.0.len()
    }
    fn dispatch_mut(&mut self, (insert, k): (bool, u64)) -> usize {
        if insert {
            self.0.insert(k, Box::new(k));
        } else {
            self.0.remove(&k);
        }
        self.0.len()
    }
}

/// Ends the process if the test hangs (a lock the allocator never releases).
fn watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("node_alloc test: watchdog: not finished after 120 s");
        std::process::abort();
    });
}

/// For each replica: its node, and how many of its tree's keys and boxed values lie in
/// that node's arena, of how many.
fn census(
    nr: &NodeReplicated<Tree>,
    sim: &SimulatedAffinity,
) -> Vec<(ReplicaId, NodeId, usize, usize)> {
    nr.replicas()
        .into_iter()
        .map(|info| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    sim.enter(info.node).unwrap();
                    let tkn = nr.register().unwrap();
                    assert_eq!(nr.replica_of(tkn), Some(info.id), "one replica per node");
                    let (on, all) = nr.read(tkn, |t: &Tree| {
                        let mut on = 0;
                        let mut all = 0;
                        for (k, v) in &t.0 {
                            for p in [
                                k as *const u64 as *const u8,
                                &**v as *const u64 as *const u8,
                            ] {
                                all += 1;
                                on += usize::from(ALLOC.node_of(p) == Some(info.node));
                            }
                        }
                        (on, all)
                    });
                    nr.deregister(tkn).unwrap();
                    (info.id, info.node, on, all)
                })
                .join()
                .unwrap()
            })
        })
        .collect()
}

fn assert_all_on_node(phase: &str, c: &[(ReplicaId, NodeId, usize, usize)], len: usize) {
    for &(id, node, on, all) in c {
        assert_eq!(all, 2 * len, "{phase}: replica {id:?} has every entry");
        assert_eq!(
            on, all,
            "{phase}: replica {id:?} on {node}: {on} of {all} in its arena"
        );
    }
}

#[test]
fn every_replica_lives_in_its_nodes_arena_through_free_add_and_writes() {
    watchdog();
    let outside = Box::new(1u64);
    assert_eq!(ALLOC.node_of(&*outside as *const u64 as *const u8), None);

    let sim = Arc::new(SimulatedAffinity::new(3).with_node_alloc());
    let initial = Tree((0..5000).map(|k| (k, Box::new(k))).collect());
    let nr = NodeReplicated::builder(initial)
        .replicas(&[NodeId(0), NodeId(1)])
        .affinity(sim.clone())
        .build()
        .unwrap();
    assert_all_on_node("construction", &census(&nr, &sim), 5000);

    // Free node 1's replica, then add one on node 2 right away: the freed blocks are
    // node 1's and must not be handed to node 2's clone.
    let one = nr
        .replicas()
        .into_iter()
        .find(|r| r.node == NodeId(1))
        .unwrap()
        .id;
    nr.remove_replica(one).unwrap();
    nr.add_replica(NodeId(2)).unwrap();
    nr.add_replica(NodeId(1)).unwrap();
    assert_all_on_node("add after a free", &census(&nr, &sim), 5000);

    // Writes from a thread on every node: inserts and removals (frees and reuse).
    std::thread::scope(|s| {
        for node in sim.nodes() {
            let (nr, sim) = (&nr, &sim);
            s.spawn(move || {
                sim.enter(node).unwrap();
                let tkn = nr.register().unwrap();
                for i in 0..3000u64 {
                    let k = 10_000 * (node.0 as u64 + 1) + i;
                    nr.execute_mut((true, k), tkn);
                    if i % 2 == 0 {
                        nr.execute_mut((false, k), tkn);
                    }
                }
                nr.deregister(tkn).unwrap();
            });
        }
    });
    assert_all_on_node("writes", &census(&nr, &sim), 5000 + 3 * 1500);

    // Outside replica work, the system allocator again.
    let after = Box::new(2u64);
    assert_eq!(ALLOC.node_of(&*after as *const u64 as *const u8), None);
    assert!(ALLOC.is_active());
}
