//! What a run of the driver prints and writes: CSV files, summary tables and the
//! targets, all computed from the measurements of this one run.
//!
//! Ratios compare systems measured in the same invocation, on the same machine, at the
//! same thread count and write ratio: LD-NR against node-replication 0.1.1 with the same
//! number of replicas, against `RwLock<HashMap>` (in the paired rounds), and against the
//! best of the other concurrent maps.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::inactivity;
use crate::pairs::{Pair, Spread};
use crate::suite::Measured;

/// The inactivity experiment's parameters and runs.
#[derive(Debug, Clone)]
pub(crate) struct Inactivity {
    /// The parameters both systems ran with.
    pub(crate) params: inactivity::Params,
    /// One run per system (`ldnr`, `nr`).
    pub(crate) runs: Vec<inactivity::Run>,
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    /// The runs of `scale`, `writes` and `replicas`.
    pub(crate) measured: Vec<Measured>,
    /// The inactivity experiment, if it ran.
    pub(crate) inactivity: Option<Inactivity>,
    /// Heap bytes of one more copy of the map (one replica's worth), if known.
    pub(crate) clone_bytes: Option<i64>,
    /// The paired rounds of LD-NR, NR and `RwLock<HashMap>`, if they ran.
    pub(crate) pairs: Vec<Pair>,
    /// The machine's NUMA nodes (0 if unknown, taken as one): how many replicas a policy
    /// of one replica per node would choose, for target (e).
    pub(crate) machine_nodes: usize,
}

/// One measured phase, flattened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    /// The experiment.
    pub(crate) experiment: &'static str,
    /// The system's label.
    pub(crate) system: String,
    /// Worker threads.
    pub(crate) threads: usize,
    /// Percentage of writes.
    pub(crate) write_pct: u32,
    /// Replicas (0 for the maps).
    pub(crate) replicas: usize,
    /// Operations per second.
    pub(crate) ops: f64,
}

fn is_ldnr(system: &str) -> bool {
    system.starts_with("ldnr")
}

fn is_nr(system: &str) -> bool {
    system.starts_with("nr")
}

fn is_map(system: &str) -> bool {
    !is_ldnr(system) && !is_nr(system)
}

impl Report {
    /// Every phase result of `scale`, `writes` and `replicas`.
    pub(crate) fn points(&self) -> Vec<Point> {
        self.measured
            .iter()
            .flat_map(|m| {
                m.run.phases.iter().flatten().map(move |p| Point {
                    experiment: m.job.experiment,
                    system: m.run.system.clone(),
                    threads: p.threads,
                    write_pct: p.write_pct,
                    replicas: p.replicas,
                    ops: p.ops_per_sec,
                })
            })
            .collect()
    }

    /// Writes `samples.csv` (every sample) and `phases.csv` (every phase) into `dir`.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    pub(crate) fn write_csv(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let samples = dir.join("samples.csv");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&samples)?);
        writeln!(
            f,
            "time,experiment,system,threads,replicas,write_pct,ops_per_sec,heap_bytes"
        )?;
        let heap = |h: Option<i64>| h.map(|h| h.to_string()).unwrap_or_default();
        for m in &self.measured {
            for s in &m.run.samples {
                writeln!(
                    f,
                    "{:.3},{},{},{},{},{},{:.0},{}",
                    s.time,
                    m.job.experiment,
                    m.run.system,
                    s.threads,
                    s.replicas,
                    s.write_pct,
                    s.ops_per_sec,
                    heap(s.heap_bytes)
                )?;
            }
        }
        if let Some(ia) = &self.inactivity {
            for run in &ia.runs {
                for s in &run.samples {
                    writeln!(
                        f,
                        "{:.3},inactivity,{},{},2,{},{:.0},",
                        s.t, run.system, s.threads, ia.params.write_pct, s.ops_per_sec
                    )?;
                }
            }
        }
        f.flush()?;
        let phases = dir.join("phases.csv");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&phases)?);
        writeln!(
            f,
            "experiment,system,phase,threads,replicas,write_pct,ops_per_sec,heap_bytes"
        )?;
        for m in &self.measured {
            for p in m.run.phases.iter().flatten() {
                writeln!(
                    f,
                    "{},{},{},{},{},{},{:.0},{}",
                    m.job.experiment,
                    m.run.system,
                    p.phase,
                    p.threads,
                    p.replicas,
                    p.write_pct,
                    p.ops_per_sec,
                    heap(p.heap_bytes)
                )?;
            }
        }
        f.flush()?;
        let mut files = vec![samples, phases];
        if !self.pairs.is_empty() {
            let path = dir.join("pairs.csv");
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
            writeln!(
                f,
                "threads,replicas,write_pct,round,ldnr_ops_per_sec,nr_ops_per_sec,rwlock_hashmap_ops_per_sec"
            )?;
            for p in &self.pairs {
                for (round, (l, n)) in p.ldnr.iter().zip(&p.nr).enumerate() {
                    let r = p.rwlock.get(round).map(|r| format!("{r:.0}"));
                    writeln!(
                        f,
                        "{},{},{},{round},{l:.0},{n:.0},{}",
                        p.config.threads,
                        p.config.replicas,
                        p.config.write_pct,
                        r.unwrap_or_default()
                    )?;
                }
            }
            f.flush()?;
            files.push(path);
        }
        Ok(files)
    }

    /// The summary tables, one per experiment (and per thread count of `writes`).
    pub(crate) fn summary(&self) -> String {
        let mut out = String::new();
        let mut groups: Vec<Vec<&Measured>> = Vec::new();
        for m in &self.measured {
            match groups.iter_mut().find(|g| {
                g[0].job.experiment == m.job.experiment && g[0].job.phases == m.job.phases
            }) {
                Some(g) => g.push(m),
                None => groups.push(vec![m]),
            }
        }
        for g in groups {
            if g[0].job.experiment == "replicas" {
                out += &self.replicas_table(g[0]);
            } else {
                out += &comparison_table(&g);
            }
            out.push('\n');
        }
        if let Some(ia) = &self.inactivity {
            out += &inactivity_table(ia);
        }
        if !self.pairs.is_empty() {
            out.push('\n');
            out += &pairs_table(&self.pairs);
        }
        out
    }

    fn replicas_table(&self, m: &Measured) -> String {
        let mib = |b: i64| b as f64 / (1 << 20) as f64;
        let out = format!(
            "replicas: {} threads, {}% writes; one replica's copy of the map = {}\n",
            m.job.phases.first().map_or(0, |p| p.threads),
            m.job.phases.first().map_or(0, |p| p.write_pct),
            self.clone_bytes
                .map_or("n/a".into(), |b| format!("{:.1} MiB", mib(b)))
        );
        let mut t = Table::new(&[
            "phase",
            "replicas",
            "Mops/s",
            "heap MiB",
            "MiB/replica",
            "Δheap/expected",
        ]);
        let mut prev: Option<(usize, i64)> = None;
        for p in m.run.phases.iter().flatten() {
            let step = match (prev, p.heap_bytes, self.clone_bytes) {
                (Some((r0, h0)), Some(h), Some(c)) if r0 != p.replicas => {
                    format!(
                        "{:.3}",
                        (h - h0) as f64 / ((p.replicas as f64 - r0 as f64) * c as f64)
                    )
                }
                _ => "-".into(),
            };
            t.row(vec![
                p.phase.to_string(),
                p.replicas.to_string(),
                format!("{:.2}", p.ops_per_sec / 1e6),
                p.heap_bytes
                    .map_or("n/a".into(), |h| format!("{:.1}", mib(h))),
                p.heap_bytes.map_or("n/a".into(), |h| {
                    format!("{:.1}", mib(h) / p.replicas.max(1) as f64)
                }),
                step,
            ]);
            prev = p.heap_bytes.map(|h| (p.replicas, h));
        }
        out + &t.render()
    }
}

/// Rows = phases, columns = systems (Mops/s), then per LD-NR system its ratio to NR with
/// the same replica count and to the best concurrent map.
fn comparison_table(group: &[&Measured]) -> String {
    let first = &group[0].job;
    let sweep_writes = first.experiment == "writes";
    let out = if sweep_writes {
        format!(
            "writes: {} threads, Mops/s per write ratio\n",
            first.phases[0].threads
        )
    } else {
        format!(
            "{}: {}% writes, Mops/s per thread count (ldnr: replicas in brackets)\n",
            first.experiment, first.phases[0].write_pct
        )
    };
    let systems: Vec<&str> = group.iter().map(|m| m.run.system.as_str()).collect();
    let mut header: Vec<String> = vec![if sweep_writes { "writes" } else { "threads" }.into()];
    header.extend(systems.iter().map(|s| s.to_string()));
    for s in systems.iter().filter(|s| is_ldnr(s)) {
        header.push(format!("{s}/nr"));
        header.push(format!("{s}/map"));
    }
    let mut t = Table::new(&header.iter().map(String::as_str).collect::<Vec<_>>());
    for (i, phase) in first.phases.iter().enumerate() {
        let at = |m: &Measured| m.run.phases.get(i).copied().flatten();
        let mut row = vec![if sweep_writes {
            format!("{}%", phase.write_pct)
        } else {
            phase.threads.to_string()
        }];
        for m in group {
            row.push(match at(m) {
                Some(p) if is_ldnr(&m.run.system) && m.job.kind.label() == "ldnr" => {
                    format!("{:.2}({})", p.ops_per_sec / 1e6, p.replicas)
                }
                Some(p) => format!("{:.2}", p.ops_per_sec / 1e6),
                None => "-".into(),
            });
        }
        let best_map = group
            .iter()
            .filter(|m| is_map(&m.run.system))
            .filter_map(|m| at(m).map(|p| (m.run.system.as_str(), p.ops_per_sec)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        for m in group.iter().filter(|m| is_ldnr(&m.run.system)) {
            let Some(p) = at(m) else {
                row.extend(["-".into(), "-".into()]);
                continue;
            };
            let nr = group
                .iter()
                .find(|n| n.run.system == format!("nr{}", p.replicas))
                .and_then(|n| at(n));
            row.push(nr.map_or("-".into(), |n| {
                format!("{:.2}x", p.ops_per_sec / n.ops_per_sec)
            }));
            row.push(best_map.map_or("-".into(), |(name, ops)| {
                format!("{:.2}x {name}", p.ops_per_sec / ops)
            }));
        }
        t.row(row);
    }
    out + &t.render()
}

fn pairs_table(pairs: &[Pair]) -> String {
    let rounds = pairs.iter().map(|p| p.ldnr.len()).max().unwrap_or(0);
    let out = format!(
        "LD-NR vs NR vs RwLock<HashMap>, paired: {rounds} rounds per configuration (mirrored,\n\
         rotating order), median ratio [its 95% confidence interval, from 6 rounds]\n\
         (lowest-highest round); rwlock: the same HashMap behind a RwLock, no log, no\n\
         replication\n"
    );
    let mut t = Table::new(&[
        "threads",
        "replicas",
        "writes",
        "ldnr Mops/s",
        "nr Mops/s",
        "rwlock Mops/s",
        "ldnr/nr median [CI] (range)",
        "ldnr/rwlock median [CI] (range)",
        "rwlock/nr",
    ]);
    let spread = |s: Option<Spread>| s.map_or("-".into(), |s| s.describe());
    for p in pairs {
        let [l, n, r] = p.medians();
        t.row(vec![
            p.config.threads.to_string(),
            p.config.replicas.to_string(),
            format!("{}%", p.config.write_pct),
            format!("{:.2}", l / 1e6),
            format!("{:.2}", n / 1e6),
            format!("{:.2}", r / 1e6),
            spread(p.versus_nr()),
            spread(p.versus_rwlock()),
            p.rwlock_versus_nr()
                .map_or("-".into(), |s| format!("{:.2}x", s.median)),
        ]);
    }
    out + &t.render()
}

fn inactivity_table(ia: &Inactivity) -> String {
    let mut out = format!(
        "inactivity: {}% writes, replica 0's threads idle in the middle third of each {:.1} s phase\n",
        ia.params.write_pct,
        ia.params.phase.as_secs_f64()
    );
    let mut t = Table::new(&[
        "system",
        "threads",
        "before",
        "idle",
        "idle/before",
        "running threads kept",
        "stall",
    ]);
    for run in &ia.runs {
        for ph in inactivity::phase_summary(run) {
            t.row(vec![
                run.system.clone(),
                ph.threads.to_string(),
                format!("{:.2}", ph.before / 1e6),
                format!("{:.2}", ph.idle / 1e6),
                format!("{:.0}%", 100.0 * ph.idle / ph.before.max(1e-9)),
                format!("{:.0}%", 100.0 * ph.kept()),
                run.stall(),
            ]);
        }
        if run.samples.is_empty() {
            t.row(vec![
                run.system.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
    }
    out += &t.render();
    out
}

/// A plain text table with right-aligned columns.
#[derive(Debug)]
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (i, r) in self.rows.iter().enumerate() {
            for (c, cell) in r.iter().enumerate() {
                let _ = write!(
                    out,
                    "{}{cell:>w$}",
                    if c == 0 { "  " } else { " " },
                    w = width[c]
                );
            }
            out.push('\n');
            if i == 0 {
                let total: usize = width.iter().sum::<usize>() + width.len() + 1;
                out += &format!("  {}\n", "-".repeat(total.saturating_sub(2)));
            }
        }
        out
    }
}
