//! The log wraps around many times without losing, repeating or reordering writes, and
//! an idle replica never stalls the others.
//!
//! The structure records an order-sensitive digest of every write it applies. Each write
//! returns its position in the global order (the replica's applied count after it), so
//! the test can rebuild the order the log chose, check that it is a permutation of all
//! writes that respects each thread's program order, and compute the digest every
//! replica must hold. Logs of 4 and 8 entries make thousands of writes lap the log
//! hundreds of times.

use std::sync::{mpsc, Barrier};

use ldnr::{Dispatch, NodeId, NodeReplicated};
use ldnr_testkit::replicas::tokens_on_every_replica;
use ldnr_testkit::{watchdog, LIMIT};

/// What a replica has applied: how many writes, the last one, and a digest of all of
/// them in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Trace {
    applied: u64,
    last: u64,
    digest: u64,
}

/// Appends a value to the trace.
#[derive(Debug, Clone, Copy)]
struct Step(u64);

fn fold(digest: u64, v: u64) -> u64 {
    (digest ^ v)
        .wrapping_mul(0x0000_0100_0000_01b3)
        .rotate_left(17)
}

impl Dispatch for Trace {
    type ReadOperation = ();
    type WriteOperation = Step;
    type Response = Trace;

    fn dispatch(&self, _: ()) -> Trace {
        *self
    }

    fn dispatch_mut(&mut self, Step(v): Step) -> Trace {
        self.applied += 1;
        self.last = v;
        self.digest = fold(self.digest, v);
        *self
    }
}

/// The trace of applying `values` in order.
fn expected(values: impl IntoIterator<Item = u64>) -> Trace {
    values.into_iter().fold(Trace::default(), |t, v| Trace {
        applied: t.applied + 1,
        last: v,
        digest: fold(t.digest, v),
    })
}

/// `threads` threads each do `writes` writes; then every replica must hold the trace of
/// the order the responses describe.
fn run(log: usize, replicas: usize, threads: usize, writes: u64) {
    let what = format!("log wrap: log {log}, {replicas} replicas, {threads} threads");
    watchdog(&what.clone(), LIMIT, move || {
        let nr = NodeReplicated::builder(Trace::default())
            .replicas(&vec![NodeId(0); replicas])
            .log_capacity(log)
            .build()
            .expect("a valid configuration");
        let barrier = Barrier::new(threads);
        let mut answers: Vec<(u64, u64)> = Vec::new();
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (nr, barrier) = (&nr, &barrier);
                    s.spawn(move || {
                        let tkn = nr.register().expect("below the thread limit");
                        let mut out = Vec::with_capacity(writes as usize);
                        let mut prev = 0;
                        barrier.wait();
                        for i in 0..writes {
                            let v = ((t as u64 + 1) << 32) | i;
                            let after = nr.execute_mut(Step(v), tkn);
                            assert_eq!(after.last, v, "thread {t}: response of another write");
                            assert!(
                                after.applied > prev,
                                "thread {t}: write #{i} ordered before the previous one"
                            );
                            prev = after.applied;
                            out.push((after.applied, v));
                            if i % 32 == 31 {
                                // Not synchronization: lets threads interleave on few cores.
                                std::thread::yield_now();
                            }
                        }
                        out
                    })
                })
                .collect();
            for w in workers {
                answers.extend(w.join().expect("a worker panicked"));
            }
        });

        // The responses place every write at a distinct position 1..=total.
        let total = writes * threads as u64;
        let mut order: Vec<Option<u64>> = vec![None; total as usize];
        for &(pos, v) in &answers {
            assert!(
                (1..=total).contains(&pos),
                "{what}: position {pos} of {total}"
            );
            let slot = &mut order[pos as usize - 1];
            assert!(
                slot.is_none(),
                "{what}: two writes at position {pos}: {slot:?} and {v}"
            );
            *slot = Some(v);
        }
        let want = expected(order.into_iter().map(|v| v.expect("every position filled")));
        assert!(
            total as usize >= 100 * log,
            "the log lapped at least 100 times"
        );

        for (id, tkn) in tokens_on_every_replica(&nr) {
            assert_eq!(nr.execute((), tkn), want, "{what}: replica {id:?}");
        }
        for info in nr.replicas() {
            assert_eq!(info.applied as u64, total, "{what}: {info:?}");
        }
    });
}

#[test]
fn log_4_two_replicas() {
    run(4, 2, 4, 12_000);
}

#[test]
fn log_4_four_replicas() {
    run(4, 4, 4, 10_000);
}

#[test]
fn log_8_three_replicas() {
    run(8, 3, 4, 12_000);
}

#[test]
fn log_8_four_replicas_more_threads() {
    run(8, 4, 6, 8_000);
}

/// A thread registered on one replica does nothing while a thread on the other replica
/// does 100 × capacity writes. The writer can only finish if something applies the log
/// to the idle replica (cross-combining); afterwards the idle thread reads and must see
/// every write, the last one last.
fn idle_thread_sees_last_write(log: usize) {
    let what = format!("idle thread, log {log}");
    watchdog(&what.clone(), LIMIT, move || {
        let nr = NodeReplicated::builder(Trace::default())
            .replicas(&[NodeId(0), NodeId(0)])
            .log_capacity(log)
            .build()
            .expect("a valid configuration");
        let total = 100 * log as u64;
        let (registered_tx, registered_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let nr = &nr;
            let idle = s.spawn(move || {
                let tkn = nr.register().expect("below the thread limit");
                registered_tx.send(()).expect("the writer waits for this");
                done_rx
                    .recv_timeout(LIMIT)
                    .expect("the writer finished (or the watchdog fires first)");
                nr.execute((), tkn)
            });
            registered_rx
                .recv_timeout(LIMIT)
                .expect("the idle thread registered");
            let tkn = nr.register().expect("below the thread limit");
            let infos = nr.replicas();
            assert!(
                infos.iter().all(|r| r.threads == 1),
                "the two threads are on different replicas: {infos:?}"
            );

            for i in 1..=total {
                let after = nr.execute_mut(Step(i), tkn);
                assert_eq!((after.applied, after.last), (i, i));
            }
            // The idle replica was kept within one log of the tail by the writer.
            for info in nr.replicas() {
                assert!(
                    info.applied as u64 + log as u64 >= total,
                    "{what}: a replica fell more than a log behind: {info:?}"
                );
            }
            done_tx.send(()).expect("the idle thread waits for this");
            let seen = idle.join().expect("the idle thread panicked");
            assert_eq!(seen, expected(1..=total), "{what}: the idle thread's read");
        });
        for info in nr.replicas() {
            assert_eq!(info.applied as u64, total, "{what}: {info:?}");
        }
    });
}

#[test]
fn idle_thread_sees_last_write_log_4() {
    idle_thread_sees_last_write(4);
}

#[test]
fn idle_thread_sees_last_write_log_8() {
    idle_thread_sees_last_write(8);
}

/// Replicas that serve no thread at all are helped forward by the only writer, and a
/// thread registered on them later reads everything.
#[test]
fn replicas_without_threads_do_not_stall_the_writer() {
    watchdog("replicas without threads", LIMIT, || {
        let log = 4;
        let nr = NodeReplicated::builder(Trace::default())
            .replicas(&[NodeId(0); 4])
            .log_capacity(log)
            .build()
            .expect("a valid configuration");
        let tkn = nr.register().expect("below the thread limit");
        let total = 100 * log as u64;
        for i in 1..=total {
            assert_eq!(nr.execute_mut(Step(i), tkn).applied, i);
        }
        for info in nr.replicas() {
            assert!(info.applied as u64 + log as u64 >= total, "{info:?}");
        }
        for (id, reader) in tokens_on_every_replica(&nr) {
            assert_eq!(
                nr.execute((), reader),
                expected(1..=total),
                "replica {id:?}"
            );
        }
    });
}
