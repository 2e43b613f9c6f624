//! A thread's Linux memory policy, read and written exactly, and packed into a
//! [`SavedPolicy`] word.
//!
//! The kernel keeps one memory policy per thread: a *mode* (`MPOL_DEFAULT`,
//! `MPOL_PREFERRED`, `MPOL_BIND`, ...), *mode flags* (`MPOL_F_STATIC_NODES`,
//! `MPOL_F_RELATIVE_NODES`, `MPOL_F_NUMA_BALANCING`) and a node mask. It decides where a
//! page goes when the thread first touches it. [`MemoryPolicy::current`] reads all three
//! with `get_mempolicy`, and [`MemoryPolicy::apply`] gives them back with
//! `set_mempolicy`, so a policy saved and re-applied is the same policy (with the flags,
//! the kernel reports the mask as the user gave it, so relative and static masks
//! round-trip too).
//!
//! # The saved word
//!
//! LD-NR sets and restores a policy around every batch a combiner applies, so the saved
//! policy travels in one `u64` ([`SavedPolicy`]):
//!
//! ```text
//!  63        61 60        58 57                                      0
//! +------------+------------+----------------------------------------+
//! | mode flags |    mode    |        node mask, nodes 0..=57         |
//! | bal|rel|sta|   0..=6    |                                        |
//! +------------+------------+----------------------------------------+
//!   mode 7 with no flags: the policy did not fit (a node >= 58, or a mode
//!   newer than this crate); bits 0..=57 index a per-thread side table instead.
//!   All ones (mode 7, every flag, every node) is SavedPolicy::UNCHANGED, which
//!   no encoding produces.
//! ```
//!
//! So nothing is lost on machines with more nodes: a policy that names nodes past 57
//! is kept in a thread-local table (it is a *thread's* policy, restored on the same
//! thread), and the word holds its index.

use std::cell::RefCell;

use ldnr::{AffinityError, NodeId, SavedPolicy};

use crate::sys::{self, RawMask, MASK_BITS};

/// `MPOL_F_STATIC_NODES`: the mask is not remapped when the cpuset changes.
pub const MPOL_F_STATIC_NODES: i32 = 1 << 15;
/// `MPOL_F_RELATIVE_NODES`: the mask is relative to the cpuset's nodes.
pub const MPOL_F_RELATIVE_NODES: i32 = 1 << 14;
/// `MPOL_F_NUMA_BALANCING`: automatic NUMA balancing may move bound pages (Linux 5.12+).
pub const MPOL_F_NUMA_BALANCING: i32 = 1 << 13;
const FLAGS: i32 = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING;

/// How many nodes a [`SavedPolicy`] word holds inline (0..=57); see the module docs.
pub const INLINE_NODES: usize = 58;
const INLINE_MASK: u64 = (1 << INLINE_NODES) - 1;
/// The mode value that marks a side-table index.
const SPILLED: u64 = 7;

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

    /// Packs the policy into a word (see the module docs), spilling it to the calling
    /// thread's side table if it does not fit.
    pub(crate) fn save(self) -> SavedPolicy {
        match self.inline() {
            Some(word) => SavedPolicy(word),
            None => SavedPolicy(SPILLED << INLINE_NODES | spill(self)),
        }
    }

    /// The policy a word from [`MemoryPolicy::save`] holds, taking it out of the side
    /// table if it was spilled. `None` for [`SavedPolicy::UNCHANGED`] and for a spilled
    /// word from another thread (or one already restored).
    pub(crate) fn restore_from(saved: SavedPolicy) -> Option<Self> {
        if saved.is_unchanged() {
            return None;
        }
        let tag = saved.0 >> INLINE_NODES;
        if tag == SPILLED {
            return unspill(saved.0 & INLINE_MASK);
        }
        let mode = (tag & 7) as i32;
        let mut raw_mode = mode;
        for (bit, flag) in [
            (3, MPOL_F_STATIC_NODES),
            (4, MPOL_F_RELATIVE_NODES),
            (5, MPOL_F_NUMA_BALANCING),
        ] {
            if tag & (1 << bit) != 0 {
                raw_mode |= flag;
            }
        }
        let mut mask = [0; MASK_BITS / 64];
        mask[0] = saved.0 & INLINE_MASK;
        Some(Self { raw_mode, mask })
    }

    /// The inline encoding, if the policy fits.
    fn inline(&self) -> Option<u64> {
        let mode = self.raw_mode & !FLAGS;
        if !(0..=6).contains(&mode) || self.mask[0] & !INLINE_MASK != 0 {
            return None;
        }
        if self.mask[1..].iter().any(|&w| w != 0) {
            return None;
        }
        let mut tag = mode as u64;
        for (bit, flag) in [
            (3, MPOL_F_STATIC_NODES),
            (4, MPOL_F_RELATIVE_NODES),
            (5, MPOL_F_NUMA_BALANCING),
        ] {
            if self.raw_mode & flag != 0 {
                tag |= 1 << bit;
            }
        }
        Some(tag << INLINE_NODES | self.mask[0])
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

thread_local! {
    /// Policies that did not fit in a word, by index. Slots are reused; a slot is only
    /// left occupied by a saved policy that is never restored.
    static SPILLED_POLICIES: RefCell<Vec<Option<MemoryPolicy>>> = const { RefCell::new(Vec::new()) };
}

fn spill(policy: MemoryPolicy) -> u64 {
    SPILLED_POLICIES.with(|table| {
        let mut table = table.borrow_mut();
        let slot = match table.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                table.push(None);
                table.len() - 1
            }
        };
        table[slot] = Some(policy);
        slot as u64
    })
}

fn unspill(slot: u64) -> Option<MemoryPolicy> {
    SPILLED_POLICIES
        .try_with(|table| {
            let mut table = table.borrow_mut();
            table.get_mut(usize::try_from(slot).ok()?)?.take()
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(p: MemoryPolicy) {
        let word = p.clone().save();
        assert!(!word.is_unchanged());
        assert_eq!(MemoryPolicy::restore_from(word), Some(p));
    }

    #[test]
    fn words_round_trip() {
        round_trip(MemoryPolicy::default_policy());
        round_trip(MemoryPolicy::new(PolicyMode::Local, 0, &[]));
        round_trip(MemoryPolicy::new(PolicyMode::Preferred, 0, &[NodeId(3)]));
        round_trip(MemoryPolicy::new(
            PolicyMode::Bind,
            MPOL_F_NUMA_BALANCING,
            &[NodeId(0), NodeId(57)],
        ));
        round_trip(MemoryPolicy::new(
            PolicyMode::WeightedInterleave,
            MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING,
            &(0..58).map(NodeId).collect::<Vec<_>>(),
        ));
    }

    #[test]
    fn inline_words_are_laid_out_as_documented() {
        let p = MemoryPolicy::new(PolicyMode::Bind, MPOL_F_STATIC_NODES, &[NodeId(1)]);
        assert_eq!(p.save().0, (2 | 1 << 3) << 58 | 0b10);
        // The example in ldnr's `SavedPolicy` docs: mode 2 (bind) on node 1.
        assert_eq!(
            MemoryPolicy::restore_from(SavedPolicy(2 << 58 | 0b10)),
            Some(MemoryPolicy::new(PolicyMode::Bind, 0, &[NodeId(1)]))
        );
    }

    #[test]
    fn big_nodes_and_unknown_modes_spill_and_come_back_once() {
        let far = MemoryPolicy::new(PolicyMode::Interleave, 0, &[NodeId(1), NodeId(58)]);
        let odd = MemoryPolicy {
            raw_mode: 9,
            mask: [0; MASK_BITS / 64],
        };
        let (a, b) = (far.clone().save(), odd.clone().save());
        assert_eq!(a.0 >> INLINE_NODES, SPILLED);
        assert_ne!(a, b);
        assert_eq!(MemoryPolicy::restore_from(b), Some(odd));
        assert_eq!(MemoryPolicy::restore_from(a), Some(far));
        // Taken out: a second restore finds nothing, and another thread never finds it.
        assert_eq!(MemoryPolicy::restore_from(a), None);
        let c = MemoryPolicy::new(PolicyMode::Bind, 0, &[NodeId(900)]).save();
        std::thread::spawn(move || assert_eq!(MemoryPolicy::restore_from(c), None))
            .join()
            .unwrap();
        assert!(MemoryPolicy::restore_from(c).is_some());
    }

    #[test]
    fn unchanged_is_never_produced_and_restores_nothing() {
        assert_eq!(MemoryPolicy::restore_from(SavedPolicy::UNCHANGED), None);
        let all = MemoryPolicy::new(
            PolicyMode::WeightedInterleave,
            FLAGS,
            &(0..58).map(NodeId).collect::<Vec<_>>(),
        );
        assert!(!all.save().is_unchanged());
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
}
