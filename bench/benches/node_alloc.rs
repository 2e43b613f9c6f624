//! What `NodeAlloc` costs allocation-heavy replica work: `BTreeMap<u64, u64>` inserts and
//! removes through LD-NR (one thread; two threads on two replicas), with `NodeAlloc`'s
//! arenas against the system allocator, paired in one process (DESIGN.md §8).
//!
//! This binary installs `NodeAlloc` as its global allocator, and the replicas live on
//! two pretend nodes (`SimulatedAffinity::with_node_alloc`), so replica work allocates
//! from the pretend nodes' arenas, as it would from real nodes' with `LinuxAffinity`.
//! `NodeAlloc::set_pass_through(true)` sends every new allocation to the system
//! allocator instead: each round runs a short phase in each mode, in alternating order
//! (ABBA), with the same registered threads and the same map, and the round's ratio is
//! node time per operation over system time per operation. It prints the median ratio
//! with its range and interquartile range.
//!
//! ```text
//! cargo bench -p ldnr-bench --bench node_alloc [-- --rounds N --phase-ms MS --keys N]
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ldnr::{AffinityManager, Dispatch, NodeId, NodeReplicated};
use ldnr_affinity::{NodeAlloc, SimulatedAffinity};

#[global_allocator]
static ALLOC: NodeAlloc = NodeAlloc::new();

#[derive(Clone)]
struct Tree(BTreeMap<u64, u64>);

#[derive(Clone)]
enum Op {
    Insert(u64, u64),
    Remove(u64),
}

impl Dispatch for Tree {
    type ReadOperation = ();
    type WriteOperation = Op;
    type Response = Option<u64>;
    fn dispatch(&self, _: ()) -> Option<u64> {
        Some(self.0.len() as u64)
    }
    fn dispatch_mut(&mut self, op: Op) -> Option<u64> {
        match op {
            Op::Insert(k, v) => self.0.insert(k, v),
            Op::Remove(k) => self.0.remove(&k),
        }
    }
}

struct Opts {
    rounds: usize,
    phase: Duration,
    keys: u64,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = args.iter().any(|a| a == "--test");
    let mut o = Opts {
        rounds: if test { 2 } else { 40 },
        phase: Duration::from_millis(if test { 2 } else { 40 }),
        keys: if test { 1000 } else { 100_000 },
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<u64>().ok()).expect(a);
        match a.as_str() {
            "--rounds" => o.rounds = value() as usize,
            "--phase-ms" => o.phase = Duration::from_millis(value()),
            "--keys" => o.keys = value(),
            _ => {}
        }
    }
    o
}

/// One configuration: `threads` workers (thread `t` on pretend node `t % 2`), kept
/// registered across all rounds; returns the per-round ratios node/system.
fn measure(threads: usize, o: &Opts) -> Vec<f64> {
    let sim = Arc::new(SimulatedAffinity::new(2).with_node_alloc());
    let nr = Arc::new(
        NodeReplicated::builder(Tree((0..o.keys).map(|k| (k * 2, k)).collect()))
            .replicas(&sim.nodes())
            .affinity(sim.clone())
            .build()
            .expect("build"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(threads + 1));
    let end = Arc::new(Barrier::new(threads + 1));
    let quit = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (sim, nr, stop, ops, start, end, quit) = (
                sim.clone(),
                nr.clone(),
                stop.clone(),
                ops.clone(),
                start.clone(),
                end.clone(),
                quit.clone(),
            );
            let keys = o.keys;
            std::thread::spawn(move || {
                sim.enter(NodeId(t % 2)).expect("pretend node");
                let tkn = nr.register().expect("register");
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                loop {
                    start.wait();
                    if quit.load(Ordering::Relaxed) {
                        return;
                    }
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let k = (x >> 1) % (2 * keys);
                            let op = if x & 1 == 0 {
                                Op::Insert(k, x)
                            } else {
                                Op::Remove(k)
                            };
                            std::hint::black_box(nr.execute_mut(op, tkn));
                        }
                        n += 64;
                    }
                    ops.fetch_add(n, Ordering::Relaxed);
                    end.wait();
                }
            })
        })
        .collect();
    // Nanoseconds per operation of one phase in `system` mode or not.
    let phase = |system: bool| {
        ALLOC.set_pass_through(system);
        ops.store(0, Ordering::Relaxed);
        stop.store(false, Ordering::Relaxed);
        start.wait();
        let t = Instant::now();
        std::thread::sleep(o.phase);
        stop.store(true, Ordering::Relaxed);
        end.wait();
        let elapsed = t.elapsed();
        ALLOC.set_pass_through(false);
        elapsed.as_nanos() as f64 * threads as f64 / ops.load(Ordering::Relaxed).max(1) as f64
    };
    // Warm-up: both modes once.
    phase(false);
    phase(true);
    let ratios = (0..o.rounds)
        .map(|r| {
            let (node, system) = if r % 2 == 0 {
                let n = phase(false);
                (n, phase(true))
            } else {
                let s = phase(true);
                (phase(false), s)
            };
            node / system
        })
        .collect();
    quit.store(true, Ordering::Relaxed);
    start.wait();
    for w in workers {
        w.join().expect("worker");
    }
    ratios
}

fn main() {
    let o = opts();
    println!(
        "node_alloc: BTreeMap<u64,u64> inserts/removes through LD-NR, {} keys, 2 pretend nodes; {} paired rounds of {:?} per mode",
        o.keys, o.rounds, o.phase
    );
    println!("ratio = time per operation with NodeAlloc's arenas / with the system allocator (< 1: NodeAlloc faster)");
    for threads in [1, 2] {
        let mut r = measure(threads, &o);
        r.sort_by(f64::total_cmp);
        let q = |f: f64| r[((r.len() - 1) as f64 * f).round() as usize];
        println!(
            "  {threads} thread(s): median {:.3} (IQR {:.3}..{:.3}, range {:.3}..{:.3}; {} rounds)",
            q(0.5),
            q(0.25),
            q(0.75),
            r[0],
            r[r.len() - 1],
            r.len()
        );
    }
    println!(
        "node_alloc: arenas active {} (mbind refused for {} chunk(s): the pretend node is not this machine's)",
        ALLOC.is_active(),
        ALLOC.unbound_chunks()
    );
}
