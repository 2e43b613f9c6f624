//! `Serialize` and `Deserialize` for [`ReplicatedHashMap`] (feature `serde`): the map's
//! entries, as a `HashMap`'s.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::{Error as _, Serialize, Serializer};

use super::ReplicatedHashMap;

impl<K, V, S> Serialize for ReplicatedHashMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + Serialize,
    V: Clone + Send + Sync + Serialize,
    S: BuildHasher + Clone + Send + Sync,
{
    /// Serializes the entries as a map, read from the calling thread's replica under its
    /// read lock (this replica's writes wait until the serializer is done). A thread
    /// that cannot register (at the thread limit) gets the reason as an error.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<String, u32>::new()?;
    /// map.insert("a".to_string(), 1);
    /// assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"a":1}"#);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        match self.handle() {
            Ok(h) => h.read(|m| serializer.collect_map(m)),
            Err(e) => Err(Z::Error::custom(format_args!(
                "ldnr-hashmap: this thread cannot read the map: {e}"
            ))),
        }
    }
}

impl<'de, K, V, S> Deserialize<'de> for ReplicatedHashMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + Deserialize<'de>,
    V: Clone + Send + Sync + Deserialize<'de>,
    S: BuildHasher + Clone + Send + Sync + Default,
{
    /// Deserializes the entries into a new map with LD-NR's defaults (one replica); to
    /// configure it, deserialize a `HashMap` and pass it to
    /// [`builder_from`](ReplicatedHashMap::builder_from).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_hashmap::ReplicatedHashMap;
    ///
    /// let map: ReplicatedHashMap<String, u32> = serde_json::from_str(r#"{"a":1,"b":2}"#).unwrap();
    /// assert_eq!(map.get("b"), Some(2));
    /// ```
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let initial = HashMap::<K, V, S>::deserialize(deserializer)?;
        Self::builder_from(initial)
            .build()
            .map_err(D::Error::custom)
    }
}
