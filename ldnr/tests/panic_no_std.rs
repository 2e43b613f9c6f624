//! Without the `std` feature panics are not caught: a panic in `dispatch_mut` unwinds out
//! of the thread that was applying the log, and the instance is poisoned — every later
//! operation panics with a message saying so, reconfiguration returns `Error::Poisoned`,
//! and no thread hangs. Run with `cargo test -p ldnr --no-default-features --test
//! panic_no_std` (with `std`, panics are isolated instead: `tests/panics.rs`).
#![cfg(not(feature = "std"))]

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use ldnr::{Dispatch, Error, NodeId, NodeReplicated};

#[derive(Clone, Default)]
struct Cell(u64);

impl Dispatch for Cell {
    type ReadOperation = ();
    type WriteOperation = Option<u64>;
    type Response = u64;

    fn dispatch(&self, _: ()) -> u64 {
        self.0
    }

    /// `None` panics.
    fn dispatch_mut(&mut self, v: Option<u64>) -> u64 {
        let v = v.expect("ldnr-test: a panicking operation");
        core::mem::replace(&mut self.0, v)
    }
}

fn message(f: impl FnOnce()) -> String {
    let p = panic::catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// Runs `f` on a thread; fails with a message if it does not finish in time.
fn bounded(what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = h.join() {
                panic::resume_unwind(p)
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("watchdog: {what} hung"),
    }
}

#[test]
fn a_panic_poisons_the_instance() {
    bounded("single thread", || {
        let nr = NodeReplicated::builder(Cell(0))
            .replicas(&[NodeId(0), NodeId(0)])
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        assert_eq!(nr.execute_mut(Some(1), tkn), 0);
        let first = message(|| {
            nr.execute_mut(None, tkn);
        });
        assert!(first.contains("a panicking operation"), "{first}");
        for _ in 0..3 {
            let m = message(|| {
                nr.execute_mut(Some(2), tkn);
            });
            assert!(m.contains("poisoned"), "{m}");
            let m = message(|| {
                nr.execute((), tkn);
            });
            assert!(m.contains("poisoned"), "{m}");
        }
        assert_eq!(nr.add_replica(NodeId(0)), Err(Error::Poisoned));
    });
}

/// A thread whose operation may sit in the batch of a combiner that panics does not
/// wait forever: it completes, or panics because the instance is poisoned.
#[test]
fn waiting_threads_do_not_hang() {
    bounded("two threads", || {
        let nr = Arc::new(NodeReplicated::builder(Cell(0)).build().unwrap());
        let other = Arc::clone(&nr);
        let waiter = std::thread::spawn(move || {
            let tkn = other.register().unwrap();
            // Ends only by a panic: the instance is poisoned sooner or later.
            panic::catch_unwind(AssertUnwindSafe(|| {
                let mut i = 0;
                loop {
                    other.execute_mut(Some(i), tkn);
                    i += 1;
                }
            }))
        });
        let tkn = nr.register().unwrap();
        for i in 0..1_000 {
            nr.execute_mut(Some(i), tkn);
        }
        let m = message(|| {
            nr.execute_mut(None, tkn);
        });
        assert!(
            m.contains("a panicking operation") || m.contains("poisoned"),
            "{m}"
        );
        match waiter.join().unwrap() {
            Ok(()) => unreachable!("the loop ends only by a panic"),
            Err(p) => {
                let m = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                assert!(
                    m.contains("poisoned") || m.contains("a panicking operation"),
                    "{m}"
                );
            }
        }
    });
}

/// A write operation whose original (the copy in the log) panics when dropped.
#[derive(Debug)]
struct Bomb {
    armed: bool,
    drops: Arc<std::sync::atomic::AtomicUsize>,
}

impl Clone for Bomb {
    fn clone(&self) -> Self {
        Bomb {
            armed: false,
            drops: self.drops.clone(),
        }
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.armed {
            self.drops.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            panic!("ldnr-test: a panicking drop");
        }
    }
}

#[derive(Clone, Default)]
struct Sink(u64);

impl Dispatch for Sink {
    type ReadOperation = ();
    type WriteOperation = Bomb;
    type Response = u64;

    fn dispatch(&self, _: ()) -> u64 {
        self.0
    }

    fn dispatch_mut(&mut self, _: Bomb) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// Without `std` a panicking `Drop` of an operation the log displaces is not caught
/// either: it unwinds from the call that was combining (after its batch completed), the
/// instance is poisoned, and the operation was dropped once. With one replica the log is
/// skipped (L9) and `dispatch_mut` drops the operation: the panic unwinds from its own
/// call, with the same result.
#[test]
fn a_panicking_drop_poisons_the_instance() {
    for replicas in [2, 1] {
        bounded("drop panic", move || drop_panic_poisons(replicas));
    }
}

fn drop_panic_poisons(replicas: usize) {
    let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let nr = NodeReplicated::builder(Sink(0))
        .replicas(&vec![ldnr::NodeId(0); replicas])
        .log_capacity(4)
        .build()
        .unwrap();
    let tkn = nr.register().unwrap();
    let op = |armed| Bomb {
        armed,
        drops: drops.clone(),
    };
    if replicas > 1 {
        assert_eq!(nr.execute_mut(op(true), tkn), 1);
        for k in 2..=4 {
            assert_eq!(nr.execute_mut(op(false), tkn), k);
        }
    }
    let m = message(|| {
        nr.execute_mut(op(replicas == 1), tkn);
    });
    assert!(m.contains("a panicking drop"), "{replicas} replicas: {m}");
    let m = message(|| {
        nr.execute((), tkn);
    });
    assert!(m.contains("poisoned"), "{m}");
    drop(nr);
    assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 1);
}
