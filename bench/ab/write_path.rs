//! The single-thread operation path of two LD-NR commits (`old`, `new`), paired in one
//! process with the structure a user would otherwise write (issue 16): the bare
//! `HashMap` and the same map behind `std::sync::RwLock`.
//!
//! Not a workspace target: `AB_MAIN=write_path.rs OLD=<commit> NEW=<commit>
//! bench/ab/old-vs-new.sh [sections] [--rounds N] [--phase-ms N]` copies both commits'
//! `ldnr` and `ldnr-hashmap` into a scratch crate under /tmp and runs this file there.
//!
//! Each section times six variants in paired rounds (DESIGN.md §8): the bare map, the
//! map behind a `RwLock`, and two instances each of `old` and `new` (one replica, the
//! default affinity manager), in an order rotated every round and reversed every other
//! cycle; a phase's cost is the median of its ~1 ms slices' ns per operation; ratios are
//! taken per round and given as medians with [interquartile ranges]. The two instances of
//! a version are pooled (their mean per round) for `new/old`, and compared with each
//! other as the A/A control: one instance's layout alone moves an operation by several
//! percent here. Sections (default all): `write`, `read` (`Insert` / `Get` of uniform
//! keys of a pre-filled `u64` map), each at 64K and 1M keys.
//!
//! # What it showed (issue 16, first pass; AMD EPYC VM, 2 cores)
//!
//! - A single-thread write runs ~600 instructions (callgrind, `Ir` of
//!   `Shared::write` per call: 597), of which ~130 are the `HashMap::insert`; a bare
//!   insert loop runs ~150 per operation, `RwLock<HashMap>` ~180. The insert itself
//!   takes 3–4x longer inside LD-NR (perf: 82 % of LD-NR's write samples are in
//!   `insert`), because with ~450 other instructions between two inserts the core no
//!   longer overlaps one insert's cache misses with the next's.
//! - Serializing instructions are not what stops that overlap here. Upper bounds,
//!   measured with unsound hacks that were never committed: the write lock's fence
//!   removed, 0.992x (64K) / 0.958x (1M, A/A 0.953x); fence *and* combiner-lock CAS
//!   removed, 0.970x [0.936–1.083] / 1.002x [0.979–1.027]; the reader's fence removed,
//!   0.995x [0.954–1.044] / 0.972x [0.933–1.013] (A/A 0.994x / 0.970x). rustc already
//!   emits the SeqCst fences as `lock or` on the stack, not `mfence`.
//! - A 1,024-entry log instead of 65,536 (the log's footprint in the caches): 0.959x
//!   [0.920–1.021] / 0.986x [0.964–1.013], inside the A/A spread.
//!
//! So the lever is the number of instructions (and branches) per write on the sole
//! replica's path, not its fences.

use std::hint::black_box;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Pre-generated keys (a power of two), read sequentially: 8 MiB, as in `benches/ops.rs`.
const KEY_STREAM: usize = 1 << 20;
const CHUNK: usize = 256;
/// A phase is timed in slices of about this long; its cost is the median slice's, so a
/// slice in which the thread was preempted does not count.
const SLICE: Duration = Duration::from_millis(1);

type Phase<'a> = Box<dyn FnMut(Duration) -> f64 + 'a>;

fn timed(phase: Duration, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut slices = Vec::new();
    while slices.is_empty() || start.elapsed() < phase {
        let t = Instant::now();
        let mut n = 0u64;
        loop {
            for _ in 0..CHUNK {
                op();
            }
            n += CHUNK as u64;
            let e = t.elapsed();
            if e >= SLICE {
                slices.push(e.as_nanos() as f64 / n as f64);
                break;
            }
        }
    }
    median(slices)
}

fn key_stream(seed: u64, keys: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..KEY_STREAM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % keys
        })
        .collect()
}

macro_rules! version {
    ($m:ident, $ldnr:ident, $hm:ident) => {
        mod $m {
            use super::*;
            pub use $hm::{MapRead, MapWrite, U64Map};
            pub use $ldnr::{NodeReplicated, ThreadToken};
            pub fn build(keys: u64) -> (NodeReplicated<U64Map>, ThreadToken) {
                let nr = NodeReplicated::builder(U64Map::with_keys(keys))
                    .build()
                    .expect("config");
                let t = nr.register().expect("register");
                (nr, t)
            }
            pub fn phase<'a>(
                nr: &'a NodeReplicated<U64Map>,
                tkn: ThreadToken,
                keys: &'a [u64],
                write: bool,
            ) -> Phase<'a> {
                let (mut i, mut v) = (0usize, 0u64);
                Box::new(move |phase| {
                    timed(phase, || {
                        let k = keys[i & (KEY_STREAM - 1)];
                        i = i.wrapping_add(1);
                        v = v.wrapping_add(1);
                        if write {
                            black_box(nr.execute_mut(MapWrite::Insert(black_box(k), v), tkn));
                        } else {
                            black_box(nr.execute(MapRead::Get(black_box(k)), tkn));
                        }
                    })
                })
            }
        }
    };
}

version!(old, ldnr_old, ldnr_hashmap_old);
version!(new, ldnr_new, ldnr_hashmap_new);

type Inner = std::collections::HashMap<u64, u64>;

fn bare<'a>(map: &'a mut Inner, keys: &'a [u64], write: bool) -> Phase<'a> {
    let (mut i, mut v) = (0usize, 0u64);
    Box::new(move |phase| {
        timed(phase, || {
            let k = keys[i & (KEY_STREAM - 1)];
            i = i.wrapping_add(1);
            v = v.wrapping_add(1);
            if write {
                black_box(map.insert(black_box(k), v));
            } else {
                black_box(map.get(&black_box(k)).copied());
            }
        })
    })
}

fn locked<'a>(map: &'a RwLock<Inner>, keys: &'a [u64], write: bool) -> Phase<'a> {
    let (mut i, mut v) = (0usize, 0u64);
    Box::new(move |phase| {
        timed(phase, || {
            let k = keys[i & (KEY_STREAM - 1)];
            i = i.wrapping_add(1);
            v = v.wrapping_add(1);
            if write {
                black_box(map.write().unwrap().insert(black_box(k), v));
            } else {
                black_box(map.read().unwrap().get(&black_box(k)).copied());
            }
        })
    })
}

struct Opts {
    rounds: usize,
    phase: Duration,
    sections: Vec<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The interquartile range.
fn iqr(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.75))
}

/// ns[variant][round], ABBA-rotated order, one uncounted warm-up round.
fn paired(o: &Opts, vs: &mut [Phase<'_>]) -> Vec<Vec<f64>> {
    let k = vs.len();
    let mut ns = vec![Vec::new(); k];
    for r in 0..=o.rounds {
        let mut order: Vec<usize> = (0..k).collect();
        order.rotate_left(r % k);
        if (r / k) % 2 == 1 {
            order.reverse();
        }
        let mut this = vec![0.0; k];
        for &i in &order {
            this[i] = (vs[i])(o.phase);
        }
        if r > 0 {
            for i in 0..k {
                ns[i].push(this[i]);
            }
        }
    }
    ns
}

/// Per round, the mean of variants `a` over the mean of variants `b`.
fn pooled(ns: &[Vec<f64>], a: &[usize], b: &[usize]) -> String {
    let mean = |of: &[usize], r: usize| of.iter().map(|&i| ns[i][r]).sum::<f64>() / of.len() as f64;
    let r: Vec<f64> = (0..ns[0].len()).map(|r| mean(a, r) / mean(b, r)).collect();
    let (lo, hi) = iqr(&r);
    format!("{:.3}x [{:.3}–{:.3}]", median(r), lo, hi)
}

fn ns_of(ns: &[Vec<f64>], a: &[usize]) -> String {
    let v: Vec<f64> = (0..ns[0].len())
        .map(|r| a.iter().map(|&i| ns[i][r]).sum::<f64>() / a.len() as f64)
        .collect();
    let (lo, hi) = iqr(&v);
    format!("{:.1} [{:.1}–{:.1}]", median(v), lo, hi)
}

fn section(o: &Opts, write: bool) {
    let what = if write { "write" } else { "read" };
    println!(
        "\n== {what}: ns per operation, 1 thread, 1 replica; {} rounds x {} ms",
        o.rounds,
        o.phase.as_millis()
    );
    println!(
        "| keys | bare | RwLock | old | new | new/old | A/A old | A/A new | new/RwLock | new/bare | old/RwLock |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (n, label) in [(1u64 << 16, "64K"), (1 << 20, "1M")] {
        let keys = key_stream(0x5eed_0016 ^ n ^ write as u64, n);
        let mut map = ldnr_hashmap_new::U64Map::with_keys(n).0;
        let lock = RwLock::new(ldnr_hashmap_new::U64Map::with_keys(n).0);
        let (o1, t1) = old::build(n);
        let (n1, u1) = new::build(n);
        let (o2, t2) = old::build(n);
        let (n2, u2) = new::build(n);
        let mut vs: Vec<Phase<'_>> = vec![
            bare(&mut map, &keys, write),
            locked(&lock, &keys, write),
            old::phase(&o1, t1, &keys, write),
            new::phase(&n1, u1, &keys, write),
            old::phase(&o2, t2, &keys, write),
            new::phase(&n2, u2, &keys, write),
        ];
        let ns = paired(o, &mut vs);
        let (b, l, od, nw) = (&[0][..], &[1][..], &[2, 4][..], &[3, 5][..]);
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ns_of(&ns, b),
            ns_of(&ns, l),
            ns_of(&ns, od),
            ns_of(&ns, nw),
            pooled(&ns, nw, od),
            pooled(&ns, &[4], &[2]),
            pooled(&ns, &[5], &[3]),
            pooled(&ns, nw, l),
            pooled(&ns, nw, b),
            pooled(&ns, od, l),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Opts {
        rounds: 40,
        phase: Duration::from_millis(5),
        sections: vec![],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => o.rounds = it.next().unwrap().parse().unwrap(),
            "--phase-ms" => o.phase = Duration::from_millis(it.next().unwrap().parse().unwrap()),
            s => o.sections.push(s.into()),
        }
    }
    let want = |s: &str| o.sections.is_empty() || o.sections.iter().any(|x| x == s);
    println!(
        "old = {}, new = {}",
        include_str!("../../old/COMMIT").trim(),
        include_str!("../../new/COMMIT").trim()
    );
    if want("write") {
        section(&o, true);
    }
    if want("read") {
        section(&o, false);
    }
}
