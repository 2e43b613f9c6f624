//! The typed map against std's `HashMap` (proptest): random sequences of every map
//! method, each called on a `MapHandle` or on the map itself (chosen per step), with one
//! replica and with two, on a log small enough to wrap. Every answer must equal the
//! model's, and at the end every replica must hold the model's contents.
//!
//! Keys are `String`s and every lookup passes a `&str`, so the borrowed-key path is what
//! is compared.

use std::collections::HashMap;
use std::sync::Barrier;
use std::thread;

use ldnr::NodeId;
use ldnr_hashmap::ReplicatedHashMap;
use ldnr_testkit::{watchdog, LIMIT};
use proptest::prelude::*;

/// A `retain` predicate; each is a plain function, the same for the map and the model.
#[derive(Debug, Clone, Copy)]
enum Keep {
    EvenValues,
    /// Keys `k0`..`k9` (two characters), adding one to each value on the way.
    ShortKeysBumped,
    Nothing,
}

impl Keep {
    fn predicate(self) -> fn(&String, &mut u32) -> bool {
        match self {
            Keep::EvenValues => |_, v| *v % 2 == 0,
            Keep::ShortKeysBumped => |k, v| {
                *v = v.wrapping_add(1);
                k.len() == 2
            },
            Keep::Nothing => |_, _| false,
        }
    }
}

/// One call of the model test.
#[derive(Debug, Clone)]
enum Call {
    Insert(u8, u32),
    Remove(u8),
    Get(u8),
    ContainsKey(u8),
    Len,
    IsEmpty,
    GetOrInsert(u8, u32),
    Extend(Vec<(u8, u32)>),
    Retain(Keep),
    Clear,
    /// `read`: the sorted entries and the sum of the values.
    Read,
}

/// A call and whether it goes through the handle (`true`) or the map itself.
type Step = (Call, bool);

/// Few keys, so that inserts replace, removes hit and `get_or_insert` finds values.
const KEYS: u8 = 16;

fn key(k: u8) -> String {
    format!("k{k}")
}

fn call() -> impl Strategy<Value = Call> {
    let k = || 0..KEYS;
    let keep = prop_oneof![
        Just(Keep::EvenValues),
        Just(Keep::ShortKeysBumped),
        Just(Keep::Nothing)
    ];
    prop_oneof![
        6 => (k(), any::<u32>()).prop_map(|(k, v)| Call::Insert(k, v)),
        3 => k().prop_map(Call::Remove),
        4 => k().prop_map(Call::Get),
        2 => k().prop_map(Call::ContainsKey),
        1 => Just(Call::Len),
        1 => Just(Call::IsEmpty),
        3 => (k(), any::<u32>()).prop_map(|(k, v)| Call::GetOrInsert(k, v)),
        2 => prop::collection::vec((k(), any::<u32>()), 0..6).prop_map(Call::Extend),
        1 => keep.prop_map(Call::Retain),
        1 => Just(Call::Clear),
        1 => Just(Call::Read),
    ]
}

/// The sorted entries and the sum of the values of a map.
fn summary(m: &HashMap<String, u32>) -> (Vec<(String, u32)>, u64) {
    let mut entries: Vec<_> = m.iter().map(|(k, &v)| (k.clone(), v)).collect();
    entries.sort_unstable();
    (entries, m.values().map(|&v| u64::from(v)).sum())
}

/// Calls `$method($args)` on the handle `$h` or on the map `$map`.
macro_rules! on {
    ($via_handle:expr, $h:expr, $map:expr, $method:ident($($arg:expr),*)) => {
        if $via_handle {
            $h.$method($($arg),*)
        } else {
            $map.$method($($arg),*)
        }
    };
}

/// Runs `steps` on one thread against the replicated map (`replicas` replicas on node 0,
/// the smallest log, so that it wraps and an undriven replica must be caught up) and
/// against std's map, comparing every answer; then reads the contents on every replica.
fn matches_model(steps: Vec<Step>, replicas: usize) {
    let map = ReplicatedHashMap::<String, u32>::builder()
        .replicas(&vec![NodeId(0); replicas])
        .log_capacity(ldnr::MIN_LOG_CAPACITY)
        .build()
        .expect("a valid configuration");
    let h = map.handle().expect("below the thread limit");
    let mut model = HashMap::new();
    for (i, (call, via)) in steps.into_iter().enumerate() {
        let at = format!("step {i}: {call:?}, handle: {via}");
        match call {
            Call::Insert(k, v) => {
                assert_eq!(
                    on!(via, h, map, insert(key(k), v)),
                    model.insert(key(k), v),
                    "{at}"
                )
            }
            Call::Remove(k) => {
                let k = key(k);
                assert_eq!(
                    on!(via, h, map, remove(k.as_str())),
                    model.remove(&k),
                    "{at}"
                )
            }
            Call::Get(k) => {
                let k = key(k);
                assert_eq!(
                    on!(via, h, map, get(k.as_str())),
                    model.get(&k).copied(),
                    "{at}"
                )
            }
            Call::ContainsKey(k) => {
                let k = key(k);
                let expected = model.contains_key(&k);
                assert_eq!(on!(via, h, map, contains_key(k.as_str())), expected, "{at}")
            }
            Call::Len => assert_eq!(on!(via, h, map, len()), model.len(), "{at}"),
            Call::IsEmpty => assert_eq!(on!(via, h, map, is_empty()), model.is_empty(), "{at}"),
            Call::GetOrInsert(k, v) => {
                let expected = *model.entry(key(k)).or_insert(v);
                assert_eq!(on!(via, h, map, get_or_insert(key(k), v)), expected, "{at}")
            }
            Call::Extend(pairs) => {
                let pairs: Vec<_> = pairs.into_iter().map(|(k, v)| (key(k), v)).collect();
                on!(via, h, map, extend(pairs.clone()));
                model.extend(pairs);
            }
            Call::Retain(keep) => {
                on!(via, h, map, retain(keep.predicate()));
                model.retain(keep.predicate());
            }
            Call::Clear => {
                on!(via, h, map, clear());
                model.clear();
            }
            Call::Read => assert_eq!(on!(via, h, map, read(summary)), summary(&model), "{at}"),
        }
    }
    // One more thread per other replica, registered all at once: each goes to the
    // replica that serves the fewest threads, so with this thread they cover every one.
    let expected = summary(&model);
    let registered = Barrier::new(replicas - 1);
    let mut seen: Vec<_> = thread::scope(|s| {
        let readers: Vec<_> = (1..replicas)
            .map(|_| {
                let (map, registered) = (&map, &registered);
                s.spawn(move || {
                    let h = map.handle().expect("below the thread limit");
                    registered.wait();
                    (h.replica(), h.read(summary))
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().expect("a reader panicked"))
            .collect()
    });
    seen.push((h.replica(), h.read(summary)));
    for (replica, contents) in &seen {
        assert_eq!(contents, &expected, "final contents of {replica:?}");
    }
    let mut read_on: Vec<_> = seen
        .iter()
        .map(|(r, _)| r.expect("matched").get())
        .collect();
    read_on.sort_unstable();
    read_on.dedup();
    assert_eq!(read_on.len(), replicas, "every replica read");
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((call(), any::<bool>()), 0..200)
}

proptest! {
    #[test]
    fn one_replica_matches_std_hashmap(steps in steps()) {
        watchdog("model test, one replica", LIMIT, move || matches_model(steps, 1));
    }

    #[test]
    fn two_replicas_match_std_hashmap(steps in steps()) {
        watchdog("model test, two replicas", LIMIT, move || matches_model(steps, 2));
    }
}
