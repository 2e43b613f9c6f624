//! Linearizability of a replicated map under concurrent mixed workloads.
//!
//! Several threads run random gets, inserts and removes on a few keys of a
//! `NodeReplicated<TestMap>` with several replicas and a small log (so the log wraps
//! many times per round). Every operation is recorded with a shared logical clock and
//! each round's history is checked key by key with the WGL checker in
//! `ldnr_testkit::lincheck`. Inserted values are unique, so a stale, lost, duplicated
//! or reordered write shows up as an impossible return value.

use std::sync::Barrier;

use ldnr::{NodeId, NodeReplicated};
use ldnr_testkit::lincheck::{check_map_by_key, Clock, MapEvent};
use ldnr_testkit::map::TestMap;
use ldnr_testkit::map::{negative_control, recorded_map_ops, write_count};
use ldnr_testkit::{watchdog, LIMIT};

/// One workload shape.
#[derive(Debug, Clone, Copy)]
struct Workload {
    replicas: usize,
    threads: usize,
    log: usize,
    keys: u64,
    rounds: u64,
    ops: usize,
}

/// Runs one round on a fresh, empty map and returns its history.
fn run_round(w: Workload, round: u64) -> Vec<MapEvent> {
    let nr = NodeReplicated::builder(TestMap::default())
        .replicas(&vec![NodeId(0); w.replicas])
        .log_capacity(w.log)
        .build()
        .expect("a valid configuration");
    let clock = Clock::new();
    let barrier = Barrier::new(w.threads);
    let mut history = Vec::with_capacity(w.threads * w.ops);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..w.threads)
            .map(|t| {
                let (nr, clock, barrier) = (&nr, &clock, &barrier);
                s.spawn(move || {
                    let tkn = nr.register().expect("below the thread limit");
                    barrier.wait();
                    recorded_map_ops(
                        nr,
                        tkn,
                        clock,
                        t,
                        round * 1_000 + t as u64 + 1,
                        w.keys,
                        |i| i < w.ops,
                    )
                })
            })
            .collect();
        for worker in workers {
            history.extend(worker.join().expect("a worker panicked"));
        }
    });

    // The workload really used every replica and wrapped the log.
    let infos = nr.replicas();
    assert_eq!(infos.len(), w.replicas);
    assert!(
        infos.iter().all(|r| r.threads > 0),
        "every replica serves a thread: {infos:?}"
    );
    let writes = write_count(&history);
    let applied = infos.iter().map(|r| r.applied).max().unwrap_or(0);
    assert_eq!(
        applied, writes,
        "the replicas applied exactly the writes: {infos:?}"
    );
    assert!(
        writes >= 4 * w.log,
        "the log wrapped several times ({writes} writes, capacity {})",
        w.log
    );
    history
}

fn check_workload(name: &str, w: Workload) {
    watchdog(name, LIMIT, move || {
        for round in 0..w.rounds {
            let history = run_round(w, round);
            if let Err(v) = check_map_by_key(&history) {
                panic!("round {round} of {w:?}: {v}");
            }
            if round == 0 {
                negative_control(&history);
            }
        }
    });
}

#[test]
fn two_replicas_four_threads_small_log() {
    check_workload(
        "linearizability: 2 replicas, 4 threads, log 64",
        Workload {
            replicas: 2,
            threads: 4,
            log: 64,
            keys: 6,
            rounds: 50,
            ops: 1000,
        },
    );
}

#[test]
fn three_replicas_six_threads_small_log() {
    check_workload(
        "linearizability: 3 replicas, 6 threads, log 64",
        Workload {
            replicas: 3,
            threads: 6,
            log: 64,
            keys: 8,
            rounds: 30,
            ops: 600,
        },
    );
}

#[test]
fn two_replicas_four_threads_tiny_log() {
    // A log of 8 entries: every batch nearly fills it, so combiners constantly wait for
    // or help the other replica.
    check_workload(
        "linearizability: 2 replicas, 4 threads, log 8",
        Workload {
            replicas: 2,
            threads: 4,
            log: 8,
            keys: 4,
            rounds: 30,
            ops: 600,
        },
    );
}
