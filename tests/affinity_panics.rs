//! A panicking [`AffinityManager`], method by method and call site by call site (crate
//! docs, "Panics"): in `build`, `register`, `add_replica` and `remove_replica` the panic
//! propagates and nothing changes; `distance` is never called on the operation paths;
//! `set_memory_node` and `restore_memory_policy` around a batch poison the instance, and
//! every write operation is still dropped exactly once.
//!
//! (`a_panicking_affinity_manager_poisons_the_instance` in `tests/panics.rs` covers the
//! single-threaded poisoning by `set_memory_node`.)

mod common;

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex, Once};
use std::time::{Duration, Instant};

use common::{message, panic_message, watchdog, LIMIT};
use ldnr::{
    AffinityError, AffinityManager, Dispatch, Error, NodeId, NodeReplicated, ReplicaId,
    SavedPolicy, ThreadToken,
};

/// The message every deliberate panic here starts with.
const TAG: &str = "ldnr-affinity-test:";

/// Keeps the deliberate panics and the poisoned instances' panics out of the output.
fn quiet_deliberate_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let msg = message(info.payload());
            if !msg.starts_with(TAG) && !msg.starts_with("ldnr: this instance is poisoned") {
                default(info);
            }
        }));
    });
}

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

    fn restore_memory_policy(&self, saved: SavedPolicy) {
        assert!(!saved.is_unchanged());
        self.hit(Method::RestoreMemoryPolicy);
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
    quiet_deliberate_panics();
    watchdog(what, LIMIT, f);
}

// ---------------------------------------------------------------------------------------
// `current_node`

#[test]
fn current_node_panicking_in_register_changes_nothing() {
    run("current_node in register", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr: Nr = NodeReplicated::builder(Journal::new(&probe))
            .replicas(&[NodeId(0), NodeId(1)])
            .affinity(m.clone())
            .max_threads(2)
            .build()
            .unwrap();
        let t0 = register_on(&nr, 0);
        assert_eq!(write(&nr, &probe, 1, t0), 0);
        let before = nr.replicas();
        m.arm(Method::CurrentNode, 0);
        assert_boom(Method::CurrentNode, || nr.register());
        assert_eq!(nr.replicas(), before, "thread counts unchanged");
        m.disarm(Method::CurrentNode);
        // At the thread limit of 2: the panicking registration took no slot.
        let t1 = register_on(&nr, 1);
        assert_eq!(nr.replica_of(t1), Some(before[1].id));
        assert_eq!(nr.replicas().iter().map(|r| r.threads).sum::<usize>(), 2);
        assert_eq!(write(&nr, &probe, 2, t0), 1);
        assert_eq!(write(&nr, &probe, 3, t1), 2);
        assert_eq!(agreed_journal(&nr, &[t0, t1], &[1, 2, 3]), [1, 2, 3]);
    });
}

#[test]
fn current_node_panicking_in_build_without_replicas_panics_build() {
    run("current_node in build", || {
        let (probe, m) = (Probe::new(), Manager::new());
        m.arm(Method::CurrentNode, 0);
        assert_boom(Method::CurrentNode, || {
            NodeReplicated::builder(Journal::new(&probe))
                .affinity(m.clone())
                .build()
        });
        probe.assert_all_dropped();
        // The same builder works with the switch off (the default replica on node 1).
        m.disarm(Method::CurrentNode);
        let nr = on_node(1, || {
            NodeReplicated::builder(Journal::new(&probe))
                .affinity(m.clone())
                .build()
                .unwrap()
        });
        assert_eq!(nr.replicas()[0].node, NodeId(1));
    });
}

// ---------------------------------------------------------------------------------------
// `nodes`

#[test]
fn nodes_panicking_in_build_panics_build() {
    run("nodes in build", || {
        let (probe, m) = (Probe::new(), Manager::new());
        m.arm(Method::Nodes, 0);
        assert_boom(Method::Nodes, || build(&probe, &m, &[0, 1]));
        probe.assert_all_dropped();
    });
}

#[test]
fn nodes_panicking_in_add_replica_changes_nothing() {
    run("nodes in add_replica", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = build(&probe, &m, &[0, 1]);
        let tokens = tokens_per_replica(&nr);
        let mut ids = Vec::new();
        for (i, &t) in tokens.iter().enumerate() {
            ids.push(i as u64);
            write(&nr, &probe, i as u64, t);
        }
        let before = nr.replicas();
        let clones = probe.clones.load(SeqCst);
        m.arm(Method::Nodes, 0);
        assert_boom(Method::Nodes, || nr.add_replica(NodeId(1)));
        m.disarm(Method::Nodes);
        assert_eq!(nr.replicas(), before, "replica set unchanged");
        assert_eq!(probe.clones.load(SeqCst), clones, "nothing cloned");
        for (i, &t) in tokens.iter().enumerate() {
            let id = 10 + i as u64;
            let at = write(&nr, &probe, id, t);
            ids.push(id);
            assert_eq!(read(&nr, t)[at], id);
        }
        agreed_journal(&nr, &tokens, &ids);
        let added = nr.add_replica(NodeId(1)).expect("a later add works");
        assert_eq!(nr.replicas().len(), 3);
        let tokens = tokens_per_replica(&nr);
        assert!(tokens.iter().any(|&t| nr.replica_of(t) == Some(added)));
        agreed_journal(&nr, &tokens, &ids);
    });
}

// ---------------------------------------------------------------------------------------
// `distance`

#[test]
fn distance_panicking_in_register_changes_nothing() {
    run("distance in register", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr: Nr = NodeReplicated::builder(Journal::new(&probe))
            .replicas(&[NodeId(0), NodeId(1)])
            .affinity(m.clone())
            .max_threads(2)
            .build()
            .unwrap();
        let t0 = register_on(&nr, 0);
        write(&nr, &probe, 1, t0);
        let before = nr.replicas();
        m.arm(Method::Distance, 0);
        assert_boom(Method::Distance, || register_on(&nr, 1));
        assert_eq!(nr.replicas(), before, "thread counts unchanged");
        // The operation paths never ask for distances: the switch stays on.
        assert_eq!(write(&nr, &probe, 2, t0), 1);
        assert_eq!(read(&nr, t0), [1, 2]);
        m.disarm(Method::Distance);
        // At the thread limit of 2: the panicking registration took no slot.
        let t1 = register_on(&nr, 1);
        assert_eq!(nr.replica_of(t1), Some(before[1].id));
        assert_eq!(write(&nr, &probe, 3, t1), 2);
        agreed_journal(&nr, &[t0, t1], &[1, 2, 3]);
    });
}

#[test]
fn distance_panicking_in_add_replica_changes_nothing() {
    run("distance in add_replica", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = Arc::new(build(&probe, &m, &[0, 1]));
        let before = nr.replicas();
        // One writer thread per replica, registered before the panic.
        let registered = Arc::new(Barrier::new(3));
        let panicked = Arc::new(Barrier::new(3));
        let writers: Vec<_> = (0..2u64)
            .map(|n| {
                let (nr, probe) = (Arc::clone(&nr), Arc::clone(&probe));
                let (registered, panicked) = (Arc::clone(&registered), Arc::clone(&panicked));
                std::thread::spawn(move || {
                    let tkn = register_on(&nr, n as usize);
                    let replica = nr.replica_of(tkn).unwrap();
                    registered.wait();
                    panicked.wait();
                    let mut ids = Vec::new();
                    for k in 0..50 {
                        let id = (n << 32) | k;
                        let at = write(&nr, &probe, id, tkn);
                        assert_eq!(read(&nr, tkn)[at], id, "the response is the position");
                        ids.push(id);
                    }
                    (replica, ids)
                })
            })
            .collect();
        registered.wait();
        let before_add = nr.replicas();
        let clones = probe.clones.load(SeqCst);
        m.arm(Method::Distance, 0);
        assert_boom(Method::Distance, || nr.add_replica(NodeId(0)));
        assert_eq!(nr.replicas(), before_add, "replica set unchanged");
        assert_eq!(probe.clones.load(SeqCst), clones, "nothing cloned");
        // The switch stays on while they write: the operation paths never ask.
        panicked.wait();
        let mut ids = Vec::new();
        let mut served = Vec::new();
        for w in writers {
            let (replica, mut own) = w.join().expect("a writer failed");
            served.push(replica);
            ids.append(&mut own);
        }
        served.sort_unstable_by_key(|r| r.get());
        assert_eq!(
            served,
            [before[0].id, before[1].id],
            "a writer on each replica"
        );
        m.disarm(Method::Distance);
        nr.add_replica(NodeId(0)).expect("a later add works");
        let tokens = tokens_per_replica(&nr);
        assert_eq!(tokens.len(), 3);
        agreed_journal(&nr, &tokens, &ids);
    });
}

#[test]
fn distance_panicking_in_remove_replica_changes_nothing() {
    run("distance in remove_replica", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = build(&probe, &m, &[0, 1]);
        let infos = nr.replicas();
        let (t0, t1) = (register_on(&nr, 0), register_on(&nr, 1));
        assert_eq!(nr.replica_of(t1), Some(infos[1].id));
        write(&nr, &probe, 1, t0);
        write(&nr, &probe, 2, t1);
        let before = nr.replicas();
        let journals = probe.journals.load(SeqCst);
        m.arm(Method::Distance, 0);
        assert_boom(Method::Distance, || nr.remove_replica(infos[1].id));
        m.disarm(Method::Distance);
        assert_eq!(nr.replicas(), before, "the replica is still listed");
        assert_eq!(
            nr.replica_of(t1),
            Some(infos[1].id),
            "its thread still on it"
        );
        assert_eq!(
            probe.journals.load(SeqCst),
            journals,
            "its data not dropped"
        );
        assert_eq!(write(&nr, &probe, 3, t1), 2);
        assert_eq!(write(&nr, &probe, 4, t0), 3);
        assert_eq!(agreed_journal(&nr, &[t0, t1], &[1, 2, 3, 4]), [1, 2, 3, 4]);
        nr.remove_replica(infos[1].id)
            .expect("a later remove works");
        assert_eq!(
            nr.replica_of(t1),
            Some(infos[0].id),
            "moved to the other one"
        );
        assert_eq!(
            probe.journals.load(SeqCst),
            journals - 1,
            "its data dropped"
        );
        assert_eq!(write(&nr, &probe, 5, t1), 4);
        assert_eq!(read(&nr, t0), [1, 2, 3, 4, 5]);
    });
}

/// The former bug: a thread whose replica is frozen as a clone source must not need the
/// affinity manager's `distance` to find a stand-in. `D::clone` turns `distance` panics
/// on and waits until thread T (on the frozen source) and thread U (on the other
/// replica) have each done a write and a read.
#[test]
fn distance_is_never_called_on_the_operation_paths() {
    run("distance on the operation paths", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = Arc::new(build(&probe, &m, &[0, 1]));
        let infos = nr.replicas();
        let go = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let u_wrote = Arc::new(Barrier::new(2));
        let prepared = Arc::new(Barrier::new(3));
        let worker = |node: u64| {
            let (nr, probe) = (Arc::clone(&nr), Arc::clone(&probe));
            let (go, done) = (Arc::clone(&go), Arc::clone(&done));
            let (u_wrote, prepared) = (Arc::clone(&u_wrote), Arc::clone(&prepared));
            std::thread::spawn(move || {
                let tkn = register_on(&nr, node as usize);
                let replica = nr.replica_of(tkn).unwrap();
                // U writes first, then T, so T's replica has applied more than U's.
                if node == 1 {
                    write(&nr, &probe, 100, tkn);
                    u_wrote.wait();
                } else {
                    u_wrote.wait();
                    write(&nr, &probe, 0, tkn);
                }
                prepared.wait();
                wait_until("the clone has started", || go.load(SeqCst));
                let id = (node << 32) | 1;
                let at = write(&nr, &probe, id, tkn);
                let seen = read(&nr, tkn);
                assert_eq!(
                    seen.get(at),
                    Some(&id),
                    "the read sees the write at its place"
                );
                done.fetch_add(1, SeqCst);
                (replica, id, at)
            })
        };
        let (t, u) = (worker(0), worker(1));
        prepared.wait();
        let now = nr.replicas();
        assert!(
            now[0].applied > now[1].applied,
            "T's replica is the most advanced, so it is the clone source: {now:?}"
        );
        {
            let (m, go, done) = (Arc::clone(&m), Arc::clone(&go), Arc::clone(&done));
            *probe.clone_hook.lock().unwrap() = Some(Box::new(move || {
                m.arm(Method::Distance, 0);
                go.store(true, SeqCst);
                wait_until("T and U have written and read during the clone", || {
                    done.load(SeqCst) == 2
                });
            }));
        }
        let added = nr.add_replica(NodeId(0));
        m.disarm(Method::Distance);
        assert!(go.load(SeqCst), "the clone ran the hook");
        let added = added.expect("add_replica");
        let (t_replica, t_id, t_at) = t.join().expect("T failed");
        let (u_replica, u_id, u_at) = u.join().expect("U failed");
        assert_eq!(t_replica, infos[0].id);
        assert_eq!(u_replica, infos[1].id);
        let tokens = tokens_per_replica(&nr);
        assert!(tokens.iter().any(|&t| nr.replica_of(t) == Some(added)));
        let journal = agreed_journal(&nr, &tokens, &[100, 0, t_id, u_id]);
        assert_eq!(journal[t_at], t_id);
        assert_eq!(journal[u_at], u_id);
    });
}

// ---------------------------------------------------------------------------------------
// `set_memory_node`

#[test]
fn set_memory_node_panicking_in_build_panics_build() {
    run("set_memory_node in build", || {
        let (probe, m) = (Probe::new(), Manager::new());
        // The first replica (node 0) is made; the policy for the second panics.
        m.arm(Method::SetMemoryNode, 1);
        assert_boom(Method::SetMemoryNode, || build(&probe, &m, &[0, 1]));
        assert_eq!(probe.clones.load(SeqCst), 1, "the first replica was made");
        probe.assert_all_dropped();
    });
}

#[test]
fn set_memory_node_panicking_in_add_replica_changes_nothing() {
    run("set_memory_node in add_replica", || {
        let (probe, m) = (Probe::new(), Manager::new());
        // One replica: a source left frozen would have no stand-in, and its thread's
        // next write would hang (the watchdog would fail the test).
        let nr = build(&probe, &m, &[0]);
        let tkn = register_on(&nr, 0);
        write(&nr, &probe, 1, tkn);
        let before = nr.replicas();
        let (clones, journals) = (probe.clones.load(SeqCst), probe.journals.load(SeqCst));
        m.arm(Method::SetMemoryNode, 0);
        assert_boom(Method::SetMemoryNode, || nr.add_replica(NodeId(1)));
        m.disarm(Method::SetMemoryNode);
        assert_eq!(nr.replicas(), before, "replica set unchanged");
        assert_eq!(probe.clones.load(SeqCst), clones, "nothing cloned");
        assert_eq!(probe.journals.load(SeqCst), journals);
        assert_eq!(write(&nr, &probe, 2, tkn), 1, "the source is not frozen");
        assert_eq!(read(&nr, tkn), [1, 2]);
        nr.add_replica(NodeId(1)).expect("a later add works");
        let tokens = tokens_per_replica(&nr);
        assert_eq!(tokens.len(), 2);
        agreed_journal(&nr, &tokens, &[1, 2]);
    });
}

/// Writers on both replicas; `set_memory_node` starts panicking while they run. Each
/// writer ends with a panic — the manager's own if its thread was combining, "poisoned"
/// otherwise, also while it waited for another combiner's batch — and nothing hangs.
/// Afterwards every call panics or fails as poisoned, and dropping the instance drops
/// every write operation exactly once.
#[test]
fn set_memory_node_panicking_in_apply_poisons_waiting_threads_too() {
    const WRITERS: usize = 4;
    run("set_memory_node in apply", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = Arc::new(build(&probe, &m, &[0, 1]));
        let progress = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (nr, probe, progress) =
                    (Arc::clone(&nr), Arc::clone(&probe), Arc::clone(&progress));
                std::thread::spawn(move || {
                    let tkn = register_on(&nr, w % 2);
                    let deadline = Instant::now() + WAIT;
                    let mut k = 0u64;
                    let first = loop {
                        assert!(Instant::now() < deadline, "writer {w} never saw a panic");
                        let op = Push::new(((w as u64) << 32) | k, &probe);
                        match panic::catch_unwind(AssertUnwindSafe(|| nr.execute_mut(op, tkn))) {
                            Ok(_) => progress.fetch_add(1, SeqCst),
                            Err(payload) => break message(&*payload),
                        };
                        k += 1;
                    };
                    assert_poisoned(&nr, &probe, tkn);
                    first
                })
            })
            .collect();
        wait_until("the writers are under way", || {
            progress.load(SeqCst) >= 20 * WRITERS
        });
        m.arm(Method::SetMemoryNode, 0);
        let firsts: Vec<String> = writers
            .into_iter()
            .map(|w| w.join().expect("a writer failed"))
            .collect();
        m.disarm(Method::SetMemoryNode);
        for msg in &firsts {
            assert!(
                *msg == boom(Method::SetMemoryNode) || msg.contains("poisoned"),
                "unexpected panic: {msg}"
            );
        }
        assert!(
            firsts.contains(&boom(Method::SetMemoryNode)),
            "a combining writer got the manager's panic: {firsts:?}"
        );
        let tkn = register_on(&nr, 0);
        assert_poisoned(&nr, &probe, tkn);
        let nr = Arc::try_unwrap(nr).expect("every writer is done");
        drop(nr);
        probe.assert_all_dropped();
    });
}

// ---------------------------------------------------------------------------------------
// `restore_memory_policy`

/// `build` of two replicas with `restore_memory_policy` panicking after the first
/// clone: the clone is dropped. (A block's value was leaked when a local of the block
/// panicked in `Drop`, rust-lang/rust#47949; the library keeps the clone outside the
/// policy guard's scope.)
#[test]
fn restore_memory_policy_panicking_in_build_panics_build_and_drops_the_clone() {
    run("restore_memory_policy in build", || {
        let (probe, m) = (Probe::new(), Manager::new());
        m.arm(Method::RestoreMemoryPolicy, 0);
        assert_boom(Method::RestoreMemoryPolicy, || build(&probe, &m, &[0, 1]));
        assert_eq!(probe.clones.load(SeqCst), 1, "the first replica was cloned");
        assert!(!probe.underflow.load(SeqCst), "nothing dropped twice");
        probe.assert_all_dropped();
    });
}

/// `add_replica` to a one-replica instance (a source left frozen would hang its thread,
/// see above) with `restore_memory_policy` panicking after the clone was made: the clone
/// is dropped, nothing changes, and a later add works.
#[test]
fn restore_memory_policy_panicking_in_add_replica_changes_nothing() {
    run("restore_memory_policy in add_replica", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = build(&probe, &m, &[0]);
        let tkn = register_on(&nr, 0);
        write(&nr, &probe, 1, tkn);
        let before = nr.replicas();
        let (clones, journals) = (probe.clones.load(SeqCst), probe.journals.load(SeqCst));
        m.arm(Method::RestoreMemoryPolicy, 0);
        assert_boom(Method::RestoreMemoryPolicy, || nr.add_replica(NodeId(1)));
        m.disarm(Method::RestoreMemoryPolicy);
        assert_eq!(probe.clones.load(SeqCst), clones + 1, "the clone was made");
        assert!(!probe.underflow.load(SeqCst), "nothing dropped twice");
        assert_eq!(
            probe.journals.load(SeqCst),
            journals,
            "the clone was dropped"
        );
        assert_eq!(nr.replicas(), before, "replica set unchanged");
        assert_eq!(write(&nr, &probe, 2, tkn), 1, "the source is not frozen");
        nr.add_replica(NodeId(1)).expect("a later add works");
        let tokens = tokens_per_replica(&nr);
        assert_eq!(tokens.len(), 2);
        agreed_journal(&nr, &tokens, &[1, 2]);
    });
}

#[test]
fn restore_memory_policy_panicking_in_apply_poisons() {
    run("restore_memory_policy in apply", || {
        let (probe, m) = (Probe::new(), Manager::new());
        let nr = build(&probe, &m, &[0, 1]);
        let tkn = register_on(&nr, 0);
        write(&nr, &probe, 1, tkn);
        m.arm(Method::RestoreMemoryPolicy, 0);
        assert_boom(Method::RestoreMemoryPolicy, || write(&nr, &probe, 2, tkn));
        m.disarm(Method::RestoreMemoryPolicy);
        assert_poisoned(&nr, &probe, tkn);
        drop(nr);
        probe.assert_all_dropped();
    });
}
