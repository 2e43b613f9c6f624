//! `ldnr-demo`, the benchmark driver: what `cargo run --release` runs.
//!
//! Without a subcommand it runs a short version of every experiment (about 80 seconds on
//! a two-core machine), prints the summary tables and the targets, and writes CSV files
//! and charts to `--out` (default `target/ldnr-results`). Subcommands run one experiment
//! at full length:
//!
//! - `scale`: growing thread counts; LD-NR adds a replica when a pretend node gets its
//!   first thread; NR with 1 and N static replicas; the concurrent maps;
//! - `writes`: write ratios 0, 1, 10, 50 and 100% at fixed thread counts;
//! - `replicas`: fixed threads, replicas removed then added; throughput and heap bytes;
//! - `inactivity`: one replica's threads go idle; NR stalls, LD-NR goes on;
//! - `versus-nr`: LD-NR, NR and `RwLock<HashMap>` in interleaved rounds at 1–2 threads
//!   and replicas and 0, 10, 100% writes; the median LD-NR/NR and LD-NR/RwLock ratios
//!   per configuration (what targets (a), (b) and (f) are judged on; see the `pairs`
//!   module);
//! - `add-under-load`: the cost of `add_replica` while threads run.
//! - `soak`: a long checked run under continuous replica changes ([`ldnr_testkit::soak`]).
//!
//! `--quick` shrinks everything to a smoke run of a few seconds (what CI runs). See
//! [`crate`] for how the experiments are built.
//!
//! `--affinity` chooses the affinity manager LD-NR runs under ([`Affinity`], see
//! [`ldnr_testkit::nodes`]):
//!
//! - `simulated`: `--nodes` pretend nodes; each worker declares its node on the manager
//!   LD-NR was built with. The default when `--nodes` asks for more nodes than the
//!   machine has (and so on a one-node machine, where `--nodes` defaults to 2).
//! - `linux`: the machine's nodes (at most `--nodes` of them); each worker is pinned to
//!   its node's CPUs and replica memory is placed on the replica's node. The default
//!   otherwise.
//!
//! node-replication and the concurrent maps are unaffected but for pinning: their
//! workers are placed and pinned exactly as LD-NR's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::charts;
use crate::inactivity;
use crate::pairs;
use crate::report::{Inactivity, Report};
use crate::runner::Progress;
use crate::suite::{self, Settings};
use crate::targets;
use ldnr_testkit::heap;
use ldnr_testkit::nodes::{cores, real_nodes, Affinity, Placement};

/// The command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ldnr-demo",
    about = "LD-NR benchmark driver: LD-NR vs node-replication 0.1.1 vs concurrent maps",
    long_about = "LD-NR benchmark driver: the thesis' hashmap experiments (scale, write \
                  ratio, replica count, inactivity), LD-NR against node-replication 0.1.1 and \
                  concurrent maps in one run. Without a subcommand: a short run of every \
                  experiment, then the summary and the targets."
)]
pub(crate) struct Cli {
    /// The experiment (default: all of them, shortened).
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// Options for every experiment.
    #[command(flatten)]
    pub(crate) options: Options,
}

/// The experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub(crate) enum Command {
    /// A short run of scale, writes, replicas, inactivity and versus-nr, then the summary
    /// (the default).
    All,
    /// Throughput over growing thread counts (1..=threads, then 2 x threads).
    Scale,
    /// Throughput over write ratios 0, 1, 10, 50, 100%.
    Writes,
    /// Replicas removed then added under load: throughput and heap bytes.
    Replicas,
    /// One replica's threads go idle: NR stalls, LD-NR goes on (child processes).
    Inactivity,
    /// LD-NR, NR and RwLock<HashMap> in interleaved rounds (mirrored, rotating order) per
    /// configuration; median LD-NR/NR and LD-NR/RwLock ratios.
    VersusNr {
        /// Rounds per configuration (each runs all three structures once).
        #[arg(long, default_value_t = 10)]
        rounds: usize,
    },
    /// The cost of add_replica while threads run.
    AddUnderLoad,
    /// Many threads, mixed checked operations and continuous replica changes for
    /// --duration seconds (whole run; default 600): see `ldnr_testkit::soak`. Exits with 1 on
    /// any violation, stall or memory growth. Defaults: 8 threads, 65536 keys, 4 nodes.
    Soak {
        /// The most live replicas (the run keeps 1..=N).
        #[arg(long, default_value_t = 4)]
        replicas_max: usize,
        /// The seed of the random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Options shared by all experiments.
#[derive(Debug, Clone, Args)]
pub(crate) struct Options {
    /// Worker threads: the most for scale, the fixed count for the others
    /// [default: the machine's cores; writes: 1, 2 and the cores].
    #[arg(long, global = true)]
    pub(crate) threads: Option<usize>,
    /// Pre-filled keys [default: 1048576; --quick: 65536].
    #[arg(long, global = true)]
    pub(crate) keys: Option<u64>,
    /// Percentage of writes for scale, replicas and inactivity [default: 10].
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub(crate) writes: Option<u32>,
    /// Seconds per phase [default: depends on the experiment and on --quick].
    #[arg(long, global = true)]
    pub(crate) duration: Option<f64>,
    /// NUMA nodes: pretend ones, or at most this many of the machine's with
    /// --affinity linux [default: max(2, the machine's nodes); soak: 4].
    #[arg(long, global = true)]
    pub(crate) nodes: Option<usize>,
    /// The affinity manager LD-NR runs under: simulated (pretend nodes; each worker
    /// declares its node) or linux (the machine's nodes; each worker is pinned to its
    /// node's CPUs, replica memory goes to the replica's node) [default: simulated when
    /// --nodes asks for more nodes than the machine has, else linux].
    #[arg(long, global = true, value_enum)]
    pub(crate) affinity: Option<Affinity>,
    /// Where CSV files and charts go.
    #[arg(long, global = true, default_value = "target/ldnr-results")]
    pub(crate) out: PathBuf,
    /// A smoke run: small map, short phases, seconds in total.
    #[arg(long, global = true)]
    pub(crate) quick: bool,
    /// add-under-load: the replica is added by `Policy::follow_threads` (a thread that
    /// registers on a third pretend node pays for it) instead of a call to add_replica.
    #[arg(long, global = true)]
    pub(crate) policy: bool,
    /// Do not pin worker threads to single CPUs (with --affinity linux they stay
    /// pinned to their node's CPUs).
    #[arg(long, global = true)]
    pub(crate) no_pin: bool,
}

impl Options {
    /// The affinity manager and the node count for `nodes` nodes asked for: `--affinity`
    /// or its default, and under [`Affinity::Linux`] no more nodes than the machine has.
    pub(crate) fn affinity_and_nodes(&self, nodes: usize) -> (Affinity, usize) {
        let nodes = nodes.max(1);
        match self
            .affinity
            .unwrap_or_else(|| Affinity::default_for(nodes))
        {
            Affinity::Simulated => (Affinity::Simulated, nodes),
            Affinity::Linux => (Affinity::Linux, nodes.min(real_nodes())),
        }
    }

    /// The experiments' settings for `command`.
    pub(crate) fn settings(&self, command: Command) -> Settings {
        let cores = cores();
        let (affinity, nodes) = self.affinity_and_nodes(self.nodes.unwrap_or(real_nodes().max(2)));
        let threads = self.threads.unwrap_or(cores).max(1);
        let secs = Duration::from_secs_f64;
        // Phase lengths of scale, writes, replicas, inactivity.
        let (mut sc, mut wr, mut re, mut ia) = match (self.quick, command) {
            (true, _) => (secs(0.15), secs(0.1), secs(0.3), secs(1.5)),
            (false, Command::All) => (secs(0.6), secs(0.3), secs(1.0), secs(2.0)),
            (false, _) => (secs(2.0), secs(1.0), secs(2.0), secs(3.0)),
        };
        if let Some(d) = self.duration.filter(|d| d.is_finite() && *d > 0.0) {
            (sc, wr, re) = (secs(d), secs(d), secs(d));
            // The stall detector needs 1.5 s without progress to call a stall.
            ia = secs(d.max(1.5));
        }
        let writes_threads = match (self.threads, self.quick) {
            (Some(t), _) => vec![t.max(1)],
            (None, true) => vec![2],
            (None, false) => {
                let mut v = vec![1, 2, cores];
                v.sort_unstable();
                v.dedup();
                v
            }
        };
        let pairs_rounds = match command {
            Command::VersusNr { rounds } => rounds.max(1),
            _ if self.quick => 2,
            _ => 4,
        };
        let pairs_phase = match (self.duration, self.quick, command) {
            (Some(d), _, _) if d.is_finite() && d > 0.0 => secs(d),
            (_, true, _) => secs(0.1),
            (_, false, Command::All) => secs(0.3),
            _ => secs(0.5),
        };
        Settings {
            threads,
            writes_threads,
            oversubscribe: !self.quick,
            keys: self
                .keys
                .unwrap_or(if self.quick { 1 << 16 } else { 1 << 20 })
                .max(1),
            write_pct: self.writes.unwrap_or(10),
            affinity,
            nodes,
            pin: !self.no_pin,
            scale_phase: sc,
            writes_phase: wr,
            replicas_phase: re,
            inactivity_phase: ia,
            pairs_rounds,
            pairs_phase,
            interval: if self.quick {
                Duration::from_millis(50)
            } else {
                Duration::from_millis(100)
            },
        }
    }
}

/// `add-under-load`: see [`crate::experiments::add_under_load`].
fn add_under_load_main(o: &Options) {
    let keys = o.keys.unwrap_or(if o.quick { 1 << 16 } else { 1 << 20 });
    let workers = o.threads.unwrap_or(2).max(1);
    let steady = Duration::from_secs_f64(o.duration.unwrap_or(if o.quick { 0.3 } else { 2.0 }));
    let r =
        crate::experiments::add_under_load(keys, workers, o.writes.unwrap_or(10), steady, o.policy);
    println!(
        "{} of a {keys}-key map: {:.1} ms; bare clone(): {:.1} ms; ratio {:.2}",
        if o.policy {
            "follow_threads adding a replica for a registering thread"
        } else {
            "add_replica"
        },
        r.add_time.as_secs_f64() * 1e3,
        r.clone_time.as_secs_f64() * 1e3,
        r.add_time.as_secs_f64() / r.clone_time.as_secs_f64()
    );
    for (t, (steady, during)) in r.per_thread.iter().enumerate() {
        println!(
            "worker {t}: steady {:.2} Mops/s, during add {:.2} Mops/s ({:.0}%)",
            steady / 1e6,
            during / 1e6,
            100.0 * during / steady
        );
    }
}

/// `soak`: see [`ldnr_testkit::soak`]; exits with status 1 unless it passed.
fn soak_main(o: &Options, replicas_max: usize, seed: u64) {
    let (affinity, nodes) = o.affinity_and_nodes(o.nodes.unwrap_or(4));
    let config = ldnr_testkit::soak::Config {
        duration: Duration::from_secs_f64(o.duration.unwrap_or(600.0).max(0.0)),
        threads: o.threads.unwrap_or(8),
        replicas_max,
        keys: o.keys.unwrap_or(1 << 16),
        nodes,
        affinity,
        seed,
        progress_every: Some(Duration::from_secs(10)),
        ..ldnr_testkit::soak::Config::default()
    };
    println!("{config:?}");
    let summary = ldnr_testkit::soak::run(&config);
    print!("{summary}");
    if !summary.passed() {
        std::process::exit(1);
    }
}

/// The inactivity experiment's parameters.
fn inactivity_params(s: &Settings, quick: bool) -> inactivity::Params {
    let threads = s.threads.max(2);
    inactivity::Params {
        phases: if quick {
            vec![threads]
        } else {
            vec![threads, 2 * threads]
        },
        phase: s.inactivity_phase,
        keys: s.keys,
        write_pct: s.write_pct,
        pin: s.pin,
        affinity: s.affinity,
    }
}

/// Runs both systems of the inactivity experiment in child processes.
fn run_inactivity(p: &inactivity::Params, progress: &Progress) -> Inactivity {
    progress.say("running inactivity (each system in a child process) ...");
    let mut runs = Vec::new();
    for system in ["ldnr", "nr"] {
        progress.message(format!("inactivity: {system}"));
        match inactivity::run(system, p) {
            Ok(run) => runs.push(run),
            Err(e) => progress.say(format!(
                "inactivity: could not start the {system} child: {e}"
            )),
        }
        progress.advance(p.phase * p.phases.len() as u32);
    }
    Inactivity {
        params: p.clone(),
        runs,
    }
}

/// The driver's entry point.
pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__inactivity-child") {
        inactivity::child_main(&args[2..]);
    }
    // Probe the heap counter while the process is single-threaded.
    let counting = heap::installed();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::All);
    if command == Command::AddUnderLoad {
        return add_under_load_main(&cli.options);
    }
    if let Command::Soak { replicas_max, seed } = command {
        return soak_main(&cli.options, replicas_max, seed);
    }
    let s = cli.options.settings(command);
    let wants = |c: Command| {
        command == Command::All || std::mem::discriminant(&command) == std::mem::discriminant(&c)
    };
    if let Some(asked) = cli.options.nodes.filter(|&n| n.max(1) != s.nodes) {
        eprintln!(
            "--affinity linux: the machine has {} node(s): running on {} instead of {asked}",
            real_nodes(),
            s.nodes
        );
    }
    let nodes = match s.affinity {
        Affinity::Simulated => format!("simulating {}", s.nodes),
        Affinity::Linux => format!("using {} with --affinity linux", s.nodes),
    };
    println!(
        "ldnr-demo{}: {} cores, {} NUMA node(s) ({nodes}), {} keys, threads <= {}, {}% writes, pinning {}, heap counter {}",
        if cli.options.quick { " --quick" } else { "" },
        cores(),
        real_nodes(),
        s.keys,
        s.threads,
        s.write_pct,
        if s.pin { "on" } else { "off" },
        if counting { "on" } else { "off" },
    );
    let started = Instant::now();
    let mut jobs = Vec::new();
    if wants(Command::Scale) {
        jobs.extend(suite::scale_jobs(&s));
    }
    if wants(Command::Writes) {
        jobs.extend(suite::writes_jobs(&s));
    }
    if wants(Command::Replicas) {
        jobs.extend(suite::replicas_jobs(&s));
    }
    let ia_params = wants(Command::Inactivity).then(|| inactivity_params(&s, cli.options.quick));
    let pair_configs = if wants(Command::VersusNr { rounds: 0 }) {
        // The default run measures what the targets name: 1–2 threads.
        let threads: Vec<usize> = if command == Command::All {
            s.writes_threads
                .iter()
                .copied()
                .filter(|&t| t <= 2)
                .collect()
        } else {
            s.writes_threads.clone()
        };
        let writes: &[u32] = if cli.options.quick {
            &[10]
        } else {
            &[0, 10, 100]
        };
        pairs::configs(&threads, s.nodes, writes)
    } else {
        Vec::new()
    };
    let planned = suite::planned(&jobs)
        + ia_params
            .as_ref()
            .map_or(Duration::ZERO, |p| 2 * p.phase * p.phases.len() as u32)
        + pairs::planned(&pair_configs, s.pairs_rounds, s.pairs_phase);
    println!(
        "planned: {:.1} s of measured phases (building the structures comes on top)",
        planned.as_secs_f64()
    );
    let progress = Progress::new(planned);
    let mut report = Report {
        measured: suite::run_jobs(&jobs, &s, &progress),
        machine_nodes: real_nodes(),
        ..Report::default()
    };
    if wants(Command::Replicas) {
        report.clone_bytes = suite::clone_bytes(s.keys);
    }
    if let Some(p) = &ia_params {
        report.inactivity = Some(run_inactivity(p, &progress));
    }
    if !pair_configs.is_empty() {
        progress.say("running versus-nr (LD-NR, NR and RwLock<HashMap> in interleaved rounds) ...");
        let placement = Placement::new(s.affinity, s.nodes, s.pin);
        report.pairs = pairs::run(
            &pair_configs,
            s.pairs_rounds,
            s.pairs_phase,
            s.keys,
            &placement,
            s.interval,
            &progress,
        );
    }
    progress.finish();

    println!();
    print!("{}", report.summary());
    println!();
    println!("targets (ratios measured in this run):");
    for t in targets::evaluate(&report) {
        println!("  {t}");
    }
    println!();
    match report.write_csv(&cli.options.out) {
        Ok(files) => files.iter().for_each(|f| println!("wrote {}", f.display())),
        Err(e) => eprintln!(
            "could not write CSV files to {}: {e}",
            cli.options.out.display()
        ),
    }
    match charts::render(&cli.options.out, &report) {
        Ok(files) => files.iter().for_each(|f| println!("wrote {}", f.display())),
        Err(e) => eprintln!(
            "could not draw charts in {}: {e}",
            cli.options.out.display()
        ),
    }
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_follows_the_option_and_the_machine() {
        use clap::Parser;
        use ldnr_testkit::nodes::{real_nodes, Affinity};

        let cli = Cli::parse_from(["ldnr-demo", "--affinity", "linux"]);
        assert_eq!(
            cli.options.affinity_and_nodes(64),
            (Affinity::Linux, real_nodes().min(64))
        );
        let cli = Cli::parse_from(["ldnr-demo"]);
        assert_eq!(
            cli.options.affinity_and_nodes(usize::MAX).0,
            Affinity::Simulated
        );
    }

    #[test]
    fn quick_writes_settings() {
        use clap::Parser;

        let cli = Cli::parse_from(["ldnr-demo", "--quick", "writes", "--threads", "3"]);
        assert_eq!(cli.command, Some(Command::Writes));
        let s = cli.options.settings(Command::Writes);
        assert_eq!(s.writes_threads, vec![3]);
        assert_eq!(s.keys, 1 << 16);
    }
}
