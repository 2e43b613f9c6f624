//! The project's performance targets, judged from one run's measurements.
//!
//! - **(a)** with writes (10% and 100%), LD-NR ≥ 1.3× node-replication 0.1.1 at every
//!   configuration of 1–2 threads and 1–2 replicas (same threads, writes and replicas);
//! - **(b)** read-only, LD-NR ≥ 0.97× NR at the same configurations;
//! - **(c)** while replica 0's threads are idle, the threads that keep running (replica
//!   1's) keep ≥ 80% of their own throughput before the idle window, in every phase, and
//!   NR's stall is shown (the idle threads issue nothing, so the total drops by their
//!   share on any system: with one CPU per pretend node here, by about half);
//! - **(d)** heap bytes track the replica count: each add/remove step changes the heap by
//!   the size of one copy of the map, within 5%, and after the replicas that were removed
//!   are added back the heap is within 5% of where it started;
//! - **(e)** 2 threads, 0% writes: LD-NR (with the dynamic policy's replica count, one per
//!   node with threads) ≥ the best concurrent map.
//!
//! (a) and (b) are judged on the paired rounds ([`super::pairs`]) when they ran: the
//! median LD-NR/NR ratio of each configuration. Without them, on the single phases of
//! `scale` and `writes`.
//!
//! A target whose experiment did not run is reported as not measured.

use crate::inactivity;
use crate::pairs::Pair;
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
    let (a, b) = (
        ("(a) writes 10%/100%: LD-NR >= 1.3x NR", &[10, 100][..], 1.3),
        ("(b) read-only: LD-NR >= 0.97x NR", &[0][..], 0.97),
    );
    let versus = |(name, writes, bound): (&str, &[u32], f64)| {
        if r.pairs.is_empty() {
            versus_nr(&points, name, writes, bound)
        } else {
            versus_nr_paired(&r.pairs, name, writes, bound)
        }
    };
    vec![
        versus(a),
        versus(b),
        inactivity_target(r),
        memory_target(r),
        best_map_target(&points),
    ]
}

/// The median paired LD-NR / NR ratio of each configuration at `writes`.
fn versus_nr_paired(pairs: &[Pair], name: &str, writes: &[u32], bound: f64) -> Target {
    let ratios: Vec<(String, f64, (f64, f64))> = pairs
        .iter()
        .filter(|p| {
            writes.contains(&p.config.write_pct)
                && (1..=2).contains(&p.config.threads)
                && (1..=2).contains(&p.config.replicas)
        })
        .filter_map(|p| {
            let c = p.config;
            Some((
                format!("{}t/{}r/{}%w", c.threads, c.replicas, c.write_pct),
                p.median_ratio()?,
                p.range()?,
            ))
        })
        .collect();
    let mut target = judge(
        name,
        ratios
            .iter()
            .map(|(c, m, (lo, hi))| (format!("{c} {m:.2}x ({lo:.2}-{hi:.2})"), *m))
            .collect(),
        bound,
        "median of paired rounds",
    );
    // The reference says how far the bound is from reach at one thread.
    let ceilings: Vec<String> = pairs
        .iter()
        .filter(|p| writes.contains(&p.config.write_pct))
        .filter_map(|p| {
            let r = p.reference_ratio()?;
            let c = p.config;
            Some(format!(
                "{}t/{}r/{}%w {r:.2}x",
                c.threads, c.replicas, c.write_pct
            ))
        })
        .collect();
    if !ceilings.is_empty() {
        target.measured += &format!(
            "; RwLock<HashMap> (no replication) / NR: {}",
            ceilings.join(", ")
        );
    }
    target
}

/// `met` if every ratio is at least `bound`; `how` says what the ratios are.
fn judge(name: &str, ratios: Vec<(String, f64)>, bound: f64, how: &str) -> Target {
    if ratios.is_empty() {
        return Target {
            name: name.into(),
            measured: "no LD-NR/NR pair measured".into(),
            met: None,
        };
    }
    let min = ratios.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
    let list: Vec<&str> = ratios.iter().map(|(c, _)| c.as_str()).collect();
    Target {
        name: name.into(),
        measured: format!(
            "{how}: min {min:.2}x over {} configs [{}]",
            ratios.len(),
            list.join(", ")
        ),
        met: Some(ratios.iter().all(|r| r.1 >= bound)),
    }
}

/// LD-NR / NR ratios over the 1–2 thread, 1–2 replica configurations at `writes`.
fn versus_nr(points: &[Point], name: &str, writes: &[u32], bound: f64) -> Target {
    let mut ratios: Vec<(String, f64)> = Vec::new();
    for l in points.iter().filter(|p| p.system.starts_with("ldnr")) {
        if !(1..=2).contains(&l.threads)
            || !(1..=2).contains(&l.replicas)
            || !writes.contains(&l.write_pct)
            || l.experiment == "replicas"
        {
            continue;
        }
        let nr = points.iter().find(|n| {
            n.system == format!("nr{}", l.replicas)
                && n.experiment == l.experiment
                && n.threads == l.threads
                && n.write_pct == l.write_pct
        });
        if let Some(n) = nr {
            let config = format!(
                "{} {}t/{}r/{}%w",
                l.experiment, l.threads, l.replicas, l.write_pct
            );
            let ratio = l.ops / n.ops;
            ratios.push((format!("{config} {ratio:.2}x"), ratio));
        }
    }
    judge(name, ratios, bound, "single phases")
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

fn best_map_target(points: &[Point]) -> Target {
    let name = "(e) 2 threads, 0% writes: LD-NR >= best concurrent map".to_string();
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
    // The dynamic policy's configuration: one replica per node with threads.
    let policy = ldnr.iter().max_by_key(|p| p.replicas);
    let (Some(l), Some(b)) = (policy, best) else {
        return Target {
            name,
            measured: "writes at 2 threads not run".into(),
            met: None,
        };
    };
    let others: Vec<String> = ldnr
        .iter()
        .filter(|p| p.system != l.system)
        .map(|p| format!("{} {:.2}x", p.system, p.ops / b.ops))
        .collect();
    Target {
        name,
        measured: format!(
            "{} ({} replicas) {:.2} Mops/s vs {} {:.2} Mops/s = {:.2}x{}",
            l.system,
            l.replicas,
            l.ops / 1e6,
            b.system,
            b.ops / 1e6,
            l.ops / b.ops,
            if others.is_empty() {
                String::new()
            } else {
                format!(" (also {})", others.join(", "))
            }
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

    #[test]
    fn ratios_are_judged_per_configuration() {
        let report = Report {
            measured: vec![
                measured(
                    Kind::Ldnr(Policy::Static(2)),
                    2,
                    &[(0, 2, 99.0), (10, 2, 140.0), (100, 2, 120.0)],
                ),
                measured(
                    Kind::Nr(2),
                    2,
                    &[(0, 2, 100.0), (10, 2, 100.0), (100, 2, 100.0)],
                ),
                measured(
                    Kind::DashMap,
                    2,
                    &[(0, 0, 90.0), (10, 0, 200.0), (100, 0, 300.0)],
                ),
            ],
            ..Report::default()
        };
        let t = evaluate(&report);
        // (a): 1.4x at 10% but 1.2x at 100%.
        assert_eq!(t[0].met, Some(false), "{}", t[0]);
        assert!(t[0].measured.contains("min 1.20x"), "{}", t[0]);
        // (b): 0.99x.
        assert_eq!(t[1].met, Some(true), "{}", t[1]);
        // (c), (d): not run.
        assert_eq!(t[2].met, None);
        assert_eq!(t[3].met, None);
        // (e): 99 vs dashmap's 90.
        assert_eq!(t[4].met, Some(true), "{}", t[4]);
        assert!(t[4].to_string().ends_with("-> MET"));
        assert!(report.summary().contains("ldnr2/nr"));
    }

    #[test]
    fn paired_rounds_take_precedence_and_are_judged_on_their_median() {
        use crate::pairs::{Config, Pair};
        let pair = |threads, replicas, write_pct, ldnr: &[f64], nr: &[f64]| Pair {
            config: Config {
                threads,
                replicas,
                write_pct,
            },
            ldnr: ldnr.to_vec(),
            nr: nr.to_vec(),
            reference: if threads == 1 {
                nr.iter().map(|n| 1.25 * n).collect()
            } else {
                Vec::new()
            },
        };
        let report = Report {
            // The single phases alone would fail (a).
            measured: vec![
                measured(Kind::Ldnr(Policy::Static(1)), 1, &[(10, 1, 50.0)]),
                measured(Kind::Nr(1), 1, &[(10, 1, 100.0)]),
            ],
            pairs: vec![
                // Medians 1.4x and 1.35x; one outlier round each below 1.3x.
                pair(1, 1, 10, &[14.0, 14.0, 5.0], &[10.0, 10.0, 10.0]),
                pair(
                    2,
                    2,
                    100,
                    &[27.0, 1.0, 27.0, 28.0],
                    &[20.0, 20.0, 20.0, 20.0],
                ),
                // (b) read-only: 0.95x, below 0.97x.
                pair(2, 1, 0, &[95.0], &[100.0]),
                // Outside the targets' configurations: ignored.
                pair(4, 2, 10, &[1.0], &[100.0]),
            ],
            ..Report::default()
        };
        let t = evaluate(&report);
        assert_eq!(t[0].met, Some(true), "{}", t[0]);
        assert!(
            t[0].measured.contains("min 1.35x over 2 configs"),
            "{}",
            t[0]
        );
        assert!(t[0].measured.contains("(0.50-1.40)"), "{}", t[0]);
        assert!(
            t[0].measured
                .contains("RwLock<HashMap> (no replication) / NR: 1t/1r/10%w 1.25x"),
            "{}",
            t[0]
        );
        assert_eq!(t[1].met, Some(false), "{}", t[1]);
        assert!(report.summary().contains("ldnr/nr median"));
    }
}
