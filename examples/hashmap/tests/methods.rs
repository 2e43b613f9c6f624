//! The map's methods beyond get/insert/remove, under threads and on every replica:
//! `get_or_insert` racing, `retain` / `clear` / `extend` (atomic), the std traits
//! (`Debug`, `Default`, `FromIterator`, `Extend`), and thousands of short-lived threads
//! calling the map without a handle.
//!
//! Every test body runs under `ldnr_testkit::watchdog`; no assertion depends on how the
//! threads happen to interleave.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;

use ldnr::NodeId;
use ldnr_hashmap::ReplicatedHashMap;
use ldnr_testkit::{watchdog, LIMIT};

/// Runs `read` on every replica of `map`: on the calling thread's, and on one more
/// thread per other replica, registered all at once (each new thread goes to the replica
/// serving the fewest threads). Returns what each read; asserts that every replica was
/// read. Call it while no other thread uses the map.
fn on_every_replica<K, V, R>(
    map: &ReplicatedHashMap<K, V>,
    read: impl Fn(&HashMap<K, V>) -> R + Sync,
) -> Vec<R>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    R: Send,
{
    let here = map.handle().expect("below the thread limit");
    let replicas = map.replicas().len();
    let registered = Barrier::new(replicas - 1);
    let mut seen: Vec<_> = thread::scope(|s| {
        let readers: Vec<_> = (1..replicas)
            .map(|_| {
                let (registered, read) = (&registered, &read);
                s.spawn(move || {
                    let h = map.handle().expect("below the thread limit");
                    registered.wait();
                    (h.replica(), h.read(read))
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().expect("a reader panicked"))
            .collect()
    });
    seen.push((here.replica(), here.read(&read)));
    let mut ids: Vec<_> = seen
        .iter()
        .map(|(id, _)| id.expect("matched").get())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), replicas, "one reader per replica");
    seen.into_iter().map(|(_, r)| r).collect()
}

fn sorted<K: Ord + Clone, V: Clone>(m: &HashMap<K, V>) -> Vec<(K, V)> {
    let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    v
}

fn two_replicas<K, V>() -> ReplicatedHashMap<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
{
    ReplicatedHashMap::builder()
        .replicas(&[NodeId(0), NodeId(0)])
        .log_capacity(64)
        .build()
        .expect("a valid configuration")
}

/// Racers per key, and keys raced for.
const RACERS: usize = 4;
const RACED_KEYS: u32 = 5_000;

#[test]
fn get_or_insert_racers_agree_and_exactly_one_inserts() {
    watchdog("get_or_insert races", LIMIT, || {
        let map = two_replicas::<u32, (usize, u32)>();
        let arrived = AtomicUsize::new(0);
        // Each racer offers its own value for every key, so the value in the map names
        // the one racer whose insert went in.
        let seen: Vec<Vec<(usize, u32)>> = thread::scope(|s| {
            let racers: Vec<_> = (0..RACERS)
                .map(|t| {
                    let (map, arrived) = (&map, &arrived);
                    s.spawn(move || {
                        let h = map.handle().expect("below the thread limit");
                        (0..RACED_KEYS)
                            .map(|k| {
                                // All racers start each key together, spinning rather
                                // than sleeping so that they wake at once and do race
                                // (the assertions hold however they interleave).
                                let all = (k as usize + 1) * RACERS;
                                arrived.fetch_add(1, Ordering::Relaxed);
                                while arrived.load(Ordering::Relaxed) < all {
                                    thread::yield_now();
                                }
                                if t % 2 == 0 {
                                    h.get_or_insert(k, (t, k))
                                } else {
                                    map.get_or_insert(k, (t, k))
                                }
                            })
                            .collect()
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().expect("a racer panicked"))
                .collect()
        });
        for k in 0..RACED_KEYS {
            let got: Vec<_> = seen.iter().map(|s| s[k as usize]).collect();
            assert!(
                got.iter().all(|&v| v == got[0]),
                "key {k}: racers saw {got:?}"
            );
            let (winner, key) = got[0];
            assert_eq!(key, k, "key {k}: a value offered for another key");
            // Exactly one racer got its own offer back: a second insert would have handed
            // a second racer its own value.
            let own = (0..RACERS).filter(|&t| got[t] == (t, k)).count();
            assert_eq!(own, 1, "key {k}: {own} racers inserted ({got:?})");
            assert_eq!(map.get(&k), Some((winner, k)));
        }
        let expected = map.read(sorted);
        assert_eq!(expected.len(), RACED_KEYS as usize);
        for contents in on_every_replica(&map, sorted) {
            assert_eq!(contents, expected, "replicas agree");
        }
    });
}

#[test]
fn retain_clear_and_extend_on_every_replica() {
    watchdog("retain, clear, extend", LIMIT, || {
        let map = two_replicas::<String, u64>();
        let h = map.handle().expect("below the thread limit");

        // extend: one write, later pairs win, and no write for no pairs.
        let applied = |map: &ReplicatedHashMap<String, u64>| -> usize {
            map.replicas().iter().map(|r| r.applied).max().unwrap_or(0)
        };
        h.extend((0..50).map(|i| (format!("k{i}"), i)));
        map.extend([("k0".to_string(), 100), ("k0".to_string(), 200)]);
        let writes = applied(&map);
        map.extend(Vec::new());
        h.extend(std::iter::empty());
        assert_eq!(applied(&map), writes, "an empty extend writes nothing");
        assert_eq!(writes, 2, "each extend is one log entry");
        assert_eq!(map.get("k0"), Some(200));
        assert_eq!(h.len(), 50);

        // retain: keeps what the predicate keeps, with the values it changed, everywhere.
        map.retain(|_, v| {
            *v += 1;
            *v % 2 == 0
        });
        let expected: Vec<(String, u64)> = {
            let mut m: HashMap<String, u64> = (0..50).map(|i| (format!("k{i}"), i + 1)).collect();
            m.insert("k0".into(), 201);
            m.retain(|_, v| *v % 2 == 0);
            sorted(&m)
        };
        assert_eq!(expected.len(), 25, "k1, k3, ..., k49");
        for contents in on_every_replica(&map, sorted) {
            assert_eq!(contents, expected, "after retain");
        }
        h.retain(|k, _| k.len() == 2);
        let short: Vec<_> = expected.into_iter().filter(|(k, _)| k.len() == 2).collect();
        for contents in on_every_replica(&map, sorted) {
            assert_eq!(contents, short, "after a second retain");
        }

        // A predicate that panics: the caller gets the panic, every replica keeps the
        // same partial effect, and the map goes on working.
        ldnr_testkit::quiet_panics(&["ldnr-hashmap test:"]);
        let before = map.len();
        let msg = ldnr_testkit::panic_message(|| {
            map.retain(|k, _| {
                if k == "k9" {
                    panic!("ldnr-hashmap test: a retain predicate panics");
                }
                k.ends_with('1')
            })
        });
        assert_eq!(msg, "ldnr-hashmap test: a retain predicate panics");
        let after = on_every_replica(&map, sorted);
        assert_eq!(
            after[0], after[1],
            "replicas agree after a panicking retain"
        );
        assert!(after[0].len() <= before && after[0].iter().any(|(k, _)| k == "k9"));

        // clear: empty everywhere, and the map goes on working.
        map.clear();
        assert!(map.is_empty() && h.is_empty());
        for contents in on_every_replica(&map, sorted) {
            assert!(contents.is_empty(), "after clear");
        }
        h.clear();
        assert_eq!(map.insert("again".into(), 1), None);
        assert_eq!(on_every_replica(&map, |m| m.len()), [1, 1]);
    });
}

#[test]
fn extend_is_atomic_to_readers() {
    const KEYS: u64 = 64;
    const GENERATIONS: u64 = 300;
    watchdog("extend atomic", LIMIT, || {
        let map = two_replicas::<u64, u64>();
        map.extend((0..KEYS).map(|k| (k, 0)));
        thread::scope(|s| {
            let map = &map;
            s.spawn(move || {
                for g in 1..=GENERATIONS {
                    map.extend((0..KEYS).map(|k| (k, g)));
                }
            });
            // A reader on the other replica: every observation is one generation,
            // whatever the interleaving; it stops once it sees the last one.
            s.spawn(move || {
                let h = map.handle().expect("below the thread limit");
                let mut last = 0;
                while last < GENERATIONS {
                    let values: Vec<u64> = h.read(|m| (0..KEYS).map(|k| m[&k]).collect());
                    assert!(values.iter().all(|&v| v == values[0]), "torn: {values:?}");
                    assert!(values[0] >= last, "generations go forward");
                    last = values[0];
                }
            });
        });
    });
}

#[test]
fn debug_default_from_iterator_and_extend() {
    watchdog("std traits", LIMIT, || {
        let empty: ReplicatedHashMap<String, u32> = ReplicatedHashMap::default();
        assert!(empty.is_empty());
        assert_eq!(format!("{empty:?}"), "{}");
        assert_eq!(empty.replicas().len(), 1, "the default configuration");

        let one: ReplicatedHashMap<&str, u32> = [("a", 1)].into_iter().collect();
        assert_eq!(format!("{one:?}"), r#"{"a": 1}"#);
        assert_eq!(format!("{one:#?}"), "{\n    \"a\": 1,\n}");

        let mut map: ReplicatedHashMap<u32, String> =
            (0..10).map(|i| (i % 5, format!("v{i}"))).collect();
        assert_eq!(map.len(), 5, "later pairs replace earlier ones");
        assert_eq!(map.get(&3).as_deref(), Some("v8"));
        let shown = format!("{map:?}");
        assert!(shown.starts_with('{') && shown.ends_with('}'), "{shown}");
        for i in 5..10 {
            assert!(shown.contains(&format!("{}: \"v{i}\"", i % 5)), "{shown}");
        }
        assert_eq!(shown.matches(": ").count(), 5, "{shown}");

        Extend::extend(&mut map, [(10, "ten".to_string()), (0, "zero".to_string())]);
        assert_eq!(map.len(), 6);
        assert_eq!(map.get(&0).as_deref(), Some("zero"));
    });
}

/// Threads started one after another, each calling the map without a handle.
const SHORT_LIVED: u64 = 2_000;

#[test]
fn two_thousand_short_lived_threads_with_default_settings() {
    watchdog("short-lived threads", LIMIT, || {
        // The default thread limit is far below 2,000: each thread's registration must
        // be given back when it exits.
        assert!(ldnr::DEFAULT_MAX_THREADS < SHORT_LIVED as usize);
        let map = ReplicatedHashMap::<String, u64>::new().expect("the defaults");
        for t in 0..SHORT_LIVED {
            thread::scope(|s| {
                s.spawn(|| {
                    let key = format!("t{t}");
                    assert_eq!(map.insert(key.clone(), t), None);
                    assert_eq!(map.get(&key), Some(t));
                    assert!(map.contains_key(key.as_str()));
                    assert_eq!(map.get_or_insert(key.clone(), 0), t);
                    assert_eq!(map.get_or_insert("shared".to_string(), t), 0);
                    if t % 2 == 1 {
                        assert_eq!(map.remove(key.as_str()), Some(t));
                    }
                    assert!(!map.is_empty());
                    map.read(|m| m.len())
                })
                .join()
                .expect("a short-lived thread panicked")
            });
        }
        let expected: Vec<(String, u64)> = {
            let mut m: HashMap<String, u64> = (0..SHORT_LIVED)
                .filter(|t| t % 2 == 0)
                .map(|t| (format!("t{t}"), t))
                .collect();
            m.insert("shared".into(), 0);
            sorted(&m)
        };
        assert_eq!(map.read(sorted), expected);
        assert_eq!(map.len(), SHORT_LIVED as usize / 2 + 1);
        let threads: usize = map.replicas().iter().map(|r| r.threads).sum();
        assert_eq!(threads, 1, "only this thread is registered now");
    });
}
