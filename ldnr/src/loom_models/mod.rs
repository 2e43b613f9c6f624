//! Loom models of the crate-internal protocols (compiled only with
//! `RUSTFLAGS="--cfg ldnr_loom"` in test builds).
//!
//! Run with
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg ldnr_loom" \
//!     cargo test --release -p ldnr --lib loom_models -- --test-threads=1
//! ```
//!
//! Every model sets its own preemption bound in code, so CI needs no `LOOM_*`
//! environment variable. The models use the crate's own types, whose atomics and
//! `UnsafeCell`s come from `crate::sync` and are therefore loom's under this cfg:
//!
//! - `log_*`: reservation, write, in-order read, publish and garbage collection of the
//!   shared log with wrap-around (L1–L3, L5), and drop accounting (L5);
//! - `rwlock_*`: the Dekker fence pair of the reader-writer lock (R1) and its stamp
//!   (R3); loom's `UnsafeCell` access tracking flags any read that overlaps a write;
//! - `combining_*`: the real write path (`Shared::write`: the context state machine and
//!   pending stack, C1–C2, the combiner lock, the log, the write lock), on an instance's
//!   shared state built from its parts;
//! - `readers_*`: the per-replica reader sets (R2) — a reader that switches sets between
//!   replicas while writers of both take their write locks, and the real read path
//!   (`Shared::read`, `join_readers`) of a thread that `follow`s its node to another
//!   replica and of one whose replica is frozen as a clone source (read from the
//!   stand-in, replica P6) while the replicas' combiners write; and a writer alone in
//!   its replica's set that skips the fence while a thread joins with the heavy barrier
//!   (R5; `sync::Asymmetric` is on in every model built on shared state, and modeled as
//!   a read-modify-write of one word per reader set by both sides), or, where the kernel
//!   refused the barrier, through the replica's combiner lock;
//! - `policy_*`: the replication policy's hand-over (`policy::run_rounds`: one run at a
//!   time, no thread event lost between a finishing run and an event raised meanwhile)
//!   and the attention word (taking the policy flag never clears a concurrent poison;
//!   checked to fail with a non-atomic clear).
//!
//! Models with three threads in which two can spin on the third run with a preemption
//! bound of 1. With two threads that can both spin (yielding) on a third, preempted one,
//! loom's scheduler oscillates between the two spinners and an execution runs into the
//! branch limit (tokio-rs/loom#53, open in loom 0.7.3): at bound 2
//! `rwlock_one_writer_two_readers` and `combining_three_threads` fail with "Model
//! exceeded maximum number of branches" (with limits from 1 000 to 10 000 branches; a
//! larger limit only lets loom enumerate ever longer oscillations). This is a limit of
//! the checker, not a livelock of the code: the oscillating schedule simply never runs
//! the thread the spinners wait for. Two-thread models have no such schedule and run
//! with bounds of 2 to 5, and so does `readers_reader_switches_replicas` (three threads,
//! bound 3): its two writers wait only for the reader, whose announcement names one
//! replica at a time, and the reader, while it waits for a writer, announces nothing.
//!
//! Each `readers_*` model's comment says which change to the library it catches: each
//! was checked by running the model against a copy of the library with that one change
//! made (a loom "Causality violation" on a replica's data, in the execution given).

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::AtomicUsize as StdAtomicUsize;

use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;

use crate::affinity::{AffinityError, AffinityManager, Memory, NoAffinity, NodeId, SavedPolicy};
use crate::dispatch::Dispatch;
use crate::dispatcher::Dispatcher;
use crate::log::Log;
use crate::poison::Poison;
use crate::replica::context::EMPTY;
use crate::replica::rwlock::{ReaderSet, ReaderSlot, RwLock};
use crate::replica::ReplicaSet;
use crate::shared::Shared;
use crate::sync::{Ordering, UnsafeCell};

/// Model-checks `f` with the given preemption bound (`None`: unbounded, an exhaustive
/// search) and prints how many executions loom explored and how long it took (visible
/// with `--nocapture`), also when an execution fails (in which one).
///
/// `LOOM_MAX_PREEMPTIONS`, if set, overrides the bound (for deeper runs by hand).
fn check(preemptions: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut b = Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = preemptions;
    }
    let runs = std::sync::Arc::new(StdAtomicUsize::new(0));
    let counter = runs.clone();
    // Reports on the way out, also when an execution fails.
    struct Report<'a> {
        runs: &'a StdAtomicUsize,
        bound: Option<usize>,
        start: std::time::Instant,
    }
    impl Drop for Report<'_> {
        fn drop(&mut self) {
            let runs = self.runs.load(Ordering::Relaxed);
            let runs = if std::thread::panicking() {
                std::format!("failed in execution {runs}")
            } else {
                std::format!("{runs} executions")
            };
            std::eprintln!(
                "loom: {runs}, preemption bound {:?}, {:.1?}",
                self.bound,
                self.start.elapsed()
            );
        }
    }
    let _report = Report {
        runs: &runs,
        bound: b.preemption_bound,
        start: std::time::Instant::now(),
    };
    b.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
}

/// Log capacity of the models: the smallest the crate allows.
const LOG_CAP: usize = 4;

mod combining;
mod log;
mod policy;
mod readers;
mod rwlock;
