//! The address space's replicas follow threads pinned node by node on a real multi-node
//! kernel (run by `scripts/numa-vm-test.sh` inside its QEMU guests, after
//! `numa_vm_check`), with `LinuxAffinity` and `Policy::follow_threads`.
//!
//! 1. **grow**: an address space of `--mappings` one-page mappings (default 100,000; a
//!    `BTreeMap`, about 80 bytes a mapping) is built by the main thread, pinned to the first node. Then, node
//!    by node, a thread pinned to that node registers: the policy makes it clone a replica
//!    there (under the node's memory policy), and the thread asks the kernel where every
//!    page holding an entry of its replica is. Each must be on the thread's node for at
//!    least 99% of its pages, and the replicas must be on exactly the nodes with threads.
//! 2. **shrink**: the threads deregister one at a time. Each departure must remove its
//!    node's replica (never the last one) and give back one copy of the address space:
//!    the live heap (counted by the testkit's allocator) must drop by one copy within 5%.
//!    The resident set size, after `placement::release_free_memory()`, is reported.
//! 3. **move**: one thread registers on the first node, then is re-pinned to each other
//!    node in turn and operates until it is served there: the replica moves with it (one
//!    replica at a time), and each new replica is again at least 99% on its node.
//!
//! Before a registration or a move that will clone, the thread that pays for the clone
//! calls `placement::release_free_memory()`: a `BTreeMap` is made of small blocks, which
//! malloc would otherwise hand out again from memory freed on another node (see
//! `ldnr-affinity`'s docs on placement). Free blocks that share a page with live data
//! stay where they are: in the VM test a moved replica had 6 to 9 such pages, whatever
//! its size (1% of a 40,000-mapping replica of 780 pages; hence the default of 100,000
//! mappings, about 1,950 pages, 7.5 MiB).
//!
//! Output: one `FOLLOW phase=... key=value ...` line per step and a last
//! `FOLLOW phase=result ok=1` (or `ok=0 problems=...`); exit code 1 on a failed check,
//! 124 if the run takes longer than `--timeout` seconds.
//!
//! ```text
//! numa_vm_follow [--mappings N] [--timeout S]
//! ```
//!
//! Other arguments are ignored: the VM test passes the same ones to every binary of a
//! guest. On a machine with one node it runs too (one node: no move), which is how it is
//! checked before guests boot.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ldnr::{AffinityManager, NodeId, NodeReplicated, ThreadToken};
use ldnr_affinity::placement::{self, PageCensus};
use ldnr_affinity::LinuxAffinity;
use ldnr_testkit::heap::{live_bytes, CountingAlloc};
#[path = "shared/mod.rs"]
mod shared;

use ldnr_vspace::{AddressSpace, Prot, SpaceReads, SpaceWrites, PAGE_SIZE};
use shared::prefilled;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// The least share of a replica's pages on its node.
const PLACED: f64 = 0.99;
/// How far a departure's heap drop may be from one copy, in percent of a copy.
const HEAP_PCT: f64 = 5.0;

struct Options {
    mappings: u64,
    timeout: u64,
}

fn options() -> Options {
    let mut o = Options {
        mappings: 100_000,
        timeout: 300,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.windows(2) {
        let value = pair[1].parse::<u64>().ok();
        match (pair[0].as_str(), value) {
            ("--mappings", Some(v)) => o.mappings = v.max(1),
            ("--timeout", Some(v)) => o.timeout = v.max(1),
            _ => {}
        }
    }
    o
}

fn main() -> ExitCode {
    let o = options();
    let timeout = o.timeout;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(timeout));
        println!("FOLLOW phase=result ok=0 problems=watchdog:_not_finished_after_{timeout}_s");
        std::process::exit(124);
    });
    let start = Instant::now();
    let linux = Arc::new(LinuxAffinity::new());
    // Nodes a thread can be pinned to (a node may have memory and no CPUs).
    let nodes: Vec<NodeId> = linux
        .nodes()
        .into_iter()
        .filter(|&n| !linux.topology().cpus_of(n).is_empty())
        .collect();
    println!(
        "FOLLOW phase=start nodes={} cpu_nodes={} mappings={}",
        linux.nodes().len(),
        join(&nodes),
        o.mappings
    );
    let mut problems = Vec::new();
    match nodes.first() {
        Some(&first) => {
            if let Err(e) = linux.pin_to_node(first) {
                problems.push(format!("cannot pin to {first}: {e}"));
            } else {
                run(&linux, &nodes, o.mappings, &mut problems);
            }
        }
        None => problems.push("no node with CPUs".into()),
    }
    println!(
        "FOLLOW phase=time seconds={:.1}",
        start.elapsed().as_secs_f64()
    );
    if problems.is_empty() {
        println!("FOLLOW phase=result ok=1");
        ExitCode::SUCCESS
    } else {
        println!(
            "FOLLOW phase=result ok=0 problems={}",
            problems.join(";").replace(' ', "_")
        );
        ExitCode::FAILURE
    }
}

fn join(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(|n| n.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn replica_nodes(nr: &NodeReplicated<AddressSpace>) -> BTreeSet<usize> {
    nr.replicas().iter().map(|r| r.node.0).collect()
}

/// Whether the thread of `tkn` is served by a replica on `node`.
fn served_on(nr: &NodeReplicated<AddressSpace>, tkn: ThreadToken, node: NodeId) -> bool {
    let Some(id) = nr.replica_of(tkn) else {
        return false;
    };
    nr.replicas().iter().any(|r| r.id == id && r.node == node)
}

/// Where the pages holding the entries of the calling thread's replica are.
fn census(nr: &NodeReplicated<AddressSpace>, tkn: ThreadToken) -> Result<PageCensus, String> {
    let pages = nr.read(tkn, |space| {
        PageCensus::distinct_pages(space.iter().map(|m| m as *const _ as usize))
    });
    PageCensus::of_touched_pages(&pages).map_err(|e| e.to_string())
}

/// Resident set size in bytes (`/proc/self/statm`), if known.
fn rss() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * placement::page_size())
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Checks a census of a replica on `node`; prints the `placed` fields.
fn placed(
    census: Result<PageCensus, String>,
    node: NodeId,
    what: &str,
    problems: &mut Vec<String>,
) -> String {
    match census {
        Ok(c) => {
            if c.share_on(node) < PLACED {
                problems.push(format!("{what}: {c}"));
            }
            format!(
                "pages={} on_node={} share={:.2}%",
                c.pages(),
                c.on(node),
                100.0 * c.share_on(node)
            )
        }
        Err(e) => {
            problems.push(format!("{what}: page query failed: {e}"));
            "pages=0 on_node=0 share=0.00%".into()
        }
    }
}

/// What a resident thread reports after registering.
struct Joined {
    node: NodeId,
    served_here: bool,
    census: Result<PageCensus, String>,
}

fn run(linux: &Arc<LinuxAffinity>, nodes: &[NodeId], mappings: u64, problems: &mut Vec<String>) {
    let space = prefilled(mappings);
    let before = live_bytes();
    let copy = space.clone();
    let copy_bytes = (live_bytes() - before) as f64;
    drop(copy);
    let nr = match space
        .replicated()
        .affinity(linux.clone())
        .max_threads(64)
        .build()
    {
        Ok(nr) => nr,
        Err(e) => {
            problems.push(format!("build: {e}"));
            return;
        }
    };
    println!(
        "FOLLOW phase=built copy_mib={:.2} replicas={} nodes={:?}",
        mib(copy_bytes),
        nr.replicas().len(),
        replica_nodes(&nr)
    );

    // 1. grow: a thread pinned to each node registers, node by node.
    let nr = &nr;
    std::thread::scope(|s| {
        let (joined_tx, joined) = mpsc::channel::<Joined>();
        let (left_tx, left) = mpsc::channel::<()>();
        let mut leave = Vec::new();
        for (k, &node) in nodes.iter().enumerate() {
            let (go_tx, go) = mpsc::channel::<()>();
            let (joined_tx, left_tx, linux) = (joined_tx.clone(), left_tx.clone(), linux.clone());
            s.spawn(move || {
                linux.pin_to_node(node).expect("pin");
                // This thread pays for its node's clone: fresh pages for it.
                placement::release_free_memory();
                let tkn = nr.register().expect("below the thread limit");
                let va = (1 << 40) + (node.0 as u64) * (1 << 32);
                let pa = nr.map(tkn, va, PAGE_SIZE, Prot::READ).expect("own page");
                assert_eq!(nr.translate(tkn, va), Some((pa, Prot::READ)));
                joined_tx
                    .send(Joined {
                        node,
                        served_here: served_on(nr, tkn, node),
                        census: census(nr, tkn),
                    })
                    .expect("main waits");
                go.recv().expect("main says when");
                nr.deregister(tkn).expect("registered");
                left_tx.send(()).expect("main waits");
            });
            let j = joined.recv().expect("a resident thread");
            leave.push(go_tx);
            let want: BTreeSet<usize> = nodes[..=k].iter().map(|n| n.0).collect();
            let have = replica_nodes(nr);
            if have != want {
                problems.push(format!("grow {node}: replicas on {have:?}, not {want:?}"));
            }
            if !j.served_here {
                problems.push(format!("grow {node}: the thread is served elsewhere"));
            }
            let fields = placed(j.census, j.node, &format!("grow {node}"), problems);
            println!(
                "FOLLOW phase=grow node={} replicas={} nodes={} served_here={} {fields}",
                node.0,
                have.len(),
                have.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                u8::from(j.served_here)
            );
        }

        // 2. shrink: the threads leave in the same order.
        placement::release_free_memory();
        let (mut heap, mut res) = (live_bytes() as f64, rss());
        for (k, go) in leave.into_iter().enumerate() {
            let node = nodes[k];
            let replicas_before = nr.replicas().len();
            go.send(()).expect("the resident waits");
            left.recv().expect("a resident thread");
            placement::release_free_memory();
            let (heap_now, res_now) = (live_bytes() as f64, rss());
            let have = replica_nodes(nr);
            let want: BTreeSet<usize> = nodes[k + 1..].iter().map(|n| n.0).collect();
            let last = want.is_empty();
            let freed = (heap - heap_now) / copy_bytes;
            let want_freed = if last { 0.0 } else { 1.0 };
            if (last && have.len() != 1) || (!last && have != want) {
                problems.push(format!("shrink {node}: replicas on {have:?}, not {want:?}"));
            }
            if (freed - want_freed).abs() * 100.0 > HEAP_PCT {
                problems.push(format!(
                    "shrink {node}: the heap went down by {freed:.3} copies, not {want_freed}"
                ));
            }
            let rss_freed = match (res, res_now) {
                (Some(a), Some(b)) => format!("{:.2}", (a as f64 - b as f64) / copy_bytes),
                _ => "unknown".into(),
            };
            println!(
                "FOLLOW phase=shrink node={} replicas_before={replicas_before} replicas={} \
                 heap_mib={:.2} heap_freed_copies={freed:.3} rss_mib={} rss_freed_copies={rss_freed}",
                node.0,
                have.len(),
                mib(heap_now),
                res_now.map_or("unknown".into(), |b| format!("{:.2}", mib(b as f64)))
            );
            (heap, res) = (heap_now, res_now);
        }
    });

    // 3. move: one thread, re-pinned node by node; its replica follows it.
    if nodes.len() < 2 {
        return;
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut from = nodes[0];
            linux.pin_to_node(from).expect("pin");
            placement::release_free_memory();
            let tkn = nr.register().expect("below the thread limit");
            for &to in &nodes[1..] {
                // The moved thread pays for the clone on its new node.
                placement::release_free_memory();
                linux.pin_to_node(to).expect("re-pin");
                let mut ops = 0u64;
                while !served_on(nr, tkn, to) {
                    assert!(nr.translate(tkn, 0).is_some());
                    ops += 1;
                    // The library checks a thread's node every 1,024 of its operations.
                    if ops > 1024 {
                        std::thread::yield_now();
                    }
                    if ops > 1_000_000 {
                        problems.push(format!("move {from} -> {to}: not served there"));
                        return;
                    }
                }
                let have = replica_nodes(nr);
                if have != BTreeSet::from([to.0]) {
                    problems.push(format!("move {from} -> {to}: replicas on {have:?}"));
                }
                let fields = placed(census(nr, tkn), to, &format!("move to {to}"), problems);
                println!(
                    "FOLLOW phase=move from={} node={} ops={ops} replicas={} {fields}",
                    from.0,
                    to.0,
                    have.len()
                );
                from = to;
            }
            nr.deregister(tkn).expect("registered");
        });
    });
}
