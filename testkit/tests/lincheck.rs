//! Self-tests of the WGL linearizability checker, `ldnr_testkit::lincheck`: it accepts
//! linearizable histories (generated from a sequential run, and recorded from real
//! threads) and rejects corrupted ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Instant;

use ldnr_testkit::lincheck::{
    check, check_map_by_key, record, Clock, Event, MapOp, MapRet, RegisterSpec, Spec,
};
use ldnr_testkit::rng::Rng;

use MapOp::{Get, Insert, Remove};

/// A value that the generated histories never write.
const NEVER: u64 = 1_000_000;

fn ev(thread: usize, op: MapOp, ret: MapRet, invoke: u64, response: u64) -> Event<MapOp, MapRet> {
    Event {
        thread,
        op,
        ret,
        invoke,
        response,
    }
}

fn random_op(rng: &mut Rng, keys: u64, values: u64) -> MapOp {
    let key = rng.below(keys);
    match rng.below(10) {
        0..=4 => Get(key),
        5..=7 => Insert(key, rng.below(values)),
        _ => Remove(key),
    }
}

fn apply(map: &mut HashMap<u64, u64>, op: &MapOp) -> MapRet {
    match *op {
        Get(k) => map.get(&k).copied(),
        Insert(k, v) => map.insert(k, v),
        Remove(k) => map.remove(&k),
    }
}

/// Simulates a linearizable map: each operation takes effect at a random
/// point strictly inside its random interval; returns are computed by
/// applying the operations in the order of those points. The result is
/// shuffled, since the checker must only depend on timestamps.
fn linearizable_history(
    rng: &mut Rng,
    threads: usize,
    ops: usize,
    keys: u64,
) -> Vec<Event<MapOp, MapRet>> {
    let span = 1 + rng.below(30);
    let mut events = Vec::new();
    let mut points = Vec::new();
    for thread in 0..threads {
        let mut time = rng.below(10);
        for _ in 0..ops {
            let invoke = time;
            let point = invoke + 1 + rng.below(span);
            let response = point + 1 + rng.below(span);
            time = response + 1 + rng.below(span);
            events.push(ev(thread, random_op(rng, keys, 4), None, invoke, response));
            points.push(point);
        }
    }
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| (points[i], i));
    let mut map = HashMap::new();
    for i in order {
        events[i].ret = apply(&mut map, &events[i].op);
    }
    for i in (1..events.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        events.swap(i, j);
    }
    events
}

#[test]
fn empty_history_is_accepted() {
    assert_eq!(check_map_by_key(&[]), Ok(0));
    assert_eq!(check(RegisterSpec(None), &[]), Ok(()));
}

#[test]
fn sequential_history_is_accepted() {
    let h = vec![
        ev(0, Get(1), None, 0, 1),
        ev(0, Insert(1, 10), None, 2, 3),
        ev(1, Get(1), Some(10), 4, 5),
        ev(0, Insert(2, 7), None, 6, 7),
        ev(1, Insert(1, 20), Some(10), 8, 9),
        ev(0, Remove(1), Some(20), 10, 11),
        ev(1, Get(1), None, 12, 13),
        ev(1, Remove(2), Some(7), 14, 15),
    ];
    assert_eq!(check_map_by_key(&h), Ok(2));
    let key1: Vec<_> = h.iter().filter(|e| e.op.key() == 1).cloned().collect();
    check(RegisterSpec(None), &key1).unwrap();
}

#[test]
fn sequential_history_with_wrong_return_is_rejected() {
    let h = vec![
        ev(0, Insert(1, 10), None, 0, 1),
        ev(0, Insert(1, 20), None, 2, 3), // must return Some(10)
    ];
    let v = check_map_by_key(&h).unwrap_err();
    assert_eq!(v.key, Some(1));
    assert_eq!(v.prefix.len(), 1);
}

#[test]
fn overlapping_get_may_see_either_value() {
    for seen in [None, Some(5)] {
        let h = vec![
            ev(0, Insert(1, 5), None, 0, 10),
            ev(1, Get(1), seen, 2, 4),
            ev(1, Get(1), Some(5), 11, 12),
        ];
        assert_eq!(check_map_by_key(&h), Ok(1), "get returning {seen:?}");
    }
}

#[test]
fn stale_read_is_rejected() {
    // The get starts after the insert completed but returns the old value.
    let h = vec![ev(0, Insert(1, 5), None, 0, 1), ev(1, Get(1), None, 2, 3)];
    assert!(check_map_by_key(&h).is_err());

    // Same with an overwritten value, and with unrelated keys around.
    let h = vec![
        ev(0, Insert(1, 5), None, 0, 1),
        ev(2, Insert(9, 1), None, 0, 20),
        ev(0, Insert(1, 6), Some(5), 2, 3),
        ev(1, Get(1), Some(5), 4, 5),
    ];
    let v = check_map_by_key(&h).unwrap_err();
    assert_eq!(v.key, Some(1));
    assert_eq!(v.prefix.len(), 2);
    let msg = v.to_string();
    assert!(msg.contains("key 1"), "{msg}");
    assert!(msg.contains("#3 t1 [4..5] Get(1) -> Some(5)"), "{msg}");
    assert!(msg.contains("spec returns Some(6)"), "{msg}");
}

#[test]
fn value_never_written_is_rejected() {
    let h = vec![
        ev(0, Insert(1, 5), None, 0, 10),
        ev(1, Get(1), Some(7), 2, 4),
    ];
    let v = check_map_by_key(&h).unwrap_err();
    assert!(v.to_string().contains("Get(1) -> Some(7)"), "{v}");
}

#[test]
fn reordering_overlapping_operations_is_accepted() {
    // Invoked first, but must be linearized last among the three.
    let h = vec![
        ev(0, Insert(1, 1), Some(2), 0, 10),
        ev(1, Insert(1, 2), None, 1, 5),
        ev(2, Get(1), Some(2), 6, 8),
        ev(2, Get(1), Some(1), 11, 12),
    ];
    assert_eq!(check_map_by_key(&h), Ok(1));

    // The first matching choice (insert first) is a dead end: needs backtracking.
    let h = vec![
        ev(0, Insert(1, 1), None, 0, 10),
        ev(1, Get(1), None, 1, 11),
        ev(2, Get(1), Some(1), 12, 13),
    ];
    assert_eq!(check_map_by_key(&h), Ok(1));
}

/// A fetch-and-increment counter, to exercise a spec other than the register.
#[derive(Clone, Hash, PartialEq, Eq)]
struct Counter(u64);

impl Spec for Counter {
    type Op = ();
    type Ret = u64;
    fn apply(&mut self, _: &()) -> u64 {
        self.0 += 1;
        self.0 - 1
    }
}

#[test]
fn generic_spec_counter() {
    let inc = |thread, ret, invoke, response| Event {
        thread,
        op: (),
        ret,
        invoke,
        response,
    };
    // Overlapping increments may return in either order.
    check(
        Counter(0),
        &[inc(0, 1, 0, 5), inc(1, 0, 1, 6), inc(0, 2, 7, 8)],
    )
    .unwrap();
    // Both cannot see 0.
    assert!(check(Counter(0), &[inc(0, 0, 0, 5), inc(1, 0, 1, 6)]).is_err());
    // Real-time order is respected: the later increment cannot return 0.
    assert!(check(Counter(0), &[inc(0, 1, 0, 1), inc(1, 0, 2, 3)]).is_err());
}

#[test]
fn random_linearizable_histories_are_accepted() {
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let h = linearizable_history(&mut rng, 4, 40, 3);
        if let Err(v) = check_map_by_key(&h) {
            panic!("seed {seed}: {v}");
        }
        // The generic entry point on a single key agrees.
        let key0: Vec<_> = h.iter().filter(|e| e.op.key() == 0).cloned().collect();
        check(RegisterSpec(None), &key0).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
    }
}

#[test]
fn random_histories_with_impossible_response_are_rejected() {
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let mut h = linearizable_history(&mut rng, 4, 40, 3);
        let i = rng.below(h.len() as u64) as usize;
        h[i].ret = Some(NEVER);
        match check_map_by_key(&h) {
            Ok(_) => panic!("seed {seed}: accepted a response never written: {:?}", h[i]),
            Err(v) => assert_eq!(v.key, Some(h[i].op.key()), "seed {seed}: {v}"),
        }
    }
}

#[test]
fn long_history_needs_no_recursion() {
    // 10,000 events on one key, checked on a thread with a small stack.
    let mut h = Vec::new();
    let mut prev = None;
    for i in 0..10_000u64 {
        let op = if i % 2 == 0 { Insert(0, i) } else { Get(0) };
        let ret = if i % 2 == 0 { prev.replace(i) } else { prev };
        h.push(ev(0, op, ret, 2 * i, 2 * i + 1));
    }
    let ok = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || check_map_by_key(&h).is_ok())
        .unwrap()
        .join()
        .unwrap();
    assert!(ok);
}

#[test]
fn clock_and_record() {
    let clock = Clock::new();
    let e = record(&clock, 3, Get(4), |op| {
        assert_eq!(*op, Get(4));
        Some(9)
    });
    assert_eq!(
        (e.thread, e.op, e.ret, e.invoke, e.response),
        (3, Get(4), Some(9), 0, 1)
    );
    assert_eq!(clock.tick(), 2);
}

/// Records `threads` × `ops` operations over `keys` keys on a real
/// `Mutex<HashMap>` with real threads. The threads start together, and now
/// and then yield while holding the lock, so that their intervals overlap
/// even on few cores.
fn record_mutex_map(threads: usize, ops: usize, keys: u64) -> Vec<Event<MapOp, MapRet>> {
    let map = Mutex::new(HashMap::new());
    let clock = Clock::new();
    let ready = AtomicUsize::new(0);
    let per_thread: Vec<Vec<_>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (map, clock, ready) = (&map, &clock, &ready);
                s.spawn(move || {
                    let mut rng = Rng::new(t as u64 + 1);
                    ready.fetch_add(1, SeqCst);
                    while ready.load(SeqCst) < threads {
                        std::hint::spin_loop();
                    }
                    (0..ops)
                        .map(|_| {
                            let op = random_op(&mut rng, keys, 16);
                            let pause = rng.below(8) == 0;
                            record(clock, t, op, |op| {
                                let mut map = map.lock().unwrap();
                                let ret = apply(&mut map, op);
                                if pause {
                                    std::thread::yield_now();
                                }
                                ret
                            })
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    per_thread.into_iter().flatten().collect()
}

/// Checks a recorded history; the time it took is printed for information only.
fn timed_check(h: &[Event<MapOp, MapRet>], keys: usize) {
    let start = Instant::now();
    let checked = check_map_by_key(h);
    let elapsed = start.elapsed();
    // Events invoked while an earlier-invoked one was still pending.
    let mut by_invoke: Vec<_> = h.iter().map(|e| (e.invoke, e.response)).collect();
    by_invoke.sort_unstable();
    let mut latest = 0;
    let mut overlapping = 0;
    for (invoke, response) in by_invoke {
        overlapping += usize::from(latest > invoke);
        latest = latest.max(response);
    }
    eprintln!(
        "checked {} events ({overlapping} overlapping) over {keys} keys in {elapsed:?}",
        h.len()
    );
    assert_eq!(checked, Ok(keys));
    assert!(overlapping > 0, "the threads did not run concurrently");
}

#[test]
fn mutex_hashmap_4_threads_x_2500_ops_8_keys() {
    let h = record_mutex_map(4, 2_500, 8);
    assert_eq!(h.len(), 10_000);
    timed_check(&h, 8);
}

#[test]
fn mutex_hashmap_4000_events_on_one_key() {
    let h = record_mutex_map(4, 1_000, 1);
    timed_check(&h, 1);
}
