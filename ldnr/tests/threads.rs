//! Threads that come and go, and move (crate docs, "Threads"): registrations given back
//! with `deregister` or at thread exit (`thread_token`), their indices reused, stale
//! tokens refused, and threads re-matched when their node changes. Every test body runs
//! under a watchdog; nothing depends on timing.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use ldnr::{AffinityError, AffinityManager, Dispatch, Error, NodeId, NodeReplicated, SavedPolicy};
use ldnr_testkit::counters::{Counters, Get, Inc};
use ldnr_testkit::lincheck::{check_map_by_key, Clock, MapEvent};
use ldnr_testkit::map::{negative_control, recorded_map_ops, write_count, TestMap};
use ldnr_testkit::{panic_message, watchdog, LIMIT};

/// Every thread index a thread can be checked in with: `ThreadToken::index` below the
/// limit, for each of `tokens`.
fn assert_indices_below(limit: usize, index: usize) {
    assert!(
        index < limit,
        "thread index {index} at or past the limit {limit}"
    );
}

#[test]
fn a_deregistered_token_is_refused_everywhere() {
    watchdog("stale tokens", LIMIT, || {
        let nr = NodeReplicated::builder(Counters(vec![0; 2]))
            .max_threads(1)
            .build()
            .unwrap();
        let old = nr.register().unwrap();
        assert_eq!(nr.execute_mut(Inc(0), old), 1);
        nr.deregister(old).unwrap();
        assert_eq!(nr.deregister(old), Err(Error::StaleToken), "twice");
        let m = panic_message(|| nr.execute(Get(0), old));
        assert!(m.contains("deregistered"), "{m}");
        let m = panic_message(|| nr.execute_mut(Inc(0), old));
        assert!(m.contains("deregistered"), "{m}");
        let m = panic_message(|| nr.replica_of(old));
        assert!(m.contains("deregistered"), "{m}");
        // The one slot goes to another thread; the old token stays refused, never taken
        // for the new owner's.
        let old_index = old.index();
        std::thread::scope(|s| {
            let nr = &nr;
            s.spawn(move || {
                let new = nr.register().expect("the slot was given back");
                assert_eq!(new.index(), old_index, "the index is reused");
                assert_eq!(nr.execute_mut(Inc(1), new), 1);
                nr.deregister(new).unwrap();
            });
        });
        assert_eq!(nr.deregister(old), Err(Error::StaleToken));
        let again = nr.register().unwrap();
        assert_eq!(nr.execute(Get(0), again), 1);
        assert_eq!(nr.execute(Get(1), again), 1);
        assert!(nr.replicas().iter().all(|r| r.threads <= 1));
    });
}

/// A counter of registrations: what `replicas()` reports must add up to the threads
/// registered now.
fn registered(nr: &NodeReplicated<impl Dispatch + Clone + Send + Sync>) -> usize {
    nr.replicas().iter().map(|r| r.threads).sum()
}

/// Threads register, run a burst of recorded map operations, deregister, and register
/// again, more threads than the limit at once, on two replicas and a small log: every
/// index handed out is below the limit, every operation of every registration is in one
/// linearizable history (WGL, key by key), and at the end no thread is counted.
#[test]
fn registrations_given_back_and_reused_under_churn_stay_linearizable() {
    watchdog("deregister churn", LIMIT, || {
        const LIMIT_THREADS: usize = 3;
        const WORKERS: usize = 6;
        const ROUNDS: usize = 25;
        let nr = NodeReplicated::builder(TestMap::default())
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(8)
            .max_threads(LIMIT_THREADS)
            .build()
            .unwrap();
        let clock = Clock::new();
        let refused = AtomicUsize::new(0);
        let history: Vec<MapEvent> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..WORKERS)
                .map(|t| {
                    let (nr, clock, refused) = (&nr, &clock, &refused);
                    s.spawn(move || {
                        let mut events = Vec::new();
                        for round in 0..ROUNDS {
                            let tkn = loop {
                                match nr.register() {
                                    Ok(tkn) => break tkn,
                                    Err(Error::TooManyThreads { .. }) => {
                                        refused.fetch_add(1, SeqCst);
                                        std::thread::yield_now();
                                    }
                                    Err(e) => panic!("{e}"),
                                }
                            };
                            assert_indices_below(LIMIT_THREADS, tkn.index());
                            let seed = (t * ROUNDS + round) as u64 + 1;
                            events.extend(recorded_map_ops(nr, tkn, clock, t, seed, 3, |i| i < 12));
                            nr.deregister(tkn).unwrap();
                        }
                        events
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a worker panicked"))
                .collect()
        });
        assert!(write_count(&history) > 0);
        check_map_by_key(&history).expect("the history is linearizable");
        negative_control(&history);
        assert_eq!(registered(&nr), 0, "every registration was given back");
    });
}

thread_local! {
    /// The node the test affinity manager reports for the calling thread.
    static NODE: Cell<usize> = const { Cell::new(0) };
    /// How often the calling thread asked the manager for its node.
    static ASKED: Cell<usize> = const { Cell::new(0) };
}

/// Three pretend nodes; a thread is on the node it last set in `NODE`. Memory policies
/// are no-ops. Each thread's `current_node` calls are counted in `ASKED`.
#[derive(Debug, Default)]
struct Moving;

impl AffinityManager for Moving {
    fn current_node(&self) -> NodeId {
        ASKED.with(|a| a.set(a.get() + 1));
        NodeId(NODE.with(Cell::get))
    }
    fn nodes(&self) -> Vec<NodeId> {
        vec![NodeId(0), NodeId(1), NodeId(2)]
    }
    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if node.0 < 3 {
            Ok(SavedPolicy::UNCHANGED)
        } else {
            Err(AffinityError::UnknownNode(node))
        }
    }
    fn restore_memory_policy(&self, _saved: SavedPolicy) -> Result<(), AffinityError> {
        Ok(())
    }
}

/// A thread registered on node 0 moves to node 1: within 1,025 of its own operations it
/// is served by node 1's replica, and the thread counts follow; a thread that moves to a
/// node without a replica (node 2, as far from both) stays where it is; a pinned thread
/// never moves and asks for its node once per 1,025 operations (every 1,024 after the
/// first 1,024).
#[test]
fn a_thread_that_moves_is_matched_again() {
    watchdog("migration", LIMIT, || {
        let nr = NodeReplicated::builder(Counters(vec![0; 3]))
            .replicas(&[NodeId(0), NodeId(1)])
            .affinity(Arc::new(Moving))
            .build()
            .unwrap();
        let on = |node: usize| {
            nr.replicas()
                .into_iter()
                .find(|r| r.node == NodeId(node))
                .unwrap()
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                NODE.with(|n| n.set(0));
                let tkn = nr.register().unwrap();
                assert_eq!(nr.replica_of(tkn), Some(on(0).id));
                NODE.with(|n| n.set(1));
                let mut ops = 0;
                while nr.replica_of(tkn) != Some(on(1).id) {
                    nr.execute_mut(Inc(0), tkn);
                    ops += 1;
                    assert!(ops <= 1_025, "not re-matched after {ops} operations");
                }
                assert_eq!(on(1).threads, 1, "counted on its new replica");
                // Node 2 has no replica and is as far from both: staying is as good.
                NODE.with(|n| n.set(2));
                for _ in 0..3_000 {
                    nr.execute(Get(0), tkn);
                }
                assert_eq!(nr.replica_of(tkn), Some(on(1).id));
                assert_eq!(nr.execute(Get(0), tkn), ops);
            });
            s.spawn(|| {
                NODE.with(|n| n.set(0));
                let tkn = nr.register().unwrap();
                ASKED.with(|a| a.set(0));
                for _ in 0..4_096 {
                    nr.execute_mut(Inc(2), tkn);
                }
                assert_eq!(nr.replica_of(tkn), Some(on(0).id), "a pinned thread stays");
                assert_eq!(
                    ASKED.with(Cell::get),
                    3,
                    "at operations 1,025, 2,050, 3,075"
                );
            });
        });
        // Both replicas agree on the counters (a reader on each node reads its own).
        for node in [0, 1] {
            NODE.with(|n| n.set(node));
            let tkn = nr.register().unwrap();
            assert_eq!(nr.replica_of(tkn), Some(on(node).id));
            assert_eq!(nr.execute(Get(2), tkn), 4_096, "replica on node {node}");
        }
    });
}

/// `thread_token` gives the calling thread one token, the same on every call; a
/// registration given back by hand is replaced on the next call.
#[test]
fn thread_token_is_one_token_per_thread() {
    watchdog("thread_token", LIMIT, || {
        let nr = NodeReplicated::builder(Counters(vec![0; 1]))
            .max_threads(2)
            .build()
            .unwrap();
        let a = nr.thread_token().unwrap();
        let b = nr.thread_token().unwrap();
        assert_eq!(a.index(), b.index());
        assert_eq!(registered(&nr), 1);
        nr.deregister(a).unwrap();
        assert_eq!(registered(&nr), 0);
        let c = nr.thread_token().unwrap();
        assert_eq!(nr.execute_mut(Inc(0), c), 1);
        assert_eq!(registered(&nr), 1);
        let m = panic_message(|| nr.execute(Get(0), a));
        assert!(m.contains("deregistered"), "{m}");
    });
}

/// Thousands of short-lived threads, a few at a time, each writing once through
/// `thread_token` with a limit of eight threads: no registration fails (each exit gives
/// its slot back), every write is applied exactly once, and no thread stays counted.
#[test]
fn thread_token_serves_thousands_of_short_lived_threads() {
    watchdog("short-lived threads", LIMIT, || {
        const THREADS: usize = 3_000;
        const AT_ONCE: usize = 4;
        let nr = NodeReplicated::builder(Counters(vec![0; AT_ONCE]))
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(16)
            .max_threads(8)
            .build()
            .unwrap();
        for _ in 0..THREADS / AT_ONCE {
            std::thread::scope(|s| {
                let threads: Vec<_> = (0..AT_ONCE)
                    .map(|t| {
                        let nr = &nr;
                        s.spawn(move || {
                            let tkn = nr.thread_token().expect("a slot was given back");
                            assert_indices_below(8, tkn.index());
                            nr.execute_mut(Inc(t), tkn);
                        })
                    })
                    .collect();
                // `join` waits until the thread's thread-locals are gone, and so its slot
                // queued to be given back; the end of `scope` alone does not (misuse
                // table).
                for t in threads {
                    t.join().expect("a short-lived thread panicked");
                }
            });
        }
        assert_eq!(registered(&nr), 0, "every exited thread was counted out");
        let tkn = nr.thread_token().unwrap();
        for t in 0..AT_ONCE {
            assert_eq!(nr.execute(Get(t), tkn), (THREADS / AT_ONCE) as u64);
        }
    });
}

/// A thread that holds a token of an instance that is dropped before the thread exits:
/// its exit touches nothing, and a later instance's `thread_token` works on it.
#[test]
fn thread_token_of_a_dropped_instance_is_harmless() {
    watchdog("dropped instance", LIMIT, || {
        let nr = Arc::new(
            NodeReplicated::builder(Counters(vec![0; 1]))
                .build()
                .unwrap(),
        );
        let holding = Arc::new(Barrier::new(2));
        let dropped = Arc::new(Barrier::new(2));
        let worker = {
            let (nr, holding, dropped) = (nr.clone(), holding.clone(), dropped.clone());
            std::thread::spawn(move || {
                let tkn = nr.thread_token().unwrap();
                nr.execute_mut(Inc(0), tkn);
                drop(nr);
                holding.wait();
                dropped.wait();
                let other = NodeReplicated::builder(Counters(vec![0; 1]))
                    .build()
                    .unwrap();
                let tkn = other.thread_token().unwrap();
                assert_eq!(other.execute_mut(Inc(0), tkn), 1);
                // Exits now: one token of a dropped instance, one of a live one.
            })
        };
        holding.wait();
        let nr = Arc::try_unwrap(nr).expect("the worker let go of it");
        assert_eq!(registered(&nr), 1);
        drop(nr);
        dropped.wait();
        worker.join().expect("the worker's exit was harmless");
    });
}

/// `deregister` from inside a callback of the same instance is a re-entrant call.
#[test]
fn deregister_from_a_callback_panics() {
    #[derive(Clone, Default)]
    struct Leave;
    thread_local! {
        static SELF: Cell<Option<(&'static NodeReplicated<Leave>, ldnr::ThreadToken)>> =
            const { Cell::new(None) };
    }
    impl Dispatch for Leave {
        type ReadOperation = ();
        type WriteOperation = ();
        type Response = ();
        fn dispatch(&self, _: ()) {
            if let Some((nr, tkn)) = SELF.with(Cell::get) {
                let _ = nr.deregister(tkn);
            }
        }
        fn dispatch_mut(&mut self, _: ()) {}
    }
    watchdog("deregister inside", LIMIT, || {
        let nr: &'static NodeReplicated<Leave> =
            Box::leak(Box::new(NodeReplicated::builder(Leave).build().unwrap()));
        let tkn = nr.register().unwrap();
        SELF.with(|c| c.set(Some((nr, tkn))));
        let m = panic_message(|| nr.execute((), tkn));
        assert!(m.contains("re-entrant"), "{m}");
        SELF.with(|c| c.set(None));
        nr.execute_mut((), tkn);
        nr.deregister(tkn).unwrap();
    });
}

/// What a thread-local destructor of an exiting thread saw.
#[derive(Debug, Default)]
struct AtExit {
    token_again: Option<Result<usize, Error>>,
    kept_token_use: Option<String>,
}

static AT_EXIT: std::sync::Mutex<AtExit> = std::sync::Mutex::new(AtExit {
    token_again: None,
    kept_token_use: None,
});

/// A thread-local whose destructor uses the instance: it is first touched before the
/// thread's first `thread_token`, so it is destroyed after the thread's token list.
struct UsesAtExit {
    nr: Option<(&'static NodeReplicated<Counters>, ldnr::ThreadToken)>,
}

impl Drop for UsesAtExit {
    fn drop(&mut self) {
        if let Some((nr, kept)) = self.nr {
            let again = nr.thread_token().map(|t| t.index());
            let used = panic_message(|| nr.execute_mut(Inc(0), kept));
            let mut seen = AT_EXIT.lock().unwrap();
            seen.token_again = Some(again);
            seen.kept_token_use = Some(used);
        }
    }
}

thread_local! {
    static USES_AT_EXIT: std::cell::RefCell<UsesAtExit> =
        const { std::cell::RefCell::new(UsesAtExit { nr: None }) };
}

/// An exiting thread's later thread-local destructors cannot use its registration any
/// more: `thread_token` there returns `ThreadExiting`, and a copy of the token kept from
/// before is refused as deregistered (its index may belong to another thread by then),
/// while the write it made before is applied once.
#[test]
fn an_exiting_thread_cannot_use_its_registration_from_later_destructors() {
    watchdog("thread-local destructors", LIMIT, || {
        let nr: &'static NodeReplicated<Counters> = Box::leak(Box::new(
            NodeReplicated::builder(Counters(vec![0; 1]))
                .max_threads(2)
                .build()
                .unwrap(),
        ));
        std::thread::spawn(move || {
            // Touched first, so destroyed after the token list of `thread_token`.
            USES_AT_EXIT.with(|u| u.borrow_mut().nr = None);
            let tkn = nr.thread_token().unwrap();
            nr.execute_mut(Inc(0), tkn);
            USES_AT_EXIT.with(|u| u.borrow_mut().nr = Some((nr, tkn)));
        })
        .join()
        .unwrap();
        let seen = AT_EXIT.lock().unwrap();
        assert_eq!(seen.token_again, Some(Err(Error::ThreadExiting)));
        let used = seen.kept_token_use.as_deref().unwrap();
        assert!(used.contains("deregistered"), "{used}");
        assert_eq!(registered(nr), 0, "its slot was given back");
        let tkn = nr.thread_token().unwrap();
        assert_eq!(nr.execute(Get(0), tkn), 1, "its write, once");
    });
}
