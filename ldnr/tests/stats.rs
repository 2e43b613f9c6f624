//! Statistics: `NodeReplicated::stats` and the per-replica counters of `replicas()`
//! count exactly what happened (operations across registrations that ended, batches and
//! their operations, entries applied by other replicas' combiners, clone freezes).

use ldnr::{NodeId, NodeReplicated};
use ldnr_testkit::counters::{Counters, Get, Inc};
use ldnr_testkit::{watchdog, LIMIT};

#[test]
fn operations_are_counted_across_registrations_that_ended() {
    watchdog("operations", LIMIT, || {
        let nr = NodeReplicated::builder(Counters(vec![0; 4]))
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        for _ in 0..10 {
            nr.execute_mut(Inc(0), tkn);
        }
        nr.execute(Get(0), tkn);
        nr.deregister(tkn).unwrap();
        std::thread::scope(|s| {
            for t in 0..3 {
                let nr = &nr;
                s.spawn(move || {
                    let tkn = nr.thread_token().unwrap();
                    for _ in 0..5 {
                        nr.execute_mut(Inc(t), tkn);
                    }
                    nr.read(tkn, |c| c.0[t]);
                })
                .join()
                .unwrap();
            }
        });
        // The exited threads' indices are given back by the snapshot.
        assert_eq!(nr.replicas()[0].threads, 0);
        let stats = nr.stats();
        assert_eq!(stats.operations, 11 + 3 * 6);
        let r = &stats.replicas[0];
        assert_eq!(r.appended, 25, "every write appended once: {r:?}");
        assert_eq!(nr.replicas()[0].applied, 25);
        assert!(r.batches >= 1 && r.batches <= 25, "{r:?}");
    });
}

/// One writer on replica A, none on replica B, a small log: B is kept up by A's combiner
/// (cross-combining), so every entry B applied was applied by a helper.
#[test]
fn a_replica_no_thread_drives_is_helped_and_counted() {
    watchdog("helped", LIMIT, || {
        let nr = NodeReplicated::builder(Counters(vec![0; 1]))
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(8)
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        let mine = nr.replica_of(tkn).unwrap();
        for _ in 0..200 {
            nr.execute_mut(Inc(0), tkn);
        }
        let stats = nr.stats().replicas;
        let (a, b): (Vec<_>, Vec<_>) = stats.iter().partition(|r| r.id == mine);
        let (a, b) = (a[0], b[0]);
        assert_eq!((a.batches, a.appended, a.helped), (200, 200, 0), "{a:?}");
        assert_eq!((b.batches, b.appended), (0, 0), "{b:?}");
        assert!(b.helped > 0, "the idle replica was helped: {b:?}");
        let applied = nr.replicas().iter().find(|r| r.id == b.id).unwrap().applied;
        assert_eq!(b.helped, applied, "only helpers applied it: {b:?}");
    });
}

#[test]
fn a_clone_source_counts_its_freeze() {
    watchdog("freezes", LIMIT, || {
        let nr = NodeReplicated::builder(Counters(vec![0; 1]))
            .build()
            .unwrap();
        let source = nr.replicas()[0].id;
        let added = nr.add_replica(NodeId(0)).unwrap();
        let infos = nr.stats().replicas;
        let s = infos.iter().find(|r| r.id == source).unwrap();
        let n = infos.iter().find(|r| r.id == added).unwrap();
        assert_eq!(s.freezes, 1, "{s:?}");
        assert!(s.frozen > std::time::Duration::ZERO, "{s:?}");
        assert_eq!(
            (n.freezes, n.batches, n.appended),
            (0, 0, 0),
            "a new replica starts from zero: {n:?}"
        );
    });
}

/// The operation count never goes backwards while threads register, work and leave (a
/// registration given back moves its count to the total inside one matching change, and
/// `stats` reads between changes).
#[test]
fn the_operation_count_never_goes_backwards() {
    watchdog("monotonic operations", LIMIT, || {
        let nr = NodeReplicated::builder(Counters(vec![0; 4]))
            .build()
            .unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..3 {
                let (nr, done) = (&nr, &done);
                s.spawn(move || {
                    for _ in 0..300 {
                        let tkn = nr.register().unwrap();
                        for _ in 0..20 {
                            nr.execute_mut(Inc(t), tkn);
                        }
                        nr.deregister(tkn).unwrap();
                    }
                    done.store(true, std::sync::atomic::Ordering::Relaxed);
                });
            }
            let mut last = 0;
            let mut looks = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || looks < 100 {
                let now = nr.stats().operations;
                assert!(now >= last, "went back from {last} to {now}");
                last = now;
                looks += 1;
                std::thread::yield_now();
            }
        });
        assert_eq!(nr.stats().operations, 3 * 300 * 20);
    });
}
