//! Removing a replica gives its memory back.
//!
//! A counting global allocator tracks the live heap bytes of the whole test binary, so
//! this file holds a single test (nothing else allocates while it measures). With a
//! 200,000-key `TestMap`:
//!
//! - `add_replica` grows the live heap by one replica: the size of a plain `.clone()` of
//!   the same map, measured the same way, within a few percent;
//! - `remove_replica` brings it back to the one-replica figure, within a few percent;
//! - twenty more add/remove cycles (with writes in between) leave it flat.
//!
//! These are deterministic allocation counts, not timings.

use ldnr::{NodeId, NodeReplicated};
use ldnr_testkit::heap::{live_bytes, CountingAlloc};
use ldnr_testkit::map::{MapRead, MapWrite, TestMap};
use ldnr_testkit::{watchdog, LIMIT};

/// The system allocator, counting the bytes it has handed out and not taken back (the
/// driver's allocator).
#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

fn live() -> isize {
    live_bytes()
}

/// `|a - b| <= pct % of reference`.
fn close(a: isize, b: isize, reference: isize, pct: isize) -> bool {
    (a - b).abs() * 100 <= reference * pct
}

const KEYS: u64 = 200_000;
/// The tolerance, in percent of one replica's size.
const PCT: isize = 3;

#[test]
fn removed_replicas_give_their_memory_back() {
    let report = watchdog("replica memory", LIMIT, || {
        // One replica's size: a plain clone of the same map, measured the same way.
        let map = TestMap::with_keys(KEYS);
        let before = live();
        let copy = map.clone();
        let clone_size = live() - before;
        drop(copy);
        assert!(clone_size > 0);
        assert!(close(live(), before, clone_size, 1), "the clone was freed");

        let nr = NodeReplicated::builder(map)
            .replicas(&[NodeId(0)])
            .log_capacity(1024)
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        // Overwrite existing keys only: the map's table does not grow.
        let write = |round: u64| {
            for k in 0..64 {
                let key = (k * 3_001 + round) % KEYS;
                assert!(nr.execute_mut(MapWrite::Insert(key, round), tkn).is_some());
            }
        };
        write(0);
        // Allocated before measuring, so that it does not count in the cycles below.
        let mut samples = Vec::with_capacity(20);
        let one = live();

        let id = nr.add_replica(NodeId(0)).unwrap();
        let two = live();
        assert!(
            close(two - one, clone_size, clone_size, PCT),
            "add_replica grew the heap by {} bytes; one replica is {clone_size}",
            two - one
        );
        write(1);
        nr.remove_replica(id).unwrap();
        let after = live();
        assert!(
            close(after, one, clone_size, PCT),
            "remove_replica left {after} live bytes; one replica live was {one} (replica {clone_size})"
        );

        for round in 0..20 {
            let id = nr.add_replica(NodeId(0)).unwrap();
            let up = live();
            write(round + 2);
            // Alternately the new replica and the old one (whose thread moves).
            let victim = if round % 2 == 0 {
                id
            } else {
                nr.replicas()[0].id
            };
            nr.remove_replica(victim).unwrap();
            let down = live();
            assert!(
                close(up - down, clone_size, clone_size, PCT),
                "cycle {round}: removal freed {} bytes, one replica is {clone_size}",
                up - down
            );
            assert!(
                close(down, one, clone_size, PCT),
                "cycle {round}: {down} live bytes after removal, {one} with one replica"
            );
            samples.push(down);
        }
        // Flat: no growth across the cycles.
        let first = samples[0];
        let last = *samples.last().unwrap();
        assert!(close(last, first, clone_size, 1), "{samples:?}");
        assert_eq!(nr.execute(MapRead::Len, tkn), Some(KEYS));
        (clone_size, one, two, after, samples)
    });
    let (clone_size, one, two, after, samples) = report;
    let delta: Vec<isize> = samples.iter().map(|s| s - one).collect();
    eprintln!(
        "replica memory: clone {clone_size} B; 1 replica {one} B; 2 replicas {two} B \
         (+{}); after removal {after} B ({:+}); 20 cycles after-removal deltas: {delta:?}",
        two - one,
        after - one
    );
}
