//! Two-thread throughput of a pre-filled `u64 → u64` hash map of 64K and 1M keys, at 0 %,
//! 10 % and 100 % writes, for:
//!
//! - `ldnr1`, `ldnr2`: LD-NR over `ldnr_hashmap::U64Map` with one replica, and with two
//!   replicas on node 0 (the two threads are matched one to each);
//! - `nr1`, `nr2`: node-replication 0.1.1 over the same map and operations, one replica,
//!   and two (thread `i` registers with replica `i`);
//! - `dashmap`: dashmap 6, the concurrent-map baseline (see `ldnr_bench`).
//!
//! Both logs hold 32,768 entries (`ldnr_bench::systems::{LOG_ENTRIES,
//! NR_LOG_BYTES}`), as in the demo's experiments.
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
//! Run: `cargo bench --bench throughput`; smoke test (each benchmark once):
//! `cargo bench --bench throughput -- --test`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use ldnr::{NodeId, NodeReplicated};
use ldnr_bench::nr::NrMap;
use ldnr_bench::runner::XorShift;
use ldnr_bench::systems::{LOG_ENTRIES, NR_LOG_BYTES};
use ldnr_hashmap::{MapRead, MapWrite, U64Map};

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
type Op = u64;

const ROLL_SHIFT: u32 = 56;

/// The `OP_STREAM` operations of worker `index` on a map of `keys` keys.
fn op_stream(keys: u64, index: usize) -> Vec<Op> {
    let mut rng = XorShift::new(0x7412_0000 + index as u64);
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
    ops: Vec<Op>,
    at: usize,
}

/// Runs up to `job.ops` operations of the stream, reads with `get` and writes with
/// `put`, stopping early (at a multiple of [`CHUNK`]) once `stop` is set; returns how
/// many it ran. Monomorphized per structure, so the loop holds no dynamic call.
#[inline(always)]
fn drive<G, P>(stream: &mut Stream, job: Job, stop: &AtomicBool, mut get: G, mut put: P) -> u64
where
    G: FnMut(u64) -> Option<u64>,
    P: FnMut(u64, u64) -> Option<u64>,
{
    const MASK: usize = OP_STREAM - 1;
    let mut i = stream.at;
    let mut done = 0;
    while done < job.ops {
        let chunk = CHUNK.min(job.ops - done);
        for _ in 0..chunk {
            let op = stream.ops[i];
            i = (i + 1) & MASK;
            let key = op & ((1 << ROLL_SHIFT) - 1);
            if op >> ROLL_SHIFT < job.write_pct {
                black_box(put(black_box(key), key));
            } else {
                black_box(get(black_box(key)));
            }
        }
        done += chunk;
        // Relaxed: the flag carries no data, it only ends the run early.
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    stream.at = i;
    done
}

/// One worker's registration with a structure.
trait Worker {
    /// A read, for the sanity checks.
    fn get(&mut self, key: u64) -> Option<u64>;
    /// Runs the job; returns how many operations it ran (see [`drive`]).
    fn run(&mut self, stream: &mut Stream, job: Job, stop: &AtomicBool) -> u64;
    /// Called in a loop while this worker is done and the other is not.
    fn idle(&mut self, _job: Job) {
        std::hint::spin_loop();
    }
}

/// A structure under test, shared by both workers.
trait System: Send + Sync + 'static {
    /// Registers the calling thread, the `index`-th worker.
    fn worker(&self, index: usize) -> Box<dyn Worker + '_>;
    /// Checks, after the workers are ready, that they use the replicas as intended.
    fn check_placement(&self) {}
    /// Whether the system can stall by design (then a hang is reported, not a failure).
    fn may_stall(&self) -> bool {
        false
    }
}

struct Ldnr(NodeReplicated<U64Map>);

impl Ldnr {
    fn new(keys: u64, replicas: usize) -> Self {
        let nr = NodeReplicated::builder(U64Map::with_keys(keys))
            .replicas(&vec![NodeId(0); replicas])
            .log_capacity(LOG_ENTRIES)
            .build()
            .expect("a valid LD-NR configuration");
        Self(nr)
    }
}

struct LdnrWorker<'a> {
    nr: &'a NodeReplicated<U64Map>,
    tkn: ldnr::ThreadToken,
}

impl Worker for LdnrWorker<'_> {
    fn get(&mut self, key: u64) -> Option<u64> {
        self.nr.execute(MapRead::Get(key), self.tkn)
    }

    fn run(&mut self, stream: &mut Stream, job: Job, stop: &AtomicBool) -> u64 {
        let (nr, tkn) = (self.nr, self.tkn);
        drive(
            stream,
            job,
            stop,
            |k| nr.execute(MapRead::Get(k), tkn),
            |k, v| nr.execute_mut(MapWrite::Insert(k, v), tkn),
        )
    }
}

impl System for Ldnr {
    fn worker(&self, _index: usize) -> Box<dyn Worker + '_> {
        let tkn = self.0.register().expect("two threads are within the limit");
        Box::new(LdnrWorker { nr: &self.0, tkn })
    }

    fn check_placement(&self) {
        // register() matches each worker to the replica serving the fewest threads.
        assert!(
            self.0.replicas().iter().all(|r| r.threads >= 1),
            "a replica serves no worker: {:?}",
            self.0.replicas()
        );
    }
}

struct Nr(Vec<Arc<node_replication::Replica<'static, NrMap>>>);

impl Nr {
    fn new(keys: u64, replicas: usize) -> Self {
        let log = Arc::new(node_replication::Log::<MapWrite>::new(NR_LOG_BYTES));
        let map = NrMap(U64Map::with_keys(keys));
        Self(
            (0..replicas)
                .map(|_| node_replication::Replica::with_data(&log, map.clone()))
                .collect(),
        )
    }
}

struct NrWorker<'a> {
    replica: &'a node_replication::Replica<'static, NrMap>,
    tkn: node_replication::ReplicaToken,
}

impl Worker for NrWorker<'_> {
    fn get(&mut self, key: u64) -> Option<u64> {
        self.replica.execute(MapRead::Get(key), self.tkn)
    }

    fn run(&mut self, stream: &mut Stream, job: Job, stop: &AtomicBool) -> u64 {
        let (replica, tkn) = (self.replica, self.tkn);
        drive(
            stream,
            job,
            stop,
            |k| replica.execute(MapRead::Get(k), tkn),
            |k, v| replica.execute_mut(MapWrite::Insert(k, v), tkn),
        )
    }

    fn idle(&mut self, job: Job) {
        // See the module docs: combine for a thread that may be waiting, or at least
        // keep this replica applying the log. Key 0 already maps to 0.
        if job.write_pct > 0 {
            black_box(self.replica.execute_mut(MapWrite::Insert(0, 0), self.tkn));
        } else {
            self.replica.sync(self.tkn);
        }
    }
}

impl System for Nr {
    fn may_stall(&self) -> bool {
        // A thread waiting for its write re-checks only every 2^29 spins, and a replica
        // no thread drives fills the log; under CPU contention that can last for ever.
        true
    }

    fn worker(&self, index: usize) -> Box<dyn Worker + '_> {
        let replica = &self.0[index % self.0.len()];
        let tkn = replica
            .register()
            .expect("two threads are within NR's per-replica limit");
        Box::new(NrWorker { replica, tkn })
    }
}

struct Dash(dashmap::DashMap<u64, u64>);

impl Dash {
    fn new(keys: u64) -> Self {
        let m = dashmap::DashMap::with_capacity(keys as usize);
        (0..keys).for_each(|k| {
            m.insert(k, k);
        });
        Self(m)
    }
}

struct DashWorker<'a>(&'a dashmap::DashMap<u64, u64>);

impl Worker for DashWorker<'_> {
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.get(&key).map(|v| *v)
    }

    fn run(&mut self, stream: &mut Stream, job: Job, stop: &AtomicBool) -> u64 {
        let m = self.0;
        drive(
            stream,
            job,
            stop,
            |k| m.get(&k).map(|v| *v),
            |k, v| m.insert(k, v),
        )
    }
}

impl System for Dash {
    fn worker(&self, _index: usize) -> Box<dyn Worker + '_> {
        Box::new(DashWorker(&self.0))
    }
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
    fn new<S: System>(system: Arc<S>, keys: u64) -> Self {
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
                let mut stream = Stream {
                    ops: op_stream(keys, index),
                    at: 0,
                };
                let mut worker = system.worker(index);
                for &op in &stream.ops[..1024] {
                    let key = op & ((1 << ROLL_SHIFT) - 1);
                    assert_eq!(worker.get(key), Some(key), "pre-filled key {key}");
                }
                ready_tx.send(()).expect("the pool waits for its workers");
                let mut line = 0;
                // Parked here between measurements; ends when the pool drops its senders.
                while let Ok(job) = job_rx.recv() {
                    line += Self::WORKERS;
                    // Relaxed: the counters only mark the start and end lines; no data
                    // is published through them (the spans go through the channel).
                    started.fetch_add(1, Ordering::Relaxed);
                    while started.load(Ordering::Relaxed) < line {
                        std::hint::spin_loop();
                    }
                    let start = Instant::now();
                    let ops = worker.run(&mut stream, job, &stop);
                    let end = Instant::now();
                    stop.store(true, Ordering::Relaxed);
                    finished.fetch_add(1, Ordering::Relaxed);
                    while finished.load(Ordering::Relaxed) < line {
                        worker.idle(job);
                    }
                    if span_tx.send(Span { start, end, ops }).is_err() {
                        return;
                    }
                }
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

/// Benchmarks `system` at every write ratio with one pool of workers, then checks that
/// the contents are unchanged.
fn bench_system<S: System>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    system: S,
    keys: u64,
) {
    let system = Arc::new(system);
    let pool = Pool::new(Arc::clone(&system), keys);
    for (pct, label) in WRITES {
        g.bench_function(BenchmarkId::new(name, label), |b| {
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
    let mut check = system.worker(0);
    for key in (0..keys).step_by(997) {
        assert_eq!(check.get(key), Some(key), "{name}: key {key} after the run");
    }
}

fn benches(c: &mut Criterion) {
    for (keys, label) in SIZES {
        let mut g = c.benchmark_group(format!("throughput/{label}"));
        g.throughput(Throughput::Elements(1));
        bench_system(&mut g, "ldnr1", Ldnr::new(keys, 1), keys);
        bench_system(&mut g, "ldnr2", Ldnr::new(keys, 2), keys);
        bench_system(&mut g, "nr1", Nr::new(keys, 1), keys);
        bench_system(&mut g, "nr2", Nr::new(keys, 2), keys);
        bench_system(&mut g, "dashmap", Dash::new(keys), keys);
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
