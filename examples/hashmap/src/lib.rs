//! A replicated `HashMap<u64, u64>` over LD-NR: the [`Dispatch`] implementation used by
//! the README, the tests and the demo/benchmark binary.
//!
//! # Examples
//!
//! ```
//! use ldnr::NodeReplicated;
//! use ldnr_hashmap::{MapRead, MapWrite, U64Map};
//!
//! let map = NodeReplicated::builder(U64Map::with_keys(100)).build()?;
//! let tkn = map.register()?;
//! assert_eq!(map.execute(MapRead::Get(7), tkn), Some(7));
//! assert_eq!(map.execute_mut(MapWrite::Insert(7, 70), tkn), Some(7));
//! assert_eq!(map.execute(MapRead::Get(7), tkn), Some(70));
//! assert_eq!(map.execute_mut(MapWrite::Remove(7), tkn), Some(70));
//! assert_eq!(map.execute(MapRead::Len, tkn), Some(99));
//! # Ok::<(), ldnr::Error>(())
//! ```

pub mod demo;
pub mod experiments;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use ldnr::Dispatch;

/// A fast, deterministic hasher for `u64` keys (a multiplicative hash; the map's
/// iteration order is the same on every replica, as [`Dispatch`] requires).
#[derive(Debug, Default, Clone, Copy)]
pub struct U64Hasher(u64);

impl std::hash::Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing, folded so the high bits (which hashbrown uses for its tags)
        // and the low bits (which pick the bucket) both depend on every key bit.
        let h = (n ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

/// The `HashMap` the replicas hold.
pub type Inner = HashMap<u64, u64, BuildHasherDefault<U64Hasher>>;

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
        let mut m = Inner::with_capacity_and_hasher(keys as usize, Default::default());
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
