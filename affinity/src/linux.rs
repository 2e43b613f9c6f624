//! [`LinuxAffinity`]: the machine's own topology (as far as this process may use it) and
//! memory policies, through sysfs and raw system calls (no system libraries).

use std::sync::atomic::{AtomicU64, Ordering};

use ldnr::{AffinityError, AffinityManager, NodeId, SavedPolicy};

use crate::pin;
use crate::placement;
use crate::policy::{MemoryPolicy, PolicyMode};
use crate::process;
use crate::saved;
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
    pub(crate) fn mode(self) -> PolicyMode {
        match self {
            Binding::Preferred => PolicyMode::Preferred,
            Binding::Bind => PolicyMode::Bind,
        }
    }
}

/// The affinity manager for Linux: nodes, CPUs and distances from
/// `/sys/devices/system/node` as far as this process may use them, the calling thread's
/// node from `getcpu`, replica memory placed with `set_mempolicy`.
///
/// - [`nodes`](AffinityManager::nodes): the nodes with memory *and* CPUs this process may
///   use — the machine's nodes cut to the cpuset's `Mems_allowed`, each node's CPUs cut
///   to the affinity mask of the thread that made the manager (`taskset`, `numactl
///   --cpunodebind`), and to an inherited `MPOL_BIND` or `MPOL_INTERLEAVE` set
///   (`numactl --membind`/`--interleave`). Memory-only nodes (CXL, persistent memory,
///   HBM, or nodes whose CPUs are all outside the mask) are listed apart in
///   [`LinuxAffinity::memory_only_nodes`]: no replica goes there by default, and no
///   thread is ever said to be on one.
/// - [`current_node`](AffinityManager::current_node): the node of the CPU the thread runs
///   on now (`getcpu`). A thread that is not pinned may move; pin threads (see
///   [`LinuxAffinity::pin_to_node`]) for a stable match.
/// - [`set_memory_node`](AffinityManager::set_memory_node): saves the thread's policy
///   (mode, flags and mask, exactly) on a per-thread stack, then sets
///   [`Binding::Preferred`] (or [`Binding::Bind`]; always `Bind` under an inherited
///   `MPOL_BIND`, which a preferred node could spill out of) for the node. Two system
///   calls, three with the restore, once per batch a combiner applies.
/// - [`restore_memory_policy`](AffinityManager::restore_memory_policy): puts the saved
///   policy back exactly, also when guards are dropped out of order (a guard dropped while
///   a newer one is live hands its saved policy to that one). If the kernel refuses the
///   saved policy (its nodes left the cpuset meanwhile), the thread gets the default
///   policy (`MPOL_DEFAULT`, never the replica's node), the error is returned, and
///   [`LinuxAffinity::restore_failures`] counts it.
///
/// If the kernel refuses a policy while a replica is made (in `build` or `add_replica`),
/// the call returns [`Error::Affinity`](ldnr::Error::Affinity) with the kernel's
/// [`AffinityError::Os`] and changes nothing; around a batch of log entries a refused
/// policy fails no operation, and that batch's memory comes from the thread's own policy.
///
/// **Runs as one node** where memory policies cannot be used: when the manager is made,
/// it tries exactly what it will do later — read the thread's policy, set a node, read
/// it back, put the first one back. If any step is refused (no NUMA in the kernel, a
/// seccomp filter such as Docker's default without `CAP_SYS_NICE` or systemd's
/// `SystemCallFilter=~@resources` with an error number), or there is no sysfs to read,
/// [`nodes`](AffinityManager::nodes) is one node, `current_node` always says it, memory
/// policies are never touched, and [`LinuxAffinity::degraded`] says why. It never fails.
///
/// The manager changes nothing process-wide. Placement of large allocations improves
/// with glibc's mmap threshold fixed; that is a process-wide change, made only when asked
/// for ([`LinuxAffinity::fix_mmap_threshold`]). See the [crate docs](crate#placement) for
/// what is and is not placed.
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
///     .replicas(&nodes) // one replica per node this process may use
///     .affinity(linux.clone())
///     .build()?;
/// assert_eq!(nr.replicas().len(), nodes.len());
/// # Ok::<(), ldnr::Error>(())
/// ```
#[derive(Debug)]
pub struct LinuxAffinity {
    /// The machine as this process may use it (for `new`), or as given.
    topology: Topology,
    /// What `nodes()` says: the replica nodes, or the one node it runs as.
    nodes: Vec<NodeId>,
    /// Memory-only nodes `set_memory_node` also steers to (none when running as one node).
    memory_only: Vec<NodeId>,
    /// The nodes `current_node` may answer (with CPUs), ascending.
    thread_nodes: Vec<NodeId>,
    /// Set when memory policies cannot be used or no node has both CPUs and memory.
    single: Option<NodeId>,
    binding: Binding,
    /// The creating thread's policy was `MPOL_BIND`: steering binds too.
    inherited_bind: bool,
    /// The CPUs the creating thread could run on: pins stay inside them.
    allowed_cpus: Option<Vec<usize>>,
    /// Whether to call `set_mempolicy` at all: false with one memory node (nothing to
    /// choose) and where memory policies are unavailable.
    steer: bool,
    degraded: Option<String>,
    mmap_threshold_fixed: bool,
    restore_failures: AtomicU64,
}

impl Default for LinuxAffinity {
    fn default() -> Self {
        Self::new()
    }
}

impl LinuxAffinity {
    /// This process's manager: reads the topology and cuts it to what the process may
    /// use (one node where there is none to read), and tries memory policies (see the
    /// type's docs). Never fails, and changes nothing process-wide.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::AffinityManager;
    /// let linux = ldnr_affinity::LinuxAffinity::new();
    /// assert!(!linux.nodes().is_empty());
    /// assert!(!linux.mmap_threshold_fixed());
    /// ```
    pub fn new() -> Self {
        let (mut topology, why) = Topology::detect_or_reason();
        let mut notes: Vec<String> = why.into_iter().collect();
        let mut inherited_bind = false;
        // `numactl --membind` / `--interleave` (or a parent's set_mempolicy): memory may
        // come only from those nodes, so replicas go only there.
        if let Ok(inherited) = MemoryPolicy::current() {
            let allowed =
                process::allowed_memory_nodes().unwrap_or_else(|_| topology.memory_nodes());
            if let Some((set, binds)) = inherited_restriction(&inherited, &allowed) {
                match topology.restrict(None, Some(&set)) {
                    Ok(t) => topology = t,
                    Err(e) => notes.push(format!(
                        "the inherited memory policy ({inherited:?}) is ignored: {e}"
                    )),
                }
                inherited_bind = binds;
            }
        }
        Self::build(topology, notes, inherited_bind)
    }

    /// A manager for a given topology, as given (for example one parsed from a copy of
    /// sysfs, or the machine's own with some nodes left out; it is not cut to the
    /// process's cpuset — [`Topology::restrict`] does that). Memory policies are tried
    /// as in [`LinuxAffinity::new`] and are still the real kernel's: asking for a node
    /// the kernel does not have fails with [`AffinityError::Os`]. Pins stay inside the
    /// CPUs the calling thread may use now.
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
        Self::build(topology, Vec::new(), false)
    }

    fn build(topology: Topology, mut notes: Vec<String>, inherited_bind: bool) -> Self {
        let nodes = topology.replica_nodes();
        let mut me = Self {
            memory_only: topology.memory_only_nodes(),
            thread_nodes: topology.thread_nodes(),
            nodes,
            single: None,
            binding: Binding::default(),
            inherited_bind,
            allowed_cpus: pin::allowed_cpus().ok(),
            steer: false,
            degraded: None,
            mmap_threshold_fixed: false,
            restore_failures: AtomicU64::new(0),
            topology,
        };
        let first = me.topology.nodes()[0].id;
        let mut single = None;
        if me.nodes.is_empty() {
            notes.push("no node has both CPUs and memory this process may use".into());
            single = Some(me.topology.memory_nodes().first().copied().unwrap_or(first));
        }
        // Only where there is something to steer to (else it runs as one node anyway).
        let probe_node = me.nodes.first().copied().unwrap_or(first);
        let tried = if single.is_none() {
            probe(probe_node, me.mode())
        } else {
            Ok(())
        };
        if let Err(why) = tried {
            notes.push(why);
            // Without policies memory comes from where threads run: name the node this
            // thread runs on, if it can hold replicas.
            let here = sys::getcpu()
                .ok()
                .map(|(_, node)| NodeId(node))
                .filter(|n| me.nodes.contains(n));
            single = single.or(here).or(Some(probe_node));
        }
        if let Some(node) = single {
            notes.push(format!("runs as one node, {node}, without memory policies"));
            me.single = Some(node);
            me.nodes = vec![node];
            me.memory_only.clear();
        }
        me.steer = me.single.is_none() && me.nodes.len() + me.memory_only.len() > 1;
        me.degraded = (!notes.is_empty()).then(|| notes.join("; "));
        me
    }

    /// Chooses how memory is steered to a node (default [`Binding::Preferred`]). Under
    /// an inherited `MPOL_BIND` (`numactl --membind`) steering binds whatever is chosen
    /// here: a preferred node would spill to nodes the operator excluded.
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

    /// How memory is steered to a node: the [`binding`](Self::binding) chosen, or
    /// [`Binding::Bind`] under an inherited `MPOL_BIND`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_affinity::{Binding, LinuxAffinity};
    /// assert_eq!(LinuxAffinity::new().binding(Binding::Bind).binding_mode(), Binding::Bind);
    /// ```
    pub fn binding_mode(&self) -> Binding {
        if self.inherited_bind {
            Binding::Bind
        } else {
            self.binding
        }
    }

    fn mode(&self) -> PolicyMode {
        self.binding_mode().mode()
    }

    /// Opt-in, process-wide: fixes glibc's mmap threshold at
    /// [`placement::DEFAULT_FRESH_PAGES_THRESHOLD`] (128 KiB) so that large allocations
    /// are fresh `mmap`s, whose pages a memory policy places, far more often (see
    /// [`placement::fresh_pages_for_large_allocations`] for what it does, what it does
    /// not guarantee, and its cost: every large allocation and free is a system call and
    /// page faults, for the whole program). Left alone where `GLIBC_TUNABLES` sets the
    /// threshold: the operator's setting wins. [`mmap_threshold_fixed`](Self::mmap_threshold_fixed)
    /// says whether it took effect.
    ///
    /// # Examples
    ///
    /// ```
    /// let linux = ldnr_affinity::LinuxAffinity::new().fix_mmap_threshold();
    /// if !cfg!(all(target_os = "linux", target_env = "gnu")) {
    ///     assert!(!linux.mmap_threshold_fixed());
    /// }
    /// ```
    pub fn fix_mmap_threshold(mut self) -> Self {
        self.mmap_threshold_fixed =
            placement::fresh_pages_for_large_allocations(placement::DEFAULT_FRESH_PAGES_THRESHOLD);
        self
    }

    /// Whether [`fix_mmap_threshold`](Self::fix_mmap_threshold) was asked for and took
    /// effect.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!ldnr_affinity::LinuxAffinity::new().mmap_threshold_fixed());
    /// ```
    pub fn mmap_threshold_fixed(&self) -> bool {
        self.mmap_threshold_fixed
    }

    /// The topology the manager works with (for [`LinuxAffinity::new`], the machine's
    /// cut to what this process may use).
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

    /// The nodes with memory this process may use but no CPU it may run on (CXL,
    /// persistent memory, HBM; or a node whose CPUs are outside the cpuset), ascending.
    /// They are not in [`nodes`](AffinityManager::nodes), so no replica goes there by
    /// default and no thread is matched to one as its own node;
    /// [`set_memory_node`](AffinityManager::set_memory_node) steers to them (an
    /// [`ldnr::AffinityGuard`] can put a program's own memory there). Empty when the
    /// manager runs as one node.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{AffinityManager, NodeId};
    /// use ldnr_affinity::{LinuxAffinity, NodeInfo, Topology};
    ///
    /// // Node 1 is a CXL memory expander: memory, no CPUs.
    /// let t = Topology::new(
    ///     vec![NodeInfo::new(NodeId(0), vec![0], true), NodeInfo::new(NodeId(1), vec![], true)],
    ///     None,
    /// )?;
    /// let linux = LinuxAffinity::with_topology(t);
    /// assert_eq!(linux.nodes(), [NodeId(0)]);
    /// if linux.degraded().is_none() {
    ///     assert_eq!(linux.memory_only_nodes(), [NodeId(1)]);
    /// }
    /// # Ok::<(), ldnr_affinity::TopologyError>(())
    /// ```
    pub fn memory_only_nodes(&self) -> Vec<NodeId> {
        self.memory_only.clone()
    }

    /// Why the manager runs with less than the full NUMA support (as one node without
    /// memory policies, or with distances it could not use); `None` when it has all of
    /// it.
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
    /// (more than one memory node this process may use, and memory policies work).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::AffinityManager;
    /// let linux = ldnr_affinity::LinuxAffinity::new();
    /// if linux.nodes().len() + linux.memory_only_nodes().len() == 1 {
    ///     assert!(!linux.steers_memory());
    /// }
    /// ```
    pub fn steers_memory(&self) -> bool {
        self.steer
    }

    /// How many times the kernel refused to restore a saved policy (the thread was then
    /// left with the default policy; see the type's docs).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr_affinity::LinuxAffinity::new().restore_failures(), 0);
    /// ```
    pub fn restore_failures(&self) -> u64 {
        self.restore_failures.load(Ordering::Relaxed)
    }

    /// Pins the calling thread to the CPUs of `node` that the thread that made the
    /// manager could run on: never wider than the operator's cpuset or `taskset` mask.
    ///
    /// # Errors
    ///
    /// [`AffinityError::UnknownNode`] if the topology has no such node;
    /// [`AffinityError::NoUsableCpus`] if none of its CPUs is allowed (a memory-only
    /// node, a node outside the cpuset, or the cpuset shrank since);
    /// [`AffinityError::Os`] if the kernel refuses otherwise.
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
        let info = self
            .topology
            .node(node)
            .ok_or(AffinityError::UnknownNode(node))?;
        let cpus: Vec<usize> = match &self.allowed_cpus {
            Some(allowed) => info
                .cpus
                .iter()
                .copied()
                .filter(|c| allowed.binary_search(c).is_ok())
                .collect(),
            None => info.cpus.clone(),
        };
        if cpus.is_empty() {
            return Err(AffinityError::NoUsableCpus(node));
        }
        pin::pin_to_cpus(&cpus).map_err(|e| match e {
            AffinityError::Os(sys::EINVAL) => AffinityError::NoUsableCpus(node),
            other => other,
        })
    }
}

/// The nodes an inherited policy lets memory come from, for a thread whose cpuset allows
/// `allowed`, and whether it binds: `MPOL_BIND` (`numactl --membind`) and the interleave
/// modes name the nodes; the others (default, local, preferred) restrict nothing.
fn inherited_restriction(policy: &MemoryPolicy, allowed: &[NodeId]) -> Option<(Vec<NodeId>, bool)> {
    let mode = policy.mode();
    matches!(
        mode,
        PolicyMode::Bind | PolicyMode::Interleave | PolicyMode::WeightedInterleave
    )
    .then(|| (policy.effective_nodes(allowed), mode == PolicyMode::Bind))
}

/// Tries, on the calling thread, what steering will do: read the policy, set `mode` for
/// `node`, read it back, and put the first policy back. `Err` says what failed.
fn probe(node: NodeId, mode: PolicyMode) -> Result<(), String> {
    let before =
        MemoryPolicy::current().map_err(|e| format!("get_mempolicy is refused ({})", os(e)))?;
    let target = MemoryPolicy::new(mode, 0, &[node]);
    target
        .apply()
        .map_err(|e| format!("set_mempolicy for {node} is refused ({})", os(e)))?;
    let during = MemoryPolicy::current();
    let restored = before.apply();
    if restored.is_err() {
        // Never leave the thread on the probe's node.
        let _ = MemoryPolicy::default_policy().apply();
    }
    match (during, restored) {
        (_, Err(e)) => Err(format!(
            "set_mempolicy refuses to restore the thread's policy ({})",
            os(e)
        )),
        (Err(e), _) => Err(format!(
            "get_mempolicy is refused after set_mempolicy ({})",
            os(e)
        )),
        (Ok(during), _) if during.is_single(mode, node) => Ok(()),
        (Ok(during), _) => Err(format!(
            "set_mempolicy did not keep the policy (set {target:?}, read back {during:?})"
        )),
    }
}

/// An affinity error with the operating system's words for its number.
fn os(e: AffinityError) -> String {
    match e {
        AffinityError::Os(n) => std::io::Error::from_raw_os_error(n).to_string(),
        other => other.to_string(),
    }
}

impl AffinityManager for LinuxAffinity {
    fn current_node(&self) -> NodeId {
        if let Some(node) = self.single {
            return node;
        }
        let first = self.nodes[0];
        if self.thread_nodes.len() <= 1 {
            return self.thread_nodes.first().copied().unwrap_or(first);
        }
        match sys::getcpu() {
            Ok((cpu, node)) => {
                if self.thread_nodes.binary_search(&NodeId(node)).is_ok() {
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
            // One memory node: everything comes from it anyway.
            return Ok(SavedPolicy::UNCHANGED);
        }
        let mine = MemoryPolicy::new(self.mode(), 0, &[node]);
        let below = MemoryPolicy::current()?;
        let change = below != mine;
        // Saved before it is changed: a policy that could not be saved is not changed.
        let saved = saved::push(below, mine.clone())?;
        if change {
            if let Err(e) = mine.apply() {
                saved::discard(saved);
                return Err(e);
            }
        }
        // Where `NodeAlloc` is the global allocator, it now serves this thread from the
        // node's arena; `restore_memory_policy` puts the previous node back.
        crate::node_alloc::set_alloc_node(Some(node));
        Ok(saved)
    }

    fn restore_memory_policy(&self, saved: SavedPolicy) -> Result<(), AffinityError> {
        if saved.is_unchanged() {
            return Ok(());
        }
        saved::pop(saved, |below| {
            below.apply().inspect_err(|_| {
                self.restore_failures.fetch_add(1, Ordering::Relaxed);
                // The saved policy is gone for good; the default is always accepted and
                // names no replica's node.
                let _ = MemoryPolicy::default_policy().apply();
            })
        })
    }
}

#[cfg(test)]
mod tests;
