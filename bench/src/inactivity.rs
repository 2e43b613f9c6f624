//! The inactivity experiment (the thesis' Figures 6.3f and 6.9): the threads of one
//! replica go idle in the middle of each phase.
//!
//! Each system runs in a child process (`ldnr-demo __inactivity-child ...`) so that a
//! system that stalls can be reported and left behind: a stalled node-replication 0.1.1
//! spins forever in every thread, which no thread can be asked to stop. The child samples
//! throughput every `SAMPLE`; if no operation completes for `STALL_AFTER` while threads
//! should be running, it prints a `stall` line and exits, which ends its spinning threads.
//!
//! Phases: `threads` grows per phase (one entry per phase); threads are split over two
//! replicas (thread `t` uses replica `t % 2`); in the middle third of each phase the
//! threads of replica 0 stop calling the structure (they sleep, checking a flag every
//! millisecond). Threads are spread over two nodes and pinned like the other
//! experiments' workers ([`Placement`]); LD-NR has one replica on each node, under the
//! placement's manager. With `--affinity linux` on a machine with one node, both
//! replicas are on that node and the dispatcher splits the threads between them.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use ldnr_testkit::nodes::{Affinity, Placement};
use ldnr_testkit::rng::Rng;

use crate::system::{Body, Handle, Kind, Policy, Seat};
use crate::workload::Ops;

/// How often throughput is sampled.
pub(crate) const SAMPLE: Duration = Duration::from_millis(100);
/// How long without any completed operation counts as a stall.
pub(crate) const STALL_AFTER: Duration = Duration::from_millis(1500);

/// The experiment's parameters.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    /// Threads in each phase.
    pub(crate) phases: Vec<usize>,
    /// Length of one phase.
    pub(crate) phase: Duration,
    /// Pre-filled keys.
    pub(crate) keys: u64,
    /// Percentage of writes.
    pub(crate) write_pct: u32,
    /// Whether worker threads are pinned to CPUs.
    pub(crate) pin: bool,
    /// The affinity manager LD-NR runs under.
    pub(crate) affinity: Affinity,
}

/// One throughput sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Seconds since the start.
    pub(crate) t: f64,
    /// Threads in the phase.
    pub(crate) threads: usize,
    /// Whether replica 0's threads were idle during the sample.
    pub(crate) idle: bool,
    /// Operations per second in the sample, all threads.
    pub(crate) ops_per_sec: f64,
    /// Operations per second of the threads that never idle (replica 1's).
    pub(crate) active_ops_per_sec: f64,
}

/// One system's run: samples, and the time of the stall if there was one.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// `ldnr` or `nr`.
    pub(crate) system: String,
    /// The samples, in time order.
    pub(crate) samples: Vec<Sample>,
    /// Seconds from the start when the system stopped completing operations.
    pub(crate) stalled_at: Option<f64>,
}

/// A worker's closed loop, run with its handle: batches of 16 operations until `stop`;
/// the threads of replica 0 (even `t`) sleep instead while `idle` is set.
struct IdleLoop<'a> {
    t: usize,
    stop: &'a AtomicBool,
    idle: &'a AtomicBool,
    count: &'a AtomicU64,
    keys: u64,
    write_pct: u32,
}

impl Body for IdleLoop<'_> {
    type Out = ();

    fn run<H: Handle>(self, mut handle: H) {
        let mut rng = Rng::new(self.t as u64 + 7);
        while !self.stop.load(Ordering::Relaxed) {
            if self.t % 2 == 0 && self.idle.load(Ordering::Relaxed) {
                // Idle means idle: leave the CPU to the active threads.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            handle.run(Ops::new(&mut rng, 16, self.keys, self.write_pct));
            self.count.fetch_add(16, Ordering::Relaxed);
        }
    }
}

/// Runs one system in this process and prints samples to stdout as
/// `sample,t,threads,idle,ops_per_sec,active_ops_per_sec` lines, or `stall,t` and exits.
pub(crate) fn child(system: &str, p: &Params) -> ! {
    let placement = Placement::new(p.affinity, 2, p.pin);
    // Two replicas: LD-NR's on the placement's first two nodes (both on the one node of
    // a one-node machine under `--affinity linux`), NR's two static ones.
    let kind = match system {
        "ldnr" => Kind::Ldnr(Policy::Static(2)),
        "nr" => Kind::Nr(2),
        other => panic!("unknown system {other}"),
    };
    let max_threads = p.phases.iter().copied().max().unwrap_or(1);
    let map = kind.build(p.keys, &placement, max_threads);
    let counts: Vec<AtomicU64> = (0..max_threads).map(|_| AtomicU64::new(0)).collect();
    let stops: Vec<AtomicBool> = (0..max_threads).map(|_| AtomicBool::new(true)).collect();
    let idle = AtomicBool::new(false);
    let started = AtomicUsize::new(0);
    let out = std::io::stdout();
    std::thread::scope(|s| {
        let start = Instant::now();
        let mut last_total = 0u64;
        let mut last_active = 0u64;
        let mut last_progress = Instant::now();
        for (phase, &threads) in p.phases.iter().enumerate() {
            for t in started.load(Ordering::Relaxed)..threads {
                stops[t].store(false, Ordering::Relaxed);
                let body = IdleLoop {
                    t,
                    stop: &stops[t],
                    idle: &idle,
                    count: &counts[t],
                    keys: p.keys,
                    write_pct: p.write_pct,
                };
                // Thread `t` uses replica `t % 2`: the idle half is replica 0's.
                let seat = Seat {
                    index: t,
                    home: t % 2,
                };
                let (map, placement) = (&map, &placement);
                s.spawn(move || {
                    placement.enter(t);
                    map.work(seat, body);
                });
            }
            started.store(
                threads.max(started.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            let phase_start = Instant::now();
            while phase_start.elapsed() < p.phase {
                let third = p.phase / 3;
                let in_middle = phase_start.elapsed() >= third && phase_start.elapsed() < 2 * third;
                idle.store(in_middle, Ordering::Relaxed);
                let t0 = Instant::now();
                std::thread::sleep(SAMPLE);
                let total: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
                // The threads that never idle: odd `t` (replica 1's; see `IdleLoop`).
                let active: u64 = counts
                    .iter()
                    .skip(1)
                    .step_by(2)
                    .map(|c| c.load(Ordering::Relaxed))
                    .sum();
                let secs = t0.elapsed().as_secs_f64();
                let rate = (total - last_total) as f64 / secs;
                let active_rate = (active - last_active) as f64 / secs;
                let now = start.elapsed().as_secs_f64();
                let mut o = out.lock();
                let _ = writeln!(
                    o,
                    "sample,{now:.3},{threads},{},{rate:.0},{active_rate:.0}",
                    u8::from(in_middle)
                );
                let _ = o.flush();
                if total > last_total {
                    last_progress = Instant::now();
                } else if last_progress.elapsed() >= STALL_AFTER {
                    let _ = writeln!(o, "stall,{:.3},{phase}", now - STALL_AFTER.as_secs_f64());
                    let _ = o.flush();
                    // The stalled threads spin forever; ending the process ends them.
                    std::process::exit(0);
                }
                last_total = total;
                last_active = active;
            }
        }
        for s in &stops {
            s.store(true, Ordering::Relaxed);
        }
    });
    std::process::exit(0)
}

/// The running binary, for starting children. On Linux `/proc/self/exe` names it even
/// after the file was replaced (a concurrent `cargo build` unlinks the old binary, and
/// `current_exe()` then returns a path with " (deleted)" appended).
fn own_executable() -> std::io::Result<std::path::PathBuf> {
    let proc_exe = std::path::Path::new("/proc/self/exe");
    if proc_exe.exists() {
        Ok(proc_exe.to_path_buf())
    } else {
        std::env::current_exe()
    }
}

/// Runs `system` in a child process and collects its samples.
pub(crate) fn run(system: &str, p: &Params) -> std::io::Result<Run> {
    let phases: Vec<String> = p.phases.iter().map(ToString::to_string).collect();
    let mut child = Command::new(own_executable()?)
        .args([
            "__inactivity-child",
            system,
            &phases.join(","),
            &p.phase.as_millis().to_string(),
            &p.keys.to_string(),
            &p.write_pct.to_string(),
            if p.pin { "pin" } else { "nopin" },
            match p.affinity {
                Affinity::Simulated => "simulated",
                Affinity::Linux => "linux",
            },
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut run = Run {
        system: system.to_string(),
        samples: Vec::new(),
        stalled_at: None,
    };
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let f: Vec<&str> = line.split(',').collect();
        match f.as_slice() {
            ["sample", t, threads, idle, rate, active] => run.samples.push(Sample {
                t: t.parse().unwrap_or(0.0),
                threads: threads.parse().unwrap_or(0),
                idle: *idle == "1",
                ops_per_sec: rate.parse().unwrap_or(0.0),
                active_ops_per_sec: active.parse().unwrap_or(0.0),
            }),
            ["stall", t, _] => run.stalled_at = t.parse().ok(),
            _ => {}
        }
    }
    child.wait()?;
    Ok(run)
}

impl Run {
    /// How the run stalled, in words: for good (and when), or how many idle-window
    /// samples completed no operation.
    pub(crate) fn stall(&self) -> String {
        let (samples, zeros) = idle_zeros(self);
        match self.stalled_at {
            Some(t) => format!("for good at {t:.2} s"),
            None if zeros > 0 => format!("zero in {zeros}/{samples} idle samples"),
            None => "no".into(),
        }
    }
}

/// Parses the child's command line (after `__inactivity-child`).
pub(crate) fn child_main(args: &[String]) -> ! {
    let [system, phases, phase_ms, keys, writes, pin, affinity] = args else {
        panic!(
            "usage: __inactivity-child SYSTEM PHASES PHASE_MS KEYS WRITE_PCT pin|nopin \
             simulated|linux"
        );
    };
    let p = Params {
        phases: phases.split(',').filter_map(|x| x.parse().ok()).collect(),
        phase: Duration::from_millis(phase_ms.parse().expect("phase ms")),
        keys: keys.parse().expect("keys"),
        write_pct: writes.parse().expect("write pct"),
        pin: pin == "pin",
        affinity: Affinity::from_str(affinity, false).expect("simulated or linux"),
    };
    child(system, &p)
}

/// One phase of a run, summarized: mean throughput before the idle window and during
/// it (skipping the first sample of each window, which straddles the switch), of all
/// threads and of the threads that never idle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PhaseSummary {
    /// Threads in the phase.
    pub(crate) threads: usize,
    /// All threads, before the idle window (ops/s).
    pub(crate) before: f64,
    /// All threads, during the idle window (ops/s).
    pub(crate) idle: f64,
    /// The threads that never idle, before the idle window (ops/s).
    pub(crate) active_before: f64,
    /// The same threads during the idle window (ops/s).
    pub(crate) active_idle: f64,
}

impl PhaseSummary {
    /// The throughput the threads that keep running keep while replica 0's threads idle,
    /// as a fraction of theirs before: what an idle replica costs the others (1.0: nothing;
    /// 0.0: a stall). The idle threads' own share is not counted, since they issue nothing.
    pub(crate) fn kept(&self) -> f64 {
        self.active_idle / self.active_before.max(1e-9)
    }
}

/// Per phase: see [`PhaseSummary`].
pub(crate) fn phase_summary(run: &Run) -> Vec<PhaseSummary> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < run.samples.len() {
        let threads = run.samples[i].threads;
        let phase: Vec<&Sample> = run.samples[i..]
            .iter()
            .take_while(|s| s.threads == threads)
            .collect();
        i += phase.len();
        let mean = |xs: Vec<f64>| {
            if xs.is_empty() {
                0.0
            } else {
                xs.iter().sum::<f64>() / xs.len() as f64
            }
        };
        // Before: the samples up to the idle window (all non-idle ones if none idled).
        let before_window: Vec<&&Sample> = if phase.iter().any(|s| s.idle) {
            phase.iter().take_while(|s| !s.idle).skip(1).collect()
        } else {
            phase.iter().skip(1).collect()
        };
        let idle_window: Vec<&&Sample> = phase.iter().filter(|s| s.idle).skip(1).collect();
        let of = |w: &[&&Sample], f: fn(&Sample) -> f64| mean(w.iter().map(|s| f(s)).collect());
        out.push(PhaseSummary {
            threads,
            before: of(&before_window, |s| s.ops_per_sec),
            idle: of(&idle_window, |s| s.ops_per_sec),
            active_before: of(&before_window, |s| s.active_ops_per_sec),
            active_idle: of(&idle_window, |s| s.active_ops_per_sec),
        });
    }
    out
}

/// The idle-window samples of `run` (after the first of each window, which straddles the
/// switch) and how many of them completed no operation at all.
pub(crate) fn idle_zeros(run: &Run) -> (usize, usize) {
    let mut total = 0;
    let mut zeros = 0;
    let mut prev_idle = false;
    for s in &run.samples {
        if s.idle && prev_idle {
            total += 1;
            zeros += usize::from(s.ops_per_sec == 0.0);
        }
        prev_idle = s.idle;
    }
    (total, zeros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, threads: usize, idle: bool, all: f64, active: f64) -> Sample {
        Sample {
            t,
            threads,
            idle,
            ops_per_sec: all,
            active_ops_per_sec: active,
        }
    }

    #[test]
    fn phase_summary_skips_the_straddling_samples_and_measures_the_running_threads() {
        let run = Run {
            system: "ldnr".into(),
            // Phase of 2 threads: two samples before (the first straddles the start), three
            // idle (the first straddles the switch), one after; then a phase of 4 threads
            // whose running threads lose half their rate.
            samples: vec![
                sample(0.1, 2, false, 1.0, 0.5),
                sample(0.2, 2, false, 10.0, 5.0),
                sample(0.3, 2, true, 99.0, 99.0),
                sample(0.4, 2, true, 6.0, 6.0),
                sample(0.5, 2, true, 6.0, 6.0),
                sample(0.6, 2, false, 10.0, 5.0),
                sample(0.7, 4, false, 0.0, 0.0),
                sample(0.8, 4, false, 12.0, 6.0),
                sample(0.9, 4, true, 0.0, 0.0),
                sample(1.0, 4, true, 3.0, 3.0),
            ],
            stalled_at: None,
        };
        let phases = phase_summary(&run);
        assert_eq!(phases.len(), 2);
        assert_eq!(phases[0].threads, 2);
        assert_eq!(phases[0].before, 10.0);
        assert_eq!(phases[0].idle, 6.0);
        assert!((phases[0].kept() - 1.2).abs() < 1e-9);
        assert_eq!(phases[1].threads, 4);
        assert!((phases[1].kept() - 0.5).abs() < 1e-9);
        assert!((phases[1].idle / phases[1].before - 0.25).abs() < 1e-9);
    }

    #[test]
    fn a_stall_keeps_nothing() {
        let run = Run {
            system: "nr".into(),
            samples: vec![
                sample(0.1, 2, false, 5.0, 2.5),
                sample(0.2, 2, false, 5.0, 2.5),
                sample(0.3, 2, true, 0.0, 0.0),
                sample(0.4, 2, true, 0.0, 0.0),
            ],
            stalled_at: None,
        };
        assert_eq!(phase_summary(&run)[0].kept(), 0.0);
        assert_eq!(idle_zeros(&run), (1, 1));
    }
}
