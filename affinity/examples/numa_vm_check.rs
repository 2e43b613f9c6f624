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
//! Output: one `PLACEMENT ...` line per replica and phase, one `MATCH ...` line per node
//! and phase, then `RESULT ok` or `RESULT fail: ...`. A watchdog ends the process (exit
//! code 124) if the run takes longer than `--timeout` seconds.
//!
//! ```text
//! numa_vm_check [--hash-keys N] [--tree-keys N] [--writes N] [--trials N] [--timeout S]
//!               [--no-fresh-pages]   (control: leave glibc's mmap threshold alone)
//! ```
//!
//! On a one-node machine it runs too (every replica on node 0), which is how CI checks
//! that it builds and works before booting guests.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldnr::{
    AffinityGuard, AffinityManager, Dispatch, NodeId, NodeReplicated, ReplicaId, ThreadToken,
};
use ldnr_affinity::placement::PageCensus;
use ldnr_affinity::LinuxAffinity;

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
    timeout: u64,
    /// Leave glibc's mmap threshold alone (the control experiment for the fix).
    no_fresh_pages: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        // 3.4 M entries: a table of 2^22 buckets, 68 MiB; the write phase's new keys
        // push it past its capacity (3,670,016), so every replica's table is resized.
        hash_keys: 3_400_000,
        tree_keys: 1_000_000,
        writes: 800_000,
        trials: 25,
        timeout: 900,
        no_fresh_pages: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--no-fresh-pages" {
            o.no_fresh_pages = true;
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
            "--timeout" => o.timeout = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
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
    let linux = Arc::new(if o.no_fresh_pages {
        LinuxAffinity::with_topology(ldnr_affinity::Topology::detect())
    } else {
        LinuxAffinity::new()
    });
    let nodes = linux.nodes();
    println!(
        "NUMA-VM-CHECK nodes={} degraded={:?} steers_memory={}",
        nodes.len(),
        linux.degraded(),
        linux.steers_memory()
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
    reuse_probe(&linux, !o.no_fresh_pages, &mut failures);
    let hash = Store::Hash((0..o.hash_keys).map(|k| (k, k)).collect());
    run(&linux, "hashmap", hash, o.hash_keys, &o, &mut failures);
    let tree = Store::Tree((0..o.tree_keys).map(|k| (k, k)).collect());
    run(&linux, "btreemap", tree, o.tree_keys, &o, &mut failures);
    // The same, calling `placement::release_free_memory()` before `build` and
    // `add_replica`: what that buys structures of small allocations.
    let tree = Store::Tree((0..o.tree_keys).map(|k| (k, k)).collect());
    run(
        &linux,
        "btreemap+trim",
        tree,
        o.tree_keys,
        &o,
        &mut failures,
    );

    println!("TIME total {:.1} s", start.elapsed().as_secs_f64());
    if failures.is_empty() {
        println!("RESULT ok");
        ExitCode::SUCCESS
    } else {
        println!("RESULT fail: {}", failures.join("; "));
        ExitCode::FAILURE
    }
}

/// The failure the mmap-threshold fix prevents: an 8 MiB buffer allocated for node B
/// right after one for node A was freed. Unfixed, glibc has raised its threshold (a
/// 16 MiB block was freed before) and hands the same heap pages back, still on node A.
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
                "PROBE 8 MiB buffer for {b} after one for {a} was freed (mmap threshold {}): {} of {} pages on {b}",
                if fixed { "fixed" } else { "left alone" },
                c.on(b),
                c.pages()
            );
            if fixed && c.share_on(b) < 0.99 {
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
                    "PLACEMENT map={name} phase={phase} replica={} node={} pages={} on_node={} absent={} other={} share={:.2}%",
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
