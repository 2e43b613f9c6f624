//! Topology parsing from copies of `/sys/devices/system/node` (tests/fixtures/*).

use std::path::PathBuf;

use ldnr::{AffinityManager, NodeId};
use ldnr_affinity::{LinuxAffinity, Topology, TopologyError};

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

#[test]
fn cpu_only_and_memory_only_nodes() {
    let t = Topology::from_sysfs(fixture("memoryless")).unwrap();
    assert_eq!(ids(&t), [0, 1, 2, 3]);
    assert_eq!(t.memory_nodes(), [NodeId(0), NodeId(1), NodeId(3)]);
    assert!(t.cpus_of(NodeId(3)).is_empty());
    assert_eq!(t.node_of_cpu(4), Some(NodeId(2)));
    // The CPU-only node is nearest to node 0.
    assert_eq!(t.distance(NodeId(2), NodeId(0)), 11);
    let linux = LinuxAffinity::with_topology(t);
    assert_eq!(linux.nodes(), [NodeId(0), NodeId(1), NodeId(3)]);
    assert_eq!(linux.distance(NodeId(2), NodeId(1)), 21);
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
fn a_malformed_distance_row_gives_the_default_matrix() {
    let t = Topology::from_sysfs(fixture("bad_distance")).unwrap();
    assert_eq!(t.distances(), [[10, 20], [20, 10]]);
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

#[test]
fn the_hosts_own_sysfs_agrees_with_detect() {
    let (detected, why) = Topology::detect_or_reason();
    if why.is_none() {
        assert_eq!(
            Topology::from_sysfs(ldnr_affinity::SYSFS_NODE_DIR).unwrap(),
            detected
        );
        let linux = LinuxAffinity::new();
        assert_eq!(linux.topology(), &detected);
        assert!(linux.nodes().contains(&linux.current_node()));
    }
}
