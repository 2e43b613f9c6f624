//! The manager's topology methods panicking: `current_node`, `nodes` and `distance`, at
//! every call site; and `distance` is never called on the operation paths.

use super::*;

// ---------------------------------------------------------------------------------------
// `current_node`

#[test]
fn current_node_panicking_in_register_changes_nothing() {
    run("current_node in register", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr: Nr = NodeReplicated::builder(Journal::new(&probe))
            .replicas(&[NodeId(0), NodeId(1)])
            .affinity(m.clone())
            .max_threads(2)
            .build()
            .unwrap();
        let t0 = register_on(&nr, 0);
        assert_eq!(write(&nr, &probe, 1, t0), 0);
        let before = nr.replicas();
        m.arm(Method::CurrentNode, 0);
        assert_boom(Method::CurrentNode, || nr.register());
        assert_eq!(nr.replicas(), before, "thread counts unchanged");
        m.disarm(Method::CurrentNode);
        // At the thread limit of 2: the panicking registration took no slot.
        let t1 = register_on(&nr, 1);
        assert_eq!(nr.replica_of(t1), Some(before[1].id));
        assert_eq!(nr.replicas().iter().map(|r| r.threads).sum::<usize>(), 2);
        assert_eq!(write(&nr, &probe, 2, t0), 1);
        assert_eq!(write(&nr, &probe, 3, t1), 2);
        assert_eq!(agreed_journal(&nr, &[t0, t1], &[1, 2, 3]), [1, 2, 3]);
    });
}

#[test]
fn current_node_panicking_in_build_without_replicas_panics_build() {
    run("current_node in build", || {
        let (probe, m) = (Probe::new(), Manager::new());
        m.arm(Method::CurrentNode, 0);
        assert_boom(Method::CurrentNode, || {
            NodeReplicated::builder(Journal::new(&probe))
                .affinity(m.clone())
                .build()
        });
        probe.assert_all_dropped();
        // The same builder works with the switch off (the default replica on node 1).
        m.disarm(Method::CurrentNode);
        let nr = on_node(1, || {
            NodeReplicated::builder(Journal::new(&probe))
                .affinity(m.clone())
                .build()
                .unwrap()
        });
        assert_eq!(nr.replicas()[0].node, NodeId(1));
    });
}

// ---------------------------------------------------------------------------------------
// `nodes`

#[test]
fn nodes_panicking_in_build_panics_build() {
    run("nodes in build", || {
        let (probe, m) = (Probe::new(), Manager::new());
        m.arm(Method::Nodes, 0);
        assert_boom(Method::Nodes, || build(&probe, &m, &[0, 1]));
        probe.assert_all_dropped();
    });
}

#[test]
fn nodes_panicking_in_add_replica_changes_nothing() {
    run("nodes in add_replica", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = build(&probe, &m, &[0, 1]);
        let tokens = tokens_per_replica(&nr);
        let mut ids = Vec::new();
        for (i, &t) in tokens.iter().enumerate() {
            ids.push(i as u64);
            write(&nr, &probe, i as u64, t);
        }
        let before = nr.replicas();
        let clones = probe.clones.load(SeqCst);
        m.arm(Method::Nodes, 0);
        assert_boom(Method::Nodes, || nr.add_replica(NodeId(1)));
        m.disarm(Method::Nodes);
        assert_eq!(nr.replicas(), before, "replica set unchanged");
        assert_eq!(probe.clones.load(SeqCst), clones, "nothing cloned");
        for (i, &t) in tokens.iter().enumerate() {
            let id = 10 + i as u64;
            let at = write(&nr, &probe, id, t);
            ids.push(id);
            assert_eq!(read(&nr, t)[at], id);
        }
        agreed_journal(&nr, &tokens, &ids);
        let added = nr.add_replica(NodeId(1)).expect("a later add works");
        assert_eq!(nr.replicas().len(), 3);
        let tokens = tokens_per_replica(&nr);
        assert!(tokens.iter().any(|&t| nr.replica_of(t) == Some(added)));
        agreed_journal(&nr, &tokens, &ids);
    });
}

// ---------------------------------------------------------------------------------------
// `distance`

#[test]
fn distance_panicking_in_register_changes_nothing() {
    run("distance in register", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr: Nr = NodeReplicated::builder(Journal::new(&probe))
            .replicas(&[NodeId(0), NodeId(1)])
            .affinity(m.clone())
            .max_threads(2)
            .build()
            .unwrap();
        let t0 = register_on(&nr, 0);
        write(&nr, &probe, 1, t0);
        let before = nr.replicas();
        m.arm(Method::Distance, 0);
        assert_boom(Method::Distance, || register_on(&nr, 1));
        assert_eq!(nr.replicas(), before, "thread counts unchanged");
        // The operation paths never ask for distances: the switch stays on.
        assert_eq!(write(&nr, &probe, 2, t0), 1);
        assert_eq!(read(&nr, t0), [1, 2]);
        m.disarm(Method::Distance);
        // At the thread limit of 2: the panicking registration took no slot.
        let t1 = register_on(&nr, 1);
        assert_eq!(nr.replica_of(t1), Some(before[1].id));
        assert_eq!(write(&nr, &probe, 3, t1), 2);
        agreed_journal(&nr, &[t0, t1], &[1, 2, 3]);
    });
}

#[test]
fn distance_panicking_in_add_replica_changes_nothing() {
    run("distance in add_replica", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = Arc::new(build(&probe, &m, &[0, 1]));
        let before = nr.replicas();
        // One writer thread per replica, registered before the panic.
        let registered = Arc::new(Barrier::new(3));
        let panicked = Arc::new(Barrier::new(3));
        let writers: Vec<_> = (0..2u64)
            .map(|n| {
                let (nr, probe) = (Arc::clone(&nr), Arc::clone(&probe));
                let (registered, panicked) = (Arc::clone(&registered), Arc::clone(&panicked));
                std::thread::spawn(move || {
                    let tkn = register_on(&nr, n as usize);
                    let replica = nr.replica_of(tkn).unwrap();
                    registered.wait();
                    panicked.wait();
                    let mut ids = Vec::new();
                    for k in 0..50 {
                        let id = (n << 32) | k;
                        let at = write(&nr, &probe, id, tkn);
                        assert_eq!(read(&nr, tkn)[at], id, "the response is the position");
                        ids.push(id);
                    }
                    (replica, ids)
                })
            })
            .collect();
        registered.wait();
        let before_add = nr.replicas();
        let clones = probe.clones.load(SeqCst);
        m.arm(Method::Distance, 0);
        assert_boom(Method::Distance, || nr.add_replica(NodeId(0)));
        assert_eq!(nr.replicas(), before_add, "replica set unchanged");
        assert_eq!(probe.clones.load(SeqCst), clones, "nothing cloned");
        // The switch stays on while they write: the operation paths never ask.
        panicked.wait();
        let mut ids = Vec::new();
        let mut served = Vec::new();
        for w in writers {
            let (replica, mut own) = w.join().expect("a writer failed");
            served.push(replica);
            ids.append(&mut own);
        }
        served.sort_unstable_by_key(|r| r.get());
        assert_eq!(
            served,
            [before[0].id, before[1].id],
            "a writer on each replica"
        );
        m.disarm(Method::Distance);
        nr.add_replica(NodeId(0)).expect("a later add works");
        let tokens = tokens_per_replica(&nr);
        assert_eq!(tokens.len(), 3);
        agreed_journal(&nr, &tokens, &ids);
    });
}

#[test]
fn distance_panicking_in_remove_replica_changes_nothing() {
    run("distance in remove_replica", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = build(&probe, &m, &[0, 1]);
        let infos = nr.replicas();
        let (t0, t1) = (register_on(&nr, 0), register_on(&nr, 1));
        assert_eq!(nr.replica_of(t1), Some(infos[1].id));
        write(&nr, &probe, 1, t0);
        write(&nr, &probe, 2, t1);
        let before = nr.replicas();
        let journals = probe.journals.load(SeqCst);
        m.arm(Method::Distance, 0);
        assert_boom(Method::Distance, || nr.remove_replica(infos[1].id));
        m.disarm(Method::Distance);
        assert_eq!(nr.replicas(), before, "the replica is still listed");
        assert_eq!(
            nr.replica_of(t1),
            Some(infos[1].id),
            "its thread still on it"
        );
        assert_eq!(
            probe.journals.load(SeqCst),
            journals,
            "its data not dropped"
        );
        assert_eq!(write(&nr, &probe, 3, t1), 2);
        assert_eq!(write(&nr, &probe, 4, t0), 3);
        assert_eq!(agreed_journal(&nr, &[t0, t1], &[1, 2, 3, 4]), [1, 2, 3, 4]);
        nr.remove_replica(infos[1].id)
            .expect("a later remove works");
        assert_eq!(
            nr.replica_of(t1),
            Some(infos[0].id),
            "moved to the other one"
        );
        assert_eq!(
            probe.journals.load(SeqCst),
            journals - 1,
            "its data dropped"
        );
        assert_eq!(write(&nr, &probe, 5, t1), 4);
        assert_eq!(read(&nr, t0), [1, 2, 3, 4, 5]);
    });
}

/// The former bug: a thread whose replica is frozen as a clone source must not need the
/// affinity manager's `distance` to find a stand-in. `D::clone` turns `distance` panics
/// on and waits until thread T (on the frozen source) and thread U (on the other
/// replica) have each done a write and a read.
#[test]
fn distance_is_never_called_on_the_operation_paths() {
    run("distance on the operation paths", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = Arc::new(build(&probe, &m, &[0, 1]));
        let infos = nr.replicas();
        let go = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let u_wrote = Arc::new(Barrier::new(2));
        let prepared = Arc::new(Barrier::new(3));
        let worker = |node: u64| {
            let (nr, probe) = (Arc::clone(&nr), Arc::clone(&probe));
            let (go, done) = (Arc::clone(&go), Arc::clone(&done));
            let (u_wrote, prepared) = (Arc::clone(&u_wrote), Arc::clone(&prepared));
            std::thread::spawn(move || {
                let tkn = register_on(&nr, node as usize);
                let replica = nr.replica_of(tkn).unwrap();
                // U writes first, then T, so T's replica has applied more than U's.
                if node == 1 {
                    write(&nr, &probe, 100, tkn);
                    u_wrote.wait();
                } else {
                    u_wrote.wait();
                    write(&nr, &probe, 0, tkn);
                }
                prepared.wait();
                wait_until("the clone has started", || go.load(SeqCst));
                let id = (node << 32) | 1;
                let at = write(&nr, &probe, id, tkn);
                let seen = read(&nr, tkn);
                assert_eq!(
                    seen.get(at),
                    Some(&id),
                    "the read sees the write at its place"
                );
                done.fetch_add(1, SeqCst);
                (replica, id, at)
            })
        };
        let (t, u) = (worker(0), worker(1));
        prepared.wait();
        let now = nr.replicas();
        assert!(
            now[0].applied > now[1].applied,
            "T's replica is the most advanced, so it is the clone source: {now:?}"
        );
        {
            let (m, go, done) = (Arc::clone(&m), Arc::clone(&go), Arc::clone(&done));
            *probe.clone_hook.lock().unwrap() = Some(Box::new(move || {
                m.arm(Method::Distance, 0);
                go.store(true, SeqCst);
                wait_until("T and U have written and read during the clone", || {
                    done.load(SeqCst) == 2
                });
            }));
        }
        let added = nr.add_replica(NodeId(0));
        m.disarm(Method::Distance);
        assert!(go.load(SeqCst), "the clone ran the hook");
        let added = added.expect("add_replica");
        let (t_replica, t_id, t_at) = t.join().expect("T failed");
        let (u_replica, u_id, u_at) = u.join().expect("U failed");
        assert_eq!(t_replica, infos[0].id);
        assert_eq!(u_replica, infos[1].id);
        let tokens = tokens_per_replica(&nr);
        assert!(tokens.iter().any(|&t| nr.replica_of(t) == Some(added)));
        let journal = agreed_journal(&nr, &tokens, &[100, 0, t_id, u_id]);
        assert_eq!(journal[t_at], t_id);
        assert_eq!(journal[u_at], u_id);
    });
}
