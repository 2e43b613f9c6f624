//! The typed map's `get` by `&str` on `String` keys (issue 19), against the read it
//! replaced: a read *operation* that owned its key, so every lookup cloned the `&str`
//! into a `String` (one allocation and one free) before LD-NR ran it.
//!
//! One thread, one replica, 1K and 64K keys `user:<i>` (6 to 10 bytes), looked up in a
//! fixed pseudo-random order drawn before measuring. Variants, in paired rounds (each round
//! runs every variant for one phase, the order rotated and reversed from round to round,
//! since this machine's speed drifts):
//!
//! - `old`: `NodeReplicated::execute(Get(key.to_owned()), tkn)` on a map whose `dispatch`
//!   looks the owned key up: the read path `ldnr-hashmap` had before closure reads;
//! - `old, second instance`: the same again, an A/A control for the noise;
//! - `new, MapHandle::get(&str)`: a closure read on the caller's replica, the key
//!   borrowed;
//! - `new, ReplicatedHashMap::get(&str)`: the same without a handle (`thread_token` per
//!   call).
//!
//! Run: `cargo bench -p ldnr-bench --bench typed_get` (about 10 s); `--rounds N`,
//! `--phase-ms N`; smoke test: `-- --test`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use ldnr::{Dispatch, NodeReplicated, ThreadToken};
use ldnr_hashmap::ReplicatedHashMap;
use ldnr_testkit::rng::Rng;

/// Map sizes: one that fits in the caches (the clone is most of the difference) and one
/// that does not (cache misses are most of the cost).
const SIZES: [usize; 2] = [1 << 10, 1 << 16];
/// Lookups drawn before measuring (a power of two: the stream is indexed with a mask).
const LOOKUPS: usize = 1 << 16;
/// Lookups between two looks at the clock.
const CHUNK: usize = 256;
/// A phase's cost is its median slice of about this long (a preempted slice is an
/// outlier, not a shift).
const SLICE: Duration = Duration::from_millis(1);

/// The read path before closure reads: a `String → u64` map whose read operation owns
/// its key.
#[derive(Clone)]
struct OwnedKeyReads(HashMap<String, u64>);

/// A lookup that owns its key.
struct Get(String);

impl Dispatch for OwnedKeyReads {
    type ReadOperation = Get;
    type WriteOperation = (String, u64);
    type Response = Option<u64>;

    fn dispatch(&self, Get(k): Get) -> Option<u64> {
        self.0.get(&k).copied()
    }

    fn dispatch_mut(&mut self, (k, v): (String, u64)) -> Option<u64> {
        self.0.insert(k, v)
    }
}

/// ns per lookup: the median over slices of whole chunks, run until `phase` passed.
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median and interquartile range of `v`.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (median(v.clone()), at(0.25), at(0.75))
}

/// One variant: a name and a phase runner returning ns per lookup.
type Variant<'a> = (&'static str, Box<dyn FnMut(Duration) -> f64 + 'a>);

/// `lookups` walked in order, wrapping around.
fn walk<'a>(lookups: &'a [&'a str]) -> impl FnMut() -> &'a str + 'a {
    let mut i = 0usize;
    move || {
        let k = lookups[i & (LOOKUPS - 1)];
        i = i.wrapping_add(1);
        k
    }
}

/// The `old` variant on `nr`: every lookup clones its key into the read operation.
fn old<'a>(
    nr: &'a NodeReplicated<OwnedKeyReads>,
    tkn: ThreadToken,
    lookups: &'a [&'a str],
) -> Box<dyn FnMut(Duration) -> f64 + 'a> {
    let mut next = walk(lookups);
    Box::new(move |phase| {
        timed(phase, || {
            let k = black_box(next());
            black_box(nr.execute(Get(k.to_owned()), tkn));
        })
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = args.iter().any(|a| a == "--test");
    let value = |name: &str| -> Option<u64> {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1).and_then(|v| v.parse().ok())
    };
    let rounds = value("--rounds").unwrap_or(if test { 2 } else { 40 }) as usize;
    let phase = Duration::from_millis(value("--phase-ms").unwrap_or(if test { 1 } else { 25 }));

    for keys in SIZES {
        section(keys, rounds, phase);
    }
}

/// Builds the maps of `n` keys and runs the variants on them in paired rounds.
fn section(n: usize, rounds: usize, phase: Duration) {
    let keys: Vec<String> = (0..n).map(|i| format!("user:{i}")).collect();
    let mut rng = Rng::new(0x5eed_0019);
    let lookups: Vec<&str> = (0..LOOKUPS)
        .map(|_| keys[rng.below(n as u64) as usize].as_str())
        .collect();
    let contents: HashMap<String, u64> = keys.iter().cloned().zip(0..).collect();

    let olds: Vec<NodeReplicated<OwnedKeyReads>> = (0..2)
        .map(|_| {
            NodeReplicated::builder(OwnedKeyReads(contents.clone()))
                .build()
                .expect("a valid configuration")
        })
        .collect();
    let tkns: Vec<ThreadToken> = olds
        .iter()
        .map(|nr| nr.register().expect("register"))
        .collect();
    let map = ReplicatedHashMap::builder_from(contents)
        .build()
        .expect("a valid configuration");
    let h = map.handle().expect("below the thread limit");

    let mut variants: Vec<Variant<'_>> = vec![
        (
            "old: execute(Get(key.to_owned()))",
            old(&olds[0], tkns[0], &lookups),
        ),
        (
            "old, second instance (A/A control)",
            old(&olds[1], tkns[1], &lookups),
        ),
        ("new: MapHandle::get(&str)", {
            let mut next = walk(&lookups);
            Box::new(move |phase| {
                timed(phase, || {
                    black_box(h.get(black_box(next())));
                })
            })
        }),
        ("new: ReplicatedHashMap::get(&str)", {
            let mut next = walk(&lookups);
            let map = &map;
            Box::new(move |phase| {
                timed(phase, || {
                    black_box(map.get(black_box(next())));
                })
            })
        }),
    ];

    let k = variants.len();
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); k];
    // Round 0 warms up and is not counted.
    for r in 0..=rounds {
        let mut order: Vec<usize> = (0..k).collect();
        order.rotate_left(r % k);
        if (r / k) % 2 == 1 {
            order.reverse();
        }
        for &i in &order {
            let x = (variants[i].1)(phase);
            if r > 0 {
                ns[i].push(x);
            }
        }
    }
    println!(
        "\n== typed map get by &str on String keys, one replica, {n} keys\n   \
         ({rounds} rounds of {} ms phases; medians [interquartile range]; ratio: per round, to `old`)",
        phase.as_millis()
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        let (n, n1, n3) = spread(ns[i].clone());
        let (r, r1, r3) = spread((0..rounds).map(|j| ns[i][j] / ns[0][j]).collect());
        println!("{name:<40} {n:>8.1} ns [{n1:.1} – {n3:.1}]  {r:>6.3}x [{r1:.3} – {r3:.3}]");
    }
}
