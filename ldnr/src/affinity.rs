//! Where threads run and where replica memory comes from.
//!
//! LD-NR calls an [`AffinityManager`] around every action that may allocate memory for
//! a replica (cloning it, applying log entries to it), so that a replica's memory comes
//! from the replica's NUMA node even when the thread doing the work runs elsewhere.
//! The manager also tells the dispatcher which node the registering thread is on and
//! how far apart nodes are.
//!
//! This crate ships only [`NoAffinity`] (one node, nothing to do), which suits `no_std`
//! users and single-node machines. Operating-system managers live in `ldnr-affinity`.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;

/// A NUMA node, numbered as the operating system numbers them.
///
/// # Examples
///
/// ```
/// use ldnr::NodeId;
/// let n = NodeId(1);
/// assert_eq!(n.0, 1);
/// assert_eq!(n.to_string(), "node 1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub usize);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// What an [`AffinityManager`] needs to restore a thread's previous memory policy.
///
/// An opaque word: LD-NR only hands it back to
/// [`AffinityManager::restore_memory_policy`], on the thread that got it. A manager may
/// pack the previous policy into it, or keep the previous policy in a thread-local stack
/// and store a key to it here (`ldnr-affinity`'s managers do, so that guards dropped out
/// of order restore exactly). It is a word so that setting and restoring a policy around
/// every batch costs no copying.
///
/// # Examples
///
/// ```
/// use ldnr::SavedPolicy;
/// let p = SavedPolicy(2 << 58 | 0b10);
/// assert!(!p.is_unchanged());
/// assert!(SavedPolicy::UNCHANGED.is_unchanged());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SavedPolicy(pub u64);

impl SavedPolicy {
    /// The value a manager returns when it changed nothing and has nothing to restore.
    pub const UNCHANGED: SavedPolicy = SavedPolicy(u64::MAX);

    /// Whether this is [`SavedPolicy::UNCHANGED`].
    pub fn is_unchanged(&self) -> bool {
        *self == Self::UNCHANGED
    }
}

/// An affinity manager could not do what was asked.
///
/// # Examples
///
/// ```
/// use ldnr::{AffinityError, NodeId};
/// let e = AffinityError::UnknownNode(NodeId(7));
/// assert_eq!(e.to_string(), "node 7 is not known to the affinity manager");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AffinityError {
    /// The node does not exist (or is offline).
    UnknownNode(NodeId),
    /// The operating system refused; the value is its error number.
    Os(i32),
    /// The node has no CPU the calling thread may run on (all of them are outside the
    /// process's cpuset or affinity mask, or it is a memory-only node).
    NoUsableCpus(NodeId),
    /// A [`SavedPolicy`] that is not outstanding on the calling thread: restored already,
    /// saved on another thread, or the thread is exiting and its saved policies are gone.
    StalePolicy,
}

impl fmt::Display for AffinityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AffinityError::UnknownNode(n) => write!(f, "{n} is not known to the affinity manager"),
            AffinityError::Os(e) => write!(f, "the operating system refused (error {e})"),
            AffinityError::NoUsableCpus(n) => {
                write!(f, "{n} has no CPU this thread may run on")
            }
            AffinityError::StalePolicy => f.write_str(
                "the saved memory policy is not outstanding on this thread \
                 (restored already, saved on another thread, or the thread is exiting)",
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AffinityError {}

/// Tells LD-NR about the machine's NUMA topology and steers where memory is allocated.
///
/// Implementations must be cheap to call: [`set_memory_node`](Self::set_memory_node) and
/// [`restore_memory_policy`](Self::restore_memory_policy) run around every batch a combiner
/// applies to a replica. A manager may return [`SavedPolicy::UNCHANGED`] when it changed
/// nothing; LD-NR then does not call `restore_memory_policy` for it.
///
/// Guards ([`AffinityGuard`]) cannot leave their thread, but a program may hold several on
/// one thread and drop them in any order: `restore_memory_policy` must then leave the
/// thread with the policy it had before the first of them once the last one is gone,
/// and with a live guard's node while one is live.
///
/// # Examples
///
/// A manager that pretends there are two nodes and that every thread runs on node 1:
///
/// ```
/// use ldnr::{AffinityError, AffinityManager, NodeId, SavedPolicy};
///
/// #[derive(Debug)]
/// struct OnNodeOne;
///
/// impl AffinityManager for OnNodeOne {
///     fn current_node(&self) -> NodeId { NodeId(1) }
///     fn nodes(&self) -> Vec<NodeId> { vec![NodeId(0), NodeId(1)] }
///     fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
///         if node.0 < 2 { Ok(SavedPolicy::UNCHANGED) } else { Err(AffinityError::UnknownNode(node)) }
///     }
///     fn restore_memory_policy(&self, _saved: SavedPolicy) -> Result<(), AffinityError> {
///         Ok(())
///     }
/// }
///
/// let m = OnNodeOne;
/// assert_eq!(m.distance(NodeId(0), NodeId(0)), 10);
/// assert_eq!(m.distance(NodeId(0), NodeId(1)), 20);
/// let _guard = ldnr::AffinityGuard::new(&m, NodeId(1)).unwrap();
/// ```
pub trait AffinityManager: Send + Sync + fmt::Debug {
    /// The node of the CPU the calling thread runs on now.
    fn current_node(&self) -> NodeId;

    /// The nodes replicas can be placed on, in ascending order: nodes with memory that
    /// threads can run on. (A memory-only node, such as CXL or persistent memory, would
    /// hold a replica that no thread is matched to as its own node's.)
    fn nodes(&self) -> Vec<NodeId>;

    /// The relative distance between two nodes, as in the ACPI SLIT table: 10 for the same
    /// node; larger is farther. The default is 10 for `a == b` and 20 otherwise.
    fn distance(&self, a: NodeId, b: NodeId) -> u32 {
        if a == b {
            10
        } else {
            20
        }
    }

    /// Makes the calling thread's new memory come from `node`, and returns what to
    /// restore afterwards.
    ///
    /// # Errors
    ///
    /// [`AffinityError::UnknownNode`] if `node` does not exist, [`AffinityError::Os`] if the
    /// operating system refused.
    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError>;

    /// Restores the policy that [`set_memory_node`](Self::set_memory_node) replaced.
    ///
    /// # Errors
    ///
    /// [`AffinityError::StalePolicy`] for a `saved` that is not outstanding on this
    /// thread (nothing changes); [`AffinityError::Os`] if the operating system refused
    /// the previous policy (for example, its nodes left the process's cpuset meanwhile).
    /// A manager should then leave the thread with a policy that does not name the
    /// node `set_memory_node` set (such as the system default), and say so in its docs.
    /// LD-NR reports the error from [`build`](crate::Builder::build) and
    /// [`add_replica`](crate::NodeReplicated::add_replica); around a batch of log
    /// entries it cannot fail the operations, which are done, and ignores it.
    fn restore_memory_policy(&self, saved: SavedPolicy) -> Result<(), AffinityError>;
}

/// The default manager: one node (`NodeId(0)`), nothing to steer.
///
/// # Examples
///
/// ```
/// use ldnr::{AffinityManager, NoAffinity, NodeId};
/// assert_eq!(NoAffinity.current_node(), NodeId(0));
/// assert_eq!(NoAffinity.nodes(), vec![NodeId(0)]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAffinity;

impl AffinityManager for NoAffinity {
    fn current_node(&self) -> NodeId {
        NodeId(0)
    }

    fn nodes(&self) -> Vec<NodeId> {
        vec![NodeId(0)]
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if node == NodeId(0) {
            Ok(SavedPolicy::UNCHANGED)
        } else {
            Err(AffinityError::UnknownNode(node))
        }
    }

    fn restore_memory_policy(&self, _saved: SavedPolicy) -> Result<(), AffinityError> {
        Ok(())
    }
}

/// Makes the calling thread's new memory come from one node until it is dropped (or
/// [`restore`](AffinityGuard::restore)d), then restores the previous policy.
///
/// A memory policy belongs to a thread, so the guard stays on the thread that made it
/// (`!Send`): dropped elsewhere it would restore the wrong thread's policy. Dropping
/// ignores a failed restore (the manager reports it its own way); call
/// [`restore`](AffinityGuard::restore) to get the error.
///
/// # Examples
///
/// ```
/// use ldnr::{AffinityGuard, NoAffinity, NodeId};
/// {
///     let _on_node0 = AffinityGuard::new(&NoAffinity, NodeId(0)).unwrap();
///     // allocations here come from node 0
/// } // previous policy restored
/// assert!(AffinityGuard::new(&NoAffinity, NodeId(3)).is_err());
/// ```
///
/// The guard cannot be sent to another thread:
///
/// ```compile_fail,E0277
/// use ldnr::{AffinityGuard, NoAffinity, NodeId};
/// let guard = AffinityGuard::new(&NoAffinity, NodeId(0)).unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard));
/// });
/// ```
#[must_use = "the policy is restored as soon as the guard is dropped"]
pub struct AffinityGuard<'a> {
    manager: &'a dyn AffinityManager,
    saved: SavedPolicy,
    /// `!Send + !Sync`: the saved policy is the creating thread's.
    _thread: PhantomData<*const ()>,
}

impl<'a> AffinityGuard<'a> {
    /// Sets the calling thread's memory policy to `node`.
    ///
    /// # Errors
    ///
    /// Whatever [`AffinityManager::set_memory_node`] returns.
    #[inline]
    pub fn new(manager: &'a dyn AffinityManager, node: NodeId) -> Result<Self, AffinityError> {
        let saved = manager.set_memory_node(node)?;
        Ok(Self {
            manager,
            saved,
            _thread: PhantomData,
        })
    }

    /// Restores the previous policy now, and says whether that worked.
    ///
    /// # Errors
    ///
    /// Whatever [`AffinityManager::restore_memory_policy`] returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{AffinityGuard, NoAffinity, NodeId};
    /// let guard = AffinityGuard::new(&NoAffinity, NodeId(0))?;
    /// guard.restore()?;
    /// # Ok::<(), ldnr::AffinityError>(())
    /// ```
    pub fn restore(self) -> Result<(), AffinityError> {
        // Not dropped afterwards: the restore happens once, here (also if it panics).
        let this = ManuallyDrop::new(self);
        if this.saved.is_unchanged() {
            Ok(())
        } else {
            this.manager.restore_memory_policy(this.saved)
        }
    }
}

/// The affinity manager as an instance uses it, and whether it steers anything: with one
/// node all memory comes from it anyway, and the policy calls around each batch are
/// skipped.
#[derive(Debug)]
pub(crate) struct Memory {
    manager: Arc<dyn AffinityManager>,
    steer: bool,
}

impl Memory {
    /// `manager`, which lists `nodes` nodes.
    pub(crate) fn new(manager: Arc<dyn AffinityManager>, nodes: usize) -> Self {
        Self {
            manager,
            steer: nodes > 1,
        }
    }

    pub(crate) fn manager(&self) -> &dyn AffinityManager {
        &*self.manager
    }

    /// Whether the manager knows more than one node (so memory is steered, and threads
    /// may move between nodes).
    #[inline]
    pub(crate) fn steers(&self) -> bool {
        self.steer
    }

    /// The memory policy of `node` for one batch of a replica there, if the manager
    /// steers memory. Best effort: the node was valid when the replica was made, and
    /// failing to set a policy must not fail an operation; the memory then comes from the
    /// default policy. Failing to restore it (the guard's drop) fails nothing either: the
    /// batch is done, and the manager leaves the thread off the node and reports it its
    /// own way (see [`AffinityManager::restore_memory_policy`]).
    #[inline]
    pub(crate) fn for_batch(&self, node: NodeId) -> Option<AffinityGuard<'_>> {
        if self.steer {
            AffinityGuard::new(&*self.manager, node).ok()
        } else {
            None
        }
    }
}

/// Runs `f` with the calling thread's memory coming from `node`, and returns what it
/// made; if the previous policy cannot be restored, drops it and returns the error (the
/// caller changes nothing then). If `f` panics, the guard's drop restores the policy on
/// the way out; if restoring panics, the value `f` made is dropped on the way out (a
/// local of this function, so unwinding drops it).
pub(crate) fn on_node<R>(
    manager: &dyn AffinityManager,
    node: NodeId,
    f: impl FnOnce() -> R,
) -> Result<R, AffinityError> {
    let policy = AffinityGuard::new(manager, node)?;
    let made = f();
    policy.restore()?;
    Ok(made)
}

impl Drop for AffinityGuard<'_> {
    fn drop(&mut self) {
        if !self.saved.is_unchanged() {
            // Ignored by design (see the type's docs): `restore` reports it.
            let _ = self.manager.restore_memory_policy(self.saved);
        }
    }
}

impl fmt::Debug for AffinityGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AffinityGuard")
            .field("saved", &self.saved)
            .finish_non_exhaustive()
    }
}
