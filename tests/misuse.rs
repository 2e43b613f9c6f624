//! Re-entrant calls (the crate docs' misuse table): calling `execute` or `execute_mut`
//! from inside `dispatch`/`dispatch_mut` with the calling thread's token panics with a
//! clear message instead of deadlocking or, for a nested read, releasing the outer
//! read's lock early. The instance keeps working afterwards.

mod common;

use std::cell::Cell;

use common::replicas::tokens_on_every_replica;
use common::{panic_message, watchdog, LIMIT};
use ldnr::{Dispatch, NodeId, NodeReplicated, ThreadToken};

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
