//! [`HwlocAffinity`]: topology and memory binding through hwloc (feature `hwloc`).

use std::fmt;

use hwlocality::bitmap::SpecializedBitmap;
use hwlocality::cpu::binding::CpuBindingFlags;
use hwlocality::errors::HybridError;
use hwlocality::memory::binding::{MemoryBindingError, MemoryBindingFlags, MemoryBindingPolicy};
use hwlocality::memory::nodeset::NodeSet;
use hwlocality::object::types::ObjectType;
use ldnr::{AffinityError, AffinityManager, NodeId, SavedPolicy};

use crate::linux::Binding;
use crate::policy::MemoryPolicy;
use crate::saved;
use crate::sys::{EINVAL, ENOSYS};
use crate::topology::{NodeInfo, Topology};

/// hwloc could not build a topology.
///
/// # Examples
///
/// ```
/// let e = ldnr_affinity::HwlocAffinity::from_synthetic("not a topology").unwrap_err();
/// assert!(e.to_string().contains("hwloc"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwlocError(String);

impl fmt::Display for HwlocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hwloc: {}", self.0)
    }
}

impl std::error::Error for HwlocError {}

/// An affinity manager backed by hwloc: the real machine's topology (nodes, CPUs,
/// distances) and thread memory binding, or a *synthetic* topology for testing
/// matching decisions on a small machine.
///
/// - Real topology ([`HwlocAffinity::new`]): what this process may use (hwloc leaves out
///   what the cpuset disallows; each node's CPUs are also cut to the affinity mask of the
///   thread that made the manager); the thread's node from
///   `hwloc_get_last_cpu_location`; memory steered with `hwloc_set_membind` on the
///   calling thread (a single node, non-strict by default, which hwloc maps to
///   `MPOL_PREFERRED`, or `MPOL_PREFERRED_MANY` on Linux 5.15+; [`Binding::Bind`] adds
///   `STRICT`: `MPOL_BIND`).
/// - Synthetic topology ([`HwlocAffinity::from_synthetic`]): nodes, CPUs and distances
///   as described; the calling thread's node is the node of the CPU it runs on as
///   numbered in the description; memory binding does nothing (hwloc cannot bind
///   through a synthetic topology).
///
/// A node's CPUs are the processing units whose nearest node it is (the first of the
/// unit's node set), so a memory-only node (CXL, persistent memory, HBM), whose hwloc
/// locality is a package's CPUs, has none: as with [`LinuxAffinity`](crate::LinuxAffinity)
/// it is not in [`nodes`](AffinityManager::nodes) and never a thread's node.
///
/// Restoring is exact: the previous policy is read from the kernel
/// (`get_mempolicy`, mode, flags and mask) and put back with `set_mempolicy`, through the
/// same per-thread stack as [`LinuxAffinity`](crate::LinuxAffinity), so guards dropped
/// out of order restore exactly too. (hwloc's own `hwloc_get_membind` is coarser: Linux's
/// `MPOL_PREFERRED` and `MPOL_BIND` both read as `BIND`.) Where the kernel's policy
/// cannot be read, [`set_memory_node`](AffinityManager::set_memory_node) fails rather
/// than change a policy it could not restore. Like `LinuxAffinity`, this manager leaves
/// malloc's settings alone.
///
/// # Examples
///
/// ```
/// use ldnr::{AffinityManager, NodeId};
/// use ldnr_affinity::HwlocAffinity;
///
/// // Four packages of one node and 24 cores each.
/// let hw = HwlocAffinity::from_synthetic("pack:4 numa:1 core:24 pu:1")?;
/// assert_eq!(hw.nodes(), [NodeId(0), NodeId(1), NodeId(2), NodeId(3)]);
/// assert_eq!(hw.topology().cpus_of(NodeId(2)), (48..72).collect::<Vec<_>>());
/// assert_eq!(hw.node_of_cpu(95), Some(NodeId(3)));
///
/// // The machine this runs on.
/// let real = HwlocAffinity::new()?;
/// assert!(!real.nodes().is_empty());
/// # Ok::<(), ldnr_affinity::HwlocError>(())
/// ```
pub struct HwlocAffinity {
    hwloc: hwlocality::Topology,
    topology: Topology,
    /// The replica nodes (with memory and CPUs).
    nodes: Vec<NodeId>,
    /// Nodes with memory and no CPU: steered to on request, never a replica's by default.
    memory_only: Vec<NodeId>,
    synthetic: bool,
    /// Whether binding changes anything: a real topology with more than one memory node.
    steer: bool,
    binding: Binding,
}

impl fmt::Debug for HwlocAffinity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HwlocAffinity")
            .field("topology", &self.topology)
            .field("synthetic", &self.synthetic)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl HwlocAffinity {
    /// The machine's own topology, as hwloc discovers it.
    ///
    /// # Errors
    ///
    /// [`HwlocError`] if hwloc cannot discover it.
    ///
    /// # Examples
    ///
    /// ```
    /// let hw = ldnr_affinity::HwlocAffinity::new()?;
    /// assert!(!hw.is_synthetic());
    /// # Ok::<(), ldnr_affinity::HwlocError>(())
    /// ```
    pub fn new() -> Result<Self, HwlocError> {
        let hwloc = hwlocality::Topology::new().map_err(|e| HwlocError(e.to_string()))?;
        Self::from_hwloc(hwloc, false)
    }

    /// A topology from an hwloc synthetic description, such as
    /// `"pack:4 numa:1 core:24 pu:1"` (see hwloc's documentation of synthetic
    /// topologies; distances can be given with `hwloc_distances`-style attributes).
    ///
    /// # Errors
    ///
    /// [`HwlocError`] if the description is not valid.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{AffinityManager, NodeId};
    /// let hw = ldnr_affinity::HwlocAffinity::from_synthetic("numa:2 core:2 pu:2")?;
    /// assert_eq!(hw.nodes().len(), 2);
    /// assert_eq!(hw.topology().cpus_of(NodeId(1)), [4, 5, 6, 7]);
    /// assert_eq!(hw.distance(NodeId(0), NodeId(1)), 20);
    /// # Ok::<(), ldnr_affinity::HwlocError>(())
    /// ```
    pub fn from_synthetic(description: &str) -> Result<Self, HwlocError> {
        let hwloc = hwlocality::Topology::builder()
            .from_synthetic(description)
            .map_err(|e| HwlocError(e.to_string()))?
            .build()
            .map_err(|e| HwlocError(e.to_string()))?;
        Self::from_hwloc(hwloc, true)
    }

    fn from_hwloc(hwloc: hwlocality::Topology, synthetic: bool) -> Result<Self, HwlocError> {
        // The CPUs the creating thread may run on (real machines only: a synthetic
        // topology numbers its own CPUs).
        let allowed = (!synthetic)
            .then(|| crate::pin::allowed_cpus().ok())
            .flatten();
        let mut nodes = Vec::new();
        for obj in hwloc.objects_with_type(ObjectType::NUMANode) {
            let Some(id) = obj.os_index() else { continue };
            nodes.push(NodeInfo::new(NodeId(id), Vec::new(), true));
        }
        // Each processing unit belongs to its nearest node: the first of its node set.
        for pu in hwloc.objects_with_type(ObjectType::PU) {
            let (Some(cpu), Some(first)) =
                (pu.os_index(), pu.nodeset().and_then(|set| set.first_set()))
            else {
                continue;
            };
            if allowed
                .as_ref()
                .is_some_and(|a| a.binary_search(&cpu).is_err())
            {
                continue;
            }
            if let Some(node) = nodes.iter_mut().find(|n| n.id.0 == usize::from(first)) {
                node.cpus.push(cpu);
            }
        }
        let nodes: Vec<NodeInfo> = nodes
            .into_iter()
            .map(|n| NodeInfo::new(n.id, n.cpus, n.has_memory))
            .collect();
        let distances = node_distances(&hwloc, &nodes);
        let topology = if nodes.is_empty() {
            Topology::single_node()
        } else {
            Topology::new(nodes, distances).map_err(|e| HwlocError(e.to_string()))?
        };
        let memory_only = topology.memory_only_nodes();
        let nodes = topology.replica_nodes();
        Ok(Self {
            steer: !synthetic && nodes.len() + memory_only.len() > 1,
            nodes,
            memory_only,
            hwloc,
            topology,
            synthetic,
            binding: Binding::default(),
        })
    }

    /// Chooses how memory is steered to a node (default [`Binding::Preferred`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_affinity::{Binding, HwlocAffinity};
    /// let hw = HwlocAffinity::new()?.binding(Binding::Bind);
    /// # Ok::<(), ldnr_affinity::HwlocError>(())
    /// ```
    pub fn binding(mut self, binding: Binding) -> Self {
        self.binding = binding;
        self
    }

    /// The nodes with memory and no CPU of this process (see
    /// [`LinuxAffinity::memory_only_nodes`](crate::LinuxAffinity::memory_only_nodes)).
    ///
    /// # Examples
    ///
    /// ```
    /// let hw = ldnr_affinity::HwlocAffinity::from_synthetic("numa:2 pu:1")?;
    /// assert!(hw.memory_only_nodes().is_empty());
    /// # Ok::<(), ldnr_affinity::HwlocError>(())
    /// ```
    pub fn memory_only_nodes(&self) -> Vec<NodeId> {
        self.memory_only.clone()
    }

    /// The topology in this crate's terms.
    ///
    /// # Examples
    ///
    /// ```
    /// let hw = ldnr_affinity::HwlocAffinity::from_synthetic("numa:3 pu:1")?;
    /// assert_eq!(hw.topology().nodes().len(), 3);
    /// # Ok::<(), ldnr_affinity::HwlocError>(())
    /// ```
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The hwloc topology, for anything this manager does not offer.
    ///
    /// # Examples
    ///
    /// ```
    /// let hw = ldnr_affinity::HwlocAffinity::from_synthetic("numa:2 pu:1")?;
    /// assert!(!hw.hwloc().is_this_system());
    /// # Ok::<(), ldnr_affinity::HwlocError>(())
    /// ```
    pub fn hwloc(&self) -> &hwlocality::Topology {
        &self.hwloc
    }

    /// Whether the topology is synthetic (memory binding then does nothing).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(ldnr_affinity::HwlocAffinity::from_synthetic("numa:2 pu:1")?.is_synthetic());
    /// # Ok::<(), ldnr_affinity::HwlocError>(())
    /// ```
    pub fn is_synthetic(&self) -> bool {
        self.synthetic
    }

    /// The node of a CPU (by operating-system number), as hwloc sees it: the first node
    /// of the CPU's processing unit.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// let hw = ldnr_affinity::HwlocAffinity::from_synthetic("pack:2 numa:2 core:2 pu:1")?;
    /// assert_eq!(hw.node_of_cpu(5), Some(NodeId(2)));
    /// assert_eq!(hw.node_of_cpu(8), None);
    /// # Ok::<(), ldnr_affinity::HwlocError>(())
    /// ```
    pub fn node_of_cpu(&self, cpu: usize) -> Option<NodeId> {
        let pu = self.hwloc.pu_with_os_index(cpu)?;
        let first = pu.nodeset()?.first_set()?;
        Some(NodeId(usize::from(first)))
    }

    fn node_set(node: NodeId) -> NodeSet {
        let mut set = NodeSet::new();
        set.set(node.0);
        set
    }
}

impl AffinityManager for HwlocAffinity {
    fn current_node(&self) -> NodeId {
        let first = self.topology.nodes()[0].id;
        let cpu = if self.synthetic {
            crate::pin::current_cpu()
        } else {
            self.hwloc
                .last_cpu_location(CpuBindingFlags::THREAD)
                .ok()
                .and_then(|set| set.first_set())
                .map(usize::from)
        };
        cpu.and_then(|c| self.node_of_cpu(c)).unwrap_or(first)
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.nodes.clone()
    }

    fn distance(&self, a: NodeId, b: NodeId) -> u32 {
        self.topology.distance(a, b)
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if !self.nodes.contains(&node) && !self.memory_only.contains(&node) {
            return Err(AffinityError::UnknownNode(node));
        }
        if !self.steer {
            return Ok(SavedPolicy::UNCHANGED);
        }
        let strict = self.binding == Binding::Bind;
        // What hwloc's binding is on Linux, to recognise a thread already there.
        let mine = MemoryPolicy::new(self.binding.mode(), 0, &[node]);
        let below = MemoryPolicy::current()?;
        let change = below != mine;
        let saved = saved::push(below, mine)?;
        if change {
            let mut flags = MemoryBindingFlags::THREAD;
            if strict {
                flags |= MemoryBindingFlags::STRICT;
            }
            if let Err(e) =
                self.hwloc
                    .bind_memory(&Self::node_set(node), MemoryBindingPolicy::Bind, flags)
            {
                saved::discard(saved);
                return Err(os_error(e));
            }
        }
        Ok(saved)
    }

    fn restore_memory_policy(&self, saved: SavedPolicy) -> Result<(), AffinityError> {
        if saved.is_unchanged() {
            return Ok(());
        }
        saved::pop(saved, |below| {
            below.apply().inspect_err(|_| {
                // Never leave the thread on the replica's node (see LinuxAffinity).
                let _ = MemoryPolicy::default_policy().apply();
            })
        })
    }
}

/// The NUMA-node distance matrix hwloc knows, in the order of `nodes`, if it covers
/// them all.
fn node_distances(hwloc: &hwlocality::Topology, nodes: &[NodeInfo]) -> Option<Vec<Vec<u32>>> {
    let matrices = hwloc.distances_with_type(None, ObjectType::NUMANode).ok()?;
    let matrix = matrices.first()?;
    let ids: Vec<Option<usize>> = matrix
        .objects()
        .map(|o| o.and_then(|o| o.os_index()))
        .collect();
    let index = |node: NodeId| ids.iter().position(|&id| id == Some(node.0));
    let n = matrix.num_objects();
    let values = matrix.distances();
    nodes
        .iter()
        .map(|a| {
            let i = index(a.id)?;
            nodes
                .iter()
                .map(|b| {
                    let j = index(b.id)?;
                    u32::try_from(values[i * n + j]).ok()
                })
                .collect()
        })
        .collect()
}

/// hwloc's error as the operating system error number LD-NR's errors carry.
fn os_error<S: SpecializedBitmap>(e: HybridError<MemoryBindingError<S>>) -> AffinityError {
    match e {
        HybridError::Hwloc(raw) => AffinityError::Os(raw.errno.map_or(EINVAL, |e| e.0)),
        HybridError::Rust(MemoryBindingError::Unsupported) => AffinityError::Os(ENOSYS),
        HybridError::Rust(_) => AffinityError::Os(EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyMode;

    /// A policy such as `numactl --membind=0` comes back as exactly that, not as the
    /// preferred node hwloc would read it as.
    #[test]
    fn previous_policies_come_back_exactly() {
        let hw = HwlocAffinity {
            steer: true,
            ..HwlocAffinity::new().unwrap()
        };
        let node = hw.nodes()[0];
        if MemoryPolicy::current().is_err() {
            return; // no memory policies here
        }
        for start in [
            MemoryPolicy::new(PolicyMode::Bind, 0, &[node]),
            MemoryPolicy::new(PolicyMode::Interleave, 0, &[node]),
            MemoryPolicy::new(PolicyMode::Local, 0, &[]),
            MemoryPolicy::default_policy(),
        ] {
            start.apply().unwrap();
            let saved = hw.set_memory_node(node).unwrap();
            let during = MemoryPolicy::current().unwrap();
            // hwloc prefers the node (MPOL_PREFERRED_MANY where the kernel has it), and
            // binds to every node of the machine as the default policy.
            let whole_machine = hw.topology().nodes().len() == 1;
            assert!(
                (matches!(
                    during.mode(),
                    PolicyMode::Preferred | PolicyMode::PreferredMany
                ) && during.nodes() == [node])
                    || (whole_machine && during == MemoryPolicy::default_policy()),
                "{during:?}"
            );
            hw.restore_memory_policy(saved).unwrap();
            assert_eq!(MemoryPolicy::current().unwrap(), start);
        }
        MemoryPolicy::default_policy().apply().unwrap();
    }
}
