//! Memory follows the threads: with `Policy::follow_threads` on four pretend nodes, each
//! node that gets its first thread grows the live heap by one copy of the address space,
//! and each node whose last thread leaves gives that copy back — within 5% of the size
//! of a plain `clone()` of the same address space, measured by the testkit's counting
//! allocator.
//!
//! Its own test binary with one test: the allocator counts the whole process.

use std::sync::mpsc;
use std::sync::Arc;

use ldnr::NodeId;
use ldnr_affinity::SimulatedAffinity;
use ldnr_testkit::heap::{live_bytes, CountingAlloc};
use ldnr_testkit::{watchdog, LIMIT};
use ldnr_vspace::{AddressSpace, Prot, PAGE_SIZE};

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Mappings of the address space: one page each, a page apart, so none merge.
const MAPPINGS: u64 = 20_000;
/// The tolerance, in percent of one replica's size.
const PCT: isize = 5;

fn close(a: isize, b: isize, replica: isize) -> bool {
    (a - b).abs() * 100 <= replica * PCT
}

#[test]
fn each_node_with_threads_costs_one_copy_and_gives_it_back() {
    let report = watchdog("replica memory follows threads", LIMIT, || {
        let sim = Arc::new(SimulatedAffinity::new(4));
        sim.enter(NodeId(0)).unwrap();
        let mut space = AddressSpace::new();
        for i in 0..MAPPINGS {
            space.map(2 * i * PAGE_SIZE, PAGE_SIZE, Prot::READ).unwrap();
        }
        let before = live_bytes();
        let copy = space.clone();
        let replica = live_bytes() - before;
        drop(copy);
        assert!(replica > 0);

        let nr = space.replicated().affinity(sim.clone()).build().unwrap();
        let (ack_tx, ack) = mpsc::channel::<()>();
        let mut heap = vec![live_bytes()];
        let order = [0, 1, 2, 3];
        std::thread::scope(|s| {
            let mut leave = Vec::new();
            for &node in &order {
                let (go_tx, go) = mpsc::channel::<()>();
                let (sim, nr, ack_tx) = (&sim, &nr, ack_tx.clone());
                s.spawn(move || {
                    sim.enter(NodeId(node)).unwrap();
                    let tkn = nr.register().unwrap();
                    ack_tx.send(()).unwrap();
                    go.recv().unwrap();
                    nr.deregister(tkn).unwrap();
                    ack_tx.send(()).unwrap();
                });
                ack.recv().unwrap();
                leave.push(go_tx);
                heap.push(live_bytes());
                assert_eq!(
                    nr.replicas().len(),
                    node + 1,
                    "node 0 had its replica from build"
                );
            }
            for go in &leave {
                go.send(()).unwrap();
                ack.recv().unwrap();
                heap.push(live_bytes());
            }
        });
        assert_eq!(nr.replicas().len(), 1);
        (replica, heap)
    });
    let (replica, heap) = report;
    eprintln!("one replica: {replica} B; live heap per step: {heap:?}");
    // heap[0]: built (one replica, on node 0). heap[1..=4]: after the threads on nodes
    // 0, 1, 2, 3 registered (node 0 had its replica already). heap[5..=8]: after they
    // left in the same order; the last one leaves one replica (never none).
    let base = heap[0];
    let want_replicas = [1, 1, 2, 3, 4, 3, 2, 1, 1];
    for (i, (&h, &n)) in heap.iter().zip(&want_replicas).enumerate() {
        let want = base + (n - 1) * replica;
        assert!(
            close(h, want, replica),
            "step {i}: {h} live bytes, want {want} ({n} replicas of {replica} B); all: {heap:?}"
        );
    }
}
