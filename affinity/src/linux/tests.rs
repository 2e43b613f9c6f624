//! `LinuxAffinity` against this host's kernel: exact restores in any order, refused and
//! stale restores, inherited policies, pretend topologies.

use super::*;
use crate::topology::NodeInfo;
use ldnr::AffinityGuard;

/// The host's policies are per thread: each test changes only its own thread's, and
/// puts the default back.
fn policies_available() -> bool {
    MemoryPolicy::current().is_ok() && MemoryPolicy::default_policy().apply().is_ok()
}

/// This host's manager, steering even on one node (node 0 exists everywhere), so the
/// policy paths run for real.
fn steering(binding: Binding) -> LinuxAffinity {
    LinuxAffinity {
        steer: true,
        ..LinuxAffinity::new()
    }
    .binding(binding)
}

fn now() -> MemoryPolicy {
    MemoryPolicy::current().unwrap()
}

#[test]
fn restores_the_default_policy_exactly() {
    if !policies_available() {
        return;
    }
    let linux = steering(Binding::Preferred);
    let node = linux.nodes()[0];
    let before = now();
    let saved = linux.set_memory_node(node).unwrap();
    assert!(now().is_single(PolicyMode::Preferred, node), "{:?}", now());
    linux.restore_memory_policy(saved).unwrap();
    assert_eq!(now(), before);
    assert_eq!(saved::depth(), 0);
}

#[test]
fn restores_bind_preferred_interleave_and_local_exactly() {
    if !policies_available() {
        return;
    }
    let node = LinuxAffinity::new().nodes()[0];
    for (binding, start) in [
        (
            Binding::Preferred,
            MemoryPolicy::new(PolicyMode::Bind, 0, &[node]),
        ),
        (
            Binding::Bind,
            MemoryPolicy::new(PolicyMode::Preferred, 0, &[node]),
        ),
        (Binding::Bind, MemoryPolicy::new(PolicyMode::Local, 0, &[])),
        (
            Binding::Preferred,
            MemoryPolicy::new(PolicyMode::Interleave, 0, &[node]),
        ),
        // Already the policy that is asked for: nothing changes, nothing breaks.
        (
            Binding::Preferred,
            MemoryPolicy::new(PolicyMode::Preferred, 0, &[node]),
        ),
    ] {
        let linux = steering(binding);
        start.apply().unwrap();
        let saved = linux.set_memory_node(node).unwrap();
        assert!(!saved.is_unchanged());
        assert!(now().is_single(binding.mode(), node));
        linux.restore_memory_policy(saved).unwrap();
        assert_eq!(now(), start, "{binding:?}");
    }
    MemoryPolicy::default_policy().apply().unwrap();
}

/// Guards dropped out of order: the older one's drop must not end the newer one's
/// policy, and the last drop puts back the thread's own, not the older guard's.
#[test]
fn guards_out_of_order_and_nested_restore_exactly() {
    if !policies_available() {
        return;
    }
    let (bind, prefer) = (steering(Binding::Bind), steering(Binding::Preferred));
    let node = bind.nodes()[0];
    let own = MemoryPolicy::new(PolicyMode::Interleave, 0, &[node]);
    own.apply().unwrap();

    let a = AffinityGuard::new(&bind, node).unwrap();
    assert!(now().is_single(PolicyMode::Bind, node));
    let b = AffinityGuard::new(&prefer, node).unwrap();
    assert!(now().is_single(PolicyMode::Preferred, node));
    drop(a);
    assert!(
        now().is_single(PolicyMode::Preferred, node),
        "b is live: its policy stays ({:?})",
        now()
    );
    drop(b);
    assert_eq!(now(), own, "the thread's own policy, not a's");

    // Nested, in order, three deep, one of them a no-change.
    let a = AffinityGuard::new(&prefer, node).unwrap();
    let b = AffinityGuard::new(&bind, node).unwrap();
    let c = AffinityGuard::new(&bind, node).unwrap();
    drop(c);
    assert!(now().is_single(PolicyMode::Bind, node));
    drop(b);
    assert!(now().is_single(PolicyMode::Preferred, node));
    a.restore().unwrap();
    assert_eq!(now(), own);
    assert_eq!(saved::depth(), 0);
    MemoryPolicy::default_policy().apply().unwrap();
}

/// A saved policy restored twice, or on another thread, is refused and changes no
/// thread's policy.
#[test]
fn stale_and_foreign_saved_policies_are_refused() {
    if !policies_available() {
        return;
    }
    let linux = std::sync::Arc::new(steering(Binding::Bind));
    let node = linux.nodes()[0];
    let saved = linux.set_memory_node(node).unwrap();
    let during = now();
    let other = linux.clone();
    let (result, theirs_before, theirs_after) = std::thread::spawn(move || {
        let before = MemoryPolicy::current().unwrap();
        let result = other.restore_memory_policy(saved);
        (result, before, MemoryPolicy::current().unwrap())
    })
    .join()
    .unwrap();
    assert_eq!(result, Err(AffinityError::StalePolicy));
    assert_eq!(
        theirs_before, theirs_after,
        "the other thread's policy is untouched"
    );
    assert_eq!(now(), during, "and so is this one's");
    linux.restore_memory_policy(saved).unwrap();
    assert_eq!(now(), MemoryPolicy::default_policy());
    assert_eq!(
        linux.restore_memory_policy(saved),
        Err(AffinityError::StalePolicy)
    );
    assert_eq!(now(), MemoryPolicy::default_policy());
    assert_eq!(linux.restore_failures(), 0);
}

/// The kernel refuses the saved policy (as when its nodes left the cpuset): the error
/// is returned and counted, and the thread is left with the default policy, not on
/// the node that was set.
#[test]
fn a_refused_restore_is_reported_and_leaves_the_default() {
    if !policies_available() {
        return;
    }
    let linux = steering(Binding::Bind);
    let node = linux.nodes()[0];
    // A saved policy no kernel here accepts: bind to node 1000 only.
    let gone = MemoryPolicy::new(PolicyMode::Bind, 0, &[NodeId(1000)]);
    let mine = MemoryPolicy::new(PolicyMode::Bind, 0, &[node]);
    let saved = saved::push(gone, mine.clone()).unwrap();
    mine.apply().unwrap();
    assert!(matches!(
        linux.restore_memory_policy(saved),
        Err(AffinityError::Os(_))
    ));
    assert_eq!(linux.restore_failures(), 1);
    assert_eq!(now(), MemoryPolicy::default_policy());
    assert_eq!(saved::depth(), 0);
}

#[test]
fn an_inherited_bind_restricts_nodes_and_makes_steering_bind() {
    if !policies_available() {
        return;
    }
    let node = LinuxAffinity::new().nodes()[0];
    MemoryPolicy::new(PolicyMode::Bind, 0, &[node])
        .apply()
        .unwrap();
    let linux = LinuxAffinity::new();
    MemoryPolicy::default_policy().apply().unwrap();
    assert_eq!(linux.nodes(), [node]);
    assert_eq!(linux.binding_mode(), Binding::Bind);
    assert_eq!(
        linux.binding(Binding::Preferred).binding_mode(),
        Binding::Bind
    );
    assert_eq!(LinuxAffinity::new().binding_mode(), Binding::Preferred);
}

/// What `numactl` leaves behind, on a pretend four-node machine whose cpuset allows nodes
/// 2 and 3.
#[test]
fn inherited_policies_restrict_to_their_nodes() {
    let allowed = [NodeId(2), NodeId(3)];
    let bind = MemoryPolicy::new(PolicyMode::Bind, 0, &[NodeId(3)]);
    assert_eq!(
        inherited_restriction(&bind, &allowed),
        Some((vec![NodeId(3)], true))
    );
    let interleave = MemoryPolicy::new(PolicyMode::Interleave, 0, &allowed);
    assert_eq!(
        inherited_restriction(&interleave, &allowed),
        Some((allowed.to_vec(), false))
    );
    // `--membind` with relative nodes: bit 1 is the second allowed node.
    let relative = MemoryPolicy::new(
        PolicyMode::Bind,
        crate::policy::MPOL_F_RELATIVE_NODES,
        &[NodeId(1)],
    );
    assert_eq!(
        inherited_restriction(&relative, &allowed),
        Some((vec![NodeId(3)], true))
    );
    for free in [
        MemoryPolicy::default_policy(),
        MemoryPolicy::new(PolicyMode::Local, 0, &[]),
        MemoryPolicy::new(PolicyMode::Preferred, 0, &[NodeId(2)]),
    ] {
        assert_eq!(inherited_restriction(&free, &allowed), None, "{free:?}");
    }
    // Applied to the topology, the bound set is where replicas go.
    let four = Topology::new(
        (0..4)
            .map(|i| NodeInfo::new(NodeId(i), vec![i], true))
            .collect(),
        None,
    )
    .unwrap();
    let (set, _) = inherited_restriction(&interleave, &allowed).unwrap();
    let t = four.restrict(None, Some(&set)).unwrap();
    assert_eq!(t.replica_nodes(), allowed);
}

/// A thread-local destructor that runs after the saved-policy stack is gone (it was
/// made after this one's, so glibc destroys it first) asks for a policy: it must get an
/// error, not a panic (an abort, in a destructor), and its policy must not change.
#[test]
fn set_memory_node_after_the_threads_stack_is_gone() {
    use std::sync::mpsc;
    if !policies_available() {
        return;
    }
    struct Late(mpsc::Sender<(Result<SavedPolicy, AffinityError>, bool)>);
    impl Drop for Late {
        fn drop(&mut self) {
            let linux = steering(Binding::Bind);
            let before = MemoryPolicy::current().ok();
            let result = linux.set_memory_node(linux.nodes()[0]);
            let same = MemoryPolicy::current().ok() == before;
            if let Ok(saved) = result {
                let _ = linux.restore_memory_policy(saved);
            }
            let _ = self.0.send((result, same));
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        LATE.with(|l| *l.borrow_mut() = Some(Late(tx)));
        // Now the stack's destructor is registered after LATE's.
        let linux = steering(Binding::Bind);
        let saved = linux.set_memory_node(linux.nodes()[0]).unwrap();
        linux.restore_memory_policy(saved).unwrap();
    })
    .join()
    .unwrap();
    let (result, same) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the destructor ran");
    match result {
        Err(e) => {
            assert_eq!(e, AffinityError::StalePolicy);
            assert!(same, "a policy that could not be saved was changed");
        }
        // glibc runs thread-local destructors in reverse order of registration; where
        // another order left the stack alive, the call simply worked.
        Ok(_) if cfg!(target_env = "gnu") => {
            panic!("the stack outlived a destructor registered before it")
        }
        Ok(_) => {}
    }
}

#[test]
fn one_node_changes_nothing() {
    let linux = LinuxAffinity::with_topology(Topology::single_node());
    assert!(!linux.steers_memory());
    assert_eq!(linux.set_memory_node(NodeId(0)), Ok(SavedPolicy::UNCHANGED));
    assert_eq!(
        linux.set_memory_node(NodeId(1)),
        Err(AffinityError::UnknownNode(NodeId(1)))
    );
    assert_eq!(linux.current_node(), NodeId(0));
}

#[test]
fn nodes_the_kernel_lacks_fail_with_an_os_error_and_change_nothing() {
    if !policies_available() || Topology::detect().nodes().len() > 8 {
        return;
    }
    // A pretend topology with a node number no host here has (memory-only).
    let t = Topology::new(
        vec![
            NodeInfo::new(NodeId(0), vec![0], true),
            NodeInfo::new(NodeId(9), vec![], true),
        ],
        None,
    )
    .unwrap();
    let linux = LinuxAffinity::with_topology(t);
    assert_eq!(linux.degraded(), None);
    assert_eq!(linux.nodes(), [NodeId(0)]);
    assert_eq!(linux.memory_only_nodes(), [NodeId(9)]);
    assert!(linux.steers_memory());
    let before = now();
    assert!(matches!(
        linux.set_memory_node(NodeId(9)),
        Err(AffinityError::Os(_))
    ));
    assert_eq!(now(), before);
    assert_eq!(saved::depth(), 0, "nothing left to restore");
}

#[test]
fn memoryless_nodes_hold_no_replicas_but_have_distances() {
    let t = Topology::new(
        vec![
            NodeInfo::new(NodeId(0), vec![0], true),
            NodeInfo::new(NodeId(1), vec![1], false),
        ],
        Some(vec![vec![10, 15], vec![15, 10]]),
    )
    .unwrap();
    let linux = LinuxAffinity::with_topology(t);
    assert_eq!(linux.nodes(), [NodeId(0)]);
    assert_eq!(linux.distance(NodeId(1), NodeId(0)), 15);
    assert_eq!(
        linux.set_memory_node(NodeId(1)),
        Err(AffinityError::UnknownNode(NodeId(1)))
    );
}

#[test]
fn no_node_with_cpus_and_memory_runs_as_one_node() {
    let t = Topology::new(
        vec![
            NodeInfo::new(NodeId(0), vec![0], false),
            NodeInfo::new(NodeId(1), vec![], true),
        ],
        None,
    )
    .unwrap();
    let linux = LinuxAffinity::with_topology(t);
    assert_eq!(linux.nodes(), [NodeId(1)]);
    assert_eq!(linux.current_node(), NodeId(1));
    assert!(!linux.steers_memory());
    assert!(linux.memory_only_nodes().is_empty());
    assert!(linux.degraded().unwrap().contains("both CPUs and memory"));
}

#[test]
fn pins_never_leave_the_allowed_cpus() {
    let t = Topology::new(
        vec![
            NodeInfo::new(NodeId(0), vec![0, 1, 2, 3], true),
            NodeInfo::new(NodeId(1), vec![], true),
        ],
        None,
    )
    .unwrap();
    let linux = LinuxAffinity {
        allowed_cpus: Some(vec![7]),
        ..LinuxAffinity::with_topology(t)
    };
    assert_eq!(
        linux.pin_to_node(NodeId(0)),
        Err(AffinityError::NoUsableCpus(NodeId(0)))
    );
    assert_eq!(
        linux.pin_to_node(NodeId(1)),
        Err(AffinityError::NoUsableCpus(NodeId(1)))
    );
    assert_eq!(
        linux.pin_to_node(NodeId(2)),
        Err(AffinityError::UnknownNode(NodeId(2)))
    );
}
