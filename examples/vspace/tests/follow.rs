//! The replicated address space on four pretend nodes (`SimulatedAffinity`), with
//! `Policy::follow_threads`: the replica set follows the threads of a "process" as they
//! move node by node, while they translate, map, unmap and protect concurrently.
//!
//! Nothing here depends on timing: threads meet at barriers, a moved thread keeps
//! operating until it is served on its new node, and every test body runs under a
//! watchdog. The library checks a thread's node every 1,024 of its operations; when the
//! policy run that the move asks for is already in the hands of another thread (which
//! then runs it again for this move), the moved thread is re-matched once that thread
//! has been scheduled, so after `MOVE_OPS` operations it yields between operations.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};

use ldnr::{NodeId, NodeReplicated, ThreadToken};
use ldnr_affinity::SimulatedAffinity;
use ldnr_testkit::rng::Rng;
use ldnr_testkit::{watchdog, LIMIT};
use ldnr_vspace::{AddressSpace, Prot, SpaceReads, SpaceWrites, PAGE_SIZE};

const NODES: usize = 4;
const THREADS: usize = 3;

/// The node of each thread, step by step: threads appear on new nodes, leave nodes
/// empty, gather on one node and spread again.
const SCHEDULE: [[usize; THREADS]; 10] = [
    [0, 0, 0],
    [0, 1, 0],
    [1, 1, 2],
    [2, 3, 2],
    [3, 3, 3],
    [0, 1, 2],
    [3, 2, 1],
    [3, 3, 0],
    [1, 1, 1],
    [0, 2, 3],
];

/// Operations each thread runs on every step, moved or not, before it may stop.
const MIN_OPS: usize = 200;
/// A moved thread is normally on its new node's replica within this many of its
/// operations (one node check every 1,024); past them it yields between operations.
const MOVE_OPS: usize = 1024 + MIN_OPS;
/// The most operations a moved thread may need, yields included: far more than any run
/// takes (the watchdog bounds the time).
const MOVE_BOUND: usize = 1_000_000;

/// The pages of a read-only region mapped before any thread starts.
const SHARED: u64 = 0x1000_0000;
const SHARED_PAGES: u64 = 16;
/// Thread 0 maps one more page here every few operations and never unmaps it; the
/// count it has published tells every other thread which pages must translate.
const APPEND: u64 = 0x2000_0000;
const APPEND_PAGES: usize = 4096;
/// Each thread's own region, which only it writes.
const fn own(thread: usize) -> u64 {
    0x1_0000_0000 * (thread as u64 + 1)
}
const OWN_PAGES: u64 = 32;

fn nodes_of(nr: &NodeReplicated<AddressSpace>) -> BTreeSet<usize> {
    let infos = nr.replicas();
    let nodes: BTreeSet<usize> = infos.iter().map(|r| r.node.0).collect();
    assert_eq!(nodes.len(), infos.len(), "one replica per node: {infos:?}");
    nodes
}

/// The node of the replica the thread of `tkn` is matched to now.
fn served_on(nr: &NodeReplicated<AddressSpace>, tkn: ThreadToken) -> Option<usize> {
    let id = nr.replica_of(tkn)?;
    nr.replicas()
        .into_iter()
        .find(|r| r.id == id)
        .map(|r| r.node.0)
}

/// What the threads share besides the structure.
struct Shared {
    sim: Arc<SimulatedAffinity>,
    nr: NodeReplicated<AddressSpace>,
    shared_pa: u64,
    /// The physical address of each append page, published before the count.
    append_pa: Vec<AtomicU64>,
    /// How many append pages are mapped and published.
    appended: AtomicUsize,
    settled: Barrier,
    checked: Barrier,
}

/// One thread's view of its own region: the physical address and protection it expects
/// at each page (only it writes there).
struct Own {
    thread: usize,
    pages: Vec<Option<(u64, Prot)>>,
    rng: Rng,
}

impl Own {
    fn new(thread: usize) -> Self {
        Self {
            thread,
            pages: vec![None; OWN_PAGES as usize],
            rng: Rng::new(0x5eed + thread as u64),
        }
    }

    fn va(&self, page: usize) -> u64 {
        own(self.thread) + page as u64 * PAGE_SIZE
    }

    /// One operation: a write on its own region (map, unmap or protect one or two
    /// pages) or a translation, checked against what it expects.
    fn step(&mut self, s: &Shared, tkn: ThreadToken) {
        let nr = &s.nr;
        let page = self.rng.below(OWN_PAGES - 1) as usize;
        let va = self.va(page);
        match self.rng.below(8) {
            0 if self.pages[page].is_none() && self.pages[page + 1].is_none() => {
                let pa = nr.map(tkn, va, 2 * PAGE_SIZE, Prot::READ).expect("map");
                self.pages[page] = Some((pa, Prot::READ));
                self.pages[page + 1] = Some((pa + PAGE_SIZE, Prot::READ));
            }
            1 => {
                let mapped = self.pages[page].is_some() as u64;
                assert_eq!(nr.unmap(tkn, va, PAGE_SIZE), Ok(mapped * PAGE_SIZE));
                self.pages[page] = None;
            }
            2 if self.pages[page].is_some() => {
                let prot = if self.rng.below(2) == 0 {
                    Prot::READ | Prot::WRITE
                } else {
                    Prot::READ
                };
                nr.protect(tkn, va, PAGE_SIZE, prot).expect("protect");
                self.pages[page].as_mut().expect("mapped").1 = prot;
            }
            _ => {
                // Its own writes are seen (they completed before this read started).
                let off = self.rng.below(PAGE_SIZE);
                let want = self.pages[page].map(|(pa, prot)| (pa + off, prot));
                assert_eq!(nr.translate(tkn, va + off), want, "own page {page}");
                let p = self.rng.below(SHARED_PAGES) * PAGE_SIZE;
                assert_eq!(
                    nr.translate(tkn, SHARED + p),
                    Some((s.shared_pa + p, Prot::READ))
                );
                // Every append page published before this read started is seen, whichever
                // replica serves it (linearizability across replicas).
                let n = s.appended.load(Ordering::Acquire);
                if n > 0 {
                    let i = self.rng.below(n as u64) as usize;
                    let pa = s.append_pa[i].load(Ordering::Relaxed);
                    assert_eq!(
                        nr.translate(tkn, APPEND + i as u64 * PAGE_SIZE),
                        Some((pa, Prot::READ)),
                        "append page {i} of {n}"
                    );
                }
            }
        }
    }

    /// Thread 0's extra write: the next append page, published after `map` returned.
    fn append(s: &Shared, tkn: ThreadToken) {
        let i = s.appended.load(Ordering::Relaxed);
        if i < APPEND_PAGES {
            let va = APPEND + i as u64 * PAGE_SIZE;
            let pa = s.nr.map(tkn, va, PAGE_SIZE, Prot::READ).expect("append");
            s.append_pa[i].store(pa, Ordering::Relaxed);
            // Release: pairs with the Acquire load in `step`.
            s.appended.store(i + 1, Ordering::Release);
        }
    }
}

/// A "process" of three threads moves through `SCHEDULE`. On each step every thread
/// declares its new node and keeps operating (translate, map, unmap, protect; thread 0
/// also appends) until it is served by a replica on its own node. At the quiescent point after each step, the replicas are exactly
/// on the threads' nodes (one per node), each replica serves exactly the threads of its
/// node, and every replica holds the same address space. Then the threads leave one by
/// one and the set shrinks to the nodes that still have threads, never below one.
#[test]
fn replicas_follow_the_threads_node_by_node() {
    watchdog("replicas follow moving threads", LIMIT, || {
        let sim = Arc::new(SimulatedAffinity::new(NODES));
        sim.enter(NodeId(0)).unwrap();
        let mut space = AddressSpace::new();
        let shared_pa = space
            .map(SHARED, SHARED_PAGES * PAGE_SIZE, Prot::READ)
            .unwrap();
        let nr = space
            .replicated()
            .affinity(sim.clone())
            .log_capacity(256)
            .build()
            .unwrap();
        let s = Shared {
            sim,
            nr,
            shared_pa,
            append_pa: (0..APPEND_PAGES).map(|_| AtomicU64::new(0)).collect(),
            appended: AtomicUsize::new(0),
            settled: Barrier::new(THREADS),
            checked: Barrier::new(THREADS),
        };
        let (snapshots, snapshot_rx) = mpsc::channel();
        let left = Barrier::new(THREADS);
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (s, snapshots, left) = (&s, snapshots.clone(), &left);
                scope.spawn(move || {
                    let nr = &s.nr;
                    s.sim.enter(NodeId(SCHEDULE[0][t])).unwrap();
                    let tkn = nr.register().unwrap();
                    let mut own = Own::new(t);
                    for (step, nodes) in SCHEDULE.iter().enumerate() {
                        let node = nodes[t];
                        s.sim.enter(NodeId(node)).unwrap();
                        let mut ops = 0;
                        while ops < MIN_OPS || served_on(nr, tkn) != Some(node) {
                            assert!(
                                ops < MOVE_BOUND,
                                "step {step}: thread {t} on node {node} still served on \
                                 {:?} after {ops} operations",
                                served_on(nr, tkn)
                            );
                            own.step(s, tkn);
                            if t == 0 && ops % 4 == 0 {
                                Own::append(s, tkn);
                            }
                            ops += 1;
                            if ops > MOVE_OPS {
                                std::thread::yield_now();
                            }
                        }
                        // Quiescent: nobody operates until every thread has checked.
                        s.settled.wait();
                        let want: BTreeSet<usize> = nodes.iter().copied().collect();
                        assert_eq!(nodes_of(nr), want, "step {step}: {nodes:?}");
                        for r in nr.replicas() {
                            let here = nodes.iter().filter(|&&n| n == r.node.0).count();
                            assert_eq!(r.threads, here, "step {step}: threads of {r:?}");
                        }
                        snapshots
                            .send((step, nr.read(tkn, AddressSpace::clone)))
                            .unwrap();
                        s.checked.wait();
                    }
                    // Leave one at a time: thread 2 first, then 1, then 0.
                    for leaver in (0..THREADS).rev() {
                        if leaver == t {
                            nr.deregister(tkn).unwrap();
                            let staying: BTreeSet<usize> =
                                SCHEDULE[SCHEDULE.len() - 1][..t].iter().copied().collect();
                            let nodes = nodes_of(nr);
                            if staying.is_empty() {
                                assert_eq!(nodes.len(), 1, "never below one replica");
                            } else {
                                assert_eq!(nodes, staying, "after thread {t} left");
                            }
                        }
                        left.wait();
                    }
                });
            }
        });
        drop(snapshots);
        // At each quiescent point every thread read the same address space from its
        // own replica.
        let snaps: Vec<(usize, AddressSpace)> = snapshot_rx.iter().collect();
        assert_eq!(snaps.len(), SCHEDULE.len() * THREADS);
        for step in 0..SCHEDULE.len() {
            let mut of_step = snaps.iter().filter(|(s, _)| *s == step).map(|(_, a)| a);
            let first = of_step.next().unwrap();
            assert!(
                of_step.all(|a| a == first),
                "replicas differ at step {step}"
            );
        }
        let appended = s.appended.load(Ordering::Relaxed);
        assert!(appended > 0);
        // The last replica holds every append page.
        let tkn = s.nr.register().unwrap();
        for i in 0..appended {
            let pa = s.append_pa[i].load(Ordering::Relaxed);
            assert_eq!(
                s.nr.translate(tkn, APPEND + i as u64 * PAGE_SIZE),
                Some((pa, Prot::READ))
            );
        }
    });
}

/// Threads that appear on nodes 2, 0, 3, 1 (one `thread_token` thread each) grow the
/// replica set one node at a time; joined one by one, their exits shrink it again
/// (noticed by the next `replicas()`), to one replica at the end. Every map they made
/// is still there.
#[test]
fn thread_exits_shrink_the_replica_set() {
    watchdog("thread exits", LIMIT, || {
        let sim = Arc::new(SimulatedAffinity::new(NODES));
        sim.enter(NodeId(0)).unwrap();
        let nr = AddressSpace::new()
            .replicated()
            .affinity(sim.clone())
            .build()
            .unwrap();
        let order = [2, 0, 3, 1];
        std::thread::scope(|scope| {
            let (ready_tx, ready) = mpsc::channel();
            let mut threads = Vec::new();
            for (i, &node) in order.iter().enumerate() {
                let (go_tx, go) = mpsc::channel::<()>();
                let (sim, nr, ready_tx) = (&sim, &nr, ready_tx.clone());
                let handle = scope.spawn(move || {
                    sim.enter(NodeId(node)).unwrap();
                    let tkn = nr.thread_token().unwrap();
                    let va = (node as u64 + 1) << 30;
                    nr.map(tkn, va, PAGE_SIZE, Prot::READ).unwrap();
                    assert!(nr.translate(tkn, va).is_some());
                    ready_tx.send(()).unwrap();
                    go.recv().unwrap();
                });
                ready.recv().unwrap();
                let want: BTreeSet<usize> = order[..=i].iter().copied().collect();
                assert_eq!(nodes_of(nr), want, "after a thread on node {node}");
                threads.push((node, go_tx, handle));
            }
            let mut staying: BTreeSet<usize> = order.iter().copied().collect();
            for (node, go, handle) in threads {
                go.send(()).unwrap();
                handle.join().unwrap();
                staying.remove(&node);
                let nodes = nodes_of(&nr);
                if staying.is_empty() {
                    assert_eq!(nodes.len(), 1, "never below one replica");
                } else {
                    assert_eq!(nodes, staying, "after the thread on node {node} exited");
                }
            }
        });
        let tkn = nr.register().unwrap();
        for node in order {
            assert!(nr.translate(tkn, (node as u64 + 1) << 30).is_some());
        }
        assert_eq!(nr.read(tkn, |s| s.len()), NODES);
    });
}
