//! Loom models of the public API: `NodeReplicated` built, registered with and used inside
//! `loom::model`, so that every atomic and `UnsafeCell` of the library is loom's.
//!
//! Run with
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg ldnr_loom" \
//!     cargo test --release -p ldnr --test loom -- --test-threads=1
//! ```
//!
//! Each model sets its preemption bound in code (`LOOM_MAX_PREEMPTIONS` overrides it for
//! deeper runs by hand), so CI needs no environment variable. `ThreadToken` is `!Send`,
//! so every thread registers itself, inside its own closure.
#![cfg(ldnr_loom)]

mod loom_common;

use ldnr::NodeReplicated;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_common::{assert_serial, build, check, Reg, Write};

/// (i) Two writers on one replica, two operations each: one combines, the other
/// publishes its operation and is served by the combiner or takes over the combiner
/// lock; a context is reused after `DONE`.
///
/// Asserts: the responses (previous values) fit one serial order of the four `Add`s
/// (distinct powers of two, so a lost, duplicated or reordered write shows), each
/// thread's responses grow in program order, and a read after both finished returns the
/// sum. Loom checks every access to the replica, the contexts and the log.
#[test]
fn two_writers_one_replica() {
    check("two_writers_one_replica", Some(4), || {
        let nr = build(1, 2);
        let other = nr.clone();
        let t = thread::spawn(move || {
            let tkn = other.register().unwrap();
            [4, 8].map(|v| (v, other.execute_mut(Write::Add(v), tkn)))
        });
        let tkn = nr.register().unwrap();
        let mine = [1, 2].map(|v| (v, nr.execute_mut(Write::Add(v), tkn)));
        let theirs = t.join().unwrap();
        assert!(mine[0].1 < mine[1].1 && theirs[0].1 < theirs[1].1);
        assert_serial(mine.into_iter().chain(theirs).collect());
        assert_eq!(nr.execute((), tkn), 15);
    });
}

/// Two writers on two replicas: each thread adds on its own replica, so the log
/// interleaves the batches of two combiners and each replica applies the other's entry.
/// Each thread then raises its "done" flag, waits for the other's and reads.
///
/// Asserts: the responses fit one serial order, and each thread reads the sum on its own
/// replica once both writes completed.
#[test]
fn two_writers_two_replicas() {
    check("two_writers_two_replicas", Some(4), || {
        let nr = build(2, 2);
        let flags = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let run = |nr: &NodeReplicated<Reg>, flags: &[AtomicBool; 2], me: usize| {
            let tkn = nr.register().unwrap();
            let add = 1 << me;
            let r = nr.execute_mut(Write::Add(add), tkn);
            flags[me].store(true, Ordering::Release);
            while !flags[1 - me].load(Ordering::Acquire) {
                thread::yield_now();
            }
            assert_eq!(
                nr.execute((), tkn),
                3,
                "thread {me} misses a completed write"
            );
            (add, r)
        };
        let (other, other_flags) = (nr.clone(), flags.clone());
        let t = thread::spawn(move || run(&other, &other_flags, 1));
        let mine = run(&nr, &flags, 0);
        let theirs = t.join().unwrap();
        assert_serial(vec![mine, theirs]);
        assert!(nr.replicas().iter().all(|r| r.threads == 1));
    });
}

/// (ii) Two replicas: a writer on one, a reader on the other. The reader reads once
/// while the write may be in flight, then waits for the writer's "done" flag (set after
/// `execute_mut` returned) and reads again.
///
/// Asserts: the first read returns the old or the new value; the read that starts after
/// the write completed returns the new value (reads see completed writes, through the
/// `ctail` rule, on another replica than the one that combined); the two threads were
/// matched to different replicas.
#[test]
fn reader_on_other_replica_sees_completed_write() {
    // Exhaustive: about 700 executions.
    check("reader_on_other_replica_sees_completed_write", None, || {
        let nr = build(2, 2);
        let done = Arc::new(AtomicBool::new(false));
        let (w, d) = (nr.clone(), done.clone());
        let writer = thread::spawn(move || {
            let tkn = w.register().unwrap();
            assert_eq!(w.execute_mut(Write::Set(5), tkn), 0);
            d.store(true, Ordering::Release);
        });
        let tkn = nr.register().unwrap();
        let early = nr.execute((), tkn);
        assert!(
            early == 0 || early == 5,
            "read a value never written: {early}"
        );
        while !done.load(Ordering::Acquire) {
            thread::yield_now();
        }
        assert_eq!(nr.execute((), tkn), 5, "a completed write is not visible");
        writer.join().unwrap();
        assert!(nr.replicas().iter().all(|r| r.threads == 1));
    });
}

/// (iii) Wrap-around with an idle replica: capacity 4, two replicas, one thread writes
/// six times (more than the capacity) while the other replica's only thread registers
/// and then waits, applying nothing. The writer can only reserve past index 4 after its
/// combiner applied the log to the idle replica (cross-combining).
///
/// Asserts: the writer terminates (loom reports a deadlock or a livelock otherwise) and
/// gets the previous value as each response; the idle replica's thread then reads the
/// last value; both replicas end at position 6.
#[test]
fn writer_helps_idle_replica_across_wrap() {
    const WRITES: u64 = 6;
    // Exhaustive: about 80 executions (the writer runs alone but for the other thread's
    // registration and flag polling).
    check("writer_helps_idle_replica_across_wrap", None, || {
        let nr = build(2, 2);
        let done = Arc::new(AtomicBool::new(false));
        let (w, d) = (nr.clone(), done.clone());
        let writer = thread::spawn(move || {
            let tkn = w.register().unwrap();
            for v in 1..=WRITES {
                assert_eq!(w.execute_mut(Write::Set(v), tkn), v - 1);
            }
            d.store(true, Ordering::Release);
        });
        let tkn = nr.register().unwrap();
        while !done.load(Ordering::Acquire) {
            thread::yield_now();
        }
        // The writer reserved index 5 only once garbage collection passed index 1, so
        // the idle replica has been helped to at least position 2.
        let lowest = nr.replicas().iter().map(|r| r.applied).min().unwrap();
        assert!(lowest >= WRITES as usize - 4, "idle replica at {lowest}");
        assert_eq!(nr.execute((), tkn), WRITES);
        writer.join().unwrap();
        let infos = nr.replicas();
        assert_eq!(infos.len(), 2);
        assert!(infos
            .iter()
            .all(|r| r.threads == 1 && r.applied == WRITES as usize));
    });
}

/// A variant of (iii) where the other replica is not idle: its thread reads once while
/// the writer writes five times (past the capacity), so the reader's catch-up on its own
/// replica races with the writer's cross-combining of that replica for its combiner
/// lock; after the writer's "done" flag it reads again.
///
/// Asserts: the writer terminates; the concurrent read returns a value that was written
/// (0..=5); the read after the flag returns the last value.
#[test]
fn writer_and_reader_of_lagging_replica_across_wrap() {
    const WRITES: u64 = 5;
    check(
        "writer_and_reader_of_lagging_replica_across_wrap",
        Some(3),
        || {
            let nr = build(2, 2);
            let done = Arc::new(AtomicBool::new(false));
            let (w, d) = (nr.clone(), done.clone());
            let writer = thread::spawn(move || {
                let tkn = w.register().unwrap();
                for v in 1..=WRITES {
                    assert_eq!(w.execute_mut(Write::Set(v), tkn), v - 1);
                }
                d.store(true, Ordering::Release);
            });
            let tkn = nr.register().unwrap();
            let during = nr.execute((), tkn);
            assert!(during <= WRITES);
            while !done.load(Ordering::Acquire) {
                thread::yield_now();
            }
            assert_eq!(nr.execute((), tkn), WRITES);
            writer.join().unwrap();
        },
    );
}
