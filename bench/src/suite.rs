//! The experiments of the thesis (§6.2.3 and §6.7.1), as lists of runs.
//!
//! - **scale** (Figs. 6.3a/d, 6.8b/c): phases of growing thread counts at a fixed write
//!   ratio; LD-NR with the dynamic policy (one replica per node with workers, added under
//!   load) next to NR with 1 and N static replicas and the concurrent maps.
//! - **writes** (Fig. 6.3b): phases of growing write ratio (0, 1, 10, 50, 100%) at a
//!   fixed thread count; LD-NR and NR with 1 and with `min(threads, nodes)` replicas,
//!   and the maps. One sweep per thread count asked for.
//! - **replicas** (Fig. 6.8a): fixed threads; replicas removed one per phase down to one,
//!   then added back; throughput and heap bytes over time.
//!
//! The inactivity experiment runs in child processes and lives in [`crate::inactivity`].
//! Each structure is built, run through all of its experiment's phases, and dropped
//! before the next is built, so the heap figures of a run are its structure's alone.

use std::time::Duration;

use crate::runner::{self, Env, Phase, Progress, RunResult};
use crate::system::{Kind, Policy};
use ldnr_hashmap::U64Map;
use ldnr_testkit::heap;
use ldnr_testkit::nodes::{Affinity, Placement};

/// The write ratios of the `writes` sweep, in percent.
pub(crate) const WRITE_SWEEP: [u32; 5] = [0, 1, 10, 50, 100];

/// Everything the experiments need to know.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// The most threads of `scale`, and the threads of `replicas`.
    pub(crate) threads: usize,
    /// The thread counts of the `writes` sweeps.
    pub(crate) writes_threads: Vec<usize>,
    /// Whether `scale` adds a phase with twice the threads (oversubscription).
    pub(crate) oversubscribe: bool,
    /// Pre-filled keys.
    pub(crate) keys: u64,
    /// Percentage of writes in `scale`, `replicas` and `inactivity`.
    pub(crate) write_pct: u32,
    /// The affinity manager LD-NR runs under.
    pub(crate) affinity: Affinity,
    /// Nodes (pretend ones, or the machine's under [`Affinity::Linux`]).
    pub(crate) nodes: usize,
    /// Whether worker threads are pinned to CPUs.
    pub(crate) pin: bool,
    /// Phase length of `scale`.
    pub(crate) scale_phase: Duration,
    /// Phase length of `writes`.
    pub(crate) writes_phase: Duration,
    /// Phase length of `replicas`.
    pub(crate) replicas_phase: Duration,
    /// Phase length of `inactivity`.
    pub(crate) inactivity_phase: Duration,
    /// Rounds per configuration of the paired LD-NR/NR/`RwLock<HashMap>` comparison.
    pub(crate) pairs_rounds: usize,
    /// Phase length of one paired round.
    pub(crate) pairs_phase: Duration,
    /// The sampling interval.
    pub(crate) interval: Duration,
}

/// One structure to run through one experiment's phases.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Job {
    /// `scale`, `writes` or `replicas`.
    pub(crate) experiment: &'static str,
    /// The structure.
    pub(crate) kind: Kind,
    /// Its phases.
    pub(crate) phases: Vec<Phase>,
}

/// A job and what it measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measured {
    /// The job.
    pub(crate) job: Job,
    /// Its samples and phase results.
    pub(crate) run: RunResult,
}

/// The thread counts of `scale`: `1..=threads` on small machines, powers of two and
/// `threads` on larger ones; then `2 × threads` when oversubscribing.
pub(crate) fn scale_threads(threads: usize, oversubscribe: bool) -> Vec<usize> {
    let threads = threads.max(1);
    let mut out: Vec<usize> = if threads <= 8 {
        (1..=threads).collect()
    } else {
        let mut v: Vec<usize> = (0..).map(|i| 1 << i).take_while(|&t| t < threads).collect();
        v.push(threads);
        v
    };
    if oversubscribe {
        out.push(2 * threads);
    }
    out
}

/// Replica counts for node-replication: 1, the powers of two below `nodes`, and `nodes`.
fn nr_counts(nodes: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..).map(|i| 1 << i).take_while(|&n| n < nodes).collect();
    v.push(nodes.max(1));
    v.dedup();
    v
}

/// The runs of `scale`.
pub(crate) fn scale_jobs(s: &Settings) -> Vec<Job> {
    let phases: Vec<Phase> = scale_threads(s.threads, s.oversubscribe)
        .into_iter()
        .map(|threads| Phase {
            threads,
            write_pct: s.write_pct,
            duration: s.scale_phase,
        })
        .collect();
    let mut kinds = vec![Kind::Ldnr(Policy::Dynamic)];
    kinds.extend(nr_counts(s.nodes).into_iter().map(Kind::Nr));
    kinds.extend(Kind::MAPS);
    kinds
        .into_iter()
        .map(|kind| Job {
            experiment: "scale",
            kind,
            phases: phases.clone(),
        })
        .collect()
}

/// The runs of `writes`: one sweep per thread count.
pub(crate) fn writes_jobs(s: &Settings) -> Vec<Job> {
    let mut jobs = Vec::new();
    for &threads in &s.writes_threads {
        let phases: Vec<Phase> = WRITE_SWEEP
            .iter()
            .map(|&write_pct| Phase {
                threads,
                write_pct,
                duration: s.writes_phase,
            })
            .collect();
        let mut counts = vec![1, threads.min(s.nodes).max(1)];
        counts.dedup();
        let mut kinds: Vec<Kind> = counts
            .iter()
            .map(|&r| Kind::Ldnr(Policy::Static(r)))
            .collect();
        kinds.extend(counts.iter().map(|&r| Kind::Nr(r)));
        kinds.extend(Kind::MAPS);
        jobs.extend(kinds.into_iter().map(|kind| Job {
            experiment: "writes",
            kind,
            phases: phases.clone(),
        }));
    }
    jobs
}

/// The replica counts of `replicas`: from `max(nodes, 2)` down to one and back.
pub(crate) fn replica_schedule(nodes: usize) -> Vec<usize> {
    let top = nodes.max(2);
    (1..=top).rev().chain(2..=top).collect()
}

/// The run of `replicas`.
pub(crate) fn replicas_jobs(s: &Settings) -> Vec<Job> {
    let schedule = replica_schedule(s.nodes);
    let phases = schedule
        .iter()
        .map(|_| Phase {
            threads: s.threads,
            write_pct: s.write_pct,
            duration: s.replicas_phase,
        })
        .collect();
    vec![Job {
        experiment: "replicas",
        kind: Kind::Ldnr(Policy::Schedule(schedule)),
        phases,
    }]
}

/// The measured time the jobs plan (phases only; building the structures is extra).
pub(crate) fn planned(jobs: &[Job]) -> Duration {
    jobs.iter()
        .flat_map(|j| j.phases.iter().map(|p| p.duration))
        .sum()
}

/// Builds, runs and drops each job's structure in turn.
pub(crate) fn run_jobs(jobs: &[Job], s: &Settings, progress: &Progress) -> Vec<Measured> {
    let placement = Placement::new(s.affinity, s.nodes, s.pin);
    let mut out = Vec::new();
    let mut current = "";
    for job in jobs {
        if job.experiment != current {
            current = job.experiment;
            progress.say(format!("running {current} ..."));
        }
        progress.message(format!("{}: building {}", job.experiment, job.kind.label()));
        let max_threads = job.phases.iter().map(|p| p.threads).max().unwrap_or(1);
        let heap_base = heap::live_bytes();
        let system = job.kind.build(s.keys, &placement, max_threads);
        let env = Env {
            placement: &placement,
            keys: s.keys,
            interval: s.interval,
            heap_base,
            progress,
        };
        let run = runner::run(&system, &job.phases, env);
        drop(system);
        out.push(Measured {
            job: job.clone(),
            run,
        });
    }
    out
}

/// The heap bytes of one more copy of a `keys`-key [`U64Map`] (what a replica costs),
/// measured as a `clone()`; `None` without the counting allocator.
pub(crate) fn clone_bytes(keys: u64) -> Option<i64> {
    if !heap::installed() {
        return None;
    }
    let map = U64Map::with_keys(keys);
    let before = heap::live_bytes();
    let copy = map.clone();
    let bytes = heap::live_bytes() - before;
    drop(copy);
    Some(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_threads_small_and_large() {
        assert_eq!(scale_threads(2, true), vec![1, 2, 4]);
        assert_eq!(scale_threads(12, false), vec![1, 2, 4, 8, 12]);
    }

    #[test]
    fn replica_schedule_goes_down_and_back() {
        assert_eq!(replica_schedule(3), vec![3, 2, 1, 2, 3]);
    }
}
