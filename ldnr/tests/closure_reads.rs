//! `NodeReplicated::read`: closure reads against a sequential model, what a panicking or
//! re-entering closure does, and reads on every replica of writes made on another.
//! (Linearizability of closure reads under replica churn: `recorded_map_ops` issues half
//! its gets as closures, so `linearizability.rs`, `dynamic_replicas` and `threads.rs`
//! check them.)

use std::collections::BTreeMap;
use std::convert::Infallible;

use ldnr::{Dispatch, NodeId, NodeReplicated};
use ldnr_testkit::{panic_message, quiet_panics, watchdog, LIMIT};
use proptest::prelude::*;

/// A `String`-keyed index: writes are data, every read is a closure.
#[derive(Clone, Default, Debug, PartialEq)]
struct Index(BTreeMap<String, u64>);

#[derive(Clone, Debug)]
enum Write {
    Insert(String, u64),
    Remove(String),
}

impl Dispatch for Index {
    type ReadOperation = Infallible;
    type WriteOperation = Write;
    type Response = Option<u64>;
    fn dispatch(&self, op: Infallible) -> Option<u64> {
        match op {}
    }
    fn dispatch_mut(&mut self, op: Write) -> Option<u64> {
        match op {
            Write::Insert(k, v) => self.0.insert(k, v),
            Write::Remove(k) => self.0.remove(&k),
        }
    }
}

const QUIET: &[&str] = &["closure-reads:", "ldnr: re-entrant"];

fn key(k: u8) -> String {
    format!("key-{k:02}")
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u64),
    Remove(u8),
    Get(u8),
    Range(u8, u8),
    Len,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..24, any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
        (0u8..24).prop_map(Op::Remove),
        (0u8..24).prop_map(Op::Get),
        (0u8..24, 0u8..24).prop_map(|(a, b)| Op::Range(a.min(b), a.max(b))),
        Just(Op::Len),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every closure read answers what the same closure answers on a plain `BTreeMap`
    /// that got the same writes, with one replica and with two (reads alternating
    /// between a thread on each).
    #[test]
    fn closure_reads_match_a_btreemap(ops in prop::collection::vec(op(), 1..200), replicas in 1usize..3) {
        let nr = NodeReplicated::builder(Index::default())
            .replicas(&vec![NodeId(0); replicas])
            .log_capacity(8)
            .build()
            .unwrap();
        let tokens = [nr.register().unwrap(), nr.register().unwrap()];
        let mut model = BTreeMap::new();
        for (i, op) in ops.into_iter().enumerate() {
            let tkn = tokens[i % 2];
            match op {
                Op::Insert(k, v) => prop_assert_eq!(nr.execute_mut(Write::Insert(key(k), v), tkn), model.insert(key(k), v)),
                Op::Remove(k) => prop_assert_eq!(nr.execute_mut(Write::Remove(key(k)), tkn), model.remove(&key(k))),
                Op::Get(k) => {
                    let k = key(k);
                    // The closure borrows the caller's `&str`.
                    let k: &str = &k;
                    prop_assert_eq!(nr.read(tkn, |i| i.0.get(k).copied()), model.get(k).copied());
                }
                Op::Range(a, b) => {
                    let got: Vec<(String, u64)> =
                        nr.read(tkn, |i| i.0.range(key(a)..key(b)).map(|(k, v)| (k.clone(), *v)).collect());
                    let want: Vec<(String, u64)> =
                        model.range(key(a)..key(b)).map(|(k, v)| (k.clone(), *v)).collect();
                    prop_assert_eq!(got, want);
                }
                Op::Len => prop_assert_eq!(nr.read(tkn, |i| i.0.len()), model.len()),
            }
        }
        for tkn in tokens {
            prop_assert_eq!(nr.read(tkn, |i| i.clone()), Index(model.clone()));
        }
    }
}

/// A panic in the closure unwinds out of `read` only: the read lock is released (the
/// same thread then writes, which waits for the replica's readers), the instance is not
/// poisoned, and other threads go on.
#[test]
fn a_panicking_closure_unwinds_out_of_read_only() {
    quiet_panics(QUIET);
    watchdog("panicking closure", LIMIT, || {
        let nr = NodeReplicated::builder(Index::default())
            .replicas(&[NodeId(0), NodeId(0)])
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        nr.execute_mut(Write::Insert(key(1), 1), tkn);
        let msg = panic_message(|| nr.read(tkn, |_| -> u64 { panic!("closure-reads: boom") }));
        assert_eq!(msg, "closure-reads: boom");
        // The read lock was released: a write on the same replica completes.
        assert_eq!(nr.execute_mut(Write::Insert(key(1), 2), tkn), Some(1));
        assert_eq!(nr.read(tkn, |i| i.0.get(&key(1)).copied()), Some(2));
        // Other threads, on both replicas, see the write.
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let t = nr.register().unwrap();
                    assert_eq!(nr.read(t, |i| i.0.get(&key(1)).copied()), Some(2));
                    nr.deregister(t).unwrap();
                })
                .join()
                .unwrap();
            }
        });
    });
}

/// A call into the same instance from inside the closure is refused with a panic (it
/// would wait for itself), whether it is a read, a write, a registration or a
/// reconfiguration; the instance goes on working. Without `std` only calls with the
/// token of the thread inside are seen (crate docs, "Panics"): the read and the write.
#[test]
fn calls_from_inside_the_closure_are_refused() {
    quiet_panics(QUIET);
    watchdog("re-entry from a closure", LIMIT, || {
        let nr = NodeReplicated::builder(Index::default()).build().unwrap();
        let tkn = nr.register().unwrap();
        let nested: [(&str, &dyn Fn()); 4] = [
            ("read", &|| {
                let _ = nr.read(tkn, |i| i.0.len());
            }),
            ("execute_mut", &|| {
                let _ = nr.execute_mut(Write::Remove(key(0)), tkn);
            }),
            ("register", &|| drop(nr.register())),
            ("add_replica", &|| drop(nr.add_replica(NodeId(0)))),
        ];
        let seen = if cfg!(feature = "std") { 4 } else { 2 };
        for (what, call) in nested.into_iter().take(seen) {
            let msg = panic_message(|| nr.read(tkn, |_| call()));
            assert!(msg.contains("re-entrant"), "{what} from a closure: {msg}");
            assert_eq!(
                nr.execute_mut(Write::Insert(key(0), 7), tkn),
                if what == "read" { None } else { Some(7) },
                "after {what}"
            );
        }
        assert_eq!(nr.replicas().len(), 1);
    });
}

/// A closure read of another instance from inside the closure is fine (only calls into
/// the same instance would wait for themselves).
#[test]
fn a_closure_may_read_another_instance() {
    let a = NodeReplicated::builder(Index::default()).build().unwrap();
    let b = NodeReplicated::builder(Index::default()).build().unwrap();
    let (ta, tb) = (a.register().unwrap(), b.register().unwrap());
    b.execute_mut(Write::Insert(key(3), 30), tb);
    a.execute_mut(Write::Insert(key(3), 3), ta);
    let sum = a.read(ta, |i| i.0[&key(3)] + b.read(tb, |j| j.0[&key(3)]));
    assert_eq!(sum, 33);
}
