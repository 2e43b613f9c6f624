//! The std traits of [`ReplicatedHashMap`]: `Debug` (the entries), `Default`,
//! `FromIterator` and `Extend`.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};

use super::{MapBuilder, ReplicatedHashMap};

impl<K, V, S> ReplicatedHashMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Clone + Send + Sync,
{
    /// Builds a map with LD-NR's defaults, for the traits that cannot return an error.
    /// The defaults are valid and the default affinity manager cannot fail, so the panic
    /// is there for completeness.
    #[track_caller]
    fn with_defaults(builder: MapBuilder<K, V, S>) -> Self {
        match builder.build() {
            Ok(map) => map,
            Err(e) => panic!("ldnr-hashmap: a map with the default configuration failed: {e}"),
        }
    }
}

impl<K, V, S> fmt::Debug for ReplicatedHashMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + fmt::Debug,
    V: Clone + Send + Sync + fmt::Debug,
    S: BuildHasher + Clone + Send + Sync,
{
    /// Shows the entries as a `HashMap` does (`{"a": 1, "b": 2}`, in the replica's
    /// order), read from the calling thread's replica under its read lock: this replica's
    /// writes wait while the entries are formatted. A thread that cannot register (at the
    /// thread limit) gets `ReplicatedHashMap { unreadable: "<why>", .. }` instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<&str, u32>::new()?;
    /// map.insert("a", 1);
    /// assert_eq!(format!("{map:?}"), r#"{"a": 1}"#);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.handle() {
            Ok(h) => h.read(|m| f.debug_map().entries(m).finish()),
            Err(e) => f
                .debug_struct("ReplicatedHashMap")
                .field("unreadable", &e.to_string())
                .finish_non_exhaustive(),
        }
    }
}

impl<K, V, S> Default for ReplicatedHashMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Clone + Send + Sync + Default,
{
    /// An empty map with LD-NR's defaults, like [`new`](ReplicatedHashMap::new) (which
    /// returns a `Result`), with the hasher's default.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_hashmap::ReplicatedHashMap;
    ///
    /// let map: ReplicatedHashMap<String, u32> = Default::default();
    /// assert!(map.is_empty());
    /// assert_eq!(map.replicas().len(), 1);
    /// ```
    fn default() -> Self {
        Self::with_defaults(Self::builder_from(HashMap::default()))
    }
}

impl<K, V, S> FromIterator<(K, V)> for ReplicatedHashMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Clone + Send + Sync + Default,
{
    /// A map with LD-NR's defaults whose replicas start with the pairs (a later pair
    /// replaces an earlier one with the same key). To configure it as well, collect a
    /// `HashMap` and pass it to [`builder_from`](ReplicatedHashMap::builder_from).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_hashmap::ReplicatedHashMap;
    ///
    /// let map: ReplicatedHashMap<String, usize> =
    ///     ["a", "bb", "ccc"].iter().map(|s| (s.to_string(), s.len())).collect();
    /// assert_eq!(map.get("bb"), Some(2));
    /// ```
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Self::with_defaults(Self::builder_from(pairs.into_iter().collect()))
    }
}

impl<K, V, S> Extend<(K, V)> for ReplicatedHashMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Clone + Send + Sync,
{
    /// Inserts every pair as one write, like [`ReplicatedHashMap::extend`] (which needs
    /// only `&self`).
    ///
    /// # Panics
    ///
    /// As [`ReplicatedHashMap::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_hashmap::ReplicatedHashMap;
    ///
    /// let mut map = ReplicatedHashMap::<u64, u64>::new()?;
    /// Extend::extend(&mut map, (0..3).map(|k| (k, k)));
    /// assert_eq!(map.len(), 3);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, pairs: I) {
        ReplicatedHashMap::extend(self, pairs)
    }
}
