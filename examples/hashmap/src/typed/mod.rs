//! A typed replicated hash map: [`ReplicatedHashMap<K, V>`] and its per-thread
//! [`MapHandle`].
//!
//! [`U64Map`](crate::U64Map) shows the raw LD-NR interface: operation enums passed to
//! [`NodeReplicated::execute`] with a [`ThreadToken`](ldnr::ThreadToken). This module
//! wraps the same idea in the interface of a concurrent map: any `K → V`, methods named
//! like `HashMap`'s and dashmap's, callable from any thread on a shared `&map`.
//!
//! Two ways to call it, the same operations:
//!
//! - on the map itself (`map.get("key")`): each call finds the calling thread's
//!   registration in a thread-local ([`NodeReplicated::thread_token`]), registering the
//!   thread on its first call and giving the registration back when it exits;
//! - on a [`MapHandle`] (`let h = map.handle()?; h.get("key")`), which holds that
//!   registration and saves the lookup in hot loops.
//!
//! Coming from dashmap: the [crate docs](crate#coming-from-dashmap) have a table of
//! dashmap calls and their counterparts here.
//!
//! # What each operation costs
//!
//! Every replica holds a full `HashMap<K, V, S>`. On top of the map's own work:
//!
//! - **reads** (`get`, `contains_key`, `len`, `is_empty`, [`read`](MapHandle::read)) run
//!   once, on the calling thread's replica, under its read lock; nothing goes to the
//!   log. They **borrow the key** (`get("user:1")` on `String` keys hashes the `&str`
//!   in place: no allocation, no clone). `get` clones the value out, since the replica
//!   stays shared; `read(|m| …)` returns only what the closure computes (a length, a
//!   field, a sum) and clones nothing else.
//! - **writes** (`insert`, `remove`, `get_or_insert` of an absent key, `extend`,
//!   `retain`, `clear`) are appended to the shared log once, and every replica applies
//!   its own clone: a write clones its key and value (all of `extend`'s pairs) about once
//!   per replica. `remove` by a borrowed key makes the one owned key the log needs
//!   ([`ToOwned`]). The answer (the previous value) comes from the replica that ran the
//!   caller's batch.
//! - `get_or_insert` of a key that has a value is a read (a clone of the value); of an
//!   absent key, a write plus one clone of the offered value.
//!
//! # Determinism
//!
//! LD-NR requires every replica to reach the same state ([`ldnr::Dispatch`]). The
//! replicas start as clones of one map, so they share the hasher `S` (clones of a
//! [`RandomState`] hash alike) and the table layout, and every write is deterministic
//! given its arguments: equal writes give equal maps and equal answers on every replica.
//! The one write that runs caller code on every replica, [`retain`](MapHandle::retain),
//! takes a function pointer, which must depend on its arguments alone.
//!
//! # Examples
//!
//! ```
//! use ldnr_hashmap::ReplicatedHashMap;
//!
//! let map = ReplicatedHashMap::<String, u32>::new()?;
//! assert_eq!(map.insert("one".to_string(), 1), None);
//! assert_eq!(map.get("one"), Some(1));
//! assert_eq!(map.get_or_insert("two".to_string(), 2), 2);
//! assert_eq!(map.read(|m| m.values().sum::<u32>()), 3);
//! assert_eq!(map.remove("one"), Some(1));
//! assert_eq!(map.len(), 1);
//! # Ok::<(), ldnr::Error>(())
//! ```

mod builder;
mod handle;
mod map;
mod ops;
#[cfg(feature = "serde")]
mod serde;
mod traits;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use ldnr::{Error, NodeId, NodeReplicated, ReplicaId, ReplicaInfo};

pub use builder::MapBuilder;
pub use handle::MapHandle;

use ops::Replicated;

/// A `K → V` hash map replicated with LD-NR: linearizable, shared by reference between
/// threads, with reads served by the calling thread's replica.
///
/// Build one with [`new`](Self::new) or [`default`](Self::default) (one replica on the
/// calling thread's node), collect it from pairs ([`FromIterator`]), or configure replicas, log and affinity with [`builder`](Self::builder)
/// / [`builder_from`](Self::builder_from). Then call the map operations on it from any
/// thread ([`get`](Self::get), [`insert`](Self::insert), [`read`](Self::read), ...), or
/// on a [`MapHandle`] from [`handle`](Self::handle) in hot loops.
///
/// The bounds are those of [`NodeReplicated`]: the map is cloned into each replica
/// (`Clone`), mutated by whichever thread combines (`Send`) and read by many threads at
/// once (`Sync`). See the [module docs](self) for what each operation clones.
///
/// `Debug` shows the entries, read from the calling thread's replica, like a `HashMap`;
/// with the `serde` feature, the map serializes as its entries and deserializes into a
/// new map with the default configuration.
///
/// # Examples
///
/// Four threads, two replicas, each thread writing its own keys:
///
/// ```
/// use ldnr::NodeId;
/// use ldnr_hashmap::ReplicatedHashMap;
///
/// let map = ReplicatedHashMap::<u64, u64>::builder()
///     .replicas(&[NodeId(0), NodeId(0)]) // use your machine's nodes
///     .build()?;
///
/// std::thread::scope(|s| {
///     for t in 0..4u64 {
///         let map = &map;
///         s.spawn(move || {
///             for k in 0..100 {
///                 assert_eq!(map.insert(t * 1000 + k, k), None);
///             }
///             assert_eq!(map.get(&(t * 1000 + 42)), Some(42));
///         });
///     }
/// });
///
/// assert_eq!(map.len(), 400);
/// # Ok::<(), ldnr::Error>(())
/// ```
pub struct ReplicatedHashMap<K, V, S = RandomState>
where
    K: Hash + Eq + Clone + Send,
    V: Clone + Send,
    S: BuildHasher,
{
    nr: NodeReplicated<Replicated<K, V, S>>,
}

impl<K, V> ReplicatedHashMap<K, V, RandomState>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
{
    /// An empty map with LD-NR's defaults: one replica on the calling thread's node, the
    /// default log capacity and thread limit, no affinity manager.
    ///
    /// # Errors
    ///
    /// Those of [`MapBuilder::build`]; the defaults are valid, so in practice none
    /// ([`default`](Self::default) is the same map, or a panic).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, &'static str>::new()?;
    /// assert_eq!(map.replicas().len(), 1);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn new() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// Starts configuring an empty map (std's [`RandomState`] hasher).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// use ldnr_hashmap::ReplicatedHashMap;
    ///
    /// let map = ReplicatedHashMap::<u64, u64>::builder()
    ///     .replicas(&[NodeId(0), NodeId(0)])
    ///     .log_capacity(1 << 10)
    ///     .build()?;
    /// assert_eq!(map.replicas().len(), 2);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn builder() -> MapBuilder<K, V, RandomState> {
        Self::builder_from(HashMap::new())
    }
}

impl<K, V, S> ReplicatedHashMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Clone + Send + Sync,
{
    /// Starts configuring a map whose replicas begin as clones of `initial`: its
    /// contents, its capacity and its hasher. This is how to pre-fill the map, reserve
    /// capacity or choose another hasher.
    ///
    /// Clones of the hasher `S` must hash alike (true of every `BuildHasher` in std and
    /// of the common seeded ones), so that the replicas agree; see the
    /// [module docs](self#determinism).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::hash::BuildHasherDefault;
    /// use std::collections::hash_map::DefaultHasher;
    /// use ldnr_hashmap::ReplicatedHashMap;
    ///
    /// type Fixed = BuildHasherDefault<DefaultHasher>;
    /// let mut initial = HashMap::with_capacity_and_hasher(1000, Fixed::default());
    /// initial.insert(1u32, "one");
    ///
    /// let map = ReplicatedHashMap::builder_from(initial).build()?;
    /// assert_eq!(map.get(&1), Some("one"));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn builder_from(initial: HashMap<K, V, S>) -> MapBuilder<K, V, S> {
        MapBuilder::new(Replicated(initial))
    }

    /// The calling thread's handle to the map, for hot loops: the map's own methods
    /// ([`get`](Self::get), [`insert`](Self::insert), ...) look the handle up on every
    /// call; a handle kept in a local saves that.
    ///
    /// Cheap to get (a thread-local lookup): the same registration on every call from
    /// this thread, made on its first call and given back when the thread exits
    /// ([`NodeReplicated::thread_token`]).
    ///
    /// # Errors
    ///
    /// [`Error::TooManyThreads`] when as many threads as the limit
    /// ([`MapBuilder::max_threads`]) use the map now; [`Error::ThreadExiting`] when
    /// called from a thread-local's destructor. The map's own methods panic instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::Error;
    /// use ldnr_hashmap::ReplicatedHashMap;
    ///
    /// let map = ReplicatedHashMap::<u8, u8>::builder().max_threads(1).build()?;
    /// // Short-lived threads take turns in the one slot: each gives it back at exit
    /// // (`join` waits for that).
    /// for t in 0..10 {
    ///     std::thread::scope(|s| {
    ///         s.spawn(|| map.handle().unwrap().insert(t, t)).join().unwrap();
    ///     });
    /// }
    /// // While this thread holds the slot, no other thread gets one.
    /// let h = map.handle()?;
    /// assert_eq!(h.len(), 10);
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert_eq!(map.handle().err(), Some(Error::TooManyThreads { limit: 1 })));
    /// });
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn handle(&self) -> Result<MapHandle<'_, K, V, S>, Error> {
        Ok(MapHandle::new(self, self.nr.thread_token()?))
    }

    /// Adds a replica on `node`, cloned from the most advanced one while operations go
    /// on; the threads of that node move to it (see [`NodeReplicated::add_replica`]).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownNode`] if the affinity manager does not know `node`,
    /// [`Error::TooManyReplicas`] at [`ldnr::MAX_REPLICAS`], [`Error::Affinity`] if
    /// the affinity manager fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    ///
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// map.insert(7, 70);
    /// let id = map.add_replica(NodeId(0))?;
    /// assert_eq!(map.replicas().len(), 2);
    /// assert!(map.replicas().iter().any(|r| r.id == id));
    /// assert_eq!(map.get(&7), Some(70));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn add_replica(&self, node: NodeId) -> Result<ReplicaId, Error> {
        self.nr.add_replica(node)
    }

    /// Removes a replica and frees its map; its threads move to the nearest remaining
    /// replica and every operation they were waiting on runs exactly once (see
    /// [`NodeReplicated::remove_replica`]).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownReplica`] if `id` is not a live replica of this map,
    /// [`Error::LastReplica`] for the last one.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{Error, NodeId};
    ///
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// map.insert(7, 70);
    /// let first = map.replicas()[0].id;
    /// map.add_replica(NodeId(0))?;
    /// map.remove_replica(first)?;
    /// assert_eq!(map.get(&7), Some(70));
    /// let last = map.replicas()[0].id;
    /// assert_eq!(map.remove_replica(last), Err(Error::LastReplica));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn remove_replica(&self, id: ReplicaId) -> Result<(), Error> {
        self.nr.remove_replica(id)
    }

    /// A consistent snapshot of the live replicas: id, node, threads served and log
    /// entries applied (see [`NodeReplicated::replicas`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// let _h = map.handle()?;
    /// let infos = map.replicas();
    /// assert_eq!(infos.len(), 1);
    /// assert_eq!(infos[0].threads, 1);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        self.nr.replicas()
    }
}
