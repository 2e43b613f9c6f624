//! Every write is applied exactly once, in each thread's program order, on every replica.
//!
//! The structure is a vector of per-thread counters. Each worker increments only its own
//! counter, so the response of its `i`-th increment must be exactly `i + 1` (a lost,
//! duplicated or reordered write changes it), and a read of its own counter right after
//! must return the same value (reads see completed writes). At the end every replica is
//! read through a token matched to it, and must hold exactly `N` for every thread.

use std::sync::Barrier;

use ldnr::{NodeId, NodeReplicated};
use ldnr_testkit::counters::{Counters, Get, Inc};
use ldnr_testkit::replicas::tokens_on_every_replica;
use ldnr_testkit::{watchdog, LIMIT};

fn run(replicas: usize, log: usize, threads: usize, n: u64) {
    let what = format!("exactly once: {replicas} replicas, log {log}, {threads} threads");
    watchdog(&what.clone(), LIMIT, move || {
        let nr = NodeReplicated::builder(Counters(vec![0; threads]))
            .replicas(&vec![NodeId(0); replicas])
            .log_capacity(log)
            .max_threads(threads + 2 * replicas)
            .build()
            .expect("a valid configuration");
        let barrier = Barrier::new(threads);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (nr, barrier) = (&nr, &barrier);
                s.spawn(move || {
                    let tkn = nr.register().expect("below the thread limit");
                    let other = (t + 1) % threads;
                    let mut seen_other = 0;
                    barrier.wait();
                    for i in 0..n {
                        let r = nr.execute_mut(Inc(t), tkn);
                        assert_eq!(r, i + 1, "thread {t}: increment #{i} answered {r}");
                        if i % 8 == 0 {
                            let own = nr.execute(Get(t), tkn);
                            assert_eq!(own, i + 1, "thread {t}: read after increment #{i}");
                            // Another thread's counter only grows: a later read on the
                            // same replica must never see an older value.
                            let v = nr.execute(Get(other), tkn);
                            assert!(
                                v >= seen_other && v <= n,
                                "thread {t}: counter {other} read {v} after {seen_other}"
                            );
                            seen_other = v;
                        }
                        if i % 32 == 31 {
                            // Not synchronization: lets threads interleave on few cores.
                            std::thread::yield_now();
                        }
                    }
                });
            }
        });

        let total = n * threads as u64;
        let readers = tokens_on_every_replica(&nr);
        assert_eq!(readers.len(), replicas);
        for (id, tkn) in readers {
            for t in 0..threads {
                let v = nr.execute(Get(t), tkn);
                assert_eq!(v, n, "{what}: replica {id:?} holds {v} for thread {t}");
            }
        }
        for info in nr.replicas() {
            assert_eq!(
                info.applied as u64, total,
                "{what}: every replica applied every write once: {info:?}"
            );
        }
    });
}

#[test]
fn one_replica_tiny_log() {
    run(1, 8, 4, 25_000);
}

#[test]
fn two_replicas_tiny_log() {
    run(2, 8, 4, 25_000);
}

#[test]
fn three_replicas_tiny_log() {
    run(3, 8, 4, 25_000);
}

#[test]
fn one_replica_large_log() {
    run(1, 1024, 4, 25_000);
}

#[test]
fn two_replicas_large_log() {
    run(2, 1024, 4, 25_000);
}

#[test]
fn three_replicas_large_log() {
    run(3, 1024, 5, 25_000);
}

#[test]
fn minimum_log_more_threads_than_log_entries() {
    // Six threads on a 4-entry log: batches are split (a batch takes at most half the
    // log) and every combiner must wait for or help the other replicas.
    run(2, ldnr::MIN_LOG_CAPACITY, 6, 12_000);
}
