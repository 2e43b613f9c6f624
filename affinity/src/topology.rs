//! NUMA topology: which nodes exist, which CPUs and memory each has, how far apart they are.
//!
//! On Linux the kernel describes the topology under `/sys/devices/system/node`:
//!
//! ```text
//! /sys/devices/system/node/
//!   online          node list of online nodes, e.g. "0-1,3"
//!   has_memory      node list of nodes with memory (missing on old kernels: all have)
//!   node0/cpulist   the node's CPUs, e.g. "0-3,8-11" (empty for a memory-only node)
//!   node0/distance  one distance per *online* node, in order, e.g. "10 21 21"
//!   ...
//! ```
//!
//! [`Topology::from_sysfs`] parses such a directory (the real one or a copy, for tests);
//! [`Topology::detect`] parses the real one, keeps what this process may use (see
//! [`Topology::restrict`]), and degrades to a single node where there is none (non-Linux
//! systems, kernels without NUMA, containers that hide it).
//! Offline nodes are ignored: only the nodes listed in `online` count.
//!
//! Three kinds of node matter to LD-NR:
//!
//! | kind | CPUs | memory | threads run there | replicas go there |
//! |---|---|---|---|---|
//! | ordinary | yes | yes | yes | yes ([`Topology::replica_nodes`]) |
//! | CPU-only (memoryless) | yes | no | yes | no: its threads use the nearest replica |
//! | memory-only (CXL, PMEM, HBM; or CPUs all outside the cpuset) | no | yes | no | no ([`Topology::memory_only_nodes`]) |
//!
//! A replica on a memory-only node would serve no thread as its own node's replica, so
//! managers do not offer those nodes for replicas or as a thread's node.

use std::fmt;
use std::io;
use std::path::PathBuf;

use ldnr::NodeId;

/// Where Linux describes the NUMA nodes.
pub const SYSFS_NODE_DIR: &str = "/sys/devices/system/node";

/// One NUMA node of a [`Topology`].
///
/// # Examples
///
/// ```
/// use ldnr::NodeId;
/// use ldnr_affinity::NodeInfo;
///
/// let n = NodeInfo::new(NodeId(1), vec![2, 3], true);
/// assert_eq!(n.id, NodeId(1));
/// assert_eq!(n.cpus, [2, 3]);
/// assert!(n.has_memory);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's number, as the operating system numbers it.
    pub id: NodeId,
    /// The node's CPUs (operating-system numbers), ascending. Empty for a memory-only node.
    pub cpus: Vec<usize>,
    /// Whether the node has memory (a CPU-only node has none and cannot hold a replica).
    pub has_memory: bool,
}

impl NodeInfo {
    /// A node with the given CPUs (sorted and deduplicated here).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// use ldnr_affinity::NodeInfo;
    /// assert_eq!(NodeInfo::new(NodeId(0), vec![3, 1, 3], true).cpus, [1, 3]);
    /// ```
    pub fn new(id: NodeId, mut cpus: Vec<usize>, has_memory: bool) -> Self {
        cpus.sort_unstable();
        cpus.dedup();
        Self {
            id,
            cpus,
            has_memory,
        }
    }
}

/// The NUMA nodes of a machine (or a pretend one) and the distances between them.
///
/// Distances follow the ACPI SLIT convention: 10 from a node to itself, larger is
/// farther. Where none are known, 10 and 20 are used. Every node is strictly nearest to
/// itself (checked when a topology is made): the dispatcher relies on it.
///
/// # Examples
///
/// ```
/// use ldnr::NodeId;
/// use ldnr_affinity::Topology;
///
/// let t = Topology::detect(); // this machine; one node where NUMA is not visible
/// assert!(!t.nodes().is_empty());
/// assert_eq!(t.distance(t.nodes()[0].id, t.nodes()[0].id), 10);
///
/// let sim = Topology::uniform(4);
/// assert_eq!(sim.memory_nodes(), [NodeId(0), NodeId(1), NodeId(2), NodeId(3)]);
/// assert_eq!(sim.distance(NodeId(0), NodeId(3)), 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Ascending by id; ids are unique.
    nodes: Vec<NodeInfo>,
    /// `distances[i][j]`: from `nodes[i]` to `nodes[j]`. Invariant: square, `nodes.len()`.
    distances: Vec<Vec<u32>>,
}

impl Topology {
    /// Builds a topology from its parts.
    ///
    /// `distances[i][j]` is the distance from `nodes[i]` to `nodes[j]`; `None` means
    /// 10 on the diagonal and 20 elsewhere. Nodes are sorted by id.
    ///
    /// # Errors
    ///
    /// [`TopologyError::Invalid`] if there are no nodes or a node id appears twice;
    /// [`TopologyError::Distances`] if the matrix is not `nodes.len()` square or a node is
    /// not strictly nearer to itself than to every other node.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// use ldnr_affinity::{NodeInfo, Topology};
    ///
    /// let t = Topology::new(
    ///     vec![NodeInfo::new(NodeId(0), vec![0], true), NodeInfo::new(NodeId(1), vec![1], true)],
    ///     Some(vec![vec![10, 32], vec![32, 10]]),
    /// )?;
    /// assert_eq!(t.distance(NodeId(1), NodeId(0)), 32);
    /// assert!(Topology::new(vec![], None).is_err());
    /// // Node 0 nearer to node 1 than to itself: refused.
    /// let inverted = Topology::new(
    ///     vec![NodeInfo::new(NodeId(0), vec![0], true), NodeInfo::new(NodeId(1), vec![1], true)],
    ///     Some(vec![vec![30, 10], vec![10, 30]]),
    /// );
    /// assert!(matches!(inverted, Err(ldnr_affinity::TopologyError::Distances(_))));
    /// # Ok::<(), ldnr_affinity::TopologyError>(())
    /// ```
    pub fn new(
        nodes: Vec<NodeInfo>,
        distances: Option<Vec<Vec<u32>>>,
    ) -> Result<Self, TopologyError> {
        if nodes.is_empty() {
            return Err(TopologyError::Invalid("no nodes".into()));
        }
        let n = nodes.len();
        let distances = match distances {
            Some(d) => {
                if d.len() != n || d.iter().any(|row| row.len() != n) {
                    return Err(TopologyError::Distances(format!(
                        "the distance matrix is not {n} x {n}"
                    )));
                }
                for (i, row) in d.iter().enumerate() {
                    if let Some(j) = (0..n).find(|&j| j != i && row[j] <= row[i]) {
                        return Err(TopologyError::Distances(format!(
                            "{} is not nearest to itself: distance {} to itself, {} to {}",
                            nodes[i].id, row[i], row[j], nodes[j].id
                        )));
                    }
                }
                d
            }
            None => default_distances(n),
        };
        // Sort nodes and the matrix together.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| nodes[i].id);
        if order.windows(2).any(|w| nodes[w[0]].id == nodes[w[1]].id) {
            return Err(TopologyError::Invalid("a node id appears twice".into()));
        }
        let sorted_distances = order
            .iter()
            .map(|&i| order.iter().map(|&j| distances[i][j]).collect())
            .collect();
        let mut slots: Vec<Option<NodeInfo>> = nodes.into_iter().map(Some).collect();
        let nodes = order
            .iter()
            .map(|&i| slots[i].take().expect("each index once"))
            .collect();
        Ok(Self {
            nodes,
            distances: sorted_distances,
        })
    }

    /// `nodes` pretend nodes numbered `0..nodes` (at least one), with memory and no
    /// CPUs listed (so every node runs threads, see [`Topology::thread_nodes`]), 10/20
    /// distances. For simulations.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr_affinity::Topology::uniform(0).nodes().len(), 1);
    /// ```
    pub fn uniform(nodes: usize) -> Self {
        let nodes: Vec<NodeInfo> = (0..nodes.max(1))
            .map(|i| NodeInfo::new(NodeId(i), Vec::new(), true))
            .collect();
        let n = nodes.len();
        Self {
            nodes,
            distances: default_distances(n),
        }
    }

    /// One node, `NodeId(0)`, with the CPUs the calling thread may run on
    /// ([`allowed_cpus`](crate::allowed_cpus): its cpuset and affinity mask), or
    /// `0..available_parallelism` where the kernel cannot say. What
    /// [`Topology::detect`] falls back to.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = ldnr_affinity::Topology::single_node();
    /// assert_eq!(t.nodes().len(), 1);
    /// if let Ok(cpus) = ldnr_affinity::allowed_cpus() {
    ///     assert_eq!(t.nodes()[0].cpus, cpus);
    /// }
    /// ```
    pub fn single_node() -> Self {
        let cpus = crate::pin::allowed_cpus()
            .ok()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| {
                (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
            });
        Self {
            nodes: vec![NodeInfo::new(NodeId(0), cpus, true)],
            distances: default_distances(1),
        }
    }

    /// The part of this topology a process may use that may run on `cpus` and allocate
    /// from `mems` (`None`: no restriction): each node's CPUs cut to `cpus`; a node not in
    /// `mems` has no memory for it; a node left with neither is dropped, with its row and
    /// column of distances.
    ///
    /// # Errors
    ///
    /// [`TopologyError::Invalid`] if no node is left with memory, or no node with CPUs
    /// (the restriction does not fit this topology).
    ///
    /// # Examples
    ///
    /// A pod pinned to node 1's CPUs and memory (`cpuset.cpus=4-7`, `cpuset.mems=1`):
    ///
    /// ```
    /// use ldnr::NodeId;
    /// use ldnr_affinity::{NodeInfo, Topology};
    ///
    /// let t = Topology::new(
    ///     vec![
    ///         NodeInfo::new(NodeId(0), vec![0, 1, 2, 3], true),
    ///         NodeInfo::new(NodeId(1), vec![4, 5, 6, 7], true),
    ///     ],
    ///     None,
    /// )?;
    /// let pod = t.restrict(Some(&[4, 5, 6, 7]), Some(&[NodeId(1)]))?;
    /// assert_eq!(pod.replica_nodes(), [NodeId(1)]);
    /// assert!(pod.node(NodeId(0)).is_none());
    /// // Only node 1's CPUs, but memory from both: node 0 is memory-only for this process.
    /// let wide = t.restrict(Some(&[4, 5]), None)?;
    /// assert_eq!(wide.replica_nodes(), [NodeId(1)]);
    /// assert_eq!(wide.memory_only_nodes(), [NodeId(0)]);
    /// assert_eq!(wide.cpus_of(NodeId(1)), [4, 5]);
    /// # Ok::<(), ldnr_affinity::TopologyError>(())
    /// ```
    pub fn restrict(
        &self,
        cpus: Option<&[usize]>,
        mems: Option<&[NodeId]>,
    ) -> Result<Topology, TopologyError> {
        let keep: Vec<(usize, NodeInfo)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let node_cpus: Vec<usize> = match cpus {
                    Some(allowed) => n
                        .cpus
                        .iter()
                        .copied()
                        .filter(|c| allowed.contains(c))
                        .collect(),
                    None => n.cpus.clone(),
                };
                let memory = n.has_memory && mems.is_none_or(|m| m.contains(&n.id));
                (memory || !node_cpus.is_empty())
                    .then(|| (i, NodeInfo::new(n.id, node_cpus, memory)))
            })
            .collect();
        if !keep.iter().any(|(_, n)| n.has_memory) {
            return Err(TopologyError::Invalid(format!(
                "no node left with memory (allowed memory nodes {mems:?})"
            )));
        }
        if self.nodes.iter().any(|n| !n.cpus.is_empty())
            && !keep.iter().any(|(_, n)| !n.cpus.is_empty())
        {
            return Err(TopologyError::Invalid(format!(
                "no node left with CPUs (allowed CPUs {cpus:?})"
            )));
        }
        let distances = keep
            .iter()
            .map(|&(i, _)| keep.iter().map(|&(j, _)| self.distances[i][j]).collect())
            .collect();
        Ok(Topology {
            nodes: keep.into_iter().map(|(_, n)| n).collect(),
            distances,
        })
    }

    /// The nodes, ascending by id.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// assert_eq!(ldnr_affinity::Topology::uniform(2).nodes()[1].id, NodeId(1));
    /// ```
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node with this id, if there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// let t = ldnr_affinity::Topology::uniform(2);
    /// assert!(t.node(NodeId(1)).is_some());
    /// assert!(t.node(NodeId(2)).is_none());
    /// ```
    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.index(id).map(|i| &self.nodes[i])
    }

    /// The nodes that have memory, ascending (with or without CPUs).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// assert_eq!(ldnr_affinity::Topology::uniform(2).memory_nodes(), [NodeId(0), NodeId(1)]);
    /// ```
    pub fn memory_nodes(&self) -> Vec<NodeId> {
        self.ids(|n| n.has_memory)
    }

    /// The nodes threads can run on (those with CPUs), ascending. A topology that lists
    /// no CPU at all (a pretend one, such as [`Topology::uniform`]'s) runs threads on
    /// every node.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// use ldnr_affinity::{NodeInfo, Topology};
    /// let t = Topology::new(
    ///     vec![NodeInfo::new(NodeId(0), vec![0], true), NodeInfo::new(NodeId(1), vec![], true)],
    ///     None,
    /// )?;
    /// assert_eq!(t.thread_nodes(), [NodeId(0)]);
    /// assert_eq!(Topology::uniform(2).thread_nodes(), [NodeId(0), NodeId(1)]);
    /// # Ok::<(), ldnr_affinity::TopologyError>(())
    /// ```
    pub fn thread_nodes(&self) -> Vec<NodeId> {
        self.ids(|n| self.runs_threads(n))
    }

    /// The nodes replicas go on, ascending: with memory, and threads run there
    /// ([`Topology::thread_nodes`]). What the managers' `nodes()` return.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// use ldnr_affinity::{NodeInfo, Topology};
    /// let t = Topology::new(
    ///     vec![
    ///         NodeInfo::new(NodeId(0), vec![0, 1], true),  // ordinary
    ///         NodeInfo::new(NodeId(1), vec![2, 3], false), // CPU-only
    ///         NodeInfo::new(NodeId(2), vec![], true),      // memory-only (CXL)
    ///     ],
    ///     None,
    /// )?;
    /// assert_eq!(t.replica_nodes(), [NodeId(0)]);
    /// # Ok::<(), ldnr_affinity::TopologyError>(())
    /// ```
    pub fn replica_nodes(&self) -> Vec<NodeId> {
        self.ids(|n| n.has_memory && self.runs_threads(n))
    }

    /// The nodes with memory that no thread runs on (CXL or persistent memory, HBM in
    /// flat mode, or a node whose CPUs are all outside the process's cpuset), ascending.
    /// Not offered for replicas, nor as a thread's node.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// use ldnr_affinity::{NodeInfo, Topology};
    /// let t = Topology::new(
    ///     vec![NodeInfo::new(NodeId(0), vec![0], true), NodeInfo::new(NodeId(1), vec![], true)],
    ///     None,
    /// )?;
    /// assert_eq!(t.memory_only_nodes(), [NodeId(1)]);
    /// # Ok::<(), ldnr_affinity::TopologyError>(())
    /// ```
    pub fn memory_only_nodes(&self) -> Vec<NodeId> {
        self.ids(|n| n.has_memory && !self.runs_threads(n))
    }

    fn runs_threads(&self, n: &NodeInfo) -> bool {
        !n.cpus.is_empty() || self.nodes.iter().all(|n| n.cpus.is_empty())
    }

    fn ids(&self, keep: impl Fn(&NodeInfo) -> bool) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| keep(n))
            .map(|n| n.id)
            .collect()
    }

    /// The CPUs of a node (empty for an unknown or CPU-less node).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// let t = ldnr_affinity::Topology::single_node();
    /// assert!(t.cpus_of(NodeId(0)).contains(&0));
    /// assert!(t.cpus_of(NodeId(5)).is_empty());
    /// ```
    pub fn cpus_of(&self, node: NodeId) -> &[usize] {
        self.node(node).map_or(&[], |n| &n.cpus)
    }

    /// The node a CPU belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// assert_eq!(ldnr_affinity::Topology::single_node().node_of_cpu(0), Some(NodeId(0)));
    /// ```
    pub fn node_of_cpu(&self, cpu: usize) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|n| n.cpus.binary_search(&cpu).is_ok())
            .map(|n| n.id)
    }

    /// The distance from `a` to `b`; 10/20 if either node is unknown.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// let t = ldnr_affinity::Topology::uniform(2);
    /// assert_eq!(t.distance(NodeId(0), NodeId(1)), 20);
    /// assert_eq!(t.distance(NodeId(7), NodeId(7)), 10);
    /// ```
    pub fn distance(&self, a: NodeId, b: NodeId) -> u32 {
        match (self.index(a), self.index(b)) {
            (Some(i), Some(j)) => self.distances[i][j],
            _ if a == b => 10,
            _ => 20,
        }
    }

    /// The distance matrix, in the order of [`Topology::nodes`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr_affinity::Topology::uniform(2).distances(), [[10, 20], [20, 10]]);
    /// ```
    pub fn distances(&self) -> &[Vec<u32>] {
        &self.distances
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.nodes.binary_search_by_key(&id, |n| n.id).ok()
    }
}

fn default_distances(n: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| (0..n).map(|j| if i == j { 10 } else { 20 }).collect())
        .collect()
}

/// Why a [`Topology`] could not be built.
///
/// # Examples
///
/// ```
/// let e = ldnr_affinity::Topology::from_sysfs("/nonexistent").unwrap_err();
/// assert!(matches!(e, ldnr_affinity::TopologyError::Io { .. }));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TopologyError {
    /// A file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A file held something other than a node or CPU list.
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        text: String,
    },
    /// The parts do not describe a topology.
    Invalid(String),
    /// The distance table cannot be used: a row is missing, short or not numbers, or a
    /// node is not strictly nearest to itself.
    Distances(String),
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            TopologyError::Parse { path, text } => {
                write!(f, "malformed list {text:?} in {}", path.display())
            }
            TopologyError::Invalid(why) => write!(f, "invalid topology: {why}"),
            TopologyError::Distances(why) => write!(f, "invalid NUMA distances: {why}"),
        }
    }
}

impl std::error::Error for TopologyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TopologyError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sorts_nodes_with_their_distances() {
        let t = Topology::new(
            vec![
                NodeInfo::new(NodeId(2), vec![4], true),
                NodeInfo::new(NodeId(0), vec![0], true),
            ],
            Some(vec![vec![10, 30], vec![31, 10]]),
        )
        .unwrap();
        assert_eq!(t.nodes()[0].id, NodeId(0));
        assert_eq!(t.distance(NodeId(0), NodeId(2)), 31);
        assert_eq!(t.distance(NodeId(2), NodeId(0)), 30);
        assert_eq!(t.distances(), [[10, 31], [30, 10]]);
    }

    #[test]
    fn new_rejects_bad_parts() {
        let n = |i| NodeInfo::new(NodeId(i), vec![], true);
        assert!(matches!(
            Topology::new(vec![n(0), n(0)], None),
            Err(TopologyError::Invalid(_))
        ));
        for bad in [
            vec![vec![10]],
            vec![vec![10, 20]],
            vec![vec![10, 20], vec![20]],
            // Not nearest to itself: equal, and farther.
            vec![vec![10, 10], vec![20, 10]],
            vec![vec![10, 20], vec![9, 10]],
        ] {
            let dims = bad.len();
            let nodes = (0..dims.max(2)).map(n).collect();
            match Topology::new(nodes, Some(bad.clone())) {
                Err(TopologyError::Distances(why)) => assert!(!why.is_empty()),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let e = Topology::new(vec![n(3), n(5)], Some(vec![vec![30, 10], vec![10, 30]]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("node 3 is not nearest to itself"), "{e}");
        // Asymmetric tables are fine (SLIT allows them).
        assert!(Topology::new(vec![n(0), n(1)], Some(vec![vec![10, 20], vec![30, 10]])).is_ok());
    }

    fn four() -> Topology {
        Topology::new(
            (0..4)
                .map(|i| NodeInfo::new(NodeId(i), vec![2 * i, 2 * i + 1], true))
                .collect(),
            Some(vec![
                vec![10, 12, 20, 20],
                vec![12, 10, 20, 20],
                vec![20, 20, 10, 12],
                vec![20, 20, 12, 10],
            ]),
        )
        .unwrap()
    }

    #[test]
    fn restrict_cuts_cpus_and_memory_and_keeps_distances() {
        let t = four();
        // A cpuset of node 2's CPUs and nodes 2-3's memory.
        let r = t
            .restrict(Some(&[4, 5]), Some(&[NodeId(2), NodeId(3)]))
            .unwrap();
        assert_eq!(r.replica_nodes(), [NodeId(2)]);
        assert_eq!(r.memory_only_nodes(), [NodeId(3)]);
        assert_eq!(r.thread_nodes(), [NodeId(2)]);
        assert!(r.node(NodeId(0)).is_none());
        assert_eq!(r.distance(NodeId(2), NodeId(3)), 12);
        assert_eq!(r.distances(), [[10, 12], [12, 10]]);
        // A taskset of one CPU: the node keeps that CPU only.
        let r = t.restrict(Some(&[3]), None).unwrap();
        assert_eq!(r.cpus_of(NodeId(1)), [3]);
        assert_eq!(r.replica_nodes(), [NodeId(1)]);
        assert_eq!(r.memory_only_nodes(), [NodeId(0), NodeId(2), NodeId(3)]);
        // CPUs allowed on a node whose memory is not: a CPU-only node for the process.
        let r = t.restrict(None, Some(&[NodeId(0)])).unwrap();
        assert_eq!(r.replica_nodes(), [NodeId(0)]);
        assert_eq!(r.thread_nodes(), (0..4).map(NodeId).collect::<Vec<_>>());
        // Nothing left.
        assert!(t.restrict(None, Some(&[NodeId(7)])).is_err());
        assert!(t.restrict(Some(&[99]), None).is_err());
        assert_eq!(t.restrict(None, None).unwrap(), t);
    }
}
