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
//! [`Topology::detect`] parses the real one and degrades to a single node where there is
//! none (non-Linux systems, kernels without NUMA, containers that hide it).
//! Offline nodes are ignored: only the nodes listed in `online` count.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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
/// farther. Where none are known, 10 and 20 are used.
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
    /// [`TopologyError::Invalid`] if there are no nodes, a node id appears twice, or the
    /// matrix is not `nodes.len()` square.
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
                    return Err(TopologyError::Invalid(format!(
                        "the distance matrix is not {n} x {n}"
                    )));
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
    /// CPUs, 10/20 distances. For simulations.
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

    /// One node, `NodeId(0)`, with the CPUs this process may use (`0..available_parallelism`).
    /// What [`Topology::detect`] falls back to.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = ldnr_affinity::Topology::single_node();
    /// assert_eq!(t.nodes().len(), 1);
    /// assert!(!t.nodes()[0].cpus.is_empty());
    /// ```
    pub fn single_node() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            nodes: vec![NodeInfo::new(NodeId(0), (0..cpus).collect(), true)],
            distances: default_distances(1),
        }
    }

    /// This machine's topology from [`SYSFS_NODE_DIR`], or [`Topology::single_node`]
    /// where it cannot be read (see [`Topology::detect_or_reason`] for why).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!ldnr_affinity::Topology::detect().nodes().is_empty());
    /// ```
    pub fn detect() -> Self {
        Self::detect_or_reason().0
    }

    /// Like [`Topology::detect`], and also says why it fell back to one node (`None` if
    /// it did not).
    ///
    /// # Examples
    ///
    /// ```
    /// let (t, why) = ldnr_affinity::Topology::detect_or_reason();
    /// if let Some(why) = why {
    ///     assert_eq!(t.nodes().len(), 1, "fell back: {why}");
    /// }
    /// ```
    pub fn detect_or_reason() -> (Self, Option<String>) {
        if !cfg!(target_os = "linux") {
            return (
                Self::single_node(),
                Some("not Linux: NUMA topology not available".into()),
            );
        }
        match Self::from_sysfs(SYSFS_NODE_DIR) {
            Ok(t) => (t, None),
            Err(e) => (Self::single_node(), Some(e.to_string())),
        }
    }

    /// Parses a directory laid out like [`SYSFS_NODE_DIR`] (see the module docs).
    ///
    /// Only nodes listed in `online` count. `has_memory` is optional (all online nodes
    /// have memory when it is missing). A missing `nodeN/cpulist` means no CPUs; a
    /// missing or malformed `nodeN/distance` row makes the whole matrix the default
    /// 10/20, because a partial matrix would mislead matching more than none.
    ///
    /// # Errors
    ///
    /// [`TopologyError::Io`] if `online` cannot be read, [`TopologyError::Parse`] for a
    /// malformed node or CPU list, [`TopologyError::Invalid`] if no node is online.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::fs;
    /// use ldnr::NodeId;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let d = dir.path();
    /// fs::write(d.join("online"), "0-1\n")?;
    /// for (n, cpus, dist) in [(0, "0-3,8-11", "10 21"), (1, "4-7,12-15", "21 10")] {
    ///     fs::create_dir(d.join(format!("node{n}")))?;
    ///     fs::write(d.join(format!("node{n}/cpulist")), cpus)?;
    ///     fs::write(d.join(format!("node{n}/distance")), dist)?;
    /// }
    /// let t = ldnr_affinity::Topology::from_sysfs(d)?;
    /// assert_eq!(t.cpus_of(NodeId(1)), [4, 5, 6, 7, 12, 13, 14, 15]);
    /// assert_eq!(t.distance(NodeId(0), NodeId(1)), 21);
    /// assert_eq!(t.node_of_cpu(9), Some(NodeId(0)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_sysfs(dir: impl AsRef<Path>) -> Result<Self, TopologyError> {
        let dir = dir.as_ref();
        let online = parse_list(&read(&dir.join("online"))?, &dir.join("online"))?;
        if online.is_empty() {
            return Err(TopologyError::Invalid(format!(
                "no online node in {}",
                dir.display()
            )));
        }
        let with_memory = match fs::read_to_string(dir.join("has_memory")) {
            Ok(text) => Some(parse_list(&text, &dir.join("has_memory"))?),
            Err(_) => None,
        };
        let mut nodes = Vec::with_capacity(online.len());
        let mut rows = Vec::with_capacity(online.len());
        for &n in &online {
            let node_dir = dir.join(format!("node{n}"));
            if !node_dir.is_dir() {
                return Err(TopologyError::Invalid(format!(
                    "node {n} is online but {} is missing",
                    node_dir.display()
                )));
            }
            let cpulist = node_dir.join("cpulist");
            let cpus = match fs::read_to_string(&cpulist) {
                Ok(text) => parse_list(&text, &cpulist)?,
                Err(_) => Vec::new(),
            };
            let has_memory = with_memory.as_ref().is_none_or(|m| m.contains(&n));
            nodes.push(NodeInfo::new(NodeId(n), cpus, has_memory));
            // The kernel writes one distance per online node, in the order of `online`.
            rows.push(
                fs::read_to_string(node_dir.join("distance"))
                    .ok()
                    .and_then(|text| parse_distances(&text, online.len())),
            );
        }
        let distances = rows.into_iter().collect::<Option<Vec<_>>>();
        Self::new(nodes, distances)
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

    /// The nodes that have memory, ascending: where replicas can be placed.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// assert_eq!(ldnr_affinity::Topology::uniform(2).memory_nodes(), [NodeId(0), NodeId(1)]);
    /// ```
    pub fn memory_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.has_memory)
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

fn read(path: &Path) -> Result<String, TopologyError> {
    fs::read_to_string(path).map_err(|source| TopologyError::Io {
        path: path.to_owned(),
        source,
    })
}

fn parse_list(text: &str, path: &Path) -> Result<Vec<usize>, TopologyError> {
    parse_cpulist(text).map_err(|_| TopologyError::Parse {
        path: path.to_owned(),
        text: text.trim().to_owned(),
    })
}

fn parse_distances(text: &str, expected: usize) -> Option<Vec<u32>> {
    let row: Vec<u32> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    (row.len() == expected).then_some(row)
}

/// Parses a Linux CPU or node list such as `"0-3,8-11"`, `"5"`, `"0-7:2"` or `""`.
///
/// Ranges are inclusive; `a-b:s` takes every `s`-th number of `a-b` (the kernel's
/// stride syntax, also `a-b:used/group`). Whitespace around the list is ignored. The
/// result is ascending and free of duplicates.
///
/// # Errors
///
/// [`ListParseError`] for anything else (a reversed range, a stray character, an
/// unreasonable size).
///
/// # Examples
///
/// ```
/// use ldnr_affinity::parse_cpulist;
/// assert_eq!(parse_cpulist("0-3,8-11\n")?, [0, 1, 2, 3, 8, 9, 10, 11]);
/// assert_eq!(parse_cpulist("")?, Vec::<usize>::new());
/// assert_eq!(parse_cpulist("0-9:4")?, [0, 4, 8]);
/// assert_eq!(parse_cpulist("0-7:2/4")?, [0, 1, 4, 5]);
/// assert!(parse_cpulist("3-1").is_err());
/// # Ok::<(), ldnr_affinity::ListParseError>(())
/// ```
pub fn parse_cpulist(text: &str) -> Result<Vec<usize>, ListParseError> {
    /// A list bigger than this is a corrupt file, not a machine.
    const MAX_ITEMS: usize = 1 << 20;
    let err = || ListParseError {
        text: text.trim().to_owned(),
    };
    let num = |s: &str| s.trim().parse::<usize>().map_err(|_| err());
    let mut out = Vec::new();
    let text = text.trim();
    if text.is_empty() {
        return Ok(out);
    }
    for part in text.split(',') {
        let (range, stride) = match part.split_once(':') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let v = num(range)?;
                (v, v)
            }
        };
        if lo > hi {
            return Err(err());
        }
        // `used/group`: take the first `used` of every `group` numbers (a plain stride
        // `s` is `1/s`).
        let (used, group) = match stride {
            None => (1, 1),
            Some(s) => match s.split_once('/') {
                Some((u, g)) => (num(u)?, num(g)?),
                None => (1, num(s)?),
            },
        };
        if used == 0 || group == 0 || used > group {
            return Err(err());
        }
        if out.len() + (hi - lo) / group * used > MAX_ITEMS {
            return Err(err());
        }
        out.extend((lo..=hi).filter(|v| (v - lo) % group < used));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A CPU or node list that [`parse_cpulist`] could not read.
///
/// # Examples
///
/// ```
/// let e = ldnr_affinity::parse_cpulist("0-x").unwrap_err();
/// assert_eq!(e.to_string(), "malformed CPU/node list \"0-x\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParseError {
    text: String,
}

impl fmt::Display for ListParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed CPU/node list {:?}", self.text)
    }
}

impl std::error::Error for ListParseError {}

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
    fn cpulists() {
        assert_eq!(parse_cpulist("0").unwrap(), [0]);
        assert_eq!(parse_cpulist(" 0-1 \n").unwrap(), [0, 1]);
        assert_eq!(
            parse_cpulist("0-3,8-11").unwrap(),
            [0, 1, 2, 3, 8, 9, 10, 11]
        );
        assert_eq!(
            parse_cpulist("8-11,0-3,2").unwrap(),
            [0, 1, 2, 3, 8, 9, 10, 11]
        );
        assert_eq!(parse_cpulist("1,3,5").unwrap(), [1, 3, 5]);
        assert_eq!(parse_cpulist("0-10:5").unwrap(), [0, 5, 10]);
        assert_eq!(parse_cpulist("\n").unwrap(), Vec::<usize>::new());
        for bad in [
            "-",
            "1-",
            "a",
            "3-1",
            "0-3:0",
            "0-3:3/2",
            "0,,1",
            "0-1-2",
            "0-4294967296000",
        ] {
            assert!(parse_cpulist(bad).is_err(), "{bad:?} parsed");
        }
    }

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
        assert!(Topology::new(vec![n(0), n(0)], None).is_err());
        assert!(Topology::new(vec![n(0), n(1)], Some(vec![vec![10]])).is_err());
        assert!(Topology::new(vec![n(0)], Some(vec![vec![10, 20]])).is_err());
    }
}
