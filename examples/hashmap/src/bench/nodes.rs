//! Pretend NUMA nodes, and where each worker thread runs.
//!
//! The thesis' machine has four nodes; this one may have one. [`SimulatedNodes`] is an
//! [`AffinityManager`] that reports as many nodes as asked and says a thread is on
//! whichever node the thread itself declared with [`SimulatedNodes::enter`] before it
//! registered. Memory placement is a no-op: every "node" allocates from the same memory.
//! So the experiments exercise the dispatcher, the replica set and the log exactly as on
//! a NUMA machine, without the locality that real nodes would add.
//!
//! [`Placement`] spreads worker threads over the pretend nodes round-robin (thread `t`
//! on node `t % nodes`) and pins each to a CPU of its node (best effort): the machine's
//! CPUs are split into one contiguous block per node, and threads beyond the CPU count
//! wrap around (oversubscription).

use std::cell::Cell;

use ldnr::{AffinityError, AffinityManager, NodeId, SavedPolicy};

thread_local! {
    static NODE: Cell<usize> = const { Cell::new(0) };
}

/// An [`AffinityManager`] that pretends the machine has `nodes` nodes.
///
/// # Examples
///
/// ```
/// use ldnr::{AffinityManager, NodeId};
/// use ldnr_hashmap::bench::nodes::SimulatedNodes;
///
/// let m = SimulatedNodes::new(3);
/// assert_eq!(m.nodes(), vec![NodeId(0), NodeId(1), NodeId(2)]);
/// std::thread::spawn(move || {
///     SimulatedNodes::enter(NodeId(2));
///     assert_eq!(m.current_node(), NodeId(2));
/// })
/// .join()
/// .unwrap();
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SimulatedNodes {
    nodes: usize,
}

impl SimulatedNodes {
    /// A manager with `nodes` nodes (at least one).
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes: nodes.max(1),
        }
    }

    /// Declares that the calling thread runs on `node` from now on (a thread starts on
    /// node 0).
    pub fn enter(node: NodeId) {
        NODE.with(|n| n.set(node.0));
    }
}

impl AffinityManager for SimulatedNodes {
    fn current_node(&self) -> NodeId {
        NodeId(NODE.with(Cell::get) % self.nodes)
    }

    fn nodes(&self) -> Vec<NodeId> {
        (0..self.nodes).map(NodeId).collect()
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if node.0 < self.nodes {
            Ok(SavedPolicy::UNCHANGED)
        } else {
            Err(AffinityError::UnknownNode(node))
        }
    }

    fn restore_memory_policy(&self, _saved: SavedPolicy) {}
}

/// The number of NUMA nodes the operating system reports (1 where it reports none).
///
/// # Examples
///
/// ```
/// assert!(ldnr_hashmap::bench::nodes::real_nodes() >= 1);
/// ```
pub fn real_nodes() -> usize {
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/node") else {
        return 1;
    };
    let n = dir
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix("node")
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    n.max(1)
}

/// The number of CPUs this process may run on.
///
/// # Examples
///
/// ```
/// assert!(ldnr_hashmap::bench::nodes::cores() >= 1);
/// ```
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Which pretend node and which CPU each worker thread gets.
///
/// # Examples
///
/// ```
/// use ldnr::NodeId;
/// use ldnr_hashmap::bench::nodes::Placement;
///
/// let p = Placement::new(2, false);
/// assert_eq!(p.node_of(0), NodeId(0));
/// assert_eq!(p.node_of(3), NodeId(1));
/// assert_eq!(p.active_nodes(1), vec![NodeId(0)]);
/// assert_eq!(p.active_nodes(5), vec![NodeId(0), NodeId(1)]);
/// ```
#[derive(Debug, Clone)]
pub struct Placement {
    nodes: usize,
    /// Per pretend node, the CPUs its threads are pinned to (empty: no pinning).
    cpus: Vec<Vec<usize>>,
}

impl Placement {
    /// `nodes` pretend nodes over the CPUs this process may use; `pin` turns pinning on.
    pub fn new(nodes: usize, pin: bool) -> Self {
        let nodes = nodes.max(1);
        let all: Vec<usize> = if pin {
            core_affinity::get_core_ids()
                .map(|ids| ids.into_iter().map(|c| c.id).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let cpus = (0..nodes)
            .map(|k| {
                if all.is_empty() {
                    Vec::new()
                } else if all.len() >= nodes {
                    // Contiguous blocks, the remainder going to the first nodes.
                    let (base, extra) = (all.len() / nodes, all.len() % nodes);
                    let start = k * base + k.min(extra);
                    let len = base + usize::from(k < extra);
                    all[start..start + len].to_vec()
                } else {
                    vec![all[k % all.len()]]
                }
            })
            .collect();
        Self { nodes, cpus }
    }

    /// The number of pretend nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The node of worker `t`.
    pub fn node_of(&self, t: usize) -> NodeId {
        NodeId(t % self.nodes)
    }

    /// The CPU worker `t` is pinned to, if pinning is on.
    pub fn cpu_of(&self, t: usize) -> Option<usize> {
        let block = &self.cpus[t % self.nodes];
        (!block.is_empty()).then(|| block[(t / self.nodes) % block.len()])
    }

    /// The nodes that have at least one of `threads` workers, ascending.
    pub fn active_nodes(&self, threads: usize) -> Vec<NodeId> {
        (0..threads.min(self.nodes)).map(NodeId).collect()
    }

    /// Called on worker `t`'s thread: pins it (best effort) and declares its node.
    pub fn enter(&self, t: usize) {
        if let Some(cpu) = self.cpu_of(t) {
            // Best effort: a refused pin leaves the thread where the scheduler puts it.
            let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
        }
        SimulatedNodes::enter(self.node_of(t));
    }
}
