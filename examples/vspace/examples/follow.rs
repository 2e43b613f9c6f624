//! A process whose threads move across four pretend NUMA nodes, and its replicated
//! address space following them; then translate throughput against the same address
//! space behind a `RwLock`.
//!
//! ```text
//! cargo run --release -p ldnr-vspace --example follow [-- --quick]
//!     [--mappings N] [--rounds N] [--phase-ms N]
//! ```
//!
//! **Part 1, the replicas follow.** The address space (`--mappings` one-page mappings,
//! default 100,000) is built on node 0 with `Policy::follow_threads`. Three threads of a
//! "process" then move through a schedule of nodes (`SimulatedAffinity`: each thread
//! declares its node); on every step each translates and maps/unmaps in its own region
//! until it is served by a replica on its own node. At the quiescent point after each
//! step the program prints the threads' nodes, the replicas' nodes, the replica count
//! and the live heap (the testkit's counting allocator), and checks that the replicas
//! are on exactly the threads' nodes (exit 1 otherwise).
//!
//! **Part 2, translate throughput.** Two worker threads, registered once, translate
//! random addresses of the prefilled mappings against `ldnr-vspace` and against the same
//! address space behind `std::sync::RwLock`, in three rows: one thread; two threads on
//! one node (one replica); two threads on two nodes (two replicas — on this one-node
//! machine both in the same caches and memory). Each round runs both systems for
//! `--phase-ms` (default 200) one after the other, in alternating order (this machine's
//! speed drifts), and the program prints the median of the per-round ratios with their
//! range over `--rounds` (default 11): by the wall clock, and per second on a CPU (each
//! worker's CPU time from `/proc/thread-self/schedstat`), which leaves out the time the
//! threads waited for a CPU that other programs on a shared machine had. The issue's
//! target (ldnr-vspace at least as fast as the `RwLock` version at 1 and 2 threads) is
//! judged on the rows with one replica, which is what `follow_threads` makes on a
//! one-node machine; the two-replica row shows what a second copy costs there.
//! `--quick`: 20,000 mappings, 3 rounds of 100 ms.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, RwLock};
use std::time::{Duration, Instant};

use ldnr::{NodeId, NodeReplicated, ThreadToken};
use ldnr_affinity::SimulatedAffinity;
use ldnr_testkit::heap::{live_bytes, CountingAlloc};
use ldnr_testkit::rng::Rng;
#[path = "shared/mod.rs"]
mod shared;

use ldnr_vspace::{AddressSpace, Prot, SpaceReads, SpaceWrites, PAGE_SIZE};
use shared::prefilled;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

const NODES: usize = 4;

/// The process's threads' nodes, step by step.
const SCHEDULE: [[usize; 3]; 8] = [
    [0, 0, 0],
    [0, 0, 1],
    [0, 1, 2],
    [1, 2, 3],
    [2, 3, 3],
    [3, 3, 3],
    [3, 0, 3],
    [0, 0, 0],
];

/// Each thread's own region for its maps and unmaps (above the prefilled mappings).
const fn own(thread: usize) -> u64 {
    (1 << 40) + (thread as u64) * (1 << 32)
}

struct Options {
    mappings: u64,
    rounds: usize,
    phase: Duration,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        mappings: 100_000,
        rounds: 11,
        phase: Duration::from_millis(200),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--quick" {
            o.mappings = 20_000;
            o.rounds = 3;
            o.phase = Duration::from_millis(100);
            continue;
        }
        let value: u64 = args
            .next()
            .ok_or(format!("{flag} needs a value"))?
            .parse()
            .map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--mappings" => o.mappings = value.max(1),
            "--rounds" => o.rounds = value.max(1) as usize,
            "--phase-ms" => o.phase = Duration::from_millis(value.max(1)),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A random address inside one of the prefilled mappings.
#[inline]
fn mapped_address(rng: &mut Rng, mappings: u64) -> u64 {
    2 * rng.below(mappings) * PAGE_SIZE + rng.below(PAGE_SIZE)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("follow: {e}");
            return ExitCode::from(2);
        }
    };
    assert!(ldnr_testkit::heap::installed());
    let sim = Arc::new(SimulatedAffinity::new(NODES));
    sim.enter(NodeId(0)).expect("node 0");

    let space = prefilled(o.mappings);
    let before = live_bytes();
    let copy = space.clone();
    let replica = live_bytes() - before;
    drop(copy);
    let nr = space
        .clone()
        .replicated()
        .affinity(sim.clone())
        .build()
        .expect("a valid configuration");
    println!(
        "ldnr-vspace follow: {} mappings ({:.1} MiB per copy), {NODES} simulated nodes, \
         Policy::follow_threads",
        o.mappings,
        mib(replica)
    );

    let followed = follow(&sim, &nr, replica, o.mappings);
    throughput(&sim, &nr, space, &o);
    if followed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Part 1: the process's threads move; prints and checks the replica set per step.
fn follow(
    sim: &SimulatedAffinity,
    nr: &NodeReplicated<AddressSpace>,
    replica: isize,
    mappings: u64,
) -> bool {
    println!();
    println!("Part 1: three threads of a process move across the nodes; the replicas follow");
    println!(
        "{:>4}  {:<14} {:<16} {:>8} {:>9} {:>12} {:>10}",
        "step",
        "thread nodes",
        "replica nodes",
        "replicas",
        "heap MiB",
        "heap-base in",
        "moved after"
    );
    println!(
        "{:>4}  {:<14} {:<16} {:>8} {:>9} {:>12} {:>10}",
        "", "", "", "", "", "copies", "ops (max)"
    );
    let threads = SCHEDULE[0].len();
    let base = live_bytes() - replica;
    let settled = Barrier::new(threads + 1);
    let printed = Barrier::new(threads + 1);
    let moved_after = AtomicUsize::new(0);
    let mut ok = true;
    std::thread::scope(|s| {
        for t in 0..threads {
            let (settled, printed, moved_after) = (&settled, &printed, &moved_after);
            s.spawn(move || {
                sim.enter(NodeId(SCHEDULE[0][t])).expect("node");
                let tkn = nr.register().expect("below the thread limit");
                let mut rng = Rng::new(t as u64 + 1);
                let mut mapped = false;
                for (step, nodes) in SCHEDULE.iter().enumerate() {
                    sim.enter(NodeId(nodes[t])).expect("node");
                    let mut ops = 0;
                    while !served_on(nr, tkn, nodes[t]) {
                        work(nr, tkn, &mut rng, &mut mapped, t, mappings);
                        ops += 1;
                        // The library checks a thread's node every 1,024 of its
                        // operations. If another thread is running the policy already,
                        // that thread acts on this move too: let it have the CPU.
                        if ops > 1024 {
                            std::thread::yield_now();
                        }
                        assert!(
                            ops <= 1_000_000,
                            "step {step}: thread {t} on node {} not served there after {ops} \
                             operations: replica {:?} of {:?}",
                            nodes[t],
                            nr.replica_of(tkn),
                            nr.replicas()
                        );
                    }
                    moved_after.fetch_max(ops, Ordering::Relaxed);
                    // A few more operations on the new replica, then the quiescent point.
                    for _ in 0..64 {
                        work(nr, tkn, &mut rng, &mut mapped, t, mappings);
                    }
                    settled.wait();
                    printed.wait();
                }
                nr.deregister(tkn).expect("registered");
            });
        }
        for (step, nodes) in SCHEDULE.iter().enumerate() {
            settled.wait();
            let infos = nr.replicas();
            let replica_nodes: BTreeSet<usize> = infos.iter().map(|r| r.node.0).collect();
            let want: BTreeSet<usize> = nodes.iter().copied().collect();
            let heap = live_bytes();
            let followed = replica_nodes == want && infos.len() == want.len();
            ok &= followed;
            println!(
                "{step:>4}  {:<14} {:<16} {:>8} {:>9.1} {:>12.2} {:>10}{}",
                format!("{nodes:?}"),
                format!("{replica_nodes:?}"),
                infos.len(),
                mib(heap),
                (heap - base) as f64 / replica as f64,
                moved_after.swap(0, Ordering::Relaxed),
                if followed {
                    ""
                } else {
                    "  <- NOT the threads' nodes"
                }
            );
            printed.wait();
        }
    });
    let heap = live_bytes();
    println!(
        "after the threads deregistered: {} replica(s), heap {:.1} MiB ({:.2} copies)",
        nr.replicas().len(),
        mib(heap),
        (heap - base) as f64 / replica as f64
    );
    println!(
        "replicas on exactly the threads' nodes at every step: {}",
        if ok { "yes" } else { "NO" }
    );
    ok
}

/// Whether the thread of `tkn` is served by a replica on `node`.
fn served_on(nr: &NodeReplicated<AddressSpace>, tkn: ThreadToken, node: usize) -> bool {
    let Some(id) = nr.replica_of(tkn) else {
        return false;
    };
    nr.replicas()
        .iter()
        .any(|r| r.id == id && r.node == NodeId(node))
}

/// One operation of a process thread: mostly translations, sometimes a map or an unmap
/// of a page of its own region.
fn work(
    nr: &NodeReplicated<AddressSpace>,
    tkn: ThreadToken,
    rng: &mut Rng,
    mapped: &mut bool,
    thread: usize,
    mappings: u64,
) {
    if rng.below(16) == 0 {
        if *mapped {
            assert_eq!(nr.unmap(tkn, own(thread), PAGE_SIZE), Ok(PAGE_SIZE));
        } else {
            nr.map(tkn, own(thread), PAGE_SIZE, Prot::READ | Prot::WRITE)
                .expect("own page");
        }
        *mapped = !*mapped;
    } else {
        let va = mapped_address(rng, mappings);
        assert!(nr.translate(tkn, va).is_some());
    }
}

/// Which system a measured phase runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Ldnr,
    RwLock,
}

/// What the workers do in the next phase.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Command {
    /// Translate until `stop`: the first `threads` workers, against `system`.
    Measure {
        system: System,
        threads: usize,
    },
    /// Worker 1 moves to `node` and operates until it is served there (not measured).
    Move {
        node: usize,
    },
    Quit,
}

/// What one worker measured in a phase.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    ops: u64,
    wall_ns: u64,
    /// Time the worker ran on a CPU (0 where the kernel does not say).
    cpu_ns: u64,
}

/// The phase protocol between the main thread and the two workers.
struct Control {
    command: Mutex<Command>,
    stop: AtomicBool,
    samples: [Mutex<Sample>; 2],
    start: Barrier,
    done: Barrier,
}

/// Nanoseconds the calling thread has run on a CPU (Linux `schedstat`), if known.
fn cpu_time_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// A configuration of part 2.
struct Config {
    label: &'static str,
    threads: usize,
    /// Worker 1's node (worker 0 stays on node 0).
    node_of_second: usize,
}

const CONFIGS: [Config; 3] = [
    Config {
        label: "1 thread",
        threads: 1,
        node_of_second: 0,
    },
    Config {
        label: "2 threads, 1 node",
        threads: 2,
        node_of_second: 0,
    },
    Config {
        label: "2 threads, 2 nodes",
        threads: 2,
        node_of_second: 1,
    },
];

/// Part 2: translate throughput, ldnr-vspace against a `RwLock<AddressSpace>`, in paired
/// rounds. A worker that sees a wrong translation panics.
fn throughput(
    sim: &SimulatedAffinity,
    nr: &NodeReplicated<AddressSpace>,
    plain: AddressSpace,
    o: &Options,
) {
    let locked = RwLock::new(plain);
    let c = Control {
        command: Mutex::new(Command::Quit),
        stop: AtomicBool::new(false),
        samples: [Mutex::default(), Mutex::default()],
        start: Barrier::new(3),
        done: Barrier::new(3),
    };
    println!();
    println!(
        "Part 2: translate throughput (random addresses of the {} mappings), {} paired rounds \
         of {} ms per row, alternating order; the same 2 worker threads throughout, \
         registered once",
        o.mappings,
        o.rounds,
        o.phase.as_millis()
    );
    let mut rows = Vec::new();
    std::thread::scope(|s| {
        for w in 0..2 {
            let (c, locked) = (&c, &locked);
            s.spawn(move || worker(w, sim, nr, locked, c, o.mappings));
        }
        let phase = |command: Command| {
            *c.command.lock().expect("not poisoned") = command;
            c.stop.store(false, Ordering::Relaxed);
            c.start.wait();
            match command {
                Command::Quit => return,
                Command::Measure { .. } => {
                    std::thread::sleep(o.phase);
                    c.stop.store(true, Ordering::Relaxed);
                }
                Command::Move { .. } => {}
            }
            c.done.wait();
        };
        // Mops/s of a measured phase: by the wall clock, and per second on a CPU; and the
        // share of the phase the workers spent on a CPU.
        let measure = |system: System, threads: usize| -> (f64, f64, f64) {
            phase(Command::Measure { system, threads });
            let samples: Vec<Sample> = (0..threads)
                .map(|w| *c.samples[w].lock().expect("not poisoned"))
                .collect();
            let rate = |ns: fn(&Sample) -> u64| {
                samples
                    .iter()
                    .map(|s| s.ops as f64 / (ns(s).max(1) as f64 * 1e-9))
                    .sum::<f64>()
                    / 1e6
            };
            let cpu = if samples.iter().all(|s| s.cpu_ns > 0) {
                rate(|s| s.cpu_ns)
            } else {
                f64::NAN
            };
            let share = samples
                .iter()
                .map(|s| s.cpu_ns as f64 / s.wall_ns.max(1) as f64)
                .sum::<f64>()
                / threads as f64;
            (rate(|s| s.wall_ns), cpu, share)
        };
        let mut second_on = 0;
        for config in &CONFIGS {
            if config.node_of_second != second_on {
                phase(Command::Move {
                    node: config.node_of_second,
                });
                second_on = config.node_of_second;
            }
            let replicas = nr.replicas().len();
            // A warm-up phase of each, not counted.
            measure(System::Ldnr, config.threads);
            measure(System::RwLock, config.threads);
            let mut wall = Vec::new();
            let mut cpu = Vec::new();
            let mut shares = Vec::new();
            for round in 0..o.rounds {
                let ((lw, lc, ls), (rw, rc, rs)) = if round % 2 == 0 {
                    let l = measure(System::Ldnr, config.threads);
                    (l, measure(System::RwLock, config.threads))
                } else {
                    let r = measure(System::RwLock, config.threads);
                    (measure(System::Ldnr, config.threads), r)
                };
                wall.push((lw, rw));
                cpu.push((lc, rc));
                shares.push(ls);
                shares.push(rs);
            }
            rows.push((config, replicas, wall, cpu, median(&mut shares)));
        }
        phase(Command::Quit);
    });

    let mut met = [true, true];
    for (metric, title) in [
        (
            0,
            "by the wall clock (what this shared 2-core machine gave the threads)",
        ),
        (
            1,
            "per second on a CPU (each worker's CPU time, from /proc/thread-self/schedstat: \
             as if each thread had a core of its own)",
        ),
    ] {
        println!("translate Mops/s, {title}:");
        println!(
            "  {:<20} {:>8} {:>9} {:>12} {:>10}  {:>27}",
            "", "replicas", "on a CPU", "ldnr-vspace", "RwLock", "ldnr/RwLock median [range]"
        );
        for (config, replicas, wall, cpu, share) in &rows {
            let pairs = if metric == 0 { wall } else { cpu };
            if pairs.iter().any(|(l, r)| l.is_nan() || r.is_nan()) {
                println!("  {:<20} (not available here)", config.label);
                met[metric] = false;
                continue;
            }
            let mut l: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let mut r: Vec<f64> = pairs.iter().map(|p| p.1).collect();
            let mut ratios: Vec<f64> = pairs.iter().map(|p| p.0 / p.1).collect();
            let m = median(&mut ratios);
            // The target is judged where the replicas are what `follow_threads` makes on
            // this one-node machine: one. Two pretend nodes put two copies in one node's
            // caches, with no remote memory for them to spare the threads.
            if config.node_of_second == 0 {
                met[metric] &= m >= 1.0;
            }
            println!(
                "  {:<20} {replicas:>8} {:>8.0}% {:>12.2} {:>10.2}  {:>27}",
                config.label,
                100.0 * share,
                median(&mut l),
                median(&mut r),
                format!("{m:.2} [{:.2}-{:.2}]", ratios[0], ratios[ratios.len() - 1])
            );
        }
    }
    println!(
        "(\"on a CPU\": the median share of each phase the workers ran on a CPU; two threads \
         ran side by side only where it is near 100%)"
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "target: ldnr-vspace translate throughput >= the RwLock version's at 1 and 2 threads \
         (median ratio; the rows with one replica, as on this one-node machine): by the wall \
         clock {}, per CPU-second {}",
        verdict(met[0]),
        verdict(met[1])
    );
    println!(
        "(the row with two replicas runs both copies in one node's caches and memory: it \
         shows what a second copy costs where there is no remote memory to avoid)"
    );
}

/// One worker of part 2: registered once, on node 0 (worker 1 moves when told).
fn worker(
    w: usize,
    sim: &SimulatedAffinity,
    nr: &NodeReplicated<AddressSpace>,
    locked: &RwLock<AddressSpace>,
    c: &Control,
    mappings: u64,
) {
    sim.enter(NodeId(0)).expect("node");
    let tkn = nr.register().expect("below the thread limit");
    let mut rng = Rng::new(0xfeed + w as u64);
    loop {
        c.start.wait();
        let command = *c.command.lock().expect("not poisoned");
        match command {
            Command::Quit => break,
            Command::Move { node } if w == 1 => {
                sim.enter(NodeId(node)).expect("node");
                let mut ops = 0;
                while !served_on(nr, tkn, node) {
                    assert!(nr
                        .translate(tkn, mapped_address(&mut rng, mappings))
                        .is_some());
                    ops += 1;
                    if ops > 1024 {
                        std::thread::yield_now();
                    }
                }
            }
            Command::Measure { system, threads } if w < threads => {
                let (t, cpu) = (Instant::now(), cpu_time_ns());
                let ops = match system {
                    System::Ldnr => run(&c.stop, &mut rng, mappings, |va| nr.translate(tkn, va)),
                    System::RwLock => run(&c.stop, &mut rng, mappings, |va| {
                        locked.read().expect("not poisoned").translate(va)
                    }),
                };
                let cpu_ns = match (cpu, cpu_time_ns()) {
                    (Some(a), Some(b)) => b - a,
                    _ => 0,
                };
                *c.samples[w].lock().expect("not poisoned") = Sample {
                    ops,
                    wall_ns: t.elapsed().as_nanos() as u64,
                    cpu_ns,
                };
            }
            _ => {}
        }
        c.done.wait();
    }
    nr.deregister(tkn).expect("registered");
}

/// Translations until `stop`: returns how many.
#[inline]
fn run(
    stop: &AtomicBool,
    rng: &mut Rng,
    mappings: u64,
    translate: impl Fn(u64) -> Option<(u64, Prot)>,
) -> u64 {
    let mut ops = 0;
    let mut sum = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..64 {
            let va = mapped_address(rng, mappings);
            let (pa, _) = translate(va).expect("a mapped address");
            sum = sum.wrapping_add(pa);
        }
        ops += 64;
    }
    std::hint::black_box(sum);
    ops
}

/// Sorts `v` and returns its median.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
