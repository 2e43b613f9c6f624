//! Helpers shared by the public-API loom models (`loom.rs`, `loom_reconfigure.rs`).
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::AtomicUsize as StdAtomicUsize;

use ldnr::{Dispatch, NodeId, NodeReplicated};
use loom::model::Builder;
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
    b.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    eprintln!(
        "loom {name}: {} executions, preemption bound {:?}, {:.1?}",
        runs.load(std::sync::atomic::Ordering::Relaxed),
        b.preemption_bound,
        start.elapsed()
    );
}

pub fn build(replicas: usize, max_threads: usize) -> Arc<NodeReplicated<Reg>> {
    let nodes = vec![NodeId(0); replicas];
    Arc::new(
        NodeReplicated::builder(Reg(0))
            .replicas(&nodes)
            .log_capacity(4)
            .max_threads(max_threads)
            .build()
            .expect("a valid configuration"),
    )
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
