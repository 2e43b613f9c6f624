//! What the replicas hold and what the log carries: the sequential map, its writes, and
//! the one response type they share.
//!
//! Reads are not operations here: they are closures run on the caller's replica through
//! [`NodeReplicated::read`](ldnr::NodeReplicated::read), so they borrow the caller's key
//! and return whatever the caller asks for ([`Dispatch::ReadOperation`] is
//! [`Infallible`]).
//!
//! Every write answers with the same type, `Option<V>`: the value that was under the
//! write's key before it (`None` for a write without a key, or a key without a value).
//! Each method of the map therefore takes its answer as it comes, with no variant to
//! match and nothing unreachable; a method that needs more (`get_or_insert` returns the
//! value *now* in the map) derives it from that answer and its own arguments.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{BuildHasher, Hash};

use ldnr::Dispatch;

/// The sequential map each replica holds.
#[derive(Clone)]
pub(super) struct Replicated<K, V, S>(pub(super) HashMap<K, V, S>);

/// A write: appended to the shared log once, applied by every replica to its own clone.
///
/// Each is answered with the value its key had before it, `None` if none (or no key).
#[derive(Clone)]
pub(super) enum Write<K, V> {
    /// Inserts or replaces the value of the key.
    Insert(K, V),
    /// Removes the key.
    Remove(K),
    /// Inserts the value if the key has none; the map is unchanged otherwise.
    GetOrInsert(K, V),
    /// Inserts every pair, in order: a later pair replaces an earlier one of its key.
    Extend(Vec<(K, V)>),
    /// Keeps the entries for which the predicate holds (it may change their values).
    /// A function pointer captures nothing, so every replica runs the same code on the
    /// same entries; the caller promises it depends on its arguments alone.
    Retain(fn(&K, &mut V) -> bool),
    /// Removes every entry (the capacity stays).
    Clear,
}

impl<K, V, S> Dispatch for Replicated<K, V, S>
where
    K: Hash + Eq + Clone + Send,
    V: Clone + Send,
    S: BuildHasher,
{
    type ReadOperation = Infallible;
    type WriteOperation = Write<K, V>;
    type Response = Option<V>;

    fn dispatch(&self, op: Infallible) -> Option<V> {
        match op {}
    }

    /// Deterministic as [`Dispatch`] requires: the replicas are clones of one map (one
    /// table layout, clones of one hasher), so equal writes leave equal maps, and
    /// `Retain` visits the same entries in the same order everywhere.
    fn dispatch_mut(&mut self, op: Write<K, V>) -> Option<V> {
        match op {
            Write::Insert(k, v) => self.0.insert(k, v),
            Write::Remove(k) => self.0.remove(&k),
            Write::GetOrInsert(k, v) => match self.0.entry(k) {
                Entry::Occupied(e) => Some(e.get().clone()),
                Entry::Vacant(e) => {
                    e.insert(v);
                    None
                }
            },
            Write::Extend(pairs) => {
                self.0.extend(pairs);
                None
            }
            Write::Retain(keep) => {
                self.0.retain(keep);
                None
            }
            Write::Clear => {
                self.0.clear();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(u8, u32)]) -> Replicated<u8, u32, std::hash::RandomState> {
        Replicated(pairs.iter().copied().collect())
    }

    #[test]
    fn each_write_answers_the_value_its_key_had() {
        let mut m = map(&[(1, 10)]);
        assert_eq!(m.dispatch_mut(Write::Insert(1, 11)), Some(10));
        assert_eq!(m.dispatch_mut(Write::Insert(2, 20)), None);
        assert_eq!(m.dispatch_mut(Write::GetOrInsert(2, 21)), Some(20));
        assert_eq!(m.dispatch_mut(Write::GetOrInsert(3, 30)), None);
        assert_eq!(m.0.get(&3), Some(&30), "the absent key got the given value");
        assert_eq!(m.dispatch_mut(Write::Remove(1)), Some(11));
        assert_eq!(m.dispatch_mut(Write::Remove(1)), None);
        assert_eq!(m.dispatch_mut(Write::Extend(vec![(4, 1), (4, 2)])), None);
        assert_eq!(m.0.get(&4), Some(&2), "the later pair wins");
        let odd: fn(&u8, &mut u32) -> bool = |_, v| {
            *v += 1;
            *v % 2 == 1
        };
        assert_eq!(m.dispatch_mut(Write::Retain(odd)), None);
        let mut left: Vec<_> = m.0.iter().map(|(&k, &v)| (k, v)).collect();
        left.sort_unstable();
        assert_eq!(left, [(2, 21), (3, 31), (4, 3)]);
        assert_eq!(m.dispatch_mut(Write::Clear), None);
        assert!(m.0.is_empty());
    }
}
