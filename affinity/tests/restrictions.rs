//! What an operator's `taskset` (a thread affinity mask) means for `LinuxAffinity`:
//! topology cut to the mask, pins never wider, the one-node fallback built from it.
#![cfg(target_os = "linux")]

use ldnr::{AffinityError, AffinityManager, NodeId};
use ldnr_affinity::{allowed_cpus, pin_to_cpu, LinuxAffinity, Topology};

/// `taskset -c C program`: every thread starts with mask {C}. Here one thread narrows
/// its own mask to the last allowed CPU and makes the manager there.
#[test]
fn pin_to_node_never_widens_the_mask() {
    let cpus = allowed_cpus().expect("this thread's CPUs");
    if cpus.len() < 2 {
        println!("skipped: only one CPU is allowed, so no mask can be narrower");
        return;
    }
    let cpu = *cpus.last().unwrap();
    std::thread::spawn(move || {
        pin_to_cpu(cpu).unwrap();
        assert_eq!(allowed_cpus().unwrap(), [cpu]);
        assert_eq!(Topology::single_node().cpus_of(NodeId(0)), [cpu]);

        let linux = LinuxAffinity::new();
        for node in linux.topology().nodes() {
            assert!(node.cpus.iter().all(|&c| c == cpu), "{node:?}");
        }
        for node in linux.topology().nodes() {
            let pinned = linux.pin_to_node(node.id);
            if node.cpus.is_empty() {
                assert_eq!(pinned, Err(AffinityError::NoUsableCpus(node.id)));
            } else {
                pinned.unwrap();
                assert_eq!(allowed_cpus().unwrap(), [cpu], "widened by {:?}", node.id);
            }
        }
        // Nodes offered for replicas all have the CPU this process may use.
        for node in linux.nodes() {
            assert_eq!(linux.topology().cpus_of(node), [cpu]);
        }
    })
    .join()
    .unwrap();
}

/// A manager made where every CPU is allowed pins to all of a node's allowed CPUs, also
/// from a thread that had narrowed its own mask (the manager's set is the process's).
#[test]
fn pin_to_node_uses_the_managers_allowed_cpus() {
    let cpus = allowed_cpus().expect("this thread's CPUs");
    let linux = LinuxAffinity::new();
    let node = linux.nodes()[0];
    let want: Vec<usize> = linux
        .topology()
        .cpus_of(node)
        .iter()
        .copied()
        .filter(|c| cpus.contains(c))
        .collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(cpus[0]).unwrap();
            linux.pin_to_node(node).unwrap();
            assert_eq!(allowed_cpus().unwrap(), want);
        });
    });
}
