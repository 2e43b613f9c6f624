//! The allocator called directly (not installed): each test has its own `NodeAlloc`, and
//! pretend nodes beyond this machine's exercise the arenas apart from real placement.

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Duration;

use super::*;

/// Bounds every wait for worker threads.
const WATCHDOG: Duration = Duration::from_secs(120);

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Allocates `l` for `node` (or the system allocator for `None`), fills it with `byte`.
fn alloc_filled(a: &NodeAlloc, node: Option<usize>, l: Layout, byte: u8) -> *mut u8 {
    let _g = node.map(|n| AllocNodeGuard::new(NodeId(n)));
    // SAFETY: a valid layout (a zero size is served as one byte, per `NodeAlloc`'s docs).
    let p = unsafe { a.alloc(l) };
    assert!(!p.is_null(), "{l:?}");
    // SAFETY: `p` is a fresh block of `l.size()` bytes.
    unsafe { std::ptr::write_bytes(p, byte, l.size()) };
    p
}

fn holds(p: *const u8, len: usize, byte: u8) -> bool {
    // SAFETY: the callers pass live blocks of at least `len` bytes.
    unsafe { std::slice::from_raw_parts(p, len) }
        .iter()
        .all(|&b| b == byte)
}

fn free(a: &NodeAlloc, p: *mut u8, l: Layout) {
    // SAFETY: `p` was allocated by `a` with `l` and is no longer used.
    unsafe { a.dealloc(p, l) }
}

/// Whether this machine has no node `n` (so `mbind` to it must fail).
fn pretend(n: usize) -> bool {
    !std::path::Path::new(&format!("/sys/devices/system/node/node{n}")).exists()
}

#[test]
fn size_classes_are_the_smallest_that_fit_and_align() {
    for w in SIZES.windows(2) {
        assert!(w[0] < w[1] && w[0] % 16 == 0);
    }
    for align in [1, 2, 8, 16, 32, 64, 256, 1024, 4096] {
        for size in 0..=SMALL_MAX + 1 {
            let l = layout(size, align);
            match class_of(l) {
                Some(c) => {
                    assert!(SIZES[c] >= size.max(1) && SIZES[c] % align == 0, "{l:?}");
                    let smaller = SIZES[..c]
                        .iter()
                        .any(|&s| s >= size.max(1) && s % align == 0);
                    assert!(!smaller, "{l:?}: class {} is not the smallest", SIZES[c]);
                }
                None => assert!(size > SMALL_MAX, "{l:?} has no class"),
            }
        }
    }
    assert_eq!(
        class_of(layout(64, 8192)),
        None,
        "over page alignment is large"
    );
}

#[test]
fn blocks_are_aligned_writable_and_in_their_nodes_arena() {
    static A: NodeAlloc = NodeAlloc::new();
    let sizes = [
        0,
        1,
        8,
        15,
        16,
        17,
        100,
        128,
        129,
        1000,
        4096,
        5000,
        32768,
        32769,
        100_000,
        3 << 20,
    ];
    for node in [0, 1, 3] {
        for align in [1, 8, 16, 32, 64, 512, 4096, 8192, 65536, 2 << 20] {
            let mut live = Vec::new();
            for &size in &sizes {
                let l = layout(size, align);
                let p = alloc_filled(&A, Some(node), l, 0xa5);
                assert_eq!(p as usize % align, 0, "{l:?}");
                assert_eq!(A.node_of(p), Some(NodeId(node)), "{l:?}");
                live.push((p, l));
            }
            // No two live blocks overlap, and each still holds what was written.
            let mut spans: Vec<(usize, usize)> = live
                .iter()
                .map(|&(p, l)| (p as usize, p as usize + l.size().max(1)))
                .collect();
            spans.sort_unstable();
            assert!(
                spans.windows(2).all(|w| w[0].1 <= w[1].0),
                "overlap: {spans:?}"
            );
            for (p, l) in live {
                assert!(holds(p, l.size(), 0xa5));
                free(&A, p, l);
            }
        }
    }
    assert!(A.is_active());
}

#[test]
fn zero_sized_layouts_get_distinct_live_blocks() {
    static A: NodeAlloc = NodeAlloc::new();
    let l = layout(0, 1);
    let a = alloc_filled(&A, Some(2), l, 0);
    let b = alloc_filled(&A, Some(2), l, 0);
    assert_ne!(a, b);
    free(&A, a, l);
    free(&A, b, l);
}

#[test]
fn without_an_allocation_node_the_system_allocator_serves() {
    static A: NodeAlloc = NodeAlloc::new();
    assert_eq!(alloc_node(), None);
    let l = layout(64, 8);
    let p = alloc_filled(&A, None, l, 1);
    assert_eq!(A.node_of(p), None);
    assert!(
        !A.is_active(),
        "nothing reserved for a program that never names a node"
    );
    free(&A, p, l);
    // Pass-through: a thread with a node gets the system allocator too, and arena
    // blocks made before are still freed correctly.
    let arena = alloc_filled(&A, Some(1), l, 2);
    assert_eq!(A.node_of(arena), Some(NodeId(1)));
    A.set_pass_through(true);
    let p = alloc_filled(&A, Some(1), l, 3);
    assert_eq!(A.node_of(p), None);
    free(&A, p, l);
    free(&A, arena, l);
    A.set_pass_through(false);
    // A node beyond the arenas.
    let p = alloc_filled(&A, Some(MAX_NODES), l, 4);
    assert_eq!(A.node_of(p), None);
    free(&A, p, l);
}

#[test]
fn a_freed_block_is_reused_for_its_own_node_only() {
    static A: NodeAlloc = NodeAlloc::new();
    for l in [layout(48, 8), layout(200_000, 8)] {
        let freed: HashSet<usize> = (0..64)
            .map(|_| alloc_filled(&A, Some(1), l, 1))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|p| {
                free(&A, p, l);
                p as usize
            })
            .collect();
        let other: Vec<*mut u8> = (0..64).map(|_| alloc_filled(&A, Some(2), l, 2)).collect();
        for &p in &other {
            assert!(
                !freed.contains(&(p as usize)),
                "node 1's block given to node 2"
            );
            assert_eq!(A.node_of(p), Some(NodeId(2)));
        }
        let again = alloc_filled(&A, Some(1), l, 3);
        assert!(
            freed.contains(&(again as usize)),
            "node 1 reuses its own blocks"
        );
        free(&A, again, l);
        for p in other {
            free(&A, p, l);
        }
    }
}

#[test]
fn large_blocks_are_reused_first_fit_and_split() {
    static A: NodeAlloc = NodeAlloc::new();
    let big = layout(4 << 20, 8);
    let small = layout(1 << 20, 8);
    let p = alloc_filled(&A, Some(0), big, 7);
    free(&A, p, big);
    let a = alloc_filled(&A, Some(0), small, 8);
    let b = alloc_filled(&A, Some(0), small, 9);
    assert_eq!(a, p, "first fit");
    assert_eq!(b as usize, p as usize + (1 << 20), "the split tail");
    assert!(holds(a, small.size(), 8) && holds(b, small.size(), 9));
    free(&A, a, small);
    free(&A, b, small);
}

#[test]
fn realloc_keeps_contents_and_moves_to_the_threads_node() {
    static A: NodeAlloc = NodeAlloc::new();
    let l = layout(100, 8);
    let p = alloc_filled(&A, Some(1), l, 0x11);
    // Same node, same class: in place.
    let same = {
        let _g = AllocNodeGuard::new(NodeId(1));
        // SAFETY: `p` is a live block of `l` from `A`; 110 rounds to the same class.
        unsafe { A.realloc(p, l, 110) }
    };
    assert_eq!(same, p);
    assert!(holds(same, 100, 0x11));
    let l = layout(110, 8);
    // SAFETY: `same` is live with 110 bytes.
    unsafe { std::ptr::write_bytes(same, 0x11, 110) };
    // Another node: moved there, contents kept.
    let mut cur = same;
    let mut cur_l = l;
    for (node, size) in [
        (Some(2), 5000),
        (None, 70_000),
        (Some(3), 3 << 20),
        (Some(3), 60),
        (None, 30),
        (Some(0), 40),
    ] {
        let keep = cur_l.size().min(size);
        let next = {
            let _g = node.map(|n| AllocNodeGuard::new(NodeId(n)));
            // SAFETY: `cur` is a live block of `cur_l` from `A`.
            unsafe { A.realloc(cur, cur_l, size) }
        };
        assert!(!next.is_null());
        assert_eq!(
            A.node_of(next),
            node.map(NodeId),
            "realloc to {size} for {node:?}"
        );
        assert!(
            holds(next, keep, 0x11),
            "contents kept to {size} for {node:?}"
        );
        // SAFETY: `next` is live with `size` bytes.
        unsafe { std::ptr::write_bytes(next, 0x11, size) };
        cur = next;
        cur_l = layout(size, 8);
    }
    free(&A, cur, cur_l);
}

#[test]
fn frees_from_other_threads_return_blocks_to_their_node() {
    static A: NodeAlloc = NodeAlloc::new();
    let l = layout(256, 16);
    let blocks: Vec<usize> = (0..500)
        .map(|_| alloc_filled(&A, Some(1), l, 5) as usize)
        .collect();
    let sent = blocks.clone();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        // This thread works for node 2 while it frees node 1's blocks.
        let _g = AllocNodeGuard::new(NodeId(2));
        for p in sent {
            free(&A, p as *mut u8, l);
        }
        let mine: Vec<usize> = (0..500)
            .map(|_| alloc_filled(&A, Some(2), l, 6) as usize)
            .collect();
        done_tx.send(mine).unwrap();
    });
    let mine = done_rx
        .recv_timeout(WATCHDOG)
        .expect("freeing thread finished");
    let freed: HashSet<usize> = blocks.iter().copied().collect();
    assert!(
        mine.iter().all(|p| !freed.contains(p)),
        "node 2 got node 1's blocks"
    );
    let again: HashSet<usize> = (0..500)
        .map(|_| alloc_filled(&A, Some(1), l, 7) as usize)
        .collect();
    assert_eq!(again, freed, "node 1 gets its 500 blocks back");
    for p in again.into_iter().chain(mine) {
        free(&A, p as *mut u8, l);
    }
}

#[test]
fn many_threads_allocate_and_free_across_nodes_without_overlap() {
    static A: NodeAlloc = NodeAlloc::new();
    const THREADS: usize = 8;
    const ROUNDS: usize = 20_000;
    let (done_tx, done_rx) = mpsc::channel();
    // Each thread hands some of its blocks to the next thread, which checks and frees them.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::channel::<(usize, usize, u8)>())
        .unzip();
    for (t, rx) in rxs.into_iter().enumerate() {
        let tx = txs[(t + 1) % THREADS].clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let node = t % 3;
            let _g = AllocNodeGuard::new(NodeId(node));
            let mut live: Vec<(usize, usize, u8)> = Vec::new();
            let mut x = t as u64 * 7919 + 1;
            let mut bad = 0usize;
            for i in 0..ROUNDS {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let size = match x % 100 {
                    0 => 40_000 + (x as usize >> 8) % 300_000,
                    _ => 1 + (x as usize >> 8) % 2000,
                };
                let byte = (t * 31 + i) as u8;
                let p = alloc_filled(&A, Some(node), layout(size, 8), byte);
                bad += usize::from(A.node_of(p) != Some(NodeId(node)));
                live.push((p as usize, size, byte));
                if live.len() > 64 {
                    let (p, size, byte) = live.swap_remove((x as usize >> 3) % live.len());
                    if i % 3 == 0 {
                        let _ = tx.send((p, size, byte));
                    } else {
                        bad += usize::from(!holds(p as *const u8, size, byte));
                        free(&A, p as *mut u8, layout(size, 8));
                    }
                }
                while let Ok((p, size, byte)) = rx.try_recv() {
                    bad += usize::from(!holds(p as *const u8, size, byte));
                    free(&A, p as *mut u8, layout(size, 8));
                }
            }
            for (p, size, byte) in live {
                bad += usize::from(!holds(p as *const u8, size, byte));
                free(&A, p as *mut u8, layout(size, 8));
            }
            done.send((bad, rx)).unwrap();
        });
    }
    drop(txs);
    let mut leftover = Vec::new();
    for _ in 0..THREADS {
        let (bad, rx) = done_rx.recv_timeout(WATCHDOG).expect("worker finished");
        assert_eq!(bad, 0, "blocks overwritten or on the wrong node");
        leftover.push(rx);
    }
    // Blocks sent to a thread after it finished: still intact.
    for rx in leftover {
        while let Ok((p, size, byte)) = rx.try_recv() {
            assert!(holds(p as *const u8, size, byte));
            free(&A, p as *mut u8, layout(size, 8));
        }
    }
}

#[test]
fn pretend_nodes_work_unbound_and_real_ones_are_bound() {
    static A: NodeAlloc = NodeAlloc::new();
    let l = layout(4096, 8);
    let p = alloc_filled(&A, Some(0), l, 1);
    let unbound_real = A.unbound_chunks();
    let node0_exists = !pretend(0);
    if node0_exists && crate::placement::node_of_address(p as usize).is_some() {
        // NUMA in the kernel: the chunk is bound, and its touched page is on node 0.
        assert_eq!(unbound_real, 0, "mbind to node 0 refused");
        assert_eq!(
            crate::placement::node_of_address(p as usize),
            Some(NodeId(0))
        );
    }
    if pretend(MAX_NODES - 1) {
        let q = alloc_filled(&A, Some(MAX_NODES - 1), l, 2);
        assert_eq!(A.node_of(q), Some(NodeId(MAX_NODES - 1)));
        assert!(
            A.unbound_chunks() > unbound_real,
            "mbind to a missing node refused"
        );
        free(&A, q, l);
    }
    free(&A, p, l);
}
