//! Replicas added and removed by a controller ([`ldnr_testkit::churn::Churn`]) while
//! workers run: every round's recorded history passes the WGL checker; exactly-once
//! counters hold under the same churn and every live replica ends with the exact counts;
//! removing the source of a clone right after the clone loses nothing.

use std::sync::Barrier;

use ldnr::{NodeId, NodeReplicated};
use ldnr_testkit::churn::{counters_under, map_workers_under, Churn, Pace, VICTIMS};
use ldnr_testkit::lincheck::{check_map_by_key, Clock, MapEvent};
use ldnr_testkit::map::{negative_control, recorded_map_ops, write_count};
use ldnr_testkit::map::{MapRead, TestMap};
use ldnr_testkit::replicas::tokens_on_every_replica;
use ldnr_testkit::{watchdog, LIMIT};

use crate::DEBUG;

// ---------------------------------------------------------------------------------------
// 1. Churn + linearizability
// ---------------------------------------------------------------------------------------

/// Runs one round on a fresh map with a controller churning replicas; returns the
/// history and the number of replica changes.
fn churn_round(
    round: u64,
    ops: usize,
    min_changes: usize,
    ops_per_change: usize,
) -> (Vec<MapEvent>, Churn) {
    const WORKERS: usize = 4;
    const KEYS: u64 = 6;
    let nr = NodeReplicated::builder(TestMap::default())
        .replicas(&[NodeId(0), NodeId(0)])
        .log_capacity(32)
        .max_threads(64)
        .build()
        .expect("a valid configuration");
    let clock = Clock::new();
    let barrier = Barrier::new(WORKERS + 1);
    let pace = Pace::new(WORKERS);
    let mut history = Vec::new();
    let churn = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|t| {
                let (nr, clock, barrier, pace) = (&nr, &clock, &barrier, &pace);
                s.spawn(move || {
                    let tkn = nr.register().expect("below the thread limit");
                    barrier.wait();
                    let events = recorded_map_ops(
                        nr,
                        tkn,
                        clock,
                        t,
                        round * 1_000 + t as u64 + 1,
                        KEYS,
                        |i| {
                            if i > 0 {
                                pace.op();
                            }
                            pace.go_on(i, ops, min_changes)
                        },
                    );
                    pace.finish();
                    events
                })
            })
            .collect();
        let controller = {
            let (nr, barrier, pace) = (&nr, &barrier, &pace);
            s.spawn(move || {
                let mut churn = Churn::new(nr, round + 77, 4);
                let mut last = 0;
                barrier.wait();
                while !pace.done() || churn.changes() < min_changes {
                    pace.wait_ops(&mut last, ops_per_change);
                    churn.step(nr, WORKERS);
                    pace.changed(churn.changes());
                }
                churn
            })
        };
        for w in workers {
            history.extend(w.join().expect("a worker panicked"));
        }
        controller.join().expect("the controller panicked")
    });

    // All replicas agree on every key, and each applied exactly the writes.
    let writes = write_count(&history);
    let readers = tokens_on_every_replica(&nr);
    let first: Vec<_> = (0..KEYS)
        .map(|k| nr.execute(MapRead::Get(k), readers[0].1))
        .collect();
    for (id, tkn) in &readers {
        let here: Vec<_> = (0..KEYS)
            .map(|k| nr.execute(MapRead::Get(k), *tkn))
            .collect();
        assert_eq!(here, first, "round {round}: replica {id:?} disagrees");
    }
    for info in nr.replicas() {
        assert_eq!(info.applied, writes, "round {round}: {info:?}");
    }
    (history, churn)
}

#[test]
fn churn_keeps_map_linearizable() {
    let (rounds, ops, min_changes) = if DEBUG {
        (30, 2_000, 32)
    } else {
        (60, 4_000, 32)
    };
    let (changes, checked, victims, events) =
        watchdog("churn + linearizability", LIMIT, move || {
            let mut changes = 0;
            let mut victims = [0usize; VICTIMS.len()];
            let mut events = 0;
            for round in 0..rounds {
                let (history, churn) = churn_round(round, ops, min_changes, 8);
                if let Err(v) = check_map_by_key(&history) {
                    panic!("round {round} ({} replica changes): {v}", churn.changes());
                }
                if round == 0 {
                    // Negative control: a corrupted read must be rejected.
                    negative_control(&history);
                }
                changes += churn.changes();
                events += history.len();
                for (v, n) in victims.iter_mut().zip(churn.by_victim) {
                    *v += n;
                }
            }
            (changes, rounds, victims, events)
        });
    eprintln!(
        "churn + linearizability: {changes} replica changes, {checked} histories \
         ({events} events) checked, removals by victim {:?} = {victims:?}",
        VICTIMS
    );
    assert!(changes >= 300, "{changes} changes");
    assert!(
        victims.iter().all(|&n| n > 0),
        "every victim rule used: {victims:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Exactly-once counters under churn
// ---------------------------------------------------------------------------------------

#[test]
fn churn_counters_exactly_once() {
    let n = if DEBUG { 100_000 } else { 300_000 };
    let changes = counters_under("exactly once under churn", 4, 2, 32, n, 320, |nr, pace| {
        let mut churn = Churn::new(nr, 5, 4);
        let mut last = 0;
        while !pace.done() || churn.changes() < 320 {
            pace.wait_ops(&mut last, 32);
            churn.step(nr, 4);
            pace.changed(churn.changes());
        }
        eprintln!("exactly once under churn: {churn:?}");
        assert!(churn.by_victim.iter().all(|&n| n > 0), "{churn:?}");
    });
    assert!(changes >= 320);
}

// ---------------------------------------------------------------------------------------
// 4. Removing the source of a clone right after the clone
// ---------------------------------------------------------------------------------------

#[test]
fn remove_the_source_right_after_the_clone() {
    let n = if DEBUG { 50_000 } else { 200_000 };
    let changes = watchdog("remove the clone's source", LIMIT, move || {
        let nr = NodeReplicated::builder(TestMap::default())
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(32)
            .build()
            .unwrap();
        let nr = &nr;
        map_workers_under(nr, "remove the clone's source", 3, n, 400, |pace| {
            let mut churn = Churn::new(nr, 3, 4);
            let mut last = 0;
            while !pace.done() || churn.changes() < 400 {
                pace.wait_ops(&mut last, 32);
                let infos = nr.replicas();
                // The source `add_replica` picks: the most advanced (the last on ties,
                // like the library). Positions move, so this is the likely source.
                let source = infos.iter().max_by_key(|r| r.applied).unwrap().id;
                let new = churn.add(nr, 3);
                churn.remove(nr, source, 3);
                assert!(nr.replicas().iter().any(|r| r.id == new));
                pace.changed(churn.changes());
            }
        })
    });
    assert!(changes >= 400);
}
