//! Experiments that need the dynamic replica set.
//!
//! `add_under_load`: worker threads run a closed-loop workload against a map with two
//! replicas; after a steady phase, a controller thread adds a third replica (a clone of
//! the most advanced one). Throughput is sampled per thread every 10 ms, so the report
//! shows each thread's rate during the clone as a fraction of its steady rate, next to
//! the time `add_replica` took and the time a bare `clone()` of the same map takes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ldnr::{NodeId, NodeReplicated};

use ldnr_testkit::pretend::{on, Pretend};
use ldnr_testkit::rng::Rng;

use crate::workload::Ops;
use ldnr_hashmap::{MapRead, MapWrite, U64Map};

/// What `add_under_load` measured.
#[derive(Debug, Clone)]
pub(crate) struct AddUnderLoad {
    /// Time of a bare `clone()` of the map.
    pub(crate) clone_time: Duration,
    /// Time `add_replica` took.
    pub(crate) add_time: Duration,
    /// Per worker: (steady ops/s before the add, ops/s while the add ran).
    pub(crate) per_thread: Vec<(f64, f64)>,
}

/// Runs the experiment: `keys` pre-filled keys, `workers` threads spread over two
/// replicas, `write_pct` percent writes, `steady` of warm-up measurement before the add.
pub(crate) fn add_under_load(
    keys: u64,
    workers: usize,
    write_pct: u32,
    steady: Duration,
    policy: bool,
) -> AddUnderLoad {
    let initial = U64Map::with_keys(keys);
    let t0 = Instant::now();
    let copy = initial.clone();
    let clone_time = t0.elapsed();
    drop(copy);

    // With `policy`, three pretend nodes under `follow_threads`: the workers alternate
    // between nodes 0 and 1 (a replica each), and a thread that registers on node 2 makes
    // the policy add the third replica, in `register`. Else two replicas on node 0 and a
    // call to `add_replica`.
    let builder = NodeReplicated::builder(initial).log_capacity(1 << 20);
    let map = if policy {
        builder
            .affinity(std::sync::Arc::new(Pretend::new(3)))
            .policy(ldnr::Policy::follow_threads())
    } else {
        builder.replicas(&[NodeId(0), NodeId(0)])
    }
    .build()
    .expect("a valid configuration");
    let registered = std::sync::atomic::AtomicUsize::new(0);
    let counters: Vec<AtomicU64> = (0..workers).map(|_| AtomicU64::new(0)).collect();
    let stop = AtomicBool::new(false);
    let window = std::sync::Mutex::new((Duration::ZERO, Vec::new(), Vec::new(), Duration::ZERO));
    std::thread::scope(|s| {
        for (t, counter) in counters.iter().enumerate() {
            let (map, stop, registered) = (&map, &stop, &registered);
            s.spawn(move || {
                on(t % 2);
                let tkn = map.register().expect("below the thread limit");
                registered.fetch_add(1, Ordering::Relaxed);
                let mut rng = Rng::new(t as u64 + 1);
                while !stop.load(Ordering::Relaxed) {
                    for op in Ops::new(&mut rng, 32, keys, write_pct) {
                        if op.write {
                            map.execute_mut(MapWrite::Insert(op.key, op.value), tkn);
                        } else {
                            map.execute(MapRead::Get(op.key), tkn);
                        }
                    }
                    counter.fetch_add(32, Ordering::Relaxed);
                }
            });
        }
        let snapshot =
            || -> Vec<u64> { counters.iter().map(|c| c.load(Ordering::Relaxed)).collect() };
        while registered.load(Ordering::Relaxed) < counters.len() {
            std::thread::yield_now();
        }
        std::thread::sleep(steady / 4);
        let before0 = snapshot();
        let b0 = Instant::now();
        std::thread::sleep(steady);
        let before1 = snapshot();
        let steady_time = b0.elapsed();
        let a0 = Instant::now();
        if policy {
            on(2);
            let tkn = map.register().expect("below the thread limit");
            assert!(
                map.replicas().iter().any(|r| r.node == NodeId(2)),
                "the policy added node 2's replica"
            );
            let _ = tkn;
        } else {
            map.add_replica(NodeId(0)).expect("room for a replica");
        }
        let add_time = a0.elapsed();
        let after = snapshot();
        stop.store(true, Ordering::Relaxed);
        let steady_rates: Vec<u64> = before1.iter().zip(&before0).map(|(b, a)| b - a).collect();
        let during: Vec<u64> = after.iter().zip(&before1).map(|(b, a)| b - a).collect();
        *window.lock().expect("not poisoned") = (steady_time, steady_rates, during, add_time);
    });
    let (steady_time, steady_ops, during_ops, add_time) =
        window.into_inner().expect("not poisoned");
    let per_thread = steady_ops
        .iter()
        .zip(&during_ops)
        .map(|(&s, &d)| {
            (
                s as f64 / steady_time.as_secs_f64(),
                d as f64 / add_time.as_secs_f64().max(1e-9),
            )
        })
        .collect();
    AddUnderLoad {
        clone_time,
        add_time,
        per_thread,
    }
}
