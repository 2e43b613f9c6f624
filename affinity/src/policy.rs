//! A thread's Linux memory policy, read and written exactly.
//!
//! The kernel keeps one memory policy per thread: a *mode* (`MPOL_DEFAULT`,
//! `MPOL_PREFERRED`, `MPOL_BIND`, ...), *mode flags* (`MPOL_F_STATIC_NODES`,
//! `MPOL_F_RELATIVE_NODES`, `MPOL_F_NUMA_BALANCING`) and a node mask. It decides where a
//! page goes when the thread first touches it. [`MemoryPolicy::current`] reads all three
//! with `get_mempolicy`, and [`MemoryPolicy::apply`] gives them back with
//! `set_mempolicy`, so a policy saved and re-applied is the same policy (with the flags,
//! the kernel reports the mask as the user gave it, so relative and static masks
//! round-trip too). The managers keep the policies they replace in a per-thread stack
//! (`saved.rs`), which makes restores exact in any order.

use ldnr::{AffinityError, NodeId};

use crate::sys::{self, RawMask, MASK_BITS};

/// `MPOL_F_STATIC_NODES`: the mask is not remapped when the cpuset changes.
pub const MPOL_F_STATIC_NODES: i32 = 1 << 15;
/// `MPOL_F_RELATIVE_NODES`: the mask is relative to the cpuset's nodes.
pub const MPOL_F_RELATIVE_NODES: i32 = 1 << 14;
/// `MPOL_F_NUMA_BALANCING`: automatic NUMA balancing may move bound pages (Linux 5.12+).
pub const MPOL_F_NUMA_BALANCING: i32 = 1 << 13;
const FLAGS: i32 = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING;

/// The mode of a [`MemoryPolicy`], as `set_mempolicy(2)` names them.
///
/// # Examples
///
/// ```
/// use ldnr_affinity::PolicyMode;
/// assert_eq!(PolicyMode::from_raw(2), PolicyMode::Bind);
/// assert_eq!(PolicyMode::Bind.raw(), 2);
/// assert_eq!(PolicyMode::from_raw(42), PolicyMode::Other(42));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyMode {
    /// `MPOL_DEFAULT`: the process's policy, normally "the node of the CPU that touches".
    Default,
    /// `MPOL_PREFERRED`: the one node in the mask, falling back to others when it is full.
    Preferred,
    /// `MPOL_BIND`: only the nodes in the mask (the allocation fails or reclaims rather
    /// than spill).
    Bind,
    /// `MPOL_INTERLEAVE`: page by page over the mask.
    Interleave,
    /// `MPOL_LOCAL`: the node of the CPU that touches.
    Local,
    /// `MPOL_PREFERRED_MANY` (Linux 5.15+): any node in the mask, then others.
    PreferredMany,
    /// `MPOL_WEIGHTED_INTERLEAVE` (Linux 6.9+).
    WeightedInterleave,
    /// A mode this crate does not know; kept and restored as a number.
    Other(i32),
}

impl PolicyMode {
    /// The mode from the kernel's number (without flags).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr_affinity::PolicyMode::from_raw(0), ldnr_affinity::PolicyMode::Default);
    /// ```
    pub fn from_raw(raw: i32) -> Self {
        match raw {
            0 => PolicyMode::Default,
            1 => PolicyMode::Preferred,
            2 => PolicyMode::Bind,
            3 => PolicyMode::Interleave,
            4 => PolicyMode::Local,
            5 => PolicyMode::PreferredMany,
            6 => PolicyMode::WeightedInterleave,
            other => PolicyMode::Other(other),
        }
    }

    /// The kernel's number for the mode.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr_affinity::PolicyMode::Preferred.raw(), 1);
    /// ```
    pub fn raw(self) -> i32 {
        match self {
            PolicyMode::Default => 0,
            PolicyMode::Preferred => 1,
            PolicyMode::Bind => 2,
            PolicyMode::Interleave => 3,
            PolicyMode::Local => 4,
            PolicyMode::PreferredMany => 5,
            PolicyMode::WeightedInterleave => 6,
            PolicyMode::Other(raw) => raw,
        }
    }
}

/// A thread's memory policy: mode, mode flags and node mask (nodes below 1024).
///
/// # Examples
///
/// ```
/// use ldnr::NodeId;
/// use ldnr_affinity::{MemoryPolicy, PolicyMode};
///
/// let p = MemoryPolicy::new(PolicyMode::Preferred, 0, &[NodeId(1)]);
/// assert_eq!(p.mode(), PolicyMode::Preferred);
/// assert_eq!(p.nodes(), [NodeId(1)]);
///
/// // Where the kernel offers memory policies, the calling thread's can be read and
/// // written back exactly.
/// if let Ok(now) = MemoryPolicy::current() {
///     now.apply()?;
///     assert_eq!(MemoryPolicy::current()?, now);
/// }
/// # Ok::<(), ldnr::AffinityError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MemoryPolicy {
    /// The mode with its flags, as `get_mempolicy` reports it.
    raw_mode: i32,
    mask: RawMask,
}

impl MemoryPolicy {
    /// A policy from its parts. `flags` are `MPOL_F_*` bits (others are dropped);
    /// nodes from 1024 on are ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// use ldnr_affinity::{MemoryPolicy, PolicyMode, MPOL_F_STATIC_NODES};
    /// let p = MemoryPolicy::new(PolicyMode::Bind, MPOL_F_STATIC_NODES, &[NodeId(0), NodeId(3)]);
    /// assert_eq!(p.flags(), MPOL_F_STATIC_NODES);
    /// assert_eq!(p.nodes(), [NodeId(0), NodeId(3)]);
    /// ```
    pub fn new(mode: PolicyMode, flags: i32, nodes: &[NodeId]) -> Self {
        let mut mask = [0; MASK_BITS / 64];
        for n in nodes.iter().filter(|n| n.0 < MASK_BITS) {
            mask[n.0 / 64] |= 1 << (n.0 % 64);
        }
        Self {
            raw_mode: mode.raw() | (flags & FLAGS),
            mask,
        }
    }

    /// `MPOL_DEFAULT` with no nodes: what a thread starts with.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = ldnr_affinity::MemoryPolicy::default_policy();
    /// assert_eq!(p.mode(), ldnr_affinity::PolicyMode::Default);
    /// assert!(p.nodes().is_empty());
    /// ```
    pub fn default_policy() -> Self {
        Self::new(PolicyMode::Default, 0, &[])
    }

    /// The calling thread's policy.
    ///
    /// # Errors
    ///
    /// [`AffinityError::Os`] with the error number where the kernel has no memory
    /// policies (`ENOSYS`: a kernel without NUMA, or not Linux) or refuses (`EPERM`:
    /// some container sandboxes).
    ///
    /// # Examples
    ///
    /// ```
    /// match ldnr_affinity::MemoryPolicy::current() {
    ///     Ok(p) => println!("{p:?}"),
    ///     Err(e) => println!("no memory policies here: {e}"),
    /// }
    /// ```
    pub fn current() -> Result<Self, AffinityError> {
        let mut mask = [0; MASK_BITS / 64];
        let raw_mode = sys::get_mempolicy(&mut mask).map_err(AffinityError::Os)?;
        Ok(Self { raw_mode, mask })
    }

    /// Makes this the calling thread's policy.
    ///
    /// # Errors
    ///
    /// [`AffinityError::Os`] with the kernel's error number: `EINVAL` for a node that
    /// does not exist or a mode and mask that do not go together, `ENOSYS` where there
    /// are no memory policies.
    ///
    /// # Examples
    ///
    /// ```
    /// // The default policy can always be applied where policies exist.
    /// let r = ldnr_affinity::MemoryPolicy::default_policy().apply();
    /// assert!(r.is_ok() || ldnr_affinity::MemoryPolicy::current().is_err());
    /// ```
    pub fn apply(&self) -> Result<(), AffinityError> {
        sys::set_mempolicy(self.raw_mode, &self.mask).map_err(AffinityError::Os)
    }

    /// The mode, without flags.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_affinity::{MemoryPolicy, PolicyMode};
    /// assert_eq!(MemoryPolicy::new(PolicyMode::Local, 0, &[]).mode(), PolicyMode::Local);
    /// ```
    pub fn mode(&self) -> PolicyMode {
        PolicyMode::from_raw(self.raw_mode & !FLAGS)
    }

    /// The `MPOL_F_*` mode flags.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_affinity::{MemoryPolicy, PolicyMode};
    /// assert_eq!(MemoryPolicy::default_policy().flags(), 0);
    /// ```
    pub fn flags(&self) -> i32 {
        self.raw_mode & FLAGS
    }

    /// The nodes in the mask, ascending.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// use ldnr_affinity::{MemoryPolicy, PolicyMode};
    /// let p = MemoryPolicy::new(PolicyMode::Interleave, 0, &[NodeId(70), NodeId(2)]);
    /// assert_eq!(p.nodes(), [NodeId(2), NodeId(70)]);
    /// ```
    pub fn nodes(&self) -> Vec<NodeId> {
        (0..MASK_BITS)
            .filter(|&n| self.mask[n / 64] & (1 << (n % 64)) != 0)
            .map(NodeId)
            .collect()
    }

    /// Whether this is exactly "prefer (or bind to) `node`", with no flags.
    pub(crate) fn is_single(&self, mode: PolicyMode, node: NodeId) -> bool {
        self.raw_mode == mode.raw()
            && node.0 < MASK_BITS
            && self.mask.iter().enumerate().all(|(w, &bits)| {
                bits == if w == node.0 / 64 {
                    1 << (node.0 % 64)
                } else {
                    0
                }
            })
    }

    /// The nodes this policy lets memory come from, for a thread whose cpuset allows
    /// `allowed` (ascending): the mask, with a relative one (`MPOL_F_RELATIVE_NODES`)
    /// folded onto `allowed` as the kernel does (bit `i` is the `i % n`-th allowed node).
    pub(crate) fn effective_nodes(&self, allowed: &[NodeId]) -> Vec<NodeId> {
        let nodes = self.nodes();
        if self.flags() & MPOL_F_RELATIVE_NODES == 0 || allowed.is_empty() {
            return nodes;
        }
        let mut folded: Vec<NodeId> = nodes.iter().map(|n| allowed[n.0 % allowed.len()]).collect();
        folded.sort_unstable();
        folded.dedup();
        folded
    }
}

impl std::fmt::Debug for MemoryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPolicy")
            .field("mode", &self.mode())
            .field("flags", &format_args!("{:#x}", self.flags()))
            .field("nodes", &self.nodes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let p = MemoryPolicy::new(
            PolicyMode::WeightedInterleave,
            MPOL_F_STATIC_NODES | MPOL_F_NUMA_BALANCING,
            &[NodeId(0), NodeId(57), NodeId(900)],
        );
        assert_eq!(p.mode(), PolicyMode::WeightedInterleave);
        assert_eq!(p.flags(), MPOL_F_STATIC_NODES | MPOL_F_NUMA_BALANCING);
        assert_eq!(p.nodes(), [NodeId(0), NodeId(57), NodeId(900)]);
        // Unknown flag bits are dropped, nodes past the mask ignored.
        let q = MemoryPolicy::new(PolicyMode::Bind, 1, &[NodeId(1), NodeId(MASK_BITS)]);
        assert_eq!(q.flags(), 0);
        assert_eq!(q.nodes(), [NodeId(1)]);
    }

    #[test]
    fn single_node_policies_are_recognised() {
        let p = MemoryPolicy::new(PolicyMode::Preferred, 0, &[NodeId(65)]);
        assert!(p.is_single(PolicyMode::Preferred, NodeId(65)));
        assert!(!p.is_single(PolicyMode::Bind, NodeId(65)));
        assert!(!p.is_single(PolicyMode::Preferred, NodeId(1)));
        let two = MemoryPolicy::new(PolicyMode::Preferred, 0, &[NodeId(1), NodeId(2)]);
        assert!(!two.is_single(PolicyMode::Preferred, NodeId(1)));
    }

    #[test]
    fn relative_masks_fold_onto_the_allowed_nodes() {
        let allowed = [NodeId(2), NodeId(5)];
        let rel = MemoryPolicy::new(
            PolicyMode::Bind,
            MPOL_F_RELATIVE_NODES,
            &[NodeId(0), NodeId(3)],
        );
        assert_eq!(rel.effective_nodes(&allowed), [NodeId(2), NodeId(5)]);
        let abs = MemoryPolicy::new(PolicyMode::Bind, 0, &[NodeId(0), NodeId(3)]);
        assert_eq!(abs.effective_nodes(&allowed), [NodeId(0), NodeId(3)]);
    }
}
