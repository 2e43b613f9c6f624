//! One thread's operations through a loop shaped like the driver's worker (issue 16):
//! keys and the read/write coin from a xorshift generator per operation, `execute` /
//! `execute_mut` through a generic handle, the loop itself not inlined. LD-NR (one
//! replica, the default affinity manager) against the same map behind
//! `std::sync::RwLock`, in one process.
//!
//! Not a workspace target. It uses the `new` commit only:
//! `AB_MAIN=driver_loop.rs NEW=<commit> bench/ab/old-vs-new.sh <mode> <writes%> <keys> <ops> [rounds]`
//! (OLD is built too and ignored). Modes:
//! - `time`: `rounds` rounds of `ops` operations per system, LD-NR and the lock
//!   alternated (ABBA, order flipped every round); prints the median of the per-round
//!   throughput ratios LD-NR/`RwLock` with its quartiles. To compare two commits, run
//!   the binary of each in turn, several times.
//! - `cg-ldnr`, `cg-rwlock`: `ops` operations of one system only, for
//!   `valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*run_ops*'
//!   /tmp/ldnr-ab-old-new/target/release/ldnr-ab cg-ldnr 100 65536 200000`
//!   (instructions, loads and stores per operation: the totals over `ops`).
//!
//! # What it showed (issue 16; Intel Xeon VM, 2 vCPUs)
//!
//! 15d6e3d (`write_missed` out of line) against c393bfe, 64K keys, callgrind per
//! operation: a write 273 → 266 instructions, 63 → 58 loads, 28 → 25 stores; a read
//! 196 → 192 instructions, 31 → 30 loads; the lock's write 189 instructions, 24 loads,
//! 14 stores, its read 158, 13, 5. `time` (300,000 operations, 40 rounds, the two
//! commits' binaries alternated, two runs each): read-only 0.977 and 0.971 → 1.135 and
//! 1.032; 10% writes 1.030 and 0.983 → 1.075 and 1.035; 100% writes 0.840 and 0.868 →
//! 0.869 and 0.856.

use std::hint::black_box;
use std::sync::RwLock;
use std::time::Instant;

use ldnr_hashmap_new::{MapRead, MapWrite, U64Map};
use ldnr_new::{Dispatch, NodeReplicated, ThreadToken};

/// The driver's generator kind: xorshift64.
struct Rng(u64);

impl Rng {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One thread's access to a system, as the driver's `Handle`.
trait Handle {
    fn get(&mut self, key: u64) -> Option<u64>;
    fn put(&mut self, key: u64, value: u64) -> Option<u64>;
}

struct Ldnr<'a>(&'a NodeReplicated<U64Map>, ThreadToken);

impl Handle for Ldnr<'_> {
    #[inline]
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.execute(MapRead::Get(key), self.1)
    }

    #[inline]
    fn put(&mut self, key: u64, value: u64) -> Option<u64> {
        self.0.execute_mut(MapWrite::Insert(key, value), self.1)
    }
}

struct Locked<'a>(&'a RwLock<U64Map>);

impl Handle for Locked<'_> {
    #[inline]
    fn get(&mut self, key: u64) -> Option<u64> {
        self.0.read().unwrap().dispatch(MapRead::Get(key))
    }

    #[inline]
    fn put(&mut self, key: u64, value: u64) -> Option<u64> {
        self.0
            .write()
            .unwrap()
            .dispatch_mut(MapWrite::Insert(key, value))
    }
}

/// `ops` operations, `writes` percent of them writes, on keys below `keys`.
#[inline(never)]
fn run_ops<H: Handle>(h: &mut H, rng: &mut Rng, ops: u64, keys: u64, writes: u64) {
    for _ in 0..ops {
        let r = rng.next_u64();
        // As the driver: the key from the high bits, the coin from the low ones.
        let key = ((u128::from(r) * u128::from(keys)) >> 64) as u64;
        if ((r & 0xffff) * 100) >> 16 < writes {
            black_box(h.put(key, r));
        } else {
            black_box(h.get(key));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| {
        args.get(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let mode = args.first().map_or("time", String::as_str);
    let (writes, keys, ops, rounds) = (arg(1, 10), arg(2, 1 << 16), arg(3, 300_000), arg(4, 40));
    let nr = NodeReplicated::builder(U64Map::with_keys(keys))
        .build()
        .expect("config");
    let tkn = nr.register().expect("register");
    let lock = RwLock::new(U64Map::with_keys(keys));
    let mut rng = Rng(7);
    match mode {
        "cg-ldnr" => run_ops(&mut Ldnr(&nr, tkn), &mut rng, ops, keys, writes),
        "cg-rwlock" => run_ops(&mut Locked(&lock), &mut rng, ops, keys, writes),
        _ => {
            let mut ratios = Vec::new();
            for round in 0..rounds as usize {
                let (mut t_ldnr, mut t_lock) = (0.0, 0.0);
                for k in 0..2 {
                    for s in 0..2 {
                        let start = Instant::now();
                        if (s == 0) == ((round + k) % 2 == 0) {
                            run_ops(&mut Ldnr(&nr, tkn), &mut rng, ops, keys, writes);
                            t_ldnr += start.elapsed().as_secs_f64();
                        } else {
                            run_ops(&mut Locked(&lock), &mut rng, ops, keys, writes);
                            t_lock += start.elapsed().as_secs_f64();
                        }
                    }
                }
                ratios.push(t_lock / t_ldnr);
            }
            ratios.sort_by(f64::total_cmp);
            let q = |f: usize| ratios[(ratios.len() * f / 4).min(ratios.len() - 1)];
            println!(
                "{writes}% writes, {keys} keys: LD-NR/RwLock throughput, median of {rounds} rounds {:.3} [quartiles {:.3}-{:.3}]",
                q(2),
                q(1),
                q(3)
            );
        }
    }
}
