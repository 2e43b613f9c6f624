//! Placement and matching check for a real multi-node kernel (run by
//! `scripts/numa-vm-test.sh` inside QEMU guests with 2 and 4 NUMA nodes).
//!
//! For a `HashMap` (one large table) and then a `BTreeMap` (many small nodes; once more
//! calling `placement::release_free_memory()` before `build` and `add_replica`, reported
//! as `btreemap+trim`), it builds a `NodeReplicated` with `LinuxAffinity` and a replica
//! on every node, from a thread pinned to node 0, and asks the kernel where every page holding an entry of each
//! replica is — after construction, after `add_replica` on the last node, and after a
//! write phase (that grows the hash table) driven by threads pinned to every node. It
//! also registers threads pinned to each node's CPUs and checks that each is matched to
//! a replica on its own node.
//!
//! Before the maps, a move phase (two or more nodes; a small map of its own): `--movers`
//! threads pinned to node 0 register (each must be matched to node 0's replica), do a few
//! operations there, are re-pinned to the last node with `LinuxAffinity::pin_to_node`,
//! and then read and write until `replica_of` names the last node's replica. Each must get
//! there within [`MOVE_BOUND`] of its own operations (the library checks the node every
//! 1024), be served there (a read sees the last node's replica's data), and afterwards
//! every replica must hold the same map, the one the writes made.
//!
//! Before that, the deployment checks of `deploy.rs`: memory-only (CPU-less) nodes, an
//! inherited `MPOL_BIND`, and a cpuset cgroup of one node entered by a child process.
//!
//! The manager is `LinuxAffinity::new().fix_mmap_threshold()`: the mmap-threshold fix is
//! opt-in (it changes malloc for the whole process), and this check has always measured
//! placement with it; `--no-fresh-pages` runs the control without it.
//!
//! Output: one `MOVE ...` line per moved thread and one `AGREE ...` line, one
//! `PLACEMENT ...` line per replica and phase, one `MATCH ...` line per node and phase,
//! `MEMONLY`, `INHERIT` and `CPUSET` lines, then `RESULT ok` or `RESULT fail: ...`. A
//! watchdog ends the process (exit code 124) if the run takes longer than `--timeout`
//! seconds.
//!
//! ```text
//! numa_vm_check [--hash-keys N] [--tree-keys N] [--writes N] [--trials N] [--movers N]
//!               [--timeout S]
//!               [--no-fresh-pages]   (control: leave glibc's mmap threshold alone)
//! numa_vm_check --cpuset-child NODE MEMORY_ONLY_NODES   (run by the cpuset check)
//! ```
//!
//! `numa_vm_check_node_alloc` (`../numa_vm_check_node_alloc.rs`) is this same check in a
//! binary whose global allocator is `NodeAlloc`: it sets [`NODE_ALLOC`] before calling
//! [`main`], runs the manager *without* the mmap-threshold fix (the node allocator makes
//! it unnecessary; `--fresh-pages` turns it on anyway), enforces the reuse probe, and
//! skips the `btreemap+trim` variant and the deployment and move checks. Every `PLACEMENT` and `PROBE` line says which
//! allocator (`alloc=node` or `alloc=system`).
//!
//! On a one-node machine it runs too (every replica on node 0), which is how CI checks
//! that it builds and works before booting guests.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use ldnr::{
    AffinityGuard, AffinityManager, Dispatch, NodeId, NodeReplicated, ReplicaId, ThreadToken,
};
use ldnr_affinity::placement::PageCensus;
use ldnr_affinity::{LinuxAffinity, NodeAlloc};

mod deploy;

/// The global allocator, where it is `NodeAlloc` (set by `numa_vm_check_node_alloc`).
pub(crate) static NODE_ALLOC: OnceLock<&'static NodeAlloc> = OnceLock::new();

/// `alloc=node` or `alloc=system`, for the output lines.
fn alloc_name() -> &'static str {
    if NODE_ALLOC.get().is_some() {
        "node"
    } else {
        "system"
    }
}

/// The replicated structure: one of two maps, so one binary checks both.
#[derive(Clone)]
enum Store {
    Hash(HashMap<u64, u64>),
    Tree(BTreeMap<u64, u64>),
}

enum Read {
    /// The distinct pages that hold an entry (key and value) of this replica.
    Pages,
    Len,
    /// Where this replica's map is: which replica served the read.
    Addr,
    /// An order-independent digest of the entries (small maps only).
    Digest,
}

#[derive(Clone)]
enum Write {
    Insert(u64, u64),
    Remove(u64),
}

enum Response {
    Value(Option<u64>),
    Pages(Vec<usize>),
}

impl Dispatch for Store {
    type ReadOperation = Read;
    type WriteOperation = Write;
    type Response = Response;

    fn dispatch(&self, op: Read) -> Response {
        match op {
            Read::Len => Response::Value(Some(match self {
                Store::Hash(m) => m.len() as u64,
                Store::Tree(m) => m.len() as u64,
            })),
            Read::Addr => Response::Value(Some(self as *const Store as usize as u64)),
            Read::Digest => {
                let entries: Box<dyn Iterator<Item = (&u64, &u64)>> = match self {
                    Store::Hash(m) => Box::new(m.iter()),
                    Store::Tree(m) => Box::new(m.iter()),
                };
                Response::Value(Some(
                    entries.fold(0u64, |d, (&k, &v)| d.wrapping_add(entry_digest(k, v))),
                ))
            }
            Read::Pages => {
                let entries: Box<dyn Iterator<Item = (&u64, &u64)>> = match self {
                    Store::Hash(m) => Box::new(m.iter()),
                    Store::Tree(m) => Box::new(m.iter()),
                };
                // Both maps iterate in address-local order (buckets, leaves), so
                // dropping consecutive repeats first keeps the list short.
                let page = !(ldnr_affinity::placement::page_size() - 1);
                let mut pages = Vec::new();
                for (k, v) in entries {
                    for addr in [k as *const u64 as usize, v as *const u64 as usize] {
                        if pages.last() != Some(&(addr & page)) {
                            pages.push(addr & page);
                        }
                    }
                }
                Response::Pages(PageCensus::distinct_pages(pages))
            }
        }
    }

    fn dispatch_mut(&mut self, op: Write) -> Response {
        Response::Value(match (self, op) {
            (Store::Hash(m), Write::Insert(k, v)) => m.insert(k, v),
            (Store::Hash(m), Write::Remove(k)) => m.remove(&k),
            (Store::Tree(m), Write::Insert(k, v)) => m.insert(k, v),
            (Store::Tree(m), Write::Remove(k)) => m.remove(&k),
        })
    }
}

struct Options {
    hash_keys: u64,
    tree_keys: u64,
    writes: u64,
    trials: usize,
    movers: usize,
    timeout: u64,
    /// Leave glibc's mmap threshold alone (the control experiment for the fix).
    no_fresh_pages: bool,
    /// Fix it even with `NodeAlloc`.
    fresh_pages: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        // 3.4 M entries: a table of 2^22 buckets, 68 MiB; the write phase's new keys
        // push it past its capacity (3,670,016), so every replica's table is resized.
        hash_keys: 3_400_000,
        tree_keys: 1_000_000,
        writes: 800_000,
        trials: 25,
        movers: 4,
        timeout: 900,
        no_fresh_pages: false,
        fresh_pages: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--no-fresh-pages" {
            o.no_fresh_pages = true;
            continue;
        }
        if flag == "--fresh-pages" {
            o.fresh_pages = true;
            continue;
        }
        let value = args
            .next()
            .ok_or(format!("{flag} needs a value"))?
            .parse::<u64>()
            .map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--hash-keys" => o.hash_keys = value,
            "--tree-keys" => o.tree_keys = value,
            "--writes" => o.writes = value,
            "--trials" => o.trials = value as usize,
            "--movers" => o.movers = value as usize,
            "--timeout" => o.timeout = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

pub(crate) fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--cpuset-child") {
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(100));
            println!("CPUSET child watchdog: not finished after 100 s ok=0");
            std::process::exit(124);
        });
        let arg = |i: usize| args.get(i).map_or("", String::as_str);
        return deploy::cpuset_child(arg(2), arg(3));
    }
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("numa_vm_check: {e}");
            return ExitCode::from(2);
        }
    };
    let timeout = o.timeout;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(timeout));
        println!("RESULT fail: watchdog: not finished after {timeout} s");
        std::process::exit(124);
    });
    let start = Instant::now();
    // Opt-in, process-wide (see the module docs).
    // With `NodeAlloc`, replica memory comes from its arenas, not malloc's heap: the
    // fix is not needed (and not made unless asked for).
    let fix = if NODE_ALLOC.get().is_some() {
        o.fresh_pages
    } else {
        !o.no_fresh_pages
    };
    let linux = Arc::new(if !fix {
        LinuxAffinity::new()
    } else {
        LinuxAffinity::new().fix_mmap_threshold()
    });
    let nodes = linux.nodes();
    println!(
        "NUMA-VM-CHECK alloc={} nodes={} memory_only={:?} degraded={:?} steers_memory={} mmap_threshold_fixed={}",
        alloc_name(),
        nodes.len(),
        linux.memory_only_nodes(),
        linux.degraded(),
        linux.steers_memory(),
        linux.mmap_threshold_fixed()
    );
    for n in linux.topology().nodes() {
        println!("  {}: cpus {:?} memory {}", n.id, n.cpus, n.has_memory);
    }
    println!("  distances {:?}", linux.topology().distances());
    // The building thread runs on node 0, so replicas on other nodes are placed by
    // policy, not by where the work happens.
    if let Err(e) = linux.pin_to_node(nodes[0]) {
        println!("RESULT fail: cannot pin to {}: {e}", nodes[0]);
        return ExitCode::FAILURE;
    }

    let mut failures = Vec::new();
    reuse_probe(&linux, linux.mmap_threshold_fixed(), &mut failures);
    // The deployment and move checks are about the manager, not the allocator: the
    // system-allocator run makes them.
    if NODE_ALLOC.get().is_none() {
        deploy::memory_only(&linux, &mut failures);
        deploy::inherited(&linux, &mut failures);
        deploy::cpuset(&linux, &mut failures);
        moves(&linux, o.movers, &mut failures);
    }
    let hash = Store::Hash((0..o.hash_keys).map(|k| (k, k)).collect());
    run(&linux, "hashmap", hash, o.hash_keys, &o, &mut failures);
    let tree = Store::Tree((0..o.tree_keys).map(|k| (k, k)).collect());
    run(&linux, "btreemap", tree, o.tree_keys, &o, &mut failures);
    // The same, calling `placement::release_free_memory()` before `build` and
    // `add_replica`: what that buys structures of small allocations under malloc.
    if NODE_ALLOC.get().is_none() {
        let tree = Store::Tree((0..o.tree_keys).map(|k| (k, k)).collect());
        run(
            &linux,
            "btreemap+trim",
            tree,
            o.tree_keys,
            &o,
            &mut failures,
        );
    } else if let Some(a) = NODE_ALLOC.get() {
        println!(
            "NODEALLOC active={} unbound_chunks={}",
            a.is_active(),
            a.unbound_chunks()
        );
        if nodes.len() > 1 && (!a.is_active() || a.unbound_chunks() > 0) {
            failures.push(format!("NodeAlloc not bound: {a:?}"));
        }
    }

    println!("TIME total {:.1} s", start.elapsed().as_secs_f64());
    if failures.is_empty() {
        println!("RESULT ok");
        ExitCode::SUCCESS
    } else {
        println!("RESULT fail: {}", failures.join("; "));
        ExitCode::FAILURE
    }
}

/// The failure the (opt-in) mmap-threshold fix prevents: an 8 MiB buffer allocated for
/// node B right after one for node A was freed. Unfixed, glibc has raised its threshold
/// (a 16 MiB block was freed before) and hands the same heap pages back, still on node A.
fn reuse_probe(linux: &Arc<LinuxAffinity>, fixed: bool, failures: &mut Vec<String>) {
    let nodes = linux.nodes();
    if nodes.len() < 2 {
        return;
    }
    let (a, b) = (nodes[0], nodes[1]);
    drop(std::hint::black_box(vec![1u8; 16 << 20]));
    let size = 8 << 20;
    {
        let _on_a = AffinityGuard::new(&**linux, a).expect("policy for node A");
        drop(std::hint::black_box(vec![1u8; size]));
    }
    let _on_b = AffinityGuard::new(&**linux, b).expect("policy for node B");
    let v = std::hint::black_box(vec![2u8; size]);
    let pages =
        PageCensus::distinct_pages((0..size).step_by(4096).map(|i| v.as_ptr() as usize + i));
    match PageCensus::of_pages(&pages) {
        Ok(c) => {
            println!(
                "PROBE alloc={} 8 MiB buffer for {b} after one for {a} was freed (mmap threshold {}): {} of {} pages on {b}",
                alloc_name(),
                if fixed { "fixed" } else { "left alone" },
                c.on(b),
                c.pages()
            );
            if (fixed || NODE_ALLOC.get().is_some()) && c.share_on(b) < 0.99 {
                failures.push(format!("reuse probe: {c}"));
            }
        }
        Err(e) => failures.push(format!("reuse probe: page query failed: {e}")),
    }
}

/// Builds, checks, grows, checks and drops one replicated map.
fn run(
    linux: &Arc<LinuxAffinity>,
    name: &str,
    store: Store,
    keys: u64,
    o: &Options,
    failures: &mut Vec<String>,
) {
    let nodes = linux.nodes();
    let trim = name.ends_with("+trim");
    let t = Instant::now();
    if trim {
        ldnr_affinity::placement::release_free_memory();
    }
    let nr = match NodeReplicated::builder(store)
        .replicas(&nodes)
        .affinity(linux.clone())
        .max_threads(4096)
        .build()
    {
        Ok(nr) => nr,
        Err(e) => {
            failures.push(format!("{name}: build: {e}"));
            return;
        }
    };
    println!("TIME {name} build {:.1} s", t.elapsed().as_secs_f64());
    census(linux, &nr, name, "construction", failures);
    matching(linux, &nr, name, "construction", o.trials, failures);

    let t = Instant::now();
    if trim {
        ldnr_affinity::placement::release_free_memory();
    }
    let last = *nodes.last().expect("at least one node");
    match nr.add_replica(last) {
        Ok(id) => println!(
            "TIME {name} add_replica({last}) = {id:?} {:.1} s",
            t.elapsed().as_secs_f64()
        ),
        Err(e) => failures.push(format!("{name}: add_replica: {e}")),
    }
    census(linux, &nr, name, "add_replica", failures);
    matching(linux, &nr, name, "add_replica", o.trials, failures);

    let t = Instant::now();
    writes(linux, &nr, keys, o.writes);
    println!("TIME {name} writes {:.1} s", t.elapsed().as_secs_f64());
    census(linux, &nr, name, "writes", failures);
}

/// Threads pinned to every node write `total` operations: three quarters inserts of new
/// keys (growing the map), one quarter removals of old ones (churn).
fn writes(linux: &LinuxAffinity, nr: &NodeReplicated<Store>, keys: u64, total: u64) {
    // One writer per replica of each node, so every replica is driven by a local thread
    // (a replica no thread drives is brought up to date by cross-combining, also under
    // its own memory policy).
    let infos = nr.replicas();
    let writers: Vec<NodeId> = infos.iter().map(|r| r.node).collect();
    let per = total / writers.len() as u64;
    std::thread::scope(|s| {
        for (w, &node) in writers.iter().enumerate() {
            s.spawn(move || {
                linux.pin_to_node(node).expect("pin writer");
                let tkn = nr.register().expect("register writer");
                let w = w as u64;
                for i in 0..per {
                    let op = if i % 4 == 3 {
                        Write::Remove((w * per + i) % keys)
                    } else {
                        let k = keys + w * per + i;
                        Write::Insert(k, k)
                    };
                    nr.execute_mut(op, tkn);
                }
            });
        }
    });
}

/// Where each replica's entries are. Every replica is reached through a thread pinned
/// to its node (reads run on the reader's own replica), registering tokens until every
/// replica of the node has one.
fn census(
    linux: &LinuxAffinity,
    nr: &NodeReplicated<Store>,
    name: &str,
    phase: &str,
    failures: &mut Vec<String>,
) {
    let t = Instant::now();
    let infos = nr.replicas();
    let mut reports: Vec<(ReplicaId, NodeId, Result<PageCensus, String>)> = Vec::new();
    let mut lens = Vec::new();
    for node in linux.nodes() {
        let on_node: Vec<ReplicaId> = infos
            .iter()
            .filter(|r| r.node == node)
            .map(|r| r.id)
            .collect();
        if on_node.is_empty() {
            continue;
        }
        let found = std::thread::scope(|s| {
            s.spawn(|| {
                linux.pin_to_node(node).expect("pin census thread");
                let mut tokens: Vec<(ReplicaId, ThreadToken)> = Vec::new();
                for _ in 0..64 {
                    if tokens.len() == on_node.len() {
                        break;
                    }
                    let tkn = nr.register().expect("register census thread");
                    if let Some(id) = nr.replica_of(tkn) {
                        if on_node.contains(&id) && !tokens.iter().any(|(i, _)| *i == id) {
                            tokens.push((id, tkn));
                        }
                    }
                }
                tokens
                    .into_iter()
                    .map(|(id, tkn)| {
                        let len = match nr.execute(Read::Len, tkn) {
                            Response::Value(v) => v.unwrap_or(0),
                            Response::Pages(_) => unreachable!(),
                        };
                        let Response::Pages(pages) = nr.execute(Read::Pages, tkn) else {
                            unreachable!()
                        };
                        (
                            id,
                            len,
                            PageCensus::of_touched_pages(&pages).map_err(|e| e.to_string()),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .join()
            .expect("census thread")
        });
        for &id in &on_node {
            match found.iter().find(|(i, ..)| *i == id) {
                Some((_, len, c)) => {
                    lens.push(*len);
                    reports.push((id, node, c.clone()));
                }
                None => failures.push(format!(
                    "{name} {phase}: no thread on {node} reaches replica {id:?}"
                )),
            }
        }
    }
    if lens.windows(2).any(|w| w[0] != w[1]) {
        failures.push(format!(
            "{name} {phase}: replicas differ in length {lens:?}"
        ));
    }
    for (id, node, c) in reports {
        match c {
            Ok(c) => {
                let other: Vec<String> = c
                    .per_node()
                    .iter()
                    .filter(|(n, _)| **n != node)
                    .map(|(n, k)| format!("{}:{k}", n.0))
                    .collect();
                println!(
                    "PLACEMENT alloc={} map={name} phase={phase} replica={} node={} pages={} on_node={} absent={} other={} share={:.2}%",
                    alloc_name(),
                    id.get(),
                    node.0,
                    c.pages(),
                    c.on(node),
                    c.not_present(),
                    if other.is_empty() { "-".into() } else { other.join(",") },
                    100.0 * c.share_on(node)
                );
            }
            Err(e) => failures.push(format!(
                "{name} {phase}: replica {id:?}: page query failed: {e}"
            )),
        }
    }
    println!(
        "TIME {name} census {phase} {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// Registers `trials` threads pinned to each node's CPUs and checks each is matched to
/// a replica on its own node.
fn matching(
    linux: &LinuxAffinity,
    nr: &NodeReplicated<Store>,
    name: &str,
    phase: &str,
    trials: usize,
    failures: &mut Vec<String>,
) {
    for node in linux.nodes() {
        let mut ok = 0;
        let mut misses = Vec::new();
        for _ in 0..trials {
            let got = std::thread::scope(|s| {
                s.spawn(|| {
                    linux.pin_to_node(node).expect("pin trial thread");
                    let on = linux.current_node();
                    let tkn = nr.register().expect("register trial thread");
                    let id = nr.replica_of(tkn);
                    let matched = nr
                        .replicas()
                        .into_iter()
                        .find(|r| Some(r.id) == id)
                        .map(|r| r.node);
                    (on, matched)
                })
                .join()
                .expect("trial thread")
            });
            if got == (node, Some(node)) {
                ok += 1;
            } else {
                misses.push(format!("{got:?}"));
            }
        }
        println!(
            "MATCH map={name} phase={phase} node={} trials={trials} ok={ok}{}",
            node.0,
            if misses.is_empty() {
                String::new()
            } else {
                format!(" misses={}", misses.join(","))
            }
        );
        if ok != trials {
            failures.push(format!("{name} {phase}: {node}: {ok}/{trials} matched"));
        }
    }
}

/// A moved thread must be served by its new node's replica within this many of its own
/// operations after the move (issue 14's target; the library checks every 1024).
const MOVE_BOUND: u64 = 10_000;
/// Entries of the move phase's map (small: the phase is about matching, not memory).
const MOVE_KEYS: u64 = 4096;

fn entry_digest(k: u64, v: u64) -> u64 {
    (k ^ v.rotate_left(32))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
}

fn value(r: Response) -> u64 {
    match r {
        Response::Value(v) => v.unwrap_or(u64::MAX),
        Response::Pages(_) => unreachable!("not a page query"),
    }
}

/// A moved thread's record.
struct Moved {
    /// Its operations on node 0 (after registering, before the re-pin; the last is a
    /// read that checks which replica serves it).
    before: u64,
    /// Operations after the re-pin until `replica_of` named the last node's replica
    /// (`None`: not within `MOVE_BOUND`).
    ops: Option<u64>,
    /// How many entries it inserted, and their digest (its keys are its own).
    writes: u64,
    inserted: u64,
    problems: Vec<String>,
    /// Registered threads per node's replica while every mover was on the last node
    /// (taken by mover 0).
    counts: Option<Vec<(usize, usize)>>,
}

/// Threads registered on node 0 and re-pinned to the last node are re-matched to the last
/// node's replica within `MOVE_BOUND` of their operations, and served there; the replicas
/// agree afterwards.
fn moves(linux: &Arc<LinuxAffinity>, movers: usize, failures: &mut Vec<String>) {
    let nodes = linux.nodes();
    if nodes.len() < 2 || movers == 0 {
        println!("MOVES skipped: {} node(s), {movers} mover(s)", nodes.len());
        return;
    }
    let t = Instant::now();
    let (first, last) = (nodes[0], *nodes.last().expect("two nodes"));
    let nr = match NodeReplicated::builder(Store::Hash((0..MOVE_KEYS).map(|k| (k, k)).collect()))
        .replicas(&nodes)
        .affinity(linux.clone())
        .max_threads(64)
        .build()
    {
        Ok(nr) => nr,
        Err(e) => {
            failures.push(format!("moves: build: {e}"));
            return;
        }
    };
    // Per node: the replica a thread pinned there is matched to, and what a read there
    // sees (the replica's map address, its length and digest).
    let probe = |node: NodeId| {
        std::thread::scope(|s| {
            s.spawn(|| {
                linux.pin_to_node(node).expect("pin probe thread");
                let tkn = nr.register().expect("register probe thread");
                let id = nr.replica_of(tkn);
                let seen = [Read::Addr, Read::Len, Read::Digest].map(|r| value(nr.execute(r, tkn)));
                nr.deregister(tkn).expect("deregister probe thread");
                (id, seen)
            })
            .join()
            .expect("probe thread")
        })
    };
    let node_of = |id: Option<ReplicaId>| {
        nr.replicas()
            .into_iter()
            .find(|r| Some(r.id) == id)
            .map(|r| r.node)
    };
    let (from_id, [from_addr, ..]) = probe(first);
    let (to_id, [to_addr, ..]) = probe(last);
    if node_of(from_id) != Some(first) || node_of(to_id) != Some(last) {
        failures.push(format!(
            "moves: probe threads matched to {:?} on {first}, {:?} on {last}",
            node_of(from_id),
            node_of(to_id)
        ));
        return;
    }

    // All movers move together, are counted together once re-matched, then leave.
    let (start, matched, counted) = (
        Barrier::new(movers),
        Barrier::new(movers),
        Barrier::new(movers),
    );
    let moved: Vec<Moved> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..movers as u64)
            .map(|i| {
                let (nr, start, matched, counted) = (&nr, &start, &matched, &counted);
                s.spawn(move || {
                    let mut m = Moved {
                        // Operations on node 0 first, so the move falls at a different
                        // point of each thread's check countdown (one after a check).
                        before: 1 + (i * 1300 + i * i * 100) % 2048,
                        ops: None,
                        writes: 0,
                        inserted: 0,
                        problems: Vec::new(),
                        counts: None,
                    };
                    let mut n = 0u64;
                    // Even operations insert a key of this thread's own; odd ones read.
                    let mut op = |m: &mut Moved, tkn| {
                        if n % 2 == 0 {
                            let k = MOVE_KEYS + (i << 32) + n;
                            nr.execute_mut(Write::Insert(k, n), tkn);
                            m.writes += 1;
                            m.inserted = m.inserted.wrapping_add(entry_digest(k, n));
                        } else {
                            nr.execute(Read::Len, tkn);
                        }
                        n += 1;
                    };
                    linux.pin_to_node(first).expect("pin mover to node 0");
                    let tkn = nr.register().expect("register mover");
                    if nr.replica_of(tkn) != from_id {
                        m.problems
                            .push(format!("registered on {:?}", nr.replica_of(tkn)));
                    }
                    for _ in 1..m.before {
                        op(&mut m, tkn);
                    }
                    if nr.replica_of(tkn) != from_id
                        || value(nr.execute(Read::Addr, tkn)) != from_addr
                    {
                        m.problems.push(format!(
                            "left node 0's replica before the move ({:?})",
                            nr.replica_of(tkn)
                        ));
                    }
                    start.wait();
                    linux
                        .pin_to_node(last)
                        .expect("re-pin mover to the last node");
                    if linux.current_node() != last {
                        m.problems
                            .push(format!("runs on {} after the re-pin", linux.current_node()));
                    }
                    for k in 1..=MOVE_BOUND {
                        op(&mut m, tkn);
                        if nr.replica_of(tkn) == to_id {
                            m.ops = Some(k);
                            break;
                        }
                    }
                    if m.ops.is_some() && value(nr.execute(Read::Addr, tkn)) != to_addr {
                        m.problems
                            .push("re-matched but not served by the last node's replica".into());
                    }
                    // A write from the new replica too.
                    op(&mut m, tkn);
                    op(&mut m, tkn);
                    matched.wait();
                    m.counts = (i == 0).then(|| {
                        nr.replicas()
                            .iter()
                            .map(|r| (r.node.0, r.threads))
                            .collect::<Vec<_>>()
                    });
                    counted.wait();
                    nr.deregister(tkn).expect("deregister mover");
                    m
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("mover thread"))
            .collect()
    });
    for (i, m) in moved.iter().enumerate() {
        println!(
            "MOVE thread={i} from={} to={} before={} ops={} bound={MOVE_BOUND} ok={}{}",
            first.0,
            last.0,
            m.before,
            m.ops.map_or("none".to_string(), |k| k.to_string()),
            u8::from(m.ops.is_some() && m.problems.is_empty()),
            if m.problems.is_empty() {
                String::new()
            } else {
                format!(" problems={}", m.problems.join(",").replace(' ', "_"))
            }
        );
        if m.ops.is_none() {
            failures.push(format!(
                "moves: thread {i} not on {last}'s replica after {MOVE_BOUND} operations"
            ));
        }
        if !m.problems.is_empty() {
            failures.push(format!("moves: thread {i}: {}", m.problems.join(", ")));
        }
    }

    let counts = moved
        .iter()
        .find_map(|m| m.counts.clone())
        .unwrap_or_default();
    let want_counts: Vec<(usize, usize)> = counts
        .iter()
        .map(|&(n, _)| (n, if n == last.0 { movers } else { 0 }))
        .collect();
    // Registered threads per replica while every mover was on the last node.
    println!("MOVES threads per node's replica after the moves: {counts:?}");
    if counts != want_counts {
        failures.push(format!(
            "moves: threads per node's replica {counts:?}, not {want_counts:?}"
        ));
    }

    // Every replica (read from a thread on its node) holds the map the writes made.
    let want_len = MOVE_KEYS + moved.iter().map(|m| m.writes).sum::<u64>();
    let want = moved.iter().fold(
        (0..MOVE_KEYS).fold(0u64, |d, k| d.wrapping_add(entry_digest(k, k))),
        |d, m| d.wrapping_add(m.inserted),
    );
    let mut seen = Vec::new();
    for &node in &nodes {
        let (_, [_, len, digest]) = probe(node);
        seen.push((node.0, len, digest == want));
    }
    let agree = seen.iter().all(|&(_, len, ok)| ok && len == want_len);
    println!(
        "AGREE phase=moves replicas={} agree={} len={want_len} per_node={}",
        seen.len(),
        if agree { "yes" } else { "no" },
        seen.iter()
            .map(|(n, l, ok)| format!("{n}:{l}{}", if *ok { "" } else { "!digest" }))
            .collect::<Vec<_>>()
            .join(",")
    );
    if !agree {
        failures.push(format!("moves: replicas differ after the moves: {seen:?}"));
    }
    println!("TIME moves {:.1} s", t.elapsed().as_secs_f64());
}
