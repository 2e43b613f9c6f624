//! Linearizability of a replicated map under concurrent mixed workloads.
//!
//! Several threads run random gets, inserts and removes on a few keys of a
//! `NodeReplicated<U64Map>` with several replicas and a small log (so the log wraps
//! many times per round). Every operation is recorded with a shared logical clock and
//! each round's history is checked key by key with the WGL checker in
//! `tests/common/lincheck.rs`. Inserted values are unique, so a stale, lost, duplicated
//! or reordered write shows up as an impossible return value.

mod common;

use std::sync::Barrier;

use common::lincheck::{check_map_by_key, record, Clock, MapEvent, MapOp};
use common::{watchdog, LIMIT};
use ldnr::{NodeId, NodeReplicated};
use ldnr_hashmap::{MapRead, MapWrite, U64Map};

/// A tiny xorshift64* generator (deterministic per seed, no extra dependency).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

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
    let nr = NodeReplicated::builder(U64Map::default())
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
                    let mut rng = Rng::new(round * 1_000 + t as u64 + 1);
                    let mut events = Vec::with_capacity(w.ops);
                    barrier.wait();
                    for i in 0..w.ops {
                        if i % 16 == 15 {
                            // Not synchronization: on a machine with few cores, giving up
                            // the time slice now and then makes the threads interleave.
                            std::thread::yield_now();
                        }
                        let key = rng.below(w.keys);
                        let op = match rng.below(10) {
                            0..=3 => MapOp::Get(key),
                            // Unique, non-zero values: (thread + 1) in the high half.
                            4..=7 => MapOp::Insert(key, ((t as u64 + 1) << 32) | i as u64),
                            _ => MapOp::Remove(key),
                        };
                        events.push(record(clock, t, op, |op| match *op {
                            MapOp::Get(k) => nr.execute(MapRead::Get(k), tkn),
                            MapOp::Insert(k, v) => nr.execute_mut(MapWrite::Insert(k, v), tkn),
                            MapOp::Remove(k) => nr.execute_mut(MapWrite::Remove(k), tkn),
                        }));
                    }
                    events
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
    let writes = history
        .iter()
        .filter(|e| !matches!(e.op, MapOp::Get(_)))
        .count();
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

/// The checker must reject the same history with one read corrupted: proves that the
/// histories checked above are strong enough to catch a wrong answer.
fn negative_control(history: &[MapEvent]) {
    let mut bad = history.to_vec();
    let read = bad
        .iter_mut()
        .find(|e| matches!(e.op, MapOp::Get(_)))
        .expect("the history has reads");
    // No insert ever writes a value with a zero high half.
    read.ret = Some(7);
    assert!(
        check_map_by_key(&bad).is_err(),
        "the checker accepted a read of a value that was never written"
    );
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
