//! Panic isolation (crate docs, "Panics"): a panic in `dispatch_mut` reaches the thread
//! whose operation raised it and nobody else; no lock stays held; every replica keeps the
//! same partial effect; later operations work on every replica. The same for a panicking
//! read and a panicking `Clone` during `add_replica`. A panicking affinity manager poisons
//! the instance: every later call fails loudly instead of hanging.

use std::cell::Cell;
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use ldnr::{
    AffinityError, AffinityManager, Dispatch, Error, NodeId, NodeReplicated, ReplicaId, SavedPolicy,
};
use ldnr_testkit::replicas::tokens_on_every_replica;
use ldnr_testkit::rng::Rng;
use ldnr_testkit::{panic_message, quiet_panics, watchdog, LIMIT};

/// The message every deliberate panic here starts with; the panic hook stays quiet for it.
const TAG: &str = "ldnr-test:";

/// Every operation applied, in log order. `PushThenPanic` leaves its id behind before it
/// panics: the partial effect that every replica must show alike.
#[derive(Debug, Default, PartialEq)]
struct Journal {
    applied: Vec<u64>,
    clone_panics: bool,
}

impl Clone for Journal {
    fn clone(&self) -> Self {
        if self.clone_panics {
            panic!("{TAG} clone refused");
        }
        Journal {
            applied: self.applied.clone(),
            clone_panics: false,
        }
    }
}

#[derive(Debug, Clone)]
enum Write {
    Push(u64),
    PushThenPanic(u64),
    SetClonePanics(bool),
}

#[derive(Debug, Clone)]
enum Read {
    All,
    Panic,
}

#[derive(Debug, PartialEq)]
enum Resp {
    /// The log position of a push.
    At(usize),
    All(Vec<u64>),
    Unit,
}

impl Dispatch for Journal {
    type ReadOperation = Read;
    type WriteOperation = Write;
    type Response = Resp;

    fn dispatch(&self, op: Read) -> Resp {
        match op {
            Read::All => Resp::All(self.applied.clone()),
            Read::Panic => panic!("{TAG} read panicked"),
        }
    }

    fn dispatch_mut(&mut self, op: Write) -> Resp {
        match op {
            Write::Push(x) => {
                self.applied.push(x);
                Resp::At(self.applied.len() - 1)
            }
            Write::PushThenPanic(x) => {
                self.applied.push(x);
                panic!("{TAG} op {x} panicked");
            }
            Write::SetClonePanics(on) => {
                self.clone_panics = on;
                Resp::Unit
            }
        }
    }
}

fn all(nr: &NodeReplicated<Journal>, tkn: ldnr::ThreadToken) -> Vec<u64> {
    match nr.execute(Read::All, tkn) {
        Resp::All(v) => v,
        other => panic!("unexpected {other:?}"),
    }
}

/// Every replica's journal, read through a token matched to it; asserts they are equal
/// and returns it.
fn agreed_journal(nr: &NodeReplicated<Journal>) -> Vec<u64> {
    let per_replica: Vec<(ReplicaId, Vec<u64>)> = tokens_on_every_replica(nr)
        .into_iter()
        .map(|(id, tkn)| (id, all(nr, tkn)))
        .collect();
    let first = &per_replica[0].1;
    for (id, j) in &per_replica {
        assert_eq!(
            j, first,
            "replica {id:?} diverged from {:?}",
            per_replica[0].0
        );
    }
    first.clone()
}

#[test]
fn the_owner_gets_its_panic_and_the_instance_keeps_working() {
    quiet_panics(&[TAG]);
    watchdog("single thread", LIMIT, || {
        let nr = NodeReplicated::builder(Journal::default())
            .replicas(&[NodeId(0), NodeId(0)])
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        assert_eq!(nr.execute_mut(Write::Push(1), tkn), Resp::At(0));
        let msg = panic_message(|| nr.execute_mut(Write::PushThenPanic(2), tkn));
        assert_eq!(msg, format!("{TAG} op 2 panicked"));
        // The partial effect stays, and the next operations work.
        assert_eq!(nr.execute_mut(Write::Push(3), tkn), Resp::At(2));
        assert_eq!(all(&nr, tkn), vec![1, 2, 3]);
        // Several panics in a row, on a full log (capacity 4 wraps quickly).
        for x in 10..20 {
            let msg = panic_message(|| nr.execute_mut(Write::PushThenPanic(x), tkn));
            assert_eq!(msg, format!("{TAG} op {x} panicked"));
        }
        assert_eq!(agreed_journal(&nr).len(), 13);
    });
}

/// Threads on three replicas (a small log, so batches wrap and idle replicas are
/// cross-combined) submit operations of which every fifth panics. Each thread gets
/// exactly its own panics, with its own message; every other operation gets its log
/// position; all replicas end with the same journal holding every operation once.
#[test]
fn concurrent_panics_reach_only_their_owners_and_replicas_agree() {
    quiet_panics(&[TAG]);
    const THREADS: u64 = 6;
    const OPS: u64 = 400;
    watchdog("concurrent panics", LIMIT, || {
        let nr = Arc::new(
            NodeReplicated::builder(Journal::default())
                .replicas(&[NodeId(0), NodeId(0), NodeId(0)])
                .log_capacity(8)
                .build()
                .unwrap(),
        );
        let start = Arc::new(Barrier::new(THREADS as usize));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let nr = Arc::clone(&nr);
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    let tkn = nr.register().unwrap();
                    let mut rng = Rng::new(t + 1);
                    let mut positions = Vec::new();
                    start.wait();
                    for i in 0..OPS {
                        let id = t * 1_000_000 + i;
                        if i % 5 == 2 {
                            let msg =
                                panic_message(|| nr.execute_mut(Write::PushThenPanic(id), tkn));
                            assert_eq!(msg, format!("{TAG} op {id} panicked"), "thread {t}");
                        } else {
                            match nr.execute_mut(Write::Push(id), tkn) {
                                Resp::At(p) => positions.push((p, id)),
                                other => panic!("unexpected {other:?}"),
                            }
                        }
                        if rng.below(4) == 0 {
                            // A read sees at least this thread's own last operation.
                            assert!(all(&nr, tkn).contains(&id));
                        }
                    }
                    positions
                })
            })
            .collect();
        let positions: Vec<(usize, u64)> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("a worker failed"))
            .collect();
        let journal = agreed_journal(&nr);
        assert_eq!(
            journal.len() as u64,
            THREADS * OPS,
            "every operation applied once"
        );
        let mut sorted = journal.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), journal.len(), "no operation applied twice");
        for (p, id) in positions {
            assert_eq!(journal[p], id, "the response of {id} is its log position");
        }
    });
}

#[test]
fn a_panicking_read_releases_its_replica() {
    quiet_panics(&[TAG]);
    watchdog("panicking read", LIMIT, || {
        let nr = Arc::new(NodeReplicated::builder(Journal::default()).build().unwrap());
        let tkn = nr.register().unwrap();
        for x in 0..3 {
            let msg = panic_message(|| nr.execute(Read::Panic, tkn));
            assert_eq!(msg, format!("{TAG} read panicked"));
            // The writer's lock needs every reader slot free: it would hang otherwise.
            nr.execute_mut(Write::Push(x), tkn);
        }
        // Another thread's writes too.
        let other = Arc::clone(&nr);
        std::thread::spawn(move || {
            let t = other.register().unwrap();
            other.execute_mut(Write::Push(3), t);
        })
        .join()
        .unwrap();
        assert_eq!(all(&nr, tkn), vec![0, 1, 2, 3]);
    });
}

#[test]
fn a_panicking_clone_leaves_the_replica_set_unchanged() {
    quiet_panics(&[TAG]);
    watchdog("panicking clone", LIMIT, || {
        let nr = NodeReplicated::builder(Journal::default()).build().unwrap();
        let tkn = nr.register().unwrap();
        nr.execute_mut(Write::Push(1), tkn);
        nr.execute_mut(Write::SetClonePanics(true), tkn);
        let before = nr.replicas();
        let msg = panic_message(|| nr.add_replica(NodeId(0)));
        assert_eq!(msg, format!("{TAG} clone refused"));
        assert_eq!(nr.replicas(), before);
        // The source was unfrozen: its thread writes and reads on.
        nr.execute_mut(Write::Push(2), tkn);
        nr.execute_mut(Write::SetClonePanics(false), tkn);
        let id = nr.add_replica(NodeId(0)).expect("clones work again");
        assert_eq!(agreed_journal(&nr), vec![1, 2]);
        nr.remove_replica(id).unwrap();
    });
}

/// Panicking operations while replicas are added and removed: no hang, and the replicas
/// that remain agree on a journal holding every operation once.
#[test]
fn panics_under_replica_churn() {
    quiet_panics(&[TAG]);
    const THREADS: u64 = 4;
    const OPS: u64 = 300;
    watchdog("panics under churn", LIMIT, || {
        let nr = Arc::new(
            NodeReplicated::builder(Journal::default())
                .replicas(&[NodeId(0), NodeId(0)])
                .log_capacity(16)
                .build()
                .unwrap(),
        );
        let done = Arc::new(AtomicBool::new(false));
        let churner = {
            let nr = Arc::clone(&nr);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut changes = 0;
                while !done.load(SeqCst) || changes < 4 {
                    let id = nr.add_replica(NodeId(0)).unwrap();
                    let victim = nr
                        .replicas()
                        .iter()
                        .map(|r| r.id)
                        .find(|&r| r != id)
                        .unwrap();
                    nr.remove_replica(victim).unwrap();
                    changes += 2;
                }
                changes
            })
        };
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let nr = Arc::clone(&nr);
                std::thread::spawn(move || {
                    let tkn = nr.register().unwrap();
                    for i in 0..OPS {
                        let id = t * 1_000_000 + i;
                        if i % 3 == 0 {
                            let msg =
                                panic_message(|| nr.execute_mut(Write::PushThenPanic(id), tkn));
                            assert_eq!(msg, format!("{TAG} op {id} panicked"));
                        } else {
                            nr.execute_mut(Write::Push(id), tkn);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a worker failed");
        }
        done.store(true, SeqCst);
        assert!(churner.join().unwrap() >= 4);
        let journal = agreed_journal(&nr);
        assert_eq!(journal.len() as u64, THREADS * OPS);
    });
}

thread_local! {
    static NODE: Cell<usize> = const { Cell::new(0) };
}

/// Two pretend nodes; `set_memory_node` panics once `explode` is set.
#[derive(Debug, Default)]
struct ExplodingAffinity {
    explode: AtomicBool,
}

impl AffinityManager for ExplodingAffinity {
    fn current_node(&self) -> NodeId {
        NodeId(NODE.with(Cell::get))
    }
    fn nodes(&self) -> Vec<NodeId> {
        vec![NodeId(0), NodeId(1)]
    }
    fn set_memory_node(&self, _node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if self.explode.load(SeqCst) {
            panic!("{TAG} affinity manager panicked");
        }
        Ok(SavedPolicy::UNCHANGED)
    }
    fn restore_memory_policy(&self, _saved: SavedPolicy) -> Result<(), AffinityError> {
        Ok(())
    }
}

/// An instance with a replica on each of the two pretend nodes, and its manager (which
/// panics around a batch once `explode` is set).
fn exploding_instance() -> (Arc<ExplodingAffinity>, NodeReplicated<Journal>) {
    let affinity = Arc::new(ExplodingAffinity::default());
    let nr = NodeReplicated::builder(Journal::default())
        .replicas(&[NodeId(0), NodeId(1)])
        .affinity(affinity.clone())
        .build()
        .unwrap();
    (affinity, nr)
}

/// A panic that escapes the apply path (here from the affinity manager, which is called
/// around every batch when there are several nodes) poisons the instance: the panicking
/// thread gets the original panic, every later operation panics with a clear message,
/// and reconfiguration returns `Error::Poisoned` — nothing hangs.
#[test]
fn a_panicking_affinity_manager_poisons_the_instance() {
    quiet_panics(&[TAG]);
    watchdog("poisoned instance", LIMIT, || {
        let (affinity, nr) = exploding_instance();
        let tkn = nr.register().unwrap();
        nr.execute_mut(Write::Push(1), tkn);
        affinity.explode.store(true, SeqCst);
        let msg = panic_message(|| nr.execute_mut(Write::Push(2), tkn));
        assert_eq!(msg, format!("{TAG} affinity manager panicked"));
        affinity.explode.store(false, SeqCst);
        for _ in 0..2 {
            let msg = panic_message(|| nr.execute_mut(Write::Push(3), tkn));
            assert!(msg.contains("poisoned"), "{msg}");
            let msg = panic_message(|| nr.execute(Read::All, tkn));
            assert!(msg.contains("poisoned"), "{msg}");
        }
        assert_eq!(nr.add_replica(NodeId(0)), Err(Error::Poisoned));
        let id = nr.replicas()[0].id;
        assert_eq!(nr.remove_replica(id), Err(Error::Poisoned));
        assert!(Error::Poisoned.to_string().contains("poisoned"));
    });
}

/// A call back into a poisoned instance from user code it runs reports the re-entry (the
/// mistake in the caller's code), not the poison: an operation's entry checks re-entry
/// first. Here the instance is poisoned by another thread while this one is inside a read
/// closure; after the closure, the same call reports the poison.
#[test]
fn a_reentrant_call_on_a_poisoned_instance_reports_the_reentry() {
    quiet_panics(&[TAG]);
    watchdog("re-entry into a poisoned instance", LIMIT, || {
        let (affinity, nr) = exploding_instance();
        let reader = nr.register().unwrap();
        let (inside, poisoned) = (Barrier::new(2), Barrier::new(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                // On the other pretend node: its write applies the other replica, so it
                // does not wait for the read below.
                NODE.with(|n| n.set(1));
                let tkn = nr.register().unwrap();
                inside.wait();
                affinity.explode.store(true, SeqCst);
                let msg = panic_message(|| nr.execute_mut(Write::Push(1), tkn));
                assert_eq!(msg, format!("{TAG} affinity manager panicked"));
                poisoned.wait();
            });
            let msg = nr.read(reader, |_| {
                inside.wait();
                poisoned.wait();
                panic_message(|| nr.execute(Read::All, reader))
            });
            assert!(msg.contains("re-entrant"), "{msg}");
        });
        affinity.explode.store(false, SeqCst);
        let msg = panic_message(|| nr.execute(Read::All, reader));
        assert!(msg.contains("poisoned"), "{msg}");
    });
}
