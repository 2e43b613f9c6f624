//! NUMA nodes, pretend or real, and where each worker thread runs.
//!
//! The thesis' machine has four nodes; this one may have one. The experiments run LD-NR
//! under one of two affinity managers from [`ldnr_affinity`], chosen with the driver's
//! `--affinity` ([`Affinity`]):
//!
//! - **simulated** ([`SimulatedAffinity`]): as many pretend nodes as asked. Each worker
//!   declares its node with [`SimulatedAffinity::enter`], on the manager the systems were
//!   built with, before it registers. Memory placement is a no-op: every "node" allocates
//!   from the same memory. So the experiments exercise the dispatcher, the replica set and
//!   the log exactly as on a NUMA machine, without the locality that real nodes would add.
//! - **linux** ([`LinuxAffinity`]): the machine's own nodes (those with memory and with
//!   CPUs this process may use). Each worker is pinned to its node's CPUs, LD-NR matches it
//!   by the CPU it runs on, and each replica's memory is placed on the replica's node.
//!
//! [`Placement`] owns the manager and spreads worker threads over its nodes round-robin
//! (thread `t` on the `t % nodes`-th node). With pinning on, it pins each worker to one
//! CPU of its node (best effort): with simulated nodes the CPUs this process may use are
//! split into one contiguous block per node, with linux a node's block is its own CPUs;
//! threads beyond a block's size wrap around (oversubscription). With pinning off, linux
//! workers are still pinned to their node's CPUs (any of them), so that they stay on the
//! node they were placed on.

use std::sync::Arc;

use ldnr::{AffinityManager, NodeId};
use ldnr_affinity::{
    allowed_cpus, pin_to_cpu, pin_to_cpus, LinuxAffinity, SimulatedAffinity, Topology,
};

/// Which affinity manager LD-NR runs under (`--affinity`).
///
/// # Examples
///
/// ```
/// use ldnr_testkit::nodes::Affinity;
///
/// // More nodes than any machine has: pretend ones.
/// assert_eq!(Affinity::default_for(usize::MAX), Affinity::Simulated);
/// assert_eq!(Affinity::default_for(1), Affinity::Linux);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Affinity {
    /// Pretend nodes: each worker declares its node; memory placement is a no-op.
    #[default]
    Simulated,
    /// The machine's nodes: each worker is pinned to its node's CPUs; replica memory is
    /// placed on the replica's node.
    Linux,
}

impl Affinity {
    /// The default for an experiment on `nodes` nodes: [`Affinity::Simulated`] when the
    /// machine has fewer ([`real_nodes`]), else [`Affinity::Linux`].
    pub fn default_for(nodes: usize) -> Self {
        if nodes > real_nodes() {
            Affinity::Simulated
        } else {
            Affinity::Linux
        }
    }
}

/// The machine's nodes a worker can run on and a replica can live on: those with memory
/// and with CPUs this process may use, each with those CPUs. Where that leaves none (the
/// process's CPUs are unknown), every node with memory, with all of its CPUs.
fn machine_nodes(topology: &Topology) -> Vec<(NodeId, Vec<usize>)> {
    let memory = topology.memory_nodes();
    let all = || -> Vec<(NodeId, Vec<usize>)> {
        memory
            .iter()
            .map(|&n| (n, topology.cpus_of(n).to_vec()))
            .collect()
    };
    let Ok(allowed) = allowed_cpus() else {
        return all();
    };
    let usable: Vec<(NodeId, Vec<usize>)> = memory
        .iter()
        .map(|&n| {
            let cpus = topology.cpus_of(n);
            (
                n,
                allowed
                    .iter()
                    .copied()
                    .filter(|c| cpus.contains(c))
                    .collect(),
            )
        })
        .filter(|(_, cpus): &(NodeId, Vec<usize>)| !cpus.is_empty())
        .collect();
    if usable.is_empty() {
        all()
    } else {
        usable
    }
}

/// The number of NUMA nodes of this machine a worker can run on and a replica can live on
/// (with memory and with CPUs this process may use), from [`Topology::detect`]; 1 where
/// the operating system reports none.
///
/// # Examples
///
/// ```
/// assert!(ldnr_testkit::nodes::real_nodes() >= 1);
/// ```
pub fn real_nodes() -> usize {
    machine_nodes(&Topology::detect()).len().max(1)
}

/// The number of CPUs this process may run on.
///
/// # Examples
///
/// ```
/// assert!(ldnr_testkit::nodes::cores() >= 1);
/// ```
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The manager a placement's systems are built with.
#[derive(Debug, Clone)]
enum Manager {
    Simulated(Arc<SimulatedAffinity>),
    Linux(Arc<LinuxAffinity>),
}

/// The affinity manager of a run, which node each worker thread is on, and which CPU it
/// is pinned to.
///
/// Build LD-NR with [`Placement::manager`] and call [`Placement::enter`] on each worker
/// thread before it registers: the worker is then matched to a replica on its node.
///
/// # Examples
///
/// ```
/// use ldnr::{AffinityManager, NodeId};
/// use ldnr_testkit::nodes::{Affinity, Placement};
///
/// let p = Placement::new(Affinity::Simulated, 2, false);
/// assert_eq!(p.nodes(), [NodeId(0), NodeId(1)]);
/// assert_eq!(p.node_of(0), NodeId(0));
/// assert_eq!(p.node_of(3), NodeId(1));
/// assert_eq!(p.active_nodes(1), vec![NodeId(0)]);
/// assert_eq!(p.active_nodes(5), vec![NodeId(0), NodeId(1)]);
/// let manager = p.manager();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         p.enter(3);
///         assert_eq!(manager.current_node(), NodeId(1));
///     });
/// });
/// ```
#[derive(Debug, Clone)]
pub struct Placement {
    manager: Manager,
    /// The nodes workers are spread over, ascending.
    nodes: Vec<NodeId>,
    /// Per node, the CPUs its workers are pinned to (empty: no pinning).
    cpus: Vec<Vec<usize>>,
    /// Whether each worker is pinned to one CPU.
    pin: bool,
}

impl Placement {
    /// A fresh manager of kind `affinity` and `nodes` nodes (at least one): pretend
    /// ones, or the first `nodes` of the machine's (all of them if it has fewer). `pin`
    /// pins each worker to one CPU of its node.
    pub fn new(affinity: Affinity, nodes: usize, pin: bool) -> Self {
        let nodes = nodes.max(1);
        match affinity {
            Affinity::Simulated => {
                let all: Vec<usize> = if pin {
                    allowed_cpus().unwrap_or_default()
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
                Self {
                    manager: Manager::Simulated(Arc::new(SimulatedAffinity::new(nodes))),
                    nodes: (0..nodes).map(NodeId).collect(),
                    cpus,
                    pin,
                }
            }
            Affinity::Linux => {
                let linux = LinuxAffinity::new();
                let mut machine = machine_nodes(linux.topology());
                // Where the manager runs as one node (no memory policies), only that one.
                let offered = linux.nodes();
                machine.retain(|(n, _)| offered.contains(n));
                machine.truncate(nodes);
                if machine.is_empty() {
                    // No node with memory: LD-NR will say so when it is built.
                    machine = linux.nodes().into_iter().map(|n| (n, Vec::new())).collect();
                }
                let (nodes, cpus) = machine.into_iter().unzip();
                Self {
                    manager: Manager::Linux(Arc::new(linux)),
                    nodes,
                    cpus,
                    pin,
                }
            }
        }
    }

    /// Which kind of manager it is.
    pub fn affinity(&self) -> Affinity {
        match self.manager {
            Manager::Simulated(_) => Affinity::Simulated,
            Manager::Linux(_) => Affinity::Linux,
        }
    }

    /// The manager, for [`ldnr::Builder::affinity`]: every system of the run is built
    /// with this one, which is the one [`Placement::enter`] tells a worker's node.
    pub fn manager(&self) -> Arc<dyn AffinityManager> {
        match &self.manager {
            Manager::Simulated(sim) => sim.clone(),
            Manager::Linux(linux) => linux.clone(),
        }
    }

    /// The nodes workers are spread over, ascending.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The node of worker `t`.
    pub fn node_of(&self, t: usize) -> NodeId {
        self.nodes[t % self.nodes.len()]
    }

    /// The CPU worker `t` is pinned to, if pinning is on.
    pub fn cpu_of(&self, t: usize) -> Option<usize> {
        let block = &self.cpus[t % self.nodes.len()];
        (self.pin && !block.is_empty()).then(|| block[(t / self.nodes.len()) % block.len()])
    }

    /// The nodes that have at least one of `threads` workers, ascending.
    pub fn active_nodes(&self, threads: usize) -> Vec<NodeId> {
        self.nodes[..threads.min(self.nodes.len())].to_vec()
    }

    /// Called on worker `t`'s thread before it registers: pins it (best effort) and
    /// declares its node.
    pub fn enter(&self, t: usize) {
        self.enter_at(t % self.nodes.len(), self.cpu_of(t));
    }

    /// Puts the calling thread on `node` (pinned to the node's CPUs under linux, best
    /// effort), as if it were a worker of that node; nothing for a node the placement
    /// does not have.
    pub fn enter_node(&self, node: NodeId) {
        if let Some(k) = self.nodes.iter().position(|&n| n == node) {
            self.enter_at(k, None);
        }
    }

    /// Puts the calling thread on the `k`-th node, pinned to `cpu` if given.
    fn enter_at(&self, k: usize, cpu: Option<usize>) {
        // Best effort: a refused pin leaves the thread where the scheduler puts it.
        match (&self.manager, cpu) {
            (_, Some(cpu)) => {
                let _ = pin_to_cpu(cpu);
            }
            (Manager::Linux(_), None) if !self.cpus[k].is_empty() => {
                let _ = pin_to_cpus(&self.cpus[k]);
            }
            _ => {}
        }
        if let Manager::Simulated(sim) = &self.manager {
            sim.enter(self.nodes[k])
                .expect("the placement's nodes are the manager's");
        }
    }
}
