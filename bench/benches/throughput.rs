//! Two-thread throughput of a pre-filled `u64 → u64` hash map of 64K and 1M keys, at 0 %,
//! 10 % and 100 % writes, for:
//!
//! - `ldnr1`, `ldnr2`: LD-NR over `ldnr_hashmap::U64Map` with one replica, and with two
//!   replicas on node 0 (the two threads are matched one to each);
//! - `nr1`, `nr2`: node-replication 0.1.1 over the same map and operations, one replica,
//!   and two (thread `i` registers with replica `i`);
//! - `dashmap`: dashmap 6, the concurrent-map baseline (see `ldnr_bench`).
//!
//! The systems are the driver's (`ldnr_bench::system`): the same builders, handles and
//! labels; both logs hold 32,768 entries (`LOG_ENTRIES`, `NR_LOG_BYTES`), as in the
//! driver's experiments. LD-NR runs under a one-node `SimulatedAffinity` placement.
//!
//! # How it is measured
//!
//! Each benchmark spawns two worker threads once; they register with the structure and
//! then wait, parked, for criterion's measurements. A measurement of `iters` operations
//! (`iter_custom`) offers `⌈iters/2⌉` operations to worker 0 and `⌊iters/2⌋` to worker 1;
//! both spin on a start line and each times its own run. The first worker to finish its
//! share raises a stop flag, which the other checks every [`CHUNK`] operations, so both
//! threads are busy for (nearly) the whole measured time: from the first start to the
//! last finish. The pair's throughput is the operations both completed over that time,
//! handed to criterion as the time `iters` operations take at that rate (criterion then
//! reports elements per second).
//!
//! A worker that has stopped keeps its replica live until the other finishes: node-
//! replication 0.1.1 stalls when no thread drives a replica (its log fills), and a
//! thread waiting for a combiner re-checks only every 2^29 spins, so a finished worker
//! issues a harmless write (`0 → 0`) in a loop while the other may have a write pending,
//! and `sync`s its replica otherwise. LD-NR needs no help (a waiting thread takes the
//! combiner lock as soon as it is free, and lagging replicas are caught up by others);
//! dashmap needs none either. If NR still makes no progress for [`STALL_LIMIT`] (it can,
//! when the machine is busy), the bench prints `STALLED`, reports no meaningful numbers
//! for it, and goes on; a hang of any other system fails the bench.
//!
//! Each operation reads or writes one key, uniform in the pre-filled range; a write
//! stores the key as its value, so the map's contents never change (checked at the end).
//! Keys and the read/write choice come from a fixed-seed xorshift stream, one per
//! worker, generated before measuring.
//!
//! The threads are not pinned; on a 2-core machine each gets a core to itself as long
//! as the machine is otherwise idle.
//!
//! Run: `cargo bench -p ldnr-bench --bench throughput`; smoke test (each benchmark once):
//! `cargo bench -p ldnr-bench --bench throughput -- --test`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use ldnr_bench::system::{Body, Handle, Kind, Policy, Seat, System};
use ldnr_bench::workload::Op;
use ldnr_testkit::nodes::{Affinity, Placement};
use ldnr_testkit::rng::Rng;

/// Operations pre-generated per worker (a power of two). 8 MiB each, read sequentially.
const OP_STREAM: usize = 1 << 20;

/// Map sizes and their labels.
const SIZES: [(u64, &str); 2] = [(1 << 16, "64K"), (1 << 20, "1M")];

/// Write percentages and their labels.
const WRITES: [(u64, &str); 3] = [(0, "0%"), (10, "10%"), (100, "100%")];

/// A worker checks the stop flag every `CHUNK` operations.
const CHUNK: u64 = 64;

/// How long a measurement may take before the bench gives up on a hung worker.
const HANG_LIMIT: Duration = Duration::from_secs(300);

/// How long a system that is known to stall (node-replication 0.1.1) may make no
/// progress before the bench reports it stalled and moves on without it.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// An encoded operation: the key in the low 56 bits, a roll in `0..100` in the top 8.
/// It is a write when the roll is below the write percentage, so one stream serves
/// every write ratio.
type Code = u64;

const ROLL_SHIFT: u32 = 56;

/// The `OP_STREAM` operations of worker `index` on a map of `keys` keys.
fn op_stream(keys: u64, index: usize) -> Vec<Code> {
    let mut rng = Rng::new(0x7412_0000 + index as u64);
    (0..OP_STREAM)
        .map(|_| {
            let key = rng.next_u64() % keys;
            let roll = rng.next_u64() % 100;
            key | (roll << ROLL_SHIFT)
        })
        .collect()
}

/// One worker's operations and where it is in them.
struct Stream {
    ops: Vec<Code>,
    at: usize,
}

impl Stream {
    /// The next `n` operations, decoded; a write stores its key as the value, so the
    /// map's contents never change.
    #[inline]
    fn take(&mut self, n: u64, write_pct: u64) -> impl Iterator<Item = Op> + '_ {
        const MASK: usize = OP_STREAM - 1;
        (0..n).map(move |_| {
            let code = self.ops[self.at];
            self.at = (self.at + 1) & MASK;
            let key = black_box(code & ((1 << ROLL_SHIFT) - 1));
            Op {
                write: code >> ROLL_SHIFT < write_pct,
                key,
                value: key,
            }
        })
    }
}

/// Runs up to `job.ops` operations of the stream through `handle`, stopping early (at
/// a multiple of [`CHUNK`]) once `stop` is set; returns how many it ran.
#[inline(always)]
fn drive<H: Handle>(handle: &mut H, stream: &mut Stream, job: Job, stop: &AtomicBool) -> u64 {
    let mut done = 0;
    while done < job.ops {
        let chunk = CHUNK.min(job.ops - done);
        handle.run(stream.take(chunk, job.write_pct));
        done += chunk;
        // Relaxed: the flag carries no data, it only ends the run early.
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    done
}

/// One measurement for one worker.
#[derive(Clone, Copy)]
struct Job {
    ops: u64,
    write_pct: u64,
}

/// When one worker ran its part of a measurement, and how many operations it ran.
struct Span {
    start: Instant,
    end: Instant,
    ops: u64,
}

/// The two persistent workers of one benchmark.
struct Pool {
    jobs: Vec<mpsc::Sender<Job>>,
    spans: mpsc::Receiver<Span>,
    /// Raised by the first worker to finish its share; lowered before each measurement.
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// `Some(limit)` for a system that may stall: a measurement without progress for
    /// `limit` marks the pool stalled instead of failing the bench.
    stall_limit: Option<Duration>,
    /// Set once a measurement stalled: later ones return at once, and the (stuck)
    /// workers are left behind instead of joined.
    stalled: std::cell::Cell<bool>,
}

impl Pool {
    const WORKERS: u64 = 2;

    /// Spawns the workers on `system` with their operation streams; returns once both
    /// have registered and passed the sanity checks.
    fn new(system: Arc<System>, keys: u64) -> Self {
        // Both count up by one per worker and measurement; measurement `g` (from 0)
        // starts when `started` reaches 2(g+1) and is over when `finished` does.
        let started = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (span_tx, spans) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for index in 0..Self::WORKERS as usize {
            let (job_tx, job_rx) = mpsc::channel::<Job>();
            jobs.push(job_tx);
            let (system, started, finished, stop) = (
                Arc::clone(&system),
                Arc::clone(&started),
                Arc::clone(&finished),
                Arc::clone(&stop),
            );
            let (span_tx, ready_tx) = (span_tx.clone(), ready_tx.clone());
            threads.push(thread::spawn(move || {
                let worker = PoolWorker {
                    stream: Stream {
                        ops: op_stream(keys, index),
                        at: 0,
                    },
                    jobs: job_rx,
                    started,
                    finished,
                    stop,
                    spans: span_tx,
                    ready: ready_tx,
                };
                system.work(Seat { index, home: index }, worker);
            }));
        }
        for _ in 0..Self::WORKERS {
            ready
                .recv_timeout(HANG_LIMIT)
                .expect("a worker failed to register or its sanity check failed");
        }
        system.check_placement();
        Self {
            jobs,
            spans,
            stop,
            threads,
            stall_limit: system.may_stall().then_some(STALL_LIMIT),
            stalled: std::cell::Cell::new(false),
        }
    }

    /// Offers `iters` operations split over the workers; returns the time `iters`
    /// operations take at the rate they ran, from the first start to the last finish.
    fn measure(&self, iters: u64, write_pct: u64) -> Duration {
        if self.stalled.get() {
            // Reported already; an hour per measurement keeps criterion's loop short.
            return Duration::from_secs(3600);
        }
        // The workers are parked: the channel sends below order this store before
        // their runs.
        self.stop.store(false, Ordering::Relaxed);
        let shares = [iters.div_ceil(2), iters / 2];
        for (tx, ops) in self.jobs.iter().zip(shares) {
            tx.send(Job { ops, write_pct })
                .expect("workers outlive the pool");
        }
        let mut first = None::<Instant>;
        let mut last = None::<Instant>;
        let mut ran = 0;
        for _ in 0..Self::WORKERS {
            let s = match self
                .spans
                .recv_timeout(self.stall_limit.unwrap_or(HANG_LIMIT))
            {
                Ok(s) => s,
                Err(mpsc::RecvTimeoutError::Timeout) if self.stall_limit.is_some() => {
                    eprintln!(
                        "STALLED: no progress for {STALL_LIMIT:?} at {write_pct}% writes \
                         (node-replication 0.1.1's known stall); its results are not \
                         meaningful and its threads are left behind"
                    );
                    self.stalled.set(true);
                    return Duration::from_secs(3600);
                }
                Err(e) => panic!("a worker hung or panicked during a measurement: {e:?}"),
            };
            first = Some(first.map_or(s.start, |f| f.min(s.start)));
            last = Some(last.map_or(s.end, |l| l.max(s.end)));
            ran += s.ops;
        }
        let elapsed = last.expect("two spans") - first.expect("two spans");
        // `ran` ≥ 1: the worker with the larger share runs at least one chunk.
        let nanos = elapsed.as_nanos() * u128::from(iters) / u128::from(ran);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// One worker of a [`Pool`], run with its handle: checks a few pre-filled keys, then
/// runs the measurements it is sent until the pool closes its channel.
struct PoolWorker {
    stream: Stream,
    jobs: mpsc::Receiver<Job>,
    /// Both count up by one per worker and measurement: see [`Pool::new`].
    started: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    spans: mpsc::Sender<Span>,
    ready: mpsc::Sender<()>,
}

impl Body for PoolWorker {
    type Out = ();

    fn run<H: Handle>(mut self, mut handle: H) {
        for &code in &self.stream.ops[..1024] {
            let key = code & ((1 << ROLL_SHIFT) - 1);
            assert_eq!(handle.get(key), Some(key), "pre-filled key {key}");
        }
        self.ready.send(()).expect("the pool waits for its workers");
        let mut line = 0;
        // Parked here between measurements; ends when the pool drops its senders.
        while let Ok(job) = self.jobs.recv() {
            line += Pool::WORKERS;
            // Relaxed: the counters only mark the start and end lines; no data is
            // published through them (the spans go through the channel).
            self.started.fetch_add(1, Ordering::Relaxed);
            while self.started.load(Ordering::Relaxed) < line {
                std::hint::spin_loop();
            }
            let start = Instant::now();
            let ops = drive(&mut handle, &mut self.stream, job, &self.stop);
            let end = Instant::now();
            self.stop.store(true, Ordering::Relaxed);
            self.finished.fetch_add(1, Ordering::Relaxed);
            while self.finished.load(Ordering::Relaxed) < line {
                handle.idle(job.write_pct > 0);
            }
            if self.spans.send(Span { start, end, ops }).is_err() {
                return;
            }
        }
    }
}

/// Checks, after a run, that every `step`-th key below `keys` still maps to itself.
struct Unchanged {
    name: String,
    keys: u64,
    step: usize,
}

impl Body for Unchanged {
    type Out = ();

    fn run<H: Handle>(self, mut handle: H) {
        for key in (0..self.keys).step_by(self.step) {
            assert_eq!(
                handle.get(key),
                Some(key),
                "{}: key {key} after the run",
                self.name
            );
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the job channels ends the workers' loops.
        self.jobs.clear();
        if self.stalled.get() {
            // Stuck inside the system: detach them (the process exit ends them).
            self.threads.clear();
            return;
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() && !thread::panicking() {
                panic!("a worker panicked");
            }
        }
    }
}

/// Benchmarks `kind` at every write ratio with one pool of workers, then checks that
/// the contents are unchanged.
fn bench_system(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    kind: Kind,
    keys: u64,
) {
    // LD-NR on one (pretend) node: its two replicas there, the two workers matched one
    // to each by load. The workers are not pinned.
    let placement = Placement::new(Affinity::Simulated, 1, false);
    let system = Arc::new(kind.build(keys, &placement, Pool::WORKERS as usize + 1));
    let name = system.name();
    let pool = Pool::new(Arc::clone(&system), keys);
    for (pct, label) in WRITES {
        g.bench_function(BenchmarkId::new(&name, label), |b| {
            b.iter_custom(|iters| pool.measure(iters, pct))
        });
    }
    let stalled = pool.stalled.get();
    drop(pool);
    if stalled {
        // The stuck workers still hold the system; checking it could hang too.
        std::mem::forget(system);
        return;
    }
    let check = Unchanged {
        name,
        keys,
        step: 997,
    };
    system.work(Seat { index: 0, home: 0 }, check);
}

fn benches(c: &mut Criterion) {
    for (keys, label) in SIZES {
        let mut g = c.benchmark_group(format!("throughput/{label}"));
        g.throughput(Throughput::Elements(1));
        for kind in [
            Kind::Ldnr(Policy::Static(1)),
            Kind::Ldnr(Policy::Static(2)),
            Kind::Nr(1),
            Kind::Nr(2),
            Kind::DashMap,
        ] {
            bench_system(&mut g, kind, keys);
        }
        g.finish();
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
}
