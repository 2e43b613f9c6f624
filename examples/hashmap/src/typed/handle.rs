//! [`MapHandle`]: the map operations with the calling thread's token in hand.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};

use ldnr::{ReplicaId, ThreadToken};

use super::ops::Write;
use super::ReplicatedHashMap;

/// One thread's access to a [`ReplicatedHashMap`]: the map's operations, without looking
/// up the thread's registration on every call.
///
/// The map's own methods ([`ReplicatedHashMap::get`], ...) are the same operations; a
/// handle saves them a thread-local lookup each, which counts in hot loops. A handle
/// holds the thread's [`ThreadToken`], so, like the token, it is `Copy` within its thread
/// and `!Send`: each thread takes its own with [`ReplicatedHashMap::handle`].
///
/// Every operation is linearizable: a read sees every write that completed before it
/// started, on any thread.
///
/// ```compile_fail,E0277
/// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new().unwrap();
/// let h = map.handle().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || h.len()); // error: `MapHandle` cannot be sent between threads
/// });
/// ```
///
/// # Panics
///
/// Each method panics if it is called from inside code that the map runs on the same
/// thread (a [`read`](Self::read) closure, a [`retain`](Self::retain) predicate), as
/// LD-NR does for any re-entrant call. A `retain` predicate that panics is resumed in
/// the thread that called `retain`; every replica keeps the same partial effect and the
/// map goes on working.
///
/// # Examples
///
/// ```
/// let map = ldnr_hashmap::ReplicatedHashMap::<&'static str, u32>::new()?;
/// let h = map.handle()?;
/// for round in 0..1000 {
///     h.insert("a", round);
///     assert_eq!(h.get("a"), Some(round));
/// }
/// assert_eq!(h.len(), 1);
/// # Ok::<(), ldnr::Error>(())
/// ```
pub struct MapHandle<'m, K, V, S = RandomState>
where
    K: Hash + Eq + Clone + Send,
    V: Clone + Send,
    S: BuildHasher,
{
    map: &'m ReplicatedHashMap<K, V, S>,
    tkn: ThreadToken,
}

impl<K, V, S> Clone for MapHandle<'_, K, V, S>
where
    K: Hash + Eq + Clone + Send,
    V: Clone + Send,
    S: BuildHasher,
{
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V, S> Copy for MapHandle<'_, K, V, S>
where
    K: Hash + Eq + Clone + Send,
    V: Clone + Send,
    S: BuildHasher,
{
}

impl<'m, K, V, S> MapHandle<'m, K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Clone + Send + Sync,
{
    /// The handle of `map` for the thread that owns `tkn`.
    pub(super) fn new(map: &'m ReplicatedHashMap<K, V, S>, tkn: ThreadToken) -> Self {
        Self { map, tkn }
    }

    /// A clone of the value of `key`, or `None`.
    ///
    /// `key` may be any borrowed form of `K` (`&str` for `String` keys): it is looked up
    /// in place on this thread's replica, with no allocation. The value is cloned out,
    /// since the replica stays shared; [`read`](Self::read) takes a part of it instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<String, u64>::new()?;
    /// let h = map.handle()?;
    /// h.insert("one".to_string(), 1);
    /// assert_eq!(h.get("one"), Some(1));
    /// assert_eq!(h.get("two"), None);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read(|m| m.get(key).cloned())
    }

    /// Whether `key` has a value. Borrows `key` (no allocation) and clones nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<String, Vec<u8>>::new()?;
    /// let h = map.handle()?;
    /// h.insert("big".to_string(), vec![0; 1 << 20]);
    /// assert!(h.contains_key("big"));
    /// assert!(!h.contains_key("small"));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read(|m| m.contains_key(key))
    }

    /// Runs `f` on this thread's replica of the map and returns what it returns: for
    /// iteration, aggregates, and taking part of a value without cloning all of it.
    ///
    /// Linearizable like every read: `f` sees every write that completed before `read`
    /// was called, and no write of this replica runs while it does. It may borrow from
    /// the caller and return anything but a borrow of the map: copy out what you need.
    ///
    /// Keep `f` short, since this replica's writes wait for it, and do not call the map
    /// from inside it (that panics).
    ///
    /// # Panics
    ///
    /// If `f` panics (the panic unwinds out of `read`; the map is unaffected), or calls
    /// the map.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<String, Vec<u32>>::new()?;
    /// let h = map.handle()?;
    /// h.insert("a".to_string(), vec![1, 2, 3]);
    /// h.insert("b".to_string(), vec![4]);
    /// let total: u32 = h.read(|m| m.values().flatten().sum());
    /// let a_len = h.read(|m| m.get("a").map(Vec::len)); // no clone of the vector
    /// let mut keys: Vec<String> = h.read(|m| m.keys().cloned().collect());
    /// keys.sort();
    /// assert_eq!((total, a_len, keys), (10, Some(3), vec!["a".to_string(), "b".to_string()]));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn read<R>(&self, f: impl FnOnce(&HashMap<K, V, S>) -> R) -> R {
        self.map.nr.read(self.tkn, |r| f(&r.0))
    }

    /// The number of entries.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// let h = map.handle()?;
    /// h.insert(1, 10);
    /// h.insert(1, 11);
    /// assert_eq!(h.len(), 1);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn len(&self) -> usize {
        self.read(HashMap::len)
    }

    /// Whether the map has no entries.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// let h = map.handle()?;
    /// assert!(h.is_empty());
    /// h.insert(1, 10);
    /// assert!(!h.is_empty());
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn is_empty(&self) -> bool {
        self.read(HashMap::is_empty)
    }

    /// Inserts or replaces the value of `key`; returns the previous value.
    ///
    /// The write goes through the shared log and every replica applies a clone of it.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// let h = map.handle()?;
    /// assert_eq!(h.insert(1, 10), None);
    /// assert_eq!(h.insert(1, 11), Some(10));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.write(Write::Insert(key, value))
    }

    /// Removes `key`; returns its value, or `None` if it had none.
    ///
    /// `key` may be a borrowed form of `K`; the write that goes to the log owns a key,
    /// so it is converted once with [`ToOwned`] (for `&str`, one `String`).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<String, u64>::new()?;
    /// let h = map.handle()?;
    /// h.insert("one".to_string(), 1);
    /// assert_eq!(h.remove("one"), Some(1));
    /// assert_eq!(h.remove("one"), None);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.write(Write::Remove(key.to_owned()))
    }

    /// The value of `key`, inserting `value` first if `key` has none; atomic (dashmap's
    /// `*entry(key).or_insert(value)`, as a clone).
    ///
    /// Of several threads racing to insert the same absent key, exactly one inserts and
    /// all of them get its value. A key that has a value costs a read only; an absent
    /// one costs one write (through the log), and one clone of `value`, kept in case it
    /// is the value that goes in.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, String>::new()?;
    /// std::thread::scope(|s| {
    ///     let racers: Vec<_> = (0..4)
    ///         .map(|t| {
    ///             let map = &map;
    ///             s.spawn(move || map.handle().unwrap().get_or_insert(7, format!("thread {t}")))
    ///         })
    ///         .collect();
    ///     let seen: Vec<String> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    ///     // One racer's value went in, and every racer saw that value.
    ///     assert!(seen.iter().all(|v| *v == seen[0]));
    ///     assert_eq!(map.get(&7).as_ref(), Some(&seen[0]));
    /// });
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn get_or_insert(&self, key: K, value: V) -> V {
        if let Some(found) = self.get(&key) {
            return found;
        }
        let kept = value.clone();
        // `Some`: another thread inserted the key between the read above and this write.
        self.write(Write::GetOrInsert(key, value)).unwrap_or(kept)
    }

    /// Inserts every pair, as one write: a reader sees all of them or none. A later pair
    /// replaces an earlier one with the same key. Nothing is written for no pairs.
    ///
    /// The pairs travel through the log together, so every replica clones all of them;
    /// an `extend` of many pairs takes one log entry where as many `insert`s would take
    /// one each.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// let h = map.handle()?;
    /// h.extend((0..100).map(|k| (k, k * k)));
    /// assert_eq!(h.len(), 100);
    /// assert_eq!(h.get(&9), Some(81));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn extend(&self, pairs: impl IntoIterator<Item = (K, V)>) {
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        if !pairs.is_empty() {
            self.write(Write::Extend(pairs));
        }
    }

    /// Keeps only the entries for which `keep` returns `true`; `keep` may also change
    /// the values it keeps. One write, atomic like [`extend`](Self::extend).
    ///
    /// Every replica runs `keep` on its own copy of each entry, so it must be
    /// **deterministic**: its answer and its change to the value may depend on its
    /// arguments alone, never on time, randomness, a counter or other outside state.
    /// That is why it is a function pointer: a closure that captures nothing converts to
    /// one, and a closure that captures a variable is refused at compile time:
    ///
    /// ```compile_fail,E0308
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new().unwrap();
    /// let limit = 10;
    /// map.retain(|_, v| *v < limit); // error: expected fn pointer, found closure
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// let h = map.handle()?;
    /// h.extend((0..10).map(|k| (k, k)));
    /// h.retain(|_, v| {
    ///     *v *= 10;
    ///     *v % 20 == 0
    /// });
    /// assert_eq!(h.len(), 5);
    /// assert_eq!(h.get(&4), Some(40));
    /// assert_eq!(h.get(&5), None);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn retain(&self, keep: fn(&K, &mut V) -> bool) {
        self.write(Write::Retain(keep));
    }

    /// Removes every entry, as one write. Each replica keeps its allocated capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// let h = map.handle()?;
    /// h.extend([(1, 1), (2, 2)]);
    /// h.clear();
    /// assert!(h.is_empty());
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn clear(&self) {
        self.write(Write::Clear);
    }

    /// The replica this thread is matched to now; `None` only while that replica is being
    /// removed (see [`NodeReplicated::replica_of`](ldnr::NodeReplicated::replica_of)).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// let h = map.handle()?;
    /// assert_eq!(h.replica(), Some(map.replicas()[0].id));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn replica(&self) -> Option<ReplicaId> {
        self.map.nr.replica_of(self.tkn)
    }

    /// The map this handle belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// let h = map.handle()?;
    /// assert_eq!(h.map().replicas().len(), 1);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn map(&self) -> &'m ReplicatedHashMap<K, V, S> {
        self.map
    }

    /// Appends `op` to the log and returns this replica's answer: the value the key had
    /// (see [`Write`]).
    #[track_caller]
    fn write(&self, op: Write<K, V>) -> Option<V> {
        self.map.nr.execute_mut(op, self.tkn)
    }
}

impl<K, V, S> fmt::Debug for MapHandle<'_, K, V, S>
where
    K: Hash + Eq + Clone + Send,
    V: Clone + Send,
    S: BuildHasher,
{
    /// Shows the thread's token, not the contents (the map's `Debug` shows those).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapHandle")
            .field("token", &self.tkn)
            .finish_non_exhaustive()
    }
}
