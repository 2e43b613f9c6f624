//! A log of a few entries: adding replicas while it wraps, and adding and removing
//! replicas next to idle ones that hold garbage collection back.

use std::sync::{mpsc, Barrier};

use ldnr::{NodeId, NodeReplicated};
use ldnr_testkit::churn::{map_workers_under, Churn, Pace};
use ldnr_testkit::counters::{Counters, Get, Inc};
use ldnr_testkit::map::TestMap;
use ldnr_testkit::replicas::{ids, thread_sum, tokens_on_every_replica};
use ldnr_testkit::{watchdog, LIMIT};

use crate::DEBUG;

// ---------------------------------------------------------------------------------------
// 5. Adding while a tiny log wraps
// ---------------------------------------------------------------------------------------

fn add_while_the_log_wraps(log: usize) {
    let n = if DEBUG { 20_000 } else { 100_000 };
    let what = format!("add while a log of {log} wraps");
    let adds = watchdog(&what.clone(), LIMIT, move || {
        let nr = NodeReplicated::builder(TestMap::default())
            .replicas(&[NodeId(0)])
            .log_capacity(log)
            .build()
            .unwrap();
        let nr = &nr;
        map_workers_under(nr, &what, 2, n, 200, |pace| {
            let mut churn = Churn::new(nr, log as u64, 6);
            let mut last = 0;
            while !pace.done() || churn.adds < 200 {
                pace.wait_ops(&mut last, 32);
                if nr.replicas().len() == 6 {
                    // Keep the set bounded: drop the oldest, so that the replicas left
                    // are (mostly) ones added while the log wrapped.
                    let oldest = churn.order[0];
                    churn.remove(nr, oldest, 2);
                }
                churn.add(nr, 2);
                pace.changed(churn.adds);
            }
        })
    });
    assert!(adds >= 200);
}

#[test]
fn add_while_a_log_of_4_wraps() {
    add_while_the_log_wraps(4);
}

#[test]
fn add_while_a_log_of_8_wraps() {
    add_while_the_log_wraps(8);
}

// ---------------------------------------------------------------------------------------
// 6. Tiny log and idle replicas
// ---------------------------------------------------------------------------------------

/// What the idle thread is told to do.
enum Idle {
    /// Read every counter and increment its own; reply with what it read.
    Work,
    Stop,
}

#[test]
fn tiny_log_idle_replicas_add_and_remove() {
    watchdog("tiny log, idle replicas", LIMIT, || {
        const CAP: usize = 4;
        let nr = NodeReplicated::builder(Counters(vec![0; 2]))
            .replicas(&[NodeId(0), NodeId(0), NodeId(0)])
            .log_capacity(CAP)
            .build()
            .unwrap();
        let (to_idle, commands) = mpsc::channel::<Idle>();
        let (replies, from_idle) = mpsc::channel::<Vec<u64>>();
        std::thread::scope(|s| {
            let active = nr.register().unwrap();
            let idle = {
                let nr = &nr;
                s.spawn(move || {
                    let tkn = nr.register().unwrap();
                    replies.send(vec![]).unwrap();
                    while let Ok(Idle::Work) = commands.recv() {
                        let seen = vec![nr.execute(Get(0), tkn), nr.execute(Get(1), tkn)];
                        let mine = nr.execute_mut(Inc(1), tkn);
                        assert_eq!(mine, seen[1] + 1);
                        replies.send(seen).unwrap();
                    }
                })
            };
            from_idle.recv().unwrap();
            let infos = nr.replicas();
            let threads: Vec<_> = infos.iter().map(|r| r.threads).collect();
            assert_eq!(threads, vec![1, 1, 0], "{infos:?}");
            let (r_active, r_idle, r_empty) = (infos[0].id, infos[1].id, infos[2].id);

            let mut writes = 0u64;
            let mut write = |k: u64| {
                for _ in 0..k {
                    writes += 1;
                    assert_eq!(nr.execute_mut(Inc(0), active), writes);
                }
                writes
            };
            // The log laps 25 times; both idle replicas are carried along by the writer.
            let total = write(100) as usize;
            for info in nr.replicas() {
                assert!(
                    info.applied + CAP >= total,
                    "GC never passes a replica: {info:?}"
                );
            }

            // Remove the replica whose thread is idle: that thread moves (to the replica
            // without threads) and keeps working.
            nr.remove_replica(r_idle).unwrap();
            let infos = nr.replicas();
            assert_eq!(ids(&infos), vec![r_active, r_empty]);
            assert_eq!(
                infos.iter().map(|r| r.threads).collect::<Vec<_>>(),
                vec![1, 1]
            );

            // Add into the freed shell, next to the idle replica; write on.
            let added = nr.add_replica(NodeId(0)).unwrap();
            assert_eq!(ids(&nr.replicas()), vec![r_active, added, r_empty]);
            let total = write(100) as usize;
            for info in nr.replicas() {
                assert!(info.applied + CAP >= total, "{info:?}");
            }
            to_idle.send(Idle::Work).unwrap();
            assert_eq!(from_idle.recv().unwrap(), vec![200, 0]);

            // Remove the only active replica: every replica left is idle and lagging.
            // Then add one: its source is a lagging idle replica.
            nr.remove_replica(r_active).unwrap();
            let infos = nr.replicas();
            assert_eq!(ids(&infos), vec![added, r_empty]);
            assert_eq!(thread_sum(&infos), 2);
            let on_top = nr.add_replica(NodeId(0)).unwrap();
            assert_eq!(ids(&nr.replicas()), vec![on_top, added, r_empty]);
            write(100);
            to_idle.send(Idle::Work).unwrap();
            assert_eq!(from_idle.recv().unwrap(), vec![300, 1]);
            to_idle.send(Idle::Stop).unwrap();
            idle.join().unwrap();

            // Every replica holds the same counts.
            for (id, tkn) in tokens_on_every_replica(&nr) {
                assert_eq!(nr.execute(Get(0), tkn), 300, "replica {id:?}");
                assert_eq!(nr.execute(Get(1), tkn), 2, "replica {id:?}");
            }
            for info in nr.replicas() {
                assert_eq!(info.applied, 302, "{info:?}");
            }
        });
    });
}

#[test]
fn tiny_log_idle_replicas_change_under_a_writer() {
    let n = if DEBUG { 50_000 } else { 200_000 };
    watchdog(
        "tiny log, idle replicas, concurrent writer",
        LIMIT,
        move || {
            let nr = NodeReplicated::builder(Counters(vec![0; 2]))
                .replicas(&[NodeId(0), NodeId(0)])
                .log_capacity(4)
                .build()
                .unwrap();
            // An idle participant (this thread, which is also the controller): registered
            // on the first replica, it operates only at the end.
            let idle = nr.register().unwrap();
            let barrier = Barrier::new(2);
            let pace = Pace::new(1);
            std::thread::scope(|s| {
                let (nr, barrier, pace) = (&nr, &barrier, &pace);
                let writer = s.spawn(move || {
                    let tkn = nr.register().unwrap();
                    barrier.wait();
                    let mut i = 0;
                    while pace.go_on(i as usize, n, 100) {
                        i += 1;
                        assert_eq!(nr.execute_mut(Inc(1), tkn), i);
                        pace.op();
                        if i % 64 == 0 {
                            // Not synchronization: lets the controller in on few cores.
                            std::thread::yield_now();
                        }
                    }
                    pace.finish();
                    i
                });
                barrier.wait();
                let infos = nr.replicas();
                assert_eq!(
                    infos.iter().map(|r| r.threads).collect::<Vec<_>>(),
                    vec![1, 1]
                );
                // The writer's replica stays; every other one is idle (no thread of it
                // operates), including the one the idle participant is matched to.
                let busy = infos[1].id;
                let mut churn = Churn::new(nr, 21, 4);
                // First the idle participant's replica goes: it moves to the new, emptier one.
                churn.add(nr, 2);
                churn.remove(nr, infos[0].id, 2);
                let mut removed_with_threads = 1;
                let mut last = 0;
                while !pace.done() || churn.changes() < 100 {
                    pace.wait_ops(&mut last, 64);
                    let infos = nr.replicas();
                    let idle: Vec<_> = infos.iter().filter(|r| r.id != busy).collect();
                    if infos.len() < 4 && (idle.is_empty() || churn.rng.below(2) == 0) {
                        churn.add(nr, 2);
                    } else {
                        let victim = idle[churn.rng.below(idle.len() as u64) as usize];
                        removed_with_threads += victim.threads;
                        churn.remove(nr, victim.id, 2);
                    }
                    pace.changed(churn.changes());
                }
                let writes = writer.join().unwrap();
                assert_eq!(nr.execute(Get(1), idle), writes);
                assert_eq!(nr.execute_mut(Inc(0), idle), 1);
                for (id, tkn) in tokens_on_every_replica(nr) {
                    assert_eq!(nr.execute(Get(1), tkn), writes, "replica {id:?}");
                    assert_eq!(nr.execute(Get(0), tkn), 1, "replica {id:?}");
                }
                eprintln!(
                "idle replicas under a writer: {} changes, {writes} writes, {removed_with_threads} \
                 removals of the idle participant's replica",
                churn.changes()
            );
                assert!(removed_with_threads > 0, "the idle participant was moved");
            });
        },
    );
}
