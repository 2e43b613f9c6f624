//! Single-thread cost of one read (`execute`) and one write (`execute_mut`) on a
//! pre-filled `u64 → u64` hash map of 64K and 1M keys, for:
//!
//! - `hashmap`: the bare sequential map (`ldnr_hashmap::Inner`, `get` / `insert`);
//! - `rwlock`: the same map behind `std::sync::RwLock` (what a user would otherwise write);
//! - `ldnr`: LD-NR with one replica (`ldnr_hashmap::U64Map`);
//! - `nr`: node-replication 0.1.1 with one replica and its default (32 MiB) log, over
//!   the same map, hasher and operation enums (the baseline);
//! - `floor` (reads only): the bare `get` inside the least a read lock with per-thread
//!   announcements does (an announcement, a store-load barrier, a load of the writer's
//!   word, a withdrawal; [`Floor`]).
//!
//! Keys are uniform in the pre-filled range, drawn from a fixed-seed xorshift into a
//! vector before measuring, so every variant pays the same (tiny) cost to get its next
//! key and the map size never changes. Writes store the iteration counter as the value.
//!
//! Run: `cargo bench -p ldnr-bench --bench ops`; smoke test (each benchmark once):
//! `cargo bench -p ldnr-bench --bench ops -- --test`.

use std::hint::black_box;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use criterion::{measurement::WallTime, BenchmarkGroup, Criterion};
use ldnr::NodeReplicated;
use ldnr_bench::nr::NrMap;
use ldnr_hashmap::{Inner, MapRead, MapWrite, U64Map};
use ldnr_testkit::rng::Rng;

/// Number of pre-generated keys (a power of two; the same for both map sizes, so the
/// key stream costs the same everywhere). 8 MiB, read sequentially.
const KEY_STREAM: usize = 1 << 20;

/// Map sizes and the labels used in group names.
const SIZES: [(u64, &str); 2] = [(1 << 16, "64K"), (1 << 20, "1M")];

/// `KEY_STREAM` uniform keys below `n`, from a fixed seed.
fn keys(n: u64, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    (0..KEY_STREAM).map(|_| rng.next_u64() % n).collect()
}

/// Benchmarks `op(key, counter)` once per iteration, walking the key stream.
fn bench_op<R>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    keys: &[u64],
    mut op: impl FnMut(u64, u64) -> R,
) {
    const MASK: usize = KEY_STREAM - 1;
    let mut i = 0usize;
    let mut counter = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            let k = keys[i];
            i = (i + 1) & MASK;
            counter = counter.wrapping_add(1);
            black_box(op(black_box(k), counter))
        })
    });
}

/// An atomic word alone in its cache line (two lines: the adjacent-line prefetcher).
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicUsize);

/// The floor of a read lock with per-thread announcements (LD-NR's, NR's, a brlock's):
/// the reader stores its announcement in its own cache line, orders it before its load
/// of the writer's word with `fence(SeqCst)` (the store-load barrier without which a
/// writer could miss it; rustc emits `lock or` on the stack on x86), reads if no writer
/// is in, and withdraws. No token, dispatch, log or replica lookup: what no such lock
/// can do without. (`bench/ab/read_floor.rs` pairs it with the other variants.)
#[derive(Default)]
struct Floor {
    slot: Padded,
    writer: Padded,
}

impl Floor {
    #[inline]
    fn read<R>(&self, f: impl FnOnce() -> Option<R>) -> Option<R> {
        self.slot.0.store(1, Ordering::Release);
        fence(Ordering::SeqCst);
        let r = if self.writer.0.load(Ordering::Acquire) == 0 {
            f()
        } else {
            None
        };
        self.slot.0.store(0, Ordering::Release);
        r
    }
}

fn bench_size(c: &mut Criterion, n: u64, label: &str) {
    let read_keys = keys(n, 0x5eed_0001);
    let write_keys = keys(n, 0x5eed_0002);

    // The bare map, and the same map behind a lock.
    let mut map: Inner = U64Map::with_keys(n).0;
    let locked = RwLock::new(U64Map::with_keys(n).0);

    // LD-NR, one replica (the builder's default: one replica on the current node).
    let ldnr = NodeReplicated::builder(U64Map::with_keys(n))
        .build()
        .expect("a valid LD-NR configuration");
    let ltkn = ldnr.register().expect("one thread is within the limit");

    // node-replication 0.1.1, one replica, default log (32 MiB).
    let log = Arc::new(node_replication::Log::<MapWrite>::default());
    let nr = node_replication::Replica::with_data(&log, NrMap(U64Map::with_keys(n)));
    let ntkn = nr
        .register()
        .expect("one thread is within NR's per-replica limit");

    // The least a read lock with per-thread announcements does around the bare `get`
    // (`Floor`), on a map of its own.
    let floor = Floor::default();
    let floor_map: Inner = U64Map::with_keys(n).0;

    // Sanity: every variant sees the same pre-filled contents (the floor too: it reads).
    for &k in &read_keys[..1024] {
        assert_eq!(map.get(&k).copied(), Some(k));
        assert_eq!(floor.read(|| floor_map.get(&k).copied()), Some(k));
        assert_eq!(ldnr.execute(MapRead::Get(k), ltkn), Some(k));
        assert_eq!(nr.execute(MapRead::Get(k), ntkn), Some(k));
    }

    {
        let mut g = c.benchmark_group(format!("read/{label}"));
        bench_op(&mut g, "hashmap", &read_keys, |k, _| map.get(&k).copied());
        bench_op(&mut g, "rwlock", &read_keys, |k, _| {
            locked.read().expect("not poisoned").get(&k).copied()
        });
        bench_op(&mut g, "ldnr", &read_keys, |k, _| {
            ldnr.execute(MapRead::Get(k), ltkn)
        });
        bench_op(&mut g, "nr", &read_keys, |k, _| {
            nr.execute(MapRead::Get(k), ntkn)
        });
        bench_op(&mut g, "floor", &read_keys, |k, _| {
            floor.read(|| floor_map.get(&k).copied())
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group(format!("write/{label}"));
        bench_op(&mut g, "hashmap", &write_keys, |k, v| map.insert(k, v));
        bench_op(&mut g, "rwlock", &write_keys, |k, v| {
            locked.write().expect("not poisoned").insert(k, v)
        });
        bench_op(&mut g, "ldnr", &write_keys, |k, v| {
            ldnr.execute_mut(MapWrite::Insert(k, v), ltkn)
        });
        bench_op(&mut g, "nr", &write_keys, |k, v| {
            nr.execute_mut(MapWrite::Insert(k, v), ntkn)
        });
        g.finish();
    }

    // Writes replaced values only: the sizes are unchanged.
    assert_eq!(map.len() as u64, n);
    assert_eq!(locked.read().expect("not poisoned").len() as u64, n);
    assert_eq!(ldnr.execute(MapRead::Len, ltkn), Some(n));
    assert_eq!(nr.execute(MapRead::Len, ntkn), Some(n));
}

fn benches(c: &mut Criterion) {
    for (n, label) in SIZES {
        bench_size(c, n, label);
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
}
