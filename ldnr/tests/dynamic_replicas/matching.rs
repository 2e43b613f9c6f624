//! Thread matching on a four-node test topology when replicas come and go.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier};

use ldnr::{NodeId, NodeReplicated};
use ldnr_testkit::counters::{Counters, Get, Inc};
use ldnr_testkit::replicas::thread_sum;
use ldnr_testkit::{watchdog, LIMIT};

use crate::{TestNodes, DEBUG, NODE};

// ---------------------------------------------------------------------------------------
// 8. Matching with a four-node topology
// ---------------------------------------------------------------------------------------

/// What the workers of the matching test do between checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Work,
    Stop,
}

#[test]
fn matching_follows_nodes_when_replicas_change() {
    // The nodes the threads register on, in registration order.
    const NODES: [usize; 10] = [0, 2, 1, 3, 2, 1, 0, 2, 3, 1];
    const THREADS: usize = NODES.len();
    let ops = if DEBUG { 5_000 } else { 20_000 };
    watchdog("matching on four nodes", LIMIT, move || {
        let nr = NodeReplicated::builder(Counters(vec![0; THREADS]))
            .replicas(&[NodeId(0), NodeId(1)])
            .affinity(Arc::new(TestNodes { fail: None }))
            .log_capacity(64)
            .build()
            .unwrap();
        let go = Barrier::new(THREADS + 1);
        let phase = std::sync::Mutex::new(Phase::Work);
        let nr = &nr;
        std::thread::scope(|s| {
            let (registered_tx, registered) = mpsc::channel();
            let mut workers = Vec::new();
            for (t, &node) in NODES.iter().enumerate() {
                let (go, phase, registered_tx) = (&go, &phase, registered_tx.clone());
                workers.push(s.spawn(move || {
                    NODE.with(|n| n.set(node));
                    let tkn = nr.register().unwrap();
                    assert_eq!(tkn.index(), t);
                    registered_tx.send(()).unwrap();
                    let mut count = 0;
                    loop {
                        go.wait();
                        if *phase.lock().unwrap() == Phase::Stop {
                            return count;
                        }
                        for _ in 0..ops {
                            count += 1;
                            assert_eq!(nr.execute_mut(Inc(t), tkn), count, "thread {t}");
                        }
                        assert_eq!(nr.execute(Get(t), tkn), count);
                        go.wait();
                    }
                }));
                // One at a time: the matching depends on the registration order.
                registered.recv().unwrap();
            }

            let counts = |expect: &[(usize, usize)]| {
                let infos = nr.replicas();
                assert_eq!(thread_sum(&infos), THREADS, "{infos:?}");
                let got: Vec<_> = infos.iter().map(|r| (r.node.0, r.threads)).collect();
                assert_eq!(got, expect, "(node, threads) per replica: {infos:?}");
                infos
            };
            // Node 2 threads tie between nodes 0 and 1 and go to the fewest; node 3
            // threads go to the nearer node 1.
            // A: t0 t4 t6 t7; B: t1 t2 t3 t5 t8 t9.
            let infos = counts(&[(0, 4), (1, 6)]);
            let (a, b) = (infos[0].id, infos[1].id);

            // Each change happens while every thread runs operations; the counts are
            // sampled once the change returned.
            let during = |change: &mut dyn FnMut(), expect: &[(usize, usize)]| {
                go.wait();
                change();
                counts(expect);
                go.wait();
                counts(expect);
            };
            let mut c = None;
            // Node 2's threads (t1 from B, t4, t7 from A) move to the new replica; no one else.
            during(
                &mut || c = Some(nr.add_replica(NodeId(2)).unwrap()),
                &[(0, 2), (1, 5), (2, 3)],
            );
            let c = c.unwrap();
            // B's threads: node 1 (t2 t5 t9) tie between A and C and go to the fewest,
            // in order: A(2)->3, A(3)->4 after t3 went to C(4), A(4)->5 vs C(5);
            // node 3 (t3 t8) go to the nearer C.
            during(&mut || nr.remove_replica(b).unwrap(), &[(0, 5), (2, 5)]);
            // A new node-1 replica takes node 1's threads (t2 t5 t9) back from A; it
            // reuses B's shell (slot 1).
            let mut d = None;
            during(
                &mut || d = Some(nr.add_replica(NodeId(1)).unwrap()),
                &[(0, 2), (1, 3), (2, 5)],
            );
            // A node-3 replica takes t3 and t8 from C.
            during(
                &mut || {
                    nr.add_replica(NodeId(3)).unwrap();
                },
                &[(0, 2), (1, 3), (2, 3), (3, 2)],
            );
            // Removing A: t0 and t6 (node 0) tie between D (node 1) and C (node 2) at
            // distance 20: t0 -> D (3 vs 3, lower slot), t6 -> C (4 vs 3).
            during(
                &mut || nr.remove_replica(a).unwrap(),
                &[(1, 4), (2, 4), (3, 2)],
            );
            assert_eq!(nr.replicas()[0].id, d.unwrap());
            assert_eq!(nr.replicas()[1].id, c);

            // A thread registered on node 0 now, with no replica there, goes to the
            // nearest, fewest: D and C tie at 20 and 4 threads, D has the lower slot.
            NODE.with(|n| n.set(0));
            let late = nr.register().unwrap();
            let infos = nr.replicas();
            assert_eq!(
                infos.iter().map(|r| r.threads).collect::<Vec<_>>(),
                vec![5, 4, 2]
            );
            assert_eq!(nr.execute_mut(Inc(0), late), (ops as u64) * 5 + 1);

            *phase.lock().unwrap() = Phase::Stop;
            go.wait();
            for (t, w) in workers.into_iter().enumerate() {
                assert_eq!(w.join().unwrap(), (ops as u64) * 5, "thread {t}");
            }
        });
    });
}

/// `replicas()` sampled *while* a removal runs: the victim leaves the list before its
/// threads are counted on the replicas they move to, so the thread counts sum to less
/// than the registered threads for a moment (and during `add_replica`'s moves, one
/// less). The matching test above samples between changes, where the sums are exact.
/// `replicas()` is a consistent snapshot: sampled concurrently with add/remove, the
/// thread counts always add up to the registered threads.
#[test]
fn replicas_snapshot_sums_during_changes() {
    watchdog("replicas() during changes", LIMIT, || {
        let nr = NodeReplicated::builder(Counters(vec![0]))
            .replicas(&[NodeId(0), NodeId(0)])
            .build()
            .unwrap();
        let _tokens: Vec<_> = (0..8).map(|_| nr.register().unwrap()).collect();
        let stop = AtomicBool::new(false);
        let (bad, samples, min) = std::thread::scope(|s| {
            let sampler = s.spawn(|| {
                let (mut bad, mut samples, mut min) = (0, 0, usize::MAX);
                while !stop.load(SeqCst) {
                    let sum = thread_sum(&nr.replicas());
                    samples += 1;
                    if sum != 8 {
                        bad += 1;
                        min = min.min(sum);
                    }
                }
                (bad, samples, min)
            });
            for _ in 0..2_000 {
                let infos = nr.replicas();
                let busiest = infos.iter().max_by_key(|r| r.threads).unwrap().id;
                nr.add_replica(NodeId(0)).unwrap();
                nr.remove_replica(busiest).unwrap();
            }
            stop.store(true, SeqCst);
            sampler.join().unwrap()
        });
        assert_eq!(
            bad, 0,
            "{bad} of {samples} concurrent samples did not sum to 8 threads (lowest {min})"
        );
    });
}
