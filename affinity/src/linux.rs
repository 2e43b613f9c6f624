//! [`LinuxAffinity`]: the machine's own topology and memory policies, through sysfs and
//! raw system calls (no system libraries).

use ldnr::{AffinityError, AffinityManager, NodeId, SavedPolicy};

use crate::pin;
use crate::placement;
use crate::policy::{MemoryPolicy, PolicyMode};
use crate::sys;
use crate::topology::Topology;

/// How [`LinuxAffinity::set_memory_node`](AffinityManager::set_memory_node) steers
/// memory to a node.
///
/// # Examples
///
/// ```
/// use ldnr_affinity::{Binding, LinuxAffinity};
/// let strict = LinuxAffinity::new().binding(Binding::Bind);
/// assert_eq!(strict.binding_mode(), Binding::Bind);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Binding {
    /// `MPOL_PREFERRED`: pages come from the node while it has free memory, then from
    /// the nearest other node. A full node costs locality, never an out-of-memory kill.
    #[default]
    Preferred,
    /// `MPOL_BIND`: pages come only from the node; when it is full the kernel reclaims
    /// (and may invoke the OOM killer) rather than place a page elsewhere.
    Bind,
}

impl Binding {
    fn mode(self) -> PolicyMode {
        match self {
            Binding::Preferred => PolicyMode::Preferred,
            Binding::Bind => PolicyMode::Bind,
        }
    }
}

/// The affinity manager for Linux: nodes, CPUs and distances from
/// `/sys/devices/system/node`, the calling thread's node from `getcpu`, replica memory
/// placed with `set_mempolicy`.
///
/// - [`current_node`](AffinityManager::current_node): the node of the CPU the thread runs
///   on now (`getcpu`). A thread that is not pinned may move; pin threads (see
///   [`LinuxAffinity::pin_to_node`]) for a stable match.
/// - [`set_memory_node`](AffinityManager::set_memory_node): saves the thread's policy
///   (mode, flags and mask, exactly) and sets [`Binding::Preferred`] (or
///   [`Binding::Bind`]) for the node; if the thread's policy is that already it changes
///   nothing and returns [`SavedPolicy::UNCHANGED`]. Three system calls at most, once per
///   batch a combiner applies.
/// - [`restore_memory_policy`](AffinityManager::restore_memory_policy): puts the saved
///   policy back exactly.
///
/// If the kernel refuses a policy while a replica is made (in `build` or `add_replica`),
/// the call returns [`Error::Affinity`](ldnr::Error::Affinity) with the kernel's
/// [`AffinityError::Os`] and changes nothing; around a batch of log entries a refused
/// policy fails no operation, and that batch's memory comes from the thread's own policy.
///
/// [`LinuxAffinity::new`] also fixes glibc's mmap threshold
/// ([`placement::fresh_pages_for_large_allocations`]): a policy only places pages that
/// are touched for the first time, and that makes every large allocation (a hash table's
/// array, a vector's buffer) fresh pages. See the [crate docs](crate#placement) for what
/// is and is not guaranteed.
///
/// Where the kernel or a container offers no NUMA (no `/sys/devices/system/node`, or
/// `get_mempolicy` fails with `ENOSYS`/`EPERM`), the manager runs as one node, `NodeId(0)`,
/// and memory policies are no-ops; [`LinuxAffinity::degraded`] says why. It never fails.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use ldnr::{AffinityManager, NodeReplicated};
/// use ldnr_affinity::LinuxAffinity;
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
/// let linux = Arc::new(LinuxAffinity::new());
/// let nodes = linux.nodes(); // [NodeId(0)] on a one-node machine
/// let nr = NodeReplicated::builder(Register::default())
///     .replicas(&nodes) // one replica per node
///     .affinity(linux.clone())
///     .build()?;
/// assert_eq!(nr.replicas().len(), nodes.len());
/// # Ok::<(), ldnr::Error>(())
/// ```
#[derive(Debug)]
pub struct LinuxAffinity {
    topology: Topology,
    /// The nodes replicas may be put on (those with memory).
    memory_nodes: Vec<NodeId>,
    binding: Binding,
    /// Whether to call `set_mempolicy` at all: false with one memory node (nothing to
    /// choose) and where memory policies are unavailable.
    steer: bool,
    degraded: Option<String>,
}

impl Default for LinuxAffinity {
    fn default() -> Self {
        Self::new()
    }
}

impl LinuxAffinity {
    /// This machine's manager: reads the topology (one node where there is none to
    /// read), probes for memory policies, and fixes glibc's mmap threshold so large
    /// allocations get fresh pages ([`placement::fresh_pages_for_large_allocations`]
    /// with [`placement::DEFAULT_FRESH_PAGES_THRESHOLD`]). Never fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::AffinityManager;
    /// let linux = ldnr_affinity::LinuxAffinity::new();
    /// assert!(linux.nodes().contains(&linux.current_node()) || linux.nodes().len() > 1);
    /// ```
    pub fn new() -> Self {
        placement::fresh_pages_for_large_allocations(placement::DEFAULT_FRESH_PAGES_THRESHOLD);
        let (topology, why) = Topology::detect_or_reason();
        let mut me = Self::with_topology(topology);
        if let Some(why) = why {
            me.degraded = Some(why);
        }
        me
    }

    /// A manager for a given topology (for example one parsed from a copy of sysfs, or
    /// the machine's own with some nodes left out). Leaves malloc's settings alone.
    ///
    /// Memory policies are still the real kernel's: asking for a node the kernel does
    /// not have fails with [`AffinityError::Os`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{AffinityManager, NodeId};
    /// use ldnr_affinity::{LinuxAffinity, Topology};
    ///
    /// let linux = LinuxAffinity::with_topology(Topology::single_node());
    /// assert_eq!(linux.nodes(), [NodeId(0)]);
    /// ```
    pub fn with_topology(topology: Topology) -> Self {
        let memory_nodes = topology.memory_nodes();
        let mut degraded = None;
        let mut steer = memory_nodes.len() > 1;
        if let Err(e) = MemoryPolicy::current() {
            degraded = Some(format!("memory policies are not available ({e})"));
            steer = false;
        }
        Self {
            topology,
            memory_nodes,
            binding: Binding::default(),
            steer,
            degraded,
        }
    }

    /// Chooses how memory is steered to a node (default [`Binding::Preferred`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_affinity::{Binding, LinuxAffinity};
    /// assert_eq!(LinuxAffinity::new().binding_mode(), Binding::Preferred);
    /// ```
    pub fn binding(mut self, binding: Binding) -> Self {
        self.binding = binding;
        self
    }

    /// How memory is steered to a node.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_affinity::{Binding, LinuxAffinity};
    /// assert_eq!(LinuxAffinity::new().binding(Binding::Bind).binding_mode(), Binding::Bind);
    /// ```
    pub fn binding_mode(&self) -> Binding {
        self.binding
    }

    /// The topology the manager works with.
    ///
    /// # Examples
    ///
    /// ```
    /// let linux = ldnr_affinity::LinuxAffinity::new();
    /// assert!(!linux.topology().nodes().is_empty());
    /// ```
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Why the manager runs with less than the full NUMA support (one node, or memory
    /// policies as no-ops); `None` when it has all of it.
    ///
    /// # Examples
    ///
    /// ```
    /// if let Some(why) = ldnr_affinity::LinuxAffinity::new().degraded() {
    ///     eprintln!("NUMA support limited: {why}");
    /// }
    /// ```
    pub fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
    }

    /// Whether [`set_memory_node`](AffinityManager::set_memory_node) changes policies
    /// (more than one memory node, and the kernel has memory policies).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::AffinityManager;
    /// let linux = ldnr_affinity::LinuxAffinity::new();
    /// if linux.nodes().len() == 1 {
    ///     assert!(!linux.steers_memory());
    /// }
    /// ```
    pub fn steers_memory(&self) -> bool {
        self.steer
    }

    /// Pins the calling thread to the CPUs of `node`.
    ///
    /// # Errors
    ///
    /// [`AffinityError::UnknownNode`] if the node is unknown or has no CPUs;
    /// [`AffinityError::Os`] if the kernel refuses (for example, CPUs outside the
    /// process's cpuset).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{AffinityManager, NodeId};
    /// let linux = ldnr_affinity::LinuxAffinity::new();
    /// let node = linux.nodes()[0];
    /// std::thread::spawn(move || {
    ///     if linux.pin_to_node(node).is_ok() {
    ///         assert_eq!(linux.current_node(), node);
    ///     }
    /// }).join().unwrap();
    /// ```
    pub fn pin_to_node(&self, node: NodeId) -> Result<(), AffinityError> {
        let cpus = self.topology.cpus_of(node);
        if cpus.is_empty() {
            return Err(AffinityError::UnknownNode(node));
        }
        pin::pin_to_cpus(cpus)
    }
}

impl AffinityManager for LinuxAffinity {
    fn current_node(&self) -> NodeId {
        let first = self.topology.nodes()[0].id;
        if self.topology.nodes().len() == 1 {
            return first;
        }
        match sys::getcpu() {
            Ok((cpu, node)) => {
                if self.topology.node(NodeId(node)).is_some() {
                    NodeId(node)
                } else {
                    // A topology other than the kernel's: go by the CPU.
                    self.topology.node_of_cpu(cpu).unwrap_or(first)
                }
            }
            Err(_) => first,
        }
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.memory_nodes.clone()
    }

    fn distance(&self, a: NodeId, b: NodeId) -> u32 {
        self.topology.distance(a, b)
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if !self.memory_nodes.contains(&node) {
            return Err(AffinityError::UnknownNode(node));
        }
        if !self.steer {
            return Ok(SavedPolicy::UNCHANGED);
        }
        let mode = self.binding.mode();
        let previous = MemoryPolicy::current()?;
        if previous.is_single(mode, node) {
            return Ok(SavedPolicy::UNCHANGED);
        }
        MemoryPolicy::new(mode, 0, &[node]).apply()?;
        Ok(previous.save())
    }

    fn restore_memory_policy(&self, saved: SavedPolicy) {
        if let Some(previous) = MemoryPolicy::restore_from(saved) {
            // The trait offers no way to report a failure here, and there is nothing
            // better to fall back to: the saved policy was the thread's own a moment ago,
            // so the kernel accepted it then.
            let _ = previous.apply();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::NodeInfo;

    /// The host's policies are per thread: each test changes only its own thread's.
    fn policies_available() -> bool {
        MemoryPolicy::current().is_ok()
    }

    #[test]
    fn restores_the_default_policy_exactly() {
        if !policies_available() {
            return;
        }
        let linux = LinuxAffinity::new();
        // Force steering on this (likely one-node) host: node 0 exists everywhere.
        let linux = LinuxAffinity {
            steer: true,
            ..linux
        };
        let node = linux.nodes()[0];
        let before = MemoryPolicy::current().unwrap();
        let saved = linux.set_memory_node(node).unwrap();
        let during = MemoryPolicy::current().unwrap();
        assert!(during.is_single(PolicyMode::Preferred, node), "{during:?}");
        linux.restore_memory_policy(saved);
        assert_eq!(MemoryPolicy::current().unwrap(), before);
    }

    #[test]
    fn restores_bind_and_preferred_policies_exactly() {
        if !policies_available() {
            return;
        }
        let base = LinuxAffinity::new();
        let node = base.nodes()[0];
        for (binding, start) in [
            (
                Binding::Preferred,
                MemoryPolicy::new(PolicyMode::Bind, 0, &[node]),
            ),
            (
                Binding::Bind,
                MemoryPolicy::new(PolicyMode::Preferred, 0, &[node]),
            ),
            (Binding::Bind, MemoryPolicy::new(PolicyMode::Local, 0, &[])),
            (
                Binding::Preferred,
                MemoryPolicy::new(PolicyMode::Interleave, 0, &[node]),
            ),
        ] {
            let linux = LinuxAffinity {
                steer: true,
                ..LinuxAffinity::with_topology(base.topology().clone())
            }
            .binding(binding);
            if start.apply().is_err() {
                continue; // e.g. a cpuset that excludes the node
            }
            let before = MemoryPolicy::current().unwrap();
            let saved = linux.set_memory_node(node).unwrap();
            assert!(!saved.is_unchanged());
            assert!(MemoryPolicy::current()
                .unwrap()
                .is_single(binding.mode(), node));
            linux.restore_memory_policy(saved);
            assert_eq!(MemoryPolicy::current().unwrap(), before, "{binding:?}");
        }
        MemoryPolicy::default_policy().apply().unwrap();
    }

    #[test]
    fn no_change_when_already_on_the_node() {
        if !policies_available() {
            return;
        }
        let linux = LinuxAffinity {
            steer: true,
            ..LinuxAffinity::new()
        };
        let node = linux.nodes()[0];
        MemoryPolicy::new(PolicyMode::Preferred, 0, &[node])
            .apply()
            .unwrap();
        assert_eq!(linux.set_memory_node(node), Ok(SavedPolicy::UNCHANGED));
        linux.restore_memory_policy(SavedPolicy::UNCHANGED);
        assert!(MemoryPolicy::current()
            .unwrap()
            .is_single(PolicyMode::Preferred, node));
        MemoryPolicy::default_policy().apply().unwrap();
    }

    #[test]
    fn one_node_changes_nothing() {
        let linux = LinuxAffinity::with_topology(Topology::single_node());
        assert!(!linux.steers_memory());
        assert_eq!(linux.set_memory_node(NodeId(0)), Ok(SavedPolicy::UNCHANGED));
        assert_eq!(
            linux.set_memory_node(NodeId(1)),
            Err(AffinityError::UnknownNode(NodeId(1)))
        );
        assert_eq!(linux.current_node(), NodeId(0));
    }

    #[test]
    fn nodes_the_kernel_lacks_fail_with_an_os_error() {
        if !policies_available() || Topology::detect().nodes().len() > 8 {
            return;
        }
        // A pretend topology with a node number no host here has.
        let t = Topology::new(
            vec![
                NodeInfo::new(NodeId(0), vec![0], true),
                NodeInfo::new(NodeId(9), vec![], true),
            ],
            None,
        )
        .unwrap();
        let linux = LinuxAffinity::with_topology(t);
        let before = MemoryPolicy::current().unwrap();
        assert!(matches!(
            linux.set_memory_node(NodeId(9)),
            Err(AffinityError::Os(_))
        ));
        assert_eq!(MemoryPolicy::current().unwrap(), before);
    }

    #[test]
    fn memoryless_nodes_hold_no_replicas_but_have_distances() {
        let t = Topology::new(
            vec![
                NodeInfo::new(NodeId(0), vec![0], true),
                NodeInfo::new(NodeId(1), vec![1], false),
            ],
            Some(vec![vec![10, 15], vec![15, 10]]),
        )
        .unwrap();
        let linux = LinuxAffinity::with_topology(t);
        assert_eq!(linux.nodes(), [NodeId(0)]);
        assert_eq!(linux.distance(NodeId(1), NodeId(0)), 15);
        assert_eq!(
            linux.set_memory_node(NodeId(1)),
            Err(AffinityError::UnknownNode(NodeId(1)))
        );
    }
}
