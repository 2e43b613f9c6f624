//! The map operations on [`ReplicatedHashMap`] itself: each takes the calling thread's
//! [`MapHandle`] (a thread-local lookup) and runs the handle's method.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use super::{MapHandle, ReplicatedHashMap};

impl<K, V, S> ReplicatedHashMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Clone + Send + Sync,
{
    /// The calling thread's handle, or a panic that says why there is none.
    #[track_caller]
    fn here(&self) -> MapHandle<'_, K, V, S> {
        match self.handle() {
            Ok(h) => h,
            Err(e) => panic!(
                "ldnr-hashmap: this thread cannot use the map: {e} (`ReplicatedHashMap::handle` \
                 returns this as an error)"
            ),
        }
    }

    /// A clone of the value of `key`, or `None`. `key` may be any borrowed form of `K`
    /// (`&str` for `String` keys), looked up with no allocation ([`MapHandle::get`]).
    ///
    /// # Panics
    ///
    /// If the calling thread cannot register: as many threads as the limit
    /// ([`MapBuilder::max_threads`](super::MapBuilder::max_threads)) use the map now, or
    /// the call comes from a thread-local's destructor ([`handle`](Self::handle) returns
    /// both as errors). Also for a call from inside a closure the map runs on this
    /// thread, as for every map operation ([`MapHandle`], "Panics").
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<String, u64>::new()?;
    /// std::thread::scope(|s| {
    ///     for t in 0..4 {
    ///         let map = &map;
    ///         s.spawn(move || map.insert(format!("user:{t}"), t * 10));
    ///     }
    /// });
    /// assert_eq!(map.get("user:3"), Some(30));
    /// assert_eq!(map.get("user:4"), None);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.here().get(key)
    }

    /// Whether `key` has a value ([`MapHandle::contains_key`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<String, ()>::new()?;
    /// map.insert("present".to_string(), ());
    /// assert!(map.contains_key("present"));
    /// assert!(!map.contains_key("absent"));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.here().contains_key(key)
    }

    /// Runs `f` on the calling thread's replica and returns what it returns: iteration,
    /// aggregates, part of a value ([`MapHandle::read`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get), and if `f` panics (the map is unaffected) or calls the map.
    ///
    /// # Examples
    ///
    /// ```
    /// let map: ldnr_hashmap::ReplicatedHashMap<u64, u64> = (1..=4).map(|k| (k, k * k)).collect();
    /// assert_eq!(map.read(|m| m.values().sum::<u64>()), 30);
    /// let mut big: Vec<u64> = map.read(|m| m.iter().filter(|(_, &v)| v > 4).map(|(&k, _)| k).collect());
    /// big.sort();
    /// assert_eq!(big, [3, 4]);
    /// ```
    #[track_caller]
    pub fn read<R>(&self, f: impl FnOnce(&HashMap<K, V, S>) -> R) -> R {
        self.here().read(f)
    }

    /// The number of entries ([`MapHandle::len`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// map.insert(1, 10);
    /// map.insert(1, 11);
    /// assert_eq!(map.len(), 1);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn len(&self) -> usize {
        self.here().len()
    }

    /// Whether the map has no entries ([`MapHandle::is_empty`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::default();
    /// assert!(map.is_empty());
    /// ```
    #[track_caller]
    pub fn is_empty(&self) -> bool {
        self.here().is_empty()
    }

    /// Inserts or replaces the value of `key`; returns the previous value
    /// ([`MapHandle::insert`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<String, u64>::new()?;
    /// assert_eq!(map.insert("a".to_string(), 1), None);
    /// assert_eq!(map.insert("a".to_string(), 2), Some(1));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.here().insert(key, value)
    }

    /// Removes `key`; returns its value ([`MapHandle::remove`]). `key` may be a borrowed
    /// form of `K`; the log gets one owned copy of it.
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<String, u64>::new()?;
    /// map.insert("a".to_string(), 1);
    /// assert_eq!(map.remove("a"), Some(1));
    /// assert_eq!(map.remove("a"), None);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.here().remove(key)
    }

    /// The value of `key`, inserting `value` first if it has none; atomic: of racing
    /// threads, exactly one inserts and all get its value ([`MapHandle::get_or_insert`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<&'static str, u32>::new()?;
    /// assert_eq!(map.get_or_insert("hits", 0), 0);
    /// map.insert("hits", 5);
    /// assert_eq!(map.get_or_insert("hits", 0), 5);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn get_or_insert(&self, key: K, value: V) -> V {
        self.here().get_or_insert(key, value)
    }

    /// Inserts every pair as one write: a reader sees all of them or none
    /// ([`MapHandle::extend`]). The [`Extend`] trait does the same through `&mut`.
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// map.extend([(1, 10), (2, 20), (1, 11)]);
    /// assert_eq!(map.len(), 2);
    /// assert_eq!(map.get(&1), Some(11), "a later pair replaces an earlier one");
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn extend(&self, pairs: impl IntoIterator<Item = (K, V)>) {
        self.here().extend(pairs)
    }

    /// Keeps only the entries for which `keep` returns `true`, as one write; `keep` may
    /// change the values it keeps. Every replica runs `keep`, so it must be
    /// deterministic: a function of its arguments alone ([`MapHandle::retain`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get), and if `keep` panics: the panic is resumed here, and every
    /// replica keeps the same partial effect.
    ///
    /// # Examples
    ///
    /// ```
    /// let map: ldnr_hashmap::ReplicatedHashMap<u64, u64> = (0..10).map(|k| (k, k)).collect();
    /// map.retain(|k, _| k % 3 == 0);
    /// let mut left: Vec<u64> = map.read(|m| m.keys().copied().collect());
    /// left.sort();
    /// assert_eq!(left, [0, 3, 6, 9]);
    /// ```
    #[track_caller]
    pub fn retain(&self, keep: fn(&K, &mut V) -> bool) {
        self.here().retain(keep)
    }

    /// Removes every entry, as one write ([`MapHandle::clear`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let map: ldnr_hashmap::ReplicatedHashMap<u64, u64> = (0..10).map(|k| (k, k)).collect();
    /// map.clear();
    /// assert!(map.is_empty());
    /// ```
    #[track_caller]
    pub fn clear(&self) {
        self.here().clear()
    }
}
