//! Whether consecutive operations of one thread overlap their cache misses (issue 16):
//! the bare `HashMap`, the map behind `std::sync::RwLock` and LD-NR (`new`, one replica,
//! two instances: the A/A control), each twice: with *independent* keys (each key drawn
//! from a xorshift generator, as the driver's workers draw theirs) and with *dependent*
//! keys (each key also depends, through a zero the compiler cannot see, on the previous
//! operation's response, so the next operation cannot start its misses before the
//! previous one's have returned).
//!
//! Not a workspace target: `AB_MAIN=overlap.rs NEW=<commit> bench/ab/old-vs-new.sh
//! [write|read] [--rounds N] [--phase-ms N]` (the scratch crate's `old` goes unused).
//! Paired rounds as in `harness.rs`; ns per operation, medians [IQR]; ratios per round.
//!
//! Sections `old-write` and `old-read` instead pair LD-NR at `OLD` against `NEW` (with
//! the `RwLock` for scale), both key kinds, for a change to the operation path. Run an
//! A/A (`OLD` = `NEW`) the same hour: which instance is built first alone moved the
//! 64K-key writes by 3.6% and the 1M-key reads by 5% (allocation order), so only a
//! difference past that spread says anything.
//!
//! # What it showed (AMD EPYC VM, 2 cores; 1M keys: a 34 MB table, past the 32 MB L3)
//!
//! Before f8c6ca5 (`OLD=HEAD NEW=446f201 ... --rounds 60 --phase-ms 10`; ratios of times,
//! "dep/ind" near 2 means consecutive operations overlapped):
//!
//! | | RwLock dep/ind | LD-NR dep/ind | LD-NR/RwLock, ind | LD-NR/RwLock, dep |
//! |---|---|---|---|---|
//! | write, 64K | 1.67x | 0.95x | 1.78x | 1.10x |
//! | write, 1M | 1.85x | 0.97x | 2.02x | 1.00x |
//! | read, 64K | 1.73x | 1.45x | 1.22x | 1.03x |
//! | read, 1M | 1.75x | 1.74x | 1.03x | 0.97x |
//!
//! With independent keys the core runs into the next insert while the previous one's
//! misses are outstanding, behind a `RwLock` as on the bare map. LD-NR's writes did not
//! overlap: they took the same time with or without the dependency, equal to the
//! `RwLock`'s with it. That was the 1M-key write gap of the driver (LD-NR / `RwLock`
//! 0.5–0.6x at one thread, 100% writes), not the cost of any one instruction.
//! `write_path.rs` does not show it: its key stream, loaded from an 8 MiB array, keeps
//! even the `RwLock`'s inserts from overlapping.
//!
//! The cause is the number of loads per operation. The `RwLock` loop with extra
//! independent L1-hit loads per insert (volatile, so not merged) keeps its overlap up to
//! 38 extra loads (~60 per operation in all) and loses it from 44 to 50; a SeqCst fence,
//! a byte-lock CAS, 20 extra stores or the key passed through the stack across the lock
//! changed nothing. An LD-NR write made 61 loads (callgrind `Dr`, 64K keys), at that
//! limit, so it overlapped in some builds and not in others. f8c6ca5 took the reader-set
//! scan out of the write's common case (57 loads, 257 instructions, 26 stores), and the
//! overlap came back (`OLD=446f201 NEW=3b47fb0`, same options):
//!
//! | | RwLock dep/ind | LD-NR dep/ind | LD-NR/RwLock, ind | LD-NR/RwLock, dep |
//! |---|---|---|---|---|
//! | write, 64K | 1.58x | 1.15x | 1.36x | 0.99x |
//! | write, 1M | 1.90x | 1.57x | 1.09x | 0.95x |
//! | read, 64K | 1.67x | 1.39x | 1.23x | 1.03x |
//! | read, 1M | 2.03x | 1.82x | 1.01x | 0.93x |
//!
//! In the driver, one thread, 100% writes, 1M keys: 0.96x the `RwLock` (was 0.52–0.61x).
//! The margin is a few loads: a change that adds loads to the write path can lose the
//! overlap again; check with this program.

mod harness;

use std::hint::black_box;
use std::sync::RwLock;

use harness::{ns_of, paired, pooled, table_header, timed, Opts, Phase};
use ldnr_hashmap_new::U64Map;

type Inner = std::collections::HashMap<u64, u64>;

/// A phase calling `op(key, value)` with keys below `keys` from a xorshift generator
/// (state kept across calls); with `dep`, each key is also made to depend on the
/// previous call's result.
fn keyed<'a>(
    keys: u64,
    seed: u64,
    dep: bool,
    mut op: impl FnMut(u64, u64) -> u64 + 'a,
) -> Phase<'a> {
    let mut x = seed | 1;
    let mut prev = 0u64;
    Box::new(move |phase| {
        let zero = black_box(0u64);
        timed(phase, || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut k = ((u128::from(x) * u128::from(keys)) >> 64) as u64;
            if dep {
                k ^= prev & zero;
            }
            prev = black_box(op(k, x));
        })
    })
}

/// One LD-NR version's map, one replica, with its registered thread.
macro_rules! version {
    ($m:ident, $ldnr:ident, $hm:ident) => {
        mod $m {
            use $hm::{MapRead, MapWrite, U64Map};
            use $ldnr::{NodeReplicated, ThreadToken};

            pub struct Map(NodeReplicated<U64Map>, ThreadToken);

            impl Map {
                pub fn new(keys: u64) -> Self {
                    let nr = NodeReplicated::builder(U64Map::with_keys(keys))
                        .build()
                        .expect("config");
                    let t = nr.register().expect("register");
                    Map(nr, t)
                }

                /// An insert of `(k, v)` or a get of `k`; the old or found value, or 0.
                #[inline]
                pub fn op(&self, write: bool, k: u64, v: u64) -> u64 {
                    if write {
                        self.0
                            .execute_mut(MapWrite::Insert(k, v), self.1)
                            .unwrap_or(0)
                    } else {
                        self.0.execute(MapRead::Get(k), self.1).unwrap_or(0)
                    }
                }
            }
        }
    };
}
version!(old, ldnr_old, ldnr_hashmap_old);
version!(new, ldnr_new, ldnr_hashmap_new);

/// The map behind `std::sync::RwLock`: an insert or a get, as `new::Map::op`.
fn locked(l: &RwLock<Inner>, write: bool, k: u64, v: u64) -> u64 {
    if write {
        l.write().unwrap().insert(k, v).unwrap_or(0)
    } else {
        l.read().unwrap().get(&k).copied().unwrap_or(0)
    }
}

const SIZES: [(u64, &str); 2] = [(1 << 16, "64K"), (1 << 20, "1M")];

fn section(o: &Opts, write: bool) {
    let what = if write { "write" } else { "read" };
    o.heading(&format!(
        "{what}: ns per operation, 1 thread, 1 replica; ind: independent keys, dep: dependent"
    ));
    table_header(&[
        "keys",
        "bare ind",
        "bare dep",
        "RwLock ind",
        "RwLock dep",
        "LD-NR ind",
        "LD-NR dep",
        "LD-NR/RwLock ind",
        "LD-NR/RwLock dep",
        "RwLock dep/ind",
        "LD-NR dep/ind",
        "A/A LD-NR",
    ]);
    for (n, label) in SIZES {
        let seed = 0x5eed_0016 ^ n ^ write as u64;
        let mut m1 = U64Map::with_keys(n).0;
        let mut m2 = U64Map::with_keys(n).0;
        let l = RwLock::new(U64Map::with_keys(n).0);
        let a = new::Map::new(n);
        let b = new::Map::new(n);
        let bare = |m: &mut Inner, k: u64, v: u64| {
            if write {
                m.insert(k, v).unwrap_or(0)
            } else {
                m.get(&k).copied().unwrap_or(0)
            }
        };
        let mut vs: Vec<Phase<'_>> = vec![
            keyed(n, seed, false, |k, v| bare(&mut m1, k, v)),
            keyed(n, seed, true, |k, v| bare(&mut m2, k, v)),
            keyed(n, seed, false, |k, v| locked(&l, write, k, v)),
            keyed(n, seed, true, |k, v| locked(&l, write, k, v)),
            keyed(n, seed, false, |k, v| a.op(write, k, v)),
            keyed(n, seed, true, |k, v| a.op(write, k, v)),
            keyed(n, seed, false, |k, v| b.op(write, k, v)),
        ];
        let ns = paired(o, &mut vs);
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ns_of(&ns, &[0]),
            ns_of(&ns, &[1]),
            ns_of(&ns, &[2]),
            ns_of(&ns, &[3]),
            ns_of(&ns, &[4, 6]),
            ns_of(&ns, &[5]),
            pooled(&ns, &[4, 6], &[2]),
            pooled(&ns, &[5], &[3]),
            pooled(&ns, &[3], &[2]),
            pooled(&ns, &[5], &[4, 6]),
            pooled(&ns, &[6], &[4]),
        );
    }
}

/// LD-NR at `OLD` against `NEW`, with the `RwLock` for scale.
fn old_vs_new(o: &Opts, write: bool) {
    let what = if write { "write" } else { "read" };
    o.heading(&format!(
        "{what}, old against new: ns per operation, 1 thread, 1 replica"
    ));
    table_header(&[
        "keys",
        "RwLock ind",
        "old ind",
        "new ind",
        "new/old ind",
        "new/old dep",
        "old/RwLock ind",
        "new/RwLock ind",
        "old dep/ind",
        "new dep/ind",
    ]);
    for (n, label) in SIZES {
        let seed = 0x5eed_0016 ^ n ^ write as u64;
        let l = RwLock::new(U64Map::with_keys(n).0);
        let a = new::Map::new(n);
        let b = old::Map::new(n);
        let mut vs: Vec<Phase<'_>> = vec![
            keyed(n, seed, false, |k, v| locked(&l, write, k, v)),
            keyed(n, seed, false, |k, v| a.op(write, k, v)),
            keyed(n, seed, true, |k, v| a.op(write, k, v)),
            keyed(n, seed, false, |k, v| b.op(write, k, v)),
            keyed(n, seed, true, |k, v| b.op(write, k, v)),
        ];
        let ns = paired(o, &mut vs);
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ns_of(&ns, &[0]),
            ns_of(&ns, &[3]),
            ns_of(&ns, &[1]),
            pooled(&ns, &[1], &[3]),
            pooled(&ns, &[2], &[4]),
            pooled(&ns, &[3], &[0]),
            pooled(&ns, &[1], &[0]),
            pooled(&ns, &[4], &[3]),
            pooled(&ns, &[2], &[1]),
        );
    }
}

fn main() {
    let o = Opts::from_args();
    println!("{}", harness::commits());
    o.write_and_read(section);
    // Only when asked for: not part of the default run.
    if o.sections.iter().any(|s| s == "old-write") {
        old_vs_new(&o, true);
    }
    if o.sections.iter().any(|s| s == "old-read") {
        old_vs_new(&o, false);
    }
}
