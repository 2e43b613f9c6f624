//! Re-entrant calls (the crate docs' misuse table): calling `execute` or `execute_mut`
//! from inside `dispatch`/`dispatch_mut` with the calling thread's token panics with a
//! clear message instead of deadlocking or, for a nested read, releasing the outer
//! read's lock early. The instance keeps working afterwards.

use std::cell::Cell;

use ldnr::{Dispatch, NodeId, NodeReplicated, ThreadToken};
use ldnr_testkit::replicas::tokens_on_every_replica;
use ldnr_testkit::{panic_message, watchdog, LIMIT};

/// What `dispatch`/`dispatch_mut` do when asked to call back into the instance.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Nested {
    Read,
    Write,
}

#[derive(Debug, Clone, Default)]
struct Reentrant(u64);

thread_local! {
    /// The instance and this thread's token, for the callbacks to call back into.
    static HANDLE: Cell<Option<(&'static NodeReplicated<Reentrant>, ThreadToken)>> =
        const { Cell::new(None) };
}

fn call_back(nested: Nested) {
    let Some((nr, tkn)) = HANDLE.with(Cell::get) else {
        return;
    };
    match nested {
        Nested::Read => {
            nr.execute(None, tkn);
        }
        Nested::Write => {
            nr.execute_mut(None, tkn);
        }
    }
}

impl Dispatch for Reentrant {
    type ReadOperation = Option<Nested>;
    type WriteOperation = Option<Nested>;
    type Response = u64;

    fn dispatch(&self, op: Option<Nested>) -> u64 {
        if let Some(n) = op {
            call_back(n);
        }
        self.0
    }

    fn dispatch_mut(&mut self, op: Option<Nested>) -> u64 {
        self.0 += 1;
        if let Some(n) = op {
            call_back(n);
        }
        self.0
    }
}

#[test]
fn reentrant_calls_panic_and_leave_the_instance_working() {
    watchdog("re-entrant calls", LIMIT, || {
        let nr: &'static NodeReplicated<Reentrant> = Box::leak(Box::new(
            NodeReplicated::builder(Reentrant::default())
                .replicas(&[NodeId(0), NodeId(0)])
                .build()
                .unwrap(),
        ));
        let tkn = nr.register().unwrap();
        HANDLE.with(|h| h.set(Some((nr, tkn))));
        let mut writes = 0;
        for nested in [Nested::Read, Nested::Write] {
            // From inside a read: the panic unwinds out of `execute`, lock released.
            let m = panic_message(|| {
                nr.execute(Some(nested), tkn);
            });
            assert!(m.contains("re-entrant call"), "{m}");
            // From inside a write: the panic is the operation's panic (its effect so far,
            // the increment, stays on every replica) and reaches its owner, this thread.
            let m = panic_message(|| {
                nr.execute_mut(Some(nested), tkn);
            });
            assert!(m.contains("re-entrant call"), "{m}");
            writes += 1;
            // Later operations work, and a writer finds no read lock left behind.
            assert_eq!(nr.execute_mut(None, tkn), writes + 1);
            writes += 1;
            assert_eq!(nr.execute(None, tkn), writes);
        }
        // Both replicas applied the same effects. Reading through other tokens brings
        // the other replica up to date: its callbacks would run with this thread's
        // first token, which is not busy then — a call back into the instance that is
        // not re-entrant for that token (see the misuse table); switch them off.
        HANDLE.with(|h| h.set(None));
        for (id, t) in tokens_on_every_replica(nr) {
            assert_eq!(nr.execute(None, t), writes, "replica {id:?}");
        }
    });
}

/// What a callback of [`Calls`] does with the instance it belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Call {
    Nothing,
    /// `execute_mut` with a second token this thread registered.
    WriteWithSecondToken,
    AddReplica,
    RemoveReplica,
    Register,
}

/// A counter whose callbacks (`dispatch`, `dispatch_mut`, `Clone`, and the `Drop` of its
/// write operations) call back into their own instance as the thread-local `ON_CLONE`,
/// the operation, or the operation's `on_drop` say. With `std`, each such call panics with
/// "re-entrant call" instead of waiting for itself.
#[derive(Debug, Default)]
struct Calls(u64);

#[derive(Debug)]
struct CallOp {
    call: Call,
    on_drop: Call,
}

/// Clones (which `dispatch_mut` consumes) do nothing when dropped: only the operation in
/// the log does.
impl Clone for CallOp {
    fn clone(&self) -> Self {
        CallOp {
            call: self.call,
            on_drop: Call::Nothing,
        }
    }
}

impl Drop for CallOp {
    fn drop(&mut self) {
        let call = std::mem::replace(&mut self.on_drop, Call::Nothing);
        call_in(call);
    }
}

thread_local! {
    /// The instance and a second token of this thread, for the callbacks.
    static CALLS: Cell<Option<(&'static NodeReplicated<Calls>, ThreadToken)>> =
        const { Cell::new(None) };
    /// What `Clone` of the structure does (it runs in `add_replica`).
    static ON_CLONE: Cell<Call> = const { Cell::new(Call::Nothing) };
}

fn call_in(call: Call) {
    let Some((nr, tkn)) = CALLS.with(Cell::get) else {
        return;
    };
    make_call(nr, tkn, call, CallOp::plain);
}

/// Makes `call` into `nr`: a write (`write()`) with the thread's second token `second`,
/// a reconfiguration or a registration.
fn make_call<D: Dispatch + Clone + Send + Sync>(
    nr: &NodeReplicated<D>,
    second: ThreadToken,
    call: Call,
    write: impl FnOnce() -> D::WriteOperation,
) {
    match call {
        Call::Nothing => {}
        Call::WriteWithSecondToken => {
            nr.execute_mut(write(), second);
        }
        Call::AddReplica => {
            let _ = nr.add_replica(NodeId(0));
        }
        Call::RemoveReplica => {
            let _ = nr.remove_replica(nr.replicas()[0].id);
        }
        Call::Register => {
            let _ = nr.register();
        }
    }
}

impl CallOp {
    fn plain() -> Self {
        CallOp {
            call: Call::Nothing,
            on_drop: Call::Nothing,
        }
    }
}

impl Clone for Calls {
    fn clone(&self) -> Self {
        call_in(ON_CLONE.with(Cell::get));
        Calls(self.0)
    }
}

impl Dispatch for Calls {
    type ReadOperation = Call;
    type WriteOperation = CallOp;
    type Response = u64;

    fn dispatch(&self, call: Call) -> u64 {
        call_in(call);
        self.0
    }

    fn dispatch_mut(&mut self, op: CallOp) -> u64 {
        self.0 += 1;
        call_in(op.call);
        self.0
    }
}

/// Every way user code can call back into its own instance: from `dispatch` and
/// `dispatch_mut` with a *second* token of the same thread, or by reconfiguring or
/// registering; from the structure's `Clone` while `add_replica` clones it (the source is
/// frozen: with one replica this waited for itself for ever); from a write operation's
/// `Drop` (with one replica when `dispatch_mut` consumes it, with two when the log drops
/// it). Each panics with "re-entrant call" (from a write operation, as that operation's
/// panic; from a `Drop` in the log, in the call that was combining)
/// and the instance keeps working: the same replicas, every write applied once.
#[test]
fn every_call_back_into_the_instance_panics_instead_of_waiting_for_itself() {
    watchdog("call backs", LIMIT, || {
        let nr: &'static NodeReplicated<Calls> = Box::leak(Box::new(
            NodeReplicated::builder(Calls::default())
                .log_capacity(4)
                .build()
                .unwrap(),
        ));
        let tkn = nr.register().unwrap();
        let second = nr.register().unwrap();
        CALLS.with(|h| h.set(Some((nr, second))));
        let ids =
            |nr: &NodeReplicated<Calls>| -> Vec<_> { nr.replicas().iter().map(|r| r.id).collect() };
        let before = ids(nr);
        let mut writes = 0;
        for call in [
            Call::WriteWithSecondToken,
            Call::AddReplica,
            Call::RemoveReplica,
            Call::Register,
        ] {
            let m = panic_message(|| nr.execute(call, tkn));
            assert!(m.contains("re-entrant call"), "read, {call:?}: {m}");
            let op = CallOp {
                call,
                on_drop: Call::Nothing,
            };
            let m = panic_message(|| nr.execute_mut(op, tkn));
            assert!(m.contains("re-entrant call"), "write, {call:?}: {m}");
            writes += 1;
            assert_eq!(ids(nr), before, "{call:?} changed the replica set");
            // No lock left behind: a write and a read on both tokens.
            writes += 1;
            assert_eq!(nr.execute_mut(CallOp::plain(), second), writes);
            assert_eq!(nr.execute(Call::Nothing, tkn), writes);
        }
        // From `Clone` during `add_replica`, with the only replica frozen as the source.
        ON_CLONE.with(|c| c.set(Call::WriteWithSecondToken));
        let m = panic_message(|| nr.add_replica(NodeId(0)));
        ON_CLONE.with(|c| c.set(Call::Nothing));
        assert!(m.contains("re-entrant call"), "clone: {m}");
        assert_eq!(ids(nr), before, "a failed add changes nothing");
        // From a write operation's `Drop`. With one replica the log is skipped (L9):
        // `dispatch_mut` consumes the operation, so its `Drop` runs there and the panic is
        // the operation's own, its effect kept.
        let dropping = || CallOp {
            call: Call::Nothing,
            on_drop: Call::WriteWithSecondToken,
        };
        writes += 1;
        let m = panic_message(|| nr.execute_mut(dropping(), tkn));
        assert!(m.contains("re-entrant call"), "drop, one replica: {m}");
        assert_eq!(nr.execute(Call::Nothing, tkn), writes, "applied once");
        // With two replicas the log drops it four writes later, in the call combining then.
        let added = nr.add_replica(NodeId(0)).unwrap();
        writes += 1;
        assert_eq!(nr.execute_mut(dropping(), tkn), writes);
        for k in 0..4 {
            writes += 1;
            if k == 3 {
                let m = panic_message(|| nr.execute_mut(CallOp::plain(), tkn));
                assert!(m.contains("re-entrant call"), "drop: {m}");
            } else {
                assert_eq!(nr.execute_mut(CallOp::plain(), tkn), writes);
            }
        }
        assert_eq!(nr.execute(Call::Nothing, tkn), writes, "each write once");
        CALLS.with(|h| h.set(None));
        assert_eq!(nr.replicas().len(), 2, "the instance still reconfigures");
        nr.remove_replica(added).unwrap();
    });
}

/// A counter whose `dispatch_mut` calls, through the thread-local `HOPS`, into another
/// instance (which calls back into the first) — the re-entry goes through a second
/// instance and a second token of the first.
#[derive(Debug, Clone, Default)]
struct Hop(u64);

/// An instance to call and this thread's token for it.
type Hand = (&'static NodeReplicated<Hop>, ThreadToken);

thread_local! {
    /// Where each hop goes, by the value written.
    static HOPS: Cell<Option<[Hand; 2]>> = const { Cell::new(None) };
}

impl Dispatch for Hop {
    type ReadOperation = ();
    type WriteOperation = u8;
    type Response = u64;

    fn dispatch(&self, _: ()) -> u64 {
        self.0
    }

    /// `1`: call the second instance with `2`; `2`: call the first instance with `0`.
    fn dispatch_mut(&mut self, hop: u8) -> u64 {
        self.0 += 1;
        if let (Some(hops), 1..=2) = (HOPS.with(Cell::get), hop) {
            let (nr, tkn) = hops[usize::from(hop - 1)];
            nr.execute_mut(if hop == 1 { 2 } else { 0 }, tkn);
        }
        self.0
    }
}

/// A's `dispatch_mut` calls B, whose `dispatch_mut` calls A again with a second token of
/// the same thread: the thread holds A's combiner lock, so that would wait for itself.
/// Every enclosing instance is marked, so it panics with "re-entrant call" instead.
#[test]
fn a_call_back_through_another_instance_panics() {
    watchdog("A -> B -> A", LIMIT, || {
        let a: &'static NodeReplicated<Hop> = Box::leak(Box::new(
            NodeReplicated::builder(Hop::default()).build().unwrap(),
        ));
        let b: &'static NodeReplicated<Hop> = Box::leak(Box::new(
            NodeReplicated::builder(Hop::default()).build().unwrap(),
        ));
        let (first, second, on_b) = (
            a.register().unwrap(),
            a.register().unwrap(),
            b.register().unwrap(),
        );
        HOPS.with(|h| h.set(Some([(b, on_b), (a, second)])));
        let m = panic_message(|| a.execute_mut(1, first));
        assert!(m.contains("re-entrant call"), "{m}");
        HOPS.with(|h| h.set(None));
        // Both instances work on, each op applied once (the panicking ones included).
        assert_eq!(a.execute_mut(0, first), 2);
        assert_eq!(b.execute((), on_b), 1);
    });
}

/// An affinity manager whose `distance` takes a snapshot of the instance (`replicas()`)
/// while `register` asks it for distances: no call waits for the registration it is
/// inside of.
#[test]
fn an_affinity_manager_may_take_a_snapshot_inside_register() {
    use std::sync::OnceLock;

    use ldnr::{AffinityError, AffinityManager, SavedPolicy};

    static NR: OnceLock<&'static NodeReplicated<Hop>> = OnceLock::new();

    #[derive(Debug)]
    struct Snapshots;
    impl AffinityManager for Snapshots {
        fn current_node(&self) -> NodeId {
            NodeId(0)
        }
        fn nodes(&self) -> Vec<NodeId> {
            vec![NodeId(0), NodeId(1)]
        }
        fn distance(&self, a: NodeId, b: NodeId) -> u32 {
            if let Some(nr) = NR.get() {
                assert_eq!(nr.replicas().len(), 2);
            }
            if a == b {
                10
            } else {
                20
            }
        }
        fn set_memory_node(&self, _: NodeId) -> Result<SavedPolicy, AffinityError> {
            Ok(SavedPolicy::UNCHANGED)
        }
        fn restore_memory_policy(&self, _: SavedPolicy) -> Result<(), AffinityError> {
            Ok(())
        }
    }

    watchdog("snapshot inside register", LIMIT, || {
        let nr: &'static NodeReplicated<Hop> = Box::leak(Box::new(
            NodeReplicated::builder(Hop::default())
                .replicas(&[NodeId(0), NodeId(1)])
                .affinity(std::sync::Arc::new(Snapshots))
                .build()
                .unwrap(),
        ));
        NR.set(nr).unwrap();
        let tkn = nr.register().unwrap();
        assert_eq!(nr.execute_mut(0, tkn), 1);
        assert_eq!(nr.replicas().iter().map(|r| r.threads).sum::<usize>(), 1);
    });
}

/// A counter whose reads call the next instance of the thread-local `CHAIN`; the last
/// one calls back into the instance `TARGET` picks, as `Call` says.
#[derive(Debug, Clone, Default)]
struct Link(u64);

/// An instance of the chain, this thread's token for it and a second token.
type ChainLink = (&'static NodeReplicated<Link>, ThreadToken, ThreadToken);

thread_local! {
    static CHAIN: std::cell::RefCell<Vec<ChainLink>> = const { std::cell::RefCell::new(Vec::new()) };
    static TARGET: Cell<(usize, Call)> = const { Cell::new((0, Call::Nothing)) };
}

impl Dispatch for Link {
    type ReadOperation = usize;
    type WriteOperation = ();
    type Response = u64;

    /// Reads on instance `level` of the chain.
    fn dispatch(&self, level: usize) -> u64 {
        let next = CHAIN.with(|c| c.borrow().get(level + 1).copied());
        match next {
            Some((nr, tkn, _)) => {
                nr.execute(level + 1, tkn);
            }
            None => {
                let (target, call) = TARGET.with(Cell::get);
                let Some((nr, _, second)) = CHAIN.with(|c| c.borrow().get(target).copied()) else {
                    return self.0;
                };
                make_call(nr, second, call, || ());
            }
        }
        self.0
    }

    fn dispatch_mut(&mut self, (): ()) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// User code nested through seventy instances (each read calls the next) calls back into
/// one of them: into the outermost, and into the 67th, which is deeper than the marks
/// keep in place. Every such call panics with "re-entrant call" (before, the deep one
/// waited for itself in `remove_replica` or a write), and the marks unwind with the
/// panic: afterwards every instance takes reads, writes and reconfiguration.
#[test]
fn a_call_back_from_deep_nesting_panics() {
    const DEPTH: usize = 70;
    watchdog("deep nesting", LIMIT, || {
        let chain: Vec<ChainLink> = (0..DEPTH)
            .map(|_| {
                let nr: &'static NodeReplicated<Link> = Box::leak(Box::new(
                    NodeReplicated::builder(Link::default())
                        .replicas(&[NodeId(0), NodeId(0)])
                        .build()
                        .unwrap(),
                ));
                (nr, nr.register().unwrap(), nr.register().unwrap())
            })
            .collect();
        CHAIN.with(|c| *c.borrow_mut() = chain.clone());
        let (outer, tkn, _) = chain[0];
        for target in [0, 66, DEPTH - 2] {
            for call in [
                Call::WriteWithSecondToken,
                Call::AddReplica,
                Call::RemoveReplica,
                Call::Register,
            ] {
                TARGET.with(|t| t.set((target, call)));
                let m = panic_message(|| outer.execute(0, tkn));
                assert!(
                    m.contains("re-entrant call"),
                    "into {target}, {call:?}: {m}"
                );
            }
        }
        // Nested calls that are not re-entrant still run at every depth.
        TARGET.with(|t| t.set((DEPTH - 1, Call::Nothing)));
        assert_eq!(outer.execute(0, tkn), 0);
        CHAIN.with(|c| c.borrow_mut().clear());
        for (level, (nr, tkn, second)) in chain.into_iter().enumerate() {
            assert_eq!(nr.execute_mut((), tkn), 1, "instance {level}");
            assert_eq!(nr.execute(level, second), 1, "instance {level}");
            assert_eq!(nr.replicas().len(), 2, "instance {level}");
            let added = nr.add_replica(NodeId(0)).unwrap();
            nr.remove_replica(added).unwrap();
        }
    });
}
