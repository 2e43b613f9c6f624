//! Paired, interleaved LD-NR / node-replication measurements: what the targets' ratios
//! are judged on.
//!
//! On a shared or virtual machine throughput drifts by tens of percent over seconds (a
//! neighbour's load, frequency changes), so a ratio of two phases run a minute apart
//! measures the drift as much as the systems. Here each configuration (threads,
//! replicas, write ratio) builds LD-NR and NR once and runs them in alternating rounds of
//! one short phase each, in ABBA order (LD-NR, NR, NR, LD-NR, …) so that a linear drift
//! affects both alike. Each round pair gives one ratio; the summary is the median ratio
//! with its range.
//!
//! With one thread, a third structure runs in every round as a reference: the same
//! `HashMap` behind a `std::sync::RwLock`, with no log and no replication. Any replicated
//! map over this `HashMap` executes at least what it executes, so its ratio to NR is close
//! to the most LD-NR could reach against NR at that configuration.
//!
//! Both systems get fresh worker threads every round (the runner's), which register
//! again: with `rounds` rounds each system ends with `threads × rounds` registered
//! threads, of which `threads` run. Both pay for that alike (LD-NR's writer checks every
//! registered thread's reader slot; NR's combiner scans every registered context).

use std::time::Duration;

use crate::runner::{self, Env, Phase, Progress};
use crate::system::{Kind, Policy, System};
use ldnr_testkit::heap;
use ldnr_testkit::nodes::Placement;

/// One configuration compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Config {
    /// Worker threads.
    pub(crate) threads: usize,
    /// Replicas of both systems.
    pub(crate) replicas: usize,
    /// Percentage of writes.
    pub(crate) write_pct: u32,
}

/// What one configuration measured, per round (ops/s).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pair {
    /// The configuration.
    pub(crate) config: Config,
    /// LD-NR's throughput in each round.
    pub(crate) ldnr: Vec<f64>,
    /// NR's throughput in each round.
    pub(crate) nr: Vec<f64>,
    /// With one thread: `RwLock<HashMap>`'s throughput in each round (the reference);
    /// empty otherwise.
    pub(crate) reference: Vec<f64>,
}

impl Pair {
    /// LD-NR / NR of each round.
    pub(crate) fn ratios(&self) -> Vec<f64> {
        self.ldnr
            .iter()
            .zip(&self.nr)
            .map(|(l, n)| l / n.max(1e-9))
            .collect()
    }

    /// The median round's ratio (the mean of the middle two for an even count); `None`
    /// if no round ran.
    pub(crate) fn median_ratio(&self) -> Option<f64> {
        median(self.ratios())
    }

    /// The median round's reference / NR ratio; `None` without a reference.
    pub(crate) fn reference_ratio(&self) -> Option<f64> {
        median(
            self.reference
                .iter()
                .zip(&self.nr)
                .map(|(r, n)| r / n.max(1e-9))
                .collect(),
        )
    }

    /// The lowest and highest round ratio.
    pub(crate) fn range(&self) -> Option<(f64, f64)> {
        let r = self.ratios();
        let lo = r.iter().copied().reduce(f64::min)?;
        let hi = r.iter().copied().reduce(f64::max)?;
        Some((lo, hi))
    }

    /// The median throughput of each system (ops/s).
    pub(crate) fn medians(&self) -> (f64, f64) {
        (
            median(self.ldnr.clone()).unwrap_or(0.0),
            median(self.nr.clone()).unwrap_or(0.0),
        )
    }
}

/// The median of `xs`: the middle value, or the mean of the middle two.
fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

/// For each of `thread_counts`, 1 to `min(threads, nodes)` replicas, each of `writes`.
/// (The targets name 1–2 threads and 1–2 replicas.)
pub(crate) fn configs(thread_counts: &[usize], nodes: usize, writes: &[u32]) -> Vec<Config> {
    let mut out = Vec::new();
    for &threads in thread_counts.iter().filter(|&&t| t > 0) {
        for replicas in 1..=threads.min(nodes.max(1)) {
            for &write_pct in writes {
                out.push(Config {
                    threads,
                    replicas,
                    write_pct,
                });
            }
        }
    }
    out
}

/// The measured time `configs` take with `rounds` rounds of `phase` per structure (two,
/// or three with the one-thread reference).
pub(crate) fn planned(configs: &[Config], rounds: usize, phase: Duration) -> Duration {
    let structures: usize = configs
        .iter()
        .map(|c| if c.threads == 1 { 3 } else { 2 })
        .sum();
    phase * (structures * rounds) as u32
}

/// Runs every configuration: LD-NR (static replicas) and NR (and, with one thread, the
/// `RwLock<HashMap>` reference), built once, then `rounds` alternating rounds of one
/// `phase` each.
pub(crate) fn run(
    configs: &[Config],
    rounds: usize,
    phase: Duration,
    keys: u64,
    placement: &Placement,
    interval: Duration,
    progress: &Progress,
) -> Vec<Pair> {
    let mut out = Vec::new();
    for &config in configs {
        progress.message(format!(
            "paired: {} threads, {} replicas, {}% writes",
            config.threads, config.replicas, config.write_pct
        ));
        let registered = config.threads * rounds.max(1);
        let heap_base = heap::live_bytes();
        let ldnr = Kind::Ldnr(Policy::Static(config.replicas)).build(keys, placement, registered);
        let nr = Kind::Nr(config.replicas).build(keys, placement, registered);
        let reference = (config.threads == 1).then(|| Kind::Std.build(keys, placement, registered));
        let env = Env {
            placement,
            keys,
            interval,
            heap_base,
            progress,
        };
        let phases = [Phase {
            threads: config.threads,
            write_pct: config.write_pct,
            duration: phase,
        }];
        let mut pair = Pair {
            config,
            ldnr: Vec::new(),
            nr: Vec::new(),
            reference: Vec::new(),
        };
        let once = |system: &System| -> Option<f64> {
            let r = runner::run(system, &phases, env);
            r.phases.first().copied().flatten().map(|p| p.ops_per_sec)
        };
        for round in 0..rounds {
            // ABBA: LD-NR first in even rounds, NR first in odd ones (the reference, if
            // any, last and first).
            let run_ref = || reference.as_ref().map(once);
            let (l, n, r) = if round % 2 == 0 {
                let l = once(&ldnr);
                let n = once(&nr);
                (l, n, run_ref())
            } else {
                let r = run_ref();
                let n = once(&nr);
                (once(&ldnr), n, r)
            };
            // A round counts only if every structure of the configuration ran in it, so
            // that the ratios stay round by round.
            match (l, n, r) {
                (Some(l), Some(n), None) => {
                    pair.ldnr.push(l);
                    pair.nr.push(n);
                }
                (Some(l), Some(n), Some(Some(r))) => {
                    pair.ldnr.push(l);
                    pair.nr.push(n);
                    pair.reference.push(r);
                }
                _ => {}
            }
        }
        out.push(pair);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_reference_ratios() {
        let config = Config {
            threads: 1,
            replicas: 1,
            write_pct: 10,
        };
        let pair = Pair {
            config,
            ldnr: vec![3.0, 9.0, 4.0],
            nr: vec![2.0, 3.0, 4.0],
            reference: vec![2.4, 3.0, 8.0],
        };
        // Per round: LD-NR 1.5x, 3x, 1x NR; the reference 1.2x, 1x, 2x NR.
        assert_eq!(pair.median_ratio(), Some(1.5));
        assert_eq!(pair.reference_ratio(), Some(1.2));
    }

    #[test]
    fn configs_cover_threads_replicas_and_writes() {
        let c = configs(&[1, 2], 2, &[0, 10]);
        let named: Vec<(usize, usize, u32)> = c
            .iter()
            .map(|c| (c.threads, c.replicas, c.write_pct))
            .collect();
        assert_eq!(
            named,
            [
                (1, 1, 0),
                (1, 1, 10),
                (2, 1, 0),
                (2, 1, 10),
                (2, 2, 0),
                (2, 2, 10)
            ]
        );
    }

    #[test]
    fn planned_time_counts_the_reference() {
        let c = configs(&[1, 2], 2, &[10]); // 1t/1r (+ reference), 2t/1r, 2t/2r
        assert_eq!(
            planned(&c, 4, Duration::from_millis(100)),
            Duration::from_millis(2800)
        );
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![5.0, 1.0, 3.0]), Some(3.0));
    }

    #[test]
    fn replicas_stop_at_the_threads_and_the_nodes() {
        assert_eq!(configs(&[4], 2, &[10]).len(), 2);
        assert!(configs(&[0], 2, &[10]).is_empty());
        // One node: two threads share one replica only.
        let c = configs(&[2], 1, &[100]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].replicas, 1);
    }

    /// One configuration, `rounds` rounds of 40 ms over 1024 keys on two pretend nodes.
    fn quick(threads: usize, replicas: usize, write_pct: u32, rounds: usize) -> Pair {
        let placement = Placement::new(ldnr_testkit::nodes::Affinity::Simulated, 2, false);
        let progress = Progress::new(Duration::ZERO);
        let config = Config {
            threads,
            replicas,
            write_pct,
        };
        let mut pairs = run(
            &[config],
            rounds,
            Duration::from_millis(40),
            1 << 10,
            &placement,
            Duration::from_millis(10),
            &progress,
        );
        assert_eq!(pairs.len(), 1);
        pairs.remove(0)
    }

    #[test]
    fn a_quick_pair_runs_every_round_on_both_systems() {
        let pair = quick(2, 2, 50, 3);
        assert_eq!(pair.ldnr.len(), 3);
        assert_eq!(pair.nr.len(), 3);
        // A throughput, not a count of work done: a 40 ms round on a loaded two-core
        // machine may see no operation complete, so only its form is checked.
        assert!(pair
            .ldnr
            .iter()
            .chain(&pair.nr)
            .all(|&x| x.is_finite() && x >= 0.0));
        let (lo, hi) = pair.range().expect("three rounds");
        let m = pair.median_ratio().expect("three rounds");
        assert!(lo <= m && m <= hi);
        // Two threads: no reference.
        assert!(pair.reference.is_empty());
        assert_eq!(pair.reference_ratio(), None);
    }

    #[test]
    fn one_thread_runs_the_reference_in_every_round() {
        let pairs = [quick(1, 1, 10, 2)];
        assert_eq!(pairs[0].reference.len(), 2);
        assert!(pairs[0]
            .reference
            .iter()
            .all(|&x| x.is_finite() && x >= 0.0));
        assert!(pairs[0].reference_ratio().is_some());
    }
}
