//! Threads that come, go and move (issue 14), measured in paired rounds:
//!
//! 1. `exited`: ns per write (`execute_mut` of a `U64Map` insert, 64K keys, one writer,
//!    one replica) against the threads that registered and left, by `deregister` or by
//!    exiting with a `thread_token` token — with their indices given back (`replicas()`
//!    ran since) and, for the largest count, not yet (no admin call since they exited);
//! 2. `idle`: the same write with threads alive, registered and parked on *another*
//!    replica (two replicas on two `SimulatedAffinity` nodes; the writer on node 0, the
//!    idle threads on node 1), and, for contrast, 1,024 parked on the writer's own replica;
//! 3. `migration`: a pinned thread's read and write with migration checks on (a manager
//!    listing two nodes, the thread on node 0) and off (one node), one replica;
//! 4. `token`: `thread_token()` per call, and a read and a write through
//!    `nr.execute(op, nr.thread_token()?)` against a held token; the typed map's
//!    handle-free `get` against `MapHandle::get`;
//! 5. `short-lived`: 20,000 threads spawned and joined a few at a time, each writing once
//!    through `thread_token` with `max_threads(64)`: errors, the count, wall time;
//! 6. `moved`: a thread registered on node 0 `enter`s node 1; how many of its own
//!    operations pass until `replica_of` names node 1's replica;
//! 7. `join`: what a thread's first read of a replica costs with the lone writer's
//!    barrier (`Builder::membarrier`, rwlock R5) on and off: ns per register, read and
//!    deregister (each read joins the replica's reader set), alone in the process and
//!    with a second thread spinning (the barrier interrupts each CPU that runs one).
//!
//! # How it is measured (DESIGN.md §8)
//!
//! This machine's speed drifts by up to 3× within minutes, so nothing here is an absolute
//! number to compare across runs. Each section builds all its variants first (instances,
//! tokens, parked threads), then runs them in rounds: every round runs each variant for
//! one short phase (`--phase-ms`, default 5), in an order rotated every round and reversed
//! every other cycle (two variants: A B, B A, B A, A B, …). A variant's phase is timed in
//! slices of about 1 ms (whole chunks of 256 operations); its cost is the median slice's
//! ns per operation, so that a slice in which a neighbour preempted the thread (or the
//! cold first slice) does not count. The comparison is the per-round ratio to the
//! section's baseline; a section reports the median ns and the median ratio over the
//! rounds (`--rounds`, default 100, after one warm-up round that is not counted), with
//! their interquartile ranges.
//!
//! Two instances of the same configuration differ by a few percent (where the map and
//! the contexts land in memory and in the caches), which is as large as the effects the
//! 1.03× target asks about. So the configurations that the targets compare run on two
//! instances each, built alternately, their costs pooled per round; the ratio of the
//! baseline's two instances (the "A/A control" lines) shows how large that effect was.
//!
//! Keys are uniform below 64K from a fixed-seed xorshift stream generated before
//! measuring; a write stores a counter, so the map's size never changes.
//!
//! The same write and read costs before issue 14 (main, 7f18940: every write scanned
//! every registered thread's reader slot) against a later commit, paired in one process:
//! `bench/ab/old-vs-new.sh` (a scratch crate under /tmp; see `bench/ab/old_vs_new.rs`).
//!
//! Run: `cargo bench -p ldnr-bench --bench threads` (about 40 s), one or more sections:
//! `cargo bench -p ldnr-bench --bench threads -- exited idle`; options `--rounds N`,
//! `--phase-ms N`. Smoke test (small counts, two 1 ms rounds, under a second of
//! measuring): `cargo bench -p ldnr-bench --bench threads -- --test`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use ldnr::{Dispatch, NodeId, NodeReplicated, ReplicaId};
use ldnr_affinity::SimulatedAffinity;
use ldnr_hashmap::{MapRead, MapWrite, ReplicatedHashMap, U64Map};

mod paired;

use paired::*;

/// The thread limit of the write-cost instances: room for 4,096 + the writer, the same
/// for every count so that only the count differs.
const LIMIT: usize = 8192;
/// Stack of the parked and short-lived threads (they do little).
const SMALL_STACK: usize = 128 << 10;

/// Section `exited`: one replica, one writer, and `n − 1` other registrations that ended.
/// The writer alone and the largest counts run on two instances each (their layouts
/// differ a little; the second instance of the writer alone is the A/A control).
fn exited(opts: &Opts, verdicts: &mut Vec<String>) {
    let keys = key_stream(0x5eed_0014);
    let counts = opts.counts();
    let largest = *counts.last().expect("counts");
    let build = || {
        NodeReplicated::builder(U64Map::with_keys(KEYS))
            .max_threads(LIMIT)
            .build()
            .expect("a valid configuration")
    };
    let copies = |n: usize| if n == largest { 2 } else { 1 };
    // The instances, built before any thread registers: the writer alone (2), then for
    // each count the deregistered tokens and the exited `thread_token` threads (given
    // back), and the largest count exited, not yet given back.
    let alone: Vec<_> = (0..2).map(|_| build()).collect();
    let dereg: Vec<(usize, _)> = counts
        .iter()
        .flat_map(|&n| (0..copies(n)).map(move |_| n))
        .map(|n| (n, build()))
        .collect();
    let exits: Vec<(usize, _)> = counts
        .iter()
        .flat_map(|&n| (0..copies(n)).map(move |_| n))
        .map(|n| (n, build()))
        .collect();
    let pending = build();

    let spawn_and_exit = |nr: &NodeReplicated<U64Map>, n: usize| {
        // All `n − 1` alive and registered at once (so indices up to `n` are handed out),
        // each having read once; then they exit.
        let barrier = Barrier::new(n);
        thread::scope(|s| {
            let threads: Vec<_> = (1..n)
                .map(|_| {
                    thread::Builder::new()
                        .stack_size(SMALL_STACK)
                        .spawn_scoped(s, || {
                            let t = nr.thread_token().expect("thread_token");
                            nr.execute(MapRead::Get(0), t);
                            barrier.wait();
                        })
                        .expect("spawn")
                })
                .collect();
            barrier.wait();
            // Joined one by one: unlike the end of `scope`, `join` waits until the
            // thread has exited, thread-local destructors (the token's give-back) included.
            for t in threads {
                t.join().expect("thread");
            }
        });
    };

    let mut variants = Vec::new();
    let (mut base, mut dereg_top, mut exit_top) = (Vec::new(), Vec::new(), Vec::new());
    for (i, nr) in alone.iter().enumerate() {
        let w = nr.register().expect("register");
        base.push(variants.len());
        variants.push(variant(
            format!("1 registered (the writer alone) #{}", i + 1),
            writes(nr, w, &keys),
        ));
    }
    for (n, nr) in &dereg {
        let w = nr.register().expect("register");
        let others: Vec<_> = (1..*n).map(|_| nr.register().expect("register")).collect();
        for &t in &others {
            // A read puts the thread in the replica's reader set (rwlock R2).
            nr.execute(MapRead::Get(0), t);
        }
        for t in others {
            nr.deregister(t).expect("deregister");
        }
        if *n == largest {
            dereg_top.push(variants.len());
        }
        variants.push(variant(
            format!("{n} registered, {} deregistered", n - 1),
            writes(nr, w, &keys),
        ));
    }
    for (n, nr) in &exits {
        let w = nr.register().expect("register");
        spawn_and_exit(nr, *n);
        // An admin path gives the exited threads' indices back.
        let threads: usize = nr.replicas().iter().map(|r| r.threads).sum();
        assert_eq!(threads, 1, "only the writer is left");
        if *n == largest {
            exit_top.push(variants.len());
        }
        variants.push(variant(
            format!("{n} registered, {} exited (thread_token)", n - 1),
            writes(nr, w, &keys),
        ));
    }
    let w = pending.register().expect("register");
    spawn_and_exit(&pending, largest);
    let pending_at = variants.len();
    variants.push(variant(
        format!(
            "{largest} registered, {} exited, not given back yet",
            largest - 1
        ),
        writes(&pending, w, &keys),
    ));

    let m = paired(
        opts,
        "write cost after registered threads left (1 replica, 64K keys, one writer)",
        &mut variants,
        &base,
    );
    let base_ns = m.ns(base[0]);
    verdicts.push(verdict(
        "(1a) A/A control: writer alone #2 vs #1",
        m.ratio(&base[1..], &base[..1]),
        base_ns,
        None,
    ));
    verdicts.push(verdict(
        &format!("(1a) write, {largest} registered+deregistered vs 1"),
        m.ratio(&dereg_top, &base),
        m.ns(dereg_top[0]),
        Some(1.2),
    ));
    verdicts.push(verdict(
        &format!("(1a) write, {largest} registered+exited (thread_token) vs 1"),
        m.ratio(&exit_top, &base),
        m.ns(exit_top[0]),
        Some(1.2),
    ));
    verdicts.push(verdict(
        &format!("(1a) write, {largest} exited, not given back yet, vs 1"),
        m.ratio(&[pending_at], &base),
        m.ns(pending_at),
        None,
    ));
}

/// The replica on `node`.
fn replica_on(nr: &NodeReplicated<U64Map>, node: NodeId) -> ReplicaId {
    nr.replicas()
        .into_iter()
        .find(|r| r.node == node)
        .expect("a replica on the node")
        .id
}

/// Section `idle`: two replicas (nodes 0 and 1), the writer on node 0, and `k` threads
/// registered, read once, and parked on node 1 (or on node 0, for the contrast). No idle
/// threads and the target's count run on two instances each.
fn idle(opts: &Opts, verdicts: &mut Vec<String>) {
    let keys = key_stream(0x5eed_0015);
    let sim = Arc::new(SimulatedAffinity::new(2));
    sim.enter(NodeId(0)).expect("node 0");
    let build = || {
        NodeReplicated::builder(U64Map::with_keys(KEYS))
            .replicas(&[NodeId(0), NodeId(1)])
            .affinity(sim.clone())
            .max_threads(LIMIT)
            .build()
            .expect("a valid configuration")
    };
    let counts = opts.counts();
    let target = if opts.test { 64 } else { 1024 };
    // (instance, idle threads, their node)
    let mut setups: Vec<(NodeReplicated<U64Map>, usize, NodeId)> =
        vec![(build(), 0, NodeId(1)), (build(), 0, NodeId(1))];
    for &k in counts {
        for _ in 0..if k == target { 2 } else { 1 } {
            setups.push((build(), k, NodeId(1)));
        }
    }
    setups.push((build(), target, NodeId(0)));
    let parked: usize = setups.iter().map(|s| s.1).sum();
    let ready = Barrier::new(parked + 1);
    let done = Barrier::new(parked + 1);
    let wrong = AtomicUsize::new(0);
    thread::scope(|s| {
        for (nr, k, node) in &setups {
            let home = replica_on(nr, *node);
            for _ in 0..*k {
                let (sim, ready, done, wrong) = (&sim, &ready, &done, &wrong);
                thread::Builder::new()
                    .stack_size(SMALL_STACK)
                    .spawn_scoped(s, move || {
                        sim.enter(*node).expect("node");
                        let t = nr.register().expect("register");
                        if nr.replica_of(t) != Some(home) {
                            wrong.fetch_add(1, Ordering::Relaxed);
                        }
                        nr.execute(MapRead::Get(0), t);
                        ready.wait();
                        done.wait();
                        nr.deregister(t).expect("deregister");
                    })
                    .expect("spawn");
            }
        }
        ready.wait();
        assert_eq!(
            wrong.load(Ordering::Relaxed),
            0,
            "idle threads matched elsewhere"
        );
        let (mut none, mut at_target) = (Vec::new(), Vec::new());
        let mut variants: Vec<Variant<'_>> = setups
            .iter()
            .enumerate()
            .map(|(i, (nr, k, node))| {
                let w = nr.register().expect("register");
                assert_eq!(nr.replica_of(w), Some(replica_on(nr, NodeId(0))));
                let name = match (k, node.0) {
                    (0, _) => {
                        none.push(i);
                        format!("2 replicas, writer alone on replica 1 #{}", none.len())
                    }
                    (k, 1) => {
                        if *k == target {
                            at_target.push(i);
                        }
                        format!("{k} idle threads on replica 2")
                    }
                    (k, _) => format!("{k} idle threads on the writer's replica"),
                };
                variant(name, writes(nr, w, &keys))
            })
            .collect();
        let m = paired(
            opts,
            "write cost with idle threads registered on another replica (2 replicas)",
            &mut variants,
            &none,
        );
        drop(variants);
        done.wait();
        let own = setups.len() - 1;
        verdicts.push(verdict(
            "(1b) A/A control: no idle threads #2 vs #1",
            m.ratio(&none[1..], &none[..1]),
            m.ns(none[0]),
            None,
        ));
        verdicts.push(verdict(
            &format!("(1b) write, {target} idle on another replica vs none"),
            m.ratio(&at_target, &none),
            m.ns(at_target[0]),
            Some(1.3),
        ));
        verdicts.push(verdict(
            &format!("(1b) write, {target} idle on the writer's replica vs none"),
            m.ratio(&[own], &none),
            m.ns(own),
            None,
        ));
    });
}

/// Section `migration`: a pinned thread on node 0, one replica there; the manager lists
/// two nodes (checks on) or one (off). Two instances each, built alternately.
fn migration(opts: &Opts, verdicts: &mut Vec<String>) {
    let keys = key_stream(0x5eed_0016);
    let build = |nodes: usize| {
        let sim = Arc::new(SimulatedAffinity::new(nodes));
        sim.enter(NodeId(0)).expect("node 0");
        let nr = NodeReplicated::builder(U64Map::with_keys(KEYS))
            .replicas(&[NodeId(0)])
            .affinity(sim)
            .build()
            .expect("a valid configuration");
        let t = nr.register().expect("register");
        (nr, t)
    };
    let nrs = [build(1), build(2), build(1), build(2)];
    for write in [false, true] {
        let what = if write { "write" } else { "read" };
        let mut variants: Vec<Variant<'_>> = nrs
            .iter()
            .enumerate()
            .map(|(i, (nr, t))| {
                let name = format!(
                    "{what}, checks {} #{}",
                    if i % 2 == 0 {
                        "off (1 node)"
                    } else {
                        "on (2 nodes)"
                    },
                    i / 2 + 1
                );
                let run = if write {
                    writes(nr, *t, &keys)
                } else {
                    reads(nr, *t, &keys)
                };
                variant(name, run)
            })
            .collect();
        let m = paired(
            opts,
            &format!("{what}, migration checks off (a 1-node manager) / on (2 nodes), 1 replica"),
            &mut variants,
            &[0, 2],
        );
        verdicts.push(verdict(
            &format!("(2) A/A control: {what}, checks off #2 vs #1"),
            m.ratio(&[2], &[0]),
            m.ns(0),
            None,
        ));
        verdicts.push(verdict(
            &format!("(2) {what}, migration checks on vs off"),
            m.ratio(&[1, 3], &[0, 2]),
            m.ns(1),
            Some(1.03),
        ));
    }
}

/// Section `token`: `thread_token` per call and per operation.
fn token(opts: &Opts, verdicts: &mut Vec<String>) {
    let keys = key_stream(0x5eed_0017);
    let nr = NodeReplicated::builder(U64Map::with_keys(KEYS))
        .build()
        .expect("a valid configuration");
    let held = nr.thread_token().expect("thread_token");
    let nr = &nr;
    let r = paired(
        opts,
        "read: held token / nr.execute(op, nr.thread_token()?) / thread_token() alone",
        &mut [
            variant("read, held token", reads(nr, held, &keys)),
            variant("read, nr.thread_token() per operation", {
                let mut i = 0usize;
                let keys = &keys;
                move |phase| {
                    timed(phase, || {
                        let k = keys[i & (KEY_STREAM - 1)];
                        i = i.wrapping_add(1);
                        let t = nr.thread_token().expect("thread_token");
                        black_box(nr.execute(MapRead::Get(black_box(k)), t));
                    })
                }
            }),
            variant("thread_token() alone", move |phase| {
                timed(phase, || {
                    black_box(nr.thread_token().expect("thread_token"));
                })
            }),
        ],
        &[0],
    );
    let w = paired(
        opts,
        "write: held token / nr.execute_mut(op, nr.thread_token()?)",
        &mut [
            variant("write, held token", writes(nr, held, &keys)),
            variant("write, nr.thread_token() per operation", {
                let (mut i, mut v) = (0usize, 0u64);
                let keys = &keys;
                move |phase| {
                    timed(phase, || {
                        let k = keys[i & (KEY_STREAM - 1)];
                        i = i.wrapping_add(1);
                        v = v.wrapping_add(1);
                        let t = nr.thread_token().expect("thread_token");
                        black_box(nr.execute_mut(MapWrite::Insert(black_box(k), v), t));
                    })
                }
            }),
        ],
        &[0],
    );
    let map: ReplicatedHashMap<u64, u64> =
        ReplicatedHashMap::builder_from((0..KEYS).map(|k| (k, k)).collect())
            .build()
            .expect("a valid configuration");
    let handle = map.handle().expect("handle");
    let t = {
        let (map, handle, keys) = (&map, &handle, &keys);
        let (mut i, mut j) = (0usize, 0usize);
        paired(
            opts,
            "typed map get: MapHandle::get / ReplicatedHashMap::get (handle-free)",
            &mut [
                variant("typed get, MapHandle", move |phase| {
                    timed(phase, || {
                        let k = keys[i & (KEY_STREAM - 1)];
                        i = i.wrapping_add(1);
                        black_box(handle.get(black_box(&k)));
                    })
                }),
                variant("typed get, handle-free", move |phase| {
                    timed(phase, || {
                        let k = keys[j & (KEY_STREAM - 1)];
                        j = j.wrapping_add(1);
                        black_box(map.get(black_box(&k)));
                    })
                }),
            ],
            &[0],
        )
    };
    verdicts.push(format!(
        "(3) thread_token() alone: {:.1} ns per call",
        r.ns(2).median
    ));
    verdicts.push(verdict(
        "(3) read, nr.thread_token() per operation vs held",
        r.ratio(&[1], &[0]),
        r.ns(1),
        None,
    ));
    verdicts.push(verdict(
        "(3) write, nr.thread_token() per operation vs held",
        w.ratio(&[1], &[0]),
        w.ns(1),
        None,
    ));
    verdicts.push(verdict(
        "(3) typed map get, handle-free vs MapHandle",
        t.ratio(&[1], &[0]),
        t.ns(1),
        None,
    ));
}

/// A counter: every write adds its operand, so the total says how often writes applied.
#[derive(Debug, Clone, Default)]
struct Count(u64);

impl Dispatch for Count {
    type ReadOperation = ();
    type WriteOperation = u64;
    type Response = u64;
    fn dispatch(&self, _: ()) -> u64 {
        self.0
    }
    fn dispatch_mut(&mut self, v: u64) -> u64 {
        self.0 += v;
        self.0
    }
}

/// Section `short-lived`: threads spawned and joined `at_once` at a time, each taking a
/// `thread_token` (all of a wave registered at once: they meet at a barrier), writing once
/// and exiting, with `max_threads(64)`. Joined one by one (`join` returns once the thread
/// has exited, its token given back), or, for contrast, only by the end of
/// `thread::scope`, which returns when the closures have returned, possibly before the
/// threads' thread-local destructors ran (the tokens not yet given back).
fn short_lived(opts: &Opts, verdicts: &mut Vec<String>) {
    let total = opts.short_lived();
    println!("\n== short-lived threads through thread_token, max_threads(64)");
    for (at_once, join) in [(4, true), (64, true), (64, false)] {
        let nr = NodeReplicated::builder(Count(0))
            .max_threads(64)
            .build()
            .expect("a valid configuration");
        let errors = AtomicUsize::new(0);
        let top = AtomicUsize::new(0);
        let start = Instant::now();
        for _ in 0..total / at_once {
            let barrier = Barrier::new(at_once);
            thread::scope(|s| {
                let threads: Vec<_> = (0..at_once)
                    .map(|_| {
                        let (nr, errors, top, barrier) = (&nr, &errors, &top, &barrier);
                        thread::Builder::new()
                            .stack_size(SMALL_STACK)
                            .spawn_scoped(s, move || match nr.thread_token() {
                                Ok(t) => {
                                    top.fetch_max(t.index(), Ordering::Relaxed);
                                    barrier.wait();
                                    nr.execute_mut(1, t);
                                }
                                Err(e) => {
                                    barrier.wait();
                                    if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                        eprintln!("thread_token: {e}");
                                    }
                                }
                            })
                            .expect("spawn")
                    })
                    .collect();
                if join {
                    for t in threads {
                        t.join().expect("thread");
                    }
                }
            });
        }
        let wall = start.elapsed();
        let spawned = total / at_once * at_once;
        let count = nr.execute((), nr.thread_token().expect("thread_token"));
        let errors = errors.load(Ordering::Relaxed);
        let line = format!(
            "(4) {spawned} threads, {at_once} at a time, {}: {errors} errors, count {count} \
             ({}), highest index {}, wall {:.2} s ({:.1} µs/thread)",
            if join {
                "each joined"
            } else {
                "scope end only"
            },
            if count + errors as u64 == spawned as u64 {
                "every write applied exactly once"
            } else {
                "WRONG COUNT"
            },
            top.load(Ordering::Relaxed),
            wall.as_secs_f64(),
            wall.as_secs_f64() * 1e6 / spawned as f64
        );
        println!("{line}");
        assert_eq!(
            count + errors as u64,
            spawned as u64,
            "every write applied exactly once"
        );
        if join {
            assert_eq!(errors, 0, "no thread_token error");
        }
        verdicts.push(line);
    }
}

/// Section `moved`: operations until a thread that `enter`ed node 1 is served there.
fn moved(_opts: &Opts, verdicts: &mut Vec<String>) {
    println!("\n== a moved thread (2 simulated nodes, a replica on each)");
    let mut worst = 0u64;
    for reads_only in [true, false] {
        for before in [0u64, 1, 500, 1023, 1024, 1025, 5000, 12_345] {
            let sim = Arc::new(SimulatedAffinity::new(2));
            let nr = NodeReplicated::builder(U64Map::with_keys(1024))
                .replicas(&[NodeId(0), NodeId(1)])
                .affinity(sim.clone())
                .build()
                .expect("a valid configuration");
            let (r0, r1) = (replica_on(&nr, NodeId(0)), replica_on(&nr, NodeId(1)));
            let n = thread::scope(|s| {
                s.spawn(|| {
                    sim.enter(NodeId(0)).expect("node 0");
                    let t = nr.register().expect("register");
                    assert_eq!(nr.replica_of(t), Some(r0));
                    let op = |i: u64| {
                        if reads_only {
                            black_box(nr.execute(MapRead::Get(i % 1024), t));
                        } else {
                            black_box(nr.execute_mut(MapWrite::Insert(i % 1024, i), t));
                        }
                    };
                    for i in 0..before {
                        op(i);
                    }
                    sim.enter(NodeId(1)).expect("node 1");
                    let mut n = 0u64;
                    while nr.replica_of(t) != Some(r1) {
                        op(n);
                        n += 1;
                        assert!(n <= 1_000_000, "never re-matched");
                    }
                    n
                })
                .join()
                .expect("the moved thread")
            });
            println!(
                "{} after {before:>6} operations on node 0: served by node 1's replica after {n} of its operations",
                if reads_only { "reads " } else { "writes" },
            );
            worst = worst.max(n);
        }
    }
    verdicts.push(format!(
        "(5) a moved thread re-matched within {worst} of its operations (worst case) {}",
        if worst <= 10_000 {
            "MET (≤ 10,000)"
        } else {
            "MISSED (> 10,000)"
        }
    ));
}

/// Section `join`: a thread's register, first read and deregister, on an instance with
/// the lone writer's barrier and on one without (`Builder::membarrier`), alone in the
/// process and then with a second thread spinning on the other CPU.
fn join(opts: &Opts, verdicts: &mut Vec<String>) {
    let build = |on| {
        NodeReplicated::builder(Count(0))
            .membarrier(on)
            .build()
            .expect("a valid configuration")
    };
    let (off, on) = (build(false), build(true));
    let cycle = |nr: &NodeReplicated<Count>| {
        let t = nr.register().expect("register");
        black_box(nr.execute((), t));
        nr.deregister(t).expect("deregister");
    };
    for spinning in [false, true] {
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            if spinning {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                });
            }
            let mut variants = [
                variant("membarrier(false): register, read, deregister", |p| {
                    timed(p, || cycle(&off))
                }),
                variant("membarrier(true): the read joins with the barrier", |p| {
                    timed(p, || cycle(&on))
                }),
            ];
            let with = if spinning {
                "a second thread spinning"
            } else {
                "no other thread running"
            };
            let m = paired(
                opts,
                &format!("a thread's join of a replica, {with}"),
                &mut variants,
                &[0],
            );
            stop.store(true, Ordering::Relaxed);
            let (a, b) = (m.ns(0), m.ns(1));
            verdicts.push(format!(
                "{}  (+{:.0} ns per join)",
                verdict(
                    &format!("(6) join with membarrier / without, {with}"),
                    m.ratio(&[1], &[0]),
                    b,
                    None
                ),
                b.median - a.median
            ));
        });
    }
}

/// A section: runs its measurements and adds its summary lines.
type Section = fn(&Opts, &mut Vec<String>);

fn main() {
    let opts = Opts::parse();
    let mut verdicts = Vec::new();
    let sections: [(&str, Section); 7] = [
        ("exited", exited),
        ("idle", idle),
        ("migration", migration),
        ("token", token),
        ("short-lived", short_lived),
        ("moved", moved),
        ("join", join),
    ];
    for (name, run) in sections {
        if opts.wants(name) {
            run(&opts, &mut verdicts);
        }
    }
    println!(
        "\n== summary{}",
        if opts.test {
            " (smoke run: --test, the numbers mean nothing)"
        } else {
            ""
        }
    );
    for v in verdicts {
        println!("{v}");
    }
}
