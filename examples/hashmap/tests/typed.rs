//! Tests of the typed map, `ldnr_hashmap::ReplicatedHashMap`, under threads and replica
//! changes: exactly-once under concurrent writers, `String` keys and values, replicas
//! that agree, the replica set changing under load, errors as values. (The model test
//! against std's `HashMap` is `tests/model.rs`; the newer methods are `tests/methods.rs`.)
//!
//! Every test body runs under `ldnr_testkit::watchdog`, so a hang fails the test with a
//! message instead of stalling the suite.

use std::sync::Barrier;
use std::thread;

use ldnr::{Error, NodeId};
use ldnr_hashmap::ReplicatedHashMap;
use ldnr_testkit::{watchdog, LIMIT};

/// Threads, keys per thread: every thread inserts its own keys, then removes the odd ones.
const THREADS: u64 = 4;
const KEYS: u64 = 2_000;

#[test]
fn concurrent_writers_each_take_effect_exactly_once() {
    watchdog("exactly-once", LIMIT, || {
        // A small log: it wraps hundreds of times during the run.
        let map = ReplicatedHashMap::<u64, u64>::builder()
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(64)
            .build()
            .expect("a valid configuration");
        thread::scope(|s| {
            let writers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let map = &map;
                    s.spawn(move || {
                        let h = map.handle().expect("below the thread limit");
                        for k in t * KEYS..(t + 1) * KEYS {
                            assert_eq!(h.insert(k, k * 10), None, "key {k} inserted twice");
                        }
                        for k in (t * KEYS..(t + 1) * KEYS).filter(|k| k % 2 == 1) {
                            assert_eq!(h.remove(&k), Some(k * 10), "key {k}");
                        }
                    })
                })
                .collect();
            // `join` waits until each writer's registration is given back (its thread-
            // locals are gone); the end of `scope` alone does not, and the readers below
            // must see only each other.
            for w in writers {
                w.join().expect("a writer panicked");
            }
        });
        // Two more threads at once, one on each replica (each goes to the one serving
        // fewer threads), so both replicas' contents are checked.
        let both = std::sync::Barrier::new(2);
        let replicas: Vec<_> = thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let (map, both) = (&map, &both);
                    s.spawn(move || {
                        let h = map.handle().expect("below the limit");
                        both.wait();
                        assert_eq!(h.len() as u64, THREADS * KEYS / 2);
                        for k in 0..THREADS * KEYS {
                            let expected = (k % 2 == 0).then_some(k * 10);
                            assert_eq!(h.get(&k), expected, "key {k}");
                        }
                        h.replica()
                    })
                })
                .collect();
            readers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_ne!(replicas[0], replicas[1], "one reader per replica");
    });
}

#[test]
fn string_keys_and_values() {
    watchdog("strings", LIMIT, || {
        let map = ReplicatedHashMap::<String, String>::builder()
            .replicas(&[NodeId(0), NodeId(0)])
            .build()
            .expect("a valid configuration");
        let h = map.handle().expect("below the thread limit");
        let key = |i: usize| format!("key-{i}");
        for i in 0..100 {
            assert_eq!(h.insert(key(i), "x".repeat(i)), None);
        }
        assert_eq!(h.insert(key(7), "seven".into()), Some("x".repeat(7)));
        assert_eq!(h.get(&key(7)).as_deref(), Some("seven"));
        assert_eq!(h.get("key-7").as_deref(), Some("seven"), "by &str");
        assert_eq!(h.remove(&key(8)), Some("x".repeat(8)));
        assert_eq!(h.remove("key-8"), None, "by &str");
        assert!(!h.contains_key(&key(8)));
        assert!(h.contains_key("key-99"));
        assert_eq!(h.get("missing"), None);
        assert_eq!(h.len(), 99);

        // Owned heap values survive a replica added from, and one removed under, them.
        let first = map.replicas()[0].id;
        map.add_replica(NodeId(0)).expect("room for a replica");
        map.remove_replica(first).expect("not the last replica");
        assert_eq!(h.get("key-99"), Some("x".repeat(99)));
        assert_eq!(h.len(), 99);
        assert_eq!(map.get("key-98"), Some("x".repeat(98)), "handle-free");
    });
}

#[test]
fn two_replicas_serve_the_same_contents() {
    watchdog("replicas agree", LIMIT, || {
        let map = ReplicatedHashMap::<u64, u64>::builder()
            .replicas(&[NodeId(0), NodeId(0)])
            .build()
            .expect("a valid configuration");
        let written = Barrier::new(2);
        let seen: Vec<_> = thread::scope(|s| {
            let readers: Vec<_> = (0..2u64)
                .map(|t| {
                    let (map, written) = (&map, &written);
                    s.spawn(move || {
                        let h = map.handle().expect("below the thread limit");
                        for k in 0..500 {
                            h.insert(t * 500 + k, t);
                        }
                        written.wait();
                        let contents: Vec<_> = (0..1_000).map(|k| h.get(&k)).collect();
                        (h.replica(), h.len(), contents)
                    })
                })
                .collect();
            readers
                .into_iter()
                .map(|r| r.join().expect("a reader panicked"))
                .collect()
        });
        // register() matches each thread to the replica serving the fewest threads.
        assert_ne!(seen[0].0, seen[1].0, "both threads on one replica");
        assert!(seen[0].0.is_some() && seen[1].0.is_some());
        assert_eq!(seen[0].1, 1_000);
        assert_eq!(seen[0].1, seen[1].1, "lengths differ between replicas");
        assert_eq!(seen[0].2, seen[1].2, "contents differ between replicas");
        let expected: Vec<_> = (0..1_000).map(|k| Some(k / 500)).collect();
        assert_eq!(seen[0].2, expected);
    });
}

#[test]
fn replicas_change_while_threads_write() {
    watchdog("replica churn", LIMIT, || {
        let map = ReplicatedHashMap::<u64, u64>::builder()
            .log_capacity(256)
            .build()
            .expect("a valid configuration");
        thread::scope(|s| {
            for t in 0..2u64 {
                let map = &map;
                s.spawn(move || {
                    let h = map.handle().expect("below the thread limit");
                    for k in t * KEYS..(t + 1) * KEYS {
                        assert_eq!(h.insert(k, k), None, "key {k}");
                    }
                });
            }
            for _ in 0..10 {
                let id = map.add_replica(NodeId(0)).expect("room for a replica");
                map.remove_replica(id).expect("not the last replica");
            }
        });
        assert_eq!(map.replicas().len(), 1);
        let h = map.handle().expect("below the thread limit");
        assert_eq!(h.len() as u64, 2 * KEYS);
        assert!((0..2 * KEYS).all(|k| h.get(&k) == Some(k)));
    });
}

#[test]
fn errors_are_values() {
    watchdog("errors", LIMIT, || {
        let map = ReplicatedHashMap::<u64, u64>::builder()
            .max_threads(1)
            .build()
            .expect("a valid configuration");
        let h = map.handle().expect("the first handle");
        assert_eq!(
            map.handle().map(|again| again.replica()),
            Ok(h.replica()),
            "the same"
        );
        thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(
                    map.handle().map(|_| ()),
                    Err(Error::TooManyThreads { limit: 1 }),
                    "a second thread while the first holds the only slot"
                );
            });
        });
        let only = map.replicas()[0].id;
        assert_eq!(map.remove_replica(only), Err(Error::LastReplica));
        assert!(ReplicatedHashMap::<u64, u64>::builder()
            .log_capacity(3)
            .build()
            .is_err());
    });
}

#[test]
fn debug_of_handle_and_builder() {
    let map = ReplicatedHashMap::<u64, u64>::new().expect("a valid configuration");
    let h = map.handle().expect("below the thread limit");
    assert!(format!("{h:?}").contains("ThreadToken"));
    assert!(format!("{:?}", ReplicatedHashMap::<u64, u64>::builder()).contains("log_capacity"));
}
