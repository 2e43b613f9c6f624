//! The project's performance targets, judged from one run's measurements.
//!
//! - **(a)** 1 thread: LD-NR ≥ 0.95× `RwLock<HashMap>` (the same map behind a
//!   `std::sync::RwLock`: what a user would otherwise write) at 0% and 10% writes, and
//!   ≥ 0.85× at 100% writes;
//! - **(b)** 2 threads, 1 replica: LD-NR ≥ 1.0× `RwLock<HashMap>` at 10% and 100% writes;
//! - **(c)** while replica 0's threads are idle, the threads that keep running (replica
//!   1's) keep ≥ 80% of their own throughput before the idle window, in every phase, and
//!   NR's stall is shown (the idle threads issue nothing, so the total drops by their
//!   share on any system: with one CPU per pretend node here, by about half);
//! - **(d)** heap bytes track the replica count: each add/remove step changes the heap by
//!   the size of one copy of the map, within 5%, and after the replicas that were removed
//!   are added back the heap is within 5% of where it started;
//! - **(e)** 2 threads, 0% writes: LD-NR with one replica per node with threads (what a
//!   policy would choose: one on a one-node machine) ≥ the best concurrent map; LD-NR's
//!   other replica count measured (two on a one-node machine) is reported too;
//! - **(f)** LD-NR never below 0.95× node-replication 0.1.1 (NR, with as many replicas)
//!   at any configuration measured: every thread count, replica count and write ratio.
//!
//! (a), (b) and (f) are judged on the paired rounds ([`super::pairs`]) when they ran:
//! the median ratio of each configuration's rounds. Without them (the `scale` or
//! `writes` experiment run alone), on the single phases of `scale` and `writes` that ran
//! LD-NR and the baseline at the same threads, replicas and write ratio; those phases
//! run one after the other, so their ratios carry the machine's drift.
//!
//! A target is met when every configuration it names was measured and reached its
//! bound, and not met when a measured one fell short of it. From six paired rounds on,
//! each median comes with a 95% confidence interval ([`crate::pairs::median_ci_ranks`]);
//! a configuration whose interval holds its bound is listed as one this run cannot
//! decide (its verdict still follows the median, as the targets are defined), so that a
//! verdict within the machine's noise reads as one. It is not measured when its
//! experiment did not run, or when only some of the configurations it names ran (and
//! those reached the bound): the message lists the ones missing.

use crate::inactivity;
use crate::pairs::{Config, Pair};
use crate::report::{Point, Report};

/// A target and whether this run met it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    /// Its letter and name.
    pub(crate) name: String,
    /// The measurement, in words.
    pub(crate) measured: String,
    /// `Some(true)` met, `Some(false)` not met, `None` not measured in this run.
    pub(crate) met: Option<bool>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = match self.met {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "NOT MEASURED",
        };
        write!(f, "{}: {} -> {verdict}", self.name, self.measured)
    }
}

/// Judges every target.
pub(crate) fn evaluate(r: &Report) -> Vec<Target> {
    let points = r.points();
    let ratio = |target: &RatioTarget| {
        if r.pairs.is_empty() {
            target.judge(
                single_phases(&points, target.baseline),
                "single phases, unpaired",
            )
        } else {
            target.judge(paired(&r.pairs, target.baseline), "median of paired rounds")
        }
    };
    vec![
        ratio(&A),
        ratio(&B),
        inactivity_target(r),
        memory_target(r),
        best_map_target(&points, r.machine_nodes),
        ratio(&F),
    ]
}

/// What LD-NR's throughput is divided by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Baseline {
    /// The same `HashMap` behind a `std::sync::RwLock` (`Kind::Std`).
    RwLock,
    /// node-replication 0.1.1 with as many replicas as LD-NR.
    Nr,
}

impl Baseline {
    fn name(self) -> &'static str {
        match self {
            Baseline::RwLock => "RwLock<HashMap>",
            Baseline::Nr => "NR",
        }
    }
}

/// The configurations a ratio target judges, with the least ratio it accepts.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// These configurations, each with its bound; every one of them must be measured.
    Named(&'static [(Config, f64)]),
    /// Every configuration measured, at this bound.
    Every(f64),
}

/// A target on LD-NR / baseline ratios.
#[derive(Debug, Clone, Copy)]
struct RatioTarget {
    name: &'static str,
    baseline: Baseline,
    scope: Scope,
}

const fn config(threads: usize, replicas: usize, write_pct: u32) -> Config {
    Config {
        threads,
        replicas,
        write_pct,
    }
}

const A_CONFIGS: [(Config, f64); 3] = [
    (config(1, 1, 0), 0.95),
    (config(1, 1, 10), 0.95),
    (config(1, 1, 100), 0.85),
];

const A: RatioTarget = RatioTarget {
    name: "(a) 1 thread: LD-NR >= 0.95x RwLock<HashMap> at 0% and 10% writes, >= 0.85x at 100%",
    baseline: Baseline::RwLock,
    scope: Scope::Named(&A_CONFIGS),
};

const B_CONFIGS: [(Config, f64); 2] = [(config(2, 1, 10), 1.0), (config(2, 1, 100), 1.0)];

const B: RatioTarget = RatioTarget {
    name: "(b) 2 threads, 1 replica: LD-NR >= 1.0x RwLock<HashMap> at 10% and 100% writes",
    baseline: Baseline::RwLock,
    scope: Scope::Named(&B_CONFIGS),
};

const F: RatioTarget = RatioTarget {
    name: "(f) LD-NR never below 0.95x NR (every configuration measured)",
    baseline: Baseline::Nr,
    scope: Scope::Every(0.95),
};

/// One configuration's LD-NR / baseline ratio.
#[derive(Debug, Clone, PartialEq)]
struct Ratio {
    /// The experiment of a single phase; `None` for paired rounds.
    experiment: Option<&'static str>,
    /// The configuration.
    config: Config,
    /// The median of the paired rounds' ratios, or the single phase's ratio.
    median: f64,
    /// The 95% confidence interval of the median; `None` for a single phase or fewer
    /// than six rounds.
    ci: Option<(f64, f64)>,
    /// The lowest and highest paired round's ratio; `None` for a single phase.
    range: Option<(f64, f64)>,
}

impl Ratio {
    /// The configuration, after its experiment for a single phase.
    fn label(&self) -> String {
        match self.experiment {
            Some(e) => format!("{e} {}", self.config),
            None => self.config.to_string(),
        }
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:.2}x", self.label(), self.median)?;
        if let Some((lo, hi)) = self.ci {
            write!(f, " [{lo:.2}-{hi:.2}]")?;
        }
        if let Some((lo, hi)) = self.range {
            write!(f, " ({lo:.2}-{hi:.2})")?;
        }
        Ok(())
    }
}

/// Each paired configuration's median LD-NR / `baseline` ratio and range.
fn paired(pairs: &[Pair], baseline: Baseline) -> Vec<Ratio> {
    pairs
        .iter()
        .filter_map(|p| {
            let s = match baseline {
                Baseline::RwLock => p.versus_rwlock(),
                Baseline::Nr => p.versus_nr(),
            }?;
            Some(Ratio {
                experiment: None,
                config: p.config,
                median: s.median,
                ci: s.ci,
                range: Some((s.min, s.max)),
            })
        })
        .collect()
}

/// LD-NR / `baseline` of each `scale` and `writes` phase that ran both at the same
/// threads, replicas and write ratio.
fn single_phases(points: &[Point], baseline: Baseline) -> Vec<Ratio> {
    let mut out = Vec::new();
    for l in points
        .iter()
        .filter(|p| p.system.starts_with("ldnr") && p.experiment != "replicas")
    {
        let system = match baseline {
            Baseline::RwLock => "std".to_string(),
            Baseline::Nr => format!("nr{}", l.replicas),
        };
        let base = points.iter().find(|b| {
            b.system == system
                && b.experiment == l.experiment
                && b.threads == l.threads
                && b.write_pct == l.write_pct
        });
        if let Some(b) = base {
            out.push(Ratio {
                experiment: Some(l.experiment),
                config: config(l.threads, l.replicas, l.write_pct),
                median: l.ops / b.ops.max(1e-9),
                ci: None,
                range: None,
            });
        }
    }
    out
}

impl RatioTarget {
    /// The least ratio the target accepts at `c`; `None` where it does not judge `c`.
    fn bound(&self, c: &Config) -> Option<f64> {
        match self.scope {
            Scope::Named(named) => named.iter().find(|(n, _)| n == c).map(|&(_, b)| b),
            Scope::Every(b) => Some(b),
        }
    }

    /// Judges `ratios` (those of the configurations the target names); `how` says what
    /// they are.
    fn judge(&self, ratios: Vec<Ratio>, how: &str) -> Target {
        let judged: Vec<(Ratio, f64)> = ratios
            .into_iter()
            .filter_map(|r| Some((r.clone(), self.bound(&r.config)?)))
            .collect();
        let missing: Vec<String> = match self.scope {
            Scope::Named(named) => named
                .iter()
                .filter(|(c, _)| !judged.iter().any(|(r, _)| r.config == *c))
                .map(|(c, _)| c.to_string())
                .collect(),
            Scope::Every(_) => Vec::new(),
        };
        let pair = format!("LD-NR/{}", self.baseline.name());
        if judged.is_empty() {
            return Target {
                name: self.name.into(),
                measured: if missing.is_empty() {
                    format!("no {pair} pair measured")
                } else {
                    format!("not measured: no {pair} pair at {}", missing.join(", "))
                },
                met: None,
            };
        }
        let min = judged
            .iter()
            .map(|(r, _)| r.median)
            .fold(f64::INFINITY, f64::min);
        let list: Vec<String> = judged.iter().map(|(r, _)| r.to_string()).collect();
        let below: Vec<String> = judged
            .iter()
            .filter(|(r, bound)| r.median < *bound)
            .map(|(r, bound)| {
                format!(
                    "{} {}x < {bound:.2}x",
                    r.label(),
                    below_bound(r.median, *bound)
                )
            })
            .collect();
        let mut measured = format!(
            "{pair}, {how}: min {min:.2}x over {} config{} [{}]",
            judged.len(),
            if judged.len() == 1 { "" } else { "s" },
            list.join(", ")
        );
        if !below.is_empty() {
            measured += &format!("; below the bound: {}", below.join(", "));
        }
        let undecided: Vec<String> = judged
            .iter()
            .filter_map(|(r, bound)| {
                let (lo, hi) = r.ci?;
                (lo <= *bound && *bound <= hi)
                    .then(|| format!("{} [{lo:.2}-{hi:.2}] holds {bound:.2}x", r.label()))
            })
            .collect();
        if !undecided.is_empty() {
            measured += &format!(
                "; within the noise (the 95% interval holds the bound): {}",
                undecided.join(", ")
            );
        }
        if !missing.is_empty() {
            measured += &format!("; not measured: {}", missing.join(", "));
        }
        let met = if !below.is_empty() {
            Some(false)
        } else if !missing.is_empty() {
            None
        } else {
            Some(true)
        };
        Target {
            name: self.name.into(),
            measured,
            met,
        }
    }
}

/// `ratio`, below `bound`, with two decimals as everywhere else, unless that prints the
/// bound itself: then cut (not rounded) to three decimals, or four: 0.9497 is `0.949`,
/// not `0.95` (nor `0.950`).
fn below_bound(ratio: f64, bound: f64) -> String {
    let two = format!("{ratio:.2}");
    if two != format!("{bound:.2}") {
        return two;
    }
    for decimals in 3..=4 {
        let scale = 10f64.powi(decimals);
        let cut = format!("{:.*}", decimals as usize, (ratio * scale).floor() / scale);
        if cut != format!("{bound:.*}", decimals as usize) {
            return cut;
        }
    }
    format!("{ratio}")
}

fn inactivity_target(r: &Report) -> Target {
    let name = "(c) inactivity: LD-NR's running threads keep >= 80% of their throughput, NR stalls"
        .to_string();
    let Some(ia) = &r.inactivity else {
        return Target {
            name,
            measured: "inactivity not run".into(),
            met: None,
        };
    };
    let find = |s: &str| ia.runs.iter().find(|run| run.system == s);
    let (Some(ldnr), Some(nr)) = (find("ldnr"), find("nr")) else {
        return Target {
            name,
            measured: "a system did not run".into(),
            met: None,
        };
    };
    // What the threads that keep running keep of their own throughput while replica 0's
    // threads idle (those issue nothing, so the total drops by their share regardless).
    let phases = inactivity::phase_summary(ldnr);
    let min = phases
        .iter()
        .map(inactivity::PhaseSummary::kept)
        .fold(f64::INFINITY, f64::min);
    let detail: Vec<String> = phases
        .iter()
        .map(|ph| {
            format!(
                "{} threads: running threads kept {:.0}% (all threads {:.0}% of before)",
                ph.threads,
                ph.kept() * 100.0,
                100.0 * ph.idle / ph.before.max(1e-9)
            )
        })
        .collect();
    // NR's stall is shown if it stopped for good, or if whole idle-window samples
    // completed no operation (its log full, its threads spinning until replica 0 resumes).
    let (_, nr_zeros) = inactivity::idle_zeros(nr);
    let nr_stalled = nr.stalled_at.is_some() || nr_zeros > 0;
    let ldnr_ok = ldnr.stalled_at.is_none() && !phases.is_empty() && min >= 0.8;
    Target {
        name,
        measured: format!(
            "LD-NR running threads kept min {:.0}% [{}], stall: {}; NR stall: {}",
            min * 100.0,
            detail.join(", "),
            ldnr.stall(),
            nr.stall()
        ),
        met: Some(ldnr_ok && nr_stalled),
    }
}

fn memory_target(r: &Report) -> Target {
    let name = "(d) heap tracks replicas within 5%, returns within 5%".to_string();
    let Some(m) = r.measured.iter().find(|m| m.job.experiment == "replicas") else {
        return Target {
            name,
            measured: "replicas not run".into(),
            met: None,
        };
    };
    let Some(clone) = r.clone_bytes else {
        return Target {
            name,
            measured: "no heap counter (the counting allocator is not installed)".into(),
            met: None,
        };
    };
    let phases: Vec<(usize, i64)> = m
        .run
        .phases
        .iter()
        .flatten()
        .filter_map(|p| p.heap_bytes.map(|h| (p.replicas, h)))
        .collect();
    let mut worst_step: f64 = 0.0;
    for w in phases.windows(2) {
        let (r0, h0) = w[0];
        let (r1, h1) = w[1];
        if r0 != r1 {
            let expected = (r1 as f64 - r0 as f64) * clone as f64;
            worst_step = worst_step.max(((h1 - h0) as f64 - expected).abs() / expected.abs());
        }
    }
    let (Some(&(_, start)), Some(&(_, end))) = (phases.first(), phases.last()) else {
        return Target {
            name,
            measured: "no phase measured".into(),
            met: None,
        };
    };
    let back = (end - start).abs() as f64 / start as f64;
    Target {
        name,
        measured: format!(
            "worst step off by {:.1}% of one replica ({:.1} MiB); end vs start {:.2}%",
            worst_step * 100.0,
            clone as f64 / (1 << 20) as f64,
            back * 100.0
        ),
        met: Some(worst_step <= 0.05 && back <= 0.05),
    }
}

/// (e), judged on the `writes` sweep at 2 threads with one replica per node of a
/// machine of `machine_nodes` nodes (both threads on one node of a one-node machine).
fn best_map_target(points: &[Point], machine_nodes: usize) -> Target {
    let name =
        "(e) 2 threads, 0% writes: LD-NR (one replica per node) >= best concurrent map".to_string();
    let at = |p: &&Point| p.experiment == "writes" && p.threads == 2 && p.write_pct == 0;
    let ldnr: Vec<&Point> = points
        .iter()
        .filter(at)
        .filter(|p| p.system.starts_with("ldnr"))
        .collect();
    let best = points
        .iter()
        .filter(at)
        .filter(|p| !p.system.starts_with("ldnr") && !p.system.starts_with("nr"))
        .max_by(|a, b| a.ops.total_cmp(&b.ops));
    let Some(b) = best else {
        return Target {
            name,
            measured: "writes at 2 threads not run".into(),
            met: None,
        };
    };
    // The policy's choice: one replica per node with threads.
    let replicas = machine_nodes.clamp(1, 2);
    let figure = |p: &Point| {
        format!(
            "{} ({} replica{}) {:.2} Mops/s = {:.2}x",
            p.system,
            p.replicas,
            if p.replicas == 1 { "" } else { "s" },
            p.ops / 1e6,
            p.ops / b.ops.max(1e-9)
        )
    };
    let others: Vec<String> = ldnr
        .iter()
        .filter(|p| p.replicas != replicas)
        .map(|p| figure(p))
        .collect();
    let also = if others.is_empty() {
        String::new()
    } else {
        format!("; also {}", others.join(", "))
    };
    let Some(l) = ldnr.iter().find(|p| p.replicas == replicas) else {
        return Target {
            name,
            measured: format!(
                "LD-NR with {replicas} replica(s) ({machine_nodes} node(s)) not measured{also}"
            ),
            met: None,
        };
    };
    Target {
        name,
        measured: format!(
            "best map {} {:.2} Mops/s; {}{also}",
            b.system,
            b.ops / 1e6,
            figure(l)
        ),
        met: Some(l.ops >= b.ops),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runner::{Phase, PhaseResult, RunResult};
    use crate::suite::{Job, Measured};
    use crate::system::{Kind, Policy};

    /// A `writes` sweep of `kind` at `threads`: per phase (write %, replicas, ops/s).
    fn measured(kind: Kind, threads: usize, results: &[(u32, usize, f64)]) -> Measured {
        let phases = results
            .iter()
            .map(|&(write_pct, _, _)| Phase {
                threads,
                write_pct,
                duration: Duration::from_millis(100),
            })
            .collect();
        Measured {
            job: Job {
                experiment: "writes",
                kind: kind.clone(),
                phases,
            },
            run: RunResult {
                system: kind.label(),
                samples: Vec::new(),
                phases: results
                    .iter()
                    .enumerate()
                    .map(|(phase, &(write_pct, replicas, ops))| {
                        Some(PhaseResult {
                            phase,
                            threads,
                            replicas,
                            write_pct,
                            ops_per_sec: ops,
                            heap_bytes: None,
                        })
                    })
                    .collect(),
            },
        }
    }

    /// Paired rounds in which LD-NR ran at `x` times NR and `y` times the `RwLock`, per
    /// round `(x, y)`.
    fn pair(threads: usize, replicas: usize, write_pct: u32, rounds: &[(f64, f64)]) -> Pair {
        Pair {
            config: config(threads, replicas, write_pct),
            ldnr: rounds.iter().map(|_| 100.0).collect(),
            nr: rounds.iter().map(|(x, _)| 100.0 / x).collect(),
            rwlock: rounds.iter().map(|(_, y)| 100.0 / y).collect(),
        }
    }

    /// Pairs that meet (a), (b) and (f), each configuration its own one.
    fn all_met() -> Vec<Pair> {
        vec![
            pair(1, 1, 0, &[(1.0, 0.97), (1.02, 0.99), (0.98, 0.96)]),
            // One outlier round below the bound; the median is above it.
            pair(1, 1, 10, &[(1.04, 0.96), (1.04, 0.5), (1.04, 0.97)]),
            pair(1, 1, 100, &[(1.06, 0.86)]),
            pair(2, 1, 10, &[(1.03, 1.10)]),
            pair(2, 1, 100, &[(0.98, 1.02)]),
            // Not judged by (b) (two replicas), only by (f).
            pair(2, 2, 100, &[(0.96, 0.60)]),
            pair(4, 2, 0, &[(1.0, 0.90)]),
        ]
    }

    fn evaluate_pairs(pairs: Vec<Pair>) -> Vec<Target> {
        evaluate(&Report {
            pairs,
            ..Report::default()
        })
    }

    #[test]
    fn paired_targets_met_list_each_configuration_with_its_range() {
        let t = evaluate_pairs(all_met());
        let (a, b, f) = (&t[0], &t[1], &t[5]);
        assert!(
            a.name.starts_with("(a)") && b.name.starts_with("(b)") && f.name.starts_with("(f)")
        );
        assert_eq!(a.met, Some(true), "{a}");
        assert!(
            a.measured.contains(
                "LD-NR/RwLock<HashMap>, median of paired rounds: min 0.86x over 3 configs \
                 [1t/1r/0%w 0.97x (0.96-0.99), 1t/1r/10%w 0.96x (0.50-0.97), \
                 1t/1r/100%w 0.86x (0.86-0.86)]"
            ),
            "{a}"
        );
        assert_eq!(b.met, Some(true), "{b}");
        assert!(b.measured.contains("over 2 configs"), "{b}");
        assert_eq!(f.met, Some(true), "{f}");
        assert!(f.measured.contains("LD-NR/NR"), "{f}");
        assert!(f.measured.contains("over 7 configs"), "{f}");
        assert!(f.measured.contains("4t/2r/0%w 1.00x (1.00-1.00)"), "{f}");
        assert!(f.to_string().ends_with("-> MET"));
    }

    #[test]
    fn a_is_not_met_below_its_bound_for_the_write_ratio() {
        let mut pairs = all_met();
        // 0.90x passes at 100% writes (>= 0.85x) but not at 10% (>= 0.95x).
        pairs[1] = pair(1, 1, 10, &[(1.0, 0.90)]);
        pairs[2] = pair(1, 1, 100, &[(1.0, 0.90)]);
        let t = evaluate_pairs(pairs);
        assert_eq!(t[0].met, Some(false), "{}", t[0]);
        assert!(
            t[0].measured
                .ends_with("; below the bound: 1t/1r/10%w 0.90x < 0.95x"),
            "{}",
            t[0]
        );
        assert!(t[0].to_string().ends_with("-> NOT MET"));
        assert_eq!(t[1].met, Some(true), "{}", t[1]);
    }

    #[test]
    fn b_is_not_met_below_the_rwlock() {
        let mut pairs = all_met();
        pairs[4] = pair(2, 1, 100, &[(1.2, 0.97), (1.2, 0.99)]);
        let t = evaluate_pairs(pairs);
        assert_eq!(t[1].met, Some(false), "{}", t[1]);
        assert!(
            t[1].measured
                .contains("below the bound: 2t/1r/100%w 0.98x < 1.00x"),
            "{}",
            t[1]
        );
        assert_eq!(t[0].met, Some(true), "{}", t[0]);
        assert_eq!(t[5].met, Some(true), "{}", t[5]);
    }

    #[test]
    fn a_bound_inside_the_median_interval_is_reported_as_undecided() {
        let mut pairs = all_met();
        // Six rounds: the interval is the whole range. 10% writes: median 0.96x, but
        // the interval 0.90-1.00 holds 0.95x; 0% writes: 0.96-0.99, clear of it.
        let rounds = |r: [f64; 6]| r.map(|y| (1.0, y));
        pairs[0] = pair(1, 1, 0, &rounds([0.96, 0.97, 0.99, 0.97, 0.96, 0.98]));
        pairs[1] = pair(1, 1, 10, &rounds([0.90, 0.96, 1.00, 0.95, 0.97, 0.96]));
        let t = evaluate_pairs(pairs);
        assert_eq!(t[0].met, Some(true), "{}", t[0]);
        assert!(
            t[0].measured
                .contains("1t/1r/0%w 0.97x [0.96-0.99] (0.96-0.99), 1t/1r/10%w 0.96x"),
            "{}",
            t[0]
        );
        assert!(
            t[0].measured.ends_with(
                "; within the noise (the 95% interval holds the bound): \
                 1t/1r/10%w [0.90-1.00] holds 0.95x"
            ),
            "{}",
            t[0]
        );
        // Below the bound by the median, inside the noise all the same.
        let mut pairs = all_met();
        pairs[4] = pair(2, 1, 100, &rounds([0.95, 0.97, 0.98, 0.97, 1.01, 0.96]));
        let t = evaluate_pairs(pairs);
        assert_eq!(t[1].met, Some(false), "{}", t[1]);
        assert!(
            t[1].measured
                .contains("below the bound: 2t/1r/100%w 0.97x < 1.00x; within the noise"),
            "{}",
            t[1]
        );
        // Under six rounds there is no interval, and nothing is said of one.
        assert!(!evaluate_pairs(all_met())[0].measured.contains("noise"));
    }

    #[test]
    fn a_ratio_a_hair_below_its_bound_prints_a_third_decimal() {
        assert_eq!(below_bound(0.9497, 0.95), "0.949");
        assert_eq!(below_bound(0.94999, 0.95), "0.949");
        assert_eq!(below_bound(0.9449, 0.95), "0.94");
        assert_eq!(below_bound(0.9999, 1.0), "0.999");
        let mut pairs = all_met();
        pairs[1] = pair(1, 1, 10, &[(1.0, 0.948)]);
        let t = evaluate_pairs(pairs);
        assert!(
            t[0].measured
                .ends_with("; below the bound: 1t/1r/10%w 0.948x < 0.95x"),
            "{}",
            t[0]
        );
    }

    #[test]
    fn f_is_not_met_below_nr_at_any_configuration() {
        let mut pairs = all_met();
        // Outside the 1-2 threads the other targets name.
        pairs[6] = pair(4, 2, 0, &[(0.90, 1.0)]);
        let t = evaluate_pairs(pairs);
        assert_eq!(t[5].met, Some(false), "{}", t[5]);
        assert!(
            t[5].measured.contains("min 0.90x over 7 configs"),
            "{}",
            t[5]
        );
        assert!(
            t[5].measured
                .contains("below the bound: 4t/2r/0%w 0.90x < 0.95x"),
            "{}",
            t[5]
        );
        assert_eq!(t[0].met, Some(true), "{}", t[0]);
    }

    #[test]
    fn targets_not_measured_say_which_configurations_are_missing() {
        let t = evaluate(&Report::default());
        assert!(t.iter().all(|t| t.met.is_none()), "{t:?}");
        assert_eq!(
            t[0].measured,
            "not measured: no LD-NR/RwLock<HashMap> pair at 1t/1r/0%w, 1t/1r/10%w, 1t/1r/100%w"
        );
        assert_eq!(t[5].measured, "no LD-NR/NR pair measured");
        assert!(t[5].to_string().ends_with("-> NOT MEASURED"));

        // What `--quick` pairs: two threads, 10% writes. (b) is half measured: met so
        // far, so not measured; a shortfall where it did measure is not met.
        let quick = |b: f64| {
            evaluate_pairs(vec![
                pair(2, 1, 10, &[(1.0, b)]),
                pair(2, 2, 10, &[(1.0, 0.5)]),
            ])
        };
        let t = quick(1.1);
        assert_eq!(t[0].met, None, "{}", t[0]);
        assert_eq!(t[1].met, None, "{}", t[1]);
        assert_eq!(
            t[1].measured,
            "LD-NR/RwLock<HashMap>, median of paired rounds: min 1.10x over 1 config \
             [2t/1r/10%w 1.10x (1.10-1.10)]; not measured: 2t/1r/100%w"
        );
        assert_eq!(t[5].met, Some(true), "{}", t[5]);
        assert_eq!(quick(0.9)[1].met, Some(false));
    }

    #[test]
    fn without_pairs_single_phases_stand_in_where_both_systems_ran() {
        let report = Report {
            measured: vec![
                measured(
                    Kind::Ldnr(Policy::Static(1)),
                    1,
                    &[(0, 1, 97.0), (10, 1, 96.0), (100, 1, 80.0)],
                ),
                measured(
                    Kind::Nr(1),
                    1,
                    &[(0, 1, 100.0), (10, 1, 90.0), (100, 1, 70.0)],
                ),
                measured(
                    Kind::Std,
                    1,
                    &[(0, 0, 100.0), (10, 0, 100.0), (100, 0, 100.0)],
                ),
            ],
            ..Report::default()
        };
        let t = evaluate(&report);
        assert_eq!(t[0].met, Some(false), "{}", t[0]);
        assert!(
            t[0].measured.contains(
                "single phases, unpaired: min 0.80x over 3 configs [writes 1t/1r/0%w 0.97x, \
                 writes 1t/1r/10%w 0.96x, writes 1t/1r/100%w 0.80x]; below the bound: \
                 writes 1t/1r/100%w 0.80x < 0.85x"
            ),
            "{}",
            t[0]
        );
        // Nothing ran at two threads.
        assert_eq!(t[1].met, None, "{}", t[1]);
        // 0.97x, 1.07x, 1.14x NR.
        assert_eq!(t[5].met, Some(true), "{}", t[5]);
        assert!(
            t[5].measured.contains("min 0.97x over 3 configs"),
            "{}",
            t[5]
        );

        // Paired rounds take precedence: the same single phases, judged on pairs only.
        let paired = Report {
            pairs: all_met(),
            ..report
        };
        let t = evaluate(&paired);
        assert_eq!(t[0].met, Some(true), "{}", t[0]);
        assert!(!t[0].measured.contains("writes 1t"), "{}", t[0]);
        let summary = paired.summary();
        assert!(
            summary.contains("ldnr/rwlock median [CI] (range)"),
            "{summary}"
        );
        assert!(summary.contains("1.04x (1.04-1.04)"), "{summary}");
    }

    #[test]
    fn e_is_judged_with_one_replica_per_node_and_reports_the_other() {
        let report = |machine_nodes| Report {
            measured: vec![
                measured(Kind::Ldnr(Policy::Static(1)), 2, &[(0, 1, 99.0e6)]),
                measured(Kind::Ldnr(Policy::Static(2)), 2, &[(0, 2, 80.0e6)]),
                measured(Kind::Nr(1), 2, &[(0, 1, 200.0e6)]),
                measured(Kind::Std, 2, &[(0, 0, 90.0e6)]),
                measured(Kind::DashMap, 2, &[(0, 0, 95.0e6)]),
            ],
            machine_nodes,
            ..Report::default()
        };
        // One node: the verdict is one replica's, 99 against dashmap's 95.
        let e = evaluate(&report(1)).remove(4);
        assert!(e.name.starts_with("(e)"));
        assert_eq!(e.met, Some(true), "{e}");
        assert_eq!(
            e.measured,
            "best map dashmap 95.00 Mops/s; ldnr1 (1 replica) 99.00 Mops/s = 1.04x; \
             also ldnr2 (2 replicas) 80.00 Mops/s = 0.84x"
        );
        // Two nodes: one replica per node is two.
        let e = evaluate(&report(2)).remove(4);
        assert_eq!(e.met, Some(false), "{e}");
        assert!(e.measured.contains("; ldnr2 (2 replicas)"), "{e}");
        assert!(e.measured.contains("also ldnr1 (1 replica)"), "{e}");
        // Not run.
        assert_eq!(evaluate(&Report::default())[4].met, None);
    }
}
