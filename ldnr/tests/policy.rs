//! `Policy::follow_threads` on four pretend nodes: the replica set grows node by node as
//! threads register there, shrinks as they leave (deregistration and thread exit), follows
//! a thread that moves, respects `min_threads` and `max_replicas`, wins over manual calls
//! at its next run, and keeps every operation exactly once and linearizable while it
//! reshapes the set under load.

use std::collections::BTreeSet;
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use ldnr::{Dispatch, NodeId, NodeReplicated, Policy};
use ldnr_testkit::counters::{Counters, Get, Inc};
use ldnr_testkit::lincheck::{check_map_by_key, Clock};
use ldnr_testkit::map::{negative_control, recorded_map_ops, TestMap};
use ldnr_testkit::pretend::{on, Pretend};
use ldnr_testkit::{watchdog, LIMIT};

const NODES: usize = 4;

fn nodes_of<D: Dispatch + Clone + Send + Sync>(nr: &NodeReplicated<D>) -> BTreeSet<usize> {
    let infos = nr.replicas();
    let nodes: BTreeSet<usize> = infos.iter().map(|r| r.node.0).collect();
    assert_eq!(nodes.len(), infos.len(), "one replica per node: {infos:?}");
    nodes
}

fn set(nodes: &[usize]) -> BTreeSet<usize> {
    nodes.iter().copied().collect()
}

fn following(policy: Policy) -> NodeReplicated<Counters> {
    on(0);
    NodeReplicated::builder(Counters(vec![0; 8]))
        .affinity(Arc::new(Pretend::new(NODES)))
        .policy(policy)
        .log_capacity(64)
        .build()
        .unwrap()
}

/// A thread on `node` that registers (with `register`, or `thread_token` if `managed`),
/// reports, waits for `go` and then leaves (deregisters, or exits).
fn resident<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    nr: &'s NodeReplicated<Counters>,
    node: usize,
    managed: bool,
    registered: mpsc::Sender<usize>,
    go: mpsc::Receiver<()>,
) -> std::thread::ScopedJoinHandle<'s, ()> {
    s.spawn(move || {
        on(node);
        let tkn = if managed {
            nr.thread_token().unwrap()
        } else {
            nr.register().unwrap()
        };
        nr.execute_mut(Inc(node), tkn);
        registered.send(node).unwrap();
        go.recv().unwrap();
        if !managed {
            nr.deregister(tkn).unwrap();
        }
    })
}

/// Threads appear node by node: after each registration returns, there is a replica on
/// exactly the nodes with threads (the node-0 replica of `build` goes once node 0 has no
/// thread). They leave node by node: the set shrinks, never below one replica.
#[test]
fn replicas_grow_and_shrink_with_the_threads() {
    for managed in [false, true] {
        watchdog("grow and shrink", LIMIT, move || {
            let nr = following(Policy::follow_threads());
            assert_eq!(
                nodes_of(&nr),
                set(&[0]),
                "build: one replica, the builder's node"
            );
            std::thread::scope(|s| {
                let (tx, rx) = mpsc::channel();
                let mut leave = Vec::new();
                let mut handles = Vec::new();
                for node in [1, 3, 2] {
                    let (go_tx, go_rx) = mpsc::channel();
                    handles.push(resident(s, &nr, node, managed, tx.clone(), go_rx));
                    leave.push(go_tx);
                    assert_eq!(rx.recv().unwrap(), node);
                    let mut want: Vec<usize> = vec![1, 3, 2][..leave.len()].to_vec();
                    want.sort();
                    assert_eq!(nodes_of(&nr), set(&want), "after a thread on node {node}");
                }
                // Leave in another order; each leaver's replica goes once it is joined
                // (an exiting `thread_token` thread is noticed by the next `replicas`).
                let mut left = BTreeSet::from([1, 2, 3]);
                for (i, node) in [(1, 3), (0, 1)] {
                    leave[i].send(()).unwrap();
                    handles.remove(if i == 1 { 1 } else { 0 }).join().unwrap();
                    left.remove(&node);
                    assert_eq!(nodes_of(&nr), left, "after the thread on node {node} left");
                }
                leave[2].send(()).unwrap();
                handles.pop().unwrap().join().unwrap();
            });
            // Nobody is left: one replica stays.
            assert_eq!(nr.replicas().len(), 1);
            let st = nr.stats();
            assert!(st.policy_added >= 3, "{st:?}");
            assert_eq!(
                1 + st.policy_added - st.policy_removed,
                1,
                "the build's replica plus adds minus removes: {st:?}"
            );
            // Every increment is still there, on the replica that remains.
            on(0);
            let t = nr.register().unwrap();
            for node in [1, 2, 3] {
                assert_eq!(nr.execute(Get(node), t), 1, "node {node}'s increment");
            }
            assert_eq!(nodes_of(&nr), set(&[0]));
        });
    }
}

/// A thread that moves to another node takes the replica with it when it was its old
/// node's last thread: after at most `MIGRATION_CHECK_EVERY` (1,024) of its operations
/// there is a replica on the new node and none on the old one.
#[test]
fn a_moving_thread_moves_the_replica() {
    watchdog("moving thread", LIMIT, || {
        let nr = following(Policy::follow_threads());
        std::thread::scope(|s| {
            s.spawn(|| {
                on(1);
                let tkn = nr.register().unwrap();
                assert_eq!(nodes_of(&nr), set(&[1]));
                on(3);
                let mut ops = 0;
                while nodes_of(&nr) != set(&[3]) {
                    nr.execute_mut(Inc(0), tkn);
                    ops += 1;
                    assert!(
                        ops <= 1025,
                        "still {:?} after {ops} operations",
                        nodes_of(&nr)
                    );
                }
                assert_eq!(nr.execute(Get(0), tkn), ops);
                assert_eq!(nr.stats().migrations, 1, "one move, seen once");
            });
        });
    });
}

/// `min_threads(2)`: a node gets a replica at its second thread; `max_replicas(2)`: only
/// the two busiest nodes do.
#[test]
fn min_threads_and_max_replicas() {
    watchdog("min and max", LIMIT, || {
        let nr = following(Policy::follow_threads().min_threads(2).max_replicas(2));
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let mut gos = Vec::new();
            let mut join = Vec::new();
            let mut add = |node: usize| {
                let (go_tx, go_rx) = mpsc::channel();
                join.push(resident(s, &nr, node, false, tx.clone(), go_rx));
                gos.push(go_tx);
                assert_eq!(rx.recv().unwrap(), node);
                nodes_of(&nr)
            };
            // No node has two threads: the builder's replica stays (never none).
            assert_eq!(add(1), set(&[0]));
            assert_eq!(add(2), set(&[0]));
            assert_eq!(add(1), set(&[1]), "node 1 has two threads");
            assert_eq!(add(3), set(&[1]));
            assert_eq!(add(3), set(&[1, 3]));
            assert_eq!(add(3), set(&[1, 3]));
            assert_eq!(
                add(2),
                set(&[1, 3]),
                "three nodes qualify; node 3 and node 1 (ties: lower)"
            );
            assert_eq!(add(2), set(&[2, 3]), "node 2 has three threads, node 1 two");
            for go in gos {
                go.send(()).unwrap();
            }
            for j in join {
                j.join().unwrap();
            }
        });
        assert_eq!(nr.replicas().len(), 1);
    });
}

/// Manual calls work under the policy, which has the last word at its next run: a replica
/// added on a node without threads, or removed from a node with threads, is changed back
/// at the next thread event.
#[test]
fn the_policy_wins_over_manual_calls_at_its_next_run() {
    watchdog("manual calls", LIMIT, || {
        let nr = following(Policy::follow_threads());
        on(0);
        let me = nr.register().unwrap();
        let extra = nr.add_replica(NodeId(2)).unwrap();
        assert_eq!(
            nodes_of(&nr),
            set(&[0, 2]),
            "the manual add holds until an event"
        );
        let only = nr
            .replicas()
            .iter()
            .find(|r| r.node == NodeId(0))
            .unwrap()
            .id;
        assert!(nr.remove_replica(only).is_ok());
        assert_eq!(nodes_of(&nr), set(&[2]));
        // A thread event: the policy puts the set back to the threads' nodes.
        std::thread::scope(|s| {
            s.spawn(|| {
                on(0);
                let t = nr.register().unwrap();
                nr.deregister(t).unwrap();
            });
        });
        assert_eq!(nodes_of(&nr), set(&[0]));
        assert!(nr.replicas().iter().all(|r| r.id != extra));
        nr.execute_mut(Inc(1), me);
        assert_eq!(nr.execute(Get(1), me), 1);
    });
}

/// `Policy::manual()` (the default) never changes the set on its own.
#[test]
fn the_manual_policy_changes_nothing() {
    let nr = following(Policy::manual());
    std::thread::scope(|s| {
        for node in 1..NODES {
            let nr = &nr;
            s.spawn(move || {
                on(node);
                let t = nr.register().unwrap();
                nr.execute_mut(Inc(node), t);
            });
        }
    });
    assert_eq!(nodes_of(&nr), set(&[0]));
}

/// Workers register on random nodes, run recorded map operations, move to other nodes and
/// leave, in rounds, while the policy reshapes the replica set: every round's history is
/// linearizable (WGL), and every replica that is left holds the same map.
#[test]
fn policy_driven_churn_stays_linearizable() {
    watchdog("policy churn", LIMIT, || {
        const WORKERS: usize = 4;
        const ROUNDS: u64 = 12;
        let manager = Arc::new(Pretend::new(NODES));
        let mut added = 0;
        for round in 0..ROUNDS {
            // A fresh, empty map per round: the checker starts every key empty. Odd
            // rounds add the idle rule at its most eager (every check parks the threads
            // that did nothing since the last one; their next operation wakes the policy).
            on(0);
            let policy = if round % 2 == 1 {
                Policy::follow_threads().idle_after(Duration::ZERO)
            } else {
                Policy::follow_threads()
            };
            let nr = NodeReplicated::builder(TestMap::default())
                .affinity(manager.clone())
                .policy(policy)
                .log_capacity(16)
                .build()
                .unwrap();
            let clock = Clock::new();
            let barrier = Barrier::new(WORKERS);
            let history: Vec<_> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..WORKERS)
                    .map(|w| {
                        let (nr, clock, barrier) = (&nr, &clock, &barrier);
                        s.spawn(move || {
                            let seed = round * 31 + w as u64;
                            on((seed % NODES as u64) as usize);
                            let tkn = nr.register().unwrap();
                            barrier.wait();
                            let mut events =
                                recorded_map_ops(nr, tkn, clock, w, seed, 6, |i| i < 600);
                            // Move and go on: the policy follows on the migration check.
                            on(((seed + 1 + round) % NODES as u64) as usize);
                            events.extend(recorded_map_ops(nr, tkn, clock, w, seed + 7, 6, |i| {
                                i < 1_300
                            }));
                            nr.deregister(tkn).unwrap();
                            events
                        })
                    })
                    .collect();
                hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
            });
            if let Err(v) = check_map_by_key(&history) {
                panic!("round {round}: {v}");
            }
            if round == 0 {
                negative_control(&history);
            }
            // Every write was applied once: the most advanced replica left has applied
            // exactly the writes, and none more. (A replica that no thread drives any
            // more may still lag behind: the policy keeps one replica when every thread
            // has left, and it need not be the most advanced one; it catches up when a
            // thread next uses it.)
            let writes = history
                .iter()
                .filter(|e| !matches!(e.op, ldnr_testkit::lincheck::MapOp::Get(_)))
                .count();
            let infos = nr.replicas();
            assert!(
                infos.iter().all(|r| r.applied <= writes),
                "round {round}: {infos:?}"
            );
            // A thread that uses the remaining replica sees every write.
            let tkn = nr.register().unwrap();
            let len = nr.execute(ldnr_testkit::map::MapRead::Len, tkn);
            let infos = nr.replicas();
            assert!(
                infos.iter().any(|r| r.applied == writes),
                "round {round}: {infos:?} after a read (Len {len:?})"
            );
            nr.deregister(tkn).unwrap();
            added += nr.stats().policy_added;
        }
        assert!(added > ROUNDS as usize, "the policy added {added} replicas");
    });
}

/// Exactly once under policy churn: threads increment their own counters while moving
/// between nodes and re-registering; each increment's response is the previous count + 1
/// and the final counts are exact on every replica.
#[test]
fn policy_driven_churn_keeps_increments_exactly_once() {
    for policy in [
        Policy::follow_threads(),
        Policy::follow_threads().idle_after(Duration::ZERO),
    ] {
        churn_exactly_once(policy);
    }
}

fn churn_exactly_once(policy: Policy) {
    watchdog("policy exactly once", LIMIT, move || {
        const WORKERS: usize = 4;
        const PER: u64 = 3_000;
        let nr = following(policy);
        let done = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            if policy.idle().is_some() {
                // Idle checks all along: with ZERO, a worker that did nothing since the
                // previous check (preempted, say) is parked and wakes the policy.
                s.spawn(|| {
                    while done.load(std::sync::atomic::Ordering::Relaxed) < WORKERS {
                        nr.maintain();
                        std::thread::yield_now();
                    }
                });
            }
            for w in 0..WORKERS {
                let done = &done;
                let nr = &nr;
                s.spawn(move || {
                    let mut tkn = None;
                    for i in 0..PER {
                        if i % 500 == 0 {
                            if let Some(t) = tkn.take() {
                                nr.deregister(t).unwrap();
                            }
                            on((w + i as usize / 500) % NODES);
                            tkn = Some(nr.register().unwrap());
                        }
                        if i % 700 == 350 {
                            on((w + 1 + i as usize) % NODES);
                        }
                        let got = nr.execute_mut(Inc(w), tkn.unwrap());
                        assert_eq!(got, i + 1, "worker {w}, increment {i}");
                    }
                    nr.deregister(tkn.unwrap()).unwrap();
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                });
            }
        });
        on(0);
        let t = nr.register().unwrap();
        for w in 0..WORKERS {
            assert_eq!(nr.execute(Get(w), t), PER);
        }
        if policy.idle().is_some() {
            // How much the idle rule did depends on the schedule; not asserted.
            eprintln!("idle rule under churn: {:?}", nr.stats());
        }
    });
}

/// A policy run whose `add_replica` fails (the node's memory policy refused) or panics
/// (the affinity manager) changes nothing, is counted in `policy_failed`, never reaches
/// the thread that ran it (with `std`), and leaves the policy working for later events.
#[test]
fn a_failing_or_panicking_policy_run_changes_nothing_and_the_policy_goes_on() {
    ldnr_testkit::quiet_panics(&["pretend:"]);
    watchdog("failing policy", LIMIT, || {
        on(0);
        let manager = Arc::new(Pretend::new(NODES));
        let nr = NodeReplicated::builder(Counters(vec![0; 4]))
            .affinity(manager.clone())
            .policy(Policy::follow_threads())
            .build()
            .unwrap();
        let me = nr.register().unwrap();
        manager.refuse.store(2, std::sync::atomic::Ordering::SeqCst);
        manager
            .panic_on
            .store(3, std::sync::atomic::Ordering::SeqCst);
        std::thread::scope(|s| {
            for node in [2, 3] {
                let nr = &nr;
                s.spawn(move || {
                    on(node);
                    // Registration succeeds; its node gets no replica.
                    let t = nr.register().expect("the failed add is not the caller's");
                    assert_eq!(nr.execute_mut(Inc(node), t), 1);
                    nr.deregister(t).unwrap();
                })
                .join()
                .unwrap();
            }
        });
        let st = nr.stats();
        assert_eq!(st.policy_failed, 2, "{st:?}");
        assert_eq!(nodes_of(&nr), set(&[0]));
        // The policy still works: node 1 gets its replica.
        std::thread::scope(|s| {
            s.spawn(|| {
                on(1);
                let t = nr.register().unwrap();
                assert_eq!(nodes_of(&nr), set(&[0, 1]));
                nr.deregister(t).unwrap();
            });
        });
        assert_eq!(nodes_of(&nr), set(&[0]));
        assert_eq!(nr.execute(Get(2), me) + nr.execute(Get(3), me), 2);
    });
}

/// Hysteresis on ties: with room for one replica and two nodes with as many threads, a
/// thread that comes and goes on the node without the replica never moves it back and
/// forth (a tie keeps the replica where it is).
#[test]
fn a_tie_never_moves_the_replica() {
    watchdog("ties", LIMIT, || {
        let nr = following(Policy::follow_threads().max_replicas(1));
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|s| {
            let mut gos = Vec::new();
            let mut joins = Vec::new();
            for node in [1, 1, 2, 2] {
                let (go_tx, go_rx) = mpsc::channel();
                joins.push(resident(s, &nr, node, false, tx.clone(), go_rx));
                gos.push(go_tx);
                rx.recv().unwrap();
            }
            let settled = nodes_of(&nr);
            assert_eq!(settled.len(), 1);
            let before = nr.stats().policy_added;
            for _ in 0..10 {
                let other = if settled.contains(&1) { 2 } else { 1 };
                std::thread::scope(|s2| {
                    s2.spawn(|| {
                        on(other);
                        let t = nr.register().unwrap();
                        nr.deregister(t).unwrap();
                    });
                });
            }
            // One move at most: to the node that got a third thread, and not back.
            let moves = nr.stats().policy_added - before;
            assert!(moves <= 1, "{moves} clones for ten visits");
            for go in gos {
                go.send(()).unwrap();
            }
            for j in joins {
                j.join().unwrap();
            }
        });
    });
}

/// An instance full of replicas (placed by hand) makes room before the policy's add: the
/// add that found no room is tried again after the removals, in the same call.
#[test]
fn a_full_instance_makes_room_for_the_policy() {
    watchdog("full instance", LIMIT, || {
        on(0);
        let nr = NodeReplicated::builder(Counters(vec![0; 1]))
            .affinity(Arc::new(Pretend::new(NODES)))
            .policy(Policy::follow_threads())
            .replicas(&vec![NodeId(0); ldnr::MAX_REPLICAS])
            .build()
            .unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                on(1);
                let t = nr.register().unwrap();
                assert_eq!(
                    nodes_of(&nr),
                    set(&[1]),
                    "room made, replica added, rest removed"
                );
                nr.deregister(t).unwrap();
            });
        });
    });
}

/// A thread on `node` that registers, then runs one increment of its counter `node` per
/// message on the returned channel and answers each with the response; it deregisters
/// when the channel closes.
fn worker<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    nr: &'s NodeReplicated<Counters>,
    node: usize,
) -> (mpsc::Sender<()>, mpsc::Receiver<u64>) {
    let (go, orders) = mpsc::channel::<()>();
    let (answer, answers) = mpsc::channel();
    s.spawn(move || {
        on(node);
        let tkn = nr.register().unwrap();
        answer.send(0).unwrap();
        for () in orders {
            answer.send(nr.execute_mut(Inc(node), tkn)).unwrap();
        }
        nr.deregister(tkn).unwrap();
    });
    assert_eq!(answers.recv().unwrap(), 0, "registered");
    (go, answers)
}

/// The idle rule, with `Duration::ZERO` so that each check counts every thread that did
/// nothing since the previous one as idle: a node whose threads are idle loses its
/// replica at the next check (`maintain` here), and the next operation of its thread
/// brings it back before it runs, exactly once. With a long `idle_after` nothing goes.
#[test]
fn idle_nodes_lose_their_replica_until_their_next_operation() {
    watchdog("idle rule", LIMIT, || {
        let nr = following(Policy::follow_threads().idle_after(Duration::ZERO));
        std::thread::scope(|s| {
            let op = |(go, answers): &(mpsc::Sender<()>, mpsc::Receiver<u64>)| {
                go.send(()).unwrap();
                answers.recv().unwrap()
            };
            let a = worker(s, &nr, 1);
            assert_eq!(op(&a), 1);
            let b = worker(s, &nr, 2);
            assert_eq!(op(&b), 1);
            assert_eq!(nodes_of(&nr), set(&[1, 2]), "both registered and operated");
            // B operates, A does not: A's node is idle at the check.
            assert_eq!(op(&b), 2);
            nr.maintain();
            assert_eq!(nodes_of(&nr), set(&[2]), "node 1 was idle");
            let removed = nr.stats().policy_removed;
            // A's next operation brings its replica back first (and B, idle since the
            // check, loses its own: with ZERO only the latest counts).
            assert_eq!(op(&a), 2, "applied once, after the wake-up");
            assert_eq!(nodes_of(&nr), set(&[1]), "node 1 is back, node 2 idle");
            let on_a = nr
                .replicas()
                .into_iter()
                .find(|r| r.node == NodeId(1))
                .unwrap();
            assert_eq!(
                on_a.threads, 2,
                "both threads are served by node 1's replica"
            );
            assert_eq!(op(&b), 3);
            assert_eq!(
                nodes_of(&nr),
                set(&[2]),
                "B's operation brought node 2 back"
            );
            assert!(nr.stats().policy_removed > removed);
            assert_eq!(nr.stats().policy_woken, 2, "A's and B's wake-ups");
            for (go, _) in [a, b] {
                drop(go);
            }
        });
        on(0);
        let t = nr.register().unwrap();
        assert_eq!((nr.execute(Get(1), t), nr.execute(Get(2), t)), (2, 3));
    });
    watchdog("long idle rule", LIMIT, || {
        let nr = following(Policy::follow_threads().idle_after(Duration::from_secs(3_600)));
        std::thread::scope(|s| {
            let (a, b) = (worker(s, &nr, 1), worker(s, &nr, 2));
            for (go, answers) in [&a, &b] {
                go.send(()).unwrap();
                assert_eq!(answers.recv().unwrap(), 1);
            }
            nr.maintain();
            assert_eq!(nodes_of(&nr), set(&[1, 2]), "nobody idle for an hour");
            drop((a, b));
        });
    });
}

/// A thread inside a long read is not idle: the idle check neither removes its replica
/// nor waits for it. Here the read waits until the check has returned; removing the
/// reader's replica would wait for the read, for ever (the watchdog fails the test).
#[test]
fn a_thread_inside_an_operation_is_not_idle() {
    watchdog("long reader", LIMIT, || {
        let nr = following(Policy::follow_threads().idle_after(Duration::ZERO));
        let (inside, reading) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let nr = &nr;
            s.spawn(move || {
                on(2);
                let tkn = nr.register().unwrap();
                nr.execute_mut(Inc(2), tkn);
                nr.read(tkn, |_| {
                    inside.send(()).unwrap();
                    released.recv().unwrap();
                });
            });
            reading.recv().unwrap();
            on(1);
            let tkn = nr.register().unwrap();
            // Two checks, this thread active at both (with ZERO: an operation between).
            nr.execute_mut(Inc(1), tkn);
            nr.maintain();
            let kept = nodes_of(nr);
            nr.execute_mut(Inc(1), tkn);
            nr.maintain();
            let kept_again = nodes_of(nr);
            // Released before asserting, so that a failure does not leave it waiting.
            release.send(()).unwrap();
            assert_eq!(kept, set(&[1, 2]), "the reader's node keeps its replica");
            assert_eq!(kept_again, set(&[1, 2]), "and at the next check too");
        });
    });
}

/// A removal that panics (`Drop` of the removed replica's data) still leaves the idle
/// thread parked: its next operation brings its node's replica back.
#[test]
fn an_idle_thread_is_parked_before_its_replica_goes() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    static BOOM: AtomicBool = AtomicBool::new(false);
    #[derive(Clone)]
    struct Fragile(Counters);
    impl Drop for Fragile {
        fn drop(&mut self) {
            if BOOM.swap(false, SeqCst) {
                panic!("fragile: drop");
            }
        }
    }
    impl Dispatch for Fragile {
        type ReadOperation = Get;
        type WriteOperation = Inc;
        type Response = u64;
        fn dispatch(&self, g: Get) -> u64 {
            self.0.dispatch(g)
        }
        fn dispatch_mut(&mut self, i: Inc) -> u64 {
            self.0.dispatch_mut(i)
        }
    }
    ldnr_testkit::quiet_panics(&["fragile:"]);
    watchdog("park before removal", LIMIT, || {
        on(0);
        let nr = NodeReplicated::builder(Fragile(Counters(vec![0; 4])))
            .affinity(Arc::new(Pretend::new(NODES)))
            .policy(Policy::follow_threads().idle_after(Duration::ZERO))
            .build()
            .unwrap();
        std::thread::scope(|s| {
            let (go, orders) = mpsc::channel::<()>();
            let (answer, answers) = mpsc::channel();
            let nr = &nr;
            s.spawn(move || {
                on(1);
                let t = nr.register().unwrap();
                for () in orders {
                    answer.send(nr.execute_mut(Inc(1), t)).unwrap();
                }
            });
            go.send(()).unwrap();
            assert_eq!(answers.recv().unwrap(), 1);
            on(2);
            let t = nr.register().unwrap();
            nr.execute_mut(Inc(2), t);
            BOOM.store(true, SeqCst);
            nr.maintain(); // removes node 1's replica; its data's `Drop` panics (caught)
            assert_eq!(nodes_of(nr), set(&[2]));
            assert_eq!(nr.stats().policy_failed, 1);
            go.send(()).unwrap();
            assert_eq!(answers.recv().unwrap(), 2, "once");
            assert!(
                nodes_of(nr).contains(&1),
                "node 1 is back: {:?}",
                nr.stats()
            );
        });
    });
}

/// `idle_after(Duration::MAX)` (or 100 days, past a 32-bit millisecond count) means
/// "never idle", and operations never find a check due: a replica added by hand on a
/// node without threads stays through thousands of operations (a policy run would remove
/// it).
#[test]
fn a_huge_idle_time_never_makes_a_check_due() {
    for after in [
        Duration::from_secs(3_600),
        Duration::from_secs(100 * 86_400),
        Duration::MAX,
    ] {
        let nr = following(Policy::follow_threads().idle_after(after));
        let t = nr.register().unwrap();
        let extra = nr.add_replica(NodeId(3)).unwrap();
        for _ in 0..5_000 {
            nr.execute(Get(0), t);
        }
        assert!(
            nr.replicas().iter().any(|r| r.id == extra),
            "{after:?}: a policy run happened"
        );
    }
}

/// A parked thread that moved wakes the policy for its new node: one clone (node 3), not
/// one for its old node and then one for the new.
#[test]
fn a_parked_thread_that_moved_costs_one_clone() {
    watchdog("parked and moved", LIMIT, || {
        let nr = following(Policy::follow_threads().idle_after(Duration::ZERO));
        std::thread::scope(|s| {
            let (go, orders) = mpsc::channel::<usize>();
            let (answer, answers) = mpsc::channel();
            let nr = &nr;
            s.spawn(move || {
                on(1);
                let t = nr.register().unwrap();
                for node in orders {
                    on(node);
                    answer.send(nr.execute_mut(Inc(1), t)).unwrap();
                }
            });
            go.send(1).unwrap();
            assert_eq!(answers.recv().unwrap(), 1);
            on(2);
            let t = nr.register().unwrap();
            nr.execute_mut(Inc(2), t);
            nr.maintain();
            assert_eq!(nodes_of(nr), set(&[2]), "node 1 idle");
            let added = nr.stats().policy_added;
            go.send(3).unwrap();
            assert_eq!(answers.recv().unwrap(), 2);
            assert_eq!(nodes_of(nr), set(&[3]), "node 3 now, node 2 idle");
            assert_eq!(nr.stats().policy_added - added, 1, "{:?}", nr.stats());
        });
    });
}

/// A lone thread under `min_threads(2)` never has a replica of its own, so going idle
/// does not park it: its operations never wake the policy.
#[test]
fn a_thread_whose_node_is_never_wanted_is_not_parked() {
    watchdog("never wanted", LIMIT, || {
        let nr = following(
            Policy::follow_threads()
                .min_threads(2)
                .idle_after(Duration::ZERO),
        );
        std::thread::scope(|s| {
            let (go, answers) = worker(s, &nr, 1);
            for i in 1..=10 {
                go.send(()).unwrap();
                assert_eq!(answers.recv().unwrap(), i);
                nr.maintain();
                nr.maintain();
            }
            assert_eq!(nr.stats().policy_woken, 0);
            drop(go);
        });
    });
}
