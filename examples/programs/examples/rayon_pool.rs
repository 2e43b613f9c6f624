//! A rayon pool of 64 threads sharing two replicated structures, with LD-NR's default
//! settings: a `ReplicatedHashMap` through its handle-free methods (`insert`, `get`,
//! `remove`, `contains_key`, `len`), and a routing index of our own (`ldnr::operations!`)
//! through `NodeReplicated::thread_token`.
//!
//! Pool threads run closures, not code of ours that could hold a token, so every call
//! fetches the calling thread's registration: made on the thread's first call, a
//! thread-local lookup afterwards. The 64 pool threads and the main thread fit the default
//! thread limit (`ldnr::DEFAULT_MAX_THREADS`, 256).
//!
//! `cargo run --release -p ldnr-examples --example rayon_pool`

use std::collections::BTreeMap;

use ldnr::NodeReplicated;
use ldnr_hashmap::ReplicatedHashMap;
use rayon::prelude::*;

const POOL: usize = 64;
/// Keys the pool's tasks insert into the map; every third is removed again.
const KEYS: u64 = 50_000;
/// One route per this many keys; every other route is removed again.
const PER_ROUTE: u64 = 100;

/// Route names to backend ids.
#[derive(Clone, Default)]
struct Routes(BTreeMap<String, u64>);

ldnr::operations! {
    trait RouteWrites for Routes, enum RouteWrite {
        fn insert(&mut self, name: String, backend: u64) -> Option<u64> {
            self.0.insert(name, backend)
        }

        fn remove(&mut self, name: String) -> Option<u64> {
            self.0.remove(&name)
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(POOL).build()?;
    let map = ReplicatedHashMap::<u64, u64>::new()?;
    let routes = NodeReplicated::builder(Routes::default()).build()?;

    pool.install(|| {
        (0..KEYS).into_par_iter().for_each(|k| {
            assert_eq!(map.insert(k, 2 * k), None);
            assert_eq!(map.get(&k), Some(2 * k));
            if k % 3 == 0 {
                assert_eq!(map.remove(&k), Some(2 * k));
            }
            if k % PER_ROUTE == 0 {
                let tkn = routes
                    .thread_token()
                    .expect("the pool fits the thread limit");
                let name = format!("shard/{:04}", k / PER_ROUTE);
                assert_eq!(routes.insert(tkn, name.clone(), k), None);
                assert_eq!(routes.read(tkn, |r| r.0.get(&name).copied()), Some(k));
                if (k / PER_ROUTE) % 2 == 1 {
                    assert_eq!(routes.remove(tkn, name), Some(k));
                }
            }
        });
    });

    // Read back in parallel, then check every key from this thread.
    let left = KEYS - KEYS.div_ceil(3);
    let present = pool.install(|| {
        (0..KEYS)
            .into_par_iter()
            .filter(|k| map.contains_key(k))
            .count()
    });
    assert_eq!(present as u64, left);
    assert_eq!(map.len() as u64, left);
    for k in 0..KEYS {
        assert_eq!(map.get(&k), (k % 3 != 0).then_some(2 * k));
    }
    let expected: BTreeMap<String, u64> = (0..KEYS / PER_ROUTE)
        .filter(|shard| shard % 2 == 0)
        .map(|shard| (format!("shard/{shard:04}"), shard * PER_ROUTE))
        .collect();
    let tkn = routes.thread_token()?;
    assert_eq!(routes.read(tkn, |r| r.0.clone()), expected);

    println!(
        "rayon_pool: {POOL} pool threads, {KEYS} keys inserted, {left} left, {} routes left, ok",
        expected.len()
    );
    Ok(())
}
