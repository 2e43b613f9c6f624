//! Panicking `Drop`s (crate docs, "Panics" and the misuse table): of a write operation,
//! of a response, and of the replicated structure. None of them hangs the instance,
//! drops anything twice, runs an operation twice, or poisons the instance:
//!
//! - a write operation's `Drop`, when the log drops it a lap later (the slot is reused):
//!   the panic is resumed in the thread whose call was combining at that moment, after
//!   that call's own operation completed (its response is dropped); with one replica the
//!   log is skipped and `dispatch_mut` drops the operation, so the panic is the
//!   operation's own;
//! - a write operation's `Drop` when the instance is dropped: the panic unwinds out of the
//!   drop, and every other operation is still dropped;
//! - a response's `Drop` on a replica that is not the owner's (where LD-NR drops the
//!   response): ignored, the operation was applied in full;
//! - the structure's `Drop` in `remove_replica` or when the instance is dropped: the panic
//!   unwinds from there, the removal done, every other replica still dropped.

use std::panic;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use ldnr::{Dispatch, NodeId, NodeReplicated};
use ldnr_testkit::replicas::tokens_on_every_replica;
use ldnr_testkit::{message, panic_message, quiet_panics, watchdog, LIMIT};

/// The message every deliberate panic here starts with; the panic hook stays quiet for it.
const TAG: &str = "ldnr-test-drop:";

/// Live instances of one test's operations, responses and structures; a count below
/// zero is a double drop, caught the moment it happens.
#[derive(Debug, Default)]
struct Live(AtomicIsize);

impl Live {
    fn born(&self) {
        self.0.fetch_add(1, SeqCst);
    }
    fn died(&self) {
        assert!(self.0.fetch_sub(1, SeqCst) > 0, "a double drop");
    }
    fn now(&self) -> isize {
        self.0.load(SeqCst)
    }
}

/// A write: appends `id` to the journal. If `bomb`, the original (not its clones, which
/// `dispatch_mut` consumes) panics when dropped; if `bomb_response`, so does the
/// response of every replica.
#[derive(Debug)]
struct Op {
    id: u64,
    bomb: bool,
    bomb_response: bool,
    live: Arc<Live>,
}

impl Op {
    fn new(id: u64, bomb: bool, live: &Arc<Live>) -> Self {
        live.born();
        Op {
            id,
            bomb,
            bomb_response: false,
            live: live.clone(),
        }
    }
}

impl Clone for Op {
    fn clone(&self) -> Self {
        self.live.born();
        Op {
            id: self.id,
            bomb: false,
            bomb_response: self.bomb_response,
            live: self.live.clone(),
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        self.live.died();
        if self.bomb {
            panic!("{TAG} op {} dropped", self.id);
        }
    }
}

/// A response: the operation's place in the journal. Panics when dropped while armed.
#[derive(Debug)]
struct Resp {
    at: usize,
    /// For reads: the journal.
    ids: Vec<u64>,
    armed: bool,
    bombs: Arc<AtomicUsize>,
}

impl Resp {
    fn disarm(mut self) -> usize {
        self.armed = false;
        self.at
    }
}

impl Drop for Resp {
    fn drop(&mut self) {
        if self.armed {
            self.bombs.fetch_add(1, SeqCst);
            panic!("{TAG} response {} dropped", self.at);
        }
    }
}

/// The journal of applied ids. Its `Drop` panics once if `bomb` is set then.
#[derive(Debug)]
struct Journal {
    ids: Vec<u64>,
    bomb: Arc<AtomicBool>,
    bombs: Arc<AtomicUsize>,
    live: Arc<Live>,
}

impl Journal {
    fn new(live: &Arc<Live>) -> Self {
        live.born();
        Journal {
            ids: Vec::new(),
            bomb: Arc::default(),
            bombs: Arc::default(),
            live: live.clone(),
        }
    }
}

impl Clone for Journal {
    fn clone(&self) -> Self {
        self.live.born();
        Journal {
            ids: self.ids.clone(),
            bomb: self.bomb.clone(),
            bombs: self.bombs.clone(),
            live: self.live.clone(),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.live.died();
        if self.bomb.swap(false, SeqCst) {
            panic!("{TAG} journal dropped");
        }
    }
}

impl Dispatch for Journal {
    type ReadOperation = ();
    type WriteOperation = Op;
    type Response = Resp;

    fn dispatch(&self, _: ()) -> Resp {
        Resp {
            at: self.ids.len(),
            ids: self.ids.clone(),
            armed: false,
            bombs: self.bombs.clone(),
        }
    }

    fn dispatch_mut(&mut self, op: Op) -> Resp {
        self.ids.push(op.id);
        Resp {
            at: self.ids.len() - 1,
            ids: Vec::new(),
            armed: op.bomb_response,
            bombs: self.bombs.clone(),
        }
    }
}

/// Every replica's journal, read through a token matched to each: asserts that they
/// agree and hold every id of `0..n` exactly once.
fn assert_every_replica_holds_each_id_once(nr: &NodeReplicated<Journal>, n: u64) {
    let mut agreed: Option<Vec<u64>> = None;
    for (id, tkn) in tokens_on_every_replica(nr) {
        let ids = nr.execute((), tkn).ids.clone();
        match &agreed {
            Some(a) => assert_eq!(&ids, a, "replica {id:?} disagrees"),
            None => agreed = Some(ids),
        }
    }
    let mut ids = agreed.expect("a replica");
    ids.sort_unstable();
    assert_eq!(ids, (0..n).collect::<Vec<_>>(), "every write exactly once");
}

/// One thread, two replicas, a four-entry log: write `i` reuses the slot of write `i - 4`
/// and drops that operation. Op 2's `Drop` panics: the panic reaches the call of write
/// 6, whose own operation is applied (once) all the same; every later call works, the
/// instance is not poisoned, and the op is dropped exactly once. With one replica (no
/// log, L9) the panic reaches write 2's own call instead, its effect kept.
#[test]
fn a_displaced_operation_that_panics_in_drop_reaches_the_combining_call() {
    quiet_panics(&[TAG]);
    for (replicas, panics_at) in [(2, 6), (1, 2)] {
        watchdog("drop panic, one thread", LIMIT, move || {
            one_thread_drop_panic(replicas, panics_at)
        });
    }
}

fn one_thread_drop_panic(replicas: usize, panics_at: u64) {
    let live = Arc::new(Live::default());
    let nr = NodeReplicated::builder(Journal::new(&live))
        .replicas(&vec![NodeId(0); replicas])
        .log_capacity(4)
        .build()
        .unwrap();
    let tkn = nr.register().unwrap();
    for id in 0..20u64 {
        let op = Op::new(id, id == 2, &live);
        if id == panics_at {
            let m = panic_message(|| nr.execute_mut(op, tkn));
            assert_eq!(m, format!("{TAG} op 2 dropped"), "{replicas} replicas");
        } else {
            assert_eq!(nr.execute_mut(op, tkn).disarm(), id as usize);
        }
    }
    assert_every_replica_holds_each_id_once(&nr, 20);
    // Not poisoned: reconfiguration works, and so do operations on the new replica.
    let added = nr.add_replica(NodeId(0)).unwrap();
    assert_eq!(nr.replicas().len(), replicas + 1);
    for r in nr.replicas().iter().filter(|r| r.id != added) {
        nr.remove_replica(r.id).unwrap();
    }
    assert_eq!(nr.replica_of(tkn), Some(added));
    assert_eq!(nr.execute_mut(Op::new(20, false, &live), tkn).disarm(), 20);
    drop(nr);
    assert_eq!(
        live.now(),
        0,
        "every operation and journal dropped exactly once"
    );
}

/// Four threads on two replicas share a four-entry log; every seventh operation panics
/// when dropped. Each such panic reaches at most one call (whichever was combining when
/// the slot was reused; a call that dropped two resumes the first); every operation is
/// applied exactly once on both replicas, each is dropped exactly once, and the instance
/// never poisons.
#[test]
fn concurrent_drop_panics_are_each_resumed_once_and_lose_nothing() {
    quiet_panics(&[TAG]);
    watchdog("drop panics, four threads", LIMIT, || {
        const THREADS: u64 = 4;
        const WRITES: u64 = 300;
        let live = Arc::new(Live::default());
        let nr = NodeReplicated::builder(Journal::new(&live))
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(4)
            .build()
            .unwrap();
        let caught: Vec<Vec<String>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (nr, live) = (&nr, &live);
                    s.spawn(move || {
                        let tkn = nr.register().unwrap();
                        let mut caught = Vec::new();
                        for k in 0..WRITES {
                            let id = t * WRITES + k;
                            let op = Op::new(id, id % 7 == 3, live);
                            match panic::catch_unwind(panic::AssertUnwindSafe(|| {
                                nr.execute_mut(op, tkn)
                            })) {
                                Ok(r) => drop(r.disarm()),
                                Err(p) => caught.push(message(&*p)),
                            }
                        }
                        caught
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        // Four more writes reuse every slot, so every bomb has gone off.
        let tkn = nr.register().unwrap();
        let mut flush_caught = Vec::new();
        for k in 0..4 {
            let op = Op::new(THREADS * WRITES + k, false, &live);
            match panic::catch_unwind(panic::AssertUnwindSafe(|| nr.execute_mut(op, tkn))) {
                Ok(r) => drop(r.disarm()),
                Err(p) => flush_caught.push(message(&*p)),
            }
        }
        // A call that dropped several panicking operations resumes the first panic and
        // drops the others' payloads: each resumed panic names a distinct bomb.
        let mut went_off: Vec<String> = caught.into_iter().flatten().collect();
        went_off.extend(flush_caught);
        let bombs: Vec<String> = (0..THREADS * WRITES)
            .filter(|id| id % 7 == 3)
            .map(|id| format!("{TAG} op {id} dropped"))
            .collect();
        went_off.sort();
        let resumed = went_off.len();
        went_off.dedup();
        assert_eq!(went_off.len(), resumed, "a drop panic resumed twice");
        assert!(went_off.iter().all(|m| bombs.contains(m)), "{went_off:?}");
        assert!(resumed >= 1, "every bomb went off in some call");
        assert_every_replica_holds_each_id_once(&nr, THREADS * WRITES + 4);
        assert!(nr.add_replica(NodeId(0)).is_ok(), "not poisoned");
        drop(nr);
        assert_eq!(live.now(), 0, "every operation dropped exactly once");
    });
}

/// Dropping the instance drops the operations still in the log; one that panics makes
/// the drop panic, and every other operation and replica is still dropped.
#[test]
fn a_panicking_drop_in_the_log_at_the_end_drops_everything_else() {
    quiet_panics(&[TAG]);
    watchdog("drop panic at the end", LIMIT, || {
        let live = Arc::new(Live::default());
        let nr = NodeReplicated::builder(Journal::new(&live))
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(8)
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        for id in 0..6u64 {
            nr.execute_mut(Op::new(id, id == 4, &live), tkn).disarm();
        }
        let m = panic_message(move || drop(nr));
        assert_eq!(m, format!("{TAG} op 4 dropped"));
        assert_eq!(live.now(), 0, "all else dropped, nothing twice");
    });
}

/// A response is dropped by LD-NR on every replica but the owner's. A response whose
/// `Drop` panics there is ignored: the operation was applied in full, the owner gets its
/// response, and the replicas agree.
#[test]
fn a_response_that_panics_in_drop_on_another_replica_is_ignored() {
    quiet_panics(&[TAG]);
    watchdog("response drop panics", LIMIT, || {
        let live = Arc::new(Live::default());
        let journal = Journal::new(&live);
        let bombs = journal.bombs.clone();
        let nr = NodeReplicated::builder(journal)
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(4)
            .build()
            .unwrap();
        let tokens = tokens_on_every_replica(&nr);
        for id in 0..40u64 {
            let (_, tkn) = tokens[id as usize % 2];
            let mut op = Op::new(id, false, &live);
            op.bomb_response = id % 3 == 0;
            assert_eq!(nr.execute_mut(op, tkn).disarm(), id as usize);
        }
        assert_every_replica_holds_each_id_once(&nr, 40);
        assert!(
            bombs.load(SeqCst) > 0,
            "the other replica dropped armed responses"
        );
        assert!(nr.add_replica(NodeId(0)).is_ok(), "not poisoned");
        drop(nr);
        assert_eq!(live.now(), 0);
    });
}

/// The structure's `Drop` panics in `remove_replica`: the panic unwinds from it, the
/// replica is removed all the same, and the instance works on; dropping the instance
/// with a panicking replica drops the others too.
#[test]
fn a_replica_that_panics_in_drop() {
    quiet_panics(&[TAG]);
    watchdog("replica drop panics", LIMIT, || {
        let live = Arc::new(Live::default());
        let journal = Journal::new(&live);
        let bomb = journal.bomb.clone();
        let nr = NodeReplicated::builder(journal)
            .replicas(&[NodeId(0), NodeId(0), NodeId(0)])
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        nr.execute_mut(Op::new(0, false, &live), tkn).disarm();
        let victim = nr.replicas()[0].id;
        bomb.store(true, SeqCst);
        let m = panic_message(|| nr.remove_replica(victim));
        assert_eq!(m, format!("{TAG} journal dropped"));
        assert!(nr.replicas().iter().all(|r| r.id != victim), "removed");
        assert_eq!(nr.execute_mut(Op::new(1, false, &live), tkn).disarm(), 1);
        assert_every_replica_holds_each_id_once(&nr, 2);
        bomb.store(true, SeqCst);
        let m = panic_message(move || drop(nr));
        assert_eq!(m, format!("{TAG} journal dropped"));
        assert_eq!(live.now(), 0, "the other replica and every op dropped");
    });
}

/// A panic payload whose own `Drop` panics.
struct LoudPayload;

impl Drop for LoudPayload {
    fn drop(&mut self) {
        panic!("{TAG} payload dropped");
    }
}

/// Counts what it applies; `true` panics with a [`LoudPayload`].
#[derive(Debug, Clone, Default)]
struct Loud(u64);

impl Dispatch for Loud {
    type ReadOperation = ();
    type WriteOperation = bool;
    type Response = u64;

    fn dispatch(&self, _: ()) -> u64 {
        self.0
    }

    fn dispatch_mut(&mut self, loud: bool) -> u64 {
        self.0 += 1;
        if loud {
            std::panic::panic_any(LoudPayload);
        }
        self.0
    }
}

/// A `dispatch_mut` panics with a payload whose `Drop` panics too. Its owner gets the
/// payload (and drops it: its own business); the other replica, which applies the same
/// entry and has no one to give its payload to, discards it without letting that second
/// panic unwind: no reader there sees it, nothing is poisoned.
#[test]
fn a_panic_payload_that_panics_in_drop_is_discarded_quietly() {
    quiet_panics(&[TAG]);
    watchdog("loud payload", LIMIT, || {
        let nr = NodeReplicated::builder(Loud::default())
            .replicas(&[NodeId(0), NodeId(0)])
            .build()
            .unwrap();
        let tokens = tokens_on_every_replica(&nr);
        let (_, writer) = tokens[0];
        let caught = panic::catch_unwind(panic::AssertUnwindSafe(|| nr.execute_mut(true, writer)))
            .expect_err("the owner gets its operation's panic");
        assert!(caught.is::<LoudPayload>(), "the original payload");
        std::mem::forget(caught);
        for &(id, reader) in &tokens {
            assert_eq!(nr.execute((), reader), 1, "replica {id:?} applied it, once");
        }
        assert_eq!(nr.execute_mut(false, writer), 2, "not poisoned");
    });
}
