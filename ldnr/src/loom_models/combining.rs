//! Flat combining: the real write path.

use super::*;

/// A counter whose writes add and answer the total before them (like `fetch_add`).
#[derive(Debug, Clone, Default)]
pub(super) struct Sum(pub(super) u64);

impl Dispatch for Sum {
    type ReadOperation = ();
    type WriteOperation = u64;
    type Response = u64;

    fn dispatch(&self, _: ()) -> u64 {
        self.0
    }

    fn dispatch_mut(&mut self, v: u64) -> u64 {
        let before = self.0;
        self.0 += v;
        before
    }
}

/// The shared state of an instance over [`Sum`] with one replica and `threads`
/// registered threads, built from its parts: what flat combining (`replica::combiner`)
/// works on, with no public handle around it.
fn summing(threads: usize) -> Shared<Sum> {
    let shared = Shared {
        log: Log::new(LOG_CAP),
        replicas: ReplicaSet::new(threads),
        threads: Dispatcher::new(threads).expect("instance numbers left"),
        memory: Memory::new(alloc::sync::Arc::new(NoAffinity), 1),
        // One node: nothing to steer.
        poison: Poison::new(false),
        policy: crate::policy::PolicyState::new(crate::policy::Policy::manual()),
    };
    shared.replicas.found(NodeId(0), Sum(0), &shared.log);
    let admin = shared.threads.admin();
    for _ in 0..threads {
        shared
            .threads
            .next_thread(&admin, 0, NodeId(0))
            .expect("within the limit");
    }
    drop(admin);
    shared
}

/// Thread `tid` writes `op` through the write path's full part (`Shared::write`, what
/// `NodeReplicated::execute_mut` runs when `write_alone` misses and the combiner lock is
/// not already taken) and returns the response. The models do not run `write_alone`.
pub(super) fn write(shared: &Shared<Sum>, tid: usize, op: u64) -> u64 {
    // SAFETY: thread `tid` of the model owns context `tid`, `EMPTY` between operations.
    unsafe { shared.threads.context(tid).put_op(op) };
    shared.write(tid)
}

/// Checks that `(op, response)` pairs, responses being `fetch_add` results, come from
/// one serial order: sorted by response, each response is the sum of the earlier ops.
fn assert_serial(mut pairs: Vec<(u64, u64)>) {
    pairs.sort_unstable_by_key(|&(_, r)| r);
    let mut sum = 0;
    for (op, r) in pairs {
        assert_eq!(r, sum, "responses match no serial order");
        sum += op;
    }
}

/// Runs `threads` threads (the main thread is thread 0) writing `ops[t]` in order
/// through the real combiner, then checks the responses and the replica.
fn combining_model(ops: &'static [&'static [u64]]) {
    let threads = ops.len();
    let shared = Arc::new(summing(threads));
    let handles: Vec<_> = (1..threads)
        .map(|t| {
            let shared = shared.clone();
            thread::spawn(move || {
                ops[t]
                    .iter()
                    .map(|&op| (op, write(&shared, t, op)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut per_thread = vec![ops[0]
        .iter()
        .map(|&op| (op, write(&shared, 0, op)))
        .collect::<Vec<_>>()];
    for h in handles {
        per_thread.push(h.join().unwrap());
    }
    for (t, pairs) in per_thread.iter().enumerate() {
        assert!(
            pairs.windows(2).all(|w| w[0].1 < w[1].1),
            "thread {t}: responses out of program order: {pairs:?}"
        );
        assert_eq!(shared.threads.context(t).owner_state(), EMPTY);
    }
    let pairs: Vec<(u64, u64)> = per_thread.into_iter().flatten().collect();
    let expect_total: u64 = ops.iter().flat_map(|o| o.iter()).sum();
    assert_serial(pairs);
    assert_eq!(shared.read(0, |d| d.dispatch(())), expect_total);
}

/// Two threads, two writes each, through the real combiner on a four-entry log (it
/// wraps): a context is reused (pushed again after `DONE`, C2) while the other thread
/// may be combining, and each thread either combines itself or is served.
///
/// Asserts: each thread gets exactly one response per write, its own (the responses fit
/// one serial order of the four distinct-power-of-two ops, and each thread's responses
/// follow its program order), every context ends `EMPTY`, and the replica ends at the
/// sum of all writes.
#[test]
fn combining_two_threads_two_ops() {
    check(Some(4), || combining_model(&[&[1, 2], &[4, 8]]));
}

/// Three threads, one write each: whoever gets the combiner lock serves the others.
///
/// Asserts: as `combining_two_threads_two_ops`.
///
/// Preemption bound 1: see the module docs (tokio-rs/loom#53).
#[test]
fn combining_three_threads() {
    check(Some(1), || combining_model(&[&[1], &[2], &[4]]));
}
