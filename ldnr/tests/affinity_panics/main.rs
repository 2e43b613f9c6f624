//! A panicking [`AffinityManager`], method by method and call site by call site (crate
//! docs, "Panics"): in `build`, `register`, `add_replica` and `remove_replica` the panic
//! propagates and nothing changes; `distance` is never called on the operation paths;
//! `set_memory_node` and `restore_memory_policy` around a batch poison the instance, and
//! every write operation is still dropped exactly once.
//!
//! (`a_panicking_affinity_manager_poisons_the_instance` in `tests/panics.rs` covers the
//! single-threaded poisoning by `set_memory_node`.)
//!
//! One test binary: this file holds the manager and the structure the tests share; the
//! tests are in `topology` (`current_node`, `nodes`, `distance`) and `memory_policy`
//! (`set_memory_node`, `restore_memory_policy`).

mod memory_policy;
mod topology;

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use ldnr::{
    AffinityError, AffinityManager, Dispatch, Error, NodeId, NodeReplicated, ReplicaId,
    SavedPolicy, ThreadToken,
};
use ldnr_testkit::{message, panic_message, quiet_panics, watchdog, LIMIT};

/// The message every deliberate panic here starts with.
const TAG: &str = "ldnr-affinity-test:";

/// How long a bounded wait in a test waits before it fails.
const WAIT: Duration = Duration::from_secs(60);

/// Spins (yielding) until `cond` holds; fails loudly after [`WAIT`].
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

// ---------------------------------------------------------------------------------------
// The affinity manager: two pretend nodes, one panic switch per method.

thread_local! {
    /// The node the manager reports for the calling thread.
    static NODE: Cell<usize> = const { Cell::new(0) };
}

#[derive(Debug, Clone, Copy)]
enum Method {
    CurrentNode,
    Nodes,
    Distance,
    SetMemoryNode,
    RestoreMemoryPolicy,
}

/// The message of `m`'s deliberate panic.
fn boom(m: Method) -> String {
    format!("{TAG} {m:?} panicked")
}

/// Nodes 0 and 1. Each method panics with [`boom`] once armed: after `after` more calls,
/// then on every call until disarmed.
#[derive(Debug)]
struct Manager {
    /// Per method: -1 disarmed, 0 panics, n > 0 passes n more calls.
    countdown: [AtomicIsize; 5],
}

impl Manager {
    fn new() -> Arc<Self> {
        Arc::new(Manager {
            countdown: std::array::from_fn(|_| AtomicIsize::new(-1)),
        })
    }

    fn arm(&self, m: Method, after: isize) {
        self.countdown[m as usize].store(after, SeqCst);
    }

    fn disarm(&self, m: Method) {
        self.countdown[m as usize].store(-1, SeqCst);
    }

    fn hit(&self, m: Method) {
        let prev =
            self.countdown[m as usize].fetch_update(SeqCst, SeqCst, |v| (v > 0).then_some(v - 1));
        if prev == Err(0) {
            panic!("{}", boom(m));
        }
    }
}

impl AffinityManager for Manager {
    fn current_node(&self) -> NodeId {
        self.hit(Method::CurrentNode);
        NodeId(NODE.with(Cell::get))
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.hit(Method::Nodes);
        vec![NodeId(0), NodeId(1)]
    }

    fn distance(&self, a: NodeId, b: NodeId) -> u32 {
        self.hit(Method::Distance);
        if a == b {
            10
        } else {
            20
        }
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        self.hit(Method::SetMemoryNode);
        if node.0 < 2 {
            // Something to restore, so that `restore_memory_policy` is called.
            Ok(SavedPolicy(node.0 as u64))
        } else {
            Err(AffinityError::UnknownNode(node))
        }
    }

    fn restore_memory_policy(&self, saved: SavedPolicy) -> Result<(), AffinityError> {
        assert!(!saved.is_unchanged());
        self.hit(Method::RestoreMemoryPolicy);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The structure: a journal of write ids, counting its own instances and those of its
// write operations.

/// Live-instance counters shared by a test's structure and operations.
#[derive(Default)]
struct Probe {
    /// Live `Journal`s.
    journals: AtomicIsize,
    /// `Journal` clones made.
    clones: AtomicUsize,
    /// Live `Push` operations.
    ops: AtomicIsize,
    /// Set if a counter ever went below zero (something dropped twice).
    underflow: AtomicBool,
    /// Run (once) by the next `Journal::clone`.
    clone_hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Probe {
    fn new() -> Arc<Self> {
        Arc::new(Probe::default())
    }

    fn dec(&self, counter: &AtomicIsize) {
        if counter.fetch_sub(1, SeqCst) <= 0 {
            self.underflow.store(true, SeqCst);
        }
    }

    /// Asserts that every journal and operation was dropped exactly once.
    fn assert_all_dropped(&self) {
        assert!(!self.underflow.load(SeqCst), "something was dropped twice");
        assert_eq!(self.ops.load(SeqCst), 0, "live write operations");
        assert_eq!(self.journals.load(SeqCst), 0, "live journals");
    }
}

struct Journal {
    applied: Vec<u64>,
    probe: Arc<Probe>,
}

impl Journal {
    fn new(probe: &Arc<Probe>) -> Self {
        probe.journals.fetch_add(1, SeqCst);
        Journal {
            applied: Vec::new(),
            probe: Arc::clone(probe),
        }
    }
}

impl Clone for Journal {
    fn clone(&self) -> Self {
        let hook = self.probe.clone_hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.probe.clones.fetch_add(1, SeqCst);
        self.probe.journals.fetch_add(1, SeqCst);
        Journal {
            applied: self.applied.clone(),
            probe: Arc::clone(&self.probe),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.probe.dec(&self.probe.journals);
    }
}

/// Appends `id` to the journal.
struct Push {
    id: u64,
    probe: Arc<Probe>,
}

impl Push {
    fn new(id: u64, probe: &Arc<Probe>) -> Self {
        probe.ops.fetch_add(1, SeqCst);
        Push {
            id,
            probe: Arc::clone(probe),
        }
    }
}

impl Clone for Push {
    fn clone(&self) -> Self {
        Push::new(self.id, &self.probe)
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        self.probe.dec(&self.probe.ops);
    }
}

#[derive(Debug, PartialEq)]
enum Resp {
    /// The position of a push in the journal (its place in the log).
    At(usize),
    All(Vec<u64>),
}

impl Dispatch for Journal {
    type ReadOperation = ();
    type WriteOperation = Push;
    type Response = Resp;

    fn dispatch(&self, (): ()) -> Resp {
        Resp::All(self.applied.clone())
    }

    fn dispatch_mut(&mut self, op: Push) -> Resp {
        self.applied.push(op.id);
        Resp::At(self.applied.len() - 1)
    }
}

type Nr = NodeReplicated<Journal>;

/// Builds an instance on `manager` with one replica per node of `nodes`.
fn build(probe: &Arc<Probe>, manager: &Arc<Manager>, nodes: &[usize]) -> Nr {
    let nodes: Vec<NodeId> = nodes.iter().copied().map(NodeId).collect();
    NodeReplicated::builder(Journal::new(probe))
        .replicas(&nodes)
        .affinity(Arc::clone(manager) as Arc<dyn AffinityManager>)
        .build()
        .expect("build")
}

/// Runs `f` with the calling thread on pretend node `node` (restored also on a panic).
fn on_node<T>(node: usize, f: impl FnOnce() -> T) -> T {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            NODE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(NODE.with(|c| c.replace(node)));
    f()
}

/// Registers the calling thread as if it ran on `node`.
fn register_on(nr: &Nr, node: usize) -> ThreadToken {
    on_node(node, || nr.register()).expect("register")
}

/// Writes `id` through `tkn`; returns its position in the journal.
fn write(nr: &Nr, probe: &Arc<Probe>, id: u64, tkn: ThreadToken) -> usize {
    match nr.execute_mut(Push::new(id, probe), tkn) {
        Resp::At(p) => p,
        other => panic!("unexpected {other:?}"),
    }
}

fn read(nr: &Nr, tkn: ThreadToken) -> Vec<u64> {
    match nr.execute((), tkn) {
        Resp::All(v) => v,
        other => panic!("unexpected {other:?}"),
    }
}

/// Registers (on the calling thread) until it holds a token matched to every live
/// replica, and returns one per replica. No reconfiguration may run meanwhile.
fn tokens_per_replica(nr: &Nr) -> Vec<ThreadToken> {
    let mut seen: Vec<ReplicaId> = Vec::new();
    let mut out = Vec::new();
    for _ in 0..64 {
        let infos = nr.replicas();
        let Some(missing) = infos.iter().find(|r| !seen.contains(&r.id)) else {
            return out;
        };
        let tkn = register_on(nr, missing.node.0);
        let id = nr.replica_of(tkn).expect("matched");
        if !seen.contains(&id) {
            seen.push(id);
            out.push(tkn);
        }
    }
    panic!(
        "could not match a token to every replica: {:?}",
        nr.replicas()
    );
}

/// Reads every replica through `tokens` (one per live replica, checked with
/// `replica_of`), asserts that all agree and that the journal holds each of `ids`
/// exactly once and nothing else, and returns it.
fn agreed_journal(nr: &Nr, tokens: &[ThreadToken], ids: &[u64]) -> Vec<u64> {
    let mut live: Vec<ReplicaId> = nr.replicas().iter().map(|r| r.id).collect();
    let mut matched: Vec<ReplicaId> = tokens.iter().map(|&t| nr.replica_of(t).unwrap()).collect();
    live.sort_unstable_by_key(|r| r.get());
    matched.sort_unstable_by_key(|r| r.get());
    assert_eq!(matched, live, "one token per live replica");
    let first = read(nr, tokens[0]);
    for &t in &tokens[1..] {
        assert_eq!(
            read(nr, t),
            first,
            "replica {:?} diverged",
            nr.replica_of(t)
        );
    }
    let (mut got, mut want) = (first.clone(), ids.to_vec());
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "every completed write exactly once, nothing else"
    );
    first
}

/// Asserts that `f` panics with `m`'s deliberate panic.
fn assert_boom<R>(m: Method, f: impl FnOnce() -> R) {
    assert_eq!(panic_message(f), boom(m));
}

/// Asserts that `nr` is poisoned: operations panic, reconfigurations fail.
fn assert_poisoned(nr: &Nr, probe: &Arc<Probe>, tkn: ThreadToken) {
    let msg = panic_message(|| nr.execute_mut(Push::new(u64::MAX, probe), tkn));
    assert!(msg.contains("poisoned"), "execute_mut: {msg}");
    let msg = panic_message(|| nr.execute((), tkn));
    assert!(msg.contains("poisoned"), "execute: {msg}");
    assert_eq!(nr.add_replica(NodeId(0)), Err(Error::Poisoned));
    assert_eq!(nr.remove_replica(nr.replicas()[0].id), Err(Error::Poisoned));
}

/// A test body under the watchdog, with the deliberate panics kept quiet.
fn run(what: &'static str, f: impl FnOnce() + Send + 'static) {
    quiet_panics(&[TAG, "ldnr: this instance is poisoned"]);
    watchdog(what, LIMIT, f);
}
