//! Loom models of the crate-internal protocols (compiled only with
//! `RUSTFLAGS="--cfg ldnr_loom"` in test builds).
//!
//! Run with
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg ldnr_loom" \
//!     cargo test --release -p ldnr --lib loom_models -- --test-threads=1
//! ```
//!
//! Every model sets its own preemption bound in code, so CI needs no `LOOM_*`
//! environment variable. The models use the crate's own types, whose atomics and
//! `UnsafeCell`s come from `crate::sync` and are therefore loom's under this cfg:
//!
//! - `log_*`: reservation, write, in-order read, publish and garbage collection of the
//!   shared log with wrap-around (L1–L3, L5), and drop accounting (L5);
//! - `rwlock_*`: the Dekker fence pair of the reader-writer lock (R1); loom's `UnsafeCell`
//!   access tracking flags any read that overlaps a write;
//! - `combining_*`: the real write path (`Shared::write`: the context state machine and
//!   pending stack, C1–C2, the combiner lock, the log, the write lock), on an instance's
//!   shared state built from its parts;
//! - `readers_*`: the per-replica reader sets (R2) — a reader that switches sets between
//!   replicas while writers of both take their write locks, and the real read path
//!   (`Shared::read`, `join_readers`) of a thread that `follow`s its node to another
//!   replica and of one whose replica is frozen as a clone source (read from the
//!   stand-in, replica P6) while the replicas' combiners write.
//!
//! Models with three threads in which two can spin on the third run with a preemption
//! bound of 1. With two threads that can both spin (yielding) on a third, preempted one,
//! loom's scheduler oscillates between the two spinners and an execution runs into the
//! branch limit (tokio-rs/loom#53, open in loom 0.7.3): at bound 2
//! `rwlock_one_writer_two_readers` and `combining_three_threads` fail with "Model
//! exceeded maximum number of branches" (with limits from 1 000 to 10 000 branches; a
//! larger limit only lets loom enumerate ever longer oscillations). This is a limit of
//! the checker, not a livelock of the code: the oscillating schedule simply never runs
//! the thread the spinners wait for. Two-thread models have no such schedule and run
//! with bounds of 2 to 5, and so does `readers_reader_switches_replicas` (three threads,
//! bound 3): its two writers wait only for the reader, whose announcement names one
//! replica at a time, and the reader, while it waits for a writer, announces nothing.
//!
//! Each `readers_*` model's comment says which change to the library it catches: each
//! was checked by running the model against a copy of the library with that one change
//! made (a loom "Causality violation" on a replica's data, in the execution given).

use alloc::vec;
use alloc::vec::Vec;
#[allow(clippy::disallowed_types)]
use core::sync::atomic::AtomicUsize as StdAtomicUsize;

use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;

use crate::affinity::{AffinityError, AffinityManager, Memory, NoAffinity, NodeId, SavedPolicy};
use crate::dispatch::Dispatch;
use crate::dispatcher::Dispatcher;
use crate::log::Log;
use crate::poison::Poison;
use crate::replica::context::EMPTY;
use crate::replica::rwlock::{ReaderSet, ReaderSlot, RwLock};
use crate::replica::ReplicaSet;
use crate::shared::Shared;
use crate::sync::{Ordering, UnsafeCell};

/// Model-checks `f` with the given preemption bound (`None`: unbounded, an exhaustive
/// search) and prints how many executions loom explored and how long it took (visible
/// with `--nocapture`), also when an execution fails (in which one).
///
/// `LOOM_MAX_PREEMPTIONS`, if set, overrides the bound (for deeper runs by hand).
fn check(preemptions: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut b = Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = preemptions;
    }
    let runs = std::sync::Arc::new(StdAtomicUsize::new(0));
    let counter = runs.clone();
    // Reports on the way out, also when an execution fails.
    struct Report<'a> {
        runs: &'a StdAtomicUsize,
        bound: Option<usize>,
        start: std::time::Instant,
    }
    impl Drop for Report<'_> {
        fn drop(&mut self) {
            let runs = self.runs.load(Ordering::Relaxed);
            let runs = if std::thread::panicking() {
                std::format!("failed in execution {runs}")
            } else {
                std::format!("{runs} executions")
            };
            std::eprintln!(
                "loom: {runs}, preemption bound {:?}, {:.1?}",
                self.bound,
                self.start.elapsed()
            );
        }
    }
    let _report = Report {
        runs: &runs,
        bound: b.preemption_bound,
        start: std::time::Instant::now(),
    };
    b.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
}

// ---------------------------------------------------------------------------------------
// a. The log: append, apply and GC with wrap-around.
// ---------------------------------------------------------------------------------------

/// Log capacity of the log models: the smallest the crate allows.
const LOG_CAP: usize = 4;

/// What one "replica" thread of a log model did.
#[derive(Debug)]
struct ReplicaRun<T> {
    /// Everything it read, in log order (index `i` of the log is `seen[i]`).
    seen: Vec<T>,
    /// The indices it reserved, with what it wrote there.
    wrote: Vec<(usize, T)>,
}

/// Reads the log for replica `slot` from `*pos` up to (not including) `to`, publishing
/// after every entry so that garbage collection never waits for more than it must.
fn read_up_to<T: Clone>(log: &Log<T>, slot: usize, pos: &mut usize, to: usize, seen: &mut Vec<T>) {
    while *pos != to {
        seen.push(log.appender(false).read(*pos));
        *pos = pos.wrapping_add(1);
        log.appender(false).publish(slot, *pos);
    }
}

/// One replica thread of the log models: for each batch size in `batches`, reserve that
/// many entries (applying the log while the log is full), write `make(k)` for the k-th
/// operation of this thread, apply up to the batch end; finally apply up to `total`.
fn log_replica<T: Clone>(
    log: &Log<T>,
    slot: usize,
    batches: &[usize],
    total: usize,
    make: impl Fn(usize) -> T,
) -> ReplicaRun<T> {
    let origin = log.origin();
    let mut pos = origin;
    let mut seen = Vec::new();
    let mut wrote = Vec::new();
    let mut k = 0;
    for &n in batches {
        assert!(n <= log.max_batch());
        let start = loop {
            if let Some(start) = log.appender(false).try_reserve(n) {
                break start;
            }
            // The log is full: this replica may be the laggard. Apply what is reserved
            // (the writers of reserved entries write them without waiting on anything).
            let tail = log.tail();
            read_up_to(log, slot, &mut pos, tail, &mut seen);
            thread::yield_now();
        };
        for i in 0..n {
            let idx = start.wrapping_add(i);
            let op = make(k);
            k += 1;
            wrote.push((idx.wrapping_sub(origin), op.clone()));
            // The displaced previous occupant, if any, is dropped right here (L5).
            drop(log.write(idx, op));
        }
        read_up_to(log, slot, &mut pos, start.wrapping_add(n), &mut seen);
    }
    let end = origin.wrapping_add(total);
    read_up_to(log, slot, &mut pos, end, &mut seen);
    assert_eq!(log.position(slot), end);
    ReplicaRun { seen, wrote }
}

/// Two replicas on a log of capacity 4 append 3 operations each (a batch of 2 and a
/// batch of 1 for the first thread, three batches of 1 for the second), so the ring wraps
/// and reservations must wait for garbage collection behind the other replica.
///
/// Asserts: both replicas read the same 6 values in the same order; every value appears
/// exactly once; each thread finds its own values at the indices it reserved; `ctail`
/// and `tail` end at 6. Loom's `UnsafeCell` tracking checks that no entry is read while
/// it is written (L1, L2) and the state words check L3.
#[test]
fn log_append_apply_gc_wraps() {
    log_append_apply_gc(0);
}

/// `log_append_apply_gc_wraps` on a log whose indices start two below the point where
/// they wrap around `usize` (L8): the second batch of each thread crosses it.
#[test]
fn log_append_apply_gc_across_the_index_wrap() {
    log_append_apply_gc(usize::MAX - 1);
}

fn log_append_apply_gc(origin: usize) {
    const TOTAL: usize = 6;
    check(Some(2), move || {
        let log: Arc<Log<u64>> = Arc::new(Log::starting_at(LOG_CAP, origin));
        log.activate(0, origin);
        log.activate(1, origin);

        let l = log.clone();
        let t1 = thread::spawn(move || log_replica(&l, 1, &[1, 1, 1], TOTAL, |k| 100 + k as u64));
        let r0 = log_replica(&log, 0, &[2, 1], TOTAL, |k| k as u64);
        let r1 = t1.join().unwrap();

        assert_eq!(r0.seen, r1.seen, "replicas applied different sequences");
        let mut all = r0.seen.clone();
        all.sort_unstable();
        assert_eq!(
            all,
            vec![0, 1, 2, 100, 101, 102],
            "a value lost or duplicated"
        );
        for r in [&r0, &r1] {
            for &(idx, v) in &r.wrote {
                assert_eq!(
                    r.seen[idx], v,
                    "index {idx} does not hold its writer's value"
                );
            }
        }
        assert_eq!(log.tail(), origin.wrapping_add(TOTAL));
        assert_eq!(log.ctail(), origin.wrapping_add(TOTAL));
    });
}

/// An operation that counts its live instances in a shared counter.
#[derive(Debug)]
struct Counted {
    live: Arc<StdAtomicUsize>,
    value: u64,
}

impl Counted {
    fn new(live: &Arc<StdAtomicUsize>, value: u64) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Self {
            live: live.clone(),
            value,
        }
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        Self::new(&self.live, self.value)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The log model of `log_append_apply_gc_wraps` with an operation type that counts its
/// live instances (a plain counter: loom runs the model's threads one at a time).
///
/// Asserts: once both replicas dropped what they read, exactly `LOG_CAP` operations
/// are alive (the log overwrote and dropped each older occupant exactly once, L5), and
/// after the log is dropped none is.
#[test]
fn log_drops_every_operation_exactly_once() {
    const TOTAL: usize = 6;
    check(Some(2), || {
        let live = Arc::new(StdAtomicUsize::new(0));
        let log: Arc<Log<Counted>> = Arc::new(Log::new(LOG_CAP));
        log.activate(0, 0);
        log.activate(1, 0);

        let l = log.clone();
        let c = live.clone();
        let t1 = thread::spawn(move || {
            let r = log_replica(&l, 1, &[1, 1, 1], TOTAL, |k| {
                Counted::new(&c, 100 + k as u64)
            });
            r.seen.iter().map(|c| c.value).collect::<Vec<_>>()
        });
        let r0 = log_replica(&log, 0, &[2, 1], TOTAL, |k| Counted::new(&live, k as u64));
        let seen0: Vec<u64> = r0.seen.iter().map(|c| c.value).collect();
        drop(r0);
        let seen1 = t1.join().unwrap();
        assert_eq!(seen0, seen1);

        assert_eq!(
            live.load(Ordering::SeqCst),
            LOG_CAP,
            "the log must hold exactly one live operation per slot"
        );
        drop(log);
        assert_eq!(
            live.load(Ordering::SeqCst),
            0,
            "operations leaked or double-dropped"
        );
    });
}

// ---------------------------------------------------------------------------------------
// b. The reader-writer lock.
// ---------------------------------------------------------------------------------------

/// A replica's lock, the reader slots of every thread, and data with the invariant
/// `a == b` that a writer breaks temporarily.
struct Guarded {
    lock: RwLock,
    readers: Vec<ReaderSlot>,
    a: UnsafeCell<u64>,
    b: UnsafeCell<u64>,
}

impl Guarded {
    fn new(readers: usize) -> Self {
        Self {
            lock: RwLock::new(),
            readers: (0..readers).map(|_| ReaderSlot::new()).collect(),
            a: UnsafeCell::new(0),
            b: UnsafeCell::new(0),
        }
    }

    /// Takes the write lock of replica slot 0 and increments both cells, one at a time.
    fn write(&self) {
        let _w = self.lock.write(0, || self.readers.iter());
        // SAFETY: the write lock (the model's claim, checked by loom's cell tracking)
        // excludes every reader of slot 0, and there is one writer.
        self.a.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: as above.
        self.b.with_mut(|p| unsafe { *p += 1 });
    }

    /// Takes the read lock of slot 0 with reader slot `me`, and returns the cells.
    fn read(&self, me: usize) -> u64 {
        let _r = self.lock.read(&self.readers[me], 0);
        // SAFETY: the read lock excludes the writer (checked by loom).
        let a = self.a.with(|p| unsafe { *p });
        // SAFETY: as above.
        let b = self.b.with(|p| unsafe { *p });
        assert_eq!(a, b, "a reader saw a half-applied write");
        a
    }
}

/// One writer (two write sections) and one reader (two read sections).
///
/// Asserts: no read section overlaps a write section (loom panics on the concurrent
/// cell access, and the reader checks `a == b`); the reader's values never go back.
#[test]
fn rwlock_one_writer_one_reader() {
    check(Some(4), || {
        let g = Arc::new(Guarded::new(1));
        let w = g.clone();
        let writer = thread::spawn(move || {
            w.write();
            w.write();
        });
        let first = g.read(0);
        let second = g.read(0);
        assert!(first <= second && second <= 2);
        writer.join().unwrap();
        assert_eq!(g.read(0), 2);
    });
}

/// One writer and two readers with their own reader slots.
///
/// Asserts: as `rwlock_one_writer_one_reader`, with two readers inside at once allowed.
///
/// Preemption bound 1: see the module docs (tokio-rs/loom#53).
#[test]
fn rwlock_one_writer_two_readers() {
    check(Some(1), || {
        let g = Arc::new(Guarded::new(2));
        let w = g.clone();
        let writer = thread::spawn(move || w.write());
        let r = g.clone();
        let reader = thread::spawn(move || r.read(1));
        let v0 = g.read(0);
        let v1 = reader.join().unwrap();
        writer.join().unwrap();
        assert!(v0 <= 1 && v1 <= 1);
        assert_eq!(g.read(0), 1);
    });
}

/// A writer of replica slot 0 does not wait for a reader of slot 1 (the lock is per
/// replica, the reader slots are shared): the reader stays inside its read section of
/// slot 1 until the writer is done, so a writer that waited for it would spin forever
/// (loom would report the exceeded branch limit).
#[test]
fn rwlock_writer_ignores_readers_of_other_replicas() {
    // Exhaustive: 46 executions.
    check(None, || {
        struct Two {
            locks: [RwLock; 2],
            readers: [ReaderSlot; 1],
            written: crate::sync::AtomicBool,
        }
        let s = Arc::new(Two {
            locks: [RwLock::new(), RwLock::new()],
            readers: [ReaderSlot::new()],
            written: crate::sync::AtomicBool::new(false),
        });
        let w = s.clone();
        let writer = thread::spawn(move || {
            drop(w.locks[0].write(0, || w.readers.iter()));
            w.written.store(true, Ordering::Release);
        });
        {
            let _r = s.locks[1].read(&s.readers[0], 1);
            while !s.written.load(Ordering::Acquire) {
                thread::yield_now();
            }
        }
        writer.join().unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// c. Flat combining: the real write path.
// ---------------------------------------------------------------------------------------

/// A counter whose writes add and answer the total before them (like `fetch_add`).
#[derive(Debug, Clone, Default)]
struct Sum(u64);

impl Dispatch for Sum {
    type ReadOperation = ();
    type WriteOperation = u64;
    type Response = u64;

    fn dispatch(&self, _: ()) -> u64 {
        self.0
    }

    fn dispatch_mut(&mut self, v: u64) -> u64 {
        let before = self.0;
        self.0 += v;
        before
    }
}

/// The shared state of an instance over [`Sum`] with one replica and `threads`
/// registered threads, built from its parts: what flat combining (`replica::combiner`)
/// works on, with no public handle around it.
fn summing(threads: usize) -> Shared<Sum> {
    let shared = Shared {
        log: Log::new(LOG_CAP),
        replicas: ReplicaSet::new(threads),
        threads: Dispatcher::new(threads),
        memory: Memory::new(alloc::sync::Arc::new(NoAffinity), 1),
        poison: Poison::default(),
    };
    shared
        .replicas
        .install(0, NodeId(0), Sum(0), 0, &shared.log, core::iter::empty);
    let id = shared.replicas.next_id();
    shared.replicas.shell(0).set_identity(Some(id));
    let admin = shared.threads.admin();
    for _ in 0..threads {
        shared
            .threads
            .next_thread(&admin, 0, NodeId(0))
            .expect("within the limit");
    }
    drop(admin);
    shared
}

/// Thread `tid` writes `op` through the real write path (`Shared::write`, as
/// `NodeReplicated::execute_mut` calls it) and returns the response.
fn write(shared: &Shared<Sum>, tid: usize, op: u64) -> u64 {
    // SAFETY: thread `tid` of the model owns context `tid`, `EMPTY` between operations.
    unsafe { shared.threads.context(tid).put_op(op) };
    shared.write(tid)
}

/// Checks that `(op, response)` pairs, responses being `fetch_add` results, come from
/// one serial order: sorted by response, each response is the sum of the earlier ops.
fn assert_serial(mut pairs: Vec<(u64, u64)>) {
    pairs.sort_unstable_by_key(|&(_, r)| r);
    let mut sum = 0;
    for (op, r) in pairs {
        assert_eq!(r, sum, "responses match no serial order");
        sum += op;
    }
}

/// Runs `threads` threads (the main thread is thread 0) writing `ops[t]` in order
/// through the real combiner, then checks the responses and the replica.
fn combining_model(ops: &'static [&'static [u64]]) {
    let threads = ops.len();
    let shared = Arc::new(summing(threads));
    let handles: Vec<_> = (1..threads)
        .map(|t| {
            let shared = shared.clone();
            thread::spawn(move || {
                ops[t]
                    .iter()
                    .map(|&op| (op, write(&shared, t, op)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut per_thread = vec![ops[0]
        .iter()
        .map(|&op| (op, write(&shared, 0, op)))
        .collect::<Vec<_>>()];
    for h in handles {
        per_thread.push(h.join().unwrap());
    }
    for (t, pairs) in per_thread.iter().enumerate() {
        assert!(
            pairs.windows(2).all(|w| w[0].1 < w[1].1),
            "thread {t}: responses out of program order: {pairs:?}"
        );
        assert_eq!(shared.threads.context(t).owner_state(), EMPTY);
    }
    let pairs: Vec<(u64, u64)> = per_thread.into_iter().flatten().collect();
    let expect_total: u64 = ops.iter().flat_map(|o| o.iter()).sum();
    assert_serial(pairs);
    assert_eq!(shared.read(0, |d| d.dispatch(())), expect_total);
}

/// Two threads, two writes each, through the real combiner on a four-entry log (it
/// wraps): a context is reused (pushed again after `DONE`, C2) while the other thread
/// may be combining, and each thread either combines itself or is served.
///
/// Asserts: each thread gets exactly one response per write, its own (the responses fit
/// one serial order of the four distinct-power-of-two ops, and each thread's responses
/// follow its program order), every context ends `EMPTY`, and the replica ends at the
/// sum of all writes.
#[test]
fn combining_two_threads_two_ops() {
    check(Some(4), || combining_model(&[&[1, 2], &[4, 8]]));
}

/// Three threads, one write each: whoever gets the combiner lock serves the others.
///
/// Asserts: as `combining_two_threads_two_ops`.
///
/// Preemption bound 1: see the module docs (tokio-rs/loom#53).
#[test]
fn combining_three_threads() {
    check(Some(1), || combining_model(&[&[1], &[2], &[4]]));
}

// ---------------------------------------------------------------------------------------
// d. Reader sets (R2): readers that switch replicas, follow their node, or read a
//    stand-in.
// ---------------------------------------------------------------------------------------

/// Two replicas (slots 0 and 1), each with its lock, its reader set and data with the
/// invariant `a == b` that a writer breaks temporarily; one reader, thread index 0.
struct SwitchingReader {
    locks: [RwLock; 2],
    sets: [ReaderSet; 2],
    readers: [ReaderSlot; 1],
    cells: [[UnsafeCell<u64>; 2]; 2],
}

impl SwitchingReader {
    fn new() -> Self {
        Self {
            locks: [RwLock::new(), RwLock::new()],
            sets: [ReaderSet::new(1), ReaderSet::new(1)],
            readers: [ReaderSlot::new()],
            cells: [
                [UnsafeCell::new(0), UnsafeCell::new(0)],
                [UnsafeCell::new(0), UnsafeCell::new(0)],
            ],
        }
    }

    /// Takes the write lock of replica `r`, waiting for the members of its reader set
    /// only (as `Shared::readers_of` does), and increments both cells, one at a time.
    fn write(&self, r: usize) {
        let _w = self.locks[r].write(r, || self.sets[r].members(1).map(|tid| &self.readers[tid]));
        let [a, b] = &self.cells[r];
        // SAFETY: the write lock (the model's claim, checked by loom's cell tracking)
        // excludes every reader of replica `r`, and there is one writer per replica.
        a.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: as above.
        b.with_mut(|p| unsafe { *p += 1 });
    }

    /// Thread 0 leaves the reader set of `from` and joins that of `to`, in the order
    /// `Shared::join_readers` does (owner only, between reads).
    fn join(&self, from: Option<usize>, to: usize) {
        if let Some(from) = from {
            self.sets[from].remove(0);
        }
        self.sets[to].insert(0);
    }

    /// Thread 0 reads replica `r` under its read lock.
    fn read(&self, r: usize) -> u64 {
        let _g = self.locks[r].read(&self.readers[0], r);
        let [a, b] = &self.cells[r];
        // SAFETY: the read lock excludes the writer of `r` (checked by loom).
        let a = a.with(|p| unsafe { *p });
        // SAFETY: as above.
        let b = b.with(|p| unsafe { *p });
        assert_eq!(a, b, "a reader saw a half-applied write");
        a
    }
}

/// A reader that reads replica 0, then switches reader sets (out of 0 with a Release
/// RMW, into 1) and reads replica 1, while a writer of replica 0 and a writer of
/// replica 1 each take their write lock once. Each writer waits only for the members of
/// its own replica's set (R2).
///
/// Asserts: no read section overlaps a write section of the same replica (loom's cell
/// tracking, and `a == b`): in particular the writer of 0 that finds the reader already
/// out of its set must be ordered after the reader's read of 0 (the removal's Release,
/// the set load's Acquire), and the writer of 1 must see the reader in its set or the
/// reader its flag (the insert before the announcement and F1).
///
/// Bound 3 (three threads, but no two of them can spin on the third: see the module
/// docs): 36 000 executions, 2 s. Catches `ReaderSet::remove` made Relaxed (execution
/// 470: the writer of 0 reads the cleared bit and skips the reader, whose read of 0 is
/// then unordered before the write), the set's load in `members` made Relaxed (470),
/// and the reader's announcement made Relaxed (306: the writer of 0 reads the stale bit,
/// then the announcement of 1, which no longer carries the read of 0 with it).
#[test]
fn readers_reader_switches_replicas() {
    check(Some(3), || {
        let s = Arc::new(SwitchingReader::new());
        let writers: Vec<_> = (0..2)
            .map(|r| {
                let s = s.clone();
                thread::spawn(move || s.write(r))
            })
            .collect();
        s.join(None, 0);
        let first = s.read(0);
        s.join(Some(0), 1);
        let second = s.read(1);
        assert!(first <= 1 && second <= 1);
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(s.read(1), 1);
    });
}

/// `readers_reader_switches_replicas` with one writer thread that writes replica 0 and
/// then replica 1 (two threads: a deeper bound).
///
/// Asserts: as there.
///
/// Bound 4: 8 000 executions, under a second. Catches the same three changes
/// (executions 328, 328 and 72).
#[test]
fn readers_reader_switches_replicas_one_writer() {
    check(Some(4), || {
        let s = Arc::new(SwitchingReader::new());
        let w = s.clone();
        let writer = thread::spawn(move || {
            w.write(0);
            w.write(1);
        });
        s.join(None, 0);
        let first = s.read(0);
        s.join(Some(0), 1);
        let second = s.read(1);
        assert!(first <= 1 && second <= 1);
        writer.join().unwrap();
        assert_eq!(s.read(1), 1);
    });
}

/// An affinity manager with two nodes whose `current_node` is whatever the model set
/// last (a plain counter: loom runs the model's threads one at a time, and only the
/// reader asks it).
#[derive(Debug, Default)]
struct Movable {
    node: StdAtomicUsize,
}

impl AffinityManager for Movable {
    fn current_node(&self) -> NodeId {
        NodeId(self.node.load(Ordering::Relaxed))
    }

    fn nodes(&self) -> Vec<NodeId> {
        vec![NodeId(0), NodeId(1)]
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if node.0 < 2 {
            Ok(SavedPolicy::UNCHANGED)
        } else {
            Err(AffinityError::UnknownNode(node))
        }
    }

    fn restore_memory_policy(&self, _saved: SavedPolicy) {}
}

/// The shared state of an instance over [`Sum`] with two replicas, slot 0 on node 0 and
/// slot 1 on node 1, and one registered thread per entry of `on` (thread `t` matched to
/// replica `on[t]`, on that replica's node), built from its parts as [`summing`] does.
fn summing_on_two(on: &[usize], manager: alloc::sync::Arc<Movable>) -> Shared<Sum> {
    let shared = Shared {
        log: Log::new(LOG_CAP),
        replicas: ReplicaSet::new(on.len()),
        threads: Dispatcher::new(on.len()),
        memory: Memory::new(manager, 2),
        poison: Poison::default(),
    };
    for slot in 0..2 {
        shared.replicas.install(
            slot,
            NodeId(slot),
            Sum(0),
            0,
            &shared.log,
            core::iter::empty,
        );
        let id = shared.replicas.next_id();
        shared.replicas.shell(slot).set_identity(Some(id));
    }
    let admin = shared.threads.admin();
    for &slot in on {
        shared
            .threads
            .next_thread(&admin, slot, NodeId(slot))
            .expect("within the limit");
        shared
            .replicas
            .shell(slot)
            .threads
            .fetch_add(1, Ordering::Relaxed);
    }
    drop(admin);
    shared
}

/// The replica thread `tid` is matched to now.
fn matched(shared: &Shared<Sum>, tid: usize) -> usize {
    shared.threads.context(tid).replica.load(Ordering::Relaxed)
}

/// A thread that migrates: thread 0 on replica 0 (node 0) reads, is told it now runs on
/// node 1, `follow`s (the real re-matching, under the admin lock) to replica 1, and reads
/// again, through the real read path (`Shared::read`: it leaves replica 0's reader set
/// and joins replica 1's before it announces the read, `join_readers`). Meanwhile the
/// other thread adds 1 through replica 0 (thread 1) and then 2 through replica 1
/// (thread 2), each a combiner applying under its replica's write lock, which waits only
/// for its own replica's reader set (R2); the reader's read of replica 1 may itself
/// combine to catch up.
///
/// Asserts: no read overlaps a write of the same replica (loom's cell tracking on the
/// replicas' data); the reads return written values (0, 1 or 3), in order; the writes'
/// responses are 0 and 1; the reader ends matched to replica 1; a read after both
/// threads are done returns 3.
///
/// Bound 3: 3 700 executions, under a second. Catches a read path that never joins a
/// reader set (execution 1), one that joins after taking the read lock (1), and the
/// set's load in `members` made Relaxed (170). Not a Relaxed `ReaderSet::remove`: on
/// this path the removal follows `follow`'s admin section, whose Release fence
/// (`Dispatcher::changing`) already orders the thread's reads of replica 0 before it.
#[test]
fn readers_thread_follows_to_another_replica() {
    check(Some(3), || {
        let manager = alloc::sync::Arc::new(Movable::default());
        let shared = Arc::new(summing_on_two(&[0, 0, 1], manager.clone()));
        let w = shared.clone();
        let writer = thread::spawn(move || [write(&w, 1, 1), write(&w, 2, 2)]);
        let first = shared.read(0, |d| d.0);
        manager.node.store(1, Ordering::Relaxed);
        shared.follow(0);
        assert_eq!(matched(&shared, 0), 1, "not re-matched to its new node");
        let second = shared.read(0, |d| d.0);
        assert!(
            [0, 1, 3].contains(&first) && [0, 1, 3].contains(&second) && first <= second,
            "reads {first} then {second}"
        );
        assert_eq!(writer.join().unwrap(), [0, 1], "lost or reordered write");
        assert_eq!(shared.read(0, |d| d.dispatch(())), 3);
    });
}

/// A reader of a frozen clone source reads from the stand-in while the stand-in's
/// combiner writes (replica P6 with R2). Two replicas: X (slot 0), S (slot 1); thread 0
/// is on X, thread 1 on S. Thread 1 adds 1 through S before the model's threads start
/// (S and `ctail` at 1, X behind at 0). Then the main thread freezes X as a clone
/// source (as `add_replica` does: the stand-in S recorded first, then X's combiner lock
/// and its frozen flag), starts the reader and adds 2 through S, unfreezes X and adds 4
/// through S. The reader reads twice: X is behind its `ctail` and frozen, so it reads
/// from S, which puts it in S's reader set first (the set check is made for every replica
/// the read path tries, not once per operation); once X is unfrozen it catches X up
/// (combining on X) and reads there, back in X's set.
///
/// Asserts: no read overlaps a write of the same replica (loom's cell tracking); the
/// reads return written values (1, 3 or 7), in order; the writes' responses are 1 and
/// 3; a read after both threads are done returns 7 on either replica.
///
/// Bound 3: 24 000 executions, 5 s. Catches a read path that joins only the set of the
/// thread's own replica, once per operation, rather than that of every replica it
/// tries (execution 108), one that never joins (108), one that joins after taking the
/// read lock (144), `ReaderSet::remove` made Relaxed (425: the reader, back on X, has
/// left S's set, and a write on S that reads its bit cleared is not ordered after its
/// read of S), the set's load in `members` made Relaxed (425) and the reader's
/// announcement made Relaxed (228).
#[test]
fn readers_stand_in_for_a_frozen_source() {
    check(Some(3), || {
        let manager = alloc::sync::Arc::new(Movable::default());
        let shared = Arc::new(summing_on_two(&[0, 1], manager));
        assert_eq!(write(&shared, 1, 1), 0);
        shared.replicas.set_stand_in(Some(1));
        let frozen = shared.replicas.shell(0).freeze();
        let r = shared.clone();
        let reader = thread::spawn(move || {
            let first = r.read(0, ());
            let second = r.read(0, ());
            (first, second)
        });
        let during = write(&shared, 1, 2);
        drop(frozen);
        let after = write(&shared, 1, 4);
        let (first, second) = reader.join().unwrap();
        assert_eq!([during, after], [1, 3], "lost or reordered write");
        assert!(
            [1, 3, 7].contains(&first) && [1, 3, 7].contains(&second) && first <= second,
            "reads {first} then {second}"
        );
        assert_eq!(shared.read(0, |d| d.0), 7);
        assert_eq!(shared.read(1, |d| d.0), 7);
    });
}
