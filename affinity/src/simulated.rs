//! [`SimulatedAffinity`]: pretend nodes, for exercising multi-node matching anywhere.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ldnr::{AffinityError, AffinityManager, NodeId, SavedPolicy};

use crate::policy::MemoryPolicy;
use crate::saved;
use crate::topology::Topology;

/// Hands each manager a number, so that per-thread node choices of different managers
/// stay apart.
static NEXT_MANAGER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// (manager number, node index) for each manager this thread has a node with.
    static ASSIGNED: RefCell<Vec<(u64, usize)>> = const { RefCell::new(Vec::new()) };
}

/// An affinity manager with pretend nodes on any machine.
///
/// Which node a thread is on is whatever the thread last declared with
/// [`SimulatedAffinity::enter`]; a thread that never declared one gets the next node
/// round-robin the first time it is asked about (so `n` threads registering one after
/// another spread evenly over `n` nodes). Memory policies are no-ops: all pretend nodes
/// allocate from the same memory.
///
/// As with a real machine, a memory-only node of the topology
/// ([`Topology::memory_only_nodes`]) is never a thread's node (not handed out
/// round-robin, refused by `enter`) and not in [`nodes`](AffinityManager::nodes); a
/// CPU-only node can be a thread's node but holds no replica.
///
/// Tests and the benchmark driver use it to run the dispatcher, the replica set and the
/// log exactly as on a NUMA machine. Distances are 10/20, or those of a [`Topology`]
/// (for example a copy of a real machine's, or an hwloc synthetic one).
///
/// The node choice is per thread *and per manager*: two managers do not see each
/// other's choices. A thread keeps one small entry per manager it was asked about.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use ldnr::{AffinityManager, NodeId, NodeReplicated};
/// use ldnr_affinity::SimulatedAffinity;
///
/// // A register: reads return the number, writes replace it and return the old one.
/// #[derive(Clone, Default)]
/// struct Register(u64);
///
/// impl ldnr::Dispatch for Register {
///     type ReadOperation = ();
///     type WriteOperation = u64;
///     type Response = u64;
///     fn dispatch(&self, _: ()) -> u64 { self.0 }
///     fn dispatch_mut(&mut self, v: u64) -> u64 { std::mem::replace(&mut self.0, v) }
/// }
///
/// let sim = Arc::new(SimulatedAffinity::new(4));
/// let nr = NodeReplicated::builder(Register::default())
///     .replicas(&sim.nodes())
///     .affinity(sim.clone())
///     .build()?;
/// std::thread::scope(|s| {
///     for node in 0..4 {
///         let (sim, nr) = (&sim, &nr);
///         s.spawn(move || {
///             sim.enter(NodeId(node)).unwrap();
///             let tkn = nr.register().unwrap();
///             let replica = nr.replica_of(tkn).unwrap();
///             let info = nr.replicas().into_iter().find(|r| r.id == replica).unwrap();
///             assert_eq!(info.node, NodeId(node));
///         });
///     }
/// });
/// # Ok::<(), ldnr::Error>(())
/// ```
#[derive(Debug)]
pub struct SimulatedAffinity {
    id: u64,
    topology: Topology,
    /// Where threads may be: the topology's thread nodes, ascending.
    thread_nodes: Vec<NodeId>,
    /// Where replicas go: the topology's replica nodes.
    replica_nodes: Vec<NodeId>,
    /// The index in `thread_nodes` the next unassigned thread gets (modulo its length).
    next: AtomicUsize,
    /// Set the threads' allocation node for `NodeAlloc` around replica work.
    node_alloc: bool,
}

impl SimulatedAffinity {
    /// `nodes` pretend nodes (at least one), `NodeId(0)..NodeId(nodes)`, 10/20 apart.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{AffinityManager, NodeId};
    /// let sim = ldnr_affinity::SimulatedAffinity::new(2);
    /// assert_eq!(sim.nodes(), [NodeId(0), NodeId(1)]);
    /// assert_eq!(sim.distance(NodeId(0), NodeId(1)), 20);
    /// ```
    pub fn new(nodes: usize) -> Self {
        Self::from_topology(Topology::uniform(nodes))
    }

    /// Pretend nodes shaped like `topology`: replicas on its
    /// [`replica_nodes`](Topology::replica_nodes), threads on its
    /// [`thread_nodes`](Topology::thread_nodes), its distances.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{AffinityManager, NodeId};
    /// use ldnr_affinity::{NodeInfo, SimulatedAffinity, Topology};
    ///
    /// let t = Topology::new(
    ///     (0..3).map(|i| NodeInfo::new(NodeId(i), vec![i], true)).collect(),
    ///     Some(vec![vec![10, 12, 30], vec![12, 10, 30], vec![30, 30, 10]]),
    /// )?;
    /// let sim = SimulatedAffinity::from_topology(t);
    /// assert_eq!(sim.distance(NodeId(0), NodeId(1)), 12);
    /// # Ok::<(), ldnr_affinity::TopologyError>(())
    /// ```
    pub fn from_topology(topology: Topology) -> Self {
        Self {
            id: NEXT_MANAGER.fetch_add(1, Ordering::Relaxed),
            thread_nodes: topology.thread_nodes(),
            replica_nodes: topology.replica_nodes(),
            topology,
            next: AtomicUsize::new(0),
            node_alloc: false,
        }
    }

    /// Steers [`NodeAlloc`](crate::NodeAlloc) to the pretend nodes: around replica work
    /// (`set_memory_node` … `restore_memory_policy`) the thread's allocation node is the
    /// replica's node, as with [`LinuxAffinity`](crate::LinuxAffinity) on a real
    /// multi-node machine. With `NodeAlloc` as the global allocator, each pretend node's
    /// replicas then allocate from that node's arena (on this machine's memory), so its
    /// costs and its bookkeeping can be tested and measured on one node.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{AffinityGuard, NodeId};
    /// let sim = ldnr_affinity::SimulatedAffinity::new(2).with_node_alloc();
    /// {
    ///     let _g = AffinityGuard::new(&sim, NodeId(1))?;
    ///     assert_eq!(ldnr_affinity::alloc_node(), Some(NodeId(1)));
    /// }
    /// assert_eq!(ldnr_affinity::alloc_node(), None);
    /// # Ok::<(), ldnr::AffinityError>(())
    /// ```
    pub fn with_node_alloc(mut self) -> Self {
        self.node_alloc = true;
        self
    }

    /// The topology the nodes are shaped like.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr_affinity::SimulatedAffinity::new(3).topology().nodes().len(), 3);
    /// ```
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Declares that the calling thread is on `node` from now on (for this manager).
    ///
    /// # Errors
    ///
    /// [`AffinityError::UnknownNode`] if the manager has no such node;
    /// [`AffinityError::NoUsableCpus`] for a memory-only node (no thread runs there).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{AffinityManager, NodeId};
    /// let sim = ldnr_affinity::SimulatedAffinity::new(3);
    /// sim.enter(NodeId(2)).unwrap();
    /// assert_eq!(sim.current_node(), NodeId(2));
    /// assert!(sim.enter(NodeId(3)).is_err());
    /// ```
    pub fn enter(&self, node: NodeId) -> Result<(), AffinityError> {
        self.topology
            .node(node)
            .ok_or(AffinityError::UnknownNode(node))?;
        let index = self
            .thread_nodes
            .binary_search(&node)
            .map_err(|_| AffinityError::NoUsableCpus(node))?;
        ASSIGNED.with(|a| {
            let mut a = a.borrow_mut();
            match a.iter_mut().find(|(m, _)| *m == self.id) {
                Some(entry) => entry.1 = index,
                None => a.push((self.id, index)),
            }
        });
        Ok(())
    }

    /// The node the calling thread has with this manager, without assigning one.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{AffinityManager, NodeId};
    /// let sim = ldnr_affinity::SimulatedAffinity::new(2);
    /// assert_eq!(sim.assigned_node(), None);
    /// let first = sim.current_node(); // assigns round-robin
    /// assert_eq!(sim.assigned_node(), Some(first));
    /// ```
    pub fn assigned_node(&self) -> Option<NodeId> {
        ASSIGNED
            .try_with(|a| {
                a.borrow()
                    .iter()
                    .find(|(m, _)| *m == self.id)
                    .map(|&(_, i)| self.thread_nodes[i])
            })
            .ok()
            .flatten()
    }
}

impl AffinityManager for SimulatedAffinity {
    fn current_node(&self) -> NodeId {
        if let Some(node) = self.assigned_node() {
            return node;
        }
        let n = self.thread_nodes.len();
        let index = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let node = self.thread_nodes[index];
        // During thread teardown the thread-local may be gone; the answer then simply
        // is not remembered.
        let _ = ASSIGNED.try_with(|a| a.borrow_mut().push((self.id, index)));
        node
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.replica_nodes.clone()
    }

    fn distance(&self, a: NodeId, b: NodeId) -> u32 {
        self.topology.distance(a, b)
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if !self.topology.node(node).is_some_and(|n| n.has_memory) {
            return Err(AffinityError::UnknownNode(node));
        }
        if !self.node_alloc {
            return Ok(SavedPolicy::UNCHANGED);
        }
        // The saved-policy stack keeps the allocation node for guards dropped in any
        // order; the (pretend) memory policy itself never changes.
        let none = MemoryPolicy::default_policy();
        let saved = saved::push(none.clone(), none)?;
        crate::node_alloc::set_alloc_node(Some(node));
        Ok(saved)
    }

    fn restore_memory_policy(&self, saved: SavedPolicy) -> Result<(), AffinityError> {
        if saved.is_unchanged() {
            return Ok(());
        }
        // Without `with_node_alloc`, `set_memory_node` only ever returns `UNCHANGED`, so
        // the stack finds nothing (`StalePolicy`), as before.
        saved::pop(saved, |_| Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_at_first_use_then_sticky() {
        let sim = SimulatedAffinity::new(3);
        let got: Vec<NodeId> = (0..6)
            .map(|_| {
                std::thread::scope(|s| {
                    s.spawn(|| {
                        let first = sim.current_node();
                        assert_eq!(sim.current_node(), first, "sticky");
                        first
                    })
                    .join()
                    .unwrap()
                })
            })
            .collect();
        let expect: Vec<NodeId> = [0, 1, 2, 0, 1, 2].into_iter().map(NodeId).collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn managers_keep_their_choices_apart() {
        let a = SimulatedAffinity::new(4);
        let b = SimulatedAffinity::new(4);
        a.enter(NodeId(3)).unwrap();
        b.enter(NodeId(1)).unwrap();
        assert_eq!(a.current_node(), NodeId(3));
        assert_eq!(b.current_node(), NodeId(1));
        a.enter(NodeId(2)).unwrap();
        assert_eq!(a.current_node(), NodeId(2));
        assert_eq!(b.current_node(), NodeId(1));
    }

    #[test]
    fn memory_only_nodes_are_never_a_threads_node() {
        use crate::topology::NodeInfo;
        // Node 1 is memory-only (CXL), node 2 CPU-only.
        let t = Topology::new(
            vec![
                NodeInfo::new(NodeId(0), vec![0], true),
                NodeInfo::new(NodeId(1), vec![], true),
                NodeInfo::new(NodeId(2), vec![1], false),
            ],
            None,
        )
        .unwrap();
        let sim = SimulatedAffinity::from_topology(t);
        assert_eq!(sim.nodes(), [NodeId(0)]);
        let handed: Vec<NodeId> = (0..6)
            .map(|_| std::thread::scope(|s| s.spawn(|| sim.current_node()).join().unwrap()))
            .collect();
        let want: Vec<NodeId> = [0, 2, 0, 2, 0, 2].into_iter().map(NodeId).collect();
        assert_eq!(handed, want);
        assert_eq!(
            sim.enter(NodeId(1)),
            Err(AffinityError::NoUsableCpus(NodeId(1)))
        );
        assert_eq!(
            sim.enter(NodeId(3)),
            Err(AffinityError::UnknownNode(NodeId(3)))
        );
        sim.enter(NodeId(2)).unwrap();
        assert_eq!(sim.current_node(), NodeId(2));
        assert_eq!(sim.set_memory_node(NodeId(1)), Ok(SavedPolicy::UNCHANGED));
        assert!(sim.set_memory_node(NodeId(2)).is_err());
    }

    #[test]
    fn memory_policy_is_a_no_op_for_known_nodes() {
        let sim = SimulatedAffinity::new(2);
        assert_eq!(sim.set_memory_node(NodeId(1)), Ok(SavedPolicy::UNCHANGED));
        assert_eq!(
            sim.set_memory_node(NodeId(2)),
            Err(AffinityError::UnknownNode(NodeId(2)))
        );
    }
}
