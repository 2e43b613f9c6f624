//! Programmer-error panics name the caller's line, not a line inside the library: every
//! public method that panics on a misused token or a re-entrant call is
//! `#[track_caller]` down to the panic. (One test in its own binary: it installs a panic
//! hook, which is process-wide.)

use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::Mutex;

use ldnr::{Dispatch, NodeId, NodeReplicated};

#[derive(Clone, Default)]
struct Reg(u64);

impl Dispatch for Reg {
    type ReadOperation = ();
    type WriteOperation = u64;
    type Response = u64;
    fn dispatch(&self, _: ()) -> u64 {
        self.0
    }
    fn dispatch_mut(&mut self, v: u64) -> u64 {
        std::mem::replace(&mut self.0, v)
    }
}

static SEEN: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

/// Runs `f`, expects a panic, and returns the file and line the panic reported.
fn location_of(f: impl FnOnce()) -> (String, u32) {
    SEEN.lock().unwrap().clear();
    assert!(
        catch_unwind(AssertUnwindSafe(f)).is_err(),
        "expected a panic"
    );
    SEEN.lock().unwrap().pop().expect("the hook saw the panic")
}

#[test]
fn programmer_error_panics_point_at_the_caller() {
    std::panic::set_hook(Box::new(|info| {
        if let Some(l) = info.location() {
            SEEN.lock().unwrap().push((l.file().to_string(), l.line()));
        }
    }));
    let here = Location::caller().file().to_string();
    let nr = NodeReplicated::builder(Reg::default()).build().unwrap();
    let other = NodeReplicated::builder(Reg::default()).build().unwrap();
    let foreign = other.register().unwrap();
    let stale = nr.register().unwrap();
    nr.deregister(stale).unwrap();
    let tkn = nr.register().unwrap();

    let mut checked = 0;
    macro_rules! case {
        ($what:expr, $call:expr) => {{
            let expected = line!();
            let (file, at) = location_of(|| {
                let _ = $call;
            });
            assert_eq!(file, here, "{}: the panic names {file}:{at}", $what);
            // The call's line (rustfmt may put a long call a few lines below `case!`).
            assert!(
                (expected..expected + 4).contains(&at),
                "{}: the panic names line {at}, the call is at {expected}",
                $what
            );
            checked += 1;
        }};
    }
    case!("execute, foreign token", nr.execute((), foreign));
    case!("execute_mut, foreign token", nr.execute_mut(1, foreign));
    case!("read, foreign token", nr.read(foreign, |r| r.0));
    case!("replica_of, foreign token", nr.replica_of(foreign));
    case!("deregister, foreign token", nr.deregister(foreign));
    case!("execute, stale token", nr.execute((), stale));
    case!("execute_mut, stale token", nr.execute_mut(1, stale));
    case!("read, stale token", nr.read(stale, |r| r.0));
    case!("replica_of, stale token", nr.replica_of(stale));
    // Re-entrant calls from inside a closure read: the nested call's line.
    case!("read inside read", nr.read(tkn, |_| nr.read(tkn, |r| r.0)));
    case!(
        "execute_mut inside read",
        nr.read(tkn, |_| nr.execute_mut(2, tkn))
    );
    case!("register inside read", nr.read(tkn, |_| nr.register()));
    case!(
        "add_replica inside read",
        nr.read(tkn, |_| nr.add_replica(NodeId(0)))
    );
    case!(
        "remove_replica inside read",
        nr.read(tkn, |_| nr.remove_replica(nr.replicas()[0].id))
    );
    assert_eq!(checked, 14);
    let _ = std::panic::take_hook();
    // The instance still works.
    assert_eq!(nr.execute_mut(5, tkn), 0);
    assert_eq!(nr.read(tkn, |r| r.0), 5);
}
