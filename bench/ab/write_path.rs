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
//! percent here. Sections (default all): `write`, `mix`, `read` (`Insert` / `Get` of
//! uniform keys of a pre-filled `u64` map; `mix` has 10% writes, chosen by a hash of
//! the operation's number, and reads the `read` section's keys), each at 64K and 1M
//! keys. Since `mix` came, every operation makes the read/write choice at run time (a
//! `match` on the percentage), so the figures below, taken before, ran slightly
//! different code.
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

mod harness;

use std::hint::black_box;
use std::sync::RwLock;

use harness::{key_stream, ns_of, paired, pooled, stream, table_header, Opts, Phase};

/// Pre-generated keys (a power of two), read sequentially: 8 MiB, as in `benches/ops.rs`.
const KEY_STREAM: usize = 1 << 20;

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
                writes: u64,
            ) -> Phase<'a> {
                stream(keys, move |k, v| {
                    if is_write(v, writes) {
                        black_box(nr.execute_mut(MapWrite::Insert(black_box(k), v), tkn));
                    } else {
                        black_box(nr.execute(MapRead::Get(black_box(k)), tkn));
                    }
                })
            }
        }
    };
}

version!(old, ldnr_old, ldnr_hashmap_old);
version!(new, ldnr_new, ldnr_hashmap_new);

type Inner = std::collections::HashMap<u64, u64>;

/// Whether the operation numbered `v` of a phase is a write, with `writes` percent of
/// them writes: the same pseudo-random pattern for every variant (splitmix64 of `v`; a
/// bare multiplicative hash would give writes at only three distinct gaps, a pattern a
/// branch predictor can learn), so that, as in the driver, the branch between read and
/// write is not predictable.
#[inline(always)]
fn is_write(v: u64, writes: u64) -> bool {
    match writes {
        0 => false,
        100 => true,
        _ => {
            let mut z = v.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 32) * 100) >> 32 < writes
        }
    }
}

fn bare<'a>(map: &'a mut Inner, keys: &'a [u64], writes: u64) -> Phase<'a> {
    stream(keys, move |k, v| {
        if is_write(v, writes) {
            black_box(map.insert(black_box(k), v));
        } else {
            black_box(map.get(&black_box(k)).copied());
        }
    })
}

fn locked<'a>(map: &'a RwLock<Inner>, keys: &'a [u64], writes: u64) -> Phase<'a> {
    stream(keys, move |k, v| {
        if is_write(v, writes) {
            black_box(map.write().unwrap().insert(black_box(k), v));
        } else {
            black_box(map.read().unwrap().get(&black_box(k)).copied());
        }
    })
}

/// One section: `writes` percent of the operations are writes (`Insert`), the rest
/// reads (`Get`).
fn section(o: &Opts, writes: u64) {
    let what = match writes {
        100 => "write".to_string(),
        0 => "read".to_string(),
        p => format!("mix ({p}% writes)"),
    };
    o.heading(&format!("{what}: ns per operation, 1 thread, 1 replica"));
    table_header(&[
        "keys",
        "bare",
        "RwLock",
        "old",
        "new",
        "new/old",
        "A/A old",
        "A/A new",
        "new/RwLock",
        "new/bare",
        "old/RwLock",
    ]);
    for (n, label) in [(1u64 << 16, "64K"), (1 << 20, "1M")] {
        let keys = key_stream(0x5eed_0016 ^ n ^ u64::from(writes == 100), KEY_STREAM, n);
        let mut map = ldnr_hashmap_new::U64Map::with_keys(n).0;
        let lock = RwLock::new(ldnr_hashmap_new::U64Map::with_keys(n).0);
        let (o1, t1) = old::build(n);
        let (n1, u1) = new::build(n);
        let (o2, t2) = old::build(n);
        let (n2, u2) = new::build(n);
        let mut vs: Vec<Phase<'_>> = vec![
            bare(&mut map, &keys, writes),
            locked(&lock, &keys, writes),
            old::phase(&o1, t1, &keys, writes),
            new::phase(&n1, u1, &keys, writes),
            old::phase(&o2, t2, &keys, writes),
            new::phase(&n2, u2, &keys, writes),
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
    let o = Opts::from_args();
    println!("{}", harness::commits());
    for (name, writes) in [("write", 100), ("mix", 10), ("read", 0)] {
        if o.wants(name) {
            section(&o, writes);
        }
    }
}
