//! Helpers shared by the public-API loom models (`loom.rs`, `loom_reconfigure.rs`).
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::AtomicUsize as StdAtomicUsize;

use ldnr::{AffinityError, AffinityManager, Dispatch, NodeId, NodeReplicated, SavedPolicy};
use loom::model::Builder;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;

/// A register: writes set or add and return the previous value, reads return the value.
#[derive(Debug, Clone, Default)]
pub struct Reg(pub u64);

#[derive(Debug, Clone)]
pub enum Write {
    /// Replace the value.
    Set(u64),
    /// Add to the value.
    Add(u64),
}

impl Dispatch for Reg {
    type ReadOperation = ();
    type WriteOperation = Write;
    type Response = u64;

    fn dispatch(&self, _: ()) -> u64 {
        self.0
    }

    fn dispatch_mut(&mut self, op: Write) -> u64 {
        let prev = self.0;
        match op {
            Write::Set(v) => self.0 = v,
            Write::Add(v) => self.0 += v,
        }
        prev
    }
}

/// Model-checks `f` with the given preemption bound (`None`: unbounded, an exhaustive
/// search) and a branch limit that fits an execution of the library (a garbage
/// collection or laggard scan alone loads the position words of all `MAX_REPLICAS`
/// slots, and `add_replica` walks every shell three times), and prints how many
/// executions loom explored and how long it took (visible with `--nocapture`).
pub fn check(name: &str, preemptions: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut b = Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = preemptions;
    }
    b.max_branches = b.max_branches.max(10_000);
    let runs = std::sync::Arc::new(StdAtomicUsize::new(0));
    let counter = runs.clone();
    let start = std::time::Instant::now();
    // Reports on the way out, also when an execution fails (how far the search got).
    struct Report<'a> {
        name: &'a str,
        runs: &'a StdAtomicUsize,
        bound: Option<usize>,
        start: std::time::Instant,
    }
    impl Drop for Report<'_> {
        fn drop(&mut self) {
            let runs = self.runs.load(std::sync::atomic::Ordering::Relaxed);
            let runs = if std::thread::panicking() {
                format!("failed in execution {runs}")
            } else {
                format!("{runs} executions")
            };
            eprintln!(
                "loom {}: {runs}, preemption bound {:?}, {:.1?}",
                self.name,
                self.bound,
                self.start.elapsed()
            );
        }
    }
    let _report = Report {
        name,
        runs: &runs,
        bound: b.preemption_bound,
        start,
    };
    b.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
}

pub fn build(replicas: usize, max_threads: usize) -> Arc<NodeReplicated<Reg>> {
    build_of(Reg(0), replicas, max_threads)
}

/// [`build`], with the lone writer's asymmetric barrier (rwlock R5) if `membarrier`
/// (the default, which loom always has), else every write lock fenced.
#[allow(dead_code)]
pub fn build_with(
    replicas: usize,
    max_threads: usize,
    membarrier: bool,
) -> Arc<NodeReplicated<Reg>> {
    build_of_with(Reg(0), replicas, max_threads, membarrier)
}

/// An instance of `initial` with `replicas` replicas on node 0 and a log of four entries.
pub fn build_of<D: Dispatch + Clone + Send + Sync>(
    initial: D,
    replicas: usize,
    max_threads: usize,
) -> Arc<NodeReplicated<D>> {
    build_of_with(initial, replicas, max_threads, true)
}

/// [`build_of`], with the asymmetric barrier if `membarrier`.
fn build_of_with<D: Dispatch + Clone + Send + Sync>(
    initial: D,
    replicas: usize,
    max_threads: usize,
    membarrier: bool,
) -> Arc<NodeReplicated<D>> {
    let nodes = vec![NodeId(0); replicas];
    Arc::new(
        NodeReplicated::builder(initial)
            .replicas(&nodes)
            .log_capacity(4)
            .max_threads(max_threads)
            .membarrier(membarrier)
            .build()
            .expect("a valid configuration"),
    )
}

/// A sum whose writes check that they are cloned one at a time: writes are [`Solo`]s
/// made by one [`Clones`].
#[derive(Debug, Clone, Default)]
pub struct Sum(pub u64);

impl Dispatch for Sum {
    type ReadOperation = ();
    type WriteOperation = Solo;
    type Response = u64;

    fn dispatch(&self, _: ()) -> u64 {
        self.0
    }

    /// Adds, and returns the previous value.
    fn dispatch_mut(&mut self, op: Solo) -> u64 {
        let prev = self.0;
        self.0 += op.add;
        prev
    }
}

/// The writes of one execution, and whether two threads ever cloned one of them at once.
#[derive(Debug)]
pub struct Clones {
    overlap: AtomicBool,
}

/// An addition to a [`Sum`] whose `Clone` asserts that it runs alone.
#[derive(Debug)]
pub struct Solo {
    add: u64,
    /// Raised while a thread clones this write.
    cloning: std::sync::Arc<AtomicBool>,
    clones: std::sync::Arc<Clones>,
}

impl Clones {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            overlap: AtomicBool::new(false),
        })
    }

    /// A write that adds `add`. (The probe's pointers are `std` ones, so that cloning a
    /// write adds no scheduling points beyond the probe's own.)
    pub fn op(self: &std::sync::Arc<Self>, add: u64) -> Solo {
        Solo {
            add,
            cloning: std::sync::Arc::new(AtomicBool::new(false)),
            clones: self.clone(),
        }
    }

    /// Asserts that no write was cloned by two threads at once (log L4, L6). Checked
    /// before the values: the library catches a panicking clone (panic isolation), so a
    /// clone that found another under way may have cost a replica that entry.
    pub fn assert_alone(&self) {
        assert!(
            !self.overlap.load(Ordering::Relaxed),
            "two threads cloned one logged write at the same time (log L4/L6)"
        );
    }
}

impl Clone for Solo {
    /// The log hands a thread a `&Solo` to clone only while no other thread clones the
    /// same entry (the clone lock, L4, or the sole-replica path, L6), which is what lets
    /// a `WriteOperation` be `Send` without `Sync`. The flag is loom's and the clone
    /// yields in the middle, so a second clone of the same entry, if the protocol allows
    /// one, is explored inside the first one at no preemption cost.
    fn clone(&self) -> Self {
        if self.cloning.swap(true, Ordering::SeqCst) {
            self.clones.overlap.store(true, Ordering::SeqCst);
            panic!("two threads clone one logged write at the same time");
        }
        loom::thread::yield_now();
        self.cloning.store(false, Ordering::SeqCst);
        Solo {
            add: self.add,
            cloning: self.cloning.clone(),
            clones: self.clones.clone(),
        }
    }
}

/// Checks that `(added, response)` pairs of `Add` operations, whose responses are the
/// previous values, come from one serial order: sorted by response, each response is
/// the sum of the earlier operations.
pub fn assert_serial(mut pairs: Vec<(u64, u64)>) {
    pairs.sort_unstable_by_key(|&(_, r)| r);
    let mut sum = 0;
    for &(add, r) in &pairs {
        assert_eq!(r, sum, "responses match no serial order: {pairs:?}");
        sum += add;
    }
}

/// A counter that threads wait on by blocking (a loom mutex and condition variable),
/// not by spinning: a blocked thread is not runnable, so two waiters cannot make loom's
/// scheduler oscillate between them while the thread they wait for is preempted
/// (tokio-rs/loom#53), and a model with three threads can afford a preemption bound.
#[derive(Debug)]
pub struct Latch {
    count: loom::sync::Mutex<usize>,
    changed: loom::sync::Condvar,
}

impl Latch {
    pub fn new() -> Self {
        Self {
            count: loom::sync::Mutex::new(0),
            changed: loom::sync::Condvar::new(),
        }
    }

    /// Counts one more.
    pub fn count_up(&self) {
        *self.count.lock().unwrap() += 1;
        self.changed.notify_all();
    }

    /// Blocks until the count is at least `n`.
    pub fn wait_for(&self, n: usize) {
        let mut count = self.count.lock().unwrap();
        while *count < n {
            count = self.changed.wait(count).unwrap();
        }
    }
}

/// A register like [`Reg`] with a [`Gate`] that lets a model order its threads around
/// the clone of a replica and around reads, by data rather than by preemptions: once the
/// gate is armed, a `Clone` counts itself in [`Gate::cloning`] and blocks until
/// [`Gate::arrived`] reaches the number the gate was made with; a read (`dispatch`)
/// counts itself in [`Gate::reads`] and yields in the middle. A reconfiguration that
/// clones a replica holds the clone source frozen meanwhile, so the source's threads run
/// a chosen stretch of their operations on the stand-in, and a writer can start while a
/// reader is inside its read section, at no preemption cost.
#[derive(Debug)]
pub struct Gated {
    pub value: u64,
    pub gate: std::sync::Arc<Gate>,
}

/// The gate of a [`Gated`] register, shared by its clones.
#[derive(Debug)]
pub struct Gate {
    armed: AtomicBool,
    needed: usize,
    /// Armed clones that have started.
    pub cloning: Latch,
    /// Arrivals that armed clones wait for.
    pub arrived: Latch,
    /// Reads that have started.
    pub reads: Latch,
}

impl Gate {
    pub fn new(needed: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            armed: AtomicBool::new(false),
            needed,
            cloning: Latch::new(),
            arrived: Latch::new(),
            reads: Latch::new(),
        })
    }

    /// From now on, clones wait for the arrivals.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::Release);
    }

    fn pass(&self) {
        if self.armed.load(Ordering::Acquire) {
            self.cloning.count_up();
            self.arrived.wait_for(self.needed);
        }
    }
}

impl Gated {
    pub fn new(gate: &std::sync::Arc<Gate>) -> Self {
        Self {
            value: 0,
            gate: gate.clone(),
        }
    }
}

impl Clone for Gated {
    /// Passes the gate first.
    fn clone(&self) -> Self {
        self.gate.pass();
        Gated {
            value: self.value,
            gate: self.gate.clone(),
        }
    }
}

impl Dispatch for Gated {
    type ReadOperation = ();
    type WriteOperation = Write;
    type Response = u64;

    /// Counts the read, and yields inside it.
    fn dispatch(&self, _: ()) -> u64 {
        let value = self.value;
        self.gate.reads.count_up();
        loom::thread::yield_now();
        value
    }

    fn dispatch_mut(&mut self, op: Write) -> u64 {
        let mut reg = Reg(self.value);
        let prev = reg.dispatch_mut(op);
        self.value = reg.0;
        prev
    }
}

/// A machine of two nodes on which every thread runs on node 0.
#[derive(Debug)]
pub struct OnNodeZero;

impl AffinityManager for OnNodeZero {
    fn current_node(&self) -> NodeId {
        NodeId(0)
    }

    fn nodes(&self) -> Vec<NodeId> {
        vec![NodeId(0), NodeId(1)]
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if node.0 < 2 {
            Ok(SavedPolicy::UNCHANGED)
        } else {
            Err(AffinityError::UnknownNode(node))
        }
    }

    fn restore_memory_policy(&self, _saved: SavedPolicy) -> Result<(), AffinityError> {
        Ok(())
    }
}

/// An instance of `initial` on [`OnNodeZero`]'s two nodes, with replicas on `nodes` and a
/// log of four entries: threads register with the replicas of node 0 first.
pub fn build_on<D: Dispatch + Clone + Send + Sync>(
    initial: D,
    nodes: &[usize],
    max_threads: usize,
) -> Arc<NodeReplicated<D>> {
    let nodes: Vec<NodeId> = nodes.iter().map(|&n| NodeId(n)).collect();
    Arc::new(
        NodeReplicated::builder(initial)
            .replicas(&nodes)
            .log_capacity(4)
            .max_threads(max_threads)
            .affinity(std::sync::Arc::new(OnNodeZero))
            .build()
            .expect("a valid configuration"),
    )
}
