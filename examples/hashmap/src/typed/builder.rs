//! [`MapBuilder`]: LD-NR's configuration ([`Builder`]) applied to a map.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use ldnr::{AffinityManager, Builder, Error, NodeId, NodeReplicated};

use super::ops::Replicated;
use super::ReplicatedHashMap;

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
    /// LD-NR's builder for replicas that start as clones of `initial`.
    pub(super) fn new(initial: Replicated<K, V, S>) -> Self {
        Self {
            inner: NodeReplicated::builder(initial),
        }
    }

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
    /// [`ldnr::DEFAULT_LOG_CAPACITY`]. Each entry holds one write (`insert`, `remove`,
    /// `extend` with all its pairs, ...); reads never use the log.
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
