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
use crate::policy::{MemoryPolicy, PolicyMode};
use crate::topology::{NodeInfo, Topology};

/// Stands for hwloc's `NEXTTOUCH` policy in a saved word (no Linux mode has this number).
const NEXT_TOUCH: i32 = 0x4e54;
const EINVAL: i32 = 22;
const ENOSYS: i32 = 38;

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
/// - Real topology ([`HwlocAffinity::new`]): the thread's node from
///   `hwloc_get_last_cpu_location`; memory steered with `hwloc_set_membind` on the
///   calling thread (a single node, non-strict by default, which hwloc maps to
///   `MPOL_PREFERRED` on Linux; [`Binding::Bind`] adds `STRICT`: `MPOL_BIND`).
/// - Synthetic topology ([`HwlocAffinity::from_synthetic`]): nodes, CPUs and distances
///   as described; the calling thread's node is the node of the CPU it runs on as
///   numbered in the description; memory binding does nothing (hwloc cannot bind
///   through a synthetic topology).
///
/// Restoring: the previous binding is what hwloc reports (`hwloc_get_membind`), which
/// is coarser than the kernel's policy — Linux's `MPOL_PREFERRED` and `MPOL_BIND` both
/// read as hwloc's `BIND`, `MPOL_DEFAULT` and `MPOL_LOCAL` as `FIRSTTOUCH`. A thread
/// left at the default policy gets the default back; for an exact restore of any policy
/// use [`LinuxAffinity`](crate::LinuxAffinity). Like it, this manager does not fix
/// malloc's mmap threshold; call
/// [`placement::fresh_pages_for_large_allocations`](crate::placement::fresh_pages_for_large_allocations)
/// yourself.
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
    memory_nodes: Vec<NodeId>,
    synthetic: bool,
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
        let mut nodes = Vec::new();
        for obj in hwloc.objects_with_type(ObjectType::NUMANode) {
            let Some(id) = obj.os_index() else { continue };
            let cpus = obj
                .cpuset()
                .map(|set| set.iter_set().map(usize::from).collect())
                .unwrap_or_default();
            nodes.push(NodeInfo::new(NodeId(id), cpus, true));
        }
        let distances = node_distances(&hwloc, &nodes);
        let topology = if nodes.is_empty() {
            Topology::single_node()
        } else {
            Topology::new(nodes, distances).map_err(|e| HwlocError(e.to_string()))?
        };
        Ok(Self {
            memory_nodes: topology.memory_nodes(),
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

    /// The calling thread's binding, as a policy in this crate's terms.
    fn current_binding(&self) -> Result<MemoryPolicy, AffinityError> {
        let (set, policy) = self
            .hwloc
            .memory_binding::<NodeSet>(MemoryBindingFlags::THREAD)
            .map_err(os_error)?;
        let nodes: Vec<NodeId> = set.iter_set().map(|i| NodeId(usize::from(i))).collect();
        let all = nodes.len() >= self.memory_nodes.len()
            && self.memory_nodes.iter().all(|n| nodes.contains(n));
        let policy = match policy {
            Some(MemoryBindingPolicy::FirstTouch) if all => {
                MemoryPolicy::new(PolicyMode::Default, 0, &[])
            }
            Some(MemoryBindingPolicy::FirstTouch) => {
                MemoryPolicy::new(PolicyMode::Local, 0, &nodes)
            }
            Some(MemoryBindingPolicy::Bind) => MemoryPolicy::new(PolicyMode::Bind, 0, &nodes),
            Some(MemoryBindingPolicy::Interleave) => {
                MemoryPolicy::new(PolicyMode::Interleave, 0, &nodes)
            }
            Some(MemoryBindingPolicy::NextTouch) => {
                MemoryPolicy::new(PolicyMode::Other(NEXT_TOUCH), 0, &nodes)
            }
            _ => return Err(AffinityError::Os(EINVAL)),
        };
        Ok(policy)
    }

    fn rebind(&self, policy: &MemoryPolicy) -> Result<(), AffinityError> {
        let mut set = NodeSet::new();
        for n in policy.nodes() {
            set.set(n.0);
        }
        let bind = |p| {
            self.hwloc
                .bind_memory(&set, p, MemoryBindingFlags::THREAD)
                .map_err(os_error)
        };
        match policy.mode() {
            PolicyMode::Default => self
                .hwloc
                .unbind_memory(MemoryBindingFlags::THREAD)
                .map_err(os_error),
            PolicyMode::Local => bind(MemoryBindingPolicy::FirstTouch),
            PolicyMode::Bind => bind(MemoryBindingPolicy::Bind),
            PolicyMode::Interleave => bind(MemoryBindingPolicy::Interleave),
            PolicyMode::Other(NEXT_TOUCH) => bind(MemoryBindingPolicy::NextTouch),
            _ => Err(AffinityError::Os(EINVAL)),
        }
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
        self.memory_nodes.clone()
    }

    fn distance(&self, a: NodeId, b: NodeId) -> u32 {
        self.topology.distance(a, b)
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if !self.memory_nodes.contains(&node) {
            return Err(AffinityError::UnknownNode(node));
        }
        if self.synthetic || self.memory_nodes.len() == 1 {
            return Ok(SavedPolicy::UNCHANGED);
        }
        let previous = self.current_binding()?;
        if previous.is_single(PolicyMode::Bind, node) {
            return Ok(SavedPolicy::UNCHANGED);
        }
        let mut flags = MemoryBindingFlags::THREAD;
        if self.binding == Binding::Bind {
            flags |= MemoryBindingFlags::STRICT;
        }
        self.hwloc
            .bind_memory(&Self::node_set(node), MemoryBindingPolicy::Bind, flags)
            .map_err(os_error)?;
        Ok(previous.save())
    }

    fn restore_memory_policy(&self, saved: SavedPolicy) {
        if let Some(previous) = MemoryPolicy::restore_from(saved) {
            // Nothing to report to and nothing better to fall back to (see LinuxAffinity).
            let _ = self.rebind(&previous);
        }
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

    #[test]
    fn bindings_read_back_and_restore_through_saved_words() {
        let hw = HwlocAffinity::new().unwrap();
        let node = hw.nodes()[0];
        let (Ok(before), Ok(kernel_before)) = (hw.current_binding(), MemoryPolicy::current())
        else {
            return; // no memory binding here
        };
        for policy in [
            MemoryPolicy::new(PolicyMode::Bind, 0, &[node]),
            MemoryPolicy::new(PolicyMode::Interleave, 0, &[node]),
        ] {
            hw.restore_memory_policy(policy.clone().save());
            assert_eq!(hw.current_binding().unwrap(), policy);
        }
        hw.restore_memory_policy(before.save());
        assert_eq!(MemoryPolicy::current().unwrap(), kernel_before);
    }
}
