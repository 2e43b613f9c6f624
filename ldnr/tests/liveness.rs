//! Liveness: a replica that no thread drives never stalls the others (cross-combining).
//!
//! Every scenario runs under a watchdog; none depends on timing. Idle threads are
//! registered on their replica and simply do nothing while others run far more writes
//! than the log holds; afterwards they must see the last write.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use ldnr::{Dispatch, NodeId, NodeReplicated, ThreadToken};
use ldnr_testkit::{watchdog, LIMIT};

/// A register holding the last written value and the number of writes applied.
#[derive(Clone, Default, Debug)]
struct Reg {
    value: u64,
    writes: u64,
}

impl Dispatch for Reg {
    type ReadOperation = ();
    type WriteOperation = u64;
    type Response = (u64, u64);

    fn dispatch(&self, _: ()) -> (u64, u64) {
        (self.value, self.writes)
    }

    fn dispatch_mut(&mut self, v: u64) -> (u64, u64) {
        self.value = v;
        self.writes += 1;
        (self.value, self.writes)
    }
}

fn build(replicas: usize, log: usize) -> Arc<NodeReplicated<Reg>> {
    Arc::new(
        NodeReplicated::builder(Reg::default())
            .replicas(&vec![NodeId(0); replicas])
            .log_capacity(log)
            .build()
            .expect("valid configuration"),
    )
}

/// Registers `n` tokens on the calling thread; with replicas on one node, registration
/// spreads threads by load, so `n == replicas` gives one token per replica.
fn tokens(nr: &NodeReplicated<Reg>, n: usize) -> Vec<ThreadToken> {
    (0..n)
        .map(|_| nr.register().expect("below the limit"))
        .collect()
}

#[test]
fn idle_replica_does_not_stall_a_writer_and_then_sees_the_last_write() {
    watchdog("idle replica B, 100x capacity on A", LIMIT, || {
        let nr = build(2, 8);
        let t = tokens(&nr, 2);
        let (a, b) = (t[0], t[1]);
        let writes = 100 * nr.log_capacity() as u64;
        for i in 1..=writes {
            assert_eq!(nr.execute_mut(i, a), (i, i));
            assert_eq!(nr.execute((), a), (i, i), "A reads its own write");
        }
        assert_eq!(
            nr.execute((), b),
            (writes, writes),
            "idle B sees A's last write"
        );
    });
}

#[test]
fn several_idle_replicas_at_once() {
    watchdog("three idle replicas", LIMIT, || {
        let nr = build(4, 4);
        let t = tokens(&nr, 4);
        let writes = 200 * nr.log_capacity() as u64;
        for i in 1..=writes {
            nr.execute_mut(i, t[0]);
        }
        for (k, &tkn) in t.iter().enumerate() {
            assert_eq!(
                nr.execute((), tkn),
                (writes, writes),
                "replica of token {k}"
            );
        }
        let positions: Vec<usize> = nr.replicas().iter().map(|r| r.applied).collect();
        assert!(
            positions.iter().all(|&p| p as u64 == writes),
            "every replica applied every write after reading: {positions:?}"
        );
    });
}

#[test]
fn idle_in_both_directions_alternately() {
    watchdog("alternating idleness across threads", LIMIT, || {
        let nr = build(2, 8);
        let go = Arc::new(Barrier::new(2));
        let turn = Arc::new(AtomicUsize::new(0));
        let rounds = 20;
        let per_turn = 50 * nr.log_capacity() as u64;
        let handles: Vec<_> = (0..2)
            .map(|me| {
                let (nr, go, turn) = (nr.clone(), go.clone(), turn.clone());
                std::thread::spawn(move || {
                    let tkn = nr.register().expect("below the limit");
                    go.wait();
                    for round in 0..rounds {
                        // Turns are handed over by the atomic, not by time: the other
                        // thread stays idle (spinning on `turn`, not on LD-NR) meanwhile.
                        while turn.load(Ordering::Acquire) != 2 * round + me {
                            std::hint::spin_loop();
                            std::thread::yield_now();
                        }
                        let (seen, writes) = nr.execute((), tkn);
                        assert_eq!(writes, (2 * round + me) as u64 * per_turn);
                        if writes > 0 {
                            assert_eq!(seen, writes, "sees the other side's last write");
                        }
                        for _ in 0..per_turn {
                            let (_, w) = nr.execute((), tkn);
                            nr.execute_mut(w + 1, tkn);
                        }
                        turn.store(2 * round + me + 1, Ordering::Release);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("worker panicked");
        }
        let tkn = nr.register().expect("below the limit");
        let total = 2 * rounds as u64 * per_turn;
        assert_eq!(nr.execute((), tkn), (total, total));
    });
}

#[test]
fn readers_on_an_active_replica_are_not_blocked_by_an_idle_one() {
    watchdog("reader and writer on A, B idle", LIMIT, || {
        let nr = build(2, 8);
        let t = tokens(&nr, 2);
        let (a_writer, b_idle) = (t[0], t[1]);
        let done = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (nr, done, reads) = (nr.clone(), done.clone(), reads.clone());
            std::thread::spawn(move || {
                // The reader registers after both replicas have one thread, so it lands
                // on the first replica (fewest threads, lowest slot) with the writer.
                let tkn = nr.register().expect("below the limit");
                let mut last = 0;
                while !done.load(Ordering::Acquire) {
                    let (_, writes) = nr.execute((), tkn);
                    assert!(writes >= last, "reads go forward");
                    last = writes;
                    reads.fetch_add(1, Ordering::Release);
                }
            })
        };
        // Write far more than the log holds, and keep writing until the reader has read
        // many times while writes were still going on: progress of both, not timing.
        let mut i = 0u64;
        while i < 200 * nr.log_capacity() as u64 || reads.load(Ordering::Acquire) < 1000 {
            i += 1;
            nr.execute_mut(i, a_writer);
        }
        done.store(true, Ordering::Release);
        reader.join().expect("reader panicked");
        assert_eq!(nr.execute((), b_idle), (i, i), "idle B sees the last write");
    });
}

#[test]
fn idle_replica_removed_while_others_help_it() {
    watchdog("remove an idle replica under write load", LIMIT, || {
        let nr = build(3, 4);
        let t = tokens(&nr, 3);
        let idle_slot_id = nr.replicas()[2].id;
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (nr, stop) = (nr.clone(), stop.clone());
            std::thread::spawn(move || {
                let tkn = nr.register().expect("below the limit");
                let mut i = 0u64;
                while !stop.load(Ordering::Acquire) || i < 10_000 {
                    i += 1;
                    nr.execute_mut(i, tkn);
                }
                i
            })
        };
        // Let the writer lap the tiny log a few times, driven by its own progress.
        while nr.replicas()[0].applied < 1000 && nr.replicas()[1].applied < 1000 {
            nr.execute_mut(0, t[0]);
        }
        nr.remove_replica(idle_slot_id)
            .expect("not the last replica");
        stop.store(true, Ordering::Release);
        let last = writer.join().expect("writer panicked");
        // Thread 2 was matched elsewhere; it reads the final state.
        let (_, writes) = nr.execute((), t[2]);
        assert!(writes >= last, "removal lost no write");
        assert_eq!(nr.execute((), t[1]).1, writes, "replicas agree");
    });
}

#[test]
fn idle_replica_used_as_clone_source() {
    watchdog(
        "clone an idle replica while a writer helps it",
        LIMIT,
        || {
            let nr = build(2, 4);
            let t = tokens(&nr, 2);
            // B idle; A writes a lot, so B advances only by cross-combining.
            for i in 1..=1000 {
                nr.execute_mut(i, t[0]);
            }
            // Make the idle replica the most advanced: A's thread stops, B's reads once.
            assert_eq!(nr.execute((), t[1]), (1000, 1000));
            let id = nr.add_replica(NodeId(0)).expect("room");
            let new_reader = nr.register().expect("below the limit");
            assert!(nr.replicas().iter().any(|r| r.id == id && r.threads == 1));
            assert_eq!(nr.execute((), new_reader), (1000, 1000));
            for i in 1001..=2000 {
                nr.execute_mut(i, t[1]);
            }
            for tkn in [t[0], t[1], new_reader] {
                assert_eq!(nr.execute((), tkn), (2000, 2000));
            }
        },
    );
}
