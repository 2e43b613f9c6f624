//! Reads by a borrowed key allocate nothing: `get`, `contains_key` and `read` by `&str` on
//! a `String`-keyed map, on a handle and on the map itself, counted by the testkit's
//! allocator (per thread, so other tests in parallel do not disturb the count).
//!
//! Its own test binary: it installs the counting allocator as the global one.

use ldnr::NodeId;
use ldnr_hashmap::ReplicatedHashMap;
use ldnr_testkit::heap::{self, CountingAlloc};
use ldnr_testkit::{watchdog, LIMIT};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const KEYS: usize = 1_000;
const ROUNDS: usize = 10;

/// The allocations the calling thread makes while `f` runs.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = heap::allocations();
    f();
    heap::allocations() - before
}

#[test]
fn get_by_str_on_string_keys_allocates_nothing() {
    watchdog("gets by &str", LIMIT, || {
        assert!(heap::installed(), "the counting allocator is installed");
        for replicas in [1, 2] {
            let map = ReplicatedHashMap::<String, u64>::builder()
                .replicas(&vec![NodeId(0); replicas])
                .build()
                .expect("a valid configuration");
            let keys: Vec<String> = (0..KEYS).map(|i| format!("user:{i}")).collect();
            map.extend(keys.iter().cloned().zip(0..));
            let h = map.handle().expect("below the thread limit");
            // The first read catches this thread's replica up (applying a write clones
            // its keys) and registers the thread (once): neither is a lookup's cost.
            assert_eq!(map.get("user:0"), Some(0));

            let mut found = 0;
            let n = allocations_in(|| {
                for _ in 0..ROUNDS {
                    for (i, k) in keys.iter().enumerate() {
                        let k: &str = k;
                        assert_eq!(h.get(k), Some(i as u64));
                        assert_eq!(map.get(k), Some(i as u64));
                        assert!(h.contains_key(k) && map.contains_key(k));
                        found += h.read(|m| m.get(k).copied()).is_some() as usize;
                        found += map.read(|m| m.get(k).copied()).is_some() as usize;
                    }
                    assert_eq!(map.get("no such user"), None);
                    assert_eq!(h.len() + map.len(), 2 * KEYS);
                }
            });
            assert_eq!(found, 2 * ROUNDS * KEYS);
            assert_eq!(
                n,
                0,
                "{replicas} replica(s): {} lookups by &str allocated",
                6 * ROUNDS * KEYS
            );

            // The control: a lookup that clones its key, as reads did when they were
            // operations that owned their key, is seen by the same count.
            let n = allocations_in(|| {
                for k in &keys {
                    let owned: String = std::hint::black_box(k.as_str()).to_owned();
                    assert!(h.contains_key(&owned));
                }
            });
            assert_eq!(n, KEYS as u64, "one allocation per cloned key");
        }
    });
}
