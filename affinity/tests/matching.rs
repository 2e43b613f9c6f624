//! `SimulatedAffinity` (and `LinuxAffinity` on this host) driving the dispatcher's
//! matching through `NodeReplicated`.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use ldnr::{AffinityManager, NodeId, NodeReplicated, ThreadToken};
use ldnr_affinity::{LinuxAffinity, SimulatedAffinity, Topology};

mod common;

use common::Counter;

/// Runs `body`, aborting the process with a message if it has not finished in time
/// (a hang must fail the test run, not stall it).
fn with_watchdog<R>(what: &str, body: impl FnOnce() -> R) -> R {
    let (done, wait) = mpsc::channel::<()>();
    let what = what.to_owned();
    let dog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(Duration::from_secs(120)) {
            eprintln!("watchdog: {what} did not finish in 120 s");
            std::process::abort();
        }
    });
    let r = body();
    drop(done);
    dog.join().unwrap();
    r
}

/// A counter with replicas on `nodes`, under `manager`.
fn counter(nodes: &[NodeId], manager: Arc<dyn AffinityManager>) -> NodeReplicated<Counter> {
    NodeReplicated::builder(Counter::default())
        .replicas(nodes)
        .affinity(manager)
        .build()
        .unwrap()
}

fn node_of(nr: &NodeReplicated<Counter>, tkn: ThreadToken) -> NodeId {
    let id = nr.replica_of(tkn).expect("matched");
    nr.replicas()
        .into_iter()
        .find(|r| r.id == id)
        .expect("live replica")
        .node
}

fn four_nodes() -> Topology {
    Topology::from_sysfs(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/four_nodes"),
    )
    .unwrap()
}

#[test]
fn threads_are_matched_to_their_own_nodes_replica() {
    let sim = Arc::new(SimulatedAffinity::new(4));
    let nr = counter(&sim.nodes(), sim.clone());
    with_watchdog("own-node matching", || {
        std::thread::scope(|s| {
            for t in 0..12 {
                let (sim, nr) = (&sim, &nr);
                s.spawn(move || {
                    let node = NodeId(t % 4);
                    sim.enter(node).unwrap();
                    let tkn = nr.register().unwrap();
                    assert_eq!(node_of(nr, tkn), node);
                    for _ in 0..100 {
                        nr.execute_mut(1, tkn);
                    }
                });
            }
        });
    });
    let tkn = nr.register().unwrap();
    assert_eq!(nr.execute((), tkn), 1200);
    assert!(nr.replicas().iter().all(|r| r.threads >= 3));
}

#[test]
fn undeclared_threads_spread_round_robin() {
    let sim = Arc::new(SimulatedAffinity::new(4));
    let nr = counter(&sim.nodes(), sim.clone());
    with_watchdog("round-robin matching", || {
        std::thread::scope(|s| {
            for _ in 0..8 {
                // One after another, so the round-robin order is the spawn order.
                let nr = &nr;
                s.spawn(move || {
                    let tkn = nr.register().unwrap();
                    nr.execute_mut(1, tkn);
                })
                .join()
                .unwrap();
            }
        });
    });
    let threads: Vec<usize> = nr.replicas().iter().map(|r| r.threads).collect();
    assert_eq!(threads, [2, 2, 2, 2]);
}

#[test]
fn a_node_without_a_replica_uses_the_nearest_by_distance() {
    // Nodes 0-1 and 2-3 are 16 apart, the pairs 32; replicas on 1 and 2 only.
    let sim = Arc::new(SimulatedAffinity::from_topology(four_nodes()));
    let nr = counter(&[NodeId(1), NodeId(2)], sim.clone());
    for (from, to) in [(0, 1), (1, 1), (2, 2), (3, 2)] {
        sim.enter(NodeId(from)).unwrap();
        let tkn = nr.register().unwrap();
        assert_eq!(node_of(&nr, tkn), NodeId(to), "thread on node {from}");
    }
}

#[test]
fn add_replica_rematches_the_nodes_threads_and_remove_sends_them_back() {
    let sim = Arc::new(SimulatedAffinity::from_topology(four_nodes()));
    let nr = counter(&[NodeId(0), NodeId(2)], sim.clone());
    sim.enter(NodeId(3)).unwrap();
    let tkn = nr.register().unwrap();
    assert_eq!(node_of(&nr, tkn), NodeId(2));
    nr.execute_mut(5, tkn);
    let id = nr.add_replica(NodeId(3)).unwrap();
    assert_eq!(nr.replica_of(tkn), Some(id));
    assert_eq!(nr.execute((), tkn), 5);
    nr.execute_mut(1, tkn);
    nr.remove_replica(id).unwrap();
    assert_eq!(node_of(&nr, tkn), NodeId(2));
    assert_eq!(nr.execute((), tkn), 6);
    // Unknown nodes are refused.
    assert!(nr.add_replica(NodeId(4)).is_err());
}

#[test]
fn linux_affinity_on_this_host() {
    let linux = Arc::new(LinuxAffinity::new());
    let nr = counter(&linux.nodes(), linux.clone());
    let id = nr.add_replica(linux.nodes()[0]).unwrap();
    with_watchdog("linux matching", || {
        std::thread::scope(|s| {
            for node in linux.nodes() {
                let (linux, nr) = (&linux, &nr);
                s.spawn(move || {
                    if linux.pin_to_node(node).is_err() {
                        return; // not allowed to run there (cpuset)
                    }
                    assert_eq!(linux.current_node(), node);
                    let tkn = nr.register().unwrap();
                    assert_eq!(node_of(nr, tkn), node);
                    for _ in 0..1000 {
                        nr.execute_mut(1, tkn);
                    }
                });
            }
        });
    });
    nr.remove_replica(id).unwrap();
    let tkn = nr.register().unwrap();
    assert!(nr.execute((), tkn) <= 1000 * linux.nodes().len() as u64);
}
