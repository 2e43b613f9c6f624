//! `Policy::follow_threads` gives memory back: when the last thread of a node leaves,
//! the live heap returns to within 5% of one replica of what it was before the node had
//! threads (issue target), for a thread that deregisters and for one that exits holding a
//! `thread_token` registration.
//!
//! A counting global allocator tracks the live heap bytes of the whole test binary, so
//! this file holds a single test. These are deterministic allocation counts, not timings.

use std::sync::Arc;

use ldnr::{NodeReplicated, Policy};
use ldnr_testkit::heap::{live_bytes, CountingAlloc};
use ldnr_testkit::map::{MapRead, TestMap};
use ldnr_testkit::pretend::{on, Pretend};
use ldnr_testkit::{watchdog, LIMIT};

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

const KEYS: u64 = 200_000;
/// The tolerance: 5% of one replica.
const PCT: isize = 5;

#[test]
fn the_heap_returns_when_a_node_empties() {
    let report = watchdog("policy memory", LIMIT, || {
        on(0);
        let map = TestMap::with_keys(KEYS);
        let before = live_bytes();
        let copy = map.clone();
        let replica = live_bytes() - before;
        drop(copy);
        assert!(replica > 0);

        let nr = NodeReplicated::builder(map)
            .affinity(Arc::new(Pretend::new(4)))
            .policy(Policy::follow_threads())
            .log_capacity(1024)
            .build()
            .unwrap();
        let me = nr.register().unwrap();
        assert_eq!(nr.execute(MapRead::Len, me), Some(KEYS));
        let mut lines = Vec::new();
        for (round, managed) in [(0, false), (1, true), (2, false), (3, true)] {
            let one = live_bytes();
            let node = 1 + round % 3;
            let (during, after_leave) = std::thread::scope(|s| {
                let nr = &nr;
                s.spawn(move || {
                    on(node);
                    let tkn = if managed {
                        nr.thread_token().unwrap()
                    } else {
                        nr.register().unwrap()
                    };
                    assert_eq!(nr.replicas().len(), 2, "a replica on node {node}");
                    assert_eq!(nr.execute(MapRead::Get(7), tkn), Some(7));
                    let during = live_bytes();
                    if !managed {
                        nr.deregister(tkn).unwrap();
                    }
                    during
                })
                .join()
                .map(|during| {
                    // An exited thread is noticed by the next operation or snapshot.
                    assert_eq!(nr.replicas().len(), 1, "node {node} emptied");
                    (during, live_bytes())
                })
                .unwrap()
            });
            let grew = during - one;
            let back = after_leave - one;
            assert!(
                (grew - replica).abs() * 100 <= replica * PCT,
                "round {round}: the new replica took {grew} bytes, a clone {replica}"
            );
            assert!(
                back.abs() * 100 <= replica * PCT,
                "round {round}: {back} bytes left after node {node} emptied (one replica: {replica})"
            );
            lines.push(format!(
                "round {round} ({}): +{grew} B with node {node}'s replica, {back:+} B after it left",
                if managed { "thread exit" } else { "deregister" }
            ));
        }
        lines.push(format!("one replica: {replica} B"));
        lines
    });
    for l in report {
        eprintln!("policy memory: {l}");
    }
}
