//! Write operations are dropped exactly once, and the log does not hoard them.
//!
//! The write operation owns heap data and counts its live instances in a counter shared
//! through an `Arc` (so tests running in parallel do not disturb each other): creating
//! or cloning one adds one, dropping one subtracts one. Each replica keeps its last
//! applied operation, so dropping the replicas is checked too. After many writes that
//! wrap the log, dropping the `NodeReplicated` must bring the count to exactly zero (a
//! leak leaves it positive, a double drop drives it below zero, which is also caught
//! the moment it happens). While running, the number of live operations must stay
//! within what the log, the threads and the replicas can hold.

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use ldnr::{Dispatch, NodeId, NodeReplicated};
use ldnr_testkit::{watchdog, LIMIT};

/// Live-instance bookkeeping for one test.
#[derive(Debug, Default)]
struct Live {
    now: AtomicIsize,
    peak: AtomicIsize,
    created: AtomicUsize,
    underflow: AtomicBool,
}

impl Live {
    fn born(&self) {
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(n, SeqCst);
        self.created.fetch_add(1, SeqCst);
    }

    fn died(&self) {
        if self.now.fetch_sub(1, SeqCst) <= 0 {
            self.underflow.store(true, SeqCst);
        }
    }

    fn now(&self) -> isize {
        self.now.load(SeqCst)
    }

    fn assert_no_underflow(&self) {
        assert!(
            !self.underflow.load(SeqCst),
            "more drops than instances: an operation was dropped twice"
        );
    }
}

/// A write operation that owns heap data and counts its instances.
#[derive(Debug)]
struct Payload {
    live: Arc<Live>,
    data: Box<[u64]>,
}

impl Payload {
    fn new(live: &Arc<Live>, v: u64) -> Self {
        live.born();
        Payload {
            live: Arc::clone(live),
            data: vec![v, v.wrapping_mul(3), 1].into_boxed_slice(),
        }
    }
}

impl Clone for Payload {
    fn clone(&self) -> Self {
        self.live.born();
        Payload {
            live: Arc::clone(&self.live),
            data: self.data.clone(),
        }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.live.died();
    }
}

/// Sums what it is given and keeps the last operation it applied.
#[derive(Debug, Clone, Default)]
struct Keeper {
    sum: u64,
    applied: u64,
    last: Option<Payload>,
}

impl Dispatch for Keeper {
    type ReadOperation = ();
    type WriteOperation = Payload;
    type Response = (u64, u64);

    fn dispatch(&self, _: ()) -> (u64, u64) {
        (self.applied, self.sum)
    }

    fn dispatch_mut(&mut self, op: Payload) -> (u64, u64) {
        self.sum = self.sum.wrapping_add(op.data.iter().sum::<u64>());
        self.applied += 1;
        self.last = Some(op);
        (self.applied, self.sum)
    }
}

fn run(replicas: usize, log: usize, threads: usize, writes: u64) {
    let what = format!("drops: {replicas} replicas, log {log}, {threads} threads");
    watchdog(&what.clone(), LIMIT, move || {
        let live = Arc::new(Live::default());
        let nr = NodeReplicated::builder(Keeper::default())
            .replicas(&vec![NodeId(0); replicas])
            .log_capacity(log)
            .build()
            .expect("a valid configuration");
        let barrier = Barrier::new(threads);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (nr, barrier, live) = (&nr, &barrier, &live);
                s.spawn(move || {
                    let tkn = nr.register().expect("below the thread limit");
                    barrier.wait();
                    let mut last = 0;
                    for i in 0..writes {
                        let (applied, _) = nr.execute_mut(Payload::new(live, i), tkn);
                        assert!(applied > last, "thread {t}: applied count went back");
                        last = applied;
                        if i % 32 == 31 {
                            live.assert_no_underflow();
                            // Not synchronization: lets threads interleave on few cores.
                            std::thread::yield_now();
                        }
                    }
                });
            }
        });
        live.assert_no_underflow();

        let total = writes * threads as u64;
        assert!(live.created.load(SeqCst) as u64 >= total);
        // Bound while running: the log holds at most `log` operations; each thread has
        // at most one that is not in the log yet; each replica holds at most its kept
        // `last` plus the clone it is applying.
        let bound = (log + threads + 2 * replicas) as isize;
        let peak = live.peak.load(SeqCst);
        assert!(
            peak <= bound,
            "{what}: {peak} operations were alive at once; at most {bound} can be held"
        );
        // Quiescent: only the log's entries and each replica's kept operation remain.
        let idle = live.now();
        assert!(
            idle <= (log + replicas) as isize && idle >= replicas as isize,
            "{what}: {idle} operations alive after the workers finished (log {log}, {replicas} replicas)"
        );

        // Every replica applied everything, with the same result.
        let tkn = nr.register().expect("below the thread limit");
        let (applied, _) = nr.execute((), tkn);
        assert_eq!(applied, total);

        drop(nr);
        live.assert_no_underflow();
        assert_eq!(
            live.now(),
            0,
            "{what}: operations still alive after the NodeReplicated was dropped (a leak)"
        );
    });
}

#[test]
fn one_replica_wraps_many_times() {
    run(1, 4, 3, 10_000);
}

#[test]
fn two_replicas_wrap_many_times() {
    run(2, 8, 4, 10_000);
}

#[test]
fn three_replicas_wrap_many_times() {
    run(3, 16, 4, 10_000);
}

#[test]
fn three_replicas_larger_log() {
    run(3, 256, 3, 10_000);
}

/// A log that never filled holds fewer operations than entries: dropping it must drop
/// only the written entries (dropping a never-written entry would underflow or crash).
#[test]
fn partly_filled_log_drops_only_written_entries() {
    watchdog("drops: partly filled log", LIMIT, || {
        for writes in [0u64, 1, 5, 31] {
            let live = Arc::new(Live::default());
            let nr = NodeReplicated::builder(Keeper::default())
                .replicas(&[NodeId(0), NodeId(0)])
                .log_capacity(64)
                .build()
                .expect("a valid configuration");
            let tkn = nr.register().expect("below the thread limit");
            for i in 0..writes {
                nr.execute_mut(Payload::new(&live, i), tkn);
            }
            live.assert_no_underflow();
            drop(nr);
            live.assert_no_underflow();
            assert_eq!(live.now(), 0, "{writes} writes: a leak after drop");
            assert!(live.created.load(SeqCst) as u64 >= writes);
        }
    });
}

/// Dropping an instance whose second replica never served a thread: that replica lags
/// (it was only ever helped by cross-combining), and its state must still be dropped.
#[test]
fn lagging_replica_is_dropped_too() {
    watchdog("drops: lagging replica", LIMIT, || {
        let live = Arc::new(Live::default());
        let nr = NodeReplicated::builder(Keeper::default())
            .replicas(&[NodeId(0), NodeId(0), NodeId(0)])
            .log_capacity(8)
            .build()
            .expect("a valid configuration");
        let tkn = nr.register().expect("below the thread limit");
        for i in 0..500 {
            nr.execute_mut(Payload::new(&live, i), tkn);
        }
        live.assert_no_underflow();
        assert!(live.now() <= 8 + 3, "{} alive", live.now());
        drop(nr);
        live.assert_no_underflow();
        assert_eq!(live.now(), 0, "a leak after drop");
    });
}
