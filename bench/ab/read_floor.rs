//! What any read lock with per-thread announcements must add to a single-thread read
//! (issue 16's per-operation read bound: ≤ 1.25× the bare `HashMap` at 64K keys), paired
//! in one process (DESIGN.md §8) with the bare map, the map behind `std::sync::RwLock`
//! and LD-NR (the `new` commit, one replica).
//!
//! Not a workspace target: `AB_MAIN=read_floor.rs NEW=<commit> bench/ab/old-vs-new.sh
//! [--rounds N] [--phase-ms N]` (OLD is built too and ignored).
//!
//! The floors are hand-written read locks around the bare `get`, each the least its kind
//! can do, with no token, no dispatch, no log and no replica lookup:
//! - `announce+fence`: the reader stores its announcement in its own cache line, issues
//!   `fence(SeqCst)` (rustc: `lock or` on the stack on x86), loads the writer's word
//!   (its own cache line) and compares it, reads, and withdraws with a `Release` store.
//!   The Dekker pattern every announcement-based reader needs (LD-NR, NR, brlocks) for a
//!   writer to see it without the reader writing a shared line.
//! - `announce SeqCst`: the same with a `SeqCst` store and load in place of the fence
//!   (`xchg` on x86; on AArch64 `stlr` + `ldar`, no `dmb`).
//! - `no barrier`: the same with no store-load barrier at all. Unsound (a writer may miss
//!   the reader); what the barrier costs, not a lock.
//!
//! Columns are medians over rounds of the per-round ratio to the bare map's time, with
//! [interquartile ranges]. Every variant reads a map of its own.
//!
//! Then what a reader *without* a store-load barrier would cost its writers: the
//! asymmetric form of the Dekker pattern (readers order their announcement with a compiler
//! barrier only; a writer that may race with a reader forces a barrier on every core that
//! runs the process with Linux's `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`). The
//! program times that call alone and with a second thread running on the other core (the
//! case in which a writer would need it), median of 9 runs of 20,000 calls.

mod harness;

use std::hint::black_box;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::RwLock;

use harness::{key_stream, ns_of, paired, pooled, stream, table_header, Opts, Phase};
use ldnr_hashmap_new::{MapRead, U64Map};
use ldnr_new::NodeReplicated;

/// Pre-generated keys (a power of two), read sequentially: 8 MiB, as in `benches/ops.rs`.
const KEY_STREAM: usize = 1 << 20;

type Inner = std::collections::HashMap<u64, u64>;

/// An atomic word alone in its cache line (two lines: the adjacent-line prefetcher).
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicUsize);

/// A reader's announcement and a writer's word.
#[derive(Default)]
struct Floor {
    slot: Padded,
    writer: Padded,
}

/// How a floor orders its announcement before its load of the writer's word.
#[derive(Clone, Copy)]
enum Barrier {
    Fence,
    SeqCst,
    None,
}

fn floor<'a>(map: &'a Inner, lock: &'a Floor, keys: &'a [u64], how: Barrier) -> Phase<'a> {
    stream(keys, move |k, _| {
        let free = match how {
            Barrier::Fence => {
                lock.slot.0.store(1, Ordering::Release);
                fence(Ordering::SeqCst);
                lock.writer.0.load(Ordering::Acquire) == 0
            }
            Barrier::SeqCst => {
                lock.slot.0.store(1, Ordering::SeqCst);
                lock.writer.0.load(Ordering::SeqCst) == 0
            }
            Barrier::None => {
                lock.slot.0.store(1, Ordering::Release);
                lock.writer.0.load(Ordering::Acquire) == 0
            }
        };
        if free {
            black_box(map.get(&black_box(k)).copied());
        }
        lock.slot.0.store(0, Ordering::Release);
    })
}

/// ns per `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: alone, then with a second
/// thread spinning (median of 9 runs of 20,000 calls each).
#[cfg(target_os = "linux")]
fn membarrier_cost() {
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;
    const PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;
    // SAFETY: membarrier takes no pointers.
    let call = |cmd: libc::c_int| unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0u32, 0i32) };
    if call(REGISTER_PRIVATE_EXPEDITED) != 0 {
        println!("\nmembarrier: not available here");
        return;
    }
    let run = |label: &str| {
        let mut v: Vec<f64> = (0..9)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..20_000 {
                    assert_eq!(call(PRIVATE_EXPEDITED), 0);
                }
                t.elapsed().as_nanos() as f64 / 20_000.0
            })
            .collect();
        v.sort_by(f64::total_cmp);
        println!("| {label} | {:.0} | {:.0}–{:.0} |", v[4], v[0], v[8]);
    };
    println!("\n== membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), ns per call");
    table_header(&["", "median", "range"]);
    run("no other thread running");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        run("a second thread running");
        stop.store(true, Ordering::Relaxed);
    });
}

fn main() {
    let o = Opts::from_args();
    println!("new = {}", include_str!("../../new/COMMIT").trim());
    o.heading("read: ns per operation, 1 thread; ratios to the bare map");
    table_header(&[
        "keys",
        "bare ns",
        "announce+fence",
        "announce SeqCst",
        "no barrier",
        "RwLock",
        "LD-NR",
        "LD-NR/announce+fence",
    ]);
    for (n, label) in [(1u64 << 16, "64K"), (1 << 20, "1M")] {
        let keys = key_stream(0x5eed_0016 ^ n, KEY_STREAM, n);
        // One map per variant, as in `write_path.rs`: at 64K keys the map (about 1 MiB)
        // barely fits the L2 cache, and variants sharing one would find it warmer than
        // those that do not.
        let maps: Vec<Inner> = (0..4).map(|_| U64Map::with_keys(n).0).collect();
        let lock = RwLock::new(U64Map::with_keys(n).0);
        let floors = [Floor::default(), Floor::default(), Floor::default()];
        let nr = NodeReplicated::builder(U64Map::with_keys(n))
            .build()
            .expect("config");
        let tkn = nr.register().expect("register");
        let mut vs: Vec<Phase<'_>> = vec![
            stream(&keys, |k, _| {
                black_box(maps[0].get(&black_box(k)).copied());
            }),
            floor(&maps[1], &floors[0], &keys, Barrier::Fence),
            floor(&maps[2], &floors[1], &keys, Barrier::SeqCst),
            floor(&maps[3], &floors[2], &keys, Barrier::None),
            stream(&keys, |k, _| {
                black_box(lock.read().unwrap().get(&black_box(k)).copied());
            }),
            stream(&keys, |k, _| {
                black_box(nr.execute(MapRead::Get(black_box(k)), tkn));
            }),
        ];
        let ns = paired(&o, &mut vs);
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} |",
            ns_of(&ns, &[0]),
            pooled(&ns, &[1], &[0]),
            pooled(&ns, &[2], &[0]),
            pooled(&ns, &[3], &[0]),
            pooled(&ns, &[4], &[0]),
            pooled(&ns, &[5], &[0]),
            pooled(&ns, &[5], &[1]),
        );
    }
    #[cfg(target_os = "linux")]
    membarrier_cost();
}
