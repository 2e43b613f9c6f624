//! The log: append, apply and GC with wrap-around.

use super::*;

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
