//! The closed-loop workload and the phased run that measures it.
//!
//! A run drives one [`System`] through a list of [`Phase`]s without stopping: worker
//! threads are added when a phase needs more of them, the write ratio changes between
//! phases, and the system may change itself at each phase start (LD-NR adds or removes
//! replicas there, under load). Each worker loops over batches of [`BATCH`] operations
//! (uniform random keys below `keys`, a write with probability `write_pct`%) and
//! publishes its running count after each batch. The sampler (the calling thread) reads
//! the counts every interval and records throughput and live heap bytes.
//!
//! A phase's throughput is the operations completed between the end of its warm-up
//! (the first fifth of the phase) and its end, over that time. Time in the samples is
//! the phase's *planned* start plus the time into the phase, so the runs of different
//! systems line up in the charts even when building them took different times.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ldnr::NodeId;

use ldnr_testkit::heap;
use ldnr_testkit::nodes::Placement;

/// Operations per batch: a worker publishes its count after each batch.
pub const BATCH: u64 = 64;

/// A small xorshift generator: cheap and good enough for uniform keys.
///
/// # Examples
///
/// ```
/// let mut r = ldnr_bench::runner::XorShift::new(1);
/// assert_ne!(r.next_u64(), r.next_u64());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator; `seed` 0 is replaced by a fixed non-zero value.
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next value.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// One operation of the workload: a `put(key, value)` if `write`, else a `get(key)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// Whether this is a write.
    pub write: bool,
    /// The key, uniform below the run's key count.
    pub key: u64,
    /// The value a write stores.
    pub value: u64,
}

/// The operations of one batch, generated on the fly.
#[derive(Debug)]
pub struct Ops<'a> {
    rng: &'a mut XorShift,
    left: u64,
    keys: u64,
    write_pct: u64,
}

impl Iterator for Ops<'_> {
    type Item = Op;

    #[inline]
    fn next(&mut self) -> Option<Op> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = self.rng.next_u64();
        // The key from the high bits (multiply-shift: no division), the coin from the low.
        let key = ((u128::from(r) * u128::from(self.keys)) >> 64) as u64;
        let write = ((r & 0xffff) * 100) >> 16 < self.write_pct;
        Some(Op {
            write,
            key,
            value: r,
        })
    }
}

/// What a worker thread gets: its index and node, and the run's shared state.
#[derive(Debug)]
pub struct Worker<'a> {
    /// The worker's index (0-based, in start order).
    pub index: usize,
    /// The node it runs on.
    pub node: NodeId,
    /// The position of `node` among the placement's nodes.
    pub node_index: usize,
    keys: u64,
    write_pct: &'a AtomicU32,
    stop: &'a AtomicBool,
    done: &'a AtomicU64,
    ready: &'a AtomicUsize,
}

impl Worker<'_> {
    /// Tells the run that this worker has registered and is about to start.
    pub fn ready(&self) {
        self.ready.fetch_add(1, Ordering::Release);
    }

    /// Runs the closed loop until the run stops: `batch` executes the operations it is
    /// given (all of them); the count is published after each batch.
    #[inline]
    pub fn run(&self, mut batch: impl FnMut(Ops<'_>)) {
        let mut rng = XorShift::new(0x5eed_0000 + self.index as u64 * 7919);
        let mut done = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let ops = Ops {
                rng: &mut rng,
                left: BATCH,
                keys: self.keys,
                write_pct: u64::from(self.write_pct.load(Ordering::Relaxed)),
            };
            batch(ops);
            done += BATCH;
            self.done.store(done, Ordering::Relaxed);
        }
    }
}

/// A structure under test.
pub trait System: Sync {
    /// The label in tables, charts and the CSV.
    fn name(&self) -> String;

    /// The replicas it has now (0 for a structure that does not replicate).
    fn replicas(&self) -> usize {
        0
    }

    /// The fewest threads it can run with (node-replication needs one per replica).
    fn min_threads(&self) -> usize {
        1
    }

    /// Called at the start of phase `phase`, with the nodes that have workers in it,
    /// while the workers of the previous phase keep running.
    fn begin_phase(&self, _phase: usize, _active: &[NodeId]) {}

    /// The body of a worker thread: register, call [`Worker::ready`], then
    /// [`Worker::run`].
    fn work(&self, worker: &Worker<'_>);
}

/// One phase of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// Worker threads during the phase.
    pub threads: usize,
    /// Percentage of writes.
    pub write_pct: u32,
    /// How long the phase lasts.
    pub duration: Duration,
}

/// One throughput sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the planned start of the run.
    pub time: f64,
    /// The phase's index.
    pub phase: usize,
    /// Worker threads.
    pub threads: usize,
    /// Replicas (0 for non-replicated structures).
    pub replicas: usize,
    /// Percentage of writes.
    pub write_pct: u32,
    /// Operations per second over the interval.
    pub ops_per_sec: f64,
    /// Live heap bytes of the structure (the process' live heap less what it was before
    /// the structure was built); `None` without the counting allocator.
    pub heap_bytes: Option<i64>,
}

/// A phase's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseResult {
    /// The phase's index.
    pub phase: usize,
    /// Worker threads.
    pub threads: usize,
    /// Replicas at the end of the phase.
    pub replicas: usize,
    /// Percentage of writes.
    pub write_pct: u32,
    /// Operations per second after the warm-up.
    pub ops_per_sec: f64,
    /// Heap bytes of the structure at the end of the phase.
    pub heap_bytes: Option<i64>,
}

/// One system's run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// The system's label.
    pub system: String,
    /// All samples, in time order.
    pub samples: Vec<Sample>,
    /// Per phase, its result; `None` for a phase the system could not run.
    pub phases: Vec<Option<PhaseResult>>,
}

/// A progress bar over the planned time of a whole invocation; hidden unless stdout
/// and stderr are terminals, or when the plan is short.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `planned` of measured time.
    pub fn new(planned: Duration) -> Self {
        let visible = std::io::stdout().is_terminal()
            && std::io::stderr().is_terminal()
            && planned >= Duration::from_secs(4);
        let bar = ProgressBar::with_draw_target(
            Some(planned.as_millis() as u64),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed:>4} [{wide_bar}] {percent:>3}% ~{eta} left  {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self { bar }
    }

    /// Prints a line above the bar (or plainly when it is hidden).
    pub fn say(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            println!("{}", line.as_ref());
        } else {
            self.bar.println(line.as_ref());
        }
    }

    /// Sets the message shown next to the bar.
    pub fn message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// Advances by measured time.
    pub fn advance(&self, by: Duration) {
        self.bar.inc(by.as_millis() as u64);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// What a run needs besides the system and its phases.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// Thread placement.
    pub placement: &'a Placement,
    /// Keys in the map (operations pick keys below this).
    pub keys: u64,
    /// The sampling interval.
    pub interval: Duration,
    /// The live heap before the system was built.
    pub heap_base: isize,
    /// Where progress goes.
    pub progress: &'a Progress,
}

/// Runs `system` through `phases` and returns its samples and per-phase results.
///
/// Phases with fewer threads than [`System::min_threads`] are skipped (no samples, a
/// `None` result); thread counts must not decrease from phase to phase.
pub fn run(system: &dyn System, phases: &[Phase], env: Env<'_>) -> RunResult {
    let max_threads = phases.iter().map(|p| p.threads).max().unwrap_or(0);
    let done: Vec<AtomicU64> = (0..max_threads).map(|_| AtomicU64::new(0)).collect();
    let write_pct = AtomicU32::new(phases.first().map_or(0, |p| p.write_pct));
    let stop = AtomicBool::new(false);
    let ready = AtomicUsize::new(0);
    let total = || -> u64 { done.iter().map(|d| d.load(Ordering::Relaxed)).sum() };
    let heap_now = || -> Option<i64> {
        heap::installed().then(|| (heap::live_bytes() - env.heap_base) as i64)
    };
    let mut result = RunResult {
        system: system.name(),
        samples: Vec::new(),
        phases: Vec::new(),
    };
    std::thread::scope(|s| {
        let mut started = 0;
        let mut planned_start = 0.0;
        for (i, phase) in phases.iter().enumerate() {
            assert!(phase.threads >= started, "thread counts must not decrease");
            if phase.threads < system.min_threads() {
                result.phases.push(None);
                planned_start += phase.duration.as_secs_f64();
                env.progress.advance(phase.duration);
                continue;
            }
            env.progress.message(format!(
                "{}: {} threads, {}% writes",
                result.system, phase.threads, phase.write_pct
            ));
            write_pct.store(phase.write_pct, Ordering::Relaxed);
            system.begin_phase(i, &env.placement.active_nodes(phase.threads));
            for (t, done) in done.iter().enumerate().take(phase.threads).skip(started) {
                let worker = Worker {
                    index: t,
                    node: env.placement.node_of(t),
                    node_index: t % env.placement.nodes().len(),
                    keys: env.keys,
                    write_pct: &write_pct,
                    stop: &stop,
                    done,
                    ready: &ready,
                };
                let placement = env.placement;
                s.spawn(move || {
                    placement.enter(t);
                    system.work(&worker);
                });
            }
            started = phase.threads;
            while ready.load(Ordering::Acquire) < started {
                std::thread::sleep(Duration::from_millis(1));
            }

            let start = Instant::now();
            let warmup = phase.duration / 5;
            let mut window: Option<(Instant, u64)> = None;
            let mut last = (start, total());
            let first = last;
            loop {
                let elapsed = start.elapsed();
                if elapsed >= phase.duration {
                    break;
                }
                let wait = env.interval.min(phase.duration - elapsed);
                std::thread::sleep(wait);
                let now = (Instant::now(), total());
                if window.is_none() && now.0 - start >= warmup {
                    window = Some(now);
                }
                let secs = (now.0 - last.0).as_secs_f64();
                result.samples.push(Sample {
                    time: planned_start + (now.0 - start).as_secs_f64(),
                    phase: i,
                    threads: phase.threads,
                    replicas: system.replicas(),
                    write_pct: phase.write_pct,
                    ops_per_sec: (now.1 - last.1) as f64 / secs.max(1e-9),
                    heap_bytes: heap_now(),
                });
                env.progress.advance(now.0 - last.0);
                last = now;
            }
            let (w0, ops0) = window.unwrap_or(first);
            result.phases.push(Some(PhaseResult {
                phase: i,
                threads: phase.threads,
                replicas: system.replicas(),
                write_pct: phase.write_pct,
                ops_per_sec: (last.1 - ops0) as f64 / (last.0 - w0).as_secs_f64().max(1e-9),
                heap_bytes: heap_now(),
            }));
            planned_start += phase.duration.as_secs_f64();
        }
        stop.store(true, Ordering::Relaxed);
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systems::{Kind, Policy};
    use ldnr_testkit::nodes::Affinity;

    #[test]
    fn ops_follow_keys_and_write_ratio() {
        let mut rng = XorShift::new(3);
        let ops: Vec<Op> = Ops {
            rng: &mut rng,
            left: 100_000,
            keys: 1000,
            write_pct: 10,
        }
        .collect();
        assert_eq!(ops.len(), 100_000);
        assert!(ops.iter().all(|o| o.key < 1000));
        let writes = ops.iter().filter(|o| o.write).count();
        assert!((9_000..11_000).contains(&writes), "{writes} writes");
        let mut rng = XorShift::new(3);
        let none = Ops {
            rng: &mut rng,
            left: 10_000,
            keys: 10,
            write_pct: 0,
        };
        assert_eq!(none.filter(|o| o.write).count(), 0);
        let mut rng = XorShift::new(3);
        let all = Ops {
            rng: &mut rng,
            left: 10_000,
            keys: 10,
            write_pct: 100,
        };
        assert_eq!(all.filter(|o| o.write).count(), 10_000);
    }

    #[test]
    fn a_run_samples_every_phase_and_ldnr_adds_replicas() {
        let placement = Placement::new(Affinity::Simulated, 2, false);
        let progress = Progress::new(Duration::ZERO);
        let phases: Vec<Phase> = [1, 2]
            .iter()
            .map(|&threads| Phase {
                threads,
                write_pct: 50,
                duration: Duration::from_millis(60),
            })
            .collect();
        let env = Env {
            placement: &placement,
            keys: 1000,
            interval: Duration::from_millis(20),
            heap_base: 0,
            progress: &progress,
        };
        let system = Kind::Ldnr(Policy::Dynamic).build(1000, &placement, 2);
        let r = run(&*system, &phases, env);
        assert_eq!(r.system, "ldnr");
        let p: Vec<PhaseResult> = r.phases.iter().map(|p| p.expect("ran")).collect();
        assert_eq!((p[0].threads, p[0].replicas), (1, 1));
        assert_eq!((p[1].threads, p[1].replicas), (2, 2));
        assert!(p.iter().all(|p| p.ops_per_sec > 0.0));
        assert!(r.samples.iter().any(|s| s.phase == 1));

        // NR with two replicas cannot run the one-thread phase.
        let system = Kind::Nr(2).build(1000, &placement, 2);
        let r = run(&*system, &phases, env);
        assert!(r.phases[0].is_none());
        assert!(r.phases[1].is_some());
        assert!(r.samples.iter().all(|s| s.phase == 1 && s.time >= 0.06));
    }
}
