//! A sequential `u64 → u64` map for the tests and the soak ([`TestMap`]), and recorded
//! random operations on it for the linearizability tests (histories checked with
//! [`check_map_by_key`]).
//!
//! `ldnr`'s own tests use this map, not `ldnr-hashmap`'s `U64Map`: the core's tests do not
//! depend on a crate built on top of the core. It has one more write than that map,
//! [`MapWrite::Increment`], which the soak's exactly-once counters use.

use std::collections::HashMap;

use ldnr::{Dispatch, NodeReplicated, ThreadToken};

use crate::lincheck::{check_map_by_key, record, Clock, MapEvent, MapOp};
use crate::rng::Rng;

/// A sequential `u64 → u64` map (std's `HashMap`, default hasher), replicated by
/// wrapping it in [`NodeReplicated`]. Replicas are clones of one map, so they share the
/// hasher's keys; no operation exposes the iteration order, so `dispatch_mut` is
/// deterministic as [`Dispatch`] requires.
///
/// # Examples
///
/// ```
/// use ldnr::NodeReplicated;
/// use ldnr_testkit::map::{MapRead, MapWrite, TestMap};
///
/// let nr = NodeReplicated::builder(TestMap::with_keys(10)).build()?;
/// let tkn = nr.register()?;
/// assert_eq!(nr.execute(MapRead::Get(7), tkn), Some(7));
/// assert_eq!(nr.execute_mut(MapWrite::Insert(7, 70), tkn), Some(7));
/// assert_eq!(nr.execute_mut(MapWrite::Increment(7), tkn), Some(70));
/// assert_eq!(nr.execute_mut(MapWrite::Increment(11), tkn), Some(0));
/// assert_eq!(nr.execute_mut(MapWrite::Remove(7), tkn), Some(71));
/// assert_eq!(nr.execute(MapRead::Len, tkn), Some(10));
/// # Ok::<(), ldnr::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestMap(pub HashMap<u64, u64>);

impl TestMap {
    /// A map pre-filled with `k → k` for every `k < keys`.
    pub fn with_keys(keys: u64) -> Self {
        let mut m = HashMap::with_capacity(keys as usize);
        m.extend((0..keys).map(|k| (k, k)));
        TestMap(m)
    }
}

/// Read-only operations of a [`TestMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapRead {
    /// The value of a key.
    Get(u64),
    /// The number of entries (returned as `Some(len)`).
    Len,
}

/// Mutating operations of a [`TestMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapWrite {
    /// Inserts or replaces; returns the previous value.
    Insert(u64, u64),
    /// Removes; returns the removed value.
    Remove(u64),
    /// Adds one to a counter (an absent key counts as 0); returns the value before.
    Increment(u64),
}

impl Dispatch for TestMap {
    type ReadOperation = MapRead;
    type WriteOperation = MapWrite;
    type Response = Option<u64>;

    fn dispatch(&self, op: MapRead) -> Option<u64> {
        match op {
            MapRead::Get(k) => self.0.get(&k).copied(),
            MapRead::Len => Some(self.0.len() as u64),
        }
    }

    fn dispatch_mut(&mut self, op: MapWrite) -> Option<u64> {
        match op {
            MapWrite::Insert(k, v) => self.0.insert(k, v),
            MapWrite::Remove(k) => self.0.remove(&k),
            MapWrite::Increment(k) => {
                let c = self.0.entry(k).or_insert(0);
                *c += 1;
                Some(*c - 1)
            }
        }
    }
}

/// A map worker's body: thread `t`, registered as `tkn`, runs random operations on keys
/// `0..keys` (40% gets, 40% inserts, 20% removes; random generator seeded with `seed`)
/// while `go_on(i)` holds, `i` being the number of operations it has completed, and
/// returns them as events timed by `clock`; half the gets are [`NodeReplicated::read`]
/// closures, half [`MapRead::Get`] operations. Inserted values are unique and non-zero:
/// `t + 1` in the high half, `i` in the low half.
pub fn recorded_map_ops(
    nr: &NodeReplicated<TestMap>,
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
            // Half the reads are data (`execute`), half closures (`read`).
            MapOp::Get(k) if i % 2 == 0 => nr.execute(MapRead::Get(k), tkn),
            MapOp::Get(k) => nr.read(tkn, |m| m.0.get(&k).copied()),
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
///
/// # Panics
///
/// If `history` has no read, or the checker accepts the corrupted history.
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
