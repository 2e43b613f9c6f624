//! LD-NR before issue 14 (`old`: main, 7f18940) against a later commit (`new`), in one
//! process and in paired rounds (DESIGN.md §8): each round runs every variant for one
//! short phase, in an order rotated every round and reversed every other cycle; a phase's
//! cost is the median of its ~1 ms slices' ns per operation; a ratio is taken per round.
//! Tables give medians and [interquartile ranges] over the rounds.
//!
//! Not a workspace target: `bench/ab/old-vs-new.sh` copies both commits' `ldnr` and
//! `ldnr-hashmap` (renamed `ldnr_old`/`ldnr_new`, …) into a scratch crate under /tmp and
//! runs this file there. Sections (default all): `exited` (write cost against threads
//! that registered and left: never deregistered in old, which cannot, deregistered in
//! new), `idle` (1,024 idle threads on another replica), `pinned` (read and write with a
//! 1- and a 2-node affinity manager). Options: `--rounds N` (default 40), `--phase-ms N`
//! (default 5).

mod harness;

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;

use harness::{key_stream, ns_of, paired, pooled, stream, table_header, Opts, Phase};

const KEYS: u64 = 1 << 16;
const KEY_STREAM: usize = 1 << 16;
const LIMIT: usize = 8192;
const SMALL_STACK: usize = 128 << 10;

/// `$restore`: the version's `restore_memory_policy` (it returns a `Result` since the
/// deployment issue, `()` before).
macro_rules! version {
    ($m:ident, $ldnr:ident, $hm:ident, $($restore:tt)*) => {
        #[allow(dead_code)]
        mod $m {
            use super::*;
            use std::cell::Cell;
            use std::sync::Arc;
            pub use $hm::{MapRead, MapWrite, U64Map};
            pub use $ldnr::{
                AffinityError, AffinityManager, NodeId, NodeReplicated, ReplicaId, SavedPolicy,
                ThreadToken,
            };
            thread_local! { static NODE: Cell<usize> = const { Cell::new(0) }; }
            pub fn enter(n: usize) {
                NODE.with(|c| c.set(n));
            }
            /// `n` pretend nodes; a thread is on the node it last `enter`ed (0 at first).
            #[derive(Debug)]
            pub struct Sim(pub usize);
            impl AffinityManager for Sim {
                fn current_node(&self) -> NodeId {
                    NodeId(NODE.with(|c| c.get()).min(self.0 - 1))
                }
                fn nodes(&self) -> Vec<NodeId> {
                    (0..self.0).map(NodeId).collect()
                }
                fn set_memory_node(&self, _node: NodeId) -> Result<SavedPolicy, AffinityError> {
                    Ok(SavedPolicy::UNCHANGED)
                }
                $($restore)*
            }
            pub fn build(nodes: usize, replicas: &[usize], limit: usize) -> NodeReplicated<U64Map> {
                let r: Vec<NodeId> = replicas.iter().map(|&n| NodeId(n)).collect();
                NodeReplicated::builder(U64Map::with_keys(KEYS))
                    .replicas(&r)
                    .affinity(Arc::new(Sim(nodes)))
                    .max_threads(limit)
                    .build()
                    .expect("config")
            }
            pub fn replica_on(nr: &NodeReplicated<U64Map>, node: usize) -> ReplicaId {
                nr.replicas()
                    .into_iter()
                    .find(|r| r.node == NodeId(node))
                    .unwrap()
                    .id
            }
            pub fn writes<'a>(
                nr: &'a NodeReplicated<U64Map>,
                tkn: ThreadToken,
                keys: &'a [u64],
            ) -> Phase<'a> {
                stream(keys, move |k, v| {
                    black_box(nr.execute_mut(MapWrite::Insert(black_box(k), v), tkn));
                })
            }
            pub fn reads<'a>(
                nr: &'a NodeReplicated<U64Map>,
                tkn: ThreadToken,
                keys: &'a [u64],
            ) -> Phase<'a> {
                stream(keys, move |k, _| {
                    black_box(nr.execute(MapRead::Get(black_box(k)), tkn));
                })
            }
            /// Idle threads: registered on `node`, read once, parked until `done`.
            pub fn park<'s, 'e: 's>(
                s: &'s thread::Scope<'s, 'e>,
                nr: &'e NodeReplicated<U64Map>,
                k: usize,
                node: usize,
                ready: &'e Barrier,
                done: &'e Barrier,
                wrong: &'e AtomicUsize,
            ) {
                let home = replica_on(nr, node);
                for _ in 0..k {
                    thread::Builder::new()
                        .stack_size(SMALL_STACK)
                        .spawn_scoped(s, move || {
                            enter(node);
                            let t = nr.register().expect("register");
                            if nr.replica_of(t) != Some(home) {
                                wrong.fetch_add(1, Ordering::Relaxed);
                            }
                            nr.execute(MapRead::Get(0), t);
                            ready.wait();
                            done.wait();
                        })
                        .expect("spawn");
                }
            }
        }
    };
}

version!(
    old,
    ldnr_old,
    ldnr_hashmap_old,
    fn restore_memory_policy(&self, _: SavedPolicy) {}
);
version!(
    new,
    ldnr_new,
    ldnr_hashmap_new,
    fn restore_memory_policy(&self, _: SavedPolicy) -> Result<(), AffinityError> {
        Ok(())
    }
);

fn exited(o: &Opts) {
    let counts = [1usize, 16, 256, 1024, 4096];
    let keys = key_stream(0x5eed_0014, KEY_STREAM, KEYS);
    let olds: Vec<_> = counts.iter().map(|_| old::build(1, &[0], LIMIT)).collect();
    let news: Vec<_> = counts.iter().map(|_| new::build(1, &[0], LIMIT)).collect();
    let mut vs: Vec<Phase<'_>> = Vec::new();
    for (&n, nr) in counts.iter().zip(&olds) {
        let w = nr.register().unwrap();
        for _ in 1..n {
            let t = nr.register().unwrap();
            nr.execute(old::MapRead::Get(0), t);
        }
        vs.push(old::writes(nr, w, &keys));
    }
    for (&n, nr) in counts.iter().zip(&news) {
        let w = nr.register().unwrap();
        let others: Vec<_> = (1..n).map(|_| nr.register().unwrap()).collect();
        for &t in &others {
            nr.execute(new::MapRead::Get(0), t);
        }
        for t in others {
            nr.deregister(t).unwrap();
        }
        vs.push(new::writes(nr, w, &keys));
    }
    let ns = paired(o, &mut vs);
    o.heading(
        "exited: ns per write, 1 replica, 64K keys, writer + (N-1) registered and left \
         (old: never deregistered; new: deregistered)",
    );
    table_header(&["N", "old ns", "new ns", "new/old", "old N/1", "new N/1"]);
    let c = counts.len();
    for (i, n) in counts.iter().enumerate() {
        println!(
            "| {n} | {} | {} | {} | {} | {} |",
            ns_of(&ns, &[i]),
            ns_of(&ns, &[c + i]),
            pooled(&ns, &[c + i], &[i]),
            pooled(&ns, &[i], &[0]),
            pooled(&ns, &[c + i], &[c])
        );
    }
}

fn idle(o: &Opts) {
    let keys = key_stream(0x5eed_0015, KEY_STREAM, KEYS);
    let k = 1024;
    old::enter(0);
    new::enter(0);
    let (o0, o1) = (old::build(2, &[0, 1], LIMIT), old::build(2, &[0, 1], LIMIT));
    let (n0, n1) = (new::build(2, &[0, 1], LIMIT), new::build(2, &[0, 1], LIMIT));
    let ready = Barrier::new(2 * k + 1);
    let done = Barrier::new(2 * k + 1);
    let wrong = AtomicUsize::new(0);
    thread::scope(|s| {
        old::park(s, &o1, k, 1, &ready, &done, &wrong);
        new::park(s, &n1, k, 1, &ready, &done, &wrong);
        ready.wait();
        assert_eq!(wrong.load(Ordering::Relaxed), 0);
        let mut vs: Vec<Phase<'_>> = Vec::new();
        // Variants: old with 0 and 1024 idle threads, then new with 0 and 1024.
        for nr in [&o0, &o1] {
            let w = nr.register().unwrap();
            assert_eq!(nr.replica_of(w), Some(old::replica_on(nr, 0)));
            vs.push(old::writes(nr, w, &keys));
        }
        for nr in [&n0, &n1] {
            let w = nr.register().unwrap();
            assert_eq!(nr.replica_of(w), Some(new::replica_on(nr, 0)));
            vs.push(new::writes(nr, w, &keys));
        }
        let ns = paired(o, &mut vs);
        o.heading(
            "idle: ns per write, 2 replicas (2 pretend nodes), writer on node 0, 1024 idle \
             threads registered+read+parked on node 1",
        );
        table_header(&["", "old ns", "new ns", "new/old"]);
        println!(
            "| no idle | {} | {} | {} |",
            ns_of(&ns, &[0]),
            ns_of(&ns, &[2]),
            pooled(&ns, &[2], &[0])
        );
        println!(
            "| 1024 idle on replica 2 | {} | {} | {} |",
            ns_of(&ns, &[1]),
            ns_of(&ns, &[3]),
            pooled(&ns, &[3], &[1])
        );
        println!(
            "| 1024 idle / none | {} | {} | |",
            pooled(&ns, &[1], &[0]),
            pooled(&ns, &[3], &[2])
        );
        drop(vs);
        done.wait();
    });
}

/// Two instances of each (version, manager) configuration, built alternately, pooled per
/// round: one instance's layout alone moves a read by up to ~20 % here.
fn pinned(o: &Opts) {
    let keys = key_stream(0x5eed_0016, KEY_STREAM, KEYS);
    old::enter(0);
    new::enter(0);
    // Variant index: copy * 4 + nodes_index * 2 + (0 old, 1 new).
    let mut olds = Vec::new();
    let mut news = Vec::new();
    for _copy in 0..2 {
        for nodes in [1, 2] {
            olds.push(old::build(nodes, &[0], 256));
            news.push(new::build(nodes, &[0], 256));
        }
    }
    let to: Vec<_> = olds.iter().map(|n| n.register().unwrap()).collect();
    let tn: Vec<_> = news.iter().map(|n| n.register().unwrap()).collect();
    for write in [false, true] {
        let mut vs: Vec<Phase<'_>> = Vec::new();
        for i in 0..4 {
            let (po, pn) = if write {
                (
                    old::writes(&olds[i], to[i], &keys),
                    new::writes(&news[i], tn[i], &keys),
                )
            } else {
                (
                    old::reads(&olds[i], to[i], &keys),
                    new::reads(&news[i], tn[i], &keys),
                )
            };
            vs.push(po);
            vs.push(pn);
        }
        let ns = paired(o, &mut vs);
        let what = if write { "write" } else { "read" };
        o.heading(&format!(
            "pinned {what}: 1 replica on node 0, the thread on node 0, a manager of 1 or 2 nodes \
             (new: 2 nodes = migration checks on); two instances each, pooled"
        ));
        let (o1, n1, o2, n2) = ([0, 4], [1, 5], [2, 6], [3, 7]);
        table_header(&["manager", "old ns (#1)", "new ns (#1)", "new/old"]);
        println!(
            "| 1 node | {} | {} | {} |",
            ns_of(&ns, &[0]),
            ns_of(&ns, &[1]),
            pooled(&ns, &n1, &o1)
        );
        println!(
            "| 2 nodes | {} | {} | {} |",
            ns_of(&ns, &[2]),
            ns_of(&ns, &[3]),
            pooled(&ns, &n2, &o2)
        );
        println!(
            "| 2 nodes / 1 node | {} | {} | |",
            pooled(&ns, &o2, &o1),
            pooled(&ns, &n2, &n1)
        );
        println!(
            "| A/A: #2 / #1, 1 node | {} | {} | |",
            pooled(&ns, &[4], &[0]),
            pooled(&ns, &[5], &[1])
        );
    }
}

fn main() {
    let o = Opts::from_args();
    println!("{}", harness::commits());
    if o.wants("exited") {
        exited(&o);
    }
    if o.wants("idle") {
        idle(&o);
    }
    if o.wants("pinned") {
        pinned(&o);
    }
}
