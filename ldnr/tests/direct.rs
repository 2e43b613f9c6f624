//! Direct mode (log invariant L9): while a replica is the only one, its combiners apply
//! writes straight to it. Readers never see a write half-applied, also while a replica is
//! added and removed around them, and the statistics count every write once, one whose
//! `dispatch_mut` panicked included.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use ldnr::{Dispatch, NodeId, NodeReplicated};
use ldnr_testkit::{panic_message, quiet_panics, watchdog, LIMIT};

/// Two counters a write raises one after the other, with work in between: a read that
/// overlapped a write would see them differ.
#[derive(Debug, Clone, Default)]
struct Pair(u64, u64);

impl Dispatch for Pair {
    type ReadOperation = ();
    type WriteOperation = u64;
    type Response = u64;

    fn dispatch(&self, (): ()) -> u64 {
        assert_eq!(self.0, self.1, "a read saw a write half-applied");
        self.0
    }

    fn dispatch_mut(&mut self, spin: u64) -> u64 {
        self.0 += 1;
        for _ in 0..spin {
            std::hint::black_box(&mut self.0);
            std::hint::spin_loop();
        }
        self.1 += 1;
        self.0 - 1
    }
}

/// Two writers and two readers on one replica (so writes are direct: alone, or batched
/// when both writers meet), while the main thread adds a second replica and removes one
/// again every 500 writes (paced by the writers' progress, not by time).
#[test]
fn readers_never_see_a_direct_write_half_applied() {
    const WRITES: usize = 20_000;
    watchdog("torn reads", LIMIT, || {
        let nr = Arc::new(
            NodeReplicated::builder(Pair::default())
                .log_capacity(8)
                .build()
                .unwrap(),
        );
        let (done, writes) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let mut threads = Vec::new();
        for w in 0..2 {
            let (nr, writes) = (nr.clone(), writes.clone());
            threads.push(std::thread::spawn(move || {
                let tkn = nr.register().unwrap();
                let mut seen = Vec::with_capacity(WRITES);
                for _ in 0..WRITES {
                    seen.push(nr.execute_mut(20 + w, tkn));
                    writes.fetch_add(1, SeqCst);
                }
                seen
            }));
        }
        for _ in 0..2 {
            let (nr, done) = (nr.clone(), done.clone());
            threads.push(std::thread::spawn(move || {
                let tkn = nr.register().unwrap();
                let mut last = 0;
                while !done.load(SeqCst) {
                    let now = nr.execute((), tkn);
                    assert!(now >= last, "a read went back in time: {now} after {last}");
                    assert!(
                        nr.read(tkn, |p| p.0 == p.1),
                        "a closure read saw a torn write"
                    );
                    last = now;
                }
                Vec::new()
            }));
        }
        let mut next = 500;
        while writes.load(SeqCst) < 2 * WRITES {
            if writes.load(SeqCst) >= next {
                next += 500;
                match nr.replicas().as_slice() {
                    [_] => drop(nr.add_replica(NodeId(0)).unwrap()),
                    infos => nr
                        .remove_replica(infos[next / 500 % infos.len()].id)
                        .unwrap(),
                }
            }
            std::thread::yield_now();
        }
        done.store(true, SeqCst);
        let mut places: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        places.sort_unstable();
        assert!(
            places.iter().copied().eq(0..2 * WRITES as u64),
            "each write once, in one order"
        );
        let tkn = nr.register().unwrap();
        assert_eq!(nr.execute((), tkn), 2 * WRITES as u64);
        assert!(
            nr.replicas().iter().all(|r| r.applied == 2 * WRITES),
            "{:?}",
            nr.replicas()
        );
    });
}

/// A counter whose write panics on request, after raising the count.
#[derive(Debug, Clone, Default)]
struct Count(u64);

const TAG: &str = "ldnr-test-direct:";

impl Dispatch for Count {
    type ReadOperation = ();
    type WriteOperation = bool;
    type Response = u64;

    fn dispatch(&self, (): ()) -> u64 {
        self.0
    }

    fn dispatch_mut(&mut self, panic: bool) -> u64 {
        self.0 += 1;
        assert!(!panic, "{TAG} a write panics");
        self.0
    }
}

/// One replica, one thread: a write whose `dispatch_mut` panics reaches its caller, keeps
/// its effect, and is counted like any other, as it is with two replicas.
#[test]
fn a_panicking_direct_write_is_counted_once() {
    quiet_panics(&[TAG]);
    for replicas in [1, 2] {
        watchdog("counted", LIMIT, move || {
            let nr = NodeReplicated::builder(Count::default())
                .replicas(&vec![NodeId(0); replicas])
                .build()
                .unwrap();
            let tkn = nr.register().unwrap();
            for k in 0..5 {
                if k == 2 {
                    let m = panic_message(|| nr.execute_mut(true, tkn));
                    assert!(m.contains(TAG), "{m}");
                } else {
                    nr.execute_mut(false, tkn);
                }
            }
            assert_eq!(nr.execute((), tkn), 5, "the panicked write kept its effect");
            let mine = nr.replica_of(tkn).unwrap();
            let info = nr.replicas().into_iter().find(|r| r.id == mine).unwrap();
            assert_eq!(info.applied, 5, "{replicas} replicas: {info:?}");
            let stats = nr.stats();
            let r = stats.replicas.iter().find(|r| r.id == mine).unwrap();
            assert_eq!(r.appended, 5, "{replicas} replicas: {r:?}");
        });
    }
}
