//! Two threads on one replica, writing, for two LD-NR commits (`old`, `new`) paired in one
//! process with the same map behind `std::sync::RwLock` and, for scale, one thread
//! inserting into the bare map (issue 16's stretch target: two writers at least half a
//! lone bare map's throughput).
//!
//! Not a workspace target: `AB_MAIN=two_threads.rs OLD=<commit> NEW=<commit>
//! bench/ab/old-vs-new.sh [sections] [--rounds N] [--phase-ms N]` copies both commits'
//! `ldnr` and `ldnr-hashmap` into a scratch crate under /tmp and runs this file there.
//!
//! Each round runs every variant for one phase, in the harness's rotating order. A
//! two-thread phase starts both threads at a barrier, and both run until the phase's
//! time is up; the second thread is started once per table row and kept for all its
//! rounds, so each LD-NR instance registers both threads once (`thread_token`). A
//! phase's cost is its wall time over the operations both threads completed (ns per
//! operation, both threads together), and its split is the slower thread's share of the
//! operations (0.5: even; near 0: one thread did nearly all). A fifth phase passes one
//! cache line between two threads and gives the time a line takes to move from one core
//! to the other: two threads writing one structure hand it over (lock, combiner, data)
//! at some rate, and each hand-over costs at least that. Sections: `write` (every
//! operation an `Insert`) and `mixed` (10% `Insert`, the rest `Get`), each at 64K and 1M
//! keys of a pre-filled `u64` map; and `latency`: 100% writes again, every operation of
//! both threads timed (a clock read before and after, which the throughput then
//! includes), with the quantiles of those latencies for the `RwLock`, both commits and
//! the spin lock (pooled and per thread). A change that buys throughput by making one
//! writer wait for the other shows there. `latency-mixed`: the same with 10% writes,
//! only the writes timed. `delegation`: the delegation floor below, two forms of it
//! whose owner serves with loads and stores only (one of them prefetching the request's
//! line), the two combining floors below and LD-NR (`new`), paired; 100% writes.
//! `unfair`: delegation whose owner serves the other thread before one in every 1, 2, 4,
//! 8, 16 or 64 of its own operations, with the `RwLock` and LD-NR (`new`), paired; 100%
//! writes. It prices the stretch target in fairness: how much of the work the second
//! thread keeps when two threads reach half a lone bare map's throughput.
//!
//! Two floors, the least two threads sharing one map can do, say how far the stretch
//! target is from what the machine allows:
//! - `spin lock`: the map behind a test-and-test-and-set spin lock, each thread applying
//!   its own operations (no reader/writer distinction, no token, no replica);
//! - `delegation`: the first thread owns the map; the second posts each operation in a
//!   line of its own and waits on it; the owner looks at that line before each of its
//!   own operations (or, `every 4th`, before one in four), applies what it finds and
//!   answers. The owner never waits for the other thread. Its split shows what that
//!   costs in fairness.
//!
//! and, in the `delegation` section, two combining floors, lean forms of what LD-NR's
//! combining does (both threads run the same code; whoever holds the lock serves):
//! - `combining in the lock word`: the lock word holds the stack of waiting operations;
//!   a thread that finds the lock held pushes its operation (a line of its own) in the
//!   same compare-and-swap, and the holder cannot release the lock while the stack holds
//!   anything, so it serves it first;
//! - `the same, lock kept`: released, the word still names its holder, which takes the
//!   lock back at its next operation; the other thread pushes even onto a free lock that
//!   names another, and takes it only after waiting 256 spin-loop hints unserved.
//!
//! # What the unfair owner showed (issue 16; Intel Xeon VM, 2 vCPUs, e73ff5f's library,
//! `unfair --rounds 30 --phase-ms 20`, twelve runs, six of them `write unfair`; rates 2
//! and 8 in six of them)
//!
//! Two threads' throughput over a lone bare insert's (22–38 ns at 64K keys, 75–184 ns at
//! 1M), 100% writes, and the slower thread's share of the operations: at 64K keys
//! delegation serving every operation 0.38–0.41× (share 0.16–0.25), every 2nd 0.38–0.43×
//! (0.14–0.21), every 4th 0.40–0.45× (0.12–0.18), every 8th 0.42–0.47× (0.10–0.11), every
//! 16th 0.49–0.56× (0.06), every 64th 0.58–0.69× (0.02); the `RwLock` 0.10–0.18×
//! (0.42–0.50), LD-NR 0.16–0.24× (0.33–0.43). At 1M keys 0.49–0.69×, 0.50–0.65×,
//! 0.50–0.65×, 0.50–0.67×, 0.49–0.71×, 0.51–0.73×; the `RwLock` 0.25–0.44×, LD-NR
//! 0.33–0.48×. (The `write` sections: LD-NR 0.18–0.25× and 0.38–0.52×, every 4th
//! 0.41–0.50× and 0.55–0.62×.) At 64K keys half a lone map's throughput came, but for one
//! 0.50× reading in these runs, in a run whose lone insert was slow, only with the second
//! thread doing one operation in sixteen or fewer (docs/bench/write-and-read-paths.md,
//! "The stretch target's price in fairness").
//!
//! # What the combining floors showed (issue 16; Intel Xeon VM, 2 vCPUs, a32fdd7's
//! library on both sides, `delegation --rounds 30`, nine runs)
//!
//! Two threads' throughput over a lone bare insert's, 100% writes. Three runs with quiet
//! memory (bare insert 19–20 ns and 80–84 ns): at 64K keys combining in the lock word
//! 0.14×, the lock kept 0.16×, LD-NR 0.17–0.18×, delegation 0.38–0.39×; at 1M keys
//! 0.36–0.37×, 0.38–0.40×, 0.42–0.45× and 0.47–0.49×. Six runs in a slow stretch of the
//! host's memory (29–45 ns and 164–187 ns): 0.18–0.22×, 0.18–0.24× (three runs), LD-NR
//! 0.18–0.22×, 0.39–0.44×; at 1M keys 0.52–0.58×, 0.57–0.62×, 0.43–0.55×, 0.64–0.71×.
//! When memory is quiet LD-NR's turns are above the combining floor and level with or
//! just above the kept lock; delegation is clearly above LD-NR in both states. LD-NR
//! prototypes that serve through its contexts (before release; the lock kept by its last
//! holder; the lock and the stack in one word; `bench/ab/tried/`) gained nothing
//! consistent with 100% writes (up to 1.61× slower), and the kept lock's gain with 10%
//! writes came with writes' p99 1.4–1.7× main's (docs/bench/write-and-read-paths.md,
//! "Combining floors and a lock kept by its holder").
//!
//! # What the floors showed (issue 16; Intel Xeon VM, 2 vCPUs, dbf75b1 against itself,
//! 30 rounds of 20 ms, two runs)
//!
//! Two threads' throughput over a lone bare insert's, 100% writes: at 64K keys the spin
//! lock 0.22–0.23×, delegation 0.36–0.39× (the second thread's share 0.16) and 0.41–0.42×
//! serving one in four (share 0.12), LD-NR 0.13×; at 1M keys 0.52–0.56×, 0.54–0.55× and
//! 0.56–0.57×, LD-NR 0.37–0.41×. A line moved in 50–58 ns, a lone insert took 19–20 ns at
//! 64K keys: the stretch target needs less than a transfer per operation there, which
//! only an unequal split or turns of many operations allow
//! (docs/bench/write-and-read-paths.md, "The stretch target against two floors"). The
//! spin lock beating LD-NR led to dcbc0e7's turn-taking
//! (docs/bench/write-and-read-paths.md, "Two writers take turns").
//!
//! # What it showed (issue 16; AMD EPYC VM, 2 vCPUs, c031578 against itself, 30 rounds
//! of 20 ms, two runs, the second thread kept per row)
//!
//! - A line moved between the two vCPUs in 31 ns (median of the rounds) in one run and
//!   157 ns in the other (a pinned ping-pong earlier the same evening: 162–170 ns in
//!   every round). Where the host runs the vCPUs changes that fivefold, which is why
//!   two-thread results on this machine swing from round to round and run to run.
//! - 100% writes, 64K keys: LD-NR took 56.0 and 196.1 ns per operation of the two
//!   threads together; the `RwLock` 71.4 and 184.0 (LD-NR 0.78× and 0.85× its time,
//!   medians of the per-round ratios). In the fast run that is 1.8 line transfers per
//!   operation for LD-NR and 2.3 for the `RwLock`. Against one thread inserting into the
//!   bare map (16–20 ns), two LD-NR writers reach 0.20–0.29× its throughput. The
//!   stretch target (0.5×) leaves about one line transfer's time per operation (31 ns
//!   at 64K keys, when the line moves fast).
//! - 100% writes, 1M keys: LD-NR 185 and 179 ns, 0.71× and 0.79× the `RwLock`'s time,
//!   and 0.74–0.84× the lone bare map's throughput (that map misses to memory on every
//!   insert, 135–153 ns; two threads overlap their misses).
//! - 10% writes: LD-NR 0.61–0.65× the `RwLock`'s time at both sizes.
//! - The version before, which started the second thread for every phase (so LD-NR
//!   registered it every round), gave the same picture: 0.83× and 0.93× the `RwLock`'s
//!   time at 64K keys, 0.62× and 0.70× at 1M, 0.61–0.77× with 10% writes.
//! - Tried, not kept (a throw-away commit against f1430dd, three runs of that earlier
//!   version): a thread whose last write another combiner applied published its next
//!   write without trying the lock, leaving the lock to that combiner for a few waits,
//!   so that the map stays in one core's cache. New/old: 100% writes 1.006×, 0.955×, 0.860× at 64K keys and 0.878×,
//!   1.002×, 0.975× at 1M; 10% writes 0.93–0.97× and 0.98–1.02×, against an A/A of
//!   0.99–1.02×. The waiting thread's share of the operations fell from 0.45 to 0.28–0.31
//!   at 64K keys. A few percent, not clearly above the noise, bought with fairness.
//!
//! # Turns of 16 writes, tried and reverted (Intel Xeon VM, 180baf3 against 75e5382)
//!
//! The waiting writer spun on a word of its own line and the holder handed the lock
//! over, still held, after 16 writes of its own, so that the lock's line and the map's
//! moved once a turn rather than once a write. Untimed (`write`, four runs of 30 rounds)
//! it took 0.92–1.02× the time at 64K keys and 0.87–0.95× at 1M; in a quiet sweep of a
//! prototype, turns of 16 took 0.96–1.04× and turns of 4 or 8 1.05–1.31×. Timed
//! (`latency`, two runs of 20 and 30 rounds) it was slower at 64K keys, 214–221 ns per
//! operation against 175–184, and its tail longer: p99 3.8–4.0 µs against 2.6–2.7 µs at
//! 64K keys, 6.1–6.7 µs against 4.9–5.1 µs at 1M (p50 144–152 ns against 152–168, and
//! 272–288 against 304–320), quantiles of both threads' operations pooled. A waiting
//! writer waits a whole turn by design, and operations with work between them lose the
//! turns' gain (a reading of the figures, not measured apart). Reverted (f9235b2). The
//! old scheme's waiting writer gives up after 3–4 µs and publishes, which would sit near
//! its p99.9 (4.4–4.9 µs); its p99 (2.0–2.9 µs) was not taken apart. Other prototypes,
//! as patches with their figures: `bench/ab/tried/`.

mod harness;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, RwLock};
use std::time::{Duration, Instant};

use harness::{iqr, key_stream, median, paired, pooled, table_header, Opts, Phase};

/// Pre-generated keys per thread (a power of two).
const KEY_STREAM: usize = 1 << 18;

/// One operation of a variant, `op(key, i)`, `i` counting the calling thread's
/// operations in the phase.
type Op<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Runs `op` on `keys` in order (wrapping around), in chunks of 64, while `go()`;
/// returns how many it ran.
fn run(op: Op<'_>, keys: &[u64], go: impl Fn() -> bool) -> usize {
    let mask = keys.len() - 1;
    let mut i = 0usize;
    while go() {
        for _ in 0..64 {
            op(keys[i & mask], i as u64);
            i += 1;
        }
    }
    i
}

/// Sent as the variant to end [`Second::serve`].
const QUIT: usize = usize::MAX;

/// The second thread of the two-thread phases. It is started once per table row and
/// kept for all the row's rounds, so that each LD-NR instance registers it once per run
/// (`thread_token`), not once per round; it runs the variant the first thread names.
struct Second {
    variant: AtomicUsize,
    stop: AtomicBool,
    start: Barrier,
    done: Barrier,
    count: AtomicUsize,
}

impl Second {
    fn new() -> Self {
        Second {
            variant: AtomicUsize::new(QUIT),
            stop: AtomicBool::new(false),
            start: Barrier::new(2),
            done: Barrier::new(2),
            count: AtomicUsize::new(0),
        }
    }

    /// The second thread's loop: one phase of `ops[variant]` on `keys` per start, until
    /// [`quit`](Self::quit).
    fn serve(&self, ops: &[Op<'_>], keys: &[u64]) {
        loop {
            self.start.wait();
            let variant = self.variant.load(Ordering::Relaxed);
            if variant == QUIT {
                return;
            }
            let n = run(ops[variant], keys, || !self.stop.load(Ordering::Relaxed));
            self.count.store(n, Ordering::Relaxed);
            self.done.wait();
        }
    }

    /// One phase of variant `variant` (`op`) on both threads, this one timing it on
    /// `keys`: the ns per operation of both together. Records the slower thread's share
    /// of the operations in `split`.
    fn phase(
        &self,
        variant: usize,
        op: Op<'_>,
        keys: &[u64],
        phase: Duration,
        split: &Mutex<Vec<f64>>,
    ) -> f64 {
        self.variant.store(variant, Ordering::Relaxed);
        self.stop.store(false, Ordering::Relaxed);
        self.start.wait();
        let began = Instant::now();
        let mine = run(op, keys, || began.elapsed() < phase);
        self.stop.store(true, Ordering::Relaxed);
        self.done.wait();
        let wall = began.elapsed();
        let theirs = self.count.load(Ordering::Relaxed);
        let total = (mine + theirs) as f64;
        split.lock().unwrap().push(mine.min(theirs) as f64 / total);
        wall.as_nanos() as f64 / total
    }

    /// Ends [`serve`](Self::serve).
    fn quit(&self) {
        self.variant.store(QUIT, Ordering::Relaxed);
        self.start.wait();
    }
}

/// Whether operation `i` of a phase writes.
fn writes(mixed: bool, i: u64) -> bool {
    !mixed || i.is_multiple_of(10)
}

macro_rules! version {
    ($m:ident, $ldnr:ident, $hm:ident) => {
        mod $m {
            use super::*;
            pub use $hm::{MapRead, MapWrite, U64Map};
            pub use $ldnr::NodeReplicated;
            pub fn build(keys: u64) -> NodeReplicated<U64Map> {
                NodeReplicated::builder(U64Map::with_keys(keys))
                    .build()
                    .expect("config")
            }
            /// A write or a read of `nr` by the calling thread, with its own token.
            pub fn op(nr: &NodeReplicated<U64Map>, mixed: bool) -> impl Fn(u64, u64) + Sync + '_ {
                move |k, i| {
                    let tkn = nr.thread_token().expect("register");
                    if writes(mixed, i) {
                        black_box(nr.execute_mut(MapWrite::Insert(black_box(k), i), tkn));
                    } else {
                        black_box(nr.execute(MapRead::Get(black_box(k)), tkn));
                    }
                }
            }
        }
    };
}

version!(old, ldnr_old, ldnr_hashmap_old);
version!(new, ldnr_new, ldnr_hashmap_new);

type Inner = std::collections::HashMap<u64, u64>;

/// A write or a read of the locked map.
fn locked(map: &RwLock<Inner>, mixed: bool) -> impl Fn(u64, u64) + Sync + '_ {
    move |k, i| {
        if writes(mixed, i) {
            black_box(map.write().unwrap().insert(black_box(k), i));
        } else {
            black_box(map.read().unwrap().get(&black_box(k)).copied());
        }
    }
}

/// The map behind a test-and-test-and-set spin lock: the least a lock can do.
struct Spin {
    locked: AtomicBool,
    map: std::cell::UnsafeCell<Inner>,
}

// SAFETY: `map` is accessed only by the holder of `locked`.
unsafe impl Sync for Spin {}

/// A write or a read of the spin-locked map.
fn spun(lock: &Spin, mixed: bool) -> impl Fn(u64, u64) + Sync + '_ {
    move |k, i| {
        while lock.locked.load(Ordering::Relaxed)
            || lock
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held.
        let map = unsafe { &mut *lock.map.get() };
        if writes(mixed, i) {
            black_box(map.insert(black_box(k), i));
        } else {
            black_box(map.get(&black_box(k)).copied());
        }
        lock.locked.store(false, Ordering::Release);
    }
}

/// Delegation, the least a combiner can do: the first thread owns the map and applies
/// its own operations; the second posts each of its operations in a cache line of its
/// own and waits, reading only that line, until the owner, which looks at the line before
/// each of its own operations, has applied it and answered. No log, no lock, no batch;
/// the owner never waits for the other thread.
struct Delegate {
    map: std::cell::UnsafeCell<Inner>,
    /// The posted operation: `seq << 22 | (write as u64) << 21 | (key + 1)`, or 0.
    request: Padded,
    /// The `seq` of the last operation applied, and its response.
    answer: Padded,
    response: AtomicU64,
    /// The second thread's operation count (the second thread only).
    seq: AtomicU64,
    /// The `seq` of the last operation served without a read-modify-write (the owner
    /// only, `serve_plain`).
    served: Padded,
}

/// An atomic word alone in its cache line (two lines: the adjacent-line prefetcher).
#[repr(align(128))]
struct Padded(AtomicU64);

// SAFETY: `map` is accessed only by the first thread (the owner).
unsafe impl Sync for Delegate {}

impl Delegate {
    fn new(map: Inner) -> Self {
        Delegate {
            map: std::cell::UnsafeCell::new(map),
            request: Padded(AtomicU64::new(0)),
            answer: Padded(AtomicU64::new(0)),
            response: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            served: Padded(AtomicU64::new(0)),
        }
    }

    /// Applies the posted operation, if any. The owner only.
    #[inline]
    fn serve(&self, map: &mut Inner) {
        if self.request.0.load(Ordering::Relaxed) == 0 {
            return;
        }
        // Acquire: the poster's operation is complete; the swap (not a store) so that a
        // poster withdrawing at the end of a phase and the owner taking it agree.
        let r = self.request.0.swap(0, Ordering::Acquire);
        if r == 0 {
            return;
        }
        self.apply(map, r);
    }

    /// Serves the posted operation if it has not served it yet (its `seq` is not the
    /// last served), with loads and stores only: a withdrawn operation (0) or one served
    /// already stays in the line until the next is posted. The owner only.
    #[inline]
    fn serve_plain(&self, map: &mut Inner) {
        // Acquire: pairs with the poster's Release store.
        let r = self.request.0.load(Ordering::Acquire);
        if r == 0 || r >> 22 == self.served.0.load(Ordering::Relaxed) {
            return;
        }
        self.served.0.store(r >> 22, Ordering::Relaxed);
        self.apply(map, r);
    }

    /// Applies posted operation `r` and answers it.
    #[inline]
    fn apply(&self, map: &mut Inner, r: u64) {
        let k = (r & ((1 << 21) - 1)) - 1;
        let response = if r & (1 << 21) != 0 {
            map.insert(k, r >> 22)
        } else {
            map.get(&k).copied()
        };
        self.response
            .store(response.unwrap_or(u64::MAX), Ordering::Relaxed);
        // Release: the response is written before the answer says so.
        self.answer.0.store(r >> 22, Ordering::Release);
    }

    /// The owner's operation: serve the other thread (before every `every`th of its
    /// own operations), then apply its own.
    fn owner(&self, mixed: bool, every: u64) -> impl Fn(u64, u64) + Sync + '_ {
        move |k, i| {
            // SAFETY: only the owner (the first thread) runs this closure.
            let map = unsafe { &mut *self.map.get() };
            if i % every == 0 {
                self.serve(map);
            }
            if writes(mixed, i) {
                black_box(map.insert(black_box(k), i));
            } else {
                black_box(map.get(&black_box(k)).copied());
            }
        }
    }

    /// The owner's operation with [`serve_plain`](Self::serve_plain), before its own; or,
    /// with `prefetch`, after it, the request's line asked for (a software prefetch)
    /// before its own operation, so that the line's transfer overlaps that operation.
    fn owner_plain(&self, mixed: bool, prefetch: bool) -> impl Fn(u64, u64) + Sync + '_ {
        move |k, i| {
            // SAFETY: only the owner (the first thread) runs this closure.
            let map = unsafe { &mut *self.map.get() };
            if !prefetch {
                self.serve_plain(map);
            }
            #[cfg(target_arch = "x86_64")]
            if prefetch {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                // SAFETY: a prefetch of a valid address; it reads nothing.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(&self.request).cast()) };
            }
            if writes(mixed, i) {
                black_box(map.insert(black_box(k), i));
            } else {
                black_box(map.get(&black_box(k)).copied());
            }
            if prefetch {
                self.serve_plain(map);
            }
        }
    }

    /// The other thread's operation: post, then wait for the answer or, once `stop` is
    /// set (the owner has stopped serving), withdraw an operation not taken.
    fn poster<'a>(&'a self, mixed: bool, stop: &'a AtomicBool) -> impl Fn(u64, u64) + Sync + 'a {
        move |k, i| {
            let seq = self.seq.load(Ordering::Relaxed) + 1;
            self.seq.store(seq, Ordering::Relaxed);
            let r = seq << 22 | u64::from(writes(mixed, i)) << 21 | (k + 1);
            // Release: pairs with the owner's Acquire swap.
            self.request.0.store(r, Ordering::Release);
            loop {
                // Acquire: pairs with the owner's Release store of the answer.
                if self.answer.0.load(Ordering::Acquire) == seq {
                    black_box(self.response.load(Ordering::Relaxed));
                    break;
                }
                if stop.load(Ordering::Relaxed)
                    && self
                        .request
                        .0
                        .compare_exchange(r, 0, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    break;
                }
                std::hint::spin_loop();
            }
        }
    }
}

/// A lean combining floor, leaner than LD-NR's combining: the lock word holds the stack
/// of waiting operations. A thread that finds the lock free takes it and applies its own
/// operation; one that finds it held pushes its operation (its own cache line) onto the
/// word's stack in the same compare-and-swap that sees it held, and waits on its line.
/// The holder cannot release the lock while the stack holds anything (its release is a
/// compare-and-swap from "held, empty"), so it takes the stack and serves it first: no
/// thread waits for the lock itself, and no pushed operation outlasts the holder's
/// release. Both threads run the same code; whoever holds the lock serves. (With two
/// threads the stack holds at most the other thread's operation; a holder serves for as
/// long as the other keeps pushing before its release succeeds, unbounded in principle.)
/// Two read-modify-writes of the shared word per operation; a floor that polled
/// per-thread lines with plain loads would be leaner still (not measured).
struct Combining {
    map: std::cell::UnsafeCell<Inner>,
    /// [`FREE`](Self::FREE), or held with the stack's top thread + 1 (0: empty) above
    /// bit 0, which is set.
    word: Padded,
    /// Per thread: its posted operation (`(write as u64) << 63 | (key + 1)`), 0 once
    /// served; the response; the next waiting thread + 1.
    slots: [Slot; 2],
}

/// A thread's line in the combining floors.
#[repr(align(128))]
struct Slot {
    request: AtomicU64,
    response: AtomicU64,
    next: AtomicU64,
}

impl Slot {
    fn pair() -> [Slot; 2] {
        std::array::from_fn(|_| Slot {
            request: AtomicU64::new(0),
            response: AtomicU64::new(0),
            next: AtomicU64::new(0),
        })
    }

    /// Serves the stack of `slots` whose top thread + 1 is `top`, applying each operation
    /// to `map` and answering it. Lock holder only.
    fn serve(slots: &[Slot; 2], map: &mut Inner, mut top: u64) {
        while top != 0 {
            let slot = &slots[top as usize - 1];
            // Before the request is marked served: its owner may push again at once.
            top = slot.next.load(Ordering::Relaxed);
            let r = slot.request.load(Ordering::Relaxed);
            slot.response
                .store(Combining::apply(map, r, r), Ordering::Relaxed);
            // Release: the response is written before the request is marked served.
            slot.request.store(0, Ordering::Release);
        }
    }
}

// SAFETY: `map` is accessed only by the holder of the lock in `word`.
unsafe impl Sync for Combining {}

impl Combining {
    const FREE: u64 = 0;
    const HELD: u64 = 1;

    fn new(map: Inner) -> Self {
        Combining {
            map: std::cell::UnsafeCell::new(map),
            word: Padded(AtomicU64::new(Self::FREE)),
            slots: Slot::pair(),
        }
    }

    /// Applies posted operation `r` to `map` (an insert stores `i`).
    #[inline]
    fn apply(map: &mut Inner, r: u64, i: u64) -> u64 {
        let k = (r & !(1 << 63)) - 1;
        let response = if r >> 63 != 0 {
            map.insert(k, i)
        } else {
            map.get(&k).copied()
        };
        response.unwrap_or(u64::MAX)
    }

    /// Releases the lock, serving first every operation pushed while it was held.
    #[inline]
    fn release(&self, map: &mut Inner) {
        loop {
            // Release: our writes to the map happen before the next holder's.
            if self
                .word
                .0
                .compare_exchange(Self::HELD, Self::FREE, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            // Acquire: the pushers' requests are visible.
            let top = self.word.0.swap(Self::HELD, Ordering::Acquire) >> 1;
            Slot::serve(&self.slots, map, top);
        }
    }

    /// The operation of thread `t` (0 or 1).
    fn op(&self, mixed: bool, t: usize) -> impl Fn(u64, u64) + Sync + '_ {
        move |k, i| {
            let slot = &self.slots[t];
            let r = u64::from(writes(mixed, i)) << 63 | (k + 1);
            let mut w = self.word.0.load(Ordering::Relaxed);
            loop {
                if w == Self::FREE {
                    // Acquire: the previous holder's writes to the map.
                    match self.word.0.compare_exchange_weak(
                        w,
                        Self::HELD,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            // SAFETY: the lock is held.
                            let map = unsafe { &mut *self.map.get() };
                            black_box(Self::apply(map, r, i));
                            self.release(map);
                            return;
                        }
                        Err(now) => w = now,
                    }
                } else {
                    slot.request.store(r, Ordering::Relaxed);
                    slot.next.store(w >> 1, Ordering::Relaxed);
                    // Release: the request and link are visible to the holder that takes
                    // the stack.
                    match self.word.0.compare_exchange_weak(
                        w,
                        (t as u64 + 1) << 1 | Self::HELD,
                        Ordering::Release,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            // Acquire: pairs with the holder's Release store.
                            while slot.request.load(Ordering::Acquire) != 0 {
                                std::hint::spin_loop();
                            }
                            black_box(slot.response.load(Ordering::Relaxed));
                            return;
                        }
                        Err(now) => w = now,
                    }
                }
            }
        }
    }
}

/// [`Combining`] with the lock kept by its last holder, a lease: released, the word
/// still names the holder, which takes the lock back at its next operation; the other
/// thread pushes its operation even onto a free lock that names another thread, and the
/// named thread serves it when it comes back (before its own operation, as
/// [`Delegate`]'s owner does). A pusher not served within [`Kept::PATIENCE`] spin-loop
/// hints takes a free lock itself (the holder went away) and so becomes the one named.
/// The floor of a combiner that keeps the structure's lines in its core's cache. Either
/// thread may end up named for all of a row's rounds (the untimed one too): the code is
/// the same for both.
struct Kept {
    map: std::cell::UnsafeCell<Inner>,
    /// Bit 0: held; bits 1–2: the last holder + 1 (0: none yet); above: the stack's top
    /// thread + 1 (0: empty).
    word: Padded,
    slots: [Slot; 2],
}

// SAFETY: `map` is accessed only by the holder of the lock in `word`.
unsafe impl Sync for Kept {}

impl Kept {
    const HELD: u64 = 1;
    /// Spin-loop hints a pusher waits for the named thread before it takes a free lock:
    /// 256, as the LD-NR prototype's 16 × 16 (`bench/ab/tried/lock-kept-by-its-holder.patch`).
    const PATIENCE: u32 = 256;

    fn new(map: Inner) -> Self {
        Kept {
            map: std::cell::UnsafeCell::new(map),
            word: Padded(AtomicU64::new(0)),
            slots: Slot::pair(),
        }
    }

    fn named(w: u64) -> u64 {
        (w >> 1) & 3
    }

    /// Held by thread `t`, nothing pushed.
    fn held_by(t: usize) -> u64 {
        (t as u64 + 1) << 1 | Self::HELD
    }

    /// Takes the lock with the word seen as `w` (free) for thread `t`, serves what was
    /// pushed, applies `own` (if any), serves what was pushed meanwhile and releases the
    /// lock, still naming `t`. `false` if the word changed.
    fn hold(&self, w: u64, t: usize, own: Option<(u64, u64)>) -> bool {
        // Acquire: the previous holder's writes to the map and the pushers' requests.
        if self
            .word
            .0
            .compare_exchange_weak(w, Self::held_by(t), Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // SAFETY: the lock is held.
        let map = unsafe { &mut *self.map.get() };
        Slot::serve(&self.slots, map, w >> 3);
        if let Some((r, i)) = own {
            black_box(Combining::apply(map, r, i));
        }
        loop {
            // Release: our writes to the map happen before the next holder's.
            let free = Self::held_by(t) & !Self::HELD;
            if self
                .word
                .0
                .compare_exchange(Self::held_by(t), free, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
            // Acquire: the pushers' requests are visible.
            let w = self.word.0.swap(Self::held_by(t), Ordering::Acquire);
            Slot::serve(&self.slots, map, w >> 3);
        }
    }

    /// The operation of thread `t` (0 or 1).
    fn op(&self, mixed: bool, t: usize) -> impl Fn(u64, u64) + Sync + '_ {
        move |k, i| {
            let slot = &self.slots[t];
            let r = u64::from(writes(mixed, i)) << 63 | (k + 1);
            loop {
                let w = self.word.0.load(Ordering::Relaxed);
                let named = Self::named(w);
                if w & Self::HELD == 0 && (named == 0 || named == t as u64 + 1) {
                    if self.hold(w, t, Some((r, i))) {
                        return;
                    }
                    continue;
                }
                slot.request.store(r, Ordering::Relaxed);
                slot.next.store(w >> 3, Ordering::Relaxed);
                // Release: the request and link are visible to the holder that takes
                // the stack.
                if self
                    .word
                    .0
                    .compare_exchange_weak(
                        w,
                        (t as u64 + 1) << 3 | (w & 7),
                        Ordering::Release,
                        Ordering::Relaxed,
                    )
                    .is_err()
                {
                    continue;
                }
                let mut spins = 0;
                // Acquire: pairs with the holder's Release store.
                while slot.request.load(Ordering::Acquire) != 0 {
                    spins += 1;
                    // After the patience, a look at the word every 16 hints, not every one
                    // (each look takes the word's line from its holder).
                    if spins >= Self::PATIENCE && spins.is_multiple_of(16) {
                        // The named thread is away: take the free lock, serving the
                        // stack (this operation on it) as its holder.
                        let w = self.word.0.load(Ordering::Relaxed);
                        if w & Self::HELD == 0 {
                            self.hold(w, t, None);
                        }
                    }
                    std::hint::spin_loop();
                }
                black_box(slot.response.load(Ordering::Relaxed));
                return;
            }
        }
    }
}

/// Two threads passing one cache line back and forth (each waits for the other's
/// increment, then increments): ns per increment, the time a line takes to move from
/// one core to the other. Paired with the structures, because on a virtual machine it
/// depends on where the host runs the two vCPUs.
fn transfer<'a>() -> Phase<'a> {
    Box::new(move |phase| {
        let line = Padded(AtomicU64::new(0));
        let stop = AtomicBool::new(false);
        let start = Barrier::new(2);
        let (count, wall) = std::thread::scope(|s| {
            let (line, stop, start) = (&line, &stop, &start);
            s.spawn(move || {
                start.wait();
                // Odd values are this thread's to take.
                loop {
                    let v = line.0.load(Ordering::Acquire);
                    if v % 2 == 1 {
                        line.0.store(v + 1, Ordering::Release);
                    } else if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::hint::spin_loop();
                }
            });
            start.wait();
            let began = Instant::now();
            let mut n = 0u64;
            while began.elapsed() < phase {
                for _ in 0..64 {
                    while line.0.load(Ordering::Acquire) != n {
                        std::hint::spin_loop();
                    }
                    line.0.store(n + 1, Ordering::Release);
                    n += 2;
                }
            }
            while line.0.load(Ordering::Acquire) != n {
                std::hint::spin_loop();
            }
            stop.store(true, Ordering::Relaxed);
            (n, began.elapsed())
        });
        wall.as_nanos() as f64 / count as f64
    })
}

/// One thread inserting into the bare map (the stretch target's yardstick).
fn bare<'a>(map: &'a mut Inner, keys: &'a [u64]) -> Phase<'a> {
    harness::stream(keys, move |k, v| {
        black_box(map.insert(black_box(k), v));
    })
}

/// Runs a row's variants in paired rounds, with the second thread (`second`, serving
/// `theirs` on `keys[1]`) started once for the row. `variants` builds the row's phases;
/// it is handed `two`, which makes the two-thread phase of variant `v` (this thread runs
/// `mine[v]` on `keys[0]` and records the split in `splits[v]`).
fn paired_two<'a>(
    o: &Opts,
    second: &'a Second,
    mine: &'a [Op<'a>],
    theirs: &'a [Op<'a>],
    keys: &'a [Vec<u64>; 2],
    splits: &'a [Mutex<Vec<f64>>],
    variants: impl FnOnce(&dyn Fn(usize) -> Phase<'a>) -> Vec<Phase<'a>>,
) -> Vec<Vec<f64>> {
    std::thread::scope(|s| {
        s.spawn(|| second.serve(theirs, &keys[1]));
        let two = |v: usize| -> Phase<'a> {
            let (op, keys, split) = (mine[v], &keys[0], &splits[v]);
            Box::new(move |phase| second.phase(v, op, keys, phase, split))
        };
        let mut vs = variants(&two);
        let ns = paired(o, &mut vs);
        second.quit();
        ns
    })
}

/// The two threads' key streams for a row of `n` keys (the same in every section).
fn two_streams(n: u64) -> [Vec<u64>; 2] {
    [
        key_stream(0x5eed_0002 ^ n, KEY_STREAM, n),
        key_stream(0x5eed_0003 ^ n, KEY_STREAM, n),
    ]
}

/// The lone bare inserter's key stream for a row of `n` keys.
fn lone_stream(n: u64) -> Vec<u64> {
    key_stream(0x5eed_0004 ^ n, KEY_STREAM, n)
}

/// Two threads' throughput over one bare inserter's (variant 0): bare ns / variant `v`'s
/// ns, per round; median [IQR].
fn vs_bare(ns: &[Vec<f64>], v: usize) -> String {
    let r: Vec<f64> = (0..ns[0].len()).map(|r| ns[0][r] / ns[v][r]).collect();
    let (lo, hi) = iqr(&r);
    format!("{:.2}x [{:.2}–{:.2}]", median(r), lo, hi)
}

fn share(v: &[f64]) -> String {
    let (lo, hi) = iqr(v);
    format!("{:.2} [{:.2}–{:.2}]", median(v.to_vec()), lo, hi)
}

fn section(o: &Opts, mixed: bool) {
    let what = if mixed { "10% writes" } else { "100% writes" };
    o.heading(&format!(
        "{what}: ns per operation of two threads together, 1 replica"
    ));
    table_header(&[
        "keys",
        "bare 1 thread",
        "RwLock",
        "old",
        "new",
        "new/old",
        "new/RwLock",
        "old/RwLock",
        "new vs 1-thread bare (throughput)",
        "line transfer (ns)",
        "new (ns) / transfer",
        "split RwLock",
        "split old",
        "split new",
        "spin lock",
        "spin lock vs 1-thread bare",
        "delegation",
        "delegation vs 1-thread bare",
        "split spin lock",
        "split delegation",
        "delegation, served every 4th vs 1-thread bare",
        "split, every 4th",
    ]);
    for (n, label) in [(1u64 << 16, "64K"), (1 << 20, "1M")] {
        let keys = two_streams(n);
        let lone = lone_stream(n);
        let mut map = ldnr_hashmap_new::U64Map::with_keys(n).0;
        let lock = RwLock::new(ldnr_hashmap_new::U64Map::with_keys(n).0);
        let spin = Spin {
            locked: AtomicBool::new(false),
            map: std::cell::UnsafeCell::new(ldnr_hashmap_new::U64Map::with_keys(n).0),
        };
        let delegate = Delegate::new(ldnr_hashmap_new::U64Map::with_keys(n).0);
        let lazy = Delegate::new(ldnr_hashmap_new::U64Map::with_keys(n).0);
        let o1 = old::build(n);
        let n1 = new::build(n);
        let second = Second::new();
        let (lock_op, old_op, new_op, spin_op) = (
            locked(&lock, mixed),
            old::op(&o1, mixed),
            new::op(&n1, mixed),
            spun(&spin, mixed),
        );
        let (owner_op, poster_op) = (
            delegate.owner(mixed, 1),
            delegate.poster(mixed, &second.stop),
        );
        let (lazy_owner, lazy_poster) = (lazy.owner(mixed, 4), lazy.poster(mixed, &second.stop));
        // The first thread's operations, and the second's (the same but for delegation).
        let ops: [Op<'_>; 6] = [&lock_op, &old_op, &new_op, &spin_op, &owner_op, &lazy_owner];
        let theirs: [Op<'_>; 6] = [
            &lock_op,
            &old_op,
            &new_op,
            &spin_op,
            &poster_op,
            &lazy_poster,
        ];
        let splits: [Mutex<Vec<f64>>; 6] = Default::default();
        let ns = paired_two(o, &second, &ops, &theirs, &keys, &splits, |two| {
            vec![
                bare(&mut map, &lone),
                two(0),
                two(1),
                two(2),
                transfer(),
                two(3),
                two(4),
                two(5),
            ]
        });
        let vs_bare = |v: usize| vs_bare(&ns, v);
        let splits = splits.map(|s| s.into_inner().unwrap());
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            harness::ns_of(&ns, &[0]),
            harness::ns_of(&ns, &[1]),
            harness::ns_of(&ns, &[2]),
            harness::ns_of(&ns, &[3]),
            pooled(&ns, &[3], &[2]),
            pooled(&ns, &[3], &[1]),
            pooled(&ns, &[2], &[1]),
            vs_bare(3),
            harness::ns_of(&ns, &[4]),
            pooled(&ns, &[3], &[4]),
            share(&splits[0]),
            share(&splits[1]),
            share(&splits[2]),
            harness::ns_of(&ns, &[5]),
            vs_bare(5),
            harness::ns_of(&ns, &[6]),
            vs_bare(6),
            share(&splits[3]),
            share(&splits[4]),
            vs_bare(7),
            share(&splits[5]),
        );
    }
}

/// One thread's operation latencies: a log-linear histogram (exact below 128 ns, then
/// 16 buckets per power of two, so within 6.25%).
struct Hist(std::cell::UnsafeCell<Vec<u64>>);

// SAFETY: each histogram is written by one thread only (its `timed` wrapper is that
// thread's operation), and read after the phases, once both threads have stopped.
unsafe impl Sync for Hist {}

const LINEAR: u64 = 128;

impl Hist {
    fn new() -> Self {
        Hist(std::cell::UnsafeCell::new(vec![0; 128 + 58 * 16]))
    }

    fn bucket(ns: u64) -> usize {
        if ns < LINEAR {
            return ns as usize;
        }
        let e = 63 - u64::from(ns.leading_zeros());
        (LINEAR + (e - 7) * 16 + ((ns >> (e - 4)) & 15)) as usize
    }

    /// The least latency bucket `b` holds.
    fn floor(b: usize) -> u64 {
        let b = b as u64;
        if b < LINEAR {
            return b;
        }
        let (e, m) = ((b - LINEAR) / 16 + 7, (b - LINEAR) % 16);
        (16 + m) << (e - 4)
    }

    /// The latency at quantile `q` of the histograms `hs` together: the lower edge of
    /// the bucket it falls in (so up to 6.25% low).
    fn quantile(hs: &[&Hist], q: f64) -> u64 {
        // SAFETY: read once both threads have stopped writing (see `Sync`).
        let hs: Vec<&Vec<u64>> = hs.iter().map(|h| unsafe { &*h.0.get() }).collect();
        let total: u64 = hs.iter().flat_map(|h| h.iter()).sum();
        let want = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for i in 0..hs[0].len() {
            seen += hs.iter().map(|h| h[i]).sum::<u64>();
            if seen >= want {
                return Self::floor(i);
            }
        }
        Self::floor(hs[0].len() - 1)
    }
}

/// `op`, each call timed into `hist` (the calling thread's).
fn timed<'a>(op: Op<'a>, hist: &'a Hist, mixed: bool) -> impl Fn(u64, u64) + Sync + 'a {
    move |k, i| {
        if !writes(mixed, i) {
            op(k, i);
            return;
        }
        let t = Instant::now();
        op(k, i);
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // SAFETY: only this thread writes `hist` (see `Sync`).
        let counts = unsafe { &mut *hist.0.get() };
        let last = counts.len() - 1;
        counts[Hist::bucket(ns).min(last)] += 1;
    }
}

/// Two threads writing, every operation timed (a clock read before and after each,
/// which the throughput includes), or with `mixed` 10% writes and only the writes timed:
/// latency quantiles over both threads' timed operations in all rounds, the warm-up
/// round included, for the `RwLock`, both LD-NR commits and the spin lock. What a
/// waiting writer pays for the throughput of the others.
fn latency(o: &Opts, mixed: bool) {
    o.heading(if mixed {
        "10% writes, every write timed: ns per operation of two threads together, and latency quantiles of their writes (ns)"
    } else {
        "100% writes, every operation timed: ns per operation of two threads together, and latency quantiles of their operations (ns)"
    });
    table_header(&[
        "keys",
        "variant",
        "ns/op",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "p99 first thread",
        "p99 second thread",
        "split",
    ]);
    for (n, label) in [(1u64 << 16, "64K"), (1 << 20, "1M")] {
        let keys = two_streams(n);
        let lock = RwLock::new(ldnr_hashmap_new::U64Map::with_keys(n).0);
        let spin = Spin {
            locked: AtomicBool::new(false),
            map: std::cell::UnsafeCell::new(ldnr_hashmap_new::U64Map::with_keys(n).0),
        };
        let o1 = old::build(n);
        let n1 = new::build(n);
        let second = Second::new();
        let (lock_op, old_op, new_op, spin_op) = (
            locked(&lock, mixed),
            old::op(&o1, mixed),
            new::op(&n1, mixed),
            spun(&spin, mixed),
        );
        let plain: [Op<'_>; 4] = [&lock_op, &old_op, &new_op, &spin_op];
        let hists: [[Hist; 2]; 4] = std::array::from_fn(|_| [Hist::new(), Hist::new()]);
        let mine: Vec<_> = (0..4)
            .map(|v| timed(plain[v], &hists[v][0], mixed))
            .collect();
        let theirs: Vec<_> = (0..4)
            .map(|v| timed(plain[v], &hists[v][1], mixed))
            .collect();
        let mine: Vec<Op<'_>> = mine.iter().map(|f| f as Op<'_>).collect();
        let theirs: Vec<Op<'_>> = theirs.iter().map(|f| f as Op<'_>).collect();
        let splits: [Mutex<Vec<f64>>; 4] = Default::default();
        let ns = paired_two(o, &second, &mine, &theirs, &keys, &splits, |two| {
            (0..4).map(two).collect()
        });
        let splits = splits.map(|s| s.into_inner().unwrap());
        for (v, name) in ["RwLock", "old", "new", "spin lock"].iter().enumerate() {
            let [a, b] = &hists[v];
            println!(
                "| {label} | {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
                harness::ns_of(&ns, &[v]),
                Hist::quantile(&[a, b], 0.5),
                Hist::quantile(&[a, b], 0.9),
                Hist::quantile(&[a, b], 0.99),
                Hist::quantile(&[a, b], 0.999),
                Hist::quantile(&[a], 0.99),
                Hist::quantile(&[b], 0.99),
                share(&splits[v]),
            );
        }
    }
}

/// Delegation floors without a read-modify-write on the owner's path (100% writes): the
/// owner serving before each of its operations with loads and stores only, and the same
/// serving after its own operation, the request's line prefetched before it; then the
/// two combining floors ([`Combining`], [`Kept`]) and LD-NR (`new`), paired with them. Does
/// delegation reach the stretch target at 64K keys once its owner's operations can
/// overlap their misses (no locked instruction between them) and the line transfer
/// hides behind the owner's own work? It did not (5854317, one run): 0.39×, 0.37× and
/// 0.37× the lone bare insert's throughput at 64K keys (swap, loads and stores,
/// prefetched), 0.51×, 0.51× and 0.53× at 1M, the second thread's share 0.15–0.16 and
/// 0.27–0.29.
fn delegation(o: &Opts) {
    o.heading("delegation floors, 100% writes: ns per operation of two threads together; throughput over one bare inserter's; the slower thread's share");
    table_header(&[
        "keys",
        "bare 1 thread",
        "delegation (swap)",
        "vs bare",
        "split",
        "no RMW",
        "vs bare",
        "split",
        "no RMW, prefetched",
        "vs bare",
        "split",
        "combining in the lock word",
        "vs bare",
        "split",
        "the same, lock kept",
        "vs bare",
        "split",
        "LD-NR (new)",
        "vs bare",
        "split",
        "line transfer (ns)",
    ]);
    for (n, label) in [(1u64 << 16, "64K"), (1 << 20, "1M")] {
        let keys = two_streams(n);
        let lone = lone_stream(n);
        let mut map = ldnr_hashmap_new::U64Map::with_keys(n).0;
        let floors: [Delegate; 3] =
            std::array::from_fn(|_| Delegate::new(ldnr_hashmap_new::U64Map::with_keys(n).0));
        let second = Second::new();
        let (swap_owner, plain_owner, prefetching_owner) = (
            floors[0].owner(false, 1),
            floors[1].owner_plain(false, false),
            floors[2].owner_plain(false, true),
        );
        let posters: [_; 3] = std::array::from_fn(|f| floors[f].poster(false, &second.stop));
        let combining = Combining::new(ldnr_hashmap_new::U64Map::with_keys(n).0);
        let (first, other) = (combining.op(false, 0), combining.op(false, 1));
        let kept = Kept::new(ldnr_hashmap_new::U64Map::with_keys(n).0);
        let (kept_first, kept_other) = (kept.op(false, 0), kept.op(false, 1));
        let nr = new::build(n);
        let nr_op = new::op(&nr, false);
        let ops: [Op<'_>; 6] = [
            &swap_owner,
            &plain_owner,
            &prefetching_owner,
            &first,
            &kept_first,
            &nr_op,
        ];
        let theirs: [Op<'_>; 6] = [
            &posters[0],
            &posters[1],
            &posters[2],
            &other,
            &kept_other,
            &nr_op,
        ];
        let splits: [Mutex<Vec<f64>>; 6] = Default::default();
        let ns = paired_two(o, &second, &ops, &theirs, &keys, &splits, |two| {
            vec![
                bare(&mut map, &lone),
                two(0),
                two(1),
                two(2),
                two(3),
                two(4),
                two(5),
                transfer(),
            ]
        });
        floor_row(label, &ns, &splits.map(|s| s.into_inner().unwrap()));
    }
}

/// A row of the `delegation` and `unfair` tables: the bare insert, then each two-thread
/// variant's ns, throughput over the bare insert's and split, then the line transfer
/// (phases: the bare insert, one per split, the transfer).
fn floor_row(label: &str, ns: &[Vec<f64>], splits: &[Vec<f64>]) {
    let mut cells = vec![harness::ns_of(ns, &[0])];
    for (v, split) in (1..).zip(splits) {
        cells.extend([harness::ns_of(ns, &[v]), vs_bare(ns, v), share(split)]);
    }
    cells.push(harness::ns_of(ns, &[splits.len() + 1]));
    println!("| {label} | {} |", cells.join(" | "));
}

/// The price of the stretch target in fairness: delegation whose owner serves the other
/// thread before one in every 1, 2, 4, 8, 16 and 64 of its own operations, next to the
/// `RwLock` and LD-NR (`new`); 100% writes.
fn unfair(o: &Opts) {
    const EVERY: [u64; 6] = [1, 2, 4, 8, 16, 64];
    o.heading("delegation served every Nth, 100% writes: ns per operation of two threads together; throughput over one bare inserter's; the slower thread's share");
    let mut header = vec!["keys".to_string(), "bare 1 thread".to_string()];
    for name in EVERY
        .iter()
        .map(|e| format!("delegation, every {e}"))
        .chain(["RwLock".to_string(), "LD-NR (new)".to_string()])
    {
        header.extend([name, "vs bare".to_string(), "split".to_string()]);
    }
    header.push("line transfer (ns)".to_string());
    table_header(&header.iter().map(String::as_str).collect::<Vec<_>>());
    for (n, label) in [(1u64 << 16, "64K"), (1 << 20, "1M")] {
        let keys = two_streams(n);
        let lone = lone_stream(n);
        let mut map = ldnr_hashmap_new::U64Map::with_keys(n).0;
        let floors: [Delegate; EVERY.len()] =
            std::array::from_fn(|_| Delegate::new(ldnr_hashmap_new::U64Map::with_keys(n).0));
        let second = Second::new();
        let owners: [_; EVERY.len()] = std::array::from_fn(|f| floors[f].owner(false, EVERY[f]));
        let posters: [_; EVERY.len()] =
            std::array::from_fn(|f| floors[f].poster(false, &second.stop));
        let lock = RwLock::new(ldnr_hashmap_new::U64Map::with_keys(n).0);
        let lock_op = locked(&lock, false);
        let nr = new::build(n);
        let nr_op = new::op(&nr, false);
        // Each delegation floor's owner and poster, then the `RwLock` and LD-NR, which
        // both threads run alike.
        let mut ops: Vec<Op<'_>> = owners.iter().map(|owner| owner as Op<'_>).collect();
        let mut theirs: Vec<Op<'_>> = posters.iter().map(|poster| poster as Op<'_>).collect();
        for both in [&lock_op as Op<'_>, &nr_op] {
            ops.push(both);
            theirs.push(both);
        }
        let splits: Vec<Mutex<Vec<f64>>> = (0..ops.len()).map(|_| Mutex::default()).collect();
        let ns = paired_two(o, &second, &ops, &theirs, &keys, &splits, |two| {
            let mut v = vec![bare(&mut map, &lone)];
            v.extend((0..ops.len()).map(two));
            v.push(transfer());
            v
        });
        let splits: Vec<Vec<f64>> = splits
            .into_iter()
            .map(|s| s.into_inner().unwrap())
            .collect();
        floor_row(label, &ns, &splits);
    }
}

fn main() {
    let o = Opts::from_args();
    println!("{}", harness::commits());
    if o.wants("write") {
        section(&o, false);
    }
    if o.wants("mixed") {
        section(&o, true);
    }
    if o.wants("latency") {
        latency(&o, false);
    }
    if o.wants("latency-mixed") {
        latency(&o, true);
    }
    if o.wants("delegation") {
        delegation(&o);
    }
    if o.wants("unfair") {
        unfair(&o);
    }
}
