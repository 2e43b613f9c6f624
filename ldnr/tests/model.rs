//! Model-based property tests: `NodeReplicated<TestMap>` answers like a plain `HashMap`.
//!
//! Proptest generates random configurations (1–3 replicas, log capacity a power of two
//! from 4 to 64, several tokens spread over the replicas) and random sequences of gets,
//! inserts, removes and length queries over a small key range. Single-threaded, every
//! response must equal the one from a `std::collections::HashMap` given the same
//! operations. Multi-threaded, each thread works on its own key range and compares with
//! its own private `HashMap`: disjoint keys make that expectation exact.

use std::collections::HashMap;

use ldnr::{NodeId, NodeReplicated};
use ldnr_testkit::map::{MapRead, MapWrite, TestMap};
use ldnr_testkit::{watchdog, LIMIT};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Keys per thread (a small range, so operations hit the same keys often).
const KEYS: u64 = 8;

#[derive(Debug, Clone, Copy)]
enum Op {
    Get(u64),
    Insert(u64, u64),
    Remove(u64),
    Len,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..KEYS).prop_map(Op::Get),
        3 => (0..KEYS, 0..1_000u64).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (0..KEYS).prop_map(Op::Remove),
        1 => Just(Op::Len),
    ]
}

/// Replicas, log capacity, number of tokens.
fn config() -> impl Strategy<Value = (usize, usize, usize)> {
    (1..=3usize, 2..=6u32, 1..=4usize).prop_map(|(r, log2, tokens)| (r, 1 << log2, tokens))
}

fn build(replicas: usize, log: usize) -> NodeReplicated<TestMap> {
    NodeReplicated::builder(TestMap::default())
        .replicas(&vec![NodeId(0); replicas])
        .log_capacity(log)
        .build()
        .expect("a valid configuration")
}

/// Applies `op` (with keys shifted by `base`) to both and returns both answers.
fn step(
    nr: &NodeReplicated<TestMap>,
    tkn: ldnr::ThreadToken,
    model: &mut HashMap<u64, u64>,
    base: u64,
    op: Op,
) -> (Option<u64>, Option<u64>) {
    match op {
        Op::Get(k) => (
            nr.execute(MapRead::Get(base + k), tkn),
            model.get(&(base + k)).copied(),
        ),
        Op::Insert(k, v) => (
            nr.execute_mut(MapWrite::Insert(base + k, v), tkn),
            model.insert(base + k, v),
        ),
        Op::Remove(k) => (
            nr.execute_mut(MapWrite::Remove(base + k), tkn),
            model.remove(&(base + k)),
        ),
        Op::Len => (nr.execute(MapRead::Len, tkn), Some(model.len() as u64)),
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn single_thread_matches_hashmap() {
    watchdog("model: single thread", LIMIT, || {
        let strategy = (
            config(),
            prop::collection::vec((any::<usize>(), op()), 0..300),
        );
        let result = runner(512).run(&strategy, |((replicas, log, tokens), ops)| {
            let nr = build(replicas, log);
            let tkns: Vec<_> = (0..tokens)
                .map(|_| nr.register().expect("below the thread limit"))
                .collect();
            // Tokens are spread over the replicas (fewest threads first).
            let busy = nr.replicas().iter().filter(|r| r.threads > 0).count();
            prop_assert_eq!(busy, tokens.min(replicas));
            let mut model = HashMap::new();
            for (i, &(pick, op)) in ops.iter().enumerate() {
                let tkn = tkns[pick % tkns.len()];
                let (got, want) = step(&nr, tkn, &mut model, 0, op);
                prop_assert_eq!(got, want, "op #{} {:?} via {:?}", i, op, tkn);
            }
            // Every token (hence every replica with a thread) ends in the model's state.
            for &tkn in &tkns {
                for k in 0..KEYS {
                    prop_assert_eq!(nr.execute(MapRead::Get(k), tkn), model.get(&k).copied());
                }
                prop_assert_eq!(nr.execute(MapRead::Len, tkn), Some(model.len() as u64));
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    });
}

#[test]
fn threads_on_disjoint_keys_match_their_own_hashmap() {
    watchdog("model: disjoint keys", LIMIT, || {
        let strategy = (
            config(),
            prop::collection::vec(prop::collection::vec(op(), 0..400), 2..=4),
        );
        let result = runner(64).run(&strategy, |((replicas, log, _), per_thread)| {
            let nr = build(replicas, log);
            let threads = per_thread.len() as u64;
            let outcome: Result<(), TestCaseError> = std::thread::scope(|s| {
                let workers: Vec<_> = per_thread
                    .iter()
                    .enumerate()
                    .map(|(t, ops)| {
                        let nr = &nr;
                        s.spawn(move || -> Result<HashMap<u64, u64>, TestCaseError> {
                            let tkn = nr.register().expect("below the thread limit");
                            let base = t as u64 * 1_000;
                            let mut model = HashMap::new();
                            for (i, &op) in ops.iter().enumerate() {
                                let (got, want) = step(nr, tkn, &mut model, base, op);
                                if let Op::Len = op {
                                    // Other threads' keys count too; ours are exact.
                                    let len = got.expect("Len answers Some");
                                    prop_assert!(
                                        len >= model.len() as u64 && len <= threads * KEYS,
                                        "thread {} op #{}: len {} with {} own keys",
                                        t,
                                        i,
                                        len,
                                        model.len()
                                    );
                                } else {
                                    prop_assert_eq!(got, want, "thread {} op #{} {:?}", t, i, op);
                                }
                            }
                            Ok(model)
                        })
                    })
                    .collect();
                let mut all = HashMap::new();
                for w in workers {
                    all.extend(w.join().expect("a worker panicked")?);
                }
                // Afterwards, a fresh token sees the union of the private models.
                let tkn = nr.register().expect("below the thread limit");
                prop_assert_eq!(nr.execute(MapRead::Len, tkn), Some(all.len() as u64));
                for (&k, &v) in &all {
                    prop_assert_eq!(nr.execute(MapRead::Get(k), tkn), Some(v));
                }
                Ok(())
            });
            outcome
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    });
}
