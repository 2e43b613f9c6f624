//! Recorded random operations on a replicated [`U64Map`], for the linearizability tests
//! (histories checked with [`check_map_by_key`]).

use ldnr::{NodeReplicated, ThreadToken};
use ldnr_hashmap::{MapRead, MapWrite, U64Map};

use super::lincheck::{check_map_by_key, record, Clock, MapEvent, MapOp};
use super::rng::Rng;

/// A map worker's body: thread `t`, registered as `tkn`, runs random operations on keys
/// `0..keys` (40% gets, 40% inserts, 20% removes; random generator seeded with `seed`)
/// while `go_on(i)` holds, `i` being the number of operations it has completed, and
/// returns them as events timed by `clock`. Inserted values are unique and non-zero:
/// `t + 1` in the high half, `i` in the low half.
pub fn recorded_map_ops(
    nr: &NodeReplicated<U64Map>,
    tkn: ThreadToken,
    clock: &Clock,
    t: usize,
    seed: u64,
    keys: u64,
    mut go_on: impl FnMut(usize) -> bool,
) -> Vec<MapEvent> {
    let mut rng = Rng::new(seed);
    let mut events = Vec::new();
    let mut i = 0usize;
    while go_on(i) {
        if i % 16 == 15 {
            // Not synchronization: on a machine with few cores, giving up the time slice
            // now and then makes the threads interleave.
            std::thread::yield_now();
        }
        let key = rng.below(keys);
        let op = match rng.below(10) {
            0..=3 => MapOp::Get(key),
            // Unique, non-zero values: (thread + 1) in the high half.
            4..=7 => MapOp::Insert(key, ((t as u64 + 1) << 32) | i as u64),
            _ => MapOp::Remove(key),
        };
        events.push(record(clock, t, op, |op| match *op {
            MapOp::Get(k) => nr.execute(MapRead::Get(k), tkn),
            MapOp::Insert(k, v) => nr.execute_mut(MapWrite::Insert(k, v), tkn),
            MapOp::Remove(k) => nr.execute_mut(MapWrite::Remove(k), tkn),
        }));
        i += 1;
    }
    events
}

/// The number of writes (inserts and removes) in `history`.
pub fn write_count(history: &[MapEvent]) -> usize {
    history
        .iter()
        .filter(|e| !matches!(e.op, MapOp::Get(_)))
        .count()
}

/// The checker must reject `history` with one read corrupted: proves that the histories
/// a test checks are strong enough to catch a wrong answer. Values written by
/// [`recorded_map_ops`] never have a zero high half, so the corrupted read returns a
/// value that was never written.
pub fn negative_control(history: &[MapEvent]) {
    let mut bad = history.to_vec();
    let read = bad
        .iter_mut()
        .find(|e| matches!(e.op, MapOp::Get(_)))
        .expect("the history has reads");
    read.ret = Some(7);
    assert!(
        check_map_by_key(&bad).is_err(),
        "the checker accepted a read of a value that was never written"
    );
}
