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
use ldnr_testkit::heap;
use ldnr_testkit::nodes::Placement;
use ldnr_testkit::rng::Rng;

use crate::system::{Body, Handle, Seat, System};
use crate::workload::Ops;

/// Operations per batch: a worker publishes its count after each batch.
const BATCH: u64 = 64;

/// A worker thread's loop, run with its handle: the closed loop until the run stops,
/// publishing the operation count after each batch.
struct Worker<'a> {
    index: usize,
    keys: u64,
    write_pct: &'a AtomicU32,
    stop: &'a AtomicBool,
    done: &'a AtomicU64,
    ready: &'a AtomicUsize,
}

impl Body for Worker<'_> {
    type Out = ();

    #[inline]
    fn run<H: Handle>(self, mut handle: H) {
        // Registered (the system made the handle): the phase may start.
        self.ready.fetch_add(1, Ordering::Release);
        let mut rng = Rng::new(0x5eed_0000 + self.index as u64 * 7919);
        let mut done = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let write_pct = self.write_pct.load(Ordering::Relaxed);
            handle.run(Ops::new(&mut rng, BATCH, self.keys, write_pct));
            done += BATCH;
            self.done.store(done, Ordering::Relaxed);
        }
    }
}

/// One phase of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Phase {
    /// Worker threads during the phase.
    pub(crate) threads: usize,
    /// Percentage of writes.
    pub(crate) write_pct: u32,
    /// How long the phase lasts.
    pub(crate) duration: Duration,
}

/// One throughput sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Seconds since the planned start of the run.
    pub(crate) time: f64,
    /// The phase's index.
    pub(crate) phase: usize,
    /// Worker threads.
    pub(crate) threads: usize,
    /// Replicas (0 for non-replicated structures).
    pub(crate) replicas: usize,
    /// Percentage of writes.
    pub(crate) write_pct: u32,
    /// Operations per second over the interval.
    pub(crate) ops_per_sec: f64,
    /// Live heap bytes of the structure (the process' live heap less what it was before
    /// the structure was built); `None` without the counting allocator.
    pub(crate) heap_bytes: Option<i64>,
}

/// A phase's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PhaseResult {
    /// The phase's index.
    pub(crate) phase: usize,
    /// Worker threads.
    pub(crate) threads: usize,
    /// Replicas at the end of the phase.
    pub(crate) replicas: usize,
    /// Percentage of writes.
    pub(crate) write_pct: u32,
    /// Operations per second after the warm-up.
    pub(crate) ops_per_sec: f64,
    /// Heap bytes of the structure at the end of the phase.
    pub(crate) heap_bytes: Option<i64>,
}

/// One system's run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunResult {
    /// The system's label.
    pub(crate) system: String,
    /// All samples, in time order.
    pub(crate) samples: Vec<Sample>,
    /// Per phase, its result; `None` for a phase the system could not run.
    pub(crate) phases: Vec<Option<PhaseResult>>,
}

/// A progress bar over the planned time of a whole invocation; hidden unless stdout
/// and stderr are terminals, or when the plan is short.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `planned` of measured time.
    pub(crate) fn new(planned: Duration) -> Self {
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
    pub(crate) fn say(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            println!("{}", line.as_ref());
        } else {
            self.bar.println(line.as_ref());
        }
    }

    /// Sets the message shown next to the bar.
    pub(crate) fn message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// Advances by measured time.
    pub(crate) fn advance(&self, by: Duration) {
        self.bar.inc(by.as_millis() as u64);
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// What a run needs besides the system and its phases.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    /// Thread placement.
    pub(crate) placement: &'a Placement,
    /// Keys in the map (operations pick keys below this).
    pub(crate) keys: u64,
    /// The sampling interval.
    pub(crate) interval: Duration,
    /// The live heap before the system was built.
    pub(crate) heap_base: isize,
    /// Where progress goes.
    pub(crate) progress: &'a Progress,
}

/// Runs `system` through `phases` and returns its samples and per-phase results.
///
/// Phases with fewer threads than [`System::min_threads`] are skipped (no samples, a
/// `None` result); thread counts must not decrease from phase to phase.
pub(crate) fn run(system: &System, phases: &[Phase], env: Env<'_>) -> RunResult {
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
            system.begin_phase(i);
            for (t, done) in done.iter().enumerate().take(phase.threads).skip(started) {
                let worker = Worker {
                    index: t,
                    keys: env.keys,
                    write_pct: &write_pct,
                    stop: &stop,
                    done,
                    ready: &ready,
                };
                // The workers of a node share its NR replica.
                let seat = Seat {
                    index: t,
                    home: t % env.placement.nodes().len(),
                };
                let placement = env.placement;
                s.spawn(move || {
                    placement.enter(t);
                    system.work(seat, worker);
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
    use crate::system::{Kind, Policy};
    use ldnr_testkit::nodes::Affinity;

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
        let r = run(&system, &phases, env);
        assert_eq!(r.system, "ldnr");
        let p: Vec<PhaseResult> = r.phases.iter().map(|p| p.expect("ran")).collect();
        assert_eq!((p[0].threads, p[0].replicas), (1, 1));
        assert_eq!((p[1].threads, p[1].replicas), (2, 2));
        assert!(p
            .iter()
            .all(|p| p.ops_per_sec.is_finite() && p.ops_per_sec >= 0.0));
        assert!(r.samples.iter().any(|s| s.phase == 1));

        // NR with two replicas cannot run the one-thread phase.
        let system = Kind::Nr(2).build(1000, &placement, 2);
        let r = run(&system, &phases, env);
        assert!(r.phases[0].is_none());
        assert!(r.phases[1].is_some());
        assert!(r.samples.iter().all(|s| s.phase == 1 && s.time >= 0.06));
    }
}
