//! A short demo: closed-loop threads run a mixed workload against a replicated map,
//! with one and then two replicas, and report throughput.
//!
//! Options (all optional): `--threads N` (default: the machine's cores), `--keys N`
//! (default 65,536), `--writes PCT` (default 10), `--seconds S` per configuration
//! (default 2), `--quick` (0.3 s per configuration).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ldnr::{NodeId, NodeReplicated};

use crate::{MapRead, MapWrite, U64Map};

/// The demo's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Worker threads.
    pub threads: usize,
    /// Pre-filled keys; operations pick keys uniformly below this.
    pub keys: u64,
    /// Percentage of writes (0–100).
    pub write_pct: u32,
    /// Measured time per configuration.
    pub duration: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            keys: 1 << 16,
            write_pct: 10,
            duration: Duration::from_secs(2),
        }
    }
}

/// One measured configuration.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Replicas used.
    pub replicas: usize,
    /// Operations completed.
    pub ops: u64,
    /// Operations per second.
    pub ops_per_sec: f64,
}

/// A small xorshift generator: cheap and good enough for uniform keys.
#[derive(Debug, Clone, Copy)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator; `seed` 0 is replaced by a fixed non-zero value.
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// The next value.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Runs `settings` against a map with `replicas` replicas (all on node 0).
pub fn run(settings: Settings, replicas: usize) -> Outcome {
    let nodes = vec![NodeId(0); replicas];
    let map = NodeReplicated::builder(U64Map::with_keys(settings.keys))
        .replicas(&nodes)
        .build()
        .expect("a valid configuration");
    let stop = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    let started = std::sync::Barrier::new(settings.threads + 1);
    let elapsed = std::thread::scope(|s| {
        for t in 0..settings.threads {
            let (map, stop, total, started) = (&map, &stop, &total, &started);
            s.spawn(move || {
                let tkn = map.register().expect("thread limit is above the demo's threads");
                let mut rng = XorShift::new(t as u64 + 1);
                let mut ops = 0u64;
                started.wait();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        let r = rng.next_u64();
                        let key = r % settings.keys;
                        if (r >> 40) % 100 < u64::from(settings.write_pct) {
                            map.execute_mut(MapWrite::Insert(key, r), tkn);
                        } else {
                            map.execute(MapRead::Get(key), tkn);
                        }
                    }
                    ops += 64;
                }
                total.fetch_add(ops, Ordering::Relaxed);
            });
        }
        started.wait();
        let t0 = Instant::now();
        std::thread::sleep(settings.duration);
        stop.store(true, Ordering::Relaxed);
        t0.elapsed()
    });
    let ops = total.load(Ordering::Relaxed);
    Outcome {
        replicas,
        ops,
        ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
    }
}

fn parse_args() -> Settings {
    parse_args_from(std::env::args().skip(1))
}

fn parse_args_from(mut args: impl Iterator<Item = String>) -> Settings {
    let mut s = Settings::default();
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "--threads" => s.threads = value("--threads").max(1) as usize,
            "--keys" => s.keys = value("--keys").max(1),
            "--writes" => s.write_pct = value("--writes").min(100) as u32,
            "--seconds" => s.duration = Duration::from_secs(value("--seconds").max(1)),
            "--quick" => s.duration = Duration::from_millis(300),
            "-h" | "--help" => {
                println!(
                    "usage: ldnr-demo [--threads N] [--keys N] [--writes PCT] [--seconds S] [--quick]"
                );
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown option {other}; try --help");
                std::process::exit(2);
            }
        }
    }
    s
}

/// `add-under-load [--keys N] [--writes PCT]`: see [`crate::experiments::add_under_load`].
fn add_under_load_main(s: Settings) {
    let r = crate::experiments::add_under_load(s.keys, 2, s.write_pct, s.duration);
    println!(
        "add_replica of a {}-key map: {:.1} ms; bare clone(): {:.1} ms; ratio {:.2}",
        s.keys,
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

/// `inactivity [--quick] [--writes PCT]`: see [`crate::inactivity`].
fn inactivity_main(s: Settings, quick: bool) {
    let threads = s.threads.max(2);
    let p = crate::inactivity::Params {
        phases: vec![threads, 2 * threads],
        phase: if quick { Duration::from_millis(1500) } else { Duration::from_secs(3) },
        keys: s.keys,
        write_pct: s.write_pct,
    };
    println!(
        "inactivity: phases of {:?} threads, {:.1} s each, replica 0's threads idle in the middle third, {}% writes",
        p.phases,
        p.phase.as_secs_f64(),
        p.write_pct
    );
    for system in ["ldnr", "nr"] {
        let run = crate::inactivity::run(system, &p).expect("start the child process");
        for (threads, before, idle) in crate::inactivity::phase_summary(&run) {
            let active_before = threads as f64;
            let active_idle = (threads / 2) as f64;
            println!(
                "{system:>5} {threads:>3} threads: {:.2} Mops/s before, {:.2} Mops/s while replica 0 idles; per active thread {:.0}% of before",
                before / 1e6,
                idle / 1e6,
                100.0 * (idle / active_idle) / (before / active_before).max(1e-9)
            );
        }
        let zero = run.samples.iter().filter(|s| s.ops_per_sec == 0.0).count();
        println!(
            "{system:>5}: {:.1} s with zero throughput (stalled) out of {:.1} s",
            zero as f64 * crate::inactivity::SAMPLE.as_secs_f64(),
            run.samples.len() as f64 * crate::inactivity::SAMPLE.as_secs_f64()
        );
        if let Some(t) = run.stalled_at {
            println!(
                "{system:>5}: STALLED for good at {t:.2} s (no operation completed for {:.1} s; run abandoned)",
                crate::inactivity::STALL_AFTER.as_secs_f64()
            );
        }
    }
}

/// The demo's entry point.
pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__inactivity-child") {
        crate::inactivity::child_main(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("inactivity") {
        let quick = args.iter().any(|a| a == "--quick");
        return inactivity_main(parse_args_from(args[2..].iter().cloned()), quick);
    }
    if std::env::args().nth(1).as_deref() == Some("add-under-load") {
        let mut s = parse_args_from(std::env::args().skip(2));
        if !std::env::args().any(|a| a == "--keys") {
            s.keys = 1 << 20;
        }
        return add_under_load_main(s);
    }
    let s = parse_args();
    println!(
        "LD-NR demo: {} threads, {} keys, {}% writes, {:.1} s per configuration",
        s.threads,
        s.keys,
        s.write_pct,
        s.duration.as_secs_f64()
    );
    println!("{:>9} {:>14} {:>12}", "replicas", "ops", "Mops/s");
    for replicas in [1, 2] {
        let o = run(s, replicas);
        println!(
            "{:>9} {:>14} {:>12.2}",
            o.replicas,
            o.ops,
            o.ops_per_sec / 1e6
        );
    }
}
