//! `HwlocAffinity` (feature `hwloc`): synthetic topologies for matching decisions, and
//! agreement with `LinuxAffinity` on the real machine.
#![cfg(feature = "hwloc")]

use std::sync::Arc;

use ldnr::{AffinityManager, Dispatch, NodeId, NodeReplicated, SavedPolicy};
use ldnr_affinity::{HwlocAffinity, LinuxAffinity, MemoryPolicy, SimulatedAffinity};

#[derive(Clone, Default)]
struct Nop;

impl Dispatch for Nop {
    type ReadOperation = ();
    type WriteOperation = ();
    type Response = ();
    fn dispatch(&self, _: ()) {}
    fn dispatch_mut(&mut self, _: ()) {}
}

#[test]
fn four_packages_of_24_cores() {
    let hw = HwlocAffinity::from_synthetic("pack:4 numa:1 core:24 pu:1").unwrap();
    assert!(hw.is_synthetic());
    assert_eq!(hw.nodes(), (0..4).map(NodeId).collect::<Vec<_>>());
    for n in 0..4 {
        assert_eq!(
            hw.topology().cpus_of(NodeId(n)),
            (n * 24..(n + 1) * 24).collect::<Vec<_>>()
        );
    }
    for cpu in 0..96 {
        assert_eq!(hw.node_of_cpu(cpu), Some(NodeId(cpu / 24)));
    }
    assert_eq!(hw.node_of_cpu(96), None);
    assert_eq!(hw.distance(NodeId(1), NodeId(1)), 10);
    assert_eq!(hw.distance(NodeId(1), NodeId(2)), 20);
    // Binding through a synthetic topology does nothing, and says so.
    assert_eq!(hw.set_memory_node(NodeId(3)), Ok(SavedPolicy::UNCHANGED));
    assert!(hw.set_memory_node(NodeId(4)).is_err());
}

#[test]
fn two_nodes_per_package_with_smt() {
    let hw = HwlocAffinity::from_synthetic("pack:2 numa:2 core:4 pu:2").unwrap();
    assert_eq!(hw.nodes().len(), 4);
    assert_eq!(
        hw.topology().cpus_of(NodeId(3)),
        (24..32).collect::<Vec<_>>()
    );
    assert_eq!(hw.node_of_cpu(9), Some(NodeId(1)));
}

#[test]
fn matching_decisions_on_a_synthetic_machine() {
    // 96 threads, spread over the synthetic machine's CPUs: each is matched to its
    // node's replica, and the replicas serve 24 threads each.
    let hw = HwlocAffinity::from_synthetic("pack:4 numa:1 core:24 pu:1").unwrap();
    let sim = Arc::new(SimulatedAffinity::from_topology(hw.topology().clone()));
    let nr = NodeReplicated::builder(Nop)
        .replicas(&sim.nodes())
        .affinity(sim.clone())
        .build()
        .unwrap();
    for cpu in 0..96 {
        let node = hw.node_of_cpu(cpu).unwrap();
        sim.enter(node).unwrap();
        let tkn = nr.register().unwrap();
        let id = nr.replica_of(tkn).unwrap();
        let info = nr.replicas().into_iter().find(|r| r.id == id).unwrap();
        assert_eq!(info.node, node, "cpu {cpu}");
    }
    assert!(nr.replicas().iter().all(|r| r.threads == 24));
    // With replicas on two nodes only, the others go to the least loaded at equal
    // distance.
    let nr = NodeReplicated::builder(Nop)
        .replicas(&[NodeId(0), NodeId(3)])
        .affinity(sim.clone())
        .build()
        .unwrap();
    for node in [1, 2, 1, 2] {
        sim.enter(NodeId(node)).unwrap();
        nr.register().unwrap();
    }
    let threads: Vec<usize> = nr.replicas().iter().map(|r| r.threads).collect();
    assert_eq!(threads, [2, 2]);
}

#[test]
fn the_real_machine_agrees_with_sysfs() {
    let hw = HwlocAffinity::new().unwrap();
    assert!(!hw.is_synthetic());
    let linux = LinuxAffinity::new();
    if linux.degraded().is_none() {
        assert_eq!(hw.nodes(), linux.nodes());
        for node in linux.topology().nodes() {
            assert_eq!(hw.topology().cpus_of(node.id), node.cpus, "{:?}", node.id);
        }
    }
    assert!(hw.nodes().contains(&hw.current_node()));
    // On any machine, steering to a node and restoring leaves the policy as it was.
    let before = MemoryPolicy::current().ok();
    let node = hw.nodes()[0];
    let saved = hw.set_memory_node(node).unwrap();
    hw.restore_memory_policy(saved).unwrap();
    assert_eq!(MemoryPolicy::current().ok(), before);
}
