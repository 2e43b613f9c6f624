//! `add_replica` latency against map size, next to a bare `clone()` of the same map.
//!
//! Run: `cargo bench -p ldnr-bench --bench add_replica`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ldnr::NodeReplicated;
use ldnr_hashmap::U64Map;

fn add_replica(c: &mut Criterion) {
    let mut group = c.benchmark_group("add_replica");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for keys in [1u64 << 16, 1 << 18, 1 << 20] {
        let map = U64Map::with_keys(keys);
        group.bench_with_input(BenchmarkId::new("clone", keys), &map, |b, map| {
            b.iter(|| map.clone());
        });
        let nr = NodeReplicated::builder(map.clone())
            .build()
            .expect("valid configuration");
        group.bench_with_input(BenchmarkId::new("add_replica", keys), &nr, |b, nr| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    let id = nr.add_replica(ldnr::NodeId(0)).expect("room for a replica");
                    total += t0.elapsed();
                    nr.remove_replica(id).expect("not the last replica");
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, add_replica);
criterion_main!(benches);
