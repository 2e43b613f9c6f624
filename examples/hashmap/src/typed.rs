//! A typed replicated hash map: [`ReplicatedHashMap<K, V>`] and its per-thread
//! [`MapHandle`].
//!
//! [`U64Map`](crate::U64Map) shows the raw LD-NR interface: operation enums passed to
//! [`NodeReplicated::execute`] with a [`ThreadToken`]. This module wraps the same idea in
//! the interface of a map: any `K → V`, `get` / `insert` / `remove` methods, and a
//! handle that carries the token so no call can pass the wrong one.
//!
//! # What each operation costs
//!
//! Every replica holds a full `HashMap<K, V, S>`. On top of the map's own work:
//!
//! - **reads** (`get`, `contains_key`) take the key **by value** into the read operation,
//!   so they clone it once (free for integers, an allocation for a `String`): an LD-NR
//!   read operation has no lifetime and cannot borrow the caller's key. `get` also clones
//!   the value out, since the replica stays shared after the read. `len` clones nothing.
//! - **writes** (`insert`, `remove`) are stored in the shared log and every replica
//!   applies its own clone, so a write clones its key (and value) about once per replica;
//!   the previous value comes back from the replica that ran the caller's batch.
//!
//! # Determinism
//!
//! LD-NR requires every replica to reach the same state ([`ldnr::Dispatch`]). The
//! replicas start as clones of one map, so they share the hasher `S` (clones of a
//! [`RandomState`] hash alike), and no operation here exposes iteration order: equal
//! operations give equal maps and equal answers on every replica.
//!
//! # Examples
//!
//! ```
//! use ldnr_hashmap::ReplicatedHashMap;
//!
//! let map = ReplicatedHashMap::<String, u32>::new()?;
//! let h = map.handle()?;
//! assert_eq!(h.insert("one".to_string(), 1), None);
//! assert_eq!(h.get(&"one".to_string()), Some(1));
//! assert_eq!(h.remove(&"one".to_string()), Some(1));
//! assert!(h.is_empty());
//! # Ok::<(), ldnr::Error>(())
//! ```

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use ldnr::{
    AffinityManager, Builder, Dispatch, Error, NodeId, NodeReplicated, ReplicaId, ReplicaInfo,
    ThreadToken,
};

/// The sequential map each replica holds.
#[derive(Clone)]
struct Replicated<K, V, S>(HashMap<K, V, S>);

/// Read operations. They own their key: see the module docs on the clone this costs.
enum Read<K> {
    Get(K),
    ContainsKey(K),
    Len,
}

/// Write operations, stored in the log and cloned for each replica.
#[derive(Clone)]
enum Write<K, V> {
    Insert(K, V),
    Remove(K),
}

/// The answer to any operation; each public method knows which variant its operation
/// produces.
enum Reply<V> {
    Value(Option<V>),
    Found(bool),
    Len(usize),
}

impl<K, V, S> Dispatch for Replicated<K, V, S>
where
    K: Hash + Eq + Clone + Send,
    V: Clone + Send,
    S: BuildHasher,
{
    type ReadOperation = Read<K>;
    type WriteOperation = Write<K, V>;
    type Response = Reply<V>;

    fn dispatch(&self, op: Read<K>) -> Reply<V> {
        match op {
            Read::Get(k) => Reply::Value(self.0.get(&k).cloned()),
            Read::ContainsKey(k) => Reply::Found(self.0.contains_key(&k)),
            Read::Len => Reply::Len(self.0.len()),
        }
    }

    fn dispatch_mut(&mut self, op: Write<K, V>) -> Reply<V> {
        match op {
            Write::Insert(k, v) => Reply::Value(self.0.insert(k, v)),
            Write::Remove(k) => Reply::Value(self.0.remove(&k)),
        }
    }
}

/// A `K → V` hash map replicated with LD-NR: linearizable, usable from many threads at
/// once, with reads served by the calling thread's replica.
///
/// Build one with [`new`](Self::new) (one replica on the calling thread's node) or
/// configure replicas, log and affinity with [`builder`](Self::builder) /
/// [`builder_from`](Self::builder_from). Each thread then takes a [`MapHandle`] with
/// [`handle`](Self::handle) and calls the map operations on it.
///
/// The bounds are those of [`NodeReplicated`]: the map is cloned into each replica
/// (`Clone`), mutated by whichever thread combines (`Send`) and read by many threads at
/// once (`Sync`). See the [module docs](self) for what each operation clones.
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
///             let h = map.handle().expect("below the thread limit");
///             for k in 0..100 {
///                 assert_eq!(h.insert(t * 1000 + k, k), None);
///             }
///             assert_eq!(h.get(&(t * 1000 + 42)), Some(42));
///         });
///     }
/// });
///
/// let h = map.handle()?;
/// assert_eq!(h.len(), 400);
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
    /// Those of [`MapBuilder::build`]; the defaults are valid, so in practice none.
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
    /// assert_eq!(map.handle()?.get(&1), Some("one"));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn builder_from(initial: HashMap<K, V, S>) -> MapBuilder<K, V, S> {
        MapBuilder {
            inner: NodeReplicated::builder(Replicated(initial)),
        }
    }

    /// The calling thread's handle to the map: cheap to get (a thread-local lookup), the
    /// same registration on every call from this thread, given back when the thread
    /// exits ([`NodeReplicated::thread_token`]). Keep it in hot loops; the map's own
    /// methods ([`get`](Self::get), [`insert`](Self::insert), ...) fetch it per call.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyThreads`] when as many threads as the limit
    /// ([`MapBuilder::max_threads`]) are registered now.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_hashmap::ReplicatedHashMap;
    ///
    /// let map = ReplicatedHashMap::<u8, u8>::builder().max_threads(1).build()?;
    /// let h = map.handle()?;
    /// h.insert(1, 2);
    /// // Short-lived threads take turns in the one slot: each gives it back at exit.
    /// for _ in 0..10 {
    ///     std::thread::scope(|s| {
    ///         s.spawn(|| assert_eq!(map.handle().map(|h| h.get(&1)), Err(ldnr::Error::TooManyThreads { limit: 1 })));
    ///     });
    /// }
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn handle(&self) -> Result<MapHandle<'_, K, V, S>, Error> {
        Ok(MapHandle {
            map: self,
            tkn: self.nr.thread_token()?,
        })
    }

    /// The calling thread's handle, or a panic that says why there is none.
    #[track_caller]
    fn here(&self) -> MapHandle<'_, K, V, S> {
        match self.handle() {
            Ok(h) => h,
            Err(e) => panic!("ldnr-hashmap: this thread cannot use the map: {e}"),
        }
    }

    /// A clone of the value of `key`, or `None` ([`MapHandle::get`] on this thread's
    /// handle).
    ///
    /// # Panics
    ///
    /// If the calling thread cannot register: as many threads as the limit use the map
    /// now (see [`handle`](Self::handle), which returns that as an error).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// std::thread::scope(|s| {
    ///     for t in 0..4 {
    ///         let map = &map;
    ///         s.spawn(move || map.insert(t, t * 10));
    ///     }
    /// });
    /// assert_eq!(map.get(&3), Some(30));
    /// assert_eq!(map.len(), 4);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    #[track_caller]
    pub fn get(&self, key: &K) -> Option<V> {
        self.here().get(key)
    }

    /// Whether `key` has a value ([`MapHandle::contains_key`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    #[track_caller]
    pub fn contains_key(&self, key: &K) -> bool {
        self.here().contains_key(key)
    }

    /// The number of entries ([`MapHandle::len`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    #[track_caller]
    pub fn len(&self) -> usize {
        self.here().len()
    }

    /// Whether the map has no entries ([`MapHandle::is_empty`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
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
    #[track_caller]
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.here().insert(key, value)
    }

    /// Removes `key`; returns its value ([`MapHandle::remove`]).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    #[track_caller]
    pub fn remove(&self, key: &K) -> Option<V> {
        self.here().remove(key)
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
    /// let h = map.handle()?;
    /// h.insert(7, 70);
    /// let id = map.add_replica(NodeId(0))?;
    /// assert_eq!(map.replicas().len(), 2);
    /// assert!(map.replicas().iter().any(|r| r.id == id));
    /// assert_eq!(h.get(&7), Some(70));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
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
    /// let h = map.handle()?;
    /// h.insert(7, 70);
    /// let first = map.replicas()[0].id;
    /// map.add_replica(NodeId(0))?;
    /// map.remove_replica(first)?;
    /// assert_eq!(h.get(&7), Some(70));
    /// let last = map.replicas()[0].id;
    /// assert_eq!(map.remove_replica(last), Err(Error::LastReplica));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
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

impl<K, V, S> fmt::Debug for ReplicatedHashMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Clone + Send + Sync,
{
    /// Shows the replica snapshot of [`replicas`](Self::replicas), not the contents
    /// (reading them needs a registered thread).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicatedHashMap")
            .field("replicas", &self.replicas())
            .finish_non_exhaustive()
    }
}

/// Configures and builds a [`ReplicatedHashMap`]: the options of LD-NR's
/// [`Builder`], applied to a map.
///
/// Start with [`ReplicatedHashMap::builder`] (empty) or
/// [`ReplicatedHashMap::builder_from`] (given contents, capacity and hasher).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use ldnr::{NoAffinity, NodeId};
/// use ldnr_hashmap::ReplicatedHashMap;
///
/// let map = ReplicatedHashMap::<u64, u64>::builder()
///     .replicas(&[NodeId(0), NodeId(0)])
///     .log_capacity(1 << 12)
///     .max_threads(64)
///     .affinity(Arc::new(NoAffinity))
///     .build()?;
/// assert_eq!(map.replicas().len(), 2);
/// # Ok::<(), ldnr::Error>(())
/// ```
pub struct MapBuilder<K, V, S = RandomState> {
    inner: Builder<Replicated<K, V, S>>,
}

impl<K, V, S> MapBuilder<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Clone + Send + Sync,
{
    /// One replica on each of `nodes`, in order (a node may appear more than once).
    /// Default: one replica on the node of the thread that calls `build`. See
    /// [`Builder::replicas`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::builder()
    ///     .replicas(&[NodeId(0), NodeId(0), NodeId(0)])
    ///     .build()?;
    /// assert_eq!(map.replicas().len(), 3);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn replicas(self, nodes: &[NodeId]) -> Self {
        Self {
            inner: self.inner.replicas(nodes),
        }
    }

    /// The shared log's capacity in entries: a power of two in
    /// [`ldnr::MIN_LOG_CAPACITY`]`..=`[`ldnr::MAX_LOG_CAPACITY`]; default
    /// [`ldnr::DEFAULT_LOG_CAPACITY`]. Each entry holds one `insert` or `remove`.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::builder()
    ///     .log_capacity(1000)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, ldnr::Error::InvalidLogCapacity { requested: 1000, .. }));
    /// ```
    pub fn log_capacity(self, entries: usize) -> Self {
        Self {
            inner: self.inner.log_capacity(entries),
        }
    }

    /// How many threads may use the map at once: `1..=`[`ldnr::MAX_THREADS`]; default
    /// [`ldnr::DEFAULT_MAX_THREADS`]. A thread's registration is given back when it
    /// exits.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::builder()
    ///     .max_threads(1)
    ///     .build()?;
    /// map.insert(1, 10); // this thread holds the one slot
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(map.handle().is_err()));
    /// });
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn max_threads(self, threads: usize) -> Self {
        Self {
            inner: self.inner.max_threads(threads),
        }
    }

    /// The affinity manager that names the nodes, tells each thread its node and places
    /// each replica's memory; default [`ldnr::NoAffinity`] (one node, no placement).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::builder()
    ///     .affinity(Arc::new(ldnr::NoAffinity))
    ///     .build()?;
    /// assert_eq!(map.replicas()[0].node, ldnr::NodeId(0));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn affinity(self, manager: Arc<dyn AffinityManager>) -> Self {
        Self {
            inner: self.inner.affinity(manager),
        }
    }

    /// Builds the map: clones the initial map into every replica and sets up the log.
    ///
    /// # Errors
    ///
    /// Those of [`Builder::build`]: an invalid log capacity or thread limit, an empty or
    /// too long replica list, a node the affinity manager does not know, or a failing
    /// affinity manager.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::builder()
    ///     .replicas(&[])
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err, ldnr::Error::NoReplicas);
    /// ```
    pub fn build(self) -> Result<ReplicatedHashMap<K, V, S>, Error> {
        Ok(ReplicatedHashMap {
            nr: self.inner.build()?,
        })
    }
}

impl<K, V, S> fmt::Debug for MapBuilder<K, V, S> {
    /// Shows LD-NR's builder options, not the initial contents.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapBuilder")
            .field("inner", &self.inner)
            .finish()
    }
}

/// One thread's access to a [`ReplicatedHashMap`]: the map operations.
///
/// A handle holds the thread's [`ThreadToken`], so, like the token, it is `Copy` within
/// its thread and `!Send`: each thread takes its own with
/// [`ReplicatedHashMap::handle`].
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
/// # Examples
///
/// ```
/// let map = ldnr_hashmap::ReplicatedHashMap::<&'static str, u32>::new()?;
/// let h = map.handle()?;
/// h.insert("a", 1);
/// h.insert("b", 2);
/// assert_eq!(h.len(), 2);
/// assert_eq!(h.get(&"b"), Some(2));
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
    /// A clone of the value of `key`, or `None`.
    ///
    /// Clones `key` into the read operation and the value out of the replica (see the
    /// [module docs](self#what-each-operation-costs)).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, String>::new()?;
    /// let h = map.handle()?;
    /// h.insert(1, "one".into());
    /// assert_eq!(h.get(&1).as_deref(), Some("one"));
    /// assert_eq!(h.get(&2), None);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn get(&self, key: &K) -> Option<V> {
        match self.read(Read::Get(key.clone())) {
            Reply::Value(v) => v,
            _ => unreachable!("a Get is answered with a value"),
        }
    }

    /// Whether `key` has a value. Clones `key`, not the value.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, Vec<u8>>::new()?;
    /// let h = map.handle()?;
    /// h.insert(1, vec![0; 1 << 20]);
    /// assert!(h.contains_key(&1));
    /// assert!(!h.contains_key(&2));
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn contains_key(&self, key: &K) -> bool {
        match self.read(Read::ContainsKey(key.clone())) {
            Reply::Found(found) => found,
            _ => unreachable!("a ContainsKey is answered with a bool"),
        }
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
    pub fn len(&self) -> usize {
        match self.read(Read::Len) {
            Reply::Len(n) => n,
            _ => unreachable!("a Len is answered with a count"),
        }
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
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.write(Write::Insert(key, value))
    }

    /// Removes `key`; returns its value, or `None` if it had none.
    ///
    /// Clones `key` into the write operation, which every replica applies.
    ///
    /// # Examples
    ///
    /// ```
    /// let map = ldnr_hashmap::ReplicatedHashMap::<u64, u64>::new()?;
    /// let h = map.handle()?;
    /// h.insert(1, 10);
    /// assert_eq!(h.remove(&1), Some(10));
    /// assert_eq!(h.remove(&1), None);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn remove(&self, key: &K) -> Option<V> {
        self.write(Write::Remove(key.clone()))
    }

    /// The replica this thread is matched to now; `None` only while that replica is being
    /// removed (see [`NodeReplicated::replica_of`]).
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

    fn read(&self, op: Read<K>) -> Reply<V> {
        self.map.nr.execute(op, self.tkn)
    }

    fn write(&self, op: Write<K, V>) -> Option<V> {
        match self.map.nr.execute_mut(op, self.tkn) {
            Reply::Value(v) => v,
            _ => unreachable!("a write is answered with a value"),
        }
    }
}

impl<K, V, S> fmt::Debug for MapHandle<'_, K, V, S>
where
    K: Hash + Eq + Clone + Send,
    V: Clone + Send,
    S: BuildHasher,
{
    /// Shows the thread's token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapHandle")
            .field("token", &self.tkn)
            .finish_non_exhaustive()
    }
}
