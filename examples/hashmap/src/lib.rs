#![doc = include_str!("../README.md")]

pub mod typed;

use std::collections::HashMap;

use ldnr::Dispatch;

pub use typed::{MapBuilder, MapHandle, ReplicatedHashMap};

/// The `HashMap` the replicas hold: std's, with its default (SipHash) hasher. Replicas
/// are clones of one map, so they share the hasher's keys; no operation exposes the
/// iteration order anyway, so `dispatch_mut` is deterministic as [`Dispatch`] requires.
pub type Inner = HashMap<u64, u64>;

/// A sequential `u64 → u64` map, replicated by wrapping it in [`ldnr::NodeReplicated`].
#[derive(Debug, Clone, Default)]
pub struct U64Map(pub Inner);

impl U64Map {
    /// A map pre-filled with `k → k` for every `k < keys`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr_hashmap::U64Map::with_keys(10).0.len(), 10);
    /// ```
    pub fn with_keys(keys: u64) -> Self {
        let mut m = Inner::with_capacity(keys as usize);
        m.extend((0..keys).map(|k| (k, k)));
        U64Map(m)
    }
}

/// Read-only operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapRead {
    /// The value of a key.
    Get(u64),
    /// The number of entries (returned as `Some(len)`).
    Len,
}

/// Mutating operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapWrite {
    /// Inserts or replaces; returns the previous value.
    Insert(u64, u64),
    /// Removes; returns the removed value.
    Remove(u64),
}

impl Dispatch for U64Map {
    type ReadOperation = MapRead;
    type WriteOperation = MapWrite;
    type Response = Option<u64>;

    #[inline]
    fn dispatch(&self, op: MapRead) -> Option<u64> {
        match op {
            MapRead::Get(k) => self.0.get(&k).copied(),
            MapRead::Len => Some(self.0.len() as u64),
        }
    }

    #[inline]
    fn dispatch_mut(&mut self, op: MapWrite) -> Option<u64> {
        match op {
            MapWrite::Insert(k, v) => self.0.insert(k, v),
            MapWrite::Remove(k) => self.0.remove(&k),
        }
    }
}
