//! Helpers shared by the public-API loom models (`loom.rs`, `loom_reconfigure.rs`).
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::AtomicUsize as StdAtomicUsize;

use ldnr::{Dispatch, NodeId, NodeReplicated};
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

/// An instance of `initial` with `replicas` replicas on node 0 and a log of four entries.
pub fn build_of<D: Dispatch + Clone + Send + Sync>(
    initial: D,
    replicas: usize,
    max_threads: usize,
) -> Arc<NodeReplicated<D>> {
    let nodes = vec![NodeId(0); replicas];
    Arc::new(
        NodeReplicated::builder(initial)
            .replicas(&nodes)
            .log_capacity(4)
            .max_threads(max_threads)
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
