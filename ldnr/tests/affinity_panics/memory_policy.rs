//! The manager's memory-policy methods panicking: `set_memory_node` and
//! `restore_memory_policy`, in `build`, in `add_replica`, and around a batch (which
//! poisons the instance).

use super::*;

// ---------------------------------------------------------------------------------------
// `set_memory_node`

#[test]
fn set_memory_node_panicking_in_build_panics_build() {
    run("set_memory_node in build", || {
        let (probe, m) = (Probe::new(), Manager::new());
        // The first replica (node 0) is made; the policy for the second panics.
        m.arm(Method::SetMemoryNode, 1);
        assert_boom(Method::SetMemoryNode, || build(&probe, &m, &[0, 1]));
        assert_eq!(probe.clones.load(SeqCst), 1, "the first replica was made");
        probe.assert_all_dropped();
    });
}

#[test]
fn set_memory_node_panicking_in_add_replica_changes_nothing() {
    run("set_memory_node in add_replica", || {
        let (probe, m) = (Probe::new(), Manager::new());
        // One replica: a source left frozen would have no stand-in, and its thread's
        // next write would hang (the watchdog would fail the test).
        let nr = build(&probe, &m, &[0]);
        let tkn = register_on(&nr, 0);
        write(&nr, &probe, 1, tkn);
        let before = nr.replicas();
        let (clones, journals) = (probe.clones.load(SeqCst), probe.journals.load(SeqCst));
        m.arm(Method::SetMemoryNode, 0);
        assert_boom(Method::SetMemoryNode, || nr.add_replica(NodeId(1)));
        m.disarm(Method::SetMemoryNode);
        assert_eq!(nr.replicas(), before, "replica set unchanged");
        assert_eq!(probe.clones.load(SeqCst), clones, "nothing cloned");
        assert_eq!(probe.journals.load(SeqCst), journals);
        assert_eq!(write(&nr, &probe, 2, tkn), 1, "the source is not frozen");
        assert_eq!(read(&nr, tkn), [1, 2]);
        nr.add_replica(NodeId(1)).expect("a later add works");
        let tokens = tokens_per_replica(&nr);
        assert_eq!(tokens.len(), 2);
        agreed_journal(&nr, &tokens, &[1, 2]);
    });
}

/// Writers on both replicas; `set_memory_node` starts panicking while they run. Each
/// writer ends with a panic — the manager's own if its thread was combining, "poisoned"
/// otherwise, also while it waited for another combiner's batch — and nothing hangs.
/// Afterwards every call panics or fails as poisoned, and dropping the instance drops
/// every write operation exactly once.
#[test]
fn set_memory_node_panicking_in_apply_poisons_waiting_threads_too() {
    const WRITERS: usize = 4;
    run("set_memory_node in apply", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = Arc::new(build(&probe, &m, &[0, 1]));
        let progress = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (nr, probe, progress) =
                    (Arc::clone(&nr), Arc::clone(&probe), Arc::clone(&progress));
                std::thread::spawn(move || {
                    let tkn = register_on(&nr, w % 2);
                    let deadline = Instant::now() + WAIT;
                    let mut k = 0u64;
                    let first = loop {
                        assert!(Instant::now() < deadline, "writer {w} never saw a panic");
                        let op = Push::new(((w as u64) << 32) | k, &probe);
                        match panic::catch_unwind(AssertUnwindSafe(|| nr.execute_mut(op, tkn))) {
                            Ok(_) => progress.fetch_add(1, SeqCst),
                            Err(payload) => break message(&*payload),
                        };
                        k += 1;
                    };
                    assert_poisoned(&nr, &probe, tkn);
                    first
                })
            })
            .collect();
        wait_until("the writers are under way", || {
            progress.load(SeqCst) >= 20 * WRITERS
        });
        m.arm(Method::SetMemoryNode, 0);
        let firsts: Vec<String> = writers
            .into_iter()
            .map(|w| w.join().expect("a writer failed"))
            .collect();
        m.disarm(Method::SetMemoryNode);
        for msg in &firsts {
            assert!(
                *msg == boom(Method::SetMemoryNode) || msg.contains("poisoned"),
                "unexpected panic: {msg}"
            );
        }
        assert!(
            firsts.contains(&boom(Method::SetMemoryNode)),
            "a combining writer got the manager's panic: {firsts:?}"
        );
        let tkn = register_on(&nr, 0);
        assert_poisoned(&nr, &probe, tkn);
        let nr = Arc::try_unwrap(nr).expect("every writer is done");
        drop(nr);
        probe.assert_all_dropped();
    });
}

// ---------------------------------------------------------------------------------------
// `restore_memory_policy`

/// `build` of two replicas with `restore_memory_policy` panicking after the first
/// clone: the clone is dropped. (A block's value was leaked when a local of the block
/// panicked in `Drop`, rust-lang/rust#47949; the library keeps the clone outside the
/// policy guard's scope.)
#[test]
fn restore_memory_policy_panicking_in_build_panics_build_and_drops_the_clone() {
    run("restore_memory_policy in build", || {
        let (probe, m) = (Probe::new(), Manager::new());
        m.arm(Method::RestoreMemoryPolicy, 0);
        assert_boom(Method::RestoreMemoryPolicy, || build(&probe, &m, &[0, 1]));
        assert_eq!(probe.clones.load(SeqCst), 1, "the first replica was cloned");
        assert!(!probe.underflow.load(SeqCst), "nothing dropped twice");
        probe.assert_all_dropped();
    });
}

/// `add_replica` to a one-replica instance (a source left frozen would hang its thread,
/// see above) with `restore_memory_policy` panicking after the clone was made: the clone
/// is dropped, nothing changes, and a later add works.
#[test]
fn restore_memory_policy_panicking_in_add_replica_changes_nothing() {
    run("restore_memory_policy in add_replica", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = build(&probe, &m, &[0]);
        let tkn = register_on(&nr, 0);
        write(&nr, &probe, 1, tkn);
        let before = nr.replicas();
        let (clones, journals) = (probe.clones.load(SeqCst), probe.journals.load(SeqCst));
        m.arm(Method::RestoreMemoryPolicy, 0);
        assert_boom(Method::RestoreMemoryPolicy, || nr.add_replica(NodeId(1)));
        m.disarm(Method::RestoreMemoryPolicy);
        assert_eq!(probe.clones.load(SeqCst), clones + 1, "the clone was made");
        assert!(!probe.underflow.load(SeqCst), "nothing dropped twice");
        assert_eq!(
            probe.journals.load(SeqCst),
            journals,
            "the clone was dropped"
        );
        assert_eq!(nr.replicas(), before, "replica set unchanged");
        assert_eq!(write(&nr, &probe, 2, tkn), 1, "the source is not frozen");
        nr.add_replica(NodeId(1)).expect("a later add works");
        let tokens = tokens_per_replica(&nr);
        assert_eq!(tokens.len(), 2);
        agreed_journal(&nr, &tokens, &[1, 2]);
    });
}

#[test]
fn restore_memory_policy_panicking_in_apply_poisons() {
    run("restore_memory_policy in apply", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = build(&probe, &m, &[0, 1]);
        let tkn = register_on(&nr, 0);
        write(&nr, &probe, 1, tkn);
        m.arm(Method::RestoreMemoryPolicy, 0);
        assert_boom(Method::RestoreMemoryPolicy, || write(&nr, &probe, 2, tkn));
        m.disarm(Method::RestoreMemoryPolicy);
        assert_poisoned(&nr, &probe, tkn);
        drop(nr);
        probe.assert_all_dropped();
    });
}

/// A removal leaves one replica that lags the log; its next write catches up first (log
/// L9) and `set_memory_node` panics there: the instance is poisoned, and dropping it
/// drops every operation exactly once — the caller's own, which a direct batch had not
/// taken yet, included.
#[test]
fn set_memory_node_panicking_while_the_only_replica_catches_up_drops_every_operation() {
    run("set_memory_node in a direct catch-up", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = build(&probe, &m, &[0, 1]);
        let (on_0, on_1) = (register_on(&nr, 0), register_on(&nr, 1));
        assert_ne!(nr.replica_of(on_0), nr.replica_of(on_1));
        // Replica 1 appends; replica 0 has not applied it when replica 1 goes.
        write(&nr, &probe, 1, on_1);
        nr.remove_replica(nr.replica_of(on_1).unwrap()).unwrap();
        m.arm(Method::SetMemoryNode, 0);
        assert_boom(Method::SetMemoryNode, || write(&nr, &probe, 2, on_0));
        m.disarm(Method::SetMemoryNode);
        assert_poisoned(&nr, &probe, on_0);
        drop(nr);
        probe.assert_all_dropped();
    });
}
