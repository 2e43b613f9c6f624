//! Pretend nodes for the core's tests: an affinity manager of a few nodes on which each
//! thread is where it says it is ([`on`]), and memory steering only counts.
//!
//! Lighter than `ldnr_affinity::SimulatedAffinity` (no topology, no round-robin
//! assignment): a thread that never called [`on`] is on node 0.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use ldnr::{AffinityError, AffinityManager, NodeId, SavedPolicy};

thread_local! {
    /// The node the calling thread pretends to run on.
    static NODE: Cell<usize> = const { Cell::new(0) };
}

/// The calling thread now runs on `node` (for every [`Pretend`] manager).
///
/// # Examples
///
/// ```
/// use ldnr::{AffinityManager, NodeId};
/// use ldnr_testkit::pretend::{on, Pretend};
///
/// let m = Pretend::new(4);
/// on(2);
/// assert_eq!(m.current_node(), NodeId(2));
/// ```
pub fn on(node: usize) {
    NODE.with(|n| n.set(node));
}

/// An affinity manager of `nodes` pretend nodes (uniform distances); it counts the
/// memory policies asked for per node (one per clone of a replica made for that node,
/// and one per batch when several nodes exist).
#[derive(Debug)]
pub struct Pretend {
    nodes: usize,
    /// Memory policies set per node.
    pub policies_on: Vec<AtomicUsize>,
    /// A node whose memory policy the manager refuses (`usize::MAX`: none).
    pub refuse: AtomicUsize,
    /// A node whose memory policy makes the manager panic (`usize::MAX`: none).
    pub panic_on: AtomicUsize,
}

impl Pretend {
    /// A manager of `nodes` nodes, `NodeId(0)` to `NodeId(nodes - 1)`.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            policies_on: (0..nodes).map(|_| AtomicUsize::new(0)).collect(),
            refuse: AtomicUsize::new(usize::MAX),
            panic_on: AtomicUsize::new(usize::MAX),
        }
    }

    /// Memory policies set so far, on every node.
    pub fn policies(&self) -> usize {
        self.policies_on.iter().map(|c| c.load(SeqCst)).sum()
    }
}

impl AffinityManager for Pretend {
    fn current_node(&self) -> NodeId {
        NodeId(NODE.with(Cell::get))
    }
    fn nodes(&self) -> Vec<NodeId> {
        (0..self.nodes).map(NodeId).collect()
    }
    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if self.panic_on.load(SeqCst) == node.0 {
            panic!("pretend: the memory policy of node {} panics", node.0);
        }
        if self.refuse.load(SeqCst) == node.0 {
            return Err(AffinityError::Os(12));
        }
        match self.policies_on.get(node.0) {
            Some(c) => {
                c.fetch_add(1, SeqCst);
                Ok(SavedPolicy::UNCHANGED)
            }
            None => Err(AffinityError::UnknownNode(node)),
        }
    }
    fn restore_memory_policy(&self, _saved: SavedPolicy) -> Result<(), AffinityError> {
        Ok(())
    }
}
