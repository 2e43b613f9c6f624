//! While `add_replica` clones a replica, only that replica is frozen, and even its own
//! threads keep completing operations (served by another replica meanwhile), and new
//! threads can register.
//!
//! The clone is held open by a gate in the structure's `Clone`, so the test does not
//! depend on timing: if any thread blocked on the frozen replica, the test would never
//! reach the point where it opens the gate, and the watchdog would fail it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ldnr::{Dispatch, NodeId, NodeReplicated};
use ldnr_testkit::{watchdog, LIMIT};

/// A register whose clone can be held open by the test.
#[derive(Debug)]
struct Gated {
    value: u64,
    gate: Arc<Gate>,
}

#[derive(Debug, Default)]
struct Gate {
    /// When set, the next clone announces itself and waits for `open`.
    armed: AtomicBool,
    cloning: AtomicBool,
    open: AtomicBool,
}

impl Clone for Gated {
    fn clone(&self) -> Self {
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.cloning.store(true, Ordering::SeqCst);
            while !self.gate.open.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        }
        Gated {
            value: self.value,
            gate: self.gate.clone(),
        }
    }
}

impl Dispatch for Gated {
    type ReadOperation = ();
    type WriteOperation = u64;
    type Response = u64;

    fn dispatch(&self, _: ()) -> u64 {
        self.value
    }

    fn dispatch_mut(&mut self, v: u64) -> u64 {
        std::mem::replace(&mut self.value, v)
    }
}

#[test]
fn threads_of_the_clone_source_keep_working_during_the_clone() {
    watchdog("operations during a held-open clone", LIMIT, || {
        let gate = Arc::new(Gate::default());
        let nr = Arc::new(
            NodeReplicated::builder(Gated {
                value: 0,
                gate: gate.clone(),
            })
            .replicas(&[NodeId(0), NodeId(0)])
            .build()
            .expect("valid configuration"),
        );
        // Two threads, one per replica; both write, so both replicas are equally advanced
        // and either may be the clone source.
        // Each worker counts the operations it completes after it saw the clone start;
        // after 1,000 of them it only reads, so the writes made during the clone stay far
        // below the log capacity (a frozen source holds the log's garbage collection).
        let reached: Arc<[AtomicBool; 2]> =
            Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let started: Arc<[AtomicBool; 2]> =
            Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (nr, gate, reached, started, stop) = (
                    nr.clone(),
                    gate.clone(),
                    reached.clone(),
                    started.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    let tkn = nr.register().expect("below the limit");
                    let mut during_clone = 0;
                    let mut i = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        i += 1;
                        if during_clone < 1_000 {
                            nr.execute_mut(w * 1_000_000 + i, tkn);
                        }
                        nr.execute((), tkn);
                        started[w as usize].store(true, Ordering::SeqCst);
                        if gate.cloning.load(Ordering::SeqCst) {
                            during_clone += 1;
                            if during_clone == 1_000 {
                                reached[w as usize].store(true, Ordering::SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        // Both workers registered and running before the clone starts.
        while !started.iter().all(|s| s.load(Ordering::SeqCst)) {
            std::thread::yield_now();
        }
        gate.armed.store(true, Ordering::SeqCst);
        let adder = {
            let nr = nr.clone();
            std::thread::spawn(move || nr.add_replica(NodeId(0)).expect("room"))
        };
        while !gate.cloning.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // The clone is open now and stays open until we say so. Both workers, including
        // the one whose replica is the frozen source, must keep completing operations.
        while !reached.iter().all(|r| r.load(Ordering::SeqCst)) {
            std::thread::yield_now();
        }
        // Registration does not wait for the clone either.
        let late = nr.register().expect("below the limit");
        nr.execute((), late);
        let before_open = nr.replicas();
        assert_eq!(
            before_open.len(),
            2,
            "the new replica is not visible before it is ready"
        );
        gate.open.store(true, Ordering::SeqCst);
        let id = adder.join().expect("add_replica finished");
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().expect("worker finished");
        }
        // Every replica, the new one included, holds the last write.
        let infos = nr.replicas();
        assert!(infos.iter().any(|r| r.id == id));
        let tokens: Vec<_> = (0..3)
            .map(|_| nr.register().expect("below the limit"))
            .collect();
        let values: Vec<u64> = tokens.iter().map(|&t| nr.execute((), t)).collect();
        assert!(
            values.windows(2).all(|v| v[0] == v[1]),
            "replicas agree: {values:?}"
        );
    });
}
