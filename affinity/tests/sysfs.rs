//! Topology parsing from copies of `/sys/devices/system/node` (tests/fixtures/*), and
//! what the managers make of each tree.

use std::path::PathBuf;

use ldnr::{AffinityError, AffinityManager, NodeId};
use ldnr_affinity::{LinuxAffinity, SimulatedAffinity, Topology, TopologyError};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn ids(t: &Topology) -> Vec<usize> {
    t.nodes().iter().map(|n| n.id.0).collect()
}

#[test]
fn one_node() {
    let t = Topology::from_sysfs(fixture("one_node")).unwrap();
    assert_eq!(ids(&t), [0]);
    assert_eq!(t.cpus_of(NodeId(0)), [0, 1]);
    assert_eq!(t.distances(), [[10]]);
    assert_eq!(t.memory_nodes(), [NodeId(0)]);
}

#[test]
fn four_nodes_with_split_cpulists_and_a_distance_matrix() {
    let t = Topology::from_sysfs(fixture("four_nodes")).unwrap();
    assert_eq!(ids(&t), [0, 1, 2, 3]);
    assert_eq!(t.cpus_of(NodeId(1)), [4, 5, 6, 7, 20, 21, 22, 23]);
    assert_eq!(t.node_of_cpu(19), Some(NodeId(0)));
    assert_eq!(t.node_of_cpu(28), Some(NodeId(3)));
    assert_eq!(t.node_of_cpu(32), None);
    assert_eq!(
        t.distances(),
        [
            [10, 16, 32, 32],
            [16, 10, 32, 32],
            [32, 32, 10, 16],
            [32, 32, 16, 10]
        ]
    );
    assert_eq!(t.distance(NodeId(2), NodeId(3)), 16);
    assert_eq!(t.distance(NodeId(0), NodeId(3)), 32);
}

#[test]
fn offline_nodes_do_not_count_and_distances_follow_the_online_order() {
    let t = Topology::from_sysfs(fixture("offline")).unwrap();
    assert_eq!(ids(&t), [0, 2]);
    assert!(t.node(NodeId(1)).is_none(), "node1/ exists but is offline");
    assert_eq!(t.cpus_of(NodeId(2)), [4, 5, 6, 7]);
    // node2's row is "20 10": columns are the online nodes 0 and 2.
    assert_eq!(t.distance(NodeId(2), NodeId(0)), 20);
    assert_eq!(t.distance(NodeId(2), NodeId(2)), 10);
    assert_eq!(t.memory_nodes(), [NodeId(0), NodeId(2)]);
}

/// What a `LinuxAffinity` over a pretend tree must hold on any host: replicas only on
/// nodes with CPUs and memory, memory-only nodes apart, and a thread's node one with
/// CPUs. (Whether it steers depends on this host's kernel having the tree's nodes: if
/// not, it runs as one node and says so.)
fn linux_over(t: &Topology) -> LinuxAffinity {
    let linux = LinuxAffinity::with_topology(t.clone());
    let replica = t.replica_nodes();
    match linux.degraded() {
        None => {
            assert_eq!(linux.nodes(), replica);
            assert_eq!(linux.memory_only_nodes(), t.memory_only_nodes());
        }
        Some(why) => {
            assert_eq!(linux.nodes().len(), 1, "{why}");
            assert!(replica.contains(&linux.nodes()[0]), "{why}");
            assert!(!linux.steers_memory());
        }
    }
    for &m in &t.memory_only_nodes() {
        assert!(!linux.nodes().contains(&m), "{m} is memory-only");
        assert!(linux.current_node() != m);
        assert_eq!(linux.pin_to_node(m), Err(AffinityError::NoUsableCpus(m)));
    }
    linux
}

/// Threads spread round-robin by a simulated copy of the tree: never on a node without
/// CPUs.
fn threads_of(t: &Topology, n: usize) -> Vec<NodeId> {
    let sim = SimulatedAffinity::from_topology(t.clone());
    assert_eq!(sim.nodes(), t.replica_nodes());
    (0..n)
        .map(|_| std::thread::scope(|s| s.spawn(|| sim.current_node()).join().unwrap()))
        .collect()
}

#[test]
fn cpu_only_and_memory_only_nodes() {
    let t = Topology::from_sysfs(fixture("memoryless")).unwrap();
    assert_eq!(ids(&t), [0, 1, 2, 3]);
    assert_eq!(t.memory_nodes(), [NodeId(0), NodeId(1), NodeId(3)]);
    assert!(t.cpus_of(NodeId(3)).is_empty());
    assert_eq!(t.node_of_cpu(4), Some(NodeId(2)));
    // The CPU-only node is nearest to node 0.
    assert_eq!(t.distance(NodeId(2), NodeId(0)), 11);
    assert_eq!(t.replica_nodes(), [NodeId(0), NodeId(1)]);
    assert_eq!(t.memory_only_nodes(), [NodeId(3)]);
    assert_eq!(t.thread_nodes(), [NodeId(0), NodeId(1), NodeId(2)]);
    let linux = linux_over(&t);
    assert_eq!(linux.distance(NodeId(2), NodeId(1)), 21);
    let threads = threads_of(&t, 6);
    assert_eq!(threads, [0, 1, 2, 0, 1, 2].map(NodeId));
}

/// A CXL memory expander: a node with memory and no CPUs, close to node 0.
#[test]
fn a_cpu_less_memory_node_is_reported_apart() {
    let t = Topology::from_sysfs(fixture("cxl")).unwrap();
    assert_eq!(ids(&t), [0, 1, 2]);
    assert_eq!(t.replica_nodes(), [NodeId(0), NodeId(1)]);
    assert_eq!(t.memory_only_nodes(), [NodeId(2)]);
    assert_eq!(t.distance(NodeId(0), NodeId(2)), 14);
    linux_over(&t);
    assert!(!threads_of(&t, 9).contains(&NodeId(2)));
}

#[test]
fn skipped_node_ids() {
    let t = Topology::from_sysfs(fixture("sparse_ids")).unwrap();
    assert_eq!(ids(&t), [0, 4, 9]);
    assert_eq!(t.cpus_of(NodeId(9)), [4, 5]);
    // Columns follow `online`: node 9's row "30 30 10" is to nodes 0, 4, 9.
    assert_eq!(t.distance(NodeId(9), NodeId(4)), 30);
    assert_eq!(t.distance(NodeId(4), NodeId(0)), 20);
    assert_eq!(t.distance(NodeId(9), NodeId(9)), 10);
    assert!(t.node(NodeId(1)).is_none());
    linux_over(&t);
    assert_eq!(threads_of(&t, 3), [0, 4, 9].map(NodeId));
}

#[test]
fn node_0_offline() {
    let t = Topology::from_sysfs(fixture("node0_offline")).unwrap();
    assert_eq!(ids(&t), [1, 2]);
    assert!(t.node(NodeId(0)).is_none(), "node0/ exists but is offline");
    assert_eq!(t.distance(NodeId(1), NodeId(2)), 20);
    assert_eq!(t.replica_nodes(), [NodeId(1), NodeId(2)]);
    let linux = linux_over(&t);
    assert!(linux.nodes().iter().all(|n| n.0 != 0));
    assert!(linux.current_node() != NodeId(0));
    assert_eq!(threads_of(&t, 2), [1, 2].map(NodeId));
}

#[test]
fn odd_cpulists_and_no_has_memory_file() {
    let t = Topology::from_sysfs(fixture("odd_cpulists")).unwrap();
    assert_eq!(t.cpus_of(NodeId(0)), [0, 1, 2, 3, 8, 9, 10, 11, 32]);
    assert_eq!(t.cpus_of(NodeId(1)), [4, 5, 6, 7, 12, 13, 14, 15, 33]);
    assert_eq!(t.memory_nodes(), [NodeId(0), NodeId(1)]);
    assert_eq!(t.node_of_cpu(33), Some(NodeId(1)));
}

#[test]
fn a_short_distance_row_is_an_error_that_says_where() {
    match Topology::from_sysfs(fixture("short_distance_row")) {
        Err(TopologyError::Distances(why)) => {
            assert!(why.contains("node1/distance"), "{why}");
            assert!(why.contains("1 distances for 2 online nodes"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

/// Node 0 nearer to node 1 than to itself: the dispatcher would send node 0's threads
/// away from node 0's own replica. Refused, with the numbers.
#[test]
fn inverted_distances_are_an_error() {
    match Topology::from_sysfs(fixture("inverted_distances")) {
        Err(e @ TopologyError::Distances(_)) => {
            let msg = e.to_string();
            assert!(
                msg.contains(
                    "node 0 is not nearest to itself: distance 30 to itself, 10 to node 1"
                ),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn broken_directories_are_errors() {
    assert!(matches!(
        Topology::from_sysfs(fixture("missing_dir")),
        Err(TopologyError::Invalid(_))
    ));
    match Topology::from_sysfs(fixture("bad_cpulist")) {
        Err(TopologyError::Parse { path, text }) => {
            assert!(path.ends_with("node0/cpulist"));
            assert_eq!(text, "0-x");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Topology::from_sysfs(fixture("no_such_dir")),
        Err(TopologyError::Io { .. })
    ));
}

/// `detect` is the host's sysfs cut to this process's CPUs and memory nodes.
#[test]
fn the_hosts_own_sysfs_agrees_with_detect() {
    let (detected, why) = Topology::detect_or_reason();
    if why.is_none() {
        let machine = Topology::from_sysfs(ldnr_affinity::SYSFS_NODE_DIR).unwrap();
        let cpus = ldnr_affinity::allowed_cpus().ok();
        let mems = ldnr_affinity::allowed_memory_nodes().ok();
        assert_eq!(
            machine.restrict(cpus.as_deref(), mems.as_deref()).unwrap(),
            detected
        );
        for node in detected.nodes() {
            if let Some(cpus) = &cpus {
                assert!(node.cpus.iter().all(|c| cpus.contains(c)), "{node:?}");
            }
        }
        let linux = LinuxAffinity::new();
        if linux.degraded().is_none() {
            assert_eq!(linux.topology(), &detected);
            assert!(linux.nodes().contains(&linux.current_node()));
        }
    }
}
