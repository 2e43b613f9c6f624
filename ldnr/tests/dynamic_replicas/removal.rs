//! Removing the replica threads are waiting on: hammered writes, deterministic
//! single-thread removals between two operations, a removal with operations on the
//! removed replica's pending stack, and removals and additions next to readers inside.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier};

use ldnr::{Dispatch, NodeId, NodeReplicated};
use ldnr_testkit::churn::{counters_under, wait_until, Churn};
use ldnr_testkit::map::{MapRead, MapWrite, TestMap};
use ldnr_testkit::replicas::{ids, tokens_on_every_replica};
use ldnr_testkit::{watchdog, LIMIT};

use crate::DEBUG;

// ---------------------------------------------------------------------------------------
// 3. Removing the replica threads are waiting on
// ---------------------------------------------------------------------------------------

#[test]
fn remove_the_replica_threads_wait_on() {
    const WORKERS: usize = 8;
    let n = if DEBUG { 20_000 } else { 100_000 };
    let changes = counters_under(
        "remove the busiest replica",
        WORKERS,
        2,
        32,
        n,
        2_000,
        |nr, pace| {
            let mut churn = Churn::new(nr, 9, 3);
            let mut last = 0;
            while !pace.done() || churn.changes() < 2_000 {
                pace.wait_ops(&mut last, 16);
                // Add one back first, so that the busiest replica's threads spread over
                // the two that remain: the writers keep hammering two replicas.
                churn.add(nr, WORKERS);
                let infos = nr.replicas();
                let busiest = infos.iter().max_by_key(|r| r.threads).unwrap();
                assert_eq!(infos.len(), 3);
                assert!(busiest.threads > 0, "{infos:?}");
                let moved = busiest.threads;
                let victim = busiest.id;
                churn.remove(nr, victim, WORKERS);
                let after = nr.replicas();
                // The victim's threads go one by one to the one of the two others with
                // fewer threads; as the victim had the most, the two end up balanced.
                let (lo, hi) = {
                    let mut t: Vec<_> = after.iter().map(|r| r.threads).collect();
                    t.sort_unstable();
                    (t[0], t[1])
                };
                assert_eq!(lo + hi, WORKERS, "{after:?}");
                assert!(hi - lo <= 1, "moved {moved}: {infos:?} -> {after:?}");
                pace.changed(churn.changes());
            }
        },
    );
    assert!(changes >= 2_000);
}

#[test]
fn removal_between_two_operations_of_a_thread() {
    watchdog("removal between two operations", LIMIT, || {
        let nr = NodeReplicated::builder(TestMap::default())
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(16)
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        let infos = nr.replicas();
        let (mine, other) = (infos[0].id, infos[1].id);
        assert_eq!((infos[0].threads, infos[1].threads), (1, 0), "{infos:?}");
        assert_eq!(nr.execute_mut(MapWrite::Insert(1, 10), tkn), None);

        // Removed by the thread itself, between two operations.
        nr.remove_replica(mine).unwrap();
        let infos = nr.replicas();
        assert_eq!(ids(&infos), vec![other]);
        assert_eq!(infos[0].threads, 1);
        assert_eq!(nr.execute(MapRead::Get(1), tkn), Some(10));
        assert_eq!(nr.execute_mut(MapWrite::Insert(2, 20), tkn), None);

        // A new replica reuses the freed shell; the thread stays where it is.
        let third = nr.add_replica(NodeId(0)).unwrap();
        assert_eq!(nr.replicas()[0].id, third, "the freed shell is reused");
        assert_eq!(nr.execute_mut(MapWrite::Insert(3, 30), tkn), None);

        // Removed by another thread, between two operations: the thread moves to the
        // replica that reuses its first shell, which must hold everything.
        std::thread::scope(|s| {
            s.spawn(|| nr.remove_replica(other).unwrap())
                .join()
                .unwrap();
        });
        let infos = nr.replicas();
        assert_eq!(ids(&infos), vec![third]);
        assert_eq!(infos[0].threads, 1);
        for k in 1..=3 {
            assert_eq!(nr.execute(MapRead::Get(k), tkn), Some(k * 10), "key {k}");
        }
        assert_eq!(nr.execute_mut(MapWrite::Remove(2), tkn), Some(20));
        assert_eq!(nr.execute(MapRead::Len, tkn), Some(2));
    });
}

#[test]
fn removal_moves_a_thread_to_a_lagging_replica() {
    watchdog("removal to a lagging replica", LIMIT, || {
        // A large log: nothing forces the idle replica to catch up before the removal.
        let nr = NodeReplicated::builder(TestMap::default())
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(1024)
            .build()
            .unwrap();
        let a = nr.register().unwrap();
        let b = nr.register().unwrap();
        let infos = nr.replicas();
        assert_eq!((infos[0].threads, infos[1].threads), (1, 1));
        for k in 0..100 {
            assert_eq!(nr.execute_mut(MapWrite::Insert(k, k + 1), b), None);
        }
        let infos = nr.replicas();
        assert_eq!(infos[0].applied, 0, "the replica of `a` is idle: {infos:?}");
        assert_eq!(infos[1].applied, 100, "{infos:?}");
        // Remove `b`'s replica: `b` moves to the lagging one and must see its writes.
        nr.remove_replica(infos[1].id).unwrap();
        assert_eq!(nr.replicas()[0].threads, 2);
        for k in 0..100 {
            assert_eq!(nr.execute(MapRead::Get(k), b), Some(k + 1), "key {k}");
        }
        assert_eq!(nr.execute(MapRead::Len, a), Some(100));
        assert_eq!(nr.execute_mut(MapWrite::Remove(5), a), Some(6));
        assert_eq!(nr.execute(MapRead::Get(5), b), None);
    });
}

/// A gate a write operation can wait at, inside `dispatch_mut`: the first replica that
/// applies the gate operation holds its combiner (and write) lock until the test opens
/// it. Every other application passes straight through, and the result does not depend
/// on the gate, so `dispatch_mut` stays deterministic.
#[derive(Debug, Default)]
struct Gate {
    armed: AtomicBool,
    entered: AtomicBool,
    open: AtomicBool,
}

/// Counters with a gated write: counter 0 counts the gate operations.
#[derive(Debug, Clone)]
struct Gated(Vec<u64>);

#[derive(Debug, Clone)]
enum GatedOp {
    Inc(usize),
    Gate(Arc<Gate>),
}

/// Reads of [`Gated`]: a counter, or a counter read that first waits at a gate (while
/// holding the replica's read lock).
#[derive(Debug)]
enum GatedRead {
    Get(usize),
    Gate(Arc<Gate>, usize),
}

impl Gate {
    fn armed() -> Arc<Gate> {
        Arc::new(Gate {
            armed: AtomicBool::new(true),
            ..Gate::default()
        })
    }

    /// Waits here if this is the first pass.
    fn pass(&self) {
        if self.armed.swap(false, SeqCst) {
            self.entered.store(true, SeqCst);
            while !self.open.load(SeqCst) {
                std::thread::yield_now();
            }
        }
    }
}

impl Dispatch for Gated {
    type ReadOperation = GatedRead;
    type WriteOperation = GatedOp;
    type Response = u64;

    fn dispatch(&self, op: GatedRead) -> u64 {
        match op {
            GatedRead::Get(t) => self.0[t],
            GatedRead::Gate(gate, t) => {
                gate.pass();
                self.0[t]
            }
        }
    }

    fn dispatch_mut(&mut self, op: GatedOp) -> u64 {
        let t = match op {
            GatedOp::Inc(t) => t,
            GatedOp::Gate(gate) => {
                gate.pass();
                0
            }
        };
        self.0[t] += 1;
        self.0[t]
    }
}

/// The removal hand-back, made likely: a thread holds replica A's combiner lock inside
/// a gated write; `k` waiters publish their increments on A's pending stack; a remover
/// starts removing A (observed through `replicas()`), and only then does the gate open.
/// The remover and the waiters then race for A's combiner lock: if the remover wins,
/// the waiters' operations are handed back and re-run on B; otherwise a waiter combines
/// them on A. Either way each must be applied exactly once.
#[test]
fn remove_the_replica_with_operations_on_its_pending_stack() {
    let iterations = if DEBUG { 300 } else { 1_000 };
    watchdog("removal with pending operations", LIMIT, move || {
        for it in 0..iterations {
            let k = 1 + it % 3;
            let nr = NodeReplicated::builder(Gated(vec![0; 1 + k]))
                .replicas(&[NodeId(0), NodeId(0)])
                .log_capacity(64)
                .build()
                .unwrap();
            let gate = Gate::armed();
            let started = AtomicUsize::new(0);
            let go = Barrier::new(k + 1);
            let infos = nr.replicas();
            let (a, b) = (infos[0].id, infos[1].id);
            std::thread::scope(|s| {
                let (nr, gate, started, go) = (&nr, &gate, &started, &go);
                let (registered_tx, registered) = mpsc::channel();
                // The gate holder, on A.
                let tx = registered_tx.clone();
                let holder = s.spawn(move || {
                    let tkn = nr.register().unwrap();
                    tx.send(()).unwrap();
                    let r = nr.execute_mut(GatedOp::Gate(gate.clone()), tkn);
                    assert_eq!(r, 1, "iteration {it}: the gate op");
                });
                registered.recv().unwrap();
                // The waiters, on A too: pad B with idle tokens so that each waiter
                // finds A and B tied and takes A, the lower slot.
                let mut idle = Vec::new();
                let mut waiters = Vec::new();
                for w in 1..=k {
                    loop {
                        let infos = nr.replicas();
                        if infos[1].threads >= infos[0].threads {
                            break;
                        }
                        idle.push(nr.register().unwrap());
                    }
                    let tx = registered_tx.clone();
                    waiters.push(s.spawn(move || {
                        let tkn = nr.register().unwrap();
                        tx.send(()).unwrap();
                        go.wait();
                        started.fetch_add(1, SeqCst);
                        let r = nr.execute_mut(GatedOp::Inc(w), tkn);
                        assert_eq!(r, 1, "iteration {it}: waiter {w}");
                        assert_eq!(nr.execute(GatedRead::Get(w), tkn), 1);
                        assert_eq!(nr.execute(GatedRead::Get(0), tkn), 1, "gate op visible");
                        assert_eq!(nr.execute_mut(GatedOp::Inc(w), tkn), 2);
                    }));
                    registered.recv().unwrap();
                }
                let infos = nr.replicas();
                assert_eq!(infos[0].threads, 1 + k, "{infos:?}");

                wait_until(|| gate.entered.load(SeqCst));
                go.wait();
                wait_until(|| started.load(SeqCst) == k);
                let remover = s.spawn(move || nr.remove_replica(a).unwrap());
                // A leaves the list before the remover waits for A's combiner lock.
                wait_until(|| nr.replicas().iter().all(|r| r.id != a));
                gate.open.store(true, SeqCst);
                remover.join().unwrap();
                holder.join().unwrap();
                for w in waiters {
                    w.join().unwrap();
                }
                let infos = nr.replicas();
                assert_eq!(ids(&infos), vec![b]);
                assert_eq!(infos[0].threads, 1 + k + idle.len());
                let tkn = idle
                    .first()
                    .copied()
                    .unwrap_or_else(|| nr.register().unwrap());
                assert_eq!(nr.execute(GatedRead::Get(0), tkn), 1);
                for w in 1..=k {
                    assert_eq!(
                        nr.execute(GatedRead::Get(w), tkn),
                        2,
                        "iteration {it}: counter {w}"
                    );
                }
                // B catches up lazily: after the reads above it has applied the log,
                // which holds each write exactly once.
                assert_eq!(nr.replicas()[0].applied, 1 + 2 * k, "each write once");
            });
        }
    });
}

/// A reader inside the replica being removed: the removal waits for it (the data is
/// freed before `remove_replica` returns, so it cannot go while someone reads it), the
/// read completes with the right value, and writes on the other replica go on
/// meanwhile.
#[test]
fn removal_waits_for_a_reader_inside_and_others_go_on() {
    watchdog("removal waits for a reader", LIMIT, || {
        let nr = NodeReplicated::builder(Gated(vec![0; 3]))
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(64)
            .build()
            .unwrap();
        let gate = Gate::armed();
        let a = nr.replicas()[0].id;
        std::thread::scope(|s| {
            let (nr, gate) = (&nr, &gate);
            let (registered_tx, registered) = mpsc::channel();
            let reader = s.spawn(move || {
                let tkn = nr.register().unwrap();
                registered_tx.send(()).unwrap();
                assert_eq!(nr.execute_mut(GatedOp::Inc(1), tkn), 1);
                // Waits at the gate inside replica A, holding A's read lock.
                assert_eq!(nr.execute(GatedRead::Gate(gate.clone(), 1), tkn), 1);
                // Now matched to B.
                assert_eq!(nr.execute_mut(GatedOp::Inc(1), tkn), 2);
                assert_eq!(nr.execute(GatedRead::Get(2), tkn), 5);
            });
            registered.recv().unwrap();
            let main = nr.register().unwrap();
            assert_eq!(nr.replicas()[1].threads, 1, "this thread is on B");
            wait_until(|| gate.entered.load(SeqCst));
            let remover = s.spawn(move || nr.remove_replica(a).unwrap());
            wait_until(|| nr.replicas().iter().all(|r| r.id != a));
            // B's writes and reads do not wait for the removal.
            for i in 1..=5 {
                assert_eq!(nr.execute_mut(GatedOp::Inc(2), main), i);
            }
            assert_eq!(nr.execute(GatedRead::Get(1), main), 1);
            assert!(
                !remover.is_finished(),
                "remove_replica returned while a reader was inside the replica"
            );
            gate.open.store(true, SeqCst);
            remover.join().unwrap();
            reader.join().unwrap();
            let infos = nr.replicas();
            assert_eq!(infos.len(), 1);
            assert_eq!(infos[0].threads, 2);
            assert_eq!(nr.execute(GatedRead::Get(1), main), 2);
        });
    });
}

/// A reader inside the clone source: `add_replica` freezes only the source's writes,
/// so it completes while the reader is still inside, and the new replica starts at the
/// source's position.
#[test]
fn add_replica_does_not_wait_for_readers_of_the_source() {
    watchdog("add while a reader is inside the source", LIMIT, || {
        let nr = NodeReplicated::builder(Gated(vec![0; 2]))
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(64)
            .build()
            .unwrap();
        let gate = Gate::armed();
        std::thread::scope(|s| {
            let (nr, gate) = (&nr, &gate);
            let reader = s.spawn(move || {
                let tkn = nr.register().unwrap();
                for i in 1..=3 {
                    assert_eq!(nr.execute_mut(GatedOp::Inc(1), tkn), i);
                }
                // Inside A (the most advanced replica: B applied nothing yet).
                assert_eq!(nr.execute(GatedRead::Gate(gate.clone(), 1), tkn), 3);
            });
            wait_until(|| gate.entered.load(SeqCst));
            let infos = nr.replicas();
            assert_eq!((infos[0].applied, infos[1].applied), (3, 0), "{infos:?}");
            let new = nr.add_replica(NodeId(0)).unwrap();
            let infos = nr.replicas();
            let added = infos.iter().find(|r| r.id == new).unwrap();
            assert_eq!(
                added.applied, 3,
                "cloned at the source's position: {infos:?}"
            );
            assert!(!reader.is_finished(), "the reader is still inside");
            gate.open.store(true, SeqCst);
            reader.join().unwrap();
            // A token on each replica (B, then the new one) reads 3.
            for (id, tkn) in tokens_on_every_replica(nr) {
                assert_eq!(nr.execute(GatedRead::Get(1), tkn), 3, "replica {id:?}");
            }
        });
    });
}
