//! Loom models of the reader sets (rwlock R2) through the public API: threads that are
//! moved to another replica by a removal, thread indices given back and handed out
//! again, and the last thread leaving (which lowers the writers' scan mark, dispatcher
//! D1), while writers apply on, or a removal empties, the replica they read. Every
//! atomic and `UnsafeCell` of the library is loom's, so a read that overlaps a write of
//! the same replica (a writer that did not wait for a reader missing from its
//! replica's reader set) is a loom failure.
//!
//! Run with
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg ldnr_loom" \
//!     cargo test --release -p ldnr --test loom_readers -- --test-threads=1 --nocapture
//! ```
//!
//! Each model sets its preemption bound in code (`LOOM_MAX_PREEMPTIONS` overrides it for
//! deeper runs by hand), so CI needs no environment variable. `ThreadToken` is `!Send`,
//! so every thread registers itself, inside its own closure. Each model's comment gives
//! its cost, and which change to the library it catches (a loom "Causality violation"
//! on a replica's data, in the execution given): each "catches" was checked by running
//! the model against a copy of the library with that one change made.
//!
//! The reader of a frozen clone source that reads the stand-in while the stand-in's
//! combiner writes is model 7 of `loom_reconfigure.rs`; the lock-level and `Shared`-level
//! models of the reader sets are the `readers_*` models of `src/loom_models/readers.rs`.
#![cfg(ldnr_loom)]

mod loom_common;

use ldnr::Error;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_common::{assert_serial, build, build_with, check, Latch, Write};

/// Spins (yielding to loom) until `flag` is raised.
fn wait_for(flag: &AtomicBool) {
    while !flag.load(Ordering::Acquire) {
        thread::yield_now();
    }
}

/// Model 1: a reader moved by a removal. Two replicas, X (slot 0) and Y (slot 1). The
/// reader registers first (on X) and reads twice; the main thread registers (on Y),
/// removes X — which moves the reader to Y and takes X's data out under X's write lock,
/// waiting for X's reader set — and adds 1 and 2 through Y, whose combiner's write lock
/// waits for Y's reader set. The reader's reads race all of it: one may read X before
/// the removal (then it is in X's set), and a read after the move must put the reader in
/// Y's set, out of X's, before it announces itself.
///
/// Asserts: no read overlaps a write of the same replica, nor the removal's taking the
/// data out (loom's cell tracking); the reads return written values (0, 1 or 3), in
/// order; the main thread's responses are 0 and 1; after the main thread's "done" the
/// reader reads 3; the reader ends on Y, the only replica, with both threads.
///
/// Bound 3: 78 000 executions, 55 s (the `_fenced` variant 54 000, 35 s). Catches a read path that never joins a reader set
/// (execution 1); one that joins only for the replica it tries first, not when the
/// removal re-routes it from X to Y inside the same read (88); one that joins after
/// taking the read lock (97); `ReaderSet::remove` made Relaxed (17 103), the set's load
/// in `members` made Relaxed (20 713), and the reader's announcement made Relaxed
/// (14 676).
#[test]
fn moved_reader_reads_while_writer_applies() {
    moved_reader("moved_reader_reads_while_writer_applies", true);
}

/// Model 1 on an instance without the asymmetric barrier (`Builder::membarrier(false)`:
/// every write lock fences, rwlock R1 and R2 alone).
#[test]
fn moved_reader_reads_while_writer_applies_fenced() {
    moved_reader("moved_reader_reads_while_writer_applies_fenced", false);
}

/// The model of `moved_reader_reads_while_writer_applies`, with the barrier if
/// `membarrier`.
fn moved_reader(name: &'static str, membarrier: bool) {
    check(name, Some(3), move || {
        let nr = build_with(2, 2, membarrier);
        let [x, y] = [0, 1].map(|k| nr.replicas()[k].id);
        let registered = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (r, f, d) = (nr.clone(), registered.clone(), done.clone());
        let reader = thread::spawn(move || {
            let tkn = r.register().unwrap();
            f.store(true, Ordering::Release);
            let first = r.execute((), tkn);
            let second = r.execute((), tkn);
            assert!(
                [0, 1, 3].contains(&first) && [0, 1, 3].contains(&second) && first <= second,
                "reads {first} then {second}"
            );
            wait_for(&d);
            assert_eq!(r.execute((), tkn), 3, "a completed write is not visible");
            assert_eq!(
                r.replica_of(tkn),
                Some(y),
                "not moved off the removed replica"
            );
        });

        wait_for(&registered);
        let tkn = nr.register().unwrap();
        assert_eq!(nr.replica_of(tkn), Some(y));
        nr.remove_replica(x).unwrap();
        let mine = [1, 2].map(|v| (v, nr.execute_mut(Write::Add(v), tkn)));
        done.store(true, Ordering::Release);
        reader.join().unwrap();
        assert_eq!(mine.map(|(_, r)| r), [0, 1], "lost or reordered write");
        assert_serial(mine.to_vec());
        let infos = nr.replicas();
        assert_eq!(infos.len(), 1, "{infos:?}");
        assert_eq!((infos[0].id, infos[0].threads, infos[0].applied), (y, 2, 2));
    });
}

/// Model 2: a thread index given back and handed out again. One replica, a thread limit
/// of two. The main thread registers (index 0) and adds 1 and 2. Thread A registers
/// (index 1), reads, deregisters, checks that its token is now refused and raises a
/// flag; thread B waits for the flag and registers — the limit leaves it only index 1,
/// A's — and reads twice. A's and B's reads race the main thread's writes: A's read
/// must be ordered before a write whose lock finds A already out of the reader set (its
/// removal at deregistration), and B, with A's index and reader slot, must join the set
/// afresh before it reads.
///
/// Asserts: no read overlaps a write (loom's cell tracking); A's and B's reads return
/// written values (0, 1 or 3), B's in order and none below A's (B's reads started
/// after A's returned); the main thread's responses are 0 and 1 (each write applied
/// exactly once); B got index 1 and A's token is stale; a final read returns 3 and the
/// replica serves two threads.
///
/// Bound 2: 35 000 executions, 14 s, the `_fenced` variant 29 000, 11 s (B waits for A
/// on a [`Latch`], blocking, so that loom's scheduler cannot oscillate between two
/// spinners, tokio-rs/loom#53; bound 3
/// passes too, 665 000 executions in under three minutes). Catches a deregistration
/// that takes the index out of its reader set but leaves it marked as in that set, so
/// that B reads there without joining (execution 923); a read path that never joins
/// (463) or joins after taking the read lock (463); `ReaderSet::remove` made Relaxed
/// (905) and the set's load in `members` made Relaxed (905).
#[test]
fn deregistered_index_reused_while_writer_applies() {
    index_reused("deregistered_index_reused_while_writer_applies", true);
}

/// Model 2 on an instance without the asymmetric barrier (every write lock fences).
#[test]
fn deregistered_index_reused_while_writer_applies_fenced() {
    index_reused(
        "deregistered_index_reused_while_writer_applies_fenced",
        false,
    );
}

/// The model of `deregistered_index_reused_while_writer_applies`, with the barrier if
/// `membarrier`.
fn index_reused(name: &'static str, membarrier: bool) {
    check(name, Some(2), move || {
        let nr = build_with(1, 2, membarrier);
        let tkn = nr.register().unwrap();
        let left = Arc::new(Latch::new());
        let (a, l) = (nr.clone(), left.clone());
        let thread_a = thread::spawn(move || {
            let tkn = a.register().unwrap();
            assert_eq!(tkn.index(), 1);
            let read = a.execute((), tkn);
            a.deregister(tkn).unwrap();
            assert_eq!(a.deregister(tkn), Err(Error::StaleToken));
            l.count_up();
            read
        });
        let (b, l) = (nr.clone(), left.clone());
        let thread_b = thread::spawn(move || {
            l.wait_for(1);
            let tkn = b.register().unwrap();
            assert_eq!(tkn.index(), 1, "the given-back index is reused");
            [b.execute((), tkn), b.execute((), tkn)]
        });

        let mine = [1, 2].map(|v| (v, nr.execute_mut(Write::Add(v), tkn)));
        let read_a = thread_a.join().unwrap();
        let reads_b = thread_b.join().unwrap();
        assert_eq!(mine.map(|(_, r)| r), [0, 1], "lost or reordered write");
        assert!(
            [0, 1, 3].contains(&read_a)
                && reads_b.iter().all(|r| [0, 1, 3].contains(r))
                && read_a <= reads_b[0]
                && reads_b[0] <= reads_b[1],
            "A read {read_a}, then B read {reads_b:?}"
        );
        assert_eq!(nr.execute((), tkn), 3, "a write was lost or repeated");
        let infos = nr.replicas();
        assert_eq!((infos.len(), infos[0].threads, infos[0].applied), (1, 2, 2));
    });
}

/// Model 3: the last registered thread leaves while its replica is removed. Two
/// replicas, X (slot 0) and Y (slot 1). The only thread that registers (index 0, on X)
/// reads and deregisters: it is the top index, so its departure lowers the scan mark
/// (dispatcher D1) to 0, and a write lock that loads that mark scans no reader set at
/// all. The main thread, not registered, removes X meanwhile: the removal moves the
/// thread to Y and takes X's data out under X's write lock. The thread's read (on X, or
/// on Y if it was moved first) must be ordered before that: the write lock sees the
/// thread's bit in X's set, or synchronizes with its removal from the set, or with the
/// lowering of the mark (a Release that the write lock's Acquire load of the mark
/// pairs with).
///
/// Asserts: no read overlaps the removal's taking the data out (loom's cell tracking);
/// the read returns 0; afterwards a new registration lands on Y, the only replica, as
/// index 0 (the lowest given back), and reads 0.
///
/// Bound 6: 2 700 executions (the `_fenced` variant 1 500), about a second. Catches the write lock's load of the scan
/// mark made Relaxed (execution 166), a read path that never joins a reader set (8) or
/// joins after taking the read lock (8), `ReaderSet::remove` made Relaxed (13) and the
/// set's load in `members` made Relaxed (13). The mark's lowering made Relaxed is not a
/// fault today: `leave` lowers it after the admin path's Release fence
/// (`Dispatcher::changing`), which orders the thread's reads before the store anyway.
#[test]
fn last_reader_leaves_while_its_replica_is_removed() {
    last_reader_leaves("last_reader_leaves_while_its_replica_is_removed", true);
}

/// Model 3 on an instance without the asymmetric barrier (every write lock fences).
#[test]
fn last_reader_leaves_while_its_replica_is_removed_fenced() {
    last_reader_leaves(
        "last_reader_leaves_while_its_replica_is_removed_fenced",
        false,
    );
}

/// The model of `last_reader_leaves_while_its_replica_is_removed`, with the barrier if
/// `membarrier`.
fn last_reader_leaves(name: &'static str, membarrier: bool) {
    check(name, Some(6), move || {
        let nr = build_with(2, 2, membarrier);
        let [x, y] = [0, 1].map(|k| nr.replicas()[k].id);
        let r = nr.clone();
        let reader = thread::spawn(move || {
            let tkn = r.register().unwrap();
            assert_eq!(tkn.index(), 0);
            let read = r.execute((), tkn);
            r.deregister(tkn).unwrap();
            read
        });
        nr.remove_replica(x).unwrap();
        assert_eq!(reader.join().unwrap(), 0);
        let tkn = nr.register().unwrap();
        assert_eq!((tkn.index(), nr.replica_of(tkn)), (0, Some(y)));
        assert_eq!(nr.execute((), tkn), 0);
    });
}

/// Model 4: a lone writer, and a reader joining (rwlock R5). One replica. The main
/// thread registers and, alone in the replica's reader set, adds 1 and 2: each write
/// takes the write lock after the light barrier only, no fence. A second thread
/// registers concurrently and reads twice; its first read joins the reader set and
/// issues the heavy barrier after its insert, so a write either sees it in the set (and
/// takes the lock in full, waiting for its reads) or has raised the writer flag where
/// its read sees it.
///
/// Asserts: no read overlaps a write (loom's cell tracking); the reads return written
/// values (0, 1 or 3), in order; the main thread's responses are 0 and 1; a final read
/// returns 3.
///
/// Bound 3: 16 000 executions, 6 s. Catches a join without the heavy barrier (execution
/// 1), a write lock without the light barrier (1), one that looks at the set before its
/// light barrier (10), and one that finds members and scans them without F2 (127).
/// Models 1, 2 and 3 (not their `_fenced` variants) catch the same four changes: model 1
/// at executions 29, 29, 56 and 1, model 2 at 1, 1, 121 and 302, model 3 at 8 each.
#[test]
fn reader_joins_while_a_lone_writer_skips_the_fence() {
    check(
        "reader_joins_while_a_lone_writer_skips_the_fence",
        Some(3),
        || {
            let nr = build(1, 2);
            let tkn = nr.register().unwrap();
            let r = nr.clone();
            let reader = thread::spawn(move || {
                let tkn = r.register().unwrap();
                [r.execute((), tkn), r.execute((), tkn)]
            });
            let mine = [1, 2].map(|v| nr.execute_mut(Write::Add(v), tkn));
            let reads = reader.join().unwrap();
            assert_eq!(mine, [0, 1], "lost or reordered write");
            assert!(
                reads.iter().all(|r| [0, 1, 3].contains(r)) && reads[0] <= reads[1],
                "reads {reads:?}"
            );
            assert_eq!(nr.execute((), tkn), 3, "a write was lost or repeated");
        },
    );
}
