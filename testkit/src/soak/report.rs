//! What a soak reports: [`Summary`], and the heap figures behind it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::{Config, Shared};
use crate::nodes::Affinity;

/// Live heap bytes at one replica count, over the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeapAt {
    /// How many samples.
    pub samples: usize,
    /// The lowest sample.
    pub min: isize,
    /// The highest sample.
    pub max: isize,
    /// The lowest sample of the run's first third, and how many samples it had.
    pub first_third: Option<(isize, usize)>,
    /// The lowest sample of the run's last third, and how many samples it had.
    pub last_third: Option<(isize, usize)>,
}

/// The soak's memory figures (with a counting allocator installed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// The size of one replica: a plain clone of the initial map.
    pub replica_bytes: isize,
    /// How much a baseline may grow between the first and the last third.
    pub tolerance: isize,
    /// Live heap bytes by replica count.
    pub by_replicas: BTreeMap<usize, HeapAt>,
}

/// What a soak did and found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The configuration it ran.
    pub config: Option<Config>,
    /// How long it ran.
    pub elapsed: Duration,
    /// Operations completed by the workers.
    pub ops: u64,
    /// Of those, writes (the coordinator's clean-up writes not included).
    pub writes: u64,
    /// Rounds completed.
    pub rounds: u64,
    /// Replicas added.
    pub adds: u64,
    /// Replicas removed.
    pub removes: u64,
    /// Hot-counter increments whose response was checked exactly once.
    pub increments_checked: u64,
    /// Histories checked for linearizability.
    pub histories: u64,
    /// Events in them.
    pub events: u64,
    /// Heap figures, when a counting allocator is installed.
    pub memory: Option<Memory>,
    /// What went wrong (empty: passed). At most a few messages; see
    /// [`Summary::failure_count`].
    pub failures: Vec<String>,
    /// How many failures there were.
    pub failure_count: usize,
}

impl Summary {
    /// Whether the soak found nothing wrong.
    pub fn passed(&self) -> bool {
        self.failure_count == 0
    }
}

/// Live heap bytes by replica count, from the churner's samples.
pub(super) fn memory(sh: &Shared, replica_bytes: isize, elapsed: Duration) -> Memory {
    let samples = sh.samples.lock().unwrap_or_else(|p| p.into_inner());
    let third = elapsed / 3;
    let low =
        |m: Option<(isize, usize)>, v: isize| Some(m.map_or((v, 1), |(m, n)| (m.min(v), n + 1)));
    let mut by_replicas: BTreeMap<usize, HeapAt> = BTreeMap::new();
    for s in samples.iter() {
        let at = by_replicas.entry(s.replicas).or_insert(HeapAt {
            min: isize::MAX,
            max: isize::MIN,
            ..HeapAt::default()
        });
        at.samples += 1;
        at.min = at.min.min(s.live);
        at.max = at.max.max(s.live);
        if s.at < third {
            at.first_third = low(at.first_third, s.live);
        }
        if s.at >= elapsed.saturating_sub(third) {
            at.last_third = low(at.last_third, s.live);
        }
    }
    Memory {
        replica_bytes,
        tolerance: (replica_bytes / 2).max(4 << 20),
        by_replicas,
    }
}

/// Bytes as MiB, for the summary.
fn mib(bytes: isize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        if let Some(c) = &self.config {
            let nodes = match c.affinity {
                Affinity::Simulated => "pretend node(s)",
                Affinity::Linux => "node(s) (linux affinity)",
            };
            writeln!(
                f,
                "soak: {:.1} s; {} workers on {} {nodes}, 1..={} replicas, {} keys, \
                 log {}, seed {}",
                secs, c.threads, c.nodes, c.replicas_max, c.keys, c.log_capacity, c.seed
            )?;
        }
        writeln!(
            f,
            "  operations:   {} ({:.0}/s), {} of them writes",
            self.ops,
            self.ops as f64 / secs,
            self.writes
        )?;
        writeln!(
            f,
            "  replicas:     {} added, {} removed ({:.1} changes/s)",
            self.adds,
            self.removes,
            (self.adds + self.removes) as f64 / secs
        )?;
        writeln!(
            f,
            "  exactly once: {} shared-counter increments over {} rounds, each response \
             checked; own and cold counters, every replica's final state",
            self.increments_checked, self.rounds
        )?;
        writeln!(
            f,
            "  histories:    {} checked (WGL), {} events",
            self.histories, self.events
        )?;
        match &self.memory {
            None => writeln!(f, "  memory:       no counting allocator installed")?,
            Some(m) => {
                let all = m.by_replicas.values();
                let (lo, hi) = all.fold((isize::MAX, isize::MIN), |(lo, hi), a| {
                    (lo.min(a.min), hi.max(a.max))
                });
                writeln!(
                    f,
                    "  memory:       one replica {} ({} B); live heap min {}, max {}; growth \
                     allowed per replica count {}",
                    mib(m.replica_bytes),
                    m.replica_bytes,
                    mib(lo),
                    mib(hi),
                    mib(m.tolerance)
                )?;
                writeln!(
                    f,
                    "    replicas  samples          min          max   min - min(r-1)  \
                     first-third low (n)   last-third low (n)"
                )?;
                let low = |v: Option<(isize, usize)>| {
                    v.map_or("-".to_string(), |(b, n)| format!("{b} B ({n})"))
                };
                let mut below: Option<(usize, isize)> = None;
                for (&r, a) in &m.by_replicas {
                    let step = match below {
                        Some((b, min)) if b + 1 == r => format!("{:+} B", a.min - min),
                        _ => "-".to_string(),
                    };
                    below = Some((r, a.min));
                    writeln!(
                        f,
                        "    {r:>8}  {:>7}  {:>11}  {:>11}  {step:>15}  {:>19}  {:>19}",
                        a.samples,
                        mib(a.min),
                        mib(a.max),
                        low(a.first_third),
                        low(a.last_third)
                    )?;
                }
            }
        }
        if self.failure_count == 0 {
            writeln!(f, "  violations:   none")
        } else {
            writeln!(f, "  FAILURES:     {}", self.failure_count)?;
            for msg in &self.failures {
                writeln!(f, "  - {msg}")?;
            }
            Ok(())
        }
    }
}
