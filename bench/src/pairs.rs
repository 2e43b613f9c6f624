//! Paired, interleaved measurements of LD-NR, node-replication 0.1.1 and
//! `RwLock<HashMap>`: what the targets' ratios are judged on.
//!
//! On a shared or virtual machine throughput drifts by tens of percent over seconds (a
//! neighbour's load, frequency changes), so a ratio of two phases run a minute apart
//! measures the drift as much as the systems. Here each configuration (threads,
//! replicas, write ratio) builds three structures once and runs them in rounds of one
//! short phase each:
//!
//! - LD-NR with static replicas;
//! - NR with as many replicas;
//! - the same `HashMap` behind a `std::sync::RwLock`, with no log and no replication:
//!   what a user would otherwise write. Any replicated map over this `HashMap` executes
//!   at least what it executes, so with one thread its ratio to NR is close to the most
//!   LD-NR could reach against NR there.
//!
//! Each round gives one LD-NR / NR and one LD-NR / `RwLock` ratio; the summary is the
//! median ratio with its range.
//!
//! The order within a round generalises ABBA to three structures. Rounds come in
//! mirrored pairs, so that a linear drift affects any two structures alike over each
//! pair (as ABBA does for two), and each pair starts from the next rotation, so that over
//! six rounds every structure runs first, in the middle and last twice (and once right
//! after itself, across the mirror):
//!
//! ```text
//! round    0      1      2      3      4      5      6 …
//! order  L N R  R N L  N R L  L R N  R L N  N L R  L N R …   (L LD-NR, N NR, R RwLock)
//! ```
//!
//! A round counts only if all three structures ran in it, so that the ratios stay round
//! by round.
//!
//! Every structure gets fresh worker threads every round (the runner's). Each replicated
//! system holds as many registrations as workers run, as a program whose threads come
//! and go would: an LD-NR worker deregisters when it ends, and NR, which cannot give a
//! registration back, hands a worker the registration its seat had in the round before
//! (`System::work`). Until this was so, LD-NR's workers were left registered: each
//! stayed in its replica's reader set, and with 10% writes every write checked the
//! slots of all earlier rounds' workers (one thread, 64K keys, 40 rounds: 0.80x the
//! `RwLock`, below both pure cases, 0.94x and 0.89x); NR's combiner scanned every
//! context registered since the start.

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
    /// Replicas of both replicated systems.
    pub(crate) replicas: usize,
    /// Percentage of writes.
    pub(crate) write_pct: u32,
}

impl std::fmt::Display for Config {
    /// `2t/1r/10%w`: threads, replicas, writes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}t/{}r/{}%w",
            self.threads, self.replicas, self.write_pct
        )
    }
}

/// What one configuration measured, per round (ops/s); round `i` of each structure ran
/// in the same round.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pair {
    /// The configuration.
    pub(crate) config: Config,
    /// LD-NR's throughput in each round.
    pub(crate) ldnr: Vec<f64>,
    /// NR's throughput in each round.
    pub(crate) nr: Vec<f64>,
    /// `RwLock<HashMap>`'s throughput in each round.
    pub(crate) rwlock: Vec<f64>,
}

/// The median of per-round ratios, how sure it is, and the lowest and highest round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    /// The median round's ratio (the mean of the middle two for an even count).
    pub(crate) median: f64,
    /// A 95% confidence interval for the median ([`median_ci_ranks`]); `None` below six
    /// rounds.
    pub(crate) ci: Option<(f64, f64)>,
    /// The lowest round's ratio.
    pub(crate) min: f64,
    /// The highest round's ratio.
    pub(crate) max: f64,
}

impl Spread {
    /// The spread of `a[i] / b[i]` over the rounds; `None` if no round ran.
    fn of(a: &[f64], b: &[f64]) -> Option<Self> {
        let mut ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y.max(1e-9)).collect();
        ratios.sort_by(f64::total_cmp);
        let ci = median_ci_ranks(ratios.len()).map(|(lo, hi)| (ratios[lo - 1], ratios[hi - 1]));
        Some(Self {
            min: *ratios.first()?,
            max: *ratios.last()?,
            ci,
            median: median(ratios)?,
        })
    }

    /// `0.92x [0.88-0.96] (0.73-1.07)`: the median, its 95% confidence interval when
    /// there is one, and the range.
    pub(crate) fn describe(&self) -> String {
        let ci = self
            .ci
            .map_or(String::new(), |(lo, hi)| format!(" [{lo:.2}-{hi:.2}]"));
        format!("{:.2}x{ci} ({:.2}-{:.2})", self.median, self.min, self.max)
    }
}

/// The ranks (1-based, in the sorted rounds) of a distribution-free 95% confidence
/// interval for the median of `n` rounds: `(j, n + 1 - j)`, with `j` the largest rank at
/// which fewer than `j` of `n` rounds fall below the true median with a chance of at
/// most 2.5% (the count below is Binomial(n, 1/2) for independent rounds of any
/// continuous distribution). So the interval covers the median with at least 95%.
/// `None` below six rounds: even the whole range then covers it with less (with five,
/// all of them fall on one side with a chance of 2/32 = 6.25%).
///
/// Rounds are not quite independent here (the machine drifts, and neighbouring rounds
/// share its state), so read the interval as the least uncertainty a median carries.
pub(crate) fn median_ci_ranks(n: usize) -> Option<(usize, usize)> {
    // P(X <= i) for X ~ Binomial(n, 1/2), summed from P(X = 0) = 2^-n in logs (no
    // underflow for large n until the terms no longer matter).
    let mut ln_pmf = -(n as f64) * core::f64::consts::LN_2;
    let mut below = 0.0;
    let mut j = 0;
    for i in 0..n / 2 {
        below += ln_pmf.exp();
        if below > 0.025 {
            break;
        }
        // P(X <= i) <= 2.5%: rank i + 1 is a lower end.
        j = i + 1;
        ln_pmf += ((n - i) as f64 / (i + 1) as f64).ln();
    }
    (j > 0).then(|| (j, n + 1 - j))
}

impl Pair {
    /// LD-NR / NR over the rounds; `None` if no round ran.
    pub(crate) fn versus_nr(&self) -> Option<Spread> {
        Spread::of(&self.ldnr, &self.nr)
    }

    /// LD-NR / `RwLock<HashMap>` over the rounds; `None` if no round ran.
    pub(crate) fn versus_rwlock(&self) -> Option<Spread> {
        Spread::of(&self.ldnr, &self.rwlock)
    }

    /// `RwLock<HashMap>` / NR over the rounds; `None` if no round ran.
    pub(crate) fn rwlock_versus_nr(&self) -> Option<Spread> {
        Spread::of(&self.rwlock, &self.nr)
    }

    /// The median throughput of LD-NR, NR and `RwLock<HashMap>` (ops/s).
    pub(crate) fn medians(&self) -> [f64; 3] {
        [&self.ldnr, &self.nr, &self.rwlock].map(|xs| median(xs.clone()).unwrap_or(0.0))
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

/// How many structures every round runs: LD-NR, NR and `RwLock<HashMap>`, the indices
/// 0, 1, 2 of [`order`].
const STRUCTURES: usize = 3;

/// The measured time `configs` take with `rounds` rounds of `phase` per structure.
pub(crate) fn planned(configs: &[Config], rounds: usize, phase: Duration) -> Duration {
    phase * (configs.len() * STRUCTURES * rounds) as u32
}

/// The order in which round `round` runs the structures (0 LD-NR, 1 NR, 2 `RwLock`):
/// mirrored pairs of rounds, each pair from the next rotation (see the module docs).
fn order(round: usize) -> [usize; STRUCTURES] {
    let mut order = [0, 1, 2];
    order.rotate_left(round / 2 % STRUCTURES);
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Runs every configuration: LD-NR (static replicas), NR and `RwLock<HashMap>`, built
/// once, then `rounds` rounds of one `phase` each per structure.
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
        // The most registered at once: the workers of one round.
        let registered = config.threads;
        let heap_base = heap::live_bytes();
        let systems: [System; STRUCTURES] = [
            Kind::Ldnr(Policy::Static(config.replicas)),
            Kind::Nr(config.replicas),
            Kind::Std,
        ]
        .map(|kind| kind.build(keys, placement, registered));
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
            rwlock: Vec::new(),
        };
        for round in 0..rounds {
            let mut ran = [None; STRUCTURES];
            for i in order(round) {
                let r = runner::run(&systems[i], &phases, env);
                ran[i] = r.phases.first().copied().flatten().map(|p| p.ops_per_sec);
            }
            // A round counts only if every structure ran in it, so that the ratios stay
            // round by round.
            if let [Some(l), Some(n), Some(r)] = ran {
                pair.ldnr.push(l);
                pair.nr.push(n);
                pair.rwlock.push(r);
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
    fn spreads_are_taken_round_by_round() {
        let config = Config {
            threads: 1,
            replicas: 1,
            write_pct: 10,
        };
        let pair = Pair {
            config,
            ldnr: vec![3.0, 9.0, 4.0],
            nr: vec![2.0, 3.0, 4.0],
            rwlock: vec![2.4, 3.0, 8.0],
        };
        // Per round: LD-NR 1.5x, 3x, 1x NR and 1.25x, 3x, 0.5x the RwLock; the RwLock
        // 1.2x, 1x, 2x NR.
        let spread = |median, min, max| {
            Some(Spread {
                median,
                ci: None,
                min,
                max,
            })
        };
        assert_eq!(pair.versus_nr(), spread(1.5, 1.0, 3.0));
        assert_eq!(pair.versus_rwlock(), spread(1.25, 0.5, 3.0));
        assert_eq!(pair.rwlock_versus_nr(), spread(1.2, 1.0, 2.0));
        assert_eq!(pair.medians(), [4.0, 3.0, 3.0]);
        assert_eq!(config.to_string(), "1t/1r/10%w");
        let empty = Pair {
            config,
            ldnr: Vec::new(),
            nr: Vec::new(),
            rwlock: Vec::new(),
        };
        assert_eq!(empty.versus_rwlock(), None);
        assert_eq!(empty.medians(), [0.0; 3]);
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
    fn planned_time_counts_three_structures_per_configuration() {
        let c = configs(&[1, 2], 2, &[10]); // 1t/1r, 2t/1r, 2t/2r
        assert_eq!(
            planned(&c, 4, Duration::from_millis(100)),
            Duration::from_millis(3600)
        );
    }

    #[test]
    fn rounds_mirror_in_pairs_and_rotate_every_pair() {
        let rounds: Vec<[usize; 3]> = (0..7).map(order).collect();
        assert_eq!(
            rounds,
            [
                [0, 1, 2],
                [2, 1, 0],
                [1, 2, 0],
                [0, 2, 1],
                [2, 0, 1],
                [1, 0, 2],
                [0, 1, 2]
            ]
        );
        // Over six rounds each structure runs twice in each position, and over each
        // mirrored pair any two structures' mean positions are equal.
        for s in 0..STRUCTURES {
            for position in 0..STRUCTURES {
                let times = rounds[..6].iter().filter(|o| o[position] == s).count();
                assert_eq!(times, 2, "structure {s} at position {position}");
            }
        }
        for pair in rounds[..6].chunks(2) {
            let at = |s| {
                pair.iter()
                    .map(|o| o.iter().position(|&x| x == s))
                    .sum::<Option<usize>>()
            };
            assert_eq!(at(0), at(1));
            assert_eq!(at(1), at(2));
        }
    }

    #[test]
    fn the_median_interval_takes_the_binomial_ranks() {
        // P(Binomial(n, 1/2) <= j - 1) <= 2.5% < P(.. <= j): n = 6: 1/64 (j = 1), 7/64;
        // n = 12: 79/4096 (j = 3), 299/4096; n = 20: 0.0207 (j = 6), 0.0577.
        assert_eq!(median_ci_ranks(5), None);
        assert_eq!(median_ci_ranks(6), Some((1, 6)));
        assert_eq!(median_ci_ranks(8), Some((1, 8)));
        assert_eq!(median_ci_ranks(9), Some((2, 8)));
        assert_eq!(median_ci_ranks(12), Some((3, 10)));
        assert_eq!(median_ci_ranks(20), Some((6, 15)));
        // Large n: about n/2 -+ 1.96 sqrt(n)/2, and no underflow to an empty interval.
        let (lo, hi) = median_ci_ranks(10_000).unwrap();
        assert!(
            (4900..=4903).contains(&lo) && hi == 10_001 - lo,
            "{lo}-{hi}"
        );
        assert_eq!(median_ci_ranks(0), None);

        // Twelve rounds, 1.00 to 1.11 in any order: the 3rd and 10th smallest.
        let a: Vec<f64> = [5, 0, 11, 3, 8, 1, 10, 2, 7, 4, 9, 6]
            .iter()
            .map(|&i| 1.0 + f64::from(i) / 100.0)
            .collect();
        let s = Spread::of(&a, &[1.0; 12]).unwrap();
        assert_eq!(s.ci, Some((1.02, 1.09)));
        assert_eq!((s.min, s.max), (1.0, 1.11));
        assert_eq!(s.describe(), "1.06x [1.02-1.09] (1.00-1.11)");
        let few = Spread::of(&a[..5], &[1.0; 5]).unwrap();
        assert_eq!(few.describe(), "1.05x (1.00-1.11)");
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

    /// Every structure ran every round, each round's throughputs have the form of one,
    /// and the medians lie within their ranges.
    fn check(pair: &Pair, rounds: usize) {
        assert_eq!(pair.ldnr.len(), rounds);
        assert_eq!(pair.nr.len(), rounds);
        assert_eq!(pair.rwlock.len(), rounds);
        // A throughput, not a count of work done: a 40 ms round on a loaded two-core
        // machine may see no operation complete, so only its form is checked.
        assert!(pair
            .ldnr
            .iter()
            .chain(&pair.nr)
            .chain(&pair.rwlock)
            .all(|&x| x.is_finite() && x >= 0.0));
        for s in [
            pair.versus_nr(),
            pair.versus_rwlock(),
            pair.rwlock_versus_nr(),
        ] {
            let s = s.expect("rounds ran");
            assert!(s.min <= s.median && s.median <= s.max, "{s:?}");
        }
    }

    #[test]
    fn two_threads_run_all_three_structures_every_round() {
        check(&quick(2, 2, 50, 3), 3);
    }

    #[test]
    fn one_thread_runs_all_three_structures_every_round() {
        check(&quick(1, 1, 10, 2), 2);
    }
}
